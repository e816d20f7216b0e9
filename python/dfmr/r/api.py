"""The Python functions behind the R package's ``dfmr_fit``, ``dfmr_aggregate`` and ``dfmr_distances``.

The R package makes every call through :func:`call`, over one of two transports: reticulate in a
plain R session, or rpy2 (:func:`dfmr.r.activate`) when R is embedded in this Python process. Both
carry only plain data (numbers, strings, lists, dicts): an R array travels as
``{"__dim__": dim, "values": column-major values}`` (:func:`decode`, :func:`encode`), because the
Debian reticulate (1.28) refuses NumPy >= 2 arrays ("incompatible NumPy binary version") and a
plain encoding gives both transports the same R objects. A Python exception comes back as
``{"python_error": message, "python_type": name}``, which the R package raises as an R error, and
Python warnings as R warnings.
Indices are 1-based and sites are named as R users count them. Nothing here imports rpy2.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..covariance import majority_covariance_type
from ..distances import pairwise_l2
from ..estimator import AGGREGATORS, DistributedGaussianMixture
from ..params import GaussianMixtureParams
from ..partition import split
from .mclust import params_from_mclust, params_to_mclust, result_to_mclust

__all__ = ["call", "decode", "encode", "defaults", "site_mixtures", "aggregate", "distances", "fit", "inference",
           "r_param_names", "P_ADJUST"]

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


def _model_settings(modelNames: Any, site_weights: Any, grid: bool = False) -> dict[str, Any]:
    """The estimator's ``covariance_type`` and ``site_weights`` from R's ``modelNames`` and ``site_weights``;
    an argument R leaves NULL is not passed (the estimator's default). With ``grid``, several model
    names are a grid to choose from (a list), one name stays a string."""
    settings: dict[str, Any] = {}
    if modelNames is not None:
        names = _as_names(modelNames)
        if len(names) != 1 and not grid:
            raise ValueError(f"modelNames must be one mclust model name here, got {len(names)}: {', '.join(names)}.")
        settings["covariance_type"] = names[0] if len(names) == 1 else names
    if site_weights is not None:
        settings["site_weights"] = str(np.asarray(site_weights).reshape(-1)[0])
    return settings


def _components(G: Any, grid: bool = False) -> int | list[int]:
    """R's ``G``: one whole number, or with ``grid`` several (a grid of K to choose from)."""
    values = np.asarray(G).reshape(-1)
    if grid and values.size > 1:
        return [int(_integer(v, "G")) for v in values]  # type: ignore[arg-type]
    return int(_integer(G, "G"))  # type: ignore[arg-type]


def _estimator(G: Any, method: Any, threshold: Any, grid: bool = False, **settings: Any) -> DistributedGaussianMixture:
    method = defaults()["method"] if method is None else str(method)
    kappa = None if threshold is None else float(np.asarray(threshold).reshape(-1)[0])
    return DistributedGaussianMixture(
        n_components=_components(G, grid), aggregator=method, threshold=kappa, backend=_R_BACKEND, **settings
    )


def _settings(est: DistributedGaussianMixture, model: dict[str, Any]) -> dict[str, Any]:
    """What inference needs to rerun the aggregation: its own settings and the model settings R gave."""
    return {"threshold": est.threshold, "alpha": float(est.alpha), **model}


def aggregate(sites: Sequence[Any], G: Any, method: Any = None, threshold: Any = None, alpha: Any = 0.5,
              names: Any = None, sizes: Any = None, modelNames: Any = None,
              site_weights: Any = None) -> dict[str, Any]:
    """Aggregate one mclust ``parameters`` list per site; the fields of the R ``"dfmr"`` object.

    ``sizes`` are the sites' row counts (mclust's ``$n``; NA/None where unknown): when every site
    has one they are the server's sizes, authoritative (``n_samples=`` of the aggregators);
    otherwise none are passed and equal sizes are assumed (and said). The sites may have fitted
    different covariance models; the aggregate is of ``modelNames`` (one mclust name), by default
    the model of a strict majority of the sites, else VVV (V when d = 1;
    :func:`dfmr.covariance.majority_covariance_type`: a site's model is its own claim). ``site_weights`` ("shared" or
    "free") as in :class:`~dfmr.DistributedGaussianMixture`.
    """
    local = site_mixtures(sites, names)
    if modelNames is None:
        modelNames = majority_covariance_type([m.covariance_type for m in local], local[0].dim)
    model = _model_settings(modelNames, site_weights)
    est = _estimator(G, method, threshold, alpha=float(alpha), **model)
    n_jobs = est._validated_params()
    known = None
    if sizes is not None:
        values = [None if s is None else float(np.asarray(s, dtype=float).reshape(-1)[0]) for s in sizes]
        if len(values) == len(local) and all(v is not None and math.isfinite(v) and v > 0 for v in values):
            known = [int(v) for v in values]
    out = _with_local(result_to_mclust(est._aggregate(local, n_jobs, known)), local)
    out["sizes"] = known
    out["settings"] = _settings(est, model)
    return out


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
        machine: Any = None, names: Any = None, modelNames: Any = None, site_weights: Any = None,
        **settings: Any) -> dict[str, Any]:
    """Fit from raw data: rows dealt to ``machines`` sites, or grouped by ``machine`` (integer codes 1..m).

    ``names`` labels the sites in error messages. ``modelNames`` (mclust model names, or
    scikit-learn's) is the estimator's ``covariance_type`` and ``site_weights`` its ``site_weights``;
    None leaves the estimator's default. Several ``G`` or ``modelNames`` are a grid: the estimator
    fits every candidate and keeps the best by its criterion; ``criterion`` is then its
    ``criterion_table_`` as columns (None for one candidate). ``settings`` go to
    :class:`~dfmr.DistributedGaussianMixture` (``alpha``, ``n_init``, ``max_iter``, ``tol``, ``n_jobs``); whole
    numbers sent by R as doubles are passed as integers.
    """
    try:
        return _fit(x, G, machines, method, threshold, seed, machine,
                    _model_settings(modelNames, site_weights, grid=True), **settings)
    except ValueError as exc:
        reworded = _site_error(exc, _as_names(names))
        if reworded is exc:
            raise
        raise reworded from exc


