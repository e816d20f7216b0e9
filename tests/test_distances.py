"""L2 distances between Gaussian mixtures: the compiled core against the independent reference.

The first group checks the reference itself (closed form against numerical integration and
hand-written analytic values); the second group checks ``dfmr.pairwise_l2``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref
from conftest import fixture_estimates, random_mixture, random_spd

import dfmr
from dfmr import GaussianMixtureParams

RTOL = 1e-10


def _mixtures(seed: int, dim: int, ks: tuple[int, ...], **kwargs: float) -> list[GaussianMixtureParams]:
    rng = np.random.default_rng(seed)
    return [random_mixture(rng, k, dim, **kwargs) for k in ks]


def _single_gaussian_sq(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
    """``||N(m1,S1) - N(m2,S2)||^2 = N(0;0,2 S1) + N(0;0,2 S2) - 2 N(m1;m2,S1+S2)`` written out by hand."""
    d = m1.shape[0]

    def log_peak(s: np.ndarray) -> float:  # log N(0; 0, s)
        return -0.5 * (d * math.log(2.0 * math.pi) + np.linalg.slogdet(s)[1])

    diff = m1 - m2
    s12 = s1 + s2
    log_cross = log_peak(s12) - 0.5 * float(diff @ np.linalg.solve(s12, diff))
    return math.exp(log_peak(2.0 * s1)) + math.exp(log_peak(2.0 * s2)) - 2.0 * math.exp(log_cross)


def _isotropic(weights: list[float], means: np.ndarray, scales: list[float]) -> GaussianMixtureParams:
    d = means.shape[1]
    return GaussianMixtureParams(weights, means, np.array([s * np.eye(d) for s in scales]))


def _extreme_pairs() -> dict[str, tuple[GaussianMixtureParams, GaussianMixtureParams]]:
    """Isotropic mixtures at extreme separations and scales (d = 3)."""
    e = np.eye(3)
    return {
        "1e6_apart": (
            _isotropic([0.5, 0.5], np.array([np.zeros(3), 1e6 * e[0]]), [1.0, 1.0]),
            _isotropic([0.3, 0.7], np.array([0.5 * e[1], 1e6 * e[0] + 0.7 * e[2]]), [2.0, 0.5]),
        ),
        "1e6_apart_disjoint": (
            _isotropic([1.0], np.zeros((1, 3)), [1.0]),
            _isotropic([0.4, 0.6], np.array([1e6 * e[0], -1e6 * e[1]]), [1.0, 3.0]),
        ),
        "cov_1e-8": (
            _isotropic([0.6, 0.4], np.array([np.zeros(3), 2e-4 * e[0]]), [1e-8, 2e-8]),
            _isotropic([0.5, 0.5], np.array([1e-4 * e[1], 1e-4 * e[0]]), [1.5e-8, 1e-8]),
        ),
        "cov_1e8": (
            _isotropic([0.6, 0.4], np.array([np.zeros(3), 2e4 * e[0]]), [1e8, 2e8]),
            _isotropic([0.5, 0.5], np.array([1e4 * e[1], 1e4 * e[0]]), [1.5e8, 1e8]),
        ),
        "cov_1e-8_vs_1e8": (
            _isotropic([0.5, 0.5], np.array([np.zeros(3), 1e-4 * e[2]]), [1e-8, 1e-8]),
            _isotropic([1.0], np.zeros((1, 3)), [1e8]),
        ),
    }


# ---------------------------------------------------------------------------------------------------------------------
# The reference itself
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_reference_loop_matches_quad_1d(seed: int) -> None:
    f, g, h = _mixtures(seed, 1, (1, 2, 4), spread=1.5)
    for a, b in [(f, g), (f, h), (g, h)]:
        assert ref.l2_distance_loop(a, b) == pytest.approx(ref.l2_distance_quad(a, b), rel=RTOL)


@pytest.mark.parametrize("seed", range(3))
def test_reference_loop_matches_grid_2d(seed: int) -> None:
    f, g = _mixtures(100 + seed, 2, (2, 3), spread=1.5)
    assert ref.l2_distance_loop(f, g) == pytest.approx(ref.l2_distance_quad(f, g), rel=RTOL)


def test_reference_quad_detects_a_wrong_formula() -> None:
    """The integration is sharp enough to tell the closed form from a slightly wrong one."""
    f, g = _mixtures(7, 1, (2, 2))
    wrong = ref._cross_term_loop(f, f) + ref._cross_term_loop(g, g) - 2.0 * ref._cross_term_loop(f, g) * (1 + 1e-8)
    assert abs(math.sqrt(wrong) / ref.l2_distance_quad(f, g) - 1) > 1e-9


@pytest.mark.parametrize("dim", [1, 2, 5, 20])
def test_reference_numpy_matches_loop(dim: int) -> None:
    mixes = _mixtures(dim, dim, (1, 3, 4, 2), spread=1.0)
    dist = ref.pairwise_l2_numpy(mixes)
    for i in range(len(mixes)):
        assert dist[i, i] == 0.0
        for j in range(i + 1, len(mixes)):
            assert dist[i, j] == dist[j, i]
            assert dist[i, j] == pytest.approx(ref.l2_distance_loop(mixes[i], mixes[j]), rel=RTOL)


@pytest.mark.parametrize("case", sorted(_extreme_pairs()))
def test_reference_extreme_cases_match_closed_form(case: str) -> None:
    f, g = _extreme_pairs()[case]
    expected = ref.l2_squared_isotropic(f, g)
    assert math.isfinite(expected) and expected > 0
    assert ref.l2_squared_loop(f, g) == pytest.approx(expected, rel=RTOL)
    assert ref.pairwise_l2_numpy([f, g])[0, 1] == pytest.approx(math.sqrt(expected), rel=RTOL)


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_reference_single_gaussians_closed_form(scale: float) -> None:
    rng = np.random.default_rng(3)
    d = 4
    s1, s2 = random_spd(rng, d, scale), random_spd(rng, d, scale)
    m1, m2 = math.sqrt(scale) * rng.standard_normal(d), math.sqrt(scale) * rng.standard_normal(d)
    f, g = GaussianMixtureParams([1.0], m1[None], s1[None]), GaussianMixtureParams([1.0], m2[None], s2[None])
    assert ref.l2_squared_loop(f, g) == pytest.approx(_single_gaussian_sq(m1, s1, m2, s2), rel=RTOL)


# ---------------------------------------------------------------------------------------------------------------------
# The compiled core against the reference
# ---------------------------------------------------------------------------------------------------------------------


def _offdiag_pairs(m: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(m) for j in range(m) if i != j]


@pytest.mark.parametrize("seed", range(3))
def test_core_matches_quad_1d(seed: int) -> None:
    mixes = _mixtures(10 + seed, 1, (1, 2, 3, 5), spread=1.5)
    dist = dfmr.pairwise_l2(mixes)
    assert dist.shape == (4, 4)
    for i, j in _offdiag_pairs(4):
        assert dist[i, j] == pytest.approx(ref.l2_distance_quad(mixes[i], mixes[j]), rel=RTOL), (i, j)


@pytest.mark.parametrize("seed", range(2))
def test_core_matches_grid_2d(seed: int) -> None:
    mixes = _mixtures(20 + seed, 2, (1, 2, 3), spread=1.5)
    dist = dfmr.pairwise_l2(mixes)
    for i, j in _offdiag_pairs(3):
        assert dist[i, j] == pytest.approx(ref.l2_distance_quad(mixes[i], mixes[j]), rel=RTOL), (i, j)


@pytest.mark.parametrize("dim", [1, 5, 20])
def test_core_matches_loop(dim: int) -> None:
    mixes = _mixtures(30 + dim, dim, (1, 3, 4, 5, 2), spread=1.0)
    dist = dfmr.pairwise_l2(mixes)
    for i, j in _offdiag_pairs(len(mixes)):
        assert dist[i, j] == pytest.approx(ref.l2_distance_loop(mixes[i], mixes[j]), rel=RTOL), (i, j)


def test_core_matches_reference_on_shipped_estimates() -> None:
    mixes = fixture_estimates()
    dist = dfmr.pairwise_l2(mixes)
    np.testing.assert_allclose(dist, ref.pairwise_l2_numpy(mixes), rtol=RTOL, atol=0.0)
    for i, j in [(0, 1), (3, 17), (19, 5)]:
        assert dist[i, j] == pytest.approx(ref.l2_distance_loop(mixes[i], mixes[j]), rel=RTOL)


def test_core_symmetric_with_zero_diagonal() -> None:
    mixes = _mixtures(40, 3, (2, 3, 1, 4, 3, 2), spread=1.0)
    dist = dfmr.pairwise_l2(mixes)
    assert isinstance(dist, np.ndarray) and dist.dtype == np.float64 and dist.shape == (6, 6)
    assert np.all(np.isfinite(dist))
    assert np.all(np.diag(dist) == 0.0)
    assert np.array_equal(dist, dist.T)
    assert np.all(dist[~np.eye(6, dtype=bool)] > 0)


def test_core_invariant_to_component_order() -> None:
    rng = np.random.default_rng(41)
    mixes = [random_mixture(rng, k, 4, spread=1.0) for k in (3, 5, 2, 4)]
    shuffled = [mix.permute(rng.permutation(mix.n_components)) for mix in mixes]
    dist, dist_shuffled = dfmr.pairwise_l2(mixes), dfmr.pairwise_l2(shuffled)
    np.testing.assert_allclose(dist_shuffled, dist, rtol=1e-12, atol=1e-12 * dist.max())


def test_core_identical_mixtures_are_at_distance_zero() -> None:
    rng = np.random.default_rng(42)
    f = random_mixture(rng, 4, 3)
    g = random_mixture(rng, 2, 3)
    dist = dfmr.pairwise_l2([f, f.permute([2, 0, 3, 1]), g, f])
    self_term = math.sqrt(ref._cross_term_loop(f, f))
    assert dist[0, 1] <= 1e-6 * self_term
    assert dist[0, 3] <= 1e-6 * self_term
    assert dist[0, 2] == pytest.approx(ref.l2_distance_loop(f, g), rel=RTOL)


@pytest.mark.parametrize("case", sorted(_extreme_pairs()))
def test_core_extreme_cases(case: str) -> None:
    f, g = _extreme_pairs()[case]
    dist = dfmr.pairwise_l2([f, g])
    assert np.all(np.isfinite(dist))
    assert dist[0, 1] == pytest.approx(math.sqrt(ref.l2_squared_isotropic(f, g)), rel=RTOL)


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_core_single_gaussians_closed_form(scale: float) -> None:
    rng = np.random.default_rng(43)
    d = 4
    s1, s2 = random_spd(rng, d, scale), random_spd(rng, d, scale)
    m1, m2 = math.sqrt(scale) * rng.standard_normal(d), math.sqrt(scale) * rng.standard_normal(d)
    f, g = GaussianMixtureParams([1.0], m1[None], s1[None]), GaussianMixtureParams([1.0], m2[None], s2[None])
    dist = dfmr.pairwise_l2([f, g])
    assert dist[0, 1] == pytest.approx(math.sqrt(_single_gaussian_sq(m1, s1, m2, s2)), rel=RTOL)


def test_core_thread_count_does_not_change_results() -> None:
    rng = np.random.default_rng(44)
    mixes = [random_mixture(rng, int(k), 5) for k in rng.integers(1, 6, size=40)]
    one = dfmr.pairwise_l2(mixes, n_threads=1)
    two = dfmr.pairwise_l2(mixes, n_threads=2)
    default = dfmr.pairwise_l2(mixes)
    assert np.array_equal(one, two)
    assert np.array_equal(one, default)
    np.testing.assert_allclose(one, ref.pairwise_l2_numpy(mixes), rtol=RTOL, atol=0.0)
