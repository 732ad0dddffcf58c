"""uturn.sample end to end: correctness on analytic Gaussians, divergences,
reproducibility, and every bad input rejected before work starts."""
import os
import subprocess
import sys
import warnings

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import uturn
from uturn.diagnostics import mcse_mean
from uturn.models.gaussian import dense_gaussian, diagonal_gaussian, iid_gaussian

from _targets import funnel, half_normal_wall, nan_everywhere, standard_normal
from _sampling_helpers import assert_moments_match, quiet_sample


# ---------------------------------------------------------------- statistical correctness

@st.composite
def gaussian_targets(draw):
    dim = draw(st.integers(1, 50))
    seed = draw(st.integers(0, 2**32 - 1))
    correlated = draw(st.booleans()) and dim > 1
    rng = np.random.default_rng(seed)
    log_scales = rng.uniform(np.log(1e-2), np.log(1e2), dim)
    scales = np.exp(log_scales)
    mean = rng.uniform(-10, 10, dim) * scales
    if not correlated:
        return diagonal_gaussian(mean, scales), "diag"
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    corr = (q * np.geomspace(1, 20, dim)) @ q.T
    d = np.sqrt(np.diag(corr))
    cov = corr / np.outer(d, d) * np.outer(scales, scales)
    return dense_gaussian(mean, 0.5 * (cov + cov.T)), "dense"


@pytest.mark.slow
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(target=gaussian_targets(), seed=st.integers(0, 2**31))
def test_full_runs_recover_gaussian_moments(target, seed):
    model, metric = target
    fit = quiet_sample(model, seed=seed, metric=metric)
    assert fit.num_divergences == 0
    assert_moments_match(fit, model)
    # Dual averaging adapts the mean acceptance statistic towards 0.8 during warmup;
    # the final step (the average iterate) is a little smaller, so it sits above.
    acceptance = fit.stats["acceptance_rate"].mean()
    assert 0.75 < acceptance < 0.97
    warm = fit.warmup_stats["acceptance_rate"][:, -50:].mean()
    assert abs(warm - 0.8) < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("target_accept", [0.65, 0.95])
def test_acceptance_follows_target_accept(target_accept):
    model = iid_gaussian(20)
    fit = quiet_sample(model, seed=5, target_accept=target_accept)
    assert abs(fit.warmup_stats["acceptance_rate"][:, -50:].mean() - target_accept) < 0.08
    assert fit.stats["acceptance_rate"].mean() > target_accept - 0.05


@pytest.mark.slow
def test_dense_metric_learns_the_covariance():
    rng = np.random.default_rng(7)
    model = uturn.models.gaussian.random_correlated_gaussian(8, rng, 0.1, 10.0, 0.99)
    fit = quiet_sample(model, seed=8, metric="dense")
    assert_moments_match(fit, model)
    # The adapted inverse metric estimates the covariance: compare correlations.
    inv_metric = fit.inv_metric[0]
    d = np.sqrt(np.diag(inv_metric))
    estimated = inv_metric / np.outer(d, d)
    true = model.cov / np.outer(model.sd, model.sd)
    # The metric comes from the last slow window: 500 warmup draws of chain 0 for
    # tune=1000. A correlation estimated from n_eff effective draws has standard error
    # about (1 - r^2) / sqrt(n_eff); n_eff is taken from the post-warmup ESS per draw.
    ess_per_draw = min(uturn.diagnostics.ess_bulk(fit.unconstrained[:1, :, k])
                       for k in range(model.dim)) / fit.unconstrained.shape[1]
    standard_error = (1.0 - true**2) / np.sqrt(500 * min(ess_per_draw, 1.0))
    off_diagonal = ~np.eye(model.dim, dtype=bool)
    assert np.all(np.abs(estimated - true)[off_diagonal] <= 5 * standard_error[off_diagonal])
    assert np.all(np.abs(np.log(d / model.sd)) < 0.3)


