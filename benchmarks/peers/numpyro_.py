"""NumPyro: ``MCMC(NUTS(model), chain_method="parallel", jit_model_args=True)``.

NumPyro's ``"parallel"`` chain method calls ``jax.pmap`` on a new ``functools.partial``
at every ``run``, which misses jax's compilation cache: every run recompiles (seconds
at eight schools), ``jit_model_args=True`` notwithstanding. That is compile time,
not sampling time, so ``chain_method`` here is :func:`_CachedPmap`, a callable that
pmaps the same chain function once and passes the model's data as arguments: the
same algorithm, draws identical bit for bit (checked on eight schools), compiled
once. The orchestrator's notes report what a stock ``"parallel"`` run costs.
"""
import time

import numpy as np

from . import RunOutput
from ._jax_models import host_devices_env

LABEL = "NumPyro (pmap)"
REQUIRES = ("numpyro", "jax")
VERSIONS = ("numpyro", "jax", "jaxlib")
PRIME_CACHE = False

_FIELDS = ("num_steps", "diverging")


def env(config):
    return host_devices_env(config)


def skip_reason(workload, config, full):
    return None


def settings(config):
    return (f"`MCMC(NUTS(model), num_warmup={config.tune}, num_samples={config.draws}, "
            f"num_chains={config.chains}, chain_method=<parallel, pmap compiled once>, "
            f"jit_model_args=True, progress_bar=False)`; `mcmc.warmup(key, ..., "
            f"collect_warmup=True, extra_fields=(\"num_steps\",))` then `mcmc.run(...)` "
            f"(to count warmup gradients); NUTS defaults (target_accept_prob 0.8, "
            f"max_tree_depth 10, diagonal mass matrix); float64")


def fresh_cache_env(directory):
    return {}


class _CachedPmap:
    """A ``chain_method`` for ``numpyro.infer.MCMC``: ``jax.pmap`` of the chain function,
    built once per set of collected fields, with the model's arguments passed in
    (broadcast to every device) instead of closed over."""

    def __init__(self, jax):
        self.jax = jax
        self.cache = {}

    def __call__(self, partial_map_fn):
        function, keywords = partial_map_fn.func, partial_map_fn.keywords
        key = (function, keywords["collect_fields"], keywords["remove_sites"])
        if key not in self.cache:
            collect, remove = keywords["collect_fields"], keywords["remove_sites"]

            def chain(map_args, args, kwargs):
                return function(map_args, args=args, kwargs=kwargs, collect_fields=collect,
                                remove_sites=remove)
            self.cache[key] = self.jax.pmap(chain, in_axes=(0, None, None))
        mapped = self.cache[key]
        return lambda map_args: mapped(map_args, keywords["args"], keywords["kwargs"])


def _model(workload):
    import numpyro
    import numpyro.distributions as dist

    if workload.kind == "gaussian":
        chol = np.linalg.cholesky(workload.cov)

        def gaussian(mean, scale_tril):
            numpyro.sample("x", dist.MultivariateNormal(mean, scale_tril=scale_tril))
        return gaussian, (workload.mean, chol)

    def hierarchical(y, sigma):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))   # sampled as log(tau)
        with numpyro.plate("groups", y.shape[0]):
            if workload.centered:
                theta = numpyro.sample("theta", dist.Normal(mu, tau))
            else:
                theta = mu + tau * numpyro.sample("nu", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)
    return hierarchical, (workload.y, workload.sigma)


def _mcmc(jax, model, config, chain_method):
    from numpyro.infer import MCMC, NUTS
    return MCMC(NUTS(model), num_warmup=config.tune, num_samples=config.draws,
                num_chains=config.chains, chain_method=chain_method, jit_model_args=True,
                progress_bar=False)


def build(workload, config):
    """The NumPyro model and an ``MCMC`` object (compiled by the first run)."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    if jax.local_device_count() < config.chains:
        raise RuntimeError(f"jax sees {jax.local_device_count()} devices, pmap needs "
                           f"{config.chains}: XLA_FLAGS was set too late")
    model, data = _model(workload)
    data = tuple(jnp.asarray(d) for d in data)
    return {"jax": jax, "mcmc": _mcmc(jax, model, config, _CachedPmap(jax)),
            "model": model, "data": data, "workload": workload, "config": config}


def _sample(jax, mcmc, data, seed):
    mcmc.warmup(jax.random.key(int(seed)), *data, collect_warmup=True,
                extra_fields=("num_steps",))
    warmup_steps = mcmc.get_extra_fields(group_by_chain=True)["num_steps"]
    mcmc.run(mcmc.post_warmup_state.rng_key, *data, extra_fields=_FIELDS)
    samples = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return jax.block_until_ready((samples, extra, warmup_steps))


def stock_parallel_seconds(state, seed):
    """Wall time of one run with NumPyro's own ``chain_method="parallel"`` (recompiles)."""
    jax = state["jax"]
    mcmc = _mcmc(jax, state["model"], state["config"], "parallel")
    start = time.perf_counter()
    jax.block_until_ready(mcmc.run(jax.random.key(int(seed)), *state["data"]))
    jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    return time.perf_counter() - start


_STOCK_RUN_MAX_DIM = 10_000   # the extra stock run is a full run: only where it is cheap


def extra_notes(state, seed):
    """How long a run takes with NumPyro's own ``chain_method="parallel"``."""
    if state["workload"].dim > _STOCK_RUN_MAX_DIM:
        return []
    seconds = stock_parallel_seconds(state, seed)
    return [f"NumPyro with its stock `chain_method=\"parallel\"` recompiles at every "
            f"`run`: one such run took {seconds:.2f} s on {state['workload'].name} "
            f"(the table times the same sampler compiled once)"]


def run(state, seed):
    """One timed ``mcmc.warmup`` + ``mcmc.run`` -> :class:`RunOutput`."""
    jax, workload = state["jax"], state["workload"]
    start = time.perf_counter()
    samples, extra, warmup_steps = _sample(jax, state["mcmc"], state["data"], seed)
    seconds = time.perf_counter() - start
    if workload.kind == "gaussian":
        draws = workload.select(x=np.asarray(samples["x"]))
    else:
        draws = workload.select(mu=np.asarray(samples["mu"]),
                                log_tau=np.log(np.asarray(samples["tau"])),
                                group=np.asarray(samples[workload.group_name]))
    del samples
    return RunOutput(draws=draws, n_steps=np.asarray(extra["num_steps"], dtype=np.int64),
                     diverging=np.asarray(extra["diverging"], dtype=bool), seconds=seconds,
                     warmup_n_steps=np.asarray(warmup_steps, dtype=np.int64))
