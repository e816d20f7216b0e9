"""Federations of unequal sites (shared by tests/test_federations.py and bench_federations.py).

Sites of unequal size drawn from one population, sites that see only some of the clusters,
and the independent references the goals are measured against: the size-weighted MR built
by hand (``sum_i n_i w_ik / sum_j n_j`` pooled, then reduced) and the global fit.
"""

from __future__ import annotations

import numpy as np

import dfmr
from dfmr import GaussianMixtureParams
from dfmr.reduction import default_starts, reduce

TWO_GAUSSIANS = GaussianMixtureParams([0.4, 0.6], [[-2.0], [2.0]], [[[1.0]], [[1.5**2]]])
SIZES = (200, 300, 500, 800, 1_000, 2_000, 4_000, 8_000, 12_000, 20_000)

# Four well-separated clusters in the plane; site i sees all but cluster i mod 4.
FOUR_CORNERS = GaussianMixtureParams(np.full(4, 0.25), [[-6.0, -6.0], [6.0, -6.0], [-6.0, 6.0], [6.0, 6.0]],
                                     np.array([np.eye(2)] * 4))
FAKE_MEAN = np.array([0.0, 20.0])  # the attackers' own cluster, far from the four


def unequal_sites(rng: np.random.Generator, sizes=SIZES, population=TWO_GAUSSIANS) -> list[np.ndarray]:
    """One data set: site i holds ``sizes[i]`` points of ``population``."""
    return [population.sample(int(n), rng)[0] for n in sizes]


def size_weighted_mr(mixtures, sizes, k: int) -> GaussianMixtureParams:
    """The oracle by hand: component (i, k) pooled with weight ``n_i w_ik / sum_j n_j``, MR to k."""
    share = np.asarray(sizes, dtype=float) / float(np.sum(sizes))
    pooled = GaussianMixtureParams(
        np.concatenate([s * f.weights for s, f in zip(share, mixtures)]),
        np.concatenate([f.means for f in mixtures]), np.concatenate([f.covariances for f in mixtures]))
    return reduce(pooled, k, default_starts(list(mixtures), k)).mixture


def partial_sites(rng: np.random.Generator, n_sites: int = 16, n: int = 400, attackers: int = 0) -> list[np.ndarray]:
    """Site i sees the three clusters of FOUR_CORNERS other than ``i mod 4`` (``n`` points each);
    each attacker holds three real clusters plus a cluster of its own at FAKE_MEAN (a quarter of
    its points)."""
    means = FOUR_CORNERS.means
    parts = []
    for i in range(n_sites):
        seen = [c for c in range(4) if c != i % 4]
        parts.append(means[rng.choice(seen, n)] + rng.standard_normal((n, 2)))
    for _ in range(attackers):
        real = means[rng.choice(3, n)] + rng.standard_normal((n, 2))
        parts.append(np.vstack([real, FAKE_MEAN + rng.standard_normal((n // 3, 2))]))
    return parts


def has_fake(mixture: GaussianMixtureParams, radius: float = 5.0) -> bool:
    """Whether a component of ``mixture`` sits at the attackers' cluster."""
    return bool(np.any(np.linalg.norm(mixture.means - FAKE_MEAN, axis=1) < radius))


def global_fit(parts, k: int, seed: int) -> GaussianMixtureParams:
    """The global pMLE on all the honest data (the reference of the goals)."""
    return dfmr.fit_local(np.vstack(parts), k, random_state=seed)
