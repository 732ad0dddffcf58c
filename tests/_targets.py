"""Log densities shared by the core tests: module-level so numba compiles each once.

Each is exported as a cfunc of ``LOGP_GRAD_SIGNATURE``, the first-class function type
the sampler's kernels take. Passed to a cached kernel (``nuts_transition``,
``leapfrog``) a dispatcher would instead specialise the kernel on that dispatcher's
own type: a new disk-cache entry in every test process, until numba fails to save
one ("underlying object has vanished").
"""
import numpy as np
from numba import cfunc, njit

from uturn.model import LOGP_GRAD_SIGNATURE


@njit(nogil=True)
def _smooth_anisotropic(x, grad):
    """A smooth, non-Gaussian, anisotropic density with no captured data:
    log p = -sum_i (a_i x_i^2 / 2 + log cosh(x_i)), a_i = 1 + (i mod 4)."""
    total = 0.0
    for i in range(x.shape[0]):
        a = 1.0 + (i % 4)
        total -= 0.5 * a * x[i] * x[i] + np.log(np.cosh(x[i]))
        grad[i] = -a * x[i] - np.tanh(x[i])
    return total


@njit(nogil=True)
def _standard_normal(x, grad):
    total = 0.0
    for i in range(x.shape[0]):
        grad[i] = -x[i]
        total -= 0.5 * x[i] * x[i]
    return total


@njit(nogil=True)
def _flat(x, grad):
    """Zero potential: trajectories are straight lines and never turn back."""
    for i in range(x.shape[0]):
        grad[i] = 0.0
    return 0.0


@njit(nogil=True)
def _half_normal_wall(x, grad):
    """N(0, 1) truncated to x_0 <= 1 (a hard wall: -inf beyond), other coordinates N(0, 1)."""
    if x[0] > 1.0:
        for i in range(x.shape[0]):
            grad[i] = 0.0
        return -np.inf
    return _standard_normal(x, grad)


@njit(nogil=True)
def _nan_everywhere(x, grad):
    for i in range(x.shape[0]):
        grad[i] = 0.0
    return np.nan


@njit(nogil=True)
def _funnel(x, grad):
    """Neal's funnel: v = x[0] ~ N(0, 3), x[i] ~ N(0, exp(v / 2))."""
    v = x[0]
    n = x.shape[0] - 1
    total = -v * v / 18.0 - 0.5 * n * v
    grad[0] = -v / 9.0 - 0.5 * n
    scale = np.exp(-v)
    for i in range(1, x.shape[0]):
        total -= 0.5 * x[i] * x[i] * scale
        grad[i] = -x[i] * scale
        grad[0] += 0.5 * x[i] * x[i] * scale
    return total


smooth_anisotropic = cfunc(LOGP_GRAD_SIGNATURE)(_smooth_anisotropic)
standard_normal = cfunc(LOGP_GRAD_SIGNATURE)(_standard_normal)
flat = cfunc(LOGP_GRAD_SIGNATURE)(_flat)
half_normal_wall = cfunc(LOGP_GRAD_SIGNATURE)(_half_normal_wall)
nan_everywhere = cfunc(LOGP_GRAD_SIGNATURE)(_nan_everywhere)
funnel = cfunc(LOGP_GRAD_SIGNATURE)(_funnel)
