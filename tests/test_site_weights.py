"""Sites with their own mixing proportions (``site_weights="free"``, :mod:`dfmr.sites`)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from reference import em_site_proportions
from scipy.stats import chi2, chi2_contingency
from sklearn.mixture import GaussianMixture

import dfmr
from dfmr import simulate
from dfmr.aggregate import _aggregate
from dfmr.cli import main
from dfmr.io import save_mixtures
from dfmr.sites import aligned_proportions, homogeneity_test, merged_by_slot, robust_proportions

K, D = 3, 2
MEANS = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
COVS = np.stack([np.eye(D), np.diag([1.5, 0.7]), np.eye(D)])


def sites_data(m: int, n: int, alpha: float | None, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``m`` sites of ``n`` points sharing MEANS/COVS; proportions 0.85 Dirichlet(alpha) + 0.05 (None: 1/3
    each): very different case mixes in which every site still sees every cluster (a site that sees
    none of a cluster's points fits K components by splitting another: that is issue 24's "fewer
    clusters" part, not this one)."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(COVS)
    parts, props = [], []
    for _ in range(m):
        pi = np.full(K, 1.0 / K) if alpha is None else 0.85 * rng.dirichlet(np.full(K, alpha)) + 0.05
        z = rng.choice(K, n, p=pi)
        parts.append(MEANS[z] + np.einsum("nab,nb->na", chol[z], rng.standard_normal((n, D))))
        props.append(pi)
    return parts, np.array(props)


@pytest.fixture(scope="module")
def mixed():
    """Ten sites with very different case mixes (Dirichlet(0.5)) and their local fits."""
    parts, props = sites_data(10, 600, 0.5, seed=3)
    fits = [dfmr.fit_local(X, K, random_state=i) for i, X in enumerate(parts)]
    return parts, props, fits


def match(means: np.ndarray) -> np.ndarray:
    """Index of the true component nearest each row of ``means``."""
    return np.argmin(((means[:, None] - MEANS[None]) ** 2).sum(-1), axis=1)


def test_shared_is_todays_result(mixed):
    _, _, fits = mixed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for method in ("dfmr", "mr"):
            core = _aggregate(method, fits, K)  # the compiled core's result, no site model involved
            res = getattr(dfmr, method)(fits, K, site_weights="shared")
            assert res.site_weights is None
            np.testing.assert_array_equal(res.retained, core.retained)
            for a, b in ((res.mixture.weights, core.mixture.weights), (res.mixture.means, core.mixture.means),
                         (res.mixture.covariances, core.mixture.covariances)):
                np.testing.assert_array_equal(a, b)
        res = dfmr.robust_dfmr(fits, K)
    # robust_dfmr's output is its reduction's, untouched: the proportions are the pooled weights.
    np.testing.assert_array_equal(res.mixture.weights, res.reduction.mixture.weights)
    assert res.site_weights is None


def test_free_keeps_honest_sites_that_shared_flags_for_their_case_mix(mixed):
    _, props, fits = mixed
    with pytest.warns(UserWarning, match="site_weights='free'"):
        shared = dfmr.robust_dfmr(fits, K)
    flagged = {x.machine for x in shared.screening.decisions if "weight" in x.rule}
    assert flagged, "the case mixes should fail the shared model's weight tests"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        free = dfmr.robust_dfmr(fits, K, site_weights="free")
    assert free.screening.kept.any(axis=1).all()
    assert free.retained.size == 10
    assert not any("weight" in x.rule for x in free.screening.decisions)
    order = match(free.mixture.means)
    np.testing.assert_allclose(free.mixture.means, MEANS[order], atol=0.15)
    # The global proportions estimate the size-weighted mean of the sites' proportions.
    np.testing.assert_allclose(free.mixture.weights, props.mean(axis=0)[order], atol=0.08)


def test_site_weights_are_each_sites_proportions_in_output_order(mixed):
    _, props, fits = mixed
    for res in (dfmr.robust_dfmr(fits, K, site_weights="free"), dfmr.mr(fits, K, site_weights="free")):
        order = match(res.mixture.means)
        assert res.site_weights.shape == (10, K)
        for i, f in enumerate(fits):
            # Hand alignment: each local component to the true component its mean is nearest.
            own = np.zeros(K)
            np.add.at(own, match(f.means), f.weights)
            np.testing.assert_allclose(res.site_weights[i], own[order], atol=1e-12)
            np.testing.assert_allclose(res.site_weights[i], props[i][order], atol=0.06)


def test_site_weights_rows_of_sites_not_kept_are_nan(mixed):
    _, _, fits = mixed
    attacked, bad = simulate.attack(fits, 0.2, kind="mean", random_state=1)
    res = dfmr.robust_dfmr(attacked, K, site_weights="free")
    assert set(bad) <= set(np.flatnonzero(~res.kept))
    assert np.isnan(res.site_weights[bad]).all()
    assert np.isfinite(res.site_weights[res.retained]).all()


def test_robust_average_is_the_size_weighted_trimmed_mean_by_hand():
    p = np.array([[0.1, 0.9], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5], [0.9, 0.1]])
    u = np.array([1.0, 2.0, 3.0, 2.0, 2.0])  # shares 0.1, 0.2, 0.3, 0.2, 0.2
    # Column 0 sorted 0.1 (0.1), 0.2 (0.2), 0.4 (0.3), 0.5 (0.2), 0.9 (0.2); trimming 0.1 per tail
    # removes site 0 and half of site 4: (0.2*0.2 + 0.4*0.3 + 0.5*0.2 + 0.9*0.1) / 0.8.
    c0 = (0.2 * 0.2 + 0.4 * 0.3 + 0.5 * 0.2 + 0.9 * 0.1) / 0.8
    # Column 1 sorted 0.1 (0.2), 0.5 (0.2), 0.6 (0.3), 0.8 (0.2), 0.9 (0.1): removes half of the
    # site at 0.1 and the one at 0.9.
    c1 = (0.1 * 0.1 + 0.5 * 0.2 + 0.6 * 0.3 + 0.8 * 0.2) / 0.8
    np.testing.assert_allclose(robust_proportions(p, u), np.array([c0, c1]) / (c0 + c1), rtol=1e-12)
    np.testing.assert_allclose(robust_proportions(p, u, trim=0.0), u @ p / u.sum(), rtol=1e-12)


def test_homogeneity_test_is_scipys_g_test_and_holm():
    rng = np.random.default_rng(0)
    props = rng.dirichlet([3.0, 3.0, 3.0], size=6)
    sizes = np.array([300.0, 500.0, 800.0, 1000.0, 400.0, 700.0])
    sites = np.array([0, 1, 2, 4, 5])
    test = homogeneity_test(props, sizes, sites)
    table = sizes[sites, None] * props[sites]
    g, p, df, expected = chi2_contingency(table, correction=False, lambda_="log-likelihood")
    assert test.statistic == pytest.approx(g, rel=1e-10)
    assert test.df == df
    assert test.pvalue == pytest.approx(p, rel=1e-8)
    # Per site: its own terms of G, 2 df; Holm by hand.
    terms = 2.0 * (table * np.log(table / expected)).sum(axis=1)
    np.testing.assert_allclose(test.site_statistic[sites], terms, rtol=1e-10)
    raw = chi2.sf(terms, 2)
    order = np.argsort(raw)
    holm = np.minimum(1.0, np.maximum.accumulate((len(raw) - np.arange(len(raw))) * raw[order]))
    adjusted = np.empty_like(raw)
    adjusted[order] = holm
    np.testing.assert_allclose(test.site_pvalue_adjusted[sites], adjusted, rtol=1e-10)
    assert np.isnan(test.site_pvalue[3])
    # The design effect divides every statistic.
    half = homogeneity_test(props, sizes, sites, design_effect=2.0)
    assert half.statistic == pytest.approx(g / 2.0, rel=1e-10)


def test_shared_warns_only_when_the_proportions_differ(mixed):
    _, _, fits = mixed
    with pytest.warns(UserWarning, match="site_weights='free'") as caught:
        res = dfmr.mr(fits, K)
    assert res.site_homogeneity.pvalue < 1e-3
    assert "Site proportions" in res.summary() and "site_weights='free'" in res.summary()
    assert len(caught) == 1
    parts, _ = sites_data(10, 600, None, seed=4)
    iid = [dfmr.fit_local(X, K, random_state=i) for i, X in enumerate(parts)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in (dfmr.robust_dfmr, dfmr.dfmr, dfmr.mr):
            res = method(iid, K)
            assert res.site_homogeneity.pvalue > 1e-3


def test_free_summary_shows_the_test_and_the_sites_proportions(mixed):
    _, _, fits = mixed
    text = dfmr.dfmr(fits, K, site_weights="free").summary()
    assert "Site model: free" in text and "pi_2" in text and "holm-adjusted" in text


def test_an_attack_on_20_percent_does_not_move_the_means_far(mixed):
    _, _, fits = mixed
    for kind in ("mean", "cov"):
        attacked, bad = simulate.attack(fits, 0.2, kind=kind, random_state=5)
        res = dfmr.robust_dfmr(attacked, K, site_weights="free", n_samples=600)
        # An attacked component may pass only at the size its own proportion claims, which is
        # also its mass in the pool: what passes carries little.
        kept = res.screening.kept[bad]
        assert (attacked[bad[0]].weights[res.screening.alignment[bad[0]]] * kept[0]).sum() < 0.1, kind
        assert (attacked[bad[1]].weights[res.screening.alignment[bad[1]]] * kept[1]).sum() < 0.1, kind
        order = match(res.mixture.means)
        assert sorted(order) == [0, 1, 2]
        np.testing.assert_allclose(res.mixture.means, MEANS[order], atol=0.2)
        np.testing.assert_allclose(res.mixture.covariances, COVS[order], atol=0.25)


def test_estimator_free_site_weights_end_to_end(mixed):
    parts, props, _ = mixed
    est = dfmr.DistributedGaussianMixture(K, site_weights="free", backend="serial", random_state=0)
    assert est.get_params()["site_weights"] == "free"
    est.fit_partitions(parts)
    order = match(est.means_)
    assert est.site_weights_.shape == (10, K)
    np.testing.assert_allclose(est.site_weights_, props[:, order], atol=0.06)
    assert est.aggregation_.site_homogeneity.size_source == "server"
    with pytest.raises(ValueError, match="site_weights"):
        dfmr.DistributedGaussianMixture(K, site_weights="own", backend="serial").fit_partitions(parts)


def test_cli_aggregate_with_free_site_weights(mixed, tmp_path, capsys):
    _, props, fits = mixed
    paths = []
    for i, f in enumerate(fits):
        paths.append(tmp_path / f"site{i}.json")
        save_mixtures([f], paths[-1])
    out = tmp_path / "result.json"
    code = main(["aggregate", *map(str, paths), "-k", str(K), "--site-weights", "free", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "Site model: free" in text
    saved = json.loads(out.read_text())
    means = np.array(saved["mixture"]["means"])
    np.testing.assert_allclose(np.array(saved["site_weights"]), props[:, match(means)], atol=0.06)


def test_oracle_with_one_site_is_sklearns_em():
    parts, _ = sites_data(1, 300, 2.0, seed=7)
    w0, m0 = np.full(K, 1.0 / K), MEANS + 0.5
    ref = em_site_proportions(parts, w0[None], m0, COVS, tol=1e-13)
    gm = GaussianMixture(K, weights_init=w0, means_init=m0, precisions_init=np.linalg.inv(COVS), reg_covar=0.0,
                         tol=1e-12, max_iter=5000).fit(parts[0])
    np.testing.assert_allclose(ref.weights[0], gm.weights_, atol=1e-6)
    np.testing.assert_allclose(ref.means, gm.means_, atol=1e-6)
    np.testing.assert_allclose(ref.covariances, gm.covariances_, atol=1e-6)


def test_aligned_proportions_add_up_split_clusters():
    out = dfmr.GaussianMixtureParams([0.5, 0.5], [[0.0], [10.0]], [[[1.0]], [[1.0]]])
    site = dfmr.GaussianMixtureParams([0.2, 0.3, 0.5], [[-0.5], [0.5], [10.0]], [[[0.5]], [[0.5]], [[1.0]]])
    props = aligned_proportions([site, site], out, np.array([1]))
    assert np.isnan(props[0]).all()
    np.testing.assert_allclose(props[1], [0.5, 0.5])


def test_holm_adjustment_equals_statsmodels_with_ties_and_the_cap():
    # Computed here because statsmodels' Holm branch runs gc.collect() on every call.
    from statsmodels.stats.multitest import multipletests

    from dfmr.sites import _adjusted_pvalues

    rng = np.random.default_rng(3)
    for p in (rng.uniform(size=9), np.array([0.01, 0.04, 0.04, 0.3, 0.3, 0.9]), np.array([0.5]),
              np.array([0.2, 0.6, 0.6, 0.6, 1e-12])):
        np.testing.assert_array_equal(_adjusted_pvalues(p, "holm"), multipletests(p, method="holm")[1])
    p = rng.uniform(size=7)
    np.testing.assert_array_equal(_adjusted_pvalues(p, "fdr_bh"), multipletests(p, method="fdr_bh")[1])


def test_merged_by_slot_is_the_moment_match_of_the_components_a_site_split():
    ref = dfmr.GaussianMixtureParams(np.full(K, 1.0 / K), MEANS, COVS)
    w = np.array([0.25, 0.15, 0.6])
    mu = np.array([[-0.6, 0.1], [0.8, -0.2], [6.1, 0.0]])  # cluster 0 split in two, cluster 1, no cluster 2
    cov = np.stack([np.diag([0.5, 1.0]), np.diag([0.4, 0.9]), COVS[1]])
    site = dfmr.GaussianMixtureParams(w, mu, cov)
    merged, groups = merged_by_slot(site, ref)
    assert groups == [(0, 1)]
    # The moment match by hand: total weight, weighted mean, within + between scatter.
    tot = w[:2].sum()
    mean = (w[:2, None] * mu[:2]).sum(0) / tot
    scatter = sum(w[j] * (cov[j] + np.outer(mu[j] - mean, mu[j] - mean)) for j in range(2)) / tot
    np.testing.assert_allclose(merged.weights, [tot, w[2]], rtol=1e-12)
    np.testing.assert_allclose(merged.means, [mean, mu[2]], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.covariances, [scatter, cov[2]], rtol=1e-10, atol=1e-12)
    # Nothing shared: the estimate itself. A far component is left alone, never merged into a slot.
    assert merged_by_slot(dfmr.GaussianMixtureParams(np.full(K, 1.0 / K), MEANS + 0.1, COVS), ref)[1] == []
    far = dfmr.GaussianMixtureParams(w, np.array([[-0.6, 0.1], [60.0, 0.0], [6.1, 0.0]]), cov)
    cap = 0.5 * min(kl for i, row in enumerate(dfmr.reduction.kl_cost(ref, ref)) for j, kl in enumerate(row) if i != j)
    out, groups = merged_by_slot(far, ref, cap)
    assert groups == [] and out is far
    out, groups = merged_by_slot(far, ref)
    assert groups == [(1, 2)]  # without the cap it is dragged into the slot of cluster 1


def test_free_robust_dfmr_keeps_sites_that_split_a_cluster_at_their_own_k():
    # Four of ten sites never see cluster 2: their K = 3 fits split another cluster in two. The free
    # model reads them at their own K_i = 2 (the halves merged): kept whole, and the means are the
    # global fit's (EM with per-site proportions on all the data, tests/reference.py).
    rng = np.random.default_rng(11)
    chol = np.linalg.cholesky(COVS)
    parts, props = [], []
    for i in range(10):
        pi = np.array([0.5, 0.5, 0.0]) if i < 4 else rng.dirichlet(np.full(K, 2.0)) * 0.8 + 0.2 / K
        z = rng.choice(K, 400, p=pi)
        parts.append(MEANS[z] + np.einsum("nab,nb->na", chol[z], rng.standard_normal((400, D))))
        props.append(pi)
    fits = [dfmr.fit_local(X, K, random_state=i, n_init=2) for i, X in enumerate(parts)]
    split = [i for i in range(4) if len(set(match(fits[i].means))) < K]
    assert split, "a site without cluster 2 should split another cluster"
    res = dfmr.robust_dfmr(fits, K, n_samples=400, site_weights="free")
    assert any("merged" in note for note in res.screening.notes)
    assert res.retained.size == 10
    for i in split:  # both of its clusters are in the pool
        assert res.screening.kept[i].sum() == 2
    oracle = em_site_proportions(parts, np.array(props) * 0.98 + 0.02 / K, MEANS, COVS, tol=1e-9)
    order = match(res.mixture.means)
    err = np.linalg.norm(res.mixture.means - oracle.means[order], axis=1)
    truth_err = np.linalg.norm(oracle.means - MEANS, axis=1)
    assert err.max() < 0.5 * truth_err.max() + 0.01, (err, truth_err)
    np.testing.assert_allclose(res.site_weights[:4, order == 2], 0.0, atol=1e-12)  # they saw none of cluster 2


def noisy_site(pi: np.ndarray, n: int, rng: np.random.Generator, shift: float = 0.0) -> dfmr.GaussianMixtureParams:
    """An estimate whose component k errs like a fit to ``n pi_k`` points: mean error N(0, Sigma_k / (n pi_k)),
    covariance scaled by a chi2 draw with ``n pi_k`` df (plus ``shift`` on every mean: an attack)."""
    mu, cov = [], []
    for k in range(K):
        nk = n * pi[k]
        mu.append(MEANS[k] + shift + np.linalg.cholesky(COVS[k]) @ rng.standard_normal(D) / np.sqrt(nk))
        cov.append(COVS[k] * rng.chisquare(nk) / nk)
    return dfmr.GaussianMixtureParams(pi, np.array(mu), np.array(cov))


def test_free_dfmr_filter_reads_a_cluster_seen_in_few_points_at_its_share():
    # Five of ten sites saw cluster 2 in 1% of their 2,000 records: its estimate is poor, but it is 1%
    # of their data. Neutralised (weights 1/3) it dominates their L2 distance to the centre; the
    # proportion-free distance weighs it by its share, so those sites sit with the others.
    from dfmr.distances import pairwise_l2
    from dfmr.sites import neutralised, proportion_free_distances
    rng = np.random.default_rng(0)
    rare, even = np.array([0.5, 0.49, 0.01]), np.array([0.3, 0.3, 0.4])
    sites = [noisy_site(rare if i < 5 else even, 2000, rng) for i in range(10)]
    old = dfmr.dfmr(neutralised(sites), K)
    c = old.center
    assert c >= 5  # an even site: the ratio below compares four rare sites with four even ones
    new_r, old_r = proportion_free_distances(sites, c), pairwise_l2(neutralised(sites))[c]
    others = np.setdiff1d(np.arange(5, 10), [c])
    assert np.median(old_r[:5]) > 2.0 * np.median(old_r[others])
    assert np.median(new_r[:5]) < 1.5 * np.median(new_r[others])
    res = dfmr.dfmr(sites, K, site_weights="free", threshold=2.0)
    assert res.filter.center == c  # the centre is COAT's on the neutralised mixtures
    np.testing.assert_allclose(res.filter.distance_to_center, new_r, rtol=1e-12)
    np.testing.assert_array_equal(res.retained, np.arange(10))
    # A site whose means are all shifted (by about 20 of its standard errors) is still dropped.
    res = dfmr.dfmr(sites[:9] + [noisy_site(even, 2000, rng, shift=1.0)], K, site_weights="free", threshold=2.0)
    np.testing.assert_array_equal(res.retained, np.arange(9))


def test_proportion_free_distance_is_the_integrated_squared_difference():
    from scipy.integrate import quad
    from scipy.stats import norm

    from dfmr.sites import proportion_free_distances
    centre = dfmr.GaussianMixtureParams([0.5, 0.5], [[0.0], [5.0]], [[[1.0]], [[0.5]]])
    # Its own case mix, a split first cluster, a slightly wrong second one.
    site = dfmr.GaussianMixtureParams([0.1, 0.15, 0.75], [[-0.4], [0.3], [5.2]], [[[0.6]], [[0.8]], [[0.55]]])
    r = proportion_free_distances([centre, site], 0)

    def dens(f, x, weights=None):
        w = f.weights if weights is None else weights
        return sum(w[k] * norm.pdf(x, f.means[k, 0], np.sqrt(f.covariances[k, 0, 0])) for k in range(len(w)))

    g_w = np.array([0.25, 0.75])  # the site's weights on the centre's components (split halves add up)
    sq = quad(lambda x: (dens(site, x) - dens(centre, x, g_w)) ** 2, -15, 20, points=[0, 5], limit=200)[0]
    assert r[0] == pytest.approx(0.0, abs=1e-12)
    assert r[1] == pytest.approx(np.sqrt(sq), rel=1e-7)


def test_filter_row_is_distance_filters_rule_on_the_centres_row():
    from dfmr.filtering import center_index, distance_filter, filter_row
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 2))
    D = np.linalg.norm(x[:, None] - x[None], axis=-1)
    c = center_index(D)
    full, row = distance_filter(D), filter_row(c, D[c])
    assert (row.center, row.radius, row.cutoff) == (full.center, full.radius, full.cutoff)
    np.testing.assert_array_equal(row.retained, full.retained)
    r = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    dec = filter_row(0, r, threshold=1.5)  # radius: entry floor(5/2) = 2 of the sorted row
    assert dec.radius == 2.0 and dec.cutoff == 3.0
    np.testing.assert_array_equal(dec.retained, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        filter_row(0, np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="center"):
        filter_row(3, r[:2])
