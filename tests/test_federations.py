"""Real federations (issue 24): sites of unequal size, sizes only claimed, sites with fewer clusters.

Each behaviour is checked against an independent computation: the size-weighted pool built by
hand and reduced, the support matrix written out by hand, the clusters' known positions. The
goals over many data sets are printed by tests/benchmarks/bench_federations.py.
"""

from __future__ import annotations

import federation
import numpy as np
import pytest
from federation import FOUR_CORNERS, has_fake, partial_sites, size_weighted_mr, unequal_sites

import dfmr
from dfmr import GaussianMixtureParams, inference, robust
from dfmr.support import reduce_supported, support_matrix, supported

SIZES = (200, 500, 1_000, 2_000, 5_000, 10_000)


@pytest.fixture(scope="module")
def unequal():
    rng = np.random.default_rng(0)
    parts = unequal_sites(rng, SIZES)
    return [dfmr.fit_local(p, 2, random_state=i, n_init=4) for i, p in enumerate(parts)]


def matched(a: GaussianMixtureParams, b: GaussianMixtureParams) -> np.ndarray:
    """Order of b's components nearest to a's means."""
    return np.array([int(np.argmin(np.linalg.norm(b.means - mu, axis=1))) for mu in a.means])


# ---------------------------------------------------------------------------------- sizes

def test_server_sizes_pool_robust_dfmr_by_size(unequal):
    res = dfmr.robust_dfmr(unequal, 2, n_samples=SIZES)
    assert res.screening.kept.all()
    ref = size_weighted_mr(unequal, SIZES, 2)
    order = matched(res.mixture, ref)
    np.testing.assert_allclose(res.mixture.means, ref.means[order], atol=1e-5)
    # The slots' masses are Huber's estimate (robust._pooled_weights): the 200-point site's weights lie
    # 3.4 standard errors out and pull a little less (5e-4 here, a seventh of the pooled standard error).
    np.testing.assert_allclose(res.mixture.weights, ref.weights[order], atol=1e-3)
    # Not the equal-weight pool: the sizes changed the aggregate.
    equal = dfmr.mr(unequal, 2).mixture
    assert np.abs(res.mixture.means - equal.means[matched(res.mixture, equal)]).max() > 1e-3


def test_equal_server_sizes_give_mr_over_all_machines():
    parts = unequal_sites(np.random.default_rng(3), [1_000] * 6)
    loc = [dfmr.fit_local(p, 2, random_state=i, n_init=4) for i, p in enumerate(parts)]
    res = dfmr.robust_dfmr(loc, 2, n_samples=[1_000] * 6)
    assert res.screening.kept.all()
    ref = dfmr.mr(loc, 2).mixture
    order = matched(res.mixture, ref)
    np.testing.assert_allclose(res.mixture.means, ref.means[order], atol=1e-5)


def test_claimed_sizes_are_capped_at_five_times_the_median_claim(unequal):
    # Sites claim 1,000 except one that claims 8,000 (honest: it holds that many points): the
    # median claim is 1,000, so it is pooled as 5,000, the others as 1,000 (the pool by hand).
    claims = [1_000, 1_000, 1_000, 1_000, 1_000, 8_000]
    rng = np.random.default_rng(5)
    loc = [dfmr.fit_local(federation.TWO_GAUSSIANS.sample(n, rng)[0], 2, random_state=i, n_init=4)
           for i, n in enumerate(claims)]
    res = dfmr.robust_dfmr(loc, 2)
    scr = res.screening
    assert scr.size_source == "claimed" and scr.kept.all()
    assert scr.claim_cap == 5_000
    np.testing.assert_array_equal(scr.pool_sizes, [1_000] * 5 + [5_000])
    ref = size_weighted_mr(loc, [1_000] * 5 + [5_000], 2)
    np.testing.assert_allclose(res.mixture.means, ref.means[matched(res.mixture, ref)], atol=1e-5)
    assert "capped at 5x the median claim (5000)" in res.summary()


def test_a_claim_from_a_minority_of_votes_weighs_nothing_more(unequal):
    # One machine of six claims a size, the others none: claims do not weigh the pool.
    loc = [GaussianMixtureParams(f.weights, f.means, f.covariances, n_samples=10**9 if i == 0 else None)
           for i, f in enumerate(unequal)]
    scr = dfmr.robust_dfmr(loc, 2).screening
    assert np.isnan(scr.claim_cap) and scr.pool_sizes[0] <= 1.0


