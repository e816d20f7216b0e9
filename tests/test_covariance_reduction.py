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
    # The objective never rises along the MM iterations.
    trace = res.objective_trace
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
