"""Fits in and out of uturn: ArviZ export, and saving and loading a fit.

``to_arviz(fit)``
    An ``arviz.InferenceData`` (ArviZ is the optional extra ``uturn[arviz]``).
``save(fit, path)`` / ``load(path)``
    One compressed ``.npz`` file holding everything a :class:`uturn.Fit` holds except
    the compiled log density. It is read back with ``allow_pickle=False`` (no code
    runs on load: strings and JSON are stored as numpy unicode arrays), and every
    array, the settings, the seed and the coordinate names round-trip exactly.

File layout (format version 1; every entry is a plain ``.npy`` inside the zip):

=============================  ==============================================
``meta``                       JSON: format, format version, uturn version,
                               and the names of the dict entries below
``seed``                       JSON of ``fit.seed`` (an int of up to 128 bits
                               is written as its decimal digits, exactly)
``settings``                   JSON of ``fit.settings`` (arrays tagged, so
                               they come back as arrays; tuples come back as
                               lists, as JSON has no tuple)
``names``                      unicode array of the coordinate names
``unconstrained``              ``(chains, draws, dim)``
``step_size``, ``inv_metric``  as on the fit
``n_gradient_evals``           as on the fit
``elapsed``                    0-d float64
``posterior/<k>``              the k-th posterior quantity (names in ``meta``,
                               so any quantity name is safe)
``stats/<k>``                  the k-th sample statistic, except
                               ``divergence_point``, which is stored compactly:
``divergence_point_index``     ``(n, 2)`` (chain, draw) of every stored point
``divergence_point_values``    ``(n, dim)`` the points themselves
``warmup_stats/<k>``           the k-th warmup statistic
``data/<k>``                   the k-th entry of ``fit.model.data``
=============================  ==============================================
"""
import datetime
import json
import os
import uuid
import warnings
from collections.abc import Mapping

import numpy as np

__all__ = ["to_arviz", "save", "load", "SavedModel", "FORMAT", "FORMAT_VERSION"]

#: The ``format`` entry of a saved fit's ``meta``.
FORMAT = "uturn.Fit"
#: Bumped when the file layout changes in a way older readers cannot follow.
FORMAT_VERSION = 1

_ARVIZ_MISSING = ("to_arviz() needs ArviZ, an optional extra of uturn: "
                  "pip install uturn[arviz]  (or: pip install arviz)")


# ---------------------------------------------------------------------------
# ArviZ
# ---------------------------------------------------------------------------

def _import_arviz():
    try:
        with warnings.catch_warnings():
            # ArviZ 0.2x announces its 1.0 refactor with a FutureWarning on import;
            # the user asked for an export, not for that notice on every call.
            warnings.simplefilter("ignore", FutureWarning)
            import arviz
            import xarray
    except ImportError as error:
        raise ImportError(_ARVIZ_MISSING) from error
    return arviz, xarray


def _variable(xarray, name, values, leading, leading_coords, extra_dims=None):
    """One DataArray with dims ``leading + extra`` (extra dims ``{name}_dim_{k}``)."""
    values = np.asarray(values)
    if values.shape[:len(leading)] != tuple(len(leading_coords[d]) for d in leading):
        raise ValueError(f"{name!r} has shape {values.shape}, which does not start with "
                         f"({', '.join(leading)}) = "
                         f"{tuple(len(leading_coords[d]) for d in leading)}")
    extra = values.shape[len(leading):]
    if extra_dims is None:
        extra_dims = {f"{name}_dim_{k}": np.arange(size) for k, size in enumerate(extra)}
    dims = list(leading) + list(extra_dims)
    coords = {d: leading_coords[d] for d in leading}
    coords.update(extra_dims)
    return xarray.DataArray(values, dims=dims, coords=coords)


def _dataset(xarray, arrays, leading, leading_coords, attrs, special=None):
    special = special or {}
    variables = {}
    for name, values in arrays.items():
        variables[str(name)] = _variable(xarray, str(name), values, leading, leading_coords,
                                         special.get(name))
    return xarray.Dataset(variables, attrs=dict(attrs))