def test_estimator_passes_the_sizes_of_the_parts():
    rng = np.random.default_rng(1)
    parts = unequal_sites(rng, (150, 400, 900, 1_500))
    est = dfmr.DistributedGaussianMixture(2, backend="serial", n_init=2, random_state=0).fit_partitions(parts)
    scr = est.aggregation_.screening
    assert scr.size_source == "server"
    np.testing.assert_array_equal(scr.n_samples, [150, 400, 900, 1_500])


# -------------------------------------------------------------------------------- support

def test_support_matrix_and_rule_by_hand():
    owner = np.array([0, 0, 1, 1, 2, 3, 3])
    assignment = np.array([
        [0.2, 0.0, 0.0], [0.0, 0.3, 0.0],   # machine 0 -> 0, 1
        [0.1, 0.0, 0.0], [0.0, 0.0, 0.0],   # machine 1 -> 0 (its second component trimmed)
        [0.0, 0.05, 0.1],                   # machine 2 -> mostly 2
        [0.1, 0.0, 0.0], [0.0, 0.15, 0.0],  # machine 3 -> 0, 1
    ])
    s = support_matrix(owner, assignment, 5)
    expected = np.zeros((5, 3), dtype=bool)
    expected[[0, 0, 1, 2, 3, 3], [0, 1, 0, 2, 0, 1]] = True
    np.testing.assert_array_equal(s, expected)
    # Half of five votes is 2.5: component 1 has 2, component 2 has 1; with machine 4 silent
    # and not counted (total 4) component 1 reaches half.
    np.testing.assert_array_equal(supported(s, np.ones(5)), [True, False, False])
    np.testing.assert_array_equal(supported(s, np.ones(5), total=4.0), [True, True, False])
    # With the costs to the outputs, machine 1's trimmed component supports its cheapest (2).
    costs = np.ones((7, 3))
    costs[3, 2] = 0.1
    with_costs = support_matrix(owner, assignment, 5, costs)
    np.testing.assert_array_equal(with_costs, expected | (np.arange(5)[:, None] == 1) & (np.arange(3) == 2))
    # A group of near-identical machines 0 and 3 is one vote: component 1 then has one of four.
    np.testing.assert_array_equal(supported(s, np.array([0.5, 1, 1, 0.5, 1])), [True, False, False])


def test_reduce_supported_leaves_a_minority_cluster_out():
    # Three sites at -5 and 5, one at -5 and 50: MR to two components gives 50 its own
    # component (far from all), which one site of four supports; without it, -5 and 5.
    sites = [GaussianMixtureParams([0.5, 0.5], [[-5.0], [5.0]], [[[1.0]], [[1.0]]])] * 3
    sites.append(GaussianMixtureParams([0.5, 0.5], [[-5.0], [50.0]], [[[1.0]], [[1.0]]]))
    pooled = GaussianMixtureParams(np.full(8, 1 / 8), np.concatenate([f.means for f in sites]),
                                   np.concatenate([f.covariances for f in sites]))
    owner = np.repeat(np.arange(4), 2)
    plain = dfmr.reduction.reduce(pooled, 2, [sites[3]])
    assert np.isclose(plain.mixture.means, 50.0).any()
    red, keep = reduce_supported(pooled, owner, np.ones(4), 2, [sites[3]])
    np.testing.assert_allclose(np.sort(red.mixture.means.ravel()), [-5.0, 5.0], atol=1e-9)
    np.testing.assert_array_equal(keep, [True] * 7 + [False])


@pytest.fixture(scope="module")
def partial():
    """8 sites each seeing 3 of the 4 corners (each corner seen by 6), and 2 attackers adding a
    cluster of their own: their local fits (3 and 4 components)."""
    parts = partial_sites(np.random.default_rng(3), n_sites=8, n=150, attackers=2)
    loc = [dfmr.fit_local(p, 3 if i < 8 else 4, random_state=i, n_init=2) for i, p in enumerate(parts)]
    return parts, loc


