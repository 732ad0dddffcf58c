"""Effective sample size (ESS) of Markov chains, following Vehtari, Gelman, Simpson,
Carpenter & Bürkner (2021) and Stan's ``analyze/mcmc/ess.hpp``.

Every public function takes the draws of one scalar quantity, shape (chains, draws); a
1-D array is one chain. The ESS of an estimate is the number of independent draws that
would estimate it as precisely as the chains do. Aim for at least 100 per chain for the
bulk and tail ESS (Vehtari et al. 2021).
"""

import math

import numpy as np

from ._common import (
    MIN_DRAWS_PER_CHAIN,
    as_draws,
    both,
    is_constant,
    rank_normalize,
    split_chains,
    too_short_to_split,
)

__all__ = ["ess_bulk", "ess_tail", "ess_mean", "ess_sd", "ess_quantile"]

# Well-mixing chains end Geyer's sum after a few lags, so for large arrays the
# autocovariances are first computed for a few lags only: directly (a handful of dot
# products, about as costly per lag as a pass over the draws), then, if the sum has
# not ended, by an FFT padded just enough for N/8 lags, and only then for all lags.
# Every stage gives the same autocovariances, so the ESS does not depend on the stage.
_DIRECT_LAG_STAGES = (8, 24)
_STAGED_MIN_VALUES = 1 << 16

_TAIL_PROBABILITIES = (0.05, 0.95)


