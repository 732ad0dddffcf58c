"""uturn.plots, headless: each figure has the axes and the data it should."""
import sys
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import uturn  # noqa: E402
import uturn.io  # noqa: E402
from uturn import plots  # noqa: E402
from uturn.models.eight_schools import EXACT_MEAN_LOG_TAU, NOTEBOOK_MEAN_LOG_TAU  # noqa: E402
from _sampling_helpers import divergent_eight_schools_fit  # noqa: E402


def _sample(centered, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return uturn.sample(uturn.models.eight_schools(centered=centered), draws=100,
                            tune=100, chains=2, seed=seed, progress=False)


@pytest.fixture(scope="module")
def centered():
    return divergent_eight_schools_fit()  # the scatter tests need some divergences


@pytest.fixture(scope="module")
def non_centered():
    return _sample(False, 1)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _offsets(collection):
    return np.asarray(collection.get_offsets())


def test_trace_rows_lines_and_divergence_rug(centered):
    fig = plots.plot_trace(centered, ["log_tau", "mu"])
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 4  # (density, trace) per variable
    density, trace = fig.axes[0], fig.axes[1]
    assert density.get_title() == trace.get_title() == "log_tau"
    assert len(density.get_lines()) == len(trace.get_lines()) == centered.chains
    for chain, line in enumerate(trace.get_lines()):
        np.testing.assert_array_equal(line.get_ydata(), centered["log_tau"][chain])
    for line in density.get_lines():  # a density: non-negative, integrates to ~1
        x, y = line.get_xdata(), line.get_ydata()
        assert np.all(y >= 0)
        assert np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) == pytest.approx(1, abs=0.05)
    (rug,) = [c for c in trace.collections if c.get_label() == "divergent"]
    _, where = np.nonzero(centered.stats["diverging"])
    np.testing.assert_array_equal(np.sort(_offsets(rug)[:, 0]), np.sort(where))


def test_trace_splits_vector_quantities(non_centered):
    fig = plots.plot_trace(non_centered, "theta", divergences=False)
    assert len(fig.axes) == 2 * 8
    assert [ax.get_title() for ax in fig.axes[::2]] == [f"theta[{j}]" for j in range(8)]
    np.testing.assert_array_equal(fig.axes[7].get_lines()[1].get_ydata(),
                                  non_centered["theta"][1, :, 3])


def test_trace_default_is_every_posterior_quantity(centered):
    fig = plots.plot_trace(centered)
    scalars = sum(int(np.prod(v.shape[2:])) for v in centered.posterior.values())
    assert len(fig.axes) == 2 * scalars


def test_cumulative_mean_pools_chains_and_draws_reference_lines(centered, non_centered):
    fig = plots.plot_cumulative_mean([centered, non_centered], "log_tau",
                                     truth=EXACT_MEAN_LOG_TAU, notebook=NOTEBOOK_MEAN_LOG_TAU,
                                     labels=("centered", "non-centered"))
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 4  # two fits, exact, notebook
    for line, fit in zip(lines[:2], (centered, non_centered)):
        values = fit["log_tau"]
        running = line.get_ydata()
        assert running.shape == (fit.draws,)
        assert running[-1] == pytest.approx(values.mean(), rel=1e-12)
        assert running[9] == pytest.approx(values[:, :10].mean(), rel=1e-12)
    assert np.all(np.asarray(lines[2].get_ydata()) == EXACT_MEAN_LOG_TAU)
    assert np.all(np.asarray(lines[3].get_ydata()) == NOTEBOOK_MEAN_LOG_TAU)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("centered") and legend[1].startswith("non-centered")
    assert "exact" in legend[2] and "MCMC estimate" in legend[3]


def test_cumulative_mean_single_fit_per_chain_and_given_axes(centered):
    fig, ax = plt.subplots()
    out = plots.plot_cumulative_mean(centered, "theta[0]", per_chain=True, ax=ax)
    assert out is fig
    assert len(ax.get_lines()) == 1 + centered.chains
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata()[-1],
                               centered["theta"][0, :, 0].mean(), rtol=1e-12)


