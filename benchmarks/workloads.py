"""The benchmark workloads of ``benchmarks/compare.py``: data, exact answers, coordinates.

Every sampler samples the same model in the same unconstrained coordinates, in
uturn's order:

* hierarchical normal (``eight_schools_nc``, ``eight_schools_c``, ``hier_nc_1000``,
  ``hier_nc_100000``): ``mu, log_tau, nu[0..J-1]`` (non-centered) or
  ``mu, log_tau, theta[0..J-1]`` (centered), with ``mu ~ N(0, 5)``,
  ``tau ~ Half-Cauchy(0, 5)``; the quantity of interest is ``log_tau``.
* ``gaussian_dense_100``: ``x[0..99]`` from a 100-d Gaussian with dense correlation
  (:func:`uturn.models.random_correlated_gaussian` with ``default_rng(0)``); the
  quantity of interest is ``x[0]``.

A workload is pure data (picklable), so that each worker process can rebuild it;
peers build their own models from ``y``/``sigma`` or ``mean``/``cov``.
"""
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Workload", "WORKLOADS", "DEFAULT_WORKLOADS", "get", "exact_mean_log_tau",
           "MAX_MONITORED_GROUPS"]

#: Above this many groups the minimum ESS is taken over mu, log_tau and this many
#: evenly spaced group coordinates (the full 100,002 would cost minutes per run).
MAX_MONITORED_GROUPS = 1_000

MU_SCALE = 5.0
TAU_SCALE = 5.0


@dataclass
class Workload:
    """One benchmark problem.

    Attributes
    ----------
    name : str
    kind : {"hierarchical", "gaussian"}
    description : str
        One line for the report.
    dim : int
        Number of unconstrained coordinates.
    centered : bool
        Hierarchical only: centered (``theta``) or non-centered (``nu``) coordinates.
    y, sigma : ndarray or None
        Hierarchical data.
    mean, cov : ndarray or None
        Gaussian target.
    monitored : ndarray of int
        Indices (in uturn's coordinate order) of the coordinates whose ESS is
        computed; all of them unless the model is very large.
    quantity : str
        Name of the quantity of interest (``log_tau`` or ``x[0]``).
    quantity_index : int
        Its position inside ``monitored``.
    """

    name: str
    kind: str
    description: str
    dim: int
    centered: bool = False
    y: np.ndarray = None
    sigma: np.ndarray = None
    mean: np.ndarray = None
    cov: np.ndarray = None
    monitored: np.ndarray = field(default=None)
    quantity: str = "log_tau"
    quantity_index: int = 1

    @property
    def n_groups(self):
        return 0 if self.y is None else self.y.shape[0]

    @property
    def group_name(self):
        return "theta" if self.centered else "nu"

    @property
    def all_monitored(self):
        """Whether every coordinate is monitored (else a subset: see ``monitored``)."""
        return self.monitored.size == self.dim

    def coordinate_names(self):
        """Names of the monitored coordinates, in order."""
        if self.kind == "gaussian":
            return [f"x[{i}]" for i in self.monitored]
        names = ["mu", "log_tau"]
        return [names[i] if i < 2 else f"{self.group_name}[{i - 2}]" for i in self.monitored]

    def select(self, mu=None, log_tau=None, group=None, x=None):
        """The monitored coordinates of a run as one ``(chains, draws, k)`` float64 array.

        Hierarchical workloads take ``mu`` and ``log_tau`` ``(chains, draws)`` and
        ``group`` ``(chains, draws, J)`` (``theta`` or ``nu``); the Gaussian takes
        ``x`` ``(chains, draws, dim)``. Only the monitored columns are copied, so a
        caller can free its full draws (3.2 GB at J = 100,000) right after.
        """
        if self.kind == "gaussian":
            return np.ascontiguousarray(np.asarray(x)[..., self.monitored], dtype=np.float64)
        mu = np.asarray(mu, dtype=np.float64)
        columns = [mu, np.asarray(log_tau, dtype=np.float64)]
        group_columns = self.monitored[self.monitored >= 2] - 2
        selected = np.asarray(group)[..., group_columns].astype(np.float64)
        out = np.empty(mu.shape + (2 + group_columns.size,))
        out[..., 0], out[..., 1] = columns
        out[..., 2:] = selected
        return out

    def uturn_model(self):
        """The uturn model of this workload (imports uturn)."""
        from uturn.models import dense_gaussian, hierarchical_normal
        if self.kind == "gaussian":
            return dense_gaussian(self.mean, self.cov)
        return hierarchical_normal(self.y, self.sigma, centered=self.centered,
                                   mu_scale=MU_SCALE, tau_scale=TAU_SCALE)

    def exact_mean(self):
        """Exact posterior mean of the quantity of interest."""
        if self.kind == "gaussian":
            return float(self.mean[0])
        if self.n_groups == 8 and np.array_equal(self.y, _eight_schools_data()[0]):
            from uturn.models.eight_schools import EXACT_MEAN_LOG_TAU
            return EXACT_MEAN_LOG_TAU
        return exact_mean_log_tau(self.y, self.sigma)


