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



def ndtri(probabilities):
    """The inverse normal CDF (what scipy.stats.norm.ppf calls).

    scipy.special is imported on first use: it costs 0.2 s, a third of ``import uturn``.
    """
    from scipy.special import ndtri as inverse_normal_cdf
    return inverse_normal_cdf(probabilities)


def ndtr(values):
    """The normal CDF; scipy.special is imported on first use (see `ndtri`)."""
    from scipy.special import ndtr as normal_cdf
    return normal_cdf(values)

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
