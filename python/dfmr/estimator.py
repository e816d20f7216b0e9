"""A scikit-learn style estimator for Gaussian mixtures learned across machines.

:class:`DistributedGaussianMixture` runs the whole pipeline of DESIGN.md: split the rows
across machines, fit the penalised MLE on every machine (:func:`dfmr.local.fit_local`), and
aggregate the local estimates with DFMR, MR, COAT or TKB (:mod:`dfmr.aggregate`).

It follows scikit-learn's conventions without depending on scikit-learn: ``__init__``
stores the hyper-parameters untouched, ``fit`` validates them once, learned attributes end
in ``_`` and exist only after fitting, and ``get_params`` / ``set_params`` make the
estimator work with ``sklearn.base.clone`` and parameter searches.

Local fits are reproducible: machine ``i`` draws its k-means++ starts from child ``i`` of
``numpy.random.SeedSequence(random_state)``, and every backend runs them with one BLAS
thread (``threadpoolctl``), so ``"serial"``, ``"threads"`` and ``"processes"`` give
bit-for-bit the same result.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any, Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .aggregate import AggregationResult, coat, dfmr, mr, tkb
from .local import as_data_matrix, fit_local
from .params import GaussianMixtureParams
from .simulate import split

__all__ = ["DistributedGaussianMixture", "NotFittedError"]

AGGREGATORS = ("dfmr", "mr", "coat", "tkb")
BACKENDS = ("serial", "threads", "processes")

_LOCAL_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(fit_local).parameters.items()
    if name in ("n_init", "max_iter", "tol")
}
_LEARNED = (
    "mixture_", "weights_", "means_", "covariances_", "local_mixtures_", "aggregation_",
    "n_features_in_", "n_machines_",
)
# Read by OpenBLAS, MKL, BLIS and OpenMP runtimes that initialise after the worker starts.
_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


class NotFittedError(ValueError, AttributeError):
    """Raised when a learned attribute or a method that needs one is used before ``fit``.

    It subclasses both ``ValueError`` and ``AttributeError``, like scikit-learn's
    ``NotFittedError``, so ``hasattr(est, "means_")`` is False before fitting.
    """


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


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


def _limit_worker_threads() -> None:
    """Initializer of worker processes: one BLAS/OpenMP thread each, so workers do not oversubscribe."""
    for var in _THREAD_ENV_VARS:
        os.environ[var] = "1"
    threadpool_limits(limits=1)


def _single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread in this process while the local fits run (serial and threads backends).

    Besides avoiding oversubscription under the threads backend, it makes every backend do the
    same floating-point operations in the same order, hence give identical results.
    """
    return threadpool_limits(limits=1)


