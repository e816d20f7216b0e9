"""The paper's set-up end to end: 100,000 points, 20 machines, local pMLE, DFMR."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

import dfmr
from dfmr import metrics, simulate


@pytest.mark.parametrize("seed", [0, 1])
def test_dfmr_fit_is_as_accurate_as_a_global_fit(seed):
    truth = simulate.population()
    X, _ = truth.sample(100_000, np.random.default_rng(seed))
    est = dfmr.DistributedGaussianMixture(n_components=5, n_machines=20, random_state=seed).fit(X)
    glob = GaussianMixture(5, covariance_type="full", random_state=seed).fit(X)
    glob_mix = dfmr.GaussianMixtureParams(glob.weights_, glob.means_, glob.covariances_, normalize=True)
    w1_dfmr = metrics.w1_distance(est.mixture_, truth)
    w1_global = metrics.w1_distance(glob_mix, truth)
    assert w1_dfmr <= 1.5 * w1_global, (w1_dfmr, w1_global)
    # Both are accurate in absolute terms: the components are 10-dimensional with
    # standard deviations ~0.3, so a W1 of 0.1 already means a visibly wrong component.
    assert w1_dfmr < 0.1
    # kappa >= 1 and r the floor(m/2)-th order statistic: a majority is always kept.
    assert len(est.aggregation_.retained) >= 20 // 2 + 1


def test_dfmr_fit_survives_byzantine_machines():
    truth = simulate.population()
    X, _ = truth.sample(100_000, np.random.default_rng(5))
    parts = simulate.split(X, 20, random_state=5)
    rng = np.random.default_rng(6)
    for i in (2, 7, 11, 19):  # four machines hold garbage instead of data
        parts[i] = rng.normal(0.0, 30.0, size=parts[i].shape)
    est = dfmr.DistributedGaussianMixture(n_components=5, n_machines=20, random_state=5).fit_partitions(parts)
    assert not np.isin([2, 7, 11, 19], est.aggregation_.retained).any()
    honest = [p for i, p in enumerate(parts) if i not in (2, 7, 11, 19)]
    oracle = dfmr.DistributedGaussianMixture(n_components=5, n_machines=16, aggregator="mr", random_state=5)
    w1_oracle = metrics.w1_distance(oracle.fit_partitions(honest).mixture_, truth)
    assert metrics.w1_distance(est.mixture_, truth) <= 1.05 * w1_oracle
