"""Where per-machine work runs: in this thread, a thread pool, a process pool, or dask.distributed.

One function, :func:`map_machines`, runs ``func(X_i, *args_i)`` for every machine ``i``, where
``X_i`` is machine ``i``'s data made into an ``(n_i, d)`` float64 matrix *where the task runs*
(:func:`dfmr.sources.materialize`): an in-memory array, a per-site file read by the worker, or a
dask chunk or partition that dask computes on a worker and hands to the task there. Only
``func``'s (small) return values travel back to the client. The local fits of
:class:`~dfmr.estimator.DistributedGaussianMixture` run through it, and so can any other
per-machine computation (per-machine scores, information matrices).

Failure semantics, the same on every backend:

* invalid data (:class:`~dfmr.sources.InvalidDataError`, a ``ValueError``: NaN, infinity,
  non-numeric columns found where the data are read) stop the whole run with that error, the
  machine named, as invalid in-memory data are refused before any work starts;
* any other exception raised by a machine's task, or the death of the worker process running it,
  is a *run-time failure of that machine*: it is recorded in :attr:`MachineResults.failures`
  (machine -> reason), its result is ``None``, and the other machines carry on;
* if no machine at all produces a result, :class:`AllMachinesFailedError` lists every reason.

A process pool breaks as a whole when one of its workers dies (``BrokenProcessPool``); the tasks
that had not started are resubmitted to a fresh pool, and every task that was running when a pool
broke is run again alone, so that only the machine whose task kills its worker is lost. On dask
the scheduler first retries a task whose worker died (``distributed.scheduler.allowed-failures``
times), then fails it with ``KilledWorker``, together with the other tasks that worker was
processing; when several tasks are failed that way, each is run again alone, with the same result:
only a machine whose task kills a worker when it runs alone is lost.

Every worker runs the tasks with one BLAS/OpenMP thread, so the backends do the same floating-point
operations in the same order and return identical results.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable
from uuid import uuid4

import numpy as np
from threadpoolctl import ThreadpoolController
from tqdm import tqdm

from ._blas import limit_worker_threads, single_threaded_blas
from .sources import InvalidDataError, is_dask_collection, materialize

__all__ = [
    "BACKENDS",
    "AllMachinesFailedError",
    "MachineResults",
    "MachineTask",
    "map_machines",
]

BACKENDS = ("serial", "threads", "processes", "dask")


class AllMachinesFailedError(ValueError):
    """No machine produced a result: every task failed at run time (the reasons are in the message)."""


@dataclass(frozen=True)
class MachineTask:
    """One machine's unit of work.

    Parameters
    ----------
    machine : int
        The machine's index, used in results and messages.
    data : ndarray, SiteFile, dask chunk or partition, or pandas DataFrame
        The machine's data, materialised where the task runs (:func:`dfmr.sources.materialize`).
    args : tuple
        Further positional arguments of ``func`` (small: they travel with the task).
    """

    machine: int
    data: Any
    args: tuple[Any, ...] = ()


@dataclass
class MachineResults:
    """What :func:`map_machines` returns.

    Attributes
    ----------
    machines : list of int
        The machine index of every task, in task order.
    results : list
        ``func``'s return value for every task, in task order; ``None`` where the machine failed.
    failures : dict of int to str
        Machine index -> why its task failed at run time (exception type and message, or the
        death of its worker process).
    """

    machines: list[int]
    results: list[Any]
    failures: dict[int, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> list[int]:
        """Machine indices with a result, in task order."""
        return [m for m in self.machines if m not in self.failures]


class _InputLost(RuntimeError):
    """A dask task cancelled because its input was lost with a worker: a victim, never a culprit."""


def _died(exc: BaseException) -> bool:
    return isinstance(exc, (BrokenProcessPool, _InputLost)) or type(exc).__name__ == "KilledWorker"


def _reason(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return f"its worker process died while running it ({text})" if _died(exc) else text


class _Collector:
    """Results and failures by task position; raises at the first invalid data."""

    def __init__(self, tasks: Sequence[MachineTask], bar: tqdm) -> None:
        self.tasks = tasks
        self.results: list[Any] = [None] * len(tasks)
        self.failures: dict[int, str] = {}
        self.bar = bar

    def done(self, position: int, value: Any) -> None:
        self.results[position] = value
        self.bar.update()

    def failed(self, position: int, exc: BaseException) -> None:
        machine = self.tasks[position].machine
        if isinstance(exc, InvalidDataError):
            raise InvalidDataError(f"machine {machine}: {exc}") from exc
        self.failures[machine] = _reason(exc)
        self.bar.update()
        self.bar.set_postfix(failed=len(self.failures))

    def outcome(self) -> MachineResults:
        machines = [t.machine for t in self.tasks]
        if self.tasks and len(self.failures) == len(self.tasks):
            listed = "; ".join(f"machine {m}: {why}" for m, why in sorted(self.failures.items()))
            raise AllMachinesFailedError(f"all {len(self.tasks)} machines failed, no estimate is left ({listed}).")
        return MachineResults(machines, self.results, dict(sorted(self.failures.items())))


def _run_task(func: Callable[..., Any], data: Any, args: tuple[Any, ...], machine: int) -> Any:
    """One machine's task, where it runs: materialise its data, then call ``func``."""
    return func(materialize(data, f"machine {machine}'s data"), *args)


