"""DistributedGaussianMixture: recovery of a known population, inference methods, backends, sklearn protocol.

Recovery tolerances come from sampling theory, not from runs of the estimator. With known labels the
mean of component k estimated from ``n_k = w_k N`` points satisfies ``sqrt(n_k) L_k^-1 (mu_hat - mu) ~ N(0, I)``
(``L_k`` the Cholesky factor of ``Sigma_k``), the whitened covariance error ``L_k^-1 Sigma_hat L_k^-T - I`` has
entries of standard deviation at most ``sqrt(2 / n_k)``, and ``w_hat`` has standard deviation
``sqrt(w (1 - w) / N)``. Over the 5 x 10 mean coordinates of the paper's population a standard normal exceeds
4.5 in absolute value with probability ~3e-4. Unknown labels (the population overlaps up to MaxOmega = 0.1)
inflate the MLE's standard deviations, and DFMR is asymptotically as efficient as the pooled MLE; a bound
of 8 standard errors covers both. An estimate that swaps or merges components is off by a component
separation, i.e. hundreds of standard errors.
"""

from __future__ import annotations

import pickle
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import sklearn.exceptions
from conftest import assert_summary_shows_mixture, header_value
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import check_estimator
from threadpoolctl import threadpool_info, threadpool_limits

import dfmr
from dfmr import AggregationResult, GaussianMixtureParams, estimator
from dfmr._blas import single_threaded_blas
from dfmr.estimator import DistributedGaussianMixture, NotFittedError
from dfmr.local import fit_local_detailed
from dfmr.partition import split
from dfmr.simulate import population

Z_MAX = 8.0
LEARNED = (
    "mixture_", "weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "local_mixtures_",
    "aggregation_", "n_features_in_", "n_machines_", "n_iter_", "converged_",
)


def recovery_errors(estimate: GaussianMixtureParams, truth: GaussianMixtureParams, n_total: int) -> dict[str, float]:
    """Largest standardised errors of means, covariances and weights after matching components by their means."""
    assert estimate.n_components == truth.n_components
    cost = np.linalg.norm(truth.means[:, None, :] - estimate.means[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    z_mean = z_cov = z_weight = 0.0
    for k, j in zip(rows, cols):
        n_k = truth.weights[k] * n_total
        chol = np.linalg.cholesky(truth.covariances[k])
        white_mu = np.linalg.solve(chol, estimate.means[j] - truth.means[k])
        white_cov = np.linalg.solve(chol, np.linalg.solve(chol, estimate.covariances[j]).T) - np.eye(truth.dim)
        z_mean = max(z_mean, float(np.abs(white_mu).max() * np.sqrt(n_k)))
        z_cov = max(z_cov, float(np.abs(white_cov).max() * np.sqrt(n_k / 2.0)))
        se_w = np.sqrt(truth.weights[k] * (1.0 - truth.weights[k]) / n_total)
        z_weight = max(z_weight, float(abs(estimate.weights[j] - truth.weights[k]) / se_w))
    return {"means": z_mean, "covariances": z_cov, "weights": z_weight}


def assert_recovers(estimate: GaussianMixtureParams, truth: GaussianMixtureParams, n_total: int) -> None:
    errors = recovery_errors(estimate, truth, n_total)
    bad = {name: z for name, z in errors.items() if not z < Z_MAX}
    assert not bad, f"standardised errors above {Z_MAX}: {bad}"


def map_labels(mixture: GaussianMixtureParams, X: np.ndarray) -> np.ndarray:
    """Bayes-rule labels computed with scipy, independently of the code under test."""
    dens = np.column_stack(
        [w * multivariate_normal(m, c).pdf(X) for w, m, c in zip(mixture.weights, mixture.means, mixture.covariances)]
    )
    return np.argmax(dens, axis=1)


def scipy_log_joint(mixture: GaussianMixtureParams, X: np.ndarray) -> np.ndarray:
    """``log w_k + log N(x; mu_k, Sigma_k)`` by scipy.stats, shape (n, K)."""
    return np.column_stack(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(X)
            for w, m, c in zip(mixture.weights, mixture.means, mixture.covariances)
        ]
    )


@pytest.fixture(scope="module")
def truth() -> GaussianMixtureParams:
    return population()


@pytest.fixture(scope="module")
def data(truth: GaussianMixtureParams) -> tuple[np.ndarray, np.ndarray]:
    return truth.sample(20_000, np.random.default_rng(20240101))


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray]) -> DistributedGaussianMixture:
    X, _ = data
    return DistributedGaussianMixture(5, n_machines=10, backend="serial", random_state=0).fit(X)


