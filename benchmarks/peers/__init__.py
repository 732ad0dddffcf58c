"""One small module per sampler, all with the same interface.

Each module defines

* ``LABEL`` (str) and ``REQUIRES`` (import names that must be installed),
  ``VERSIONS`` (distributions whose versions the report lists);
* ``env(config)`` (dict): environment variables the worker sets *before* the
  peer's packages are imported (JAX reads ``XLA_FLAGS`` once, at import);
* ``skip_reason(workload, config, full)``: why the peer is skipped up front on this
  workload (None to run it); ``full`` forces every combination;
* ``settings(config)``: the exact call, for the report's notes;
* ``build(workload, config)``: import, build and compile the model; returns a state;
* ``run(state, seed)``: one timed sampling run -> :class:`RunOutput`;
* optionally ``extra_notes(state, seed)``: notes the peer measures about itself
  once, after the warm-up run (list of str);
* ``fresh_cache_env(directory)``: environment that gives the peer empty on-disk
  caches for its models (first-call timing), and ``PRIME_CACHE`` (bool): whether the
  first-call measurement runs an unrelated model first in that cache, so that what
  the peer shares between all models is cached and only the model is new.

Heavy imports happen inside ``build`` so that the orchestrator can list and
skip peers without importing them.
"""
import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["SAMPLERS", "RunConfig", "RunOutput", "load", "missing_packages"]

#: Every sampler, in report order.
SAMPLERS = ("uturn", "uturn_grad", "uturn_first", "stan", "nutpie", "blackjax", "numpyro",
            "pymc")
_MODULES = {"uturn": "uturn_", "uturn_grad": "uturn_grad", "uturn_first": "uturn_first",
            "stan": "stan_", "nutpie": "nutpie_",
            "blackjax": "blackjax_", "numpyro": "numpyro_", "pymc": "pymc_"}


@dataclass(frozen=True)
class RunConfig:
    """Settings shared by every sampler: chains, warmup and kept draws per chain,
    and how many chains may run at once (cores)."""

    chains: int = 4
    tune: int = 1000
    draws: int = 1000
    cores: int = 2


@dataclass
class RunOutput:
    """What a peer's ``run`` hands to the common statistics.

    Attributes
    ----------
    draws : ndarray (chains, draws, k)
        The workload's monitored coordinates (``Workload.select``), uturn's order.
    n_steps : ndarray (chains, draws)
        Leapfrog steps (= gradient evaluations) of each sampling-phase transition.
    diverging : ndarray (chains, draws), bool
    seconds : float
        Wall time of the sampling call alone (model already built and compiled).
    warmup_n_steps : ndarray (chains, tune) or None
        The same for the warmup transitions, None when the peer does not report them.
    extra_warmup_gradients : int or None
        Gradients spent outside the warmup transitions (step-size searches) when the
        peer counts them; None when it does not report them.
    notes : list of str
    step_size : ndarray (chains,) or None
        Each chain's step size after warmup, None where the peer's is not read.
    acceptance : ndarray (chains, draws) or None
        The acceptance statistic of each sampling-phase transition (Stan's
        ``accept_stat__``: the mean Metropolis probability over the trajectory's
        states, which dual averaging steers to ``target_accept``), None where not read.
        Both are read after the timed call, for the warmup study
        (``benchmarks.adaptation``).
    """

    draws: np.ndarray
    n_steps: np.ndarray
    diverging: np.ndarray
    seconds: float
    warmup_n_steps: Optional[np.ndarray] = None
    extra_warmup_gradients: Optional[int] = None
    notes: list = field(default_factory=list)
    step_size: Optional[np.ndarray] = None
    acceptance: Optional[np.ndarray] = None


def load(name):
    """The peer module of sampler ``name``."""
    if name not in _MODULES:
        raise KeyError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


def missing_packages(name):
    """The import names of ``name``'s requirements that are not installed (no import)."""
    return [package for package in load(name).REQUIRES
            if importlib.util.find_spec(package) is None]


def package_version(distribution):
    """Installed version of a distribution, or None."""
    from importlib import metadata
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
