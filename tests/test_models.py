"""Hand-coded models: log densities against scipy, gradients against finite
differences, input checks, and the constrain maps.

Every expected value here comes from an independent computation (scipy.stats
log-pdfs, numerical differentiation, the change-of-variables formula), never
from the code's own earlier output.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from uturn import Model
from uturn.models import eight_schools, funnel, hierarchical_normal
from uturn.models.eight_schools import (EXACT_MEAN_LOG_TAU, NOTEBOOK_MEAN_LOG_TAU, SIGMA,
                                        Y)

# Building a model compiles a small wrapper (~0.1 s), so examples are few but varied.
MODEL_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------

def scipy_logp(x, y, sigma, centered, mu_scale=5.0, tau_scale=5.0):
    """log p(y, x) as a sum of scipy.stats log-pdfs plus the Jacobian of tau = exp(log_tau)."""
    mu, log_tau, group = x[0], x[1], np.asarray(x[2:])
    tau = math.exp(log_tau)
    total = (stats.norm.logpdf(mu, 0.0, mu_scale)
             + stats.halfcauchy.logpdf(tau, scale=tau_scale) + log_tau)
    if centered:
        theta = group
        total += stats.norm.logpdf(theta, mu, tau).sum()
    else:
        theta = mu + tau * group
        total += stats.norm.logpdf(group, 0.0, 1.0).sum()
    return total + stats.norm.logpdf(y, theta, sigma).sum()


def scipy_funnel_logp(x):
    v, xs = x[0], np.asarray(x[1:])
    return stats.norm.logpdf(v, 0.0, 3.0) + stats.norm.logpdf(xs, 0.0, math.exp(v / 2)).sum()


def numerical_gradient(logp, x):
    """Fourth-order central differences (error O(h^4)), one coordinate at a time."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.empty_like(x)
    for i in range(x.size):
        h = 1e-3 * max(1.0, abs(x[i]))
        def at(offset):
            shifted = x.copy()
            shifted[i] += offset
            return logp(shifted)
        grad[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    return grad


def assert_gradient_matches(model, x):
    """Analytic gradient equals finite differences to 1e-6, relative per coordinate.

    The floor of 1 in the denominator keeps coordinates whose gradient is
    nearly 0 from turning round-off into a large relative error.
    """
    logp, grad = model.logp_and_grad(x)
    assert np.isfinite(logp)
    numeric = numerical_gradient(model.logp, x)
    relative_error = np.abs(grad - numeric) / np.maximum(np.abs(numeric), 1.0)
    assert relative_error.max() < 1e-6, (grad, numeric)


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------

@st.composite
def hierarchical_cases(draw, centered):
    """(y, sigma, mu_scale, tau_scale, point): random data and an unconstrained point."""
    n_groups = draw(st.integers(1, 9))
    real = st.floats(-50, 50, allow_nan=False)
    y = np.array(draw(st.lists(real, min_size=n_groups, max_size=n_groups)))
    sigma = np.array(draw(st.lists(st.floats(0.5, 30), min_size=n_groups,
                                   max_size=n_groups)))
    mu_scale = draw(st.floats(0.5, 20))
    tau_scale = draw(st.floats(0.5, 20))
    mu = draw(st.floats(-30, 30))
    log_tau = draw(st.floats(-2, 3))
    group_range = st.floats(-40, 40) if centered else st.floats(-4, 4)
    group = draw(st.lists(group_range, min_size=n_groups, max_size=n_groups))
    return y, sigma, mu_scale, tau_scale, np.array([mu, log_tau] + group)


# ---------------------------------------------------------------------------
# hierarchical model: log density and gradient
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("centered", [True, False])
def test_hierarchical_log_density_equals_scipy_sum(centered):
    """Differences between points match scipy; the model's constant is scipy's too."""
    rng = np.random.default_rng(1)
    model = eight_schools(centered=centered)
    points = [rng.uniform(-2, 2, size=10) for _ in range(5)]
    ours = np.array([model.logp(x) for x in points])
    reference = np.array([scipy_logp(x, Y, SIGMA, centered) for x in points])
    np.testing.assert_allclose(ours - ours[0], reference - reference[0], rtol=0, atol=1e-9)
    # Documented: logp is the normalised log joint density, constants included.
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


@pytest.mark.parametrize("centered", [True, False])
@MODEL_SETTINGS
@given(data=st.data())
def test_hierarchical_matches_scipy_and_finite_differences(centered, data):
    y, sigma, mu_scale, tau_scale, x = data.draw(hierarchical_cases(centered))
    model = hierarchical_normal(y, sigma, centered=centered, mu_scale=mu_scale,
                                tau_scale=tau_scale)
    other = x + data.draw(st.floats(-0.5, 0.5))
    difference = model.logp(x) - model.logp(other)
    expected = (scipy_logp(x, y, sigma, centered, mu_scale, tau_scale)
                - scipy_logp(other, y, sigma, centered, mu_scale, tau_scale))
    assert difference == pytest.approx(expected, rel=1e-9, abs=1e-8)
    assert_gradient_matches(model, x)


@MODEL_SETTINGS
@given(data=st.data())
def test_noncentered_is_centered_after_change_of_variables(data):
    """theta = mu + tau * nu has Jacobian tau^J: logp_nc(mu, s, nu) = logp_c(mu, s, theta) + J s."""
    y, sigma, mu_scale, tau_scale, x = data.draw(hierarchical_cases(centered=False))
    kwargs = dict(mu_scale=mu_scale, tau_scale=tau_scale)
    centered = hierarchical_normal(y, sigma, centered=True, **kwargs)
    noncentered = hierarchical_normal(y, sigma, centered=False, **kwargs)
    mu, log_tau, nu = x[0], x[1], x[2:]
    x_centered = np.concatenate([[mu, log_tau], mu + math.exp(log_tau) * nu])
    assert noncentered.logp(x) == pytest.approx(
        centered.logp(x_centered) + y.size * log_tau, rel=1e-10, abs=1e-9)


@pytest.mark.parametrize("centered", [True, False])
def test_gradient_at_large_J(centered):
    """The kernels are O(J) loops; check one big model end to end."""
    rng = np.random.default_rng(7)
    n_groups = 2000
    sigma = rng.uniform(1, 20, size=n_groups)
    y = rng.normal(3, 5, size=n_groups) + sigma * rng.normal(size=n_groups)
    model = hierarchical_normal(y, sigma, centered=centered)
    x = np.concatenate([[2.0, 1.0], rng.normal(size=n_groups) * (5 if centered else 1)])
    logp, grad = model.logp_and_grad(x)
    assert logp == pytest.approx(scipy_logp(x, y, sigma, centered), rel=1e-12)
    # Spot-check some coordinates by finite differences (all 2002 would be slow).
    for i in [0, 1, 2, 1000, n_groups + 1]:
        h = 1e-4
        def at(offset):
            shifted = x.copy()
            shifted[i] += offset
            return model.logp(shifted)
        numeric = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
        assert abs(grad[i] - numeric) <= 1e-6 * max(1.0, abs(numeric))


# A float that may be huge, tiny, infinite or NaN.
extreme_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e300, 800.0, -800.0, 710.0, -710.0, 355.0, -355.0, 0.0]))


