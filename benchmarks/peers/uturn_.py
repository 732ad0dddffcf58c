"""uturn: ``uturn.sample`` on the hand-coded models of ``uturn.models``.

The timed run passes ``checks=False``: the draws are the same, but the R-hat, ESS and
divergence checks that a stock call runs on its fit afterwards (Python work outside the
sampler, like nutpie's conversion to an InferenceData and PyMC's convergence checks,
which the other peers' timed runs skip too) are left out. The orchestrator's notes
report what a stock call costs.
"""
import time
import warnings

import numpy as np

from . import RunOutput

LABEL = "uturn"
REQUIRES = ("uturn", "numba")
VERSIONS = ("uturn", "numba")
# The sampler's kernels live in numba's disk cache; a model's wrapper is never cached,
# so a primed cache leaves exactly "sampler cached, model new" for the first call.
PRIME_CACHE = True


def env(config):
    return {}


def skip_reason(workload, config, full):
    return None


def settings(config):
    return (f"`uturn.sample(model, draws={config.draws}, tune={config.tune}, "
            f"chains={config.chains}, seed=seed, cores={config.cores}, progress=False, "
            f"checks=False)`: defaults otherwise (diagonal metric, target_accept 0.8, "
            f"max_treedepth 10); `checks=False` only skips the automatic R-hat/ESS/"
            f"divergence warnings after sampling (as PyMC's `compute_convergence_checks="
            f"False`)")


def fresh_cache_env(directory):
    # Keep the current numba cache: it holds the sampler, never a model.
    return {}


def build(workload, config):
    """uturn's hand-coded model of ``workload``, its wrapper compiled by one call."""
    import uturn
    model = workload.uturn_model()
    # Compile the model's wrapper now, not inside the first timed run.
    model.logp_grad(np.zeros(model.dim) + 0.1, np.empty(model.dim))
    return {"uturn": uturn, "model": model, "workload": workload, "config": config}


def run(state, seed, metric="diag", step_size_restart="every_window", checks=False):
    """One timed ``uturn.sample`` -> :class:`benchmarks.peers.RunOutput`; ``checks=True``
    is the stock call, with the automatic checks after sampling."""
    uturn, model, workload, config = (state[k] for k in ("uturn", "model", "workload",
                                                         "config"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # convergence warnings: the report has them
        start = time.perf_counter()
        fit = uturn.sample(model, draws=config.draws, tune=config.tune,
                           chains=config.chains, seed=seed, cores=config.cores,
                           metric=metric, step_size_restart=step_size_restart,
                           progress=False, checks=checks)
        seconds = time.perf_counter() - start
    # Every coordinate monitored: the Fit's own array, not a copy that the memory
    # measurement would charge to the sampler.
    draws = fit.unconstrained if workload.all_monitored \
        else np.ascontiguousarray(fit.unconstrained[:, :, workload.monitored])
    sampling = fit.stats["n_steps"].astype(np.int64)
    warmup = np.asarray(fit.warmup_stats["n_steps"], dtype=np.int64)
    # n_gradient_evals also counts the step-size searches at the start and after
    # every metric update: everything not in a transition's n_steps.
    extra = int(np.sum(fit.n_gradient_evals)) - int(sampling.sum()) - int(warmup.sum())
    return RunOutput(draws=draws, n_steps=sampling,
                     diverging=np.asarray(fit.stats["diverging"], dtype=bool),
                     seconds=seconds, warmup_n_steps=warmup, extra_warmup_gradients=extra,
                     step_size=np.asarray(fit.step_size, dtype=float),
                     acceptance=np.asarray(fit.stats["acceptance_rate"], dtype=float))


_STOCK_RUN_MAX_DIM = 10_000   # the extra stock run is a full run: only where it is cheap


def extra_notes(state, seed):
    """How long the same run takes with the automatic checks (the default)."""
    from uturn.sampling import AUTO_CHECK_QUANTITIES
    if state["workload"].dim > _STOCK_RUN_MAX_DIM:
        return []
    # The worker has not run the checks yet: their first call imports scipy.fft and
    # fills caches, a one-off cost that a warm process does not pay again.
    run(state, seed, checks=True)
    stock_seconds = run(state, seed, checks=True).seconds
    timed_seconds = run(state, seed).seconds
    return [f"uturn checks every fit after sampling by default (R-hat and ESS of up to "
            f"{AUTO_CHECK_QUANTITIES} quantities, divergences, tree depth, E-BFMI), "
            f"Python work after the chains: a stock call took {stock_seconds:.4f} s on "
            f"{state['workload'].name} where the same seed with `checks=False` took "
            f"{timed_seconds:.4f} s (the table times the latter)"]


_CALL_LOOP = None


def _call_loop():
    """``benchmarks/models.py``'s ``_call_loop``, compiled here without ``cache=True``
    (importing that module would cache it under a package name the script cannot load)."""
    global _CALL_LOOP
    if _CALL_LOOP is None:
        from numba import njit, types

        from uturn.model import LOGP_GRAD_TYPE

        @njit(types.float64(LOGP_GRAD_TYPE, types.float64[::1], types.float64[::1],
                            types.int64), nogil=True)
        def call_loop(logp_grad, x, grad, n_calls):
            total = 0.0
            for i in range(n_calls):
                x[i % x.shape[0]] += 1e-12     # every call depends on the last
                total += logp_grad(x, grad)
            return total
        _CALL_LOOP = call_loop
    return _CALL_LOOP


def gradient_ns(state, repeats=7):
    """Bare ``logp_grad`` cost in ns: the best of ``repeats`` loops of ~0.1 s.

    The model is called through the first-class function type the sampler uses, from a
    compiled loop, so no Python overhead is counted (as ``benchmarks/models.py``).
    """
    model, workload = state["model"], state["workload"]
    rng = np.random.default_rng(1)
    if workload.kind == "gaussian":
        x = workload.mean + rng.normal(size=workload.dim)
    else:
        group = rng.normal(5, 5, size=workload.n_groups) if workload.centered \
            else rng.normal(size=workload.n_groups)
        x = np.concatenate([[4.0, 1.0], group])
    loop = _call_loop()
    grad = np.empty(model.dim)
    n_calls = max(200, int(3e7 / model.dim))
    loop(model.logp_grad, x, grad, 10)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        loop(model.logp_grad, x, grad, n_calls)
        best = min(best, (time.perf_counter() - start) / n_calls)
    return best * 1e9
