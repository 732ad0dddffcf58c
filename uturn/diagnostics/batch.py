"""R-hat, ESS and MCSE of many scalar quantities at once, vectorised over quantities.

`convergence_table` gives, for every column of a (chains, draws, k) array, what `rhat`,
`ess_bulk` and `ess_tail` (and, for `summary`, the mean, sd, quantiles, `mcse_mean` and
`mcse_sd`) give for that column alone. The per-quantity functions sort and transform
one small array at a time; for the few thousand draws of a typical run their call
overhead costs more than their arithmetic. Here every step runs on a block of a few
dozen quantities at once, in buffers reused from block to block:

- one sort per quantity gives the ranks of the split draws and their quantiles: the
  low mantissa bits of every draw are replaced by its index and these packed values
  sorted (numpy sorts floats with SIMD, about twice as fast as an argsort), the index
  coming back with each; runs of values that share the remaining bits are re-sorted
  exactly;
- the folded draws are sorted by merging the two halves of that sort (along the sorted
  draws, the distance to the median falls and then rises);
- the autocovariances are summed directly for a few lags, and only quantities whose
  Geyer sum has not ended by then get an FFT, with the chains' power spectra added
  before one inverse transform;
- the chain means and centred bulk scores serve both R-hat and ESS;
- with many quantities, up to four threads share them (numpy and scipy release the
  GIL in the sorts, transforms and array passes).

Every step uses the same floating-point operations as the per-quantity functions,
except that the autocovariances and the within-chain sums of squares are summed in
another order (about 1e-15 apart); where that could change where Geyer's sum ends (a
pair sum within 1e-9 of zero), the ESS is recomputed by the per-quantity function.
Quantities with more than `_MAX_BATCH_VALUES` draws go through the per-quantity
functions: for them the call overhead is negligible, and those functions have a sort
and a lag schedule tuned for long chains.
"""

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from ._common import (
    MIN_DRAWS_PER_CHAIN,
    _normal_scores_without_ties,
    ndtri,
    enough_draws,
    is_constant,
    rank_normalize,
    split_chains,
)
from .ess import _TAIL_PROBABILITIES, _ess_of_chains, _ess_tail_of_draws
from .mcse import _mcse_mean_of_draws, _mcse_sd_of_draws
from .rhat import _potential_scale_reduction, _rhat_tail_of_split

__all__ = ["convergence_table", "CONVERGENCE_COLUMNS", "SUMMARY_STATISTICS"]

#: Columns of `convergence_table`, always present.
CONVERGENCE_COLUMNS = ("r_hat", "ess_bulk", "ess_tail", "finite")
#: Further columns of ``convergence_table(..., summary=True)``.
SUMMARY_STATISTICS = ("mean", "sd", "q5", "q50", "q95", "mcse_mean", "mcse_sd")

_SUMMARY_PROBABILITIES = (0.05, 0.5, 0.95)

# Quantities are processed in blocks of about this many draws: enough that numpy's
# per-call overhead is spread over many quantities, few enough that a block's buffers
# stay in cache.
_BLOCK_VALUES = 1 << 17

# A quantity with more draws than this (e.g. 4 chains of more than 16,384) goes through
# the per-quantity functions. Up to it, the indices of a block take at most 17 low
# bits of the packed values, which keeps 35 mantissa bits: distinct values rarely
# share them (about one quantity in 10,000 of 4,000 continuous draws has such a pair).
_MAX_BATCH_VALUES = 1 << 16

# Lags whose autocovariances are summed directly before an FFT is tried, in stages
# (the second only for quantities whose sum has not ended in the first): Geyer's sum
# ends within them for most quantities of a well-mixing run, and for so few lags the
# dot products cost less than a transform.
_DIRECT_LAGS = (8, 20)

# The FFT stage after the direct one pads for this many lags (or N/8 when more); only
# quantities whose sum runs past those get the full-length transform.
_FFT_STAGE_LAGS = 40

# A Geyer pair sum (or the last even autocorrelation) this close to zero decides where
# the sum ends by its rounding error; then `ess._ess_of_chains` recomputes the ESS.
_UNDECIDED_WITHIN = 1e-9

# Above this length a BLAS dot product may start threads, which on a busy machine costs
# far more than it saves; below it np.vecdot (a BLAS ddot per row) is about twice as
# fast as einsum.
_SERIAL_DOT_MAX = 8192

# Draws per step when a block is transposed out of (chains, draws, k) input, so that
# the rows read stay in cache while all their quantities are written.
_TRANSPOSE_DRAWS = 256

# With at least this many blocks per thread, quantities are shared among up to
# _MAX_THREADS threads (more gain little: the many small numpy calls hold the GIL).
_BLOCKS_PER_THREAD = 2
_MAX_THREADS = 4


@lru_cache(maxsize=1)
def _cpu_count():
    """``os.cpu_count()``, read once: it reads /sys at each call (80 us, 1% of the checks
    of an eight-schools run)."""
    return os.cpu_count() or 1


