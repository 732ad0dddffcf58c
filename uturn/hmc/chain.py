"""One Markov chain, warmup then draws, in a single compiled loop.

The loop is compiled once with an explicit signature whose log density argument
is a first-class function type (``float64(float64[::1], float64[::1])``), so the
compiled sampler does not depend on the user's function and numba's on-disk cache
serves every model and every process. It releases the GIL, so chains run in
parallel threads, and talks to Python only through arrays: ``progress`` is read by
the progress bar while the chain runs and carries a stop request back.

Warmup follows Stan (``services/sample/hmc_nuts_*_adapt``): the step size is
initialised by the doubling/halving heuristic, adapted by dual averaging after
every warmup transition, and the metric is re-estimated at the end of each
window of :func:`uturn.hmc.adaptation.window_schedule`, after which the step size is
re-initialised and dual averaging restarted. Warmup ends with ``exp(x_bar)``.

With ``int_settings["grad_metric"]`` set (``metric="diag_grad"``) the diagonal
metric is instead adapted as nutpie does it (Seyboldt 2023; nuts-rs
``adapt_strategy.rs``): the metric starts at ``1 / |grad|`` of the initial point,
is re-estimated as ``sqrt(var(x) / var(grad))`` after every warmup draw from
foreground/background estimators that switch often, the step size is initialised
once by the heuristic (at the first metric update) and then adapted by dual
averaging without restarts, and the last 15% of warmup adapts only the step size.
See the ``diag_grad`` section of :mod:`uturn.hmc.adaptation`.
"""
import hashlib
import os
import subprocess
import sys

import numpy as np
from numba import njit, types

from ..model import LOGP_GRAD_TYPE
from .adaptation import (STEP_SIZE_OK, DUAL_AVERAGING_GAMMA, DUAL_AVERAGING_KAPPA,
                         DUAL_AVERAGING_T0, GRAD_EARLY_SWITCH_FREQ, GRAD_SWITCH_FREQ,
                         dual_averaging_final, dual_averaging_restart,
                         dual_averaging_state, dual_averaging_update,
                         find_reasonable_step_size, grad_estimators_add,
                         grad_estimators_state_in, grad_estimators_state_size,
                         grad_estimators_switch, grad_metric_init, grad_metric_update,
                         welford_add, welford_regularized_variance, welford_state_in,
                         welford_state_size)
from .integrator import JIT_OPTIONS, metric_factor_from_inv_metric
from .nuts import nuts_transition, nuts_workspace_in, nuts_workspace_size
from .static import hmc_transition, hmc_workspace_in, hmc_workspace_size
from .workspace import padded, take

__all__ = ["run_chain", "chain_workspace", "compiled_run_chain", "STAT_NAMES", "INT_SETTINGS",
           "CHAIN_OK", "CHAIN_INTERRUPTED", "CHAIN_STEP_SIZE_TOO_LARGE",
           "CHAIN_STEP_SIZE_TOO_SMALL", "CHAIN_METRIC_NOT_FINITE"]

#: Columns of ``stats_out``; ``divergence_slot`` indexes ``divergence_points`` (-1: none).
STAT_NAMES = ("lp", "energy", "energy_error", "max_energy_error", "tree_depth",
              "n_steps", "step_size", "acceptance_rate", "diverging",
              "reached_max_treedepth", "divergence_slot")
(_LP, _ENERGY, _ENERGY_ERROR, _MAX_ENERGY_ERROR, _TREE_DEPTH, _N_STEPS, _STEP_SIZE,
 _ACCEPTANCE_RATE, _DIVERGING, _REACHED_MAX, _DIVERGENCE_SLOT) = range(len(STAT_NAMES))

#: Entries of ``int_settings``, in order.
INT_SETTINGS = ("draws", "tune", "algorithm", "num_steps", "max_treedepth",
                "adapt_step_size", "adapt_metric", "init_step_size",
                "window_first", "window_last", "grad_metric", "grad_early_end",
                "grad_step_size_only_from", "restart_every_window")
ALGORITHM_NUTS, ALGORITHM_HMC = 0, 1

CHAIN_OK = 0
CHAIN_INTERRUPTED = 1
CHAIN_STEP_SIZE_TOO_LARGE = 2
CHAIN_STEP_SIZE_TOO_SMALL = 3
CHAIN_METRIC_NOT_FINITE = 4

# progress[0]: iterations done; progress[1]: divergences after warmup;
# progress[2]: set non-zero by Python to ask the chain to stop.
_DONE, _DIVERGENCES, _STOP = 0, 1, 2


