"""Plots of a fit: traces, running means, the funnel with its divergences, energy, ranks.

matplotlib is an optional extra (``pip install uturn[plots]``); it is imported only
when a plot is drawn. Every function returns the ``matplotlib.figure.Figure`` it drew
(made with pyplot, so ``plt.show()`` shows it in a script) and never calls
``plt.show()`` itself. In a notebook, end the line with ``;`` or the figure is shown
twice (once by the inline backend, once as the cell's value).

A variable is named as in ``fit[...]``: a posterior quantity (``"log_tau"``), an
unconstrained coordinate (``"theta[0]"`` of the centered model), or one element of a
vector quantity (``"theta[0]"`` of the non-centered model, where ``theta`` is
computed from ``nu``; ``"x[1, 2]"`` for a matrix).

The functions duck-type the fit: they read ``fit.posterior`` (dict name ->
``(chains, draws, *shape)``), ``fit[name]`` when the fit supports it, and
``fit.stats["diverging"]`` / ``fit.stats["energy"]``. A loaded fit
(:func:`uturn.io.load`) works.
"""
import re

import numpy as np

__all__ = ["plot_trace", "plot_cumulative_mean", "plot_divergences", "plot_energy",
           "plot_rank"]

_MATPLOTLIB_MISSING = ("uturn.plots needs matplotlib, an optional extra of uturn: "
                       "pip install uturn[plots]  (or: pip install matplotlib)")
_INDEXED = re.compile(r"^(?P<base>.+?)(?P<index>(?:\[\s*\d+(?:\s*,\s*\d+)*\s*\])+)$")
_DIVERGENT_COLOR = "red"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(_MATPLOTLIB_MISSING) from error
    return plt


def _subplots(nrows=1, ncols=1, figsize=None, **kwargs):
    plt = _pyplot()
    return plt.subplots(nrows, ncols, figsize=figsize, squeeze=False,
                        layout="constrained", **kwargs)


def _single_axes(ax, figsize):
    """The axes to draw on: the one given, or a new figure's only axes."""
    if ax is not None:
        _pyplot()  # fail early, with the install hint, if matplotlib is missing
        return ax.figure, ax
    fig, axes = _subplots(1, 1, figsize=figsize)
    return fig, axes[0, 0]


# ---------------------------------------------------------------------------
# draws by name
# ---------------------------------------------------------------------------

def _lookup(fit, name):
    """``fit[name]``, else ``fit.posterior[name]``, as an array; KeyError if neither."""
    try:
        return np.asarray(fit[name])
    except (KeyError, TypeError, IndexError):
        pass
    posterior = getattr(fit, "posterior", None) or {}
    if name in posterior:
        return np.asarray(posterior[name])
    raise KeyError(name)


def _draws(fit, name):
    """Draws of ``name`` as an array ``(chains, draws, *shape)``.

    Supports element names of vector quantities (``"theta[0]"``) that the fit itself
    does not know (e.g. ``theta`` of the non-centered model is not a coordinate).
    """
    try:
        return _lookup(fit, name)
    except KeyError:
        pass
    match = _INDEXED.match(name)
    if match is not None:
        index = tuple(int(i) for i in re.findall(r"\d+", match.group("index")))
        try:
            base = _lookup(fit, match.group("base").strip())
        except KeyError:
            base = None
        if base is not None:
            shape = base.shape[2:]
            if len(index) != len(shape) or any(i >= s for i, s in zip(index, shape)):
                raise KeyError(f"{name!r}: {match.group('base')!r} has shape {shape} "
                               f"per draw; index {index} does not fit it")
            return base[(slice(None), slice(None)) + index]
    available = list(getattr(fit, "posterior", None) or {})
    names = list(getattr(fit, "names", None) or [])
    raise KeyError(f"{name!r} is neither a posterior quantity ({', '.join(available)}), "
                   f"an element of one (e.g. 'theta[0]') nor a coordinate name "
                   f"({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})")


