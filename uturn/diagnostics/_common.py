"""Shared building blocks of the diagnostics: input checks, chain splitting, folding and
rank normalisation (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, section 4).

Everything here is plain numpy/scipy and works on arrays of shape (chains, draws).
"""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = [
    "MIN_DRAWS_PER_CHAIN",
    "as_draws",
    "split_chains",
    "fold",
    "rank_normalize",
    "is_constant",
    "enough_draws",
    "too_short_to_split",
]

#: Fewest draws per (split) chain for which R-hat and ESS are computed; fewer gives NaN,
#: as in Stan's ``analyze/mcmc`` (ALGORITHM.md 1.8): shorter chains say nothing useful.
MIN_DRAWS_PER_CHAIN = 4

# From this many values on, two independent halves of a diagnostic (the bulk and the
# folded R-hat) run in two threads; numpy and scipy release the GIL in the sorts and
# array passes that dominate, so on two free cores this almost halves the time.
_THREADED_MIN_VALUES = 1 << 20

# Below this many values a plain argsort is as fast as the packed-key sort below.
_PACKED_SORT_MIN_SIZE = 1 << 15
_SIGN_BIT = np.uint64(1 << 63)



# Wichura (1988), algorithm AS 241, PPND16: rational approximations of Phi^{-1} in
# three regions, accurate to about 1e-16. Coefficients from highest degree down
# (numpy.polyval's order); each denominator's constant term is 1.
_AS241_CENTRAL = (
    np.array([2.5090809287301226727e3, 3.3430575583588128105e4, 6.7265770927008700853e4,
              4.5921953931549871457e4, 1.3731693765509461125e4, 1.9715909503065514427e3,
              1.3314166789178437745e2, 3.3871328727963666080e0]),
    np.array([5.2264952788528545610e3, 2.8729085735721942674e4, 3.9307895800092710610e4,
              2.1213794301586595867e4, 5.3941960214247511077e3, 6.8718700749205790830e2,
              4.2313330701600911252e1, 1.0]))
_AS241_NEAR_TAIL = (
    np.array([7.74545014278341407640e-4, 2.27238449892691845833e-2, 2.41780725177450611770e-1,
              1.27045825245236838258e0, 3.64784832476320460504e0, 5.76949722146069140550e0,
              4.63033784615654529590e0, 1.42343711074968357734e0]),
    np.array([1.05075007164441684324e-9, 5.47593808499534494600e-4, 1.51986665636164571966e-2,
              1.48103976427480074590e-1, 6.89767334985100004550e-1, 1.67638483018380384940e0,
              2.05319162663775882187e0, 1.0]))
_AS241_FAR_TAIL = (
    np.array([2.01033439929228813265e-7, 2.71155556874348757815e-5, 1.24266094738807843860e-3,
              2.65321895265761230930e-2, 2.96560571828504891230e-1, 1.78482653991729133580e0,
              5.46378491116411436990e0, 6.65790464350110377720e0]),
    np.array([2.04426310338993978564e-15, 1.42151175831644588870e-7, 1.84631831751005468180e-5,
              7.86869131145613259100e-4, 1.48753612908506148525e-2, 1.36929880922735805310e-1,
              5.99832206555887937690e-1, 1.0]))


def _rational(coefficients, r):
    numerator, denominator = coefficients
    return np.polyval(numerator, r) / np.polyval(denominator, r)