@pytest.fixture(scope="module")
def small_data(truth: GaussianMixtureParams) -> np.ndarray:
    return truth.sample(8_000, np.random.default_rng(7))[0]


# ------------------------------------------------------------------------------------ recovery


def test_fit_recovers_the_population(fitted, truth, data):
    assert_recovers(fitted.mixture_, truth, len(data[0]))


def test_recovery_check_rejects_a_wrong_mixture(truth):
    shifted = GaussianMixtureParams(truth.weights, truth.means + 0.1, truth.covariances)
    with pytest.raises(AssertionError, match="means"):
        assert_recovers(shifted, truth, 20_000)


def test_predict_agrees_with_the_true_labels(fitted, truth, data):
    X, y = data
    labels = fitted.predict(X)
    bayes = map_labels(truth, X)
    # MaxOmega = 0.1 caps what any classifier reaches against the generating labels: compare with the Bayes rule.
    assert adjusted_rand_score(y, labels) >= adjusted_rand_score(y, bayes) - 0.02
    assert adjusted_rand_score(bayes, labels) > 0.9


def test_predict_proba_rows_are_posteriors(fitted, data):
    X = data[0][:2_000]
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 5)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.argmax(proba, axis=1), fitted.predict(X))
    log_joint = scipy_log_joint(fitted.mixture_, X)
    np.testing.assert_allclose(proba, np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True)), atol=1e-10)


def test_predict_proba_does_not_underflow_far_from_the_data(fitted):
    far = np.full((3, 10), 1e3)
    proba = fitted.predict_proba(far)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_score_is_the_mean_log_likelihood(fitted, data):
    X = data[0][:2_000]
    samples = fitted.score_samples(X)
    np.testing.assert_allclose(samples, logsumexp(scipy_log_joint(fitted.mixture_, X), axis=1), rtol=1e-10)
    assert fitted.score(X) == pytest.approx(samples.mean(), rel=1e-12)
    assert fitted.score(X) == pytest.approx(fitted.mixture_.logpdf(X).mean(), rel=1e-12)


def test_bic_counts_the_free_parameters_of_a_full_covariance_mixture(fitted, data):
    X = data[0][:2_000]
    k, d = 5, 10
    n_params = (k - 1) + k * d + k * d * (d + 1) // 2
    expected = -2.0 * logsumexp(scipy_log_joint(fitted.mixture_, X), axis=1).sum() + n_params * np.log(len(X))
    assert fitted.bic(X) == pytest.approx(expected, rel=1e-10)


def test_sample_draws_from_the_fitted_mixture(fitted):
    X, labels = fitted.sample(20_000, random_state=3)
    assert X.shape == (20_000, 10) and labels.shape == (20_000,)
    assert set(np.unique(labels)) <= set(range(5))
    for k in range(5):
        pts = X[labels == k]
        se = np.sqrt(np.diag(fitted.covariances_[k]) / len(pts))
        assert np.all(np.abs(pts.mean(axis=0) - fitted.means_[k]) < 6 * se)
        se_w = np.sqrt(fitted.weights_[k] * (1 - fitted.weights_[k]) / len(X))
        assert abs(len(pts) / len(X) - fitted.weights_[k]) < 6 * se_w
    again, again_labels = fitted.sample(20_000, random_state=3)
    np.testing.assert_array_equal(again, X)
    np.testing.assert_array_equal(again_labels, labels)


def test_sample_rejects_a_non_positive_count(fitted):
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)


