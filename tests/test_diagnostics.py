"""Tests of uturn.diagnostics: R-hat, ESS, MCSE and E-BFMI.

Known answers come from processes whose answer is known (iid draws, Gaussian AR(1)),
with tolerances derived from the estimators' sampling variability (stated at each
test); the rest are exact properties (invariances, bounds, agreement with a direct
transcription of the algorithm). Seeds are fixed so every run is the same.
"""

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter
from scipy.special import ndtri
from scipy.stats import rankdata

import uturn.diagnostics as diag
from uturn.diagnostics import _common, ess as ess_module

# numpy warnings (empty means, 0/0) would mean an unguarded edge case.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)

SCALAR_FUNCTIONS = [
    diag.rhat,
    diag.rhat_basic,
    diag.rhat_bulk,
    diag.rhat_tail,
    diag.ess_bulk,
    diag.ess_tail,
    diag.ess_mean,
    diag.ess_sd,
    diag.mcse_mean,
    diag.mcse_sd,
]
QUANTILE_FUNCTIONS = [diag.ess_quantile, diag.mcse_quantile]


def ar1(rho, chains, draws, rng):
    """Stationary Gaussian AR(1) chains x_t = rho x_{t-1} + e_t, e_t ~ N(0, 1)."""
    noise = rng.standard_normal((chains, draws))
    noise[:, 0] /= math.sqrt(1.0 - rho**2)  # start in the stationary distribution
    return lfilter([1.0], [1.0, -rho], noise, axis=1)


def reference_ess(chains):
    """ESS transcribed step by step from Vehtari et al. (2021, sec. 3.2) and
    ALGORITHM.md 1.8: direct (not FFT) autocovariances and Geyer's loops as loops.
    Independent of the vectorised implementation it checks."""
    chains = np.asarray(chains, dtype=float)
    m, n = chains.shape
    means = chains.mean(axis=1)
    acov = np.zeros((m, n))
    for c in range(m):
        y = chains[c] - means[c]
        for t in range(n):
            acov[c, t] = np.dot(y[: n - t], y[t:]) / n
    w = acov[:, 0].mean() * n / (n - 1)
    var_plus = w * (n - 1) / n + (means.var(ddof=1) if m > 1 else 0.0)
    rho = np.zeros(n)
    rho[0] = 1.0
    rho[1] = 1.0 - (w - acov[:, 1].mean()) / var_plus
    even, odd = rho[0], rho[1]
    t = 0
    while t < n - 5 and not math.isnan(even + odd) and even + odd > 0:
        t += 2
        even = 1.0 - (w - acov[:, t].mean()) / var_plus
        odd = 1.0 - (w - acov[:, t + 1].mean()) / var_plus
        if even + odd >= 0:
            rho[t], rho[t + 1] = even, odd
    max_t = t
    if even > 0:
        rho[max_t] = even
    t = 0
    while t <= max_t - 4:
        t += 2
        if rho[t] + rho[t + 1] > rho[t - 2] + rho[t - 1]:
            rho[t] = rho[t + 1] = (rho[t - 2] + rho[t - 1]) / 2
    tau = -1.0 + 2.0 * rho[:max_t].sum() + rho[max_t]
    tau = max(tau, 1.0 / math.log10(m * n))
    return m * n / tau


def reference_split(x):
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def reference_z(x):
    return ndtri((rankdata(x, method="average").reshape(x.shape) - 0.375) / (x.size + 0.25))


# --------------------------------------------------------------------------------------
# Known answers


@pytest.mark.parametrize("rho", [-0.5, -0.2, 0.0, 0.5, 0.9])
def test_ess_of_ar1_matches_theory(rho):
    """ESS of the mean of a stationary AR(1) is S (1 - rho) / (1 + rho).

    Tolerance: Sokal's variance of the integrated autocorrelation time,
    Var(tau_hat)/tau^2 ~ 2 (2M + 1) / S for a window of M lags, with M the lag where
    |rho|^M falls to the noise level 1/sqrt(S) (where Geyer's sum stops); 5 of these
    sds, plus 1% for the estimator's small negative bias. (Over 100 replications at
    this size the measured relative sds were 0.018, 0.012, 0.0065, 0.014 and 0.028 for
    the five rho, each below the formula's value times 1.3.)
    """
    chains, draws = 4, 50_000
    total = chains * draws
    x = ar1(rho, chains, draws, np.random.default_rng(2024))
    expected = total * (1 - rho) / (1 + rho)
    window = (
        1 if rho == 0 else max(1, math.ceil(math.log(1 / math.sqrt(total)) / math.log(abs(rho))))
    )
    tolerance = 5 * math.sqrt(2 * (2 * window + 1) / total) + 0.01
    for estimate in (diag.ess_bulk(x), diag.ess_mean(x)):
        assert abs(estimate / expected - 1) < tolerance, (estimate, expected, tolerance)
    if rho < 0:
        assert diag.ess_bulk(x) > total  # antithetic chains beat independent draws


