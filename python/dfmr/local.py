"""Local estimate: the penalised MLE of a Gaussian mixture on one machine's data, by EM.

Each machine maximises (DESIGN.md, "Local estimate"; Chen & Tan 2009)

    pl(G) = loglik(G) - a_n * sum_k [ tr(S_x Sigma_k^-1) + log det Sigma_k ],   a_n = n^(-1/2),

where ``S_x`` is the sample covariance of the machine's data. The penalty is a conjugate
(inverse-Wishart-like) log-prior on every covariance, so EM keeps a closed-form M-step,

    Sigma_k = (sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T + 2 a_n S_x) / (n_k + 2 a_n),

and every EM iteration still does not decrease ``pl`` (the penalty only adds a term of the
parameters to the complete-data objective, so EM remains a minorise-maximise scheme). Because
``Sigma_k >= 2 a_n S_x / (n_k + 2 a_n)`` no covariance can collapse, even on duplicated points
or with empty components.

The EM loop follows ``sklearn/mixture``: small module-level pieces (:func:`kmeans_plusplus`,
:func:`estimate_log_gaussian_prob`, :func:`e_step`, :func:`m_step`, :func:`penalized_loglik`)
that tests call alone, Cholesky factors of precisions and log-sum-exp throughout. Internally
the data are centred and held in Fortran order and responsibilities in (K, n) memory layout,
so that every pass over the data runs along contiguous memory.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._validation import check_int
from .params import LIMITS, GaussianMixtureParams

__all__ = [
    "LocalFit",
    "e_step",
    "estimate_log_gaussian_prob",
    "fit_local",
    "fit_local_detailed",
    "kmeans_plusplus",
    "m_step",
    "penalized_loglik",
    "precision_cholesky",
    "sample_covariance",
]

_LOG_2PI = math.log(2.0 * math.pi)
# Added to every n_k (as in sklearn) so that an empty component keeps a positive weight and a
# well-defined mean (the data mean, see m_step) instead of 0/0; it moves nothing measurably.
_NK_FLOOR = 10.0 * np.finfo(np.float64).eps
# The rule for the starts (fit_local_detailed states it in full): groups of _SCREEN_GROUP starts are
# screened by _SCREEN_ITER EM iterations on a random subset of max(_SCREEN_MIN_SIZE,
# _SCREEN_POINTS_PER_PARAM * K * d) points, which only orders them; they are then run to convergence on
# all the data in that order until _CONFIRMATIONS converged runs end within _AGREE_TOLS * tol * n of
# the best final value.
_SCREEN_GROUP = 8
_SCREEN_ITER = 8
_SCREEN_MIN_SIZE = 1000
_SCREEN_POINTS_PER_PARAM = 20
_CONFIRMATIONS = 2
_AGREE_TOLS = 2.0
# The screen runs its starts side by side in (starts, K, d, m) arrays of at most this many doubles (32 MB).
_SCREEN_BLOCK = 1 << 22


@dataclass(frozen=True)
class LocalFit:
    """Result of :func:`fit_local_detailed`.

    Attributes
    ----------
    mixture : GaussianMixtureParams
        The penalised MLE.
    penalized_loglik : float
        Penalised log-likelihood of ``mixture`` on the data (a sum over points, not a mean).
    loglik : float
        Plain log-likelihood of ``mixture`` on the data (sum over points).
    n_iter : int
        EM iterations of the returned run, from its start to the end.
    converged : bool
        Whether the returned run met the tolerance within ``max_iter`` iterations.
    n_init : int
        The largest number of k-means++ starts allowed (the ``n_init`` argument).
    history : tuple of float
        Penalised log-likelihood of the returned run at its start and after every EM
        iteration (length ``n_iter + 1``); non-decreasing up to rounding.
    start_penalized_logliks : tuple of float
        Final penalised log-likelihood of every start that was run, in the order run
        (``1 <= len <= n_init``); ``penalized_loglik`` is their maximum.
    """

    mixture: GaussianMixtureParams
    penalized_loglik: float
    loglik: float
    n_iter: int
    converged: bool
    n_init: int
    history: tuple[float, ...]
    start_penalized_logliks: tuple[float, ...]


def sample_covariance(X: np.ndarray) -> np.ndarray:
    """Sample covariance ``S_x`` of the rows of ``X`` (divisor ``n - 1``), shape (d, d).

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Data, ``n >= 2``.

    Returns
    -------
    ndarray, shape (d, d)
        ``sum_i (x_i - xbar)(x_i - xbar)^T / (n - 1)``; for ``d = 1`` the 1 x 1 variance.
    """
    Xc = X - X.mean(axis=0)
    return (Xc.T @ Xc) / (X.shape[0] - 1)


def kmeans_plusplus(X: np.ndarray, n_clusters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, in scikit-learn's greedy form).

    The first centre is a uniformly drawn row. Each further centre is the best, by the
    resulting k-means potential, of ``2 + floor(log K)`` candidates drawn with probability
    proportional to the squared distance to the nearest centre chosen so far. When every
    point already coincides with a centre (fewer distinct points than clusters), candidates
    are drawn uniformly.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Data.
    n_clusters : int
        Number of centres K, ``1 <= K <= n``.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    centers : ndarray, shape (K, d)
        The chosen centres (rows of ``X``).
    indices : ndarray of int, shape (K,)
        Their row indices in ``X``.
    """
    n = X.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    sq_norms = np.einsum("ij,ij->i", X, X)

    def sq_dist(rows: np.ndarray) -> np.ndarray:
        d2 = sq_norms[rows][:, None] + sq_norms[None, :] - 2.0 * (X[rows] @ X.T)
        return np.maximum(d2, 0.0, out=d2)

    indices = np.empty(n_clusters, dtype=np.intp)
    indices[0] = rng.integers(n)
    closest = sq_dist(indices[:1])[0]
    potential = closest.sum()
    for c in range(1, n_clusters):
        if potential > 0.0:
            draws = rng.random(n_trials) * potential
            candidates = np.minimum(np.searchsorted(np.cumsum(closest), draws), n - 1)
        else:
            candidates = rng.integers(n, size=n_trials)
        trial_closest = np.minimum(closest[None, :], sq_dist(candidates))
        trial_potential = trial_closest.sum(axis=1)
        best = int(np.argmin(trial_potential))
        indices[c] = candidates[best]
        closest, potential = trial_closest[best], trial_potential[best]
    return X[indices].copy(), indices


