"""Tests of dfmr.inference: coverage of the intervals, per-machine tests, the statsmodels-style result.

The coverage study follows the inference issue: 0.4 N(-2, 1) + 0.6 N(2, 1.5), 10 machines of
1,000 points, 200 seeded repetitions; the 95% intervals of the two weights and two means are
pooled (800 intervals per method), so a calibrated method lands in [0.90, 0.985] with near
certainty (binomial sd 0.008 at 0.95, correlated within a repetition).
"""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
from scipy import special, stats

import dfmr
from dfmr import inference, simulate
from dfmr import information as inf
from dfmr.local import fit_local
from dfmr.params import GaussianMixtureParams

TRUTH = GaussianMixtureParams([0.4, 0.6], [[-2.0], [2.0]], [[[1.0]], [[1.5]]])
REPS, MACHINES, N = 200, 10, 1000
# Weights and means of the reported vector (w1, w2, mu[1][1], mu[2][1]); the variances are
# checked by the d = 3 benchmark (tests/benchmarks/bench_coverage.py).
POOLED = slice(0, 4)
CASES = {
    "dfmr default": ("dfmr", False, None),
    "dfmr information": ("dfmr", False, "information"),
    "mr default": ("mr", False, None),
    "mr jackknife": ("mr", False, "jackknife"),
    "dfmr attacked default": ("dfmr", True, None),
    "dfmr attacked information": ("dfmr", True, "information"),
    "robust_dfmr attacked default": ("robust_dfmr", True, None),
}
AGGREGATORS = {"dfmr": dfmr.dfmr, "mr": dfmr.mr, "robust_dfmr": dfmr.robust_dfmr}


