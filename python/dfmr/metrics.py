"""Accuracy metrics of the paper's experiments: W1 between mixtures, ARI, log-likelihood.

The W1 distance treats a mixture as a discrete distribution over Gaussian components (its
weights on the points ``(mu_k, Sigma_k)``) and transports one weight vector onto the other with
ground cost ``||mu_a - mu_b||_2 + ||Sigma_a^(1/2) - Sigma_b^(1/2)||_F``. It is invariant to the
order of the components, so it measures an estimate without any label alignment.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.optimize import linprog

from ._validation import check_int
from .params import GaussianMixtureParams

__all__ = ["ari", "ari_on_sample", "log_likelihood", "w1_cost_matrix", "w1_distance"]


def _check_mixture(obj: object, name: str) -> GaussianMixtureParams:
    if not isinstance(obj, GaussianMixtureParams):
        raise TypeError(f"{name} must be a GaussianMixtureParams, got {type(obj).__name__}.")
    return obj


def _check_same_dim(a: GaussianMixtureParams, b: GaussianMixtureParams, names: str) -> None:
    if a.dim != b.dim:
        raise ValueError(f"{names}: the mixtures live in different dimensions ({a.dim} and {b.dim}).")


def _sqrtm_psd(covariances: np.ndarray) -> np.ndarray:
    """Symmetric square roots of a stack of symmetric PSD matrices, shape (K, d, d)."""
    eigval, eigvec = np.linalg.eigh(covariances)
    root = np.sqrt(np.clip(eigval, 0.0, None))
    return (eigvec * root[:, None, :]) @ np.swapaxes(eigvec, 1, 2)


def w1_cost_matrix(a: GaussianMixtureParams, b: GaussianMixtureParams) -> np.ndarray:
    """Ground cost between every component of ``a`` and every component of ``b``.

    Parameters
    ----------
    a, b : GaussianMixtureParams
        Mixtures of the same dimension, possibly with different numbers of components.

    Returns
    -------
    numpy.ndarray, shape (a.n_components, b.n_components)
        ``C[i, j] = ||mu_ai - mu_bj||_2 + ||Sigma_ai^(1/2) - Sigma_bj^(1/2)||_F`` with symmetric
        positive semi-definite square roots.

    Raises
    ------
    TypeError
        If ``a`` or ``b`` is not a :class:`GaussianMixtureParams`.
    ValueError
        If the dimensions differ.
    """
    _check_mixture(a, "a")
    _check_mixture(b, "b")
    _check_same_dim(a, b, "w1_cost_matrix")
    mean_cost = np.linalg.norm(a.means[:, None, :] - b.means[None, :, :], axis=2)
    root_a, root_b = _sqrtm_psd(a.covariances), _sqrtm_psd(b.covariances)
    # One row at a time: the full (Ka, Kb, d, d) difference array can be huge for pooled mixtures.
    cov_cost = np.stack([np.linalg.norm(root_b - root_a[i], axis=(1, 2)) for i in range(a.n_components)])
    return mean_cost + cov_cost


def w1_distance(a: GaussianMixtureParams, b: GaussianMixtureParams) -> float:
    """Wasserstein-1 distance between two Gaussian mixtures.

    Optimal transport between the weight vectors of ``a`` and ``b`` with the ground cost of
    :func:`w1_cost_matrix`, solved as a linear programme (HiGHS).

    Parameters
    ----------
    a, b : GaussianMixtureParams
        Mixtures of the same dimension, possibly with different numbers of components.

    Returns
    -------
    float
        ``min_P sum_ij P_ij C_ij`` over transport plans ``P >= 0`` with row sums ``a.weights`` and
        column sums ``b.weights``.

    Raises
    ------
    TypeError
        If ``a`` or ``b`` is not a :class:`GaussianMixtureParams`.
    ValueError
        If the dimensions differ.
    RuntimeError
        If the LP solver fails.
    """
    cost = w1_cost_matrix(a, b)
    ka, kb = cost.shape
    row_sums = sp.kron(sp.eye(ka), np.ones((1, kb)), format="csr")
    # The last column constraint is implied by the others (both weight vectors sum to one); dropping
    # it keeps the equality system consistent even when the two sums differ in the last bit.
    col_sums = sp.kron(np.ones((1, ka)), sp.eye(kb), format="csr")[: kb - 1]
    a_eq = sp.vstack([row_sums, col_sums], format="csr")
    b_eq = np.concatenate([a.weights, b.weights[: kb - 1]])
    res = linprog(cost.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"w1_distance: the transport LP failed ({res.message}).")
    return float(max(res.fun, 0.0))


def _check_labels(labels: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; ARI needs at least one labelled point.")
    return arr


def _n_pairs(counts: np.ndarray) -> int:
    """Number of unordered pairs within groups of the given sizes, as an exact Python int."""
    counts = counts.astype(np.int64)
    return int(np.sum(counts * (counts - 1) // 2))


def ari(labels_a: ArrayLike, labels_b: ArrayLike) -> float:
    """Adjusted Rand index between two labellings of the same points (Hubert & Arabie, 1985).

    Parameters
    ----------
    labels_a, labels_b : array_like, shape (n,)
        Cluster labels of any hashable, sortable type; only the partitions they induce matter.

    Returns
    -------
    float
        1 for identical partitions, about 0 for independent ones (it can be negative). Two
        partitions that are both a single cluster, or both all singletons, score 1.

    Raises
    ------
    ValueError
        If the labellings are not 1-D, are empty, or have different lengths.
    """
    a = _check_labels(labels_a, "labels_a")
    b = _check_labels(labels_b, "labels_b")
    if a.shape != b.shape:
        raise ValueError(f"labels_a and labels_b must have the same length, got {a.size} and {b.size}.")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    ia, ib = ia.ravel().astype(np.int64), ib.ravel().astype(np.int64)
    # Only the non-empty cells of the contingency table: a dense table of n singletons would be n x n.
    _, cells = np.unique(ia * (ib.max() + 1) + ib, return_counts=True)

    # Exact integer arithmetic: the index and its expectation nearly cancel for large n.
    n_pairs = a.size * (a.size - 1) // 2
    index = _n_pairs(cells)
    sum_a, sum_b = _n_pairs(np.bincount(ia)), _n_pairs(np.bincount(ib))
    numerator = 2 * (index * n_pairs - sum_a * sum_b)
    denominator = n_pairs * (sum_a + sum_b) - 2 * sum_a * sum_b
    # The denominator vanishes only when both partitions are one cluster or both are all singletons.
    if denominator == 0:
        return 1.0
    return numerator / denominator


def log_likelihood(mixture: GaussianMixtureParams, X: ArrayLike) -> float:
    """Mean log-likelihood per point of ``X`` under ``mixture``.

    Parameters
    ----------
    mixture : GaussianMixtureParams
        The mixture.
    X : array_like, shape (n, d)
        Finite observations, at least one row.

    Returns
    -------
    float
        ``mean_i log f(x_i)``.

    Raises
    ------
    TypeError
        If ``mixture`` is not a :class:`GaussianMixtureParams`.
    ValueError
        If ``X`` has the wrong shape, no rows, or non-finite entries.
    """
    _check_mixture(mixture, "mixture")
    X = np.asarray(X, dtype=np.float64)
    if X.size == 0:
        raise ValueError("X has no rows; the mean log-likelihood is undefined.")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity.")
    return float(np.mean(mixture.logpdf(X)))


def _map_labels(mixture: GaussianMixtureParams, X: np.ndarray) -> np.ndarray:
    """Maximum-posterior component of every row of ``X``."""
    with np.errstate(divide="ignore"):
        log_w = np.log(mixture.weights)
    return np.argmax(mixture.component_logpdf(X) + log_w, axis=1)


def ari_on_sample(
    estimate: GaussianMixtureParams,
    truth: GaussianMixtureParams,
    n: int = 10_000,
    random_state: int | np.random.Generator | None = None,
) -> float:
    """ARI between the maximum-posterior labels of an estimate and of the true mixture.

    Draws ``n`` points from ``truth`` (``truth.sample(n, random_state)``), labels each point by
    its maximum-posterior component under ``estimate`` and under ``truth``, and compares the two
    labellings with :func:`ari`. The true labels are the posterior ones, not the generating
    components, so a perfect estimate scores exactly 1.

    Parameters
    ----------
    estimate, truth : GaussianMixtureParams
        Mixtures of the same dimension; their numbers of components may differ.
    n : int, default 10000
        Sample size, at least 1.
    random_state : int, numpy.random.Generator or None, default None
        Seed or generator for the sample.

    Returns
    -------
    float
        The adjusted Rand index.

    Raises
    ------
    TypeError
        If a mixture is not a :class:`GaussianMixtureParams`.
    ValueError
        If the dimensions differ or ``n`` is not a positive integer.
    """
    _check_mixture(estimate, "estimate")
    _check_mixture(truth, "truth")
    _check_same_dim(estimate, truth, "ari_on_sample")
    check_int(n, "n", 1)
    X, _ = truth.sample(int(n), random_state=random_state)
    return ari(_map_labels(estimate, X), _map_labels(truth, X))