def _fit(x: Any, G: Any, machines: Any, method: Any, threshold: Any, seed: Any, machine: Any,
         model: dict[str, Any], **settings: Any) -> dict[str, Any]:
    for key in ("n_init", "max_iter", "n_jobs"):
        if key in settings:
            settings[key] = _integer(settings[key], key)
    seed = _integer(seed, "seed")
    if machine is None and seed is None:
        # A seed drawn here (fresh randomness all the same) makes the row -> site deal reproducible,
        # so the object can say which rows each site had (inference needs them).
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    est = _estimator(G, method, threshold, grid=True, n_machines=_integer(machines, "machines"), random_state=seed,
                     **model, **settings)
    data = np.asarray(x, dtype=np.float64)
    if machine is None:
        est.fit(x)
        # fit(X) deals the rows with this generator (DistributedGaussianMixture.fit); so do we.
        rows = split(np.arange(data.shape[0]).reshape(-1, 1), est.n_machines_, np.random.default_rng(
            np.random.SeedSequence(seed)))
        codes = np.empty(data.shape[0], dtype=np.int64)
        for j, idx in enumerate(rows, start=1):
            codes[idx[:, 0]] = j
    else:
        codes = _site_codes(machine, data.shape[0])
        est.fit_partitions([data[codes == j] for j in range(1, int(codes.max()) + 1)])
    out = _with_local(result_to_mclust(est.aggregation_), est.local_mixtures_)
    out["machine"] = codes
    out["sizes"] = np.bincount(codes)[1:]
    # inference reruns the chosen candidate's aggregation
    out["settings"] = _settings(est, {**model, "covariance_type": est.covariance_type_})
    out["criterion"] = _criterion(getattr(est, "criterion_table_", None))
    return out


def _criterion(table: Any) -> dict[str, Any] | None:
    """The estimator's ``criterion_table_`` (a grid was fitted) as columns; None after a single candidate."""
    if table is None:
        return None
    columns = ("n_components", "covariance_type", "log_likelihood", "n_parameters", "bic", "icl", "n_machines_kept")
    out: dict[str, Any] = {c: table[c].tolist() for c in columns}
    out["covariance_type"] = [str(v) for v in out["covariance_type"]]
    return out