_limit_lock = threading.Lock()
_limited = False


def _limit_this_process() -> None:
    """One BLAS/OpenMP thread in this dask worker process from now on (set once, like a pool initializer)."""
    global _limited
    with _limit_lock:
        if not _limited:
            limit_worker_threads()
            _limited = True


# ------------------------------------------------------------------------------ serial and threads


def _run_serial(func: Callable[..., Any], tasks: Sequence[MachineTask], out: _Collector) -> None:
    for position, task in enumerate(tasks):
        try:
            value = _run_task(func, task.data, task.args, task.machine)
        except Exception as exc:
            out.failed(position, exc)
        else:
            out.done(position, value)


def _collect(futures: dict[Future[Any], int], out: _Collector) -> None:
    """Record futures as they complete; on invalid data cancel the rest and raise."""
    pending = set(futures)
    try:
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in finished:
                exc = fut.exception()
                if exc is None:
                    out.done(futures[fut], fut.result())
                else:
                    out.failed(futures[fut], exc)
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise


def _run_in_thread(controller: ThreadpoolController, func: Callable[..., Any], task: MachineTask) -> Any:
    """A task in a pool thread: BLAS limits that are per thread must be set in this thread."""
    with single_threaded_blas(controller):
        return _run_task(func, task.data, task.args, task.machine)


def _run_threads(
    func: Callable[..., Any], tasks: Sequence[MachineTask], workers: int, controller: ThreadpoolController,
    out: _Collector,
) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_run_in_thread, controller, func, t): i for i, t in enumerate(tasks)}
        _collect(futures, out)


# ------------------------------------------------------------------------------------ process pool

_started: Any = None  # in a pool worker: the shared flags "task i has started"


def _init_pool_worker(started: Any) -> None:
    global _started
    _started = started
    limit_worker_threads()


def _pool_task(position: int, func: Callable[..., Any], data: Any, args: tuple[Any, ...], machine: int) -> Any:
    _started[position] = 1
    return _run_task(func, data, args, machine)


def _pool_round(
    func: Callable[..., Any], tasks: Sequence[MachineTask], positions: list[int], workers: int, out: _Collector
) -> tuple[list[int], list[int]]:
    """Run ``positions`` on a fresh pool; returns (running, not started) tasks lost if the pool broke."""
    ctx = multiprocessing.get_context()
    started = ctx.RawArray("b", len(tasks))
    lost: list[int] = []
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(positions)), mp_context=ctx, initializer=_init_pool_worker, initargs=(started,)
    )
    try:
        futures = {
            pool.submit(_pool_task, p, func, tasks[p].data, tasks[p].args, tasks[p].machine): p for p in positions
        }
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in finished:
                exc = fut.exception()
                if exc is None:
                    out.done(futures[fut], fut.result())
                elif isinstance(exc, BrokenProcessPool):
                    lost.append(futures[fut])
                else:
                    out.failed(futures[fut], exc)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [p for p in lost if started[p]], [p for p in lost if not started[p]]


