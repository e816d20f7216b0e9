"""robust_dfmr's faster paths return what the straightforward computations return, bit for bit.

(The vote features alone differ by rounding, ~1e-15 relative: inverse factors instead of solves;
the decisions taken on them and the aggregate are compared bit for bit as the rest.)

Each fast helper of :mod:`dfmr.robust` is replaced by a plain re-computation (numpy's quantile,
one kl_cost call and one validated mixture per machine, ...) and robust_dfmr is run again on a
few inputs that take different branches (server sizes, no sizes with the information floor,
colluders that merge votes, copies, a constrained model): the aggregate and the screening must
not change at all. The cost itself is measured by tests/benchmarks/bench_robust.py.
"""

from __future__ import annotations

import attacks
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import dfmr
import dfmr.robust as robust
from dfmr import GaussianMixtureParams, simulate
from dfmr.reduction import _component_kl_cost, kl_cost, reduce
from dfmr.sites import aligned_proportions

N_LOCAL = 5000


def _noisy_two_gaussians(m: int, n: int, seed: int) -> list[GaussianMixtureParams]:
    """Local estimates of 0.4 N(-2, 1) + 0.6 N(2, 1.5^2): the truth plus sampling-size noise."""
    truth = attacks.TWO_GAUSSIANS
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(m):
        w0 = truth.weights[0] + rng.normal(0.0, np.sqrt(truth.weights[0] * (1 - truth.weights[0]) / n))
        w = np.array([w0, 1.0 - w0])
        sd = np.sqrt(truth.covariances[:, 0, 0])
        mu = truth.means + rng.normal(0.0, 1.0, (2, 1)) * (sd / np.sqrt(n * truth.weights))[:, None]
        var = truth.covariances * np.exp(rng.normal(0.0, np.sqrt(2.0 / (n * truth.weights))))[:, None, None]
        out.append(GaussianMixtureParams(w, mu, var, n_samples=n))
    return out


def _inputs():
    """(name, mixtures, K, keyword arguments): branches of the screening."""
    loc = simulate.local_estimates_fixture()
    rng = np.random.default_rng(7)
    colluded, _ = attacks.colluders(loc, 0.3, 6.0, rng, N_LOCAL)
    copied, _ = attacks.copy_honest(loc, 0.2, 0.0, None, N_LOCAL)
    one_d = _noisy_two_gaussians(12, 1000, 3)
    return [
        ("fixture, server sizes", loc, 5, {"n_samples": N_LOCAL}),
        ("fixture colluders, no sizes", colluded, 5, {}),
        ("fixture copies, server sizes", copied, 5, {"n_samples": N_LOCAL}),
        ("1-D claimed sizes (information floor)", one_d, 2, {}),
        ("fixture, diagonal model", loc[:10], 5, {"n_samples": N_LOCAL, "covariance_type": "diag"}),
    ]


def _plain_quantile(x, q):
    return np.quantile(x, q, axis=0)


def _machine(components, i):
    a, b = components.offsets[i], components.offsets[i + 1]
    w = components.weights[a:b]
    return GaussianMixtureParams._from_core(w / w.sum(), components.means[a:b], components.covariances[a:b])


def _plain_align(components, alive_idx, reference, cap, alignment):
    """One kl_cost call and one assignment per machine."""
    for i in alive_idx:
        cost = np.minimum(kl_cost(_machine(components, i), reference), min(cap, 1e300))
        rows, cols = linear_sum_assignment(cost)
        alignment[i] = -1
        alignment[i, cols] = rows


def _plain_stack(components, alignment):
    """A loop over machines and slots; log-dets from a fresh Cholesky factorisation."""
    m, k = alignment.shape
    d = components.means.shape[1]
    w, mu, cov, logdet = np.full((m, k), np.nan), np.full((m, k, d), np.nan), np.full((m, k, d, d), np.nan), \
        np.full((m, k), np.nan)
    for i in range(m):
        for j in range(k):
            if alignment[i, j] >= 0:
                c = components.offsets[i] + alignment[i, j]
                w[i, j], mu[i, j], cov[i, j] = components.weights[c], components.means[c], components.covariances[c]
                logdet[i, j] = 2.0 * np.log(np.diag(np.linalg.cholesky(cov[i, j]))).sum()
    return w, mu, cov, logdet


def _plain_from_validated(cls, weights, means, covariances, chol, covariance_type=None):
    """Validated again, as every mixture dfmr builds."""
    return cls._from_core(weights, means, covariances)


def _plain_median(x):
    return np.median(x, axis=-1)




def _plain_slot_inflations(stats, df, votes, q):
    return np.array([robust._inflation(stats[:, j], df, None, votes, q) for j in range(stats.shape[1])])