def test_learned_attributes_describe_the_aggregate(fitted):
    assert isinstance(fitted.mixture_, GaussianMixtureParams)
    assert isinstance(fitted.aggregation_, AggregationResult)
    assert fitted.aggregation_.method == "robust_dfmr"  # the default aggregator
    # calibrated by the machines' row counts (10 machines of the 20,000 rows)
    np.testing.assert_array_equal(fitted.aggregation_.screening.n_samples, np.full(10, 2_000.0))
    assert fitted.aggregation_.mixture is fitted.mixture_
    np.testing.assert_array_equal(fitted.weights_, fitted.mixture_.weights)
    np.testing.assert_array_equal(fitted.means_, fitted.mixture_.means)
    np.testing.assert_array_equal(fitted.covariances_, fitted.mixture_.covariances)
    assert fitted.weights_.shape == (5,) and fitted.means_.shape == (5, 10) and fitted.covariances_.shape == (5, 10, 10)
    assert len(fitted.local_mixtures_) == 10
    assert all(m.n_components == 5 and m.dim == 10 for m in fitted.local_mixtures_)
    assert fitted.n_features_in_ == 10
    assert fitted.n_machines_ == 10


def test_summary_reports_the_current_fit(small_data):
    est = DistributedGaussianMixture(5, n_machines=4, aggregator="mr", backend="serial", random_state=0)
    assert header_value(est.fit(small_data).summary(), "Method") == "MR"
    est.set_params(aggregator="tkb", n_machines=5).fit(small_data)  # a refit must not report the first fit
    text = est.summary()
    assert header_value(text, "Method") == "TKB"
    assert header_value(text, "Machines received") == "5"
    assert header_value(text, "Machines retained") == "5"
    assert header_value(text, "MM iterations") == str(est.aggregation_.n_iter)
    assert float(header_value(text, "Objective")) == pytest.approx(est.aggregation_.objective, rel=1e-5)
    assert_summary_shows_mixture(text, est.mixture_)


def test_fitted_estimator_pickles(fitted, data):
    copy = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(copy.predict(data[0][:500]), fitted.predict(data[0][:500]))


# ------------------------------------------------------------------------------ Byzantine machines


def test_dfmr_filters_a_byzantine_partition(truth, data):
    X, _ = data
    parts = split(X, 10, 1)
    parts[3] = parts[3] + 50.0
    n_good = sum(len(p) for i, p in enumerate(parts) if i != 3)
    est = DistributedGaussianMixture(5, backend="serial", random_state=0).fit_partitions(parts)
    assert 3 not in est.aggregation_.retained
    assert_recovers(est.mixture_, truth, n_good)
    # The same partitions break plain MR, so the recovery check above can tell the two apart.
    broken = DistributedGaussianMixture(5, aggregator="mr", backend="serial", random_state=0).fit_partitions(parts)
    assert recovery_errors(broken.mixture_, truth, n_good)["means"] > Z_MAX


# Each aggregator with a non-default setting where it has one, and the function the estimator must call.
AGGREGATOR_CALLS = {
    "mr": ({}, lambda local: dfmr.mr(local, 5)),
    "coat": ({}, lambda local: dfmr.coat(local)),
    "tkb": ({"alpha": 0.2}, lambda local: dfmr.tkb(local, 5, 0.2)),
    "dfmr": ({"threshold": 1.0}, lambda local: dfmr.dfmr(local, 5, 1.0)),
    # 8,000 rows on 4 machines: each machine's sample size is 2,000
    "robust_dfmr": ({}, lambda local: dfmr.robust_dfmr(local, 5, n_samples=np.full(4, 2_000.0))),
}


@pytest.mark.parametrize("aggregator", list(AGGREGATOR_CALLS))
def test_estimator_aggregates_like_the_aggregator_function(aggregator, small_data):
    settings, call = AGGREGATOR_CALLS[aggregator]
    est = DistributedGaussianMixture(5, n_machines=4, aggregator=aggregator, backend="serial", random_state=0,
                                     **settings).fit(small_data)
    expected = call(est.local_mixtures_)
    got = est.aggregation_
    assert got.method == expected.method == aggregator
    assert est.mixture_ == expected.mixture  # weights, means and covariances, bit for bit
    np.testing.assert_array_equal(got.retained, expected.retained)
    assert (got.center, got.objective, got.n_iter, got.alpha) == (
        expected.center, expected.objective, expected.n_iter, expected.alpha)
    if aggregator == "coat":
        assert est.mixture_ == est.local_mixtures_[expected.center]


