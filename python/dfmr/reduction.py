"""Mixture reduction: the KL-cost MM iterations (run by the compiled core).

A large pooled mixture is reduced to ``K`` components by minimising the composite
transportation divergence with cost ``KL(N_n || G_k)`` (Zhang & Chen 2022). With
``trim = alpha > 0`` only the cheapest ``1 - alpha`` of the pooled mass is transported
(the trimmed k-barycenter baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._native import _core, as_mixture_list, pack, resolve_threads, unpack
from ._validation import check_int
from .covariance import get_model, majority_covariance_type
from .params import GaussianMixtureParams
from .sizes import check_sizes

__all__ = ["ReductionResult", "pool", "kl_cost", "default_starts", "reduce", "reduce_mixtures"]


@dataclass(frozen=True)
class ReductionResult:
    """Outcome of :func:`reduce` for the best start.

    Attributes
    ----------
    mixture : GaussianMixtureParams
        The reduced mixture (fewer than ``n_components`` if components received no mass).
    objective : float
        Final transportation divergence.
    n_iter : int
        MM updates performed by the best start.
    converged : bool
        Whether the relative decrease of the objective fell below ``tol``.
    objective_trace : ndarray
        Objective of the start as given, then after each update (non-increasing from the first
        update on; under a covariance model other than full the start need not be a member of
        the model, and its objective may be lower than the first update's).
    assignment : ndarray of shape (N, K_out)
        Transport plan: mass of pooled component n sent to reduced component k.
    start_index : int
        Index of the winning start.
    start_objectives : ndarray
        Final objective of every start.
    start_n_iter : ndarray of int
        MM updates made by every start.
    n_starts_cut : int
        Starts cut short because their transport plan became one that an earlier start had
        reached: the rest of their run, and so their final objective, is that earlier start's
        (the result is the same as running them in full).
    """

    mixture: GaussianMixtureParams
    objective: float
    n_iter: int
    converged: bool
    objective_trace: np.ndarray
    assignment: np.ndarray
    start_index: int
    start_objectives: np.ndarray
    start_n_iter: np.ndarray
    n_starts_cut: int = 0


def pool(
    mixtures: Sequence[GaussianMixtureParams], n_samples: Sequence[float] | np.ndarray | None = None
) -> GaussianMixtureParams:
    """The pooled mixture: all components, weights ``w_ik / m``, or ``w_ik n_i / sum_j n_j`` with sizes.

    Parameters
    ----------
    mixtures : sequence of GaussianMixtureParams
        The m mixtures to pool.
    n_samples : array_like of shape (m,), optional
        The sites' sample sizes (finite, >= 1), taken as given: the pool is then the mixture of
        all the sites' data. ``None`` (or equal sizes, bit for bit) gives ``(1/m) sum_i f_i``.
        Sizes the estimates merely claim are not read here; :func:`dfmr.mr` and the other
        aggregators decide which sizes to trust (:mod:`dfmr.sizes`).

    Returns
    -------
    GaussianMixtureParams
    """
    mixtures = as_mixture_list(mixtures)
    w, mu, cov, _ = _core.pool(*pack(mixtures), n_samples=_sizes(n_samples, len(mixtures)))
    return GaussianMixtureParams._from_core(w, mu, cov)


def kl_cost(pooled: GaussianMixtureParams, mixture: GaussianMixtureParams) -> np.ndarray:
    """``C[n, k] = KL(N(mu_n, S_n) || N(m_k, V_k))``, shape (N, K)."""
    pooled, mixture = as_mixture_list([pooled, mixture], "kl_cost arguments")
    return np.asarray(
        _core.kl_cost(
            pooled.weights, pooled.means, pooled.covariances, mixture.weights, mixture.means, mixture.covariances
        )
    )


def _component_kl_cost(means: np.ndarray, covariances: np.ndarray, mixture: GaussianMixtureParams) -> np.ndarray:
    """:func:`kl_cost` for components that need not form one mixture (several machines' at once).

    Row n depends on component n alone (the core computes it lane by lane), so one call on the
    concatenated components of m machines returns, bit for bit, the rows of m separate calls.

    Parameters
    ----------
    means : ndarray of shape (N, d)
    covariances : ndarray of shape (N, d, d)
        Validated (positive definite) covariances.
    mixture : GaussianMixtureParams
        The K components the cost is to.

    Returns
    -------
    ndarray of shape (N, K)
    """
    n = means.shape[0]
    return np.asarray(_core.kl_cost(np.full(n, 1.0 / n), means, covariances,  # weights: not part of the cost
                                    mixture.weights, mixture.means, mixture.covariances))


def default_starts(
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    n_samples: Sequence[float] | np.ndarray | None = None,
) -> list[GaussianMixtureParams]:
    """Every mixture with exactly ``n_components`` components is a start.

    If none has, one start is seeded from the pool (``pool(mixtures, n_samples)``): its
    heaviest component, then repeatedly the pooled component with the largest weighted KL cost
    to those chosen (fewer than ``n_components`` seeds when every remaining component coincides
    with a chosen one).
    """
    mixtures = as_mixture_list(mixtures)
    _check_k(n_components)
    return unpack(*_core.default_starts(*pack(mixtures), int(n_components),
                                        n_samples=_sizes(n_samples, len(mixtures))))


def reduce(
    pooled: GaussianMixtureParams,
    n_components: int,
    starts: Sequence[GaussianMixtureParams],
    *,
    trim: float = 0.0,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
    share_trajectories: bool = True,
    covariance_type: str | None = None,
) -> ReductionResult:
    """Reduce ``pooled`` to at most ``n_components`` components by MM iterations.

    Parameters
    ----------
    pooled : GaussianMixtureParams
        The mixture to reduce (see :func:`pool`).
    n_components : int
        Target number of components K; every start has at most K components.
    starts : sequence of GaussianMixtureParams
        Initial reduced mixtures; all are run (in parallel) and the one with the smallest
        final objective is kept (ties: the first). Starts with identical parameters run once
        and share the result; only the best start's transport plan is kept in memory.
    trim : float, default 0.0
        Trimming level alpha in [0, 1); 0 is plain MR.
    tol : float, default 1e-5
        Stop when ``(obj_prev - obj) / max(obj_prev, obj, 1) < tol``.
    max_iter : int, default 100
        Maximum number of MM updates per start (at least 1 under a covariance model other than
        full: the first update brings the starts into the model).
    n_threads : int, optional
        Threads for the starts; ``None`` uses every hardware thread.
    share_trajectories : bool, default True
        Cut a start short once its transport plan is, up to relabelling, one that an earlier
        start reached before its last step (its remaining iterations and final objective are
        then known). The result is bit-identical either way; False runs every start in full.
    covariance_type : str, optional
        Covariance model of the reduced components: scikit-learn's "full", "tied", "diag",
        "spherical" or an mclust model name (see :func:`dfmr.covariance.get_model`); None is
        the model a strict majority of the mixtures claim, else "full" (the moment match). Under
        another model each MM update applies the model's constrained M-step to the matched
        scatters, which minimises the transport cost over the model; a start enters the model
        by its first update (its first plan is computed for it as given): the result belongs
        to it.

    Returns
    -------
    ReductionResult
    """
    if not isinstance(pooled, GaussianMixtureParams):
        raise TypeError(f"pooled: expected GaussianMixtureParams, got {type(pooled).__name__}.")
    starts = as_mixture_list(starts, "starts")
    _check_k(n_components)
    if starts[0].dim != pooled.dim:
        raise ValueError(f"starts have dimension {starts[0].dim}, the pool {pooled.dim}.")
    options = _options(trim, tol, max_iter, n_threads)
    model = model_name(covariance_type, [pooled])
    return _result(_core.reduce(pooled.weights, pooled.means, pooled.covariances, *pack(starts), int(n_components),
                                *options, bool(share_trajectories), model), model)


def reduce_mixtures(
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    *,
    trim: float = 0.0,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
    share_trajectories: bool = True,
    n_samples: Sequence[float] | np.ndarray | None = None,
    covariance_type: str | None = None,
) -> ReductionResult:
    """``reduce(pool(mixtures, n_samples), n_components, default_starts(...), ...)`` in one call.

    Plain MR (``trim = 0``) or the trimmed k-barycenter of the local estimates; parameters
    (``covariance_type`` too) as in :func:`reduce`, ``n_samples`` (the sites' sizes, taken as
    given; None: equal) as in :func:`pool`.
    """
    mixtures = as_mixture_list(mixtures)
    _check_k(n_components)
    options = _options(trim, tol, max_iter, n_threads)
    model = model_name(covariance_type, mixtures)
    return _result(_core.reduce_mixtures(*pack(mixtures), int(n_components), *options, bool(share_trajectories),
                                         n_samples=_sizes(n_samples, len(mixtures)), covariance_type=model), model)


def _options(trim: float, tol: float, max_iter: int, n_threads: int | None) -> tuple[int, float, float, int]:
    check_int(max_iter, "max_iter", 0)
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}.")
    if not (0.0 <= trim < 1.0):
        raise ValueError(f"trim (alpha) must lie in [0, 1), got {trim!r}.")
    return int(max_iter), float(tol), float(trim), resolve_threads(n_threads)


def model_name(covariance_type: str | None, mixtures: Sequence[GaussianMixtureParams]) -> str:
    """mclust's name of the reduction's covariance model for ``mixtures``' dimension.

    None is the model a strict majority of the mixtures claim (their ``covariance_type``), else
    "full" (:func:`dfmr.covariance.majority_covariance_type`: a tag is attacker-controlled, so a
    minority cannot change the model). Raises ValueError for an unknown name
    (:func:`dfmr.covariance.get_model`).
    """
    dim = mixtures[0].dim
    if covariance_type is None:
        return majority_covariance_type([mix.covariance_type for mix in mixtures], dim)
    return get_model(covariance_type, dim).name


def _result(out: dict, covariance_type: str = "full") -> ReductionResult:
    return ReductionResult(
        mixture=GaussianMixtureParams._from_core(out["weights"], out["means"], out["covariances"],
                                                 covariance_type=covariance_type, model_by_construction=True),
        objective=float(out["objective"]),
        n_iter=int(out["n_iter"]),
        converged=bool(out["converged"]),
        objective_trace=np.asarray(out["objective_trace"]),
        assignment=np.asarray(out["assignment"]),
        start_index=int(out["start_index"]),
        start_objectives=np.asarray(out["start_objectives"]),
        start_n_iter=np.asarray(out["start_n_iter"], dtype=np.intp),
        n_starts_cut=int(out["n_starts_cut"]),
    )


def _sizes(n_samples: Sequence[float] | np.ndarray | None, m: int) -> np.ndarray:
    """Sizes for the core: validated, or empty for equal weights."""
    return np.zeros(0) if n_samples is None else check_sizes(n_samples, m)


def _check_k(n_components: int) -> None:
    check_int(n_components, "n_components", 1)
