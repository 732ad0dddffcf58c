"""MCMC diagnostics in plain numpy/scipy, for any array of draws of shape (chains, draws).

Convergence and efficiency follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC", Bayesian Analysis 16(2), as Stan's posterior package and ArviZ do:

- `rhat` (rank-normalised split R-hat, max of `rhat_bulk` and `rhat_tail`), `rhat_basic`
- `ess_bulk`, `ess_tail`, `ess_mean`, `ess_sd`, `ess_quantile`
- `mcse_mean`, `mcse_sd`, `mcse_quantile`
- `ebfmi` (Betancourt 2016), one value per chain
- `summary` / `Summary`: the posterior table of a fit or a dict of draws
- `convergence_table`: R-hat, bulk and tail ESS (and the summary statistics) of many
  quantities at once, (chains, draws, k), vectorised; `checks` and `summary` use it
- `checks` / `Finding` / `warn` / `SamplingWarning` / `divergence_locations`: what went
  wrong in a run, where, and what to do about it

Conventions: a 1-D array is one chain; integer and boolean draws are cast to float; NaN
or infinite draws raise ValueError; constant draws and chains of fewer than 8 draws
(split halves of fewer than 4) give NaN.
"""

from .batch import convergence_table
from .checks import INFO, WARNING, Finding, SamplingWarning, checks, divergence_locations, warn
from .energy import EBFMI_THRESHOLD, ebfmi
from .ess import ess_bulk, ess_mean, ess_quantile, ess_sd, ess_tail
from .mcse import mcse_mean, mcse_quantile, mcse_sd
from .rhat import rhat, rhat_basic, rhat_bulk, rhat_tail
from .summary import SUMMARY_COLUMNS, Summary, summary

__all__ = [
    "rhat",
    "rhat_basic",
    "rhat_bulk",
    "rhat_tail",
    "ess_bulk",
    "ess_tail",
    "ess_mean",
    "ess_sd",
    "ess_quantile",
    "mcse_mean",
    "mcse_sd",
    "mcse_quantile",
    "ebfmi",
    "EBFMI_THRESHOLD",
    "summary",
    "Summary",
    "SUMMARY_COLUMNS",
    "convergence_table",
    "checks",
    "warn",
    "Finding",
    "SamplingWarning",
    "divergence_locations",
    "WARNING",
    "INFO",
]
