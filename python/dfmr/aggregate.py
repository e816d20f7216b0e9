"""Aggregation of local mixture estimates: DFMR, MR, COAT and TKB."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._native import as_mixture_list
from .distances import pairwise_l2_scaled
from .filtering import FilterDecision, center_index, distance_filter
from .params import GaussianMixtureParams
from .reduction import ReductionResult, reduce_mixtures

__all__ = ["AggregationResult", "dfmr", "mr", "coat", "tkb"]


@dataclass(frozen=True)
class AggregationResult:
    """An aggregate of local mixtures and how it was obtained.

    Attributes
    ----------
    mixture : GaussianMixtureParams
        The aggregated mixture.
    method : str
        ``"dfmr"``, ``"mr"``, ``"coat"`` or ``"tkb"``.
    n_machines : int
        Number of local estimates received.
    retained : ndarray of int
        Sorted indices of the machines whose estimates entered the aggregate.
    center : int or None
        Centre machine (DFMR, COAT).
    distances : ndarray of shape (m, m) or None
        Pairwise L2 distances (DFMR, COAT).
    objective : float or None
        Final reduction objective (DFMR, MR, TKB).
    n_iter : int
        MM updates of the winning start (0 for COAT).
    converged : bool
        Whether the reduction converged (True for COAT).
    filter : FilterDecision or None
        Centre, radius, threshold, cut-off and per-machine distances (DFMR).
    reduction : ReductionResult or None
        Details of the reduction: objective trace, transport plan, starts.
    n_components_requested : int or None
        The K asked for; ``mixture.n_components`` is smaller when components were dropped.
    alpha : float or None
        Trimming level (TKB).
    """

    mixture: GaussianMixtureParams
    method: str
    n_machines: int
    retained: np.ndarray
    center: int | None = None
    distances: np.ndarray | None = None
    objective: float | None = None
    n_iter: int = 0
    converged: bool = True
    filter: FilterDecision | None = None
    reduction: ReductionResult | None = field(default=None, repr=False)
    n_components_requested: int | None = None
    alpha: float | None = None

    @property
    def distance_to_center(self) -> np.ndarray | None:
        """``D[center, :]``, or None when no centre was computed."""
        if self.distances is None or self.center is None:
            return None
        return self.distances[self.center]

    @property
    def kept(self) -> np.ndarray:
        """Boolean mask over machines: True where the estimate was retained."""
        mask = np.zeros(self.n_machines, dtype=bool)
        mask[self.retained] = True
        return mask

    def summary(self) -> str:
        """A plain-text report: settings, per-machine decisions and the aggregated mixture."""
        from .summary import aggregation_summary

        return aggregation_summary(self)

    def __repr__(self) -> str:
        return (
            f"AggregationResult(method={self.method!r}, n_machines={self.n_machines}, "
            f"retained={len(self.retained)}, center={self.center}, n_components={self.mixture.n_components})"
        )


def _reduce_machines(
    mixtures: list[GaussianMixtureParams],
    n_components: int,
    trim: float,
    tol: float,
    max_iter: int,
    n_threads: int | None,
) -> ReductionResult:
    res = reduce_mixtures(mixtures, n_components, trim=trim, tol=tol, max_iter=max_iter, n_threads=n_threads)
    if res.mixture.n_components < n_components:
        warnings.warn(
            f"the reduced mixture has {res.mixture.n_components} components, fewer than the "
            f"{n_components} requested: the others received no mass and were dropped.",
            RuntimeWarning,
            stacklevel=3,
        )
    return res


def dfmr(
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    threshold: float | None = None,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
) -> AggregationResult:
    """Distance-filtered mixture reduction (Zhang, Tan & Chen 2026).

    Computes the L2 distances between all local mixtures, takes the machine with the
    smallest median distance as the centre, keeps the machines within
    ``threshold * r`` of it (``r`` the ``floor(m/2)``-th smallest distance from the
    centre) and reduces the retained estimates by :func:`mr`.

    Parameters
    ----------
    mixtures : sequence of GaussianMixtureParams
        The m local estimates.
    n_components : int
        K, the number of components of the aggregate.
    threshold : float, optional
        kappa >= 1; ``None`` uses ``m ** 0.1``.
    tol, max_iter : float, int
        Convergence control of the reduction.
    n_threads : int, optional
        Threads for distances and reduction starts; ``None`` uses all.

    Returns
    -------
    AggregationResult
    """
    mixtures = as_mixture_list(mixtures)
    # The filter compares distances with each other: it runs on the scaled matrix, which
    # stays informative where the distances themselves would underflow.
    scaled, exponent = pairwise_l2_scaled(mixtures, n_threads=n_threads)
    decision = distance_filter(scaled, threshold).rescaled(exponent)
    kept = [mixtures[i] for i in decision.retained]
    red = _reduce_machines(kept, n_components, 0.0, tol, max_iter, n_threads)
    return AggregationResult(
        mixture=red.mixture, method="dfmr", n_machines=len(mixtures), retained=decision.retained,
        center=decision.center, distances=np.ldexp(scaled, exponent), objective=red.objective, n_iter=red.n_iter,
        converged=red.converged, filter=decision, reduction=red, n_components_requested=int(n_components),
    )


def mr(
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
) -> AggregationResult:
    """Mixture reduction of all local estimates (Zhang & Chen 2022), no filtering."""
    mixtures = as_mixture_list(mixtures)
    red = _reduce_machines(mixtures, n_components, 0.0, tol, max_iter, n_threads)
    return AggregationResult(
        mixture=red.mixture, method="mr", n_machines=len(mixtures), retained=np.arange(len(mixtures)),
        objective=red.objective, n_iter=red.n_iter, converged=red.converged, reduction=red,
        n_components_requested=int(n_components),
    )


def tkb(
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    alpha: float = 0.5,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
) -> AggregationResult:
    """Trimmed k-barycenter: MR transporting only the cheapest ``1 - alpha`` of the pooled mass."""
    mixtures = as_mixture_list(mixtures)
    if not (0.0 <= alpha < 1.0):
        raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}.")
    red = _reduce_machines(mixtures, n_components, float(alpha), tol, max_iter, n_threads)
    return AggregationResult(
        mixture=red.mixture, method="tkb", n_machines=len(mixtures), retained=np.arange(len(mixtures)),
        objective=red.objective, n_iter=red.n_iter, converged=red.converged, reduction=red,
        n_components_requested=int(n_components), alpha=float(alpha),
    )


def coat(mixtures: Sequence[GaussianMixtureParams], *, n_threads: int | None = None) -> AggregationResult:
    """The centre machine's own estimate: the local mixture with the smallest median L2 distance."""
    mixtures = as_mixture_list(mixtures)
    scaled, exponent = pairwise_l2_scaled(mixtures, n_threads=n_threads)
    c = center_index(scaled)
    return AggregationResult(
        mixture=mixtures[c], method="coat", n_machines=len(mixtures), retained=np.array([c]),
        center=c, distances=np.ldexp(scaled, exponent),
    )