def test_a_cluster_only_a_minority_reports_is_not_output_by_robust_dfmr(partial):
    parts, loc = partial
    res = dfmr.robust_dfmr(loc, 4, n_samples=[len(p) for p in parts])
    assert not has_fake(res.mixture)
    order = matched(FOUR_CORNERS, res.mixture)
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    assert np.abs(res.mixture.means[order] - FOUR_CORNERS.means).max() < 0.5
    assert res.support.shape == (10, 4)
    # Each corner is built by the six honest sites that see it (plus attackers that see it).
    for c, k in enumerate(order):
        honest = [i for i in range(8) if i % 4 != c]
        assert res.support[honest, k].all()
    assert "Support (sites whose components built each output component" in res.summary()


def test_fit_partitions_sites_choose_their_clusters_by_bic(partial):
    parts, _ = partial
    est = dfmr.DistributedGaussianMixture(4, backend="serial", n_init=2, random_state=0)
    est.fit_partitions(parts, local_n_components="bic")
    np.testing.assert_array_equal(est.local_n_components_, [3] * 8 + [4] * 2)
    assert not has_fake(est.mixture_)
    order = matched(FOUR_CORNERS, est.mixture_)
    assert np.abs(est.means_[order] - FOUR_CORNERS.means).max() < 0.5
    # A list gives each site its number; a bad one is refused with the machine count.
    est.fit_partitions(parts[:8], local_n_components=[3] * 8)
    np.testing.assert_array_equal(est.local_n_components_, [3] * 8)
    with pytest.raises(ValueError, match="one int in 1..n_components = 4 per machine"):
        est.fit_partitions(parts[:8], local_n_components=[3] * 7)
    with pytest.raises(ValueError, match="one int in 1..n_components = 4 per machine"):
        est.fit_partitions(parts[:8], local_n_components=[5] * 8)


def test_a_minority_cluster_is_not_output_by_mr_dfmr_tkb_when_sites_see_fewer_clusters(partial):
    parts, loc = partial
    sizes = [len(p) for p in parts]
    rule = {"n_samples": sizes, "require_support": True}
    for res in (dfmr.mr(loc, 4, **rule), dfmr.dfmr(loc, 4, **rule), dfmr.tkb(loc, 4, 0.1, **rule)):
        assert not has_fake(res.mixture), res.method
        assert res.support.shape == (10, 4)
        assert (res.support[res.retained].sum(axis=0) >= 0.5 * res.retained.size).all(), res.method
    # Without the rule (the paper's MR, the default) the attackers' cluster takes a component.
    assert has_fake(dfmr.mr(loc, 4, n_samples=sizes).mixture)
    pooled = dfmr.reduction.pool(loc, n_samples=sizes)
    plain = dfmr.reduction.reduce(pooled, 4, dfmr.reduction.default_starts(loc, 4))
    assert has_fake(plain.mixture)


# ------------------------------------------------------------------------------ intervals

def _point(theta: float) -> GaussianMixtureParams:
    return GaussianMixtureParams([1.0], [[theta]], [[[1.0]]])


def test_jackknife_for_unequal_groups_is_busing_meijer_van_der_leeden():
    from dfmr.inference import _jackknife

    # The size-weighted mean of the sites' means: its pseudo-values are the sites' means, so
    # V = (1 / m) sum n_i / (N - n_i) (x_i - theta)^2 (Busing, Meijer & van der Leeden 1999).
    x = np.array([-0.3, 0.1, 0.4, 0.2, -0.1])
    n = np.array([200.0, 500.0, 1_000.0, 4_000.0, 20_000.0])
    mixes = [_point(v) for v in x]

    def weighted_mean(ms, n_samples=None):
        s = np.ones(len(ms)) if n_samples is None else np.asarray(n_samples)
        return _point(float(s @ np.array([f.means[0, 0] for f in ms]) / s.sum()))

    theta = float(n @ x / n.sum())
    cov, used, failed = _jackknife(mixes, _point(theta), weighted_mean, n)
    expected = np.mean(n / (n.sum() - n) * (x - theta) ** 2)
    means = dfmr.information.param_names(1, 1).index("mu[1][1]")
    assert used == 5 and failed.size == 0
    assert cov[means, means] == pytest.approx(expected, rel=1e-10)
    # Equal sizes: the delete-one jackknife (m - 1) / m sum (theta_(i) - mean)^2.
    equal, _, _ = _jackknife(mixes, weighted_mean(mixes), weighted_mean, np.full(5, 300.0))
    loo = np.array([(x.sum() - v) / 4 for v in x])
    assert equal[means, means] == pytest.approx(0.8 * np.sum((loo - loo.mean()) ** 2), rel=1e-10)
    classic, _, _ = _jackknife(mixes, weighted_mean(mixes), weighted_mean)
    assert classic[means, means] == pytest.approx(equal[means, means], rel=1e-10)


