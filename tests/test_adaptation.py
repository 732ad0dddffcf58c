"""Warmup adaptation against Stan's published schedule and the algorithms' definitions."""
import numpy as np
import pytest

from uturn.hmc.adaptation import (STEP_SIZE_OK, STEP_SIZE_TOO_LARGE, dual_averaging_final,
                                  dual_averaging_state, dual_averaging_update,
                                  find_reasonable_step_size, welford_add,
                                  welford_regularized_variance, welford_state,
                                  window_schedule)
from uturn.hmc.integrator import (draw_momentum, kinetic_energy, leapfrog,
                                  metric_factor_from_inv_metric, velocity)

# cfuncs, as the sampler passes log densities to the cached kernels (see _targets).
from _targets import flat as flat_fn, smooth_anisotropic, smooth_anisotropic as smooth_anisotropic_fn


def windows_as_ranges(num_warmup):
    first, last, ends = window_schedule(num_warmup)
    starts = [first] + [int(e) + 1 for e in ends[:-1]]
    return [(s, int(e)) for s, e in zip(starts, ends)], first, last


# Stan's schedule (ALGORITHM.md section 1.6; NumPyro's test table agrees).
@pytest.mark.parametrize("num_warmup, slow_windows", [
    (100, [(15, 89)]),
    (150, [(75, 99)]),
    (200, [(75, 99), (100, 149)]),
    (500, [(75, 99), (100, 149), (150, 249), (250, 449)]),
    (1000, [(75, 99), (100, 149), (150, 249), (250, 449), (450, 949)]),
    (2000, [(75, 99), (100, 149), (150, 249), (250, 449), (450, 849), (850, 1949)]),
])
def test_window_schedule_matches_stan(num_warmup, slow_windows):
    windows, first, last = windows_as_ranges(num_warmup)
    assert windows == slow_windows
    assert first == slow_windows[0][0] and last == slow_windows[-1][1]


def test_no_metric_adaptation_below_20_warmup_iterations():
    first, last, ends = window_schedule(19)
    assert ends.size == 0 and last < first


@pytest.mark.parametrize("num_warmup", [20, 37, 99, 149, 151, 333, 1001, 5000])
def test_windows_tile_the_slow_phase(num_warmup):
    windows, first, last = windows_as_ranges(num_warmup)
    assert windows[0][0] == first
    for (a, b), (c, d) in zip(windows, windows[1:]):
        assert c == b + 1 and d >= c  # Stan's rule can leave a one-draw last window
    assert windows[-1][1] == last < num_warmup


def test_dual_averaging_drives_mean_acceptance_to_target():
    """Synthetic acceptance a(eps) = exp(-eps): dual averaging must settle where
    a(eps) = delta, i.e. eps = -log(delta)."""
    for delta in (0.6, 0.8, 0.95):
        state = dual_averaging_state(1.0)
        step = 1.0
        for _ in range(3000):
            step = dual_averaging_update(state, np.exp(-step), delta, 0.05, 10.0, 0.75)
        assert np.exp(-dual_averaging_final(state)) == pytest.approx(delta, abs=0.005)


def test_dual_averaging_treats_nan_acceptance_as_zero():
    state = dual_averaging_state(1.0)
    step_nan = dual_averaging_update(state.copy(), np.nan, 0.8, 0.05, 10.0, 0.75)
    step_zero = dual_averaging_update(state.copy(), 0.0, 0.8, 0.05, 10.0, 0.75)
    assert np.isfinite(step_nan) and step_nan == step_zero
    assert step_zero < 10.0  # a rejected step shrinks below mu = log(10 * eps)


def test_first_dual_averaging_step_matches_hand_computation():
    # t = 1, eta = 1/11: s_bar = 0.1/11 * ... with delta - a = 0.8 - 0.5
    state = dual_averaging_state(0.5)
    step = dual_averaging_update(state, 0.5, 0.8, 0.05, 10.0, 0.75)
    s_bar = 0.3 / 11.0
    x = np.log(10 * 0.5) - s_bar * 1.0 / 0.05
    assert step == pytest.approx(np.exp(x), rel=1e-14)
    assert dual_averaging_final(state) == pytest.approx(np.exp(x), rel=1e-14)


@pytest.mark.parametrize("dense", [False, True])
def test_welford_regularised_variance_is_stans_formula(dense):
    rng = np.random.default_rng(0)
    dim, n = 4, 37
    x = rng.standard_normal((n, dim)) * [1.0, 2.0, 0.1, 5.0]
    count, mean, m2 = welford_state(dim, dense)
    for row in x:
        welford_add(count, mean, m2, row)
    out = np.empty((dim, dim) if dense else (1, dim))
    assert welford_regularized_variance(count, mean, m2, out)
    sample = np.cov(x.T) if dense else np.var(x, axis=0, ddof=1)[None, :]
    shrink = 1e-3 * 5 / (n + 5)
    expected = n / (n + 5) * sample + (shrink * np.eye(dim) if dense else shrink)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert count[0] == 0 and not np.any(mean) and not np.any(m2)  # restarted


