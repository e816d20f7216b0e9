"""Mixture reduction under a covariance model (issue 21): the compiled core's constrained MM update.

The transport cost of a result is computed here with the plain-NumPy KL of tests/reference.py; the
update is checked to be the minimiser of that cost over the model (against feasible perturbations in
the model's own parametrisation for every model, and against scipy.optimize for four models).
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from conftest import noisy_copies, random_mixture
from scipy import optimize

import dfmr
from dfmr import GaussianMixtureParams
from dfmr.covariance import MODEL_NAMES, get_model
from dfmr.reduction import pool, reduce, reduce_mixtures


def _estimates(seed: int = 0, m: int = 6, k: int = 3, d: int = 3) -> list[GaussianMixtureParams]:
    rng = np.random.default_rng(seed)
    return noisy_copies(rng, random_mixture(rng, k, d, spread=4.0), m, noise=0.25)


def _transport_cost(pooled: GaussianMixtureParams, plan: np.ndarray, means: np.ndarray, covs: np.ndarray) -> float:
    G = GaussianMixtureParams(np.full(len(means), 1.0 / len(means)), means, covs)
    return float(np.sum(plan * ref.kl_cost_matrix(pooled, G)))


def _perturbations(name: str, covs: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Members of the model near ``covs``: volumes (together; each for V), a common rotation (E
    orientation), one rotation per component (V orientation), a diagonal shape of determinant 1
    (I orientation; together for an E shape, each for a V shape)."""
    K, d = covs.shape[0], covs.shape[1]
    out = []
    for c in (0.97, 1.03):
        out.append(covs * c)
        if name[0] == "V":
            for k in range(K):
                one = covs.copy()
                one[k] *= c
                out.append(one)
    if len(name) == 1:
        return out
    for _ in range(2):
        if name[2] == "E":
            R = _small_rotation(rng, d)
            out.append(np.einsum("ij,kjl,ml->kim", R, covs, R))
        if name[2] == "V":
            for k in range(K):
                R = _small_rotation(rng, d)
                one = covs.copy()
                one[k] = R @ covs[k] @ R.T
                out.append(one)
        if name[2] == "I" and name[1] != "I":
            t = 0.03 * rng.standard_normal((K if name[1] == "V" else 1, d))
            t -= t.mean(axis=1, keepdims=True)
            out.append(np.exp(t)[:, :, None] * covs)
    return out


def _small_rotation(rng: np.random.Generator, d: int, angle: float = 0.03) -> np.ndarray:
    A = angle * rng.standard_normal((d, d))
    skew = (A - A.T) / 2
    return np.linalg.solve(np.eye(d) - skew, np.eye(d) + skew)  # Cayley transform


@pytest.mark.parametrize("name", MODEL_NAMES + ("E", "V"))
def test_update_minimises_the_transport_cost_over_the_model(name: str) -> None:
    d = 1 if name in ("E", "V") else 3
    fs = _estimates(1, d=d)
    res = reduce_mixtures(fs, 3, covariance_type=name, tol=1e-10, max_iter=500)
    model = get_model(name, d)
    out = res.mixture
    assert out.covariance_type == model.name and model.contains(out.covariances)
    pooled = pool(fs)
    plan = res.assignment
    # The means of the reduced components are the plan's weighted means.
    np.testing.assert_allclose(out.means, (plan.T @ pooled.means) / plan.sum(axis=0)[:, None], rtol=1e-9, atol=1e-9)
    best = _transport_cost(pooled, plan, out.means, out.covariances)
    rng = np.random.default_rng(2)
    for covs in _perturbations(name, out.covariances, rng):
        assert model.contains(covs, rtol=1e-7)
        assert best <= _transport_cost(pooled, plan, out.means, covs) + 1e-10 * abs(best), name
    # The objective never rises from the first update on (trace[0] is the start's, taken as given: no
    # member of the model).
    trace = res.objective_trace[1:]
    assert np.all(np.diff(trace) <= 1e-12 * np.abs(trace[:-1]))


def _scipy_optimum(name: str, pooled: GaussianMixtureParams, plan: np.ndarray, means: np.ndarray) -> float:
    """The smallest transport cost over the model's covariances, by BFGS over its free parameters."""
    K, d = means.shape
    tri = np.tril_indices(d)

    def covs_of(theta: np.ndarray) -> np.ndarray:
        if name == "EII":
            return np.exp(theta[0]) * np.broadcast_to(np.eye(d), (K, d, d))
        if name == "VII":
            return np.exp(theta)[:, None, None] * np.eye(d)
        if name == "VVI":
            return np.exp(theta.reshape(K, d))[:, :, None] * np.eye(d)
        L = np.zeros((d, d))
        L[tri] = theta
        L[np.diag_indices(d)] = np.exp(np.diag(L))
        return np.broadcast_to(L @ L.T, (K, d, d))

    size = {"EII": 1, "VII": K, "VVI": K * d, "EEE": len(tri[0])}[name]
    fit = optimize.minimize(lambda t: _transport_cost(pooled, plan, means, covs_of(t)), np.zeros(size),
                            method="BFGS", options={"gtol": 1e-10})
    return float(fit.fun)


