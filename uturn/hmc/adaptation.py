"""Warmup adaptation as Stan does it: dual-averaging step size, windowed metric
estimation, and the step-size initialisation heuristic; and, as an option, the
diagonal metric estimated from draws and gradients (nutpie's adaptation).

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
Seyboldt, A. (2023). nutpie; the Rust crate nuts-rs (github.com/pymc-devs/nuts-rs):
    adapt_strategy.rs (GlobalStrategy, EuclideanAdaptOptions), mass_matrix_adapt.rs
    (diagonal draw/gradient estimate), mass_matrix.rs (DrawGradCollector).
"""
import numpy as np
from numba import njit

from .integrator import (JIT_OPTIONS, NO_REFCOUNT, draw_momentum, kinetic_energy, leapfrog,
                         velocity)
from .workspace import padded, take

__all__ = [
    "DUAL_AVERAGING_GAMMA", "DUAL_AVERAGING_T0", "DUAL_AVERAGING_KAPPA",
    "dual_averaging_state", "dual_averaging_restart", "dual_averaging_update",
    "dual_averaging_final", "window_schedule", "welford_state", "welford_state_size",
    "welford_state_in", "welford_add", "welford_regularized_variance", "find_reasonable_step_size",
    "STEP_SIZE_OK", "STEP_SIZE_TOO_LARGE", "STEP_SIZE_TOO_SMALL",
    "GRAD_EARLY_WINDOW", "GRAD_STEP_SIZE_WINDOW", "GRAD_EARLY_SWITCH_FREQ",
    "GRAD_SWITCH_FREQ", "GRAD_MIN_DRAWS", "grad_adaptation_schedule",
    "grad_estimators_state", "grad_estimators_state_size",
    "grad_estimators_state_in", "grad_estimators_add", "grad_estimators_switch",
    "grad_metric_init", "grad_metric_update",
]

DUAL_AVERAGING_GAMMA = 0.05
DUAL_AVERAGING_T0 = 10.0
DUAL_AVERAGING_KAPPA = 0.75

# Dual-averaging state: [mu, t, s_bar (the averaged gradient H_bar), x_bar].
_MU, _T, _S_BAR, _X_BAR = 0, 1, 2, 3


@njit(**NO_REFCOUNT)
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


@njit(**NO_REFCOUNT)
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


@njit(**NO_REFCOUNT)
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
    return welford_state_in(np.zeros(welford_state_size(dim, dense)), 0, dim, dense)[0]


@njit(**JIT_OPTIONS)
def welford_state_size(dim, dense):
    """Elements of ``block`` that :func:`welford_state_in` takes."""
    return padded(1) + padded(dim) + padded(dim * dim if dense else dim)


@njit(**JIT_OPTIONS)
def welford_state_in(block, offset, dim, dense):
    """:func:`welford_state` cut from a zeroed ``block`` at ``offset``; returns the
    state and the offset after it (see :mod:`uturn.hmc.workspace`)."""
    count, offset = take(block, offset, 1)
    mean, offset = take(block, offset, dim)
    rows = dim if dense else 1
    m2, offset = take(block, offset, rows * dim)
    return (count, mean, m2.reshape((rows, dim))), offset


@njit(**NO_REFCOUNT)
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


@njit(**NO_REFCOUNT)
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


@njit(**NO_REFCOUNT)
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


# ---------------------------------------------------------------------------------
# Diagonal metric from draws and gradients (metric="diag_grad"): nutpie's warmup.
#
# For a Gaussian with covariance diag(s^2), the gradient of the log density is
# g_i = -(x_i - m_i) / s_i^2, so var(g_i) = 1 / s_i^2 and
#
#     s_i^2 = sqrt(var(x_i) / var(g_i))
#
# holds exactly: the estimate is right as soon as two distinct draws are seen, and
# for other targets it balances the scale seen in the draws against the curvature
# seen in the gradients (Seyboldt 2023, "nutpie"; nuts-rs mass_matrix_adapt.rs).
# Two estimators run side by side: the foreground one sets the metric after every
# warmup draw, the background one collects draws since the last switch; every
# GRAD_EARLY_SWITCH_FREQ draws in the first 30% of warmup (GRAD_SWITCH_FREQ
# later) the background becomes the foreground, so that early, poorly mixed draws
# are forgotten. The last 15% of warmup adapts only the step size.
# ---------------------------------------------------------------------------------

#: Fraction of warmup in which the estimators switch every GRAD_EARLY_SWITCH_FREQ draws
#: (nuts-rs ``early_window``).
GRAD_EARLY_WINDOW = 0.3
#: Final fraction of warmup in which only the step size adapts (``step_size_window``).
GRAD_STEP_SIZE_WINDOW = 0.15
#: Draws in the background estimator before a switch, early and later
#: (``early_mass_matrix_switch_freq``, ``mass_matrix_switch_freq``).
GRAD_EARLY_SWITCH_FREQ = 10
GRAD_SWITCH_FREQ = 80
#: Fewest draws in the foreground estimator for the metric to be updated from it.
GRAD_MIN_DRAWS = 3
#: Bounds on each inverse-metric entry (nuts-rs LOWER_LIMIT / UPPER_LIMIT).
GRAD_METRIC_LOWER, GRAD_METRIC_UPPER = 1e-20, 1e20

# Rows of the estimator arrays: foreground draws and gradients, background ones.
_FG_DRAW, _FG_GRAD, _BG_DRAW, _BG_GRAD = 0, 1, 2, 3