def test_iid_draws_give_ess_close_to_the_number_of_draws():
    """For iid draws all ESS estimate S. The truncated sum then covers about two
    pairs, Var(tau_hat) ~ 13/S (Bartlett: Var(rho_hat_t) ~ 1/S), sd ~ 3.6/sqrt(S);
    the tolerance is 6 of these."""
    x = np.random.default_rng(7).standard_normal((4, 25_000))
    total = x.size
    tolerance = 6 * 3.6 / math.sqrt(total)
    for function in (diag.ess_bulk, diag.ess_tail, diag.ess_mean, diag.ess_sd):
        assert abs(function(x) / total - 1) < tolerance, function.__name__
    assert abs(diag.ess_quantile(x, 0.3) / total - 1) < tolerance


def test_antithetic_extreme_is_capped_at_s_log10_s():
    """A perfectly alternating chain has rho_1 = -1: tau hits the floor 1/log10(S)."""
    x = np.tile([1.0, -1.0], (4, 50)) + np.linspace(0, 1e-6, 100)
    total = x.size
    assert diag.ess_mean(x) == pytest.approx(total * math.log10(total))


def test_chains_shifted_by_one_sd_give_large_rhat():
    """Two of eight split chains offset by 1 sd: R-hat^2 - 1 ~ var(means)/W ~ 0.2,
    far above the sampling noise of R-hat (about 1/N for N = 1000 split draws)."""
    x = np.random.default_rng(1).standard_normal((4, 2000))
    x[3] += 1.0
    assert diag.rhat(x) > 1.05
    assert diag.rhat_bulk(x) > 1.05
    assert diag.rhat_basic(x) > 1.05


def test_chain_with_different_scale_is_caught_by_folded_rhat_only():
    """Same mean, one chain with 3x the sd: the bulk R-hat (locations) stays near 1
    (it exceeds 1.01 only if B/W ~ 20 times its expectation), the folded R-hat sees
    the larger |x - median| of that chain."""
    x = np.random.default_rng(3).standard_normal((4, 2000))
    x[2] *= 3.0
    assert diag.rhat_bulk(x) < 1.01
    assert diag.rhat_basic(x) < 1.01
    assert diag.rhat_tail(x) > 1.05
    assert diag.rhat(x) == diag.rhat_tail(x)


def test_rhat_of_iid_chains_is_close_to_one():
    """For iid chains R-hat ~ 1 + (chi2_7/7 - 1)/(2N): above 1.01 would need a chi2_7
    draw of about 140 (N = 1000 split draws), far beyond any plausible value."""
    rng = np.random.default_rng(5)
    for _ in range(5):
        x = rng.standard_normal((4, 2000))
        for function in (diag.rhat, diag.rhat_basic, diag.rhat_bulk, diag.rhat_tail):
            assert 0.995 < function(x) < 1.01


def test_ebfmi_of_iid_energy_is_about_two():
    """For iid energies E-BFMI -> 2 with sd ~ 2/sqrt(N) (delta method: relative
    variances 3/N for the numerator, 2/N for the denominator, covariance 2/N);
    tolerance 5 sd."""
    draws = 10_000
    values = diag.ebfmi(np.random.default_rng(0).normal(10.0, 3.0, (4, draws)))
    assert values.shape == (4,)
    assert np.all(np.abs(values - 2.0) < 5 * 2 / math.sqrt(draws))


def test_ebfmi_of_a_random_walk_is_small():
    """For a random walk the numerator is ~N and the denominator ~N^2/6, so E-BFMI ~
    6/N. Above 0.05 (N = 10000) the demeaned walk's integral of squares would have to
    be below 1/50 of its mean, which needs every one of its leading Karhunen-Loeve
    terms to be small at once (probability well below 1e-3)."""
    energy = np.random.default_rng(0).standard_normal((4, 10_000)).cumsum(axis=1)
    assert np.all(diag.ebfmi(energy) < 0.05)