def _aligned_to_truth(result: inference.MixtureInferenceResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate, lower and upper bounds of (w1, w2, mu1, mu2) with components in the truth's order."""
    order = inf.align(result.mixture, TRUTH)
    idx = np.r_[order, 2 + order]
    ci = result.conf_int(0.05).to_numpy()
    return result.params.to_numpy()[idx], ci[idx, 0], ci[idx, 1]


@pytest.fixture(scope="module")
def study() -> dict[str, dict[str, np.ndarray]]:
    truth = np.r_[TRUTH.weights, TRUTH.means.ravel()]
    out: dict[str, dict[str, list]] = {name: {"covered": [], "width": [], "estimate": []} for name in CASES}
    honest_p, attacked_p = [], []
    # statsmodels' Holm adjustment calls gc.collect() every time; with the test session's objects
    # frozen out of the collector that costs microseconds instead of a tenth of a second.
    gc.freeze()
    try:
        for rep in range(REPS):
            rng = np.random.default_rng([2024, rep])
            parts = [TRUTH.sample(N, rng)[0] for _ in range(MACHINES)]
            local = [fit_local(x, 2, rng) for x in parts]
            attacked, bad = simulate.attack(local, 0.2, kind="mean", random_state=rng)
            aggregates = {}
            for name, (method, under_attack, interval) in CASES.items():
                mixtures = attacked if under_attack else local
                key = (method, under_attack)
                if key not in aggregates:
                    agg = AGGREGATORS[method](mixtures, 2, n_threads=1)
                    # What each retained machine sends, computed once per aggregate for both methods.
                    sent = [inf.machine_information(x, agg.mixture) if agg.kept[i] else None
                            for i, x in enumerate(parts)]
                    aggregates[key] = (agg, sent)
                agg, sent = aggregates[key]
                # Per-machine tests only where they are checked (their Holm step costs a gc.collect()).
                tested = name in ("dfmr default", "dfmr attacked default")
                # The jackknife reruns the whole aggregator; robust_dfmr's is passed in as it is called here.
                rerun = None
                if method == "robust_dfmr":
                    rerun = lambda ms: dfmr.robust_dfmr(ms, 2, n_threads=1)  # noqa: E731
                res = inference.infer(agg, mixtures, method=interval, machine_infos=sent,
                                      n_samples=N if tested else None, aggregate=rerun)
                est, lo, hi = _aligned_to_truth(res)
                out[name]["covered"].append((lo <= truth) & (truth <= hi))
                out[name]["width"].append(hi - lo)
                out[name]["estimate"].append(est)
                if name == "dfmr default":
                    honest_p.append(res.machine_tests.pvalues_adjusted)
                if name == "dfmr attacked default":
                    attacked_p.append(res.machine_tests.pvalues_adjusted[bad])
    finally:
        gc.unfreeze()
    arrays = {name: {k: np.asarray(v) for k, v in d.items()} for name, d in out.items()}
    arrays["machines"] = {"honest": np.concatenate(honest_p), "attacked": np.concatenate(attacked_p)}
    return arrays


def coverage(study, name: str) -> float:
    return float(study[name]["covered"][:, POOLED].mean())


def test_default_method_is_the_jackknife_except_for_mr():
    assert inference.default_method("dfmr") == "jackknife"
    assert inference.default_method("coat") == "jackknife"
    assert inference.default_method("mr") == "information"


@pytest.mark.parametrize(
    "name", ["dfmr default", "mr default", "dfmr attacked default", "robust_dfmr attacked default"]
)
def test_default_95_percent_intervals_cover(study, name):
    assert 0.90 <= coverage(study, name) <= 0.985


def test_information_intervals_cover_for_mr_where_the_docstring_says_they_are_valid(study):
    # "mr default" is the information method; the jackknife is documented as valid for MR too.
    assert 0.90 <= coverage(study, "mr jackknife") <= 0.985


def test_intervals_are_as_wide_as_the_estimates_actually_vary(study):
    # The standard error an interval shows (half-width / its quantile) against the standard
    # deviation of the estimates across repetitions: an interval that covers by being needlessly
    # wide fails. The information intervals of MR are tight; the jackknife's width varies from
    # repetition to repetition (DFMR's filter makes some leave-one-out sets jump), so its median
    # is compared, with room for the t quantile it uses.
    cases = {"mr default": (stats.norm.ppf(0.975), 0.85, 1.2), "dfmr default": (stats.t(9).ppf(0.975), 0.8, 1.5),
             "dfmr attacked default": (stats.t(9).ppf(0.975), 0.8, 1.5)}
    for name, (quantile, low, high) in cases.items():
        se_shown = np.median(study[name]["width"][:, POOLED], axis=0) / (2 * quantile)
        sd = study[name]["estimate"][:, POOLED].std(axis=0, ddof=1)
        assert np.all((se_shown / sd > low) & (se_shown / sd < high)), (name, se_shown / sd)


def test_dfmr_varies_more_than_mr_so_information_intervals_are_narrower_than_its_spread(study):
    # The measured trap: the filter makes DFMR noisier than MR over all machines, which the
    # retained machines' information does not see.
    sd_dfmr = study["dfmr default"]["estimate"][:, POOLED].std(axis=0, ddof=1)
    sd_mr = study["mr default"]["estimate"][:, POOLED].std(axis=0, ddof=1)
    assert np.mean(sd_dfmr / sd_mr) > 1.05
    info_se = study["dfmr information"]["width"][:, POOLED].mean(axis=0) / (2 * stats.norm.ppf(0.975))
    assert np.mean(info_se / sd_dfmr) < 0.95


def test_holm_rejects_few_honest_machines_and_every_mean_attacked_one(study):
    honest = study["machines"]["honest"]
    assert honest.size == REPS * MACHINES
    assert np.mean(honest < 0.05) <= 0.05
    assert np.all(study["machines"]["attacked"] < 0.01)


@pytest.fixture(scope="module")
def fixture_estimates() -> list[GaussianMixtureParams]:
    return simulate.local_estimates_fixture()


@pytest.mark.parametrize("kind", ["mean", "cov", "weight"])
def test_attacked_fixture_machines_get_adjusted_p_below_one_percent(fixture_estimates, kind):
    attacked, bad = simulate.attack(fixture_estimates, 0.2, kind=kind, random_state=3)
    res = dfmr.dfmr(attacked, 5)
    tests = inference.machine_tests(
        res, attacked, inf.expected_information(res.mixture, 20_000, kind="opg"), 5000
    )
    assert np.all(tests.pvalues_adjusted[bad] < 0.01)
    honest = np.setdiff1d(np.arange(len(attacked)), bad)
    assert np.mean(tests.pvalues_adjusted[honest] < 0.05) <= 0.1
    assert tests.df == 329


def test_honest_fixture_wald_statistics_look_chi_squared(fixture_estimates):
    res = dfmr.dfmr(fixture_estimates, 5)
    tests = inference.infer(res, fixture_estimates, n_samples=5000).machine_tests
    # 20 draws from chi2(329) (mean 329, sd 25.7): their mean within 4 standard errors.
    assert abs(tests.statistic.mean() - 329) < 4 * 25.7 / np.sqrt(20)
    assert stats.kstest(tests.statistic, stats.chi2(329).cdf).pvalue > 0.001


def small_problem():
    rng = np.random.default_rng(11)
    parts = [TRUTH.sample(N, rng)[0] for _ in range(MACHINES)]
    local = [fit_local(x, 2, rng) for x in parts]
    return parts, local


def test_information_method_sums_only_the_retained_machines():
    parts, local = small_problem()
    attacked, bad = simulate.attack(local, 0.2, kind="mean", random_state=0)
    res = dfmr.dfmr(attacked, 2)
    assert not set(bad.tolist()) & set(res.retained.tolist())
    garbage = [np.full((5, 1), 1e6) if i in bad else x for i, x in enumerate(parts)]
    a = inference.infer(res, attacked, parts, method="information")
    b = inference.infer(res, attacked, garbage, method="information")
    np.testing.assert_allclose(a.cov_params().to_numpy(), b.cov_params().to_numpy())
    # Independent oracle: minus the Hessian of the retained machines' log-likelihood in the free
    # parameters (w1, mu1, mu2, sigma1^2, sigma2^2), by central differences of scipy's densities,
    # inverted and mapped to the reported (w1, w2 = 1 - w1, mu1, mu2, sigma1^2, sigma2^2) by hand.
    x = np.concatenate([parts[i] for i in res.retained]).ravel()
    theta = np.r_[res.mixture.weights[0], res.mixture.means.ravel(), res.mixture.covariances.ravel()]
    hessian = finite_difference_hessian(lambda t: two_component_loglik(x, t), theta)
    to_reported = np.zeros((6, 5))
    to_reported[0, 0], to_reported[1, 0] = 1.0, -1.0
    to_reported[2:, 1:] = np.eye(4)
    expected = to_reported @ np.linalg.inv(-hessian) @ to_reported.T
    np.testing.assert_allclose(a.cov_params().to_numpy(), expected, rtol=1e-5, atol=1e-12)
    assert a.nobs == N * len(res.retained)


def two_component_loglik(x: np.ndarray, theta: np.ndarray) -> float:
    """Log-likelihood of 1-D data under ``w1 N(mu1, v1) + (1 - w1) N(mu2, v2)``, theta = (w1, mu1, mu2, v1, v2)."""
    w1, mu1, mu2, v1, v2 = theta
    terms = np.stack([np.log(w1) + stats.norm.logpdf(x, mu1, np.sqrt(v1)),
                      np.log1p(-w1) + stats.norm.logpdf(x, mu2, np.sqrt(v2))])
    return float(special.logsumexp(terms, axis=0).sum())


def finite_difference_hessian(f, theta: np.ndarray) -> np.ndarray:
    """Hessian of ``f`` at ``theta`` by central differences (steps 1e-4 relative; error ~1e-8 relative here)."""
    h = 1e-4 * np.maximum(1.0, np.abs(theta))
    p = theta.size
    out = np.empty((p, p))
    for i in range(p):
        for j in range(i, p):
            ei, ej = np.eye(p)[i] * h[i], np.eye(p)[j] * h[j]
            out[i, j] = out[j, i] = (f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej)
                                     + f(theta - ei - ej)) / (4.0 * h[i] * h[j])
    return out