@pytest.mark.parametrize(("aggregator", "default"), [("tkb", lambda local: dfmr.tkb(local, 5)),
                                                      ("dfmr", lambda local: dfmr.dfmr(local, 5))])
def test_the_aggregator_settings_matter_on_this_data(aggregator, default, small_data):
    # Otherwise the comparison above could not tell a setting passed on from one ignored.
    settings, call = AGGREGATOR_CALLS[aggregator]
    local = DistributedGaussianMixture(5, n_machines=4, aggregator="mr", backend="serial",
                                       random_state=0).fit(small_data).local_mixtures_
    assert call(local).mixture != default(local).mixture


# ------------------------------------------------------------------------- backends and seeding


def test_backends_give_identical_results(small_data):
    fits = {
        backend: DistributedGaussianMixture(5, n_machines=4, backend=backend, n_jobs=2, random_state=11).fit(small_data)
        for backend in ("serial", "threads", "processes")
    }
    ref = fits["serial"]
    for backend, est in fits.items():
        assert est.mixture_ == ref.mixture_, backend
        assert all(a == b for a, b in zip(est.local_mixtures_, ref.local_mixtures_)), backend


def test_fit_equals_fit_partitions_of_the_seeded_split(small_data):
    whole = DistributedGaussianMixture(5, n_machines=4, backend="serial", random_state=5).fit(small_data)
    parts = DistributedGaussianMixture(5, backend="serial", random_state=5).fit_partitions(split(small_data, 4, 5))
    assert whole.mixture_ == parts.mixture_


def test_random_state_controls_the_local_fits(small_data):
    def local(random_state):
        est = DistributedGaussianMixture(5, n_machines=4, backend="serial", random_state=random_state)
        return est.fit(small_data).local_mixtures_

    seed_sequence = np.random.SeedSequence(5)
    same = local(seed_sequence)
    assert all(a == b for a, b in zip(local(5), same))
    assert all(a == b for a, b in zip(local(seed_sequence), same))
    assert all(a == b for a, b in zip(local(np.random.default_rng(9)), local(np.random.default_rng(9))))
    assert not all(a == b for a, b in zip(local(6), same))


def test_progress_bar_counts_machines(small_data, capsys):
    DistributedGaussianMixture(5, n_machines=4, backend="serial", progress=True, random_state=0).fit(small_data)
    err = capsys.readouterr().err
    assert "local fits" in err and "4/4" in err


# ------------------------------------------------------------------------ scikit-learn protocol


def test_learned_attributes_do_not_exist_before_fit():
    est = DistributedGaussianMixture(3)
    for name in LEARNED:
        assert not hasattr(est, name)
        with pytest.raises(NotFittedError, match="not fitted"):
            getattr(est, name)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    with pytest.raises(AttributeError):
        est.no_such_attribute  # noqa: B018


@pytest.mark.parametrize(
    "method, args", [("predict", (np.zeros((2, 2)),)), ("predict_proba", (np.zeros((2, 2)),)),
                     ("score_samples", (np.zeros((2, 2)),)), ("score", (np.zeros((2, 2)),)),
                     ("bic", (np.zeros((2, 2)),)), ("sample", (3,)), ("summary", ())],
)
def test_methods_need_a_fitted_estimator(method, args):
    with pytest.raises(NotFittedError, match="fit"):
        getattr(DistributedGaussianMixture(2), method)(*args)


def test_init_stores_hyper_parameters_untouched():
    rng = np.random.default_rng(0)
    est = DistributedGaussianMixture(0, n_machines=-3, backend="gpu", aggregator="mean", tol=-1.0, random_state=rng)
    assert (est.n_components, est.n_machines, est.backend, est.aggregator, est.tol) == (0, -3, "gpu", "mean", -1.0)
    assert est.random_state is rng


