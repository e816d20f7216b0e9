"""Validated, immutable parameters of a finite Gaussian mixture.

Every local estimate that enters dfmr passes through :class:`GaussianMixtureParams`.
Local estimates come from machines that may be Byzantine, so construction is the
trust boundary: malformed parameters raise :class:`InvalidMixtureError` (a
``ValueError``) naming the field and the reason; accepted parameters are finite,
have non-negative weights summing to one, and positive-definite covariances whose
scale and conditioning lie inside :data:`LIMITS`, so that every density, distance
and divergence computed from them is a finite double.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._validation import check_int, reject_json_constant
from .covariance import get_model

__all__ = ["GaussianMixtureParams", "InvalidMixtureError", "LIMITS", "NumericLimits"]


class InvalidMixtureError(ValueError):
    """Raised when mixture parameters are malformed or outside the numeric limits."""


@dataclass(frozen=True)
class NumericLimits:
    """Numeric limits on accepted mixture parameters, and why they are what they are.

    Accepted parameters must keep every quantity dfmr computes from them a finite double
    (largest double ~1.8e308, ``ln`` of it ~709.78) with usable precision, *whatever* the
    other machines send: the limits bound each mixture on its own, never relative to others.

    Attributes
    ----------
    max_abs_mean : float
        Largest accepted absolute value of a mean coordinate (1e50). Mean differences are at
        most 2e50; with eigenvalues >= ``min_eigenvalue`` every squared Mahalanobis term is at
        most ``d * 4e100 / 1e-50 = d * 4e150`` and every moment-matched covariance that merges
        accepted components is at most ``4e100 + 1e50``: far from overflow, with room to spare.
    min_eigenvalue, max_eigenvalue : float
        Range of the eigenvalues of every covariance matrix (1e-50 to 1e50). Precision
        entries are then at most 1e50 and the KL trace terms at most ``d * 1e100``; matrix
        entries are bounded by the largest eigenvalue, so no eigen-decomposition, product or
        solve can overflow.
    max_condition : float
        Largest accepted ratio of largest to smallest covariance eigenvalue (1e12). A Cholesky
        pivot carries a rounding error of about ``d * eps * lambda_max`` (eps = 2.2e-16); with
        ``d <= max_dim = 1000`` that is at most 0.22 * lambda_min, so every accepted covariance,
        and every sum ``Sigma_a + Sigma_b`` in the L2 distance (whose condition number is at most
        the larger of the two), factorises in any Cholesky implementation with digits to spare.
        A fitted covariance conditioned worse than 1e12 is not information but a failure.
    max_log_peak_density : float
        Largest accepted log-density of a component at its mean,
        ``-0.5 * log det(2 pi Sigma_k)`` (700). The squared L2 norm of a mixture is at most
        ``max_k (4 pi)^(-d/2) det(Sigma_k)^(-1/2)`` (Minkowski's determinant inequality bounds every
        cross term by the most concentrated component), which is below this peak density, so every
        squared L2 distance is at most ``2 * exp(700) ~ 2e304``: distances, squared distances and
        their log-space accumulation stay finite. There is no lower bound: very flat densities have
        distances that underflow in absolute terms, so the DFMR centre and filter work on the
        distance matrix scaled by a power of two (:func:`dfmr.distances.pairwise_l2_scaled`). The bound
        only binds for concentrated, high-dimensional data (e.g. d = 100 needs a geometric-mean
        variance of at least ~1e-7): rescaling the data by a constant > 1 cures it, and every
        method in dfmr is equivariant under such rescaling.
    max_components : int
        Largest accepted number of components (1000). The L2 self-term of a mixture costs
        ``O(K^2 d^3)``; a local estimate with more components is a denial-of-service attempt, not
        a mixture. Pooled mixtures built by dfmr itself are exempt.
    max_dim : int
        Largest accepted dimension (1000); one covariance is then 8 MB and one factorisation
        3e8 flops.
    weight_atol : float
        Tolerance on ``|sum(weights) - 1|`` when ``normalize=False`` (1e-8): the rounding of
        weights written with nine or more significant digits. Accepted weights are rescaled to
        sum to one (to the last bit).
    normalize_atol : float
        Tolerance on ``|sum(weights) - 1|`` when ``normalize=True`` (1e-3): weights rounded in
        transmission or storage (float32, a few printed decimals) are rescaled; anything farther
        from one is an error, not rounding.
    symmetry_rtol : float
        Relative tolerance of the covariance symmetry check, ``max |S - S^T| <= rtol * max |S|``
        (1e-8); accepted matrices are symmetrised exactly.
    """

    max_abs_mean: float = 1e50
    min_eigenvalue: float = 1e-50
    max_eigenvalue: float = 1e50
    max_condition: float = 1e12
    max_log_peak_density: float = 700.0
    max_components: int = 1_000
    max_dim: int = 1_000
    weight_atol: float = 1e-8
    normalize_atol: float = 1e-3
    symmetry_rtol: float = 1e-8


LIMITS = NumericLimits()

_LOG_2PI = math.log(2.0 * math.pi)
_EPS = float(np.finfo(np.float64).eps)


def _as_float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a new float64 array; only real numbers (no strings, booleans, None, complex) pass."""
    if value is None or isinstance(value, (str, bytes, dict)):
        raise InvalidMixtureError(f"{name}: expected an array of real numbers, got {type(value).__name__}.")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        raise InvalidMixtureError(f"{name}: cannot be read as an array of real numbers ({exc}).") from None
    kind = raw.dtype.kind
    if kind == "O":
        # Python objects: accept plain real numbers only (e.g. integers too large for int64).
        flat = raw.ravel()
        for item in flat:
            if not isinstance(item, numbers.Real) or isinstance(item, (bool, np.bool_)):
                raise InvalidMixtureError(
                    f"{name}: ragged or non-numeric data (found an entry of type {type(item).__name__})."
                )
        try:
            return np.array([float(item) for item in flat], dtype=np.float64).reshape(raw.shape)
        except (OverflowError, TypeError, ValueError):
            raise InvalidMixtureError(f"{name}: an entry is too large to be represented as a float.") from None
    if kind not in "iuf":
        what = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes"}.get(kind, f"dtype {raw.dtype}")
        raise InvalidMixtureError(f"{name}: expected real numbers, got {what}.")
    with np.errstate(over="ignore"):  # float128 beyond the double range becomes inf, reported below
        return np.array(raw, dtype=np.float64, copy=True)


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidMixtureError(
            f"{name}: contains NaN or infinity (first at index {tuple(int(i) for i in bad)})."
        )


