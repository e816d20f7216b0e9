"""Robust centre (COAT) and the distance filter of DFMR.

Both rules read only the m x m matrix D of L2 distances between local mixtures. They are
computed by the compiled core (``dfmr::center_index``, ``dfmr::distance_filter``), the same code
that :func:`dfmr.dfmr` and C/C++ pipelines run; these functions apply them to any matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._native import _core

__all__ = ["FilterDecision", "center_index", "distance_filter", "default_threshold", "filter_row"]


@dataclass(frozen=True)
class FilterDecision:
    """Which machines DFMR keeps, and why.

    Attributes
    ----------
    center : int
        Index of the centre machine.
    distance_to_center : ndarray of shape (m,)
        ``D[center, :]``.
    radius : float
        Entry ``floor(m/2)`` (0-based) of the sorted ``D[center, :]`` (self-distance included).
    threshold : float
        The multiplier kappa.
    cutoff : float
        ``threshold * radius``; machine i is kept iff ``D[center, i] <= cutoff``.
    retained : ndarray of int
        Sorted indices of the kept machines.
    """

    center: int
    distance_to_center: np.ndarray
    radius: float
    threshold: float
    cutoff: float
    retained: np.ndarray

    def rescaled(self, exponent: int) -> FilterDecision:
        """The same decision with every distance multiplied by ``2 ** exponent`` (exact)."""
        row = np.ldexp(self.distance_to_center, exponent)
        row.setflags(write=False)
        return FilterDecision(
            self.center, row, float(np.ldexp(self.radius, exponent)), self.threshold,
            float(np.ldexp(self.cutoff, exponent)), self.retained,
        )


def _check_distance_matrix(D: np.ndarray) -> np.ndarray:
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] == 0:
        raise ValueError(f"distance matrix must be square and non-empty, got shape {D.shape}.")
    if not np.all(np.isfinite(D)):
        raise ValueError("distance matrix contains NaN or infinity.")
    return D


def center_index(D: np.ndarray) -> int:
    """``argmin_i median(D[i, :])`` over all m entries of each row (self-distance included).

    The median is numpy's (linear interpolation); ties go to the lowest index.
    """
    return int(_core.center_index(_check_distance_matrix(D)))


def default_threshold(m: int) -> float:
    """The default multiplier ``kappa = m ** 0.1``."""
    return float(m) ** 0.1


def _check_threshold(threshold: float | None) -> float:
    """kappa for the core: 0.0 asks for the default ``m ** 0.1``."""
    if threshold is None:
        return 0.0
    try:
        kappa = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold (kappa) must be a finite number >= 1, got {threshold!r}.") from None
    if not (np.isfinite(kappa) and kappa >= 1.0):
        raise ValueError(f"threshold (kappa) must be a finite number >= 1, got {threshold!r}.")
    return kappa


def _decision(out: dict) -> FilterDecision:
    row = np.asarray(out["distance_to_center"], dtype=np.float64)
    retained = np.asarray(out["retained"], dtype=np.intp)
    for arr in (row, retained):
        arr.setflags(write=False)
    return FilterDecision(
        int(out["center"]), row, float(out["radius"]), float(out["threshold"]), float(out["cutoff"]), retained
    )


def distance_filter(D: np.ndarray, threshold: float | None = None) -> FilterDecision:
    """Keep the machines within ``threshold * radius`` of the centre.

    Parameters
    ----------
    D : ndarray of shape (m, m)
        L2 distances between local mixtures.
    threshold : float, optional
        kappa >= 1; ``None`` uses ``m ** 0.1``.
    """
    D = _check_distance_matrix(D)
    return _decision(_core.distance_filter(D, _check_threshold(threshold)))


def filter_row(center: int, row: np.ndarray, threshold: float | None = None) -> FilterDecision:
    """The filter of :func:`distance_filter` on a given centre's row of distances.

    For distances that are not one symmetric matrix (free site proportions compare every site
    with the centre's components in that site's own proportions, :mod:`dfmr.sites`): the radius
    is entry ``floor(m/2)`` (0-based) of the sorted row, machine i is kept iff
    ``row[i] <= threshold * radius``.

    Parameters
    ----------
    center : int
        Index of the centre machine (``row[center]`` is normally 0).
    row : ndarray of shape (m,)
        Distances of every machine to the centre, finite.
    threshold : float, optional
        kappa >= 1; ``None`` uses ``m ** 0.1``.
    """
    r = np.asarray(row, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"row must be a non-empty vector, got shape {r.shape}.")
    if not np.all(np.isfinite(r)):
        raise ValueError("row contains NaN or infinity.")
    if not (0 <= int(center) < r.size):
        raise ValueError(f"center must index the row (0..{r.size - 1}), got {center!r}.")
    return _decision(_core.filter_row(int(center), r, _check_threshold(threshold)))
