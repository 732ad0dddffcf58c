"""Post-sampling checks with plain-language advice, like Stan's ``diagnose`` and the
warnings PyMC prints after sampling.

`checks(fit)` returns a list of `Finding`; `warn(findings)` issues the ones at warning
severity as `SamplingWarning`. `divergence_locations` says where in parameter space
divergent transitions happened, the question users ask most.

The fit is duck-typed (see `checks`), so this module never imports the sampler.
"""

import re
import warnings
from functools import lru_cache
from dataclasses import dataclass, field

import numpy as np

from .energy import EBFMI_THRESHOLD, ebfmi
from .summary import _diagnostics_table, _posterior_of, _quantities

__all__ = [
    "Finding",
    "SamplingWarning",
    "checks",
    "warn",
    "divergence_locations",
    "WARNING",
    "INFO",
]

#: Severity of a finding that calls for action; `warn` issues these.
WARNING = "warning"
#: Severity of a finding that is worth knowing but needs no action.
INFO = "info"

# A divergent-draw location is called concentrated in a tail when the binomial
# screening test below rejects "divergent draws are spread like all draws" at this level.
# Draws are autocorrelated, which makes the test optimistic; the small level allows
# for that.
_CONCENTRATION_P_VALUE = 1e-3
_LISTED = 5  # offenders named in a message


class SamplingWarning(UserWarning):
    """A problem found in a finished run (divergences, poor mixing, ...)."""


@dataclass
class Finding:
    """One result of `checks`.

    Attributes
    ----------
    kind : str
        ``"divergences"``, ``"tree_depth"``, ``"ebfmi"``, ``"rhat"``, ``"ess"``,
        ``"chains"`` or ``"nonfinite"``.
    severity : str
        ``"warning"`` (act on it) or ``"info"``.
    message : str
        What was found, with numbers.
    advice : str
        What to do about it, in plain language.
    details : dict
        Machine-readable numbers behind the message (documented per kind in `checks`).
    """

    kind: str
    severity: str
    message: str
    advice: str = ""
    details: dict = field(default_factory=dict)

    def __str__(self):
        text = f"{self.severity}: {self.message}"
        return f"{text} {self.advice}" if self.advice else text


def _is_log_scale_name(name):
    """True for names of log-transformed scale parameters: ``log_tau``, ``tau_log__``."""
    return bool(re.match(r"^log_|^log\(", name) or name.endswith("_log__"))


@lru_cache(maxsize=4096)
def _binomial_upper_tail(n, k, p):
    """``P(X >= n)`` for ``X ~ Binomial(k, p)``: the terms summed in log space.

    scipy.stats.binom.sf gives the same; importing scipy.stats took 1.1 s, which the
    first sample() with a divergence in a fresh process paid.
    """
    if n <= 0:
        return 1.0
    if n > k:
        return 0.0
    log_factorial = _log_factorials(k)
    x = np.arange(n, k + 1)
    log_terms = (log_factorial[k] - log_factorial[x] - log_factorial[k - x]
                 + x * np.log(p) + (k - x) * np.log1p(-p))
    top = log_terms.max()
    return float(min(1.0, np.exp(top) * np.sum(np.exp(log_terms - top))))


@lru_cache(maxsize=8)
def _log_factorials(k):
    """``log(i!)`` for i = 0..k (read-only: it is shared between calls)."""
    table = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1.0, k + 1.0)))])
    table.flags.writeable = False
    return table


#: Coordinates whose draws divergence_locations sorts in one call.
_LOCATION_BLOCK = 256