def _fit_machine(
    index: int, X: np.ndarray, seed: np.random.SeedSequence, n_components: int, n_init: int, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local fit of machine ``index``: plain arrays, so that no backend's pickling alters the result."""
    try:
        mix = fit_local(X, n_components, np.random.default_rng(seed), n_init=n_init, max_iter=max_iter, tol=tol)
    except ValueError as exc:
        raise type(exc)(f"machine {index}: {exc}") from exc
    return np.array(mix.weights), np.array(mix.means), np.array(mix.covariances)


def _rebuild(index: int, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> GaussianMixtureParams:
    """Machine ``index``'s local estimate from the plain arrays a worker returned; a failure names the machine."""
    try:
        return GaussianMixtureParams(weights, means, covariances)
    except ValueError as exc:
        raise type(exc)(f"machine {index}: its local estimate is not a valid mixture: {exc}") from exc


def _run_all(executor: Executor, tasks: list[tuple[Any, ...]], bar: tqdm) -> list[Any]:
    """Submit every task, collect results in task order; on the first failure cancel the rest."""
    futures: dict[Future[Any], int] = {executor.submit(_fit_machine, *task): i for i, task in enumerate(tasks)}
    results: list[Any] = [None] * len(tasks)
    try:
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update()
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return results


def _serial(tasks: list[tuple[Any, ...]], bar: tqdm) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    for task in tasks:
        yield _fit_machine(*task)
        bar.update()


class DistributedGaussianMixture:
    """Gaussian mixture learned from data split across machines, robust to Byzantine machines.

    Every machine fits a K-component penalised MLE to its own rows; the local estimates are
    aggregated on the server by distance-filtered mixture reduction (DFMR, the default), plain
    mixture reduction (MR), the centre machine's estimate (COAT) or the trimmed k-barycenter
    (TKB). See DESIGN.md for the method.

    Parameters
    ----------
    n_components : int, default 1
        Number of mixture components K.
    n_machines : int, default 10
        Number of machines :meth:`fit` splits the rows across (:meth:`fit_partitions` takes
        the machines as given and ignores it).
    aggregator : {"dfmr", "mr", "coat", "tkb"}, default "dfmr"
        How the local estimates are combined.
    threshold : float, optional
        DFMR's kappa >= 1; ``None`` uses ``m ** 0.1``. Used by ``"dfmr"`` only.
    alpha : float, default 0.5
        Trimmed mass in [0, 1). Used by ``"tkb"`` only.
    backend : {"serial", "threads", "processes"}, default "processes"
        Where the local fits run: in this thread, in a thread pool, or in a process pool
        (the platform's default ``multiprocessing`` start method). Each worker uses one
        BLAS thread. All backends give identical results (given ``threadpoolctl``, see the
        module docstring).
    n_jobs : int, optional
        Workers of the pool and threads of the aggregation; ``None`` uses ``os.cpu_count()``,
        negative values count back from it (``-1`` all CPUs, ``-2`` all but one). The serial
        backend uses one thread throughout.
    n_init : int, default fit_local's (16)
        Largest number of k-means++ starts of every local fit (see :func:`dfmr.local.fit_local_detailed`).
    max_iter : int, default fit_local's (500)
        EM iterations of every local fit.
    tol : float, default fit_local's (1e-6)
        Per-point convergence tolerance of every local fit.
    progress : bool, default False
        Show a tqdm progress bar over the machines.
    random_state : int, numpy.random.Generator, numpy.random.SeedSequence or None, default None
        Seeds the shuffle of :meth:`fit` and the local fits. With an int or a SeedSequence
        every fit gives the same result, and for an int ``fit(X)`` equals
        ``fit_partitions(dfmr.simulate.split(X, n_machines, random_state))``. A Generator is
        drawn from, so successive fits differ; ``None`` takes fresh entropy.

    Attributes
    ----------
    mixture_ : GaussianMixtureParams
        The aggregated mixture.
    weights_ : ndarray of shape (K,)
        Its mixing proportions.
    means_ : ndarray of shape (K, d)
        Its component means.
    covariances_ : ndarray of shape (K, d, d)
        Its component covariances.
    local_mixtures_ : list of GaussianMixtureParams
        The local estimate of every machine, in machine order.
    aggregation_ : AggregationResult
        The aggregation with its diagnostics (retained machines, distances, objective).
    n_features_in_ : int
        Dimension d of the data.
    n_machines_ : int
        Number of machines actually used.

    Notes
    -----
    The aggregate can have fewer than ``n_components`` components when the reduction drops
    components that receive no mass (a ``RuntimeWarning`` says so); ``weights_`` then has
    fewer entries.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        n_machines: int = 10,
        aggregator: str = "dfmr",
        threshold: float | None = None,
        alpha: float = 0.5,
        backend: str = "processes",
        n_jobs: int | None = None,
        n_init: int = _LOCAL_DEFAULTS["n_init"],
        max_iter: int = _LOCAL_DEFAULTS["max_iter"],
        tol: float = _LOCAL_DEFAULTS["tol"],
        progress: bool = False,
        random_state: int | np.random.Generator | np.random.SeedSequence | None = None,
    ) -> None:
        self.n_components = n_components
        self.n_machines = n_machines
        self.aggregator = aggregator
        self.threshold = threshold
        self.alpha = alpha
        self.backend = backend
        self.n_jobs = n_jobs
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.progress = progress
        self.random_state = random_state

    # ----------------------------------------------------------------- parameters (sklearn protocol)

    @classmethod
    def _get_param_names(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters.values()
        return sorted(p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters of the estimator.

        Parameters
        ----------
        deep : bool, default True
            Accepted for scikit-learn compatibility; there are no nested estimators.

        Returns
        -------
        dict
            Parameter names mapped to their values.
        """
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> DistributedGaussianMixture:
        """Set hyper-parameters; they are validated by the next ``fit``.

        Parameters
        ----------
        **params
            Parameter names and their new values.

        Returns
        -------
        DistributedGaussianMixture
            The estimator itself.

        Raises
        ------
        ValueError
            If a name is not a parameter of the estimator.
        """
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {', '.join(valid)}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if not (value is defaults[name] or (isinstance(value, (str, int, float)) and value == defaults[name]))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: a learned attribute before fit.
        if name in _LEARNED:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet, so it has no {name!r}. "
                "Call fit(X) or fit_partitions(parts) first."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _check_is_fitted(self) -> None:
        if "mixture_" not in self.__dict__:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call fit(X) or fit_partitions(parts) "
                "before using this method."
            )

    def _validated_params(self) -> int:
        """Check every hyper-parameter; returns the number of workers. Raises ValueError naming the parameter."""
        if not _is_int(self.n_components) or self.n_components < 1:
            raise ValueError(f"n_components must be an integer >= 1, got {self.n_components!r}.")
        if not _is_int(self.n_machines) or self.n_machines < 1:
            raise ValueError(f"n_machines must be an integer >= 1, got {self.n_machines!r}.")
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator must be one of {', '.join(map(repr, AGGREGATORS))}; got {self.aggregator!r}.")
        if self.threshold is not None and not (
            isinstance(self.threshold, numbers.Real) and math.isfinite(self.threshold) and self.threshold >= 1
        ):
            raise ValueError(f"threshold (kappa) must be None or a finite number >= 1, got {self.threshold!r}.")
        if not (isinstance(self.alpha, numbers.Real) and 0 <= self.alpha < 1):
            raise ValueError(f"alpha must be a number in [0, 1), got {self.alpha!r}.")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {self.backend!r}.")
        cpus = os.cpu_count() or 1
        if self.n_jobs is None:
            n_jobs = cpus
        elif _is_int(self.n_jobs) and self.n_jobs != 0:
            n_jobs = int(self.n_jobs) if self.n_jobs > 0 else cpus + 1 + int(self.n_jobs)
            if n_jobs < 1:
                raise ValueError(f"n_jobs = {self.n_jobs} leaves no worker on a machine with {cpus} CPUs.")
        else:
            raise ValueError(f"n_jobs must be None or a non-zero integer, got {self.n_jobs!r}.")
        if not _is_int(self.n_init) or self.n_init < 1:
            raise ValueError(f"n_init must be an integer >= 1, got {self.n_init!r}.")
        if not _is_int(self.max_iter) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}.")
        if not (isinstance(self.tol, numbers.Real) and math.isfinite(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be a finite number >= 0, got {self.tol!r}.")
        if not isinstance(self.progress, (bool, np.bool_)):
            raise ValueError(f"progress must be True or False, got {self.progress!r}.")
        rs = self.random_state
        if not (
            rs is None
            or isinstance(rs, (np.random.Generator, np.random.SeedSequence))
            or (_is_int(rs) and rs >= 0)
        ):
            raise ValueError(
                "random_state must be None, a non-negative integer, a numpy.random.Generator or a "
                f"numpy.random.SeedSequence; got {rs!r}."
            )
        return 1 if self.backend == "serial" else n_jobs

    # ----------------------------------------------------------------------------------- fitting

    def fit(self, X: ArrayLike, y: None = None) -> DistributedGaussianMixture:
        """Split the rows of ``X`` across ``n_machines`` machines and fit.

        The rows are shuffled (seeded by ``random_state``) and dealt out as evenly as possible
        (:func:`dfmr.simulate.split`), then :meth:`fit_partitions` runs on the pieces.

        Parameters
        ----------
        X : array_like of shape (n, d)
            Finite observations; a 1-D array is one column (d = 1).
        y : None
            Ignored; present for scikit-learn pipelines.

        Returns
        -------
        DistributedGaussianMixture
            The fitted estimator.

        Raises
        ------
        ValueError
            If a hyper-parameter or ``X`` is invalid, including ``n_machines`` above the number of rows.
        """
        n_jobs = self._validated_params()
        X = as_data_matrix(X, "X")
        if self.n_machines > X.shape[0]:
            raise ValueError(
                f"n_machines = {self.n_machines} exceeds the number of rows of X ({X.shape[0]}); "
                "every machine needs data."
            )
        seeds = _seed_sequence(self.random_state)
        parts = split(X, int(self.n_machines), np.random.default_rng(seeds))
        return self._fit(parts, seeds, n_jobs)

    def fit_partitions(self, parts: Sequence[ArrayLike]) -> DistributedGaussianMixture:
        """Fit from data already split across machines: one array per machine.

        Parameters
        ----------
        parts : sequence of array_like, each of shape (n_i, d)
            Machine ``i``'s observations. All must have the same d; each needs at least
            ``n_components`` rows and more than d rows.

        Returns
        -------
        DistributedGaussianMixture
            The fitted estimator.

        Raises
        ------
        ValueError
            If a hyper-parameter or a machine's data is invalid; the message names the machine.
        """
        n_jobs = self._validated_params()
        if isinstance(parts, np.ndarray) or not isinstance(parts, Sequence):
            raise ValueError(
                f"parts must be a list or tuple with one array per machine, got {type(parts).__name__}; "
                "to split one array use fit(X)."
            )
        if len(parts) == 0:
            raise ValueError("parts is empty: need the data of at least one machine.")
        return self._fit(parts, _seed_sequence(self.random_state), n_jobs)

    def _fit(
        self, parts: Sequence[ArrayLike], seeds: np.random.SeedSequence, n_jobs: int
    ) -> DistributedGaussianMixture:
        arrays = [as_data_matrix(part, f"parts[{i}]") for i, part in enumerate(parts)]
        dims = sorted({a.shape[1] for a in arrays})
        if len(dims) > 1:
            raise ValueError(f"the machines' data differ in the number of columns ({dims}); all must share one d.")
        d = dims[0]
        need = max(int(self.n_components), d + 1)
        for i, a in enumerate(arrays):
            if a.shape[0] < need:
                raise ValueError(
                    f"machine {i} has {a.shape[0]} rows; a local fit needs at least n_components = "
                    f"{self.n_components} rows and more than d = {d}. Use fewer machines."
                )

        local = self._fit_local_all(arrays, seeds.spawn(len(arrays)), n_jobs)
        aggregation = self._aggregate(local, n_jobs)

        self.local_mixtures_ = local
        self.aggregation_ = aggregation
        self.mixture_ = aggregation.mixture
        self.weights_ = aggregation.mixture.weights
        self.means_ = aggregation.mixture.means
        self.covariances_ = aggregation.mixture.covariances
        self.n_features_in_ = d
        self.n_machines_ = len(arrays)
        return self

    def _fit_local_all(
        self, arrays: list[np.ndarray], seeds: list[np.random.SeedSequence], n_jobs: int
    ) -> list[GaussianMixtureParams]:
        settings = (int(self.n_components), int(self.n_init), int(self.max_iter), float(self.tol))
        tasks = [(i, X, seed, *settings) for i, (X, seed) in enumerate(zip(arrays, seeds))]
        workers = min(n_jobs, len(tasks))
        with tqdm(total=len(tasks), desc="local fits", unit="machine", disable=not self.progress) as bar:
            if self.backend == "processes":
                with ProcessPoolExecutor(max_workers=workers, initializer=_limit_worker_threads) as ex:
                    results = _run_all(ex, tasks, bar)
            else:
                with _single_threaded_blas():
                    if self.backend == "threads":
                        with ThreadPoolExecutor(max_workers=workers) as ex:
                            results = _run_all(ex, tasks, bar)
                    else:
                        results = list(_serial(tasks, bar))
        return [_rebuild(i, *result) for i, result in enumerate(results)]

    def _aggregate(self, local: list[GaussianMixtureParams], n_threads: int) -> AggregationResult:
        k = int(self.n_components)
        methods: dict[str, Callable[[], AggregationResult]] = {
            "dfmr": lambda: dfmr(local, k, self.threshold, n_threads=n_threads),
            "mr": lambda: mr(local, k, n_threads=n_threads),
            "coat": lambda: coat(local, n_threads=n_threads),
            "tkb": lambda: tkb(local, k, float(self.alpha), n_threads=n_threads),
        }
        return methods[self.aggregator]()

    # -------------------------------------------------------------------------------- inference

    def _check_X(self, X: ArrayLike) -> np.ndarray:
        self._check_is_fitted()
        arr = as_data_matrix(X, "X")
        if arr.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {arr.shape[1]} features, but {type(self).__name__} was fitted with "
                f"{self.n_features_in_} features."
            )
        if arr.shape[0] == 0:
            raise ValueError("X has no rows.")
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

    def bic(self, X: ArrayLike) -> float:
        """Bayesian information criterion on ``X`` (lower is better).

        ``-2 log L + p log n`` with ``p = (K - 1) + K d + K d (d + 1) / 2`` free parameters of a
        full-covariance mixture, K the number of components of ``mixture_``.

        Parameters
        ----------
        X : array_like of shape (n, d)
            Observations.

        Returns
        -------
        float
        """
        loglik = self.score_samples(X)
        k, d = self.mixture_.n_components, self.n_features_in_
        n_params = (k - 1) + k * d + k * d * (d + 1) // 2
        return float(-2.0 * loglik.sum() + n_params * math.log(loglik.shape[0]))

    def sample(
        self, n_samples: int = 1, random_state: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default 1
            Number of points, at least 1.
        random_state : int, numpy.random.Generator or None, default None
            Seed or generator for this draw (``None``: fresh randomness).

        Returns
        -------
        X : ndarray of shape (n_samples, d)
            The points.
        labels : ndarray of int, shape (n_samples,)
            The component each point was drawn from.
        """
        self._check_is_fitted()
        if not _is_int(n_samples) or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}.")
        return self.mixture_.sample(int(n_samples), random_state)

    def summary(self) -> str:
        """Plain-text report of the aggregation: settings, per-machine decisions, the mixture.

        Returns
        -------
        str
        """
        self._check_is_fitted()
        return self.aggregation_.summary()
