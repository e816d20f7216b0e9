"""mclust's parameter layout <-> :class:`~dfmr.GaussianMixtureParams`, on plain data (no R needed).

mclust (Scrucca et al. 2016) stores a fit's parameters as ``list(pro, mean, variance)``: ``pro`` the
G mixing proportions, ``mean`` a d x G matrix (a length-G vector when d = 1) and ``variance`` a list
whose fields depend on the covariance model ``modelName`` (mclust's fourteen models, E and V in one
dimension, and X, XII, XXI, XXX, the names ``Mclust()`` gives a single component). The fields of each
model are read and written by the covariance model registry, :mod:`dfmr.covariance`
(:meth:`~dfmr.covariance.CovarianceModel.from_mclust` and
:meth:`~dfmr.covariance.CovarianceModel.to_mclust`), the one implementation of that layout; this
module adds ``pro`` and ``mean``, the plain lists the R package also accepts
(``list(pro, mean, variance = list(sigma))``, no ``modelName``: read as unconstrained, from ``sigma``,
or from ``sigmasq`` when univariate), and the fields of the R package's ``"dfmr"`` object.

A mixture is written in the layout of its covariance model (``covariance_type``), so that
``mclust::dens``, ``cdens``, ``estep`` and ``predict`` read it as they read ``Mclust()``'s own
results; a noise component (``Vinv``) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..aggregate import AggregationResult
from ..covariance import get_model, mclust_model
from ..params import GaussianMixtureParams, InvalidMixtureError

__all__ = ["params_from_mclust", "params_to_mclust", "result_to_mclust"]


def params_from_mclust(parameters: Mapping[str, Any], where: str = "") -> GaussianMixtureParams:
    """Mixture from mclust's ``parameters`` list (``pro``, ``mean``, ``variance``) as plain data.

    Parameters
    ----------
    parameters : mapping
        ``pro`` (G,), ``mean`` (d, G) or (G,) when d = 1, and ``variance``: either mclust's list
        for its ``modelName`` (:meth:`dfmr.covariance.CovarianceModel.from_mclust`) or just
        ``sigma`` (d, d, G) / ``sigmasq``. ``Vinv`` (a noise component) is refused.
    where : str
        Prefix of error messages, naming the object (e.g. ``"site 3: "``).

    Returns
    -------
    GaussianMixtureParams
        Carrying the covariance model (``covariance_type``): the fit's ``modelName`` (mclust's
        single-component names as the model they equal: XII as VII, XXI as VVI, XXX as VVV, X as V),
        or VVV (V when d = 1) for a plain list.

    Raises
    ------
    InvalidMixtureError
        For a noise component, an unknown model, missing or wrongly shaped fields, NA/NaN, fields
        that contradict each other, or parameters the mixture validation refuses (the message starts
        with ``where``).
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
    name = variance.get("modelName")
    try:
        if name is None:  # a plain list(sigma), or list(sigmasq) when univariate
            if d == 1 and variance.get("sigmasq") is None and variance.get("sigma") is not None:
                variance = {"sigmasq": np.asarray(variance["sigma"], dtype=np.float64).reshape(-1)}
            model = get_model("full", d)
        else:
            model = mclust_model(str(np.asarray(name).reshape(-1)[0]), d)
        covariances = model.from_mclust(variance, n_components=G, dim=d)
    except (TypeError, ValueError) as exc:
        raise InvalidMixtureError(f"{where}{exc}") from None
    try:
        return GaussianMixtureParams(pro, means, covariances, normalize=True, covariance_type=model.name)
    except InvalidMixtureError as exc:
        raise InvalidMixtureError(f"{where}{exc}") from None


def params_to_mclust(mixture: GaussianMixtureParams, covariance_type: str | None = None) -> dict[str, Any]:
    """mclust's ``parameters`` list for ``mixture`` in the layout of its covariance model.

    Parameters
    ----------
    mixture : GaussianMixtureParams
    covariance_type : str, optional
        The model to write (scikit-learn's or mclust's name); default the mixture's own
        (``mixture.covariance_type``). The covariances must belong to it.

    Returns
    -------
    dict
        ``pro`` (G,), ``mean`` d x G (length G when d = 1) and ``variance``, the model's list as
        ``Mclust()`` gives it (:meth:`dfmr.covariance.CovarianceModel.to_mclust`), arrays in R's
        layout.
    """
    d = mixture.dim
    model = get_model(mixture.covariance_type if covariance_type is None else covariance_type, d)
    mean = mixture.means[:, 0].copy() if d == 1 else np.ascontiguousarray(mixture.means.T)
    return {"pro": mixture.weights.copy(), "mean": mean, "variance": model.to_mclust(mixture.covariances)}


