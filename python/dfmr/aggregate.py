"""Aggregation of local mixture estimates: DFMR, MR, COAT and TKB."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._native import _core, as_mixture_list, pack
from ._validation import check_int
from .filtering import FilterDecision, _check_threshold, _decision
from .params import GaussianMixtureParams
from .reduction import ReductionResult, _check_k, _options, _result, model_name
from .sites import SiteHomogeneity, check_site_weights, finish, free_aggregate
from .sizes import PoolSizes, pool_sizes
from .support import enforce

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
    center_rule : str or None
        ``"exact"`` or ``"sampled"`` (DFMR, COAT): how the centre was chosen.
    start_machines : ndarray of int or None
        Machine index of every reduction start, in start order (``reduction.start_index``
        indexes it); empty when no estimate had K components and the start was seeded.
    n_samples : ndarray of shape (m,) or None
        The sites' sizes that weighted the pool (retained machine i's components by
        ``w_ik n_i / sum_{j retained} n_j``), after capping claims; None for equal weights.
    size_source : {"server", "claimed", "equal"} or None
        Where the sizes came from: the caller (authoritative), the estimates' own claims
        (untrusted: a missing claim counts as the median claim, each is capped at 5x it), or
        nowhere (equal weights). None when the aggregator does not record it.
    sizes : PoolSizes or None
        The size decision in full: capped and unclaimed machines, the median claim.
    support : ndarray of bool, shape (m, mixture.n_components), or None
        ``support[i, c]``: machine i's pooled components are sent (mostly) to output component
        c (:mod:`dfmr.support`); every output component is supported by at least half of the
        votes. None for COAT.
    site_weights : ndarray of shape (m, K) or None
        Under ``site_weights="free"`` (:mod:`dfmr.sites`): each site's own proportions on the
        output components (NaN rows for sites not kept); None under ``"shared"``.
    site_homogeneity : SiteHomogeneity or None
        The test of equal proportions across the kept sites (:func:`dfmr.sites.homogeneity_test`);
        None when no sizes are known or fewer than two sites are kept.
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
    center_rule: str | None = None
    start_machines: np.ndarray | None = field(default=None, repr=False)
    n_samples: np.ndarray | None = field(default=None, repr=False)
    size_source: str | None = None
    sizes: PoolSizes | None = field(default=None, repr=False)
    support: np.ndarray | None = field(default=None, repr=False)
    site_weights: np.ndarray | None = field(default=None, repr=False)
    site_homogeneity: SiteHomogeneity | None = field(default=None, repr=False)

    @property
    def distance_to_center(self) -> np.ndarray | None:
        """``D[center, :]``, or None when no centre was computed."""
        if self.center is None:
            return None
        if self.distances is None:
            return None if self.filter is None else self.filter.distance_to_center
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


_CENTER_RULES = ("exact", "sampled")


def _check_n_starts(n_starts: int | None) -> int:
    if n_starts is None:
        return 0
    if not isinstance(n_starts, (int, np.integer)) or isinstance(n_starts, bool) or n_starts < 1:
        raise ValueError(f"n_starts must be None (all) or a positive integer, got {n_starts!r}.")
    return int(n_starts)


def _center_options(center: str, n_center_sample: int, random_state: int | np.random.Generator | None) -> dict:
    if center not in _CENTER_RULES:
        raise ValueError(f"center must be one of {_CENTER_RULES}, got {center!r}.")
    check_int(n_center_sample, "n_center_sample", 1)
    seed = 0
    if center == "sampled":
        seed = int(np.random.default_rng(random_state).integers(0, 2**63 - 1))
    return {"center": center, "n_center_sample": int(n_center_sample), "seed": seed}


def _aggregate(
    method: str,
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
    n_starts: int | None = None,
    threshold: float | None = None,
    alpha: float = 0.5,
    center: str = "exact",
    n_center_sample: int = 50,
    random_state: int | np.random.Generator | None = None,
    n_samples: Sequence[float] | np.ndarray | None = None,
    covariance_type: str | None = None,
    require_support: bool = False,
) -> AggregationResult:
    """One call of the compiled core's ``dfmr::aggregate``, converted to an :class:`AggregationResult`."""
    mixtures = as_mixture_list(mixtures)
    sizes = pool_sizes(mixtures, n_samples)
    model = model_name(covariance_type, mixtures)
    if method != "coat":
        _check_k(n_components)
    trim = float(alpha) if method == "tkb" else 0.0
    max_iter, tol, _, threads = _options(trim, tol, max_iter, n_threads)
    out = _core.aggregate(
        *pack(mixtures), method, int(n_components), threshold=_check_threshold(threshold), alpha=float(alpha),
        max_iter=max_iter, tol=tol, n_starts=_check_n_starts(n_starts), n_threads=threads,
        n_samples=[] if sizes.n_samples is None else sizes.n_samples, covariance_type=model,
        **_center_options(center, n_center_sample, random_state),
    )
    exponent = int(out["exponent"])
    decision = None if out["filter"] is None else _decision(out["filter"]).rescaled(exponent)
    distances = None if out["distances"] is None else np.ldexp(np.asarray(out["distances"]), exponent)
    red = None if out["reduction"] is None else _result(out["reduction"], model)
    if red is not None and red.mixture.n_components < n_components:
        warnings.warn(
            f"the reduced mixture has {red.mixture.n_components} components, fewer than the "
            f"{n_components} requested: the others received no mass and were dropped.",
            RuntimeWarning,
            stacklevel=3,
        )
    retained = np.asarray(out["retained"], dtype=np.intp)
    support, n_iter, converged = None, int(out["n_iter"]), bool(out["converged"])
    if red is not None:
        # Sites with fewer clusters: every output component needs half of the sites (dfmr.support).
        checked, support = enforce(red, mixtures, retained, sizes.n_samples, n_components, trim=trim, tol=tol,
                                   max_iter=max_iter, n_threads=threads, apply=require_support)
        if checked is not red:
            red, n_iter, converged = checked, checked.n_iter, checked.converged
    return AggregationResult(
        mixture=mixtures[decision.center] if method == "coat" else red.mixture,
        method=method,
        n_machines=len(mixtures),
        retained=retained,
        center=None if decision is None else decision.center,
        distances=distances,
        objective=None if red is None else red.objective,
        n_iter=n_iter,
        converged=converged,
        filter=decision if method == "dfmr" else None,
        reduction=red,
        n_components_requested=None if method == "coat" else int(n_components),
        alpha=float(alpha) if method == "tkb" else None,
        center_rule=center if decision is not None else None,
        start_machines=None if red is None else np.asarray(out["start_machines"], dtype=np.intp),
        n_samples=sizes.n_samples,
        size_source=sizes.source,
        sizes=sizes,
        support=support,
    )