def _eight_schools_data():
    from uturn.models.eight_schools import SIGMA, Y
    return np.array(Y), np.array(SIGMA)


def simulated_groups(n_groups, seed=0):
    """Data like eight schools: tau = 5, sigma between 5 and 20.

    The same data as ``benchmarks/models.py``'s ``simulated_groups`` (copied, not
    imported: importing that module compiles and caches its numba loop under the
    package name ``benchmarks.models``, after which ``python benchmarks/models.py``
    cannot load numba's cache entry).
    """
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(5.0, 20.0, size=n_groups)
    y = 5.0 + 5.0 * rng.normal(size=n_groups) + sigma * rng.normal(size=n_groups)
    return y, sigma


def _monitored_indices(n_groups):
    """mu, log_tau and every group, or MAX_MONITORED_GROUPS evenly spaced ones."""
    if n_groups <= MAX_MONITORED_GROUPS:
        groups = np.arange(n_groups)
    else:
        groups = np.unique(np.linspace(0, n_groups - 1, MAX_MONITORED_GROUPS).round()
                           .astype(np.int64))
    return np.concatenate([[0, 1], groups + 2]).astype(np.int64)


def _hierarchical(name, y, sigma, centered, description):
    n_groups = y.shape[0]
    return Workload(name=name, kind="hierarchical", description=description,
                    dim=n_groups + 2, centered=centered, y=y, sigma=sigma,
                    monitored=_monitored_indices(n_groups), quantity="log_tau",
                    quantity_index=1)


def _gaussian(name, dim, seed):
    from uturn.models import random_correlated_gaussian
    model = random_correlated_gaussian(dim, np.random.default_rng(seed))
    return Workload(name=name, kind="gaussian",
                    description=f"{dim}-d Gaussian, dense correlation "
                                f"(random_correlated_gaussian({dim}, default_rng({seed})))",
                    dim=dim, mean=np.array(model.mean), cov=np.array(model.cov),
                    monitored=np.arange(dim, dtype=np.int64), quantity="x[0]",
                    quantity_index=0)


def _build(name):
    if name in ("eight_schools_nc", "eight_schools_c"):
        y, sigma = _eight_schools_data()
        centered = name.endswith("_c")
        kind = "centered" if centered else "non-centered"
        return _hierarchical(name, y, sigma, centered,
                             f"eight schools, {kind} (mu ~ N(0, 5), tau ~ Half-Cauchy(0, 5))")
    if name == "gaussian_dense_100":
        return _gaussian(name, 100, seed=0)
    if name.startswith("hier_nc_"):
        n_groups = int(name.rsplit("_", 1)[1])
        y, sigma = simulated_groups(n_groups, seed=0)
        return _hierarchical(name, y, sigma, False,
                             f"hierarchical normal, non-centered, J = {n_groups:,} "
                             f"(simulated_groups({n_groups}, seed=0))")
    raise KeyError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")


#: Every workload, in report order.
WORKLOADS = ("eight_schools_nc", "eight_schools_c", "gaussian_dense_100", "hier_nc_1000",
             "hier_nc_100000")
DEFAULT_WORKLOADS = WORKLOADS

_CACHE = {}


def get(name):
    """The workload called ``name`` (built once per process)."""
    if name not in _CACHE:
        _CACHE[name] = _build(name)
    return _CACHE[name]