def convergence_table(draws, *, summary=False):
    """R-hat, bulk and tail ESS (and the `summary` statistics) of many quantities.

    Column ``j`` of every result is what the per-quantity functions give for
    ``draws[:, :, j]``: ``r_hat`` is `rhat` (the larger of the bulk and the folded
    rank-normalised split R-hat), ``ess_bulk`` is `ess_bulk`, ``ess_tail`` is
    `ess_tail`, equal to them up to rounding (about 1e-15 relative). Quantities with NaN
    or infinite draws get NaN diagnostics and ``finite`` False instead of an error;
    constant quantities and chains of fewer than 8 draws give NaN, as there.

    Parameters
    ----------
    draws : array_like
        Shape (chains, draws, k): k scalar quantities. Booleans and integers are cast
        to float. They are processed in blocks of a few dozen, so the memory used
        beyond the input and the results does not grow with k.
    summary : bool, default False
        Also compute the other columns of `summary`: ``mean``, ``sd`` (denominator
        S - 1), ``q5``, ``q50``, ``q95`` (linear interpolation, numpy's default),
        ``mcse_mean`` and ``mcse_sd`` (as `mcse_mean` and `mcse_sd`). The first five
        are computed for non-finite quantities too (as numpy does).

    Returns
    -------
    dict of str to numpy.ndarray
        Arrays of shape (k,): float64 ``r_hat``, ``ess_bulk``, ``ess_tail``, boolean
        ``finite`` (all draws finite), and with ``summary=True`` the float64 columns
        `SUMMARY_STATISTICS`.

    Raises
    ------
    ValueError
        If `draws` does not have three dimensions or does not hold real numbers.

    Notes
    -----
    With many quantities (a few hundred of 4,000 draws) up to four threads share the
    work. The buffers of the last call (about 12 MB for 4,000 draws a quantity) are
    kept for the next: on a machine where fresh memory is slow to map, repeated calls
    are then about twice as fast.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Sections 3 and 4.
    Geyer, C. J. (1992). Practical Markov chain Monte Carlo. Statistical Science 7(4).
    """
    array = np.asarray(draws)
    if array.ndim != 3:
        raise ValueError(
            f"convergence_table(): draws must have shape (chains, draws, k), got {array.shape}"
        )
    if (
        array.dtype == object
        or np.iscomplexobj(array)
        or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_)
    ):
        raise ValueError(
            f"convergence_table(): draws must hold real numbers, got dtype {array.dtype}"
        )
    return _table([array], summary)


