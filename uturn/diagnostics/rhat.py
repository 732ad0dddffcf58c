"""Potential scale reduction factor R-hat: classic split R-hat and the rank-normalised,
folded R-hat of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021).

Every function takes the draws of one scalar quantity, shape (chains, draws); a 1-D
array is one chain. R-hat near 1 means the chains agree; Vehtari et al. recommend
running at least four chains and using them only when R-hat < 1.01.
"""

import numpy as np

from ._common import as_draws, both, enough_draws, fold, is_constant, rank_normalize, split_chains

__all__ = ["rhat", "rhat_bulk", "rhat_tail", "rhat_basic"]


def _potential_scale_reduction(chains):
    """R-hat of prepared chains, shape (M, N), with N >= 2 (Vehtari et al. 2021, sec. 3.1).

    ``B = N/(M-1) sum_m (mean_m - mean)^2``, ``W = mean_m s_m^2`` and
    ``R-hat = sqrt(((N-1)/N W + B/N) / W)``. Returns NaN for constant input, and inf
    when every chain is constant but the chains differ.
    """
    n_chains, n_draws = chains.shape
    if n_chains < 2 or n_draws < 2 or is_constant(chains):
        return np.nan
    chain_means = chains.mean(axis=1)
    between = n_draws * chain_means.var(ddof=1)
    within = chains.var(axis=1, ddof=1).mean()
    if within == 0.0:
        return np.inf
    return float(np.sqrt(((n_draws - 1) / n_draws * within + between / n_draws) / within))


def _rhat_of_split(split):
    """R-hat of already split chains; NaN when a split chain has too few draws."""
    if not enough_draws(split):
        return np.nan
    return _potential_scale_reduction(split)


def rhat_basic(x, split=True):
    """Classic (split) R-hat of Gelman et al. (2013), without rank normalisation.

    With ``split=True`` each chain is first cut in two halves (the middle draw is left
    out when the count is odd), so that a trend within a chain also raises R-hat.

    ``R-hat = sqrt(((N-1)/N W + B/N) / W)`` with N draws per (split) chain, M chains,
    ``B = N/(M-1) sum_m (mean_m - mean)^2`` and ``W = mean_m s_m^2``.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.
        Booleans and integers are cast to float.
    split : bool, default True
        Split the chains in halves first.

    Returns
    -------
    float
        R-hat; NaN if the draws are constant, if a (split) chain has fewer than 4 draws,
        or (``split=False``) with a single chain; inf if every chain is constant but the
        chains differ from each other.

    Raises
    ------
    ValueError
        On a bad shape or non-finite values.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 3.1 (split-R-hat),
    section 4 (rank normalisation, folding, and the recommended maximum of both).
    """
    draws = as_draws(x, caller="rhat_basic")
    chains = split_chains(draws) if split else draws
    return _rhat_of_split(chains)


def _rhat_bulk_of_split(split):
    if not enough_draws(split) or is_constant(split):
        return np.nan
    return _potential_scale_reduction(rank_normalize(split))


def _rhat_tail_of_split(split):
    if not enough_draws(split):
        return np.nan
    folded = fold(split)
    if is_constant(folded):
        return np.nan
    return _potential_scale_reduction(rank_normalize(folded))


def rhat_bulk(x):
    """Bulk R-hat: split R-hat of the rank-normalised draws (Vehtari et al. 2021, sec. 4).

    The draws of all split chains are pooled, replaced by their ranks r (ties averaged),
    mapped to normal scores ``z = Phi^{-1}((r - 3/8)/(S + 1/4))``, and the classic
    formula ``sqrt(((N-1)/N W + B/N) / W)`` is applied to z. Because only ranks
    matter, the result does not change under any strictly increasing transformation
    of `x`, and it is well defined for heavy-tailed draws without a finite mean.
    Detects chains that differ in location.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain (its two
        halves are compared).

    Returns
    -------
    float
        NaN if the draws are constant or a split chain has fewer than 4 draws (chains of
        fewer than 8 draws); inf if each split chain is constant but they differ.

    Raises
    ------
    ValueError
        On a bad shape or non-finite values.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 3.1 (split-R-hat),
    section 4 (rank normalisation, folding, and the recommended maximum of both).
    """
    return _rhat_bulk_of_split(split_chains(as_draws(x, caller="rhat_bulk")))


def rhat_tail(x):
    """Tail (folded) R-hat: bulk R-hat of ``|x - median(x)|`` (Vehtari et al. 2021, sec. 4).

    The chains are split, the split draws folded around their median and the result
    rank-normalised as in `rhat_bulk`. Folding turns differences in scale into
    differences in location, so this detects a chain with a different variance that
    the bulk R-hat misses. (The median is that of the split draws, as in Stan and
    ArviZ; Stan's posterior package folds before splitting, which differs only when
    the number of draws is odd, by the middle draw.)

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.

    Returns
    -------
    float
        NaN if the folded draws are constant (e.g. draws taking two values symmetric
        about their median) or a split chain has fewer than 4 draws.

    Raises
    ------
    ValueError
        On a bad shape or non-finite values.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 3.1 (split-R-hat),
    section 4 (rank normalisation, folding, and the recommended maximum of both).
    """
    return _rhat_tail_of_split(split_chains(as_draws(x, caller="rhat_tail")))


def rhat(x):
    """Rank-normalised split R-hat: ``max(rhat_bulk(x), rhat_tail(x))``.

    This is the R-hat recommended by Vehtari et al. (2021, section 4.3) and reported by
    Stan's posterior package and ArviZ (``method="rank"``). The bulk part catches chains
    that disagree in location, the folded part chains that disagree in scale. Use the
    draws only if it is below 1.01 (with at least four chains).

    For arrays of at least 2**20 values the folded part is computed in a second
    thread while the bulk part runs (same result, about half the time on two free
    cores).

    Note that, unlike `rhat_bulk`, the folded part depends on the scale of `x`
    (folding around the median is not preserved by nonlinear transformations); both
    parts are invariant to positive affine transformations.

    Parameters
    ----------
    x : array_like
        Draws of one scalar, shape (chains, draws); 1-D input is a single chain.
        Booleans and integers are cast to float.

    Returns
    -------
    float
        NaN if either part is NaN: for constant draws (as posterior and ArviZ return),
        for chains of fewer than 8 draws (split halves of fewer than 4), and for draws
        whose folded values are constant.

    Raises
    ------
    ValueError
        On a bad shape or non-finite values (the message names the argument).

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718. Section 3.1 (split-R-hat),
    section 4 (rank normalisation, folding, and the recommended maximum of both).
    """
    split = split_chains(as_draws(x, caller="rhat"))
    if not enough_draws(split) or is_constant(split):
        return np.nan
    bulk, tail = both(
        lambda: _rhat_bulk_of_split(split),
        lambda: _rhat_tail_of_split(split),
        split.size,
    )
    if np.isnan(bulk):
        return np.nan
    return float(max(bulk, tail)) if not np.isnan(tail) else np.nan
