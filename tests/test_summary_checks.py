"""Tests of uturn.diagnostics.summary and uturn.diagnostics.checks on fake fits.

The fit is duck-typed (posterior, unconstrained, names, stats, settings), so these
tests build it with SimpleNamespace; no sampler runs here.
"""

import math
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.signal import lfilter

import uturn.diagnostics as diag

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

CHAINS, DRAWS, GROUPS = 4, 1000, 8


def ar1(rho, shape, rng):
    noise = rng.standard_normal(shape)
    noise[:, 0] /= math.sqrt(1 - rho**2)
    return lfilter([1.0], [1.0, -rho], noise, axis=1)


def make_fit(seed=0, chains=CHAINS, draws=DRAWS, divergence_rate=None, log_scale_name="log_tau"):
    """A fake eight-schools-like fit with iid draws and clean sample stats.

    With `divergence_rate`, transitions diverge with a probability that rises steeply
    as log_tau falls (the funnel's neck), as in the centered eight schools model.
    """
    rng = np.random.default_rng(seed)
    mu = rng.normal(4.0, 3.0, (chains, draws))
    log_tau = rng.normal(1.0, 1.0, (chains, draws))
    z = rng.standard_normal((chains, draws, GROUPS))
    theta = mu[..., None] + np.exp(log_tau)[..., None] * z
    unconstrained = np.concatenate([mu[..., None], log_tau[..., None], theta], axis=2)
    names = ["mu", log_scale_name] + [f"theta[{j}]" for j in range(GROUPS)]
    if divergence_rate is None:
        diverging = np.zeros((chains, draws), dtype=bool)
    else:
        probability = divergence_rate / (1.0 + np.exp(4.0 * (log_tau + 0.5)))
        diverging = rng.random((chains, draws)) < probability
    divergence_point = np.where(diverging[..., None], unconstrained - 0.5, np.nan)
    stats = {
        "diverging": diverging,
        "energy": rng.normal(20.0, 3.0, (chains, draws)),
        "energy_error": rng.normal(0.0, 0.3, (chains, draws)),
        "max_energy_error": np.abs(rng.normal(0.0, 0.5, (chains, draws))),
        "lp": rng.normal(-40.0, 3.0, (chains, draws)),
        "tree_depth": rng.integers(2, 5, (chains, draws)),
        "n_steps": rng.integers(3, 31, (chains, draws)),
        "step_size": np.full((chains, draws), 0.4),
        "acceptance_rate": rng.uniform(0.6, 1.0, (chains, draws)),
        "reached_max_treedepth": np.zeros((chains, draws), dtype=bool),
        "divergence_point": divergence_point,
    }
    settings = {
        "max_treedepth": 10,
        "target_accept": 0.8,
        "chains": chains,
        "draws": draws,
        "tune": 1000,
        "algorithm": "nuts",
    }
    posterior = {"mu": mu, "tau": np.exp(log_tau), "theta": theta}
    return SimpleNamespace(
        posterior=posterior,
        unconstrained=unconstrained,
        names=names,
        stats=stats,
        settings=settings,
    )


def kinds(findings):
    return [finding.kind for finding in findings]


# --------------------------------------------------------------------------------------
# summary()


def test_summary_rows_expand_vectors_and_matrices_with_zero_based_labels():
    rng = np.random.default_rng(1)
    draws = {
        "mu": rng.standard_normal((4, 100)),
        "theta": rng.standard_normal((4, 100, 3)),
        "L": rng.standard_normal((4, 100, 2, 2)),
    }
    s = diag.summary(draws)
    assert s.names == [
        "mu",
        "theta[0]",
        "theta[1]",
        "theta[2]",
        "L[0,0]",
        "L[0,1]",
        "L[1,0]",
        "L[1,1]",
    ]
    assert s.columns == (
        "mean",
        "sd",
        "q5",
        "q50",
        "q95",
        "mcse_mean",
        "mcse_sd",
        "ess_bulk",
        "ess_tail",
        "r_hat",
    )
    assert len(s) == 8 and list(s) == list(s.columns) and "r_hat" in s and "mu" not in s
    assert s.values.shape == (8, 10)