def _run_processes(func: Callable[..., Any], tasks: Sequence[MachineTask], workers: int, out: _Collector) -> None:
    todo = list(range(len(tasks)))
    suspects: list[int] = []
    while todo:
        running, not_started = _pool_round(func, tasks, todo, workers, out)
        if not running and not_started == todo:
            # The pool broke before any task started (a worker could not even start): nothing to isolate.
            for p in todo:
                out.failed(p, BrokenProcessPool("the process pool broke before the task started"))
            break
        suspects += running
        todo = not_started
    # A worker's death takes every task of its pool down; run each of those alone to find the culprit.
    for p in sorted(suspects):
        running, _ = _pool_round(func, tasks, [p], 1, out)
        if running:
            out.failed(p, BrokenProcessPool("a process in the process pool was terminated abruptly"))


# -------------------------------------------------------------------------------------------- dask


def _dask_task(func: Callable[..., Any], data: Any, args: tuple[Any, ...], machine: int) -> Any:
    _limit_this_process()
    return _run_task(func, data, args, machine)


@contextlib.contextmanager
def _dask_client(client: Any, n_workers: int) -> Iterator[Any]:
    """The client passed in, else the active one, else a LocalCluster started (with a warning) and closed."""
    if client is not None:
        yield client
        return
    try:
        from distributed import Client, LocalCluster, get_client
    except ImportError:
        raise ImportError(
            "backend='dask' needs dask.distributed; install it with 'pip install dfmr[dask]'."
        ) from None
    try:
        active = get_client()
    except ValueError:
        active = None
    if active is not None:
        yield active
        return
    warnings.warn(
        f"no dask.distributed Client is active: starting a LocalCluster of {n_workers} worker processes for "
        "this run and closing it afterwards. Start a Client (or pass client=...) to reuse a cluster.",
        UserWarning,
        stacklevel=4,
    )
    with LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster, set_as_default=False) as started:
        yield started


def _submit_dask(client: Any, func: Callable[..., Any], task: MachineTask, key: str, again: bool = False) -> Any:
    """Submit the task; ``again``: its dask input gets fresh keys, so that nothing failed before is reused."""
    data = task.data
    # A dask chunk is computed on a worker and stays there; the task is scheduled next to it. An
    # in-memory array travels inside its task rather than scattered to one worker, so that the
    # scheduler can rerun the task elsewhere if that worker dies.
    if is_dask_collection(data):
        if again:
            from dask.graph_manipulation import clone

            data = clone(data)
        data = client.compute(data)
    return client.submit(_dask_task, func, data, task.args, task.machine, key=key, pure=False)


def _dask_outcome(fut: Any) -> tuple[Any, BaseException | None]:
    """(result, None) or (None, exception). ``result()`` rather than the status: a finished result lost
    with its worker before it was gathered is recomputed, and ``result()`` waits for that."""
    try:
        return fut.result(), None
    except CancelledError:
        return None, _InputLost("its task was cancelled (its input was lost with a worker)")
    except Exception as exc:
        return None, exc


def _run_dask(func: Callable[..., Any], tasks: Sequence[MachineTask], client: Any, desc: str, out: _Collector) -> None:
    from distributed import as_completed

    run = f"dfmr-{desc.replace(' ', '-')}-{uuid4().hex[:8]}"
    futures: dict[Any, int] = {}
    killed: list[tuple[Any, BaseException]] = []
    try:
        for position, task in enumerate(tasks):
            futures[_submit_dask(client, func, task, f"{run}-{task.machine}")] = position
        for fut in as_completed(list(futures), loop=client.loop):
            value, exc = _dask_outcome(fut)
            if exc is None:
                out.done(futures[fut], value)
            elif _died(exc):
                killed.append((fut, exc))
            else:
                out.failed(futures[fut], exc)
        if len(killed) == 1 and not isinstance(killed[0][1], _InputLost):
            out.failed(futures[killed[0][0]], killed[0][1])
        else:
            # A worker's death condemns every task it was processing, and every chunk it was computing
            # (KilledWorker once the scheduler's allowed-failures are used up). Run each condemned task again,
            # alone and with its input recomputed, so that only a machine whose own task kills workers is lost.
            for position in sorted(futures[fut] for fut, _ in killed):
                task = tasks[position]
                fut = _submit_dask(client, func, task, f"{run}-{task.machine}-alone", again=True)
                futures[fut] = position
                for _ in as_completed([fut], loop=client.loop):
                    value, exc = _dask_outcome(fut)
                if exc is None:
                    out.done(position, value)
                else:
                    out.failed(position, exc)
    finally:
        client.cancel(list(futures))


