"""``uturn.sample``: check the arguments, seed the chains, run them in threads, build a Fit."""
import numbers
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from types import SimpleNamespace

import numpy as np

from .diagnostics.checks import SamplingWarning, checks, warn
from .fit import Fit, SampleStats
from .hmc import chain as _chain
from .hmc.adaptation import grad_adaptation_schedule, window_schedule
from .model import Model, default_constrain

__all__ = ["sample", "InitializationError", "SamplingError"]

ALGORITHMS = ("nuts", "hmc")
METRICS = ("unit", "diag", "dense", "diag_grad")
STEP_SIZE_RESTARTS = ("every_window", "first_window")
INIT_RADIUS = 2.0
INIT_TRIES = 100
#: Post-warmup divergences per chain whose position is kept (``divergence_point``) ...
DIVERGENCE_POINTS_KEPT = 1000
#: ... and at most this many numbers per chain for them (8 MB), so that a model with
#: 100,000 coordinates keeps 10 points per chain instead of reserving 800 MB.
DIVERGENCE_VALUES_KEPT = 1_000_000
MAX_TREEDEPTH_LIMIT = 30
#: R-hat and ESS after every run cover at most this many scalars (see _automatic_checks).
AUTO_CHECK_QUANTITIES = 100


class InitializationError(RuntimeError):
    """No initial point with a finite log density and gradient could be found."""


class SamplingError(RuntimeError):
    """A chain could not continue (improper posterior, no usable step size, ...)."""


def _check_int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_float(name, value, low, high, low_open=True, high_open=True):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        interval = ("(" if low_open else "[") + f"{low}, {high}" + (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def _check_metric(metric, dim):
    """Return (kind, initial inverse metric as a 2-D array or None)."""
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS} or an array (an inverse "
                             f"metric), got {metric!r}")
        return metric, None
    try:
        array = np.array(metric, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"metric must be one of {METRICS} or an array (an inverse "
                        f"metric), got {type(metric).__name__}") from None
    if array.shape == (dim,):
        if not (np.all(np.isfinite(array)) and np.all(array > 0)):
            raise ValueError("metric (a diagonal inverse metric) must be finite and positive")
        return "diag", array.reshape(1, dim)
    if array.shape == (dim, dim):
        if not np.all(np.isfinite(array)) or not np.allclose(array, array.T):
            raise ValueError("metric (a dense inverse metric) must be finite and symmetric")
        try:
            np.linalg.cholesky(array)
        except np.linalg.LinAlgError:
            raise ValueError("metric (a dense inverse metric) must be positive definite") from None
        return "dense", np.ascontiguousarray(array)
    raise ValueError(f"metric as an array must have shape ({dim},) or ({dim}, {dim}), "
                     f"got {array.shape}")


def _check_init(init, chains, dim):
    if init is None:
        return None
    try:
        array = np.array(init, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"init must be an array of shape ({dim},) or ({chains}, {dim}), "
                        f"got {type(init).__name__}") from None
    if array.shape == (dim,):
        array = np.tile(array, (chains, 1))
    elif array.shape != (chains, dim):
        raise ValueError(f"init must have shape ({dim},) or (chains, dim) = "
                         f"({chains}, {dim}), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("init must be finite")
    return array


def _seed_sequence(seed):
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be None or a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer, got {seed}")
    return np.random.SeedSequence(int(seed))


def _describe_bad_point(model, x):
    """Say which part of the log density or gradient is not finite at ``x``."""
    logp, grad = model.logp_and_grad(x)
    bad = [name for name, g in zip(model.names, grad) if not np.isfinite(g)]
    message = f"log density {logp}"
    if bad:
        shown = ", ".join(bad[:10]) + (", ..." if len(bad) > 10 else "")
        message += f", non-finite gradient in {shown}"
    return message


def _finite_at(model, x):
    grad = np.empty(model.dim)
    logp = model.logp_grad(x.copy(), grad)
    return bool(np.isfinite(logp) and np.all(np.isfinite(grad)))


def _initial_point(model, rng, chain, given):
    """Stan's initialisation: the given point, else ``model.init(rng)``, else
    uniform(-2, 2) per coordinate, retried up to 100 times."""
    if given is not None:
        x = given.copy()
        if not _finite_at(model, x):
            raise ValueError(f"init for chain {chain} is not a usable starting point: "
                             f"{_describe_bad_point(model, x)}")
        return x
    last = None
    for _ in range(INIT_TRIES):
        if model.init is not None:
            x = np.array(model.init(rng), dtype=np.float64)
            if x.shape != (model.dim,):
                raise ValueError(f"model.init returned shape {x.shape}, expected ({model.dim},)")
        else:
            x = rng.uniform(-INIT_RADIUS, INIT_RADIUS, size=model.dim)
        if np.all(np.isfinite(x)) and _finite_at(model, x):
            return x
        last = x
    where = "from model.init" if model.init is not None else \
        f"uniform in (-{INIT_RADIUS:g}, {INIT_RADIUS:g})"
    raise InitializationError(
        f"Initialization failed for chain {chain}: no point {where} had a finite log "
        f"density and gradient in {INIT_TRIES} tries (last try: "
        f"{_describe_bad_point(model, last)}). Check the log density for NaN or -inf "
        f"on its whole domain, or pass init= a point where it is finite.")


#: Worker threads by number of cores, kept between calls: starting two threads cost
#: 0.5-1 ms, 3-5% of a whole eight-schools run.
_CHAIN_POOLS = {}
_CHAIN_POOLS_LOCK = threading.Lock()


def _forget_chain_pools():
    """In a forked child the pools' threads do not exist: a submit would wait forever."""
    global _CHAIN_POOLS_LOCK
    _CHAIN_POOLS.clear()
    _CHAIN_POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_chain_pools)


