"""Built-in models with hand-coded log densities and gradients, and their exact answers.

* :func:`hierarchical_normal` - the normal-normal hierarchical model (J groups,
  centered or non-centered); :func:`exact_posterior` gives its exact posterior.
* :func:`eight_schools` - Gelman's eight schools on top of it.
* :func:`funnel` - Neal's funnel; :func:`funnel_exact` gives its exact marginals.
* :func:`iid_gaussian`, :func:`diagonal_gaussian`, :func:`dense_gaussian` - analytic
  Gaussians whose ``mean`` and ``cov`` are exact.
"""
from .hierarchical import hierarchical_normal
from .eight_schools import eight_schools
from .funnel import funnel, funnel_exact
from .exact import exact_posterior
from .gaussian import (GaussianModel, dense_gaussian, diagonal_gaussian, iid_gaussian,
                       random_correlated_gaussian)

__all__ = ["hierarchical_normal", "eight_schools", "funnel", "funnel_exact",
           "exact_posterior", "GaussianModel", "iid_gaussian", "diagonal_gaussian",
           "dense_gaussian", "random_correlated_gaussian"]
