"""The parameter vector of a Gaussian mixture, its scores and information, and component alignment.

The free parameter vector of a K-component mixture in d dimensions is

    theta = (w_1, ..., w_{K-1},  mu_1, ..., mu_K,  vech(Sigma_1), ..., vech(Sigma_K)),

``p = (K - 1) + K d + K d (d + 1) / 2`` entries: the last weight is ``w_K = 1 - sum_{k<K} w_k``;
each mean contributes its d coordinates; each covariance its upper triangle ``Sigma[i, j]``,
``i <= j``, row by row (the symmetric parametrisation: one parameter per distinct entry, so a
change of ``Sigma[i, j]`` is a change of ``Sigma[j, i]`` too). Names are 1-based, as in
statistical reports: ``w1``, ``mu[2][1]`` (component 2, coordinate 1), ``Sigma[2][1,3]``.

Everything here is per observation and additive over observations, so a machine can compute
its own ``p x p`` matrix and its ``n`` where its data are, and a server can add them up:

- :func:`scores`: the gradient of ``log f(x_i)`` for every row (analytic, vectorised, row-blocked);
- :func:`information`: the outer product of scores (OPG) or the observed information
  ``-sum_i Hessian log f(x_i)`` (Louis' identity, analytic) of a data set;
- :func:`machine_information`: the same as a picklable ``(X, mixture) -> (matrix, n)`` task;
- :func:`expected_information`: the per-observation Fisher information of a mixture without
  data, by seeded Monte Carlo from the mixture itself;
- :func:`align`: which local component matches which component of a reference mixture, from the
  reduction's transport plan when available, else by a minimum-KL-cost assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

from ._validation import check_int
from .covariance import get_model
from .params import GaussianMixtureParams

if TYPE_CHECKING:
    from .aggregate import AggregationResult

__all__ = [
    "n_params", "param_names", "full_param_names", "to_vector", "to_full_vector", "from_vector", "full_jacobian",
    "model_jacobian", "model_param_names", "per_component_covariance",
    "scores", "information", "machine_information", "expected_information",
    "align", "align_to", "plan_rows",
]

INFORMATION_KINDS = ("observed", "opg")
_BLOCK_ROWS = 4096


# ------------------------------------------------------------------------------ parameter vector


def n_params(n_components: int, dim: int) -> int:
    """Number of free parameters ``p = (K - 1) + K d + K d (d + 1) / 2``.

    Parameters
    ----------
    n_components : int
        K.
    dim : int
        d.

    Returns
    -------
    int
    """
    k, d = int(n_components), int(dim)
    return (k - 1) + k * d + k * d * (d + 1) // 2


def _triu(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major upper-triangle indices ``(i, j)``, ``i <= j``: the order of ``vech``."""
    return np.triu_indices(d)


def _duplication(d: int) -> np.ndarray:
    """The ``d^2 x q`` duplication matrix: ``vec(Sigma) = D @ vech(Sigma)`` (row-major vec)."""
    rows, cols = _triu(d)
    q = rows.size
    dup = np.zeros((d * d, q))
    dup[rows * d + cols, np.arange(q)] = 1.0
    dup[cols * d + rows, np.arange(q)] = 1.0
    return dup


def _names(n_components: int, dim: int, all_weights: bool) -> list[str]:
    rows, cols = _triu(dim)
    k_w = n_components if all_weights else n_components - 1
    names = [f"w{k + 1}" for k in range(k_w)]
    names += [f"mu[{k + 1}][{j + 1}]" for k in range(n_components) for j in range(dim)]
    names += [f"Sigma[{k + 1}][{i + 1},{j + 1}]" for k in range(n_components) for i, j in zip(rows, cols)]
    return names


def param_names(n_components: int, dim: int) -> list[str]:
    """Names of the free parameters, in the order of :func:`to_vector` (length ``p``).

    Parameters
    ----------
    n_components : int
        K.
    dim : int
        d.

    Returns
    -------
    list of str
        ``w1 .. w{K-1}``, then ``mu[k][j]``, then ``Sigma[k][i,j]`` with ``i <= j`` (1-based).
    """
    return _names(int(n_components), int(dim), all_weights=False)


