"""nutpie on a PyMC model, compiled with the numba backend."""
import time

import numpy as np

from . import RunOutput
from ._pymc_models import pymc_model, select_from_posterior

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
            f"draws={config.draws}, seed=seed, cores={config.cores}, progress_bar=False)`; "
            f"nutpie's defaults otherwise (target_accept 0.8, maxdepth 10, its "
            f"gradient-based diagonal mass matrix, save_warmup=True)")


def fresh_cache_env(directory):
    return {"PYTENSOR_FLAGS": f"base_compiledir={directory}/pytensor",
            "NUMBA_CACHE_DIR": f"{directory}/numba"}


def build(workload, config):
    """The PyMC model compiled by nutpie's numba backend."""
    import nutpie
    compiled = nutpie.compile_pymc_model(pymc_model(workload), backend="numba")
    return {"nutpie": nutpie, "compiled": compiled, "workload": workload, "config": config}


def run(state, seed):
    """One timed ``nutpie.sample`` -> :class:`RunOutput`."""
    nutpie, workload, config = state["nutpie"], state["workload"], state["config"]
    start = time.perf_counter()
    trace = nutpie.sample(state["compiled"], chains=config.chains, tune=config.tune,
                          draws=config.draws, seed=int(seed), cores=config.cores,
                          progress_bar=False)
    seconds = time.perf_counter() - start
    stats = trace.sample_stats
    warmup = trace.warmup_sample_stats["n_steps"].values if "warmup_sample_stats" in trace \
        else None
    output = RunOutput(draws=select_from_posterior(workload, trace.posterior),
                       n_steps=stats["n_steps"].values.astype(np.int64),
                       diverging=stats["diverging"].values.astype(bool), seconds=seconds,
                       warmup_n_steps=None if warmup is None else warmup.astype(np.int64))
    del trace
    return output
