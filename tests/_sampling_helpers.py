"""Helpers shared by the sampling tests."""
import warnings

import uturn
from uturn.diagnostics import mcse_mean


def quiet_sample(*args, **kwargs):
    """Sample with the end-of-run convergence warnings silenced (tests assert on numbers)."""
    kwargs.setdefault("progress", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return uturn.sample(*args, **kwargs)


def assert_moments_match(fit, model, n_mcse=5.0):
    """Means within n MCSE; variances within n MCSE of the squared-deviation mean."""
    x = fit.unconstrained
    for i in range(model.dim):
        xi = x[:, :, i]
        assert abs(xi.mean() - model.mean[i]) < n_mcse * mcse_mean(xi), f"mean of {i}"
        squared = (xi - model.mean[i]) ** 2
        assert abs(squared.mean() - model.cov[i, i]) < n_mcse * mcse_mean(squared), f"var of {i}"


def divergent_eight_schools_fit(draws=100, tune=100, chains=2):
    """A short centered eight-schools fit with divergences, from the first seed that
    gives some (which seed does depends on the last bits of the arithmetic), so that
    the divergence points and plots have real points to show."""
    for seed in range(1, 30):
        fit = quiet_sample(uturn.models.eight_schools(centered=True), draws=draws,
                           tune=tune, chains=chains, seed=seed)
        if fit.num_divergences > 0:
            return fit
    raise AssertionError("no seed in 1..29 gave a divergent centered eight-schools run")