def test_summary_values_equal_the_individual_diagnostics():
    rng = np.random.default_rng(2)
    theta = ar1(0.6, (4, 500), rng)[..., None] + np.array([0.0, 5.0])
    s = diag.summary({"theta": theta}, var_names=["theta"])
    for j in range(2):
        x = theta[..., j]
        row = s.row(f"theta[{j}]")
        assert row["mean"] == pytest.approx(x.mean())
        assert row["sd"] == pytest.approx(x.std(ddof=1))
        assert [row["q5"], row["q50"], row["q95"]] == pytest.approx(
            np.quantile(x, [0.05, 0.5, 0.95])
        )
        assert row["mcse_mean"] == pytest.approx(diag.mcse_mean(x), rel=1e-12)
        assert row["mcse_sd"] == pytest.approx(diag.mcse_sd(x), rel=1e-12)
        assert row["ess_bulk"] == pytest.approx(diag.ess_bulk(x), rel=1e-12)
        assert row["ess_tail"] == pytest.approx(diag.ess_tail(x), rel=1e-12)
        assert row["r_hat"] == pytest.approx(diag.rhat(x), rel=1e-12)
        assert s["ess_bulk"][j] == row["ess_bulk"]


def test_summary_prints_a_fixed_width_table():
    s = diag.summary(make_fit(3))
    text = str(s)
    lines = text.splitlines()
    assert len(lines) == 1 + len(s)
    assert lines[0].split() == list(s.columns)
    assert len({len(line) for line in lines}) == 1  # every line has the same width
    for name, line in zip(s.names, lines[1:]):
        assert line.startswith(name + " ")
        assert len(line.split()) == 11
    assert repr(s) == text  # short tables print the same either way
    assert "<table>" in s._repr_html_()


def test_long_summary_repr_is_shortened_but_str_is_complete():
    s = diag.summary({"beta": np.random.default_rng(4).standard_normal((2, 50, 100))})
    assert len(str(s).splitlines()) == 101
    shortened = repr(s).splitlines()
    assert len(shortened) < 70 and shortened[-1] == "[100 rows x 10 columns]"
    assert any(line.startswith("...") for line in shortened)


def test_summary_structured_access():
    s = diag.summary(make_fit(5), var_names="tau")
    assert s.names == ["tau"]
    column = s["ess_bulk"]
    assert isinstance(column, np.ndarray) and column.dtype == np.float64
    with pytest.raises(ValueError):
        column[0] = 1.0  # read-only: a summary cannot be altered by accident
    row = s.row("tau")
    assert set(row) == set(s.columns) and all(isinstance(v, float) for v in row.values())
    assert s.to_dict() == {"tau": row}
    with pytest.raises(KeyError, match="row"):
        s["tau"]  # a row label used as a column: the message points to .row()
    with pytest.raises(KeyError, match="not a summary column"):
        s["ess"]
    with pytest.raises(KeyError, match="not a row"):
        s.row("sigma")


def test_summary_to_pandas():
    s = diag.summary({"a": np.random.default_rng(6).standard_normal((4, 100, 2))})
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            s.to_pandas()
        return
    frame = s.to_pandas()
    assert list(frame.index) == s.names and list(frame.columns) == list(s.columns)
    np.testing.assert_array_equal(frame.to_numpy(), s.values)


def test_summary_to_pandas_without_pandas(monkeypatch):
    s = diag.summary({"a": np.random.default_rng(6).standard_normal((4, 100))})
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail
    with pytest.raises(ImportError, match="pip install pandas"):
        s.to_pandas()


def test_summary_accepts_a_fit_or_a_dict_and_rejects_anything_else():
    fit = make_fit(7)
    assert diag.summary(fit).to_dict() == diag.summary(fit.posterior).to_dict()
    with pytest.raises(TypeError, match="posterior"):
        diag.summary(np.zeros((4, 100)))
    with pytest.raises(KeyError, match="sigma"):
        diag.summary(fit, var_names=["mu", "sigma"])
    with pytest.raises(ValueError):
        diag.summary({"x": np.float64(3.0)})
    with pytest.raises(ValueError):
        diag.summary({"x": np.array([["a", "b"]])})


