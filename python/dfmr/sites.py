"""Sites with their own mixing proportions: ``site_weights="shared"`` or ``"free"``.

The paper's model is iid sites: every site draws from ``f = sum_k pi_k f_k`` (``"shared"``,
the default, today's results exactly). Real sites (hospitals, stores) share the components
``f_k = N(mu_k, Sigma_k)`` but each has its own case mix: ``p_i = sum_k pi_ik f_k``
(``"free"``). An honest site whose proportions differ from the others' is then no evidence of
an attack, so under ``"free"``:

- **Screening sees means and covariances only.** The L2 filter (:func:`dfmr.dfmr`) and the
  centre of :func:`dfmr.robust_dfmr` see every site's mixture with its proportions
  neutralised (:func:`neutralised`: equal weights ``1 / K_i``), and robust_dfmr's weight tests
  are off. robust_dfmr tests a site's component at the number of points behind it,
  ``n_i pi_ik`` (its own proportion), not at ``n_i pi_k`` of a shared reference: an honest
  site that sees a cluster in 5% of its records estimates it from 5% of its points.
- **The pool weights components by the points behind them**, ``n_i pi_ik / N``: the site's own
  weights times its size, the same pool as ``"shared"``. Why not ``n_i / (K_i N)`` (every
  component of a site carrying equal mass, independent of the proportions)? A component seen
  in ``n_i pi_ik`` points estimates ``mu_k`` with variance ``Sigma_k / (n_i pi_ik)``; the
  inverse-variance (and the global fit's own M-step) weight is ``n_i pi_ik``. Equal masses give
  a cluster seen in 1% of a site's records the weight of one seen in 90%: the slot's variance
  grows as the mean of ``1 / pi_ik``, which is infinite for Dirichlet(alpha <= 1) case mixes.
  The proportion is the site's own claim (untrusted), but it is self-limiting: the same count
  ``n_i pi_ik`` sets the component's test and its mass, so a smaller claim loosens the test
  only by shrinking the mass in proportion, and a larger claim tightens the test. A site's
  total mass stays ``n_i / N`` whatever it claims. ``bench_site_weights.py`` measures the
  equal-mass alternative beside it.
- **Global proportions are a robust size-weighted average** of the kept sites' proportions,
  aligned to the output components (:func:`aligned_proportions`): the target is the
  size-weighted mean over honest sites, ``sum_i n_i pi_ik / sum_i n_i``; the estimate trims
  ``TRIM`` of the size mass from each tail per component (:func:`robust_proportions`).
  Proportions are bounded, so the plain mean already moves by at most the attackers' share;
  trimming bounds it further at a small bias for skewed honest case mixes (10% trimming: at
  most 0.1 of the proportions' standard deviation for Dirichlet(0.5) mixes, K = 3).
- **A homogeneity test** (:func:`homogeneity_test`): are the proportions equal across the
  kept sites? The likelihood-ratio (G) test of the table of expected counts ``n_i pi_ik``,
  overall and per site, adjusted by :func:`statsmodels.stats.multitest.multipletests`;
  in ``summary()`` under both models. Under ``"shared"``, when the honest-looking sites'
  proportions clearly differ (overall p below :data:`WARN_LEVEL`), a warning names
  ``site_weights="free"``.

The counts are estimated, not observed: with overlapping components the estimated
proportions scatter more than multinomially (two 1-d Gaussians at -2 and 2 with sd 1 and 1.5:
2.5 times the multinomial variance), and the plain G test would call iid sites heterogeneous.
The statistic is divided by the Rao-Scott first-order design effect
``delta = tr(Sigma_mult^-1 V_w) / (K - 1)``, with ``V_w`` the weights' block of the inverse
Fisher information of the output mixture (:func:`dfmr.information.expected_information`, seeded
Monte Carlo: every parameter estimated, as the sites estimate them) and ``Sigma_mult`` the
multinomial covariance; ``delta = 1`` for well-separated components.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import xlogy
from scipy.stats import chi2

from .params import GaussianMixtureParams
from .reduction import _component_kl_cost, kl_cost
from .sizes import pool_sizes

if TYPE_CHECKING:
    from .aggregate import AggregationResult

__all__ = ["SITE_WEIGHTS", "SiteHomogeneity", "aligned_proportions", "check_site_weights", "design_effect",
           "homogeneity_test", "merged_by_slot", "neutralised", "proportion_free_distances", "robust_proportions",
           "site_summary_lines"]

SITE_WEIGHTS = ("shared", "free")
TRIM = 0.1  # size mass trimmed from each tail of every component's proportions
WARN_LEVEL = 1e-3  # "clearly differ": the overall homogeneity test's p-value under "shared"
# Monte Carlo draws of the design effect's information: ~0.25 s at K = 5, d = 10 (329 parameters),
# where the effect comes out ~7% above its value at 20,000 draws (conservative: a larger divisor).
_DESIGN_DRAWS = 5000


def check_site_weights(site_weights: Any) -> str:
    """``site_weights`` validated: ``"shared"`` or ``"free"`` (ValueError otherwise)."""
    if not isinstance(site_weights, str) or site_weights not in SITE_WEIGHTS:
        raise ValueError(f"site_weights must be one of {SITE_WEIGHTS}, got {site_weights!r}.")
    return site_weights


def neutralised(mixtures: Sequence[GaussianMixtureParams]) -> list[GaussianMixtureParams]:
    """Every mixture with equal weights ``1 / K_i``: what a screen on means and covariances only sees."""
    out = []
    for f in mixtures:
        k = f.n_components
        out.append(GaussianMixtureParams._from_core(np.full(k, 1.0 / k), f.means, f.covariances, f.covariance_type))
    return out


def merged_by_slot(mixture: GaussianMixtureParams, reference: GaussianMixtureParams,
                   cap: float = math.inf) -> tuple[GaussianMixtureParams, list[tuple[int, ...]]]:
    """The site's mixture at its own K_i: components nearest the same reference slot merged into one.

    Under free proportions a site that sees a cluster in a handful of points (or none) still
    fits K components, and splits another cluster in two. One-to-one alignment keeps one half
    (biased) and drops the other; merged (the moment match of the group, the reduction's own
    update: a one-component :func:`dfmr.reduction.reduce_mixtures`), the two halves give back
    the cluster's estimate from all its points. A component goes to the
    slot of smallest KL cost ``KL(N_ij || G_k)`` (the reduction's rule) when that cost is below
    ``cap``; a component farther from every slot is left alone (it is screened as it is), so a
    far component never drags an honest one. Merging adds no freedom to a hostile site: the
    merged component is tested and pooled like any other, at the points behind it (its weight,
    the sum of the group's, times ``n_i``).

    Parameters
    ----------
    mixture : GaussianMixtureParams
        One site's estimate.
    reference : GaussianMixtureParams
        The slots (robust_dfmr's current reference).
    cap : float, default inf
        Largest KL cost at which a component joins its slot's group.

    Returns
    -------
    merged : GaussianMixtureParams
        ``mixture`` itself when no two components share a slot; otherwise, in the full model,
        one component per slot (a group's moment match, or its single member) followed by the
        components left alone. It does not carry ``n_samples``: read the site's size from
        ``mixture``. A caller screening in a constrained model projects it there.
    groups : list of tuple of int
        The original components behind each merged one (empty when nothing was merged).
    """
    from .reduction import reduce_mixtures

    cost = kl_cost(mixture, reference)
    target = np.argmin(cost, axis=1)
    near = cost[np.arange(target.size), target] < cap
    slots, counts = np.unique(target[near], return_counts=True)
    if not np.any(counts > 1):
        return mixture, []
    weights, means, covs, groups = [], [], [], []
    for slot in slots:
        members = np.flatnonzero(near & (target == slot))
        if members.size == 1:
            j = int(members[0])
            weights.append(mixture.weights[j])
            means.append(mixture.means[j])
            covs.append(mixture.covariances[j])
            continue
        total = float(mixture.weights[members].sum())
        sub = GaussianMixtureParams._from_core(mixture.weights[members] / total, mixture.means[members],
                                               mixture.covariances[members])
        one = reduce_mixtures([sub], 1, n_threads=1, covariance_type="full")
        weights.append(total)
        means.append(one.mixture.means[0])
        covs.append(one.mixture.covariances[0])
        groups.append(tuple(int(j) for j in members))
    for j in np.flatnonzero(~near):
        weights.append(mixture.weights[j])
        means.append(mixture.means[j])
        covs.append(mixture.covariances[j])
    w = np.array(weights)
    return GaussianMixtureParams._from_core(w / w.sum(), np.array(means), np.array(covs)), groups


def proportion_free_distances(mixtures: Sequence[GaussianMixtureParams], centre: int) -> np.ndarray:
    """Every site's L2 distance to the centre's components mixed in the site's own proportions.

    ``r_i = || f_i - sum_k pi_ik c_k ||_2``, with ``c_k`` the centre's components and ``pi_ik``
    site i's weights aligned to them (:func:`aligned_proportions`: each component to the
    centre's component of smallest KL cost, a split cluster adding up). The distance is the
    core's L2 (:func:`dfmr.distances.l2_distance`) between two mixtures with the same
    proportions, so the case mix cancels: an honest site differs from the centre only by the
    sampling error of its components, each weighted by the share of its data it carries. A
    cluster the site saw in a handful of points weighs as little in ``r_i`` as in the site's
    data (neutralised weights ``1 / K_i`` would give its noisy estimate a third of the mass),
    and a cluster it split in two is compared whole. ``r_centre = 0`` when the centre's own
    components align one-to-one.
    """
    from .distances import l2_distance

    ref = mixtures[centre]
    props = aligned_proportions(mixtures, ref, np.arange(len(mixtures)))
    out = np.empty(len(mixtures))
    for i, f in enumerate(mixtures):
        seen = props[i] > 0
        out[i] = l2_distance(f, GaussianMixtureParams._from_core(props[i][seen], ref.means[seen],
                                                                 ref.covariances[seen], ref.covariance_type))
    return out


def site_sizes(mixtures: Sequence[GaussianMixtureParams], n_samples: Any) -> tuple[np.ndarray | None, str]:
    """Sizes for the proportions: the server's, else the estimates' claims as the pool reads them
    (:func:`dfmr.sizes.pool_sizes`: capped at 5x the median claim), else None (``"equal"``)."""
    if n_samples is not None and np.ndim(n_samples) == 0:  # robust_dfmr takes one size for all
        n_samples = np.full(len(mixtures), float(n_samples))
    sizes = pool_sizes(mixtures, n_samples)
    return sizes.n_samples, sizes.source


def aligned_proportions(mixtures: Sequence[GaussianMixtureParams], output: GaussianMixtureParams,
                        sites: np.ndarray) -> np.ndarray:
    """Each site's proportions on the output components, ``(m, K)``; NaN rows outside ``sites``.

    A site's component goes wholly to the output component of smallest KL cost
    ``KL(N_ic || G_k)`` (the reduction's assignment rule) and brings its weight there: a
    cluster a site split in two adds up, one it did not see gets 0.
    """
    out = np.full((len(mixtures), output.n_components), np.nan)
    sites = np.asarray(sites, dtype=np.intp)
    if sites.size == 0:
        return out
    chosen = [mixtures[i] for i in sites]
    # One cost call for every site's components.
    target = np.argmin(_component_kl_cost(np.concatenate([f.means for f in chosen]),
                                         np.concatenate([f.covariances for f in chosen]), output), axis=1)
    bounds = np.cumsum([0] + [f.n_components for f in chosen])
    for i, f, a, b in zip(sites, chosen, bounds[:-1], bounds[1:]):
        row = np.bincount(target[a:b], weights=f.weights, minlength=output.n_components)
        out[i] = row / row.sum()
    return out


def _trimmed_mean(x: np.ndarray, u: np.ndarray, trim: float) -> float:
    """Mean of ``x`` under weights ``u`` after removing ``trim`` of the weight from each tail
    (the boundary values keep their fractional remainder)."""
    order = np.argsort(x, kind="stable")
    xs, us = x[order], u[order] / u.sum()
    hi = np.cumsum(us)
    lo = hi - us
    keep = np.clip(np.minimum(hi, 1.0 - trim) - np.maximum(lo, trim), 0.0, None)
    return float(keep @ xs / keep.sum())


def robust_proportions(proportions: np.ndarray, weights: np.ndarray, trim: float = TRIM) -> np.ndarray:
    """Global proportions: per component, the ``weights``-weighted mean of the sites'
    proportions trimmed by ``trim`` of the weight in each tail, renormalised to sum to one.

    Parameters
    ----------
    proportions : ndarray of shape (r, K)
        The kept sites' aligned proportions (rows sum to one).
    weights : ndarray of shape (r,)
        The sites' pool weights (their sizes), positive.
    trim : float, default TRIM
        Share of the weight trimmed from each tail, in [0, 0.5).

    Returns
    -------
    ndarray of shape (K,)
    """
    p = np.asarray(proportions, dtype=np.float64)
    u = np.asarray(weights, dtype=np.float64)
    w = np.array([_trimmed_mean(p[:, k], u, trim) for k in range(p.shape[1])])
    return w / w.sum()


def design_effect(mixture: GaussianMixtureParams) -> float:
    """Rao-Scott's first-order design effect of estimated proportions: ``tr(Sigma_mult^-1 V_w) / (K - 1)``, >= 1.

    ``V_w``: the free weights' block of the inverse per-observation Fisher information of
    ``mixture`` (all parameters estimated); ``Sigma_mult = diag(w) - w w'`` on the same K - 1
    weights: the variance one observed label per point would give.
    """
    from .information import expected_information

    k = mixture.n_components
    if k < 2:
        return 1.0
    info = expected_information(mixture, _DESIGN_DRAWS, kind="opg", random_state=0)
    v = np.linalg.pinv(info)[: k - 1, : k - 1]
    w = mixture.weights[: k - 1]
    mult = np.diag(w) - np.outer(w, w)
    effect = float(np.trace(np.linalg.solve(mult, v)) / (k - 1))
    return max(effect, 1.0) if math.isfinite(effect) else 1.0


@dataclass(frozen=True)
class SiteHomogeneity:
    """Are the mixing proportions equal across sites? The G test on the expected counts ``n_i pi_ik``.

    Attributes
    ----------
    sites : ndarray of int
        The sites tested (the kept, honest-looking ones).
    statistic, df, pvalue : float, int, float
        Overall: ``G / delta``, ``G = 2 sum_ik O_ik log(O_ik / E_ik)``, ``O_ik = n_i pi_ik``,
        ``E_ik = n_i sum_j O_jk / sum_j n_j``, chi2 with ``(r - 1)(K - 1)`` df.
    site_statistic, site_pvalue, site_pvalue_adjusted : ndarray of shape (m,)
        Per site: its terms of ``G`` (its proportions against the pooled ones, ``K - 1`` df),
        the p-value and the adjusted one (NaN for sites not tested).
    site_df : int
        ``K - 1``.
    adjust : str
        The :func:`~statsmodels.stats.multitest.multipletests` method.
    sizes : ndarray of shape (m,)
        The sizes ``n_i`` used (NaN for sites not tested).
    size_source : str
        ``"server"`` or ``"claimed"`` (capped at 5 x the median claim).
    design_effect : float
        ``delta``, the divisor of every statistic (:func:`design_effect`). Under ``"shared"`` it is
        computed only when the uncorrected test would warn (it is >= 1, so it can only raise the
        p-values; a few tenths of a second at K = 5, d = 10): 1.0 with ``design_effect_computed`` False.
    design_effect_computed : bool
        False when the statistics are left uncorrected (see above).
    """

    sites: np.ndarray
    statistic: float
    df: int
    pvalue: float
    site_statistic: np.ndarray
    site_df: int
    site_pvalue: np.ndarray
    site_pvalue_adjusted: np.ndarray
    adjust: str
    sizes: np.ndarray
    size_source: str
    design_effect: float = 1.0
    design_effect_computed: bool = True


def _adjusted_pvalues(pvalues: np.ndarray, method: str = "holm") -> np.ndarray:
    """``multipletests(pvalues, method=method)[1]``, with Holm's step-down computed here.

    statsmodels' Holm branch calls ``gc.collect()`` on every call, a full collection that costs
    tens of milliseconds in a process holding many objects: more than a whole aggregation.
    Holm's adjusted p-values are ``max_{j <= r} (n - j) p_(j)`` (0-based rank r in the sorted
    order), capped at 1, exactly as statsmodels computes them; other methods go to statsmodels.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if method.lower() not in ("h", "holm"):
        from statsmodels.stats.multitest import multipletests

        return multipletests(p, method=method)[1]
    order = np.argsort(p)
    out = np.empty_like(p)
    out[order] = np.minimum(np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1)), 1.0)
    return out


def homogeneity_test(proportions: np.ndarray, sizes: np.ndarray, sites: np.ndarray, *,
                     adjust: str = "holm", size_source: str = "server",
                     design_effect: float | None = 1.0) -> SiteHomogeneity | None:
    """The G test of equal proportions across ``sites`` (None with fewer than two sites or one component).

    Parameters
    ----------
    proportions : ndarray of shape (m, K)
        Aligned proportions (:func:`aligned_proportions`); rows outside ``sites`` are ignored.
    sizes : ndarray of shape (m,)
        The sites' sizes ``n_i``.
    sites : array_like of int
        The sites to test.
    adjust : str, default "holm"
        Method of :func:`statsmodels.stats.multitest.multipletests` for the per-site p-values.
    size_source : str
        Recorded in the result.
    design_effect : float or None, default 1.0
        Divisor of the statistics (:func:`design_effect`; 1: counts taken as observed; None: 1,
        recorded as not computed).

    Returns
    -------
    SiteHomogeneity or None
    """
    sites = np.asarray(sites, dtype=np.intp)
    m = proportions.shape[0]
    if sites.size < 2:
        return None
    counts = np.asarray(sizes, dtype=np.float64)[sites, None] * proportions[sites]
    cols = counts.sum(axis=0) > 0
    counts = counts[:, cols]
    if counts.shape[1] < 2:
        return None
    n = counts.sum(axis=1)
    expected = n[:, None] * counts.sum(axis=0)[None, :] / n.sum()
    terms = 2.0 * (xlogy(counts, counts) - xlogy(counts, expected)).sum(axis=1)
    computed = design_effect is not None
    design_effect = 1.0 if design_effect is None else float(design_effect)
    terms = np.maximum(terms, 0.0) / design_effect
    k = counts.shape[1]
    df = (sites.size - 1) * (k - 1)
    g = float(terms.sum())
    site_stat = np.full(m, np.nan)
    site_p = np.full(m, np.nan)
    site_adj = np.full(m, np.nan)
    site_stat[sites] = terms
    site_p[sites] = chi2.sf(terms, k - 1)
    site_adj[sites] = _adjusted_pvalues(site_p[sites], adjust)
    used = np.full(m, np.nan)
    used[sites] = n
    return SiteHomogeneity(sites=sites, statistic=g, df=df, pvalue=float(chi2.sf(g, df)), site_statistic=site_stat,
                           site_df=k - 1, site_pvalue=site_p, site_pvalue_adjusted=site_adj, adjust=adjust,
                           sizes=used, size_source=size_source, design_effect=design_effect,
                           design_effect_computed=computed)


def finish(result: AggregationResult, mixtures: Sequence[GaussianMixtureParams], site_weights: str,
           n_samples: Any, *, pool_weight: np.ndarray | None = None, honest: np.ndarray | None = None,
           stacklevel: int = 3) -> AggregationResult:
    """The aggregation result under the site model.

    ``"free"``: the mixture's weights become :func:`robust_proportions` of the retained sites'
    aligned proportions (weighted by ``pool_weight``, default: the server's sizes, else equal),
    ``site_weights`` and ``site_homogeneity`` are set. ``"shared"``: the mixture is untouched;
    the test runs on the ``honest`` (default: retained) sites when sizes are known, and warns
    when their proportions clearly differ.
    """
    kept = np.asarray(result.retained, dtype=np.intp)
    honest = kept if honest is None else np.asarray(honest, dtype=np.intp)
    sizes, source = site_sizes(mixtures, n_samples)
    if site_weights == "shared" and sizes is None:
        return result
    rows = kept if site_weights == "free" else honest
    props = aligned_proportions(mixtures, result.mixture, rows)
    test = None
    if sizes is not None and rows.size >= 2:
        test = homogeneity_test(props, sizes, rows, size_source=source, design_effect=None)
        if test is not None and (site_weights == "free" or test.pvalue < WARN_LEVEL):
            test = homogeneity_test(props, sizes, rows, size_source=source,
                                    design_effect=design_effect(result.mixture))
    if site_weights == "shared":
        if test is not None and test.pvalue < WARN_LEVEL:
            warnings.warn(
                f"the mixing proportions of the {test.sites.size} honest-looking sites differ (homogeneity "
                f"G = {test.statistic:.4g}, df {test.df}, p = {test.pvalue:.2g}): the sites may share the "
                "components but not the proportions; consider site_weights='free'.",
                UserWarning, stacklevel=stacklevel,
            )
        return replace(result, site_homogeneity=test)
    if pool_weight is None:  # the sizes that weighted the pool (dfmr, mr), else equal
        pool_weight = np.ones(len(mixtures)) if sizes is None else sizes
    glob = robust_proportions(props[kept], np.asarray(pool_weight, dtype=np.float64)[kept])
    mix = result.mixture
    mixture = GaussianMixtureParams._from_core(glob, mix.means, mix.covariances, mix.covariance_type)
    return replace(result, mixture=mixture, site_weights=props, site_homogeneity=test)


def free_aggregate(method: str, mixtures: Sequence[GaussianMixtureParams], n_components: int,
                   n_samples: Any = None, **options: Any) -> AggregationResult:
    """``dfmr`` or ``mr`` under ``site_weights="free"``.

    DFMR's centre is COAT's on the :func:`neutralised` mixtures (means and covariances only); its
    filter (the paper's rule, :func:`dfmr.filtering.filter_row`) reads
    :func:`proportion_free_distances`; the retained sites' own mixtures are then reduced (the
    pool of the points behind each component, see the module docstring), and :func:`finish` sets
    the proportions.
    """
    from .aggregate import _aggregate
    from .filtering import filter_row

    mixtures = list(mixtures)
    if method == "mr":
        result = _aggregate("mr", mixtures, n_components, n_samples=n_samples, **options)
        return finish(result, mixtures, "free", n_samples, stacklevel=4)
    # neutralised() drops the claimed sizes with the weights: the screen gets the sizes the pool reads.
    pooled = pool_sizes(mixtures, n_samples)
    sizes = pooled.n_samples
    # The centre: COAT on the neutralised mixtures (means and covariances only). The filter: every
    # site against the centre's components in its own proportions (proportion_free_distances).
    screened = _aggregate("dfmr", neutralised(mixtures), n_components, n_samples=sizes, **options)
    decision = filter_row(screened.center, proportion_free_distances(mixtures, screened.center),
                          options.get("threshold"))
    keep = np.asarray(decision.retained, dtype=np.intp)
    mr_options = {key: options[key] for key in ("tol", "max_iter", "n_threads", "covariance_type", "require_support")
                  if key in options}
    reduced = _aggregate("mr", [mixtures[i] for i in keep], n_components,
                         n_samples=None if sizes is None else sizes[keep], **mr_options)
    starts = None if reduced.start_machines is None else keep[reduced.start_machines]
    support = None
    if reduced.support is not None:  # rows of the retained sites -> rows of all sites
        support = np.zeros((len(mixtures), reduced.support.shape[1]), dtype=bool)
        support[keep] = reduced.support
    result = replace(screened, mixture=reduced.mixture, retained=keep, filter=decision, objective=reduced.objective,
                     n_iter=reduced.n_iter,
                     converged=reduced.converged, reduction=reduced.reduction, start_machines=starts,
                     n_samples=sizes, size_source=pooled.source, sizes=pooled, support=support)
    return finish(result, mixtures, "free", n_samples, stacklevel=4)


def site_summary_lines(result: AggregationResult, width: int) -> list[str]:
    """The 'Site proportions' block of the aggregation summary (empty without a test)."""
    test = getattr(result, "site_homogeneity", None)
    free = getattr(result, "site_weights", None) is not None
    if test is None:
        return []
    lines = ["", "Site proportions".center(width).rstrip(), "=" * width]
    model = ("free (each site its own proportions; global = size-weighted mean trimmed by "
             f"{TRIM:g} per tail)" if free else "shared (the paper's iid sites)")
    sizes = "given by the server" if test.size_source == "server" else "claimed by the estimates (capped)"
    for text in (f"Site model: {model}",
                 f"Homogeneity of the proportions (G test on n_i pi_ik, sizes {sizes}, "
                 + (f"over the design effect {test.design_effect:.3g}" if test.design_effect_computed else
                    f"uncorrected: p is above {WARN_LEVEL:g} without the design effect")
                 + f"): G = {test.statistic:.4g}, "
                 f"df {test.df}, p = {test.pvalue:.3g}; per site {test.site_df} df, {test.adjust}-adjusted"):
        lines += textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False)
    lines.append("-" * width)
    k = test.site_df + 1
    show_w = free and result.site_weights.shape[1] == k and k <= 6
    head = f"{'site':>5} {'n':>9} " + (" ".join(f"{'pi_' + str(j):>6}" for j in range(k)) + " " if show_w else "")
    lines.append(head + f"{'G':>9} {'p':>9} {'p adj':>9}")
    for i in test.sites:
        row = f"{i:>5} {test.sizes[i]:>9.4g} "
        if show_w:
            row += " ".join(f"{x:>6.3f}" for x in result.site_weights[i]) + " "
        p_adj = test.site_pvalue_adjusted[i]
        lines.append(row + f"{test.site_statistic[i]:>9.4g} {test.site_pvalue[i]:>9.3g} {p_adj:>9.3g}"
                     + (" *" if p_adj < 0.05 else ""))
    lines.append("=" * width)
    note = ("* adjusted p < 0.05. The counts n_i pi_ik are estimated: the statistics are divided by the design "
            "effect of the output mixture (Rao-Scott; 1 for well-separated components).")
    if not free and test.pvalue < WARN_LEVEL:
        note += " The proportions clearly differ: consider site_weights='free'."
    lines += textwrap.wrap(note, width, subsequent_indent="  ", break_on_hyphens=False)
    return lines if math.isfinite(test.statistic) else []