def _sum_to_one(w: np.ndarray, total: float) -> np.ndarray:
    """``w / total`` unless the exact sum ``total`` is already within 2 eps of 1.

    After one rescaling the exact sum is within eps of 1, so validating the result again
    (save/load, pickling) leaves the weights bit-for-bit unchanged.
    """
    return w / total if abs(total - 1.0) > 2.0 * _EPS else w


def _validate(
    weights: ArrayLike, means: ArrayLike, covariances: ArrayLike, normalize: bool, check_limits: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked copies ``(w, mu, cov, chol)``; ``check_limits=False`` (mixtures built by dfmr itself)
    skips the size, scale and conditioning limits but not shapes, finiteness, weights or definiteness."""
    lim = LIMITS
    w = _as_float_array(weights, "weights")
    mu = _as_float_array(means, "means")
    cov = _as_float_array(covariances, "covariances")

    if w.ndim != 1:
        raise InvalidMixtureError(f"weights: expected a 1-D array of shape (K,), got shape {w.shape}.")
    k = w.shape[0]
    if k == 0:
        raise InvalidMixtureError("weights: a mixture needs at least one component, got K = 0.")
    if check_limits and k > lim.max_components:
        raise InvalidMixtureError(f"weights: K = {k} exceeds the limit of {lim.max_components} components.")
    if mu.ndim == 1 and k == 1:
        mu = mu[None, :]  # one component: means of shape (d,)
    elif mu.ndim == 1 and mu.shape[0] == k:
        mu = mu[:, None]  # d = 1: means of shape (K,)
    if mu.ndim != 2 or mu.shape[0] != k:
        raise InvalidMixtureError(f"means: expected shape (K, d) = ({k}, d), got {mu.shape}.")
    d = mu.shape[1]
    if d == 0 or (check_limits and d > lim.max_dim):
        raise InvalidMixtureError(f"means: dimension d = {d} must be between 1 and {lim.max_dim}.")
    if cov.ndim == 2 and k == 1 and cov.shape == (d, d):
        cov = cov[None, :, :]
    if cov.ndim == 1 and d == 1 and cov.shape[0] == k:
        cov = cov[:, None, None]
    if cov.shape != (k, d, d):
        raise InvalidMixtureError(f"covariances: expected shape (K, d, d) = ({k}, {d}, {d}), got {cov.shape}.")

    _check_finite(w, "weights")
    _check_finite(mu, "means")
    _check_finite(cov, "covariances")

    if np.any(w < 0):
        j = int(np.argmax(w < 0))
        raise InvalidMixtureError(f"weights: weight {j} is negative ({w[j]!r}); weights must be >= 0.")
    total = math.fsum(w.tolist())
    tol = lim.normalize_atol if normalize else lim.weight_atol
    if not abs(total - 1.0) <= tol:
        hint = "" if normalize else " Pass normalize=True if they differ from 1 only by rounding."
        raise InvalidMixtureError(f"weights: sum to {total!r}, not 1 (tolerance {tol:g}).{hint}")
    w = _sum_to_one(w, total)

    if check_limits:
        big = float(np.abs(mu).max())
        if big > lim.max_abs_mean:
            raise InvalidMixtureError(
                f"means: |mean| = {big:.3g} exceeds the limit {lim.max_abs_mean:g}; rescale the data."
            )
        # Entries of a positive-definite matrix are bounded by its largest eigenvalue; checking
        # them first keeps the eigen-decomposition below away from overflow.
        scale = np.abs(cov).max(axis=(1, 2))
        if np.any(scale > lim.max_eigenvalue):
            j = int(np.argmax(scale > lim.max_eigenvalue))
            raise InvalidMixtureError(
                f"covariances: matrix {j} has an entry of size {scale[j]:.3g} > {lim.max_eigenvalue:g} "
                "(the largest accepted eigenvalue); rescale the data."
            )
    else:
        scale = np.abs(cov).max(axis=(1, 2))
    asym = np.abs(cov - np.swapaxes(cov, 1, 2)).max(axis=(1, 2))
    if np.any(asym > lim.symmetry_rtol * scale):
        j = int(np.argmax(asym > lim.symmetry_rtol * scale))
        raise InvalidMixtureError(
            f"covariances: matrix {j} is not symmetric (max |S - S^T| = {asym[j]:.3g}, max |S| = {scale[j]:.3g})."
        )
    cov = _symmetrize(cov)

    if check_limits:
        eig = np.linalg.eigvalsh(cov)
        lo, hi = eig[:, 0], eig[:, -1]
        not_pd = ~(lo > 0)
        if np.any(not_pd):
            j = int(np.argmax(not_pd))
            raise InvalidMixtureError(
                f"covariances: matrix {j} is not positive definite (smallest eigenvalue {lo[j]:.3g})."
            )
        out = ~((lo >= lim.min_eigenvalue) & (hi <= lim.max_eigenvalue))
        if np.any(out):
            j = int(np.argmax(out))
            raise InvalidMixtureError(
                f"covariances: matrix {j} has eigenvalues in [{lo[j]:.3g}, {hi[j]:.3g}], outside the accepted "
                f"range [{lim.min_eigenvalue:g}, {lim.max_eigenvalue:g}]; rescale the data."
            )
        cond = hi / lo
        bad = ~(cond <= lim.max_condition)
        if np.any(bad):
            j = int(np.argmax(bad))
            raise InvalidMixtureError(
                f"covariances: matrix {j} has condition number {cond[j]:.3g} > {lim.max_condition:g}; "
                "it carries no usable information in double precision."
            )
    chol = _cholesky(cov)
    if check_limits:
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        peak = -0.5 * (d * _LOG_2PI + log_det)
        bad = ~(peak <= lim.max_log_peak_density)
        if np.any(bad):
            j = int(np.argmax(bad))
            raise InvalidMixtureError(
                f"covariances: matrix {j} is so concentrated that its component density peaks at "
                f"exp({peak[j]:.4g}) > exp({lim.max_log_peak_density:g}) (log det = {log_det[j]:.4g}, d = {d}); "
                "L2 distances to it would overflow. Rescale the data by a constant > 1."
            )
    return w, mu, cov, chol


def _symmetrize(cov: np.ndarray) -> np.ndarray:
    """Average ``S`` and ``S^T`` where they differ (``0.5 a + 0.5 b`` is symmetric in a, b and cannot
    overflow); exactly symmetric matrices are returned bit-for-bit unchanged."""
    cov_t = np.swapaxes(cov, 1, 2)
    differ = cov != cov_t
    if np.any(differ):
        cov = np.where(differ, 0.5 * cov + 0.5 * cov_t, cov)
    return cov


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of symmetric ``cov`` (K, d, d), or InvalidMixtureError naming the first failure."""
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        chol = None
    if chol is None or not np.all(np.isfinite(chol)):
        for j, s in enumerate(cov):
            try:
                if np.all(np.isfinite(np.linalg.cholesky(s))):
                    continue
            except np.linalg.LinAlgError:
                pass
            raise InvalidMixtureError(
                f"covariances: matrix {j} is not positive definite (Cholesky factorisation failed)."
            )
        raise InvalidMixtureError("covariances: Cholesky factorisation failed.")
    return chol


# Rows per block of gaussian_log_prob hold at most this many doubles in each (rows, K d) temporary
# (4 MiB): big enough for BLAS-3 speed (measured best on the reference machine), small enough to
# keep the extra memory O(n K) whatever n is.
_BLOCK_DOUBLES = 1 << 19


def row_blocks(n: int, width: int) -> list[slice]:
    """Consecutive row slices of ``range(n)``, each with at most ``_BLOCK_DOUBLES / width`` rows (>= 64)."""
    step = max(64, _BLOCK_DOUBLES // max(width, 1))
    return [slice(start, min(n, start + step)) for start in range(0, n, step)]


def precision_factor(chol: np.ndarray) -> np.ndarray:
    """Upper-triangular ``U_k = L_k^-T`` from lower Cholesky factors ``L_k`` of covariances, shape (..., d, d).

    ``U_k U_k^T = Sigma_k^-1`` (scikit-learn's ``precisions_cholesky_``). One batched solve with the
    triangular factor, never an inverse of ``Sigma_k``; scipy's batched ``solve_triangular`` costs
    several times more in overhead at these sizes, and ``L_k`` is well conditioned (its condition
    number is the square root of ``Sigma_k``'s).
    """
    eye = np.broadcast_to(np.eye(chol.shape[-1]), chol.shape)
    return np.swapaxes(np.linalg.solve(chol, eye), -1, -2)


def gaussian_log_prob(X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
    """Log-density ``log N(x_i; mu_k, Sigma_k)`` of every component at every row, shape (n, K).

    The one implementation of the Gaussian log-density in dfmr (scoring, prediction and the local
    EM all use it). Rows go in blocks: for a block ``B`` of rows one (K d, d) x (d, |B|) product
    gives ``U_k^T (x_i - mu_k)`` for every component at once, so extra memory is the (n, K)
    result plus one (K d, |B|) block, never a (K, d, n) array.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Data, in C or Fortran order.
    means : ndarray, shape (K, d)
        Component means.
    prec_chol : ndarray, shape (K, d, d)
        Upper Cholesky factors of the precisions (:func:`precision_factor`).

    Returns
    -------
    ndarray, shape (n, K)
        A transposed view of a C-ordered (K, n) array.
    """
    out = np.empty((means.shape[0], X.shape[0]))
    for rows, block in log_prob_blocks(X, means, prec_chol):
        out[:, rows] = block
    return out.T


def log_prob_blocks(
    X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(rows, log N(X[rows]; mu_k, Sigma_k))`` block by block, each block of shape (K, |rows|).

    The (K, rows) layout keeps every elementwise step on long contiguous rows (see
    :func:`gaussian_log_prob`).
    """
    n, d = X.shape
    k = means.shape[0]
    u_t = np.swapaxes(prec_chol, 1, 2).reshape(k * d, d)  # rows k d .. k d + d - 1 hold U_k^T
    shift = np.einsum("kde,kd->ke", prec_chol, means).reshape(k * d, 1)  # U_k^T mu_k
    const = np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1) - 0.5 * d * _LOG_2PI
    for rows in row_blocks(n, k * d):
        y = u_t @ X[rows].T
        y -= shift
        y = y.reshape(k, d, -1)
        block = np.einsum("kdb,kdb->kb", y, y)
        block *= -0.5
        block += const[:, None]
        yield rows, block


class GaussianMixtureParams:
    """Parameters of a finite Gaussian mixture ``sum_k w_k N(mu_k, Sigma_k)``.

    Parameters
    ----------
    weights : array_like, shape (K,)
        Non-negative mixing proportions summing to one.
    means : array_like, shape (K, d)
        Component means.
    covariances : array_like, shape (K, d, d)
        Symmetric positive-definite component covariances.
    normalize : bool, default False
        Rescale weights whose sum differs from one by at most
        ``LIMITS.normalize_atol`` (rounding in transmission or storage).
    n_samples : int, optional
        Number of observations the estimate was fitted to (recorded by
        :func:`dfmr.fit_local`); ``None`` when unknown. It is metadata: equality compares
        the parameters only.
    covariance_type : str, default "full"
        The covariance model the mixture belongs to (:mod:`dfmr.covariance`): scikit-learn's name or
        mclust's, stored as mclust's name for the dimension (:attr:`covariance_type`; "full" is VVV,
        or V when d = 1). The covariances must belong to the model (up to a relative ``1e-6`` of
        their largest entry: rounding in files). Coming from a machine it is a claim, which
        aggregators follow only when a strict majority of the machines make it.

    Raises
    ------
    InvalidMixtureError
        If any field is malformed or outside :data:`LIMITS`; the message names
        the field and the reason.

    Notes
    -----
    Instances are immutable: the arrays are private read-only copies.
    """

    __slots__ = ("_weights", "_means", "_covariances", "_chol", "_n_samples", "_covariance_type")

    def __init__(
        self,
        weights: ArrayLike,
        means: ArrayLike,
        covariances: ArrayLike,
        *,
        normalize: bool = False,
        n_samples: int | None = None,
        covariance_type: str = "full",
    ) -> None:
        n = _check_n_samples(n_samples)
        w, mu, cov, chol = _validate(weights, means, covariances, normalize)
        model = _check_model(covariance_type, cov)
        self._set(w, mu, cov, chol)
        object.__setattr__(self, "_n_samples", n)
        object.__setattr__(self, "_covariance_type", model)

    def _set(self, w: np.ndarray, mu: np.ndarray, cov: np.ndarray, chol: np.ndarray) -> None:
        if hasattr(self, "_weights"):  # calling __init__ again on an existing instance
            raise AttributeError("GaussianMixtureParams is immutable; it cannot be re-initialised.")
        for arr in (w, mu, cov, chol):
            arr.setflags(write=False)
        for name, arr in zip(self.__slots__, (w, mu, cov, chol)):
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "_n_samples", None)
        object.__setattr__(self, "_covariance_type", get_model("full", mu.shape[1]).name)

    @classmethod
    def _wrap(
        cls, w: np.ndarray, mu: np.ndarray, cov: np.ndarray, chol: np.ndarray, n_samples: int | None = None,
        covariance_type: str | None = None,
    ) -> GaussianMixtureParams:
        """An instance holding private copies of already validated arrays (no checks); ``covariance_type``
        an mclust name already checked against ``cov`` (None: full)."""
        self = object.__new__(cls)
        self._set(*(np.array(a, dtype=np.float64, copy=True) for a in (w, mu, cov, chol)))
        object.__setattr__(self, "_n_samples", n_samples)
        if covariance_type is not None:
            object.__setattr__(self, "_covariance_type", covariance_type)
        return self

    @classmethod
    def _from_core(
        cls, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str = "full",
        model_by_construction: bool = False,
    ) -> GaussianMixtureParams:
        """Wrap a mixture computed by dfmr itself (a pool or a reduction of accepted inputs).

        Shapes, finiteness, weights and positive definiteness are still checked, but not the
        size, scale and conditioning limits: a pool may hold more than ``max_components``
        components, and a moment-matched covariance that merges far-apart accepted components
        may legitimately exceed the scale and conditioning limits. (It never exceeds
        ``max_log_peak_density``: by concavity of log det, a moment-matched covariance is no more
        concentrated than the most concentrated component it merges.) ``covariance_type`` is the model
        the computation produced, checked like the constructor's; with ``model_by_construction`` (the
        covariances are the output of the C++ core's constrained M-step for that model, as a reduction's
        are) only the name is checked: the membership test (an eigen-decomposition per component) cost
        a constrained reduction of 20 estimates a third of its time.
        """
        self = object.__new__(cls)
        w, mu, cov, chol = _validate(weights, means, covariances, normalize=True, check_limits=False)
        model = get_model(covariance_type, cov.shape[-1]).name if model_by_construction else _check_model(
            covariance_type, cov)
        self._set(w, mu, cov, chol)
        object.__setattr__(self, "_covariance_type", model)
        return self

    @classmethod
    def _from_validated(
        cls, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, chol: np.ndarray,
        covariance_type: str | None = None,
    ) -> GaussianMixtureParams:
        """``_from_core(weights, means, covariances)`` bit for bit for components taken from validated
        mixtures (their covariances and Cholesky factors reused, nothing checked again); the weights,
        non-negative and summing to 1 up to rounding, are rescaled exactly as _from_core rescales them."""
        return cls._wrap(_sum_to_one(weights, math.fsum(weights.tolist())), means, covariances, chol,
                         covariance_type=covariance_type)

    def _subset(self, components: np.ndarray) -> GaussianMixtureParams:
        """The given components, weights renormalised: ``_from_core(w / w.sum(), means, covariances)``
        bit for bit, without validating again what this mixture already validated (its model kept)."""
        w = self._weights[components]
        return self._from_validated(w / w.sum(), self._means[components], self._covariances[components],
                                    self._chol[components], covariance_type=self._covariance_type)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"GaussianMixtureParams is immutable; cannot set {name!r}.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"GaussianMixtureParams is immutable; cannot delete {name!r}.")

    def __reduce__(self) -> tuple[Any, tuple[np.ndarray, ...]]:
        # Unpickled (and deep-copied) instances get fresh read-only arrays, bit-for-bit equal.
        return (_unpickle, (self._weights, self._means, self._covariances, self._chol, self._n_samples,
                            self._covariance_type))

    @property
    def weights(self) -> np.ndarray:
        """Mixing proportions, shape (K,)."""
        return self._weights

    @property
    def means(self) -> np.ndarray:
        """Component means, shape (K, d)."""
        return self._means

    @property
    def covariances(self) -> np.ndarray:
        """Component covariances, shape (K, d, d)."""
        return self._covariances

    @property
    def cholesky_factors(self) -> np.ndarray:
        """Lower Cholesky factors ``L`` with ``L @ L.T == covariances``, shape (K, d, d)."""
        return self._chol

    @property
    def n_samples(self) -> int | None:
        """Number of observations the estimate was fitted to, or None when unknown."""
        return self._n_samples

    @property
    def covariance_type(self) -> str:
        """mclust's name of the covariance model the mixture belongs to ("VVV" for full, "V" when d = 1)."""
        return self._covariance_type

    @property
    def n_components(self) -> int:
        """Number of components K."""
        return int(self._weights.shape[0])

    @property
    def dim(self) -> int:
        """Dimension d of the observations."""
        return int(self._means.shape[1])

    def component_logpdf(self, X: ArrayLike) -> np.ndarray:
        """Log-density of every component at every row of ``X``, shape (n, K).

        Evaluated in log space from the Cholesky factors (:func:`gaussian_log_prob`), so it is
        finite wherever the density underflows (far from every component) or would overflow
        (very concentrated components); extra memory is the (n, K) result and one row block.
        """
        return gaussian_log_prob(self._check_X(X), self._means, precision_factor(self._chol))

    def logpdf(self, X: ArrayLike) -> np.ndarray:
        """Log-density of the mixture at every row of ``X``, shape (n,)."""
        from scipy.special import logsumexp

        with np.errstate(divide="ignore"):
            log_w = np.log(self._weights)
        return logsumexp(self.component_logpdf(X) + log_w, axis=1)

    def pdf(self, X: ArrayLike) -> np.ndarray:
        """Density of the mixture at every row of ``X``, shape (n,)."""
        return np.exp(self.logpdf(X))

    def sample(self, n: int, random_state: int | np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` points; returns ``(X, labels)`` with ``X`` of shape (n, d)."""
        n = check_int(n, "n", 0)
        rng = np.random.default_rng(random_state)
        labels = rng.choice(self.n_components, size=int(n), p=self._weights)
        z = rng.standard_normal((int(n), self.dim))
        X = self._means[labels] + np.einsum("nij,nj->ni", self._chol[labels], z)
        return X, labels

    def _check_X(self, X: ArrayLike) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1 and self.dim == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"X must have shape (n, {self.dim}), got {X.shape}.")
        return X

    def permute(self, order: ArrayLike) -> GaussianMixtureParams:
        """The same mixture with its components listed in ``order`` (a permutation of ``range(K)``)."""
        idx = np.asarray(order)
        k = self.n_components
        if idx.shape != (k,) or idx.dtype.kind not in "iu" or not np.array_equal(np.sort(idx), np.arange(k)):
            raise ValueError(f"order must be a permutation of range({k}), got {order!r}.")
        return type(self)._wrap(
            self._weights[idx], self._means[idx], self._covariances[idx], self._chol[idx], self._n_samples,
            self._covariance_type,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python representation (lists of floats), the JSON schema of :meth:`save`.

        Version 1 holds the parameters; version 2 adds ``n_samples``; version 3 adds
        ``covariance_type`` (mclust's name). Each is written only when needed (a known sample
        size, a model other than full), so files without them stay readable by older versions,
        and files without a model are read as full.
        """
        full = self._covariance_type == get_model("full", self.dim).name
        out: dict[str, Any] = {
            "format": "dfmr.GaussianMixtureParams",
            "version": 1 if self._n_samples is None and full else (2 if full else 3),
            "weights": self._weights.tolist(),
            "means": self._means.tolist(),
            "covariances": self._covariances.tolist(),
        }
        if self._n_samples is not None:
            out["n_samples"] = self._n_samples
        if not full:
            out["covariance_type"] = self._covariance_type
        return out

    @classmethod
    def from_dict(cls, d: Any, *, normalize: bool = False) -> GaussianMixtureParams:
        """Inverse of :meth:`to_dict`; raises :class:`InvalidMixtureError` on anything else."""
        if not isinstance(d, dict):
            raise InvalidMixtureError(f"expected a mapping with weights, means, covariances; got {type(d).__name__}.")
        missing = [key for key in ("weights", "means", "covariances") if key not in d]
        if missing:
            raise InvalidMixtureError(f"missing field(s): {', '.join(missing)}.")
        fmt = d.get("format", "dfmr.GaussianMixtureParams")
        if not (isinstance(fmt, str) and fmt == "dfmr.GaussianMixtureParams"):
            raise InvalidMixtureError(f"format: expected 'dfmr.GaussianMixtureParams', got {_short(fmt)}.")
        version = d.get("version", 1)
        if not (type(version) is int and version in (1, 2, 3)):
            raise InvalidMixtureError(f"version: expected 1, 2 or 3, got {_short(version)}.")
        if version == 1 and "n_samples" in d:
            raise InvalidMixtureError("n_samples: only version 2 and 3 files carry a sample size.")
        if version < 3 and "covariance_type" in d:
            raise InvalidMixtureError("covariance_type: only version 3 files carry a covariance model.")
        return cls(d["weights"], d["means"], d["covariances"], normalize=normalize, n_samples=d.get("n_samples"),
                   covariance_type=d.get("covariance_type", "full"))

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters as JSON (floats round-trip exactly)."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh)

    @classmethod
    def load(cls, path: str | os.PathLike, *, normalize: bool = False) -> GaussianMixtureParams:
        """Read parameters written by :meth:`save`.

        Raises
        ------
        InvalidMixtureError
            If the file is not valid JSON or does not hold valid parameters.
        OSError
            If the file cannot be read at all.
        """
        with open(path, "rb") as fh:
            raw = fh.read()
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=reject_json_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
            raise InvalidMixtureError(f"{os.fspath(path)}: not a valid JSON mixture file ({exc}).") from None
        try:
            return cls.from_dict(data, normalize=normalize)
        except InvalidMixtureError as exc:
            raise InvalidMixtureError(f"{os.fspath(path)}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GaussianMixtureParams):
            return NotImplemented
        return (
            np.array_equal(self._weights, other._weights)
            and np.array_equal(self._means, other._means)
            and np.array_equal(self._covariances, other._covariances)
            and self._covariance_type == other._covariance_type
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"GaussianMixtureParams(n_components={self.n_components}, dim={self.dim}, "
                f"covariance_type={self._covariance_type!r})")


def _unpickle(
    w: np.ndarray, mu: np.ndarray, cov: np.ndarray, chol: np.ndarray, n_samples: int | None = None,
    covariance_type: str | None = None,
) -> GaussianMixtureParams:
    # Pickles written before the model was kept (no sixth item) are full-covariance mixtures.
    return GaussianMixtureParams._wrap(w, mu, cov, chol, n_samples, covariance_type)


# Covariances claimed to belong to a model must, up to this fraction of their largest entry (the
# rounding of values written with nine or more significant digits, like LIMITS.weight_atol).
_MODEL_RTOL = 1e-6


def _check_model(covariance_type: Any, cov: np.ndarray) -> str:
    """mclust's name of ``covariance_type`` for validated covariances ``cov`` (K, d, d) that belong to it."""
    d = cov.shape[-1]
    try:
        model = get_model(covariance_type, d)
    except ValueError as exc:
        raise InvalidMixtureError(f"covariance_type: {exc}") from None
    if model.name == get_model("full", d).name:
        return model.name
    try:
        inside = model.contains(cov, rtol=_MODEL_RTOL)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        inside = False
    if not inside:
        raise InvalidMixtureError(
            f"covariances: they do not belong to the covariance model {model.name} claimed by covariance_type "
            f"= {_short(covariance_type)}."
        )
    return model.name


def _check_n_samples(value: Any) -> int | None:
    """``None`` or a positive integer (an integral float such as 5000.0 from a file is accepted)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise InvalidMixtureError(f"n_samples: expected a positive integer or None, got {_short(value)}.")
    if isinstance(value, numbers.Integral):
        n = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
        n = int(float(value))
    else:
        raise InvalidMixtureError(f"n_samples: expected a positive integer or None, got {_short(value)}.")
    if n < 1:
        raise InvalidMixtureError(f"n_samples: must be at least 1, got {n}.")
    return n


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about hostile input."""
    try:
        text = repr(value)
    except Exception:  # hostile objects may fail to print (deep nesting, custom __repr__)
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