@pytest.mark.slow
def test_static_hmc_recovers_moments():
    model = diagonal_gaussian([1.0, -2.0, 3.0], [0.5, 1.0, 2.0])
    fit = quiet_sample(model, seed=9, algorithm="hmc", num_steps=10)
    assert fit.num_divergences == 0
    assert_moments_match(fit, model)
    assert np.all(fit.stats["n_steps"] == 10) and np.all(fit.stats["tree_depth"] == 0)


def test_short_warmup_still_samples():
    model = diagonal_gaussian([0.0, 5.0], [1.0, 10.0])
    fit = quiet_sample(model, draws=2000, tune=60, seed=10)
    assert_moments_match(fit, model)
    assert fit.inv_metric[0, 1] > 10  # the 15/75/10 window still learnt the scale


def test_tune_below_20_warns_and_keeps_unit_metric():
    with pytest.warns(UserWarning, match="below 20"):
        fit = uturn.sample(iid_gaussian(2), draws=50, tune=10, chains=1, seed=1, progress=False)
    np.testing.assert_array_equal(fit.inv_metric, np.ones((1, 2)))


def test_tune_zero_uses_given_step_size_and_unit_metric():
    fit = quiet_sample(iid_gaussian(3), draws=200, tune=0, chains=2, seed=2, step_size=0.37)
    assert np.all(fit.stats["step_size"] == 0.37)
    np.testing.assert_array_equal(fit.inv_metric, np.ones((2, 3)))


def test_unit_metric_is_not_adapted():
    fit = quiet_sample(diagonal_gaussian([0, 0], [1, 30]), draws=200, chains=2, seed=3,
                       metric="unit")
    np.testing.assert_array_equal(fit.inv_metric, np.ones((2, 2)))


def test_max_treedepth_is_reported_only_when_it_ends_the_tree():
    fit = quiet_sample(iid_gaussian(50), draws=200, tune=0, chains=2, seed=4,
                       step_size=0.01, max_treedepth=3)
    reached = fit.stats["reached_max_treedepth"]
    assert reached.all()
    assert np.all(fit.stats["tree_depth"][reached] == 3)
    fit = quiet_sample(iid_gaussian(2), draws=300, chains=2, seed=4)
    assert not fit.stats["reached_max_treedepth"].any()
    assert fit.stats["tree_depth"].max() < 10


# ---------------------------------------------------------------------------- divergences

def test_hard_wall_diverges_but_never_yields_nan_or_out_of_support_draws():
    model = uturn.Model(half_normal_wall, 2)
    fit = quiet_sample(model, draws=1000, tune=500, seed=5)
    x = fit.unconstrained
    assert np.all(np.isfinite(x)) and np.all(x[:, :, 0] <= 1.0)
    diverging = fit.stats["diverging"]
    assert diverging.sum() > 0
    point = fit.stats["divergence_point"]
    assert point.shape == x.shape
    assert np.all(np.isfinite(point[diverging])) and np.all(np.isnan(point[~diverging]))
    # The trajectory blew up beyond the wall, where the density is -inf.
    assert np.all(point[diverging][:, 0] > 1.0)
    for name in ("lp", "energy", "step_size", "acceptance_rate"):
        assert np.all(np.isfinite(fit.stats[name])), name
    # The wall truncates N(0, 1) at 1: E[x0] = -phi(1) / Phi(1).
    from scipy import stats
    truth = -stats.norm.pdf(1) / stats.norm.cdf(1)
    assert abs(x[:, :, 0].mean() - truth) < 5 * mcse_mean(x[:, :, 0])


def test_funnel_records_divergences_and_no_nan():
    model = uturn.Model(funnel, 10, names=["v"] + [f"x[{i}]" for i in range(9)])
    fit = quiet_sample(model, seed=6)
    assert fit.num_divergences > 0
    assert np.all(np.isfinite(fit.unconstrained))
    # Divergences happen in the neck: v at divergent draws sits below its typical value.
    v = fit["v"]
    assert np.median(v[fit.stats["diverging"]]) < np.median(v)
    assert np.all(np.isfinite(fit.warmup_stats["step_size"]))


