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
