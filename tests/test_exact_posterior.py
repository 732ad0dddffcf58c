"""The exact posterior of the normal-normal model, checked against independent
computations: the shared reference file, brute-force 2-D quadrature over
(mu, log tau) that does not integrate mu analytically, scipy's dblquad, and
exact scaling laws.
"""
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from uturn.models import exact_posterior, funnel_exact
from uturn.models.eight_schools import EXACT_MEAN_LOG_TAU, SIGMA, Y

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference" / "eight_schools.json"
STATS = ("mean", "sd", "q05", "q50", "q95")


# ---------------------------------------------------------------------------
# the shared reference
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.exists():
        pytest.skip(f"reference file not found at {REFERENCE} (the repository is "
                    "expected to be cloned with shared/ beside it)")
    return json.loads(REFERENCE.read_text())


def test_matches_shared_reference(reference):
    np.testing.assert_array_equal(reference["data"]["y"], Y)
    np.testing.assert_array_equal(reference["data"]["sigma"], SIGMA)
    exact = exact_posterior(Y, SIGMA)
    assert exact["log_evidence"] == pytest.approx(reference["log_evidence"], rel=1e-6)
    assert set(reference["posterior"]) <= set(exact["posterior"])
    for name, expected in reference["posterior"].items():
        for stat in STATS:
            assert exact["posterior"][name][stat] == pytest.approx(expected[stat], rel=1e-6), \
                (name, stat)


def test_named_constant_is_the_exact_mean_of_log_tau():
    exact = exact_posterior(Y, SIGMA)
    assert exact["posterior"]["log_tau"]["mean"] == pytest.approx(EXACT_MEAN_LOG_TAU, rel=1e-10)