@njit(**JIT_OPTIONS)
def _stopped(result, step_size, n_gradient_evals, status):
    """Leave the step size and the gradient count in ``result``; return ``status``."""
    result[0] = step_size
    result[1] = n_gradient_evals
    return status


@njit(**JIT_OPTIONS)
def _step_size_status(status):
    return CHAIN_STEP_SIZE_TOO_LARGE if status == 1 else CHAIN_STEP_SIZE_TOO_SMALL


@njit(**JIT_OPTIONS)
def chain_workspace(dim, metric_rows, max_treedepth, grad_metric):
    """Every array one chain works on, cut from one zeroed block in a fixed order, so
    that where they lie relative to each other depends on the shapes alone (see
    :mod:`uturn.hmc.workspace`): O(dim * max_treedepth) memory, plus O(dim^2) for a
    dense metric.

    Returns
    -------
    (q, grad, inv_metric, metric_factor, scratch, nuts_space, hmc_space, welford,
     grad_estimators, q_before)
        ``inv_metric`` and ``metric_factor`` have shape ``(metric_rows, dim)``;
        ``scratch`` (4, dim) is :func:`find_reasonable_step_size`'s;
        ``welford`` and ``grad_estimators`` are the estimator states, and
        ``grad_estimators`` and ``q_before`` are empty unless ``grad_metric``.
    """
    grad_dim = dim if grad_metric else 0
    dense = metric_rows > 1
    size = (2 * padded(dim) + 2 * padded(metric_rows * dim) + padded(4 * dim)
            + nuts_workspace_size(dim, max_treedepth) + hmc_workspace_size(dim)
            + welford_state_size(dim, dense) + grad_estimators_state_size(grad_dim)
            + padded(grad_dim))
    block = np.zeros(size)
    q, offset = take(block, 0, dim)
    grad, offset = take(block, offset, dim)
    inv_metric, offset = take(block, offset, metric_rows * dim)
    metric_factor, offset = take(block, offset, metric_rows * dim)
    scratch, offset = take(block, offset, 4 * dim)
    nuts_space, offset = nuts_workspace_in(block, offset, dim, max_treedepth)
    hmc_space, offset = hmc_workspace_in(block, offset, dim)
    welford, offset = welford_state_in(block, offset, dim, dense)
    grad_estimators, offset = grad_estimators_state_in(block, offset, grad_dim)
    q_before, offset = take(block, offset, grad_dim)
    return (q, grad, inv_metric.reshape((metric_rows, dim)),
            metric_factor.reshape((metric_rows, dim)), scratch.reshape((4, dim)),
            nuts_space, hmc_space, welford, grad_estimators, q_before)


def run_chain(logp_grad, position, int_settings, float_settings, window_ends, rng,
              inv_metric, draws_out, stats_out, divergence_points, progress, result):
    """Run one chain: ``tune`` warmup transitions then ``draws`` kept draws.

    Parameters
    ----------
    logp_grad : compiled ``(x, grad) -> float``
    position : float64 (dim,)
        Initial point with a finite log density; holds the last draw on return.
    int_settings : int64 array, entries named by ``INT_SETTINGS``
    float_settings : float64 array ``[step_size, target_accept]``
    window_ends : int64 array
        Warmup iterations that end a metric window (``window_schedule``); unused
        when ``grad_metric`` is set, which uses ``grad_early_end`` and
        ``grad_step_size_only_from`` (``grad_adaptation_schedule``) instead.
    rng : numpy.random.Generator
        The chain's own stream; every random number comes from it.
    inv_metric : float64 (1, dim) or (dim, dim)
        Initial inverse metric; holds the adapted one on return.
    draws_out : float64 (draws, dim)
    stats_out : float64 (tune + draws, len(STAT_NAMES))
    divergence_points : float64 (capacity, dim)
        Where the first ``capacity`` post-warmup divergent trajectories blew up.
    progress : int64 (3,)
    result : float64 (2,)
        On return: the step size after warmup and the number of gradient evaluations.

    Returns
    -------
    int
        CHAIN_OK, CHAIN_INTERRUPTED (stopped on request, ``progress[0]`` iterations
        done) or an error code for the step-size heuristic or metric estimate.
    """
    # The chain works on copies of position and inv_metric inside its own block
    # (chain_workspace), not on the caller's arrays, wherever those lie.
    workspace = chain_workspace(position.shape[0], inv_metric.shape[0], int_settings[4],
                                int_settings[10] != 0)
    q, chain_inv_metric = workspace[0], workspace[2]
    q[:] = position
    chain_inv_metric[:, :] = inv_metric
    status = _run_chain_in(logp_grad, workspace, int_settings, float_settings, window_ends,
                           rng, draws_out, stats_out, divergence_points, progress, result)
    position[:] = q
    inv_metric[:, :] = chain_inv_metric
    return status


