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

Covariance models (``covariance_type``: scikit-learn's four types, mclust's fourteen; issue 21): the
penalised complete-data objective of a component is that of the plain likelihood with the augmented
scatter ``W_k + 2 a_n S_x`` and count ``n_k + 2 a_n``, so the M-step is the model's own constrained
M-step (:meth:`dfmr.covariance.CovarianceModel.m_step`) on those; "full" (mclust's VVV) is the formula
above. ``penalty`` multiplies ``a_n`` (0: the plain MLE, whose degenerate runs are dropped).

The EM loop follows ``sklearn/mixture``: small module-level pieces (:func:`kmeans_plusplus`,
:func:`estimate_log_gaussian_prob`, :func:`e_step`, :func:`m_step`, :func:`penalized_loglik`)
that tests call alone, Cholesky factors of precisions and log-sum-exp throughout. Inside a fit
every EM iteration is ONE pass over the data in row blocks, two BLAS-3 products per block on the
augmented design ``a(x) = [1, x, x_a x_b (a <= b)]`` of the centred rows (:class:`_Design`): a
Gaussian log-density is linear in ``a(x)``, so one (K, q) x (q, rows) product gives the E-step's
log-densities of all components, and one (K, rows) x (rows, q) product all of the M-step's
moments (counts, sums, second moments). Nothing elementwise grows with K but the log-sum-exp, and
the extra memory is one block (or the design of the whole machine, up to 32 MiB, built once).
Staying in NumPy was chosen by measurement (vignettes/performance.md, issue 7): the passes are
BLAS-bound. Scoring (:func:`dfmr.params.gaussian_log_prob`) keeps the form ``|U^T (x - mu)|^2``,
whose rounding does not depend on the distance from the data mean.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._validation import check_int
from .covariance import CovarianceModel, get_model
from .params import LIMITS, GaussianMixtureParams, precision_factor, row_blocks
from .params import gaussian_log_prob as estimate_log_gaussian_prob

__all__ = [
    "LocalFit",
    "e_step",
    "estimate_log_gaussian_prob",
    "fit_local",
    "fit_local_detailed",
    "kmeans_plusplus",
    "m_step",
    "n_parameters",
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
# _SCREEN_POINTS_PER_PARAM * K * d) points, which only orders them; they are then run on all the data in
# that order, _RACE at a time, until _CONFIRMATIONS converged runs end within _AGREE_TOLS * tol * p / 2 of
# the best final value (p free parameters).
_SCREEN_GROUP = 8
_SCREEN_ITER = 8
_SCREEN_MIN_SIZE = 1000
_SCREEN_POINTS_PER_PARAM = 20
_CONFIRMATIONS = 2
_AGREE_TOLS = 2.0
# A full run is abandoned once even _HOPELESS_MARGIN times its projected remaining gain cannot bring it
# within _AGREE_TOLS * tol * p / 2 of a value another run is known to reach, judged after _HOPELESS_AFTER
# iterations of shrinking gains (fit_local_detailed, step 2).
_HOPELESS_MARGIN = 10.0
_HOPELESS_AFTER = 4
# Starts run _RACE at a time, side by side (fit_local_detailed, step 2).
_RACE = 2


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
        (``1 <= len <= n_init``); ``penalized_loglik`` is their maximum (``-inf`` for a start
        dropped as degenerate without a penalty).
    covariance_type : str
        mclust's name of the covariance model fitted (:func:`dfmr.covariance.get_model`), e.g.
        "VVV" for "full"; the mixture's covariances belong to it.
    """

    mixture: GaussianMixtureParams
    penalized_loglik: float
    loglik: float
    n_iter: int
    converged: bool
    n_init: int
    history: tuple[float, ...]
    start_penalized_logliks: tuple[float, ...]
    covariance_type: str = "VVV"


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
    ``Sigma_k`` (:func:`dfmr.params.precision_factor`).

    Parameters
    ----------
    covariances : ndarray, shape (..., K, d, d)
        Symmetric positive-definite matrices (any leading dimensions).

    Returns
    -------
    ndarray, shape (..., K, d, d)
    """
    return precision_factor(np.linalg.cholesky(covariances))


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
    resp = estimate_log_gaussian_prob(X, means, prec_chol)
    return float(_normalize(resp.T, np.log(weights))), resp


def _normalize(log_prob_t: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    """Turn ``log N`` in (..., K, rows) layout into responsibilities in place (log-sum-exp over K).

    ``log_weights`` has shape (..., K). Returns the log-likelihood of the rows, shape (...).
    """
    log_prob_t += log_weights[..., None]
    col_max = log_prob_t.max(axis=-2, keepdims=True)
    log_prob_t -= col_max
    np.exp(log_prob_t, out=log_prob_t)
    total = log_prob_t.sum(axis=-2, keepdims=True)
    log_prob_t /= total
    return (col_max + np.log(total)).sum(axis=(-2, -1))


# The data of a machine are held as blocks of the augmented design (see _Design) when that takes at
# most this many doubles (32 MiB: every machine of the paper's set-up up to 50,000 points, d = 10);
# larger data rebuild each block in every pass (one elementwise product per column pair), so the
# extra memory stays one block whatever n is.
_DESIGN_CACHE_DOUBLES = 1 << 22


class _Design:
    """The rows of ``X`` as blocks of the augmented design ``a(x) = [1, x, x_a x_b (a <= b)]``.

    With ``q = 1 + d + d (d + 1) / 2`` columns, both halves of an EM pass are one BLAS-3 product per
    block: the log-densities of all components are ``Theta @ A`` (:func:`_theta`: ``log N(x; mu, Sigma)``
    is linear in ``a(x)``), and all the M-step's moments ``sum_i r_ij a(x_i)`` (counts, first and
    second moments) are ``resp @ A^T``. No elementwise work grows with the number of components, so
    the S K components of S runs side by side cost little more than K. Each block is held (q, rows).
    The second moments are about the origin, so ``X`` should be centred (fit_local centres it).
    """

    def __init__(self, X: np.ndarray) -> None:
        n, d = X.shape
        self.X = X
        self.d = d
        self.q = 1 + d + d * (d + 1) // 2
        self.blocks = row_blocks(n, self.q)
        cache = n * self.q <= _DESIGN_CACHE_DOUBLES
        self._cached = [self._build(rows) for rows in self.blocks] if cache else None

    def _build(self, rows: slice) -> np.ndarray:
        xt = self.X[rows].T
        d = self.d
        out = np.empty((self.q, xt.shape[1]))
        out[0] = 1.0
        out[1 : 1 + d] = xt
        offset = 1 + d
        for a in range(d):
            np.multiply(xt[a], xt[a:], out=out[offset : offset + d - a])
            offset += d - a
        return out

    def __iter__(self) -> Iterator[tuple[slice, np.ndarray]]:
        for i, rows in enumerate(self.blocks):
            yield rows, self._cached[i] if self._cached is not None else self._build(rows)

    def moments(self, resp_t: np.ndarray) -> np.ndarray:
        """``sum_i r_ji a(x_i)`` for responsibilities in (C, n) layout, shape (C, q)."""
        out = np.zeros((resp_t.shape[0], self.q))
        for rows, block in self:
            out += resp_t[:, rows] @ block.T
        return out


@functools.lru_cache(maxsize=64)
def _upper(d: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(d)``, built once per d: every EM pass needs them twice, and at a few thousand rows
    building them anew was a measurable share of a pass (read-only, since the cache shares them)."""
    rows, cols = np.triu_indices(d)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def _theta(means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
    """Coefficients (C, q) with ``Theta @ a(x) = log N(x; mu_j, Sigma_j)`` for every component j.

    ``log N = log det U - d/2 log 2 pi - (x - mu)^T P (x - mu) / 2`` with ``P = U U^T``, expanded:
    the constant ``- mu^T P mu / 2``, the linear ``(P mu)^T x`` and the quadratic ``- P_aa / 2`` on
    ``x_a^2`` and ``- P_ab`` on ``x_a x_b`` (a < b).
    """
    d = means.shape[1]
    precisions = prec_chol @ np.swapaxes(prec_chol, -1, -2)
    p_mu = np.einsum("cab,cb->ca", precisions, means)
    upper_a, upper_b = _upper(d)
    const = (np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1) - 0.5 * d * _LOG_2PI
             - 0.5 * np.einsum("ca,ca->c", p_mu, means))
    quadratic = precisions[:, upper_a, upper_b] * np.where(upper_a == upper_b, -0.5, -1.0)
    return np.concatenate([const[:, None], p_mu, quadratic], axis=1)


def _from_moments(
    moments: np.ndarray,
    S_x: np.ndarray,
    a_n: float,
    n_runs: int,
    model: CovarianceModel,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The penalised M-step (:func:`m_step`) of ``n_runs`` runs from :meth:`_Design.moments`.

    The covariances are ``model``'s M-step on the augmented scatters ``W_k + 2 a_n S_x`` and counts
    ``n_k + 2 a_n``, from ``start`` (the runs' covariances before, shape (S, K, d, d); by default the
    unconstrained ones) for the iterative models. Returns shapes (S, K), (S, K, d), (S, K, d, d).
    """
    d = S_x.shape[0]
    nk, first = moments[:, 0], moments[:, 1 : 1 + d]
    upper_a, upper_b = _upper(d)
    second = np.empty((moments.shape[0], d, d))
    second[:, upper_a, upper_b] = moments[:, 1 + d :]
    second[:, upper_b, upper_a] = moments[:, 1 + d :]
    means = first / (nk + _NK_FLOOR)[:, None]
    # sum_i r_ij (x_i - mu_j)(x_i - mu_j)^T = second - (first mu_j^T): about the centred data's origin,
    # the cancellation is that of the component's distance from the data mean to its spread.
    scatter = second - first[:, :, None] * means[:, None, :]
    # Without a penalty an empty component has 0 / 0 as covariance: its run is then degenerate
    # (_precision_factors), which is how such runs are recognised, so the warning says nothing more.
    with np.errstate(divide="ignore", invalid="ignore"):
        augmented = (scatter + 2.0 * a_n * S_x).reshape(n_runs, -1, d, d)
        counts = (nk + 2.0 * a_n).reshape(n_runs, -1)
        if start is None and model.iterative:
            # No iterate before (a start's first M-step): the iterative models start from the unconstrained
            # covariances and take a few rounds, a step from there, instead of solving to the end.
            start = augmented / counts[..., None, None]
        covariances = model.m_step(augmented, counts, start)
    nk = nk.reshape(n_runs, -1)
    weights = (nk + _NK_FLOOR) / (nk.sum(axis=1, keepdims=True) + nk.shape[1] * _NK_FLOOR)
    return weights, means.reshape(n_runs, -1, d), covariances


def m_step(
    X: np.ndarray,
    resp: np.ndarray,
    S_x: np.ndarray,
    a_n: float,
    covariance_type: str = "full",
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M-step of the penalised EM (DESIGN.md, "Local estimate").

    ``w_k = n_k / n``, ``mu_k = sum_i r_ik x_i / n_k`` and, for the default "full" model,
    ``Sigma_k = (sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T + 2 a_n S_x) / (n_k + 2 a_n)``,
    with ``n_k = sum_i r_ik``; another model's covariances are its constrained M-step
    (:meth:`dfmr.covariance.CovarianceModel.m_step`) on the same augmented scatters and counts.
    Computed in row blocks (BLAS-3, extra memory of one block).

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Data (fastest in Fortran order).
    resp : ndarray, shape (n, K)
        Responsibilities, rows summing to one (fastest as returned by :func:`e_step`).
    S_x : ndarray, shape (d, d)
        Sample covariance of the data.
    a_n : float
        Penalty scale, ``n ** -0.5`` in dfmr (0: the plain likelihood).
    covariance_type : str, default "full"
        Covariance model (:func:`dfmr.covariance.get_model`).
    start : ndarray, shape (K, d, d), optional
        Covariances the iterative models start from (the EM iterate before).

    Returns
    -------
    weights : ndarray, shape (K,)
    means : ndarray, shape (K, d)
    covariances : ndarray, shape (K, d, d)

    Notes
    -----
    ``n_k`` is raised by ``10 * eps`` before it divides, as in scikit-learn, so a component
    with no responsibility keeps a tiny positive weight; its mean is then the data mean and
    its covariance ``S_x`` itself. The moments are taken about the data mean, from the
    augmented design ``[1, x, x_a x_b]`` of the centred rows (one BLAS-3 product per block).
    Inside :func:`fit_local` each M-step is fused with the E-step before it (one pass over
    the data per iteration, the same design serving both); both use the same code.
    """
    center = X.mean(axis=0)
    model = get_model(covariance_type, X.shape[1])
    weights, means, covariances = _from_moments(_Design(X - center).moments(resp.T), S_x, a_n, 1, model,
                                                None if start is None else np.asarray(start)[None])
    return weights[0], means[0] + center, covariances[0]


def _penalty(S_x: np.ndarray, prec_chol: np.ndarray, a_n: float) -> np.ndarray:
    """``a_n sum_k [tr(S_x Sigma_k^-1) + log det Sigma_k]`` from precision Cholesky factors (..., K, d, d)."""
    precisions = prec_chol @ np.swapaxes(prec_chol, -1, -2)
    trace = np.einsum("ij,...ij->...", S_x, precisions)  # tr(S P) = sum(S * P) for symmetric S
    log_det_cov = -2.0 * np.log(np.diagonal(prec_chol, axis1=-2, axis2=-1)).sum(axis=-1)
    return a_n * (trace + log_det_cov).sum(axis=-1)


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
    return loglik - float(_penalty(S_x, prec_chol, a_n))


def _precision_factors(covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`precision_cholesky` of (S, K, d, d) covariances, and which of the S runs have them.

    A run with a covariance that is not finite or not positive definite (only possible without a
    penalty: a component collapsed on fewer than d + 1 points, or emptied) is degenerate; its factors
    are identities, so that the other runs of the pass go on.
    """
    ok = np.isfinite(covariances).all(axis=(1, 2, 3))
    identity = np.broadcast_to(np.eye(covariances.shape[-1]), covariances.shape[1:])
    safe = np.where(ok[:, None, None, None], covariances, identity)
    try:
        return precision_cholesky(safe), ok
    except np.linalg.LinAlgError:
        factors = np.empty_like(safe)
        for run, matrices in enumerate(safe):
            try:
                factors[run] = precision_cholesky(matrices)
            except np.linalg.LinAlgError:
                ok[run], factors[run] = False, identity
        return factors, ok


def _em_pass(
    design: _Design,
    S_x: np.ndarray,
    a_n: float,
    params: tuple[np.ndarray, np.ndarray, np.ndarray],
    model: CovarianceModel,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One pass over the data for S runs side by side: E-step at ``params`` and the M-step after it.

    ``params`` are (S, K), (S, K, d) and (S, K, d, d) arrays. Returns the log-likelihood and the
    penalised log-likelihood of ``params`` (shape (S,) each; ``-inf`` for a degenerate run, see
    :func:`_precision_factors`) and the next parameters (``model``'s M-step). Per block of rows: one
    product for the log-densities of every component, the responsibilities in place, one product for
    the moments (:class:`_Design`).
    """
    weights, means, covariances = params
    n_runs, k, d = means.shape
    prec_chol, ok = _precision_factors(covariances)
    theta = _theta(means.reshape(-1, d), prec_chol.reshape(-1, d, d))
    log_weights = np.log(weights)
    moments = np.zeros_like(theta)
    loglik = np.zeros(n_runs)
    for _, block in design:
        resp_t = theta @ block
        loglik += _normalize(resp_t.reshape(n_runs, k, -1), log_weights)
        moments += resp_t @ block.T
    loglik[~ok] = -math.inf
    start = np.where(ok[:, None, None, None], covariances, np.eye(d))
    following = _from_moments(moments, S_x, a_n, n_runs, model, start)
    return loglik, loglik - _penalty(S_x, prec_chol, a_n), following


@dataclass(frozen=True)
class _Run:
    """The result of one EM run: its last evaluated parameters, their values, the trace, convergence."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    loglik: float
    penalized: float
    history: list[float]
    converged: bool


def _converged(history: list[float], threshold: float) -> bool:
    """EM's stopping rule: the projected remaining gain of the penalised log-likelihood is <= ``threshold``.

    With gains ``g_t`` shrinking at EM's linear rate ``rho ~ g_t / g_(t-1)``, the remaining gain is
    ``g_t rho / (1 - rho) = g_t^2 / (g_(t-1) - g_t)`` (Aitken); the last gain must also be below the
    threshold. An iteration that gains nothing (by rounding) always ends the run.
    """
    if len(history) < 2:
        return False
    gain = history[-1] - history[-2]
    if gain <= 0.0:
        return True
    if len(history) < 3 or gain > threshold:
        return False
    slowdown = history[-2] - history[-3] - gain
    return slowdown > 0.0 and gain * gain <= threshold * slowdown


def _hopeless(history: list[float], floor: float) -> bool:
    """Whether a run cannot end at ``floor`` or above: even ``_HOPELESS_MARGIN`` times its projected remaining
    gain (Aitken, as in :func:`_converged`) leaves it below, after at least ``_HOPELESS_AFTER`` iterations of
    gains that shrank at every step (EM's linear phase: a run still accelerating is never judged)."""
    if len(history) < _HOPELESS_AFTER + 1:
        return False
    gains = np.diff(history[-_HOPELESS_AFTER - 1 :])
    if not (np.all(gains > 0.0) and np.all(np.diff(gains) < 0.0)):
        return False
    remaining = gains[-1] * gains[-1] / (gains[-2] - gains[-1])
    return history[-1] + _HOPELESS_MARGIN * remaining < floor


def _race(
    design: _Design,
    S_x: np.ndarray,
    a_n: float,
    starts: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]],
    max_iter: int,
    threshold: float,
    best: float,
    agree: float,
    model: CovarianceModel,
) -> list[_Run]:
    """EM runs of the next starts, ``_RACE`` side by side (one pass over the data for all per iteration).

    Each run ends when it has :func:`_converged`, after ``max_iter`` of its iterations, or unconverged once
    it is :func:`_hopeless` against ``F - agree``, ``F`` the largest of ``best`` (the best converged value
    so far), the values of the runs of this race that converged and the current values of the others (EM
    never decreases a run's value, so each is a value some run ends at or above), or unconverged with
    value ``-inf`` once it is degenerate (:func:`_precision_factors`). A run that ends unconverged is
    replaced at once by the next start. ``model`` is the covariance model. Returns the runs in the order
    started, once none is left running (empty when ``starts`` is used up).
    """
    histories: list[list[float]] = []
    current: dict[int, tuple[np.ndarray, ...]] = {}
    done: dict[int, _Run] = {}
    active: list[int] = []

    def start_next() -> None:
        params = next(starts, None)
        if params is not None:
            current[len(histories)] = params
            active.append(len(histories))
            histories.append([])

    for _ in range(_RACE):
        start_next()
    while active:
        params = tuple(np.concatenate(arrays) for arrays in zip(*(current[run] for run in active)))
        loglik, penalized, following = _em_pass(design, S_x, a_n, params, model)
        running, replace = [], 0
        for j, run in enumerate(active):
            history = histories[run]
            history.append(float(penalized[j]))
            others = max((float(penalized[i]) for i in range(len(active)) if i != j), default=-math.inf)
            degenerate = not math.isfinite(history[-1])
            converged = not degenerate and _converged(history, threshold)
            ended = degenerate or converged or len(history) > max_iter
            if ended or _hopeless(history, max(best, others) - agree):
                # The run reports the parameters evaluated last, so its value is exact (no un-evaluated M-step).
                weights, means, covariances = (p[j] for p in params)
                done[run] = _Run(weights, means, covariances, float(loglik[j]), history[-1], history, converged)
                best = max(best, history[-1]) if converged else best
                replace += not converged
            else:
                running.append(run)
                current[run] = tuple(p[j : j + 1] for p in following)
        active[:] = running
        for _ in range(replace):
            start_next()
    return [done[run] for run in range(len(histories))]


def n_parameters(n_components: int, dim: int, covariance_type: str = "full") -> int:
    """Free parameters of a K-component Gaussian mixture in d dimensions with a covariance model.

    ``K - 1 + K d + K d (d + 1) / 2`` for "full";
    :meth:`dfmr.covariance.CovarianceModel.n_parameters` for every model.
    """
    return get_model(covariance_type, dim).n_parameters(n_components, dim)


def _seeds(X: np.ndarray, n_components: int, n_runs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_runs`` starts: k-means++ centres, every point to its nearest centre; one-hot (S K, n) responsibilities."""
    n = X.shape[0]
    resp_t = np.zeros((n_runs * n_components, n))
    for run in range(n_runs):
        centers, _ = kmeans_plusplus(X, n_components, rng)
        nearest = np.argmin(np.einsum("kd,kd->k", centers, centers) - 2.0 * (X @ centers.T), axis=1)
        resp_t[run * n_components + nearest, np.arange(n)] = 1.0
    return resp_t


def _screened_starts(
    subset: np.ndarray,
    S_x: np.ndarray,
    n_components: int,
    n_init: int,
    rng: np.random.Generator,
    model: CovarianceModel,
    penalty: float,
    init: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The starts in the order they are run: groups of ``_SCREEN_GROUP``, each screened only when reached.

    Screening is :func:`_seeds` on the subset, one M-step and ``_SCREEN_ITER`` EM iterations there (the
    same EM as the full runs with covariance model ``model``, all starts of the group side by side, penalty
    scale ``penalty * m^(-1/2)``); the group is then ordered by the penalised log-likelihood reached, best
    first (stable: ties keep the draw order). ``init`` (S0, K, ...) arrays are given starts (centred like
    the subset): they join the first group, which k-means++ seeds fill up to ``_SCREEN_GROUP``, and only
    the best ``min(_SCREEN_GROUP, n_init)`` of that group are yielded. Yields (1, K, ...) parameter arrays.
    """
    a_m = penalty * subset.shape[0] ** -0.5
    design = _Design(subset)
    for first in range(0, n_init, _SCREEN_GROUP):
        n_runs = min(_SCREEN_GROUP, n_init - first)
        n_given = 0 if first or init is None else init[0].shape[0]
        n_seeds = max(_SCREEN_GROUP - n_given, 0) if n_given else n_runs
        params = init if n_given else None
        if n_seeds:
            seeded = _from_moments(design.moments(_seeds(subset, n_components, n_seeds, rng)), S_x, a_m, n_seeds,
                                   model)
            params = seeded if params is None else tuple(np.concatenate(pair) for pair in zip(params, seeded))
        for _ in range(_SCREEN_ITER + 1):
            _, penalized, following = _em_pass(design, S_x, a_m, params, model)
            params, current = following, params
        for run in sorted(range(n_given + n_seeds), key=lambda j: -penalized[j])[:n_runs]:
            yield tuple(p[run : run + 1] for p in current)


def _confirmed(runs: list[_Run], agree: float) -> bool:
    """Whether ``_CONFIRMATIONS`` converged runs end within ``agree`` of the best final value."""
    top = max(run.penalized for run in runs)
    return sum(run.converged and run.penalized >= top - agree for run in runs) >= _CONFIRMATIONS


def as_data_matrix(X: ArrayLike, name: str = "X") -> np.ndarray:
    """``X`` as a C-contiguous float64 array of shape (n, d); a 1-D array is one column.

    No copy is made when ``X`` already is a C-contiguous float64 array (then the result is ``X``
    itself, or a 2-D view of a 1-D ``X``): callers only read it.

    Raises
    ------
    ValueError
        If ``X`` is not numeric, not 1-D or 2-D, has no columns, or holds NaN or infinity.
    """
    try:
        arr = np.asarray(X, dtype=np.float64, order="C")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array of shape (n, d) ({exc}).") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} must be an array of shape (n, d) with d >= 1 (or 1-D for d = 1), got shape {arr.shape}."
        )
    # Checked in row blocks: a whole boolean mask would be another n d bytes.
    for rows in row_blocks(arr.shape[0], arr.shape[1]):
        finite = np.isfinite(arr[rows]).all(axis=1)
        if not finite.all():
            bad = rows.start + int(np.argmin(finite))
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
    tol: float = 1e-4,
    covariance_type: str = "full",
    penalty: float = 1.0,
    init: Sequence[GaussianMixtureParams] = (),
) -> LocalFit:
    """Penalised MLE of a Gaussian mixture on one machine's data, with diagnostics.

    Maximises ``loglik(G) - a_n sum_k [tr(S_x Sigma_k^-1) + log det Sigma_k]``, ``a_n = c n^(-1/2)``
    (``c = penalty``, 1 by default; 0 gives the plain MLE), ``S_x`` the sample covariance of ``X``
    (divisor ``n - 1``), over the mixtures whose covariances belong to ``covariance_type``, by EM
    from up to ``n_init`` k-means++ starts, each run on all the data (to convergence unless it cannot
    catch up), keeping the best. The M-step is the model's (:mod:`dfmr.covariance`) on the augmented
    scatters ``W_k + 2 a_n S_x`` and counts ``n_k + 2 a_n``.

    The rule for the starts:

    1. Screen a group: the next ``min(8, n_init - s)`` starts (``s`` = starts drawn so far) are
       drawn from ``random_state``. Each is a k-means++ seeding of one random subset of
       ``m = min(n, max(1000, 20 K d))`` points (drawn once, shared by all starts; every subset
       point goes to its nearest seed, then one M-step), followed by 8 penalised-EM iterations on
       the subset (penalty scale ``c m^(-1/2)``, the same ``S_x``; the starts of a group run side by
       side through the same EM code). The screen only ORDERS the group, by penalised
       log-likelihood on the subset, best first; no start is dropped on its account. Given starts
       (``init``) join the first group, k-means++ seeds fill it up to 8, and the best
       ``min(8, n_init)`` of that group are run (so ``init`` competes with the seeds, and ``n_init``
       still bounds the number of runs).
    2. Full runs: in that order, the screened starts are run by EM on ALL the data, two at a
       time side by side (one pass over the data serves both), each until it converges (``tol``,
       below), reaches ``max_iter`` iterations, or is abandoned as hopeless (below); a run that
       ends unconverged is replaced at once by the next start. When no run is left running, the
       search stops ("confirmed") if two runs that converged have final values within
       ``tol * p`` of the best final value so far (``p`` the number of free parameters; the best
       run itself counts if it converged): the best maximum found has been reached twice; else
       the next two starts are run. When a group is used up, the next group is screened (step
       1), until ``n_init`` starts have been run.

       Hopeless: let ``F`` be the largest value some run is known to end at or above: the best
       converged run so far, or the current value of the other run of the pair (EM never
       lowers a run's value). A run is abandoned, unconverged, when after at least 4 iterations
       whose gains shrank at every step, its value plus 10 times its projected remaining gain
       (Aitken, as in ``tol``) is below ``F - tol * p``. Such a run could neither become the
       result nor confirm it (both need a final value within ``tol * p`` of the best).
    3. Result: the run with the highest final penalised log-likelihood among ALL the starts run
       in step 2: its value is ``penalized_loglik``, every run's final value (an abandoned run's
       when it was abandoned) is in ``start_penalized_logliks``. Starts not run (after
       confirmation) play no part; a start's screen value never decides the result.

    Why: on overlapping data a few EM iterations (on a subset or on all the data) often rank the
    starts differently from where they end, so running only the screen's leader to convergence
    can lose hundreds of log-likelihood units, while running every start costs ``n_init`` full
    runs. A converged run is within ``tol p / 2`` of its maximum (see ``tol``), so two runs to
    the same maximum end within ``tol p / 2`` of each other, and the rule allows twice that;
    runs to different maxima seldom end that close. On well-separated data nearly every start
    reaches the same maximum and two runs suffice (2.0 runs per machine in the paper's set-up),
    the screen putting starts stuck in poor maxima, which EM also leaves slowly, last. On
    overlapping data the search goes on, often through all ``n_init`` starts. A poor maximum is
    kept only if two converged runs reach it before any run finds a better one.

    What changed from the previous release, and why it keeps the result: confirmation and result
    are as before, but starts run in pairs and hopeless runs stop early (and make room for the
    next start). The cost of the previous
    rule was in runs to poor maxima, which EM climbs slowly (its rate near 1): on the paper's
    set-up at 5,000 points a machine, one such run in a few machines took 100-500 iterations,
    10 times the median machine. Racing two starts gives every run a reference value from its
    first iterations, not only after a full run, and the margin of 10 on the projection (exact
    for a geometric tail) leaves room for EM's rate to creep towards 1. The risk is a run that
    crawls along a ridge and then climbs past ``F``: its gains would have to grow again after
    shrinking for 4 iterations, which a gain sequence in EM's linear phase does not do. Measured
    (``tests/test_local.py``, racing test): on the test problems the result is the previous
    rule's maximum (within ``tol * p``) with estimates within a quarter of a standard error.

    Parameters
    ----------
    X : array_like, shape (n, d) or (n,)
        One machine's data; a 1-D array is one column (d = 1). Must be finite, with
        ``n >= n_components``, ``n > d`` and a non-singular sample covariance. Never modified.
    n_components : int
        Number of components K >= 1.
    random_state : int, numpy.random.Generator or None, default None
        Seed or generator for the screening subset and the k-means++ starts.
    n_init : int, default 16
        Largest number of k-means++ starts, each screened and run on all the data (to
        convergence unless hopeless) until the best maximum is confirmed (see the rule above).
    max_iter : int, default 500
        Largest number of EM iterations of one start.
    tol : float, default 1e-4
        Convergence tolerance, relative to the sampling scale ``p / 2`` of the penalised log-likelihood,
        ``p`` the number of free parameters (``K - 1 + K d + K d (d + 1) / 2`` for "full";
        :func:`n_parameters` for every model) (twice the log-likelihood ratio of the maximiser to the
        truth is about chi-squared with ``p`` degrees of freedom). A run stops when the remaining gain
        of the penalised log-likelihood, projected from its last two gains (Aitken: EM's gains shrink
        geometrically at its linear rate ``rho``, and ``g_t rho / (1 - rho)`` remain after a gain
        ``g_t``), and the last gain are both at most ``tol p / 2``. Why this scale: a remaining gap
        ``G`` puts the estimate at squared distance about ``2 G`` from the maximiser in the metric of
        the observed information, in which the sampling error of the estimate has expected squared size
        ``p``; ``tol`` is the ratio of the two (at the default, 1e-4 of the sampling error's squared
        size, and in any single direction at most ``sqrt(tol p)`` standard errors: 0.18 for the paper's
        K = 5, d = 10, p = 329). The rule needs no unit of the data and no ``n``: a criterion relative
        to ``|pl|`` would depend on the units of ``X`` (they shift the log-density) and would be too
        loose at large ``n`` (``|pl|`` grows like ``n``, the sampling scale does not), and one per point
        (the previous ``tol * n``) too loose at large ``n`` and too tight at small ``n``. With
        ``tol = 0`` a run ends only when an iteration does not raise the value (by rounding) or at
        ``max_iter``, and two runs confirm each other only if their final values tie.
    covariance_type : str, default "full"
        Covariance model: scikit-learn's "full", "tied", "diag", "spherical" or an mclust model name
        (:func:`dfmr.covariance.get_model`; in one dimension only E and V exist, "tied" is E and the
        other scikit-learn names are V).
    penalty : float, default 1.0
        Multiplier ``c >= 0`` of the penalty scale ``a_n = c n^(-1/2)``. With 0 the fit is the plain
        MLE, which is unbounded: a start whose component collapses onto fewer than d + 1 points (a
        covariance that is not positive definite) is dropped, and if every start does so a
        ``ValueError`` says to use a penalty.
    init : sequence of GaussianMixtureParams, default ()
        Given starts (e.g. a neighbouring fit, :func:`dfmr.selection.split_starts`), each with
        ``n_components`` components in ``d`` dimensions; covariances outside ``covariance_type`` are
        first projected onto it (the model's M-step on ``w_k Sigma_k``). They are screened with the
        first group of k-means++ starts (step 1).

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
    if isinstance(penalty, bool) or not (isinstance(penalty, numbers.Real) and math.isfinite(penalty) and penalty >= 0):
        raise ValueError(f"penalty must be a finite number >= 0, got {penalty!r}.")
    X = _check_X(X, n_components)
    model = get_model(covariance_type, X.shape[1])
    rng = np.random.default_rng(random_state)

    n, d = X.shape
    center = X.mean(axis=0)
    # Centring keeps the design's second moments x_a x_b, and what the passes subtract from them, on the
    # scale of the spread of the data, and gives empty components the data mean (see m_step); Fortran
    # order makes the rows of a block's X.T contiguous. With the design (_Design) it is the only copy of X
    # a local fit makes (X itself is never written).
    Xc = np.subtract(X, center, out=np.empty((n, d), order="F"))
    S_x = sample_covariance(Xc)
    _check_sample_covariance(S_x)

    m = min(n, max(_SCREEN_MIN_SIZE, _SCREEN_POINTS_PER_PARAM * n_components * d))
    subset = Xc if m == n else np.asfortranarray(Xc[rng.choice(n, size=m, replace=False)])
    a_n = penalty * n**-0.5
    threshold = tol * model.n_parameters(n_components, d) / 2.0
    design = _Design(Xc)
    runs: list[_Run] = []
    starts = _screened_starts(subset, S_x, n_components, n_init, rng, model, penalty,
                              _given_starts(init, n_components, center, model))
    while True:
        best = max((run.penalized for run in runs if run.converged), default=-math.inf)
        raced = _race(design, S_x, a_n, starts, max_iter, threshold, best, _AGREE_TOLS * threshold, model)
        runs += raced
        if not raced or _confirmed(runs, _AGREE_TOLS * threshold):
            break
    final = max(runs, key=lambda run: run.penalized)  # ties: the earliest
    if not math.isfinite(final.penalized):
        raise ValueError(
            f"every start collapsed a component onto too few points for a {model.name} covariance (the "
            "likelihood without a penalty is unbounded there); use penalty > 0, fewer components or a more "
            "constrained covariance_type."
        )

    mixture = GaussianMixtureParams(final.weights, final.means + center, final.covariances, normalize=True,
                                    n_samples=n, covariance_type=model.name)
    return LocalFit(
        mixture=mixture,
        penalized_loglik=final.penalized,
        loglik=final.loglik,
        n_iter=len(final.history) - 1,
        converged=final.converged,
        n_init=int(n_init),
        history=tuple(final.history),
        start_penalized_logliks=tuple(run.penalized for run in runs),
        covariance_type=model.name,
    )


def _given_starts(
    init: Sequence[GaussianMixtureParams], n_components: int, center: np.ndarray, model: CovarianceModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Given starts as (S0, K, ...) arrays about the centred data, covariances in ``model``."""
    if not init:
        return None
    d = center.shape[0]
    for mix in init:
        if not isinstance(mix, GaussianMixtureParams) or mix.n_components != n_components or mix.dim != d:
            raise ValueError(f"init must hold GaussianMixtureParams with {n_components} components in d = {d}, "
                             f"got {mix!r}.")
    weights = np.array([mix.weights for mix in init])
    covariances = np.array([mix.covariances for mix in init])
    for s, cov in enumerate(covariances):
        if not model.contains(cov):
            covariances[s] = model.m_step(weights[s][:, None, None] * cov, weights[s])
    return weights, np.array([mix.means - center for mix in init]), covariances


def fit_local(
    X: ArrayLike,
    n_components: int,
    random_state: int | np.random.Generator | None = None,
    *,
    n_init: int = 16,
    max_iter: int = 500,
    tol: float = 1e-4,
    covariance_type: str = "full",
    penalty: float = 1.0,
) -> GaussianMixtureParams:
    """Penalised MLE of a K-component Gaussian mixture on one machine's data.

    Maximises ``loglik(G) - a_n sum_k [tr(S_x Sigma_k^-1) + log det Sigma_k]`` with
    ``a_n = penalty * n^(-1/2)`` and ``S_x`` the sample covariance of ``X``, over the mixtures of the
    covariance model ``covariance_type``, by EM from up to ``n_init`` k-means++ starts, each run on
    all the data (to convergence unless it cannot catch up), keeping the best.
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
    n_init, max_iter, tol, covariance_type, penalty
        As in :func:`fit_local_detailed`: ``covariance_type`` takes scikit-learn's names and mclust's,
        ``penalty=0`` gives the plain MLE.

    Returns
    -------
    GaussianMixtureParams
        The fitted mixture.

    Raises
    ------
    ValueError
        If ``X`` or an argument is invalid.
    """
    return fit_local_detailed(X, n_components, random_state, n_init=n_init, max_iter=max_iter, tol=tol,
                              covariance_type=covariance_type, penalty=penalty).mixture