def assert_rejects_cleanly_or_is_finite(logp, grad):
    """The contract: -inf (with a zero gradient) or finite, never NaN or +inf."""
    assert not math.isnan(logp)
    assert logp != math.inf
    if logp == -math.inf:
        assert np.all(grad == 0.0)
    else:
        assert np.all(np.isfinite(grad))


_EIGHT_SCHOOLS = {True: eight_schools(centered=True), False: eight_schools(centered=False)}


@pytest.mark.parametrize("centered", [True, False])
@settings(max_examples=300, deadline=None, derandomize=True)
@given(mu=extreme_float, log_tau=extreme_float,
       group=st.lists(extreme_float, min_size=8, max_size=8))
def test_extreme_points_never_give_nan(centered, mu, log_tau, group):
    model = _EIGHT_SCHOOLS[centered]
    x = np.array([mu, log_tau] + group, dtype=np.float64)
    grad = np.full(10, 123.0)
    logp = model.logp_grad(x, grad)
    assert_rejects_cleanly_or_is_finite(logp, grad)


def test_known_overflow_points_return_minus_inf():
    centered = _EIGHT_SCHOOLS[True]
    noncentered = _EIGHT_SCHOOLS[False]
    # exp(-log_tau) overflows and theta == mu: 0 * inf would be NaN.
    assert centered.logp(np.r_[0.0, -800.0, np.zeros(8)]) == -math.inf
    # tau = exp(800) = inf and nu == 0: inf * 0 would be NaN.
    assert noncentered.logp(np.r_[0.0, 800.0, np.zeros(8)]) == -math.inf
    assert centered.logp(np.r_[np.nan, np.zeros(9)]) == -math.inf
    # The density is unbounded as tau -> 0 with every theta_j = mu: a large finite value.
    assert centered.logp(np.r_[0.0, -300.0, np.zeros(8)]) > 2000