def test_nan_everywhere_fails_initialisation_after_100_tries():
    # A bounded search, not a timing: timed assertions flake on a shared machine.
    model = uturn.Model(nan_everywhere, 3)
    with pytest.raises(uturn.InitializationError, match="100 tries"):
        uturn.sample(model, seed=1, progress=False)


def test_init_with_infinite_density_is_rejected_naming_init():
    model = uturn.Model(half_normal_wall, 2)
    with pytest.raises(ValueError, match="init"):
        uturn.sample(model, init=np.array([2.0, 0.0]), progress=False)


def test_improper_posterior_is_reported():
    @numba.njit
    def flat(x, grad):
        grad[:] = 0.0
        return 0.0

    with pytest.raises(uturn.SamplingError, match="improper"):
        uturn.sample(uturn.Model(flat, 2), seed=1, progress=False)


# -------------------------------------------------------------------- reproducibility

def test_results_do_not_depend_on_cores():
    model = iid_gaussian(5)
    fits = [quiet_sample(model, draws=300, tune=300, chains=4, seed=11, cores=c)
            for c in (1, 2, 4)]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.unconstrained, fits[0].unconstrained)
        for name in fits[0].stats:
            np.testing.assert_array_equal(other.stats[name], fits[0].stats[name])
    # Chains are independent streams, not copies.
    assert not np.array_equal(fits[0].unconstrained[0], fits[0].unconstrained[1])


def _scaled_gaussian():
    rng = np.random.default_rng(0)
    return diagonal_gaussian(rng.uniform(-3, 3, 20), np.exp(rng.uniform(-2, 2, 20)))


@pytest.mark.parametrize("target_accept", [0.65, 0.8, 0.9])
def test_first_window_restart_reaches_target_accept(target_accept):
    # Dual averaging drives the mean acceptance statistic to target_accept; after
    # Stan's warmup the step size comes from the 50-iteration terminal window and the
    # sampling phase's acceptance lands well above it. Run on across the windows, it
    # lands within a few hundredths, and the draws still have the right moments.
    # Each chain adapts its own step size, so chains differ in their mean acceptance
    # by more than each chain's Monte Carlo error: the unit of noise is the chain,
    # and 64 of them (a fraction of a second here) make the comparison sharp.
    model = _scaled_gaussian()
    chains = 64
    continued = quiet_sample(model, chains=chains, seed=1, target_accept=target_accept,
                             step_size_restart="first_window")
    restarted = quiet_sample(model, chains=chains, seed=1, target_accept=target_accept)
    per_chain = continued.stats["acceptance_rate"].mean(axis=1)
    stan_per_chain = restarted.stats["acceptance_rate"].mean(axis=1)
    realised, stan_realised = per_chain.mean(), stan_per_chain.mean()
    noise = per_chain.std(ddof=1) / np.sqrt(chains)
    stan_noise = stan_per_chain.std(ddof=1) / np.sqrt(chains)
    # On top of the noise, the final step, exp(x_bar), carries dual averaging's own
    # offset, +0.003 to +0.03 of the target here (0.68 at 0.65): 0.04 allows that.
    assert abs(realised - target_accept) < 0.04 + 5 * noise
    # Stan's lands above it by 0.02 (at 0.9, where little room is left) to 0.12 (at
    # 0.65), 9 to 24 of the difference's standard errors.
    assert stan_realised - realised > 5 * np.hypot(noise, stan_noise)
    if target_accept <= 0.8:
        assert stan_realised - target_accept > 0.04 + 5 * stan_noise
    assert_moments_match(continued, model)
    assert continued.settings["step_size_restart"] == "first_window"


def _fragment_heap(seed):
    """Allocate arrays of many small sizes in this thread and keep about half of them,
    so that the next allocations made in this thread land in the holes between."""
    rng = np.random.default_rng(seed)
    return [np.empty(size) for size in rng.integers(1, 64, 400) if rng.random() < 0.5]