def divergence_locations(unconstrained, diverging, names=None, divergence_point=None, *,
                         _divergent_points=None):
    """Where divergent transitions happened, coordinate by coordinate.

    For each unconstrained coordinate, the draws of divergent transitions are compared
    with all draws: each divergent draw gets its quantile position among all draws
    (mid-rank / S, in (0, 1)); their median, and the share below the all-draws lower
    quartile and above the upper quartile, show whether divergences sit in a tail. The
    tail is called concentrated when more than half the divergent draws lie beyond the
    quartile and the binomial probability of that many (out of k, at rate 1/4) is below
    1e-3; draws are autocorrelated, so this is a screening rule, not an exact test.

    Parameters
    ----------
    unconstrained : array_like
        Draws, shape (chains, draws, dim).
    diverging : array_like of bool
        Shape (chains, draws): True where the transition diverged.
    names : sequence of str, optional
        The dim coordinate names (default ``x[0]``, ``x[1]``, ...).
    divergence_point : array_like, optional
        Shape (chains, draws, dim): where each divergent trajectory blew up (NaN for
        other draws); its range is reported too.

    Returns
    -------
    list of dict
        One dict per coordinate (empty list without divergences) with keys ``name``,
        ``n_divergent``, ``median_quantile`` (quantile position of the divergent draws'
        median among all draws), ``share_below_q25``, ``share_above_q75``, ``tail``
        (``"low"``, ``"high"`` or None), ``p_value`` (of the test for that tail, or of
        the more extreme tail when none), ``divergent_range``, ``all_range`` and
        ``divergence_point_range`` ((min, max) tuples; the last None when unknown).

    Raises
    ------
    ValueError
        If the shapes do not match.

    Notes
    -----
    ``_divergent_points`` (private, for `checks`): the stored divergence points as
    ``(n, dim)`` rows instead of a dense ``divergence_point``, which for a large model
    would be as big as the draws.
    """
    draws = np.asarray(unconstrained, dtype=np.float64)
    flags = np.asarray(diverging, dtype=bool)
    if draws.ndim != 3 or flags.shape != draws.shape[:2]:
        raise ValueError(
            "divergence_locations(): unconstrained must have shape (chains, draws, dim) "
            "and diverging "
            f"(chains, draws); got {draws.shape} and {flags.shape}"
        )
    dim = draws.shape[2]
    names = [f"x[{j}]" for j in range(dim)] if names is None else [str(n) for n in names]
    if len(names) != dim:
        raise ValueError(f"divergence_locations(): {len(names)} names for {dim} coordinates")
    points = None
    if divergence_point is not None:
        points = np.asarray(divergence_point, dtype=np.float64)
        if points.shape != draws.shape:
            raise ValueError(
                f"divergence_locations(): divergence_point has shape {points.shape}, "
                f"expected {draws.shape}"
            )
    n_divergent = int(flags.sum())
    if n_divergent == 0:
        return []
    blown_points = points[flags] if points is not None else _divergent_points
    all_draws = draws.reshape(-1, dim)
    divergent_draws = draws[flags]  # (divergent transitions, dim)
    positions, sizes, lowest, highest = _quantile_positions(all_draws, divergent_draws)
    counted = np.isfinite(positions)  # the divergent draws each coordinate's test uses
    n_divergent_used = counted.sum(axis=0)
    n_low = np.count_nonzero(positions < 0.25, axis=0)
    n_high = np.count_nonzero(positions > 0.75, axis=0)
    median_positions = _column_medians(positions, n_divergent_used)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are skipped below
        counted_draws = np.where(counted, divergent_draws, np.nan)
        divergent_low, divergent_high = (np.nanmin(counted_draws, axis=0),
                                         np.nanmax(counted_draws, axis=0))
        if blown_points is not None:
            blown = np.where(np.isfinite(blown_points), blown_points, np.nan)
            blown_any = np.isfinite(blown).any(axis=0)
            blown_low, blown_high = np.nanmin(blown, axis=0), np.nanmax(blown, axis=0)
    locations = []
    for j, name in enumerate(names):
        k = int(n_divergent_used[j])
        if sizes[j] == 0 or k == 0:
            continue
        low, high = int(n_low[j]), int(n_high[j])
        # P(X >= n) for X ~ Binomial(k, 1/4)
        p_low, p_high = _binomial_upper_tail(low, k, 0.25), _binomial_upper_tail(high, k, 0.25)
        tail = None
        if low > k / 2 and p_low < _CONCENTRATION_P_VALUE:
            tail = "low"
        elif high > k / 2 and p_high < _CONCENTRATION_P_VALUE:
            tail = "high"
        point_range = None
        if blown_points is not None and blown_any[j]:
            point_range = (float(blown_low[j]), float(blown_high[j]))
        locations.append(
            {
                "name": name,
                "n_divergent": k,
                "median_quantile": float(median_positions[j]),
                "share_below_q25": low / k,
                "share_above_q75": high / k,
                "tail": tail,
                "p_value": (
                    p_high if tail == "high" else (p_low if tail == "low" else min(p_low, p_high))
                ),
                "divergent_range": (float(divergent_low[j]), float(divergent_high[j])),
                "all_range": (float(lowest[j]), float(highest[j])),
                "divergence_point_range": point_range,
            }
        )
    return locations


