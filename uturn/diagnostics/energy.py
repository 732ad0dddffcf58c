"""Energy diagnostic of Hamiltonian Monte Carlo: the E-BFMI (Betancourt 2016)."""

import numpy as np

from ._common import as_draws

__all__ = ["ebfmi", "EBFMI_THRESHOLD"]

#: Below this E-BFMI a chain is flagged (Betancourt 2016; ArviZ ``bfmi``; CmdStanR
#: ``check_ebfmi``; CmdStan ``diagnose``).
EBFMI_THRESHOLD = 0.3


def ebfmi(energy):
    """Energy Bayesian fraction of missing information, one value per chain.

    ``E-BFMI = sum_{n>=2} (E_n - E_{n-1})^2 / sum_n (E_n - mean(E))^2`` for the
    Hamiltonian energies E_n of the draws of a chain (the ``energy`` sample stat).

    It estimates how well the momentum resampling at each transition lets the chain move
    between energy levels, compared with the spread of the energy distribution itself.
    Independent energies give about 2; values below 0.3 mean the sampler explores the
    energy levels slowly, typically because of heavy tails or a funnel, and that its
    estimates may be biased. Reparametrization usually helps.

    Parameters
    ----------
    energy : array_like
        Energies, shape (chains, draws); 1-D input is a single chain. Booleans and
        integers are cast to float.

    Returns
    -------
    numpy.ndarray
        Shape (chains,). NaN for a chain with fewer than 2 draws or constant energy.

    Raises
    ------
    ValueError
        On a bad shape or non-finite values (the message names `energy`).

    References
    ----------
    Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in
    Hamiltonian Monte Carlo. arXiv:1604.00695.
    """
    energies = as_draws(energy, name="energy", caller="ebfmi")
    if energies.shape[1] < 2:
        return np.full(energies.shape[0], np.nan)
    jumps = np.sum(np.diff(energies, axis=1) ** 2, axis=1)
    spread = np.sum((energies - energies.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = jumps / spread
    return np.where(spread > 0.0, values, np.nan)
