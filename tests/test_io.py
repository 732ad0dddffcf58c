"""uturn.io: save/load round-trips exactly; to_arviz copies everything under ArviZ's names."""
import json
import os
import sys
import types
import warnings

import numpy as np
import pytest

import uturn
from uturn import io
from _sampling_helpers import divergent_eight_schools_fit


def _sample(centered, seed, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return uturn.sample(uturn.models.eight_schools(centered=centered), seed=seed,
                            progress=False, **dict(dict(draws=100, tune=100, chains=2),
                                                   **kwargs))


@pytest.fixture(scope="module")
def fit():
    return _sample(False, 1)


@pytest.fixture(scope="module")
def divergent_fit():
    return divergent_eight_schools_fit()  # so divergence_point holds real points


def _assert_same_fit(loaded, fit):
    np.testing.assert_array_equal(loaded.unconstrained, fit.unconstrained)
    assert loaded.unconstrained.dtype == fit.unconstrained.dtype
    assert list(loaded.posterior) == list(fit.posterior)
    for name in fit.posterior:
        np.testing.assert_array_equal(loaded.posterior[name], fit.posterior[name])
    assert list(loaded.stats) == list(fit.stats)
    for name in fit.stats:
        np.testing.assert_array_equal(loaded.stats[name], fit.stats[name])
        assert np.asarray(loaded.stats[name]).dtype == np.asarray(fit.stats[name]).dtype
    assert list(loaded.warmup_stats) == list(fit.warmup_stats)
    for name in fit.warmup_stats:
        np.testing.assert_array_equal(loaded.warmup_stats[name], fit.warmup_stats[name])
        assert loaded.warmup_stats[name].dtype == fit.warmup_stats[name].dtype
    for name in ("step_size", "inv_metric", "n_gradient_evals"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fit, name))
        assert getattr(loaded, name).dtype == getattr(fit, name).dtype
    assert loaded.names == fit.names
    assert loaded.settings == fit.settings
    assert loaded.seed == fit.seed and type(loaded.seed) is type(fit.seed)
    assert loaded.elapsed == fit.elapsed
    assert list(loaded.model.data) == list(fit.model.data)
    for name in fit.model.data:
        np.testing.assert_array_equal(loaded.model.data[name], fit.model.data[name])
    assert loaded.model.uturn_version == uturn.__version__
    assert loaded.model.dim == fit.model.dim


def test_save_load_round_trips_exactly(fit, divergent_fit, tmp_path):
    for one in (fit, divergent_fit):
        path = io.save(one, tmp_path / "fit.npz")
        assert path == os.fspath(tmp_path / "fit.npz")
        loaded = io.load(path)
        assert isinstance(loaded, uturn.Fit)
        _assert_same_fit(loaded, one)
    assert np.isfinite(loaded.stats["divergence_point"]).any()


def test_a_128_bit_seed_and_odd_settings_survive(tmp_path):
    big = 2**127 + 12345
    fit = _sample(False, big, draws=20, tune=20)
    assert fit.seed == big
    fit.settings["extra"] = dict(array=np.arange(3.0), nan=float("nan"), inf=float("inf"),
                                 int64=np.int64(7))
    loaded = io.load(io.save(fit, tmp_path / "big"))
    assert loaded.seed == big and loaded.settings["seed"] == big
    extra = loaded.settings["extra"]
    np.testing.assert_array_equal(extra["array"], np.arange(3.0))
    assert np.isnan(extra["nan"]) and extra["inf"] == float("inf") and extra["int64"] == 7


def test_suffix_is_added_and_found(fit, tmp_path):
    path = io.save(fit, tmp_path / "noext")
    assert path.endswith("noext.npz") and os.path.exists(path)
    assert sorted(os.listdir(tmp_path)) == ["noext.npz"]  # no temporary left behind
    _assert_same_fit(io.load(tmp_path / "noext"), fit)


