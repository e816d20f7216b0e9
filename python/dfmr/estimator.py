"""A scikit-learn style estimator for Gaussian mixtures learned across machines.

:class:`DistributedGaussianMixture` runs the whole pipeline of DESIGN.md: split the rows
across machines, fit the penalised MLE on every machine (:func:`dfmr.local.fit_local`), and
aggregate the local estimates with DFMR, MR, COAT or TKB (:mod:`dfmr.aggregate`).

It is a scikit-learn estimator (``BaseEstimator`` and ``DensityMixin``, passing
``sklearn.utils.estimator_checks.check_estimator``): ``__init__`` stores the hyper-parameters
untouched, ``fit`` validates them once, input is validated by ``sklearn.utils.validation``
(complex, sparse and object-string data are rejected), learned attributes end in ``_`` and
exist only after fitting, and ``get_params`` / ``set_params`` / ``clone`` / parameter searches
work. Two documented departures: a 1-D ``X`` is one feature (scikit-learn asks for a 2-D
array), and ``random_state`` also takes a ``numpy.random.Generator`` or ``SeedSequence``.

Local fits are reproducible: machine ``i`` draws its k-means++ starts from child ``i`` of
``numpy.random.SeedSequence(random_state)``, and every backend runs them with one BLAS
thread, so ``"serial"``, ``"threads"`` and ``"processes"`` give bit-for-bit the same result.
In-process backends limit BLAS with :mod:`dfmr._blas` (per thread where the library allows it,
else one reference-counted process-wide limit; it says what other threads see meanwhile), so
fits running concurrently in several threads give the same results as lone fits and leave the
original BLAS threads when the last of them ends.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import warnings
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._validation import check_int
from .aggregate import AggregationResult, coat, dfmr, mr, tkb
from .covariance import MODEL_NAMES, SKLEARN_TYPES, UNIVARIATE_MODEL_NAMES, get_model, sklearn_layout
from .executor import BACKENDS, MachineTask, check_timeout, engine, map_machines
from .local import fit_local_detailed, n_parameters
from .params import GaussianMixtureParams, precision_factor
from .partition import split
from .robust import robust_dfmr
from .selection import candidate_grid, fit_grid, is_grid
from .selection import validate as validate_selection
from .sites import check_site_weights
from .sources import InvalidDataError, dask_array_parts, dask_dataframe_parts, is_dask_collection
from .spark import is_spark_dataframe

__all__ = ["DistributedGaussianMixture", "NotFittedError"]

AGGREGATORS = ("dfmr", "mr", "coat", "tkb", "robust_dfmr")

_LOCAL_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(fit_local_detailed).parameters.items()
    if name in ("n_init", "max_iter", "tol")
}
_LEARNED = (
    "mixture_", "weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "local_mixtures_",
    "aggregation_",
    "n_features_in_", "n_machines_", "n_iter_", "converged_", "failed_machines_", "machine_indices_", "site_weights_",
    "n_components_", "covariance_type_",
    "local_n_components_",
)


_COVARIANCE_TYPES = (*SKLEARN_TYPES, *MODEL_NAMES, *UNIVARIATE_MODEL_NAMES)
# Aggregators that take the model of the aggregate (``covariance_type=``); COAT needs none.
_MODEL_AWARE = frozenset({"dfmr", "mr", "tkb", "robust_dfmr"})
# Aggregators that pool the sites by the sizes the server knows (``n_samples=``).
_SIZE_AWARE = frozenset(
    name for name, func in (("dfmr", dfmr), ("mr", mr), ("coat", coat), ("tkb", tkb), ("robust_dfmr", robust_dfmr))
    if "n_samples" in inspect.signature(func).parameters
)


def _sklearn_covariances(
    mixture: GaussianMixtureParams, model_name: str, layout: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``covariances_``, ``precisions_``, ``precisions_cholesky_`` of ``mixture`` in scikit-learn's ``layout``.

    The layout is the one the estimator's ``covariance_type`` asks for when the aggregate belongs to
    that model (``model_name``), else full: an aggregate outside the model (an aggregator that does not
    constrain its reduction) is reported whole, never cut to a layout that would drop its entries.
    """
    if mixture.covariance_type != model_name:
        layout = "full"
    model = get_model(mixture.covariance_type, mixture.dim)
    factors = precision_factor(mixture.cholesky_factors)
    precisions = factors @ np.swapaxes(factors, -1, -2)
    # In the diag and spherical layouts the precisions and their factors of diagonal (scalar) matrices
    # are the diagonals (the scalar): to_sklearn takes exactly these parts of any (K, d, d) stack.
    return tuple(model.to_sklearn(a, layout) for a in (mixture.covariances, precisions, factors))  # type: ignore[return-value]


# What a local fit sends back: weights, means, covariances, EM iterations, converged, rows of the machine.
_MachineResult = tuple[np.ndarray, np.ndarray, np.ndarray, int, bool, int]


def _seed_sequence(random_state: int | np.random.Generator | np.random.SeedSequence | None) -> np.random.SeedSequence:
    """The root seed sequence of one fit: machine ``i`` uses its child ``i``."""
    if isinstance(random_state, np.random.SeedSequence):
        # A copy: spawning children from the caller's object would change what the next fit gets.
        return np.random.SeedSequence(
            random_state.entropy, spawn_key=random_state.spawn_key, pool_size=random_state.pool_size
        )
    if isinstance(random_state, np.random.Generator):
        # Drawing from the generator makes successive fits differ, as with a shared generator in sklearn.
        return np.random.SeedSequence(random_state.integers(0, 2**32, size=8).tolist())
    return np.random.SeedSequence(random_state)


def _fit_machine(
    X: np.ndarray,
    index: int,
    seed: np.random.SeedSequence,
    n_components: int,
    n_init: int,
    max_iter: int,
    tol: float,
    need: int,
    covariance_type: str = "full",
    by_bic: bool = False,
) -> _MachineResult:
    """Local fit of machine ``index``, where its data ``X`` are: plain arrays back, so no pickling alters them.

    Returns the weights, means and covariances, then the EM iterations and convergence flag of
    the returned run, and the machine's number of rows. ``need`` rows are checked here too, for
    data whose size the client did not know (files, partitions): too few is invalid data, which
    stops the fit. ``by_bic``: the site chooses its own number of components, the K_i in
    1..``n_components`` of the smallest BIC (``-2 log L + p log n``), as a site that sees only
    some of the clusters should.
    """
    if X.shape[0] < need:
        raise InvalidDataError(
            f"it has {X.shape[0]} rows; a local fit needs at least n_components = {n_components} rows and "
            f"more than d = {X.shape[1]}. Use fewer machines."
        )
    rng = np.random.default_rng(seed)
    fits = [fit_local_detailed(X, k, rng, n_init=n_init, max_iter=max_iter, tol=tol, covariance_type=covariance_type)
            for k in (range(1, n_components + 1) if by_bic else (n_components,))]
    fit = min(fits, key=lambda f: -2.0 * float(np.sum(f.mixture.logpdf(X)))
              + n_parameters(f.mixture.n_components, X.shape[1], covariance_type) * np.log(X.shape[0]))
    mix = fit.mixture
    weights, means, covariances = np.array(mix.weights), np.array(mix.means), np.array(mix.covariances)
    return weights, means, covariances, int(fit.n_iter), bool(fit.converged), int(X.shape[0])