def _one_based(index: Any) -> Any:
    """0-based index or indices as R's 1-based ones (plain ints: reticulate does not convert numpy scalars)."""
    if index is None:
        return None
    if np.ndim(index) == 0:
        return int(index) + 1
    return np.asarray(index, dtype=np.int64) + 1


def result_to_mclust(result: AggregationResult) -> dict[str, Any]:
    """An aggregation as the fields of the R package's ``"dfmr"`` object (indices 1-based, as in R).

    ``parameters`` (mclust layout of the mixture's covariance model), ``modelName`` (as ``Mclust()``
    names it), ``df`` (free parameters, mclust's ``nMclustParams``), ``G``, ``d``, ``method``, ``n_machines``,
    ``retained``, ``center``, ``distances`` (m x m), ``radius``, ``threshold``, ``cutoff``,
    ``objective``, ``n_iter``, ``converged``, ``alpha``, ``screening`` (robust_dfmr's decisions) and
    ``site_weights`` (m x G, the sites' own proportions under ``site_weights="free"``) and
    ``site_homogeneity`` (the test of equal proportions across sites);
    fields a method does not compute are None.
    """
    mix = result.mixture
    decision = result.filter
    parameters = params_to_mclust(mix)
    model = get_model(mix.covariance_type, mix.dim)
    return {
        "parameters": parameters,
        "modelName": parameters["variance"]["modelName"],
        "df": model.n_parameters(mix.n_components, mix.dim),
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
        "site_weights": _site_weights(result),
        "site_homogeneity": _homogeneity_to_mclust(getattr(result, "site_homogeneity", None)),
    }


def _site_weights(result: AggregationResult) -> np.ndarray | None:
    """The sites' own proportions (m x G, aligned to the output components) under ``site_weights="free"``;
    None under the shared model."""
    weights = getattr(result, "site_weights", None)
    return None if weights is None else np.array(weights, dtype=np.float64)


def _homogeneity_to_mclust(test: Any) -> dict[str, Any] | None:
    """The test of equal proportions across sites (:class:`dfmr.sites.SiteHomogeneity`): overall
    statistic, df and p-value, and per site (NaN for sites not tested); None when there is none."""
    if test is None:
        return None
    return {
        "statistic": float(test.statistic), "df": int(test.df), "p_value": float(test.pvalue),
        "design_effect": float(test.design_effect), "adjust": str(test.adjust), "size_source": str(test.size_source),
        "site_statistic": np.asarray(test.site_statistic, dtype=np.float64), "site_df": int(test.site_df),
        "site_p_value": np.asarray(test.site_pvalue, dtype=np.float64),
        "site_p_adjusted": np.asarray(test.site_pvalue_adjusted, dtype=np.float64),
    }


def _screening_to_mclust(screening: Any) -> dict[str, Any] | None:
    """robust_dfmr's decisions as columns (1-based site, component and slot; NaN where none), the
    number of components each site put in the pool, where the sizes came from (``size_source``,
    ``calibrated_n``: NaN with server sizes), each site's share of a vote and the (1-based) groups of
    sites sharing one, the consistency check against DFMR's sites (``consistency``, its statistic, adjusted
    p-value and the 1-based sites outside DFMR's radius); None for the other methods."""
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
        "size_source": str(screening.size_source),
        "calibrated_n": float(screening.calibrated_n),
        "votes": None if screening.votes is None else np.asarray(screening.votes, dtype=np.float64),
        "vote_groups": [np.asarray(group, dtype=np.int64) + 1 for group in screening.vote_groups],
        # The consistency check against the sites inside DFMR's radius (see dfmr.robust_dfmr).
        "consistency": str(screening.consistency),
        "consistency_statistic": float(screening.consistency_statistic),
        "consistency_p_value": float(screening.consistency_p_value),
        "consistency_sites": np.asarray(screening.consistency_machines, dtype=np.int64) + 1,
    }
