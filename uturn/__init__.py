"""uturn: a NUTS/HMC sampler written from scratch in Python and compiled with numba.

>>> import uturn
>>> fit = uturn.sample(uturn.models.eight_schools(centered=False), seed=1)  # doctest: +SKIP
>>> print(fit.summary())                                                     # doctest: +SKIP
"""
__version__ = "0.1.0"

from .model import Model  # noqa: E402
from .fit import Fit  # noqa: E402
from .sampling import sample, InitializationError, SamplingError  # noqa: E402
from . import models, diagnostics  # noqa: E402
from .io import load  # noqa: E402
from .diagnostics import SamplingWarning  # noqa: E402

__all__ = ["sample", "Model", "Fit", "models", "diagnostics", "load", "SamplingWarning",
           "InitializationError", "SamplingError", "__version__"]
