"""The Python functions behind the R package's ``dfmr_fit``, ``dfmr_aggregate`` and ``dfmr_distances``.

The R package makes every call through :func:`call`, over one of two transports: reticulate in a
plain R session, or rpy2 (:func:`dfmr.r.activate`) when R is embedded in this Python process. Both
carry only plain data (numbers, strings, lists, dicts): an R array travels as
``{"__dim__": dim, "values": column-major values}`` (:func:`decode`, :func:`encode`), because the
Debian reticulate (1.28) refuses NumPy >= 2 arrays ("incompatible NumPy binary version") and a
plain encoding gives both transports the same R objects. A Python exception comes back as
``{"python_error": message, "python_type": name}``, which the R package raises as an R error.
Indices are 1-based and sites are named as R users count them. Nothing here imports rpy2.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..distances import pairwise_l2
from ..estimator import AGGREGATORS, DistributedGaussianMixture
from ..params import GaussianMixtureParams
from .mclust import params_from_mclust, params_to_mclust, result_to_mclust

__all__ = ["call", "decode", "encode", "defaults", "site_mixtures", "aggregate", "distances", "fit"]

_DIM = "__dim__"

# Local fits run in threads: a plain R session hosts Python through reticulate, and forking that
# process (the "processes" backend) would copy the R interpreter into every worker.
_R_BACKEND = "threads"


def defaults() -> dict[str, Any]:
    """What the R package reads from Python: the default and the accepted aggregation methods."""
    aggregator = inspect.signature(DistributedGaussianMixture).parameters["aggregator"].default
    return {"method": aggregator, "methods": list(AGGREGATORS)}


def _site_label(i: int, names: Sequence[str] | None) -> str:
    name = names[i - 1] if names is not None and i - 1 < len(names) else ""
    return f"site {i} ({name!r})" if name else f"site {i}"


def _as_names(names: Any) -> list[str] | None:
    if names is None:
        return None
    return [str(n) for n in ([names] if isinstance(names, str) else names)]


def site_mixtures(sites: Sequence[Any], names: Any = None) -> list[GaussianMixtureParams]:
    """One mixture per site from mclust ``parameters`` lists; an invalid site is named (1-based) in the error."""
    if isinstance(sites, dict) or not isinstance(sites, Sequence) or len(sites) == 0:
        raise ValueError("fits must be a non-empty list with one Mclust fit or parameter list per site.")
    labels = _as_names(names)
    return [params_from_mclust(site, f"{_site_label(i, labels)}: ") for i, site in enumerate(sites, start=1)]


def _with_local(result: dict[str, Any], local: Sequence[GaussianMixtureParams]) -> dict[str, Any]:
    result["local"] = [params_to_mclust(m) for m in local]
    return result


def _integer(value: Any, name: str) -> int | None:
    """R sends whole numbers as doubles; accept those, refuse fractions."""
    if value is None:
        return None
    arr = np.asarray(value).reshape(-1)
    if arr.size != 1 or arr.dtype.kind not in "iuf" or not math.isfinite(arr[0]) or arr[0] != math.floor(arr[0]):
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    return int(arr[0])


def _estimator(G: Any, method: Any, threshold: Any, **settings: Any) -> DistributedGaussianMixture:
    method = defaults()["method"] if method is None else str(method)
    kappa = None if threshold is None else float(np.asarray(threshold).reshape(-1)[0])
    return DistributedGaussianMixture(
        n_components=_integer(G, "G"), aggregator=method, threshold=kappa, backend=_R_BACKEND, **settings
    )


def aggregate(sites: Sequence[Any], G: Any, method: Any = None, threshold: Any = None, alpha: Any = 0.5,
              names: Any = None, sizes: Any = None) -> dict[str, Any]:
    """Aggregate one mclust ``parameters`` list per site; the fields of the R ``"dfmr"`` object.

    ``sizes`` are the sites' row counts (mclust's ``$n``; NA/None where unknown). They calibrate
    ``robust_dfmr``'s tests when every site has one; otherwise equal sizes are assumed (and said).
    """
    local = site_mixtures(sites, names)
    est = _estimator(G, method, threshold, alpha=float(alpha))
    n_jobs = est._validated_params()
    known = None
    if sizes is not None:
        values = [None if s is None else float(np.asarray(s, dtype=float).reshape(-1)[0]) for s in sizes]
        if len(values) == len(local) and all(v is not None and math.isfinite(v) and v > 0 for v in values):
            known = [int(v) for v in values]
    return _with_local(result_to_mclust(est._aggregate(local, n_jobs, known)), local)


def distances(sites: Sequence[Any], names: Any = None) -> np.ndarray:
    """The m x m matrix of L2 distances between the sites' mixtures."""
    return pairwise_l2(site_mixtures(sites, names))


