"""The workloads as PyMC models (shared by the PyMC and nutpie peers).

PyMC samples ``tau ~ HalfCauchy`` on ``tau_log__`` (its default log transform, with
the Jacobian), which is uturn's ``log_tau`` coordinate; ``mu`` and ``nu``/``theta``
and ``x`` are untransformed. Draws come back constrained, so ``log_tau`` is
``log(tau)``.
"""
import numpy as np


def pymc_model(workload):
    """A ``pymc.Model`` of ``workload`` (imports pymc)."""
    import pymc as pm
    with pm.Model() as model:
        if workload.kind == "gaussian":
            chol = np.linalg.cholesky(workload.cov)
            pm.MvNormal("x", mu=workload.mean, chol=chol)
            return model
        n_groups = workload.n_groups
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        if workload.centered:
            theta = pm.Normal("theta", mu, tau, shape=n_groups)
        else:
            nu = pm.Normal("nu", 0.0, 1.0, shape=n_groups)
            theta = mu + tau * nu
        pm.Normal("y", theta, workload.sigma, observed=workload.y)
    return model


def variable_names(workload):
    """The PyMC variables whose draws hold the workload's monitored coordinates."""
    return ("x",) if workload.kind == "gaussian" else ("mu", "tau", workload.group_name)


def select_draws(workload, draws):
    """Monitored coordinates from ``{name: (chain, draw, ...) array}`` of the
    :func:`variable_names` (``log_tau = log(tau)``)."""
    if workload.kind == "gaussian":
        return workload.select(x=draws["x"])
    return workload.select(mu=draws["mu"], log_tau=np.log(draws["tau"]),
                           group=draws[workload.group_name])


def select_from_posterior(workload, posterior):
    """Monitored coordinates from an ArviZ ``posterior`` group (dataset of (chain, draw, ...))."""
    return select_draws(workload, {name: posterior[name].values
                                   for name in variable_names(workload)})
