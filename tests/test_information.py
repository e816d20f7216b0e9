"""Tests of dfmr.information: parameter vector, scores, information matrices, alignment."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from scipy.integrate import trapezoid
from scipy.stats import norm
from statsmodels.tools.numdiff import approx_fprime, approx_hess3

import dfmr
from dfmr import information as inf
from dfmr import simulate
from dfmr.params import GaussianMixtureParams


def three_in_2d() -> GaussianMixtureParams:
    return GaussianMixtureParams(
        [0.3, 0.5, 0.2],
        [[0.0, 0.0], [3.0, 1.0], [-2.0, 3.0]],
        [np.eye(2), [[2.0, 0.5], [0.5, 1.0]], [[1.0, -0.3], [-0.3, 0.5]]],
    )


def two_in_1d() -> GaussianMixtureParams:
    return GaussianMixtureParams([0.4, 0.6], [[-2.0], [2.0]], [[[1.0]], [[1.5]]])


def test_param_names_count_and_order():
    k, d = 3, 2
    names = inf.param_names(k, d)
    assert len(names) == inf.n_params(k, d) == (k - 1) + k * d + k * d * (d + 1) // 2
    assert names[:2] == ["w1", "w2"]
    assert names[2:4] == ["mu[1][1]", "mu[1][2]"]
    assert names[8:11] == ["Sigma[1][1,1]", "Sigma[1][1,2]", "Sigma[1][2,2]"]
    assert inf.full_param_names(k, d) == ["w1", "w2", "w3", *names[2:]]
    assert inf.n_params(5, 10) == 329


def test_vector_round_trip_and_entries():
    mix = three_in_2d()
    theta = inf.to_vector(mix)
    names = inf.param_names(3, 2)
    assert theta[names.index("mu[2][1]")] == 3.0
    assert theta[names.index("Sigma[2][1,2]")] == 0.5
    assert theta[names.index("Sigma[3][2,2]")] == 0.5
    back = inf.from_vector(theta, 3, 2)
    np.testing.assert_allclose(back.weights, mix.weights)
    np.testing.assert_allclose(back.means, mix.means)
    np.testing.assert_allclose(back.covariances, mix.covariances)
    with pytest.raises(ValueError, match="shape"):
        inf.from_vector(theta[:-1], 3, 2)


def test_full_jacobian_maps_free_to_reported_vector():
    mix = three_in_2d()
    a = inf.full_jacobian(3, 2)
    theta = inf.to_vector(mix)
    full = inf.to_full_vector(mix)
    offset = np.zeros(full.size)
    offset[2] = 1.0  # w_K = 1 - sum of the free weights
    np.testing.assert_allclose(a @ theta + offset, full)


@pytest.mark.parametrize("mixture", [three_in_2d(), two_in_1d()], ids=["K3d2", "K2d1"])
def test_scores_match_finite_differences_of_the_log_density(mixture):
    X, _ = mixture.sample(150, 1)
    k, d = mixture.n_components, mixture.dim

    def per_row(theta):
        return inf.from_vector(theta, k, d).logpdf(X)

    numeric = approx_fprime(inf.to_vector(mixture), per_row, centered=True)
    analytic = inf.scores(X, mixture)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6 * max(1.0, np.abs(numeric).max()))


@pytest.mark.parametrize("mixture", [three_in_2d(), two_in_1d()], ids=["K3d2", "K2d1"])
def test_observed_information_matches_finite_difference_hessian(mixture):
    X, _ = mixture.sample(200, 2)
    k, d = mixture.n_components, mixture.dim
    # Evaluate away from the truth too: the Louis form must be the exact curvature anywhere.
    theta = inf.to_vector(mixture)
    theta[k - 1:] += 0.05
    point = inf.from_vector(theta, k, d)

    def loglik(t):
        return inf.from_vector(t, k, d).logpdf(X).sum()

    hess = approx_hess3(theta, loglik)
    obs = inf.information(X, point, "observed")
    np.testing.assert_allclose(obs, -hess, atol=1e-5 * np.abs(hess).max())


def test_information_is_additive_over_machines_and_block_size_free():
    mix = three_in_2d()
    X, _ = mix.sample(1000, 3)
    whole = inf.information(X, mix)
    parts = [inf.machine_information(part, mix) for part in np.array_split(X, 3)]
    assert sum(n for _, n in parts) == 1000
    np.testing.assert_allclose(sum(m for m, _ in parts), whole, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(inf.information(X, mix, block_rows=97), whole, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(inf.scores(X, mix, block_rows=33), inf.scores(X, mix), rtol=1e-12)


def test_opg_is_the_outer_product_of_scores():
    mix = three_in_2d()
    X, _ = mix.sample(300, 4)
    s = inf.scores(X, mix)
    np.testing.assert_allclose(inf.information(X, mix, "opg"), s.T @ s, rtol=1e-10)


def fisher_by_quadrature(mixture: GaussianMixtureParams) -> np.ndarray:
    """Fisher information of a 1-D mixture: integral of s s^T f over a fine grid, scores by finite differences."""
    grid = np.linspace(-12.0, 14.0, 20001)
    k, d = mixture.n_components, mixture.dim

    def per_point(theta):
        return inf.from_vector(theta, k, d).logpdf(grid)

    s = approx_fprime(inf.to_vector(mixture), per_point, centered=True)
    f = mixture.pdf(grid)
    return trapezoid(s[:, :, None] * s[:, None, :] * f[:, None, None], grid, axis=0)


def test_opg_and_observed_agree_asymptotically_and_estimate_the_fisher_information():
    mix = two_in_1d()
    truth = fisher_by_quadrature(mix)
    gaps = {}
    for n in (2_000, 200_000):
        X, _ = mix.sample(n, 5)
        opg = inf.information(X, mix, "opg") / n
        obs = inf.information(X, mix, "observed") / n
        gaps[n] = np.linalg.norm(opg - obs) / np.linalg.norm(truth)
        # Both are averages of n i.i.d. terms with mean I: relative error O(n ** -0.5) (about 1/sqrt(n) here).
        for estimate in (opg, obs):
            assert np.linalg.norm(estimate - truth) / np.linalg.norm(truth) < 4.0 / np.sqrt(n)
    assert gaps[200_000] < 0.01
    assert gaps[200_000] < gaps[2_000] / 3  # the gap shrinks like n ** -0.5


def test_expected_information_is_seeded_and_close_to_quadrature():
    mix = two_in_1d()
    truth = fisher_by_quadrature(mix)
    a = inf.expected_information(mix, 50_000, random_state=7)
    np.testing.assert_array_equal(a, inf.expected_information(mix, 50_000, random_state=7))
    assert np.linalg.norm(a - truth) / np.linalg.norm(truth) < 0.05
    b = inf.expected_information(mix, 50_000, kind="opg", random_state=8)
    assert np.linalg.norm(b - truth) / np.linalg.norm(truth) < 0.05


def test_fisher_information_of_a_single_gaussian_is_known_in_closed_form():
    # K = 1, d = 1: I(mu) = 1/s2, I(s2) = 1/(2 s2^2), no cross term; a formula independent of the code.
    s2 = 2.5
    mix = GaussianMixtureParams([1.0], [[0.7]], [[[s2]]])
    X = 0.7 + np.sqrt(s2) * norm.ppf((np.arange(40_000) + 0.5) / 40_000)[:, None]
    per_obs = inf.information(X, mix, "observed") / X.shape[0]
    np.testing.assert_allclose(per_obs, [[1 / s2, 0.0], [0.0, 1 / (2 * s2**2)]], atol=2e-4)


def test_machine_information_runs_in_a_process_pool():
    mix = three_in_2d()
    X, _ = mix.sample(400, 6)
    pickle.dumps((inf.machine_information, X, mix))
    with ProcessPoolExecutor(max_workers=1) as ex:
        matrix, n = ex.submit(inf.machine_information, X, mix).result()
    assert n == 400
    np.testing.assert_allclose(matrix, inf.information(X, mix), rtol=1e-12)


def test_information_rejects_bad_input():
    mix = three_in_2d()
    with pytest.raises(ValueError, match="shape"):
        inf.scores(np.zeros((5, 3)), mix)
    with pytest.raises(ValueError, match="NaN"):
        inf.information(np.full((5, 2), np.nan), mix)
    with pytest.raises(ValueError, match="kind"):
        inf.information(np.zeros((5, 2)), mix, "hessian")
    with pytest.raises(TypeError, match="GaussianMixtureParams"):
        inf.scores(np.zeros((5, 2)), {"weights": [1.0]})
    zero = GaussianMixtureParams([0.0, 1.0], mix.means[:2], mix.covariances[:2])
    with pytest.raises(ValueError, match="positive weights"):
        inf.information(np.zeros((5, 2)), zero)


def test_align_recovers_a_permutation_without_a_plan():
    mix = three_in_2d()
    order = np.array([2, 0, 1])
    shuffled = mix.permute(order)
    found = inf.align(shuffled, mix)
    # shuffled component found[k] is mix's component k
    np.testing.assert_array_equal(order[found], np.arange(3))
    np.testing.assert_allclose(inf.align_to(shuffled, mix).means, mix.means)


def test_align_follows_the_transport_plan_and_falls_back_to_kl_when_it_merges():
    mix = three_in_2d()
    plan = np.array([[0.0, 0.1, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 0.2]])
    np.testing.assert_array_equal(inf.align(mix, mix, plan), [1, 0, 2])  # what the plan says, not KL
    merging = np.array([[0.3, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.2]])
    np.testing.assert_array_equal(inf.align(mix, mix, merging), [0, 1, 2])  # KL fallback


def test_align_with_fewer_local_components_marks_the_unmatched_one():
    mix = three_in_2d()
    two = GaussianMixtureParams([0.5, 0.5], mix.means[[2, 0]], mix.covariances[[2, 0]])
    np.testing.assert_array_equal(inf.align(two, mix), [1, -1, 0])
    assert inf.align_to(two, mix) is None


def test_plan_rows_of_a_dfmr_aggregation_carry_each_retained_machines_weights():
    local = simulate.local_estimates_fixture()
    res = dfmr.dfmr(local, 5)
    for i in range(len(local)):
        rows = inf.plan_rows(res, local, i)
        if i in res.retained:
            np.testing.assert_allclose(rows.sum(axis=1), local[i].weights / len(res.retained), rtol=1e-9)
            order = inf.align(local[i], res.mixture, rows)
            kl = inf.align(local[i], res.mixture)
            np.testing.assert_array_equal(order, kl)  # honest fixture: plan and KL agree
        else:
            assert rows is None
    assert inf.plan_rows(dfmr.coat(local), local, 0) is None


def test_plan_rows_of_a_robust_dfmr_aggregation_follow_its_slot_by_slot_pool():
    # robust_dfmr pools slot by slot, not machine by machine; components listed in another order on
    # every other machine make a machine-by-machine reading pick other machines' rows.
    local = [lm.permute(np.roll(np.arange(lm.n_components), i)) if i % 2 else lm
             for i, lm in enumerate(simulate.local_estimates_fixture())]
    res = dfmr.robust_dfmr(local, 5)
    assert res.retained.size == len(local)
    for i in range(len(local)):
        rows = inf.plan_rows(res, local, i)
        # Each component sends its weight times the machine's share, times its slot's factor (Huber's mass
        # over the slot's pooled mean, robust._pooled_weights: within 1e-3 of 1 on clean estimates).
        share = rows.sum(axis=1) / local[i].weights
        np.testing.assert_allclose(share, share[0], rtol=1e-3)
        np.testing.assert_array_equal(inf.align(local[i], res.mixture, rows), inf.align(local[i], res.mixture))
    # A machine with one component screened out keeps the others in the pool but has no full set
    # of rows: no plan (it is aligned by cost), and the per-machine tests still run.
    moved = local[3].means.copy()
    moved[1] += 3.0
    local[3] = GaussianMixtureParams(local[3].weights, moved, local[3].covariances)
    res = dfmr.robust_dfmr(local, 5)
    assert 3 in res.retained and res.screening.kept[3].sum() == 4
    assert inf.plan_rows(res, local, 3) is None
    assert inf.plan_rows(res, local, 2) is not None