def _lag_schedule(n_chains, n_draws):
    """Numbers of lags to try, increasing, ending with all of them."""
    if n_chains * n_draws < _STAGED_MIN_VALUES:
        return [n_draws]
    stages = [lags for lags in (*_DIRECT_LAG_STAGES, n_draws // 8) if lags < n_draws]
    return sorted(set(stages)) + [n_draws]


def _direct_autocovariance_sums(centered, first_lag, stop_lag):
    """``sum_m sum_n y_mn y_m(n+t)`` for lags first_lag <= t < stop_lag, summed directly.

    einsum rather than np.dot: a BLAS dot may start threads, which on a busy machine
    made it a hundred times slower.
    """
    n_draws = centered.shape[1]
    return np.array(
        [
            np.einsum("ij,ij->", centered[:, : n_draws - lag], centered[:, lag:])
            for lag in range(first_lag, stop_lag)
        ]
    )


def _mean_autocovariance(centered, n_lags, known=None):
    """Autocovariance at lags 0..n_lags-1 of centred chains (M, N), averaged over chains.

    For each chain the biased estimate ``acov_m(t) = 1/N sum_{n<N-t} y_n y_{n+t}``
    (the one Geyer 1992 recommends). Up to 24 lags are summed directly, extending the
    lags already `known`; more come from one real FFT of length
    ``next_fast_len(N + n_lags - 1)``: zero padding to at least N + t makes the
    circular correlation at lag t equal the linear one.
    """
    n_chains, n_draws = centered.shape
    if n_lags <= _DIRECT_LAG_STAGES[-1]:
        known = np.empty(0) if known is None else known
        extra = _direct_autocovariance_sums(centered, known.size, n_lags) / (n_chains * n_draws)
        return np.concatenate([known, extra])
    from scipy.fft import irfft, next_fast_len, rfft  # 0.2 s to import: on first use
    padded = next_fast_len(n_draws + n_lags - 1, real=True)
    spectrum = rfft(centered, n=padded, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    lagged_sums = irfft(power, n=padded, axis=1)[:, :n_lags]
    return lagged_sums.mean(axis=0) / n_draws


def _ess_from_autocovariance(acov, chain_means, n_draws):
    """Geyer's initial monotone sequence estimate of ESS (Vehtari et al. 2021, sec. 3.2).

    With W the mean within-chain variance and ``var+ = (N-1)/N W + B/N``, the
    combined autocorrelation is ``rho_t = 1 - (W - mean_m acov_m(t)) / var+``
    (``rho_0 = 1``). The pair sums ``P_k = rho_2k + rho_2k+1`` are summed while they
    stay positive (and ``2k < N - 5``), made non-increasing (Geyer's monotone
    sequence), and ``tau = -1 + 2 sum_{k<K} P_k + rho_2K``, where the last term, the
    even autocorrelation of the pair that ended the sum, is added when it is positive
    or its pair sum is non-negative (it reduces the variance for antithetic chains).
    Finally ``tau >= 1/log10(MN)``, which caps ESS at ``MN log10(MN)``, and
    ``ESS = MN / tau``.

    Returns None when `acov` holds too few lags to finish the sum.
    """
    n_chains = chain_means.size
    total_draws = n_chains * n_draws
    # acov[0] is the mean of the biased variances: (N-1)/N W.
    within = acov[0] * n_draws / (n_draws - 1)
    between_over_n = chain_means.var(ddof=1) if n_chains > 1 else 0.0
    var_plus = acov[0] + between_over_n
    rho = 1.0 - (within - acov) / var_plus
    rho[0] = 1.0
    n_pairs = rho.size // 2
    pair_sums = rho[0 : 2 * n_pairs : 2] + rho[1 : 2 * n_pairs : 2]
    lag_of_pair = 2 * np.arange(n_pairs)
    # The sum continues past pair k only while P_k > 0 (False for NaN) and 2k < N - 5.
    ends_sum = ~(pair_sums > 0.0) | (lag_of_pair >= n_draws - 5)
    if not ends_sum.any():
        return None
    last_pair = int(np.argmax(ends_sum))
    last_even = rho[2 * last_pair]
    if last_pair == 0 or last_even > 0.0 or pair_sums[last_pair] >= 0.0:
        last_term = last_even
    else:
        last_term = 0.0
    monotone = np.minimum.accumulate(pair_sums[:last_pair])
    tau = -1.0 + 2.0 * float(monotone.sum()) + float(last_term)
    tau = max(tau, 1.0 / math.log10(total_draws))
    return total_draws / tau


def _ess_of_chains(chains):
    """ESS of prepared (already split or transformed) chains of shape (M, N).

    NaN when a chain has fewer than 4 draws or all values are equal.
    """
    n_chains, n_draws = chains.shape
    if n_draws < MIN_DRAWS_PER_CHAIN or is_constant(chains):
        return np.nan
    chain_means = chains.mean(axis=1)
    centered = chains - chain_means[:, np.newaxis]
    acov = None
    for n_lags in _lag_schedule(n_chains, n_draws):
        acov = _mean_autocovariance(centered, n_lags, known=acov)
        ess = _ess_from_autocovariance(acov, chain_means, n_draws)
        if ess is not None:
            return float(ess)
    raise AssertionError("unreachable: with all lags Geyer's sum always ends")


def _check_probability(q, caller):
    try:
        prob = float(q)
    except (TypeError, ValueError):
        raise ValueError(f"{caller}(): q must be a number in (0, 1), got {q!r}") from None
    if not 0.0 < prob < 1.0:
        raise ValueError(f"{caller}(): q must be strictly between 0 and 1, got {q!r}")
    return prob


def _ess_of_indicator(draws, threshold):
    return _ess_of_chains(split_chains((draws <= threshold).astype(np.float64)))


def ess_bulk(x):
    """Bulk effective sample size: ESS of the rank-normalised split chains.

    The chains are split in halves, the pooled draws replaced by normal scores of their
    ranks, ``z = Phi^{-1}((r - 3/8)/(S + 1/4))``, and the ESS of z computed as in
    `ess_mean`: ``ESS = MN / tau`` with ``tau = -1 + 2 sum_{k<K} P_k + rho_2K`` from
    Geyer's initial monotone sequence of autocorrelation pair sums (computed by FFT and
    combined across chains through ``rho_t = 1 - (W - mean_m acov_m(t)) / var+``).
    Measures how well the centre of the distribution (mean, median) is estimated; well
    defined even without finite moments, and unchanged by any strictly increasing
    transformation of `x`.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.
        Booleans and integers are cast to float.

    Returns
    -------
    float
        NaN if the draws are constant or a chain has fewer than 8 draws (split halves of
        fewer than 4). At most ``S log10(S)`` for S split draws (antithetic chains can
        exceed S).

    Raises
    ------
    ValueError
        On a bad shape or non-finite values (the message names the argument).

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Sections 3.2 and 4.
    Geyer, C. J. (1992). Practical Markov chain Monte Carlo. Statistical Science 7(4).
    """
    split = split_chains(as_draws(x, caller="ess_bulk"))
    if split.shape[1] < MIN_DRAWS_PER_CHAIN or is_constant(split):
        return np.nan
    return _ess_of_chains(rank_normalize(split))


def ess_quantile(x, q):
    """Effective sample size of the q-quantile estimate.

    The ESS of the indicator ``I(x <= Q_q)``, where ``Q_q`` is the empirical q-quantile
    of all draws (linear interpolation, numpy's default and R's type 7), computed on the
    split chains as in `ess_mean`. Unchanged by strictly increasing transformations.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.
    q : float
        Probability, strictly between 0 and 1.

    Returns
    -------
    float
        NaN if the indicator is constant (e.g. q = 0.95 for a binary quantity that is 1
        in more than 5% of the draws) or a chain has fewer than 8 draws.

    Raises
    ------
    ValueError
        On a bad shape, non-finite values, or q outside (0, 1).

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 4 (localisation:
    efficiency of quantiles).
    """
    prob = _check_probability(q, "ess_quantile")
    draws = as_draws(x, caller="ess_quantile")
    if too_short_to_split(draws):
        return np.nan
    return _ess_of_indicator(draws, np.quantile(draws, prob))


def ess_tail(x):
    """Tail effective sample size: ``min(ess_quantile(x, 0.05), ess_quantile(x, 0.95))``.

    Measures how well the tails (5% and 95% quantiles, hence intervals and variances)
    are estimated.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.

    Returns
    -------
    float
        NaN if either quantile's ESS is NaN (constant draws, chains of fewer than 8
        draws, or an indicator that is constant, as for a binary quantity); this follows
        Stan's posterior package.

    Raises
    ------
    ValueError
        On a bad shape or non-finite values.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 4.
    """
    draws = as_draws(x, caller="ess_tail")
    return _ess_tail_of_draws(draws)


def _ess_tail_of_draws(draws):
    if too_short_to_split(draws):
        return np.nan
    lower, upper = np.quantile(draws, _TAIL_PROBABILITIES)
    ess_lower, ess_upper = both(
        lambda: _ess_of_indicator(draws, lower),
        lambda: _ess_of_indicator(draws, upper),
        draws.size,
    )
    if np.isnan(ess_lower) or np.isnan(ess_upper):
        return np.nan
    return min(ess_lower, ess_upper)


def ess_mean(x):
    """Effective sample size of the mean: split-chain ESS of the raw draws.

    ``ESS = MN / tau`` for M split chains of N draws, ``tau = -1 + 2 sum_{k<K} P_k +
    rho_2K`` with ``P_k = rho_2k + rho_2k+1`` the pair sums of the combined
    autocorrelation ``rho_t = 1 - (W - mean_m acov_m(t)) / var+`` (autocovariances by
    FFT), truncated at the first non-positive pair sum and made monotone (Geyer 1992),
    and ``tau >= 1/log10(MN)``. Requires a finite variance to be meaningful; prefer
    `ess_bulk` otherwise.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.

    Returns
    -------
    float
        NaN if the draws are constant or a chain has fewer than 8 draws.

    Raises
    ------
    ValueError
        On a bad shape or non-finite values.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 3.2.
    Geyer, C. J. (1992). Practical Markov chain Monte Carlo. Statistical Science 7(4).
    """
    return _ess_of_chains(split_chains(as_draws(x, caller="ess_mean")))


def ess_sd(x):
    """Effective sample size of the standard deviation: ESS of ``|x - mean(x)|``.

    Uses the split-chain ESS (as `ess_mean`) of the absolute deviations from the mean
    of all draws, the definition of Stan's posterior package (version 1.5).

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.

    Returns
    -------
    float
        NaN if the deviations are constant or a chain has fewer than 8 draws.

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
    draws = as_draws(x, caller="ess_sd")
    if too_short_to_split(draws):
        return np.nan
    return _ess_of_chains(split_chains(np.abs(draws - draws.mean())))