def full_param_names(n_components: int, dim: int) -> list[str]:
    """Names of the reported parameters: as :func:`param_names` but with all K weights (length ``p + 1``)."""
    return _names(int(n_components), int(dim), all_weights=True)


def to_vector(mixture: GaussianMixtureParams) -> np.ndarray:
    """The free parameter vector ``theta`` of a mixture (length ``p``): :func:`to_full_vector` without ``w_K``.

    Parameters
    ----------
    mixture : GaussianMixtureParams

    Returns
    -------
    ndarray of shape (p,)
    """
    return np.delete(to_full_vector(mixture), mixture.n_components - 1)


def to_full_vector(mixture: GaussianMixtureParams) -> np.ndarray:
    """The reported parameter vector: all K weights, means, covariance upper triangles (length ``p + 1``).

    Parameters
    ----------
    mixture : GaussianMixtureParams

    Returns
    -------
    ndarray of shape (p + 1,)
    """
    rows, cols = _triu(mixture.dim)
    return np.concatenate([mixture.weights, mixture.means.ravel(), mixture.covariances[:, rows, cols].ravel()])


def from_vector(theta: ArrayLike, n_components: int, dim: int) -> GaussianMixtureParams:
    """The mixture with free parameter vector ``theta`` (inverse of :func:`to_vector`).

    Parameters
    ----------
    theta : array_like of shape (p,)
    n_components, dim : int
        K and d.

    Returns
    -------
    GaussianMixtureParams
        Validated: ``w_K = 1 - sum`` must be positive and every covariance positive definite.
    """
    k, d = int(n_components), int(dim)
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (n_params(k, d),):
        raise ValueError(f"theta must have shape ({n_params(k, d)},) for K = {k}, d = {d}; got {theta.shape}.")
    weights = np.append(theta[: k - 1], 1.0 - theta[: k - 1].sum())
    means = theta[k - 1: k - 1 + k * d].reshape(k, d)
    rows, cols = _triu(d)
    covariances = np.zeros((k, d, d))
    vech = theta[k - 1 + k * d:].reshape(k, rows.size)
    covariances[:, rows, cols] = vech
    covariances[:, cols, rows] = vech
    return GaussianMixtureParams(weights, means, covariances)


def full_jacobian(n_components: int, dim: int) -> np.ndarray:
    """``A`` with ``full = A @ theta + const``: the delta-method map from free to reported parameters.

    The reported vector has all K weights; ``w_K = 1 - sum_{k<K} w_k`` has gradient ``-1`` in every
    free weight, every other reported entry is a free one. ``A @ V @ A.T`` is the covariance of the
    reported vector when ``V`` is that of ``theta`` (exact: the map is affine).

    Returns
    -------
    ndarray of shape (p + 1, p)
    """
    k, d = int(n_components), int(dim)
    p = n_params(k, d)
    a = np.zeros((p + 1, p))
    a[: k - 1, : k - 1] = np.eye(k - 1)
    a[k - 1, : k - 1] = -1.0
    a[k:, k - 1:] = np.eye(p - (k - 1))
    return a


