"""nutpie on a PyMC model, compiled with the numba backend.

The timed run asks nutpie for its raw trace (``return_raw_trace=True``, an Apache
Arrow table per chain) and reads the draws and statistics from it into numpy: the
same draws as nutpie's default return, without the conversion to an ArviZ
InferenceData, which is Python work outside the sampler (on eight schools it took
more than half of a stock call's time). The orchestrator's notes report what a
stock call costs.
"""
import time

import numpy as np

from . import RunOutput
from ._pymc_models import pymc_model, select_draws, select_from_posterior, variable_names

LABEL = "nutpie (numba backend)"
REQUIRES = ("nutpie", "pymc")
VERSIONS = ("nutpie", "pymc", "pytensor")
# pytensor's compile directory holds generic ops shared by every model: prime it with
# an unrelated model so that only this model's own code is new in the first call.
PRIME_CACHE = True


def env(config):
    return {}


def skip_reason(workload, config, full):
    return None


def settings(config):
    return (f"`nutpie.compile_pymc_model(model, backend=\"numba\")` then "
            f"`nutpie.sample(compiled, chains={config.chains}, tune={config.tune}, "
            f"draws={config.draws}, seed=seed, cores={config.cores}, progress_bar=False, "
            f"return_raw_trace=True)` with the draws and statistics read from its Arrow "
            f"trace into numpy inside the timed run; nutpie's defaults otherwise "
            f"(target_accept 0.8, maxdepth 10, its gradient-based diagonal mass matrix, "
            f"save_warmup=True)")


def fresh_cache_env(directory):
    return {"PYTENSOR_FLAGS": f"base_compiledir={directory}/pytensor",
            "NUMBA_CACHE_DIR": f"{directory}/numba"}


def build(workload, config):
    """The PyMC model compiled by nutpie's numba backend."""
    import nutpie
    compiled = nutpie.compile_pymc_model(pymc_model(workload), backend="numba")
    return {"nutpie": nutpie, "compiled": compiled, "workload": workload, "config": config}


def _sample(state, seed, raw):
    config = state["config"]
    return state["nutpie"].sample(state["compiled"], chains=config.chains,
                                  tune=config.tune, draws=config.draws, seed=int(seed),
                                  cores=config.cores, progress_bar=False,
                                  return_raw_trace=raw)


def _column(batch, name):
    """A column of an Arrow record batch as numpy: (rows,) or (rows, size) for a vector."""
    import pyarrow
    values = pyarrow.array(batch.column(name))
    if pyarrow.types.is_list(values.type) or pyarrow.types.is_large_list(values.type):
        return values.flatten().to_numpy(zero_copy_only=False).reshape(len(values), -1)
    return values.to_numpy(zero_copy_only=False)


def _from_raw_trace(workload, draw_batches, stat_batches):
    """The run's figures from nutpie's raw trace (its Arrow batches, which the trace
    gives out once): draws and statistics per chain, warmup rows (``tuning``) first, as
    nutpie's own conversion to ArviZ splits them."""
    names = variable_names(workload)
    draws = {name: [] for name in names}
    n_steps, diverging, warmup_n_steps = [], [], []
    for draw_batch, stat_batch in zip(draw_batches, stat_batches):
        tuning = _column(stat_batch, "tuning").astype(bool)
        for name in names:
            draws[name].append(_column(draw_batch, name)[~tuning])
        steps = _column(stat_batch, "n_steps").astype(np.int64)
        n_steps.append(steps[~tuning])
        warmup_n_steps.append(steps[tuning])
        diverging.append(_column(stat_batch, "diverging").astype(bool)[~tuning])
    selected = select_draws(workload, {name: np.stack(chains)
                                       for name, chains in draws.items()})
    return selected, np.stack(n_steps), np.stack(diverging), np.stack(warmup_n_steps)


def run(state, seed):
    """One timed ``nutpie.sample``, draws read from its raw trace -> :class:`RunOutput`."""
    start = time.perf_counter()
    trace = _sample(state, seed, raw=True)
    draw_batches, stat_batches = trace.get_arrow_trace()
    draws, n_steps, diverging, warmup_n_steps = _from_raw_trace(state["workload"],
                                                                draw_batches, stat_batches)
    seconds = time.perf_counter() - start
    step_size, acceptance = _adaptation_stats(stat_batches)
    del trace, draw_batches, stat_batches
    return RunOutput(draws=draws, n_steps=n_steps, diverging=diverging, seconds=seconds,
                     warmup_n_steps=warmup_n_steps, step_size=step_size,
                     acceptance=acceptance)


def _adaptation_stats(stat_batches):
    """Each chain's step size after warmup and its sampling-phase ``mean_tree_accept``
    (Stan's accept_stat__), from the raw trace's statistics, after the timed call."""
    step_size, acceptance = [], []
    for stat_batch in stat_batches:
        tuning = _column(stat_batch, "tuning").astype(bool)
        step_size.append(_column(stat_batch, "step_size")[~tuning][0])
        acceptance.append(_column(stat_batch, "mean_tree_accept")[~tuning])
    return np.array(step_size, dtype=float), np.stack(acceptance).astype(float)


def run_stock(state, seed):
    """One ``nutpie.sample`` as a user calls it, returning an ArviZ InferenceData
    (timed with the conversion) -> :class:`RunOutput`."""
    workload = state["workload"]
    start = time.perf_counter()
    trace = _sample(state, seed, raw=False)
    seconds = time.perf_counter() - start
    stats = trace.sample_stats
    warmup = trace.warmup_sample_stats["n_steps"].values
    output = RunOutput(draws=select_from_posterior(workload, trace.posterior),
                       n_steps=stats["n_steps"].values.astype(np.int64),
                       diverging=stats["diverging"].values.astype(bool), seconds=seconds,
                       warmup_n_steps=warmup.astype(np.int64))
    del trace
    return output


_STOCK_RUN_MAX_DIM = 10_000   # the extra stock run is a full run: only where it is cheap


def extra_notes(state, seed):
    """How long the same run takes when nutpie returns an InferenceData (its default)."""
    workload = state["workload"]
    if workload.dim > _STOCK_RUN_MAX_DIM:
        return []
    stock_seconds = run_stock(state, seed).seconds
    raw_seconds = run(state, seed).seconds
    return [f"nutpie returns an ArviZ InferenceData by default; that conversion is Python "
            f"work after sampling: a stock call took {stock_seconds:.3f} s on "
            f"{workload.name} where the same seed with `return_raw_trace=True` and the "
            f"draws read into numpy took {raw_seconds:.3f} s (the table times the latter)"]