def _site_error(exc: ValueError, names: list[str] | None) -> ValueError:
    """The estimator's error about "machine i" (0-based) reworded for R: "site i+1 ('name')"."""
    match = re.match(r"machine (\d+)\b(.*)", str(exc), re.S)
    if match is None:
        return exc
    return type(exc)(f"{_site_label(int(match.group(1)) + 1, names)}{match.group(2)}")


def fit(x: Any, G: Any, machines: Any = 10, method: Any = None, threshold: Any = None, seed: Any = None,
        machine: Any = None, names: Any = None, **settings: Any) -> dict[str, Any]:
    """Fit from raw data: rows dealt to ``machines`` sites, or grouped by ``machine`` (integer codes 1..m).

    ``names`` labels the sites in error messages. ``settings`` go to :class:`~dfmr.DistributedGaussianMixture`
    (``alpha``, ``n_init``, ``max_iter``, ``tol``, ``n_jobs``); whole numbers sent by R as doubles are passed as
    integers.
    """
    try:
        return _fit(x, G, machines, method, threshold, seed, machine, **settings)
    except ValueError as exc:
        reworded = _site_error(exc, _as_names(names))
        if reworded is exc:
            raise
        raise reworded from exc


def _fit(x: Any, G: Any, machines: Any, method: Any, threshold: Any, seed: Any, machine: Any,
         **settings: Any) -> dict[str, Any]:
    for key in ("n_init", "max_iter", "n_jobs"):
        if key in settings:
            settings[key] = _integer(settings[key], key)
    est = _estimator(G, method, threshold, n_machines=_integer(machines, "machines"),
                     random_state=_integer(seed, "seed"), **settings)
    if machine is None:
        est.fit(x)
    else:
        codes = np.asarray(machine).reshape(-1)
        data = np.asarray(x, dtype=np.float64)
        if codes.shape[0] != data.shape[0]:
            raise ValueError(f"machine has {codes.shape[0]} entries but x has {data.shape[0]} rows.")
        if codes.dtype.kind not in "iuf" or not np.all(np.isfinite(codes)) or codes.min() < 1:
            raise ValueError("machine must give every row's site (no NA).")
        codes = codes.astype(np.int64)
        est.fit_partitions([data[codes == j] for j in range(1, int(codes.max()) + 1)])
    return _with_local(result_to_mclust(est.aggregation_), est.local_mixtures_)


def decode(obj: Any) -> Any:
    """Plain data from R with every ``{"__dim__", "values"}`` entry turned into an ndarray."""
    if isinstance(obj, dict):
        if _DIM in obj:
            shape = tuple(int(n) for n in np.atleast_1d(np.asarray(obj[_DIM], dtype=np.float64)))
            values = np.asarray(obj.get("values", []), dtype=np.float64).reshape(-1)
            return values.reshape(shape, order="F")
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [decode(v) for v in obj]
    return obj


def encode(obj: Any) -> Any:
    """Inverse of :func:`decode`: ndarrays (any dimension) and NumPy scalars become plain data."""
    if isinstance(obj, np.ndarray):
        kind = obj.dtype.kind
        values = obj.ravel(order="F")
        values = values.astype(np.int64 if kind in "iu" else bool if kind == "b" else np.float64)
        return {_DIM: list(obj.shape), "values": values.tolist()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    return obj


_FUNCTIONS = {"defaults": defaults, "fit": fit, "aggregate": aggregate, "distances": distances}


def call(name: str, arguments: Any = None) -> Any:
    """Run ``name`` (``"fit"``, ``"aggregate"``, ``"distances"``, ``"defaults"``) on decoded ``arguments``.

    Returns the encoded result, or ``{"python_error": message, "python_type": name}`` if it raised.
    """
    try:
        kwargs = decode(arguments) if arguments else {}
        if not isinstance(kwargs, dict):
            raise TypeError("arguments must be a named list.")
        return encode(_FUNCTIONS[name](**kwargs))
    except Exception as exc:  # every failure goes back to R as a value, never as a foreign exception
        return {"python_error": str(exc), "python_type": type(exc).__name__}