def model_jacobian(mixture: GaussianMixtureParams) -> np.ndarray:
    """``B = d theta / d theta_model``: the free parameters of the mixture's covariance model
    (:attr:`GaussianMixtureParams.covariance_type`) in the free parameter vector :func:`to_vector`.

    ``theta_model`` holds the K - 1 weights, the K d means and the model's free covariance parameters
    (:meth:`dfmr.covariance.CovarianceModel.parameter_names`). For a model linear in its covariance
    entries (:meth:`~dfmr.covariance.CovarianceModel.linear_basis`: e.g. one variance per component for
    VII, one shared matrix for EEE) ``theta = B @ theta_model`` exactly. For the others (VEI, EVI, VEE,
    EVE, VVE, EEV, VEV, EVV) ``B`` is the Jacobian at the mixture of the model's chart (volumes, shapes,
    rotations ``D_hat expm(S)``; :meth:`~dfmr.covariance.CovarianceModel.chart_jacobian`). The
    information in the model's parametrisation is ``B' I B`` and, by the delta method, the covariance
    of ``theta`` is ``B (B' I B)^-1 B'``. (The chain rule adds ``sum_a score_a d2 theta_a`` to an
    observed Hessian in a curved chart; the expected information has none, as the expected score is
    zero, and at the model's maximum likelihood the observed score along the model is zero too.) The
    identity for full covariances.

    Returns
    -------
    ndarray of shape (p, p_model)

    Raises
    ------
    ValueError
        When the covariances are not members of the mixture's model.
    """
    k, d = mixture.n_components, mixture.dim
    basis = get_model(mixture.covariance_type, d).chart_jacobian(mixture.covariances)
    head = (k - 1) + k * d
    out = np.zeros((n_params(k, d), head + basis.shape[1]))
    out[:head, :head] = np.eye(head)
    out[head:, head:] = basis
    return out


def per_component_covariance(mixture: GaussianMixtureParams, fisher: np.ndarray) -> np.ndarray:
    """``B_own (B' I B)^+ B_own'``: the covariance of ``theta`` (:func:`to_vector`) as seen through the
    weights, the means and each component's own covariance parameters only.

    ``B`` is :func:`model_jacobian` and ``B_own`` the same map with the columns of the shared covariance
    parameters (the model's E letters; :meth:`dfmr.covariance.CovarianceModel.own_columns`) set to zero:
    the law of a statistic that takes a component's own parameters (its V letters: VEV's volume and
    orientation) from an estimate and the shared ones (VEV's shape) from a fixed reference, which is how
    :func:`dfmr.robust_dfmr`'s per-slot covariance statistic compares a machine with the reference
    (:meth:`~dfmr.covariance.CovarianceModel.combine`). Its weight and mean blocks are those of ``B (B' I
    B)^+ B'``; so is everything for VVV, VVI and VII (every covariance parameter is a component's own),
    while for EEE, EEI and EII the covariance block is zero (none is). ``^+`` is the pseudo-inverse: a
    shape with equal entries leaves the orientation in that plane undetermined.

    Parameters
    ----------
    mixture : GaussianMixtureParams
        A member of its covariance model (the chart is taken there).
    fisher : ndarray of shape (p, p)
        Information about ``theta`` (e.g. per observation, :func:`expected_information`); the result is
        then the covariance of ``sqrt(n)`` times an estimate's error.

    Returns
    -------
    ndarray of shape (p, p)
    """
    k, d = mixture.n_components, mixture.dim
    B = model_jacobian(mixture)
    fisher = np.asarray(fisher, dtype=np.float64)
    if fisher.shape != (B.shape[0], B.shape[0]):
        raise ValueError(f"fisher must have shape {(B.shape[0], B.shape[0])}, got {fisher.shape}.")
    own = B.copy()
    head = (k - 1) + k * d
    own[:, head:][:, ~get_model(mixture.covariance_type, d).own_columns(k, d)] = 0.0
    return own @ np.linalg.pinv(B.T @ fisher @ B) @ own.T


def model_param_names(mixture: GaussianMixtureParams) -> list[str]:
    """Names of the model's free parameters, in the columns' order of :func:`model_jacobian`."""
    k, d = mixture.n_components, mixture.dim
    head = (k - 1) + k * d
    return param_names(k, d)[:head] + get_model(mixture.covariance_type, d).parameter_names(k, d)


# ------------------------------------------------------------------------------ scores, information