def _attrs(fit):
    """Group attributes, as ArviZ's converters write them (netCDF-safe types only)."""
    from . import __version__
    attrs = {
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "inference_library": "uturn",
        "inference_library_version": __version__,
    }
    elapsed = getattr(fit, "elapsed", None)
    if elapsed is not None:
        attrs["sampling_time"] = float(elapsed)  # ArviZ's name; used for ESS per second
    settings = getattr(fit, "settings", None) or {}
    if "tune" in settings:
        attrs["tuning_steps"] = int(settings["tune"])
    if getattr(fit, "seed", None) is not None:
        # netCDF attributes cannot hold a 128-bit integer: keep its digits.
        attrs["seed"] = json.dumps(_jsonable(fit.seed))
    if settings:
        attrs["uturn_settings"] = json.dumps(_jsonable(settings))
    return attrs


def to_arviz(fit):
    """Convert a fit to an ``arviz.InferenceData``.

    Parameters
    ----------
    fit : uturn.Fit
        Or any object with ``posterior`` (dict name -> ``(chains, draws, *shape)``)
        and, when present, ``stats``, ``warmup_stats``, ``unconstrained``, ``names``,
        ``model.data``, ``elapsed``, ``settings`` and ``seed``. A loaded fit works.

    Returns
    -------
    arviz.InferenceData
        (With ArviZ 1.x, which has no InferenceData, an ``xarray.DataTree`` with the
        same groups, as ArviZ 1.x's own converters return.) Groups:

        ``posterior``
            the constrained quantities; dims ``chain``, ``draw`` and, for a
            quantity of shape ``(d0, d1, ...)``, ``{name}_dim_0``, ``{name}_dim_1``, ...
            with integer coordinates (uturn does not know what the axes mean).
        ``sample_stats``
            ``fit.stats`` under their own names (uturn already uses ArviZ's), and
            ``divergence_point`` with dims ``chain, draw, unconstrained_dim`` whose
            coordinates are ``fit.names``.
        ``warmup_sample_stats``
            ``fit.warmup_stats``, when there was a warmup.
        ``unconstrained_posterior``
            the draws on the sampler's scale, grouped by coordinate name as
            ``uturn.Model`` groups them by default (``theta[0..7]`` becomes
            ``theta`` with dim ``theta_dim_0``).
        ``observed_data``
            ``fit.model.data``, when the model has any (dims ``{name}_dim_k``).

        Every group's attributes hold ``inference_library="uturn"``, its version,
        ``sampling_time`` (seconds), ``tuning_steps``, ``seed`` and
        ``uturn_settings`` (both JSON text, so the data set can be written to netCDF).

    Raises
    ------
    ImportError
        When ArviZ is not installed (``pip install uturn[arviz]``).
    """
    arviz, xarray = _import_arviz()
    from .model import default_constrain

    posterior = dict(fit.posterior)
    first = np.asarray(next(iter(posterior.values()))) if posterior else None
    unconstrained = getattr(fit, "unconstrained", None)
    if unconstrained is not None:
        chains, draws = np.shape(unconstrained)[:2]
    elif first is not None:
        chains, draws = first.shape[:2]
    else:
        raise ValueError("to_arviz(): the fit has no posterior quantities")
    leading = ("chain", "draw")
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    attrs = _attrs(fit)
    groups = {"posterior": _dataset(xarray, posterior, leading, coords, attrs)}

    names = [str(n) for n in (getattr(fit, "names", None) or [])]
    stats = getattr(fit, "stats", None)
    if stats:
        special = {}
        if names:
            special["divergence_point"] = {"unconstrained_dim": np.array(names)}
        groups["sample_stats"] = _dataset(xarray, {k: stats[k] for k in stats}, leading,
                                          coords, attrs, special)

    warmup = getattr(fit, "warmup_stats", None)
    if warmup:
        tune = np.shape(next(iter(warmup.values())))[1]
        if tune > 0:
            warmup_coords = {"chain": coords["chain"], "draw": np.arange(tune)}
            groups["warmup_sample_stats"] = _dataset(xarray, warmup, leading, warmup_coords,
                                                     attrs)

    if unconstrained is not None and names and len(names) == np.shape(unconstrained)[2]:
        grouped = default_constrain(np.asarray(unconstrained), names)
        groups["unconstrained_posterior"] = _dataset(xarray, grouped, leading, coords, attrs)

    data = _model_data(fit)
    if data:
        groups["observed_data"] = _dataset(xarray, data, (), {}, attrs)

    if not hasattr(arviz, "InferenceData"):
        # ArviZ 1.x dropped InferenceData for xarray's DataTree, with the same groups.
        return xarray.DataTree.from_dict(groups)
    return arviz.InferenceData(**groups)