def exact_mean_log_tau(y, sigma, mu_scale=MU_SCALE, tau_scale=TAU_SCALE):
    r"""Exact :math:`E[\log\tau \mid y]` of the hierarchical normal model, by quadrature.

    The same one-dimensional integral over :math:`s = \log\tau` as
    :func:`uturn.models.exact_posterior` (whose log density
    ``_log_joint_over_log_tau`` it reuses), but only for the mean of ``log_tau``:
    ``exact_posterior`` refines cells for every moment and quantile and needs
    minutes and gigabytes at J = 100,000; this needs a few seconds.

    1. A scan of :math:`\log p(s \mid y)` on a grid of step 0.25 brackets the mode.
    2. Bounded scalar minimisation finds the mode; the curvature there gives a scale.
    3. The integration range grows from the mode in steps of that scale until the
       log density is 60 below its peak on both sides (the rest holds < 1e-20).
    4. Composite 10-point Gauss-Legendre on 16, 32, ... equal cells until the mean
       changes by less than 1e-13.

    Parameters
    ----------
    y, sigma : array_like (J,)
    mu_scale, tau_scale : float
        Prior scales (5 and 5 in every workload).

    Returns
    -------
    float
    """
    from scipy import optimize

    from uturn.models import exact as exact_module

    y = np.asarray(y, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    sigma2 = sigma**2
    chunk = max(1, 2_000_000 // y.size)   # (chunk, J) temporaries of ~16 MB each

    def log_density(log_tau):
        log_tau = np.atleast_1d(np.asarray(log_tau, dtype=np.float64)).ravel()
        out = np.empty(log_tau.size)
        for start in range(0, log_tau.size, chunk):
            out[start:start + chunk] = exact_module._log_joint_over_log_tau(
                log_tau[start:start + chunk], y, sigma2, mu_scale, tau_scale)[0]
        return out

    low_scale = min(sigma.min(), tau_scale)
    high_scale = max(sigma.max(), tau_scale, np.ptp(y), np.abs(y).max(), mu_scale)
    grid = np.arange(math.log(low_scale) - 30.0, math.log(high_scale) + 30.0, 0.25)
    best = int(np.argmax(log_density(grid)))
    bracket = (grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)])
    found = optimize.minimize_scalar(lambda s: -log_density(s)[0], bounds=bracket,
                                     method="bounded", options={"xatol": 1e-10})
    mode, peak = float(found.x), -float(found.fun)
    step = 1e-3
    curvature = (log_density(mode + step)[0] - 2.0 * peak + log_density(mode - step)[0]) \
        / step**2
    scale = 1.0 / math.sqrt(-curvature) if curvature < 0 else 1.0

    def edge(direction):
        s = mode
        while log_density(s)[0] > peak - 60.0:
            s += direction * scale
        return s

    lower, upper = edge(-1.0), edge(+1.0)
    previous = None
    for n_cells in 16 * 2 ** np.arange(12):
        nodes, weights = exact_module._gauss_legendre(np.linspace(lower, upper, n_cells + 1))
        mass = weights.ravel() * np.exp(log_density(nodes) - peak)
        mean = float(mass @ nodes.ravel() / mass.sum())
        if previous is not None and abs(mean - previous) < 1e-13:
            return mean
        previous = mean
    raise RuntimeError("exact_mean_log_tau: the quadrature did not converge")


def describe_monitoring(workload):
    """How the minimum ESS was taken, for the report."""
    if workload.all_monitored:
        return f"min ESS over all {workload.dim:,} coordinates"
    groups = workload.monitored.size - 2
    return (f"min ESS over mu, log_tau and {groups:,} evenly spaced "
            f"{workload.group_name} coordinates (of {workload.n_groups:,})")


def bytes_of_draws(workload, chains, draws):
    """Size of all draws as float64, for skip reasons and memory notes."""
    return 8 * chains * draws * workload.dim


def _self_check():
    """The chunked quadrature agrees with exact_posterior (run: python -m benchmarks.workloads)."""
    from uturn.models import exact_posterior
    y, sigma = simulated_groups(1000, seed=0)
    ours = exact_mean_log_tau(y, sigma)
    reference = exact_posterior(y, sigma)["posterior"]["log_tau"]["mean"]
    print(f"J = 1,000: E[log tau] = {ours!r} (exact_posterior {reference!r}, "
          f"difference {abs(ours - reference):.1e})")
    assert math.isclose(ours, reference, rel_tol=0, abs_tol=1e-8)


if __name__ == "__main__":
    _self_check()