class _Layout:
    """Where each component's blocks sit in ``theta``, and the per-component constants."""

    def __init__(self, mixture: GaussianMixtureParams) -> None:
        if np.any(mixture.weights <= 0):
            raise ValueError("scores and information need positive weights; a zero weight is on the boundary.")
        k, d = mixture.n_components, mixture.dim
        self.k, self.d = k, d
        self.q = d * (d + 1) // 2
        self.p = n_params(k, d)
        self.rows, self.cols = _triu(d)
        self.dup = _duplication(d)
        # d log phi / d Sigma[i, j] counts the entry twice off the diagonal (Sigma[i, j] = Sigma[j, i]).
        self.sym = np.where(self.rows == self.cols, 1.0, 2.0)
        chol = mixture.cholesky_factors
        eye = np.eye(d)
        inv_chol = np.linalg.solve(chol, np.broadcast_to(eye, chol.shape))
        self.precisions = np.einsum("kji,kjl->kil", inv_chol, inv_chol)  # Sigma_k^-1 = L^-T L^-1
        self.weights = mixture.weights
        self.means = mixture.means
        self.log_weights = np.log(mixture.weights)

    def local_index(self, k: int) -> np.ndarray:
        """Indices in ``theta`` of the weights and of component ``k``'s mean and covariance."""
        k_w, d, q = self.k - 1, self.d, self.q
        mean = k_w + k * d + np.arange(d)
        cov = k_w + self.k * d + k * q + np.arange(q)
        return np.concatenate([np.arange(k_w), mean, cov])

    def weight_gradient(self, k: int) -> np.ndarray:
        """Gradient of ``log w_k`` in the free weights (``w_K = 1 - sum``)."""
        g = np.zeros(self.k - 1)
        if k < self.k - 1:
            g[k] = 1.0 / self.weights[k]
        else:
            g[:] = -1.0 / self.weights[-1]
        return g


