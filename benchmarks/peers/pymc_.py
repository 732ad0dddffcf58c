"""PyMC's own NUTS (``pm.sample`` with the default C backend)."""
import time
import warnings

import numpy as np

from . import RunOutput
from ._pymc_models import pymc_model, select_from_posterior

LABEL = "PyMC"
REQUIRES = ("pymc",)
VERSIONS = ("pymc", "pytensor")
PRIME_CACHE = True    # pytensor's compile directory: see nutpie_.py

# PyMC's NUTS loop runs in Python, every leapfrog step a few numpy calls on the
# whole vector. At J = 100,000 on the 2-core development machine, a 4 x (150 + 50)
# trial had not finished its first run after 3.5 minutes: a default 4 x (1,000 +
# 1,000) run would take over half an hour, and a workload needs four.
_LARGE = 10_000


def env(config):
    return {}


def skip_reason(workload, config, full):
    if workload.dim > _LARGE and not full:
        return (f"PyMC's Python NUTS loop at dim {workload.dim:,}: a 4 × (150 + 50) trial "
                f"ran over 3.5 min on 2 cores, so a default run takes over half an hour "
                f"and 4 are needed (--full to try)")
    return None


def settings(config):
    return (f"`pm.sample(draws={config.draws}, tune={config.tune}, chains={config.chains}, "
            f"cores={config.cores}, random_seed=seed, progressbar=False, "
            f"compute_convergence_checks=False, discard_tuned_samples=False)`: default "
            f"NUTS (jitter+adapt_diag init, target_accept 0.8, max depth 10, C backend); "
            f"`compute_convergence_checks=False` only skips PyMC's own R-hat/ESS "
            f"warnings after sampling, `discard_tuned_samples=False` keeps the warmup "
            f"statistics for the gradient count (and the warmup draws in memory)")


def fresh_cache_env(directory):
    return {"PYTENSOR_FLAGS": f"base_compiledir={directory}/pytensor"}


def build(workload, config):
    """The PyMC model (``pm.sample`` compiles its functions at every call)."""
    import pymc
    return {"pm": pymc, "model": pymc_model(workload), "workload": workload,
            "config": config}


def run(state, seed):
    """One timed ``pm.sample`` -> :class:`RunOutput`."""
    pm, workload, config = state["pm"], state["workload"], state["config"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        with state["model"]:
            idata = pm.sample(draws=config.draws, tune=config.tune, chains=config.chains,
                              cores=config.cores, random_seed=int(seed), progressbar=False,
                              compute_convergence_checks=False,
                              discard_tuned_samples=False)
        seconds = time.perf_counter() - start
    stats = idata.sample_stats
    output = RunOutput(draws=select_from_posterior(workload, idata.posterior),
                       n_steps=stats["n_steps"].values.astype(np.int64),
                       diverging=stats["diverging"].values.astype(bool), seconds=seconds,
                       warmup_n_steps=idata.warmup_sample_stats["n_steps"].values
                       .astype(np.int64),
                       step_size=stats["step_size"].values[:, 0].astype(float),
                       acceptance=stats["acceptance_rate"].values.astype(float))
    del idata
    return output