def _scalar(fit, name):
    """Draws of a scalar ``name`` as a float array ``(chains, draws)``."""
    values = _draws(fit, name)
    if values.ndim == 1:  # one chain
        values = values[np.newaxis]
    if values.ndim != 2:
        raise ValueError(f"{name!r} has shape {values.shape[2:]} per draw; name one "
                         f"element, e.g. {name}[{', '.join('0' * (values.ndim - 2))}]")
    return values.astype(float)


def _components(fit, var_names):
    """``[(label, (chains, draws) array)]``, vector quantities split into elements."""
    if var_names is None:
        var_names = list(fit.posterior)
    elif isinstance(var_names, str):
        var_names = [var_names]
    out = []
    for name in var_names:
        values = _draws(fit, name)
        if values.ndim == 1:
            values = values[np.newaxis]
        if values.ndim == 2:
            out.append((name, values.astype(float)))
            continue
        for index in np.ndindex(*values.shape[2:]):
            label = f"{name}[{', '.join(str(i) for i in index)}]"
            out.append((label, values[(slice(None), slice(None)) + index].astype(float)))
    if not out:
        raise ValueError("no variables to plot")
    return out


def _diverging(fit, shape):
    stats = getattr(fit, "stats", None) or {}
    if "diverging" not in stats:
        return np.zeros(shape, dtype=bool)
    flags = np.asarray(stats["diverging"], dtype=bool)
    return flags.reshape(shape)


def _density(values, grid):
    """Gaussian KDE on ``grid``; a histogram-like fallback when the KDE cannot work."""
    from scipy.stats import gaussian_kde
    if values.size > 1 and np.ptp(values) > 0:
        try:
            return gaussian_kde(values)(grid)
        except (np.linalg.LinAlgError, ValueError):
            pass
    # Constant draws: a spike at the value (the KDE's covariance is singular).
    density = np.zeros_like(grid)
    density[np.argmin(np.abs(grid - values.mean()))] = 1.0
    return density


# ---------------------------------------------------------------------------
# the plots
# ---------------------------------------------------------------------------

def plot_trace(fit, var_names=None, *, divergences=True):
    """Trace plot: per variable, per-chain densities (left) and traces (right).

    Parameters
    ----------
    fit : uturn.Fit
    var_names : str or list of str, optional
        Variables to plot (see the module docstring for names); a vector quantity
        gets one row per element. Default: every posterior quantity.
    divergences : bool, default True
        Mark the draws of divergent transitions with a rug of black ticks at the
        bottom of each trace.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes`` is ``[density_0, trace_0, density_1, trace_1, ...]``; each
        density axes has one line per chain (Gaussian KDE over a common grid), each
        trace axes one line per chain and, with ``divergences``, one scatter of the
        divergent draws (labelled ``"divergent"``).
    """
    components = _components(fit, var_names)
    fig, axes = _subplots(len(components), 2, figsize=(10, 0.6 + 2.1 * len(components)),
                          gridspec_kw={"width_ratios": [1, 2]})
    for row, (label, values) in enumerate(components):
        density_ax, trace_ax = axes[row]
        chains, draws = values.shape
        low, high = np.min(values), np.max(values)
        # Three kernel widths beyond the draws (gaussian_kde's Scott bandwidth,
        # n^(-1/5) sd), so that every chain's density is drawn nearly whole even when
        # a stuck chain sits at one end of the range.
        kernel_width = draws ** -0.2 * np.max(np.std(values, axis=1, ddof=1)) \
            if draws > 1 else 0.0
        pad = max(0.05 * (high - low), 3.0 * kernel_width) if high > low else 0.5
        grid = np.linspace(low - pad, high + pad, 256)
        for chain in range(chains):
            color = f"C{chain % 10}"
            density_ax.plot(grid, _density(values[chain], grid), color=color, lw=1.2,
                            label=f"chain {chain}")
            trace_ax.plot(np.arange(draws), values[chain], color=color, lw=0.6, alpha=0.75,
                          label=f"chain {chain}")
        if divergences:
            flags = _diverging(fit, values.shape)
            _, where = np.nonzero(flags)
            # x in data units, y in axes units: the rug stays at the bottom.
            trace_ax.scatter(where, np.full(where.size, 0.04), marker="|", s=60, color="black",
                             transform=trace_ax.get_xaxis_transform(), clip_on=False,
                             label="divergent", zorder=3)
        density_ax.set_title(label)
        density_ax.set_yticks([])
        trace_ax.set_title(label)
        trace_ax.set_xlim(0, max(draws - 1, 1))
    axes[-1, 0].set_xlabel("value")
    axes[-1, 1].set_xlabel("draw")
    if chains <= 8:
        axes[0, 0].legend(fontsize="small", frameon=False)
    return fig


