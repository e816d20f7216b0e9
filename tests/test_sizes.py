"""Sites' sample sizes in the pool of MR, DFMR, TKB and COAT (issue 24): server sizes, claims, equal sizes.

The weighted pool is checked against a pool built by hand in NumPy and reduced by the plain-NumPy
reference (tests/reference.py), against the closed form of a one-component reduction, and against
the invariant that a site of size 2n weighs as two identical sites of size n.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from conftest import assert_mixture_close, noisy_copies, random_mixture

import dfmr
from dfmr import GaussianMixtureParams
from dfmr import reduction as core_reduction
from dfmr.sizes import CLAIM_CAP, pool_sizes


def _estimates(seed: int, m: int = 6, k: int = 3, d: int = 2) -> list[GaussianMixtureParams]:
    rng = np.random.default_rng(seed)
    truth = random_mixture(rng, k, d, spread=4.0)
    return noisy_copies(rng, truth, m, noise=0.3)


def _claiming(mixtures: list[GaussianMixtureParams], claims: list[int | None]) -> list[GaussianMixtureParams]:
    return [GaussianMixtureParams(f.weights, f.means, f.covariances, n_samples=n) for f, n in zip(mixtures, claims)]


def _hand_pool(mixtures: list[GaussianMixtureParams], n: np.ndarray) -> GaussianMixtureParams:
    share = np.asarray(n, dtype=float) / np.sum(n)
    return GaussianMixtureParams(
        np.concatenate([f.weights * s for f, s in zip(mixtures, share)]),
        np.concatenate([f.means for f in mixtures]),
        np.concatenate([f.covariances for f in mixtures]),
        normalize=True,
    )


def _same_bits(a: dfmr.AggregationResult, b: dfmr.AggregationResult) -> None:
    np.testing.assert_array_equal(a.mixture.weights, b.mixture.weights)
    np.testing.assert_array_equal(a.mixture.means, b.mixture.means)
    np.testing.assert_array_equal(a.mixture.covariances, b.mixture.covariances)
    assert a.objective == b.objective


@pytest.mark.parametrize("trim", [0.0, 0.3])
def test_mr_and_tkb_with_server_sizes_reduce_the_pool_built_by_hand(trim: float) -> None:
    fs = _estimates(0)
    n = np.array([200.0, 50.0, 3000.0, 800.0, 1200.0, 90.0])
    res = dfmr.tkb(fs, 3, alpha=trim, n_samples=n) if trim else dfmr.mr(fs, 3, n_samples=n)
    expected = ref.reduce_numpy(_hand_pool(fs, n), 3, fs, trim=trim)
    assert res.objective == pytest.approx(expected.objective, rel=1e-10)
    assert_mixture_close(res.mixture, expected.mixture, rtol=1e-8, atol=1e-12)
    assert res.size_source == "server"
    np.testing.assert_array_equal(res.n_samples, n)
    # The weights matter: the unweighted reduction is a different mixture.
    assert not np.allclose(np.sort(dfmr.mr(fs, 3).mixture.weights), np.sort(res.mixture.weights), rtol=1e-3)


def test_one_component_reduction_is_the_size_weighted_moment_match() -> None:
    fs = _estimates(1, m=4, k=2, d=2)
    n = np.array([10.0, 400.0, 25.0, 1.0])
    res = dfmr.mr(fs, 1, n_samples=n)
    w = np.concatenate([f.weights * ni for f, ni in zip(fs, n)]) / n.sum()
    mu = np.concatenate([f.means for f in fs])
    cov = np.concatenate([f.covariances for f in fs])
    mean = w @ mu
    scatter = np.einsum("n,nij->ij", w, cov) + np.einsum("n,ni,nj->ij", w, mu - mean, mu - mean)
    np.testing.assert_allclose(res.mixture.means[0], mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.mixture.covariances[0], scatter, rtol=1e-12)


def test_site_of_double_size_weighs_as_two_copies_of_it() -> None:
    fs = _estimates(2, m=3)
    a, b, c = fs
    sized = dfmr.mr([a, b, c], 3, n_samples=[2, 1, 1])
    copies = dfmr.mr([a, a, b, c], 3)
    assert sized.objective == pytest.approx(copies.objective, rel=1e-12)
    assert_mixture_close(sized.mixture, copies.mixture, rtol=1e-10, atol=1e-12, permute=False)
    two = dfmr.mr([a, b], 3, n_samples=[2, 1])
    assert two.objective == pytest.approx(dfmr.mr([a, a, b], 3).objective, rel=1e-12)


def test_equal_sizes_give_exactly_the_unweighted_results() -> None:
    fs = _estimates(3, m=7)
    equal = np.full(7, 311.0)
    _same_bits(dfmr.mr(fs, 3, n_samples=equal), dfmr.mr(fs, 3))
    _same_bits(dfmr.dfmr(fs, 3, n_samples=equal), dfmr.dfmr(fs, 3))
    _same_bits(dfmr.tkb(fs, 3, n_samples=equal), dfmr.tkb(fs, 3))
    # Equal claims too, and the reduction-level functions.
    _same_bits(dfmr.mr(_claiming(fs, [500] * 7), 3), dfmr.mr(fs, 3))
    plain = core_reduction.reduce_mixtures(fs, 3)
    same = core_reduction.reduce_mixtures(fs, 3, n_samples=equal)
    assert plain.objective == same.objective
    np.testing.assert_array_equal(plain.mixture.means, same.mixture.means)
    np.testing.assert_array_equal(core_reduction.pool(fs, equal).weights, core_reduction.pool(fs).weights)


def test_dfmr_weights_only_the_retained_machines_by_their_sizes() -> None:
    rng = np.random.default_rng(4)
    fs = _estimates(4, m=9)
    attacked, bad = dfmr.simulate.attack(fs, 0.2, kind="mean", random_state=rng)
    n = np.array([1e9 if i in bad else 100.0 * (i + 1) for i in range(9)])
    res = dfmr.dfmr(attacked, 3, n_samples=n)
    assert not set(res.retained) & set(bad) and len(res.retained) >= 5
    kept = [attacked[i] for i in res.retained]
    expected = ref.reduce_numpy(_hand_pool(kept, n[res.retained]), 3, kept)
    assert res.objective == pytest.approx(expected.objective, rel=1e-10)
    assert_mixture_close(res.mixture, expected.mixture, rtol=1e-8, atol=1e-12)


def test_claims_are_read_with_missing_ones_at_the_median_and_large_ones_capped() -> None:
    fs = _estimates(5, m=6)
    claims = [100, None, 300, 10**12, 200, 150]
    res = dfmr.mr(_claiming(fs, claims), 3)
    median = np.median([100, 300, 10**12, 200, 150])  # 200
    expected_sizes = np.array([100, median, 300, CLAIM_CAP * median, 200, 150], dtype=float)
    assert res.size_source == "claimed"
    np.testing.assert_array_equal(res.n_samples, expected_sizes)
    np.testing.assert_array_equal(res.sizes.capped, [3])
    np.testing.assert_array_equal(res.sizes.unclaimed, [1])
    # The same as the server passing the capped sizes, which the hand-built pool confirms.
    _same_bits(res, dfmr.mr(fs, 3, n_samples=expected_sizes))
    expected = ref.reduce_numpy(_hand_pool(fs, expected_sizes), 3, fs)
    assert res.objective == pytest.approx(expected.objective, rel=1e-10)
    # A claim of 1e12 buys no more than one of 5x the median.
    at_cap = dfmr.mr(_claiming(fs, [100, None, 300, int(CLAIM_CAP * median), 200, 150]), 3)
    _same_bits(res, at_cap)
    text = str(res.summary())
    assert "claim" in text and "capped (1): machines 3" in text


def test_no_sizes_and_no_claims_mean_equal_weights() -> None:
    fs = _estimates(6, m=4)
    res = dfmr.mr(fs, 3)
    assert res.size_source == "equal" and res.n_samples is None
    expected = ref.reduce_numpy(ref.pool(fs), 3, fs)
    assert res.objective == pytest.approx(expected.objective, rel=1e-10)
    assert pool_sizes(fs).source == "equal"


def test_server_sizes_override_claims_and_coat_records_them() -> None:
    fs = _claiming(_estimates(7, m=5), [10**9, 1, 1, 1, 1])
    n = [100, 200, 300, 400, 500]
    res = dfmr.mr(fs, 3, n_samples=n)
    assert res.size_source == "server" and res.sizes.capped.size == 0
    _same_bits(res, dfmr.mr(_estimates(7, m=5), 3, n_samples=n))
    coat = dfmr.coat(fs, n_samples=n)
    assert coat.size_source == "server"
    np.testing.assert_array_equal(coat.mixture.means, dfmr.coat(fs).mixture.means)
    assert "given (server)" in str(res.summary())


@pytest.mark.parametrize(
    ("n_samples", "fragment"),
    [([100, 200], "shape (2,)"), ([100, 200, np.nan, 1, 1], "n_samples[2]"), ([1, 1, 1, np.inf, 1], "n_samples[3]"),
     ([1, 1, 1, 1, 0.5], "n_samples[4]"), ([1, 1, -5, 1, 1], "n_samples[2]"), (["a", 1, 1, 1, 1], "per machine"),
     (7, "shape ()")],
)
def test_invalid_server_sizes_raise_saying_what_to_pass(n_samples, fragment: str) -> None:
    fs = _estimates(8, m=5)
    for call in (lambda: dfmr.mr(fs, 3, n_samples=n_samples), lambda: dfmr.dfmr(fs, 3, n_samples=n_samples),
                 lambda: dfmr.tkb(fs, 3, n_samples=n_samples), lambda: dfmr.coat(fs, n_samples=n_samples),
                 lambda: core_reduction.reduce_mixtures(fs, 3, n_samples=n_samples),
                 lambda: core_reduction.pool(fs, n_samples)):
        with pytest.raises(ValueError, match="one finite sample size >= 1 per machine") as err:
            call()
        assert fragment in str(err.value)
