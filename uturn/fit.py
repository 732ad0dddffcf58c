"""Fit: the draws, sample statistics and settings of one call to ``uturn.sample``."""
from collections.abc import Mapping

import numpy as np

__all__ = ["Fit", "SampleStats"]


class SampleStats(Mapping):
    """Sample statistics by name, each an array of shape ``(chains, draws)``.

    ``divergence_point`` (``(chains, draws, dim)``, NaN where the transition did
    not diverge) is built on first access from the compact record the chains keep
    (only divergent transitions store a position), so a fit of a large model does
    not hold a second copy of its draws unless asked for.
    """

    def __init__(self, stats, divergence_slots, divergence_points, dim):
        self._stats = dict(stats)
        self._slots = divergence_slots
        self._points = divergence_points
        self._dim = dim

    def _divergence_point(self):
        chains, draws = self._slots.shape
        dense = np.full((chains, draws, self._dim), np.nan)
        for chain in range(chains):
            stored = self._slots[chain] >= 0
            dense[chain, stored] = self._points[chain][self._slots[chain, stored]]
        return dense

    def _stored_divergence_points(self):
        """Every stored divergence point, ``(n, dim)``, in no particular order."""
        rows = [self._points[chain][self._slots[chain][self._slots[chain] >= 0]]
                for chain in range(self._slots.shape[0])]
        return np.concatenate(rows) if rows else np.empty((0, self._dim))

    def __getitem__(self, name):
        if name == "divergence_point" and name not in self._stats:
            self._stats[name] = self._divergence_point()
        return self._stats[name]

    def __iter__(self):
        yield from self._stats
        if "divergence_point" not in self._stats:
            yield "divergence_point"

    def __len__(self):
        return len(self._stats) + ("divergence_point" not in self._stats)

    def __repr__(self):
        return f"SampleStats({', '.join(self)})"


class Fit:
    """The result of :func:`uturn.sample`.

    Attributes
    ----------
    model : uturn.Model
    posterior : dict
        Named constrained quantities, each ``(chains, draws, *shape)``.
    unconstrained : ndarray
        ``(chains, draws, dim)`` draws on the sampler's scale.
    names : list of str
        Names of the unconstrained coordinates.
    stats : Mapping
        Post-warmup sample statistics with ArviZ's names, ``(chains, draws)``:
        ``diverging``, ``energy``, ``energy_error``, ``max_energy_error``, ``lp``,
        ``tree_depth``, ``n_steps``, ``step_size``, ``acceptance_rate``,
        ``reached_max_treedepth``, and ``divergence_point`` ``(chains, draws, dim)``.
    warmup_stats : dict
        The same scalar statistics for the warmup iterations, ``(chains, tune)``.
    step_size : ndarray
        ``(chains,)`` step size used after warmup.
    inv_metric : ndarray
        ``(chains, dim)`` (diagonal) or ``(chains, dim, dim)`` (dense) inverse metric
        used after warmup.
    n_gradient_evals : ndarray
        ``(chains,)`` gradient evaluations, warmup and step-size searches included.
    seed : int
        The seed the run used; ``sample(..., seed=fit.seed)`` repeats it exactly.
    settings : dict
        Every argument of the call that made this fit.
    elapsed : float
        Wall time in seconds, initialisation to last draw.
    """

    def __init__(self, model, unconstrained, stats, warmup_stats, step_size,
                 inv_metric, n_gradient_evals, seed, settings, elapsed,
                 posterior=None):
        self.model = model
        self.names = list(model.names)
        self.unconstrained = unconstrained
        self.stats = stats
        self.warmup_stats = warmup_stats
        self.step_size = step_size
        self.inv_metric = inv_metric
        self.n_gradient_evals = n_gradient_evals
        self.seed = seed
        self.settings = dict(settings)
        self.elapsed = float(elapsed)
        self._posterior = posterior

    @property
    def posterior(self):
        """Named constrained quantities, computed by ``model.constrain`` when first
        asked for (a large model's derived quantities cost as much memory as its
        draws, and many uses need only the unconstrained draws)."""
        if self._posterior is None:
            self._posterior = self.model.constrain(self.unconstrained)
        return self._posterior

    @property
    def chains(self):
        return self.unconstrained.shape[0]

    @property
    def draws(self):
        return self.unconstrained.shape[1]

    @property
    def num_divergences(self):
        return int(np.sum(self.stats["diverging"]))

    def __getitem__(self, name):
        if name in self.posterior:
            return self.posterior[name]
        if name in self.names:
            return self.unconstrained[..., self.names.index(name)]
        raise KeyError(f"{name!r} is neither a posterior quantity "
                       f"({', '.join(self.posterior)}) nor a coordinate name")

    def summary(self, var_names=None):
        """Diagnostics table (mean, sd, quantiles, MCSE, ESS, R-hat) per scalar quantity.

        See :func:`uturn.diagnostics.summary`.
        """
        from .diagnostics import summary
        return summary(self, var_names=var_names)

    def checks(self, **thresholds):
        """What went wrong, if anything: see :func:`uturn.diagnostics.checks`."""
        from .diagnostics import checks
        return checks(self, **thresholds)

    def to_arviz(self):
        """This fit as an ``arviz.InferenceData`` (needs ``pip install uturn[arviz]``)."""
        from .io import to_arviz
        return to_arviz(self)

    def save(self, path):
        """Write this fit to one compressed ``.npz`` file; read it with ``uturn.load``."""
        from .io import save
        return save(self, path)

    def __repr__(self):
        divergences = self.num_divergences
        total = self.chains * self.draws
        algorithm = self.settings.get("algorithm", "nuts").upper()
        metric = self.settings.get("metric", "diag")
        return (f"Fit({algorithm}, {metric} metric: {self.chains} chains x {self.draws} draws "
                f"after {self.settings.get('tune', 0)} warmup, dim {self.model.dim}; "
                f"{divergences} divergences ({100.0 * divergences / max(total, 1):.2g}%); "
                f"{int(np.sum(self.n_gradient_evals)):,} gradient evaluations; "
                f"{self.elapsed:.3g} s; seed {self.seed})")