@njit(**JIT_OPTIONS)
def _run_chain_in(logp_grad, workspace, int_settings, float_settings, window_ends, rng,
                  draws_out, stats_out, divergence_points, progress, result):
    """:func:`run_chain` on the arrays of ``workspace`` (:func:`chain_workspace`),
    whose ``q`` and ``inv_metric`` hold the initial point and metric."""
    draws, tune = int_settings[0], int_settings[1]
    algorithm, num_steps, max_treedepth = int_settings[2], int_settings[3], int_settings[4]
    adapt_step_size = int_settings[5] != 0
    adapt_metric = int_settings[6] != 0
    init_step_size = int_settings[7] != 0
    window_first, window_last = int_settings[8], int_settings[9]
    grad_metric = int_settings[10] != 0
    grad_early_end, grad_step_size_only_from = int_settings[11], int_settings[12]
    restart_every_window = int_settings[13] != 0
    step_size, target_accept = float_settings[0], float_settings[1]
    (q, grad, inv_metric, metric_factor, scratch, nuts_space, hmc_space,
     (welford_count, welford_mean, welford_m2), (grad_counts, grad_means, grad_m2),
     q_before) = workspace
    dim = q.shape[0]

    logp = logp_grad(q, grad)
    n_gradient_evals = 1
    if not metric_factor_from_inv_metric(inv_metric, metric_factor):
        return CHAIN_METRIC_NOT_FINITE
    divergence_point = nuts_space[4] if algorithm == ALGORITHM_NUTS else hmc_space[1]
    grad_first_update = True
    grad_last_update = 0

    if grad_metric:
        # nuts-rs Strategy::init: the initial point is the first draw of both
        # estimators, and its gradient sets the metric before the step size is sought.
        grad_metric_init(grad, inv_metric)
        if not metric_factor_from_inv_metric(inv_metric, metric_factor):
            return CHAIN_METRIC_NOT_FINITE
        grad_estimators_add(grad_counts, grad_means, grad_m2, q, grad)

    # Stan sets dual averaging's mu = log(10 * stepsize) from the step size it is given,
    # before init_stepsize() moves that step (services/util/config_adaptive_sampler),
    # so until the first metric update the iterates shrink towards ten times the
    # given step, not ten times the searched one. diag_grad keeps the searched step,
    # which it restarts from at its first metric update a few draws in.
    dual_averaging = dual_averaging_state(step_size)
    if init_step_size:
        step_size, status, evals = find_reasonable_step_size(
            logp_grad, q, grad, logp, step_size, inv_metric, metric_factor, rng, scratch)
        n_gradient_evals += evals
        if status != STEP_SIZE_OK:
            return _stopped(result, step_size, n_gradient_evals,
                            _step_size_status(status))
    if grad_metric:
        dual_averaging_restart(dual_averaging, step_size)

    next_window = 0
    n_divergence_slots = divergence_points.shape[0]
    n_stored_divergences = 0
    for iteration in range(tune + draws):
        if progress[_STOP] != 0:
            return _stopped(result, step_size, n_gradient_evals, CHAIN_INTERRUPTED)
        if grad_metric and iteration < grad_step_size_only_from:
            q_before[:] = q
        if algorithm == ALGORITHM_NUTS:
            transition = nuts_transition(logp_grad, q, grad, logp, step_size, inv_metric,
                                         metric_factor, max_treedepth, rng, nuts_space)
        else:
            transition = hmc_transition(logp_grad, q, grad, logp, step_size, inv_metric,
                                        metric_factor, num_steps, rng, hmc_space)
        (logp, energy, energy_error, max_energy_error, tree_depth, n_steps,
         acceptance_rate, diverging, reached_max_treedepth) = transition
        n_gradient_evals += n_steps

        stats = stats_out[iteration]
        stats[_LP] = logp
        stats[_ENERGY] = energy
        stats[_ENERGY_ERROR] = energy_error
        stats[_MAX_ENERGY_ERROR] = max_energy_error
        stats[_TREE_DEPTH] = tree_depth
        stats[_N_STEPS] = n_steps
        stats[_STEP_SIZE] = step_size
        stats[_ACCEPTANCE_RATE] = acceptance_rate
        stats[_DIVERGING] = 1.0 if diverging else 0.0
        stats[_REACHED_MAX] = 1.0 if reached_max_treedepth else 0.0
        stats[_DIVERGENCE_SLOT] = -1.0

        if iteration < tune:
            # Each warmup decides whether this iteration looks for a step size again
            # and restarts dual averaging from it; the search is done once, below.
            restart_step_size = False
            if grad_metric and iteration < grad_step_size_only_from:
                # nuts-rs GlobalStrategy::adapt. A draw is used only if the chain moved
                # (nuts-rs skips draws equal to the starting point of the trajectory).
                moved = False
                for i in range(dim):
                    if q[i] != q_before[i]:
                        moved = True
                        break
                if moved:
                    grad_estimators_add(grad_counts, grad_means, grad_m2, q, grad)
                switch_freq = GRAD_EARLY_SWITCH_FREQ if iteration < grad_early_end \
                    else GRAD_SWITCH_FREQ
                late = switch_freq + iteration > grad_step_size_only_from
                forced = False
                if grad_counts[2, 0] >= switch_freq and not late:
                    grad_estimators_switch(grad_counts, grad_means, grad_m2)
                    forced = True
                changed = False
                if forced or iteration - grad_last_update >= 1:
                    changed = grad_metric_update(grad_counts, grad_m2, inv_metric)
                if changed:
                    grad_last_update = iteration
                    if not metric_factor_from_inv_metric(inv_metric, metric_factor):
                        return CHAIN_METRIC_NOT_FINITE
                # The first metric from draws: look for a step size again and restart
                # dual averaging from it; later updates only continue it.
                restart_step_size = adapt_step_size and changed and grad_first_update
                if restart_step_size:
                    grad_first_update = False
            elif not grad_metric:
                if adapt_step_size:
                    step_size = dual_averaging_update(
                        dual_averaging, acceptance_rate, target_accept,
                        DUAL_AVERAGING_GAMMA, DUAL_AVERAGING_T0, DUAL_AVERAGING_KAPPA)
                if adapt_metric and window_first <= iteration <= window_last:
                    welford_add(welford_count, welford_mean, welford_m2, q)
                if adapt_metric and next_window < window_ends.shape[0] \
                        and iteration == window_ends[next_window]:
                    next_window += 1
                    if not welford_regularized_variance(welford_count, welford_mean,
                                                        welford_m2, inv_metric):
                        return CHAIN_METRIC_NOT_FINITE
                    if not metric_factor_from_inv_metric(inv_metric, metric_factor):
                        return CHAIN_METRIC_NOT_FINITE
                    # Stan restarts after every window; "first_window" only after the
                    # first, then dual averaging runs on across the later updates.
                    restart_step_size = restart_every_window or next_window == 1
            if restart_step_size:
                step_size, status, evals = _restart_step_size(
                    logp_grad, q, grad, logp, step_size, inv_metric, metric_factor,
                    rng, scratch, dual_averaging)
                n_gradient_evals += evals
                if status != STEP_SIZE_OK:
                    return _stopped(result, step_size, n_gradient_evals,
                                    _step_size_status(status))
            elif grad_metric and adapt_step_size:
                # diag_grad's dual-averaging step follows its metric update and is
                # skipped on a restart; the windowed warmups took theirs above.
                step_size = dual_averaging_update(
                    dual_averaging, acceptance_rate, target_accept,
                    DUAL_AVERAGING_GAMMA, DUAL_AVERAGING_T0, DUAL_AVERAGING_KAPPA)
            if iteration == tune - 1 and adapt_step_size:
                step_size = dual_averaging_final(dual_averaging)
        else:
            draw = iteration - tune
            draws_out[draw, :] = q
            if diverging:
                progress[_DIVERGENCES] += 1
                if n_stored_divergences < n_divergence_slots:
                    divergence_points[n_stored_divergences, :] = divergence_point
                    stats[_DIVERGENCE_SLOT] = n_stored_divergences
                    n_stored_divergences += 1
        progress[_DONE] = iteration + 1

    return _stopped(result, step_size, n_gradient_evals, CHAIN_OK)


