"""Covariance models (dfmr.covariance) and local EM of each, against R's mclust (run for real through rpy2)
and scikit-learn's GaussianMixture."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import rpy2.robjects as ro
from scipy import optimize
from scipy.stats import special_ortho_group
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky, _estimate_gaussian_parameters

import dfmr.local as local
from dfmr.covariance import MODEL_NAMES, SKLEARN_TYPES, get_model, sklearn_layout
from dfmr.params import GaussianMixtureParams
from dfmr.r._rpy2 import plain_to_r, r_to_plain

ro.r("suppressPackageStartupMessages(library(mclust))")
UNIVARIATE = ("E", "V")


def model_population(name: str) -> GaussianMixtureParams:
    """Two components in d = 3 (d = 1 for E, V: 8 units apart) whose covariances belong to ``name``, 10 units apart.

    Volumes 1 and 2.2 (V) or 1 (E); shapes (2.5, 1, 0.4) and (0.6, 2, 0.83), scaled to determinant 1
    (V), the first (E) or none (I); orientations two fixed rotations (V), the first (E) or none (I).
    """
    if name in UNIVARIATE:
        variances = [1.0, 2.2] if name == "V" else [1.0, 1.0]
        return GaussianMixtureParams([0.55, 0.45], [[0.0], [8.0]], np.reshape(variances, (2, 1, 1)))
    volume = [1.0, 2.2] if name[0] == "V" else [1.0, 1.0]
    shapes = np.array([[2.5, 1.0, 0.4], [0.6, 2.0, 0.83]])
    shapes = shapes if name[1] == "V" else (shapes[[0, 0]] if name[1] == "E" else np.ones((2, 3)))
    shapes /= np.cbrt(shapes.prod(axis=1, keepdims=True))
    rotations = special_ortho_group.rvs(3, size=2, random_state=5)
    rotations = rotations if name[2] == "V" else (rotations[[0, 0]] if name[2] == "E" else np.stack([np.eye(3)] * 2))
    covariances = np.einsum("kij,kj,klj->kil", rotations, np.multiply(volume, shapes.T).T, rotations)
    return GaussianMixtureParams([0.55, 0.45], [[0.0, 0.0, 0.0], [7.0, -4.0, 5.0]], covariances)


def model_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """240 points of :func:`model_population` and a starting classification: the true labels, 15% flipped."""
    X, labels = model_population(name).sample(240, np.random.default_rng(7))
    flip = np.random.default_rng(8).random(240) < 0.15
    return X, np.where(flip, 1 - labels, labels)


def em_from_classification(
    X: np.ndarray, labels: np.ndarray, covariance_type: str, tol: float = 1e-13, max_iter: int = 5000
) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray]:
    """Plain-likelihood EM (penalty 0) with dfmr.local's M- and E-steps, M-step first from the one-hot
    classification (as mclust's ``me``), until the log-likelihood changes by <= ``tol`` relative.
    Returns the log-likelihood trace (one per E-step) and the weights, means and covariances."""
    resp = np.eye(labels.max() + 1)[labels]
    S_x, covariances, trace = local.sample_covariance(X), None, []
    for _ in range(max_iter):
        weights, means, covariances = local.m_step(X, resp, S_x, 0.0, covariance_type, covariances)
        loglik, resp = local.e_step(X, weights, means, local.precision_cholesky(covariances))
        trace.append(loglik)
        if len(trace) > 1 and abs(trace[-1] - trace[-2]) <= tol * abs(loglik):
            break
    return trace, weights, means, covariances


@functools.cache
def mclust_me(name: str) -> dict:
    """R's ``me(data, modelName, z = unmap(cl), prior = NULL, control = emControl(tol = 1e-10))`` on
    :func:`model_data` (cl 1-based), as plain data: loglik, pro, mean (d x G), variance."""
    X, labels = model_data(name)
    ro.globalenv["x"] = plain_to_r(X if name not in UNIVARIATE else X[:, 0])
    ro.globalenv["cl"] = plain_to_r(labels + 1)
    fit = ro.r(f'f <- me(data = x, modelName = "{name}", z = unmap(cl), prior = NULL, '
               'control = emControl(tol = 1e-10)); list(loglik = f$loglik, parameters = f$parameters)')
    return r_to_plain(fit)


def mclust_covariances(variance: dict) -> np.ndarray:
    if "sigma" in variance:
        return np.moveaxis(np.asarray(variance["sigma"]), 2, 0)
    return np.broadcast_to(np.atleast_1d(variance["sigmasq"]), (2,)).reshape(2, 1, 1)


@pytest.mark.parametrize("name", [m for m in MODEL_NAMES + UNIVARIATE if m != "VVE"])
def test_em_of_every_model_matches_mclust_me(name: str) -> None:
    # The same start (one M-step from the classification), the plain likelihood, both to a tight tolerance:
    # the same maximum, log-likelihood to 1e-6 relative and parameters to 1e-5 (mclust stops at a relative
    # change of 1e-10, ours at 1e-13; the data belong to the model, so EM converges fast).
    X, labels = model_data(name)
    trace, weights, means, covariances = em_from_classification(X, labels, name)
    ref = mclust_me(name)
    assert abs(trace[-1] - ref["loglik"]) <= 1e-6 * abs(ref["loglik"])
    params = ref["parameters"]
    np.testing.assert_allclose(weights, params["pro"], atol=1e-5)
    np.testing.assert_allclose(means, np.reshape(params["mean"], (X.shape[1], 2), order="F").T, atol=1e-5)
    np.testing.assert_allclose(covariances, mclust_covariances(params["variance"]), atol=1e-5)
    assert get_model(name, X.shape[1]).contains(covariances)


def test_vve_em_goes_beyond_mclusts_fixed_point() -> None:
    # mclust 6.0.0's VVE M-step (Fortran mevve) updates the common orientation D by minimising
    # sum_k tr(W_k D A_k^-1 D^T) with the shapes A_k (det 1) alone, leaving out the volumes: the objective is
    # sum_k tr(W_k D A_k^-1 D^T) / lambda_k. With unequal volumes its fixed point is no maximum of the
    # likelihood: from it one EM iteration of ours (the volumes kept in) gains, and our EM from the same start
    # ends 0.12 higher, at covariances of the model. (Leaving the volumes out of our orientation step
    # reproduces mclust's value to 1e-10; test_iterative_m_steps_are_the_constrained_optimum checks ours
    # against a direct numerical minimisation.)
    X, labels = model_data("VVE")
    ref = mclust_me("VVE")
    trace, _, _, covariances = em_from_classification(X, labels, "VVE")
    assert trace[-1] > ref["loglik"] + 0.05
    assert get_model("VVE", 3).contains(covariances)
    params = ref["parameters"]
    weights, means = np.atleast_1d(params["pro"]), np.asarray(params["mean"]).T
    at_mclust, resp = local.e_step(X, weights, means, local.precision_cholesky(mclust_covariances(params["variance"])))
    step = local.m_step(X, resp, local.sample_covariance(X), 0.0, "VVE", mclust_covariances(params["variance"]))
    assert local.e_step(X, step[0], step[1], local.precision_cholesky(step[2]))[0] > at_mclust + 0.05


def m_step_objective(covariances: np.ndarray, W: np.ndarray, n: np.ndarray) -> float:
    """sum_k [n_k log det Sigma_k + tr(W_k Sigma_k^-1)] (inf outside the positive-definite cone)."""
    sign, logdet = np.linalg.slogdet(covariances)
    if np.any(sign <= 0):
        return np.inf
    return float(n @ logdet + np.trace(np.linalg.solve(covariances, W), axis1=1, axis2=2).sum())


def model_member(name: str, theta: np.ndarray, K: int, d: int) -> np.ndarray:
    """Covariances of the model from free parameters: log volumes (1 or K), log shapes (d each, centred to
    det 1; none, 1 or K sets) and skew-symmetric S for the orientations (none, 1 or K; Cayley's rotation
    (I - S)^-1 (I + S))."""
    count = {"E": 1, "V": K, "I": 0}
    sizes = [count[name[0]], count[name[1]] * d, count[name[2]] * d * (d - 1) // 2]
    log_volume, log_shape, angles = np.split(theta, np.cumsum(sizes)[:2])
    volume = np.broadcast_to(np.exp(log_volume), (K,))
    shape = np.ones((K, d)) if name[1] == "I" else np.broadcast_to(log_shape.reshape(-1, d), (K, d))
    shape = np.exp(shape - shape.mean(axis=1, keepdims=True))
    rotations = np.stack([np.eye(d)] * K)
    if name[2] != "I":
        upper = np.triu_indices(d, 1)
        for k, generator in enumerate(angles.reshape(-1, len(upper[0]))):
            skew = np.zeros((d, d))
            skew[upper] = generator
            skew -= skew.T
            rotations[k:] = np.linalg.solve(np.eye(d) - skew, np.eye(d) + skew)  # one S (E) sets all K
    return np.einsum("kij,kj,klj->kil", rotations, volume[:, None] * shape, rotations)


@pytest.mark.parametrize("name", ["VEI", "VEE", "EVE", "VVE", "VEV"])
def test_iterative_m_steps_are_the_constrained_optimum(name: str) -> None:
    # Independent of mclust (whose VVE differs): the M-step objective minimised numerically over the model's
    # own parametrisation (BFGS from the identity, all parameters 0, and from a random point) is never below
    # the M-step's value (beyond 1e-9 relative), and the M-step's covariances are in the model.
    rng = np.random.default_rng(11)
    K, d = 2, 3
    A = rng.standard_normal((K, d, 8)) * rng.uniform(0.5, 2.0, size=(K, d, 1))
    W, n = np.einsum("kij,klj->kil", A, A), np.array([6.0, 14.0])
    model = get_model(name, d)
    ours = model.m_step(W, n)
    assert model.contains(ours)
    best = m_step_objective(ours, W, n)
    count = {"E": 1, "V": K, "I": 0}
    p = count[name[0]] + count[name[1]] * d + count[name[2]] * d * (d - 1) // 2
    for start in (np.zeros(p), rng.standard_normal(p)):
        found = optimize.minimize(lambda t: m_step_objective(model_member(name, t, K, d), W, n), start,
                                  method="BFGS", options={"gtol": 1e-8})
        assert found.fun >= best - 1e-9 * abs(best)
        assert found.fun <= best + 1e-5 * abs(best)  # the search works: it gets there


@pytest.mark.parametrize("name", ["VEI", "VEE", "EVE", "VVE", "VEV"])
def test_iterative_m_steps_keep_em_monotone(name: str) -> None:
    # They start from the covariances before and lower the M-step objective at every inner step, so EM
    # never lowers the likelihood (checked on a start far from the maximum: the classification is random).
    X, _ = model_data(name)
    labels = np.random.default_rng(3).integers(0, 2, size=X.shape[0])
    trace, *_ = em_from_classification(X, labels, name, max_iter=60)
    assert np.all(np.diff(trace) >= -1e-10 * abs(trace[-1]))
    assert trace[-1] - trace[0] > 10.0


@pytest.mark.parametrize("name", MODEL_NAMES + UNIVARIATE)
def test_mclust_layout_of_every_model_is_mclusts(name: str) -> None:
    # to_mclust on mclust's own fitted covariances: the same fields as mclust's variance list; the fields
    # that are unique (volumes, Sigma) equal mclust's, our Cholesky factors are upper triangular with a
    # positive diagonal and R^T R equals mclust's (whose rows may have either sign), and R's decomp2sigma
    # rebuilds sigma from our scale, shape and orientation (unique only up to order and sign). from_mclust
    # reads mclust's list back.
    params = mclust_me(name)["parameters"]
    theirs = params["variance"]
    model = get_model(name, int(theirs["d"]))
    covariances = mclust_covariances(theirs)
    ours = model.to_mclust(covariances)
    assert set(ours) == set(theirs)
    for field in ("sigma", "sigmasq", "scale", "Sigma"):
        if field in theirs:
            np.testing.assert_allclose(ours[field], theirs[field], rtol=1e-8, atol=1e-12)
    for field in ("cholSigma", "cholsigma"):
        if field in theirs:
            factors = np.reshape(ours[field], (3, 3, -1))
            assert np.all(np.tril(np.moveaxis(factors, 2, 0), -1) == 0) and np.all(np.diagonal(factors) > 0)
            np.testing.assert_allclose(np.einsum("jik,jlk->ilk", factors, factors),
                                       np.einsum("jik,jlk->ilk", *[np.reshape(theirs[field], (3, 3, -1))] * 2),
                                       rtol=1e-8, atol=1e-12)
    if "shape" in ours:
        ro.globalenv["v"] = plain_to_r({k: ours.get(k) for k in ("d", "G", "scale", "shape", "orientation")})
        rebuilt = r_to_plain(ro.r("decomp2sigma(v$d, v$G, v$scale, v$shape, v$orientation)"))
        np.testing.assert_allclose(rebuilt, theirs["sigma"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.from_mclust(theirs), covariances, rtol=1e-12)


def test_free_parameters_are_mclusts_nMclustParams() -> None:
    table = r_to_plain(ro.r("""
        models <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
        rbind(do.call(rbind, lapply(models, function(m) outer(2:10, 1:9, Vectorize(function(d, G)
                  nMclustParams(m, d, G))))),
              do.call(rbind, lapply(c("E", "V"), function(m) outer(1, 1:9, Vectorize(function(d, G)
                  nMclustParams(m, d, G))))))
    """))
    ours = [[get_model(m, d).n_parameters(G, d) for G in range(1, 10)] for m in MODEL_NAMES for d in range(2, 11)]
    ours += [[get_model(m, 1).n_parameters(G, 1) for G in range(1, 10)] for m in UNIVARIATE]
    np.testing.assert_array_equal(ours, table)
    # In one dimension every mclust model is E or V by its volume letter, with that model's count.
    for m in MODEL_NAMES:
        assert [get_model(m, 1).n_parameters(G, 1) for G in range(1, 10)] == list(table[-2 if m[0] == "E" else -1])


@pytest.mark.parametrize("covariance_type", list(SKLEARN_TYPES))
def test_sklearn_types_match_gaussian_mixture_from_the_same_responsibilities(covariance_type: str) -> None:
    # scikit-learn starts from its own M-step on the same responsibilities (reg_covar = 0), then runs its EM
    # to a per-point change of 1e-10; ours runs EM from the same responsibilities with penalty 0.
    X, labels = model_data("VVV")
    resp = np.eye(2)[labels]
    weights0, means0, cov0 = _estimate_gaussian_parameters(X, resp, 0.0, covariance_type)
    prec_chol = _compute_precision_cholesky(cov0, covariance_type)
    precisions = {"full": lambda u: u @ np.swapaxes(u, 1, 2), "tied": lambda u: u @ u.T}.get(
        covariance_type, lambda u: u**2)(prec_chol)
    gm = GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0, tol=1e-10, max_iter=10_000,
                         weights_init=weights0 / X.shape[0], means_init=means0, precisions_init=precisions).fit(X)
    trace, weights, means, covariances = em_from_classification(X, labels, covariance_type)
    model = get_model(covariance_type, 3)
    assert abs(trace[-1] - gm.score(X) * X.shape[0]) <= 1e-6 * abs(trace[-1])
    np.testing.assert_allclose(weights, gm.weights_, atol=1e-5)
    np.testing.assert_allclose(means, gm.means_, atol=1e-5)
    np.testing.assert_allclose(model.to_sklearn(covariances, sklearn_layout(covariance_type)), gm.covariances_,
                               atol=1e-5)
    assert model.n_parameters(2, 3) == gm._n_parameters()


@pytest.mark.parametrize("name", MODEL_NAMES + UNIVARIATE)
def test_fit_local_without_penalty_reaches_mclusts_maximum(name: str) -> None:
    # fit_local's own starts (k-means++), to a tight tolerance, on data of the model: mclust's maximum (for
    # VVE, where mclust stops short of it (test_vve_em_goes_beyond_mclusts_fixed_point), that of our EM from
    # mclust's start).
    X, labels = model_data(name)
    X = X if name not in UNIVARIATE else X[:, 0]
    fit = local.fit_local_detailed(X, 2, random_state=0, n_init=2, tol=1e-9, covariance_type=name, penalty=0.0)
    reference = mclust_me(name)["loglik"] if name != "VVE" else em_from_classification(X, labels, name)[0][-1]
    assert fit.covariance_type == name and fit.penalized_loglik == fit.loglik
    assert abs(fit.loglik - reference) <= 1e-6 * abs(reference)
    assert get_model(name, fit.mixture.dim).contains(fit.mixture.covariances)


@pytest.mark.parametrize("name", ["EII", "EVI", "VEE", "EVE", "VEV", "EVV"])
def test_penalized_fit_belongs_to_the_model_and_is_at_least_its_members(name: str) -> None:
    # The penalty enters as augmented scatters, so the fit stays in the model; its penalised log-likelihood
    # is at least that of the true population (a member of the model), and above the plain-MLE fit's
    # covariances scored with the penalty.
    X, _ = model_data(name)
    fit = local.fit_local_detailed(X, 2, random_state=1, n_init=2, tol=1e-8, covariance_type=name)
    truth = model_population(name)
    S_x, a_n = local.sample_covariance(X), X.shape[0] ** -0.5
    assert get_model(name, 3).contains(fit.mixture.covariances)
    assert fit.penalized_loglik >= local.penalized_loglik(X, truth.weights, truth.means, truth.covariances, S_x, a_n)
    plain = local.fit_local(X, 2, random_state=1, n_init=2, tol=1e-8, covariance_type=name, penalty=0.0)
    value = local.penalized_loglik(X, plain.weights, plain.means, plain.covariances, S_x, a_n)
    assert fit.penalized_loglik >= value - 1e-6


def test_without_penalty_collapsing_starts_give_a_clear_error() -> None:
    # Four distinct points, repeated: with four components every start puts each on one point (zero scatter).
    X = np.repeat([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], 10, axis=0)
    with pytest.raises(ValueError, match="collapsed a component.*penalty > 0"):
        local.fit_local(X, 4, random_state=0, penalty=0.0)
    fit = local.fit_local(X, 4, random_state=0)  # the default penalty keeps every covariance positive definite
    assert np.all(np.linalg.eigvalsh(fit.covariances) > 0)


@pytest.mark.parametrize(
    ("name", "dim", "expected"),
    [("full", 3, "VVV"), ("tied", 3, "EEE"), ("diag", 3, "VVI"), ("spherical", 3, "VII"), ("EVE", 2, "EVE"),
     ("full", 1, "V"), ("diag", 1, "V"), ("spherical", 1, "V"), ("tied", 1, "E"), ("EEV", 1, "E"), ("VII", 1, "V"),
     ("E", 1, "E")],
)
def test_names_resolve_to_models(name: str, dim: int, expected: str) -> None:
    assert get_model(name, dim).name == expected


@pytest.mark.parametrize(("name", "dim", "message"), [("E", 2, "one-dimensional"), ("XXX", 2, "covariance_type"),
                                                      ("vvv", 3, "covariance_type"), (3, 3, "covariance_type")])
def test_unknown_or_misplaced_names_are_rejected(name, dim: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_model(name, dim)


def test_sklearn_layouts_round_trip_and_refuse_what_they_cannot_hold() -> None:
    rng = np.random.default_rng(0)
    for name, layout, shape in [("VVV", "full", (3, 4, 4)), ("EEE", "tied", (4, 4)), ("VVI", "diag", (3, 4)),
                                ("VII", "spherical", (3,)), ("VEV", "full", (3, 4, 4))]:
        model = get_model(name, 4)
        W = np.einsum("kij,klj->kil", A := rng.standard_normal((3, 4, 6)), A)
        covariances = model.m_step(W, np.full(3, 6.0))
        assert sklearn_layout(name) == layout
        packed = model.to_sklearn(covariances)
        assert packed.shape == shape
        np.testing.assert_allclose(model.from_sklearn(packed, 3, 4), covariances, rtol=1e-12)
    with pytest.raises(ValueError, match="cannot be held"):
        get_model("VVV", 4).to_sklearn(covariances, "diag")
    assert not get_model("VVI", 4).contains(covariances) and get_model("VEV", 4).contains(covariances)