# ---------------------------------------------------------------------------
# constrain, names, data
# ---------------------------------------------------------------------------

def test_names_dims_and_data():
    model = eight_schools(centered=True)
    assert isinstance(model, Model)
    assert model.dim == 10
    assert model.names == ["mu", "log_tau"] + [f"theta[{j}]" for j in range(8)]
    assert eight_schools(centered=False).names[2:] == [f"nu[{j}]" for j in range(8)]
    np.testing.assert_array_equal(model.data["y"], [28, 8, -3, 7, -1, 1, 18, 12])
    np.testing.assert_array_equal(model.data["sigma"], [15, 10, 16, 11, 9, 11, 10, 18])
    assert (model.centered, model.mu_scale, model.tau_scale) == (True, 5.0, 5.0)


def test_eight_schools_constants():
    np.testing.assert_array_equal(Y, [28, 8, -3, 7, -1, 1, 18, 12])
    np.testing.assert_array_equal(SIGMA, [15, 10, 16, 11, 9, 11, 10, 18])
    assert not Y.flags.writeable and not SIGMA.flags.writeable
    assert NOTEBOOK_MEAN_LOG_TAU == 0.7657852
    assert EXACT_MEAN_LOG_TAU == pytest.approx(0.8021392, abs=1e-7)


@pytest.mark.parametrize("centered", [True, False])
def test_constrain_shapes_and_values(centered):
    model = eight_schools(centered=centered)
    draws = np.random.default_rng(3).normal(size=(4, 7, 10))
    out = model.constrain(draws)
    expected_keys = {"mu", "tau", "log_tau", "theta"} | (set() if centered else {"nu"})
    assert set(out) == expected_keys
    for name in ("mu", "tau", "log_tau"):
        assert out[name].shape == (4, 7)
    assert out["theta"].shape == (4, 7, 8)
    np.testing.assert_array_equal(out["mu"], draws[..., 0])
    np.testing.assert_array_equal(out["log_tau"], draws[..., 1])
    np.testing.assert_allclose(out["tau"], np.exp(draws[..., 1]), rtol=1e-15)
    if centered:
        np.testing.assert_array_equal(out["theta"], draws[..., 2:])
    else:
        assert out["nu"].shape == (4, 7, 8)
        np.testing.assert_array_equal(out["nu"], draws[..., 2:])
        for c in range(4):
            for d in range(7):
                mu, tau = draws[c, d, 0], math.exp(draws[c, d, 1])
                for j in range(8):
                    assert out["theta"][c, d, j] == pytest.approx(mu + tau * draws[c, d, 2 + j],
                                                                  rel=1e-14, abs=1e-14)
    # A single draw (no leading axes) works too.
    single = model.constrain(draws[0, 0])
    assert single["theta"].shape == (8,) and single["mu"].shape == ()
    with pytest.raises(ValueError, match=r"\(\.\.\., 10\)"):
        model.constrain(np.zeros((3, 9)))