@njit(**JIT_OPTIONS)
def _restart_step_size(logp_grad, q, grad, logp, step_size, inv_metric, metric_factor,
                       rng, scratch, dual_averaging):
    """After a metric update: Stan's doubling/halving search for a step size under the
    new metric, and dual averaging restarted from it when the search succeeded.

    Returns (step_size, status, gradient evaluations) as ``find_reasonable_step_size``.
    """
    step_size, status, evals = find_reasonable_step_size(
        logp_grad, q, grad, logp, step_size, inv_metric, metric_factor, rng, scratch)
    if status == STEP_SIZE_OK:
        dual_averaging_restart(dual_averaging, step_size)
    return step_size, status, evals


_GENERATOR_TYPE = types.NumPyRandomGeneratorType("NumPyRandomGeneratorType")
RUN_CHAIN_SIGNATURE = types.int64(
    LOGP_GRAD_TYPE, types.float64[::1], types.int64[::1], types.float64[::1],
    types.int64[::1], _GENERATOR_TYPE, types.float64[:, ::1], types.float64[:, ::1],
    types.float64[:, ::1], types.float64[:, ::1], types.int64[::1], types.float64[::1])

_compiled = []


def _sources_digest():
    """A digest of every module the chain loop is compiled from."""
    digest = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name), "rb") as source:
                digest.update(source.read())
    return digest.hexdigest()[:16]


