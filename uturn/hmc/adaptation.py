"""Warmup adaptation as Stan does it: dual-averaging step size, windowed metric
estimation, and the step-size initialisation heuristic.

State lives in small float arrays so that the compiled chain loop can update it
in place and carry no Python objects.

References
----------
Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn Sampler. JMLR 15,
    section 3.2 and algorithm 5 (dual averaging); algorithm 4 (initial step size).
Nesterov, Y. (2009). Primal-dual subgradient methods for convex problems.
    Mathematical Programming 120(1), 221-259.
Stan Reference Manual, "HMC algorithm parameters": automatic parameter tuning.
Stan: src/stan/mcmc/stepsize_adaptation.hpp, windowed_adaptation.hpp,
    var_adaptation.hpp, covar_adaptation.hpp, hmc/base_hmc.hpp (init_stepsize).
"""
import numpy as np
from numba import njit

from .integrator import JIT_OPTIONS, draw_momentum, kinetic_energy, leapfrog, velocity

__all__ = [
    "DUAL_AVERAGING_GAMMA", "DUAL_AVERAGING_T0", "DUAL_AVERAGING_KAPPA",
    "dual_averaging_state", "dual_averaging_restart", "dual_averaging_update",
    "dual_averaging_final", "window_schedule", "welford_state", "welford_add",
    "welford_regularized_variance", "find_reasonable_step_size",
    "STEP_SIZE_OK", "STEP_SIZE_TOO_LARGE", "STEP_SIZE_TOO_SMALL",
]

DUAL_AVERAGING_GAMMA = 0.05
DUAL_AVERAGING_T0 = 10.0
DUAL_AVERAGING_KAPPA = 0.75

# Dual-averaging state: [mu, t, s_bar (the averaged gradient H_bar), x_bar].
_MU, _T, _S_BAR, _X_BAR = 0, 1, 2, 3


@njit(**JIT_OPTIONS)
def dual_averaging_restart(state, step_size):
    """Restart the averages and set ``mu = log(10 * step_size)`` (Hoffman & Gelman
    2014, section 3.2.1: biasing the iterates towards larger steps)."""
    state[_MU] = np.log(10.0 * step_size)
    state[_T] = 0.0
    state[_S_BAR] = 0.0
    state[_X_BAR] = 0.0


@njit(**JIT_OPTIONS)
def dual_averaging_state(step_size):
    """A fresh dual-averaging state shrinking towards ``mu = log(10 * step_size)``."""
    state = np.zeros(4)
    dual_averaging_restart(state, step_size)
    return state


@njit(**JIT_OPTIONS)
def dual_averaging_update(state, acceptance_rate, target_accept, gamma, t0, kappa):
    """One dual-averaging step (Hoffman & Gelman 2014, eq. 6; Stan's learn_stepsize):

        s_bar <- (1 - 1/(t + t0)) s_bar + (delta - a) / (t + t0)
        x     =  mu - sqrt(t) s_bar / gamma
        x_bar <- t^-kappa x + (1 - t^-kappa) x_bar

    with ``a = min(1, acceptance_rate)``; a NaN acceptance counts as 0 so that one
    bad transition cannot poison the step size. Returns the next step size exp(x).
    """
    if not acceptance_rate >= 0.0:
        acceptance_rate = 0.0
    elif acceptance_rate > 1.0:
        acceptance_rate = 1.0
    state[_T] += 1.0
    t = state[_T]
    eta = 1.0 / (t + t0)
    state[_S_BAR] = (1.0 - eta) * state[_S_BAR] + eta * (target_accept - acceptance_rate)
    x = state[_MU] - state[_S_BAR] * np.sqrt(t) / gamma
    weight = t ** (-kappa)
    state[_X_BAR] = (1.0 - weight) * state[_X_BAR] + weight * x
    return np.exp(x)


@njit(**JIT_OPTIONS)
def dual_averaging_final(state):
    """The step size used after warmup: ``exp(x_bar)``."""
    return np.exp(state[_X_BAR])


def window_schedule(num_warmup, init_buffer=75, base_window=25, term_buffer=50):
    """Stan's warmup windows for metric adaptation.

    Parameters
    ----------
    num_warmup : int
    init_buffer, base_window, term_buffer : int
        Stan's defaults 75 / 25 / 50. When they do not fit in ``num_warmup`` they
        become 15% / 75% / 10% of it. Below 20 warmup iterations the metric is not
        adapted at all.

    Returns
    -------
    (first, last, window_ends) : (int, int, ndarray of int64)
        Draws with ``first <= iteration <= last`` (0-based) feed the metric
        estimator; the metric is updated, and the estimator restarted, at the end
        of each iteration listed in ``window_ends``. ``window_ends`` is empty when
        the metric is not adapted.

    Examples
    --------
    >>> window_schedule(1000)
    (75, 949, array([ 99, 149, 249, 449, 949]))
    """
    num_warmup = int(num_warmup)
    if num_warmup < 20:
        return 0, -1, np.zeros(0, dtype=np.int64)
    if init_buffer + base_window + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        base_window = num_warmup - (init_buffer + term_buffer)
    last = num_warmup - term_buffer - 1
    ends = []
    window_size = base_window
    next_end = init_buffer + window_size - 1
    while True:
        ends.append(next_end)
        if next_end == last:
            break
        # Each window doubles; the one that would leave too short a successor
        # is stretched to the start of the terminal buffer.
        counter = next_end
        window_size *= 2
        next_end = counter + window_size
        if next_end != last and next_end + 2 * window_size >= num_warmup - term_buffer:
            next_end = last
        if next_end <= counter:
            break
    return init_buffer, last, np.array(ends, dtype=np.int64)


