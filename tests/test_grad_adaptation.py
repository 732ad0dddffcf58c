"""metric="diag_grad": the diagonal metric from draws and gradients (nutpie's warmup).

The estimate ``inv_metric_i = sqrt(var(x_i) / var(g_i))`` is exact for a Gaussian with
diagonal covariance: there ``g_i = -(x_i - m_i) / s_i^2`` is an affine function of
``x_i``, so ``var(g_i) = var(x_i) / s_i^4`` for *any* set of at least two distinct
draws, and the estimate is ``s_i^2`` up to rounding. The tests use that as an exact
oracle (relative tolerance 1e-6, far above the ~1e-13 rounding of Welford sums and
far below any statistical error), and check sampling against known moments (5 MCSE)
and the exact eight-schools posterior.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import uturn
from uturn.diagnostics import mcse_mean
from uturn.hmc.adaptation import (GRAD_EARLY_SWITCH_FREQ, GRAD_SWITCH_FREQ,
                                  grad_adaptation_schedule, grad_estimators_add,
                                  grad_estimators_state, grad_estimators_switch,
                                  grad_metric_init, grad_metric_update)
from uturn.models import eight_schools
from uturn.models.eight_schools import EXACT_MEAN_LOG_TAU
from uturn.models.gaussian import diagonal_gaussian, iid_gaussian
from _sampling_helpers import assert_moments_match, quiet_sample


def wide_scales_gaussian(dim=6, seed=0):
    """A diagonal Gaussian with scales spread evenly in log from 1e-2 to 1e2."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(1e-2, 1e2, dim)
    mean = rng.uniform(-3, 3, dim) * scales
    return diagonal_gaussian(mean, scales)


# ------------------------------------------------------------------ building blocks

def test_schedule_is_nuts_rs_fractions():
    # nuts-rs: early_end = floor(0.3 N), final step-size window = the last floor(0.15 N).
    assert grad_adaptation_schedule(1000) == (300, 850)
    assert grad_adaptation_schedule(200) == (60, 170)
    assert grad_adaptation_schedule(10) == (3, 9)
    assert grad_adaptation_schedule(1) == (0, 1)
    assert GRAD_EARLY_SWITCH_FREQ == 10 and GRAD_SWITCH_FREQ == 80


def test_initial_metric_is_inverse_absolute_gradient():
    inv_metric = np.zeros((1, 5))
    grad_metric_init(np.array([-4.0, 0.5, 0.0, np.nan, 1e-30]), inv_metric)
    np.testing.assert_array_equal(inv_metric[0], [0.25, 2.0, 1.0, 1.0, 1e20])


@settings(max_examples=50, deadline=None, derandomize=True)
@given(dim=st.integers(1, 20), n=st.integers(3, 200), seed=st.integers(0, 2**32 - 1))
def test_draw_gradient_estimate_is_exact_for_diagonal_gaussians(dim, n, seed):
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(np.log(1e-2), np.log(1e2), dim))
    mean = rng.normal(size=dim) * scales
    counts, means, m2 = grad_estimators_state(dim)
    for _ in range(n):
        x = mean + scales * rng.normal(size=dim)
        grad_estimators_add(counts, means, m2, x, -(x - mean) / scales**2)
    inv_metric = np.ones((1, dim))
    assert grad_metric_update(counts, m2, inv_metric)
    np.testing.assert_allclose(inv_metric[0], scales**2, rtol=1e-6)


def test_update_needs_three_draws_and_keeps_degenerate_entries():
    counts, means, m2 = grad_estimators_state(2)
    inv_metric = np.full((1, 2), 7.0)
    x = np.array([1.0, 5.0])
    for k in range(2):
        grad_estimators_add(counts, means, m2, x + [k, 0.0], np.array([-(1.0 + k), 0.0]))
        assert not grad_metric_update(counts, m2, inv_metric)
    grad_estimators_add(counts, means, m2, x + [2.0, 0.0], np.array([-3.0, 0.0]))
    assert grad_metric_update(counts, m2, inv_metric)
    # coordinate 0: var(x) = var(g) -> 1; coordinate 1 never moved: 0/0 keeps 7.
    np.testing.assert_allclose(inv_metric[0], [1.0, 7.0])


def test_switch_makes_background_the_foreground_and_restarts_it():
    counts, means, m2 = grad_estimators_state(3)
    rng = np.random.default_rng(1)
    for _ in range(5):
        grad_estimators_add(counts, means, m2, rng.normal(size=3), rng.normal(size=3))
    background = means[2:].copy(), m2[2:].copy()
    grad_estimators_switch(counts, means, m2)
    np.testing.assert_array_equal(counts[:, 0], [5, 5, 0, 0])
    np.testing.assert_array_equal(means[:2], background[0])
    np.testing.assert_array_equal(m2[:2], background[1])
    assert not means[2:].any() and not m2[2:].any()


# ------------------------------------------------------------------ whole runs

@pytest.mark.parametrize("seed", [11, 12])
def test_wide_scales_gaussian_moments_and_exact_metric(seed):
    model = wide_scales_gaussian()
    fit = quiet_sample(model, seed=seed, metric="diag_grad", draws=1000, tune=1000)
    assert fit.settings["metric"] == "diag_grad"
    assert fit.inv_metric.shape == (4, model.dim)
    assert fit.num_divergences == 0
    assert_moments_match(fit, model)
    # The estimate is exact for this target: every chain's metric is the variance.
    np.testing.assert_allclose(fit.inv_metric, np.tile(model.sd**2, (4, 1)), rtol=1e-6)
    # Dual averaging is not restarted at the end: the step is tuned to ~0.8.
    assert 0.7 < fit.stats["acceptance_rate"].mean() < 0.95