def test_jackknife_matches_a_direct_leave_one_out_computation():
    _, local = small_problem()
    res = dfmr.mr(local, 2)
    jk = inference.infer(res, local, method="jackknife")
    reps = []
    for i in range(MACHINES):
        loo = dfmr.mr(local[:i] + local[i + 1:], 2).mixture
        order = inf.align(loo, res.mixture)
        reps.append(inf.to_full_vector(loo.permute(order)))
    reps = np.asarray(reps)
    direct = (MACHINES - 1) / MACHINES * np.cov(reps.T, bias=True) * MACHINES
    np.testing.assert_allclose(jk.cov_params().to_numpy(), direct, rtol=1e-8, atol=1e-14)
    assert jk.use_t and jk.df_resid == MACHINES - 1


def test_result_follows_statsmodels_conventions():
    parts, local = small_problem()
    res = dfmr.mr(local, 2)
    r = inference.infer(res, local, parts)
    names = inf.full_param_names(2, 1)
    assert list(r.params.index) == names == list(r.bse.index) == list(r.cov_params().columns)
    np.testing.assert_allclose(r.bse.to_numpy(), np.sqrt(np.diag(r.cov_params().to_numpy())))
    ci = r.conf_int(0.1)
    np.testing.assert_allclose(ci["upper"] - r.params, stats.norm.ppf(0.95) * r.bse)
    # The weights sum to one: their covariance rows sum to zero (the delta method for w_K).
    w_cov = r.cov_params().to_numpy()[:2, :2]
    np.testing.assert_allclose(w_cov.sum(axis=1), 0.0, atol=1e-12)
    assert np.isnan(r.pvalues["w1"]) and np.isnan(r.tvalues["Sigma[1][1,1]"])
    assert r.pvalues["mu[1][1]"] == pytest.approx(2 * stats.norm.sf(abs(r.params["mu[1][1]"] / r.bse["mu[1][1]"])))
    shaped = r.confidence_intervals(0.9)
    np.testing.assert_allclose(shaped["means"][0].ravel(), ci["lower"].to_numpy()[2:4])
    assert shaped["covariances"][1].shape == (2, 1, 1)


