"""dfmr: distributed, Byzantine-tolerant learning of finite Gaussian mixtures."""

from .params import LIMITS, GaussianMixtureParams, InvalidMixtureError

__all__ = ["GaussianMixtureParams", "InvalidMixtureError", "LIMITS"]
__version__ = "0.1.0"