def test_get_params_set_params_round_trip():
    est = DistributedGaussianMixture(4, n_machines=7, aggregator="tkb", alpha=0.3)
    params = est.get_params()
    assert set(params) == {
        "n_components", "covariance_type", "n_machines", "aggregator", "threshold", "alpha", "backend", "client",
        "n_jobs", "n_init", "max_iter", "tol", "progress", "timeout", "total_timeout", "random_state",
        "criterion", "selection", "site_weights",
    }
    assert (params["n_components"], params["n_machines"], params["aggregator"], params["alpha"]) == (4, 7, "tkb", 0.3)
    other = DistributedGaussianMixture().set_params(**params)
    assert other.get_params() == params
    assert est.set_params(n_machines=3, threshold=2.0) is est
    assert est.get_params()["n_machines"] == 3 and est.get_params()["threshold"] == 2.0
    with pytest.raises(ValueError, match="Invalid parameter 'n_clusters'"):
        est.set_params(n_clusters=3)


def test_sklearn_clone_copies_the_hyper_parameters(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "mixture_")


def test_repr_shows_changed_parameters():
    assert repr(DistributedGaussianMixture()) == "DistributedGaussianMixture()"
    est = DistributedGaussianMixture(5, backend="serial")
    assert repr(est) == "DistributedGaussianMixture(backend='serial', n_components=5)"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"backend": "gpu"}, "backend must be one of"),
        ({"aggregator": "mean"}, "aggregator must be one of"),
        ({"n_machines": 0}, "n_machines must be a positive integer"),
        ({"n_machines": 2.5}, "n_machines must be a positive integer"),
        ({"n_components": 0}, "n_components must be a positive integer"),
        ({"threshold": 0.5}, "threshold"),
        ({"threshold": 2.0}, "applies to aggregator='dfmr' only, not 'robust_dfmr'"),
        ({"aggregator": "tkb", "threshold": 2.0}, "applies to aggregator='dfmr' only, not 'tkb'"),
        ({"alpha": 1.0}, "alpha"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"n_init": 0}, "n_init"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1e-3}, "tol"),
        ({"progress": "yes"}, "progress"),
        ({"timeout": 0}, "timeout must be None or a finite number of seconds > 0"),
        ({"total_timeout": float("nan")}, "total_timeout must be None or a finite number of seconds > 0"),
        ({"random_state": "seed"}, "random_state"),
        ({"random_state": -1}, "random_state"),
    ],
)
def test_invalid_hyper_parameters_raise_at_fit(params, message, small_data):
    est = DistributedGaussianMixture(5, n_machines=4, backend="serial").set_params(**params)
    with pytest.raises(ValueError, match=message):
        est.fit(small_data)
    with pytest.raises(ValueError, match=message):
        est.fit_partitions(split(small_data, 4, 0))


def test_more_machines_than_rows_raises(truth):
    X = truth.sample(30, 0)[0]
    with pytest.raises(ValueError, match="n_machines = 31 exceeds the number of rows"):
        DistributedGaussianMixture(2, n_machines=31, backend="serial").fit(X)


def test_fit_partitions_rejects_bad_machine_data(small_data):
    est = DistributedGaussianMixture(5, backend="serial", random_state=0)
    with pytest.raises(ValueError, match="empty"):
        est.fit_partitions([])
    with pytest.raises(ValueError, match="one array per machine"):
        est.fit_partitions(small_data)
    with pytest.raises(ValueError, match="differ in the number of columns"):
        est.fit_partitions([small_data[:4000], small_data[4000:, :9]])
    with pytest.raises(ValueError, match="machine 1 has 8 rows"):
        est.fit_partitions([small_data[:4000], small_data[4000:4008]])
    with pytest.raises(ValueError, match=r"parts\[0\] contains NaN"):
        est.fit_partitions([np.where(np.arange(10) == 3, np.nan, small_data[:4000]), small_data[4000:]])


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_a_failing_local_fit_names_its_machine(backend, small_data):
    bad = small_data[4000:].copy()
    bad[:, 2] = 1.0  # a constant column makes the machine's sample covariance singular
    est = DistributedGaussianMixture(5, backend=backend, n_jobs=2, random_state=0)
    with pytest.raises(ValueError, match="all 2 machines failed.*machine 1: ValueError: the sample covariance"):
        est.fit_partitions([bad, bad])
    est.fit_partitions([small_data[:4000], bad])
    assert list(est.failed_machines_) == [1] and "the sample covariance" in est.failed_machines_[1]
    assert est.n_machines_ == 1 and est.machine_indices_.tolist() == [0]