def plot_cumulative_mean(fit_or_fits, var_name, truth=None, labels=None, notebook=None, *,
                         per_chain=False, ax=None):
    """The running MCMC estimate of ``E[var_name]`` as draws accumulate.

    At draw ``n`` the estimate is the mean of the first ``n`` draws of *every* chain
    (all chains pooled, so the last point is the fit's posterior mean and every point
    uses the same number of draws from each chain). The classic notebook plots the
    chains one after the other instead; pooling keeps one chain's sticky stretch from
    looking like a trend in time.

    Parameters
    ----------
    fit_or_fits : uturn.Fit or list of uturn.Fit
        One fit, or several drawn on the same axes (e.g. centered and non-centered).
    var_name : str
        A scalar variable, e.g. ``"log_tau"``.
    truth : float, optional
        The exact value, drawn as a black dashed line labelled "exact".
    labels : sequence of str, optional
        One label per fit. Default ``"fit 0"``, ``"fit 1"``, ... (``"MCMC"`` for one).
    notebook : float, optional
        A reference value that is itself an MCMC estimate (the classic notebook's
        0.7657852 for E[log tau]), drawn as a grey line labelled as such.
    per_chain : bool, default False
        Also draw each chain's own running mean, thin, in its fit's color.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of in a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Its axes holds one line per fit (then ``chains`` thin lines per fit with
        ``per_chain``), then the ``truth`` line, then the ``notebook`` line.
    """
    fits = list(fit_or_fits) if isinstance(fit_or_fits, (list, tuple)) else [fit_or_fits]
    if labels is None:
        labels = ["MCMC"] if len(fits) == 1 else [f"fit {k}" for k in range(len(fits))]
    labels = list(labels)
    if len(labels) != len(fits):
        raise ValueError(f"{len(labels)} labels for {len(fits)} fits")
    fig, ax = _single_axes(ax, (10, 4))
    for k, (fit, label) in enumerate(zip(fits, labels)):
        values = _scalar(fit, var_name)
        chains, draws = values.shape
        counts = chains * np.arange(1, draws + 1)
        running = np.cumsum(values.sum(axis=0)) / counts
        color = f"C{k % 10}"
        ax.plot(np.arange(1, draws + 1), running, color=color, lw=2,
                label=f"{label}: {running[-1]:.4g}")
        if per_chain:
            for chain in range(chains):
                ax.plot(np.arange(1, draws + 1),
                        np.cumsum(values[chain]) / np.arange(1, draws + 1),
                        color=color, lw=0.7, alpha=0.4)
    if truth is not None:
        ax.axhline(truth, color="black", ls="--", lw=1.5, label=f"exact: {truth:.4g}")
    if notebook is not None:
        ax.axhline(notebook, color="grey", lw=2.5, alpha=0.7,
                   label=f"notebook's MCMC estimate: {notebook:.7g}")
    ax.set_xlabel("draws per chain (all chains pooled)")
    ax.set_ylabel(f"running mean of {var_name}")
    ax.set_title(f"MCMC estimate of E[{var_name}] as draws accumulate")
    ax.legend(fontsize="small")
    return fig