def _chain_pool(cores):
    """The kept thread pool of ``cores`` workers that run the chains."""
    with _CHAIN_POOLS_LOCK:
        pool = _CHAIN_POOLS.get(cores)
        if pool is None:
            pool = _CHAIN_POOLS[cores] = ThreadPoolExecutor(
                max_workers=cores, thread_name_prefix=f"uturn-chain-{cores}")
        return pool


def _progress_monitor(progress_arrays, total, done_event, enabled):
    """Poll the chains' progress arrays and drive one tqdm bar (draws/s, divergences)."""
    if not enabled:
        done_event.wait()
        return
    from tqdm.auto import tqdm
    with tqdm(total=total, unit="it", delay=1.0, smoothing=0.1,
              desc="sampling") as bar:
        shown = 0
        while True:
            finished = done_event.wait(0.2)
            done = int(sum(int(p[0]) for p in progress_arrays))
            divergences = int(sum(int(p[1]) for p in progress_arrays))
            if done > shown:
                bar.update(done - shown)
                shown = done
            bar.set_postfix(divergences=divergences, refresh=False)
            if finished:
                break


def sample(model, draws=1000, tune=1000, chains=4, seed=None, *, algorithm="nuts",
           target_accept=0.8, max_treedepth=10, metric="diag", step_size=None,
           num_steps=None, init=None, cores=None, progress=True,
           step_size_restart="every_window", checks=True):
    """Draw from ``model`` with NUTS (or static HMC) after Stan's warmup.

    Parameters
    ----------
    model : uturn.Model
    draws : int
        Draws kept per chain after warmup (>= 1).
    tune : int
        Warmup iterations per chain (>= 0), discarded. With ``tune=0`` nothing is
        adapted: the given ``step_size`` (or, if None, the doubling/halving
        heuristic's) and the unit (or given) metric are used throughout. Below 20
        the metric is not adapted; below 150 Stan's windows shrink to 15% / 75% / 10%.
    chains : int
        Independent chains (>= 1).
    seed : int or None
        Makes the whole fit reproducible bit for bit, whatever ``cores`` is; chain
        ``k`` draws from ``numpy.random.SeedSequence(seed).spawn(chains)[k]``.
        None draws fresh entropy from the OS; it is recorded as ``fit.seed``.
    algorithm : {"nuts", "hmc"}
        Multinomial NUTS (Betancourt 2017) or static HMC with ``num_steps`` leapfrog
        steps per draw and a Metropolis correction.
    target_accept : float in (0, 1)
        Mean acceptance statistic that dual averaging aims for (Stan's delta).
    max_treedepth : int
        Maximum number of trajectory doublings per NUTS transition (1 to 30).
    metric : {"unit", "diag", "dense", "diag_grad"} or ndarray
        The Euclidean metric adapted during warmup, or an initial inverse metric
        (shape ``(dim,)`` diagonal or ``(dim, dim)`` dense), e.g. ``fit.inv_metric[0]``
        from an earlier run. "diag" and "dense" follow Stan's windowed warmup.
        "diag_grad" is a diagonal metric adapted as nutpie does it (Seyboldt 2023,
        nuts-rs): ``inv_metric_i = sqrt(var(x_i) / var(grad_i))`` from warmup draws
        ``x`` and the gradients of the log density there, starting from
        ``1 / |grad_i|`` at the initial point and re-estimated after every warmup
        draw from overlapping estimation windows (switching every 10 draws in the
        first 30% of warmup, every 80 later); the last 15% of warmup adapts only
        the step size. It is exact for Gaussians with diagonal covariance after a
        few draws and also adapts with ``tune`` below 20.
    step_size : float, optional
        Initial step size (default 1, then Stan's heuristic); with ``tune=0`` it is
        used as given. As in Stan, dual averaging shrinks towards ``log(10 *
        step_size)`` of this given step until the first metric update (from then on
        towards ten times the step the heuristic finds after each update).
    num_steps : int
        Leapfrog steps per transition; required for, and only for, ``algorithm="hmc"``.
    init : ndarray, optional
        Initial point(s), ``(dim,)`` for every chain or ``(chains, dim)``, on the
        unconstrained scale. Default: ``model.init`` or uniform(-2, 2).
    cores : int, optional
        Chains run at once in threads (default: all available CPUs, at most
        ``chains``). Results do not depend on it.
    progress : bool
        Show a progress bar (draws per second, divergences so far) for runs longer
        than a second.
    step_size_restart : {"every_window", "first_window"}
        When the windowed warmup ("diag", "dense") looks for a new step size and
        restarts dual averaging from it. "every_window" is Stan's: after every
        metric update, so the step size after warmup comes from the 50-iteration
        terminal window alone; dual averaging's average over so few iterations
        leans towards small steps, and the mean acceptance statistic after warmup
        ends up above ``target_accept`` (0.85-0.89 for 0.8 on eight schools and
        J = 1,000). "first_window" restarts only after the first metric update
        and lets dual averaging run on across the later ones, as PyMC's and
        nutpie's warmups do: the acceptance after warmup then matches
        ``target_accept`` (0.80-0.81), the step is larger, and each effective
        draw costs fewer gradients (benchmarks/ADAPTATION.md), at the price of the
        divergences a larger step finds. "diag_grad" always restarts once, at its
        first metric update; "unit" never adapts a metric.
    checks : bool
        Run :func:`uturn.diagnostics.checks` on the fit once the chains are done and
        warn of each problem it finds (default), as PyMC does. False skips them, as
        PyMC's ``compute_convergence_checks=False``: the draws are the same, no
        warning is issued, and ``fit.checks()`` runs them whenever wanted. They cost
        about 0.2 ms per checked scalar (4 ms on eight schools, a third of its
        whole call), which matters only to many short runs (simulation studies,
        benchmarks).

    Returns
    -------
    uturn.Fit

    Raises
    ------
    TypeError, ValueError
        For a bad argument, before any work starts.
    InitializationError
        When no initial point has a finite log density and gradient.
    SamplingError
        When the step-size heuristic fails (e.g. an improper posterior).

    Warns
    -----
    uturn.SamplingWarning
        After the run, for each problem ``uturn.diagnostics.checks`` finds
        (divergences, tree depth saturation, low E-BFMI, high R-hat, low ESS),
        unless ``checks=False``.

    References
    ----------
    Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn Sampler. JMLR 15.
    Betancourt, M. (2017). A Conceptual Introduction to Hamiltonian Monte Carlo.
        arXiv:1701.02434.
    Stan Reference Manual, "MCMC sampling" and "HMC algorithm parameters".
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a uturn.Model, got {type(model).__name__}")
    dim = model.dim
    draws = _check_int("draws", draws, 1)
    tune = _check_int("tune", tune, 0)
    chains = _check_int("chains", chains, 1)
    seed_sequence = _seed_sequence(seed)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    target_accept = _check_float("target_accept", target_accept, 0.0, 1.0)
    max_treedepth = _check_int("max_treedepth", max_treedepth, 1)
    if max_treedepth > MAX_TREEDEPTH_LIMIT:
        raise ValueError(f"max_treedepth must be at most {MAX_TREEDEPTH_LIMIT}, "
                         f"got {max_treedepth}")
    metric_kind, given_inv_metric = _check_metric(metric, dim)
    if step_size is not None:
        step_size = _check_float("step_size", step_size, 0.0, np.inf)
    if algorithm == "hmc":
        if num_steps is None:
            raise ValueError("num_steps (leapfrog steps per transition) is required "
                             "when algorithm='hmc'")
        num_steps = _check_int("num_steps", num_steps, 1)
    elif num_steps is not None:
        raise ValueError("num_steps is only used with algorithm='hmc'; NUTS chooses "
                         "the number of steps itself (see max_treedepth)")
    inits = _check_init(init, chains, dim)
    if cores is None:
        cores = min(chains, os.cpu_count() or 1)
    else:
        cores = _check_int("cores", cores, 1)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if not isinstance(checks, (bool, np.bool_)):
        raise TypeError(f"checks must be True or False, got {checks!r}")
    if not isinstance(step_size_restart, str):
        raise TypeError(f"step_size_restart must be a string, one of {STEP_SIZE_RESTARTS}, "
                        f"got {step_size_restart!r}")
    if step_size_restart not in STEP_SIZE_RESTARTS:
        raise ValueError(f"step_size_restart must be one of {STEP_SIZE_RESTARTS}, got "
                         f"{step_size_restart!r}")

    adapt = tune > 0
    adapt_metric = adapt and metric_kind != "unit"
    grad_metric = adapt_metric and metric_kind == "diag_grad"
    if adapt_metric and tune < 20 and not grad_metric:
        warnings.warn(f"tune={tune} is below 20: the metric is not adapted, only the "
                      f"step size. Use tune >= 150 for Stan's full warmup.",
                      SamplingWarning, stacklevel=2)
        adapt_metric = False
    if given_inv_metric is not None:
        initial_inv_metric = given_inv_metric
    elif metric_kind == "dense":
        initial_inv_metric = np.eye(dim)
    else:
        initial_inv_metric = np.ones((1, dim))
    window_first, window_last, window_ends = window_schedule(tune) \
        if adapt_metric and not grad_metric else (0, -1, np.zeros(0, dtype=np.int64))
    grad_early_end, grad_step_size_only_from = grad_adaptation_schedule(tune) \
        if grad_metric else (0, 0)
    int_settings = np.array([
        draws, tune, _chain.ALGORITHM_NUTS if algorithm == "nuts" else _chain.ALGORITHM_HMC,
        num_steps or 0, max_treedepth, int(adapt), int(adapt_metric),
        int(step_size is None or adapt), window_first, window_last, int(grad_metric),
        grad_early_end, grad_step_size_only_from,
        int(step_size_restart == "every_window")], dtype=np.int64)
    float_settings = np.array([1.0 if step_size is None else step_size, target_accept])
    settings = dict(draws=draws, tune=tune, chains=chains, algorithm=algorithm,
                    target_accept=target_accept, max_treedepth=max_treedepth,
                    metric=metric_kind, step_size=step_size, num_steps=num_steps,
                    cores=cores, metric_given=given_inv_metric is not None,
                    step_size_restart=step_size_restart)

    start = time.perf_counter()
    run_chain = _chain.compiled_run_chain()
    compiled_logp_grad = model._compiled_logp_grad()
    # SFC64 rather than numpy's default PCG64: numba draws its normals a third faster
    # (6.4 against 9.6 ns), and a transition draws one per coordinate (at J = 1,000
    # about a sixth of a leapfrog step's time). Seeded through SeedSequence.spawn,
    # the streams are independent as with any numpy bit generator.
    generators = [np.random.Generator(np.random.SFC64(child))
                  for child in seed_sequence.spawn(chains)]
    positions = [_initial_point(model, generators[c], c, None if inits is None else inits[c])
                 for c in range(chains)]
    n_stats = len(_chain.STAT_NAMES)
    slots = min(draws, DIVERGENCE_POINTS_KEPT, max(1, DIVERGENCE_VALUES_KEPT // dim))
    # Every chain writes straight into its slice of the arrays the Fit keeps, so the
    # draws are never copied (at J = 100,000 they are 3.2 GB).
    all_draws = np.empty((chains, draws, dim))
    all_stats = np.zeros((chains, tune + draws, n_stats))
    outputs = [dict(draws=all_draws[c],
                    stats=all_stats[c],
                    divergence_points=np.zeros((slots, dim)),  # calloc: untouched, unpaid
                    progress=np.zeros(3, dtype=np.int64),
                    result=np.zeros(2),
                    inv_metric=initial_inv_metric.copy())
               for c in range(chains)]
    window_ends = np.ascontiguousarray(window_ends, dtype=np.int64)

    def run(c):
        out = outputs[c]
        return run_chain(compiled_logp_grad, positions[c], int_settings, float_settings,
                         window_ends, generators[c], out["inv_metric"], out["draws"],
                         out["stats"], out["divergence_points"], out["progress"],
                         out["result"])

    done_event = threading.Event()
    monitor = None
    if progress:
        monitor = threading.Thread(
            target=_progress_monitor,
            args=([o["progress"] for o in outputs], chains * (tune + draws), done_event,
                  True), daemon=True)
        monitor.start()
    # Chains always run in worker threads, even one at a time, so that the main
    # thread stays free to show progress and to take a KeyboardInterrupt.
    futures = []
    try:
        pool = _chain_pool(cores)
        futures = [pool.submit(run, c) for c in range(chains)]
        statuses = [f.result() for f in futures]
    except KeyboardInterrupt:
        for out in outputs:
            out["progress"][2] = 1  # ask every chain to stop at its next iteration
        raise
    finally:
        wait(futures)  # no chain may outlive the call: its arrays are ours
        done_event.set()
        if monitor is not None:
            monitor.join()
    elapsed = time.perf_counter() - start

    for c, status in enumerate(statuses):
        if status == _chain.CHAIN_STEP_SIZE_TOO_LARGE:
            raise SamplingError(
                f"chain {c}: the step size grew past 1e7 while looking for one with "
                f"acceptance 0.8. The posterior is probably improper (flat in some "
                f"direction): check the priors.")
        if status == _chain.CHAIN_STEP_SIZE_TOO_SMALL:
            raise SamplingError(
                f"chain {c}: no acceptably small step size could be found. Perhaps the "
                f"posterior is not continuous, or its gradient is wrong.")
        if status == _chain.CHAIN_METRIC_NOT_FINITE:
            raise SamplingError(f"chain {c}: numerical overflow in metric adaptation: the "
                                f"warmup draws have non-finite variance. Check the model.")
        if status != _chain.CHAIN_OK:
            raise SamplingError(f"chain {c} stopped with status {status}")

    fit = _build_fit(model, all_draws, all_stats, outputs, seed_sequence, settings, tune,
                     elapsed)
    if checks:
        warn(_automatic_checks(fit), stacklevel=3)  # at the user's call, as PyMC reports it
    return fit


def _automatic_checks(fit):
    """``checks(fit)`` as every run gets it, at a cost small beside sampling.

    R-hat and ESS cost about 0.2 ms per scalar, so they are computed for at most
    ``AUTO_CHECK_QUANTITIES`` scalars (an info finding says so); above that many
    coordinates they look at the unconstrained draws, so that no derived quantity
    (3.2 GB of theta at J = 100,000) is built just to be checked. ``fit.checks()``
    checks everything.
    """
    if fit.unconstrained.shape[2] <= AUTO_CHECK_QUANTITIES:
        return checks(fit, max_quantities=AUTO_CHECK_QUANTITIES)
    unconstrained = SimpleNamespace(
        posterior=default_constrain(fit.unconstrained, fit.names), stats=fit.stats,
        settings=fit.settings, unconstrained=fit.unconstrained, names=fit.names)
    return checks(unconstrained, max_quantities=AUTO_CHECK_QUANTITIES)


def _build_fit(model, all_draws, all_stats, outputs, seed_sequence, settings, tune,
               elapsed):
    names = _chain.STAT_NAMES
    integer_stats = ("tree_depth", "n_steps")
    boolean_stats = ("diverging", "reached_max_treedepth")

    def columns(part):
        out = {}
        for k, name in enumerate(names):
            if name == "divergence_slot":
                continue
            column = part[:, :, k]
            if name in integer_stats:
                column = column.astype(np.int64)
            elif name in boolean_stats:
                column = column.astype(bool)
            else:
                column = np.ascontiguousarray(column)
            out[name] = column
        return out

    slots = all_stats[:, tune:, names.index("divergence_slot")].astype(np.int64)
    stats = SampleStats(columns(all_stats[:, tune:]), slots,
                        [o["divergence_points"] for o in outputs], model.dim)
    warmup_stats = columns(all_stats[:, :tune])
    inv_metric = np.stack([o["inv_metric"] for o in outputs])
    if inv_metric.shape[1] == 1 and settings["metric"] != "dense":
        inv_metric = inv_metric[:, 0, :]
    seed = seed_sequence.entropy
    return Fit(model=model, unconstrained=all_draws,
               stats=stats, warmup_stats=warmup_stats,
               step_size=np.array([o["result"][0] for o in outputs]),
               inv_metric=inv_metric,
               n_gradient_evals=np.array([int(o["result"][1]) for o in outputs]),
               seed=seed, settings=dict(settings, seed=seed), elapsed=elapsed)

