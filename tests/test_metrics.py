"""Tests of dfmr.metrics against independent computations (SciPy, scikit-learn, closed forms)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
from scipy.optimize import linear_sum_assignment
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score

from dfmr.metrics import ari, ari_on_sample, log_likelihood, w1_cost_matrix, w1_distance
from dfmr.params import GaussianMixtureParams


def random_mixture(rng: np.random.Generator, k: int, d: int, uniform: bool = False) -> GaussianMixtureParams:
    weights = np.full(k, 1.0 / k) if uniform else rng.dirichlet(np.ones(k))
    means = rng.normal(0.0, 3.0, size=(k, d))
    factors = rng.normal(size=(k, d, d))
    covariances = factors @ np.swapaxes(factors, 1, 2) + 0.5 * np.eye(d)
    return GaussianMixtureParams(weights, means, covariances, normalize=True)


def reference_cost(a: GaussianMixtureParams, b: GaussianMixtureParams) -> np.ndarray:
    """Ground cost with SciPy's general matrix square root, one pair at a time."""
    cost = np.empty((a.n_components, b.n_components))
    for i, j in itertools.product(range(a.n_components), range(b.n_components)):
        root_diff = np.real(scipy.linalg.sqrtm(a.covariances[i]) - scipy.linalg.sqrtm(b.covariances[j]))
        cost[i, j] = np.linalg.norm(a.means[i] - b.means[j]) + np.sqrt(np.sum(root_diff**2))
    return cost


def brute_force_transport(wa: np.ndarray, wb: np.ndarray, cost: np.ndarray) -> float:
    """Minimum cost over all vertices (basic feasible solutions) of the transport polytope."""
    ka, kb = cost.shape
    constraints = np.vstack([np.kron(np.eye(ka), np.ones(kb)), np.kron(np.ones(ka), np.eye(kb))])
    rhs = np.concatenate([wa, wb])
    basis_size = ka + kb - 1
    best = np.inf
    for cells in itertools.combinations(range(ka * kb), basis_size):
        sub = constraints[:, cells]
        if np.linalg.matrix_rank(sub) < basis_size:
            continue
        x, *_ = np.linalg.lstsq(sub, rhs, rcond=None)
        if np.allclose(sub @ x, rhs, atol=1e-12) and np.all(x >= -1e-12):
            best = min(best, float(cost.ravel()[list(cells)] @ x))
    return best


def line_mixture(points: np.ndarray, weights: np.ndarray, d: int = 3) -> GaussianMixtureParams:
    """Components with means on the first axis and a common covariance: the cost is |t_a - t_b|."""
    means = np.zeros((len(points), d))
    means[:, 0] = points
    cov = np.diag(np.arange(1.0, d + 1.0))
    return GaussianMixtureParams(weights, means, np.repeat(cov[None], len(points), axis=0))


def line_w1(pa: np.ndarray, wa: np.ndarray, pb: np.ndarray, wb: np.ndarray) -> float:
    """W1 on the real line: the integral of |F_a - F_b|."""
    grid = np.union1d(pa, pb)
    cdf_a = np.array([wa[pa <= t].sum() for t in grid[:-1]])
    cdf_b = np.array([wb[pb <= t].sum() for t in grid[:-1]])
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(grid)))


# --- W1 distance ---------------------------------------------------------------------------------


def test_cost_matrix_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    a, b = random_mixture(rng, 3, 4), random_mixture(rng, 5, 4)
    np.testing.assert_allclose(w1_cost_matrix(a, b), reference_cost(a, b), rtol=1e-8)


def test_w1_of_a_mixture_with_itself_is_zero():
    rng = np.random.default_rng(1)
    a = random_mixture(rng, 4, 3)
    assert w1_distance(a, a) == pytest.approx(0.0, abs=1e-10)


def test_w1_is_symmetric():
    rng = np.random.default_rng(2)
    a, b = random_mixture(rng, 3, 2), random_mixture(rng, 4, 2)
    assert w1_distance(a, b) == pytest.approx(w1_distance(b, a), rel=1e-7)


def test_w1_is_invariant_to_component_order():
    rng = np.random.default_rng(3)
    a, b = random_mixture(rng, 4, 3), random_mixture(rng, 3, 3)
    expected = w1_distance(a, b)
    assert w1_distance(a.permute([2, 0, 3, 1]), b.permute([1, 2, 0])) == pytest.approx(expected, rel=1e-7)


def test_w1_of_single_components_is_the_closed_form_cost():
    rng = np.random.default_rng(4)
    a, b = random_mixture(rng, 1, 5), random_mixture(rng, 1, 5)
    assert w1_distance(a, b) == pytest.approx(reference_cost(a, b)[0, 0], rel=1e-8)