def test_summary_edge_cases_do_not_raise():
    rng = np.random.default_rng(8)
    bad = rng.standard_normal((4, 100))
    bad[1, 3] = np.inf
    s = diag.summary(
        {
            "constant": np.ones((4, 100)),
            "nonfinite": bad,
            "short": rng.standard_normal((4, 5)),
            "flag": rng.random((4, 100)) < 0.3,
            "count": rng.poisson(2.0, (4, 100)),
            "one_chain": rng.standard_normal(400),
            "empty": np.zeros((4, 100, 0)),
        }
    )
    assert s.names == ["constant", "nonfinite", "short", "flag", "count", "one_chain"]
    constant = s.row("constant")
    assert constant["mean"] == 1.0 and constant["sd"] == 0.0
    assert all(math.isnan(constant[c]) for c in ("mcse_mean", "ess_bulk", "r_hat"))
    assert s.row("nonfinite")["mean"] == math.inf and math.isnan(s.row("nonfinite")["r_hat"])
    assert math.isnan(s.row("short")["ess_bulk"]) and math.isfinite(s.row("short")["mean"])
    assert math.isfinite(s.row("flag")["ess_bulk"]) and math.isfinite(s.row("count")["r_hat"])
    assert math.isfinite(s.row("one_chain")["r_hat"])
    assert "nan" in str(s) and "inf" in str(s)


# --------------------------------------------------------------------------------------
# checks() and warn()


def test_clean_fit_has_no_findings_and_issues_no_warnings():
    findings = diag.checks(make_fit(10))
    assert findings == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diag.warn(findings)


def test_divergences_at_small_log_tau_give_funnel_advice():
    fit = make_fit(11, divergence_rate=0.3)
    findings = diag.checks(fit)
    assert kinds(findings) == ["divergences"]
    finding = findings[0]
    count = int(fit.stats["diverging"].sum())
    assert finding.severity == "warning"
    assert finding.details["count"] == count > 20
    assert finding.details["share"] == pytest.approx(count / (CHAINS * DRAWS))
    assert list(finding.details["per_chain"]) == list(fit.stats["diverging"].sum(axis=1))
    assert finding.details["concentrated"] == ["log_tau"]
    assert f"{count} of {CHAINS * DRAWS}" in finding.message
    assert "low values of log_tau" in finding.message
    assert "non-centered parametrization" in finding.advice
    assert "target_accept (now 0.8)" in finding.advice
    location = {loc["name"]: loc for loc in finding.details["locations"]}["log_tau"]
    assert location["tail"] == "low" and location["median_quantile"] < 0.25
    divergent = fit.unconstrained[..., 1][fit.stats["diverging"]]
    assert location["divergent_range"] == (divergent.min(), divergent.max())
    assert location["all_range"] == (
        fit.unconstrained[..., 1].min(),
        fit.unconstrained[..., 1].max(),
    )
    assert location["divergence_point_range"] == pytest.approx(
        (divergent.min() - 0.5, divergent.max() - 0.5)
    )


def test_pymc_style_log_names_are_recognised():
    findings = diag.checks(make_fit(11, divergence_rate=0.3, log_scale_name="tau_log__"))
    assert findings[0].details["concentrated"] == ["tau_log__"]
    assert "non-centered parametrization" in findings[0].advice


def test_divergences_spread_like_all_draws_are_reported_without_a_location():
    fit = make_fit(12)
    fit.stats["diverging"] = np.random.default_rng(0).random((CHAINS, DRAWS)) < 0.02
    findings = diag.checks(fit)
    assert kinds(findings) == ["divergences"]
    assert findings[0].details["concentrated"] == []
    assert "concentrate" not in findings[0].message
    assert "raise target_accept (now 0.8)" in findings[0].advice