def _drop_stale_cache(dispatcher):
    """Numba keys its disk cache on this file's timestamp only, so an edit to
    nuts.py or integrator.py would silently keep serving the old compiled loop.
    Keep a stamp of all hmc/ sources beside the cache and flush it on mismatch."""
    try:
        cache_path = dispatcher._cache._cache_path
        stamp = os.path.join(cache_path, f"uturn-hmc-sources-{_sources_digest()}.stamp")
        if os.path.exists(stamp):
            return
        dispatcher._cache.flush()
        for name in os.listdir(cache_path):
            if name.startswith("uturn-hmc-sources-"):
                os.remove(os.path.join(cache_path, name))
        with open(stamp, "w"):
            pass
    except (AttributeError, OSError):  # a numba without these internals, or a read-only cache
        pass


#: Set in the environment of the child process that compiles the loop (no grandchild).
_COMPILING_CHILD = "UTURN_COMPILING_SAMPLER"
#: Seconds the child may take (the compile takes 15-35 s here) before this process
#: gives up on it and compiles the loop itself.
_CHILD_COMPILE_TIMEOUT = 600


def _cache_has_index(dispatcher):
    """Whether numba's disk cache lists a compiled chain loop for these sources (reads
    the small index, loads no code)."""
    try:
        return bool(dispatcher._cache._cache_file._load_index())
    except AttributeError:  # a numba without these internals: compile here as before
        return True
    except Exception:  # an unreadable index: numba itself will recompile
        return False


def _compile_in_child():
    """Compile the chain loop in a child process, which fills numba's disk cache.

    Why not here: the code numba has just compiled in a process and the object code
    it saves for later ones sum in slightly different orders (on 2026-12-02 the same
    seed gave other eight-schools draws in the compiling process than in every later
    one, even after reloading the saved loop in the same process, whose calls then
    go to the functions compiled here). Compiled by a child, the loop this process
    loads is the one every later process loads, so a seed means one fit per build.
    Should the child fail (no writable cache, uturn not importable by path, no
    Python at ``sys.executable``, more than ``_CHILD_COMPILE_TIMEOUT`` seconds), the
    loop is compiled here as before.
    """
    here = os.path.abspath(__file__)  # .../uturn/hmc/chain.py
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    env = dict(os.environ, **{_COMPILING_CHILD: "1"})
    env["PYTHONPATH"] = os.pathsep.join(
        [package_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    try:
        subprocess.run([sys.executable, "-c",
                        "from uturn.hmc.chain import compiled_run_chain; compiled_run_chain()"],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False, timeout=_CHILD_COMPILE_TIMEOUT)
    except (OSError, subprocess.SubprocessError):  # no Python to run, or it hung
        pass


def compiled_run_chain():
    """The compiled chain loop, built on first use and cached on disk by numba.

    Compiling lazily keeps ``import uturn`` fast; ``cache=True`` means only the
    first process on a machine pays the compile, later ones load it. It accepts
    only ``RUN_CHAIN_SIGNATURE``, so a model's function is converted to the
    first-class function type instead of specialising the loop.
    """
    if not _compiled:
        dispatcher = njit(**JIT_OPTIONS)(run_chain)
        _drop_stale_cache(dispatcher)
        if os.environ.get(_COMPILING_CHILD) is None and not _cache_has_index(dispatcher):
            _compile_in_child()
        dispatcher.compile(RUN_CHAIN_SIGNATURE.args)
        dispatcher.disable_compile()
        _compiled.append(dispatcher)
    return _compiled[0]