def test_w1_against_a_single_component_averages_the_costs():
    # With one component on one side the transport plan is forced: P[i, 0] = w_i.
    rng = np.random.default_rng(5)
    a, b = random_mixture(rng, 4, 3), random_mixture(rng, 1, 3)
    expected = float(a.weights @ reference_cost(a, b)[:, 0])
    assert w1_distance(a, b) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_w1_with_uniform_weights_is_the_mean_assignment_cost(k):
    # Birkhoff: with equal uniform weights an optimal plan is a permutation.
    rng = np.random.default_rng(10 + k)
    a, b = random_mixture(rng, k, 3, uniform=True), random_mixture(rng, k, 3, uniform=True)
    cost = reference_cost(a, b)
    rows, cols = linear_sum_assignment(cost)
    assert w1_distance(a, b) == pytest.approx(cost[rows, cols].mean(), rel=1e-7)


@pytest.mark.parametrize(("ka", "kb"), [(2, 2), (2, 3), (3, 3), (3, 2)])
def test_w1_agrees_with_brute_force_vertex_enumeration(ka, kb):
    rng = np.random.default_rng(20 + 3 * ka + kb)
    a, b = random_mixture(rng, ka, 2), random_mixture(rng, kb, 2)
    expected = brute_force_transport(a.weights, b.weights, reference_cost(a, b))
    assert w1_distance(a, b) == pytest.approx(expected, rel=1e-7)


def test_w1_of_collinear_means_is_the_one_dimensional_wasserstein_distance():
    rng = np.random.default_rng(6)
    pa, pb = rng.normal(size=4), rng.normal(size=6)
    wa, wb = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(6))
    a, b = line_mixture(pa, wa), line_mixture(pb, wb)
    assert w1_distance(a, b) == pytest.approx(line_w1(pa, a.weights, pb, b.weights), rel=1e-7)


def test_w1_of_scaled_identity_covariances_is_the_one_dimensional_distance_of_the_scales():
    # Sigma = s^2 I has root s I, so the cost is sqrt(d) |s_a - s_b| when the means agree.
    rng = np.random.default_rng(7)
    d = 4
    sa, sb = rng.uniform(0.5, 3.0, size=3), rng.uniform(0.5, 3.0, size=5)
    wa, wb = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(5))

    def scaled(scales, weights):
        return GaussianMixtureParams(weights, np.zeros((len(scales), d)), scales[:, None, None] ** 2 * np.eye(d))

    a, b = scaled(sa, wa), scaled(sb, wb)
    expected = np.sqrt(d) * line_w1(sa, a.weights, sb, b.weights)
    assert w1_distance(a, b) == pytest.approx(expected, rel=1e-7)


def test_w1_satisfies_the_triangle_inequality():
    rng = np.random.default_rng(8)
    for _ in range(10):
        a, b, c = (random_mixture(rng, int(rng.integers(1, 5)), 2) for _ in range(3))
        assert w1_distance(a, c) <= w1_distance(a, b) + w1_distance(b, c) + 1e-9


def test_w1_of_a_translated_mixture_is_the_length_of_the_translation():
    # Any plan costs at least ||sum_ij P_ij (mu_i - nu_j)|| = ||(1, 1)||; the identity plan costs exactly that.
    rng = np.random.default_rng(9)
    a = random_mixture(rng, 3, 2)
    shifted = GaussianMixtureParams(a.weights, a.means + 1.0, a.covariances)
    assert w1_distance(a, shifted) == pytest.approx(np.sqrt(2.0), rel=1e-7)


def test_w1_rejects_mixtures_of_different_dimensions():
    rng = np.random.default_rng(11)
    with pytest.raises(ValueError, match="dimension"):
        w1_distance(random_mixture(rng, 2, 2), random_mixture(rng, 2, 3))


def test_w1_rejects_objects_that_are_not_mixtures():
    rng = np.random.default_rng(12)
    with pytest.raises(TypeError, match="GaussianMixtureParams"):
        w1_distance(random_mixture(rng, 2, 2), {"weights": [1.0]})


# --- ARI -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "ka", "kb"), [(2, 2, 2), (10, 3, 2), (200, 5, 5), (1000, 7, 3), (50, 50, 2)])
def test_ari_matches_sklearn_on_random_labellings(n, ka, kb):
    rng = np.random.default_rng(n + ka + kb)
    for _ in range(5):
        a, b = rng.integers(0, ka, size=n), rng.integers(0, kb, size=n)
        assert ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_ari_matches_sklearn_on_correlated_labellings():
    rng = np.random.default_rng(13)
    a = rng.integers(0, 4, size=500)
    b = np.where(rng.random(500) < 0.8, a, rng.integers(0, 4, size=500))
    assert ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_ari_of_identical_labellings_is_one():
    labels = np.random.default_rng(14).integers(0, 6, size=300)
    assert ari(labels, labels) == 1.0


