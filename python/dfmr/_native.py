"""Packing lists of mixtures for the compiled core (``dfmr._core``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _core
from ._validation import check_int
from .params import GaussianMixtureParams

__all__ = ["_core", "as_mixture_list", "pack", "unpack", "resolve_threads"]


def as_mixture_list(mixtures: Sequence[GaussianMixtureParams], what: str = "mixtures") -> list[GaussianMixtureParams]:
    """Check that ``mixtures`` is a non-empty sequence of mixtures of one dimension."""
    if isinstance(mixtures, GaussianMixtureParams):
        raise TypeError(
            f"{what}: expected a sequence of GaussianMixtureParams, got a single mixture; wrap it in a list."
        )
    try:
        out = list(mixtures)
    except TypeError:
        raise TypeError(
            f"{what}: expected a sequence of GaussianMixtureParams, got {type(mixtures).__name__}."
        ) from None
    if not out:
        raise ValueError(f"{what}: need at least one mixture, got none.")
    for i, f in enumerate(out):
        if not isinstance(f, GaussianMixtureParams):
            raise TypeError(
                f"{what}[{i}]: expected GaussianMixtureParams, got {type(f).__name__}; "
                "build it with dfmr.GaussianMixtureParams(weights, means, covariances)."
            )
    dims = {f.dim for f in out}
    if len(dims) > 1:
        raise ValueError(f"{what}: mixtures differ in dimension ({sorted(dims)}); all must share one d.")
    return out


def pack(mixtures: Sequence[GaussianMixtureParams]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate components: weights (N,), means (N, d), covariances (N, d, d), offsets (m + 1,)."""
    sizes = [f.n_components for f in mixtures]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return (
        np.concatenate([f.weights for f in mixtures]),
        np.concatenate([f.means for f in mixtures]),
        np.concatenate([f.covariances for f in mixtures]),
        offsets,
    )


def unpack(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, offsets: np.ndarray
) -> list[GaussianMixtureParams]:
    """Inverse of :func:`pack` for mixtures computed by the core."""
    return [
        GaussianMixtureParams._from_core(weights[a:b], means[a:b], covariances[a:b])
        for a, b in zip(offsets[:-1], offsets[1:])
    ]


def resolve_threads(n_threads: int | None) -> int:
    """``None`` or 0 means every hardware thread (the core's convention is 0)."""
    if n_threads is None:
        return 0
    return check_int(n_threads, "n_threads", 0)
