"""Leapfrog properties: exactness on the harmonic oscillator, time reversibility,
volume preservation and second-order energy error; momentum draws with covariance M."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from uturn.hmc.integrator import (draw_momentum, kinetic_energy, leapfrog,
                                  metric_factor_from_inv_metric, velocity)

from _targets import smooth_anisotropic, standard_normal


def random_inv_metric(kind, dim, rng):
    if kind == "unit":
        return np.ones((1, dim))
    if kind == "diag":
        return np.exp(rng.uniform(-1, 1, (1, dim)))
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim + np.eye(dim)


def integrate(logp_grad, q, p, step_size, n_steps, inv_metric):
    """L leapfrog steps from (q, p); returns new copies (q, p, logp)."""
    q, p = q.copy(), p.copy()
    grad = np.empty_like(q)
    logp = logp_grad(q, grad)
    p_sharp = np.empty_like(q)
    for _ in range(n_steps):
        logp, kinetic = leapfrog(logp_grad, q, p, grad, p_sharp, step_size, inv_metric)
        assert kinetic == pytest.approx(0.5 * p @ (p_sharp), rel=1e-12)
    return q, p, logp


def hamiltonian(logp_grad, q, p, inv_metric):
    grad = np.empty_like(q)
    p_sharp = np.empty_like(p)
    velocity(inv_metric, p, p_sharp)
    return -logp_grad(q.copy(), grad) + kinetic_energy(p, p_sharp)


def test_harmonic_oscillator_matches_analytic_solution():
    # H = q^2/2 + p^2/2 from (0, 1): exact flow is (sin t, cos t); leapfrog error O(eps^2).
    q, p, _ = integrate(standard_normal, np.zeros(1), np.ones(1), 0.01, 100, np.ones((1, 1)))
    assert q[0] == pytest.approx(np.sin(1.0), abs=1e-4)
    assert p[0] == pytest.approx(np.cos(1.0), abs=1e-4)


metric_kinds = st.sampled_from(["unit", "diag", "dense"])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(dim=st.integers(1, 12), kind=metric_kinds, step_size=st.floats(0.01, 0.3),
       n_steps=st.integers(1, 25), seed=st.integers(0, 2**32 - 1))
def test_leapfrog_is_time_reversible(dim, kind, step_size, n_steps, seed):
    rng = np.random.default_rng(seed)
    inv_metric = random_inv_metric(kind, dim, rng)
    q0, p0 = rng.standard_normal(dim), rng.standard_normal(dim)
    q1, p1, _ = integrate(smooth_anisotropic, q0, p0, step_size, n_steps, inv_metric)
    q2, p2, _ = integrate(smooth_anisotropic, q1, -p1, step_size, n_steps, inv_metric)
    np.testing.assert_allclose(q2, q0, atol=1e-10, rtol=0)
    np.testing.assert_allclose(-p2, p0, atol=1e-10, rtol=0)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(dim=st.integers(1, 5), kind=metric_kinds, step_size=st.floats(0.05, 0.3),
       n_steps=st.integers(1, 10), seed=st.integers(0, 2**32 - 1))
def test_leapfrog_preserves_volume(dim, kind, step_size, n_steps, seed):
    """The Jacobian determinant of the L-step map (q, p) -> (q', p') is 1."""
    rng = np.random.default_rng(seed)
    inv_metric = random_inv_metric(kind, dim, rng)
    z0 = rng.standard_normal(2 * dim)

    def flow(z):
        q, p, _ = integrate(smooth_anisotropic, z[:dim], z[dim:], step_size, n_steps, inv_metric)
        return np.concatenate([q, p])

    h = 1e-5
    jacobian = np.empty((2 * dim, 2 * dim))
    for k in range(2 * dim):
        e = np.zeros(2 * dim)
        e[k] = h
        jacobian[:, k] = (flow(z0 + e) - flow(z0 - e)) / (2 * h)
    assert np.linalg.det(jacobian) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["unit", "diag", "dense"])
def test_energy_error_is_second_order(kind):
    """Over a fixed integration time, halving the step cuts the energy error about 4x."""
    rng = np.random.default_rng(3)
    dim = 6
    inv_metric = random_inv_metric(kind, dim, rng)
    q0, p0 = rng.standard_normal(dim), rng.standard_normal(dim)
    H0 = hamiltonian(smooth_anisotropic, q0, p0, inv_metric)
    errors = []
    for step_size in (0.04, 0.02, 0.01):
        n_steps = int(round(1.0 / step_size))
        q, p, _ = integrate(smooth_anisotropic, q0, p0, step_size, n_steps, inv_metric)
        errors.append(abs(hamiltonian(smooth_anisotropic, q, p, inv_metric) - H0))
    for coarse, fine in zip(errors, errors[1:]):
        assert 3.0 < coarse / fine < 5.0


@pytest.mark.parametrize("kind", ["diag", "dense"])
def test_metric_factor_squares_to_the_metric(kind):
    rng = np.random.default_rng(4)
    dim = 7
    inv_metric = random_inv_metric(kind, dim, rng)
    factor = np.empty_like(inv_metric)
    assert metric_factor_from_inv_metric(inv_metric, factor)
    metric = np.linalg.inv(inv_metric) if kind == "dense" else np.diag(1 / inv_metric[0])
    full = factor if kind == "dense" else np.diag(factor[0])
    np.testing.assert_allclose(full @ full.T, metric, rtol=1e-10, atol=1e-12)


def test_metric_factor_rejects_indefinite_metric():
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert not metric_factor_from_inv_metric(bad, np.empty_like(bad))
    assert not metric_factor_from_inv_metric(np.array([[1.0, -1.0]]), np.empty((1, 2)))


@pytest.mark.parametrize("kind", ["diag", "dense"])
def test_momentum_draws_have_covariance_m(kind):
    rng = np.random.default_rng(5)
    dim = 4
    inv_metric = random_inv_metric(kind, dim, rng)
    factor = np.empty_like(inv_metric)
    metric_factor_from_inv_metric(inv_metric, factor)
    n = 40000
    draws = np.empty((n, dim))
    p = np.empty(dim)
    generator = np.random.default_rng(6)
    for k in range(n):
        draw_momentum(generator, factor, p)
        draws[k] = p
    metric = np.linalg.inv(inv_metric) if kind == "dense" else np.diag(1 / inv_metric[0])
    # Each entry of a sample covariance has sd sqrt((M_ij^2 + M_ii M_jj) / n).
    sd = np.sqrt((metric ** 2 + np.outer(np.diag(metric), np.diag(metric))) / n)
    assert np.all(np.abs(np.cov(draws.T) - metric) < 5 * sd)
    assert np.all(np.abs(draws.mean(axis=0)) < 5 * np.sqrt(np.diag(metric) / n))