def _model_data(fit):
    """``fit.model.data`` as numpy arrays; entries numpy cannot store are left out."""
    model = getattr(fit, "model", None)
    data = getattr(model, "data", None)
    if not isinstance(data, Mapping):
        return {}
    out = {}
    for name, value in data.items():
        try:
            array = np.asarray(value)
        except Exception:  # ragged lists and the like  # noqa: BLE001
            array = None
        if array is None or array.dtype == object:
            warnings.warn(f"model.data[{name!r}] is not an array of numbers or strings "
                          f"({type(value).__name__}); it is left out", stacklevel=3)
            continue
        out[str(name)] = array
    return out


# ---------------------------------------------------------------------------
# JSON for settings and seed
# ---------------------------------------------------------------------------

_NDARRAY_TAG = "__ndarray__"


def _jsonable(value):
    """A JSON-ready copy: numpy scalars to Python, arrays tagged so they come back."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("cannot save an object array in the settings")
        return {_NDARRAY_TAG: value.tolist(), "dtype": value.dtype.str,
                "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save a setting of type {type(value).__name__} "
                    f"({value!r}) in JSON")


def _from_json(value):
    if isinstance(value, dict):
        if _NDARRAY_TAG in value:
            return np.array(value[_NDARRAY_TAG], dtype=np.dtype(value["dtype"])).reshape(
                value["shape"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _text(value):
    """A string as a 0-d numpy unicode array (loadable with ``allow_pickle=False``)."""
    return np.array(str(value), dtype=np.str_)


# ---------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------

def _npz_path(path):
    path = os.fspath(path)
    # numpy appends ".npz" to a name without it; say so in the returned path.
    return path if path.endswith(".npz") else path + ".npz"


def save(fit, path):
    """Write a fit to one compressed ``.npz`` file.

    Everything is kept, exactly: the unconstrained draws, the posterior, the sample
    statistics (``divergence_point`` included), the warmup statistics, step sizes,
    inverse metrics, gradient counts, coordinate names, settings, seed (of any size),
    elapsed time, the uturn version and ``fit.model.data``. The compiled log density
    and the model's transform are not: :func:`load` gives a fit whose model is a
    :class:`SavedModel`.

    Parameters
    ----------
    fit : uturn.Fit
    path : str, os.PathLike or writable binary file
        ``".npz"`` is appended to a file name without it (as numpy does). A file name
        is written atomically: to a temporary file beside it, then renamed.

    Returns
    -------
    str or file
        The path written (with its ``.npz``), or the file object given.

    Raises
    ------
    TypeError
        If a setting or the seed cannot be written as JSON.
    """
    from . import __version__

    posterior = {str(k): np.asarray(v) for k, v in fit.posterior.items()}
    stats = getattr(fit, "stats", None) or {}
    stat_names = [str(k) for k in stats if k != "divergence_point"]
    warmup = dict(getattr(fit, "warmup_stats", None) or {})
    data = _model_data(fit)
    meta = dict(format=FORMAT, format_version=FORMAT_VERSION, uturn_version=__version__,
                posterior=list(posterior), stats=stat_names,
                warmup_stats=[str(k) for k in warmup], data=list(data),
                has_divergence_point="divergence_point" in stats)
    arrays = {
        "meta": _text(json.dumps(meta)),
        "seed": _text(json.dumps(_jsonable(fit.seed))),
        "settings": _text(json.dumps(_jsonable(dict(fit.settings)))),
        "names": np.array([str(n) for n in fit.names], dtype=np.str_),
        "unconstrained": np.asarray(fit.unconstrained),
        "step_size": np.asarray(fit.step_size),
        "inv_metric": np.asarray(fit.inv_metric),
        "n_gradient_evals": np.asarray(fit.n_gradient_evals),
        "elapsed": np.asarray(fit.elapsed, dtype=np.float64),
    }
    for k, name in enumerate(posterior):
        arrays[f"posterior/{k}"] = posterior[name]
    for k, name in enumerate(stat_names):
        arrays[f"stats/{k}"] = np.asarray(stats[name])
    for k, name in enumerate(warmup):
        arrays[f"warmup_stats/{k}"] = np.asarray(warmup[name])
    for k, name in enumerate(data):
        arrays[f"data/{k}"] = data[name]
    if meta["has_divergence_point"]:
        # Dense (chains, draws, dim) is NaN except at divergent draws: store only the
        # rows that are not all NaN. An all-NaN row reads back as NaN, so this is exact.
        points = np.asarray(stats["divergence_point"])
        stored = ~np.all(np.isnan(points), axis=-1)
        arrays["divergence_point_index"] = np.argwhere(stored).astype(np.int64)
        arrays["divergence_point_values"] = points[stored]
        arrays["divergence_point_shape"] = np.array(points.shape, dtype=np.int64)
    for name, array in arrays.items():
        if array.dtype == object:
            raise TypeError(f"cannot save {name!r}: it is an object array")

    if hasattr(path, "write"):
        np.savez_compressed(path, **arrays)
        return path
    path = _npz_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    # A unique name beside the target (same file system, so the rename is atomic);
    # open() rather than mkstemp() so the file gets the usual permissions, not 0600.
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as file:
            np.savez_compressed(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


class SavedModel:
    """The stand-in for the model of a loaded fit.

    A saved file cannot hold the compiled log density or the model's transform, so
    this object keeps what a :class:`uturn.Fit` and the diagnostics, plots and
    ArviZ export read from a model: ``names``, ``dim`` and ``data``, and
    ``constrain``, which returns the saved posterior for the saved draws.

    It cannot be sampled: rebuild the model (e.g. ``uturn.models.eight_schools()``)
    and pass ``seed=fit.seed`` with ``**`` the relevant ``fit.settings`` to repeat a run.

    Attributes
    ----------
    names : list of str
    dim : int
    data : dict
        ``model.data`` of the fit that was saved.
    uturn_version : str
        The uturn version that wrote the file.
    source : str or None
        The file it was loaded from.
    """

    logp_grad = None

    def __init__(self, names, data, posterior, unconstrained, uturn_version, source=None):
        self.names = list(names)
        self.dim = len(self.names)
        self.data = dict(data)
        self.uturn_version = uturn_version
        self.source = source
        self._posterior = posterior
        self._unconstrained = unconstrained

    def constrain(self, draws):
        """The saved posterior, when ``draws`` are the saved unconstrained draws.

        Parameters
        ----------
        draws : array_like
            ``(chains, draws, dim)``.

        Returns
        -------
        dict
            Name -> copy of the saved constrained quantity.

        Raises
        ------
        NotImplementedError
            For any other draws: the transform itself was not saved.
        """
        draws = np.asarray(draws)
        if (draws.shape == self._unconstrained.shape
                and np.array_equal(draws, self._unconstrained, equal_nan=True)):
            return {name: value.copy() for name, value in self._posterior.items()}
        raise NotImplementedError(
            "a loaded fit's model keeps only the saved posterior; the transform from "
            "unconstrained draws was not saved. Rebuild the model to constrain new draws.")

    def _no_density(self, *args, **kwargs):
        raise NotImplementedError(
            "a loaded fit's model has no log density (compiled code is not saved). "
            "Rebuild the model, e.g. uturn.models.eight_schools(...), to evaluate it.")

    logp = _no_density
    logp_and_grad = _no_density

    def __repr__(self):
        shown = ", ".join(self.names[:4]) + (", ..." if self.dim > 4 else "")
        where = f", from {self.source!r}" if self.source else ""
        return f"SavedModel(dim={self.dim}, names=[{shown}]{where})"


def _json_entry(archive, key):
    return json.loads(str(archive[key][()]))


def load(path):
    """Read a fit written by :func:`save`.

    Parameters
    ----------
    path : str, os.PathLike or readable binary file
        A name without ``.npz`` is tried as given, then with ``.npz``.

    Returns
    -------
    uturn.Fit
        A real Fit (``summary()``, ``checks()``, ``to_arviz()``, indexing, the plots
        all work) whose ``model`` is a :class:`SavedModel`. All arrays, settings,
        seed and names equal those of the fit that was saved.

    Raises
    ------
    ValueError
        If the file is not a saved uturn fit, or was written by a newer format.
    """
    from .fit import Fit, SampleStats

    source = None
    if not hasattr(path, "read"):
        source = os.fspath(path)
        if not os.path.exists(source) and os.path.exists(source + ".npz"):
            source += ".npz"
        path = source
    # allow_pickle=False: loading a file must never run code from it.
    with np.load(path, allow_pickle=False) as archive:
        if "meta" not in archive.files:
            raise ValueError(f"{source or 'the file'} is not a saved uturn fit (no 'meta')")
        meta = _json_entry(archive, "meta")
        if meta.get("format") != FORMAT:
            raise ValueError(f"{source or 'the file'} is not a saved uturn fit "
                             f"(format {meta.get('format')!r})")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{source or 'the file'} was written by uturn {meta.get('uturn_version')} "
                f"in format version {meta['format_version']}; this uturn reads up to "
                f"{FORMAT_VERSION}. Upgrade uturn to read it.")
        posterior = {name: archive[f"posterior/{k}"] for k, name in enumerate(meta["posterior"])}
        stats = {name: archive[f"stats/{k}"] for k, name in enumerate(meta["stats"])}
        warmup = {name: archive[f"warmup_stats/{k}"]
                  for k, name in enumerate(meta["warmup_stats"])}
        data = {name: archive[f"data/{k}"] for k, name in enumerate(meta["data"])}
        names = [str(n) for n in archive["names"]]
        unconstrained = archive["unconstrained"]
        if meta.get("has_divergence_point"):
            index = archive["divergence_point_index"]
            values = archive["divergence_point_values"]
            shape = tuple(int(s) for s in archive["divergence_point_shape"])
        fit_arrays = {key: archive[key] for key in
                      ("step_size", "inv_metric", "n_gradient_evals")}
        elapsed = float(archive["elapsed"][()])
        seed = _from_json(_json_entry(archive, "seed"))
        settings = _from_json(_json_entry(archive, "settings"))

    if meta.get("has_divergence_point"):
        # Rebuild the compact record a fresh fit keeps (one slot per stored point).
        chains, draws, dim = shape
        slots = np.full((chains, draws), -1, dtype=np.int64)
        points = []
        for chain in range(chains):
            rows = np.flatnonzero(index[:, 0] == chain)
            slots[chain, index[rows, 1]] = np.arange(rows.size)
            points.append(values[rows] if rows.size else np.full((0, dim), np.nan))
        stats = SampleStats(stats, slots, points, dim)
    model = SavedModel(names, data, posterior, unconstrained, meta.get("uturn_version"),
                       source)
    return Fit(model=model, unconstrained=unconstrained, stats=stats, warmup_stats=warmup,
               seed=seed, settings=settings, elapsed=elapsed, posterior=posterior,
               **fit_arrays)