def test_divergence_locations_validates_shapes():
    with pytest.raises(ValueError, match="shape"):
        diag.divergence_locations(np.zeros((2, 10, 3)), np.zeros((2, 9), dtype=bool))
    with pytest.raises(ValueError, match="names"):
        diag.divergence_locations(np.zeros((2, 10, 3)), np.zeros((2, 10), dtype=bool), names=["a"])
    assert diag.divergence_locations(np.zeros((2, 10, 3)), np.zeros((2, 10), dtype=bool)) == []


@pytest.mark.parametrize("share, severity", [(0.10, "warning"), (0.02, "info")])
def test_tree_depth_saturation(share, severity):
    fit = make_fit(13)
    fit.stats["reached_max_treedepth"] = np.random.default_rng(1).random((CHAINS, DRAWS)) < share
    findings = diag.checks(fit)
    assert kinds(findings) == ["tree_depth"]
    assert findings[0].severity == severity
    assert "max_treedepth=10" in findings[0].message
    if severity == "warning":
        assert "Increase max_treedepth" in findings[0].advice


def test_tree_depth_is_not_checked_for_static_hmc_and_falls_back_to_tree_depth():
    fit = make_fit(14)
    fit.stats["reached_max_treedepth"][:] = True
    fit.settings["algorithm"] = "hmc"
    assert diag.checks(fit) == []
    fit.settings["algorithm"] = "nuts"
    del fit.stats["reached_max_treedepth"]
    fit.stats["tree_depth"][0, :200] = 10
    findings = diag.checks(fit)
    assert kinds(findings) == ["tree_depth"] and findings[0].details["count"] == 200


def test_low_ebfmi_names_the_chain():
    fit = make_fit(15)
    fit.stats["energy"][2] = np.random.default_rng(2).standard_normal(DRAWS).cumsum()
    findings = diag.checks(fit)
    assert kinds(findings) == ["ebfmi"]
    assert "chain 2" in findings[0].message and "chain 0" not in findings[0].message
    assert list(findings[0].details["chains"]) == [2]


def test_poor_mixing_gives_rhat_and_ess_findings():
    fit = make_fit(16)
    fit.posterior["mu"] = fit.posterior["mu"] + np.array([[0.0], [0.0], [0.0], [3.0]])
    fit.posterior["sticky"] = ar1(0.995, (CHAINS, DRAWS), np.random.default_rng(3))
    findings = diag.checks(fit)
    assert kinds(findings) == ["rhat", "ess"]
    rhat_finding, ess_finding = findings
    assert "mu" in rhat_finding.details["names"] and "mu" in rhat_finding.message
    assert "theta[0]" not in rhat_finding.details["names"]
    assert "sticky" in ess_finding.details["names"]
    assert "400 for 4 chains" in ess_finding.message


def test_too_few_chains_is_info_and_not_warned():
    fit = make_fit(17, chains=2, draws=2000)
    findings = diag.checks(fit)
    assert kinds(findings) == ["chains"]
    assert findings[0].severity == "info" and "Only 2 chains" in findings[0].message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diag.warn(findings)


def test_nonfinite_posterior_quantity_is_reported():
    fit = make_fit(18)
    fit.posterior["overflow"] = np.where(fit.posterior["mu"] > 8, np.inf, 1.0)
    findings = diag.checks(fit)
    assert kinds(findings) == ["nonfinite"]
    assert "overflow" in findings[0].message


def test_thresholds_are_options():
    fit = make_fit(19)
    findings = diag.checks(fit, max_rhat=0.5, min_ess_per_chain=10_000, min_chains=8)
    assert kinds(findings) == ["rhat", "ess", "chains"]
    assert diag.checks(fit, var_names=["mu"], max_rhat=0.5)[0].details["names"] == ["mu"]


def test_warn_issues_sampling_warnings_for_warning_findings_only():
    fit = make_fit(20, chains=2, draws=2000, divergence_rate=0.3)
    findings = diag.checks(fit)
    assert kinds(findings) == ["divergences", "chains"]
    with pytest.warns(diag.SamplingWarning) as record:
        diag.warn(findings)
    assert len(record) == 1
    assert issubclass(diag.SamplingWarning, UserWarning)
    assert "non-centered" in str(record[0].message)
    assert record[0].filename == __file__  # attributed to the caller of warn()