def test_link_scale_intervals_stay_in_range_and_are_symmetric_on_the_logit_and_log_scales():
    parts, local = small_problem()
    # few observations on the machines' information: wide intervals
    r = inference.infer(dfmr.mr(local, 2), local, [x[:12] for x in parts], method="information")
    level, q = 0.999, stats.norm.ppf(0.9995)
    natural, link = r.conf_int(1 - level), r.conf_int(1 - level, scale="link")
    est, se = r.params.to_numpy(), r.bse.to_numpy()
    weights, variances = [0, 1], [4, 5]  # w1, w2, mu[1][1], mu[2][1], Sigma[1][1,1], Sigma[2][1,1]
    for idx, to_link in ((weights, special.logit), (variances, np.log)):
        eta = to_link(est[idx])
        step = 1e-7 * est[idx]
        slope = (to_link(est[idx] + step) - to_link(est[idx] - step)) / (2 * step)  # d link / d parameter
        np.testing.assert_allclose(to_link(link["upper"].to_numpy()[idx]) - eta, q * se[idx] * slope, rtol=1e-6)
        np.testing.assert_allclose(eta - to_link(link["lower"].to_numpy()[idx]), q * se[idx] * slope, rtol=1e-6)
    assert np.all(link["lower"].to_numpy()[weights + variances] > 0) and np.all(link["upper"].to_numpy()[weights] < 1)
    assert np.any(natural["lower"].to_numpy()[weights + variances] < 0)  # the case the link scale is for
    np.testing.assert_array_equal(link.to_numpy()[2:4], natural.to_numpy()[2:4])  # means: unchanged
    shaped = r.confidence_intervals(level, scale="link")
    np.testing.assert_array_equal(shaped["weights"][0], link["lower"].to_numpy()[:2])
    with pytest.raises(ValueError, match="scale must be one of 'natural', 'link'"):
        r.conf_int(scale="log")
    # one component: the weight is 1 with no spread, its interval the point
    one = inference.infer(dfmr.mr(local, 1), local, method="jackknife")
    assert one.conf_int(scale="link").loc["w1"].tolist() == [1.0, 1.0]


def test_what_machines_send_is_checked():
    parts, local = small_problem()
    res = dfmr.mr(local, 2)
    sent = [inf.machine_information(x, res.mixture) for x in parts]
    bad_cases = {
        "NaN or infinite": (np.full((5, 5), np.nan), N),
        "shape": (np.eye(4), N),
        "not symmetric": (np.triu(np.ones((5, 5))), N),
        "positive integer": (sent[0][0], -3),
    }
    for message, entry in bad_cases.items():
        with pytest.raises(ValueError, match=f"machine 3: .*{message}"):
            inference.infer(res, local, method="information", machine_infos=sent[:3] + [entry] + sent[4:])
    negative = sent[:3] + [(-100 * sent[3][0], N)] + sent[4:]
    with pytest.raises(ValueError, match="not positive definite"):
        inference.infer(res, local, method="information", machine_infos=negative)