def _rebuild(
    index: int, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str = "full"
) -> GaussianMixtureParams:
    """Machine ``index``'s local estimate from the plain arrays a worker returned; a failure names the machine."""
    try:
        return GaussianMixtureParams(weights, means, covariances, covariance_type=covariance_type)
    except ValueError as exc:
        raise type(exc)(f"machine {index}: its local estimate is not a valid mixture: {exc}") from exc


def _lazy_shape(part: Any) -> tuple[int | None, int | None]:
    """(rows, columns) of a machine's lazy data as far as known without reading them (None: unknown)."""
    if callable(getattr(part, "shape", None)):  # a source such as SiteFile
        return part.shape()
    return None, None


def _known_shape(part: Any) -> tuple[int | None, int | None]:
    """(rows, columns) of an array or of lazy data (as far as known)."""
    return part.shape if isinstance(part, np.ndarray) else _lazy_shape(part)


class DistributedGaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture learned from data split across machines, robust to Byzantine machines.

    Every machine fits a K-component penalised MLE to its own rows; the local estimates are
    aggregated on the server by distance-filtered mixture reduction (DFMR, the default), plain
    mixture reduction (MR), the centre machine's estimate (COAT) or the trimmed k-barycenter
    (TKB). See DESIGN.md for the method.

    Parameters
    ----------
    n_components : int or sequence of int, default 1
        Number of mixture components K, or a grid of them (e.g. ``range(1, 10)``): then every
        candidate (K, covariance model) is fitted, aggregated and scored across the machines, and
        the best by ``criterion`` is kept (:mod:`dfmr.selection`; vignettes/model_selection.md).
        For a grid of several candidates the machines fit each by the plain MLE, the likelihood
        the criteria score (:func:`dfmr.selection.fit_grid_local`), not the penalised one of an
        int ``n_components``.
    covariance_type : str or sequence of str, default "full"
        The covariance model of the local fits and of the aggregate (:mod:`dfmr.covariance`), or a
        grid of them (``"all"``: mclust's fourteen), chosen with ``n_components``:
        scikit-learn's "full", "tied", "diag", "spherical" or an mclust model name (EII, VII, EEI,
        VEI, EVI, VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV, VVV; E, V for one feature). It sets the
        layout of ``covariances_``, ``precisions_`` and ``precisions_cholesky_`` as in
        ``sklearn.mixture.GaussianMixture``: full (K, d, d) for "full" and the mclust models
        without a smaller layout, tied (d, d) for "tied" and EEE, diag (K, d) for "diag" and
        VVI, spherical (K,) for "spherical" and VII; and the free parameters :meth:`bic` and
        :meth:`aic` count.
    criterion : {"bic", "icl"}, default "bic"
        How a grid's candidates are compared (lower is better, scikit-learn's sign).
    selection : {"two_rounds", "one_round"}, default "two_rounds"
        How a grid's candidates get their global log-likelihood: exactly, from a second round in
        which every machine scores every aggregate on its rows, or approximately from the first
        round alone (:func:`dfmr.selection.one_round_loglik`).
    n_machines : int or None, default None
        Number of machines :meth:`fit` splits the rows across; ``None`` means 10 for an
        in-memory ``X``. For a dask array ``X`` the row chunks are the machines and
        ``n_machines``, if given, must equal their number. :meth:`fit_partitions` takes the
        machines as given and ignores it.
    aggregator : {"robust_dfmr", "dfmr", "mr", "coat", "tkb"}, default "robust_dfmr"
        How the local estimates are combined. ``"robust_dfmr"`` (:func:`dfmr.robust_dfmr`, the
        default) screens components with calibrated tests, using the machines' row counts: it
        keeps every honest machine where the paper's ``"dfmr"`` drops some, and withstands
        valid-looking hostile estimates that pass DFMR's L2 filter (vignettes/robustness.md).
        ``"dfmr"`` is the paper's method exactly.
    threshold : float, optional
        DFMR's kappa >= 1; ``None`` uses ``m ** 0.1``. Only with ``aggregator="dfmr"`` (a
        ValueError otherwise, rather than being silently ignored).
    alpha : float, default 0.5
        Trimmed mass in [0, 1). Used by ``"tkb"`` only.
    site_weights : {"shared", "free"}, default "shared"
        ``"shared"``: the paper's iid machines. ``"free"``: the machines (sites) share the
        components but each has its own mixing proportions (:mod:`dfmr.sites`); the weights are
        a robust size-weighted average of theirs, each site's own in ``site_weights_``. With
        ``"robust_dfmr"``, ``"dfmr"`` or ``"mr"`` (a ValueError otherwise).
    backend : {"serial", "threads", "processes", "dask", "spark"}, default "processes"
        Where the local fits run (the engines of :mod:`dfmr.executor`): in this thread, in a
        thread pool, in a process pool (the platform's default ``multiprocessing`` start
        method), on dask.distributed (``client``, else the active client, else a
        ``LocalCluster`` of ``n_jobs`` worker processes started for the fit, with a warning,
        and closed afterwards), or on Spark (``client``, a SparkSession, else the active one;
        ``fit(spark_dataframe, site_col=...)``, see :mod:`dfmr.spark`). A machine's data are read
        or computed where its fit runs (for dask collections: on a worker holding the chunk; for
        a Spark DataFrame: on the executor holding the site's rows). Each worker uses one BLAS
        thread; with ``"serial"`` and ``"threads"`` the whole process does while the local fits
        run (see :mod:`dfmr._blas`). All backends give identical results.
    client : distributed.Client or pyspark.sql.SparkSession, optional
        The cluster of ``backend="dask"`` or ``backend="spark"``; ``None`` uses the active one
        (dask starts one if there is none).
    n_jobs : int, optional
        Workers of the pool and threads of the aggregation; ``None`` uses ``os.cpu_count()``,
        negative values count back from it (``-1`` all CPUs, ``-2`` all but one). The serial
        backend uses one thread throughout.
    n_init : int, default fit_local's (16)
        Largest number of k-means++ starts of every local fit (see :func:`dfmr.local.fit_local_detailed`).
    max_iter : int, default fit_local's (500)
        EM iterations of every local fit.
    tol : float, default fit_local's (1e-4)
        Convergence tolerance of every local fit, relative to the sampling scale of the penalised
        log-likelihood (see :func:`dfmr.local.fit_local_detailed`).
    progress : bool, default False
        Show a tqdm progress bar over the machines.
    timeout : float, optional
        Seconds a machine's local fit may run; a machine still running then is treated as failed
        (named in ``failed_machines_``) and the fit goes on with the others. How it is stopped
        depends on the backend (:mod:`dfmr.executor`): the process is killed, the dask worker
        restarted, the Spark fit killed; ``"serial"`` and ``"threads"`` abandon its thread, which
        runs on in the background. ``None``: no limit.
    total_timeout : float, optional
        Seconds all local fits together may take; the machines unfinished then are treated as
        failed, as with ``timeout``. ``None``: no limit.
    random_state : int, numpy.random.Generator, numpy.random.SeedSequence or None, default None
        Seeds the shuffle of :meth:`fit` and the local fits. With an int or a SeedSequence
        every fit gives the same result, and for an int ``fit(X)`` equals
        ``fit_partitions(dfmr.partition.split(X, n_machines, random_state))``. A Generator is
        drawn from, so successive fits differ; ``None`` takes fresh entropy. Also the default
        of :meth:`sample`.

    Attributes
    ----------
    mixture_ : GaussianMixtureParams
        The aggregated mixture.
    weights_ : ndarray of shape (K,)
        Its mixing proportions.
    means_ : ndarray of shape (K, d)
        Its component means.
    covariances_ : ndarray
        Its component covariances in the layout of ``covariance_type``: (K, d, d), (d, d), (K, d)
        or (K,) (``mixture_.covariances`` always holds the (K, d, d) stack).
    precisions_ : ndarray
        Inverses of the covariances, in the same layout.
    precisions_cholesky_ : ndarray
        Cholesky factors of the precisions in the same layout (scikit-learn's: upper triangular
        ``U_k`` with ``U_k U_k^T = Sigma_k^-1`` in the full and tied layouts, ``1 / sqrt`` of
        the variances in the diag and spherical ones).
    local_mixtures_ : list of GaussianMixtureParams
        The local estimate of every machine that did not fail, in machine order.
    aggregation_ : AggregationResult
        The aggregation with its diagnostics (retained machines, distances, objective).
    site_weights_ : ndarray of shape (n_machines_, K) or None
        With ``site_weights="free"``: every site's own proportions on the output components
        (rows as ``local_mixtures_``, NaN for sites not kept); None with ``"shared"``.
    n_features_in_ : int
        Dimension d of the data.
    n_machines_ : int
        Number of machines whose local estimate was aggregated (failed machines excluded).
    machine_indices_ : ndarray of int, shape (n_machines_,)
        The machine index of every entry of ``local_mixtures_``, ``n_iter_`` and ``converged_``;
        the indices in ``aggregation_`` (retained, centre, distances) are positions in
        ``local_mixtures_``.
    failed_machines_ : dict of int to str
        Machines whose local fit failed at run time (an exception, a numerical failure, a
        worker process that died), with the reason; they are treated as missing. Unlike a
        Byzantine machine, which sends an estimate that the aggregator may exclude, a failed
        machine sends none. Empty when every machine succeeded.
    local_n_components_ : ndarray of int, shape (n_machines_,)
        Components of every machine's local estimate: ``n_components``, or the sites' own
        numbers (``fit_partitions(..., local_n_components=...)``, chosen by BIC with "bic").
    n_iter_ : ndarray of int, shape (n_machines_,)
        EM iterations of every machine's returned local run.
    converged_ : ndarray of bool, shape (n_machines_,)
        Whether every machine's returned local run met ``tol`` within ``max_iter`` iterations;
        a machine whose run did not is named in a ``ConvergenceWarning``.
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        Column names of the DataFrame given to fit (of the first part for ``fit_partitions``);
        absent when the data had no string column names.

    Notes
    -----
    The aggregate can have fewer than ``n_components`` components when the reduction drops
    components that receive no mass (a ``RuntimeWarning`` says so); ``weights_`` then has
    fewer entries.
    """

    def __init__(
        self,
        n_components: int | Sequence[int] = 1,
        *,
        covariance_type: str | Sequence[str] = "full",
        criterion: str = "bic",
        selection: str = "two_rounds",
        n_machines: int | None = None,
        aggregator: str = "robust_dfmr",
        threshold: float | None = None,
        alpha: float = 0.5,
        site_weights: str = "shared",
        backend: str = "processes",
        client: Any = None,
        n_jobs: int | None = None,
        n_init: int = _LOCAL_DEFAULTS["n_init"],
        max_iter: int = _LOCAL_DEFAULTS["max_iter"],
        tol: float = _LOCAL_DEFAULTS["tol"],
        progress: bool = False,
        timeout: float | None = None,
        total_timeout: float | None = None,
        random_state: int | np.random.Generator | np.random.SeedSequence | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.criterion = criterion
        self.selection = selection
        self.n_machines = n_machines
        self.aggregator = aggregator
        self.threshold = threshold
        self.alpha = alpha
        self.site_weights = site_weights
        self.backend = backend
        self.client = client
        self.n_jobs = n_jobs
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.progress = progress
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.random_state = random_state

    # ----------------------------------------------------------------- scikit-learn protocol

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # A 1-D X is accepted as one feature, but scikit-learn's one_d_array tag means "only 1-D
        # input" (its checks would then feed only the first column), so it stays False.
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.target_tags.required = False
        tags.non_deterministic = False
        return tags

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: a learned attribute before fit says why it is missing.
        if name in _LEARNED:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet, so it has no {name!r}. "
                "Call fit(X) or fit_partitions(parts) first."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __sklearn_is_fitted__(self) -> bool:
        return "mixture_" in self.__dict__

    def _as_matrix(self, X: Any, name: str) -> np.ndarray:
        """``X`` as a finite float64 array of shape (n, d), validated by scikit-learn; 1-D is one column.

        No copy is made when ``X`` already is a float64 array.
        """
        if not sp.issparse(X):
            try:
                one_column = np.ndim(X) == 1
            except ValueError:  # ragged nested sequences: check_array below says what is wrong
                one_column = False
            if one_column:
                X = np.reshape(X, (-1, 1))
        return check_array(X, dtype=np.float64, input_name=name, estimator=self)

    def _validated_params(self) -> int:
        """Check every hyper-parameter; returns the number of workers. Raises ValueError naming the parameter."""
        validate_selection(self.n_components, self.covariance_type, self.criterion, self.selection)
        if not is_grid(self.n_components, self.covariance_type) and self.covariance_type not in _COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {', '.join(_COVARIANCE_TYPES)}; got {self.covariance_type!r}."
            )
        if self.n_machines is not None:
            check_int(self.n_machines, "n_machines", 1)
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator must be one of {', '.join(map(repr, AGGREGATORS))}; got {self.aggregator!r}.")
        if self.threshold is not None and not (
            isinstance(self.threshold, numbers.Real) and math.isfinite(self.threshold) and self.threshold >= 1
        ):
            raise ValueError(f"threshold (kappa) must be None or a finite number >= 1, got {self.threshold!r}.")
        if self.threshold is not None and self.aggregator != "dfmr":
            # Silently ignoring it would leave the user believing DFMR ran with that kappa.
            raise ValueError(
                f"threshold (kappa) applies to aggregator='dfmr' only, not {self.aggregator!r} (the default is "
                "'robust_dfmr'); pass aggregator='dfmr' with it, or leave threshold=None."
            )
        if not (isinstance(self.alpha, numbers.Real) and 0 <= self.alpha < 1):
            raise ValueError(f"alpha must be a number in [0, 1), got {self.alpha!r}.")
        if check_site_weights(self.site_weights) == "free" and self.aggregator not in ("robust_dfmr", "dfmr", "mr"):
            raise ValueError(
                f"site_weights='free' needs aggregator 'robust_dfmr', 'dfmr' or 'mr', not {self.aggregator!r}."
            )
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {self.backend!r}.")
        if self.client is not None and self.backend not in ("dask", "spark"):
            raise ValueError(f"client is used by backend='dask' or 'spark' only; got backend={self.backend!r}.")
        check_timeout(self.timeout, "timeout")
        check_timeout(self.total_timeout, "total_timeout")
        cpus = os.cpu_count() or 1
        if self.n_jobs is None:
            n_jobs = cpus
        elif isinstance(self.n_jobs, numbers.Integral) and not isinstance(self.n_jobs, bool) and self.n_jobs != 0:
            n_jobs = int(self.n_jobs) if self.n_jobs > 0 else cpus + 1 + int(self.n_jobs)
            if n_jobs < 1:
                raise ValueError(f"n_jobs = {self.n_jobs} leaves no worker on a machine with {cpus} CPUs.")
        else:
            raise ValueError(f"n_jobs must be None or a non-zero integer, got {self.n_jobs!r}.")
        check_int(self.n_init, "n_init", 1)
        check_int(self.max_iter, "max_iter", 1)
        if not (isinstance(self.tol, numbers.Real) and math.isfinite(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be a finite number >= 0, got {self.tol!r}.")
        if not isinstance(self.progress, (bool, np.bool_)):
            raise ValueError(f"progress must be True or False, got {self.progress!r}.")
        rs = self.random_state
        if not (
            rs is None
            or isinstance(rs, (np.random.Generator, np.random.SeedSequence))
            or (isinstance(rs, numbers.Integral) and not isinstance(rs, bool) and rs >= 0)
        ):
            raise ValueError(
                "random_state must be None, a non-negative integer, a numpy.random.Generator or a "
                f"numpy.random.SeedSequence; got {rs!r}."
            )
        return 1 if self.backend == "serial" else n_jobs

    # ----------------------------------------------------------------------------------- fitting

    def fit(self, X: ArrayLike, y: None = None, *, site_col: str | None = None) -> DistributedGaussianMixture:
        """Split the rows of ``X`` across ``n_machines`` machines and fit.

        The rows are shuffled (seeded by ``random_state``) and dealt out as evenly as possible
        (:func:`dfmr.partition.split`), then :meth:`fit_partitions` runs on the pieces. The
        pieces are the only copy of a float64 ``X`` this method makes; with
        ``backend="processes"`` that copy is a temporary file the workers map
        (:func:`dfmr.partition.split_to_file`), so the client holds only ``X``. A dask array is neither
        shuffled nor gathered: its row chunks are the machines, each fitted on a worker where
        the chunk is computed (as :meth:`fit_partitions` on the same array). A Spark DataFrame
        (``backend="spark"``) is not gathered either: its sites, or its partitions, are the
        machines, each fitted on the executor holding its rows (:mod:`dfmr.spark`).

        Parameters
        ----------
        X : array_like of shape (n, d), dask array, or Spark DataFrame
            Finite observations; a 1-D array is one column (d = 1). A pandas or Spark DataFrame's
            column names are kept in ``feature_names_in_``.
        y : None
            Ignored; present for scikit-learn pipelines.
        site_col : str, optional
            For a Spark DataFrame: one machine per value of this column, machine ``i`` the
            ``i``-th value in sorted order, the features all other columns; ``None`` makes each
            partition a machine. The fit equals ``fit_partitions`` on the serial backend of
            every site's rows in input order.

        Returns
        -------
        DistributedGaussianMixture
            The fitted estimator.

        Raises
        ------
        ValueError
            If a hyper-parameter or ``X`` is invalid, including ``n_machines`` above the number of
            rows, or different from the number of row chunks of a dask array.
        TypeError
            If ``X`` is sparse (scikit-learn's convention).
        """
        n_jobs = self._validated_params()
        if is_spark_dataframe(X):
            return self._fit_spark(X, site_col, n_jobs)
        if site_col is not None:
            raise ValueError(f"site_col applies to a Spark DataFrame X only, not to {type(X).__name__}.")
        if is_dask_collection(X) and hasattr(X, "chunks"):
            n_chunks = len(X.chunks[0])
            if self.n_machines is not None and self.n_machines != n_chunks:
                raise ValueError(
                    f"X is a dask array with {n_chunks} row chunks, which are the machines, but n_machines = "
                    f"{self.n_machines}; pass n_machines=None (or {n_chunks}), or rechunk X to "
                    f"{self.n_machines} row chunks."
                )
            return self._fit(self._dask_array_machines(X), None, _seed_sequence(self.random_state), n_jobs)
        n_machines = 10 if self.n_machines is None else int(self.n_machines)
        arr = self._as_matrix(X, "X")
        if n_machines > arr.shape[0]:
            raise ValueError(
                f"n_machines = {n_machines} exceeds the number of rows of X (n_samples = {arr.shape[0]}); "
                "every machine needs data."
            )
        seeds = _seed_sequence(self.random_state)
        # The engine places the split where its tasks read it (the process pool: a temporary file).
        with engine(self.backend, n_jobs, self.client).place(arr, n_machines, np.random.default_rng(seeds)) as parts:
            return self._fit([(part, *_known_shape(part)) for part in parts], X, seeds, n_jobs)

    def fit_partitions(
        self, parts: Any, *, local_n_components: Sequence[int] | str | None = None
    ) -> DistributedGaussianMixture:
        """Fit from data already split across machines: one array, source or chunk per machine.

        Parameters
        ----------
        parts : sequence, dask array or dask dataframe
            A list or tuple with machine ``i``'s observations as entry ``i``: an array of shape
            (n_i, d), a source read where the machine's fit runs (an object with a ``load()``
            method, such as the :class:`dfmr.sources.SiteFile` of :func:`dfmr.sources.site_files`),
            or a dask object (delayed, chunk). Or a dask array (its row chunks are the machines)
            or a dask dataframe (its partitions are). All must have the same d; each needs at
            least ``n_components`` rows and more than d rows. What can be checked without
            reading the data (shapes, dtypes, file headers) is checked before any fit starts;
            the rest (NaN, infinity) where the data are read, which stops the fit. Float64
            arrays are not copied here. The column names of a dask dataframe, or of a first
            part that is a pandas DataFrame, are kept in ``feature_names_in_``.
        local_n_components : None, sequence of int, or "bic"
            How many components each site fits: ``None``, ``n_components`` everywhere; a
            sequence, site ``i`` fits ``local_n_components[i]`` (1..``n_components``); ``"bic"``,
            each site chooses its own K_i <= ``n_components`` by BIC. Sites that see only some of
            the clusters fit fewer; every output component is supported by at least half of the
            sites (:mod:`dfmr.support`, ``aggregation_.support``), so a cluster that only a
            minority reports is never output. The sites' numbers are in ``local_n_components_``.

        Returns
        -------
        DistributedGaussianMixture
            The fitted estimator.

        Raises
        ------
        ValueError
            If a hyper-parameter or a machine's data is invalid; the message names the machine.
        TypeError
            If a machine's data is sparse (scikit-learn's convention).
        """
        n_jobs = self._validated_params()
        seeds = _seed_sequence(self.random_state)
        if is_dask_collection(parts) and hasattr(parts, "chunks"):
            machines = self._dask_array_machines(parts)
            return self._fit(machines, None, seeds, n_jobs, self._local_k(local_n_components, len(machines)))
        if is_dask_collection(parts) and hasattr(parts, "npartitions"):
            machines = [(part, None, len(parts.columns)) for part in dask_dataframe_parts(parts)]
            # _meta: the empty pandas frame of its columns
            return self._fit(machines, parts._meta, seeds, n_jobs, self._local_k(local_n_components, len(machines)))
        if isinstance(parts, np.ndarray) or not isinstance(parts, Sequence):
            raise ValueError(
                "parts must be a list or tuple with one array per machine, a dask array or a dask dataframe, "
                f"got {type(parts).__name__}; to split one array use fit(X)."
            )
        if len(parts) == 0:
            raise ValueError("parts is empty: need the data of at least one machine.")
        machines = []
        for i, part in enumerate(parts):
            if is_dask_collection(part) or callable(getattr(part, "load", None)):
                machines.append((part, *_lazy_shape(part)))
            else:
                array = self._as_matrix(part, f"parts[{i}]")
                machines.append((array, *array.shape))
        lazy = is_dask_collection(parts[0]) or callable(getattr(parts[0], "load", None))
        return self._fit(machines, None if lazy else parts[0], seeds, n_jobs,
                         self._local_k(local_n_components, len(machines)))

    def _local_k(self, local_n_components: Sequence[int] | str | None, m: int) -> list[int] | str | None:
        """``local_n_components`` checked against K and the number of machines."""
        if local_n_components is None:
            return None
        if is_grid(self.n_components, self.covariance_type):
            raise ValueError("local_n_components needs one n_components, not a grid of them or of covariance models.")
        if isinstance(local_n_components, str) and local_n_components == "bic":
            return local_n_components
        k = int(self.n_components)
        if isinstance(local_n_components, str) or not isinstance(local_n_components, (Sequence, np.ndarray)):
            raise ValueError(
                f"local_n_components must be None, 'bic' or one int per machine, got {local_n_components!r}."
            )
        out = [check_int(x, f"local_n_components[{i}]", 1) for i, x in enumerate(local_n_components)]
        if len(out) != m or max(out) > k:
            raise ValueError(
                f"local_n_components must hold one int in 1..n_components = {k} per machine ({m}), "
                f"got {list(local_n_components)!r}."
            )
        return out

    def _fit_spark(self, X: Any, site_col: str | None, n_jobs: int) -> DistributedGaussianMixture:
        """Fit a Spark DataFrame: its sites (or partitions) are the machines, fitted where their rows are."""
        if self.backend != "spark":
            raise ValueError(f"X is a Spark DataFrame, which is fitted with backend='spark', not {self.backend!r}.")
        import pandas as pd

        from .spark import spark_machines

        machines, features = spark_machines(X, site_col)
        if self.n_machines is not None and self.n_machines != len(machines):
            what = f"values of {site_col!r}" if site_col is not None else "partitions"
            raise ValueError(
                f"X is a Spark DataFrame with {len(machines)} {what}, which are the machines, but n_machines = "
                f"{self.n_machines}; pass n_machines=None (or {len(machines)})."
            )
        names = pd.DataFrame(columns=features)  # for feature_names_in_
        return self._fit([(m, None, len(features)) for m in machines], names, _seed_sequence(self.random_state), n_jobs)

    @staticmethod
    def _dask_array_machines(X: Any) -> list[tuple[Any, int | None, int | None]]:
        """A dask array's row chunks as machines, with the shapes dask knows without computing."""
        d = 1 if X.ndim == 1 else int(X.shape[1])
        return [(chunk, int(rows), d) for chunk, rows in zip(dask_array_parts(X), X.chunks[0])]

    def _fit(
        self, machines: list[tuple[Any, int | None, int | None]], names_from: Any, seeds: np.random.SeedSequence,
        n_jobs: int, local_k: list[int] | str | None = None,
    ) -> DistributedGaussianMixture:
        """Fit on ``machines`` (data, rows, columns; None where unknown until read); keep ``names_from``'s names.

        ``local_k``: the components of each machine's fit (None: K; "bic": chosen by each site).

        What the client knows is checked first; the local fits run where the data are; the
        machines that fail at run time are left out of the aggregation.
        """
        dims = sorted({cols for _, _, cols in machines if cols is not None})
        if len(dims) > 1:
            raise ValueError(f"the machines' data differ in the number of columns ({dims}); all must share one d.")
        largest = max(c.n_components for c in candidate_grid(self.n_components, self.covariance_type))
        need = max(largest, dims[0] + 1) if dims else largest
        for i, (_, rows, _) in enumerate(machines):
            if rows is not None and rows < need:
                raise ValueError(
                    f"machine {i} has {rows} rows; a local fit needs at least n_components = "
                    f"{largest} rows and more than d = {dims[0]}. Use fewer machines."
                )
        if is_grid(self.n_components, self.covariance_type):
            # A grid of K or of covariance models: dfmr.selection fits, aggregates and chooses.
            chosen = fit_grid(self, [data for data, _, _ in machines], seeds.spawn(len(machines)), n_jobs,
                              dims[0] if dims else None)
            best = chosen.candidates[chosen.best]
            self._store(names_from, chosen.indices, chosen.local, chosen.n_iter, chosen.converged, chosen.failed,
                        chosen.aggregations[chosen.best], best.covariance_type)
            self.n_components_, self.covariance_type_ = best.n_components, best.covariance_type
            self.criterion_table_ = chosen.table
            return self

        indices, local, sizes, n_iter, converged, failed = self._fit_local_all(
            [data for data, _, _ in machines], seeds.spawn(len(machines)), need, n_jobs, local_k
        )
        for i in indices[~converged]:
            warnings.warn(
                f"machine {i}: local EM did not converge within max_iter = {self.max_iter} iterations "
                f"(tol = {self.tol}); its estimate is used as is. Increase max_iter or tol.",
                ConvergenceWarning,
                stacklevel=3,
            )
        aggregation = self._aggregate(local, n_jobs, sizes)
        self._store(names_from, indices, local, n_iter, converged, failed, aggregation, self.covariance_type)
        self.n_components_, self.covariance_type_ = int(self.n_components), self.covariance_type
        return self

    def _store(
        self, names_from: Any, indices: np.ndarray, local: list[GaussianMixtureParams], n_iter: np.ndarray,
        converged: np.ndarray, failed: dict[int, str], aggregation: AggregationResult, covariance_type: str,
    ) -> None:
        """Set the learned attributes of a fit (of the chosen candidate, for a grid)."""
        d = local[0].dim
        self.__dict__.pop("criterion_table_", None)
        # Sets feature_names_in_ (or removes a previous fit's) the scikit-learn way; n_features_in_ is
        # set below, as 1-D input (one feature) has no number of features for scikit-learn.
        validate_data(self, names_from, reset=True, skip_check_array=True)
        self.local_mixtures_ = local
        self.machine_indices_ = indices
        self.failed_machines_ = failed
        self.aggregation_ = aggregation
        self.mixture_ = aggregation.mixture
        self.weights_ = aggregation.mixture.weights
        self.means_ = aggregation.mixture.means
        self.site_weights_ = aggregation.site_weights
        self.covariances_, self.precisions_, self.precisions_cholesky_ = _sklearn_covariances(
            aggregation.mixture, get_model(covariance_type, d).name, sklearn_layout(covariance_type)
        )
        self.n_features_in_ = d
        self.n_machines_ = len(local)
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.local_n_components_ = np.array([f.n_components for f in local], dtype=np.intp)

    def _fit_local_all(
        self, parts: list[Any], seeds: list[np.random.SeedSequence], need: int, n_jobs: int,
        local_k: list[int] | str | None = None,
    ) -> tuple[np.ndarray, list[GaussianMixtureParams], list[int], np.ndarray, np.ndarray, dict[int, str]]:
        """Local fits through :func:`dfmr.executor.map_machines`.

        Returns the machine indices that succeeded, their estimates, row counts, EM iterations and
        convergence flags, and the failed machines with their reasons.
        """
        settings = (int(self.n_init), int(self.max_iter), float(self.tol), need, self.covariance_type,
                    local_k == "bic")
        ks = local_k if isinstance(local_k, list) else [int(self.n_components)] * len(parts)
        tasks = [MachineTask(i, data, (i, seed, k_i, *settings))
                 for i, (data, seed, k_i) in enumerate(zip(parts, seeds, ks))]
        out = map_machines(
            _fit_machine, tasks, backend=self.backend, n_jobs=n_jobs, client=self.client,
            progress=bool(self.progress), desc="local fits", timeout=self.timeout, total_timeout=self.total_timeout,
        )
        indices = np.array(out.succeeded, dtype=np.intp)
        results = [out.results[i] for i in indices]
        dims = sorted({result[1].shape[-1] for result in results})
        if len(dims) > 1:
            raise ValueError(f"the machines' data differ in the number of columns ({dims}); all must share one d.")
        name = get_model(self.covariance_type, dims[0]).name if dims else None
        local = [_rebuild(i, *result[:3], name) for i, result in zip(indices, results)]
        n_iter = np.array([result[3] for result in results], dtype=np.intp)
        converged = np.array([result[4] for result in results], dtype=bool)
        sizes = [int(result[5]) for result in results]
        return indices, local, sizes, n_iter, converged, out.failures

    def _aggregate(
        self, local: list[GaussianMixtureParams], n_threads: int, sizes: list[int] | None = None,
        n_components: int | None = None, covariance_type: str | None = None,
    ) -> AggregationResult:
        """Aggregate ``local`` with the estimator's aggregator, at ``n_components`` under ``covariance_type``
        (the estimator's by default; a grid passes each candidate's)."""
        k = int(self.n_components if n_components is None else n_components)
        free = {"site_weights": self.site_weights}
        # Sites that fitted fewer clusters (local_n_components): a cluster only a minority of sites
        # reports never takes a slot (with K components everywhere the rule changes nothing).
        rule = {"require_support": True}
        methods: dict[str, Callable[..., AggregationResult]] = {
            "dfmr": lambda **model: dfmr(local, k, self.threshold, n_threads=n_threads, **free, **rule, **model),
            "mr": lambda **model: mr(local, k, n_threads=n_threads, **free, **rule, **model),
            "coat": lambda covariance_type=None, **sizes: coat(local, n_threads=n_threads, **sizes),
            "tkb": lambda **model: tkb(local, k, float(self.alpha), n_threads=n_threads, **rule, **model),
            "robust_dfmr": lambda **model: robust_dfmr(local, k, n_threads=n_threads, **free, **model),
        }
        # The aggregate belongs to the estimator's model when the aggregator constrains its reduction
        # to it (COAT returns one of the estimates, which belong to it already).
        name = get_model(covariance_type or self.covariance_type, local[0].dim).name
        model = {"covariance_type": name} if self.aggregator in _MODEL_AWARE else {}
        # The server's own split (or the sites it was given) is authoritative: pool by size.
        if sizes is not None and self.aggregator in _SIZE_AWARE:
            model["n_samples"] = sizes
        return methods[self.aggregator](**model)

    # -------------------------------------------------------------------------------- inference

    def _check_X(self, X: ArrayLike) -> np.ndarray:
        check_is_fitted(self)
        arr = self._as_matrix(X, "X")
        if np.ndim(X) == 1 and self.n_features_in_ != 1:
            raise ValueError(
                f"X is 1-D, which means one feature, but {type(self).__name__} was fitted with "
                f"{self.n_features_in_} features. Reshape your data either using array.reshape(-1, 1) if it "
                "has a single feature or array.reshape(1, -1) if it contains a single sample."
            )
        # Checks the number of features and the column names against fit's, in scikit-learn's words.
        validate_data(self, X if np.ndim(X) == 2 else arr, reset=False, skip_check_array=True)
        return arr

    def _weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        """``log w_k + log N(x_i; mu_k, Sigma_k)``, shape (n, K)."""
        with np.errstate(divide="ignore"):
            log_w = np.log(self.mixture_.weights)
        return self.mixture_.component_logpdf(X) + log_w

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Most probable component of every row.

        Parameters
        ----------
        X : array_like of shape (n, d)
            Observations.

        Returns
        -------
        ndarray of int, shape (n,)
            Component index (into ``weights_``) with the largest posterior probability.
        """
        return np.argmax(self._weighted_log_prob(self._check_X(X)), axis=1)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Posterior probability of every component for every row.

        Parameters
        ----------
        X : array_like of shape (n, d)
            Observations.

        Returns
        -------
        ndarray of shape (n, K)
            Rows sum to one; computed by log-sum-exp, so far-out points do not underflow to 0/0.
        """
        log_joint = self._weighted_log_prob(self._check_X(X))
        return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        """Log-density of the fitted mixture at every row.

        Parameters
        ----------
        X : array_like of shape (n, d)
            Observations.

        Returns
        -------
        ndarray of shape (n,)
            ``log sum_k w_k N(x_i; mu_k, Sigma_k)``.
        """
        return logsumexp(self._weighted_log_prob(self._check_X(X)), axis=1)

    def score(self, X: ArrayLike, y: None = None) -> float:
        """Mean log-likelihood per row.

        Parameters
        ----------
        X : array_like of shape (n, d)
            Observations.
        y : None
            Ignored; present for scikit-learn pipelines.

        Returns
        -------
        float
            ``mean_i log f(x_i)``.
        """
        return float(np.mean(self.score_samples(X)))

    def _n_parameters(self) -> int:
        """Free parameters of the fitted mixture in its covariance model: ``(K - 1) + K d`` plus the
        model's covariance parameters (mclust's ``nMclustParams``, scikit-learn's ``_n_parameters``)."""
        check_is_fitted(self)
        mix = self.mixture_
        return get_model(mix.covariance_type, mix.dim).n_parameters(mix.n_components, mix.dim)

    def bic(self, X: ArrayLike) -> float:
        """Bayesian information criterion on ``X`` (lower is better).

        ``-2 log L + p log n`` with ``p`` the free parameters of ``mixture_`` in its covariance model
        (:meth:`dfmr.covariance.CovarianceModel.n_parameters`: ``(K - 1) + K d`` plus, e.g.,
        ``K d (d + 1) / 2`` for full, ``d (d + 1) / 2`` for tied, ``K d`` for diag, ``K`` for
        spherical covariances), K the number of components of ``mixture_``.

        Parameters
        ----------
        X : array_like of shape (n, d)
            Observations.

        Returns
        -------
        float
        """
        return self._criterion(X, math.log)

    def _criterion(self, X: ArrayLike, cost_per_parameter: Callable[[int], float]) -> float:
        """``-2 log L(X) + p cost_per_parameter(n)``: BIC with ``log``, AIC with 2."""
        loglik = self.score_samples(X)
        return float(-2.0 * loglik.sum() + self._n_parameters() * cost_per_parameter(loglik.shape[0]))

    def aic(self, X: ArrayLike) -> float:
        """Akaike information criterion on ``X`` (lower is better): ``-2 log L + 2 p``, ``p`` as in :meth:`bic`.

        Parameters
        ----------
        X : array_like of shape (n, d)
            Observations.

        Returns
        -------
        float
        """
        return self._criterion(X, lambda n: 2.0)

    def sample(
        self,
        n_samples: int = 1,
        random_state: int | np.random.Generator | np.random.SeedSequence | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default 1
            Number of points, at least 1.
        random_state : int, numpy.random.Generator, numpy.random.SeedSequence or None, default None
            Seed or generator for this draw; ``None`` uses the estimator's ``random_state``
            (so with an int there, repeated calls give the same points, as in scikit-learn;
            ``None`` in both takes fresh randomness).

        Returns
        -------
        X : ndarray of shape (n_samples, d)
            The points.
        labels : ndarray of int, shape (n_samples,)
            The component each point was drawn from.
        """
        check_is_fitted(self)
        n_samples = check_int(n_samples, "n_samples", 1)
        return self.mixture_.sample(n_samples, self.random_state if random_state is None else random_state)

    def summary(self, covariances: bool = False) -> str:
        """Report of the aggregation: settings, per-machine decisions, the mixture.

        After :meth:`infer` it also shows the per-machine tests and the parameters with standard
        errors and intervals (covariance entries too with ``covariances=True``).

        Returns
        -------
        dfmr.summary.Report
            Text (a ``str``) with ``as_html()`` and ``as_latex()``, built from statsmodels' tables.
        """
        from .summary import aggregation_summary

        check_is_fitted(self)
        report = aggregation_summary(self.aggregation_, self.__dict__.get("inference_"), covariances=covariances)
        if self.failed_machines_:
            # Failed machines sent no estimate (unlike Byzantine ones, which the filter excludes above).
            report.summary.add_extra_txt([
                f"Failed machines ({len(self.failed_machines_)}): no estimate, not aggregated; the machine numbers "
                "above are positions among the others (machine_indices_).",
                *(f"machine {m}: {why}" for m, why in self.failed_machines_.items()),
            ])
            report = type(report)(report.summary)
        return report

    # ------------------------------------------------ standard errors and intervals (dfmr.inference)

    def _machine_data(self, X: ArrayLike | None, parts: Sequence[ArrayLike] | None) -> list[np.ndarray] | None:
        """The machines' arrays, in machine order, as ``fit`` saw them; None when neither is given."""
        if X is not None and parts is not None:
            raise ValueError("give X or parts, not both.")
        n_total = self.n_machines_ + len(self.failed_machines_)
        if X is not None:
            rs = self.random_state
            if not (isinstance(rs, numbers.Integral) or isinstance(rs, np.random.SeedSequence)):
                raise ValueError(
                    "infer(X) re-splits X as fit(X) did, which needs random_state to be an int or a SeedSequence; "
                    "pass the machines' arrays as infer(parts=...) instead."
                )
            parts = split(self._as_matrix(X, "X"), n_total, np.random.default_rng(_seed_sequence(rs)))
        if parts is None:
            return None
        if len(parts) != n_total:
            raise ValueError(f"parts must hold one array per machine ({n_total}), got {len(parts)}.")
        # Failed machines have no estimate: only the others' data are used, in local_mixtures_ order.
        arrays = [self._as_matrix(parts[i], f"parts[{i}]") for i in self.machine_indices_]
        for i, a in enumerate(arrays):
            if a.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"parts[{i}] has {a.shape[1]} columns; the estimator was fitted with {self.n_features_in_}."
                )
        return arrays

    def _map_machines(self, func: Callable[..., Any], tasks: list[tuple[Any, ...]]) -> list[Any]:
        """``[func(*task) for task in tasks]`` through :func:`dfmr.executor.map_machines` on the estimator's
        backend (a task's first item is the machine's data), results in task order; a failure is an error."""
        out = map_machines(
            func, [MachineTask(i, task[0], tuple(task[1:])) for i, task in enumerate(tasks)],
            backend=self.backend, n_jobs=self._validated_params(), client=self.client, desc="machine information",
            timeout=self.timeout, total_timeout=self.total_timeout,
        )
        if out.failures:
            listed = "; ".join(f"task {i}: {why}" for i, why in out.failures.items())
            raise RuntimeError(f"per-machine computations failed ({listed}).")
        return out.results

    def infer(
        self,
        X: ArrayLike | None = None,
        *,
        parts: Sequence[ArrayLike] | None = None,
        method: str | None = None,
        kind: str = "observed",
        multitest_method: str = "holm",
        alpha: float = 0.05,
    ) -> Any:
        """Standard errors, confidence intervals and per-machine tests of the fitted aggregate.

        Sets ``inference_`` (a :class:`dfmr.inference.MixtureInferenceResult`: ``params``, ``bse``,
        ``cov_params()``, ``conf_int()``, ``summary()``, ``machine_tests``) and returns it. See
        :mod:`dfmr.inference` for the two methods and when each is valid.

        Parameters
        ----------
        X : array_like of shape (n, d), optional
            The data given to ``fit(X)``; it is split across machines again exactly as ``fit`` did
            (needs an int or SeedSequence ``random_state``).
        parts : sequence of array_like, optional
            The machines' arrays as given to ``fit_partitions``. With data (``X`` or ``parts``)
            each retained machine computes its information matrix at the aggregate on the
            estimator's backend, and the per-machine tests use the machines' sizes.
        method : {"information", "jackknife"}, optional
            ``None``: ``"information"`` for ``aggregator="mr"``, ``"jackknife"`` otherwise (DFMR's
            data-dependent filter makes information-based intervals undercover). The jackknife
            needs no data; without data it has no per-machine tests. With ``aggregator="robust_dfmr"``
            its leave-one-out aggregates keep the fit's screening decisions (:func:`dfmr.robust.leave_out`).
        kind : {"observed", "opg"}, default "observed"
            Form of the information matrix.
        multitest_method : str, default "holm"
            Adjustment of the per-machine p-values (statsmodels ``multipletests``).
        alpha : float, default 0.05
            Family-wise level of the per-machine rejections.

        Returns
        -------
        dfmr.inference.MixtureInferenceResult
        """
        from .inference import infer as _infer
        from .information import machine_information

        check_is_fitted(self)
        data = self._machine_data(X, parts)
        infos = None
        if data is not None:
            retained = [int(i) for i in self.aggregation_.retained]
            sent = self._map_machines(
                machine_information, [(data[i], self.mixture_, kind) for i in retained]
            )
            infos = [None] * self.n_machines_
            for i, entry in zip(retained, sent):
                infos[i] = entry
            n_samples = [len(a) for a in data]
        else:
            n_samples = None
        self.inference_ = _infer(
            self.aggregation_, self.local_mixtures_, method=method, machine_infos=infos, n_samples=n_samples,
            kind=kind, aggregate=lambda mixes, n_samples=None: self._aggregate(mixes, 1, n_samples),
            multitest_method=multitest_method, alpha=alpha,
        )
        return self.inference_

    def _inference(self) -> Any:
        check_is_fitted(self)
        return self.__dict__["inference_"] if "inference_" in self.__dict__ else self.infer()

    @property
    def standard_errors_(self) -> dict[str, np.ndarray]:
        """Standard errors shaped like the estimate: ``{"weights": (K,), "means": (K, d), "covariances": (K, d, d)}``.

        From ``inference_``; if :meth:`infer` has not been called, it runs with its defaults
        (which for ``aggregator="mr"`` need the data: call ``infer(X)`` first).
        """
        return self._inference().standard_errors()

    def confidence_intervals(self, level: float = 0.95) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Confidence intervals shaped like the estimate, components in the order of ``means_``.

        Parameters
        ----------
        level : float, default 0.95
            Coverage in (0, 1).

        Returns
        -------
        dict
            ``{"weights"|"means"|"covariances": (lower, upper)}`` with arrays shaped like
            ``weights_``, ``means_`` and ``covariances_``; from ``inference_`` (see
            :attr:`standard_errors_` for when :meth:`infer` runs by itself).
        """
        return self._inference().confidence_intervals(level)