def test_divergences_highlight_exactly_the_divergent_draws(centered, non_centered):
    fig = plots.plot_divergences(centered, x="theta[0]", y="log_tau", other=non_centered,
                                 labels=("centered", "non-centered"))
    (ax,) = fig.axes
    by_label = {c.get_label(): c for c in ax.collections}
    divergent = centered.stats["diverging"]
    (key,) = [k for k in by_label if k.startswith("centered: divergent")]
    points = _offsets(by_label[key])
    assert len(points) == divergent.sum()
    np.testing.assert_array_equal(points[:, 0], centered["theta[0]"][divergent])
    np.testing.assert_array_equal(points[:, 1], centered["log_tau"][divergent])
    assert len(_offsets(by_label["centered"])) == divergent.size - divergent.sum()
    # theta[0] of the non-centered fit is an element of the derived theta, not a coordinate
    other_divergent = non_centered.stats["diverging"]
    other_points = _offsets(by_label["non-centered"])
    assert len(other_points) == other_divergent.size - other_divergent.sum()
    np.testing.assert_array_equal(np.sort(other_points[:, 0]),
                                  np.sort(non_centered["theta"][..., 0][~other_divergent]))
    assert ax.get_xlabel() == "theta[0]" and ax.get_ylabel() == "log_tau"


def test_divergence_points_are_the_recorded_ones(centered):
    fig = plots.plot_divergences(centered, divergence_points=True)
    (ax,) = fig.axes
    (crosses,) = [c for c in ax.collections if "blew up" in c.get_label()]
    points = centered.stats["divergence_point"]
    names = centered.names
    stored = np.isfinite(points[..., names.index("theta[0]")]) & np.isfinite(
        points[..., names.index("log_tau")])
    assert len(_offsets(crosses)) == stored.sum() > 0
    with pytest.raises(ValueError, match="coordinate names"):
        plots.plot_divergences(centered, x="tau", divergence_points=True)


def test_energy_histograms_and_ebfmi_title(centered):
    fig = plots.plot_energy(centered, bins=30)
    (ax,) = fig.axes
    assert len(ax.containers) == 2
    assert all(len(container.patches) == 30 for container in ax.containers)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["marginal energy (centered)", "energy transition"]
    values = uturn.diagnostics.ebfmi(centered.stats["energy"])
    for value in values:
        assert f"{value:.2f}" in ax.get_title()


def test_rank_histograms_count_every_draw(non_centered):
    # Without ties (a stuck centered chain repeats draws, whose shared ranks make the
    # pooled counts uneven), pooled ranks fill the bins evenly.
    fig = plots.plot_rank(non_centered, ["log_tau", "mu"], bins=10)
    assert len(fig.axes) == 2 * non_centered.chains
    for ax in fig.axes:
        (bars,) = ax.containers
        assert len(bars.patches) == 10
        assert sum(p.get_height() for p in bars.patches) == non_centered.draws
        (expected,) = ax.get_lines()
        assert np.all(np.asarray(expected.get_ydata()) == non_centered.draws / 10)
    # Ranks are pooled over chains, so the chains' bars add up to uniform counts.
    totals = sum(np.array([p.get_height() for p in ax.containers[0].patches])
                 for ax in fig.axes[:non_centered.chains])
    np.testing.assert_allclose(totals, non_centered.chains * non_centered.draws / 10, atol=1)
    assert [ax.get_title() for ax in fig.axes[:non_centered.chains]] == [
        f"chain {c}" for c in range(non_centered.chains)]


def test_unknown_variable_names_what_exists(centered):
    with pytest.raises(KeyError, match="log_tau"):
        plots.plot_trace(centered, ["sigma"])
    with pytest.raises(KeyError, match="shape"):
        plots.plot_cumulative_mean(centered, "theta[8]")
    with pytest.raises(ValueError, match="per draw"):
        plots.plot_cumulative_mean(centered, "theta")


def test_plots_work_on_a_loaded_fit(centered, tmp_path):
    loaded = uturn.io.load(uturn.io.save(centered, tmp_path / "fit.npz"))
    fig = plots.plot_divergences(loaded, divergence_points=True)
    (key,) = [c for c in fig.axes[0].collections if c.get_label().startswith("fit: divergent")]
    assert len(_offsets(key)) == centered.num_divergences
    for plot in (plots.plot_trace, plots.plot_rank):
        assert isinstance(plot(loaded, "log_tau"), matplotlib.figure.Figure)
    plots.plot_energy(loaded)
    plots.plot_cumulative_mean([loaded, centered], "log_tau")


def test_missing_matplotlib_says_how_to_install(centered, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"uturn\[plots\]"):
        plots.plot_energy(centered)
