"""Monte Carlo standard errors (MCSE) of posterior summaries.

The MCSE is the standard deviation of an estimate's error due to using a finite number
of correlated draws. Report estimates with no more digits than their MCSE supports.
Every function takes the draws of one scalar quantity, shape (chains, draws); a 1-D
array is one chain.
"""

import math

import numpy as np

from ._common import as_draws, split_chains, too_short_to_split
from .ess import _check_probability, _ess_of_chains, _ess_of_indicator

__all__ = ["mcse_mean", "mcse_sd", "mcse_quantile"]

# Probabilities of a standard normal beyond -1 and +1 sd: the ends of a +/- 1 sd interval.
_ONE_SD_PROBABILITIES = (0.5 * math.erfc(1.0 / math.sqrt(2.0)),
                         0.5 * math.erfc(-1.0 / math.sqrt(2.0)))


def mcse_mean(x):
    """Monte Carlo standard error of the mean: ``sd(x) / sqrt(ess_mean(x))``.

    ``sd`` is the standard deviation of all draws (denominator S - 1) and `ess_mean` the
    split-chain ESS of the raw draws, so for draws with a finite variance this is the
    standard error of the mean estimate, accounting for autocorrelation.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.

    Returns
    -------
    float
        NaN when `ess_mean` is NaN (constant draws or chains of fewer than 8 draws).

    Raises
    ------
    ValueError
        On a bad shape or non-finite values.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 3.2.
    """
    draws = as_draws(x, caller="mcse_mean")
    return _mcse_mean_of_draws(draws)


def _mcse_mean_of_draws(draws):
    ess = _ess_of_chains(split_chains(draws))
    if np.isnan(ess):
        return np.nan
    return float(draws.std(ddof=1) / math.sqrt(ess))


def mcse_sd(x):
    """Monte Carlo standard error of the standard deviation, without assuming normality.

    With ``c = x - mean(x)``, the variance of the variance estimate is
    ``Var(s^2) ~ (mean(c^4) - mean(c^2)^2) / ESS`` (Kenney & Keeping 1951, p. 141) with
    ESS the split-chain ESS of ``c^2``, and by the first-order Taylor expansion of the
    square root, ``Var(s) ~ Var(s^2) / (4 mean(c^2))``. Returns ``sqrt(Var(s))``, as
    Stan's posterior package (version 1.5) and ArviZ do.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.

    Returns
    -------
    float
        NaN for constant draws or chains of fewer than 8 draws.

    Raises
    ------
    ValueError
        On a bad shape or non-finite values.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718.
    Kenney, J. F. & Keeping, E. S. (1951). Mathematics of Statistics, part 2, 2nd ed.
    Van Nostrand, Princeton.
    """
    draws = as_draws(x, caller="mcse_sd")
    return _mcse_sd_of_draws(draws)


def _mcse_sd_of_draws(draws):
    if too_short_to_split(draws):
        return np.nan
    squared_deviations = (draws - draws.mean()) ** 2
    ess = _ess_of_chains(split_chains(squared_deviations))
    if np.isnan(ess):
        return np.nan
    mean_square = squared_deviations.mean()
    variance_of_variance = (np.mean(squared_deviations**2) - mean_square**2) / ess
    return float(math.sqrt(max(variance_of_variance, 0.0) / mean_square / 4.0))


def mcse_quantile(x, q):
    """Monte Carlo standard error of the q-quantile (Vehtari et al. 2021, sec. 4.4).

    With ``E = ess_quantile(x, q)``, the uncertainty of the quantile's rank is that of a
    Beta(E q + 1, E (1 - q) + 1) distributed probability; its 15.87% and 84.13% quantiles
    a1 and a2 (a normal +/- 1 sd) are mapped to draws through the sorted draws,
    ``th1 = x_(max(floor(a1 S), 1))`` and ``th2 = x_(min(ceil(a2 S), S))`` (1-based order
    statistics of all S draws), and ``MCSE = (th2 - th1) / 2``. Valid without finite
    moments.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.
    q : float
        Probability, strictly between 0 and 1.

    Returns
    -------
    float
        NaN when `ess_quantile` is NaN.

    Raises
    ------
    ValueError
        On a bad shape, non-finite values, or q outside (0, 1).

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 4.4.
    """
    prob = _check_probability(q, "mcse_quantile")
    draws = as_draws(x, caller="mcse_quantile")
    if too_short_to_split(draws):
        return np.nan
    ess = _ess_of_indicator(draws, np.quantile(draws, prob))
    return _mcse_quantile_from_ess(draws, prob, ess)


def _mcse_quantile_from_ess(draws, prob, ess):
    if np.isnan(ess):
        return np.nan
    from scipy.stats import beta  # imported here: scipy.stats costs 0.3 s at import

    lower_prob, upper_prob = beta.ppf(_ONE_SD_PROBABILITIES, ess * prob + 1, ess * (1 - prob) + 1)
    size = draws.size
    # 1-based order statistics as in the paper, shifted to 0-based indices.
    lower_index = max(math.floor(lower_prob * size), 1) - 1
    upper_index = min(math.ceil(upper_prob * size), size) - 1
    order_statistics = np.partition(draws.ravel(), (lower_index, upper_index))
    return float((order_statistics[upper_index] - order_statistics[lower_index]) / 2.0)