def plot_divergences(fit, x="theta[0]", y="log_tau", other=None, labels=None, *,
                     divergence_points=False, ax=None):
    """Scatter of ``y`` against ``x`` with the draws of divergent transitions highlighted.

    For the centered eight schools this is the funnel: the divergent draws sit in its
    neck (small ``log_tau``), which the sampler cannot enter. Overlaying a
    non-centered fit (``other``) shows the region the centered one misses.

    Parameters
    ----------
    fit : uturn.Fit
    x, y : str
        Scalar variables (see the module docstring for names).
    other : uturn.Fit, optional
        A second fit of the same posterior, drawn beneath ``fit``'s divergences.
    labels : sequence of two str, optional
        Names of ``fit`` and ``other`` in the legend. Default ``("fit", "other")``.
    divergence_points : bool, default False
        Also mark where each divergent trajectory blew up
        (``fit.stats["divergence_point"]``, unconstrained scale; ``x`` and ``y`` must
        then be coordinate names of ``fit``), with black crosses.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of in a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Scatters (``ax.collections``), in order: ``fit``'s non-divergent draws;
        ``other``'s non-divergent draws (with ``other``); ``fit``'s divergent draws
        (label starting ``"<label>: divergent"``; one point per divergent draw, present
        even when there are none); ``other``'s divergent draws (with ``other``); the
        divergence points (with ``divergence_points``).
    """
    labels = list(labels) if labels is not None else ["fit", "other"]
    if len(labels) < (2 if other is not None else 1):
        raise ValueError("labels needs one name per fit")
    fig, ax = _single_axes(ax, (8, 6))

    def coordinates(one):
        xs, ys = _scalar(one, x), _scalar(one, y)
        flags = _diverging(one, xs.shape)
        return xs.ravel(), ys.ravel(), flags.ravel()

    x1, y1, d1 = coordinates(fit)
    ax.scatter(x1[~d1], y1[~d1], s=6, alpha=0.25, color="C0", linewidths=0,
               label=labels[0])
    if other is not None:
        x2, y2, d2 = coordinates(other)
        ax.scatter(x2[~d2], y2[~d2], s=6, alpha=0.25, color="C1", linewidths=0,
                   label=labels[1])
    ax.scatter(x1[d1], y1[d1], s=18, alpha=0.9, color=_DIVERGENT_COLOR, edgecolors="black",
               linewidths=0.3, label=f"{labels[0]}: divergent ({int(d1.sum())})", zorder=3)
    title = (f"{y} against {x}: {int(d1.sum())} divergent transitions "
             f"({100 * d1.mean():.1f}%)")
    if other is not None:
        ax.scatter(x2[d2], y2[d2], s=24, marker="D", alpha=0.9, color="gold",
                   edgecolors="black", linewidths=0.3,
                   label=f"{labels[1]}: divergent ({int(d2.sum())})", zorder=3)
        title = (f"{y} against {x}: {labels[0]} {int(d1.sum())} divergent "
                 f"({100 * d1.mean():.1f}%), {labels[1]} {int(d2.sum())}")
    if divergence_points:
        names = list(getattr(fit, "names", None) or [])
        if x not in names or y not in names:
            raise ValueError(f"divergence_points=True needs x and y among the fit's "
                             f"coordinate names ({', '.join(names)}): divergence points "
                             f"are on the unconstrained scale")
        points = np.asarray(fit.stats["divergence_point"])
        points = points.reshape(-1, points.shape[-1])
        px, py = points[:, names.index(x)], points[:, names.index(y)]
        keep = np.isfinite(px) & np.isfinite(py)
        ax.scatter(px[keep], py[keep], s=20, marker="x", color="black", linewidths=0.8,
                   label=f"{labels[0]}: where divergent trajectories blew up", zorder=4)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    legend = ax.legend(fontsize="small", markerscale=1.5)
    handles = getattr(legend, "legend_handles", None)  # matplotlib >= 3.7
    if handles is None:
        handles = getattr(legend, "legendHandles", [])
    for handle in handles:
        handle.set_alpha(1)  # the faint draws would give invisible legend markers
    return fig