def _plain_median_centre(w, mu, cov, present, votes, fallback):
    """Slot by slot."""
    ref_w, ref_mu, ref_cov = fallback.weights.copy(), fallback.means.copy(), fallback.covariances.copy()
    for j in range(w.shape[1]):
        rows = present[:, j]
        if rows.any():
            u = votes[rows]
            ref_w[j] = robust._weighted_quantile(w[rows, j], u, 0.5)
            ref_mu[j] = robust._weighted_quantile(mu[rows, j], u, 0.5)
            med = robust._weighted_quantile(cov[rows, j], u, 0.5)
            med = 0.5 * (med + med.T)
            if np.linalg.eigvalsh(med)[0] > 0:
                ref_cov[j] = med
    total = ref_w.sum()
    return (ref_w / total if total > 0 else fallback.weights.copy()), ref_mu, ref_cov


def _plain_pool(components, alignment, kept, pool_weight, slot_w):
    """Component by component, in lists (``slot_w``: the aligned weights the pool gives them)."""
    comp_w, comp_mu, comp_cov, comp_chol, owner, slot_of = [], [], [], [], [], []
    for j in range(kept.shape[1]):
        rows = np.flatnonzero(kept[:, j])
        if rows.size:
            v = pool_weight[rows] / pool_weight[rows].sum()
            for i, vi in zip(rows, v):
                c = components.offsets[i] + alignment[i, j]
                comp_w.append(vi * slot_w[i, j])
                comp_mu.append(components.means[c])
                comp_cov.append(components.covariances[c])
                comp_chol.append(np.linalg.cholesky(components.covariances[c]))
                owner.append(i)
                slot_of.append(j)
    comp_w = np.asarray(comp_w)
    return (comp_w / comp_w.sum(), np.asarray(comp_mu), np.asarray(comp_cov), np.asarray(comp_chol), np.asarray(owner),
            np.asarray(slot_of))


def _plain_vote_features(w, mu, cov, present, ref_w, ref_mu, ref_cov, parts):
    """By LU solves against every machine's slot (``L^-1 mu``, ``L^-1 S L^-T``), as first written."""
    m, k, d = mu.shape
    chol = np.linalg.cholesky(ref_cov)
    fill_mu = np.where(present[..., None], mu, ref_mu[None])
    blocks = [(np.linalg.solve(chol[None], fill_mu[..., None])[..., 0] * np.sqrt(ref_w)[None, :, None]).reshape(m, -1)]
    if "covariance" in parts:
        fill_cov = np.where(present[..., None, None], cov, ref_cov[None])
        left = np.linalg.solve(chol[None], fill_cov)
        white = np.linalg.solve(chol[None], np.swapaxes(left, -1, -2))
        rows, cols = np.triu_indices(d)
        off = np.where(rows == cols, 1.0, np.sqrt(2.0))
        blocks.append((white[..., rows, cols] * off * np.sqrt(ref_w / 2.0)[None, :, None]).reshape(m, -1))
    if "weight" in parts:
        blocks.append(np.where(present, w, ref_w[None]) / np.sqrt(ref_w)[None])
    return np.hstack(blocks)


def _plain_best_supported(pooled, k, starts, supported, **options):
    """Every start run alone; the best objective among the supported optima."""
    red = robust.reduce(pooled, k, starts, **options)
    if supported(red):
        return red
    runs = [robust.reduce(pooled, k, [s], **options) for s in starts]
    return min((r for r in runs if supported(r)), key=lambda r: r.objective, default=None)


def _plain_votes_of(labels, alive_idx, m):
    """1 / the size of each machine's group, by np.unique."""
    votes = np.zeros(m)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    votes[alive_idx] = 1.0 / counts[inverse]
    return votes


# Each fast helper of dfmr.robust and its straightforward re-computation.
STRAIGHTFORWARD = {"_linear_quantile": _plain_quantile, "_align": _plain_align, "_stack": _plain_stack,
                   "_slot_inflations": _plain_slot_inflations, "_median_centre": _plain_median_centre,
                   "_pool": _plain_pool, "_zero_nan": np.nan_to_num, "_vote_features": _plain_vote_features,
                   "_votes_of": _plain_votes_of, "_median": _plain_median}


def _assert_same(a, b):
    for x, y in ((a.mixture.weights, b.mixture.weights), (a.mixture.means, b.mixture.means),
                 (a.mixture.covariances, b.mixture.covariances), (a.retained, b.retained), (a.support, b.support)):
        np.testing.assert_array_equal(x, y)
    sa, sb = a.screening, b.screening
    assert sa.decisions == sb.decisions
    for x, y in ((sa.alignment, sb.alignment), (sa.kept, sb.kept), (sa.votes, sb.votes),
                 (sa.machine_statistic, sb.machine_statistic), (sa.test_n, sb.test_n)):
        np.testing.assert_array_equal(x, y)
    for p in sa.statistics:
        np.testing.assert_array_equal(sa.statistics[p], sb.statistics[p])
        np.testing.assert_array_equal(sa.inflation[p], sb.inflation[p])
    assert sa.vote_groups == sb.vote_groups and sa.relaxed_slots == sb.relaxed_slots
    assert a.objective == b.objective