def _site_codes(machine: Any, n: int) -> np.ndarray:
    """Every row's site as integer codes 1..m (R's factor codes), checked."""
    codes = np.asarray(machine).reshape(-1)
    if codes.shape[0] != n:
        raise ValueError(f"machine has {codes.shape[0]} entries but x has {n} rows.")
    if codes.dtype.kind not in "iuf" or not np.all(np.isfinite(codes)) or codes.min() < 1:
        raise ValueError("machine must give every row's site (no NA).")
    return codes.astype(np.int64)


# R's p.adjust() method names -> statsmodels' multipletests(); "none" leaves the p-values as they are.
P_ADJUST = {"holm": "holm", "hochberg": "simes-hochberg", "hommel": "hommel", "bonferroni": "bonferroni",
            "BH": "fdr_bh", "fdr": "fdr_bh", "BY": "fdr_by", "none": None}


def r_param_names(G: int, d: int, variables: Sequence[str] | None = None) -> list[str]:
    """The free parameters as R names them, in :func:`dfmr.information.param_names` order.

    ``pro1`` .. ``pro{G-1}``, then ``mean.<variable>.<k>`` and the upper triangles
    ``sigma.<variable>.<variable>.<k>`` (``mean.<k>`` and ``sigmasq.<k>`` when d = 1); variables
    are named ``1`` .. ``d`` when the data have no column names.
    """
    names = [f"pro{k}" for k in range(1, G)]
    if d == 1:
        return names + [f"mean.{k}" for k in range(1, G + 1)] + [f"sigmasq.{k}" for k in range(1, G + 1)]
    var = [str(v) for v in variables] if variables is not None and len(variables) == d else \
        [str(j) for j in range(1, d + 1)]
    rows, cols = np.triu_indices(d)
    names += [f"mean.{var[j]}.{k}" for k in range(1, G + 1) for j in range(d)]
    return names + [f"sigma.{var[i]}.{var[j]}.{k}" for k in range(1, G + 1) for i, j in zip(rows, cols)]


def _optional_sizes(sizes: Any) -> list[int] | None:
    if sizes is None:
        return None
    values = np.atleast_1d(np.asarray(sizes, dtype=np.float64))
    if not np.all(np.isfinite(values)) or np.any(values < 1):
        return None
    return [int(v) for v in values]