def plot_energy(fit, *, bins=40, ax=None):
    """Marginal energy and energy-transition distributions, E-BFMI in the title.

    When the distribution of energy changes between draws (the transition) is much
    narrower than the marginal energy distribution, momentum resampling cannot move
    the chain across energy levels fast enough and the chain explores the tails
    slowly (Betancourt 2016). E-BFMI below 0.3 flags it.

    Parameters
    ----------
    fit : uturn.Fit
        Needs ``fit.stats["energy"]`` ``(chains, draws)``.
    bins : int, default 40
        Number of histogram bins, shared by both histograms.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of in a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Its axes holds two histograms (``ax.containers``): the marginal energy
        ``E - mean(E)`` over all draws (label "marginal energy (centered)"), then the
        transitions ``E[n] - E[n-1]`` within chains (label "energy transition"); the
        title lists E-BFMI per chain.
    """
    from .diagnostics import EBFMI_THRESHOLD, ebfmi
    energy = np.asarray(fit.stats["energy"], dtype=float)
    if energy.ndim == 1:
        energy = energy[np.newaxis]
    fig, ax = _single_axes(ax, (7, 4.5))
    marginal = (energy - energy.mean()).ravel()
    transition = np.diff(energy, axis=1).ravel()
    both = np.concatenate([marginal, transition])
    edges = np.linspace(both.min(), both.max(), bins + 1) if both.size and np.ptp(both) > 0 \
        else bins
    ax.hist(marginal, bins=edges, density=True, alpha=0.55, color="C0",
            label="marginal energy (centered)")
    ax.hist(transition, bins=edges, density=True, alpha=0.55, color="C1",
            label="energy transition")
    values = ebfmi(energy)
    shown = ", ".join(f"{v:.2f}" + (" (low)" if v < EBFMI_THRESHOLD else "")
                      for v in values)
    ax.set_title(f"E-BFMI per chain: {shown}")
    ax.set_xlabel("energy minus its mean; energy change between draws")
    ax.set_yticks([])
    ax.legend(fontsize="small")
    return fig


def plot_rank(fit, var_names=None, *, bins=None):
    """Rank histograms per chain, ranks taken over all chains pooled.

    If the chains sample the same distribution, each chain's ranks are uniform: bars
    of equal height within the grey band. A chain stuck in one region shows bars piled
    at one end (Vehtari et al. 2021).

    Parameters
    ----------
    fit : uturn.Fit
    var_names : str or list of str, optional
        Variables to plot; a vector quantity gets one row per element. Default: every
        posterior quantity.
    bins : int, optional
        Histogram bins. Default ``min(20, max(1, draws // 10))``.

    Returns
    -------
    matplotlib.figure.Figure
        One row per variable, one column per chain; each axes holds ``bins`` bars
        (counts summing to the draws of that chain), a dashed line at the uniform
        expectation ``draws / bins`` and a grey band holding 99% of uniform counts.
    """
    from scipy.stats import binom, rankdata
    components = _components(fit, var_names)
    chains, draws = components[0][1].shape
    if bins is None:
        bins = min(20, max(1, draws // 10))
    fig, axes = _subplots(len(components), chains,
                          figsize=(2.2 * chains + 1, 0.6 + 1.8 * len(components)),
                          sharex=True, sharey="row")
    total = chains * draws
    edges = np.linspace(0.5, total + 0.5, bins + 1)
    expected = draws / bins
    low, high = binom.ppf([0.005, 0.995], draws, 1.0 / bins)
    for row, (label, values) in enumerate(components):
        ranks = rankdata(values.ravel(), method="average").reshape(values.shape)
        for chain in range(chains):
            ax = axes[row, chain]
            counts, _ = np.histogram(ranks[chain], bins=edges)
            ax.axhspan(low, high, color="grey", alpha=0.2, lw=0)
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge",
                   color=f"C{chain % 10}", alpha=0.85, edgecolor="white", linewidth=0.3)
            ax.axhline(expected, color="black", ls="--", lw=0.8)
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"chain {chain}")
        axes[row, 0].set_ylabel(label)
    for ax in axes[-1]:
        ax.set_xlabel("rank (all chains)")
    fig.suptitle("Rank histograms: uniform when the chains agree")
    return fig
