"""R interoperability: mclust objects <-> dfmr objects, and dfmr's R functions in an embedded R.

Two directions, one implementation of the method (this Python package):

* **Python drives R** (rpy2 == 3.5.17): :data:`converter` composes with rpy2's converters,
  ``with localconverter(default_converter + numpy2ri.converter + dfmr.r.converter)``, and turns
  mclust fits (every covariance model, see :mod:`dfmr.r.mclust`) and ``list(pro, mean, variance)``
  into :class:`~dfmr.GaussianMixtureParams`, and dfmr's mixtures and aggregation results into R lists
  in mclust's layout. :func:`from_r` and :func:`to_r` are the conversions themselves.
  :func:`activate` converts globally and attaches the R package ``dfmr`` (``r_bridge/``, installed
  with ``R CMD INSTALL r_bridge``) to the embedded R session, so ``robjects.r`` scripts and ``%%R``
  cells call ``dfmr_fit``, ``dfmr_aggregate`` and ``dfmr_distances`` exactly as a plain R session does.
* **R drives Python** (the R package, through reticulate): its functions call :mod:`dfmr.r.api`,
  which takes and returns plain data.

In IPython or Jupyter, rpy2's ``%%R`` magics take the composed converter with ``-c``, so that
``-i`` sends dfmr mixtures in mclust's layout and ``-o`` brings mclust and dfmr fits back as
:class:`~dfmr.GaussianMixtureParams`::

    %load_ext rpy2.ipython
    conv = default_converter + numpy2ri.converter + dfmr.r.converter
    dfmr.r.activate()  # for dfmr_fit(), confint(), ... in the cells

    %%R -c conv -i X -o fit,ci
    fit <- dfmr_fit(X, G = 2, machines = 4, seed = 3)   # fit: a GaussianMixtureParams in Python
    ci <- confint(fit)                                  # ci: a NumPy array

How the R package reaches Python when R is embedded here (measured with R 4.2.2, reticulate 1.28,
rpy2 3.5.17, CPython 3.11): letting reticulate attach to the running interpreter aborts the process
("Fatal Python error: PyThreadState_Get: ... the GIL is released") at the first Python call, because
rpy2 releases the GIL while R runs. So :func:`activate` hands the R package R functions made with
rpy2's ``rternalize`` that call :mod:`dfmr.r.api` in this process (rpy2 re-acquires the GIL for
them); the R package routes its calls there instead of to reticulate. The R-side classes and
methods (print, summary, predict, logLik, BIC, plot) exist once, in the R package.

``dfmr.r.api`` and ``dfmr.r.mclust`` need neither R nor rpy2; :data:`converter`, :func:`from_r`,
:func:`to_r`, :func:`activate` and :func:`deactivate` load rpy2 on first use and raise an
``ImportError`` naming what to install when R or rpy2 is missing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["converter", "from_r", "to_r", "activate", "deactivate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _rpy2

        return getattr(_rpy2, name)
    raise AttributeError(f"module 'dfmr.r' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