def inference(local: Sequence[Any], G: Any, method: Any, parameters: Any, settings: Any = None, x: Any = None,
              machine: Any = None, sizes: Any = None, type: Any = None, level: Any = 0.95, scale: Any = "link",
              kind: Any = "observed", adjust: Any = "holm", alpha: Any = 0.05, n_boot: Any = 200, seed: Any = 0,
              variables: Any = None) -> dict[str, Any]:
    """Standard errors, intervals and site tests of an R ``"dfmr"`` object (:func:`dfmr.inference.infer`).

    The aggregation is rerun on the object's local estimates with its settings (and checked
    against the object's ``parameters``: a modified object is refused); with the sites' rows
    (``x`` and ``machine``, as ``dfmr_fit`` keeps them) the result is what
    ``DistributedGaussianMixture.infer(parts=...)`` gives for the same fit. ``type`` is the
    interval method (None: :func:`dfmr.inference.default_method` of the aggregator), ``scale``
    as in :meth:`~dfmr.inference.MixtureInferenceResult.conf_int`, ``adjust`` an R
    ``p.adjust`` method for the site tests.

    Returns
    -------
    dict
        ``names``, ``estimate``, ``se``, ``statistic``, ``p_value``, ``vcov`` (free parameters),
        ``lower``, ``upper``, ``type``, ``use_t``, ``df_resid`` (None for normal quantiles) and
        ``tests`` (None without the sites' sizes).
    """
    from ..inference import infer

    if adjust not in P_ADJUST:
        raise ValueError(f"adjust must be one of p.adjust's methods ({', '.join(P_ADJUST)}), got {adjust!r}.")
    settings = settings or {}
    local = site_mixtures(local)
    model = {k: settings[k] for k in ("covariance_type", "site_weights") if k in settings}
    est = _estimator(G, method, settings.get("threshold"), alpha=float(settings.get("alpha", 0.5)), **model)
    known = _optional_sizes(sizes)
    result = est._aggregate(local, 1, known)
    stored = params_from_mclust(parameters, "parameters: ")
    mix = result.mixture
    if stored.n_components != mix.n_components or stored.dim != mix.dim or not all(
        np.allclose(getattr(stored, f), getattr(mix, f), rtol=1e-8, atol=1e-12)
        for f in ("weights", "means", "covariances")
    ):
        raise ValueError("the object's parameters are not the aggregation of its local estimates (was the object "
                         "modified?); inference needs an unmodified dfmr_fit() or dfmr_aggregate() result.")
    parts = None
    if x is not None and machine is not None:
        data = np.asarray(x, dtype=np.float64)
        data = data.reshape(-1, 1) if data.ndim == 1 else data
        codes = _site_codes(machine, data.shape[0])
        parts = [data[codes == j] for j in range(1, int(codes.max()) + 1)]
    try:
        res = infer(
            result, local, parts, method=None if type is None else str(type),
            n_samples=known if parts is None else None, kind=str(kind),
            aggregate=lambda mixes: est._aggregate(mixes, 1, None), multitest_method=P_ADJUST[adjust] or "holm",
            alpha=float(alpha), n_boot=_integer(n_boot, "n_boot"), random_state=_integer(seed, "seed"),
        )
    except ValueError as exc:
        if "needs the retained machines' data" in str(exc):
            raise ValueError("type = 'information' needs the sites' data, which only dfmr_fit() results keep; "
                             "use type = 'jackknife' for an aggregate of fitted sites.") from exc
        raise
    free = np.arange(len(res.param_names)) != mix.n_components - 1  # all but the last weight
    ci = res.conf_int(1.0 - float(level), str(scale)).to_numpy()
    out = {
        "names": r_param_names(mix.n_components, mix.dim, _as_names(variables)),
        "estimate": res.params.to_numpy()[free], "se": res.bse.to_numpy()[free],
        "statistic": res.tvalues.to_numpy()[free], "p_value": res.pvalues.to_numpy()[free],
        "vcov": res.cov_params().to_numpy()[np.ix_(free, free)], "lower": ci[free, 0], "upper": ci[free, 1],
        "type": res.method, "use_t": res.use_t, "df_resid": res.df_resid if res.use_t else None, "tests": None,
    }
    tests = res.machine_tests
    if tests is not None:
        adjusted, flagged = tests.pvalues_adjusted, tests.reject
        if P_ADJUST[adjust] is None:
            adjusted, flagged = tests.pvalues, tests.pvalues < float(alpha)
        out["tests"] = {"statistic": tests.statistic, "df": tests.df, "p_value": tests.pvalues,
                        "adjusted": adjusted, "flagged": flagged, "retained": tests.retained, "n": tests.n_samples}
    return out


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


_FUNCTIONS = {"defaults": defaults, "fit": fit, "aggregate": aggregate, "distances": distances,
              "inference": inference}


def call(name: str, arguments: Any = None) -> Any:
    """Run ``name`` (``"fit"``, ``"aggregate"``, ``"distances"``, ``"defaults"``) on decoded ``arguments``.

    Returns the encoded result, or ``{"python_error": message, "python_type": name}`` if it raised;
    when it warned, ``{"python_value": result, "python_warnings": messages}``, which the R package
    raises as R warnings (a Python warning printed by the embedding process would reach neither
    ``warning()`` handlers nor ``suppressWarnings()``).
    """
    try:
        kwargs = decode(arguments) if arguments else {}
        if not isinstance(kwargs, dict):
            raise TypeError("arguments must be a named list.")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            value = encode(_FUNCTIONS[name](**kwargs))
    except Exception as exc:  # every failure goes back to R as a value, never as a foreign exception
        return {"python_error": str(exc), "python_type": type(exc).__name__}
    if caught:
        return {"python_value": value, "python_warnings": [str(w.message) for w in caught]}
    return value
