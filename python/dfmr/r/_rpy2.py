"""The rpy2 half of :mod:`dfmr.r`: R objects <-> dfmr objects, and the R functions of an embedded session."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..aggregate import AggregationResult
from ..covariance import get_model
from ..params import GaussianMixtureParams, InvalidMixtureError
from . import api
from .mclust import params_from_mclust, params_to_mclust, result_to_mclust

# Starting R through rpy2 puts R's library directories (e.g. /usr/lib/x86_64-linux-gnu) on this
# process's LD_LIBRARY_PATH. Loaded libraries no longer need it, but every child process would inherit
# it: a process-pool or Dask worker started afterwards could then load the system's copies of
# libraries its Python was not built with (seen: "undefined symbol" when importing ssl). R's own
# programs (R, Rscript) set the variable themselves, so it is put back as it was.
_ld_library_path = os.environ.get("LD_LIBRARY_PATH")
try:
    import rpy2.rinterface as ri
    import rpy2.robjects as ro
    from rpy2.robjects import conversion, numpy2ri
except Exception as exc:  # rpy2 missing, or rpy2 present but R not found (R_HOME, libR.so)
    raise ImportError(
        "dfmr.r needs R (>= 4.2) and rpy2 == 3.5.17: install R (Debian/Ubuntu: apt-get install r-base-core "
        "r-cran-mclust), then pip install 'dfmr[r]'. Loading rpy2 failed with: "
        f"{type(exc).__name__}: {exc}"
    ) from exc
finally:
    if _ld_library_path is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = _ld_library_path

__all__ = ["converter", "from_r", "to_r", "activate", "deactivate"]

_R_NA_INTEGER = -(2**31)  # NA_integer_ and NA (logical) as rpy2 exposes their storage
_MIXTURE_FIELDS = frozenset({"pro", "mean", "variance"})


# ------------------------------------------------------------------------- R -> plain Python data


def _names(obj: Any) -> list[str] | None:
    names = obj.names
    if names is ri.NULL or names is None:
        return None
    return [str(n) for n in names]


def _r_class(obj: Any) -> list[str]:
    try:
        cls = obj.do_slot("class")
    except LookupError:
        return []
    return [str(c) for c in cls]


def _dim(obj: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(n) for n in obj.do_slot("dim"))
    except LookupError:
        return None


def r_to_plain(obj: Any) -> Any:
    """An R value as plain Python data, the way reticulate hands R values to Python.

    ``NULL`` -> None; a named list -> dict, an unnamed list -> list; a numeric or logical vector
    with ``dim`` -> ndarray in R's (column-major) layout, otherwise a scalar (length 1) or a 1-D
    array, with ``NA`` as NaN; a character vector -> str or list of str.
    """
    if obj is ri.NULL or obj is None:
        return None
    if isinstance(obj, ri.ListSexpVector):
        names = _names(obj)
        items = [r_to_plain(x) for x in obj]
        return items if names is None else dict(zip(names, items))
    if isinstance(obj, ri.StrSexpVector):
        values = [None if s is ri.NA_Character else str(s) for s in obj]
        return values[0] if len(values) == 1 else values
    if isinstance(obj, (ri.FloatSexpVector, ri.IntSexpVector, ri.BoolSexpVector)):
        arr = np.array(obj.memoryview(), dtype=np.float64)
        if not isinstance(obj, ri.FloatSexpVector):
            arr[arr == _R_NA_INTEGER] = math.nan
        dim = _dim(obj)
        if dim is not None:
            return arr.reshape(dim, order="F")
        return arr[0] if arr.size == 1 else arr
    raise TypeError(f"cannot read an R object of type {ri.RTYPES(obj.typeof).name} as data.")


# ------------------------------------------------------------------------- plain Python data -> R


def plain_to_r(value: Any) -> Any:
    """Inverse of :func:`r_to_plain`: dict -> named list, list -> list, arrays keep their shape (``dim``)."""
    if value is None:
        return ri.NULL
    if isinstance(value, Mapping):
        out = ri.ListSexpVector([plain_to_r(v) for v in value.values()])
        out.do_slot_assign("names", ri.StrSexpVector([str(k) for k in value]))
        return out
    if isinstance(value, str):
        return ri.StrSexpVector([value])
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in value):
            return ri.FloatSexpVector([float(v) for v in value])  # as reticulate: numbers -> a vector
        return ri.ListSexpVector([plain_to_r(v) for v in value])
    if isinstance(value, (bool, np.bool_)):
        return ri.BoolSexpVector([bool(value)])
    if isinstance(value, (numbers.Integral, numbers.Real)) and not isinstance(value, np.ndarray):
        return ri.IntSexpVector([int(value)]) if isinstance(value, numbers.Integral) else \
            ri.FloatSexpVector([float(value)])
    arr = np.asarray(value)
    flat = arr.reshape(-1, order="F")
    if arr.dtype.kind == "b":
        vec = ri.BoolSexpVector(flat.tolist())
    elif arr.dtype.kind in "iu":
        vec = ri.IntSexpVector(flat.astype(np.int64).tolist())
    elif arr.dtype.kind == "f":
        vec = ri.FloatSexpVector(flat.astype(np.float64).tolist())
    else:
        raise TypeError(f"cannot convert a {arr.dtype} array to R.")
    if arr.ndim >= 2:
        vec.do_slot_assign("dim", ri.IntSexpVector(list(arr.shape)))
    return vec


# ------------------------------------------------------------------------------- the converter


def _is_mixture(obj: Any, strict: bool = False) -> bool:
    """An Mclust / densityMclust / dfmr fit (a list with a list ``parameters``), or a list meant as
    ``list(pro, mean, variance)``: with ``strict``, all three names (what the converter requires before
    it claims an R list); otherwise any of them, so that :func:`from_r` reports the missing ones."""
    if not isinstance(obj, ri.ListSexpVector):
        return False
    names = set(_names(obj) or ())
    if _MIXTURE_FIELDS <= names or (not strict and _MIXTURE_FIELDS & names):
        return True
    if "parameters" not in names:
        return False
    parameters = obj[(_names(obj) or []).index("parameters")]
    if not isinstance(parameters, ri.ListSexpVector):
        return False
    return not strict or _MIXTURE_FIELDS <= set(_names(parameters) or ())


def _mixture_from_r(obj: Any, where: str) -> GaussianMixtureParams:
    names = _names(obj) or []
    source = obj[names.index("parameters")] if "parameters" in names else obj
    return params_from_mclust(r_to_plain(source), where)


def from_r(obj: Any) -> GaussianMixtureParams | list[GaussianMixtureParams]:
    """An R mixture (or a list of them) as :class:`~dfmr.GaussianMixtureParams`.

    Parameters
    ----------
    obj : rpy2 object
        An ``Mclust`` or ``densityMclust`` fit (any covariance model, which the result keeps as its
        ``covariance_type``), a ``"dfmr"`` result, a list
        ``list(pro, mean, variance = list(sigma))`` in mclust's layout, or an R list of those.

    Returns
    -------
    GaussianMixtureParams, or a list of them for an R list of mixtures.

    Raises
    ------
    InvalidMixtureError
        For malformed parameters (NA, wrong shapes, a noise component, ...); for a list, the
        message names the element (1-based, as in R).
    TypeError
        If ``obj`` is neither a mixture nor a list of mixtures.
    """
    if isinstance(obj, GaussianMixtureParams):  # already converted (e.g. by an active converter)
        return obj
    if isinstance(obj, (list, tuple)):
        return [from_r(element) for element in obj]
    sexp = obj.__sexp__ if hasattr(obj, "__sexp__") and not isinstance(obj, ri.Sexp) else obj
    if isinstance(sexp, ri.SexpVector) and not isinstance(sexp, ri.ListSexpVector):
        raise TypeError(f"from_r: expected an R list (an Mclust fit or list(pro, mean, variance)), got an R "
                        f"{ri.RTYPES(sexp.typeof).name}.")
    if not isinstance(sexp, ri.ListSexpVector):
        raise TypeError(f"from_r: expected an R list, got {type(obj).__name__}.")
    if _is_mixture(sexp):
        return _mixture_from_r(sexp, "")
    names = _names(sexp)
    out = []
    for i, element in enumerate(sexp, start=1):
        label = f"element {i}" + (f" ({names[i - 1]!r})" if names and names[i - 1] else "")
        if not _is_mixture(element):
            raise InvalidMixtureError(
                f"{label}: expected an Mclust fit or list(pro, mean, variance); got an R object with names "
                f"{_names(element) if isinstance(element, ri.ListSexpVector) else None}."
            )
        out.append(_mixture_from_r(element, f"{label}: "))
    return out


def to_r(x: Any) -> Any:
    """dfmr objects as R objects in mclust's layout.

    A :class:`~dfmr.GaussianMixtureParams` becomes ``list(modelName, d, G, df, parameters = list(pro, mean,
    variance))`` in the layout of its covariance model (``covariance_type``), as ``Mclust()`` writes that
    model (:meth:`dfmr.covariance.CovarianceModel.to_mclust`; ``df`` is mclust's ``nMclustParams``), an
    :class:`~dfmr.AggregationResult` the object of class ``"dfmr"`` that the R package returns (its
    ``$parameters``, ``$retained``, ``$center``, ``$distances``, ``$cutoff``, ``$method``, ...), and a
    list or tuple of them an R list.
    """
    if isinstance(x, GaussianMixtureParams):
        parameters = params_to_mclust(x)
        df = get_model(x.covariance_type, x.dim).n_parameters(x.n_components, x.dim)
        return plain_to_r({"modelName": parameters["variance"]["modelName"], "d": x.dim, "G": x.n_components,
                           "df": df, "parameters": parameters})
    if isinstance(x, AggregationResult):
        out = plain_to_r(result_to_mclust(x))
        out.do_slot_assign("class", ri.StrSexpVector(["dfmr"]))
        return out
    if isinstance(x, (list, tuple)):
        return ri.ListSexpVector([to_r(v) for v in x])
    raise TypeError(f"to_r: expected GaussianMixtureParams, AggregationResult or a list of them, got "
                    f"{type(x).__name__}.")


def _converter() -> conversion.Converter:
    conv = conversion.Converter("dfmr")
    conv.py2rpy.register(GaussianMixtureParams, to_r)
    conv.py2rpy.register(AggregationResult, to_r)

    @conv.rpy2py.register(ri.ListSexpVector)
    def _list(obj: Any) -> Any:
        # Only lists that are surely mixtures (or lists of them); any other R list converts as it
        # would without this converter.
        if _is_mixture(obj, strict=True) or (len(obj) and all(_is_mixture(e, strict=True) for e in obj)):
            return from_r(obj)
        return ro.default_converter.rpy2py(obj)

    return conv


converter = _converter()
"""Compose with rpy2's converters: ``localconverter(default_converter + numpy2ri.converter + dfmr.r.converter)``."""


# --------------------------------------------------------------------- R functions (embedded R)


@ri.rternalize
def _call(name: Any, arguments: Any = ri.NULL) -> Any:
    """:func:`dfmr.r.api.call` as an R function ``function(name, arguments)`` for the R package.

    Nothing may leave it as a Python exception (it would cross R's stack), so conversion failures
    come back as ``list(python_error = message)`` too, which the R package raises as an R error.
    """
    try:
        return plain_to_r(api.call(r_to_plain(name), r_to_plain(arguments)))
    except Exception as exc:
        return plain_to_r({"python_error": str(exc), "python_type": type(exc).__name__})


_saved_conversion: list[conversion.Converter] = []


def _require_r_package(name: str, how: str) -> None:
    # isTRUE(): rpy2 returns None for an invisible value, which requireNamespace() can be.
    check = f'isTRUE(suppressWarnings(suppressPackageStartupMessages(requireNamespace("{name}", quietly = TRUE))))'
    if not ro.r(check)[0]:
        raise ImportError(f"the R package {name} is not installed in R's library ({', '.join(ro.r('.libPaths()'))}): "
                          f"{how}.")


def activate() -> None:
    """Convert dfmr objects globally, and give the embedded R session the R package's functions.

    After it, ``robjects.r`` scripts and ``%%R`` cells see ``dfmr_fit``, ``dfmr_aggregate`` and
    ``dfmr_distances`` (``library(dfmr)`` is attached) and get the R package's ``"dfmr"`` objects with
    their methods; the computations run in this Python process (see the module docstring of
    :mod:`dfmr.r`). Calling it again is harmless; :func:`deactivate` restores the conversion.
    Without it, the R package refuses to run in an embedded R (instead of letting reticulate abort
    the process).

    Raises
    ------
    ImportError
        If the R packages mclust or dfmr (``R CMD INSTALL r_bridge``) are not installed.
    """
    _require_r_package("mclust", "apt-get install r-cran-mclust, or install.packages('mclust') in R")
    _require_r_package("dfmr", "run R CMD INSTALL r_bridge from the dfmr sources")
    ro.r("suppressPackageStartupMessages(library(dfmr))")
    ro.r("dfmr:::use_embedded_python")(_call)
    if not _saved_conversion:
        _saved_conversion.append(conversion.get_conversion())
        conversion.set_conversion(ro.default_converter + numpy2ri.converter + converter)


def deactivate() -> None:
    """Undo the global conversion of :func:`activate`.

    The R functions stay routed to this process: reticulate cannot take over inside it.
    """
    if _saved_conversion:
        conversion.set_conversion(_saved_conversion.pop())