def precision_cholesky(covariances: np.ndarray) -> np.ndarray:
    """Upper-triangular ``U_k`` with ``U_k U_k^T = Sigma_k^-1``, shape (K, d, d).

    ``U_k = L_k^-T`` for the lower Cholesky factor ``L_k`` of ``Sigma_k`` (scikit-learn's
    ``precisions_cholesky_``), from a solve with the triangular factor, never by inverting
    ``Sigma_k``.

    Parameters
    ----------
    covariances : ndarray, shape (..., K, d, d)
        Symmetric positive-definite matrices (any leading dimensions).

    Returns
    -------
    ndarray, shape (..., K, d, d)
    """
    chol = np.linalg.cholesky(covariances)
    # One batched gufunc call; scipy's batched solve_triangular costs several times more in overhead
    # at these sizes, and the factor is well conditioned (its condition is the root of Sigma_k's).
    eye = np.broadcast_to(np.eye(covariances.shape[-1]), covariances.shape)
    return np.swapaxes(np.linalg.solve(chol, eye), -1, -2)


def estimate_log_gaussian_prob(X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
    """Log-density ``log N(x_i; mu_k, Sigma_k)`` of every component at every row, shape (n, K).

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Data (fastest in Fortran order).
    means : ndarray, shape (K, d)
        Component means.
    prec_chol : ndarray, shape (K, d, d)
        Cholesky factors of the precisions, from :func:`precision_cholesky`.

    Returns
    -------
    ndarray, shape (n, K)
        A transposed view of a C-ordered (K, n) array.
    """
    n, d = X.shape
    k = means.shape[0]
    # Row block k of y is U_k^T (x_i - mu_k) for all i: one (K d, d) x (d, n) product serves every
    # component, and the (K, d, n) layout keeps the reduction over d contiguous.
    u_t = np.swapaxes(prec_chol, 1, 2).reshape(k * d, d)
    y = u_t @ X.T
    y -= np.einsum("kde,kd->ke", prec_chol, means).reshape(k * d, 1)
    y = y.reshape(k, d, n)
    maha = np.einsum("kdn,kdn->kn", y, y)
    log_det_prec = np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    log_prob = log_det_prec[:, None] - 0.5 * (maha + d * _LOG_2PI)
    return log_prob.T


def e_step(X: np.ndarray, weights: np.ndarray, means: np.ndarray, prec_chol: np.ndarray) -> tuple[float, np.ndarray]:
    """E-step: log-likelihood and responsibilities.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Data.
    weights : ndarray, shape (K,)
        Mixing proportions (positive).
    means : ndarray, shape (K, d)
        Component means.
    prec_chol : ndarray, shape (K, d, d)
        Cholesky factors of the precisions.

    Returns
    -------
    loglik : float
        ``sum_i log sum_k w_k N(x_i; mu_k, Sigma_k)``.
    resp : ndarray, shape (n, K)
        Posterior probabilities ``r_ik`` (rows sum to one), computed by log-sum-exp; a
        transposed view of a C-ordered (K, n) array.
    """
    log_joint = estimate_log_gaussian_prob(X, means, prec_chol)
    log_joint += np.log(weights)
    row_max = log_joint.max(axis=1, keepdims=True)
    log_joint -= row_max
    resp = np.exp(log_joint, out=log_joint)
    total = resp.sum(axis=1, keepdims=True)
    resp /= total
    loglik = float(row_max.sum() + np.log(total).sum())
    return loglik, resp


def m_step(X: np.ndarray, resp: np.ndarray, S_x: np.ndarray, a_n: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M-step of the penalised EM (DESIGN.md, "Local estimate").

    ``w_k = n_k / n``, ``mu_k = sum_i r_ik x_i / n_k`` and
    ``Sigma_k = (sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T + 2 a_n S_x) / (n_k + 2 a_n)``,
    with ``n_k = sum_i r_ik``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Data (fastest in Fortran order).
    resp : ndarray, shape (n, K)
        Responsibilities, rows summing to one (fastest as returned by :func:`e_step`).
    S_x : ndarray, shape (d, d)
        Sample covariance of the data.
    a_n : float
        Penalty scale, ``n ** -0.5`` in dfmr.

    Returns
    -------
    weights : ndarray, shape (K,)
    means : ndarray, shape (K, d)
    covariances : ndarray, shape (K, d, d)

    Notes
    -----
    ``n_k`` is raised by ``10 * eps`` before it divides, as in scikit-learn, so a component
    with no responsibility keeps a tiny positive weight; its mean is then 0, which is the
    data mean when ``X`` is centred (as :func:`fit_local` arranges), and its covariance is
    ``S_x`` itself.
    """
    resp_t = resp.T
    nk = resp_t.sum(axis=1)
    means = (resp_t @ X) / (nk + _NK_FLOOR)[:, None]
    k, d = means.shape
    weighted = X.T[None, :, :] - means[:, :, None]  # (K, d, n)
    weighted *= resp_t[:, None, :]
    # sum_i r_ik (x_i - mu_k) x_i^T is the scatter about mu_k because sum_i r_ik (x_i - mu_k) = 0.
    # One (K d, n) x (n, d) product is faster than K small ones, and the rounding error of that
    # zero sum enters only linearly in |mu_k| (moments about the origin would enter squared).
    scatter = (weighted.reshape(k * d, -1) @ X).reshape(k, d, d)
    covariances = (scatter + 2.0 * a_n * S_x) / (nk + 2.0 * a_n)[:, None, None]
    covariances = 0.5 * (covariances + np.swapaxes(covariances, 1, 2))
    weights = (nk + _NK_FLOOR) / (nk.sum() + k * _NK_FLOOR)
    return weights, means, covariances


def _penalty(S_x: np.ndarray, prec_chol: np.ndarray, a_n: float) -> float:
    """``a_n sum_k [tr(S_x Sigma_k^-1) + log det Sigma_k]`` from precision Cholesky factors."""
    precisions = prec_chol @ np.swapaxes(prec_chol, 1, 2)
    trace = np.einsum("ij,kij->k", S_x, precisions)  # tr(S P) = sum(S * P) for symmetric S
    log_det_cov = -2.0 * np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    return float(a_n * (trace + log_det_cov).sum())


def penalized_loglik(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, S_x: np.ndarray, a_n: float
) -> float:
    """Penalised log-likelihood ``loglik - a_n sum_k [tr(S_x Sigma_k^-1) + log det Sigma_k]``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Data.
    weights : ndarray, shape (K,)
        Mixing proportions.
    means : ndarray, shape (K, d)
        Component means.
    covariances : ndarray, shape (K, d, d)
        Component covariances (symmetric positive definite).
    S_x : ndarray, shape (d, d)
        Sample covariance of the data.
    a_n : float
        Penalty scale.

    Returns
    -------
    float
        The penalised log-likelihood (a sum over the rows of ``X``).
    """
    prec_chol = precision_cholesky(np.asarray(covariances, dtype=np.float64))
    loglik, _ = e_step(X, np.asarray(weights, dtype=np.float64), np.asarray(means, dtype=np.float64), prec_chol)
    return loglik - _penalty(S_x, prec_chol, a_n)


@dataclass(frozen=True)
class _State:
    """Parameters of one EM run with their responsibilities and (penalised) log-likelihood."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    resp: np.ndarray
    loglik: float
    penalized: float


def _evaluate(X: np.ndarray, S_x: np.ndarray, a_n: float, params: tuple[np.ndarray, ...]) -> _State:
    weights, means, covariances = params
    prec_chol = precision_cholesky(covariances)
    loglik, resp = e_step(X, weights, means, prec_chol)
    return _State(weights, means, covariances, resp, loglik, loglik - _penalty(S_x, prec_chol, a_n))


def _em(
    X: np.ndarray, S_x: np.ndarray, a_n: float, state: _State, max_iter: int, tol: float
) -> tuple[_State, list[float], bool]:
    """EM from ``state``: the last state, the penalised log-likelihood trace, and convergence."""
    history = [state.penalized]
    for _ in range(max_iter):
        new = _evaluate(X, S_x, a_n, m_step(X, state.resp, S_x, a_n))
        history.append(new.penalized)
        gain, state = new.penalized - state.penalized, new
        if gain < tol * X.shape[0]:
            return state, history, True
    return state, history, False


def _seed(X: np.ndarray, S_x: np.ndarray, a_n: float, n_components: int, rng: np.random.Generator) -> _State:
    """A start: k-means++ centres, every point assigned to its nearest centre, one M-step."""
    centers, _ = kmeans_plusplus(X, n_components, rng)
    d2 = np.einsum("kd,kd->k", centers, centers) - 2.0 * (X @ centers.T)
    resp_t = np.zeros((n_components, X.shape[0]))  # (K, n) layout, as e_step returns it
    resp_t[np.argmin(d2, axis=1), np.arange(X.shape[0])] = 1.0
    return _evaluate(X, S_x, a_n, m_step(X, resp_t.T, S_x, a_n))


def _m_step_batch(
    X: np.ndarray, resp: np.ndarray, S_x: np.ndarray, a_n: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`m_step` for S runs at once: ``resp`` has shape (S, K, n); returns (S, K), (S, K, d), (S, K, d, d)."""
    s, k, n = resp.shape
    d = X.shape[1]
    nk = resp.sum(axis=2)
    means = (resp.reshape(s * k, n) @ X).reshape(s, k, d) / (nk + _NK_FLOOR)[:, :, None]
    weighted = X.T - means[:, :, :, None]  # (S, K, d, n)
    weighted *= resp[:, :, None, :]
    scatter = (weighted.reshape(s * k * d, n) @ X).reshape(s, k, d, d)  # about mu_k, as in m_step
    covariances = (scatter + 2.0 * a_n * S_x) / (nk + 2.0 * a_n)[:, :, None, None]
    covariances = 0.5 * (covariances + np.swapaxes(covariances, -1, -2))
    weights = (nk + _NK_FLOOR) / (nk.sum(axis=1, keepdims=True) + k * _NK_FLOOR)
    return weights, means, covariances


def _evaluate_batch(
    X: np.ndarray, S_x: np.ndarray, a_n: float, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """E-step and penalised log-likelihood for S runs at once: responsibilities (S, K, n) and values (S,)."""
    s, k, d = means.shape
    n = X.shape[0]
    prec_chol = precision_cholesky(covariances)
    y = np.swapaxes(prec_chol, -1, -2).reshape(s * k * d, d) @ X.T
    y -= np.einsum("skde,skd->ske", prec_chol, means).reshape(s * k * d, 1)
    y = y.reshape(s, k, d, n)
    log_det_prec = np.log(np.diagonal(prec_chol, axis1=-2, axis2=-1)).sum(axis=-1)  # (S, K)
    log_joint = np.einsum("skdn,skdn->skn", y, y)
    log_joint *= -0.5
    log_joint += (log_det_prec - 0.5 * d * _LOG_2PI + np.log(weights))[:, :, None]
    row_max = log_joint.max(axis=1, keepdims=True)
    log_joint -= row_max
    resp = np.exp(log_joint, out=log_joint)
    total = resp.sum(axis=1, keepdims=True)
    resp /= total
    loglik = row_max.sum(axis=(1, 2)) + np.log(total).sum(axis=(1, 2))
    precisions = prec_chol @ np.swapaxes(prec_chol, -1, -2)
    penalty = a_n * (np.einsum("ij,skij->sk", S_x, precisions) - 2.0 * log_det_prec).sum(axis=1)
    return resp, loglik - penalty


def _screen(
    X: np.ndarray, S_x: np.ndarray, a_n: float, n_components: int, n_starts: int, n_iter: int, rng: np.random.Generator
) -> list[tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """``n_starts`` k-means++ starts on ``X``, each followed by ``n_iter`` penalised-EM iterations.

    Every start is as in :func:`_seed` (nearest-seed assignment, one M-step); the runs go side by
    side in blocks of starts. Returns ``(penalised log-likelihood, (weights, means, covariances))``
    per start, in the order drawn.
    """
    n, d = X.shape
    k = n_components
    labels = []
    for _ in range(n_starts):
        centers, _ = kmeans_plusplus(X, k, rng)
        labels.append(np.argmin(np.einsum("kd,kd->k", centers, centers) - 2.0 * (X @ centers.T), axis=1))
    block = max(1, _SCREEN_BLOCK // (k * d * n))
    out: list[tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    for first in range(0, n_starts, block):
        chunk = labels[first : first + block]
        resp = np.zeros((len(chunk), k, n))
        for j, lab in enumerate(chunk):
            resp[j, lab, np.arange(n)] = 1.0
        for _ in range(n_iter + 1):
            params = _m_step_batch(X, resp, S_x, a_n)
            resp, penalized = _evaluate_batch(X, S_x, a_n, *params)
        out.extend((float(penalized[j]), (params[0][j], params[1][j], params[2][j])) for j in range(len(chunk)))
    return out


def _screened_starts(
    subset: np.ndarray, S_x: np.ndarray, n_components: int, n_init: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The starts in the order they are run: groups of ``_SCREEN_GROUP``, each screened only when reached."""
    for first in range(0, n_init, _SCREEN_GROUP):
        group = _screen(
            subset, S_x, subset.shape[0] ** -0.5, n_components, min(_SCREEN_GROUP, n_init - first), _SCREEN_ITER, rng
        )
        group.sort(key=lambda start: start[0], reverse=True)  # stable: ties keep the draw order
        for _, params in group:
            yield params


def _confirmed(runs: list[tuple[_State, list[float], bool]], agree: float) -> bool:
    """Whether ``_CONFIRMATIONS`` converged runs end within ``agree`` of the best final value."""
    top = max(state.penalized for state, _, _ in runs)
    return sum(converged and state.penalized >= top - agree for state, _, converged in runs) >= _CONFIRMATIONS


def as_data_matrix(X: ArrayLike, name: str = "X") -> np.ndarray:
    """``X`` as a new C-contiguous float64 array of shape (n, d); a 1-D array is one column.

    Raises
    ------
    ValueError
        If ``X`` is not numeric, not 1-D or 2-D, has no columns, or holds NaN or infinity.
    """
    try:
        arr = np.array(X, dtype=np.float64, order="C")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array of shape (n, d) ({exc}).") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} must be an array of shape (n, d) with d >= 1 (or 1-D for d = 1), got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.argmin(np.isfinite(arr).all(axis=1)))
        raise ValueError(
            f"{name} contains NaN or infinity (first in row {bad}); drop or impute those rows before fitting."
        )
    return arr


def _check_X(X: ArrayLike, n_components: int) -> np.ndarray:
    arr = as_data_matrix(X)
    n, d = arr.shape
    if n < n_components:
        raise ValueError(f"X has {n} rows but n_components = {n_components}; need at least one row per component.")
    if d > LIMITS.max_dim:
        raise ValueError(f"X has d = {d} columns, above the limit of {LIMITS.max_dim}.")
    if n <= d:
        raise ValueError(
            f"X has n = {n} rows and d = {d} columns; the penalty needs a positive-definite sample "
            "covariance, so n must exceed d. Use more data or fewer columns."
        )
    return arr


def _check_sample_covariance(S_x: np.ndarray) -> None:
    eig = np.linalg.eigvalsh(S_x)
    cond = eig[-1] / eig[0] if eig[0] > 0 else math.inf
    if cond > LIMITS.max_condition:
        raise ValueError(
            f"the sample covariance of X is singular or nearly so (condition number {cond:.3g} > "
            f"{LIMITS.max_condition:g}): some columns are constant or linearly dependent. Drop or combine "
            "them (e.g. keep the leading principal components) before fitting."
        )


def fit_local_detailed(
    X: ArrayLike,
    n_components: int,
    random_state: int | np.random.Generator | None = None,
    *,
    n_init: int = 16,
    max_iter: int = 500,
    tol: float = 1e-6,
) -> LocalFit:
    """Penalised MLE of a Gaussian mixture on one machine's data, with diagnostics.

    Maximises ``loglik(G) - a_n sum_k [tr(S_x Sigma_k^-1) + log det Sigma_k]``, ``a_n = n^(-1/2)``,
    ``S_x`` the sample covariance of ``X`` (divisor ``n - 1``), by EM from up to ``n_init``
    k-means++ starts, each run to convergence on all the data, keeping the best.

    The rule for the starts:

    1. Screen a group: the next ``min(8, n_init - s)`` starts (``s`` = starts drawn so far) are
       drawn from ``random_state``. Each is a k-means++ seeding of one random subset of
       ``m = min(n, max(1000, 20 K d))`` points (drawn once, shared by all starts; every subset
       point goes to its nearest seed, then one M-step), followed by 8 penalised-EM iterations on
       the subset (penalty scale ``m^(-1/2)``, the same ``S_x``). The screen only ORDERS the
       group, by penalised log-likelihood on the subset, best first; no start is dropped on its
       account.
    2. Full runs: in that order, each screened start is run by EM on ALL the data until it
       converges (``tol``) or reaches ``max_iter`` iterations. After each run the search stops
       ("confirmed") as soon as two runs that converged have final values within ``2 tol n`` of
       the best final value so far (the best run itself counts if it converged): the best
       maximum found has been reached twice. When a group is used up without confirmation, the
       next group is screened (step 1), until ``n_init`` starts have been run.
    3. Result: the run with the highest final penalised log-likelihood among ALL the starts run
       in step 2 (each run to convergence, or to ``max_iter``, on all the data): its value is
       ``penalized_loglik``, every run's final value is in ``start_penalized_logliks``. Starts
       not run (after confirmation) play no part; a start's screen value never decides the result.

    Why: on overlapping data a few EM iterations (on a subset or on all the data) often rank the
    starts differently from where they end, so running only the screen's leader to convergence
    can lose hundreds of log-likelihood units, while running every start costs ``n_init`` full
    runs. A run stops once an iteration gains less than ``tol n``, and EM's remaining gain is
    then about ``gain * rho / (1 - rho)`` (``rho`` its linear rate), so runs to the same maximum
    end within ``2 tol n`` of each other when ``rho <= 2/3``; runs to different maxima seldom
    do. On well-separated data nearly every start reaches the same maximum and two runs
    suffice (about 2.05 runs per machine in the paper's set-up, 180 machines measured), the
    screen putting starts stuck in poor maxima, which EM also leaves slowly, last. On
    overlapping data the search goes on, often through all ``n_init`` starts. A poor maximum is
    kept only if two converged runs reach it before any run finds a better one.

    Parameters
    ----------
    X : array_like, shape (n, d) or (n,)
        One machine's data; a 1-D array is one column (d = 1). Must be finite, with
        ``n >= n_components``, ``n > d`` and a non-singular sample covariance.
    n_components : int
        Number of components K >= 1.
    random_state : int, numpy.random.Generator or None, default None
        Seed or generator for the screening subset and the k-means++ starts.
    n_init : int, default 16
        Largest number of k-means++ starts, each screened and run to convergence on all the
        data until the best maximum is confirmed (see the rule above).
    max_iter : int, default 500
        Largest number of EM iterations of one start.
    tol : float, default 1e-6
        A run stops when one iteration raises the penalised log-likelihood by less than
        ``tol`` per point. Near the optimum the remaining gap per point is about
        ``tol * rho / (1 - rho)`` for EM's linear rate ``rho``, i.e. an optimisation error of
        squared size about ``2 tol rho / (1 - rho)`` in per-point Fisher units. That stays far
        below the sampling error ``p / N`` of even the pooled estimate (``p = 329``
        parameters, ``N = 100,000`` points in the paper's set-up: 3.3e-3) unless EM crawls
        (``rho > 0.99``); scikit-learn's default 1e-3 would not. As EM's gains shrink
        geometrically, 1e-6 costs only a few iterations more. With ``tol = 0`` a run ends only
        when an iteration lowers the value (by rounding) or at ``max_iter``, and two runs confirm
        each other only if their final values tie.

    Returns
    -------
    LocalFit
        The fitted mixture with its penalised and plain log-likelihoods, iteration count,
        convergence flag, the penalised log-likelihood trace of the returned run and the final
        value of every start that was run.

    Raises
    ------
    ValueError
        If ``X`` or an argument is invalid; the message says what to change.
    """
    check_int(n_components, "n_components", 1)
    check_int(n_init, "n_init", 1)
    check_int(max_iter, "max_iter", 1)
    if not (isinstance(tol, numbers.Real) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}.")
    X = _check_X(X, n_components)
    rng = np.random.default_rng(random_state)

    n, d = X.shape
    center = X.mean(axis=0)
    # Centring keeps U^T x and U^T mu (subtracted in the E-step) small and gives empty components
    # the data mean (see m_step); Fortran order makes X.T contiguous for the (K, d, n) layout.
    Xc = np.asfortranarray(X - center)
    S_x = sample_covariance(Xc)
    _check_sample_covariance(S_x)

    m = min(n, max(_SCREEN_MIN_SIZE, _SCREEN_POINTS_PER_PARAM * n_components * d))
    subset = Xc if m == n else np.asfortranarray(Xc[rng.choice(n, size=m, replace=False)])
    a_n = n**-0.5
    runs: list[tuple[_State, list[float], bool]] = []
    for params in _screened_starts(subset, S_x, n_components, n_init, rng):
        runs.append(_em(Xc, S_x, a_n, _evaluate(Xc, S_x, a_n, params), max_iter, tol))
        if _confirmed(runs, _AGREE_TOLS * tol * n):
            break
    final, history, converged = max(runs, key=lambda run: run[0].penalized)  # ties: the earliest

    mixture = GaussianMixtureParams(final.weights, final.means + center, final.covariances, normalize=True,
                                    n_samples=n)
    return LocalFit(
        mixture=mixture,
        penalized_loglik=final.penalized,
        loglik=final.loglik,
        n_iter=len(history) - 1,
        converged=converged,
        n_init=int(n_init),
        history=tuple(history),
        start_penalized_logliks=tuple(state.penalized for state, _, _ in runs),
    )


def fit_local(
    X: ArrayLike,
    n_components: int,
    random_state: int | np.random.Generator | None = None,
    *,
    n_init: int = 16,
    max_iter: int = 500,
    tol: float = 1e-6,
) -> GaussianMixtureParams:
    """Penalised MLE of a K-component Gaussian mixture on one machine's data.

    Maximises ``loglik(G) - a_n sum_k [tr(S_x Sigma_k^-1) + log det Sigma_k]`` with
    ``a_n = n^(-1/2)`` and ``S_x`` the sample covariance of ``X``, by EM from up to ``n_init``
    k-means++ starts, each run to convergence on all the data, keeping the best.
    :func:`fit_local_detailed` states the rule for the number of starts, documents the
    parameters and also returns the diagnostics (penalised log-likelihood, iterations,
    convergence, every start's value).

    Parameters
    ----------
    X : array_like, shape (n, d) or (n,)
        One machine's data.
    n_components : int
        Number of components K.
    random_state : int, numpy.random.Generator or None, default None
        Seed or generator for the screening subset and the k-means++ starts.
    n_init, max_iter, tol
        As in :func:`fit_local_detailed`.

    Returns
    -------
    GaussianMixtureParams
        The fitted mixture.

    Raises
    ------
    ValueError
        If ``X`` or an argument is invalid.
    """
    return fit_local_detailed(X, n_components, random_state, n_init=n_init, max_iter=max_iter, tol=tol).mixture
