"""The NUTS transition: against a recursive oracle written from Stan's base_nuts.hpp,
on deterministic mock dynamics, and by invariance of exact Gaussian draws."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

import uturn
from uturn.hmc.integrator import metric_factor_from_inv_metric
from uturn.hmc.nuts import nuts_transition, nuts_workspace
from uturn.models.gaussian import dense_gaussian, diagonal_gaussian

from _targets import flat, smooth_anisotropic, standard_normal

# --------------------------------------------------------------------------------------
# A plain recursive NUTS in numpy, structured as Stan's base_nuts.hpp (time-ordered
# forward/backward subtrees, recursion over depth). It consumes random numbers in the
# same order as the compiled builder (momentum, direction, progressive choices, biased
# progressive choice), so both must return the same draw from the same generator.
# --------------------------------------------------------------------------------------


class _Oracle:
    def __init__(self, logp_grad, step_size, inv_metric, factor, rng, extra_checks=True):
        self.extra_checks = extra_checks
        self.logp_grad, self.step_size = logp_grad, step_size
        self.inv_metric, self.factor, self.rng = inv_metric, factor, rng

    def p_sharp(self, p):
        if self.inv_metric.shape[0] == 1:
            return self.inv_metric[0] * p
        return np.array([np.sum(self.inv_metric[i] * p) for i in range(p.size)])

    def energy(self, z):
        ps = self.p_sharp(z["p"])
        return -z["lp"] + 0.5 * float(np.sum([a * b for a, b in zip(z["p"], ps)]))

    def leapfrog(self, z, eps):
        z["p"] = z["p"] + 0.5 * eps * z["g"]
        z["q"] = z["q"] + eps * self.p_sharp(z["p"])
        g = np.empty_like(z["q"])
        z["lp"] = self.logp_grad(z["q"].copy(), g)
        z["g"] = g
        z["p"] = z["p"] + 0.5 * eps * z["g"]

    @staticmethod
    def crit(ps_minus, ps_plus, rho):
        return float(np.sum(ps_plus * rho)) > 0 and float(np.sum(ps_minus * rho)) > 0

    def build_tree(self, depth, z, eps, H0, ctx):
        """Stan's build_tree; returns (valid, rho, p_beg, ps_beg, p_end, ps_end)."""
        if depth == 0:
            self.leapfrog(z, eps)
            ctx["n_leapfrog"] += 1
            h = self.energy(z)
            if np.isnan(h):
                h = np.inf
            if h - H0 > 1000 or not np.isfinite(h):
                ctx["divergent"] = True
                ctx["sum_metro_prob"] += min(1.0, np.exp(H0 - h)) if h > -np.inf else 1.0
                return (False,) + (None,) * 5
            log_weight = H0 - h
            ctx["log_w_sub"] = np.logaddexp(ctx["log_w_sub"], log_weight)
            ctx["sum_metro_prob"] += min(1.0, np.exp(log_weight))
            if ctx["first_leaf"] or self.rng.random() < np.exp(log_weight - ctx["log_w_sub"]):
                ctx["proposal"] = dict(z)
            ctx["first_leaf"] = False
            p, ps = z["p"].copy(), self.p_sharp(z["p"])
            return True, p.copy(), p, ps, p, ps
        valid, rho_i, p_beg, ps_beg, p_i_end, ps_i_end = self.build_tree(depth - 1, z, eps, H0, ctx)
        if not valid:
            return (False,) + (None,) * 5
        valid, rho_f, p_f_beg, ps_f_beg, p_end, ps_end = self.build_tree(depth - 1, z, eps, H0, ctx)
        if not valid:
            return (False,) + (None,) * 5
        rho = rho_i + rho_f
        persist = self.crit(ps_beg, ps_end, rho)
        if self.extra_checks:
            persist &= self.crit(ps_beg, ps_f_beg, rho_i + p_f_beg)
            persist &= self.crit(ps_i_end, ps_end, rho_f + p_i_end)
        return persist, rho, p_beg, ps_beg, p_end, ps_end

    def transition(self, q, max_depth):
        dim = q.size
        u = np.array([self.rng.standard_normal() for _ in range(dim)])
        p = self.factor[0] * u if self.factor.shape[0] == 1 else np.array(
            [np.sum(self.factor[i, i:] * u[i:]) for i in range(dim)])
        g = np.empty(dim)
        z0 = dict(q=q.copy(), p=p, g=g, lp=self.logp_grad(q.copy(), g))
        H0 = self.energy(z0)
        z_fwd, z_bck, z_sample = dict(z0), dict(z0), dict(z0)
        ps0 = self.p_sharp(p)
        p_fwd_bck = p_fwd_fwd = p_bck_fwd = p_bck_bck = p
        ps_fwd_bck = ps_fwd_fwd = ps_bck_fwd = ps_bck_bck = ps0
        rho = p.copy()
        log_sum_weight, depth = 0.0, 0
        ctx = dict(n_leapfrog=0, sum_metro_prob=0.0, divergent=False)
        reached_max = False
        while True:
            if depth >= max_depth:
                reached_max = True
                break
            ctx.update(log_w_sub=-np.inf, first_leaf=True, proposal=None)
            if self.rng.random() > 0.5:
                rho_bck = rho
                p_bck_fwd, ps_bck_fwd = p_fwd_fwd, ps_fwd_fwd
                valid, rho_fwd, p_fwd_bck, ps_fwd_bck, p_fwd_fwd, ps_fwd_fwd = self.build_tree(
                    depth, z_fwd, self.step_size, H0, ctx)
            else:
                rho_fwd = rho
                p_fwd_bck, ps_fwd_bck = p_bck_bck, ps_bck_bck
                valid, rho_bck, p_bck_fwd, ps_bck_fwd, p_bck_bck, ps_bck_bck = self.build_tree(
                    depth, z_bck, -self.step_size, H0, ctx)
            if not valid:
                break
            depth += 1
            if ctx["log_w_sub"] > log_sum_weight or \
                    self.rng.random() < np.exp(ctx["log_w_sub"] - log_sum_weight):
                z_sample = ctx["proposal"]
            log_sum_weight = np.logaddexp(log_sum_weight, ctx["log_w_sub"])
            rho = rho_bck + rho_fwd
            persist = self.crit(ps_bck_bck, ps_fwd_fwd, rho)
            if self.extra_checks:
                persist &= self.crit(ps_bck_bck, ps_fwd_bck, rho_bck + p_fwd_bck)
                persist &= self.crit(ps_bck_fwd, ps_fwd_fwd, rho_fwd + p_bck_fwd)
            if not persist:
                break
        return (z_sample["q"], z_sample["lp"], depth, ctx["n_leapfrog"],
                ctx["sum_metro_prob"] / ctx["n_leapfrog"], ctx["divergent"], reached_max)


