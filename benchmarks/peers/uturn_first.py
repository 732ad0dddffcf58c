"""uturn with ``step_size_restart="first_window"``: Stan's windows, with dual averaging
restarted after the first only and run on across the later ones (as PyMC and nutpie
do); not uturn's default (Stan's restart after every window)."""
from . import uturn_
from .uturn_ import (PRIME_CACHE, REQUIRES, VERSIONS, build, env,  # noqa: F401
                     fresh_cache_env, gradient_ns, skip_reason)

LABEL = "uturn (first_window)"


def settings(config):
    return (f"`uturn.sample(model, draws={config.draws}, tune={config.tune}, "
            f"chains={config.chains}, seed=seed, cores={config.cores}, "
            f"step_size_restart=\"first_window\", progress=False, checks=False)`: "
            f"not uturn's default; "
            f"diagonal metric, target_accept 0.8, max_treedepth 10")


def run(state, seed):
    """One timed ``uturn.sample(..., step_size_restart="first_window")``."""
    return uturn_.run(state, seed, step_size_restart="first_window")