@pytest.mark.parametrize("centered", [True, False])
def test_constrain_returns_read_only_views(centered):
    """No copy of the draws (memory at large J), and no way to edit them through it."""
    draws = np.zeros((2, 10))
    out = eight_schools(centered=centered).constrain(draws)
    coordinates = "theta" if centered else "nu"
    assert np.shares_memory(out[coordinates], draws)
    for name in ("mu", "log_tau", coordinates):
        with pytest.raises(ValueError, match="read-only"):
            out[name][...] = 1.0
    assert np.all(draws == 0.0)
    assert draws.flags.writeable  # the caller's array itself is untouched


def test_model_keeps_its_own_copy_of_the_data():
    y = np.array([1.0, 2.0, 3.0])
    sigma = np.array([1.0, 1.0, 2.0])
    y_before, sigma_before = y.copy(), sigma.copy()
    model = hierarchical_normal(y, sigma)
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(sigma, sigma_before)
    x = np.array([0.5, 0.1, 1.0, 2.0, 3.0])
    before = model.logp(x)
    y[:] = 100.0                  # the caller edits their data afterwards ...
    sigma[:] = 0.1
    assert model.logp(x) == before   # ... and the model is unaffected
    assert model.data["y"][0] == 1.0


def test_lists_and_integer_arrays_are_accepted():
    model = hierarchical_normal([28, 8, -3], [15, 10, 16], centered=False)
    same = hierarchical_normal(np.array([28.0, 8.0, -3.0]), np.array([15.0, 10.0, 16.0]),
                               centered=False)
    x = np.array([1.0, 0.5, 0.1, -0.2, 0.3])
    assert model.logp(x) == same.logp(x)