def test_results_do_not_depend_on_where_the_heap_puts_arrays():
    # The chains' threads are kept between calls, so each run allocates its arrays on a
    # heap that earlier runs left in some state. Before every array a chain touches
    # was cut from one block, how close malloc put them decided which of the
    # compiler's vector or scalar loop versions ran, and 5 of 40 runs after such
    # fragmentation differed from the first in the last bits (then in whole draws).
    model = iid_gaussian(5)
    reference = quiet_sample(model, draws=100, tune=100, chains=2, seed=11, cores=2)
    pool = uturn.sampling._chain_pool(2)
    kept = []
    for attempt in range(300):
        futures = [pool.submit(_fragment_heap, 2 * attempt + k) for k in range(2)]
        kept.append([f.result() for f in futures])
        kept = kept[-3:]
        fit = quiet_sample(model, draws=100, tune=100, chains=2, seed=11, cores=2)
        np.testing.assert_array_equal(fit.unconstrained, reference.unconstrained,
                                      err_msg=f"attempt {attempt}")


@pytest.mark.slow
def test_the_process_that_compiles_the_sampler_gets_the_same_fit(tmp_path):
    # numba's freshly compiled loop and the object code it caches sum in different
    # orders; the first process on a machine used to get other draws for a seed than
    # every later one. Two processes on an empty cache (about 40 s: one compiles).
    script = ("import sys, warnings, numpy, uturn; warnings.simplefilter('ignore'); "
              "fit = uturn.sample(uturn.models.eight_schools(centered=False), draws=200, "
              "tune=200, seed=1, progress=False); numpy.save(sys.argv[1], fit.unconstrained)")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    for name in ("compiling", "cached"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{name}.npy")],
                       env=env, check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "compiling.npy"),
                                  np.load(tmp_path / "cached.npy"))


def test_seed_none_is_recorded_and_repeatable():
    model = iid_gaussian(2)
    first = quiet_sample(model, draws=100, tune=100, chains=2)
    again = quiet_sample(model, draws=100, tune=100, chains=2, seed=first.seed)
    np.testing.assert_array_equal(first.unconstrained, again.unconstrained)
    other = quiet_sample(model, draws=100, tune=100, chains=2)
    assert other.seed != first.seed


def test_user_inputs_are_not_modified():
    model = iid_gaussian(3)
    init = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    metric = np.array([1.0, 2.0, 3.0])
    init_copy, metric_copy = init.copy(), metric.copy()
    quiet_sample(model, draws=50, tune=50, chains=2, init=init, metric=metric, seed=1)
    np.testing.assert_array_equal(init, init_copy)
    np.testing.assert_array_equal(metric, metric_copy)


def test_init_sets_the_starting_point():
    fit = quiet_sample(iid_gaussian(2), draws=1, tune=0, chains=2, seed=1, step_size=1e-8,
                       init=np.array([[3.0, 3.0], [-3.0, -3.0]]))
    np.testing.assert_allclose(fit.unconstrained[:, 0], [[3, 3], [-3, -3]], atol=1e-4)


def test_fit_contents_and_repr():
    model = uturn.Model(standard_normal, 2, names=["a", "b[0]"])
    fit = quiet_sample(model, draws=100, tune=100, chains=3, seed=1)
    assert fit.unconstrained.shape == (3, 100, 2)
    assert set(fit.posterior) == {"a", "b"} and fit["b"].shape == (3, 100, 1)
    expected = {"diverging", "energy", "energy_error", "max_energy_error", "lp", "tree_depth",
                "n_steps", "step_size", "acceptance_rate", "reached_max_treedepth",
                "divergence_point"}
    assert set(fit.stats) == expected
    assert fit.stats["diverging"].dtype == bool and fit.stats["tree_depth"].dtype.kind == "i"
    assert fit.warmup_stats["lp"].shape == (3, 100)
    # lp is the log density at the draw.
    grad = np.empty(2)
    assert fit.stats["lp"][1, 7] == pytest.approx(
        standard_normal(fit.unconstrained[1, 7].copy(), grad))
    assert np.all(fit.n_gradient_evals >= fit.stats["n_steps"].sum(axis=1))
    text = repr(fit)
    assert "3 chains" in text and "100 draws" in text and "divergences" in text
    assert "gradient evaluations" in text


