r"""Gelman's eight schools: the data and the model.

Eight schools ran coaching programmes for the SAT-V; ``Y[j]`` is the estimated
effect of school j's programme and ``SIGMA[j]`` its standard error (Rubin 1981;
Gelman et al. 2013, section 5.5). The model is the normal-normal hierarchical
model of :mod:`uturn.models.hierarchical` with the priors of the classic PyMC
notebook: :math:`\mu \sim \mathcal N(0, 5^2)`, :math:`\tau \sim \text{Half-Cauchy}(0, 5)`.

Two reference values of :math:`E[\log\tau \mid y]` circulate:

* ``NOTEBOOK_MEAN_LOG_TAU = 0.7657852`` is the line the notebook draws. It is
  itself an MCMC estimate (a long non-centered run), about 3 Monte Carlo
  standard errors of a 10,000-draw run below the truth.
* ``EXACT_MEAN_LOG_TAU = 0.8021392107784913`` is exact (quadrature, see
  :func:`uturn.models.exact_posterior`). Test against this one.
"""
import numpy as np

from .hierarchical import hierarchical_normal

__all__ = ["eight_schools", "Y", "SIGMA", "NOTEBOOK_MEAN_LOG_TAU", "EXACT_MEAN_LOG_TAU"]

#: Estimated coaching effects of the eight schools (SAT-V points).
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
#: Their standard errors.
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
# Module-level data must not be edited by accident (np.asarray(Y) shares memory).
Y.flags.writeable = False
SIGMA.flags.writeable = False

#: E[log tau | y] as drawn in the classic PyMC3 notebook: an MCMC estimate, not exact.
NOTEBOOK_MEAN_LOG_TAU = 0.7657852
#: The exact E[log tau | y] by quadrature (shared/reference/eight_schools.json).
EXACT_MEAN_LOG_TAU = 0.8021392107784913


def eight_schools(centered=True):
    r"""Gelman's eight schools as a :class:`uturn.Model`.

    .. math::

        \mu \sim \mathcal N(0, 5^2), \quad \tau \sim \text{Half-Cauchy}(0, 5), \quad
        \theta_j \sim \mathcal N(\mu, \tau^2), \quad
        y_j \sim \mathcal N(\theta_j, \sigma_j^2), \quad j = 0..7,

    with ``y = Y`` and ``sigma = SIGMA``.

    Parameters
    ----------
    centered : bool, default True
        ``True``: coordinates ``mu, log_tau, theta[0..7]``; the posterior has a
        funnel between ``log_tau`` and ``theta``, NUTS reports divergences and
        overestimates E[log tau] (it cannot enter the funnel's neck).
        ``False``: coordinates ``mu, log_tau, nu[0..7]`` with
        ``theta = mu + tau * nu``; no funnel.

    Returns
    -------
    uturn.Model
        See :func:`uturn.models.hierarchical_normal` (dim 10).

    References
    ----------
    Rubin, D. B. (1981). Estimation in parallel randomized experiments.
    *Journal of Educational Statistics* 6(4), 377-401.

    Gelman, A. et al. (2013). *Bayesian Data Analysis*, 3rd ed., section 5.5.

    Betancourt, M. and Girolami, M. (2015). Hamiltonian Monte Carlo for
    hierarchical models.
    """
    return hierarchical_normal(Y, SIGMA, centered=centered, mu_scale=5.0, tau_scale=5.0)