def test_finding_prints_severity_message_and_advice():
    finding = diag.Finding("chains", "info", "Only 1 chain was run.", "Run 4.")
    assert str(finding) == "info: Only 1 chain was run. Run 4."
    assert finding.details == {}


def test_checks_tolerates_a_minimal_fit():
    rng = np.random.default_rng(21)
    assert diag.checks(SimpleNamespace(posterior={"x": rng.standard_normal((4, 1000))})) == []
    assert kinds(
        diag.checks(SimpleNamespace(stats={"diverging": np.eye(4, 100, dtype=bool)}))
    ) == ["divergences"]


def test_checks_max_quantities_subsets_vectors_and_says_so():
    """Evenly spaced elements of a vector (first and last included), every scalar, an
    info finding with the counts; an element that does not mix is still named by its
    own label when it is among those checked."""
    rng = np.random.default_rng(0)
    chains, draws, size = 4, 400, 101
    x = rng.standard_normal((chains, draws, size))
    x[:, :, 100] += np.arange(chains)[:, None] * 3.0  # chains disagree on x[100] only
    posterior = {"mu": rng.standard_normal((chains, draws)), "x": x}
    fit = SimpleNamespace(posterior=posterior, stats={}, settings={})
    findings = {f.kind: f for f in diag.checks(fit, max_quantities=12)}
    assert findings["subset"].details == {"checked": 12, "total": 102}
    assert findings["rhat"].details["names"] == ["x[100]"]
    everything = {f.kind: f for f in diag.checks(fit)}
    assert "subset" not in everything and everything["rhat"].details["names"] == ["x[100]"]


def test_checks_max_quantities_screens_every_element_for_the_worst():
    """With a budget far below the size, the elements that do not mix are still found:
    every element is screened, and those the screen flags get the full R-hat and ESS.
    Here they sit between the evenly spaced elements an unscreened subset would take."""
    from uturn.diagnostics.checks import _evenly_spaced_subset
    from uturn.diagnostics.summary import _quantities

    rng = np.random.default_rng(1)
    chains, draws, size = 4, 1000, 1000
    x = rng.standard_normal((chains, draws, size))
    x[:, :, 37] += np.arange(chains)[:, None] * 1.0  # chains disagree: R-hat
    sticky = np.zeros((chains, draws))
    for t in range(1, draws):  # AR(1) with rho = 0.995: ESS about 10 of 4,000
        sticky[:, t] = 0.995 * sticky[:, t - 1] + np.sqrt(1 - 0.995 ** 2) * rng.standard_normal(chains)
    x[:, :, 581] = sticky
    posterior = {"mu": rng.standard_normal((chains, draws)), "x": x}
    evenly = _evenly_spaced_subset(list(_quantities(posterior, None)), 20)
    assert not {37, 581} & set(evenly[1]._elements.tolist())  # the test is not vacuous
    fit = SimpleNamespace(posterior=posterior, stats={}, settings={})
    findings = {f.kind: f for f in diag.checks(fit, max_quantities=20)}
    assert findings["subset"].details == {"checked": 20, "total": 1001}
    assert "screen" in findings["subset"].message
    assert "x[37]" in findings["rhat"].details["names"]
    assert "x[581]" in findings["ess"].details["names"]