def _by_site_model(method: str, mixtures: Sequence[GaussianMixtureParams], n_components: int, n_samples,
                   site_weights: str, options: dict) -> AggregationResult:
    """MR or DFMR under the site model ``site_weights`` (:mod:`dfmr.sites`): "free" screens and reduces
    means and covariances only; "shared" is the compiled core's method, checked by :func:`dfmr.sites.finish`."""
    mixtures = as_mixture_list(mixtures)
    if check_site_weights(site_weights) == "free":
        return free_aggregate(method, mixtures, n_components, n_samples, **options)
    return finish(_aggregate(method, mixtures, n_components, n_samples=n_samples, **options), mixtures, "shared",
                  n_samples)


def dfmr(
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    threshold: float | None = None,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
    n_starts: int | None = None,
    center: str = "exact",
    n_center_sample: int = 50,
    random_state: int | np.random.Generator | None = None,
    n_samples: Sequence[float] | np.ndarray | None = None,
    covariance_type: str | None = None,
    site_weights: str = "shared",
    require_support: bool = False,
) -> AggregationResult:
    """Distance-filtered mixture reduction (Zhang, Tan & Chen 2026).

    Computes the L2 distances between all local mixtures, takes the machine with the
    smallest median distance as the centre, keeps the machines within
    ``threshold * r`` of it (``r`` the ``floor(m/2)``-th smallest distance from the
    centre) and reduces the retained estimates by :func:`mr`. The whole method runs in one
    call of the compiled core (``dfmr::aggregate``).

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
    n_starts : int, optional
        ``None`` (default, as in the paper): every retained estimate with K components is a
        start of the reduction. An integer runs only the ``n_starts`` retained estimates
        nearest the centre (the most central first); useful for very many machines. Starts
        that reach a transport plan an earlier start reached are cut short with its known
        outcome (``reduction.n_starts_cut``; the result is the same as running them), so
        honest starts that meet cost little.
    center : {"exact", "sampled"}, default "exact"
        ``"exact"`` is DESIGN.md's rule on the full m x m distance matrix (O(m^2) distances).
        ``"sampled"`` picks the centre by its median distance to a random subset of
        ``n_center_sample`` machines, then computes the centre's row of distances for the
        filter: O(m * n_center_sample) distances. ``distances`` is then None.
    n_center_sample : int, default 50
        Size of the random subset of the sampled rule.
    random_state : int, numpy Generator or None
        Draws the subset of the sampled rule.
    n_samples : array_like of shape (m,), optional
        The sites' sample sizes, known to the server (authoritative): retained machine i's
        components enter the pool with weight ``w_ik n_i / sum_{j retained} n_j``. ``None``
        reads the sizes the estimates claim (:attr:`GaussianMixtureParams.n_samples`) without
        trusting them: a missing claim counts as the median claim and every claim is capped at
        5x the median claim; with no claims at all, equal weights (the paper's ``w_ik / |R|``).
        Equal sizes give exactly the unweighted result. The result records the sizes used
        (``n_samples``) and their source (``size_source``).
    covariance_type : str, optional
        Covariance model of the aggregate's components: scikit-learn's "full", "tied", "diag",
        "spherical" or an mclust model name (:func:`dfmr.covariance.get_model`); None is the
        model a strict majority of the estimates claim, else "full".
        The reduction's MM update applies the model's constrained M-step to the matched moments,
        so the aggregate belongs to the model (``mixture.covariance_type``); distances and the
        filter do not depend on it.
    site_weights : {"shared", "free"}, default "shared"
        ``"shared"``: the paper's iid sites. ``"free"``: sites share the components, not the
        proportions (:mod:`dfmr.sites`): the filter sees means and covariances only, the
        weights are a robust average of the retained sites' own (``result.site_weights``).
    require_support : bool, default False
        Beyond the paper, for sites that fitted fewer than K components (sites that see only
        some of the clusters): every output component must be supported by at least half of the
        retained sites (:mod:`dfmr.support`), so a cluster that only a minority reports never
        takes a slot. False (default) is the paper's method; the support is reported either
        way (``result.support``). With K components on every retained site the rule changes
        nothing.

    Returns
    -------
    AggregationResult
    """
    options = dict(tol=tol, max_iter=max_iter, n_threads=n_threads, n_starts=n_starts, threshold=threshold,
                   center=center, n_center_sample=n_center_sample, random_state=random_state,
                   covariance_type=covariance_type, require_support=require_support)
    return _by_site_model("dfmr", mixtures, n_components, n_samples, site_weights, options)