# ---------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(y=[1.0, 2.0], sigma=[1.0]), ValueError, "same length"),
    (dict(y=[], sigma=[]), ValueError, "y must have at least one group"),
    (dict(y=[[1.0, 2.0]], sigma=[[1.0, 1.0]]), ValueError, r"y must be a 1-D array"),
    (dict(y=3.0, sigma=1.0), ValueError, r"y must be a 1-D array.*shape \(\)"),
    (dict(y=[1.0, np.nan], sigma=[1.0, 1.0]), ValueError, r"y must be finite; y\[1\]"),
    (dict(y=[1.0, 2.0], sigma=[1.0, np.inf]), ValueError, r"sigma must be finite"),
    (dict(y=[1.0, 2.0], sigma=[1.0, 0.0]), ValueError, r"sigma must be positive.*sigma\[1\]"),
    (dict(y=[1.0, 2.0], sigma=[-1.0, 1.0]), ValueError, r"sigma must be positive.*sigma\[0\]"),
    (dict(y=["a", "b"], sigma=[1.0, 1.0]), TypeError, "y must be a 1-D array of real numbers"),
    (dict(y="12", sigma=[1.0, 1.0]), TypeError, "y must be a 1-D array of real numbers"),
    (dict(y=[1.0, 2.0], sigma=[1j, 1.0]), TypeError, "sigma must be a 1-D array of real"),
    (dict(y=[1.0], sigma=[1.0], mu_scale=0.0), ValueError, "mu_scale must be positive"),
    (dict(y=[1.0], sigma=[1.0], tau_scale=-2.0), ValueError, "tau_scale must be positive"),
    (dict(y=[1.0], sigma=[1.0], tau_scale=np.inf), ValueError, "tau_scale must be positive"),
    (dict(y=[1.0], sigma=[1.0], mu_scale="5"), TypeError, "mu_scale must be a positive real"),
    (dict(y=[1.0], sigma=[1.0], centered="yes"), TypeError, "centered must be True or False"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        hierarchical_normal(**kwargs)


# ---------------------------------------------------------------------------
# funnel
# ---------------------------------------------------------------------------

@MODEL_SETTINGS
@given(dim=st.integers(2, 12), data=st.data())
def test_funnel_matches_scipy_and_finite_differences(dim, data):
    model = funnel(dim)
    v = data.draw(st.floats(-6, 6))
    xs = data.draw(st.lists(st.floats(-3, 3), min_size=dim - 1, max_size=dim - 1))
    # Keep x on the scale of exp(v/2) so that the density is not astronomically small.
    x = np.array([v] + [value * math.exp(v / 2) for value in xs])
    assert model.logp(x) == pytest.approx(scipy_funnel_logp(x), rel=1e-11, abs=1e-11)
    other = x.copy()
    other[0] += 0.3
    assert model.logp(x) - model.logp(other) == pytest.approx(
        scipy_funnel_logp(x) - scipy_funnel_logp(other), rel=1e-9, abs=1e-9)
    assert_gradient_matches(model, x)


def test_funnel_names_and_constrain():
    model = funnel(4)
    assert model.dim == 4
    assert model.names == ["v", "x[0]", "x[1]", "x[2]"]
    draws = np.arange(24.0).reshape(2, 3, 4)
    out = model.constrain(draws)
    assert set(out) == {"v", "x"}
    np.testing.assert_array_equal(out["v"], draws[..., 0])
    np.testing.assert_array_equal(out["x"], draws[..., 1:])
    assert funnel().dim == 10


_FUNNEL_5 = funnel(5)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(values=st.lists(extreme_float, min_size=5, max_size=5))
def test_funnel_extreme_points_never_give_nan(values):
    grad = np.full(5, 123.0)
    logp = _FUNNEL_5.logp_grad(np.array(values, dtype=np.float64), grad)
    assert_rejects_cleanly_or_is_finite(logp, grad)


@pytest.mark.parametrize("dim, error", [(1, ValueError), (0, ValueError), (2.5, TypeError),
                                        (True, TypeError), ("10", TypeError)])
def test_funnel_bad_dim(dim, error):
    with pytest.raises(error, match="dim must be"):
        funnel(dim)


# ---------------------------------------------------------------------------
# analytic Gaussians
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [1, 7, 100])
def test_gaussian_models_against_scipy(dim):
    """log N(x | m, S) against scipy.stats.multivariate_normal and the gradient against
    -S^{-1} (x - m) by a linear solve, for the dense and the diagonal builder."""
    from uturn.models.gaussian import diagonal_gaussian, random_correlated_gaussian
    rng = np.random.default_rng(dim)
    dense = random_correlated_gaussian(dim, rng, scale_low=0.1, scale_high=10.0)
    sd = np.exp(rng.uniform(-2, 2, dim))
    diagonal = diagonal_gaussian(rng.uniform(-5, 5, dim), sd)
    for model in (dense, diagonal):
        reference = stats.multivariate_normal(model.mean, model.cov)
        for _ in range(5):
            x = model.mean + model.sd * rng.standard_normal(dim) * 3.0
            grad = np.empty(dim)
            logp = model.logp_grad(x, grad)
            assert logp == pytest.approx(reference.logpdf(x), rel=1e-10, abs=1e-10)
            expected = -np.linalg.solve(model.cov, x - model.mean)
            np.testing.assert_allclose(grad, expected, rtol=1e-7,
                                       atol=1e-9 * np.max(np.abs(expected)))


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("n_groups", [8, 1000])
def test_gradient_bits_do_not_depend_on_where_the_arrays_lie(centered, n_groups):
    """The kernels' sums are vectorised; their last bits (and so a chain's draws, and
    reproducibility across `cores`) must not depend on how far apart x and grad lie in
    memory, which decides whether a vectorised loop passes its runtime overlap check."""
    rng = np.random.default_rng(n_groups)
    y = rng.normal(0.0, 10.0, n_groups)
    sigma = rng.uniform(5.0, 20.0, n_groups)
    model = hierarchical_normal(y, sigma, centered=centered)
    values = rng.standard_normal(model.dim) * (5.0 if centered else 1.0)
    buffer = np.zeros(3 * model.dim + 200)
    seen = set()
    for offset in range(0, 16):
        for gap in (0, 1, 2, 3, 5, 8, 16, 40, 100):
            x = buffer[offset:offset + model.dim]
            x[:] = values
            grad = buffer[offset + model.dim + gap:][:model.dim]
            logp = model.logp_grad(x, grad)
            seen.add((logp, grad.tobytes()))
    x, grad = values.copy(), np.empty(model.dim)
    seen.add((model.logp_grad(x, grad), grad.tobytes()))
    assert len(seen) == 1