def ndtri(probabilities):
    """The inverse normal CDF ``Phi^{-1}(p)`` (what ``scipy.special.ndtri`` computes).

    Wichura's algorithm AS 241 (PPND16), vectorised: for ``|p - 1/2| <= 0.425`` a
    rational function of ``0.180625 - (p - 1/2)^2``, in the tails one of
    ``r = sqrt(-log(min(p, 1 - p)))`` (split at ``r = 5``); relative error about 1e-16.
    ``p = 0`` and ``p = 1`` give -inf and inf; p outside [0, 1] or NaN gives NaN.

    Written out rather than taken from scipy.special because importing scipy.special
    costs 0.1 s (scipy 1.17, this machine), all of it inside a new process's first
    ``uturn.sample`` call, whose diagnostics need only a few thousand normal scores.

    Parameters
    ----------
    probabilities : array_like of float

    Returns
    -------
    numpy.ndarray
        ``Phi^{-1}`` of every value, same shape.

    References
    ----------
    Wichura, M. J. (1988). Algorithm AS 241: the percentage points of the normal
    distribution. Journal of the Royal Statistical Society C 37(3), 477-484.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    q = p - 0.5
    z = np.empty_like(q)
    central = np.abs(q) <= 0.425
    q_central = q[central]
    z[central] = q_central * _rational(_AS241_CENTRAL, 0.180625 - q_central * q_central)
    tail = ~central
    if tail.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            q_tail = q[tail]
            r = np.sqrt(-np.log(np.minimum(p[tail], 1.0 - p[tail])))
            near = r <= 5.0
            magnitude = np.where(near, _rational(_AS241_NEAR_TAIL, r - 1.6),
                                 _rational(_AS241_FAR_TAIL, r - 5.0))
            magnitude[r == np.inf] = np.inf       # p = 0 or 1
            z[tail] = np.copysign(magnitude, q_tail)
    z[~((p >= 0.0) & (p <= 1.0))] = np.nan
    return z if z.ndim else z[()]


def as_draws(x, name="x", caller=None):
    """Validate draws and return them as a float64 array of shape (chains, draws).

    Parameters
    ----------
    x : array_like
        Draws of one scalar quantity, shape (chains, draws). A 1-D array is read as a
        single chain. Boolean and integer input is cast to float64.
    name : str
        The argument's name, used in error messages.
    caller : str, optional
        The public function's name, used in error messages.

    Returns
    -------
    numpy.ndarray
        Float64 array of shape (chains, draws), C-contiguous (a copy only when needed).

    Raises
    ------
    ValueError
        If `x` is 0-d or has more than two dimensions, has no chain, is not real-valued,
        or contains NaN or infinite values.
    """
    where = f"{caller}(): " if caller else ""
    try:
        array = np.asarray(x)
    except Exception as exc:  # e.g. ragged nested lists
        raise ValueError(f"{where}argument {name!r} could not be read as an array: {exc}") from exc
    if (
        array.dtype == object
        or np.iscomplexobj(array)
        or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_)
    ):
        raise ValueError(
            f"{where}argument {name!r} must hold real numbers (float, int or bool), "
            f"got dtype {array.dtype}"
        )
    if array.ndim == 1:
        # A single chain: the documented convention for 1-D input.
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ValueError(
            f"{where}argument {name!r} must have shape (chains, draws) or (draws,), "
            f"got shape {np.shape(x)}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{where}argument {name!r} has no chains (shape {array.shape})")
    array = np.ascontiguousarray(array, dtype=np.float64)
    # A finite sum proves every value finite in one pass without a temporary; only when
    # it is not (a NaN or inf, or an overflow of the sum) is every value checked.
    if not math.isfinite(array.sum()) and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))
        chain, draw = bad[0]
        raise ValueError(
            f"{where}argument {name!r} contains {len(bad)} non-finite value(s) "
            f"(NaN or inf), the first at chain {chain}, draw {draw} "
            f"(value {array[chain, draw]}); diagnostics need finite draws"
        )
    return array


def split_chains(x):
    """Cut every chain in two halves, doubling the chains and halving the draws.

    With an odd number of draws the middle draw is left out, as Stan
    (``analyze/mcmc/split_chains.hpp``), posterior (``.split_chains``) and ArviZ do.

    Parameters
    ----------
    x : numpy.ndarray
        Shape (chains, draws).

    Returns
    -------
    numpy.ndarray
        Shape (2 * chains, draws // 2), rows ordered first half of chain 0, second half
        of chain 0, first half of chain 1, ... (no diagnostic depends on the order of
        chains). A view of `x` when it is C-contiguous with an even number of draws.
    """
    n_chains, n_draws = x.shape
    half = n_draws // 2
    if n_draws % 2 == 1:
        x = np.concatenate([x[:, :half], x[:, half + 1 :]], axis=1)
    return x.reshape(2 * n_chains, half)


def fold(x):
    """Fold draws around their median: ``|x - median(x)|`` (Vehtari et al. 2021, sec. 4).

    The median is taken over all values of `x` (all chains). The folded draws measure
    spread, so R-hat on them detects chains that differ in scale rather than location.
    """
    return np.abs(x - np.median(x))


def is_constant(x):
    """True if all values of `x` are equal (then R-hat and ESS are undefined)."""
    flat = x.ravel()
    return flat.size == 0 or bool(np.all(flat == flat[0]))


def enough_draws(x):
    """True if every chain of `x` (shape (chains, draws)) has enough draws for R-hat/ESS."""
    return x.shape[1] >= MIN_DRAWS_PER_CHAIN


def too_short_to_split(x):
    """True if the halves of the chains of `x` (chains, draws) are too short: fewer than
    ``2 * MIN_DRAWS_PER_CHAIN`` draws per chain, for which split diagnostics are NaN."""
    return x.shape[1] // 2 < MIN_DRAWS_PER_CHAIN


def both(first, second, size):
    """Return ``(first(), second())``, running `second` in a worker thread when `size`
    (the number of values the two work on) is large enough to repay a thread.

    The results are the same either way; only the elapsed time differs.
    """
    if size < _THREADED_MIN_VALUES:
        return first(), second()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(second)
        first_result = first()
        return first_result, pending.result()


def _order_preserving_bits(values):
    """Map float64 values to uint64 keys with the same order (finite input, no -0.0).

    Positive floats keep their bits with the sign bit set; negative floats have all
    bits flipped. Then unsigned integer order is floating-point order (except that
    -0.0 would sort before +0.0, so the caller turns -0.0 into +0.0 first).
    """
    keys = values.view(np.uint64)
    flip = keys >> np.uint64(63)
    np.negative(flip, out=flip)  # all ones for negative values, zero otherwise
    flip |= _SIGN_BIT
    flip ^= keys
    return flip


def _sorting_permutation(values):
    """Return ``(order, may_have_ties)``: a permutation that sorts `values` (1-D, finite).

    Tied values come out in any order. ``may_have_ties`` is False only when no two
    values are equal, which lets the caller skip the search for ties.

    For large arrays this is about twice as fast as ``np.argsort``, which numpy does
    not vectorise while it sorts plain integers with SIMD. Each uint64 key holds the
    high bits of the value's order-preserving bit pattern and, in its low bits, the
    element's index; sorting the keys sorts the values, except that values sharing
    the high bits (equal, or within about ``2**index_bits`` ulp) come out in index
    order. Those few runs are then re-sorted exactly by their full bit patterns.
    """
    size = values.size
    index_bits = int(max(size - 1, 1)).bit_length()
    if size < _PACKED_SORT_MIN_SIZE or index_bits > 40:  # 40: keep >= 24 bits of value
        return np.argsort(values), True
    index_mask = np.uint64((1 << index_bits) - 1)
    full = _order_preserving_bits(values + 0.0)  # + 0.0 turns -0.0 into +0.0
    keys = full & ~index_mask
    keys |= np.arange(size, dtype=np.uint64)
    keys.sort()
    order = np.bitwise_and(keys, index_mask).view(np.intp)
    keys &= ~index_mask
    shared = keys[1:] == keys[:-1]
    n_shared = np.count_nonzero(shared)
    if n_shared == 0:
        return order, False
    if n_shared > size // 8:
        # Heavily tied data (e.g. discrete values): cheaper to argsort from scratch.
        return np.argsort(values), True
    involved = np.zeros(size, dtype=bool)
    involved[:-1] |= shared
    involved[1:] |= shared
    run_id = np.cumsum(np.concatenate(([True], ~shared)))
    positions = np.flatnonzero(involved)
    members = order[positions]
    # Within each run of equal high bits, order by the full key; runs stay in place.
    order[positions] = members[np.lexsort((full[members], run_id[positions]))]
    return order, True


def _normal_scores_without_ties(size):
    """``ndtri((r - 3/8) / (size + 1/4))`` for ranks r = 1..size.

    Computed for the lower half and mirrored (the scores are antisymmetric), which is
    twice as fast and more accurate in the upper tail.
    """
    half = (size + 1) // 2
    lower = ndtri((np.arange(1, half + 1) - 0.375) / (size + 0.25))
    scores = np.empty(size)
    scores[size - half :] = -lower[::-1]
    scores[:half] = lower
    return scores


def rank_normalize(x):
    """Rank-normalise draws pooled over all chains (Vehtari et al. 2021, sec. 4).

    Every value is replaced by its rank r among all S values (ties get the average of
    their ranks, which keeps discrete quantities discrete), and the rank by the normal
    score ``z = Phi^{-1}((r - 3/8) / (S + 1/4))`` (Blom 1958).

    Parameters
    ----------
    x : numpy.ndarray
        Finite float64 array of any shape.

    Returns
    -------
    numpy.ndarray
        Normal scores, same shape as `x`.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 4.
    """
    flat = np.ascontiguousarray(x, dtype=np.float64).ravel()
    size = flat.size
    # The scores of untied ranks depend on S only: for large arrays they are computed
    # in another thread while the values are sorted (and dropped if there are ties).
    (order, may_have_ties), untied_scores = both(
        lambda: _sorting_permutation(flat), lambda: _normal_scores_without_ties(size), size
    )
    if may_have_ties:
        sorted_values = flat[order]
        tied_with_next = sorted_values[1:] == sorted_values[:-1]
        may_have_ties = bool(tied_with_next.any())
    if not may_have_ties:
        scores_sorted = untied_scores
    else:
        # Runs of equal values share the mean of the ranks they span:
        # positions start..end-1 (0-based) hold ranks start+1..end, mean (start+1+end)/2.
        starts_run = np.concatenate(([True], ~tied_with_next))
        run_starts = np.flatnonzero(starts_run)
        run_ends = np.append(run_starts[1:], size)
        mean_ranks = (run_starts + 1 + run_ends) / 2.0
        ranks_sorted = np.repeat(mean_ranks, run_ends - run_starts)
        scores_sorted = ndtri((ranks_sorted - 0.375) / (size + 0.25))
    scores = np.empty(size)
    scores[order] = scores_sorted
    return scores.reshape(np.shape(x))