def test_predict_rejects_the_wrong_number_of_features(fitted):
    with pytest.raises(ValueError, match="X has 3 features"):
        fitted.predict(np.zeros((4, 3)))


def test_one_dimensional_data():
    truth = GaussianMixtureParams([0.4, 0.6], [[-3.0], [2.0]], [[[1.0]], [[0.5]]])
    X, y = truth.sample(6_000, np.random.default_rng(1))
    est = DistributedGaussianMixture(2, n_machines=4, backend="serial", random_state=0).fit(X)
    assert est.n_features_in_ == 1 and est.means_.shape == (2, 1)
    assert_recovers(est.mixture_, truth, len(X))
    np.testing.assert_array_equal(est.predict(X[:, 0]), est.predict(X))
    assert adjusted_rand_score(map_labels(truth, X), est.predict(X)) > 0.95


def test_fit_on_100000_rows_and_20_machines_completes(truth):
    X = truth.sample(100_000, np.random.default_rng(2))[0]
    est = DistributedGaussianMixture(5, n_machines=20, backend="processes", random_state=0).fit(X)
    assert est.n_machines_ == 20 and len(est.local_mixtures_) == 20
    assert_recovers(est.mixture_, truth, len(X))


# --------------------------------------------------------------------- scikit-learn compatibility


def test_passes_sklearn_check_estimator():
    check_estimator(
        DistributedGaussianMixture(n_components=2, n_machines=2, backend="serial"),
        expected_failed_checks={
            "check_fit1d": "a 1-D X is documented as one feature (d = 1), so fit accepts it instead of raising",
        },
        on_skip=None,
    )


def test_not_fitted_error_is_scikit_learns():
    assert NotFittedError is sklearn.exceptions.NotFittedError
    assert dfmr.NotFittedError is sklearn.exceptions.NotFittedError


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.ones((40, 2)) + 1j, ValueError, "Complex data not supported"),
        (sp.random(40, 2, density=1.0, format="csr", random_state=0), TypeError, "Sparse data"),
        (np.array([["a", "b"]] * 40, dtype=object), ValueError, "could not convert"),
    ],
)
def test_rejects_complex_sparse_and_string_data(bad, error, message):
    est = DistributedGaussianMixture(2, n_machines=2, backend="serial", random_state=0)
    with pytest.raises(error, match=message):
        est.fit(bad)
    with pytest.raises(error, match=message):
        est.fit_partitions([bad, bad])


def test_numeric_object_arrays_are_data(small_data):
    est = DistributedGaussianMixture(2, n_machines=2, backend="serial", random_state=0)
    as_objects = est.fit(small_data[:400].astype(object)).mixture_
    assert as_objects == est.fit(small_data[:400]).mixture_


def test_one_dimensional_x_for_a_multi_feature_fit_asks_to_reshape(fitted):
    with pytest.raises(ValueError, match="Reshape your data"):
        fitted.predict(np.zeros(10))


def test_dataframe_column_names_are_kept_and_checked(small_data):
    frame = pd.DataFrame(small_data[:2000], columns=[f"x{j}" for j in range(10)])
    est = DistributedGaussianMixture(2, n_machines=2, backend="serial", random_state=0).fit(frame)
    np.testing.assert_array_equal(est.feature_names_in_, frame.columns)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(est.predict(frame), est.predict(small_data[:2000]))
    with pytest.raises(ValueError, match="feature names"):
        est.predict(frame.rename(columns={"x0": "y0"}))
    assert not hasattr(est.fit(small_data[:2000]), "feature_names_in_")