def _component_terms(X: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Responsibilities ``r`` (n, K), log-density (n,) and, per component, ``u = Sigma_k^-1 (x - mu_k)`` (n, d)."""
    diff = X[None, :, :] - lay.means[:, None, :]  # (K, n, d)
    u = np.einsum("knd,kde->kne", diff, lay.precisions)
    # log phi_k from the precision and the Cholesky determinant (as GaussianMixtureParams does).
    maha = np.einsum("knd,knd->kn", diff, u)
    log_det = -np.linalg.slogdet(lay.precisions)[1]
    log_joint = -0.5 * (maha + log_det[:, None] + lay.d * np.log(2.0 * np.pi)).T + lay.log_weights
    log_f = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_f[:, None])
    return resp, log_f, list(u)


def _component_gradients(u: np.ndarray, k: int, lay: _Layout) -> np.ndarray:
    """Rows ``s_ik``: gradient of ``log(w_k phi_k(x_i))`` on :meth:`_Layout.local_index` (n, K-1+d+q)."""
    n = u.shape[0]
    prec = lay.precisions[k]
    cov = 0.5 * lay.sym * (u[:, lay.rows] * u[:, lay.cols] - prec[lay.rows, lay.cols])
    weights = np.broadcast_to(lay.weight_gradient(k), (n, lay.k - 1))
    return np.concatenate([weights, u, cov], axis=1)


def _check_data(X: ArrayLike, mixture: GaussianMixtureParams) -> np.ndarray:
    if not isinstance(mixture, GaussianMixtureParams):
        raise TypeError(f"mixture must be a GaussianMixtureParams, got {type(mixture).__name__}.")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1 and mixture.dim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != mixture.dim:
        raise ValueError(f"X must have shape (n, {mixture.dim}), got {X.shape}.")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values.")
    return X


def _blocks(n: int, block_rows: int) -> list[slice]:
    check_int(block_rows, "block_rows", 1)
    return [slice(a, min(a + block_rows, n)) for a in range(0, n, int(block_rows))]


def _block_scores(X: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    resp, _, us = _component_terms(X, lay)
    out = np.zeros((X.shape[0], lay.p))
    for k, u in enumerate(us):
        out[:, lay.local_index(k)] += resp[:, k: k + 1] * _component_gradients(u, k, lay)
    return out, resp, us


def scores(X: ArrayLike, mixture: GaussianMixtureParams, *, block_rows: int = _BLOCK_ROWS) -> np.ndarray:
    """Per-observation score vectors: the gradient of ``log f(x_i)`` in the free parameters.

    With responsibilities ``r_ik`` and ``u_ik = Sigma_k^-1 (x_i - mu_k)``:
    ``d/dw_k = r_ik / w_k - r_iK / w_K`` (k < K), ``d/dmu_k = r_ik u_ik``,
    ``d/dSigma_k[a, b] = r_ik c_ab (u_ika u_ikb - (Sigma_k^-1)_ab) / 2`` with ``c_ab = 1`` on the
    diagonal and 2 off it (the symmetric parametrisation).

    Parameters
    ----------
    X : array_like of shape (n, d)
        Observations (a 1-D array when d = 1).
    mixture : GaussianMixtureParams
        Where the scores are evaluated.
    block_rows : int, default 4096
        Rows processed at a time (bounds the memory of the intermediate arrays).

    Returns
    -------
    ndarray of shape (n, p)
        Columns in the order of :func:`param_names`.
    """
    X = _check_data(X, mixture)
    lay = _Layout(mixture)
    out = np.empty((X.shape[0], lay.p))
    for rows in _blocks(X.shape[0], block_rows):
        out[rows] = _block_scores(X[rows], lay)[0]
    return out


def _negative_component_hessian(k: int, resp_k: np.ndarray, u: np.ndarray, lay: _Layout) -> np.ndarray:
    """``sum_i r_ik (-Hessian of log(w_k phi_k(x_i)))`` on :meth:`_Layout.local_index`.

    It depends on the data only through ``R = sum r``, ``v = sum r u`` and ``M = sum r u u^T``:
    mean-mean ``R P``; mean-Sigma[a, b] ``P_ja v_b`` (elementary direction ``e_a e_b^T``);
    Sigma[a, b]-Sigma[c, d] ``-R P_da P_bc / 2 + (M_ad P_bc + M_cb P_da) / 2``; the symmetric
    parametrisation adds the two orderings of an off-diagonal entry (the duplication matrix).
    """
    d, prec, dup = lay.d, lay.precisions[k], lay.dup
    total = resp_k.sum()
    v = resp_k @ u
    m = (u * resp_k[:, None]).T @ u
    mean_cov = np.einsum("ja,b->jab", prec, v).reshape(d, d * d) @ dup
    full = 0.5 * (
        -total * np.einsum("da,bc->abcd", prec, prec)
        + np.einsum("ad,bc->abcd", m, prec)
        + np.einsum("cb,da->abcd", m, prec)
    ).reshape(d * d, d * d)
    cov_cov = dup.T @ full @ dup
    k_w = lay.k - 1
    size = k_w + d + lay.q
    out = np.zeros((size, size))
    g = lay.weight_gradient(k)
    # -d^2 log w_k: 1/w_k^2 on (k, k) for k < K; 1/w_K^2 everywhere for w_K = 1 - sum (= g g^T both ways).
    out[:k_w, :k_w] = total * np.outer(g, g)
    out[k_w: k_w + d, k_w: k_w + d] = total * prec
    out[k_w: k_w + d, k_w + d:] = mean_cov
    out[k_w + d:, k_w: k_w + d] = mean_cov.T
    out[k_w + d:, k_w + d:] = cov_cov
    return out


def information(
    X: ArrayLike, mixture: GaussianMixtureParams, kind: str = "observed", *, block_rows: int = _BLOCK_ROWS
) -> np.ndarray:
    """Information of the mixture log-likelihood of ``X`` at ``mixture`` (a sum over rows).

    Parameters
    ----------
    X : array_like of shape (n, d)
        Observations.
    mixture : GaussianMixtureParams
        Where the information is evaluated.
    kind : {"observed", "opg"}, default "observed"
        ``"opg"``: the outer product of scores ``sum_i s_i s_i^T`` (positive semi-definite).
        ``"observed"``: ``-sum_i Hessian log f(x_i)``, computed analytically by Louis' identity
        ``-H_i = sum_k r_ik C_ik - sum_k r_ik s_ik s_ik^T + s_i s_i^T`` (``s_ik`` and ``C_ik`` the
        gradient and negative Hessian of ``log(w_k phi_k(x_i))``). Both estimate ``n`` times the
        Fisher information at the true parameter and agree as ``n`` grows; the observed form is
        the one that equals the curvature of the log-likelihood, and may be indefinite far from
        a maximum.
    block_rows : int, default 4096
        Rows processed at a time.

    Returns
    -------
    ndarray of shape (p, p)
        Symmetric; rows and columns in the order of :func:`param_names`.
    """
    if kind not in INFORMATION_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, INFORMATION_KINDS))}; got {kind!r}.")
    X = _check_data(X, mixture)
    lay = _Layout(mixture)
    out = np.zeros((lay.p, lay.p))
    for rows in _blocks(X.shape[0], block_rows):
        s, resp, us = _block_scores(X[rows], lay)
        out += s.T @ s
        if kind == "observed":
            for k, u in enumerate(us):
                idx = lay.local_index(k)
                grad = _component_gradients(u, k, lay)
                correction = _negative_component_hessian(k, resp[:, k], u, lay) - (grad * resp[:, k: k + 1]).T @ grad
                out[np.ix_(idx, idx)] += correction
    return 0.5 * (out + out.T)


def machine_information(
    X: ArrayLike, mixture: GaussianMixtureParams, kind: str = "observed"
) -> tuple[np.ndarray, int]:
    """What one machine sends for distributed inference: its information matrix and its ``n``.

    A plain module-level function of picklable arguments, so any backend (threads, processes,
    dask) can run it where the data are.

    Parameters
    ----------
    X : array_like of shape (n, d)
        The machine's observations.
    mixture : GaussianMixtureParams
        The aggregate at which the information is evaluated.
    kind : {"observed", "opg"}, default "observed"
        See :func:`information`.

    Returns
    -------
    matrix : ndarray of shape (p, p)
        ``information(X, mixture, kind)``, a sum over the machine's rows.
    n : int
        The machine's number of rows.
    """
    X = _check_data(X, mixture)
    return information(X, mixture, kind), int(X.shape[0])


def expected_information(
    mixture: GaussianMixtureParams,
    n_samples: int = 20_000,
    *,
    kind: str = "observed",
    random_state: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Per-observation Fisher information of a mixture, without data: seeded Monte Carlo from itself.

    ``information(X, mixture, kind) / n_samples`` for ``X`` drawn from ``mixture``; both kinds
    estimate the same matrix (at the true parameter the expected OPG equals the expected
    negative Hessian), with Monte Carlo error of order ``n_samples ** -0.5``.

    Parameters
    ----------
    mixture : GaussianMixtureParams
        The mixture (taken as the truth).
    n_samples : int, default 20000
        Monte Carlo draws; the matrix is reproducible for a fixed ``random_state``.
    kind : {"observed", "opg"}, default "observed"
        See :func:`information`.
    random_state : int, numpy.random.Generator or None, default 0

    Returns
    -------
    ndarray of shape (p, p)
    """
    check_int(n_samples, "n_samples", 1)
    X, _ = mixture.sample(int(n_samples), random_state)
    return information(X, mixture, kind) / int(n_samples)


# ------------------------------------------------------------------------------ alignment


def plan_rows(result: AggregationResult, mixtures: Sequence[GaussianMixtureParams], machine: int) -> np.ndarray | None:
    """The rows of the reduction's transport plan that belong to one machine's components.

    Parameters
    ----------
    result : AggregationResult
        An aggregation whose ``reduction`` is set (DFMR, MR, TKB).
    mixtures : sequence of GaussianMixtureParams
        The local estimates the aggregation received, in machine order.
    machine : int
        Index of the machine.

    Returns
    -------
    ndarray of shape (K_i, K_out) or None
        Mass sent from each of the machine's components to each aggregate component, or None
        when the machine was not retained or the aggregation has no plan (COAT).
    """
    if result.reduction is None or machine not in set(result.retained.tolist()):
        return None
    assignment = np.asarray(result.reduction.assignment)
    screening = getattr(result, "screening", None)
    if screening is not None:
        # robust_dfmr pools slot by slot (the machines kept in slot 0, then slot 1, ...); a machine
        # with a component left out of the pool has no full set of rows and is aligned by cost.
        kept, alignment = np.asarray(screening.kept), np.asarray(screening.alignment)
        pooled = [(int(i), int(alignment[i, j])) for j in range(kept.shape[1]) for i in np.flatnonzero(kept[:, j])]
        rows = {c: r for r, (i, c) in enumerate(pooled) if i == machine}
        if len(rows) != mixtures[machine].n_components:
            return None
        return assignment[[rows[c] for c in range(len(rows))]]
    sizes = [mixtures[int(i)].n_components for i in result.retained]
    pos = int(np.searchsorted(result.retained, machine))
    start = int(np.sum(sizes[:pos]))
    return assignment[start: start + sizes[pos]]


def _kl_matrix(local: GaussianMixtureParams, reference: GaussianMixtureParams) -> np.ndarray:
    """``KL(N(local_j) || N(reference_k))``, shape (K_local, K_ref)."""
    from .reduction import kl_cost

    return kl_cost(local, reference)


def align(
    local: GaussianMixtureParams, reference: GaussianMixtureParams, plan: ArrayLike | None = None
) -> np.ndarray:
    """Match a local estimate's components to a reference mixture's.

    With a transport ``plan`` (rows: local components, columns: reference components, e.g.
    :func:`plan_rows`) the match maximises the mass moved along matched pairs, and is used when
    it is what the plan says: every matched local component sends most of its mass to its
    match. Otherwise (no plan, a plan that splits or merges components, trimmed rows) the
    match minimises the total cost ``KL(local_j || reference_k)`` (Hungarian algorithm).

    Parameters
    ----------
    local : GaussianMixtureParams
        The estimate to align (K_local components).
    reference : GaussianMixtureParams
        The mixture to align to (K_ref components, same dimension).
    plan : array_like of shape (K_local, K_ref), optional
        Transport masses from the reduction.

    Returns
    -------
    ndarray of int, shape (K_ref,)
        ``order[k]`` is the local component matched to reference component ``k``, ``-1`` where
        ``K_local < K_ref`` leaves ``k`` unmatched. When ``K_local == K_ref``,
        ``local.permute(order)`` lists the local components in the reference's order.
    """
    if local.dim != reference.dim:
        raise ValueError(f"local has dimension {local.dim}, the reference {reference.dim}.")
    k_ref = reference.n_components
    order = np.full(k_ref, -1, dtype=np.intp)
    if plan is not None:
        plan = np.asarray(plan, dtype=np.float64)
        if plan.shape != (local.n_components, k_ref):
            raise ValueError(f"plan must have shape ({local.n_components}, {k_ref}), got {plan.shape}.")
        rows, cols = linear_sum_assignment(-plan)
        if np.all(plan[rows, cols] > 0) and np.array_equal(plan[rows].argmax(axis=1), cols):
            order[cols] = rows
            return order
    rows, cols = linear_sum_assignment(_kl_matrix(local, reference))
    order[cols] = rows
    return order


def align_to(
    local: GaussianMixtureParams, reference: GaussianMixtureParams, plan: ArrayLike | None = None
) -> GaussianMixtureParams | None:
    """``local`` with its components in the reference's order (:func:`align`), or None when K differs.

    Parameters
    ----------
    local, reference : GaussianMixtureParams
    plan : array_like, optional
        See :func:`align`.

    Returns
    -------
    GaussianMixtureParams or None
    """
    if local.n_components != reference.n_components:
        return None
    return local.permute(align(local, reference, plan))