@pytest.mark.parametrize("case", range(5))
def test_fast_paths_return_the_straightforward_aggregate(case, monkeypatch):
    name, mixtures, k, kw = _inputs()[case]
    fast = dfmr.robust_dfmr(mixtures, k, **kw)
    for attr, plain in STRAIGHTFORWARD.items():
        monkeypatch.setattr(robust, attr, plain)
    monkeypatch.setattr(GaussianMixtureParams, "_from_validated", classmethod(_plain_from_validated))
    _assert_same(fast, dfmr.robust_dfmr(mixtures, k, **kw))


def test_linear_quantile_is_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    for r in (1, 2, 3, 7, 20):
        for q in (0.0, 1 / 6, 0.25, 0.5, 0.75, 1.0):
            x = rng.normal(size=(r, 3)) * 10.0 ** rng.uniform(-3, 3)
            x[:, 1] = np.round(x[:, 1])  # ties
            if r > 1:
                x[0, 2] = np.nan  # a column with a NaN is NaN
            np.testing.assert_array_equal(robust._linear_quantile(x, q), np.quantile(x, q, axis=0))
            assert robust._linear_quantile(x[:, 0], q) == np.quantile(x[:, 0], q)


def test_one_cost_call_for_many_machines_is_their_separate_calls():
    loc = simulate.local_estimates_fixture()[:6]
    ref = simulate.population()
    stacked = _component_kl_cost(np.concatenate([f.means for f in loc]), np.concatenate([f.covariances for f in loc]),
                                 ref)
    np.testing.assert_array_equal(stacked, np.vstack([kl_cost(f, ref) for f in loc]))
    # Site proportions read from the one call: each site's weights summed over its nearest output component.
    props = aligned_proportions(loc, ref, np.array([1, 4]))
    for i in (1, 4):
        row = np.bincount(np.argmin(kl_cost(loc[i], ref), axis=1), weights=loc[i].weights, minlength=5)
        np.testing.assert_array_equal(props[i], row / row.sum())
    assert np.isnan(props[[0, 2, 3, 5]]).all()


def test_vote_features_by_inverse_factors_agree_with_solves_to_rounding():
    loc = simulate.local_estimates_fixture()
    ref = simulate.population()
    w, mu, cov = (np.stack([getattr(f, a) for f in loc]) for a in ("weights", "means", "covariances"))
    present = np.ones(w.shape, dtype=bool)
    present[3, 1] = False  # an empty slot takes the reference
    args = (w, mu, cov, present, ref.weights, ref.means, ref.covariances, ["mean", "covariance", "weight"])
    fast, plain = robust._vote_features(*args), _plain_vote_features(*args)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-12 * np.abs(plain).max())


def test_restarts_in_objective_order_find_the_optimum_that_running_them_all_finds(monkeypatch):
    # Real data at K = 4: the best MR optimum builds a component of a minority of machines, so the
    # restarts from the machines kept whole decide (robust._best_supported).
    from sklearn import datasets
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X = datasets.load_wine().data
    X = X[np.random.default_rng(0).permutation(len(X))]
    X = PCA(5, random_state=0).fit_transform(StandardScaler().fit_transform(X))
    fits = [dfmr.fit_local(p, 4, random_state=i) for i, p in enumerate(np.array_split(X[:133], 10))]
    runs = []

    def counted(*args, **kwargs):
        runs.append(len(args[2]))
        return reduce(*args, **kwargs)

    monkeypatch.setattr(robust, "reduce", counted)
    fast = dfmr.robust_dfmr(fits, 4)
    assert len(runs) > 1 and runs[0] > 1, "the restarts ran"
    fast_runs = len(runs)
    monkeypatch.setattr(robust, "_best_supported", _plain_best_supported)
    runs.clear()
    _assert_same(fast, dfmr.robust_dfmr(fits, 4))
    assert fast_runs < len(runs)


def test_median_is_numpys_bit_for_bit():
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 6, 19):
        x = rng.normal(size=(4, n)) * 10.0 ** rng.uniform(-3, 3)
        x[1] = np.round(x[1])
        np.testing.assert_array_equal(robust._median(x), np.median(x, axis=-1))
        assert robust._median(x[0]) == np.median(x[0])
        x[2, 0] = np.nan
        np.testing.assert_array_equal(robust._median(x), np.median(x, axis=-1))

