"""Attacks on aggregators of local mixture estimates, beyond the paper's (shared by tests and benchmarks).

Every attack returns estimates that pass :class:`dfmr.GaussianMixtureParams` validation. An attack
is a family with one strength parameter ``t``; :func:`adaptive` searches ``t`` over a grid against a
given aggregator and keeps the strongest (the attacker knows the honest estimates and the method).
Strengths are in units of the local sampling error where that is meaningful: a component fitted
to ``n w_k`` points has mean error ``L_k z / sqrt(n w_k)`` (``L_k`` the Cholesky factor of its
covariance), weight error ``sqrt(w_k (1 - w_k) / n)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import dfmr
from dfmr import GaussianMixtureParams, metrics


def _choose(m: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(m, size=int(np.floor(rate * m + 1e-9)), replace=False))


def _unit(rng: np.random.Generator, d: int) -> np.ndarray:
    u = rng.standard_normal(d)
    return u / np.linalg.norm(u)


def extra_component(loc, rate, t, rng, n, flat=False):
    """Bad machines add a component of weight ``10**-t``: far away (100 sd out) or very flat (variance 1e4 x)."""
    bad = _choose(len(loc), rate, rng)
    out = list(loc)
    w_new = 10.0 ** (-t)
    for i in bad:
        f = loc[i]
        j = int(np.argmax(f.weights))
        scale = np.sqrt(np.trace(f.covariances[j]) / f.dim)
        mean = f.means[j] + (0.0 if flat else 100.0 * scale) * _unit(rng, f.dim)
        cov = f.covariances[j] * (1e4 if flat else 1.0)
        out[i] = GaussianMixtureParams(np.append(f.weights * (1 - w_new), w_new), np.vstack([f.means, mean]),
                                       np.concatenate([f.covariances, cov[None]]))
    return out, bad


def scale_covariance(loc, rate, t, rng, n):
    """Bad machines scale the covariance of one component (the same one) by ``1 + t`` (t > -1)."""
    bad = _choose(len(loc), rate, rng)
    k = int(rng.integers(loc[0].n_components))
    out = list(loc)
    for i in bad:
        f = loc[i]
        cov = f.covariances.copy()
        cov[k] *= 1.0 + t
        out[i] = GaussianMixtureParams(f.weights, f.means, cov)
    return out, bad


def shift_means(loc, rate, t, rng, n):
    """Colluders shift every mean by ``t`` local standard errors along one common whitened direction."""
    bad = _choose(len(loc), rate, rng)
    u = _unit(rng, loc[0].dim)
    out = list(loc)
    for i in bad:
        f = loc[i]
        step = np.einsum("kab,b->ka", f.cholesky_factors, u) / np.sqrt(n * f.weights)[:, None]
        out[i] = GaussianMixtureParams(f.weights, f.means + t * step, f.covariances)
    return out, bad


def skew_weights(loc, rate, t, rng, n):
    """Bad machines move weight from one component to another: ``t`` standard errors of the first."""
    bad = _choose(len(loc), rate, rng)
    a, b = rng.choice(loc[0].n_components, size=2, replace=False)
    out = list(loc)
    for i in bad:
        f = loc[i]
        w = f.weights.copy()
        delta = min(t * np.sqrt(w[a] * (1 - w[a]) / n), 0.999 * w[a])
        w[a] -= delta
        w[b] += delta
        out[i] = GaussianMixtureParams(w, f.means, f.covariances)
    return out, bad


def merge_components(loc, rate, t, rng, n):
    """Bad machines pull the two closest components together (fraction ``t`` of the way; 1 merges them)."""
    bad = _choose(len(loc), rate, rng)
    out = list(loc)
    for i in bad:
        f = loc[i]
        dist = np.linalg.norm(f.means[:, None] - f.means[None], axis=2) + np.diag(np.full(f.n_components, np.inf))
        a, b = np.unravel_index(np.argmin(dist), dist.shape)
        w = f.weights[[a, b]]
        mu = (w @ f.means[[a, b]]) / w.sum()
        dev = f.means[[a, b]] - mu
        cov = (np.einsum("n,nij->ij", w, f.covariances[[a, b]]) + np.einsum("n,ni,nj->ij", w, dev, dev)) / w.sum()
        means = f.means.copy()
        covs = f.covariances.copy()
        for j in (a, b):
            means[j] = (1 - t) * f.means[j] + t * mu
            covs[j] = (1 - t) * f.covariances[j] + t * cov
        out[i] = GaussianMixtureParams(f.weights, means, covs)
    return out, bad


def same_estimate(loc, rate, t, rng, n):
    """Colluders all send one estimate: an honest machine's, every mean shifted ``t`` standard errors."""
    bad = _choose(len(loc), rate, rng)
    src = loc[int(rng.choice(np.setdiff1d(np.arange(len(loc)), bad)))]
    shifted, _ = shift_means([src], 1.0, t, rng, n)
    out = list(loc)
    for i in bad:
        out[i] = shifted[0]
    return out, bad


def _consensus(loc, bad):
    """MR over the honest machines: the estimate the colluders start from (they know it)."""
    honest = [loc[i] for i in np.setdiff1d(np.arange(len(loc)), bad)]
    return dfmr.mr(honest, loc[0].n_components).mixture