def test_intervals_of_unequal_sites_use_the_pooled_sizes(unequal):
    res = dfmr.robust_dfmr(unequal, 2, n_samples=SIZES)
    np.testing.assert_array_equal(res.n_samples, SIZES)
    inf = inference.infer(res, unequal, method="jackknife", rescreen=True,
                               aggregate=lambda ms, n_samples=None: dfmr.robust_dfmr(ms, 2, n_samples=n_samples))
    # The largest site dominates: leaving it out moves the aggregate most, but it counts as 10,000
    # of 18,700 points, not as one site of six (the equal-size formula's intervals are wider).
    equal = inference.infer(res, unequal, method="jackknife", rescreen=True,
                                 aggregate=lambda ms: dfmr.robust_dfmr(ms, 2, n_samples=np.full(len(ms), 3_000)))
    assert np.all(inf.standard_errors()["means"] < equal.standard_errors()["means"])


def test_leave_out_pools_the_other_machines_kept_components_again(unequal):
    from dfmr.robust import leave_out

    # Every component kept: leaving site i out is MR of the others by their sizes (built by hand).
    res = dfmr.robust_dfmr(unequal, 2, n_samples=SIZES)
    assert res.screening.kept.all()
    for i in (0, 5):
        rest = [f for j, f in enumerate(unequal) if j != i]
        ref = size_weighted_mr(rest, [s for j, s in enumerate(SIZES) if j != i], 2)
        out = leave_out(res, i)
        order = matched(out, ref)
        np.testing.assert_allclose(out.means, ref.means[order], atol=1e-8)
        np.testing.assert_allclose(out.covariances, ref.covariances[order], atol=1e-8)
    # A machine the screening dropped stays out of every replicate; leaving it out changes nothing.
    bad = GaussianMixtureParams(unequal[2].weights, unequal[2].means + 3.0, unequal[2].covariances)
    attacked = unequal[:2] + [bad] + unequal[3:]
    res = dfmr.robust_dfmr(attacked, 2, n_samples=SIZES)
    assert not res.screening.kept[2].any()
    np.testing.assert_array_equal(leave_out(res, 2).means, res.mixture.means)
    rest = [f for j, f in enumerate(unequal) if j not in (2, 4)]
    ref = size_weighted_mr(rest, [s for j, s in enumerate(SIZES) if j not in (2, 4)], 2)
    out = leave_out(res, 4)
    np.testing.assert_allclose(out.means, ref.means[matched(out, ref)], atol=1e-8)
    with pytest.raises(ValueError, match="machine"):
        leave_out(res, len(SIZES))


def test_robust_dfmr_jackknife_keeps_its_screening(unequal, monkeypatch):
    # Every component kept: the replicates are MR's, so the intervals are the jackknife of MR by size,
    # which reruns dfmr.mr on every leave-one-out set.
    res = dfmr.robust_dfmr(unequal, 2, n_samples=SIZES)
    inf = inference.infer(res, unequal, method="jackknife")
    mr = dfmr.mr(unequal, 2, n_samples=SIZES)
    order = matched(res.mixture, mr.mixture)
    ref = inference.infer(mr, unequal, method="jackknife")
    np.testing.assert_allclose(inf.standard_errors()["means"], ref.standard_errors()["means"][order], rtol=1e-6)
    # The screening is not rerun: an aggregator that would drop a site in a replicate is not called.
    calls = []
    monkeypatch.setattr(robust, "robust_dfmr", lambda *a, **k: calls.append(1))
    inference.infer(res, unequal, method="jackknife", aggregate=lambda ms, n_samples=None: calls.append(1))
    assert calls == []


def test_the_vignette_names_commands_and_sections_that_exist():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "vignettes" / "federations.md").read_text()
    commands = re.findall(r"python (tests/benchmarks/\w+\.py)([^`\n]*)", text)
    assert commands
    for script, args in commands:
        source = (root / script).read_text()
        for section in re.findall(r"--only (\w+)", args):
            assert f'"{section}"' in source, (script, section)
