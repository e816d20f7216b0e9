"""mclust's parameter layout <-> :class:`~dfmr.GaussianMixtureParams`, on plain data (no R needed).

mclust (Scrucca et al. 2016) stores a fit's parameters as ``list(pro, mean, variance)``: ``pro`` the
G mixing proportions, ``mean`` a d x G matrix (a length-G vector when d = 1) and ``variance`` a list
whose fields depend on the covariance model ``modelName``, using the eigen-decomposition
``Sigma_k = scale_k * O_k diag(shape_k) O_k^T`` (``mclust::decomp2sigma``):

========  ====================================================================
model     fields of ``variance`` that define the covariances
========  ====================================================================
E, X      ``sigmasq`` (one variance; univariate)
V         ``sigmasq`` (G variances; univariate)
EII, XII  ``sigmasq`` (one scalar): ``sigmasq * I``
VII       ``sigmasq`` (G scalars)
EEI, XXI  ``scale`` (scalar), ``shape`` (d): a common diagonal matrix
VEI       ``scale`` (G), ``shape`` (d)
EVI       ``scale`` (scalar), ``shape`` (d x G)
VVI       ``scale`` (G), ``shape`` (d x G)
EEE, XXX  ``Sigma`` (d x d), or its upper Cholesky factor ``cholSigma``
VEE       ``scale`` (G), ``shape`` (d), ``orientation`` (d x d)
EVE       ``scale`` (scalar), ``shape`` (d x G), ``orientation`` (d x d)
VVE       ``scale`` (G), ``shape`` (d x G), ``orientation`` (d x d)
EEV       ``scale`` (scalar), ``shape`` (d), ``orientation`` (d x d x G)
VEV       ``scale`` (G), ``shape`` (d), ``orientation`` (d x d x G)
EVV       ``scale`` (scalar), ``shape`` (d x G), ``orientation`` (d x d x G)
VVV       ``cholsigma`` (d x d x G upper Cholesky factors) or ``sigma``
========  ====================================================================

Every multivariate fit also carries ``sigma`` (d x d x G), the expanded covariances. The covariances
are rebuilt from the model's own fields (what mclust's density functions use); when ``sigma`` is
present too it must agree with them, so a hand-edited object with contradicting fields is refused
instead of silently read one way or the other. A plain ``list(pro, mean, variance = list(sigma))``
(no ``modelName``) is read from ``sigma``, or from ``sigmasq`` when univariate.

Written back, a mixture uses mclust's unconstrained layout: ``modelName = "VVV"`` with ``sigma`` and
``cholsigma`` (mclust 6 needs both), or ``"V"`` with ``sigmasq`` when d = 1, so that
``mclust::dens``, ``mclust::estep`` and ``predict`` accept it unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..aggregate import AggregationResult
from ..params import GaussianMixtureParams, InvalidMixtureError

__all__ = ["MODEL_NAMES", "params_from_mclust", "params_to_mclust", "result_to_mclust"]

# mclust's model names, spelt as mclust spells them: "X", "XII", "XXI" and "XXX" are its names for
# a single component (univariate, spherical, diagonal and ellipsoidal), not unfinished-work markers.
MODEL_NAMES = (
    "E", "V", "X",
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
    "XII", "XXI", "XXX",
)
# Relative disagreement tolerated between ``sigma`` and the model's own fields: mclust computes
# both from one decomposition, so they differ by rounding only.
_SIGMA_RTOL = 1e-8


def _field(variance: Mapping[str, Any], name: str, where: str) -> np.ndarray:
    if variance.get(name) is None:
        raise InvalidMixtureError(f"{where}variance${name} is missing (needed by its covariance model).")
    try:
        arr = np.asarray(variance[name], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidMixtureError(f"{where}variance${name}: not numeric ({exc}).") from None
    if not np.all(np.isfinite(arr)):
        raise InvalidMixtureError(f"{where}variance${name} contains NA, NaN or infinity.")
    return arr


def _per_component(arr: np.ndarray, G: int, name: str, where: str) -> np.ndarray:
    """A scalar (equal across components) or G values, as a length-G vector."""
    flat = arr.reshape(-1)
    if flat.size == 1:
        return np.full(G, flat[0])
    if flat.size != G:
        raise InvalidMixtureError(f"{where}variance${name}: expected 1 or G = {G} values, got {flat.size}.")
    return flat


def _shape_matrix(arr: np.ndarray, d: int, G: int, where: str) -> np.ndarray:
    """``shape`` as a d x G matrix (a length-d vector is shared by all components)."""
    if arr.size == d:
        return np.repeat(arr.reshape(d, 1), G, axis=1)
    if arr.shape != (d, G):
        raise InvalidMixtureError(f"{where}variance$shape: expected d = {d} values or a d x G matrix, got {arr.shape}.")
    return arr


def _orientation_array(arr: np.ndarray, d: int, G: int, where: str) -> np.ndarray:
    """``orientation`` as a G x d x d stack (a d x d matrix is shared by all components)."""
    if arr.shape == (d, d):
        return np.repeat(arr[None], G, axis=0)
    if arr.shape == (d, d, G):
        return np.moveaxis(arr, 2, 0)
    raise InvalidMixtureError(f"{where}variance$orientation: expected d x d or d x d x G, got {arr.shape}.")


def _matrix_stack(arr: np.ndarray, d: int, G: int, name: str, where: str) -> np.ndarray:
    """A d x d x G array (or one d x d matrix when G = 1 or shared) as a G x d x d stack."""
    if arr.shape == (d, d, G):
        return np.moveaxis(arr, 2, 0)
    if arr.shape == (d, d):
        return np.repeat(arr[None], G, axis=0)
    if d == 1 and arr.size == G:
        return arr.reshape(G, 1, 1)
    raise InvalidMixtureError(f"{where}variance${name}: expected a {d} x {d} x {G} array, got shape {arr.shape}.")


def _from_cholesky(upper: np.ndarray) -> np.ndarray:
    """``R^T R`` for a stack of upper-triangular factors (R's ``chol`` convention)."""
    upper = np.triu(upper)
    return np.einsum("kji,kjl->kil", upper, upper)


def _decomposition(variance: Mapping[str, Any], model: str, d: int, G: int, where: str) -> np.ndarray:
    """``scale * O diag(shape) O^T`` per component (mclust::decomp2sigma), G x d x d."""
    scale = _per_component(_field(variance, "scale", where), G, "scale", where)
    shape = _shape_matrix(_field(variance, "shape", where), d, G, where)
    if model[2] == "I":
        return np.stack([np.diag(scale[k] * shape[:, k]) for k in range(G)])
    orient = _orientation_array(_field(variance, "orientation", where), d, G, where)
    return np.einsum("kij,jk,klj->kil", orient, scale * shape, orient)


def _covariances(variance: Mapping[str, Any], model: str | None, d: int, G: int, where: str) -> np.ndarray:
    """The G x d x d covariances that mclust's model ``model`` encodes in ``variance``."""
    if model is None:  # a plain list(pro, mean, variance = list(sigma)) or list(sigmasq)
        if variance.get("sigma") is None and d == 1 and variance.get("sigmasq") is not None:
            return _per_component(_field(variance, "sigmasq", where), G, "sigmasq", where).reshape(G, 1, 1)
        return _matrix_stack(_field(variance, "sigma", where), d, G, "sigma", where)
    if model in ("E", "V", "X", "EII", "VII", "XII"):
        sigmasq = _per_component(_field(variance, "sigmasq", where), G, "sigmasq", where)
        return sigmasq[:, None, None] * np.eye(d)[None]
    if model in ("EEE", "XXX"):
        if variance.get("cholSigma") is not None:
            upper = _matrix_stack(_field(variance, "cholSigma", where), d, G, "cholSigma", where)
            return _from_cholesky(upper)
        return _matrix_stack(_field(variance, "Sigma", where), d, G, "Sigma", where)
    if model == "VVV":
        if variance.get("cholsigma") is not None:
            return _from_cholesky(_matrix_stack(_field(variance, "cholsigma", where), d, G, "cholsigma", where))
        return _matrix_stack(_field(variance, "sigma", where), d, G, "sigma", where)
    return _decomposition(variance, model, d, G, where)


def _scalar_int(value: Any, name: str, where: str) -> int:
    arr = np.asarray(value).reshape(-1)
    if arr.size != 1 or arr.dtype.kind not in "iuf" or not np.isfinite(arr[0]) or arr[0] != int(arr[0]) or arr[0] < 1:
        raise InvalidMixtureError(f"{where}variance${name}: expected a positive integer, got {value!r}.")
    return int(arr[0])


def params_from_mclust(parameters: Mapping[str, Any], where: str = "") -> GaussianMixtureParams:
    """Mixture from mclust's ``parameters`` list (``pro``, ``mean``, ``variance``) as plain data.

    Parameters
    ----------
    parameters : mapping
        ``pro`` (G,), ``mean`` (d, G) or (G,) when d = 1, and ``variance``: either mclust's list
        for its ``modelName`` (see the module docstring) or just ``sigma`` (d, d, G) / ``sigmasq``.
        ``Vinv`` (a noise component) is refused.
    where : str
        Prefix of error messages, naming the object (e.g. ``"site 3: "``).

    Returns
    -------
    GaussianMixtureParams

    Raises
    ------
    InvalidMixtureError
        For a noise component, an unknown model, missing or wrongly shaped fields, NA/NaN, or
        parameters the mixture validation refuses (the message starts with ``where``).
    """
    if not isinstance(parameters, Mapping):
        raise InvalidMixtureError(
            f"{where}expected a list with pro, mean and variance, got {type(parameters).__name__}."
        )
    if parameters.get("Vinv") is not None:
        raise InvalidMixtureError(
            f"{where}the fit has a noise component (parameters$Vinv is set); dfmr aggregates Gaussian "
            "components only: refit without initialization$noise."
        )
    missing = [k for k in ("pro", "mean", "variance") if parameters.get(k) is None]
    if missing:
        raise InvalidMixtureError(f"{where}missing field(s): {', '.join(missing)}.")
    variance = parameters["variance"]
    if not isinstance(variance, Mapping):
        raise InvalidMixtureError(f"{where}variance: expected a list (sigma, or mclust's fields), got "
                                  f"{type(variance).__name__}.")
    pro = np.asarray(parameters["pro"], dtype=np.float64).reshape(-1)
    G = pro.size
    mean = np.asarray(parameters["mean"], dtype=np.float64)
    # mclust's mean is d x G; a vector is G means when d = 1, or the one mean of a G = 1 mixture.
    d = mean.shape[0] if mean.ndim == 2 else (mean.size if G == 1 else 1)
    if mean.ndim > 2 or mean.size != d * G:
        raise InvalidMixtureError(f"{where}mean: expected a d x G matrix with G = {G} columns, got shape {mean.shape}.")
    means = mean.reshape(d, G, order="F").T
    if not (np.all(np.isfinite(pro)) and np.all(np.isfinite(means))):
        raise InvalidMixtureError(f"{where}pro and mean must be finite (no NA or NaN).")
    model = variance.get("modelName")
    if model is not None:
        model = str(np.asarray(model).reshape(-1)[0])
        if model not in MODEL_NAMES:
            raise InvalidMixtureError(f"{where}variance$modelName {model!r} is not an mclust covariance model.")
        for name, expected in (("d", d), ("G", G)):
            if variance.get(name) is not None and _scalar_int(variance[name], name, where) != expected:
                raise InvalidMixtureError(f"{where}variance${name} = {variance[name]!r} but pro and mean give "
                                          f"{name} = {expected}.")
    covariances = _covariances(variance, model, d, G, where)
    if model is not None and variance.get("sigma") is not None:
        sigma = _matrix_stack(_field(variance, "sigma", where), d, G, "sigma", where)
        scale = max(np.max(np.abs(covariances)), np.finfo(np.float64).tiny)
        if np.max(np.abs(sigma - covariances)) > _SIGMA_RTOL * scale:
            raise InvalidMixtureError(f"{where}variance$sigma contradicts the {model} model's own fields.")
    try:
        return GaussianMixtureParams(pro, means, covariances, normalize=True)
    except InvalidMixtureError as exc:
        raise InvalidMixtureError(f"{where}{exc}") from None


def params_to_mclust(mixture: GaussianMixtureParams) -> dict[str, Any]:
    """mclust's ``parameters`` list for ``mixture``: ``"VVV"`` (or ``"V"`` when d = 1), plain arrays.

    Matrices are in R's layout: ``mean`` d x G, ``sigma`` and ``cholsigma`` d x d x G (upper factors,
    ``R^T R = Sigma`` as R's ``chol``); univariate mixtures give ``mean`` and ``sigmasq`` of length G.
    """
    G, d = mixture.n_components, mixture.dim
    if d == 1:
        variance: dict[str, Any] = {"modelName": "V", "d": 1, "G": G, "sigmasq": mixture.covariances[:, 0, 0].copy(),
                                    "scale": mixture.covariances[:, 0, 0].copy()}
        return {"pro": mixture.weights.copy(), "mean": mixture.means[:, 0].copy(), "variance": variance}
    upper = np.transpose(mixture.cholesky_factors, (0, 2, 1))
    variance = {
        "modelName": "VVV", "d": d, "G": G,
        "sigma": np.ascontiguousarray(np.moveaxis(mixture.covariances, 0, 2)),
        "cholsigma": np.ascontiguousarray(np.moveaxis(upper, 0, 2)),
    }
    return {"pro": mixture.weights.copy(), "mean": np.ascontiguousarray(mixture.means.T), "variance": variance}


def _one_based(index: Any) -> Any:
    """0-based index or indices as R's 1-based ones (plain ints: reticulate does not convert numpy scalars)."""
    if index is None:
        return None
    if np.ndim(index) == 0:
        return int(index) + 1
    return np.asarray(index, dtype=np.int64) + 1


def result_to_mclust(result: AggregationResult) -> dict[str, Any]:
    """An aggregation as the fields of the R package's ``"dfmr"`` object (indices 1-based, as in R).

    ``parameters`` (mclust layout), ``modelName``, ``G``, ``d``, ``method``, ``n_machines``,
    ``retained``, ``center``, ``distances`` (m x m), ``radius``, ``threshold``, ``cutoff``,
    ``objective``, ``n_iter``, ``converged``, ``alpha`` and ``screening`` (robust_dfmr's decisions);
    fields a method does not compute are None.
    """
    mix = result.mixture
    decision = result.filter
    return {
        "parameters": params_to_mclust(mix),
        "modelName": "VVV" if mix.dim > 1 else "V",
        "G": mix.n_components,
        "d": mix.dim,
        "method": result.method,
        "n_machines": int(result.n_machines),
        "retained": _one_based(result.retained),
        "center": _one_based(result.center),
        "distances": None if result.distances is None else np.array(result.distances),
        "radius": None if decision is None else float(decision.radius),
        "threshold": None if decision is None else float(decision.threshold),
        "cutoff": None if decision is None else float(decision.cutoff),
        "objective": None if result.objective is None else float(result.objective),
        "n_iter": int(result.n_iter),
        "converged": bool(result.converged),
        "alpha": None if result.alpha is None else float(result.alpha),
        "screening": _screening_to_mclust(getattr(result, "screening", None)),
    }


def _screening_to_mclust(screening: Any) -> dict[str, Any] | None:
    """robust_dfmr's decisions as columns (1-based site, component and slot; NaN where none) and the
    number of components each site put in the pool; None for the other methods."""
    if screening is None:
        return None
    dec = screening.decisions

    def one_based(values: list[int | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v + 1 for v in values], dtype=np.float64)

    return {
        "site": np.array([x.machine + 1 for x in dec], dtype=np.int64),
        "component": one_based([x.component for x in dec]),
        "slot": one_based([x.slot for x in dec]),
        "rule": [x.rule for x in dec],
        "statistic": np.array([x.statistic for x in dec], dtype=np.float64),
        "cutoff": np.array([x.cutoff for x in dec], dtype=np.float64),
        "components_kept": np.asarray(screening.kept, dtype=bool).sum(axis=1).astype(np.int64),
        "n_samples_known": bool(screening.n_samples_known),
    }