def test_layout_and_names():
    exact = exact_posterior([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert set(exact) == {"posterior", "log_evidence"}
    assert list(exact["posterior"]) == (["mu", "tau", "log_tau"]
                                        + [f"theta[{j}]" for j in range(3)]
                                        + [f"nu[{j}]" for j in range(3)])
    for summary in exact["posterior"].values():
        assert list(summary) == list(STATS)
        assert all(isinstance(value, float) for value in summary.values())
        assert summary["q05"] < summary["q50"] < summary["q95"]
        assert summary["sd"] > 0


# ---------------------------------------------------------------------------
# brute force: a 2-D tensor-product rule over (mu, log tau), theta analytic only
# given (mu, tau), no analytic integration over mu
# ---------------------------------------------------------------------------

def composite_gauss_legendre(edges, points_per_cell=12):
    nodes, weights = np.polynomial.legendre.leggauss(points_per_cell)
    lower = np.asarray(edges[:-1])[:, None]
    half = 0.5 * np.diff(edges)[:, None]
    return (lower + half * (nodes + 1)).ravel(), (half * weights).ravel()


def log_joint_mu_log_tau(y, sigma, mu, log_tau, mu_scale, tau_scale):
    """log p(y, mu, log_tau) with theta integrated out: y_j | mu, tau ~ N(mu, sigma_j^2 + tau^2),
    mu ~ N(0, mu_scale^2), tau ~ Half-Cauchy(tau_scale), plus the Jacobian log tau."""
    tau2 = np.exp(2 * log_tau)
    total = (-0.5 * (mu / mu_scale) ** 2 - math.log(mu_scale * math.sqrt(2 * math.pi))
             + math.log(2 / (math.pi * tau_scale)) - np.log1p(tau2 / tau_scale**2) + log_tau)
    for y_j, sigma_j in zip(y, sigma):
        variance = sigma_j**2 + tau2
        total = total - 0.5 * (y_j - mu) ** 2 / variance - 0.5 * np.log(2 * math.pi * variance)
    return total


def brute_force(y, sigma, mu_edges, log_tau_edges, mu_scale=5.0, tau_scale=5.0):
    """Posterior weights on a (mu, log_tau) grid from the full likelihood
    y_j | mu, tau ~ N(mu, sigma_j^2 + tau^2); returns (mu, log_tau, weights, log_evidence)."""
    mu, mu_w = composite_gauss_legendre(mu_edges)
    log_tau, log_tau_w = composite_gauss_legendre(log_tau_edges)
    log_joint = log_joint_mu_log_tau(y, sigma, mu[:, None], log_tau[None, :], mu_scale,
                                     tau_scale)
    peak = log_joint.max()
    weights = mu_w[:, None] * log_tau_w[None, :] * np.exp(log_joint - peak)
    total = weights.sum()
    return mu[:, None], log_tau[None, :], weights / total, peak + math.log(total)


def theta_given_mu_tau(y_j, sigma_j, mu, tau):
    """theta_j | mu, tau, y: the normal-normal update (precision-weighted mean)."""
    precision = 1 / sigma_j**2 + 1 / tau**2
    return (y_j / sigma_j**2 + mu / tau**2) / precision, 1 / np.sqrt(precision)


DATASETS = [
    (np.array([-2.0, 10.0, 4.0]), np.array([3.0, 8.0, 5.0])),       # tau near 0 plausible
    (np.array([25.0, -18.0, 4.0, 40.0]), np.array([4.0, 6.0, 5.0, 8.0])),  # tau clearly > 0
]


def grid_edges(low, high, width):
    return np.linspace(low, high, int(round((high - low) / width)) + 1)


@pytest.mark.parametrize("y, sigma", DATASETS)
def test_moments_match_brute_force(y, sigma):
    exact = exact_posterior(y, sigma)
    post = exact["posterior"]
    mu, log_tau, w, log_evidence = brute_force(y, sigma, grid_edges(-80, 80, 1.0),
                                               grid_edges(-45, 15, 0.25))
    tau = np.exp(log_tau)
    assert exact["log_evidence"] == pytest.approx(log_evidence, rel=1e-9)

    def mean_sd(values, conditional_var=0.0):
        mean = (w * values).sum()
        return mean, math.sqrt((w * (conditional_var + (values - mean) ** 2)).sum())

    for name, (mean, sd) in {
        "mu": mean_sd(mu + 0 * log_tau),
        "log_tau": mean_sd(log_tau + 0 * mu),
        "tau": mean_sd(tau + 0 * mu),
    }.items():
        assert post[name]["mean"] == pytest.approx(mean, rel=1e-8, abs=1e-10), name
        assert post[name]["sd"] == pytest.approx(sd, rel=1e-8), name
    for j in range(len(y)):
        cond_mean, cond_sd = theta_given_mu_tau(y[j], sigma[j], mu, tau)
        mean, sd = mean_sd(cond_mean, cond_sd**2)
        assert post[f"theta[{j}]"]["mean"] == pytest.approx(mean, rel=1e-8)
        assert post[f"theta[{j}]"]["sd"] == pytest.approx(sd, rel=1e-8)
        # nu_j = (theta_j - mu) / tau is normal given (mu, tau) too.
        mean, sd = mean_sd((cond_mean - mu) / tau, (cond_sd / tau) ** 2)
        assert post[f"nu[{j}]"]["mean"] == pytest.approx(mean, rel=1e-8, abs=1e-10)
        assert post[f"nu[{j}]"]["sd"] == pytest.approx(sd, rel=1e-8)


@pytest.mark.parametrize("y, sigma", DATASETS)
def test_quantiles_have_the_stated_probabilities(y, sigma):
    """P(quantity <= reported q_p) = p, by brute force with the quantile as a grid edge."""
    post = exact_posterior(y, sigma)["posterior"]
    wide_mu = grid_edges(-80, 80, 2.0)
    wide_log_tau = grid_edges(-45, 15, 0.5)
    for label, p in (("q05", 0.05), ("q50", 0.5), ("q95", 0.95)):
        q = post["mu"][label]
        mu_edges = np.concatenate([np.linspace(-80, q, 81), np.linspace(q, 80, 81)[1:]])
        mu, _, w, _ = brute_force(y, sigma, mu_edges, wide_log_tau)
        assert (w * (mu <= q)).sum() == pytest.approx(p, abs=1e-9), ("mu", label)

        q = post["log_tau"][label]
        edges = np.concatenate([np.linspace(-45, q, 121), np.linspace(q, 15, 121)[1:]])
        _, log_tau, w, _ = brute_force(y, sigma, wide_mu, edges)
        assert (w * (log_tau <= q)).sum() == pytest.approx(p, abs=1e-9), ("log_tau", label)
        assert post["tau"][label] == pytest.approx(math.exp(q), rel=1e-12)

    for j in range(len(y)):
        for label, p in (("q05", 0.05), ("q50", 0.5), ("q95", 0.95)):
            q = post[f"theta[{j}]"][label]
            assert brute_force_theta_cdf(y, sigma, j, q) == pytest.approx(p, abs=1e-9), \
                (j, label)


def brute_force_theta_cdf(y, sigma, j, q, mu_scale=5.0, tau_scale=5.0):
    """P(theta_j <= q | y) = E[Phi((q - E[theta_j | mu, tau]) / sd[theta_j | mu, tau])].

    Given tau, the integrand is a smooth step in mu of width ~tau around the mu
    where E[theta_j | mu, tau] = q; for small tau a fixed mu grid cannot resolve
    it, so every log-tau node gets its own mu grid, dense around that step.
    """
    log_tau, log_tau_w = composite_gauss_legendre(grid_edges(-45, 15, 0.5))
    tau = np.exp(log_tau)[:, None]
    # E[theta_j | mu, tau] = a + b mu, sd c (the normal-normal update).
    precision = 1 / sigma[j] ** 2 + 1 / tau**2
    a, b, c = y[j] / sigma[j] ** 2 / precision, 1 / tau**2 / precision, 1 / np.sqrt(precision)
    step = (q - a) / b
    width = c / b
    low = np.clip(step - 15 * width, -80, 80)
    high = np.clip(step + 15 * width, -80, 80)
    fraction = np.linspace(0, 1, 41)[None, :]
    edges = np.concatenate([-80 + (low + 80) * fraction, low + (high - low) * fraction[:, 1:],
                            high + (80 - high) * fraction[:, 1:]], axis=1)
    nodes, weights = np.polynomial.legendre.leggauss(12)
    half = 0.5 * np.diff(edges, axis=1)[:, :, None]
    mu = (edges[:, :-1, None] + half * (nodes + 1)).reshape(len(log_tau), -1)
    mu_w = (half * weights).reshape(len(log_tau), -1)
    log_joint = log_joint_mu_log_tau(y, sigma, mu, log_tau[:, None], mu_scale, tau_scale)
    w = mu_w * log_tau_w[:, None] * np.exp(log_joint - log_joint.max())
    return (w * special.ndtr((q - a - b * mu) / c)).sum() / w.sum()


def test_evidence_matches_scipy_dblquad():
    """log p(y) by scipy's adaptive 2-D quadrature over (mu, log tau)."""
    y, sigma = DATASETS[0]
    variance_of = sigma**2

    def joint(mu, log_tau):
        tau2 = math.exp(2 * log_tau)
        total = -0.5 * (mu / 5.0) ** 2 - math.log(5.0 * math.sqrt(2 * math.pi))
        total += math.log(2 / (math.pi * 5.0)) - math.log1p(tau2 / 25.0) + log_tau
        for y_j, s2 in zip(y, variance_of):
            v = s2 + tau2
            total += -0.5 * (y_j - mu) ** 2 / v - 0.5 * math.log(2 * math.pi * v)
        return math.exp(total)

    evidence, error = integrate.dblquad(joint, -45, 15, -80, 80, epsabs=1e-15, epsrel=1e-11)
    assert exact_posterior(y, sigma)["log_evidence"] == pytest.approx(math.log(evidence),
                                                                      rel=1e-8)


# ---------------------------------------------------------------------------
# exact laws
# ---------------------------------------------------------------------------

@settings(max_examples=10, deadline=None, derandomize=True)
@given(scale=st.floats(0.01, 100.0), seed=st.integers(0, 2**32 - 1))
def test_scale_equivariance(scale, seed):
    """Scaling y, sigma and both prior scales by c scales mu, tau, theta by c, shifts
    log tau by log c, leaves nu unchanged and lowers the log evidence by J log c."""
    rng = np.random.default_rng(seed)
    n_groups = int(rng.integers(1, 6))
    y = rng.normal(0, 10, size=n_groups)
    sigma = rng.uniform(2, 15, size=n_groups)
    base = exact_posterior(y, sigma)
    scaled = exact_posterior(scale * y, scale * sigma, mu_scale=5.0 * scale,
                             tau_scale=5.0 * scale)
    assert scaled["log_evidence"] == pytest.approx(
        base["log_evidence"] - n_groups * math.log(scale), rel=1e-8, abs=1e-8)
    for name, summary in base["posterior"].items():
        for stat in STATS:
            got = scaled["posterior"][name][stat]
            if name == "log_tau":
                expected = summary[stat] + (math.log(scale) if stat != "sd" else 0.0)
            elif name.startswith("nu["):
                expected = summary[stat]
            else:
                expected = scale * summary[stat]
            assert got == pytest.approx(expected, rel=1e-7, abs=1e-8 * scale), (name, stat)


def test_single_group_has_infinite_tau_sd():
    """p(tau | y) ~ tau^-(J+2): for J = 1, E[tau] is finite but E[tau^2] is not."""
    post = exact_posterior([3.0], [2.0])["posterior"]
    assert post["tau"]["sd"] == math.inf
    assert math.isfinite(post["tau"]["mean"])
    assert all(math.isfinite(post[name][stat]) for name in ("mu", "theta[0]", "log_tau")
               for stat in STATS)
    # E[tau] against brute force, integrating far into the slowly decaying tail.
    _, log_tau, w, _ = brute_force(np.array([3.0]), np.array([2.0]),
                                   grid_edges(-80, 80, 1.0), grid_edges(-45, 60, 0.25))
    assert post["tau"]["mean"] == pytest.approx((w * np.exp(log_tau)).sum(), rel=1e-7)


def test_many_groups_is_fast_and_sane():
    rng = np.random.default_rng(11)
    sigma = rng.uniform(5, 15, size=1000)
    y = 3.0 + 2.0 * rng.normal(size=1000) + sigma * rng.normal(size=1000)
    start = time.perf_counter()
    exact = exact_posterior(y, sigma)
    elapsed = time.perf_counter() - start
    assert elapsed < 20.0   # about 1 s on a 2-core machine; generous for shared CI
    post = exact["posterior"]
    assert len(post) == 3 + 2 * 1000
    # With 1000 groups mu is pinned down near the precision-weighted mean.
    assert abs(post["mu"]["mean"] - 3.0) < 4 * post["mu"]["sd"] + 0.5
    for summary in post.values():
        assert summary["q05"] < summary["q50"] < summary["q95"]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(y=[1.0, 2.0], sigma=[1.0]), ValueError, "same length"),
    (dict(y=[1.0], sigma=[0.0]), ValueError, "sigma must be positive"),
    (dict(y=[np.inf], sigma=[1.0]), ValueError, "y must be finite"),
    (dict(y=[1.0], sigma=[1.0], tau_scale=0), ValueError, "tau_scale must be positive"),
    (dict(y=[[1.0]], sigma=[[1.0]]), ValueError, "1-D"),
])
def test_bad_inputs(kwargs, error, message):
    with pytest.raises(error, match=message):
        exact_posterior(**kwargs)


