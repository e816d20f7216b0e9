"""Independent plain-NumPy/SciPy reference implementation of dfmr's numerics.

This module re-implements, from ``DESIGN.md`` alone, the quantities that dfmr's
compiled core computes, so that the core can be checked against it:

* L2 distances between Gaussian mixtures: a direct double loop over components
  (:func:`l2_distance_loop`), a vectorised NumPy version (:func:`pairwise_l2_numpy`,
  also the "plain NumPy baseline" of the benchmarks), numerical integration of
  ``(f - g)^2`` in one and two dimensions (:func:`l2_distance_quad`) and a
  hand-written closed form for isotropic components (:func:`l2_squared_isotropic`);
* the Gaussian KL divergence (:func:`kl_gauss`) and the KL cost matrix of mixture
  reduction (:func:`kl_cost_matrix`);
* the DFMR centre and distance filter, and DFMR itself (:func:`center_numpy`,
  :func:`filter_numpy`, :func:`dfmr_numpy`);
* the MM iteration of mixture reduction, plain (MR) and trimmed (TKB)
  (:func:`reduce_numpy`, :func:`mr_numpy`, :func:`tkb_numpy`), and an exhaustive
  search over hard assignments that gives the global optimum of small problems
  (:func:`reduce_bruteforce`).

Nothing here is shared with dfmr except :class:`dfmr.GaussianMixtureParams`, used
only as a container. The code favours clarity over speed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import integrate, linalg, stats

from dfmr import GaussianMixtureParams

__all__ = [
    "ReferenceResult",
    "assign",
    "center_numpy",
    "dfmr_numpy",
    "filter_numpy",
    "kl_cost_matrix",
    "kl_gauss",
    "l2_distance_loop",
    "l2_distance_quad",
    "l2_squared_isotropic",
    "l2_squared_loop",
    "moment_match",
    "mr_numpy",
    "pairwise_l2_numpy",
    "pool",
    "reduce_bruteforce",
    "reduce_numpy",
    "tkb_numpy",
]

LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------------------------------
# L2 distance
# --------------------------------------------------------------------------------------------------------------------


def _cross_term_loop(f: GaussianMixtureParams, g: GaussianMixtureParams) -> float:
    """``sum_ab f.w_a g.w_b N(f.mu_a; g.mu_b, f.S_a + g.S_b)`` by a direct double loop (scipy pdf)."""
    terms = []
    for wa, ma, sa in zip(f.weights, f.means, f.covariances):
        for wb, mb, sb in zip(g.weights, g.means, g.covariances):
            terms.append(wa * wb * float(stats.multivariate_normal.pdf(ma, mean=mb, cov=sa + sb)))
    return math.fsum(terms)


def l2_squared_loop(f: GaussianMixtureParams, g: GaussianMixtureParams) -> float:
    """Squared L2 distance ``||f - g||^2`` from DESIGN.md's closed form (not clamped)."""
    return _cross_term_loop(f, f) + _cross_term_loop(g, g) - 2.0 * _cross_term_loop(f, g)


def l2_distance_loop(f: GaussianMixtureParams, g: GaussianMixtureParams) -> float:
    """L2 distance ``||f - g||`` by a direct double loop over components, clamped at 0."""
    return math.sqrt(max(l2_squared_loop(f, g), 0.0))


def l2_squared_isotropic(f: GaussianMixtureParams, g: GaussianMixtureParams) -> float:
    """Squared L2 distance for mixtures whose covariances are all multiples of the identity.

    Uses the hand-written closed form ``N(a; b, s I) = (2 pi s)^(-d/2) exp(-|a - b|^2 / (2 s))``
    evaluated in log space, independent of SciPy's density code.
    """
    for mix in (f, g):
        cov = mix.covariances
        s = cov[:, 0, 0]
        if not np.array_equal(cov, s[:, None, None] * np.eye(mix.dim)[None]):
            raise ValueError("l2_squared_isotropic needs covariances of the form s * I.")

    def cross(a: GaussianMixtureParams, b: GaussianMixtureParams) -> float:
        d = a.dim
        terms = []
        for wa, ma, ca in zip(a.weights, a.means, a.covariances[:, 0, 0]):
            for wb, mb, cb in zip(b.weights, b.means, b.covariances[:, 0, 0]):
                s = ca + cb
                sq = math.fsum((ma - mb) ** 2)
                log_n = -0.5 * d * math.log(2.0 * math.pi * s) - sq / (2.0 * s)
                terms.append(wa * wb * math.exp(log_n))
        return math.fsum(terms)

    return cross(f, f) + cross(g, g) - 2.0 * cross(f, g)


