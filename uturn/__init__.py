"""uturn: a NUTS/HMC sampler written from scratch in Python and compiled with numba."""
__version__ = "0.1.0"

from .model import Model  # noqa: E402