def test_mcse_mean_is_sd_over_sqrt_ess():
    x = ar1(0.7, 4, 1000, np.random.default_rng(9))
    assert diag.mcse_mean(x) == pytest.approx(
        x.std(ddof=1) / math.sqrt(diag.ess_mean(x)), rel=1e-12
    )


def test_mcse_is_calibrated_on_ar1_replications():
    """Across independent AR(1) runs the errors divided by their MCSE should have
    variance 1. The sample variance of 300 such z has relative sd sqrt(2/299) = 0.08
    (plus a little from the MCSE's own noise), so [0.65, 1.35] is about 4 sd."""
    rng = np.random.default_rng(42)
    rho = 0.5
    true_sd = 1.0 / math.sqrt(1.0 - rho**2)
    z_mean, z_sd, z_median = [], [], []
    for _ in range(300):
        x = ar1(rho, 4, 500, rng)
        z_mean.append(x.mean() / diag.mcse_mean(x))
        z_sd.append((x.std(ddof=1) - true_sd) / diag.mcse_sd(x))
        z_median.append(np.median(x) / diag.mcse_quantile(x, 0.5))
    for z in (z_mean, z_sd, z_median):
        assert 0.65 < np.var(z) < 1.35
        assert abs(np.mean(z)) < 4 * math.sqrt(1 / 300) + 0.1  # mean ~ 0 (small bias of sd)


def test_mcse_quantile_follows_the_beta_interval_rule():
    """Check the paper's sec. 4.4 recipe directly on a small array."""
    from scipy.stats import beta, norm

    x = np.random.default_rng(4).standard_normal((2, 50))
    ess = diag.ess_quantile(x, 0.3)
    a = beta.ppf([norm.cdf(-1), norm.cdf(1)], ess * 0.3 + 1, ess * 0.7 + 1)
    ordered = np.sort(x.ravel())
    lower = ordered[max(math.floor(a[0] * 100), 1) - 1]
    upper = ordered[min(math.ceil(a[1] * 100), 100) - 1]
    assert diag.mcse_quantile(x, 0.3) == pytest.approx((upper - lower) / 2)


# --------------------------------------------------------------------------------------
# Exact agreement with the reference transcription


@PROPERTY_SETTINGS
@given(
    chains=st.integers(1, 4),
    draws=st.integers(8, 80),
    rho=st.floats(-0.95, 0.95),
    seed=st.integers(0, 2**32 - 1),
    discrete=st.booleans(),
)
def test_ess_matches_reference_transcription(chains, draws, rho, seed, discrete):
    x = ar1(rho, chains, draws, np.random.default_rng(seed))
    if discrete:
        x = np.round(x)
    split = reference_split(x)
    if np.all(split == split.flat[0]):
        assert math.isnan(diag.ess_mean(x))
        return
    assert diag.ess_mean(x) == pytest.approx(reference_ess(split), rel=1e-9)
    assert diag.ess_bulk(x) == pytest.approx(reference_ess(reference_z(split)), rel=1e-9)


@PROPERTY_SETTINGS
@given(rho=st.floats(-0.9, 0.99), seed=st.integers(0, 2**32 - 1), draws=st.integers(40, 3000))
def test_staged_autocovariance_gives_the_same_ess_as_a_full_fft(rho, seed, draws):
    """The direct and partial-FFT stages used for large arrays must not change ESS."""
    chains = ar1(rho, 4, draws, np.random.default_rng(seed))
    original = ess_module._STAGED_MIN_VALUES
    try:
        ess_module._STAGED_MIN_VALUES = 0
        staged = ess_module._ess_of_chains(chains)
    finally:
        ess_module._STAGED_MIN_VALUES = original
    full = ess_module._ess_from_autocovariance(
        ess_module._mean_autocovariance(chains - chains.mean(axis=1, keepdims=True), draws),
        chains.mean(axis=1),
        draws,
    )
    assert staged == pytest.approx(full, rel=1e-9)


def test_rhat_formulas_match_a_direct_computation():
    x = ar1(0.6, 3, 101, np.random.default_rng(8))  # odd: the middle draw is left out
    split = reference_split(x)

    def classic(c):
        n = c.shape[1]
        b = n * c.mean(axis=1).var(ddof=1)
        w = c.var(axis=1, ddof=1).mean()
        return math.sqrt(((n - 1) / n * w + b / n) / w)

    assert diag.rhat_basic(x) == pytest.approx(classic(split), rel=1e-12)
    assert diag.rhat_basic(x, split=False) == pytest.approx(classic(x), rel=1e-12)
    assert diag.rhat_bulk(x) == pytest.approx(classic(reference_z(split)), rel=1e-9)
    folded = np.abs(split - np.median(split))  # folded after splitting, as ALGORITHM.md 1.8
    assert diag.rhat_tail(x) == pytest.approx(classic(reference_z(folded)), rel=1e-9)
    assert diag.rhat(x) == max(diag.rhat_bulk(x), diag.rhat_tail(x))