def _gauss_overlap_matrix(means: np.ndarray, covs: np.ndarray, block_bytes: int = 64 << 20) -> np.ndarray:
    """``G[a, b] = N(mu_a; mu_b, S_a + S_b)`` for all pairs of components, batched over row blocks."""
    n, d = means.shape
    out = np.empty((n, n))
    rows = max(1, block_bytes // (8 * n * d * d))
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        s_sum = covs[i0:i1, None, :, :] + covs[None, :, :, :]  # (b, n, d, d)
        diff = means[i0:i1, None, :] - means[None, :, :]  # (b, n, d)
        chol = np.linalg.cholesky(s_sum)
        z = np.linalg.solve(chol, diff[..., None])[..., 0]
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
        out[i0:i1] = np.exp(-0.5 * (d * LOG_2PI + log_det + np.einsum("abi,abi->ab", z, z)))
    return out


def pairwise_l2_numpy(mixtures: Sequence[GaussianMixtureParams]) -> np.ndarray:
    """Matrix of L2 distances between all pairs of mixtures, vectorised over component pairs.

    All components of all mixtures are stacked; the Gaussian overlap of every pair of
    components is computed in batches, and the inner products ``<f_i, f_j>`` follow as
    ``W G W^T`` with ``W`` the (m x N) matrix of weights. The result is symmetric with an
    exactly zero diagonal.
    """
    m = len(mixtures)
    if m == 0:
        return np.zeros((0, 0))
    dims = {mix.dim for mix in mixtures}
    if len(dims) != 1:
        raise ValueError(f"all mixtures must have the same dimension, got {sorted(dims)}.")
    means = np.concatenate([mix.means for mix in mixtures])
    covs = np.concatenate([mix.covariances for mix in mixtures])
    owner = np.repeat(np.arange(m), [mix.n_components for mix in mixtures])
    weight_rows = np.zeros((m, means.shape[0]))
    weight_rows[owner, np.arange(means.shape[0])] = np.concatenate([mix.weights for mix in mixtures])
    gram = weight_rows @ _gauss_overlap_matrix(means, covs) @ weight_rows.T
    gram = 0.5 * (gram + gram.T)
    diag = np.diag(gram)
    sq = diag[:, None] + diag[None, :] - 2.0 * gram
    dist = np.sqrt(np.clip(sq, 0.0, None))
    np.fill_diagonal(dist, 0.0)
    return dist


def _mixture_pdf_1d(mix: GaussianMixtureParams, x: float) -> float:
    s = mix.covariances[:, 0, 0]
    z = (x - mix.means[:, 0]) ** 2 / s
    return float(np.sum(mix.weights * np.exp(-0.5 * z) / np.sqrt(2.0 * math.pi * s)))


def _mixture_pdf(mix: GaussianMixtureParams, points: np.ndarray) -> np.ndarray:
    out = np.zeros(points.shape[0])
    for w, mu, cov in zip(mix.weights, mix.means, mix.covariances):
        out += w * stats.multivariate_normal.pdf(points, mean=mu, cov=cov)
    return out


def _quad_1d(f: GaussianMixtureParams, g: GaussianMixtureParams, epsrel: float) -> float:
    means = np.concatenate([f.means[:, 0], g.means[:, 0]])
    sds = np.sqrt(np.concatenate([f.covariances[:, 0, 0], g.covariances[:, 0, 0]]))
    offsets = np.array([-16.0, -8.0, -4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 8.0, 16.0])
    breaks = np.unique((means[:, None] + sds[:, None] * offsets[None, :]).ravel())

    def integrand(x: float) -> float:
        return (_mixture_pdf_1d(f, x) - _mixture_pdf_1d(g, x)) ** 2

    # Beyond 16 standard deviations of every component the integrand is below exp(-256) times its peak.
    pieces = []
    for a, b in zip(breaks[:-1], breaks[1:]):
        val, _ = integrate.quad(integrand, a, b, epsabs=0.0, epsrel=epsrel, limit=200)
        pieces.append(val)
    return math.fsum(pieces)


def _trapezoid_2d(f: GaussianMixtureParams, g: GaussianMixtureParams, h: float, half_width: float) -> float:
    means = np.concatenate([f.means, g.means])
    sd_max = math.sqrt(max(np.linalg.eigvalsh(np.concatenate([f.covariances, g.covariances]))[:, -1]))
    lo = means.min(axis=0) - half_width * sd_max
    hi = means.max(axis=0) + half_width * sd_max
    # Anchor the grid at the first mean so that the two resolutions sample different points.
    axes = []
    for j in range(2):
        start = means[0, j] - h * math.ceil((means[0, j] - lo[j]) / h)
        axes.append(np.arange(start, hi[j] + h, h))
    xx, yy = np.meshgrid(axes[0], axes[1], indexing="ij")
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    diff = _mixture_pdf(f, pts) - _mixture_pdf(g, pts)
    return h * h * math.fsum(diff * diff)


def l2_distance_quad(
    f: GaussianMixtureParams, g: GaussianMixtureParams, *, rtol: float = 1e-12, squared: bool = False
) -> float:
    """L2 distance ``||f - g||`` by numerical integration of ``(f - g)^2`` (d = 1 or 2).

    d = 1: adaptive Gauss-Kronrod (``scipy.integrate.quad``, ``epsrel=rtol / 10``) on the
    intervals between the breakpoints ``mu +- {0, 1, 2, 4, 8, 16} sd`` of every component.

    d = 2: the trapezoidal rule on an infinite lattice, truncated 12 standard deviations
    beyond every component. For integrands that are entire functions decaying like
    Gaussians, this rule converges geometrically in the spacing: by Poisson summation its
    error is about ``exp(-2 pi^2 lambda / h^2)`` with ``lambda`` the smallest eigenvalue of
    the covariances of the products ``N_a N_b`` (at least half the smallest component
    eigenvalue). It is run at two spacings (``sd_min / 3`` and ``sd_min / 4``) and a
    ``RuntimeError`` is raised when they disagree by more than ``rtol``.
    """
    if f.dim != g.dim:
        raise ValueError("mixtures of different dimensions.")
    if f.dim == 1:
        sq = _quad_1d(f, g, epsrel=rtol / 10.0)
    elif f.dim == 2:
        eig_min = min(np.linalg.eigvalsh(np.concatenate([f.covariances, g.covariances]))[:, 0])
        sd_min = math.sqrt(eig_min)
        coarse = _trapezoid_2d(f, g, sd_min / 3.0, 12.0)
        sq = _trapezoid_2d(f, g, sd_min / 4.0, 12.0)
        if abs(coarse - sq) > rtol * abs(sq):
            raise RuntimeError(f"2-D integration did not reach rtol={rtol:g}: {coarse!r} vs {sq!r}.")
    else:
        raise NotImplementedError("numerical integration is implemented for d = 1 and d = 2 only.")
    return sq if squared else math.sqrt(max(sq, 0.0))


# --------------------------------------------------------------------------------------------------------------------
# KL divergence and cost matrix
# --------------------------------------------------------------------------------------------------------------------


def kl_gauss(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
    """``KL(N(m1, S1) || N(m2, S2))`` per DESIGN.md.

    ``0.5 [tr(S2^-1 S1) + (m2 - m1)^T S2^-1 (m2 - m1) - d + log det S2 - log det S1]``, with
    the trace and the quadratic form computed through the Cholesky factor of ``S2``.
    """
    m1 = np.atleast_1d(np.asarray(m1, dtype=float))
    m2 = np.atleast_1d(np.asarray(m2, dtype=float))
    d = m1.shape[0]
    s1 = np.asarray(s1, dtype=float).reshape(d, d)
    s2 = np.asarray(s2, dtype=float).reshape(d, d)
    l1 = np.linalg.cholesky(s1)
    l2 = np.linalg.cholesky(s2)
    a = linalg.solve_triangular(l2, l1, lower=True)  # tr(S2^-1 S1) = ||L2^-1 L1||_F^2
    z = linalg.solve_triangular(l2, m2 - m1, lower=True)
    log_det1 = 2.0 * np.log(np.diag(l1)).sum()
    log_det2 = 2.0 * np.log(np.diag(l2)).sum()
    return 0.5 * (float(np.sum(a * a)) + float(z @ z) - d + log_det2 - log_det1)


def _kl_cost(mu_n: np.ndarray, s_n: np.ndarray, mu_k: np.ndarray, s_k: np.ndarray) -> np.ndarray:
    """``C[n, k] = KL(N(mu_n, S_n) || N(mu_k, S_k))``, vectorised over n."""
    n, d = mu_n.shape
    chol_n = np.linalg.cholesky(s_n)
    log_det_n = 2.0 * np.log(np.diagonal(chol_n, axis1=1, axis2=2)).sum(axis=1)
    stacked = chol_n.transpose(1, 0, 2).reshape(d, n * d)  # [L_1 L_2 ... L_N] side by side
    out = np.empty((n, mu_k.shape[0]))
    for k in range(mu_k.shape[0]):
        chol_k = np.linalg.cholesky(s_k[k])
        log_det_k = 2.0 * np.log(np.diag(chol_k)).sum()
        a = linalg.solve_triangular(chol_k, stacked, lower=True)
        trace = (a * a).reshape(d, n, d).sum(axis=(0, 2))
        z = linalg.solve_triangular(chol_k, (mu_k[k][None, :] - mu_n).T, lower=True)
        maha = (z * z).sum(axis=0)
        out[:, k] = 0.5 * (trace + maha - d + log_det_k - log_det_n)
    return out


def kl_cost_matrix(pooled: GaussianMixtureParams, mixture: GaussianMixtureParams) -> np.ndarray:
    """Cost matrix ``C[n, k] = KL(pooled_n || mixture_k)``, shape (N, K)."""
    return _kl_cost(pooled.means, pooled.covariances, mixture.means, mixture.covariances)


# --------------------------------------------------------------------------------------------------------------------
# Mixture reduction
# --------------------------------------------------------------------------------------------------------------------


def pool(mixtures: Sequence[GaussianMixtureParams]) -> GaussianMixtureParams:
    """Concatenate the components of ``m`` mixtures, component ``(i, k)`` with weight ``w_ik / m``."""
    m = len(mixtures)
    return GaussianMixtureParams(
        np.concatenate([mix.weights / m for mix in mixtures]),
        np.concatenate([mix.means for mix in mixtures]),
        np.concatenate([mix.covariances for mix in mixtures]),
        normalize=True,
    )


def assign(cost: np.ndarray, weights: np.ndarray, trim: float = 0.0) -> np.ndarray:
    """Assignment step: the transport plan ``pi`` (N x K) for a cost matrix.

    Plain (``trim == 0``): pooled component ``n`` sends its whole weight to
    ``argmin_k C[n, k]``, split equally among exact ties. Trimmed (``trim = alpha > 0``):
    components are sorted by ``c_n = min_k C[n, k]`` (stable) and kept, cheapest first,
    until the cumulative weight reaches ``1 - alpha``; the boundary component keeps the
    fractional remainder; kept weight goes to the argmin (ties split equally).
    """
    cmin = cost.min(axis=1)
    ties = (cost == cmin[:, None]).astype(float)
    share = ties / ties.sum(axis=1, keepdims=True)
    if trim == 0.0:
        kept = np.asarray(weights, dtype=float).copy()
    else:
        order = np.argsort(cmin, kind="stable")
        target = 1.0 - trim
        kept = np.zeros(cost.shape[0])
        cum = 0.0
        for n in order:
            take = min(weights[n], target - cum)
            if take <= 0.0:
                break
            kept[n] = take
            cum += weights[n]
    return kept[:, None] * share


def moment_match(
    means: np.ndarray, covariances: np.ndarray, pi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Update step: moment-matched Gaussians of the columns of ``pi`` that carry weight.

    Returns ``(mu, Sigma, keep)`` with ``keep`` the boolean mask of the columns of ``pi``
    whose sum is positive (the others are dropped).
    """
    col = pi.sum(axis=0)
    keep = col > 0
    p = pi[:, keep]
    col = col[keep]
    mu = (p.T @ means) / col[:, None]
    diff = means[:, None, :] - mu[None, :, :]  # (N, K, d)
    scatter = np.einsum("nk,nij->kij", p, covariances) + np.einsum("nk,nki,nkj->kij", p, diff, diff)
    sigma = scatter / col[:, None, None]
    return mu, 0.5 * (sigma + sigma.transpose(0, 2, 1)), keep


@dataclass
class ReferenceResult:
    """Result of :func:`reduce_numpy` (attribute names follow dfmr's ``ReductionResult``).

    ``start_index`` and ``start_objectives`` describe the multi-start search;
    ``retained`` is set by :func:`mr_numpy` / :func:`tkb_numpy` (all machines) and
    :func:`dfmr_numpy` (the filtered ones, with ``center``).
    """

    mixture: GaussianMixtureParams
    objective: float
    n_iter: int
    converged: bool
    objective_trace: np.ndarray
    assignment: np.ndarray
    start_index: int = 0
    start_objectives: np.ndarray | None = None
    retained: np.ndarray | None = None
    center: int | None = None


def _reduce_one(
    pooled: GaussianMixtureParams, start: GaussianMixtureParams, trim: float, tol: float, max_iter: int
) -> ReferenceResult:
    w_n, mu_n, s_n = pooled.weights, pooled.means, pooled.covariances
    mu, sigma = start.means.copy(), start.covariances.copy()
    cost = _kl_cost(mu_n, s_n, mu, sigma)
    pi = assign(cost, w_n, trim)
    obj = float(np.sum(pi * cost))
    trace = [obj]
    n_iter = 0
    converged = False
    for it in range(1, max_iter + 1):
        mu, sigma, _ = moment_match(mu_n, s_n, pi)
        cost = _kl_cost(mu_n, s_n, mu, sigma)
        pi = assign(cost, w_n, trim)
        new = float(np.sum(pi * cost))
        trace.append(new)
        n_iter = it
        if (obj - new) / max(obj, new, 1.0) < tol:
            converged = True
            obj = new
            break
        obj = new
    col = pi.sum(axis=0)
    keep = col > 0  # a component that lost all its weight in the last assignment is dropped as well
    weights = col[keep] / (1.0 - trim)
    mixture = GaussianMixtureParams(weights, mu[keep], sigma[keep], normalize=True)
    return ReferenceResult(mixture, obj, n_iter, converged, np.array(trace), pi[:, keep])


def reduce_numpy(
    pooled: GaussianMixtureParams,
    n_components: int,
    start: GaussianMixtureParams | Sequence[GaussianMixtureParams],
    trim: float = 0.0,
    tol: float = 1e-5,
    max_iter: int = 100,
) -> ReferenceResult:
    """Reduce ``pooled`` to at most ``n_components`` Gaussians by the MM iteration of DESIGN.md.

    ``start`` is one mixture or a sequence of them (each with at most ``n_components`` components);
    every start is iterated and the one with the smallest final objective wins (ties: the
    lowest index). ``trim = alpha > 0`` gives the trimmed k-barycenter.
    """
    starts = [start] if isinstance(start, GaussianMixtureParams) else list(start)
    if not starts:
        raise ValueError("at least one start is needed.")
    if not 0.0 <= trim < 1.0:
        raise ValueError(f"trim must lie in [0, 1), got {trim!r}.")
    for s in starts:
        if s.n_components > n_components or s.dim != pooled.dim:
            raise ValueError("every start must have at most n_components components of the pooled dimension.")
    results = [_reduce_one(pooled, s, trim, tol, max_iter) for s in starts]
    objectives = np.array([r.objective for r in results])
    best = int(np.argmin(objectives))
    result = results[best]
    result.start_index = best
    result.start_objectives = objectives
    return result


def _aggregate(mixtures: Sequence[GaussianMixtureParams], n_components: int, trim: float) -> ReferenceResult:
    starts = [mix for mix in mixtures if mix.n_components == n_components]
    if not starts:
        raise ValueError(f"no local estimate has {n_components} components to start from.")
    result = reduce_numpy(pool(mixtures), n_components, starts, trim=trim)
    result.retained = np.arange(len(mixtures))
    return result


def mr_numpy(mixtures: Sequence[GaussianMixtureParams], n_components: int) -> ReferenceResult:
    """Plain mixture reduction (MR) of all local estimates; every K-component estimate is a start."""
    return _aggregate(mixtures, n_components, 0.0)


def tkb_numpy(mixtures: Sequence[GaussianMixtureParams], n_components: int, alpha: float = 0.5) -> ReferenceResult:
    """Trimmed k-barycenter (TKB) of all local estimates with trimming level ``alpha``."""
    return _aggregate(mixtures, n_components, alpha)


def reduce_bruteforce(pooled: GaussianMixtureParams, n_components: int) -> tuple[float, GaussianMixtureParams]:
    """Global minimum of the (untrimmed) reduction objective by exhaustive search.

    For a fixed hard partition of the pooled components the best reduced Gaussians are the
    moment-matched ones, and for fixed Gaussians the best plan is the argmin assignment, so
    the global minimum over all mixtures with at most ``n_components`` components is the
    minimum over all ``K^N`` labellings of ``sum_n w_n KL(N_n || MM(cluster of n))``.
    Feasible for ``K^N`` up to about 1e5.
    """
    w_n, mu_n, s_n = pooled.weights, pooled.means, pooled.covariances
    n = w_n.shape[0]
    if n_components**n > 200_000:
        raise ValueError("problem too large for exhaustive search.")
    best_obj, best = math.inf, None
    for labels in itertools.product(range(n_components), repeat=n):
        if labels[0] != 0:  # relabelling symmetry: fix the label of the first component
            continue
        pi = np.zeros((n, n_components))
        pi[np.arange(n), labels] = w_n
        mu, sigma, keep = moment_match(mu_n, s_n, pi)
        cost = _kl_cost(mu_n, s_n, mu, sigma)
        obj = float(np.sum(pi[:, keep] * cost))
        if obj < best_obj:
            best_obj, best = obj, (pi[:, keep].sum(axis=0), mu, sigma)
    assert best is not None
    return best_obj, GaussianMixtureParams(best[0], best[1], best[2], normalize=True)


# --------------------------------------------------------------------------------------------------------------------
# Centre and filter (DFMR)
# --------------------------------------------------------------------------------------------------------------------


def center_numpy(D: np.ndarray) -> int:
    """``argmin_i median(D[i, :])``, the median over the whole row (numpy's linear interpolation), first on ties."""
    return int(np.argmin(np.median(D, axis=1)))


def filter_numpy(D: np.ndarray, kappa: float | None = None) -> tuple[int, float, np.ndarray]:
    """DESIGN.md's filter: (centre, cut-off kappa * r, retained indices), r = sorted(D[c])[floor(m/2)]."""
    m = D.shape[0]
    kappa = m**0.1 if kappa is None else kappa
    c = center_numpy(D)
    cutoff = kappa * np.sort(D[c])[m // 2]
    return c, cutoff, np.flatnonzero(D[c] <= cutoff)


def dfmr_numpy(mixtures: Sequence[GaussianMixtureParams], n_components: int) -> ReferenceResult:
    """DFMR from the NumPy distances, centre and filter above and :func:`mr_numpy` on the retained estimates."""
    c, _, retained = filter_numpy(pairwise_l2_numpy(mixtures))
    result = mr_numpy([mixtures[i] for i in retained], n_components)
    result.retained = retained
    result.center = c
    return result


# --------------------------------------------------------------------------------------------------------------------
# The global fit of sites with their own proportions (the oracle of site_weights="free")
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class SiteEMResult:
    """EM with shared components and one proportion vector per site."""

    weights: np.ndarray  # (m, K)
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # (K, d, d)
    loglik: float
    n_iter: int


def em_site_proportions(
    parts: Sequence[np.ndarray], weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, *,
    max_iter: int = 1000, tol: float = 1e-10,
) -> SiteEMResult:
    """Maximum likelihood of ``p_i = sum_k pi_ik N(mu_k, Sigma_k)`` on all sites' data, by EM.

    The E-step weighs each site's points by its own ``pi_i``; the M-step sets ``pi_ik`` to the
    site's mean responsibility and ``mu_k``, ``Sigma_k`` to the responsibility-weighted moments
    over all sites (plain MLE, no penalty). Starts from the given parameters (``weights`` of shape
    (m, K)); stops when the log-likelihood gains less than ``tol`` times its magnitude.
    """
    weights = np.array(weights, dtype=float)
    means = np.array(means, dtype=float)
    covs = np.array(covariances, dtype=float)
    k = means.shape[0]
    prev = -np.inf
    n_iter = 0
    while True:
        n_iter += 1
        resp, loglik = [], 0.0
        for i, X in enumerate(parts):
            with np.errstate(divide="ignore"):  # a site's proportion may reach 0: log 0 = -inf, its terms vanish
                logp = np.column_stack([np.log(weights[i, j]) + stats.multivariate_normal(means[j], covs[j]).logpdf(X)
                                        for j in range(k)])
            top = logp.max(axis=1, keepdims=True)
            norm = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
            loglik += float(norm.sum())
            resp.append(np.exp(logp - norm[:, None]))
        if loglik - prev < tol * abs(loglik) or n_iter > max_iter:
            break
        prev = loglik
        weights = np.array([r.mean(axis=0) for r in resp])
        X_all, R = np.vstack(parts), np.vstack(resp)
        nk = R.sum(axis=0)
        means = (R.T @ X_all) / nk[:, None]
        for j in range(k):
            dev = X_all - means[j]
            covs[j] = (R[:, j, None] * dev).T @ dev / nk[j]
    return SiteEMResult(weights, means, covs, loglik, n_iter)