@pytest.mark.parametrize("name", ["EII", "VII", "VVI", "EEE"])
def test_closed_form_update_is_scipys_optimum(name: str) -> None:
    fs = _estimates(3)
    res = reduce_mixtures(fs, 3, covariance_type=name, tol=1e-10)
    pooled = pool(fs)
    best = _transport_cost(pooled, res.assignment, res.mixture.means, res.mixture.covariances)
    assert best == pytest.approx(_scipy_optimum(name, pooled, res.assignment, res.mixture.means), rel=1e-7)


def test_full_model_is_exactly_the_unconstrained_reduction() -> None:
    fs = _estimates(4)
    plain = dfmr.mr(fs, 3)
    for name in ("full", "VVV"):
        other = dfmr.mr(fs, 3, covariance_type=name)
        np.testing.assert_array_equal(other.mixture.covariances, plain.mixture.covariances)
        np.testing.assert_array_equal(other.mixture.means, plain.mixture.means)
        assert other.objective == plain.objective


def _rotated(angle: float, a: float, b: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s], [s, c]])
    return R @ np.diag([a, b]) @ R.T


def test_first_update_is_not_compared_with_a_start_outside_the_model() -> None:
    """The start is taken as given (here the full reduction, no VII member), so its objective is lower
    than the first VII update's; the run must not stop there: from the first update on it descends."""
    rng = np.random.default_rng(1)  # a pool found by a search over random d = 2 pools
    w = np.round(rng.dirichlet(np.ones(5)), 2)
    w /= w.sum()
    mu = np.round(rng.normal(0, 3, (5, 2)), 1)
    covs = np.array([_rotated(*np.round([rng.uniform(0, np.pi), np.exp(rng.normal(1, 1.5)),
                                         np.exp(rng.normal(-1, 1))], 2)) for _ in range(5)])
    pooled = GaussianMixtureParams(w, mu, covs)
    start = reduce(pooled, 2, [GaussianMixtureParams(np.full(2, 0.5), mu[:2], covs[:2])], n_threads=1).mixture
    res = reduce(pooled, 2, [start], covariance_type="VII", n_threads=1)
    trace = res.objective_trace
    assert trace[1] > trace[0]  # the case: the start is no member and costs less
    assert res.n_iter >= 3 and trace[2] < trace[1] * (1 - 1e-3)
    assert np.all(np.diff(trace[1:]) <= 0.0)
    assert get_model("VII", 2).contains(res.mixture.covariances)


def test_constrained_reduction_needs_an_update() -> None:
    """With max_iter = 0 a constrained reduction would return its start as given, outside the model."""
    fs = _estimates(6)
    with pytest.raises(ValueError, match="max_iter must be >= 1 under covariance model EEE"):
        reduce_mixtures(fs, 3, covariance_type="EEE", max_iter=0)
    assert reduce_mixtures(fs, 3, covariance_type="VVV", max_iter=0).n_iter == 0


@pytest.mark.parametrize("name", ["EEE", "EVI", "EEV", "VEE"])
def test_shared_trajectories_leave_constrained_results_unchanged(name: str) -> None:
    fs = _estimates(5, m=10)
    pooled, starts = pool(fs), fs
    a = reduce(pooled, 3, starts, covariance_type=name)
    b = reduce(pooled, 3, starts, covariance_type=name, share_trajectories=False)
    np.testing.assert_array_equal(a.start_objectives, b.start_objectives)
    np.testing.assert_array_equal(a.mixture.covariances, b.mixture.covariances)
    assert a.objective == b.objective


@pytest.mark.filterwarnings("ignore:the reduced mixture has")  # TKB may trim a whole component away
def test_aggregators_take_the_model_and_sklearn_names() -> None:
    fs = _estimates(6)
    for call in (lambda t: dfmr.mr(fs, 3, covariance_type=t), lambda t: dfmr.dfmr(fs, 3, covariance_type=t),
                 lambda t: dfmr.tkb(fs, 3, alpha=0.1, covariance_type=t)):
        assert call("diag").mixture.covariance_type == "VVI"
        assert call("spherical").mixture.covariance_type == "VII"
        assert call("tied").mixture.covariance_type == "EEE"
        np.testing.assert_array_equal(call("tied").mixture.covariances, call("EEE").mixture.covariances)
    one_d = [GaussianMixtureParams(f.weights, f.means[:, :1], f.covariances[:, :1, :1]) for f in fs]
    tied = dfmr.mr(one_d, 3, covariance_type="tied").mixture
    assert tied.covariance_type == "E" and np.ptp(tied.covariances) == 0
    assert dfmr.mr(one_d, 3, covariance_type="diag").mixture.covariance_type == "V"
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        dfmr.mr(fs, 3, covariance_type="banana")
    with pytest.raises(ValueError, match="one-dimensional"):
        dfmr.mr(fs, 3, covariance_type="E")