# ------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(draws=-1), ValueError, "draws"),
    (dict(draws=0), ValueError, "draws"),
    (dict(draws=10.5), TypeError, "draws"),
    (dict(draws=True), TypeError, "draws"),
    (dict(tune=-5), ValueError, "tune"),
    (dict(tune="100"), TypeError, "tune"),
    (dict(chains=0), ValueError, "chains"),
    (dict(target_accept=1.0), ValueError, "target_accept"),
    (dict(target_accept=0.0), ValueError, "target_accept"),
    (dict(target_accept="high"), TypeError, "target_accept"),
    (dict(metric="full"), ValueError, "metric"),
    (dict(metric=np.ones(3)), ValueError, "metric"),
    (dict(metric=np.array([1.0, -1.0])), ValueError, "metric"),
    (dict(metric=np.array([[1.0, 2.0], [2.0, 1.0]])), ValueError, "positive definite"),
    (dict(algorithm="mala"), ValueError, "algorithm"),
    (dict(algorithm="hmc"), ValueError, "num_steps"),
    (dict(algorithm="hmc", num_steps=0), ValueError, "num_steps"),
    (dict(num_steps=10), ValueError, "num_steps"),
    (dict(max_treedepth=0), ValueError, "max_treedepth"),
    (dict(max_treedepth=64), ValueError, "max_treedepth"),
    (dict(step_size=-0.1), ValueError, "step_size"),
    (dict(step_size=np.inf), ValueError, "step_size"),
    (dict(init=np.zeros(3)), ValueError, "init"),
    (dict(init=np.zeros((3, 2))), ValueError, "init"),
    (dict(init=np.array([np.nan, 0.0])), ValueError, "init"),
    (dict(cores=0), ValueError, "cores"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed="abc"), TypeError, "seed"),
    (dict(progress="yes"), TypeError, "progress"),
    (dict(step_size_restart="stan"), ValueError, "step_size_restart"),
    (dict(step_size_restart=None), TypeError, "step_size_restart"),
    (dict(checks="no"), TypeError, "checks"),
    (dict(checks=0), TypeError, "checks"),
])
def test_bad_arguments_are_rejected_before_sampling(kwargs, error, match):
    model = iid_gaussian(2)
    with pytest.raises(error, match=match):
        uturn.sample(model, **kwargs)


def test_model_argument_must_be_a_model():
    with pytest.raises(TypeError, match="model"):
        uturn.sample(standard_normal)


def test_model_rejects_bad_logp_grad_and_dim():
    with pytest.raises(TypeError, match="numba.njit"):
        uturn.Model(lambda x, grad: 0.0, 2)

    @numba.njit
    def wrong_arity(x):
        return 0.0

    with pytest.raises(TypeError, match="could not be compiled"):
        uturn.Model(wrong_arity, 2)

    @numba.njit
    def returns_array(x, grad):
        return x

    with pytest.raises(TypeError, match="return a float"):
        uturn.Model(returns_array, 2)
    with pytest.raises(ValueError, match="dim"):
        uturn.Model(standard_normal, 0)
    with pytest.raises(TypeError, match="dim"):
        uturn.Model(standard_normal, 2.5)
    with pytest.raises(ValueError, match="names"):
        uturn.Model(standard_normal, 2, names=["a"])


def test_cfunc_models_work():
    from uturn.model import LOGP_GRAD_SIGNATURE

    @numba.cfunc(LOGP_GRAD_SIGNATURE)
    def logp_grad(x, grad):
        grad[0] = -x[0]
        return -0.5 * x[0] * x[0]

    fit = quiet_sample(uturn.Model(logp_grad, 1), draws=500, tune=200, chains=2, seed=3)
    assert abs(fit.unconstrained.mean()) < 5 * mcse_mean(fit.unconstrained[:, :, 0])