def test_screen_is_the_classic_split_rhat_and_an_ar1_ess():
    """The screen's R-hat is BDA3's split R-hat (eq. 11.4) of the draws or of their
    folded distances, whichever is larger, computed here plainly; for AR(1) chains its
    ESS agrees with Geyer's."""
    from uturn.diagnostics.checks import _screen

    rng = np.random.default_rng(2)
    chains, draws, rho = 4, 2001, 0.8
    x = np.empty((chains, draws, 3))
    x[:, 0] = rng.standard_normal((chains, 3))
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal((chains, 3))
    x[:, :, 1] = x[:, :, 1] * np.array([1.0, 1.0, 1.0, 3.0])[:, None] + 1e6  # far off zero
    x[:, :, 2] += np.arange(chains)[:, None] * 0.5

    def classic(values):
        half = draws // 2
        split = np.concatenate([values[:, :half], values[:, draws - half:]])
        within = split.var(axis=1, ddof=1).mean()
        var_plus = (half - 1) / half * within + split.mean(axis=1).var(ddof=1)
        return np.sqrt(var_plus / within)

    r_hat, ess = _screen(x)
    kept = np.r_[0 : draws // 2, draws - draws // 2 : draws]  # the middle draw is dropped
    for k in range(3):
        folded = np.abs(x[:, :, k] - x[:, kept, k].mean())
        assert r_hat[k] == pytest.approx(max(classic(x[:, :, k]), classic(folded)), rel=1e-9)
    # For AR(1) chains the guess and Geyer's estimate of the mean's ESS agree (both
    # near N (1 - rho) / (1 + rho) = 889, up to the sampling error of either).
    assert abs(ess[0] / diag.ess_mean(x[:, :, 0]) - 1) < 0.05
    assert r_hat[1] > 1.1 and r_hat[2] > 1.1 and r_hat[0] < 1.01


@pytest.mark.parametrize("k", [1, 2, 7, 40, 333, 4000])
def test_binomial_upper_tail_matches_scipy(k):
    from scipy.stats import binom

    from uturn.diagnostics.checks import _binomial_upper_tail

    for n in sorted({0, 1, k // 4, k // 2, (3 * k) // 4, k - 1, k, k + 1}):
        expected = float(binom.sf(n - 1, k, 0.25))
        got = _binomial_upper_tail(n, k, 0.25)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-300), (n, k)


def test_checks_read_a_fits_stored_divergence_points_without_expanding_them():
    """A Fit keeps only its divergent transitions' points; checks() takes their ranges
    from that record (the dense divergence_point is as large as the draws), and they
    equal the ranges of the dense array."""
    import uturn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = uturn.sample(uturn.models.eight_schools(centered=True), draws=300, tune=300,
                           seed=3, progress=False)
    assert fit.stats["diverging"].any()
    finding = {f.kind: f for f in diag.checks(fit)}["divergences"]
    assert "divergence_point" not in fit.stats._stats  # still compact
    dense = fit.stats["divergence_point"]
    for j, location in enumerate(finding.details["locations"]):
        blown = dense[..., j][fit.stats["diverging"]]
        assert location["divergence_point_range"] == (np.nanmin(blown), np.nanmax(blown))


@pytest.mark.parametrize("n_divergent", [1, 5, 40])
@pytest.mark.parametrize("counting", [True, False])
def test_divergent_draws_quantile_positions_follow_their_definition(
        n_divergent, counting, monkeypatch):
    """Both ways of placing divergent draws among all draws (counting for a few,
    sorting and searching for many) give the mid-rank position over the finite draws,
    with ties, infinities and NaN among the draws and a coordinate with no finite draw."""
    checks_module = sys.modules["uturn.diagnostics.checks"]  # `checks` is also a function
    monkeypatch.setattr(checks_module, "_COUNTING_MAX_DIVERGENT", 10**9 if counting else 0)
    rng = np.random.default_rng(n_divergent)
    draws = np.round(rng.normal(size=(300, 4)), 1)          # many ties
    draws[rng.random(draws.shape) < 0.05] = np.inf
    draws[rng.random(draws.shape) < 0.05] = np.nan
    draws[:, 3] = np.nan                                     # nothing finite
    divergent = draws[rng.choice(300, size=n_divergent, replace=False)]
    positions, sizes, lowest, highest = checks_module._quantile_positions(draws, divergent)
    for j in range(4):
        finite = draws[:, j][np.isfinite(draws[:, j])]
        assert sizes[j] == finite.size
        if finite.size == 0:
            assert np.isnan(positions[:, j]).all() and np.isnan(lowest[j])
            continue
        assert (lowest[j], highest[j]) == (finite.min(), finite.max())
        for i, value in enumerate(divergent[:, j]):
            if not np.isfinite(value):
                assert np.isnan(positions[i, j])
                continue
            expected = (np.sum(finite < value) + np.sum(finite <= value)) / (2 * finite.size)
            assert positions[i, j] == expected