def _table(arrays, summary):
    """`convergence_table` of the quantities of several (chains, draws, k_i) arrays with
    the same chains and draws, in order. Blocks span arrays, so that a model with many
    small vector quantities still gets large blocks."""
    n_chains, n_draws = arrays[0].shape[:2]
    total = sum(array.shape[2] for array in arrays)
    columns = CONVERGENCE_COLUMNS + (SUMMARY_STATISTICS if summary else ())
    table = {name: np.full(total, np.nan) for name in columns}
    table["finite"] = np.zeros(total, dtype=bool)
    if total == 0 or n_chains * n_draws == 0:
        table["finite"][:] = True  # vacuously; no diagnostics either way
        return table
    block_size = min(total, max(1, _BLOCK_VALUES // (n_chains * n_draws)))
    n_threads = min(_MAX_THREADS, _cpu_count(), total // (_BLOCKS_PER_THREAD * block_size))
    if n_threads <= 1:
        _table_part(arrays, 0, total, block_size, summary, table)
        return table
    # numpy and scipy release the GIL in the sorts, FFTs and array passes that dominate,
    # so threads working on different quantities run largely in parallel (1.5 times
    # as fast with two threads on a shared two-core machine).
    bounds = np.linspace(0, total, n_threads + 1).astype(int)
    with ThreadPoolExecutor(max_workers=n_threads - 1) as pool:
        pending = [
            pool.submit(_table_part, arrays, start, stop, block_size, summary, table)
            for start, stop in zip(bounds[1:-1], bounds[2:])
        ]
        _table_part(arrays, bounds[0], bounds[1], block_size, summary, table)
        for future in pending:
            future.result()
    return table


def _table_part(arrays, start, stop, block_size, summary, table):
    """Fill rows start..stop-1 of `table` (quantities counted across `arrays`)."""
    n_chains, n_draws = arrays[0].shape[:2]
    pieces, offset = [], 0
    for array in arrays:
        low, high = max(start - offset, 0), min(stop - offset, array.shape[2])
        if low < high:
            pieces.append(array[:, :, low:high])
        offset += array.shape[2]
    block_size = min(block_size, stop - start)
    with _arena(_Workspace.nbytes(block_size, n_chains, n_draws, summary)) as arena:
        workspace = _Workspace(arena, block_size, n_chains, n_draws, summary)
        for n_rows in _fill_blocks(pieces, workspace):
            block = _block_table(workspace, n_rows, summary)
            for name, column in block.items():
                table[name][start : start + n_rows] = column
            start += n_rows


def _fill_blocks(arrays, ws):
    """Copy the quantities of `arrays` block by block into ``ws.draws`` (rows, chains,
    draws), yielding the number of rows filled each time."""
    buffer = ws.draws
    capacity = buffer.shape[0]
    filled = 0
    for array in arrays:
        start = 0
        while start < array.shape[2]:
            stop = min(start + capacity - filled, array.shape[2])
            target = buffer[filled : filled + stop - start]
            _transpose_into(array[:, :, start:stop], target, ws.staging)
            filled += stop - start
            start = stop
            if filled == capacity:
                yield filled
                filled = 0
    if filled:
        yield filled


def _transpose_into(source, target, staging):
    """``target[q, c, d] = source[c, d, q]``. The quantities of one draw are first
    copied side by side into `staging` (rows of the input), then transposed a few
    hundred draws at a time: a direct strided copy reads a new cache line per value."""
    n_chains, n_draws, n_quantities = source.shape
    if n_quantities == 1:
        np.copyto(target[0], source[:, :, 0], casting="unsafe")
        return
    rows = source.reshape(n_chains * n_draws, n_quantities)  # a copy if not viewable
    stage = staging[: rows.size].reshape(rows.shape)
    np.copyto(stage, rows, casting="unsafe")
    flat_target = target.reshape(n_quantities, n_chains * n_draws)
    for start in range(0, n_chains * n_draws, _TRANSPOSE_DRAWS):
        stop = start + _TRANSPOSE_DRAWS
        flat_target[:, start:stop] = stage[start:stop].T


class _Workspace:
    """Buffers for blocks of up to `rows` quantities, views into one arena.

    Fresh memory is expensive: every new page is a page fault, and for a few thousand
    draws a quantity the faults of a dozen fresh temporaries per block took as long as
    the arithmetic. So every step writes into these buffers, several of which are
    shared by steps that do not overlap, and the arena of the last call is kept (see
    `_arena`) for the next.
    """

    def __init__(self, arena, rows, n_chains, n_draws, summary):
        self.n_chains, self.n_draws = n_chains, n_draws
        n_split_chains, n_split_draws = 2 * n_chains, n_draws // 2
        size = n_split_chains * n_split_draws
        self.n_series = 5 if summary else 3
        self.diagnosable = (
            n_split_draws >= MIN_DRAWS_PER_CHAIN and n_chains * n_draws <= _MAX_BATCH_VALUES
        )
        self._arena, self._used = arena, 0
        self.draws = self._take(np.float64, (rows, n_chains, n_draws))
        self.squared = self._take(np.float64, (rows, n_chains * n_draws)) if summary else None
        if not self.diagnosable:
            self.staging = self._take(np.float64, (rows * n_chains * n_draws,))
            return
        odd = n_draws % 2 == 1
        self.split = self._take(np.float64, (rows, n_split_chains, n_split_draws)) if odd else None
        self.keys = self._take(np.uint64, (rows, size))
        self.order = self._take(np.intp, (rows, size))
        self.shared = self._take(np.bool_, (rows, size - 1))
        # The sorted draws, then the rank-normalised draws.
        self.sorted_values = self._take(np.float64, (rows, size))
        self.scores = self.sorted_values
        # In turn: the pair bits of a tie search, the folded draws, the sorted normal
        # scores, deviations.
        self.scratch = self._take(np.float64, (rows, size))
        self.pair_bits = self.scratch.view(np.uint64)[:, : size - 1]
        self.below = self._take(np.bool_, (rows, n_split_chains, n_split_draws))
        self.centered = self._take(
            np.float64, (rows, self.n_series, n_split_chains, n_split_draws)
        )
        # Filling a block ends before its series are centred.
        self.staging = self.centered.reshape(-1)[: rows * n_chains * n_draws]

    @staticmethod
    @lru_cache(maxsize=16)
    def nbytes(rows, n_chains, n_draws, summary):
        """Arena size needed for these arguments."""
        probe = _Workspace(None, rows, n_chains, n_draws, summary)
        return probe._used

    def _take(self, dtype, shape):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        start = self._used
        self._used += -(-nbytes // 64) * 64  # keep every buffer 64-byte aligned
        if self._arena is None:
            return np.empty((0,) * len(shape), dtype=dtype)  # sizing only
        return self._arena[start : start + nbytes].view(dtype).reshape(shape)


# The arena of the last call, kept for the next when not larger than this: repeated
# calls (checks, then summary, then a plot) then reuse memory that is already mapped.
_KEPT_ARENA_BYTES = 1 << 25
_arena_lock = threading.Lock()
_kept_arena = None


@contextmanager
def _arena(nbytes):
    """A uint8 array of at least `nbytes` bytes, 64-byte aligned, for one call: the
    kept arena when it is free and large enough, else a new one."""
    global _kept_arena
    if not _arena_lock.acquire(blocking=False):
        yield _aligned_bytes(nbytes)  # another thread is using the kept arena
        return
    try:
        arena = _kept_arena
        if arena is None or arena.size < nbytes:
            arena = _aligned_bytes(nbytes)
            if nbytes <= _KEPT_ARENA_BYTES:
                _kept_arena = arena
        yield arena
    finally:
        _arena_lock.release()


def _aligned_bytes(nbytes):
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + nbytes]


def _block_table(ws, n_rows, summary):
    """The columns of the `n_rows` quantities in ``ws.draws[:n_rows]``."""
    n_chains, n_draws = ws.n_chains, ws.n_draws
    draws = ws.draws[:n_rows]
    flat = draws.reshape(n_rows, n_chains * n_draws)
    out = {name: np.full(n_rows, np.nan) for name in ("r_hat", "ess_bulk", "ess_tail")}
    with np.errstate(invalid="ignore", over="ignore"):
        sums = flat.sum(axis=1)
    # A finite sum proves every draw finite; only other rows are checked one by one.
    finite = np.isfinite(sums)
    unsure = np.flatnonzero(~finite)
    if unsure.size:
        finite[unsure] = np.isfinite(flat[unsure]).all(axis=1)
    out["finite"] = finite
    nonfinite = np.flatnonzero(~finite)
    if summary:
        out["mcse_mean"], out["mcse_sd"] = np.full(n_rows, np.nan), np.full(n_rows, np.nan)
        out.update(_moments(ws, flat, sums, n_rows))
        quantiles_from_sort = ws.diagnosable and n_draws % 2 == 0
        rows = nonfinite if quantiles_from_sort else np.arange(n_rows)
        if rows.size:
            with np.errstate(invalid="ignore", over="ignore"):
                quantiles = np.quantile(flat[rows], _SUMMARY_PROBABILITIES, axis=1)
            for name, column in zip(("q5", "q50", "q95"), quantiles):
                out[name] = np.full(n_rows, np.nan)
                out[name][rows] = column
    if not ws.diagnosable:
        if n_draws // 2 >= MIN_DRAWS_PER_CHAIN:
            for row in np.flatnonzero(finite):
                _scalar_row(draws[row], row, out, summary)
        return out
    if nonfinite.size:
        # Constant stand-ins: their diagnostics come out NaN without special cases.
        draws[nonfinite] = 0.0
    columns = _diagnose(ws, n_rows, out["sd"] if summary else None)
    for name, column in columns.items():
        if name in ("q5", "q50", "q95"):
            column[nonfinite] = out[name][nonfinite] if name in out else np.nan
        out[name] = column
    return out


def _moments(ws, flat, sums, n_rows):
    """mean and sd (denominator S - 1) of every row, with numpy's operations for
    ``mean`` and ``std`` (so the same numbers); leaves ``(x - mean)**2`` in
    ``ws.squared`` when the workspace has it."""
    size = flat.shape[1]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = sums / size
        squared = ws.squared[:n_rows]
        np.subtract(flat, mean[:, np.newaxis], out=squared)
        np.multiply(squared, squared, out=squared)
        sd = np.sqrt(squared.sum(axis=1) / (size - 1)) if size > 1 else np.full(n_rows, np.nan)
    return {"mean": mean, "sd": sd}


def _scalar_row(draws, row, out, summary):
    """The per-quantity functions on one quantity (finite draws, long enough to split),
    as `checks` and `summary` called them before this module existed."""
    split = split_chains(draws)
    if not enough_draws(split) or is_constant(split):
        return
    scores = rank_normalize(split)
    bulk, tail = _potential_scale_reduction(scores), _rhat_tail_of_split(split)
    out["r_hat"][row] = np.nan if np.isnan(bulk) or np.isnan(tail) else max(bulk, tail)
    out["ess_bulk"][row] = _ess_of_chains(scores)
    out["ess_tail"][row] = _ess_tail_of_draws(draws)
    if summary:
        out["mcse_mean"][row] = _mcse_mean_of_draws(draws)
        out["mcse_sd"][row] = _mcse_sd_of_draws(draws)


def _split_into(block, target):
    """`split_chains` of every quantity: (rows, chains, draws) -> (rows, 2 chains,
    draws // 2), the middle draw of odd chains left out; a view when draws is even,
    else a copy into `target` (a new array when None)."""
    n_rows, n_chains, n_draws = block.shape
    half = n_draws // 2
    if n_draws % 2 == 0:
        return block.reshape(n_rows, 2 * n_chains, half)
    if target is None:
        target = np.empty((n_rows, 2 * n_chains, half))
    pairs = target.reshape(n_rows, n_chains, 2, half)
    pairs[:, :, 0] = block[:, :, :half]
    pairs[:, :, 1] = block[:, :, half + 1 :]
    return target


def _diagnose(ws, n_rows, sd=None):
    """R-hat and ESS of the finite quantities in ``ws.draws[:n_rows]``, with at least 8
    draws per chain; given their standard deviations `sd` (and ``(x - mean)**2`` in
    ``ws.squared``), also the MCSEs and, for an even number of draws, the quantiles."""
    summary = sd is not None
    n_draws = ws.n_draws
    draws = ws.draws[:n_rows]
    split = _split_into(draws, None if ws.split is None else ws.split[:n_rows])
    n_split_chains, n_split_draws = split.shape[1:]
    size = n_split_chains * n_split_draws
    values = split.reshape(n_rows, size)
    out = {}

    order = ws.order[:n_rows]
    tie_rows, tie_positions = _sort_values(ws, values)
    sorted_values = ws.sorted_values[:n_rows]
    np.take(values.reshape(-1), order, out=sorted_values, mode="wrap")
    if summary and n_draws % 2 == 0:
        # The split draws are all the draws, so their sort gives the quantiles.
        for name, prob in zip(("q5", "q50", "q95"), _SUMMARY_PROBABILITIES):
            out[name] = _quantile_of_sorted(sorted_values, prob)
    if n_draws % 2 == 0:
        thresholds = [_quantile_of_sorted(sorted_values, p) for p in _TAIL_PROBABILITIES]
    else:
        thresholds = np.quantile(draws.reshape(n_rows, -1), _TAIL_PROBABILITIES, axis=1)
    varying = sorted_values[:, 0] != sorted_values[:, -1]

    n_series = ws.n_series
    centered = ws.centered[:n_rows]
    chain_means = np.empty((n_rows, n_series, n_split_chains))
    constant = np.zeros((n_rows, n_series), dtype=bool)
    constant[~varying] = True

    # The folded draws are sorted with the help of the sorted draws, before the
    # sorted draws' buffer takes the bulk scores.
    half = size // 2
    median = (sorted_values[:, half - 1] + sorted_values[:, half]) / 2.0
    fold_keys = _sort_folded_keys(ws, sorted_values, median)

    # Bulk: the rank-normalised split draws, for R-hat and ESS.
    bulk = _scores(ws, order, tie_rows, tie_positions).reshape(split.shape)
    rhat_bulk = _rhat_and_center(bulk, chain_means[:, 0], centered[:, 0])

    # Tail: the split draws folded around their median, rank-normalised, for R-hat.
    flat_values = values.reshape(-1)
    fold_ties = _order_and_ties(
        ws, fold_keys, lambda flat: np.abs(flat_values[flat] - median[flat // size])
    )
    tail = _scores(ws, order, *fold_ties).reshape(split.shape)
    tail_means = np.empty((n_rows, n_split_chains))
    deviations = ws.scratch[:n_rows].reshape(split.shape)
    rhat_tail = _rhat_and_center(tail, tail_means, deviations)
    # Folded draws are all equal when tied at every sorted position.
    fold_constant = np.bincount(fold_ties[0], minlength=n_rows) == size - 1
    with np.errstate(invalid="ignore"):
        r_hat = np.where(fold_constant, np.nan, np.fmax(rhat_bulk, rhat_tail))
    out["r_hat"] = np.where(varying, r_hat, np.nan)

    # ESS of the indicators of the 5% and 95% quantiles of all draws (`ess_tail`).
    below = ws.below[:n_rows]
    for series, threshold in enumerate(thresholds, start=1):
        np.less_equal(split, threshold[:, np.newaxis, np.newaxis], out=below)
        counts = np.count_nonzero(below, axis=2)
        # Sums of zeros and ones are exact: these are the means numpy computes.
        means = chain_means[:, series]
        np.divide(counts, n_split_draws, out=means)
        total = counts.sum(axis=1)
        constant[:, series] |= (total == 0) | (total == size)
        target = centered[:, series]
        np.copyto(target, below)
        np.subtract(target, means[:, :, np.newaxis], out=target)
    squared_split = None
    if summary:
        # mcse_mean: ESS of the split draws; mcse_sd: of the squared deviations (not
        # finite for the quantities with non-finite draws, whose ESS is not computed).
        _center(split, chain_means[:, 3], centered[:, 3])
        squared_split = _split_into(ws.squared[:n_rows].reshape(draws.shape), None)
        with np.errstate(invalid="ignore"):
            _center(squared_split, chain_means[:, 4], centered[:, 4])
        squared_values = squared_split.reshape(n_rows, size)
        constant[:, 4] |= squared_values.min(axis=1) == squared_values.max(axis=1)

    def series_draws(row, series):
        """One series of one quantity, as the per-quantity functions have it."""
        if series == 0:
            return rank_normalize(split[row])
        if series in (1, 2):
            return (split[row] <= thresholds[series - 1][row]).astype(np.float64)
        return np.array(split[row] if series == 3 else squared_split[row])

    ess = _ess_many(centered, chain_means, constant, series_draws)
    out["ess_bulk"] = ess[:, 0]
    with np.errstate(invalid="ignore"):
        out["ess_tail"] = np.where(
            np.isnan(ess[:, 1]) | np.isnan(ess[:, 2]), np.nan, np.fmin(ess[:, 1], ess[:, 2])
        )
    if summary:
        squared = ws.squared[:n_rows]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out["mcse_mean"] = sd / np.sqrt(ess[:, 3])
            mean_square = squared.mean(axis=1)
            np.multiply(squared, squared, out=squared)
            variance_of_variance = (squared.mean(axis=1) - mean_square**2) / ess[:, 4]
            out["mcse_sd"] = np.sqrt(np.maximum(variance_of_variance, 0.0) / mean_square / 4.0)
    return out


def _center(chains, means, target):
    """Chain means of (rows, chains, draws) into `means`, centred draws into `target`,
    with the operations of numpy's ``mean`` (as `ess._ess_of_chains` has them)."""
    np.mean(chains, axis=2, out=means)
    np.subtract(chains, means[:, :, np.newaxis], out=target)


def _rhat_and_center(scores, means, target):
    """`rhat._potential_scale_reduction` of every row of (rows, chains, draws),
    leaving the chain means in `means` and the centred scores in `target`."""
    n_draws = scores.shape[2]
    _center(scores, means, target)
    within_chain = _row_dots(target, target) / (n_draws - 1)
    between = n_draws * means.var(axis=1, ddof=1)
    within = within_chain.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(((n_draws - 1) / n_draws * within + between / n_draws) / within)
    rhat[within == 0.0] = np.inf
    return rhat


def _quantile_of_sorted(sorted_values, prob):
    """``np.quantile(row, prob)`` of every (sorted) row, with numpy's arithmetic for
    its default linear method, so that the result is the same to the last bit (the
    tail-ESS indicators compare draws with it)."""
    size = sorted_values.shape[1]
    virtual = (size - 1) * np.float64(prob)
    previous = math.floor(virtual)
    if virtual >= size - 1:
        return sorted_values[:, -1].copy()
    gamma = virtual - previous
    below, above = sorted_values[:, previous], sorted_values[:, previous + 1]
    difference = above - below
    if gamma >= 0.5:
        return above - difference * (1 - gamma)
    return below + difference * gamma


def _index_mask(n_values):
    """Low bits that hold the indices 0..n_values-1."""
    return np.uint64((1 << max(int(n_values - 1).bit_length(), 1)) - 1)


_arange = np.arange(0, dtype=np.uint64)


def _flat_indices(n_rows, size):
    """``arange(n_rows * size).reshape(n_rows, size)`` as uint64, read-only."""
    global _arange
    indices = _arange  # one read: another thread may replace it meanwhile
    if indices.size < n_rows * size:
        indices = np.arange(n_rows * size, dtype=np.uint64)
        indices.flags.writeable = False
        _arange = indices
    return indices[: n_rows * size].reshape(n_rows, size)


def _sort_values(ws, values):
    """Sort every row of `values` (rows, n), finite: the permutation goes to
    ``ws.order`` (as indices into ``values.ravel()``), and the tie pairs are returned.

    The low mantissa bits of every value are replaced by its index, and these packed
    values are sorted (numpy sorts floats with SIMD, about twice as fast as an
    argsort); the index comes back with them. Values that share the kept high bits
    form runs in the sorted order, which `_order_and_ties` sorts exactly.
    """
    n_rows, size = values.shape
    index_mask = _index_mask(n_rows * size)
    keys = ws.keys[:n_rows]
    packed = keys.view(np.float64)
    np.add(values, 0.0, out=packed)  # turns -0.0 into +0.0, which ties with it
    keys &= ~index_mask
    keys |= _flat_indices(n_rows, size)
    packed.sort(axis=1)
    flat_values = values.reshape(-1)
    return _order_and_ties(ws, keys, lambda flat: flat_values[flat])


def _sort_folded_keys(ws, sorted_values, median):
    """Packed keys (as in `_sort_values`) of ``|values - median|``, sorted, given the
    sort of the values (``ws.order``, flat indices, and `sorted_values`).

    Along the sorted values the folded ones fall to the median and rise after it, so
    the first half reversed and the second half are two sorted runs, which a stable
    sort (timsort) merges in about half the time of a full sort. The folded values are
    not negative, so their bit patterns sort as integers.
    """
    n_rows, size = sorted_values.shape
    half = size // 2
    index_mask = _index_mask(n_rows * size)
    folded = ws.scratch[:n_rows]
    np.subtract(sorted_values, median[:, np.newaxis], out=folded)
    np.abs(folded, out=folded)
    bits = folded.view(np.uint64)
    keys = ws.keys[:n_rows]
    keys[:, :half] = bits[:, half - 1 :: -1]
    keys[:, half:] = bits[:, half:]
    keys &= ~index_mask
    order = ws.order[:n_rows].view(np.uint64)
    keys[:, :half] |= order[:, half - 1 :: -1]
    keys[:, half:] |= order[:, half:]
    keys.sort(axis=1, kind="stable")
    return keys


def _order_and_ties(ws, keys, exact_at):
    """The order (into ``ws.order``) and the tie pairs ``(rows, positions)``, sorted
    positions j whose value equals the one at j + 1, from sorted packed keys.

    Values whose keys share the kept high bits come out together (in index order, or
    its reverse for negative values): right for exact ties, but distinct values within
    about ``2**index_bits`` ulp of each other
    (common among folded draws: the two around the median often differ by an ulp)
    may be misordered. Each run of such keys is re-sorted by the exact values, which
    ``exact_at(indices)`` gives for indices into the flat values; the runs stay in
    place, as every key outside a run differs from those in it in the high bits.
    """
    n_rows, size = keys.shape
    index_mask = _index_mask(n_rows * size)
    order = ws.order[:n_rows]
    np.bitwise_and(keys, index_mask, out=order.view(np.uint64))
    pair_bits = ws.pair_bits[:n_rows]  # not contiguous: rows are `size` apart
    shared = ws.shared[:n_rows]
    np.bitwise_xor(keys[:, 1:], keys[:, :-1], out=pair_bits)
    np.less_equal(pair_bits, index_mask, out=shared)
    rows, positions = np.divmod(np.flatnonzero(shared), size - 1)
    if rows.size == 0:
        return rows, positions
    pairs = rows * size + positions  # flat sorted positions of each pair's first value
    flat_order = order.reshape(-1)
    equal = exact_at(flat_order[pairs]) == exact_at(flat_order[pairs + 1])
    if equal.all():
        return rows, positions
    # Sort the runs that hold distinct values by value; the other runs are ties.
    new_run = np.ones(pairs.size, dtype=bool)
    new_run[1:] = pairs[1:] != pairs[:-1] + 1
    run_of_pair = np.cumsum(new_run) - 1
    unsorted = np.zeros(run_of_pair[-1] + 1, dtype=bool)
    unsorted[run_of_pair[~equal]] = True
    resort = unsorted[run_of_pair]
    members, run_of_member = _runs(pairs[resort])
    indices = flat_order[members]
    exact = exact_at(indices)
    by_value = np.lexsort((exact, run_of_member))
    flat_order[members] = indices[by_value]
    exact = exact[by_value]
    tied = (run_of_member[1:] == run_of_member[:-1]) & (exact[1:] == exact[:-1])
    ties = np.concatenate([pairs[~resort], members[:-1][tied]])
    ties.sort()
    return np.divmod(ties, size)


def _runs(pairs):
    """Runs of consecutive pair positions (flat, increasing; a pair joins position p
    and p + 1): the flat positions of every run's members and the run of each."""
    new_run = np.ones(pairs.size, dtype=bool)
    new_run[1:] = pairs[1:] != pairs[:-1] + 1
    first_pair = np.flatnonzero(new_run)
    last_pair = np.append(first_pair[1:], pairs.size) - 1
    starts = pairs[first_pair]
    lengths = pairs[last_pair] + 2 - starts
    offsets = np.cumsum(lengths) - lengths
    members = np.repeat(starts - offsets, lengths) + np.arange(offsets[-1] + lengths[-1])
    return members, np.repeat(np.arange(starts.size), lengths)


@lru_cache(maxsize=8)
def _untied_scores(size):
    """Normal scores of ranks 1..size as `rank_normalize` computes them without ties
    (mirrored)."""
    untied = _normal_scores_without_ties(size)
    untied.flags.writeable = False
    return untied


@lru_cache(maxsize=8)
def _half_rank_scores(size):
    """``table[k]`` is the normal score of the mean rank k / 2 (k = 0..2 size), as
    `rank_normalize` computes it for rows with ties (directly, not mirrored): the
    untied ranks r are ``table[2 r]``, and a run of ties has a whole or half-integer
    mean rank, so every run's score is a look-up instead of an inverse normal CDF."""
    table = ndtri((np.arange(2 * size + 1) / 2.0 - 0.375) / (size + 0.25))
    table.flags.writeable = False
    return table


def _scores(ws, order, tie_rows, tie_positions):
    """Rank-normalised values (rows, size), from the sort (`order`, flat indices) and
    its tie pairs: `rank_normalize` row by row, with the same arithmetic."""
    n_rows, size = order.shape
    sorted_scores = ws.scratch[:n_rows]
    sorted_scores[:] = _untied_scores(size)
    if tie_rows.size:
        half_rank_scores = _half_rank_scores(size)
        sorted_scores[np.unique(tie_rows)] = half_rank_scores[2::2]
        # A run of tied values at sorted positions start..end-1 has the ranks
        # start+1..end, whose mean (start + 1 + end) / 2 they share.
        members, run_of_member = _runs(tie_rows * size + tie_positions)
        first = np.flatnonzero(np.diff(run_of_member, prepend=-1))
        starts = members[first] % size
        ends = starts + np.diff(np.append(first, members.size))
        run_scores = half_rank_scores[starts + 1 + ends]
        sorted_scores.reshape(-1)[members] = run_scores[run_of_member]
    scores = ws.scores[:n_rows]
    scores.reshape(-1)[order.reshape(-1)] = sorted_scores.reshape(-1)
    return scores


def _row_dots(a, b):
    """Dot products along the last axis."""
    if a.shape[-1] <= _SERIAL_DOT_MAX and hasattr(np, "vecdot"):
        return np.vecdot(a, b)
    return np.einsum("...n,...n->...", a, b)


def _ess_many(centered, chain_means, constant, series_draws):
    """ESS (as `ess._ess_of_chains`) of every series of every quantity.

    Parameters: centred draws (rows, series, chains, draws), chain means (rows, series,
    chains), a mask (rows, series) of constant series, whose ESS is NaN, and
    ``series_draws(row, series)``, a series' draws as the per-quantity code has them.
    Returns ESS (rows, series).
    """
    n_rows, n_series, n_chains, n_draws = centered.shape
    centered = centered.reshape(n_rows * n_series, n_chains, n_draws)
    chain_means = chain_means.reshape(n_rows * n_series, n_chains)
    ess = np.full(n_rows * n_series, np.nan)
    pending = np.flatnonzero(~constant.reshape(-1))
    direct = None  # autocovariances summed directly so far, (pending, lags)
    for n_lags in _lag_stages(n_draws):
        if pending.size == 0:
            break
        part = centered if pending.size == centered.shape[0] else centered[pending]
        if n_lags <= _DIRECT_LAGS[-1]:
            known = 0 if direct is None else direct.shape[1]
            direct = _direct_autocovariances(part, known, n_lags, direct)
            acov = direct
        else:
            acov = _fft_autocovariances(part, n_lags)
        values, done, unsure = _geyer(acov, chain_means[pending], n_draws)
        ess[pending[done]] = values[done]
        for stacked in pending[unsure]:
            # A decision within rounding of going the other way: leave it to the
            # per-quantity function, so that the answer is exactly its answer.
            ess[stacked] = _ess_of_chains(series_draws(*divmod(int(stacked), n_series)))
        going_on = ~done & ~unsure
        pending = pending[going_on]
        if direct is not None:
            direct = direct[going_on]
    return ess.reshape(n_rows, n_series)


def _lag_stages(n_draws):
    """Numbers of lags to compute, increasing, ending with all N."""
    stages = (*_DIRECT_LAGS, max(_FFT_STAGE_LAGS, n_draws // 8))
    return [lags for lags in stages if lags < n_draws] + [n_draws]


def _direct_autocovariances(centered, first_lag, n_lags, known):
    """`_fft_autocovariances` for lags below `n_lags` by direct sums, extending the
    first `first_lag` lags `known` (rows, first_lag)."""
    n_rows, n_chains, n_draws = centered.shape
    acov = np.empty((n_rows, n_lags))
    if first_lag:
        acov[:, :first_lag] = known
    scale = 1.0 / (n_chains * n_draws)
    for lag in range(first_lag, n_lags):
        lagged = _row_dots(centered[:, :, : n_draws - lag], centered[:, :, lag:])
        acov[:, lag] = lagged.sum(axis=1) * scale
    return acov


def _fft_autocovariances(centered, n_lags):
    """Mean over chains of the biased autocovariances at lags 0..n_lags-1 of centred
    chains (rows, chains, draws): ``1/(M N) sum_m sum_{n<N-t} y_mn y_m(n+t)``."""
    n_rows, n_chains, n_draws = centered.shape
    scale = 1.0 / (n_chains * n_draws)
    # Zero padding to N + n_lags - 1 makes the circular correlation at lags below
    # n_lags the linear one; the chains' power spectra are summed before inverting.
    from scipy.fft import irfft, next_fast_len, rfft  # 0.2 s to import: on first use
    padded = next_fast_len(n_draws + n_lags - 1, real=True)
    spectrum = rfft(centered, n=padded, axis=2)
    squares = spectrum.view(np.float64)
    squares *= squares
    power = squares.reshape(n_rows, n_chains, -1).sum(axis=1)
    power = power[:, 0::2] + power[:, 1::2]
    return irfft(power, n=padded, axis=1)[:, :n_lags] * scale


def _geyer(acov, chain_means, n_draws):
    """`ess._ess_from_autocovariance` of every row (acov: rows, lags).

    Returns ``(ess, done, unsure)``: ``done`` where the sum ended within the given lags,
    ``unsure`` where a decision in it was within rounding of going the other way.
    """
    n_rows, n_lags = acov.shape
    n_chains = chain_means.shape[1]
    total_draws = n_chains * n_draws
    within = acov[:, :1] * n_draws / (n_draws - 1)
    deviations = chain_means - chain_means.mean(axis=1)[:, np.newaxis]
    var_plus = acov[:, :1] + (deviations * deviations).sum(axis=1)[:, np.newaxis] / (
        n_chains - 1
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        # NaN where the draws' squares underflow to zero, as in `ess`.
        rho = 1.0 - (within - acov) / var_plus
    rho[:, 0] = 1.0
    n_pairs = n_lags // 2
    pair_sums = rho[:, 0 : 2 * n_pairs : 2] + rho[:, 1 : 2 * n_pairs : 2]
    # The sum continues past pair k only while P_k > 0 and 2k < N - 5.
    ends_sum = ~(pair_sums > 0.0)
    ends_sum[:, max(0, -(-(n_draws - 5) // 2)) :] = True
    done = ends_sum.any(axis=1)
    last_pair = np.argmax(ends_sum, axis=1)
    at_last = np.arange(n_rows), last_pair
    last_even = rho[:, 0::2][at_last]
    keep_last = (last_pair == 0) | (last_even > 0.0) | (pair_sums[at_last] >= 0.0)
    before_last = np.arange(n_pairs) < last_pair[:, np.newaxis]
    monotone = np.minimum.accumulate(pair_sums, axis=1)
    monotone[~before_last] = 0.0
    tau = -1.0 + 2.0 * monotone.sum(axis=1) + np.where(keep_last, last_even, 0.0)
    tau = np.maximum(tau, 1.0 / math.log10(total_draws))
    # Rounding decides a pair sum at or before the last one, or whether the last
    # even autocorrelation counts, when it is this close to zero.
    near_zero = np.abs(pair_sums) <= _UNDECIDED_WITHIN
    near_zero[~(before_last | (last_pair[:, np.newaxis] == np.arange(n_pairs)))] = False
    last_even_near_zero = (last_pair > 0) & (np.abs(last_even) <= _UNDECIDED_WITHIN)
    unsure = done & (near_zero.any(axis=1) | last_even_near_zero)
    return total_draws / tau, done, unsure