def test_split_chains_drops_the_middle_draw_of_odd_chains():
    x = np.arange(14.0).reshape(2, 7)
    split = _common.split_chains(x)
    assert split.shape == (4, 3)
    assert sorted(map(tuple, split)) == [(0, 1, 2), (4, 5, 6), (7, 8, 9), (11, 12, 13)]


# --------------------------------------------------------------------------------------
# Rank normalisation

def test_ndtri_matches_scipy_in_every_region():
    """uturn's own inverse normal CDF (AS 241) against scipy.special.ndtri: the central
    region, both tails on either side of the r = 5 split (p near 1e-11), extreme tails
    down to subnormal p, p just below 1, and the edges (0, 1, outside [0, 1], NaN)."""
    rng = np.random.default_rng(3)
    p = np.concatenate([
        rng.uniform(size=20_000),
        10.0 ** -rng.uniform(0.0, 300.0, 20_000),
        1.0 - 10.0 ** -rng.uniform(0.0, 15.0, 5_000),
        [0.075, 0.925, 0.5, 1e-11, 1.388e-11, 5e-324],
    ])
    expected = ndtri(p)
    np.testing.assert_allclose(_common.ndtri(p), expected, rtol=4e-15, atol=0)
    np.testing.assert_allclose(_common.ndtri(p.reshape(3, -1)), expected.reshape(3, -1),
                               rtol=4e-15)
    edges = _common.ndtri(np.array([0.0, 1.0, -0.1, 1.1, np.nan]))
    np.testing.assert_array_equal(edges, [-np.inf, np.inf, np.nan, np.nan, np.nan])
    assert _common.ndtri(0.5) == 0.0 and np.ndim(_common.ndtri(0.975)) == 0
    assert abs(_common.ndtri(0.975) - 1.959963984540054) < 1e-15



@PROPERTY_SETTINGS
@given(
    values=st.lists(
        st.one_of(
            st.integers(-3, 3).map(float), st.floats(-1e6, 1e6, allow_nan=False), st.just(-0.0)
        ),
        min_size=1,
        max_size=300,
    ),
    packed=st.booleans(),
)
def test_rank_normalize_matches_scipy_rankdata(values, packed):
    x = np.array(values)
    original = _common._PACKED_SORT_MIN_SIZE
    try:
        if packed:
            _common._PACKED_SORT_MIN_SIZE = 0  # exercise the packed-key sort on small input
        z = _common.rank_normalize(x)
    finally:
        _common._PACKED_SORT_MIN_SIZE = original
    np.testing.assert_allclose(z, reference_z(x), rtol=1e-12, atol=1e-12)