def test_file_objects(fit, tmp_path):
    with open(tmp_path / "f.npz", "wb") as handle:
        io.save(fit, handle)
    with open(tmp_path / "f.npz", "rb") as handle:
        _assert_same_fit(io.load(handle), fit)


def test_file_holds_no_pickles(fit, tmp_path):
    path = io.save(fit, tmp_path / "fit.npz")
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            assert archive[key].dtype != object
        meta = json.loads(str(archive["meta"][()]))
        assert archive["seed"].dtype.kind == "U" and archive["settings"].dtype.kind == "U"
    assert meta["format"] == io.FORMAT and meta["uturn_version"] == uturn.__version__


def test_loaded_fit_works_like_a_fit(divergent_fit, tmp_path):
    loaded = io.load(io.save(divergent_fit, tmp_path / "fit.npz"))
    assert str(loaded.summary()) == str(divergent_fit.summary())
    assert [f.kind for f in loaded.checks()] == [f.kind for f in divergent_fit.checks()]
    assert repr(loaded) == repr(divergent_fit)
    assert "SavedModel(dim=10" in repr(loaded.model)
    np.testing.assert_array_equal(loaded["theta[0]"], divergent_fit["theta[0]"])
    assert loaded.num_divergences == divergent_fit.num_divergences
    # The stand-in model gives back the saved posterior and refuses anything else.
    constrained = loaded.model.constrain(loaded.unconstrained)
    np.testing.assert_array_equal(constrained["tau"], divergent_fit["tau"])
    with pytest.raises(NotImplementedError):
        loaded.model.constrain(loaded.unconstrained[:, :5])
    with pytest.raises(NotImplementedError):
        loaded.model.logp(np.zeros(10))
    with pytest.raises(TypeError):
        uturn.sample(loaded.model)


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(ValueError, match="not a saved uturn fit"):
        io.load(tmp_path / "other.npz")


def test_newer_format_is_refused(fit, tmp_path, monkeypatch):
    monkeypatch.setattr(io, "FORMAT_VERSION", io.FORMAT_VERSION + 1)
    path = io.save(fit, tmp_path / "new.npz")
    monkeypatch.setattr(io, "FORMAT_VERSION", io.FORMAT_VERSION - 1)
    with pytest.raises(ValueError, match="Upgrade uturn"):
        io.load(path)


# ---------------------------------------------------------------------------
# ArviZ
# ---------------------------------------------------------------------------

def test_missing_arviz_says_how_to_install(fit, monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)
    with pytest.raises(ImportError, match=r"uturn\[arviz\]"):
        io.to_arviz(fit)


def test_arviz_1_gets_a_datatree(fit, monkeypatch):
    xarray = pytest.importorskip("xarray")
    if not hasattr(xarray, "DataTree"):
        pytest.skip("xarray too old for DataTree")
    # ArviZ 1.x has no InferenceData: a module without it takes the same path.
    monkeypatch.setitem(sys.modules, "arviz", types.ModuleType("arviz"))
    tree = io.to_arviz(fit)
    assert isinstance(tree, xarray.DataTree)
    assert set(tree.children) == {"posterior", "sample_stats", "warmup_sample_stats",
                                  "unconstrained_posterior", "observed_data"}
    np.testing.assert_array_equal(tree["posterior"]["theta"].values, fit["theta"])
    assert tree["sample_stats"]["divergence_point"].dims == ("chain", "draw",
                                                              "unconstrained_dim")


@pytest.fixture(scope="module")
def arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ announces its refactor with a FutureWarning
        return pytest.importorskip("arviz")


def _groups(idata):
    """Group names of an InferenceData (ArviZ 0.x) or a DataTree (ArviZ 1.x)."""
    return list(idata.groups()) if callable(idata.groups) else list(idata.children)


