"""BlackJAX: Stan-style window adaptation, then NUTS; chains in parallel with ``jax.pmap``.

Everything (adaptation and sampling of one chain) is one jitted function, mapped over
``chains`` host devices; the warm-up run compiles it, timed runs reuse it. float64
(``jax_enable_x64``) like every other sampler here.
"""
import time

import numpy as np

from . import RunOutput
from ._jax_models import host_devices_env, jax_logdensity

LABEL = "BlackJAX (pmap)"
REQUIRES = ("blackjax", "jax")
VERSIONS = ("blackjax", "jax", "jaxlib")
PRIME_CACHE = False    # jax has no persistent compilation cache unless configured


def env(config):
    return host_devices_env(config)


def skip_reason(workload, config, full):
    return None


def settings(config):
    return (f"`blackjax.window_adaptation(blackjax.nuts, logdensity)` "
            f"(target acceptance 0.8, diagonal mass matrix, Stan's windows) `.run(key, init, "
            f"num_steps={config.tune})`, then {config.draws} `blackjax.nuts(logdensity, "
            f"**parameters).step` in a `lax.scan`; one jitted function per chain, "
            f"`jax.pmap` over {config.chains} host devices "
            f"(`XLA_FLAGS=--xla_force_host_platform_device_count={config.chains}`); "
            f"inits uniform(-2, 2) like Stan; hand-written log density on uturn's coordinates")


def fresh_cache_env(directory):
    return {}


def build(workload, config):
    """The pmapped adaptation-and-sampling function (compiled by the first run)."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import blackjax

    if jax.local_device_count() < config.chains:
        raise RuntimeError(f"jax sees {jax.local_device_count()} devices, pmap needs "
                           f"{config.chains}: XLA_FLAGS was set too late")
    logdensity = jax_logdensity(workload)

    def one_chain(key, position):
        warmup_key, sample_key = jax.random.split(key)
        adaptation = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (state, parameters), adaptation_info = adaptation.run(warmup_key, position,
                                                              num_steps=config.tune)
        kernel = blackjax.nuts(logdensity, **parameters).step

        def step(state, key):
            state, info = kernel(key, state)
            return state, (state.position, info.num_integration_steps, info.is_divergent)

        keys = jax.random.split(sample_key, config.draws)
        _, (positions, n_steps, diverging) = jax.lax.scan(step, state, keys)
        return positions, n_steps, diverging, adaptation_info.info.num_integration_steps

    return {"jax": jax, "sampler": jax.pmap(one_chain), "workload": workload,
            "config": config}


def run(state, seed):
    """One timed call of the pmapped sampler -> :class:`RunOutput`."""
    jax, workload, config = state["jax"], state["workload"], state["config"]
    init_key, chain_key = jax.random.split(jax.random.key(int(seed)))
    inits = jax.random.uniform(init_key, (config.chains, workload.dim), minval=-2.0,
                               maxval=2.0)
    keys = jax.random.split(chain_key, config.chains)
    jax.block_until_ready((inits, keys))
    start = time.perf_counter()
    out = jax.block_until_ready(state["sampler"](keys, inits))
    seconds = time.perf_counter() - start
    positions, n_steps, diverging, warmup_steps = out
    del out
    positions = np.asarray(positions)
    if workload.kind == "gaussian":
        draws = workload.select(x=positions)
    else:
        draws = workload.select(mu=positions[..., 0], log_tau=positions[..., 1],
                                group=positions[..., 2:])
    del positions
    return RunOutput(draws=draws, n_steps=np.asarray(n_steps, dtype=np.int64),
                     diverging=np.asarray(diverging, dtype=bool), seconds=seconds,
                     warmup_n_steps=np.asarray(warmup_steps, dtype=np.int64))