def test_packed_sort_resolves_near_ties_exactly():
    """Values a few ulp apart share the high bits of the packed keys and must be
    re-sorted by their full bit patterns; exact ties and +-0 must tie."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(50_000)
    neighbours = np.nextafter(base[:5000], np.inf)
    x = np.concatenate([base, neighbours, base[:100], [0.0, -0.0, 0.0]])
    rng.shuffle(x)
    order, _ = _common._sorting_permutation(x)
    assert np.array_equal(x[order], np.sort(x))
    np.testing.assert_allclose(_common.rank_normalize(x), reference_z(x), rtol=1e-12, atol=1e-11)


def test_packed_sort_on_heavily_tied_large_input():
    x = np.random.default_rng(1).integers(0, 5, 100_000).astype(float)
    np.testing.assert_allclose(_common.rank_normalize(x), reference_z(x), rtol=1e-12)


# --------------------------------------------------------------------------------------
# Invariances and bounds (hypothesis)

chain_arrays = st.builds(
    lambda rho, seed: ar1(rho, 4, 500, np.random.default_rng(seed)),
    st.floats(-0.8, 0.95),
    st.integers(0, 2**32 - 1),
)


@PROPERTY_SETTINGS
@given(x=chain_arrays, scale=st.floats(1e-3, 1e3), shift=st.floats(-1e3, 1e3))
def test_positive_affine_transform_changes_nothing(x, scale, shift):
    """Exact in real arithmetic. In floating point the folded R-hat may differ by a
    hair: two draws almost symmetric about the median have almost equal |x - median|,
    and rounding after the transform can swap their ranks (changing R-hat by about
    1e-5 at most for 4 x 500 draws), hence its looser tolerance."""
    y = scale * x + shift
    for function in SCALAR_FUNCTIONS:
        if function.__name__.startswith("mcse"):
            assert function(y) == pytest.approx(scale * function(x), rel=1e-6)
        elif function in (diag.rhat, diag.rhat_tail):
            assert function(y) == pytest.approx(function(x), rel=1e-4), function.__name__
        else:
            assert function(y) == pytest.approx(function(x), rel=1e-7), function.__name__
    assert diag.ess_quantile(y, 0.3) == pytest.approx(diag.ess_quantile(x, 0.3), rel=1e-7)


MONOTONE = {
    "exp": lambda x: np.exp(x / 3),
    "cube": lambda x: x**3 + x,
    "arctan": np.arctan,
    "sinh": np.sinh,
}


@PROPERTY_SETTINGS
@given(x=chain_arrays, transform=st.sampled_from(sorted(MONOTONE)), q=st.floats(0.02, 0.98))
def test_rank_based_diagnostics_ignore_increasing_transforms(x, transform, q):
    y = MONOTONE[transform](x)
    assert diag.rhat_bulk(y) == pytest.approx(diag.rhat_bulk(x), rel=1e-12)
    assert diag.ess_bulk(y) == pytest.approx(diag.ess_bulk(x), rel=1e-12)
    assert diag.ess_tail(y) == pytest.approx(diag.ess_tail(x), rel=1e-12)
    assert diag.ess_quantile(y, q) == pytest.approx(diag.ess_quantile(x, q), rel=1e-12)


@PROPERTY_SETTINGS
@given(x=chain_arrays, permutation=st.permutations(range(4)))
def test_order_of_chains_does_not_matter(x, permutation):
    y = x[list(permutation)]
    for function in SCALAR_FUNCTIONS:
        assert function(y) == pytest.approx(function(x), rel=1e-10), function.__name__
    np.testing.assert_allclose(diag.ebfmi(y), diag.ebfmi(x)[list(permutation)])


@PROPERTY_SETTINGS
@given(
    values=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=32, max_size=32),
    chains=st.sampled_from([1, 2, 4]),
)
def test_rhat_is_never_below_its_floor(values, chains):
    """R-hat^2 = (N-1)/N + B/(N W) >= (N-1)/N for any input, since B >= 0."""
    x = np.array(values).reshape(chains, -1)
    floor = math.sqrt(1 - 1 / (x.shape[1] // 2)) - 1e-12
    for function in (diag.rhat, diag.rhat_basic, diag.rhat_bulk, diag.rhat_tail):
        value = function(x)
        assert math.isnan(value) or value >= floor


# --------------------------------------------------------------------------------------
# Edge cases


@pytest.mark.parametrize("function", SCALAR_FUNCTIONS)
def test_constant_draws_give_nan(function):
    assert math.isnan(function(np.full((4, 100), 3.5)))


@pytest.mark.parametrize("function", QUANTILE_FUNCTIONS)
def test_constant_draws_give_nan_for_quantiles(function):
    assert math.isnan(function(np.full((4, 100), 3.5), 0.5))


def test_constant_energy_gives_nan_ebfmi_for_that_chain():
    energy = np.random.default_rng(0).standard_normal((3, 100))
    energy[1] = 2.0
    values = diag.ebfmi(energy)
    assert math.isnan(values[1]) and np.all(np.isfinite(values[[0, 2]]))


def test_chains_that_are_each_constant_but_differ_have_infinite_rhat():
    x = np.repeat([[0.0], [1.0], [2.0], [3.0]], 10, axis=1)
    assert diag.rhat_basic(x, split=False) == math.inf
    assert diag.rhat_bulk(x) == math.inf


@pytest.mark.parametrize("draws", [0, 1, 3, 7])
@pytest.mark.parametrize("function", SCALAR_FUNCTIONS)
def test_short_chains_give_nan(function, draws):
    x = np.random.default_rng(0).standard_normal((4, draws))
    assert math.isnan(function(x))


def test_eight_draws_per_chain_is_enough():
    x = np.random.default_rng(0).standard_normal((4, 8))
    for function in SCALAR_FUNCTIONS:
        assert math.isfinite(function(x)), function.__name__


def test_one_dimensional_input_is_one_chain():
    x = np.random.default_rng(0).standard_normal(4000)
    assert diag.rhat(x) == diag.rhat(x[np.newaxis, :])
    assert diag.ess_bulk(x) == diag.ess_bulk(x[np.newaxis, :])
    assert abs(diag.ess_bulk(x) / 4000 - 1) < 6 * 3.6 / math.sqrt(4000)
    assert diag.ebfmi(x).shape == (1,)


def test_single_chain_is_split_in_halves():
    x = np.random.default_rng(0).standard_normal((1, 2000))
    assert 0.99 < diag.rhat(x) < 1.01
    x[0, 1000:] += 2.0  # the second half drifted away: split R-hat sees it
    assert diag.rhat(x) > 1.2


def test_integer_and_boolean_draws_are_cast_to_float():
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, (4, 500))
    flags = rng.random((4, 500)) < 0.3
    for function in SCALAR_FUNCTIONS:
        for x in (counts, flags):
            a, b = function(x), function(x.astype(float))
            assert (math.isnan(a) and math.isnan(b)) or a == b
    assert np.array_equal(diag.ebfmi(counts), diag.ebfmi(counts.astype(float)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("function", SCALAR_FUNCTIONS + [diag.ebfmi])
def test_non_finite_input_raises_naming_the_argument(function, bad):
    x = np.random.default_rng(0).standard_normal((4, 100))
    x[2, 17] = bad
    name = "energy" if function is diag.ebfmi else "x"
    with pytest.raises(ValueError, match=rf"'{name}'.*non-finite.*chain 2, draw 17"):
        function(x)


@pytest.mark.parametrize(
    "bad_input",
    [
        np.float64(1.0),
        np.zeros((2, 3, 4)),
        np.zeros((0, 10)),
        np.ones((4, 10)) * 1j,
        np.array([["a", "b"]]),
        [[1, 2], [3]],
    ],
    ids=["scalar", "3d", "no-chains", "complex", "strings", "ragged"],
)
@pytest.mark.parametrize("function", SCALAR_FUNCTIONS + [diag.ebfmi])
def test_bad_shapes_and_types_raise_value_error(function, bad_input):
    with pytest.raises(ValueError):
        function(bad_input)


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5, "half", None])
@pytest.mark.parametrize("function", QUANTILE_FUNCTIONS)
def test_quantile_outside_the_unit_interval_raises(function, q):
    with pytest.raises(ValueError, match="q"):
        function(np.random.default_rng(0).standard_normal((4, 100)), q)


def test_binary_quantity_has_nan_tail_ess_like_posterior():
    """I(x <= q95) is constant for a quantity that is 1 in over 5% of the draws."""
    flags = np.random.default_rng(0).random((4, 1000)) < 0.3
    assert math.isnan(diag.ess_tail(flags))
    assert math.isfinite(diag.ess_bulk(flags))


def test_input_is_not_modified():
    x = np.random.default_rng(0).standard_normal((4, 100_000))
    x[0, :10] = -0.0
    copy = x.copy()
    for function in SCALAR_FUNCTIONS:
        function(x)
    assert np.array_equal(x, copy) and np.array_equal(np.signbit(x), np.signbit(copy))


def test_long_chains_are_fast():
    """4 x 1,000,000 draws: the four headline diagnostics in well under a second on an
    idle core (benchmarks/diagnostics.py); 10 s here only catches a pathological
    slowdown on a busy shared machine."""
    x = ar1(0.3, 4, 1_000_000, np.random.default_rng(0))
    start = time.perf_counter()
    values = [diag.rhat(x), diag.ess_bulk(x), diag.ess_tail(x), diag.mcse_mean(x)]
    assert time.perf_counter() - start < 10.0
    assert all(math.isfinite(v) for v in values)
    assert abs(diag.ess_mean(x) / (4e6 * 0.7 / 1.3) - 1) < 0.05


def test_diagnostics_import_neither_the_sampler_nor_numba():
    """DESIGN.md: diagnostics/ is pure numpy/scipy and never imports hmc/ or sampling."""
    import ast
    import pathlib

    package = pathlib.Path(diag.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [("." * node.level) + (node.module or "")]
            else:
                continue
            for module in modules:
                assert not any(
                    bad in module for bad in ("hmc", "sampling", "numba", "uturn")
                ), f"{path.name} imports {module}"