def test_to_arviz_copies_every_group(arviz, divergent_fit):
    fit = divergent_fit
    idata = io.to_arviz(fit)
    if hasattr(arviz, "InferenceData"):
        assert isinstance(idata, arviz.InferenceData)
    for group in ("posterior", "sample_stats", "warmup_sample_stats",
                  "unconstrained_posterior", "observed_data"):
        assert group in _groups(idata)
    posterior = idata.posterior
    assert set(posterior.data_vars) == set(fit.posterior)
    for name, values in fit.posterior.items():
        np.testing.assert_array_equal(posterior[name].values, values)
    assert posterior["theta"].dims == ("chain", "draw", "theta_dim_0")
    np.testing.assert_array_equal(posterior["theta_dim_0"].values, np.arange(8))
    np.testing.assert_array_equal(posterior["chain"].values, np.arange(fit.chains))
    np.testing.assert_array_equal(posterior["draw"].values, np.arange(fit.draws))

    stats = idata.sample_stats
    assert set(stats.data_vars) == set(fit.stats)
    for name in ("diverging", "energy", "energy_error", "lp", "tree_depth", "n_steps",
                 "step_size", "acceptance_rate", "reached_max_treedepth"):
        np.testing.assert_array_equal(stats[name].values, fit.stats[name])
    assert stats["diverging"].dtype == bool
    point = stats["divergence_point"]
    assert point.dims == ("chain", "draw", "unconstrained_dim")
    assert list(point["unconstrained_dim"].values) == fit.names
    np.testing.assert_array_equal(point.values, fit.stats["divergence_point"])

    warmup = idata.warmup_sample_stats
    assert warmup.sizes["draw"] == fit.settings["tune"]
    np.testing.assert_array_equal(warmup["step_size"].values, fit.warmup_stats["step_size"])

    np.testing.assert_array_equal(idata.unconstrained_posterior["log_tau"].values,
                                  fit.unconstrained[..., 1])
    np.testing.assert_array_equal(idata.unconstrained_posterior["theta"].values,
                                  fit.unconstrained[..., 2:])
    np.testing.assert_array_equal(idata.observed_data["y"].values, fit.model.data["y"])
    assert idata.observed_data["y"].dims == ("y_dim_0",)

    attrs = posterior.attrs
    assert attrs["inference_library"] == "uturn"
    assert attrs["sampling_time"] == fit.elapsed
    assert attrs["tuning_steps"] == fit.settings["tune"]
    assert json.loads(attrs["seed"]) == fit.seed
    assert json.loads(attrs["uturn_settings"])["draws"] == fit.draws


def test_arviz_agrees_on_the_summary(arviz, fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = arviz.summary(io.to_arviz(fit), var_names=["mu", "tau"], kind="stats",
                              round_to="none")
    assert table.loc["mu", "mean"] == pytest.approx(fit["mu"].mean(), rel=1e-12)
    assert table.loc["tau", "sd"] == pytest.approx(fit["tau"].std(ddof=1), rel=1e-2)


def test_to_arviz_of_a_loaded_fit_matches(arviz, divergent_fit, tmp_path):
    loaded = io.load(io.save(divergent_fit, tmp_path / "fit.npz"))
    a, b = io.to_arviz(divergent_fit), io.to_arviz(loaded)
    for group in ("posterior", "sample_stats", "observed_data", "unconstrained_posterior"):
        ga, gb = getattr(a, group), getattr(b, group)
        assert set(ga.data_vars) == set(gb.data_vars)
        for name in ga.data_vars:
            np.testing.assert_array_equal(ga[name].values, gb[name].values)


def test_no_warmup_and_one_chain(tmp_path):
    fit = _sample(False, 3, tune=0, chains=1, draws=30, step_size=0.3)
    loaded = io.load(io.save(fit, tmp_path / "short.npz"))
    _assert_same_fit(loaded, fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("arviz")
    idata = io.to_arviz(loaded)
    assert "warmup_sample_stats" not in _groups(idata)
    assert idata.posterior.sizes["chain"] == 1