# -------------------------------------------------------------------------------------------- API


def _workers(n_jobs: int | None) -> int:
    cpus = os.cpu_count() or 1
    if n_jobs is None:
        return cpus
    if isinstance(n_jobs, (int, np.integer)) and not isinstance(n_jobs, bool) and n_jobs != 0:
        workers = int(n_jobs) if n_jobs > 0 else cpus + 1 + int(n_jobs)
        if workers >= 1:
            return workers
    raise ValueError(f"n_jobs must be None or a non-zero integer leaving at least one of {cpus} CPUs; got {n_jobs!r}.")


def map_machines(
    func: Callable[..., Any],
    tasks: Sequence[MachineTask],
    *,
    backend: str,
    n_jobs: int | None = None,
    client: Any = None,
    progress: bool = False,
    desc: str = "machines",
) -> MachineResults:
    """Run ``func(X_i, *task.args)`` for every machine where its data are, surviving machine failures.

    Parameters
    ----------
    func : callable
        A module-level function (it is pickled for the process and dask backends) taking the
        machine's ``(n, d)`` float64 data matrix and ``task.args``; its return value should be small.
    tasks : sequence of MachineTask
        One per machine.
    backend : {"serial", "threads", "processes", "dask"}
        In this thread; in a thread pool; in a process pool (the platform's default start method);
        on dask.distributed (``client``, else the active client, else a ``LocalCluster`` of
        ``n_jobs`` worker processes started with a warning and closed afterwards, no dashboard).
    n_jobs : int, optional
        Pool size (threads, processes, or workers of a LocalCluster started here); ``None`` uses
        ``os.cpu_count()``, negative values count back from it.
    client : distributed.Client, optional
        The dask client to use with ``backend="dask"``.
    progress : bool, default False
        A tqdm bar on the client, advanced as machines complete (or fail).
    desc : str, default "machines"
        The bar's label (and part of the dask task keys).

    Returns
    -------
    MachineResults
        Results in task order (``None`` for failed machines) and the failures with their reasons.

    Raises
    ------
    InvalidDataError
        If a machine's data turn out to be invalid where they are read (the machine is named).
    AllMachinesFailedError
        If every machine failed at run time.
    ValueError
        If ``backend`` or ``n_jobs`` is invalid, or ``client`` is given with another backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}.")
    if client is not None and backend != "dask":
        raise ValueError(f"client is used by backend='dask' only, not backend={backend!r}.")
    workers = _workers(n_jobs)
    tasks = list(tasks)
    with tqdm(total=len(tasks), desc=desc, unit="machine", disable=not progress) as bar:
        out = _Collector(tasks, bar)
        if backend == "dask":
            with _dask_client(client, min(workers, max(len(tasks), 1))) as active:
                _run_dask(func, tasks, active, desc, out)
        elif backend == "processes":
            _run_processes(func, tasks, min(workers, max(len(tasks), 1)), out)
        else:
            controller = ThreadpoolController()
            # One BLAS thread while the tasks run (dfmr._blas: per thread where the library allows it, else
            # process-wide, restored afterwards); entered here too so a process-wide limit is set once.
            with single_threaded_blas(controller):
                if backend == "threads":
                    _run_threads(func, tasks, min(workers, max(len(tasks), 1)), controller, out)
                else:
                    _run_serial(func, tasks, out)
    return out.outcome()