def mr(
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
    n_starts: int | None = None,
    n_samples: Sequence[float] | np.ndarray | None = None,
    covariance_type: str | None = None,
    site_weights: str = "shared",
    require_support: bool = False,
) -> AggregationResult:
    """Mixture reduction of all local estimates (Zhang & Chen 2022), no filtering.

    ``n_starts=None`` (default) starts from every estimate with K components; an integer runs
    that many, spread evenly over the machine indices (MR computes no distances to rank them).
    ``n_samples`` (the sites' sizes weighting the pool) and ``covariance_type`` (the model of the
    aggregate) as in :func:`dfmr`.

    Parameters
    ----------
    mixtures : sequence of GaussianMixtureParams
        The m local estimates.
    n_components : int
        K, the number of components of the aggregate.
    tol, max_iter, n_threads, n_starts, n_samples, covariance_type, site_weights, require_support
        As in :func:`dfmr`.

    Returns
    -------
    AggregationResult
    """
    options = dict(tol=tol, max_iter=max_iter, n_threads=n_threads, n_starts=n_starts,
                   covariance_type=covariance_type, require_support=require_support)
    return _by_site_model("mr", mixtures, n_components, n_samples, site_weights, options)


def tkb(
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    alpha: float = 0.5,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
    n_starts: int | None = None,
    n_samples: Sequence[float] | np.ndarray | None = None,
    covariance_type: str | None = None,
    require_support: bool = False,
) -> AggregationResult:
    """Trimmed k-barycenter: MR transporting only the cheapest ``1 - alpha`` of the pooled mass.

    ``n_starts`` as in :func:`mr`; ``n_samples`` (the sites' sizes weighting the pool) as in
    :func:`dfmr`: the trimmed mass is ``alpha`` of the size-weighted pool; ``covariance_type``
    (the model of the aggregate) and ``require_support`` as in :func:`dfmr`.
    """
    if not (0.0 <= alpha < 1.0):
        raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}.")
    return _aggregate("tkb", mixtures, n_components, tol=tol, max_iter=max_iter, n_threads=n_threads,
                      n_starts=n_starts, alpha=alpha, n_samples=n_samples, covariance_type=covariance_type,
                      require_support=require_support)


def coat(
    mixtures: Sequence[GaussianMixtureParams],
    *,
    n_threads: int | None = None,
    center: str = "exact",
    n_center_sample: int = 50,
    random_state: int | np.random.Generator | None = None,
    n_samples: Sequence[float] | np.ndarray | None = None,
) -> AggregationResult:
    """The centre machine's own estimate: the local mixture with the smallest median L2 distance.

    ``center``, ``n_center_sample`` and ``random_state`` as in :func:`dfmr`. ``n_samples`` is
    validated and recorded as in :func:`dfmr` but changes nothing: COAT pools nothing.
    """
    return _aggregate("coat", mixtures, 0, n_threads=n_threads, center=center, n_center_sample=n_center_sample,
                      random_state=random_state, n_samples=n_samples)
