"""The workloads as JAX log densities on uturn's unconstrained coordinates (BlackJAX).

``logdensity(position)`` takes a flat float64 vector ``(mu, log_tau, nu or theta)``
or ``x`` and returns the log density with the Jacobian of ``tau = exp(log_tau)``,
up to a constant: the same function uturn's hand-coded model computes.
"""
import math

import numpy as np


def host_devices_env(config):
    """One XLA host device per chain for ``pmap``; jax reads this once, at import, so
    the worker sets it before importing jax (BlackJAX and NumPyro alike)."""
    import os
    flags = os.environ.get("XLA_FLAGS", "")
    return {"XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={config.chains}"
            .strip()}


def jax_logdensity(workload):
    """A pure JAX function of the flat unconstrained position (imports jax)."""
    import jax.numpy as jnp

    if workload.kind == "gaussian":
        # The precision-matrix form uturn's dense_gaussian uses: one matrix-vector product.
        precision = jnp.asarray(np.linalg.inv(workload.cov))
        mean = jnp.asarray(workload.mean)

        def gaussian(x):
            d = x - mean
            return -0.5 * d @ (precision @ d)
        return gaussian

    y = jnp.asarray(workload.y)
    inv_sigma2 = jnp.asarray(1.0 / workload.sigma**2)
    log_tau_scale = math.log(5.0)

    def hyperprior(mu, log_tau):
        # mu ~ N(0, 5); tau ~ Half-Cauchy(0, 5) with the log-transform Jacobian (+ log_tau).
        return (-0.5 * mu**2 / 25.0 - jnp.logaddexp(0.0, 2.0 * (log_tau - log_tau_scale))
                + log_tau)

    if workload.centered:
        def centered(position):
            mu, log_tau, theta = position[0], position[1], position[2:]
            z = (theta - mu) * jnp.exp(-log_tau)
            return (hyperprior(mu, log_tau) - 0.5 * jnp.sum(z * z) - theta.size * log_tau
                    - 0.5 * jnp.sum((y - theta) ** 2 * inv_sigma2))
        return centered

    def noncentered(position):
        mu, log_tau, nu = position[0], position[1], position[2:]
        residual = y - (mu + jnp.exp(log_tau) * nu)
        return (hyperprior(mu, log_tau) - 0.5 * jnp.sum(nu * nu)
                - 0.5 * jnp.sum(residual**2 * inv_sigma2))
    return noncentered