def test_bootstrap_of_mr_agrees_with_the_information():
    # MR is (to first order) the n-weighted average of the local estimates, so redrawing them from
    # N(theta, I^-1 / n_i) must give back I^-1 / N: the information method's covariance.
    parts, local = small_problem()
    res = dfmr.mr(local, 2)
    boot = inference.infer(res, local, parts, method="bootstrap", n_boot=400, random_state=1)
    info_res = inference.infer(res, local, parts, method="information")
    ratio = boot.bse.to_numpy() / info_res.bse.to_numpy()
    assert np.all((ratio > 0.85) & (ratio < 1.15)), ratio
    assert not boot.use_t and boot.method == "bootstrap"
    with pytest.raises(ValueError, match="sample sizes"):
        inference.infer(res, local, method="bootstrap")


def test_information_method_needs_data():
    _, local = small_problem()
    with pytest.raises(ValueError, match="needs the retained machines' data"):
        inference.infer(dfmr.mr(local, 2), local, method="information")
    with pytest.raises(ValueError, match="method must be one of"):
        inference.infer(dfmr.mr(local, 2), local, method="sandwich")


# ------------------------------------------------------------------------------ estimator hooks


@pytest.fixture(scope="module")
def fitted():
    X, _ = TRUTH.sample(6000, 5)
    est = dfmr.DistributedGaussianMixture(2, n_machines=6, backend="serial", random_state=0).fit(X)
    return est, X


def test_estimator_confidence_intervals_are_shaped_like_the_estimate(fitted):
    est, _ = fitted
    ci = est.confidence_intervals(0.95)
    assert set(ci) == {"weights", "means", "covariances"}
    for key, arr in (("weights", est.weights_), ("means", est.means_), ("covariances", est.covariances_)):
        lower, upper = ci[key]
        assert lower.shape == upper.shape == arr.shape
        assert np.all(lower <= arr) and np.all(arr <= upper)
    assert est.inference_.method == "jackknife"  # the default for dfmr, no data needed
    se = est.standard_errors_
    np.testing.assert_allclose((ci["means"][1] - est.means_) / se["means"], stats.t(5).ppf(0.975))


def test_estimator_infer_with_data_runs_the_information_and_the_tests(fitted):
    est, X = fitted
    res = est.infer(X, method="information")
    assert res is est.inference_ and res.method == "information"
    assert res.machine_tests.pvalues.shape == (6,)
    parts = simulate.split(X, 6, np.random.default_rng(np.random.SeedSequence(0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = dfmr.DistributedGaussianMixture(2, n_machines=6, backend="threads", n_jobs=2, random_state=0)
        again.fit_partitions(parts)
        r2 = again.infer(parts=parts, method="information")
    np.testing.assert_allclose(r2.bse.to_numpy(), res.bse.to_numpy(), rtol=1e-10)
    text = est.summary()
    assert "holm p" in text and "Weights and means (information)" in text


def test_estimator_infer_rejects_what_it_cannot_use(fitted):
    est, X = fitted
    with pytest.raises(ValueError, match="not both"):
        est.infer(X, parts=[X])
    with pytest.raises(ValueError, match="one array per machine"):
        est.infer(parts=[X])
    unseeded = dfmr.DistributedGaussianMixture(2, n_machines=6, backend="serial").fit(X)
    with pytest.raises(ValueError, match="random_state"):
        unseeded.infer(X)
    mr = dfmr.DistributedGaussianMixture(2, n_machines=6, aggregator="mr", backend="serial", random_state=0).fit(X)
    with pytest.raises(ValueError, match="needs the retained machines' data"):
        mr.confidence_intervals()
    assert mr.infer(X).method == "information"


def test_estimator_inference_needs_a_fit():
    est = dfmr.DistributedGaussianMixture(2)
    assert not hasattr(est, "standard_errors_")
    with pytest.raises(dfmr.NotFittedError):
        est.confidence_intervals()
    with pytest.raises(dfmr.NotFittedError):
        est.infer()
