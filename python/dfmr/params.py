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
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["GaussianMixtureParams", "InvalidMixtureError", "LIMITS", "NumericLimits"]


class InvalidMixtureError(ValueError):
    """Raised when mixture parameters are malformed or outside the numeric limits."""


@dataclass(frozen=True)
class NumericLimits:
    """Numeric limits on accepted mixture parameters.

    Attributes
    ----------
    max_abs_mean : float
        Largest accepted absolute value of a mean coordinate. Squared mean
        differences (up to ``4 * max_abs_mean**2``) divided by the smallest
        accepted eigenvalue must stay far from the double range (1.8e308).
    min_eigenvalue, max_eigenvalue : float
        Range for the eigenvalues of every covariance matrix. Together with
        ``max_abs_mean`` this bounds every Mahalanobis term by about 1e200 and
        every log-determinant by about ``dim * 115``.
    max_condition : float
        Largest accepted ratio of largest to smallest covariance eigenvalue.
        Cholesky factors of matrices conditioned worse than ~1e13 lose all
        significant digits in double precision; a fitted covariance that is
        this ill-conditioned is not information but a failure.
    max_components, max_dim : int
        Sizes beyond which a "local estimate" is a denial-of-service attempt,
        not a mixture.
    weight_atol : float
        Tolerance on ``|sum(weights) - 1|`` when ``normalize=False``.
    normalize_atol : float
        Tolerance on ``|sum(weights) - 1|`` when ``normalize=True``: sums this
        close to one (transmission rounding, float32 storage) are rescaled.
    symmetry_rtol : float
        Relative tolerance of the covariance symmetry check; accepted matrices
        are symmetrised exactly.
    """

    max_abs_mean: float = 1e50
    min_eigenvalue: float = 1e-50
    max_eigenvalue: float = 1e50
    max_condition: float = 1e12
    max_components: int = 10_000
    max_dim: int = 1_000
    weight_atol: float = 1e-8
    normalize_atol: float = 1e-3
    symmetry_rtol: float = 1e-8


LIMITS = NumericLimits()