def colluders(loc, rate, t, rng, n, spread=1e-9, claim=None, skew=0.0, scale=1.0):
    """Colluders send the honest consensus, every mean shifted ``t`` local standard errors.

    ``t`` is one shift for every component or one per component. The shift is along one
    common whitened direction; each colluder adds its own jitter of
    ``spread`` standard errors per mean coordinate (the default 1e-9 defeats an exact-duplicate
    rule), multiplies every covariance by ``scale``, moves ``skew`` weight standard errors from the
    first component to the last, and records ``n_samples=claim`` (None: no size).
    """
    bad = _choose(len(loc), rate, rng)
    base = _consensus(loc, bad)
    u = _unit(rng, base.dim)
    se = base.cholesky_factors / np.sqrt(n * base.weights)[:, None, None]  # (K, d, d)
    w = base.weights.copy()
    if base.n_components > 1:
        delta = min(skew * np.sqrt(w[0] * (1 - w[0]) / n), 0.99 * w[0]) if skew >= 0 else \
            max(skew * np.sqrt(w[-1] * (1 - w[-1]) / n), -0.99 * w[-1])
        w[0] -= delta
        w[-1] += delta
    out = list(loc)
    for i in bad:
        z = np.asarray(t, dtype=float).reshape(-1, 1) * u[None, :] + spread * rng.standard_normal(base.means.shape)
        out[i] = GaussianMixtureParams(w, base.means + np.einsum("kab,kb->ka", se, z), base.covariances * scale,
                                       n_samples=None if claim is None else int(claim))
    return out, bad


def copy_honest(loc, rate, t, rng, n):
    """Every bad machine sends an exact copy of an honest machine with a higher index (``t`` unused)."""
    m = len(loc)
    k = int(np.floor(rate * m + 1e-9))
    bad = np.arange(k)  # the lowest indices, so a first-come duplicate rule keeps the copies
    out = list(loc)
    for j, i in enumerate(bad):
        out[i] = loc[m - 1 - j]
    return out, bad


FAMILIES: dict[str, tuple[Callable, tuple[float, ...]]] = {
    "extra far component": (extra_component, (6.0, 4.0, 3.0, 2.0)),
    "extra flat component": (lambda loc, rate, t, rng, n: extra_component(loc, rate, t, rng, n, flat=True),
                             (6.0, 4.0, 3.0, 2.0)),
    "scaled covariance": (scale_covariance, (0.1, 0.2, 0.4, 1.0, 3.0)),
    "shifted means": (shift_means, (1.0, 2.0, 3.0, 5.0, 8.0)),
    "weight skew": (skew_weights, (1.0, 2.0, 4.0, 8.0, 20.0)),
    "merged components": (merge_components, (0.05, 0.1, 0.3, 1.0)),
    "same estimate": (same_estimate, (0.0, 2.0, 4.0, 8.0)),
    "near-identical colluders": (colluders, (0.0, 3.0, 6.0, 9.0, 12.0)),
    "claim n = 1": (lambda loc, rate, t, rng, n: colluders(loc, rate, t, rng, n, claim=1), (30.0, 100.0, 300.0)),
    "claim n = 1e12": (lambda loc, rate, t, rng, n: colluders(loc, rate, t, rng, n, claim=10**12),
                       (3.0, 9.0, 30.0)),
    "copy an honest machine": (copy_honest, (0.0,)),
}


def adaptive(
    family: str,
    aggregate: Callable[[list[GaussianMixtureParams]], GaussianMixtureParams],
    loc: list[GaussianMixtureParams],
    truth: GaussianMixtureParams,
    rate: float,
    seed: int,
    n: int,
    n_components: int,
    grid: tuple[float, ...] | None = None,
) -> tuple[float, float]:
    """The attacker's best strength against ``aggregate``: ``(W1 ratio to the oracle, t)``.

    The oracle is MR over the honest machines; the same seed fixes the bad machines and the
    directions for every ``t``, so only the strength is searched.
    """
    make, default_grid = FAMILIES[family]
    best = (-np.inf, np.nan)
    for t in grid or default_grid:
        attacked, bad = make(loc, rate, t, np.random.default_rng(seed), n)
        oracle = dfmr.mr([loc[i] for i in np.setdiff1d(np.arange(len(loc)), bad)], n_components).mixture
        ratio = metrics.w1_distance(aggregate(attacked), truth) / metrics.w1_distance(oracle, truth)
        best = max(best, (ratio, t))
    return best


THREE_GAUSSIANS_3D = GaussianMixtureParams(
    [0.3, 0.3, 0.4], [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.5]],
    [np.eye(3), np.diag([1.0, 0.5, 1.5]), [[1.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.0]]])
"""A d = 3, K = 3 population with overlapping components (the calibration issue's second setting)."""

TWO_GAUSSIANS = GaussianMixtureParams([0.4, 0.6], [[-2.0], [2.0]], [[[1.0]], [[1.5**2]]])
"""The issue's efficiency population 0.4 N(-2, 1) + 0.6 N(2, 1.5^2)."""


def honest_fits(population: GaussianMixtureParams, n_machines: int, n: int, seed: int) -> tuple[list, np.ndarray]:
    """``n_machines`` local pMLE fits of ``n`` points each, and all the points (for a global fit)."""
    X, _ = population.sample(n_machines * n, random_state=seed)
    parts = np.split(X, n_machines)
    return [dfmr.fit_local(p, population.n_components, random_state=seed + i) for i, p in enumerate(parts)], X