def test_default_constrain_groups_adjacent_coordinates_as_read_only_views():
    model = uturn.Model(standard_normal, 4, names=["a", "x[0]", "x[1]", "x[2]"])
    draws = np.arange(24.0).reshape(2, 3, 4)
    posterior = model.constrain(draws)
    assert posterior["x"].shape == (2, 3, 3) and posterior["a"].shape == (2, 3)
    np.testing.assert_array_equal(posterior["x"], draws[..., 1:])
    assert np.shares_memory(posterior["x"], draws)  # no copy of a large model's draws
    with pytest.raises(ValueError, match="read-only"):
        posterior["x"][0, 0, 0] = -1.0
    assert draws.flags.writeable and draws[0, 0, 1] == 1.0


def test_fit_posterior_is_computed_on_first_use_and_kept():
    calls = []
    model = uturn.Model(standard_normal, 2)
    original = model.constrain

    def counting(draws):
        calls.append(1)
        return original(draws)

    model.constrain = counting
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = uturn.sample(model, draws=50, tune=50, chains=1, seed=1, progress=False)
    fit.posterior, fit.posterior
    assert len(calls) == 1


def test_divergence_points_kept_are_capped_by_memory(monkeypatch):
    """A wall diverges often; with a small value budget only that many points are kept
    per chain, the rest of divergence_point stays NaN, and nothing breaks."""
    monkeypatch.setattr(uturn.sampling, "DIVERGENCE_VALUES_KEPT", 6)
    model = uturn.Model(half_normal_wall, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = uturn.sample(model, draws=200, tune=100, chains=1, seed=3, progress=False)
    diverging = fit.stats["diverging"][0]
    assert diverging.sum() > 3
    kept = ~np.isnan(fit.stats["divergence_point"][0, :, 0])
    assert kept.sum() == 3  # 6 values // dim 2
    assert np.all(diverging[kept])


def test_automatic_checks_of_a_large_model_use_a_subset_of_unconstrained_coordinates(monkeypatch):
    monkeypatch.setattr(uturn.sampling, "AUTO_CHECK_QUANTITIES", 20)
    y = np.linspace(-10, 10, 40)
    model = uturn.models.hierarchical_normal(y, np.full(40, 10.0), centered=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = uturn.sample(model, draws=100, tune=100, chains=2, seed=1, progress=False)
    findings = {f.kind: f for f in uturn.sampling._automatic_checks(fit)}
    assert findings["subset"].details["total"] == model.dim  # unconstrained, no theta
    assert findings["subset"].details["checked"] <= 22
    assert fit._posterior is None  # nothing derived was built to be checked


def test_checks_false_skips_only_the_warnings():
    """A short run of the centered funnel warns (divergences, R-hat, ESS); with
    ``checks=False`` it warns of nothing, its draws are the same bit for bit, and
    ``fit.checks()`` finds what the automatic checks would have reported."""
    model = uturn.models.eight_schools(centered=True)
    settings = dict(draws=100, tune=100, chains=2, seed=4, progress=False)
    with pytest.warns(uturn.SamplingWarning) as record:
        checked = uturn.sample(model, **settings)
    warned = {str(w.message) for w in record if issubclass(w.category, uturn.SamplingWarning)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unchecked = uturn.sample(model, checks=False, **settings)
    np.testing.assert_array_equal(unchecked.unconstrained, checked.unconstrained)
    later = {f"{f.message} {f.advice}".strip()
             for f in uturn.sampling._automatic_checks(unchecked)
             if f.severity == uturn.diagnostics.WARNING}
    assert warned and later == warned


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sampling_works_in_a_forked_child_after_sampling_in_the_parent():
    """The chain threads are kept between calls; a child forked after a run (as
    multiprocessing and joblib do) has none of them and must start its own."""
    import multiprocessing

    quiet_sample(iid_gaussian(2), draws=20, tune=20, chains=2, cores=2, seed=1)
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        result = pool.apply_async(_sample_in_child)
        assert result.get(timeout=120) == (2, 20, 2)


def _sample_in_child():
    fit = quiet_sample(iid_gaussian(2), draws=20, tune=20, chains=2, cores=2, seed=2)
    return fit.unconstrained.shape


def test_a_replaced_logp_grad_is_the_one_sampled():
    """The sampler keeps the compiled address of ``model.logp_grad`` between calls; a
    function assigned to the attribute afterwards must be the one sampled."""
    @numba.njit
    def centred_at_zero(x, grad):
        grad[0] = -x[0]
        return -0.5 * x[0] * x[0]

    @numba.njit
    def centred_at_ten(x, grad):
        grad[0] = 10.0 - x[0]
        return -0.5 * (x[0] - 10.0) ** 2

    model = uturn.Model(centred_at_zero, 1)
    first = quiet_sample(model, draws=300, tune=300, chains=2, seed=4)
    model.logp_grad = centred_at_ten
    second = quiet_sample(model, draws=300, tune=300, chains=2, seed=4)
    # Unit-variance targets 10 apart; each mean has a Monte Carlo error near 0.04.
    assert abs(first.unconstrained.mean()) < 0.5
    assert abs(second.unconstrained.mean() - 10.0) < 0.5


def test_a_replaced_logp_grad_is_checked_like_the_first():
    """Assigning a plain Python function to ``model.logp_grad`` gets the constructor's
    TypeError at once, and the model keeps sampling the compiled function it had."""
    @numba.njit
    def centred_at_two(x, grad):
        grad[0] = 2.0 - x[0]
        return -0.5 * (x[0] - 2.0) ** 2

    def not_compiled(x, grad):
        return 0.0

    model = uturn.Model(centred_at_two, 1)
    quiet_sample(model, draws=20, tune=20, chains=1, seed=1)
    with pytest.raises(TypeError, match="logp_grad must be a numba-compiled function"):
        model.logp_grad = not_compiled
    assert model.logp_grad is centred_at_two
    fit = quiet_sample(model, draws=300, tune=300, chains=2, seed=4)
    draws = fit.unconstrained[:, :, 0]
    assert abs(draws.mean() - 2.0) < 5 * mcse_mean(draws)


def test_a_model_pickled_after_sampling_samples_in_another_process(tmp_path):
    """The compiled address the Model keeps belongs to the process that sampled; a
    Model pickled there and loaded in a fresh process must sample its own code (it
    jumped to the old address and crashed with a segfault)."""
    (tmp_path / "pickled_target.py").write_text(
        "import numba\n\n"
        "@numba.njit\n"
        "def logp_grad(x, grad):\n"
        "    grad[0] = 3.0 - x[0]\n"
        "    return -0.5 * (x[0] - 3.0) ** 2\n")
    sample_here = (
        "import pickle, sys, warnings\n"
        "import uturn, pickled_target\n"
        "model = uturn.Model(pickled_target.logp_grad, 1)\n"
        "uturn.sample(model, draws=50, tune=50, chains=1, seed=1, progress=False,\n"
        "             checks=False)\n"
        "assert model._compiled_handle is not None  # the pickle carries an address\n"
        "open(sys.argv[1], 'wb').write(pickle.dumps(model))\n")
    sample_there = (
        "import pickle, sys\n"
        "import uturn\n"
        "from uturn.diagnostics import mcse_mean\n"
        "model = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "fit = uturn.sample(model, draws=400, tune=300, chains=2, seed=2, progress=False,\n"
        "                   checks=False)\n"
        "draws = fit.unconstrained[:, :, 0]\n"
        "print(draws.mean(), mcse_mean(draws))\n")
    pickled = str(tmp_path / "model.pkl")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path)] + [p for p in sys.path if p]))
    for script in (sample_here, sample_there):
        done = subprocess.run([sys.executable, "-c", script, pickled], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    mean, mcse = (float(value) for value in done.stdout.split()[-2:])
    assert abs(mean - 3.0) < 5 * mcse