@pytest.mark.slow
@settings(max_examples=5, deadline=None, derandomize=True)
@given(dim=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_random_diagonal_gaussians(dim, seed):
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(np.log(1e-2), np.log(1e2), dim))
    model = diagonal_gaussian(rng.uniform(-10, 10, dim) * scales, scales)
    fit = quiet_sample(model, seed=seed, metric="diag_grad")
    assert fit.num_divergences == 0
    assert_moments_match(fit, model)
    np.testing.assert_allclose(fit.inv_metric, np.tile(scales**2, (4, 1)), rtol=1e-6)


def test_correlated_gaussian_metric_is_between_conditional_and_marginal_variance():
    # For a correlated Gaussian var(g_i) = (Sigma^-1 Sigma Sigma^-1)_ii = (Sigma^-1)_ii,
    # so the estimate tends to sqrt(Sigma_ii / (Sigma^-1)_ii): the geometric mean of the
    # marginal variance and the conditional one 1/(Sigma^-1)_ii.
    cov = np.array([[1.0, 0.9], [0.9, 1.0]]) * np.outer([0.1, 10.0], [0.1, 10.0])
    model = uturn.models.gaussian.dense_gaussian([0.0, 0.0], cov)
    fit = quiet_sample(model, seed=4, metric="diag_grad", draws=1000, tune=1000)
    assert_moments_match(fit, model)
    target = np.sqrt(np.diag(cov) / np.diag(np.linalg.inv(cov)))
    # The last foreground window holds >= 80 draws: log-scale error well under 0.35.
    assert np.all(np.abs(np.log(fit.inv_metric / target)) < 0.35)


@pytest.mark.slow
def test_eight_schools_non_centered_log_tau_matches_exact_value():
    fit = quiet_sample(eight_schools(centered=False), seed=2023, metric="diag_grad",
                       draws=2000, tune=1000)
    log_tau = fit.unconstrained[:, :, 1]
    assert abs(log_tau.mean() - EXACT_MEAN_LOG_TAU) < 5 * mcse_mean(log_tau)
    assert fit.num_divergences < 0.01 * log_tau.size


@pytest.mark.parametrize("tune", [1, 5, 10, 19])
def test_short_warmup_adapts_without_warning(tune):
    model = wide_scales_gaussian(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", uturn.diagnostics.SamplingWarning)
        warnings.filterwarnings("ignore", message=".*(R-hat|ESS|tree depth|E-BFMI|diverg)")
        fit = uturn.sample(model, draws=1000, tune=tune, chains=2, seed=tune,
                           metric="diag_grad", progress=False)
    if tune >= 2:
        # Three warmup draws (the initial point counts) give the exact metric... when
        # every transition moved; at least the scale must be right within a factor 2.
        assert np.all(np.abs(np.log(fit.inv_metric / model.sd**2)) < np.log(2.0))
    else:
        # One transition: only the initial 1 / |gradient|, but no longer all ones.
        assert not np.allclose(fit.inv_metric, 1.0)
    if tune >= 10:
        np.testing.assert_allclose(fit.inv_metric, np.tile(model.sd**2, (2, 1)), rtol=1e-6)
        assert_moments_match(fit, model)


def test_static_hmc_with_diag_grad():
    model = wide_scales_gaussian(4, seed=3)
    fit = quiet_sample(model, seed=5, metric="diag_grad", algorithm="hmc", num_steps=8,
                       draws=1500, tune=500)
    assert np.all(fit.stats["n_steps"] == 8)
    np.testing.assert_allclose(fit.inv_metric, np.tile(model.sd**2, (4, 1)), rtol=1e-6)
    assert_moments_match(fit, model)


def test_given_step_size():
    model = wide_scales_gaussian(3)
    # tune=0: nothing is adapted, as for every metric.
    fit = quiet_sample(model, draws=50, tune=0, chains=2, seed=6, step_size=0.01,
                       metric="diag_grad")
    assert np.all(fit.stats["step_size"] == 0.01)
    np.testing.assert_array_equal(fit.inv_metric, np.ones((2, 3)))
    # tune > 0: the given step is the heuristic's starting point, then adapted.
    fit = quiet_sample(model, draws=200, tune=200, chains=2, seed=6, step_size=1e-4,
                       metric="diag_grad")
    assert np.all(fit.step_size > 0.1)
    np.testing.assert_allclose(fit.inv_metric, np.tile(model.sd**2, (2, 1)), rtol=1e-6)


def test_diag_grad_is_reproducible_whatever_cores():
    model = iid_gaussian(5)
    a = quiet_sample(model, draws=100, tune=100, chains=3, seed=8, cores=1,
                     metric="diag_grad")
    b = quiet_sample(model, draws=100, tune=100, chains=3, seed=8, cores=3,
                     metric="diag_grad")
    np.testing.assert_array_equal(a.unconstrained, b.unconstrained)
    np.testing.assert_array_equal(a.inv_metric, b.inv_metric)
    assert "diag_grad metric" in repr(a)


@pytest.mark.parametrize("bad", ["diag-grad", "DIAG_GRAD", "grad", ""])
def test_bad_metric_names_are_rejected(bad):
    with pytest.raises(ValueError, match="metric must be one of .*diag_grad"):
        uturn.sample(iid_gaussian(2), metric=bad)
