"""uturn with ``metric="diag_grad"``: the diagonal metric adapted from draws and
gradients as nutpie does (Seyboldt 2023), not uturn's default (Stan's warmup)."""
from . import uturn_
from .uturn_ import (PRIME_CACHE, REQUIRES, VERSIONS, build, env,  # noqa: F401
                     fresh_cache_env, gradient_ns, skip_reason)

LABEL = "uturn (diag_grad)"


def settings(config):
    return (f"`uturn.sample(model, draws={config.draws}, tune={config.tune}, "
            f"chains={config.chains}, seed=seed, cores={config.cores}, metric=\"diag_grad\", "
            f"progress=False, checks=False)`: not uturn's default; target_accept 0.8, "
            f"max_treedepth 10")


def run(state, seed):
    """One timed ``uturn.sample(..., metric="diag_grad")``."""
    return uturn_.run(state, seed, metric="diag_grad")