def _as_float_array(value: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise InvalidMixtureError(f"{name}: cannot be read as an array of floats ({exc}).") from None
    if arr.dtype == object:
        raise InvalidMixtureError(f"{name}: ragged or non-numeric data.")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidMixtureError(
            f"{name}: contains NaN or infinity (first at index {tuple(int(i) for i in bad)})."
        )


def _validate(
    weights: ArrayLike, means: ArrayLike, covariances: ArrayLike, normalize: bool, check_limits: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lim = LIMITS
    w = _as_float_array(weights, "weights")
    mu = _as_float_array(means, "means")
    cov = _as_float_array(covariances, "covariances")

    if w.ndim != 1:
        raise InvalidMixtureError(f"weights: expected a 1-D array of shape (K,), got shape {w.shape}.")
    k = w.shape[0]
    if k == 0:
        raise InvalidMixtureError("weights: a mixture needs at least one component, got K = 0.")
    if k > lim.max_components:
        raise InvalidMixtureError(f"weights: K = {k} exceeds the limit of {lim.max_components} components.")
    if mu.ndim == 1 and k == 1:
        mu = mu[None, :]
    if mu.ndim != 2 or mu.shape[0] != k:
        raise InvalidMixtureError(f"means: expected shape (K, d) = ({k}, d), got {mu.shape}.")
    d = mu.shape[1]
    if d == 0 or d > lim.max_dim:
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
    total = float(w.sum())
    tol = lim.normalize_atol if normalize else lim.weight_atol
    if not abs(total - 1.0) <= tol:
        hint = "" if normalize else " Pass normalize=True if they differ from 1 only by rounding."
        raise InvalidMixtureError(f"weights: sum to {total!r}, not 1 (tolerance {tol:g}).{hint}")
    if total != 1.0:
        w = w / total
    if w.max() <= 0:
        raise InvalidMixtureError("weights: all weights are zero.")

    if not check_limits:
        cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
        try:
            return w, mu, cov, np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise InvalidMixtureError("covariances: not positive definite.") from None

    big = np.abs(mu).max()
    if big > lim.max_abs_mean:
        raise InvalidMixtureError(
            f"means: |mean| = {big:.3g} exceeds the limit {lim.max_abs_mean:g}; rescale the data."
        )

    scale = np.abs(cov).max(axis=(1, 2))
    asym = np.abs(cov - np.swapaxes(cov, 1, 2)).max(axis=(1, 2))
    if np.any(asym > lim.symmetry_rtol * scale):
        j = int(np.argmax(asym > lim.symmetry_rtol * scale))
        raise InvalidMixtureError(f"covariances: matrix {j} is not symmetric (max |S - S^T| = {asym[j]:.3g}).")
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    eig = np.linalg.eigvalsh(cov)
    lo, hi = eig[:, 0], eig[:, -1]
    if np.any(lo <= 0):
        j = int(np.argmax(lo <= 0))
        raise InvalidMixtureError(
            f"covariances: matrix {j} is not positive definite (smallest eigenvalue {lo[j]:.3g})."
        )
    if np.any(lo < lim.min_eigenvalue) or np.any(hi > lim.max_eigenvalue):
        j = int(np.argmax((lo < lim.min_eigenvalue) | (hi > lim.max_eigenvalue)))
        raise InvalidMixtureError(
            f"covariances: matrix {j} has eigenvalues in [{lo[j]:.3g}, {hi[j]:.3g}], outside the accepted "
            f"range [{lim.min_eigenvalue:g}, {lim.max_eigenvalue:g}]; rescale the data."
        )
    cond = hi / lo
    if np.any(cond > lim.max_condition):
        j = int(np.argmax(cond > lim.max_condition))
        raise InvalidMixtureError(
            f"covariances: matrix {j} has condition number {cond[j]:.3g} > {lim.max_condition:g}; "
            "it carries no usable information in double precision."
        )
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise InvalidMixtureError("covariances: Cholesky factorisation failed.") from None
    return w, mu, cov, chol


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

    Raises
    ------
    InvalidMixtureError
        If any field is malformed or outside :data:`LIMITS`; the message names
        the field and the reason.

    Notes
    -----
    Instances are immutable: the arrays are private read-only copies.
    """

    __slots__ = ("_weights", "_means", "_covariances", "_chol")

    def __init__(
        self, weights: ArrayLike, means: ArrayLike, covariances: ArrayLike, *, normalize: bool = False
    ) -> None:
        w, mu, cov, chol = _validate(weights, means, covariances, normalize)
        for arr in (w, mu, cov, chol):
            arr.setflags(write=False)
        self._weights, self._means, self._covariances, self._chol = w, mu, cov, chol

    @classmethod
    def _from_core(cls, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> GaussianMixtureParams:
        """Wrap a mixture computed by dfmr itself (a reduction of accepted inputs).

        Shapes, finiteness, weights and positive definiteness are still checked, but not
        the scale and conditioning limits: a moment-matched covariance that merges
        far-apart accepted components may legitimately exceed them.
        """
        self = object.__new__(cls)
        w, mu, cov, chol = _validate(weights, means, covariances, normalize=True, check_limits=False)
        for arr in (w, mu, cov, chol):
            arr.setflags(write=False)
        self._weights, self._means, self._covariances, self._chol = w, mu, cov, chol
        return self

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
    def n_components(self) -> int:
        """Number of components K."""
        return int(self._weights.shape[0])

    @property
    def dim(self) -> int:
        """Dimension d of the observations."""
        return int(self._means.shape[1])

    def component_logpdf(self, X: ArrayLike) -> np.ndarray:
        """Log-density of every component at every row of ``X``, shape (n, K)."""
        X = self._check_X(X)
        n, d = X.shape
        diff = X[:, None, :] - self._means[None, :, :]  # (n, K, d)
        out = np.empty((n, self.n_components))
        log_det = 2.0 * np.log(np.diagonal(self._chol, axis1=1, axis2=2)).sum(axis=1)
        from scipy.linalg import solve_triangular

        for k in range(self.n_components):
            z = solve_triangular(self._chol[k], diff[:, k, :].T, lower=True, check_finite=False)
            out[:, k] = -0.5 * (np.einsum("ij,ij->j", z, z) + log_det[k] + d * math.log(2.0 * math.pi))
        return out

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
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}.")
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
        """The same mixture with its components listed in ``order``."""
        order = np.asarray(order)
        return GaussianMixtureParams(self._weights[order], self._means[order], self._covariances[order])

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python representation (lists of floats), the JSON schema of :meth:`save`."""
        return {
            "format": "dfmr.GaussianMixtureParams",
            "version": 1,
            "weights": self._weights.tolist(),
            "means": self._means.tolist(),
            "covariances": self._covariances.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Any, *, normalize: bool = False) -> GaussianMixtureParams:
        """Inverse of :meth:`to_dict`; raises :class:`InvalidMixtureError` on anything else."""
        if not isinstance(d, dict):
            raise InvalidMixtureError(f"expected a mapping with weights, means, covariances; got {type(d).__name__}.")
        missing = [key for key in ("weights", "means", "covariances") if key not in d]
        if missing:
            raise InvalidMixtureError(f"missing field(s): {', '.join(missing)}.")
        fmt = d.get("format", "dfmr.GaussianMixtureParams")
        if fmt != "dfmr.GaussianMixtureParams":
            raise InvalidMixtureError(f"format: expected 'dfmr.GaussianMixtureParams', got {fmt!r}.")
        return cls(d["weights"], d["means"], d["covariances"], normalize=normalize)

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
            data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
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
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GaussianMixtureParams(n_components={self.n_components}, dim={self.dim})"


def _reject_constant(name: str) -> float:
    raise InvalidMixtureError(f"non-finite constant {name} in JSON.")
