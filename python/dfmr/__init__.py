"""dfmr: distributed, Byzantine-tolerant learning of finite Gaussian mixtures.

Local machines fit mixtures; :func:`dfmr` filters the local estimates by their L2
distance to a robust centre and reduces the rest to one K-component mixture.
"""

from importlib import metadata as _metadata

from . import (
    covariance,
    executor,
    filtering,
    information,
    io,
    metrics,
    partition,
    reduction,
    selection,
    simulate,
    sources,
    summary,
)
from .aggregate import AggregationResult, coat, dfmr, mr, tkb
from .distances import l2_distance, pairwise_l2
from .estimator import DistributedGaussianMixture, NotFittedError
from .local import fit_local
from .params import LIMITS, GaussianMixtureParams, InvalidMixtureError
from .robust import robust_dfmr
from .selection import criterion_table

__all__ = [
    "GaussianMixtureParams", "InvalidMixtureError", "LIMITS",
    "pairwise_l2", "l2_distance",
    "dfmr", "mr", "coat", "tkb", "AggregationResult", "fit_local", "robust_dfmr",
    "DistributedGaussianMixture", "NotFittedError", "criterion_table",
    "filtering", "partition", "reduction", "simulate", "metrics", "io", "summary", "information",
    "executor", "sources", "covariance", "selection",
]
__version__ = _metadata.version("dfmr")  # single source: pyproject.toml