def _inv_metric(kind, dim, rng):
    if kind == "diag":
        return np.exp(rng.uniform(-1, 1, (1, dim)))
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim + 0.5 * np.eye(dim)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(dim=st.integers(1, 8), kind=st.sampled_from(["diag", "dense"]),
       step_size=st.sampled_from([0.05, 0.2, 0.6, 1.2, 3.0]),
       max_depth=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_iterative_builder_matches_recursive_oracle(dim, kind, step_size, max_depth, seed):
    rng = np.random.default_rng(seed)
    inv_metric = _inv_metric(kind, dim, rng)
    factor = np.empty_like(inv_metric)
    assert metric_factor_from_inv_metric(inv_metric, factor)
    q = rng.standard_normal(dim)

    oracle = _Oracle(smooth_anisotropic, step_size, inv_metric, factor,
                     np.random.default_rng(seed + 1))
    expected = oracle.transition(q, max_depth)

    q_new, grad = q.copy(), np.empty(dim)
    logp = smooth_anisotropic(q_new.copy(), grad)
    out = nuts_transition(smooth_anisotropic, q_new, grad, logp, step_size, inv_metric,
                          factor, max_depth, np.random.default_rng(seed + 1),
                          nuts_workspace(dim, max_depth))
    (lp, energy, energy_error, max_energy_error, depth, n_steps, acceptance, diverging,
     reached) = out
    assert (depth, n_steps, diverging, reached) == expected[2:4] + expected[5:7]
    np.testing.assert_allclose(q_new, expected[0], rtol=1e-12, atol=1e-12)
    assert lp == pytest.approx(expected[1], rel=1e-12, abs=1e-12)
    assert acceptance == pytest.approx(expected[4], rel=1e-12)
    # The returned gradient belongs to the returned point.
    check = np.empty(dim)
    smooth_anisotropic(q_new.copy(), check)
    np.testing.assert_allclose(grad, check, rtol=1e-14)


def test_extra_u_turn_checks_across_merges_are_applied():
    """Stan 2.21's extra checks (each half of a merge extended by the neighbouring
    state of the other) change the trajectory in some transitions; the builder must
    agree with the oracle that has them, and the sweep must include transitions where
    the oracle without them disagrees, or it would not test them at all."""
    differs_without_extra_checks = 0
    for seed in range(600):
        rng = np.random.default_rng(seed)
        dim = int(rng.integers(2, 4))
        q = rng.standard_normal(dim)
        unit = np.ones((1, dim))
        with_checks = _Oracle(smooth_anisotropic, 1.0, unit, unit,
                              np.random.default_rng(seed + 1)).transition(q, 10)
        without = _Oracle(smooth_anisotropic, 1.0, unit, unit, np.random.default_rng(seed + 1),
                          extra_checks=False).transition(q, 10)
        out, _ = _run_one(smooth_anisotropic, q.copy(), 1.0, unit, 10, seed + 1)
        assert (out[4], out[5]) == (with_checks[2], with_checks[3])
        differs_without_extra_checks += (without[2], without[3]) != (with_checks[2], with_checks[3])
    assert differs_without_extra_checks > 0


def _run_one(logp_grad, q, step_size, inv_metric, max_depth, seed):
    dim = q.size
    factor = np.empty_like(inv_metric)
    metric_factor_from_inv_metric(inv_metric, factor)
    workspace = nuts_workspace(dim, max_depth)
    grad = np.empty(dim)
    logp = logp_grad(q.copy(), grad)
    out = nuts_transition(logp_grad, q, grad, logp, step_size, inv_metric, factor,
                          max_depth, np.random.default_rng(seed), workspace)
    return out, workspace


@pytest.mark.parametrize("max_depth", [1, 3, 6])
def test_flat_potential_never_turns(max_depth):
    """With V = 0 the trajectory is a straight line: every doubling is accepted, the
    tree reaches max depth with 2^depth - 1 steps, and every state has weight 1."""
    q = np.zeros(3)
    out, _ = _run_one(flat, q, 0.1, np.ones((1, 3)), max_depth, seed=1)
    lp, energy, energy_error, _, depth, n_steps, acceptance, diverging, reached = out
    assert depth == max_depth and reached and not diverging
    assert n_steps == 2 ** max_depth - 1
    assert acceptance == 1.0 and energy_error == pytest.approx(0.0, abs=1e-12)


def test_huge_step_diverges_at_first_step_and_records_where():
    q = np.array([0.5, -0.5])
    out, workspace = _run_one(standard_normal, q.copy(), 1e5, np.ones((1, 2)), 10, seed=2)
    lp, energy, energy_error, max_energy_error, depth, n_steps, acceptance, diverging, reached = out
    assert diverging and not reached
    assert depth == 0 and n_steps == 1
    assert max_energy_error > 1000
    divergence_point = workspace[4]
    assert np.all(np.isfinite(divergence_point))
    assert np.linalg.norm(divergence_point) > 100  # far from where it started
    assert lp == standard_normal(q.copy(), np.empty(2))  # the draw stays at the start


def test_standard_normal_u_turns_at_the_expected_depth():
    """On N(0, I) with a small step a trajectory turns after about half a period
    (pi time units): the depth must stop near log2(pi / eps), not run to the cap."""
    depths = []
    for seed in range(200):
        q = np.random.default_rng(seed).standard_normal(5)
        out, _ = _run_one(standard_normal, q, 0.05, np.ones((1, 5)), 12, seed)
        depths.append(out[4])
    # pi / 0.05 ~ 63 steps: the trajectory of 2^6 - 1 or 2^7 - 1 steps covers it.
    assert 5 <= np.median(depths) <= 7
    assert max(depths) < 12


# --------------------------------------------------------------------------------------
# Invariance: start N chains at exact draws of a Gaussian and apply a few transitions
# with fixed step size and metric (tune=0); the output must still be exact draws.
# --------------------------------------------------------------------------------------

def _gaussian_targets():
    rng = np.random.default_rng(11)
    dim = 3
    mean = rng.uniform(-3, 3, dim)
    diag = diagonal_gaussian(mean, [0.5, 1.0, 3.0])
    a = rng.standard_normal((dim, dim))
    cov = a @ a.T + 0.3 * np.eye(dim)
    dense = dense_gaussian(mean, cov)
    return {"diag": diag, "dense": dense}


def _assert_exact_gaussian(x, model, projections_seed):
    n, dim = x.shape
    mean, cov = model.mean, model.cov
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(axis=0) - mean) < 5 * se_mean)
    se_var = np.diag(cov) * np.sqrt(2.0 / (n - 1))
    assert np.all(np.abs(x.var(axis=0, ddof=1) - np.diag(cov)) < 5 * se_var)
    # Kolmogorov-Smirnov on random projections, which are exactly normal under the target.
    rng = np.random.default_rng(projections_seed)
    for _ in range(4):
        direction = rng.standard_normal(dim)
        projected = (x - mean) @ direction / np.sqrt(direction @ cov @ direction)
        assert stats.kstest(projected, "norm").pvalue > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("target", ["diag", "dense"])
@pytest.mark.parametrize("algorithm", ["nuts", "hmc"])
def test_transitions_leave_exact_draws_exact(target, algorithm):
    model = _gaussian_targets()[target]
    n = 20000
    rng = np.random.default_rng(12)
    start = rng.multivariate_normal(model.mean, model.cov, size=n)
    # A deliberately mismatched metric and a large step: the energy errors are big,
    # so any error in the multinomial weights or the Metropolis test shows up.
    inv_metric = np.array([1.0, 2.0, 0.5])
    kwargs = dict(num_steps=4) if algorithm == "hmc" else {}
    with warnings.catch_warnings():
        # Thousands of five-draw chains trip the convergence checks by design.
        warnings.simplefilter("ignore")
        fit = uturn.sample(model, draws=5, tune=0, chains=n, seed=13, init=start,
                           step_size=0.9, metric=inv_metric, algorithm=algorithm,
                           progress=False, **kwargs)
    assert 0.3 < fit.stats["acceptance_rate"].mean() < 0.95  # the test has teeth
    _assert_exact_gaussian(fit.unconstrained[:, -1, :], model, projections_seed=14)
    _assert_exact_gaussian(fit.unconstrained[:, 0, :], model, projections_seed=15)

