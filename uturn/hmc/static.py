"""One transition of static HMC: a fixed number of leapfrog steps and a Metropolis test.

Draw ``p ~ N(0, M)``, integrate ``num_steps`` leapfrog steps to ``(q*, p*)`` and
accept with probability ``min(1, exp(H(q, p) - H(q*, p*)))`` (Neal 2011, eq. 5.21
onward). A step whose energy error exceeds 1000, or whose log density or gradient
is not finite, ends the trajectory as a divergence and the chain stays put.

References
----------
Duane, S., Kennedy, A. D., Pendleton, B. J. and Roweth, D. (1987). Hybrid Monte
    Carlo. Physics Letters B 195(2), 216-222.
Neal, R. M. (2011). MCMC using Hamiltonian dynamics. Handbook of MCMC, ch. 5.
"""
import numpy as np
from numba import njit

from .integrator import (JIT_OPTIONS, NO_REFCOUNT, draw_momentum, kinetic_energy, leapfrog,
                         velocity)
from .nuts import MAX_ENERGY_ERROR
from .workspace import padded, take

__all__ = ["hmc_workspace", "hmc_workspace_size", "hmc_workspace_in", "hmc_transition"]


@njit(**JIT_OPTIONS)
def hmc_workspace(dim):
    """``(trajectory (4, dim): q, p, grad, p_sharp; divergence_point (dim,))``."""
    return hmc_workspace_in(np.zeros(hmc_workspace_size(dim)), 0, dim)[0]


@njit(**JIT_OPTIONS)
def hmc_workspace_size(dim):
    """Elements of ``block`` that :func:`hmc_workspace_in` takes."""
    return padded(4 * dim) + padded(dim)


@njit(**JIT_OPTIONS)
def hmc_workspace_in(block, offset, dim):
    """:func:`hmc_workspace` cut from a zeroed ``block`` at ``offset``; returns the
    workspace and the offset after it (see :mod:`uturn.hmc.workspace`)."""
    trajectory, offset = take(block, offset, 4 * dim)
    divergence_point, offset = take(block, offset, dim)
    divergence_point[:] = np.nan
    return (trajectory.reshape((4, dim)), divergence_point), offset


@njit(**NO_REFCOUNT)
def hmc_transition(logp_grad, q, grad, logp, step_size, inv_metric, metric_factor,
                   num_steps, rng, workspace):
    """One static-HMC transition from ``q``; ``q`` and ``grad`` are updated in place.

    Returns the same tuple as :func:`uturn.hmc.nuts.nuts_transition`, with
    ``tree_depth`` 0 and ``acceptance_rate`` the Metropolis acceptance probability.
    """
    trajectory, divergence_point = workspace
    q_new, p, grad_new, p_sharp = trajectory[0], trajectory[1], trajectory[2], trajectory[3]
    dim = q.shape[0]

    draw_momentum(rng, metric_factor, p)
    velocity(inv_metric, p, p_sharp)
    H0 = -logp + kinetic_energy(p, p_sharp)
    for i in range(dim):
        q_new[i] = q[i]
        grad_new[i] = grad[i]

    logp_new = logp
    energy_error = 0.0
    max_energy_error = 0.0
    diverging = False
    n_steps = 0
    for _ in range(num_steps):
        logp_new, kinetic = leapfrog(logp_grad, q_new, p, grad_new, p_sharp, step_size,
                                     inv_metric)
        n_steps += 1
        energy_error = kinetic - logp_new - H0
        if np.isnan(energy_error):
            energy_error = np.inf
        if not abs(energy_error) <= abs(max_energy_error):
            max_energy_error = energy_error
        if not np.isfinite(energy_error) or energy_error > MAX_ENERGY_ERROR:
            diverging = True
            for i in range(dim):
                divergence_point[i] = q_new[i]
            break

    if diverging:
        acceptance_rate = 0.0
    else:
        acceptance_rate = 1.0 if energy_error < 0.0 else np.exp(-energy_error)
    if not diverging and rng.random() < acceptance_rate:
        for i in range(dim):
            q[i] = q_new[i]
            grad[i] = grad_new[i]
        return (logp_new, H0 + energy_error, energy_error, max_energy_error, 0, n_steps,
                acceptance_rate, diverging, False)
    return (logp, H0, 0.0, max_energy_error, 0, n_steps, acceptance_rate, diverging, False)