@njit(**JIT_OPTIONS)
def welford_state(dim, dense):
    """``(count (1,), mean (dim,), m2 (1, dim) or (dim, dim))`` for Welford's algorithm."""
    return np.zeros(1), np.zeros(dim), np.zeros((dim, dim) if dense else (1, dim))


@njit(**JIT_OPTIONS)
def welford_add(count, mean, m2, x):
    """Add one draw to running mean and (co)variance sums (Welford 1962).

    ``m2`` of shape ``(1, dim)`` accumulates the diagonal only.
    """
    count[0] += 1.0
    n = count[0]
    dim = x.shape[0]
    if m2.shape[0] == 1:
        for i in range(dim):
            delta = x[i] - mean[i]
            mean[i] += delta / n
            m2[0, i] += delta * (x[i] - mean[i])
    else:
        # m2 += (x - old_mean)(x - new_mean)'; written with the pre-update delta.
        for i in range(dim):
            for j in range(dim):
                m2[i, j] += (n - 1.0) / n * (x[i] - mean[i]) * (x[j] - mean[j])
        for i in range(dim):
            mean[i] += (x[i] - mean[i]) / n


@njit(**JIT_OPTIONS)
def welford_regularized_variance(count, mean, m2, inv_metric):
    """Write the regularised (co)variance into ``inv_metric`` and restart the estimator.

    ``var <- (n / (n + 5)) var + 1e-3 (5 / (n + 5))`` on the diagonal (Stan's
    var_adaptation and covar_adaptation): shrinks towards a small multiple of the
    identity when few draws are available. With fewer than two draws ``inv_metric``
    is left unchanged. Returns False if the estimate is not finite.
    """
    n = count[0]
    if n < 2.0:
        # Stan's schedule can end with a one-draw window (e.g. 151 warmup iterations);
        # there is no variance to estimate, so keep the metric as it is.
        count[0] = 0.0
        mean[:] = 0.0
        m2[:] = 0.0
        return True
    weight = n / (n + 5.0)
    shrink = 1e-3 * 5.0 / (n + 5.0)
    finite = True
    if m2.shape[0] == 1:
        for i in range(m2.shape[1]):
            inv_metric[0, i] = weight * m2[0, i] / (n - 1.0) + shrink
            finite = finite and np.isfinite(inv_metric[0, i])
    else:
        dim = m2.shape[0]
        for i in range(dim):
            for j in range(dim):
                inv_metric[i, j] = weight * m2[i, j] / (n - 1.0)
                finite = finite and np.isfinite(inv_metric[i, j])
            inv_metric[i, i] += shrink
    count[0] = 0.0
    mean[:] = 0.0
    m2[:] = 0.0
    return finite


STEP_SIZE_OK, STEP_SIZE_TOO_LARGE, STEP_SIZE_TOO_SMALL = 0, 1, 2


@njit(**JIT_OPTIONS)
def find_reasonable_step_size(logp_grad, q, grad, logp, step_size, inv_metric,
                              metric_factor, rng, scratch):
    """Stan's step-size initialisation (``base_hmc::init_stepsize``).

    Double or halve the step until one leapfrog step from ``q`` with a fresh
    momentum crosses an acceptance probability of 0.8, i.e.
    ``H0 - H`` crosses ``log 0.8`` (Hoffman & Gelman 2014, algorithm 4).
    ``q`` and ``grad`` are not changed; ``scratch`` is (4, dim) workspace.

    Returns
    -------
    (step_size, status, n_gradient_evaluations)
        ``status`` is STEP_SIZE_TOO_LARGE when the step passed 1e7 (the posterior
        is probably improper) and STEP_SIZE_TOO_SMALL when it underflowed to 0.
    """
    q_new, p, grad_new, p_sharp = scratch[0], scratch[1], scratch[2], scratch[3]
    dim = q.shape[0]
    log_08 = np.log(0.8)
    n_evals = 0
    direction = 0
    while True:
        draw_momentum(rng, metric_factor, p)
        velocity(inv_metric, p, p_sharp)
        H0 = -logp + kinetic_energy(p, p_sharp)
        for i in range(dim):
            q_new[i] = q[i]
            grad_new[i] = grad[i]
        logp_new, kinetic = leapfrog(logp_grad, q_new, p, grad_new, p_sharp, step_size,
                                     inv_metric)
        n_evals += 1
        energy = kinetic - logp_new
        if np.isnan(energy):
            energy = np.inf
        delta_H = H0 - energy
        if direction == 0:
            # The first step only decides whether to grow or shrink.
            direction = 1 if delta_H > log_08 else -1
            continue
        if direction == 1 and not delta_H > log_08:
            return step_size, STEP_SIZE_OK, n_evals
        elif direction == -1 and not delta_H < log_08:
            return step_size, STEP_SIZE_OK, n_evals
        step_size = step_size * 2.0 if direction == 1 else step_size * 0.5
        if step_size > 1e7:
            return step_size, STEP_SIZE_TOO_LARGE, n_evals
        if step_size == 0.0:
            return step_size, STEP_SIZE_TOO_SMALL, n_evals