def _log_acceptance(q, step, inv_metric, factor, rng):
    """H0 - H after one leapfrog step from q with a fresh momentum drawn from rng."""
    dim = q.size
    p, ps, grad = np.empty(dim), np.empty(dim), np.empty(dim)
    draw_momentum(rng, factor, p)
    velocity(inv_metric, p, ps)
    H0 = -smooth_anisotropic(q.copy(), grad) + kinetic_energy(p, ps)
    lp1, kinetic = leapfrog(smooth_anisotropic_fn, q.copy(), p, grad, ps, step, inv_metric)
    assert kinetic == pytest.approx(kinetic_energy(p, ps), rel=1e-12)
    return H0 - (kinetic - lp1)


@pytest.mark.parametrize("start", [1e-4, 1.0, 100.0])
def test_step_size_heuristic_stops_where_acceptance_crosses_0_8(start):
    """Replaying the heuristic's random stream: the first trial picks the direction,
    every later trial doubles (or halves) the step while H0 - H stays on the same side
    of log 0.8, and the returned step is the first on the other side."""
    dim = 5
    q = np.random.default_rng(1).standard_normal(dim)
    grad = np.empty(dim)
    logp = smooth_anisotropic(q.copy(), grad)
    inv_metric = np.exp(np.random.default_rng(3).uniform(-1, 1, (1, dim)))
    factor = np.empty_like(inv_metric)
    metric_factor_from_inv_metric(inv_metric, factor)
    step, status, evals = find_reasonable_step_size(
        smooth_anisotropic_fn, q.copy(), grad.copy(), logp, start, inv_metric, factor,
        np.random.default_rng(2), np.empty((4, dim)))
    assert status == STEP_SIZE_OK

    replay = np.random.default_rng(2)
    log_08 = np.log(0.8)
    grow = _log_acceptance(q, start, inv_metric, factor, replay) > log_08
    trial = start
    for k in range(1, evals):
        above = _log_acceptance(q, trial, inv_metric, factor, replay) > log_08
        if k < evals - 1:
            assert above == grow
            trial = trial * 2 if grow else trial / 2
        else:
            assert above != grow
    assert step == trial
    assert 0.01 < step < 10.0


def test_step_size_heuristic_reports_improper_posterior():
    dim = 2
    q = np.zeros(dim)
    step, status, evals = find_reasonable_step_size(
        flat_fn, q, np.zeros(dim), 0.0, 1.0, np.ones((1, dim)), np.ones((1, dim)),
        np.random.default_rng(0), np.empty((4, dim)))
    assert status == STEP_SIZE_TOO_LARGE and step > 1e7


@pytest.mark.parametrize("given_step_size", [1.0, 0.05])
@pytest.mark.parametrize("step_size_restart", ["every_window", "first_window"])
def test_dual_averaging_starts_from_ten_times_the_given_step_not_the_searched_one(
        given_step_size, step_size_restart):
    # Stan sets mu = log(10 * stepsize) from the step size it is given, before
    # init_stepsize() moves the step (services/util/config_adaptive_sampler.hpp), so
    # the first dual-averaging iterate is x_1 = log(10 * given) - (delta - a_0) /
    # ((1 + t0) * gamma), whatever step the search found. Until round 10 uturn used
    # the searched step, which on the centered eight schools left its warmup with
    # smaller steps than Stan's (benchmarks/ADAPTATION.md, round 10).
    from uturn.models.gaussian import diagonal_gaussian
    from _sampling_helpers import quiet_sample
    # sd 0.1: the search halves a step of 1 and doubles one of 0.05.
    fit = quiet_sample(diagonal_gaussian(np.zeros(3), 0.1), draws=10, tune=200, chains=2,
                       seed=3, step_size=given_step_size,
                       step_size_restart=step_size_restart)
    steps = fit.warmup_stats["step_size"]
    acceptance = np.minimum(fit.warmup_stats["acceptance_rate"][:, 0], 1.0)
    searched = steps[:, 0]
    assert np.all(searched != given_step_size)   # the search moved the step
    expected = np.log(10.0 * given_step_size) - (0.8 - acceptance) / (11.0 * 0.05)
    np.testing.assert_allclose(np.log(steps[:, 1]), expected, rtol=0, atol=1e-12)