def test_sample_falls_back_to_the_estimators_random_state(small_data):
    est = DistributedGaussianMixture(2, n_machines=2, backend="serial", random_state=4).fit(small_data[:2000])
    first, labels = est.sample(500)
    again, again_labels = est.sample(500)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(labels, again_labels)
    direct, _ = est.mixture_.sample(500, 4)
    np.testing.assert_array_equal(first, direct)
    other, _ = est.sample(500, random_state=5)
    assert not np.array_equal(other, first)


def test_records_iterations_and_convergence_of_every_machine(small_data):
    est = DistributedGaussianMixture(3, n_machines=4, backend="serial", random_state=8).fit(small_data)
    seeds = np.random.SeedSequence(8).spawn(4)
    parts = split(small_data, 4, np.random.default_rng(np.random.SeedSequence(8)))
    expected = [fit_local_detailed(p, 3, np.random.default_rng(s)) for p, s in zip(parts, seeds)]
    np.testing.assert_array_equal(est.n_iter_, [f.n_iter for f in expected])
    np.testing.assert_array_equal(est.converged_, [f.converged for f in expected])
    assert est.converged_.dtype == bool and est.n_iter_.shape == (4,)


def test_local_em_that_does_not_converge_warns_naming_the_machine(small_data):
    est = DistributedGaussianMixture(5, n_machines=3, backend="serial", max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning) as record:
        est.fit(small_data)
    assert not est.converged_.any() and np.all(est.n_iter_ == 2)
    messages = [str(w.message) for w in record if issubclass(w.category, ConvergenceWarning)]
    assert [m.split(":")[0] for m in messages] == ["machine 0", "machine 1", "machine 2"]
    assert all("did not converge within max_iter = 2" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        quiet = DistributedGaussianMixture(5, n_machines=3, backend="serial", random_state=0).fit(small_data)
    assert quiet.converged_.all()


def test_fit_partitions_does_not_copy_float64_parts(small_data, monkeypatch):
    seen = []
    real = estimator._fit_machine

    def spy(X, *args):
        seen.append(X)
        return real(X, *args)

    monkeypatch.setattr(estimator, "_fit_machine", spy)
    parts = split(small_data, 2, 0)
    DistributedGaussianMixture(2, backend="serial", random_state=0).fit_partitions(parts)
    assert all(a is b for a, b in zip(seen, parts))


# ----------------------------------------------------------------------------- thread safety


def _blas_threads() -> list[int]:
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_overlapping_blas_limits_restore_the_original_when_the_last_ends():
    # threadpoolctl alone restores, at each exit, what that context saw on entry: A enters (2 -> 1),
    # B enters (saves 1), A exits (-> 2), B exits (-> 1): BLAS stayed at one thread for good.
    # (OpenBLAS as in the numpy/scipy wheels: one process-wide setting.)
    with threadpool_limits(limits=2, user_api="blas"):
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def first():
            with single_threaded_blas():
                a_in.set()
                b_in.wait()
            a_out.set()

        def second():
            a_in.wait()
            with single_threaded_blas():
                b_in.set()
                a_out.wait()
                seen["after the first ended"] = _blas_threads()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen["after the first ended"] and all(n == 1 for n in seen["after the first ended"])
        assert _blas_threads() and all(n == 2 for n in _blas_threads())


@pytest.mark.parametrize("backend", ["serial", "threads"])
def test_concurrent_fits_in_threads_match_a_lone_fit_and_restore_blas(backend, small_data):
    def fit(seed):
        est = DistributedGaussianMixture(3, n_machines=3, backend=backend, n_jobs=2, random_state=seed)
        return est.fit(small_data[:3000]).mixture_

    before = _blas_threads()
    alone = {seed: fit(seed) for seed in (0, 1)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(fit, [0, 1, 0, 1]))
    assert _blas_threads() == before
    for seed, mixture in zip([0, 1, 0, 1], together):
        assert mixture == alone[seed]