# ---------------------------------------------------------------------------
# Neal's funnel
# ---------------------------------------------------------------------------

def test_funnel_exact_marginals():
    exact = funnel_exact(4)
    post = exact["posterior"]
    assert list(post) == ["v", "x[0]", "x[1]", "x[2]"]
    assert exact["log_evidence"] == 0.0
    v = stats.norm(0, 3)
    assert post["v"] == pytest.approx({"mean": 0.0, "sd": 3.0, "q05": v.ppf(0.05),
                                       "q50": 0.0, "q95": v.ppf(0.95)}, rel=1e-12, abs=1e-12)
    # sd of x_i: sqrt(E[exp(v)]) by quadrature.
    second_moment, _ = integrate.quad(lambda t: v.pdf(t) * math.exp(t), -60, 60,
                                      epsabs=0, epsrel=1e-13, limit=200)
    x = post["x[1]"]
    assert x["sd"] == pytest.approx(math.sqrt(second_moment), rel=1e-10)
    assert x["mean"] == 0.0 and x["q50"] == 0.0 and x["q05"] == -x["q95"]
    # P(x_i <= q95) = 0.95 by scipy quad over v, split where the integrand bends.
    q = x["q95"]
    pieces = [(-60, -10), (-10, 0), (0, 10), (10, 60)]
    probability = sum(integrate.quad(
        lambda t: v.pdf(t) * special.ndtr(q * math.exp(-t / 2)), a, b,
        epsabs=1e-15, epsrel=1e-13, limit=200)[0] for a, b in pieces)
    assert probability == pytest.approx(0.95, abs=1e-10)
