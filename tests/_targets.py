"""Log densities shared by the core tests: module-level so numba compiles each once."""
import numpy as np
from numba import njit


@njit(nogil=True)
def smooth_anisotropic(x, grad):
    """A smooth, non-Gaussian, anisotropic density with no captured data:
    log p = -sum_i (a_i x_i^2 / 2 + log cosh(x_i)), a_i = 1 + (i mod 4)."""
    total = 0.0
    for i in range(x.shape[0]):
        a = 1.0 + (i % 4)
        total -= 0.5 * a * x[i] * x[i] + np.log(np.cosh(x[i]))
        grad[i] = -a * x[i] - np.tanh(x[i])
    return total


@njit(nogil=True)
def standard_normal(x, grad):
    total = 0.0
    for i in range(x.shape[0]):
        grad[i] = -x[i]
        total -= 0.5 * x[i] * x[i]
    return total


@njit(nogil=True)
def flat(x, grad):
    """Zero potential: trajectories are straight lines and never turn back."""
    for i in range(x.shape[0]):
        grad[i] = 0.0
    return 0.0


@njit(nogil=True)
def half_normal_wall(x, grad):
    """N(0, 1) truncated to x_0 <= 1 (a hard wall: -inf beyond), other coordinates N(0, 1)."""
    if x[0] > 1.0:
        for i in range(x.shape[0]):
            grad[i] = 0.0
        return -np.inf
    return standard_normal(x, grad)


@njit(nogil=True)
def nan_everywhere(x, grad):
    for i in range(x.shape[0]):
        grad[i] = 0.0
    return np.nan


@njit(nogil=True)
def funnel(x, grad):
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