def _column_medians(values, counts):
    """Median of the ``counts[j]`` non-NaN values of each column (NaN sorts last)."""
    ordered = np.sort(values, axis=0)
    lower = np.maximum((counts - 1) // 2, 0)[np.newaxis]
    upper = np.maximum(counts // 2, 0)[np.newaxis]
    return 0.5 * (np.take_along_axis(ordered, lower, axis=0)[0]
                  + np.take_along_axis(ordered, upper, axis=0)[0])


#: Up to this many divergent draws are placed among all draws by counting (k S
#: comparisons per coordinate), more by sorting the draws (S log S) and a binary search.
_COUNTING_MAX_DIVERGENT = 16
#: Comparisons a block of coordinates makes at once when counting (bounds the temporaries).
_COUNTING_BLOCK = 1 << 21


def _quantile_positions(all_draws, divergent_draws):
    """Mid-rank quantile positions of divergent draws among all draws, per coordinate.

    Parameters
    ----------
    all_draws : ndarray (S, dim)
    divergent_draws : ndarray (k, dim)

    Returns
    -------
    positions : ndarray (k, dim)
        ``(#{x < d} + #{x <= d}) / (2 n)`` over the n finite draws x of the coordinate,
        NaN where the divergent draw d is not finite or the coordinate has no finite draw.
    sizes : ndarray (dim,)
        n, the finite draws of each coordinate.
    lowest, highest : ndarray (dim,)
        Their smallest and largest values (NaN where n is 0).

    A few divergent draws are placed by counting, many by sorting the draws and a
    binary search; both give the same exact counts.
    """
    n_all, dim = all_draws.shape
    n_divergent = divergent_draws.shape[0]
    positions = np.full((n_divergent, dim), np.nan)
    sizes = np.zeros(dim, dtype=np.int64)
    lowest, highest = np.full(dim, np.nan), np.full(dim, np.nan)
    counting = n_divergent <= _COUNTING_MAX_DIVERGENT
    width = max(1, min(_LOCATION_BLOCK, _COUNTING_BLOCK // (n_divergent * n_all))) \
        if counting else _LOCATION_BLOCK
    for start in range(0, dim, width):
        stop = min(start + width, dim)
        block = all_draws[:, start:stop]
        if counting:
            # One row of draws per coordinate, so that every count runs along memory.
            rows = np.ascontiguousarray(block.T)
            finite = np.isfinite(rows)
            size = np.count_nonzero(finite, axis=1)
            sizes[start:stop] = size
            if not finite.all():
                rows[~finite] = np.nan  # NaN is never below or equal
            values = divergent_draws[:, start:stop].T[:, :, np.newaxis]
            below = np.count_nonzero(rows[:, np.newaxis, :] < values, axis=2)
            at_or_below = np.count_nonzero(rows[:, np.newaxis, :] <= values, axis=2)
            with np.errstate(invalid="ignore", divide="ignore"):
                positions[:, start:stop] = ((below + at_or_below) / (2.0 * size[:, None])).T
            present = size > 0
            lowest[start:stop][present] = np.fmin.reduce(rows[present], axis=1)
            highest[start:stop][present] = np.fmax.reduce(rows[present], axis=1)
        else:
            finite = np.isfinite(block)
            size = np.count_nonzero(finite, axis=0)
            sizes[start:stop] = size
            if not finite.all():  # non-finite draws take part in no comparison
                block = np.where(finite, block, np.nan)
            block = np.sort(block, axis=0)  # NaN sorts last
            values = divergent_draws[:, start:stop]
            for column in range(stop - start):
                n = int(size[column])
                if n == 0:
                    continue
                ordered = block[:n, column]
                below = np.searchsorted(ordered, values[:, column], side="left")
                at_or_below = np.searchsorted(ordered, values[:, column], side="right")
                positions[:, start + column] = (below + at_or_below) / (2.0 * n)
                lowest[start + column], highest[start + column] = ordered[0], ordered[-1]
    # A coordinate without finite draws gives 0 / 0 (counting) or is skipped (sorting).
    positions[~np.isfinite(divergent_draws)] = np.nan
    return positions, sizes, lowest, highest


def _ordinal_percent(position):
    percent = max(1, min(99, int(round(100 * position))))
    suffix = (
        "th" if 10 <= percent % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(percent % 10, "th")
    )
    return f"{percent}{suffix} percentile"


def _stored_divergence_points(stats):
    """The divergence points a ``uturn.fit.SampleStats`` keeps, as ``(n, dim)`` rows,
    without building its dense ``divergence_point``; None for other stats."""
    stored = getattr(stats, "_stored_divergence_points", None)
    return stored() if callable(stored) else None


def _check_divergences(fit, stats, settings):
    if "diverging" not in stats:
        return []
    flags = np.asarray(stats["diverging"], dtype=bool)
    count, total = int(flags.sum()), int(flags.size)
    if count == 0:
        return []
    per_chain = (
        flags.reshape(flags.shape[0], -1).sum(axis=1) if flags.ndim >= 1 else np.array([count])
    )
    message = (
        f"{count} of {total} post-warmup transitions ({count / total:.1%}) ended with a "
        f"divergence (per chain: {', '.join(str(int(c)) for c in per_chain)})."
    )
    details = {
        "count": count,
        "share": count / total,
        "per_chain": per_chain,
        "locations": [],
        "concentrated": [],
    }
    unconstrained = getattr(fit, "unconstrained", None)
    if (
        unconstrained is not None
        and np.ndim(unconstrained) == 3
        and np.shape(unconstrained)[:2] == flags.shape
    ):
        names = getattr(fit, "names", None)
        if names is not None and len(names) != np.shape(unconstrained)[2]:
            names = None
        stored = _stored_divergence_points(getattr(fit, "stats", None))
        if stored is not None and stored.shape[1:] == np.shape(unconstrained)[2:]:
            locations = divergence_locations(unconstrained, flags, names,
                                             _divergent_points=stored)
        else:
            points = (getattr(fit, "stats", None) or {}).get("divergence_point")
            if points is not None and np.shape(points) != np.shape(unconstrained):
                points = None  # a malformed stat should not stop the other checks
            locations = divergence_locations(unconstrained, flags, names, points)
        concentrated = sorted(
            (loc for loc in locations if loc["tail"]), key=lambda loc: loc["p_value"]
        )
        details["locations"] = locations
        details["concentrated"] = [loc["name"] for loc in concentrated]
        for loc in concentrated[:3]:
            where = "low" if loc["tail"] == "low" else "high"
            div_lo, div_hi = loc["divergent_range"]
            all_lo, all_hi = loc["all_range"]
            message += (
                f" They concentrate at {where} values of {loc['name']}: the median divergent draw "
                f"sits at the {_ordinal_percent(loc['median_quantile'])} of all draws "
                f"(divergent draws span [{div_lo:.3g}, {div_hi:.3g}], "
                f"all draws [{all_lo:.3g}, {all_hi:.3g}])."
            )
        funnel = [
            loc["name"]
            for loc in concentrated
            if loc["tail"] == "low" and _is_log_scale_name(loc["name"])
        ]
    else:
        funnel = []
    target_accept = settings.get("target_accept")
    if isinstance(target_accept, (int, float)) and target_accept >= 0.99:
        # Already as high as is useful: a higher target only shrinks the step further.
        raise_accept = (f"note that target_accept is already {target_accept:g}, so raising it "
                        "further will not help")
    elif isinstance(target_accept, (int, float)):
        raise_accept = f"raise target_accept (now {target_accept:g}) towards 0.95 or 0.99"
    else:
        raise_accept = "raise target_accept towards 0.95 or 0.99"
    if funnel:
        advice = (
            "Divergences mean the sampler could not follow the posterior's geometry, so estimates "
            "can be biased even when R-hat looks fine. Divergences at small values of a log-scale "
            f"parameter ({', '.join(funnel)}) are the signature of a funnel in a hierarchical "
            "model: use a non-centered parametrization (theta = mu + tau * z with "
            "z ~ normal(0, 1) instead "
            f"of theta ~ normal(mu, tau)), and/or {raise_accept}."
        )
    else:
        advice = (
            "Divergences mean the sampler could not follow the posterior's geometry, so estimates "
            f"can be biased even when R-hat looks fine. First {raise_accept} (a smaller step "
            "size); if divergences remain, reparametrize the model (e.g. non-centered "
            "hierarchical models). See details['locations'] of this finding, or a pair plot, "
            "for where they occur."
        )
    return [Finding("divergences", WARNING, message, advice, details)]


def _check_tree_depth(stats, settings, max_share):
    if str(settings.get("algorithm", "nuts")).lower() != "nuts":
        return []
    max_depth = settings.get("max_treedepth")
    if "reached_max_treedepth" in stats:
        reached = np.asarray(stats["reached_max_treedepth"], dtype=bool)
    elif "tree_depth" in stats and max_depth is not None:
        # Without the flag, a tree of the maximum depth is the best available proxy
        # (it may also have ended by a U-turn or divergence at that depth).
        reached = np.asarray(stats["tree_depth"]) >= max_depth
    else:
        return []
    count, total = int(reached.sum()), int(reached.size)
    if count == 0:
        return []
    share = count / total
    limit = (
        f"max_treedepth={max_depth}, i.e. {2 ** int(max_depth)} leapfrog steps"
        if max_depth is not None
        else "max_treedepth"
    )
    message = (
        f"{count} of {total} post-warmup transitions ({share:.1%}) stopped at the maximum "
        "tree depth "
        f"({limit}) instead of at a U-turn."
    )
    details = {"count": count, "share": share, "max_treedepth": max_depth, "threshold": max_share}
    if share > max_share:
        bigger = f" (e.g. to {int(max_depth) + 2})" if max_depth is not None else ""
        advice = (
            "This costs efficiency, not validity: trajectories are cut short, so the sampler "
            f"explores slowly. Increase max_treedepth{bigger}, or reparametrize so that the "
            "posterior's scales are more alike; a very small adapted step size (e.g. from a "
            "high target_accept) also makes trees deeper."
        )
        return [Finding("tree_depth", WARNING, message, advice, details)]
    advice = f"Below the {max_share:.0%} warning level; no action needed unless the ESS is low."
    return [Finding("tree_depth", INFO, message, advice, details)]


def _check_ebfmi(stats, threshold):
    if "energy" not in stats:
        return []
    try:
        values = ebfmi(stats["energy"])
    except ValueError as exc:
        return [Finding("ebfmi", WARNING, f"E-BFMI could not be computed: {exc}", "", {})]
    low = np.flatnonzero(values < threshold)
    if low.size == 0:
        return []
    listed = ", ".join(f"chain {i}: {values[i]:.2f}" for i in low)
    message = f"E-BFMI is below {threshold} in {low.size} of {values.size} chains ({listed})."
    advice = (
        "Resampling the momentum moves the sampler between energy levels too slowly for it to "
        "explore the posterior's tails, as happens with heavy tails or a funnel; estimates may "
        "be biased. Reparametrize the model (e.g. non-centered for hierarchical models)."
    )
    return [
        Finding(
            "ebfmi",
            WARNING,
            message,
            advice,
            {"ebfmi": values, "chains": low, "threshold": threshold},
        )
    ]


class _Convergence:
    """R-hat, bulk and tail ESS of every scalar of the posterior that has draws; labels
    are made only for the quantities a finding names (there may be millions)."""

    def __init__(self, posterior, var_names, max_quantities=None):
        # A quantity without draws gets no row (an element count of zero, none at all).
        quantities = [
            q
            for q in _quantities(posterior, var_names)
            if len(q) and q.draws.shape[0] * q.draws.shape[1]
        ]
        self.total = sum(len(q) for q in quantities)
        self.screened = max_quantities is not None and self.total > max_quantities
        if self.screened:
            quantities = _screened_subset(quantities, max_quantities)
        table = _diagnostics_table(quantities, summary=False) if quantities else {}
        empty = np.empty(0)
        self.r_hat = table.get("r_hat", empty)
        self.ess_bulk = table.get("ess_bulk", empty)
        self.ess_tail = table.get("ess_tail", empty)
        self.finite = table.get("finite", empty.astype(bool))
        self._quantities = quantities
        self._starts = np.cumsum([0] + [len(q) for q in quantities])

    def __len__(self):
        return int(self._starts[-1])

    def labels(self, indices):
        """The labels (``theta[3]``) of the scalars at these row indices."""
        indices = np.asarray(indices, dtype=np.intp)
        which = np.searchsorted(self._starts, indices, side="right") - 1
        return [
            self._quantities[q].label(i - self._starts[q])
            for q, i in zip(which.tolist(), indices.tolist())
        ]


class _Elements:
    """Some elements of a `_Quantity`, labelled as in the whole quantity."""

    def __init__(self, quantity, elements):
        self.name, self.shape = quantity.name, quantity.shape
        self.draws = quantity.draws[:, :, elements]
        self._quantity, self._elements = quantity, elements

    def __len__(self):
        return len(self._elements)

    def label(self, element):
        return self._quantity.label(int(self._elements[element]))


#: Elements of a vector quantity screened at once: a block of 4 chains of 1,000 draws
#: is 4 MB, which the passes below reread from the last-level cache (at J = 1,000 a
#: screen took 39 ms in blocks of 128 against 58 ms in blocks of 256).
_SCREEN_BLOCK = 128


def _screen(draws):
    """Cheap per-element warning signs of ``draws`` (chains, draws, k): split R-hat of
    the draws and of their distances to the mean (the classic, not rank-normalised,
    statistic: Gelman et al. 2013, BDA3 eq. 11.4, with Vehtari et al.'s folding), and
    an AR(1) guess of the ESS, ``N (1 - rho_1) / (1 + rho_1)`` from the pooled lag-1
    autocorrelation of the split chains. A few vectorised passes over the draws instead
    of a sort per element; NaN (constant or non-finite draws) reads as the worst.

    Returns
    -------
    (r_hat, ess) : ndarray (k,), ndarray (k,)
    """
    n_chains, n_draws, k = draws.shape
    half = n_draws // 2
    r_hat, ess = np.empty(k), np.empty(k)
    # One buffer for every block, reused in place: a fresh temporary per block and
    # pass costs a page fault per 4 kB (about as much as the arithmetic).
    buffer = np.empty((n_chains, n_draws, min(_SCREEN_BLOCK, k)))
    for start in range(0, k, _SCREEN_BLOCK):
        stop = min(start + _SCREEN_BLOCK, k)
        block = buffer[:, :, : stop - start]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # Centred on one draw, so that the moments below do not cancel for a
            # quantity whose mean is large beside its spread.
            np.subtract(draws[:, :, start:stop], draws[0, 0, start:stop], out=block,
                        dtype=np.float64, casting="unsafe")
            halves, sums, means, squares = _split_moments(block, half)
            lagged = np.concatenate(
                [np.einsum("cdk,cdk->ck", h[:, 1:], h[:, :-1]) for h in halves])
            ends = np.concatenate([h[:, 0] + h[:, -1] for h in halves])
            lagged += (half - 1) * means**2 - means * (2 * sums - ends)
            rho = lagged.sum(axis=0) / squares.sum(axis=0)
            ess[start:stop] = 2 * n_chains * half * (1.0 - rho) / (1.0 + rho)
            r_hat[start:stop] = _classic_split_rhat(means, squares, half)
            np.subtract(block, means.mean(axis=0), out=block)
            np.abs(block, out=block)
            _, _, means, squares = _split_moments(block, half)
            np.fmax(r_hat[start:stop], _classic_split_rhat(means, squares, half),
                    out=r_hat[start:stop])
    r_hat[~np.isfinite(r_hat)] = np.inf
    ess[~np.isfinite(ess)] = 0.0
    return r_hat, ess


def _split_moments(values, half):
    """The two halves of every chain of ``values`` (chains, draws, k) (the middle draw
    dropped when odd), and their sums, means and sums of squared deviations, each
    (2 chains, k)."""
    halves = (values[:, :half], values[:, values.shape[1] - half:])
    sums = np.concatenate([h.sum(axis=1) for h in halves])
    means = sums / half
    squares = np.concatenate([np.einsum("cdk,cdk->ck", h, h) for h in halves])
    squares -= half * means**2
    return halves, sums, means, squares


def _classic_split_rhat(means, squares, half):
    """sqrt(var+ / W) from split-chain means and sums of squared deviations."""
    within = (squares / (half - 1)).mean(axis=0)
    between_over_n = means.var(axis=0, ddof=1)
    return np.sqrt(((half - 1) / half * within + between_over_n) / within)


def _screened_subset(quantities, budget):
    """Every scalar quantity, and the elements of the vector quantities that look worst
    under :func:`_screen` (half the room by R-hat, the rest by ESS), about `budget`
    scalars in all: every element is looked at, the suspicious ones get the full
    rank-normalised R-hat and ESS."""
    scalars = sum(1 for q in quantities if len(q) == 1)
    vectors = [q for q in quantities if len(q) > 1]
    room = max(budget - scalars, 0)
    if not vectors or room == 0 or quantities[0].draws.shape[1] < 8:
        return _evenly_spaced_subset(quantities, budget)
    screens = [_screen(q.draws) for q in vectors]
    r_hat = np.concatenate([r for r, _ in screens])
    ess = np.concatenate([e for _, e in screens])
    by_rhat = np.argsort(-r_hat, kind="stable")[: (room + 1) // 2]
    chosen = np.zeros(r_hat.size, dtype=bool)
    chosen[by_rhat] = True
    by_ess = np.argsort(np.where(chosen, np.inf, ess), kind="stable")
    chosen[by_ess[: max(room - by_rhat.size, 0)]] = True
    starts = np.cumsum([0] + [len(q) for q in vectors])
    subset, next_vector = [], 0
    for quantity in quantities:
        if len(quantity) == 1:
            subset.append(quantity)
            continue
        lo, hi = starts[next_vector], starts[next_vector + 1]
        next_vector += 1
        elements = np.flatnonzero(chosen[lo:hi])
        if elements.size:
            subset.append(_Elements(quantity, elements))
    return subset


def _evenly_spaced_subset(quantities, budget):
    """Every scalar quantity, and evenly spaced elements (first and last included) of
    each vector quantity, about `budget` scalars in all, split in proportion to size."""
    scalars = sum(1 for q in quantities if len(q) == 1)
    vector_total = sum(len(q) for q in quantities if len(q) > 1)
    share = max(budget - scalars, 0) / vector_total if vector_total else 0.0
    subset = []
    for quantity in quantities:
        if len(quantity) == 1:
            subset.append(quantity)
            continue
        keep = min(len(quantity), max(2, int(round(share * len(quantity)))))
        elements = np.unique(np.linspace(0, len(quantity) - 1, keep).round().astype(np.intp))
        subset.append(_Elements(quantity, elements))
    return subset


def _check_convergence(table, n_chains, max_rhat, min_ess_per_chain):
    findings = []
    r_hat, ess_bulk, ess_tail = table.r_hat, table.ess_bulk, table.ess_tail
    with np.errstate(invalid="ignore"):
        high = np.flatnonzero(r_hat > max_rhat)
    if high.size:
        worst = high[np.argsort(-r_hat[high])][:_LISTED]
        listed = ", ".join(
            f"{label} {r_hat[i]:.3f}" for label, i in zip(table.labels(worst), worst)
        )
        message = (
            f"R-hat is above {max_rhat} for {high.size} of {len(table)} quantities "
            f"(worst: {listed})."
        )
        advice = (
            "The chains disagree with each other, so they have not converged to the posterior: "
            "do not use these draws for inference. Run longer (more tune and draws), look at "
            "trace or rank plots for stuck chains or several modes, and consider reparametrizing."
        )
        details = {"names": table.labels(high), "r_hat": r_hat[high], "threshold": max_rhat}
        findings.append(Finding("rhat", WARNING, message, advice, details))
    threshold = min_ess_per_chain * n_chains
    with np.errstate(invalid="ignore"):
        low = np.flatnonzero((ess_bulk < threshold) | (ess_tail < threshold))
    if low.size:
        lowest = np.fmin(ess_bulk, ess_tail)
        worst = low[np.argsort(lowest[low])][:_LISTED]
        listed = ", ".join(
            f"{label} (bulk {ess_bulk[i]:.0f}, tail {ess_tail[i]:.0f})"
            for label, i in zip(table.labels(worst), worst)
        )
        message = (
            f"Bulk or tail ESS is below {min_ess_per_chain} per chain ({threshold:.0f} for "
            f"{n_chains} chain{'s' if n_chains != 1 else ''}) for {low.size} of {len(table)} "
            "quantities "
            f"(lowest: {listed})."
        )
        advice = (
            "With so few effective draws, R-hat, the ESS itself and the posterior intervals are "
            "unreliable. Run more draws, or reparametrize to reduce autocorrelation."
        )
        details = {
            "names": table.labels(low),
            "ess_bulk": ess_bulk[low],
            "ess_tail": ess_tail[low],
            "threshold": threshold,
        }
        findings.append(Finding("ess", WARNING, message, advice, details))
    if len(table) < table.total:
        chosen = ("the elements of each vector that a quick screen of all of them (classic "
                  "split R-hat, lag-1 autocorrelation) found worst" if table.screened
                  else "evenly spaced elements of each vector")
        message = (
            f"R-hat and ESS were computed for {len(table):,} of the {table.total:,} scalar "
            f"quantities: every scalar quantity and {chosen}."
        )
        advice = "Call checks(fit) (or fit.checks()) without max_quantities to check them all."
        findings.append(
            Finding("subset", INFO, message, advice,
                    {"checked": len(table), "total": table.total})
        )
    nonfinite = table.labels(np.flatnonzero(~table.finite))
    if nonfinite:
        message = (
            f"{len(nonfinite)} quantities have NaN or infinite draws "
            f"({', '.join(nonfinite[:_LISTED])}{', ...' if len(nonfinite) > _LISTED else ''}); "
            "their R-hat and ESS are not computed."
        )
        advice = (
            "Check the model's transforms and generated quantities for overflow or invalid "
            "operations."
        )
        findings.append(Finding("nonfinite", WARNING, message, advice, {"names": nonfinite}))
    return findings


def _chain_count(fit, stats, settings):
    for array in list(stats.values()) + list((getattr(fit, "posterior", None) or {}).values()):
        if np.ndim(array) >= 2:
            return int(np.shape(array)[0])
    chains = settings.get("chains")
    return int(chains) if chains is not None else None


def checks(
    fit,
    *,
    max_rhat=1.01,
    min_ess_per_chain=100,
    min_ebfmi=EBFMI_THRESHOLD,
    max_treedepth_share=0.05,
    min_chains=4,
    var_names=None,
    max_quantities=None,
):
    """Check a finished run the way Stan's ``diagnose`` and PyMC do, with advice.

    Findings, in this order (each only when it applies):

    - ``divergences`` (warning): count and share of post-warmup transitions that
      diverged, per chain, and where (`divergence_locations` on the unconstrained draws);
      when divergences concentrate at small values of a log-scale coordinate (a name like
      ``log_tau`` or ``tau_log__``), says that this is a funnel and advises a
      non-centered parametrization or a higher target_accept. details: ``count``,
      ``share``, ``per_chain``, ``locations``, ``concentrated`` (names).
    - ``tree_depth`` (NUTS only): share of transitions that stopped at max_treedepth
      (the ``reached_max_treedepth`` stat; without it, ``tree_depth >= max_treedepth``);
      a warning above `max_treedepth_share` (5%, as PyMC), info below.
    - ``ebfmi`` (warning): chains whose E-BFMI is below `min_ebfmi` (0.3).
    - ``rhat`` (warning): quantities whose rank-normalised R-hat exceeds `max_rhat`.
    - ``ess`` (warning): quantities whose bulk or tail ESS is below
      ``min_ess_per_chain * chains``.
    - ``subset`` (info): R-hat and ESS were computed for only `max_quantities` of
      the scalars.
    - ``nonfinite`` (warning): quantities with NaN or infinite draws.
    - ``chains`` (info): fewer than `min_chains` chains.

    R-hat and ESS are computed for every scalar of ``fit.posterior`` (constant
    quantities, whose R-hat is NaN, are not flagged).

    Parameters
    ----------
    fit : object
        Duck-typed. Uses, when present: ``fit.posterior`` (dict name -> array (chains,
        draws, *shape)); ``fit.unconstrained`` (chains, draws, dim) and ``fit.names``
        (dim coordinate names); ``fit.stats`` (dict of (chains, draws) arrays:
        ``diverging``, ``energy``, ``tree_depth``, ``reached_max_treedepth``, and
        ``divergence_point`` of shape (chains, draws, dim)); ``fit.settings`` (dict with
        ``max_treedepth``, ``target_accept``, ``chains``, ``algorithm``; tree-depth
        checks run only for ``"nuts"``, the default when absent).
    max_rhat : float, default 1.01
    min_ess_per_chain : float, default 100
    min_ebfmi : float, default 0.3
    max_treedepth_share : float, default 0.05
    min_chains : int, default 4
    var_names : sequence of str, optional
        Posterior quantities to check for R-hat and ESS (default all).
    max_quantities : int, optional
        Compute the rank-normalised R-hat and ESS for at most about this many scalars:
        every scalar quantity, and the elements of each vector quantity that a quick
        screen of all of them flags as worst (classic split R-hat of the draws and of
        their folded distances, and an AR(1) ESS from the lag-1 autocorrelation; an
        info finding ``subset`` says so). ``uturn.sample`` uses this to keep its
        automatic checks of large models to a small share of the run; default all.

    Returns
    -------
    list of Finding
        Empty for a clean run.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718.
    Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in
    Hamiltonian Monte Carlo. arXiv:1604.00695.
    Betancourt, M. (2017). A conceptual introduction to Hamiltonian Monte Carlo.
    arXiv:1701.02434 (divergences).
    """
    raw_stats = getattr(fit, "stats", None) or {}
    # Every statistic but divergence_point: a Fit builds that (chains, draws, dim) array,
    # as large as the draws, when it is read, and only a run with divergences needs it.
    stats = {name: raw_stats[name] for name in raw_stats if name != "divergence_point"}
    settings = dict(getattr(fit, "settings", None) or {})
    findings = []
    findings += _check_divergences(fit, stats, settings)
    findings += _check_tree_depth(stats, settings, max_treedepth_share)
    findings += _check_ebfmi(stats, min_ebfmi)
    n_chains = _chain_count(fit, stats, settings)
    posterior = getattr(fit, "posterior", None)
    if posterior is not None:
        table = _Convergence(_posterior_of(fit), var_names, max_quantities)
        findings += _check_convergence(table, n_chains or 1, max_rhat, min_ess_per_chain)
    if n_chains is not None and n_chains < min_chains:
        message = f"Only {n_chains} chain{'s were' if n_chains != 1 else ' was'} run."
        advice = (
            f"Run at least {min_chains} chains: R-hat and ESS diagnose convergence by comparing "
            "chains, and more chains catch more problems (Vehtari et al. 2021)."
        )
        findings.append(
            Finding(
                "chains", INFO, message, advice, {"chains": n_chains, "recommended": min_chains}
            )
        )
    return findings


def warn(findings, stacklevel=2):
    """Issue every finding of warning severity as a `SamplingWarning`.

    Parameters
    ----------
    findings : iterable of Finding
        Usually ``checks(fit)``. Info findings are not issued.
    stacklevel : int, default 2
        Passed to `warnings.warn`: 2 attributes the warning to the caller of `warn`;
        a function that calls `warn` on behalf of its own caller (like ``sample()``)
        passes 3.
    """
    for finding in findings:
        if finding.severity == WARNING:
            text = f"{finding.message} {finding.advice}".strip()
            warnings.warn(text, SamplingWarning, stacklevel=stacklevel)
