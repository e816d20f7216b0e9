"""DFMR, MR, COAT and TKB: the paper's robustness claims on real local estimates, and edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import assert_mixture_close, fixture_estimates, noisy_copies, random_mixture
from reference import mr_numpy, pairwise_l2_numpy

import dfmr
from dfmr import GaussianMixtureParams, metrics, simulate

M = 20
K = 5


@pytest.fixture(scope="module")
def population() -> GaussianMixtureParams:
    return simulate.population()


@pytest.mark.parametrize("rate", [0.2, 0.4])
@pytest.mark.parametrize("kind", ["mean", "cov", "weight"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dfmr_retains_every_honest_machine_under_machine_level_attack(kind, rate, seed):
    attacked, bad = simulate.attack(fixture_estimates(), rate, kind=kind, level="machine", random_state=seed)
    assert len(bad) == int(rate * M)
    res = dfmr.dfmr(attacked, K)
    honest = np.setdiff1d(np.arange(M), bad)
    assert np.isin(honest, res.retained).all(), f"honest machines dropped: {np.setdiff1d(honest, res.retained)}"
    if kind in ("mean", "cov"):
        assert not np.isin(bad, res.retained).any(), f"attacked machines kept: {np.intersect1d(bad, res.retained)}"


@pytest.mark.parametrize("rate", [0.2, 0.4])
@pytest.mark.parametrize("kind", ["mean", "cov"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dfmr_matches_oracle_and_mr_breaks(kind, rate, seed, population):
    attacked, bad = simulate.attack(fixture_estimates(), rate, kind=kind, level="machine", random_state=seed)
    w1_dfmr = metrics.w1_distance(dfmr.dfmr(attacked, K).mixture, population)
    w1_oracle = metrics.w1_distance(simulate.oracle(attacked, bad, K).mixture, population)
    with warnings.catch_warnings():  # unfiltered MR may merge components away: that is how it breaks
        warnings.simplefilter("ignore", RuntimeWarning)
        w1_mr = metrics.w1_distance(dfmr.mr(attacked, K).mixture, population)
    assert w1_dfmr <= 1.05 * w1_oracle
    assert w1_dfmr >= 0.95 * w1_oracle
    assert w1_mr >= 5.0 * w1_dfmr


def test_oracle_is_mr_over_the_good_machines():
    attacked, bad = simulate.attack(fixture_estimates(), 0.3, kind="mean", random_state=4)
    good = [f for i, f in enumerate(attacked) if i not in set(bad)]
    assert simulate.oracle(attacked, bad, K).mixture == dfmr.mr(good, K).mixture


def test_dfmr_without_attack_equals_mr_over_retained_and_numpy_baseline():
    local = fixture_estimates()
    res = dfmr.dfmr(local, K)
    np.testing.assert_allclose(res.distances, pairwise_l2_numpy(local), rtol=1e-9, atol=1e-12)
    ref = mr_numpy([local[i] for i in res.retained], K)
    assert_mixture_close(res.mixture, ref.mixture, rtol=1e-8, atol=1e-10)
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)


def test_filter_rule_follows_design(shipped_estimates):
    res = dfmr.dfmr(shipped_estimates, K, threshold=1.2)
    D = res.distances
    med = np.median(D, axis=1)
    assert res.center == int(np.flatnonzero(med == med.min())[0])
    r = np.sort(D[res.center])[M // 2]
    assert res.filter.radius == r
    np.testing.assert_array_equal(res.retained, np.flatnonzero(D[res.center] <= 1.2 * r))
    assert dfmr.dfmr(shipped_estimates, K).filter.threshold == pytest.approx(M**0.1)


def test_threshold_below_one_is_refused(shipped_estimates):
    with pytest.raises(ValueError, match="kappa"):
        dfmr.dfmr(shipped_estimates, K, threshold=0.5)


def test_coat_returns_the_centre_estimate(shipped_estimates):
    res = dfmr.coat(shipped_estimates)
    D = pairwise_l2_numpy(shipped_estimates)
    assert res.center == int(np.argmin(np.median(D, axis=1)))
    assert res.mixture == shipped_estimates[res.center]
    np.testing.assert_array_equal(res.retained, [res.center])


def test_tkb_trims_attacked_mass(population):
    attacked, bad = simulate.attack(fixture_estimates(), 0.2, kind="mean", random_state=0)
    res = dfmr.tkb(attacked, K, alpha=0.5)
    assert res.mixture.weights.sum() == pytest.approx(1.0)
    w1_mr = metrics.w1_distance(dfmr.mr(attacked, K).mixture, population)
    assert metrics.w1_distance(res.mixture, population) < 0.1 * w1_mr


def test_single_machine_returns_its_own_estimate(shipped_estimates):
    only = shipped_estimates[3]
    for fn in (lambda x: dfmr.dfmr(x, K), lambda x: dfmr.mr(x, K), dfmr.coat):
        res = fn([only])
        assert_mixture_close(res.mixture, only, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(res.retained, [0])


def test_two_machines_tie_goes_to_lowest_index(shipped_estimates):
    res = dfmr.dfmr(shipped_estimates[:2], K)
    assert res.center == 0
    np.testing.assert_array_equal(res.retained, [0, 1])
    assert dfmr.coat(shipped_estimates[:2]).center == 0


def test_centre_ties_go_to_lowest_index():
    # Four 1-D Gaussians at -3, -1, 1, 3: machines 1 and 2 have the same median distance.
    mixtures = [GaussianMixtureParams([1.0], [[x]], [[[1.0]]]) for x in (-3.0, -1.0, 1.0, 3.0)]
    D = dfmr.pairwise_l2(mixtures)
    med = np.quantile(D, 0.5, axis=1)
    assert med[1] == med[2] and med.argmin() == 1
    assert dfmr.dfmr(mixtures, 1).center == 1


def test_one_dimensional_mixtures():
    rng = np.random.default_rng(5)
    truth = GaussianMixtureParams([0.3, 0.7], [[-2.0], [2.0]], [[[0.5]], [[1.0]]])
    local = noisy_copies(rng, truth, 10, noise=0.05)
    attacked, bad = simulate.attack(local, 0.2, kind="mean", random_state=1)
    res = dfmr.dfmr(attacked, 2)
    assert not np.isin(bad, res.retained).any()
    assert_mixture_close(res.mixture, truth, rtol=0.0, atol=0.1)


def test_machine_with_fewer_components_and_k_mismatch():
    rng = np.random.default_rng(8)
    truth = random_mixture(rng, 3, 4, spread=6.0)
    local = noisy_copies(rng, truth, 8, noise=0.02)
    # One machine found only two usable components, another returned four.
    two = GaussianMixtureParams(local[0].weights[:2] / local[0].weights[:2].sum(), local[0].means[:2],
                                local[0].covariances[:2])
    four = GaussianMixtureParams(np.r_[local[1].weights * 0.9, 0.1], np.r_[local[1].means, 40 * np.ones((1, 4))],
                                 np.r_[local[1].covariances, np.eye(4)[None]])
    mixed = [two, four, *local[2:]]
    res = dfmr.dfmr(mixed, 3)
    assert res.mixture.n_components == 3
    assert np.isin(np.arange(2, 8), res.retained).all()
    assert res.reduction.start_objectives.size == sum(f.n_components == 3 for f in (mixed[i] for i in res.retained))
    assert_mixture_close(res.mixture, truth, rtol=0.0, atol=0.2)


def test_no_machine_with_k_components_uses_a_seeded_start():
    rng = np.random.default_rng(9)
    truth = random_mixture(rng, 3, 2, spread=8.0)
    local = [GaussianMixtureParams(f.weights[:2] / f.weights[:2].sum(), f.means[:2], f.covariances[:2])
             for f in noisy_copies(rng, truth, 5, noise=0.01)]
    res = dfmr.mr(local, 3)
    assert res.reduction.start_objectives.size == 1
    assert res.mixture.weights.sum() == pytest.approx(1.0)


def test_dropped_components_are_reported():
    from dfmr.reduction import pool, reduce

    f = GaussianMixtureParams([0.5, 0.5], [[0.0], [1.0]], [[[1.0]], [[1.0]]])
    far = GaussianMixtureParams([0.5, 0.5], [[0.0], [1e6]], [[[1.0]], [[1.0]]])
    res = reduce(pool([f]), 2, [far])
    assert res.mixture.n_components == 1
    # A machine whose second component carries no weight: nothing is ever transported to it.
    hollow = GaussianMixtureParams([1.0, 0.0], [[0.0], [50.0]], [[[1.0]], [[1.0]]])
    with pytest.warns(RuntimeWarning, match="1 components, fewer than the 2 requested"):
        agg = dfmr.mr([hollow], 2)
    assert agg.mixture.n_components == 1
    assert agg.n_components_requested == 2


@pytest.mark.parametrize("method", ["dfmr", "mr", "tkb", "coat"])
def test_permutation_invariance(method):
    rng = np.random.default_rng(11)
    truth = random_mixture(rng, 4, 3, spread=5.0)
    local, _ = simulate.attack(noisy_copies(rng, truth, 12, noise=0.05), 0.25, kind="mean", random_state=2)
    order = rng.permutation(len(local))
    shuffled = [local[i].permute(rng.permutation(4)) for i in order]
    call = {"dfmr": lambda x: dfmr.dfmr(x, 4), "mr": lambda x: dfmr.mr(x, 4),
            "tkb": lambda x: dfmr.tkb(x, 4), "coat": dfmr.coat}[method]
    a, b = call(local), call(shuffled)
    assert_mixture_close(b.mixture, a.mixture, rtol=1e-9, atol=1e-11)
    np.testing.assert_array_equal(np.sort(order[b.retained]), a.retained)
    if a.objective is not None:
        assert b.objective == pytest.approx(a.objective, rel=1e-10)


def test_results_are_finite_and_normalised(shipped_estimates):
    for res in (dfmr.dfmr(shipped_estimates, K), dfmr.mr(shipped_estimates, K), dfmr.tkb(shipped_estimates, K)):
        f = res.mixture
        assert np.isfinite(f.means).all() and np.isfinite(f.covariances).all()
        assert f.weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert (np.linalg.eigvalsh(f.covariances) > 0).all()
        assert np.all(np.diff(res.reduction.objective_trace) <= 1e-12 * res.reduction.objective_trace[0])


def test_inputs_are_checked():
    f = GaussianMixtureParams([1.0], [[0.0]], [[[1.0]]])
    g = GaussianMixtureParams([1.0], [[0.0, 0.0]], [np.eye(2)])
    with pytest.raises(ValueError, match="dimension"):
        dfmr.dfmr([f, g], 1)
    with pytest.raises(ValueError, match="at least one"):
        dfmr.dfmr([], 1)
    with pytest.raises(TypeError, match="GaussianMixtureParams"):
        dfmr.mr([{"weights": [1.0]}], 1)
    with pytest.raises(ValueError, match="n_components"):
        dfmr.mr([f], 0)
    with pytest.raises(ValueError, match="alpha"):
        dfmr.tkb([f], 1, alpha=1.0)


def test_flat_high_dimensional_machines_are_still_filtered():
    # Wide components in d = 100: every density is so flat that the L2 distances underflow
    # in absolute terms (all exactly 0 as doubles). The filter works on the scaled matrix.
    # (d = 100 with covariances 3e12 I and means in units of 1e5: per coordinate, the same geometry
    # in standard deviations as d = 400 with 300 I and unit means, at 1/64 of the cost of d^3.)
    rng = np.random.default_rng(12)
    d, c = 100, 1e5
    honest = [GaussianMixtureParams([1.0], 0.5 * c * rng.standard_normal((1, d)), [3e12 * np.eye(d)])
              for _ in range(5)]
    byzantine = GaussianMixtureParams([1.0], c * (50.0 + 0.5 * rng.standard_normal((1, d))), [3e12 * np.eye(d)])
    mixtures = [*honest, byzantine]
    assert np.all(dfmr.pairwise_l2(mixtures) == 0.0)
    res = dfmr.dfmr(mixtures, 1)
    np.testing.assert_array_equal(res.retained, np.arange(5))
    # The same configuration shrunk tenfold has representable distances: same decision.
    small = [GaussianMixtureParams(f.weights, f.means / 10, f.covariances / 100) for f in mixtures]
    assert np.all(dfmr.pairwise_l2(small)[~np.eye(6, dtype=bool)] > 0)
    res_small = dfmr.dfmr(small, 1)
    np.testing.assert_array_equal(res_small.retained, res.retained)
    assert res_small.center == res.center


def test_scaled_distances_are_exact_where_representable(shipped_estimates):
    from dfmr.distances import pairwise_l2_scaled

    scaled, exponent = pairwise_l2_scaled(shipped_estimates)
    D = pairwise_l2_numpy(shipped_estimates)
    np.testing.assert_allclose(np.ldexp(scaled, exponent), D, rtol=1e-9, atol=1e-12)
    assert np.array_equal(np.ldexp(scaled, exponent), dfmr.pairwise_l2(shipped_estimates))
    # Where D is a normal double, scaling by a power of two is exact: same order, same decisions.
    assert np.array_equal(np.argsort(scaled, axis=1, kind="stable"),
                          np.argsort(dfmr.pairwise_l2(shipped_estimates), axis=1, kind="stable"))


def test_identical_estimates_are_exactly_zero_apart_and_ties_go_to_the_lowest_index(shipped_estimates):
    f, g = shipped_estimates[0], shipped_estimates[1]
    copy = GaussianMixtureParams(f.weights.copy(), f.means.copy(), f.covariances.copy())
    D = dfmr.pairwise_l2([g, f, copy, g])
    assert D[1, 2] == 0.0 and D[0, 3] == 0.0
    # Rows 0 and 3 (and 1 and 2) are then identical: the tie goes to the lowest index.
    assert dfmr.dfmr([g, f, copy, g], K).center == 0


def test_trimming_transports_exactly_the_untrimmed_mass():
    # Nine pooled components of weight 1/9 each; alpha = 1/3 keeps exactly six of them
    # (repeated subtraction of 1/9 from 2/3 leaves a rounding crumb that must not move).
    rng = np.random.default_rng(3)
    mixtures = [GaussianMixtureParams(np.ones(3) / 3, 5 * rng.standard_normal((3, 2)), np.stack([np.eye(2)] * 3))
                for _ in range(3)]
    res = dfmr.tkb(mixtures, 3, alpha=1 / 3)
    moved = res.reduction.assignment.sum(axis=1)
    assert np.count_nonzero(moved) == 6
    np.testing.assert_allclose(moved[moved > 0], 1 / 9, rtol=1e-12)


# --------------------------------------------------------------------------------------------------------------------
# One core implementation: the centre and filter, starts, the sampled centre rule
# --------------------------------------------------------------------------------------------------------------------


# Seeds 0 and 1: the two centres (machines 7 and 19) that the attacks of seeds 0-3 give; seeds 2 and 3
# repeated them (same centre, 14 honest machines retained, same number of MR iterations).
@pytest.mark.parametrize("seed", [0, 1])
def test_dfmr_matches_numpy_reference_of_centre_filter_and_reduction(seed):
    from reference import dfmr_numpy, filter_numpy

    attacked, _ = simulate.attack(fixture_estimates(), 0.3, kind="mean", random_state=seed)
    res = dfmr.dfmr(attacked, K)
    centre, cutoff, retained = filter_numpy(pairwise_l2_numpy(attacked))
    assert res.center == centre
    assert res.filter.cutoff == pytest.approx(cutoff, rel=1e-9)
    np.testing.assert_array_equal(res.retained, retained)
    ref = dfmr_numpy(attacked, K)
    assert res.objective == pytest.approx(ref.objective, rel=1e-8)
    assert_mixture_close(res.mixture, ref.mixture, rtol=1e-7)


def test_filtering_functions_agree_with_numpy_on_ties_and_even_m():
    from reference import center_numpy, filter_numpy

    rng = np.random.default_rng(0)
    for m in (2, 3, 6, 9, 10):
        A = rng.integers(0, 4, size=(m, m)).astype(float)  # many exact ties among medians
        D = A + A.T
        np.fill_diagonal(D, 0.0)
        assert dfmr.filtering.center_index(D) == center_numpy(D)
        c, cutoff, retained = filter_numpy(D, 1.5)
        dec = dfmr.filtering.distance_filter(D, 1.5)
        assert (dec.center, dec.cutoff) == (c, cutoff)
        np.testing.assert_array_equal(dec.retained, retained)


def test_n_starts_runs_the_most_central_retained_machines():
    attacked, _ = simulate.attack(fixture_estimates(), 0.2, kind="mean", random_state=1)
    res = dfmr.dfmr(attacked, K, n_starts=3)
    assert len(res.start_machines) == 3 == len(res.reduction.start_objectives)
    to_centre = res.filter.distance_to_center
    others = np.setdiff1d(res.retained, res.start_machines)
    assert to_centre[res.start_machines].max() <= to_centre[others].min()
    full = dfmr.dfmr(attacked, K)
    np.testing.assert_array_equal(full.start_machines, full.retained)
    # The default keeps the paper's all-starts search: its objective is the best of them all.
    assert full.objective <= res.objective + 1e-12
    assert full.objective == pytest.approx(min(full.reduction.start_objectives))


def test_n_starts_for_mr_and_tkb_spreads_starts_over_machines():
    local = fixture_estimates()
    res = dfmr.mr(local, K, n_starts=4)
    np.testing.assert_array_equal(res.start_machines, [0, 5, 10, 15])
    assert dfmr.tkb(local, K, n_starts=2).start_machines.tolist() == [0, 10]
    with pytest.raises(ValueError, match="n_starts"):
        dfmr.mr(local, K, n_starts=0)


def test_identical_local_estimates_share_one_start_result():
    local = fixture_estimates()[:6]
    doubled = local + local
    res = dfmr.mr(doubled, K)
    objectives = res.reduction.start_objectives
    np.testing.assert_array_equal(objectives[:6], objectives[6:])
    assert res.reduction.start_index < 6
    assert res.objective == pytest.approx(dfmr.mr(local, K).objective, rel=1e-12)


def test_sampled_centre_with_every_machine_in_the_sample_is_the_exact_rule():
    attacked, _ = simulate.attack(fixture_estimates(), 0.3, kind="cov", random_state=2)
    exact = dfmr.dfmr(attacked, K)
    sampled = dfmr.dfmr(attacked, K, center="sampled", n_center_sample=M, random_state=0)
    assert sampled.center == exact.center
    np.testing.assert_array_equal(sampled.retained, exact.retained)
    np.testing.assert_array_equal(sampled.distance_to_center, exact.distance_to_center)
    assert sampled.distances is None and sampled.center_rule == "sampled"
    assert sampled.objective == exact.objective


def test_sampled_centre_rejects_attacked_machines_and_is_reproducible():
    attacked, bad = simulate.attack(fixture_estimates(), 0.3, kind="mean", random_state=4)
    a = dfmr.dfmr(attacked, K, center="sampled", n_center_sample=8, random_state=5)
    b = dfmr.dfmr(attacked, K, center="sampled", n_center_sample=8, random_state=5)
    np.testing.assert_array_equal(a.retained, b.retained)
    assert not set(a.retained) & set(bad)
    c = dfmr.coat(attacked, center="sampled", n_center_sample=8, random_state=5)
    assert c.center == a.center and c.center not in bad
    assert "sampled" in repr(a.center_rule)
    with pytest.raises(ValueError, match="center"):
        dfmr.dfmr(attacked, K, center="approximate")
    with pytest.raises(ValueError, match="n_center_sample"):
        dfmr.dfmr(attacked, K, center="sampled", n_center_sample=0)