def grad_adaptation_schedule(num_warmup):
    """Phases of the ``diag_grad`` warmup (nuts-rs ``GlobalStrategy::new``).

    Returns
    -------
    (early_end, step_size_only_from) : (int, int)
        Warmup iterations ``< early_end`` switch estimators every
        ``GRAD_EARLY_SWITCH_FREQ`` draws, later ones every ``GRAD_SWITCH_FREQ``;
        from ``step_size_only_from`` on the metric is frozen and only the step size
        adapts. ``early_end = floor(0.3 N)``, ``step_size_only_from = N -
        floor(0.15 N)``.

    Examples
    --------
    >>> grad_adaptation_schedule(1000)
    (300, 850)
    >>> grad_adaptation_schedule(10)
    (3, 9)
    """
    num_warmup = int(num_warmup)
    early_end = int(GRAD_EARLY_WINDOW * num_warmup)
    step_size_only_from = num_warmup - int(GRAD_STEP_SIZE_WINDOW * num_warmup)
    return early_end, step_size_only_from


@njit(**JIT_OPTIONS)
def grad_estimators_state(dim):
    """Four diagonal Welford estimators, ``(counts (4, 1), means (4, dim), m2 (4, 1, dim))``:
    rows 0 and 1 are the foreground draws and gradients, rows 2 and 3 the background
    ones; row ``k`` is used as ``(counts[k], means[k], m2[k])`` by :func:`welford_add`."""
    return grad_estimators_state_in(np.zeros(grad_estimators_state_size(dim)), 0, dim)[0]


@njit(**JIT_OPTIONS)
def grad_estimators_state_size(dim):
    """Elements of ``block`` that :func:`grad_estimators_state_in` takes."""
    return padded(4) + 2 * padded(4 * dim)


@njit(**JIT_OPTIONS)
def grad_estimators_state_in(block, offset, dim):
    """:func:`grad_estimators_state` cut from a zeroed ``block`` at ``offset``; returns
    the state and the offset after it (see :mod:`uturn.hmc.workspace`)."""
    counts, offset = take(block, offset, 4)
    means, offset = take(block, offset, 4 * dim)
    m2, offset = take(block, offset, 4 * dim)
    return (counts.reshape((4, 1)), means.reshape((4, dim)), m2.reshape((4, 1, dim))), offset


@njit(**NO_REFCOUNT)
def grad_estimators_add(counts, means, m2, q, grad):
    """Add one draw and its gradient to the foreground and background estimators."""
    welford_add(counts[_FG_DRAW], means[_FG_DRAW], m2[_FG_DRAW], q)
    welford_add(counts[_FG_GRAD], means[_FG_GRAD], m2[_FG_GRAD], grad)
    welford_add(counts[_BG_DRAW], means[_BG_DRAW], m2[_BG_DRAW], q)
    welford_add(counts[_BG_GRAD], means[_BG_GRAD], m2[_BG_GRAD], grad)


@njit(**NO_REFCOUNT)
def grad_estimators_switch(counts, means, m2):
    """The background estimators become the foreground ones; the background restarts."""
    for k in range(2):
        counts[k, 0] = counts[k + 2, 0]
        counts[k + 2, 0] = 0.0
        for i in range(means.shape[1]):
            means[k, i] = means[k + 2, i]
            m2[k, 0, i] = m2[k + 2, 0, i]
            means[k + 2, i] = 0.0
            m2[k + 2, 0, i] = 0.0


@njit(**NO_REFCOUNT)
def grad_metric_init(grad, inv_metric):
    """Initial diagonal inverse metric from one gradient: ``1 / |g_i|`` (nuts-rs
    ``update_diag_grad``), bounded to [1e-20, 1e20]; 1 where ``g_i`` is zero or not
    finite (nuts-rs would give 1e20 for a zero gradient).

    A Gaussian coordinate with scale ``s`` at distance ``d`` from its mean has
    ``|g| = d / s^2``, so this is ``s^2`` at ``d = s``: the right order of magnitude
    from the first evaluation, before any draw.
    """
    for i in range(grad.shape[0]):
        magnitude = abs(grad[i])
        # (numba raises on float division by zero, so test before dividing)
        value = 1.0 / magnitude if magnitude > 0.0 and np.isfinite(magnitude) else 1.0
        inv_metric[0, i] = min(max(value, GRAD_METRIC_LOWER), GRAD_METRIC_UPPER)


@njit(**NO_REFCOUNT)
def grad_metric_update(counts, m2, inv_metric):
    """Set ``inv_metric[0, i] = sqrt(var(x_i) / var(g_i))`` from the foreground estimators.

    Seyboldt (2023), nutpie: the diagonal inverse metric from draws ``x`` and
    gradients ``g`` of the log density, exact for Gaussians with diagonal covariance.
    The variances share their normalisation, so ``sqrt(m2_x / m2_g)`` is used. Entries
    whose estimate is not finite or zero keep their value; others are bounded to
    [1e-20, 1e20]. Returns False (nothing changed) with fewer than
    ``GRAD_MIN_DRAWS`` draws in the foreground.
    """
    if counts[_FG_DRAW, 0] < GRAD_MIN_DRAWS:
        return False
    for i in range(m2.shape[2]):
        if not m2[_FG_GRAD, 0, i] > 0.0:  # no gradient spread (or NaN): keep the entry
            continue
        value = np.sqrt(m2[_FG_DRAW, 0, i] / m2[_FG_GRAD, 0, i])
        if np.isfinite(value) and value > 0.0:
            inv_metric[0, i] = min(max(value, GRAD_METRIC_LOWER), GRAD_METRIC_UPPER)
    return True