def test_ari_is_invariant_to_relabelling():
    rng = np.random.default_rng(15)
    a, b = rng.integers(0, 4, size=400), rng.integers(0, 3, size=400)
    renamed = np.array(["w", "x", "y", "z"])[np.array([2, 0, 3, 1])[a]]
    assert ari(renamed, b) == pytest.approx(ari(a, b), abs=1e-14)
    assert ari(a, b) == pytest.approx(ari(b, a), abs=1e-14)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([0, 0, 0], [1, 1, 1]),
        ([0, 1, 2, 3], [3, 2, 1, 0]),
        ([0, 0, 0, 0], [0, 1, 2, 3]),
        ([5], [7]),
        ([0, 0, 1, 1], [0, 1, 0, 1]),
    ],
)
def test_ari_matches_sklearn_on_degenerate_partitions(a, b):
    assert ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_ari_rejects_bad_labellings():
    with pytest.raises(ValueError, match="same length"):
        ari([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        ari([[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="empty"):
        ari([], [])


# --- log-likelihood and ARI on a sample ----------------------------------------------------------


def test_log_likelihood_matches_scipy_densities():
    rng = np.random.default_rng(16)
    mix = random_mixture(rng, 3, 4)
    X = rng.normal(0.0, 3.0, size=(50, 4))
    density = sum(
        w * multivariate_normal(mu, cov).pdf(X) for w, mu, cov in zip(mix.weights, mix.means, mix.covariances)
    )
    assert log_likelihood(mix, X) == pytest.approx(np.mean(np.log(density)), rel=1e-10)


def test_log_likelihood_rejects_bad_data():
    mix = random_mixture(np.random.default_rng(17), 2, 3)
    with pytest.raises(ValueError, match="shape"):
        log_likelihood(mix, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="no rows"):
        log_likelihood(mix, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        log_likelihood(mix, np.array([[0.0, np.nan, 1.0]]))


def test_ari_on_sample_matches_an_independent_posterior_labelling():
    rng = np.random.default_rng(18)
    truth, estimate = random_mixture(rng, 3, 2), random_mixture(rng, 4, 2)
    X, _ = truth.sample(2000, random_state=5)

    def map_labels(mix):
        components = zip(mix.weights, mix.means, mix.covariances)
        scores = [w * multivariate_normal(mu, cov).pdf(X) for w, mu, cov in components]
        return np.argmax(np.column_stack(scores), axis=1)

    expected = adjusted_rand_score(map_labels(estimate), map_labels(truth))
    assert ari_on_sample(estimate, truth, n=2000, random_state=5) == pytest.approx(expected, abs=1e-12)


def test_ari_on_sample_of_the_truth_itself_is_one_in_any_component_order():
    truth = random_mixture(np.random.default_rng(19), 4, 3)
    assert ari_on_sample(truth, truth, n=500, random_state=0) == 1.0
    assert ari_on_sample(truth.permute([3, 1, 0, 2]), truth, n=500, random_state=0) == 1.0


def test_ari_on_sample_of_a_single_component_estimate_is_zero():
    # One label for every point carries no information about a partition with several clusters.
    rng = np.random.default_rng(20)
    truth, estimate = random_mixture(rng, 3, 2), random_mixture(rng, 1, 2)
    assert ari_on_sample(estimate, truth, n=300, random_state=1) == pytest.approx(0.0, abs=1e-12)


def test_ari_on_sample_is_reproducible_with_a_seed():
    rng = np.random.default_rng(21)
    truth, estimate = random_mixture(rng, 3, 2), random_mixture(rng, 3, 2)
    first = ari_on_sample(estimate, truth, n=400, random_state=3)
    assert ari_on_sample(estimate, truth, n=400, random_state=3) == first


def test_ari_on_sample_rejects_bad_arguments():
    rng = np.random.default_rng(22)
    a, b = random_mixture(rng, 2, 2), random_mixture(rng, 2, 3)
    with pytest.raises(ValueError, match="dimension"):
        ari_on_sample(a, b)
    with pytest.raises(ValueError, match="positive integer"):
        ari_on_sample(a, a, n=0)
    with pytest.raises(TypeError, match="GaussianMixtureParams"):
        ari_on_sample(a, None)
