"""Where per-machine work runs: one adapter (an *engine*) per backend, behind :func:`map_machines`.

One function, :func:`map_machines`, runs ``func(X_i, *args_i)`` for every machine ``i``, where
``X_i`` is machine ``i``'s data made into an ``(n_i, d)`` float64 matrix *where the task runs*
(:func:`dfmr.sources.materialize`): an in-memory array, a per-site file read by the worker, a
dask chunk or partition that dask computes on a worker and hands to the task there, or a Spark
site's rows (:mod:`dfmr.spark`). Only ``func``'s (small) return values travel back to the
client. The local fits of :class:`~dfmr.estimator.DistributedGaussianMixture` run through it, and
so can any other per-machine computation (per-machine scores, information matrices).

Every backend is one :class:`Engine` in one registry (:func:`engine`): ``"serial"``,
``"threads"``, ``"processes"``, ``"dask"`` and ``"spark"``. An engine owns what differs between
backends: where the machines' data are placed (:meth:`Engine.place`: the process pool maps a
temporary file of the split rather than copying arrays into every task), how the tasks run, how
failures are told apart, and how a machine past its deadline is stopped. The estimator hands over
data and a task and gets the estimates back, whatever the engine.

Failure semantics, the same on every backend:

* invalid data (:class:`~dfmr.sources.InvalidDataError`, a ``ValueError``: NaN, infinity,
  non-numeric columns found where the data are read) stop the whole run with that error, the
  machine named, as invalid in-memory data are refused before any work starts;
* any other exception raised by a machine's task, or the death of the worker process running it,
  is a *run-time failure of that machine*: it is recorded in :attr:`MachineResults.failures`
  (machine -> reason), its result is ``None``, and the other machines carry on;
* a machine still running when its deadline passes (``timeout`` seconds after its task started,
  or ``total_timeout`` seconds after the run started) is a run-time failure too
  (:class:`MachineTimeout`), reported when the deadline passes; the others carry on;
* if no machine at all produces a result, :class:`AllMachinesFailedError` lists every reason.

How a machine past its deadline is stopped depends on the engine: the process pool kills the
worker process running it (the other tasks of that pool are run again, not blamed); dask restarts
the worker running it (its nanny starts a fresh one, in the background while the run goes on; a
``LocalCluster`` or other ``SpecCluster`` of this process that closes such a worker for good,
because it stayed away past ``distributed.deploy.lost-worker-timeout``, has it opened again, and so
after a worker's death); Spark kills the machine's forked fit on the
executor (``timeout``) or cancels the job (``total_timeout``). Python cannot stop a running
thread, so ``"serial"`` and ``"threads"`` report the machine at its deadline and *abandon* its
thread: a daemon thread that runs on in the background until the task returns, its result
discarded (with a deadline, ``"serial"`` runs each task in such a helper thread, one at a time).
An abandoned thread keeps its CPU and memory until then; use ``"processes"`` when tasks may hang
for good.

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

import abc
import asyncio
import contextlib
import importlib
import logging
import math
import multiprocessing
import numbers
import os
import queue
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
from threadpoolctl import ThreadpoolController
from tqdm import tqdm

from ._blas import limit_worker_threads, single_threaded_blas
from .partition import split, split_to_file
from .sources import InvalidDataError, is_dask_collection, materialize

_log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "AllMachinesFailedError",
    "Deadlines",
    "Engine",
    "MachineResults",
    "MachineTask",
    "MachineTimeout",
    "check_timeout",
    "engine",
    "map_machines",
]

# The registry of engines: backend name -> "module:class", imported when first used (pyspark and
# distributed are optional).
_ENGINES = {
    "serial": "dfmr.executor:SerialEngine",
    "threads": "dfmr.executor:ThreadEngine",
    "processes": "dfmr.executor:ProcessEngine",
    "dask": "dfmr.executor:DaskEngine",
    "spark": "dfmr.spark:SparkEngine",
}
BACKENDS = tuple(_ENGINES)


class AllMachinesFailedError(ValueError):
    """No machine produced a result: every task failed at run time (the reasons are in the message)."""


class MachineTimeout(TimeoutError):
    """A machine's task was still running when its deadline passed; it is reported failed."""


@dataclass(frozen=True)
class MachineTask:
    """One machine's unit of work.

    Parameters
    ----------
    machine : int
        The machine's index, used in results and messages.
    data : ndarray, source, dask chunk or partition, pandas DataFrame, or Spark rows
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
        Machine index -> why its task failed at run time (exception type and message, the
        death of its worker process, or its deadline).
    """

    machines: list[int]
    results: list[Any]
    failures: dict[int, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> list[int]:
        """Machine indices with a result, in task order."""
        return [m for m in self.machines if m not in self.failures]


def check_timeout(value: Any, name: str) -> float | None:
    """``value`` as a deadline in seconds: None, or a finite number > 0; a ValueError naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise ValueError(f"{name} must be None or a finite number of seconds > 0, got {value!r}.")


class Deadlines:
    """The deadlines of one run: ``timeout`` seconds per machine from its start, ``total_timeout`` for the run.

    Parameters
    ----------
    timeout, total_timeout : float or None
        Seconds; ``None``: no such deadline. The run's clock starts when this object is made.
    """

    #: Longest wait between two looks at the clock while tasks run (seconds).
    TICK = 0.05

    def __init__(self, timeout: float | None = None, total_timeout: float | None = None) -> None:
        self.timeout = check_timeout(timeout, "timeout")
        self.total_timeout = check_timeout(total_timeout, "total_timeout")
        self.end = None if self.total_timeout is None else time.monotonic() + self.total_timeout

    @property
    def active(self) -> bool:
        """Whether there is any deadline at all."""
        return self.timeout is not None or self.end is not None

    def total_passed(self) -> bool:
        """Whether the run's total deadline has passed."""
        return self.end is not None and time.monotonic() >= self.end

    def overdue(self, elapsed: float) -> bool:
        """Whether a task that has run for ``elapsed`` seconds is past its own deadline."""
        return self.timeout is not None and elapsed >= self.timeout

    def tick(self) -> float | None:
        """How long to wait for the next result before looking at the clock again (None: no deadline)."""
        return self.TICK if self.active else None

    def per_machine(self, elapsed: float) -> MachineTimeout:
        """The failure of a machine stopped after running ``elapsed`` seconds, past ``timeout``."""
        return MachineTimeout(f"it was still running after its timeout of {self.timeout:g} s ({elapsed:.1f} s)")

    def total(self) -> MachineTimeout:
        """The failure of a machine unfinished at the total deadline."""
        return MachineTimeout(f"the run's total_timeout of {self.total_timeout:g} s passed before it finished")


class _InputLost(RuntimeError):
    """A dask task cancelled because its input was lost with a worker: a victim, never a culprit."""


def _died(exc: BaseException) -> bool:
    return isinstance(exc, (BrokenProcessPool, _InputLost)) or type(exc).__name__ == "KilledWorker"


def _reason(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return f"its worker process died while running it ({text})" if _died(exc) else text


class _Collector:
    """Results and failures by task position; raises at the first invalid data.

    A position is *open* until its result or failure is recorded; a late result of a task already
    reported (an abandoned thread finishing after its deadline) is ignored.
    """

    def __init__(self, tasks: Sequence[MachineTask], bar: tqdm) -> None:
        self.tasks = tasks
        self.results: list[Any] = [None] * len(tasks)
        self.failures: dict[int, str] = {}
        self.open = set(range(len(tasks)))
        self.bar = bar

    def done(self, position: int, value: Any) -> None:
        if position in self.open:
            self.open.discard(position)
            self.results[position] = value
            self.bar.update()

    def failed(self, position: int, exc: BaseException) -> None:
        if position not in self.open:
            return
        machine = self.tasks[position].machine
        if isinstance(exc, InvalidDataError):
            raise InvalidDataError(f"machine {machine}: {exc}") from exc
        self.open.discard(position)
        self.failures[machine] = _reason(exc)
        self.bar.update()
        self.bar.set_postfix(failed=len(self.failures))

    def fail_open(self, exc: BaseException) -> None:
        """Every position still open fails with ``exc`` (the run's total deadline passed)."""
        for position in sorted(self.open):
            self.failed(position, exc)

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



# ------------------------------------------------------------------------------------------ engines


class Engine(abc.ABC):
    """One backend's adapter behind :func:`map_machines`.

    An engine owns what differs between backends: where the machines' data are placed
    (:meth:`place`), how their tasks run, how failures are told apart and how a machine past its
    deadline is stopped (:meth:`run`). Engines are made by :func:`engine` from the registry.

    Parameters
    ----------
    workers : int
        Pool size (threads, processes, or workers of a cluster started for the run).
    client : object, optional
        The engine's cluster handle (a dask ``Client``, a ``SparkSession``); only engines that
        use one accept it.
    """

    name: ClassVar[str]

    def __init__(self, workers: int, client: Any = None) -> None:
        if client is not None:
            raise ValueError(f"client is used by backend='dask' or 'spark' only, not backend={self.name!r}.")
        self.workers = workers
        self.client = client

    @contextlib.contextmanager
    def place(self, X: np.ndarray, n_machines: int, rng: np.random.Generator) -> Iterator[list[Any]]:
        """The shuffled rows of ``X`` dealt out to ``n_machines`` machines, as this engine's tasks read them.

        The same rows in the same order as :func:`dfmr.partition.split` on every engine; the pieces are
        valid inside the ``with`` block. Each entry has ``shape`` (a tuple or a method) and is a
        :class:`MachineTask`'s data.
        """
        yield split(X, n_machines, rng)

    @abc.abstractmethod
    def run(self, func: Callable[..., Any], tasks: Sequence[MachineTask], out: _Collector, deadlines: Deadlines,
            desc: str) -> None:
        """Run every task, recording results and failures in ``out`` until none is open."""


def _run_in_threads(
    func: Callable[..., Any], tasks: Sequence[MachineTask], workers: int, controller: ThreadpoolController,
    out: _Collector, deadlines: Deadlines,
) -> None:
    """Every task in a daemon thread of its own, at most ``workers`` at a time; a thread past its deadline is
    abandoned (reported, its slot given to the next task, its late result ignored)."""
    finished: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()

    def body(position: int) -> None:
        task = tasks[position]
        try:
            # BLAS limits that are per thread must be set in the thread that runs the task.
            with single_threaded_blas(controller):
                value = _run_task(func, task.data, task.args, task.machine)
        except Exception as exc:
            finished.put((position, None, exc))
        else:
            finished.put((position, value, None))

    waiting = list(range(len(tasks)))[::-1]
    running: dict[int, float] = {}
    while out.open:
        if deadlines.total_passed():
            out.fail_open(deadlines.total())
            return
        while waiting and len(running) < workers:
            position = waiting.pop()
            running[position] = time.monotonic()
            threading.Thread(
                target=body, args=(position,), name=f"dfmr-machine-{tasks[position].machine}", daemon=True
            ).start()
        try:
            position, value, exc = finished.get(timeout=deadlines.tick())
        except queue.Empty:
            pass
        else:
            if running.pop(position, None) is not None:
                if exc is None:
                    out.done(position, value)
                else:
                    out.failed(position, exc)
        now = time.monotonic()
        for position, start in list(running.items()):
            if deadlines.overdue(now - start):
                del running[position]  # abandoned: the thread runs on, its result will be ignored
                out.failed(position, deadlines.per_machine(now - start))


class ThreadEngine(Engine):
    """A pool of ``workers`` threads of this process; a thread past its deadline is abandoned."""

    name = "threads"

    def run(self, func: Callable[..., Any], tasks: Sequence[MachineTask], out: _Collector, deadlines: Deadlines,
            desc: str) -> None:
        controller = ThreadpoolController()
        # One BLAS thread while the tasks run (dfmr._blas: per thread where the library allows it, else
        # process-wide, restored afterwards); entered here too so that a process-wide limit is set once.
        with single_threaded_blas(controller):
            _run_in_threads(func, tasks, self.workers, controller, out, deadlines)


class SerialEngine(Engine):
    """Every machine in turn, in the calling thread (with a deadline: in one helper thread, abandoned at it)."""

    name = "serial"

    def run(self, func: Callable[..., Any], tasks: Sequence[MachineTask], out: _Collector, deadlines: Deadlines,
            desc: str) -> None:
        if deadlines.active:
            ThreadEngine(1).run(func, tasks, out, deadlines, desc)
            return
        with single_threaded_blas(ThreadpoolController()):
            for position, task in enumerate(tasks):
                try:
                    value = _run_task(func, task.data, task.args, task.machine)
                except Exception as exc:
                    out.failed(position, exc)
                else:
                    out.done(position, value)


# ------------------------------------------------------------------------------------ process pool

_started: Any = None  # in a pool worker: per task, the monotonic time it started (0: not started)
_pids: Any = None  # in a pool worker: per task, the process running it


def _init_pool_worker(started: Any, pids: Any) -> None:
    global _started, _pids
    _started, _pids = started, pids
    limit_worker_threads()


def _pool_task(position: int, func: Callable[..., Any], data: Any, args: tuple[Any, ...], machine: int) -> Any:
    _pids[position] = os.getpid()
    _started[position] = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the host
    return _run_task(func, data, args, machine)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _pool_round(
    func: Callable[..., Any], tasks: Sequence[MachineTask], positions: list[int], workers: int, out: _Collector,
    deadlines: Deadlines,
) -> tuple[list[int], list[int], bool]:
    """Run ``positions`` on a fresh pool.

    Returns the open tasks lost when the pool broke, (running, not started), and whether it broke
    because a worker was killed here at a deadline (then the running ones are not to blame).
    """
    ctx = multiprocessing.get_context()
    started = ctx.RawArray("d", len(tasks))
    pids = ctx.RawArray("i", len(tasks))
    lost: list[int] = []
    killed = False
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(positions)), mp_context=ctx, initializer=_init_pool_worker,
        initargs=(started, pids),
    )
    try:
        futures = {
            pool.submit(_pool_task, p, func, tasks[p].data, tasks[p].args, tasks[p].machine): p for p in positions
        }
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=deadlines.tick(), return_when=FIRST_COMPLETED)
            for fut in finished:
                exc = fut.exception()
                if exc is None:
                    out.done(futures[fut], fut.result())
                elif isinstance(exc, BrokenProcessPool):
                    lost.append(futures[fut])
                else:
                    out.failed(futures[fut], exc)
            now = time.monotonic()
            if deadlines.total_passed():
                for p in positions:
                    if started[p] and p in out.open:
                        _kill(pids[p])
                out.fail_open(deadlines.total())
                killed = True
                return [], [], True
            for fut in pending:
                p = futures[fut]
                if started[p] and p in out.open and deadlines.overdue(now - started[p]):
                    _kill(pids[p])  # the pool breaks: its manager terminates the other workers
                    out.failed(p, deadlines.per_machine(now - started[p]))
                    killed = True
    finally:
        pool.shutdown(wait=not killed, cancel_futures=True)
    lost = [p for p in lost if p in out.open]
    return [p for p in lost if started[p]], [p for p in lost if not started[p]], killed


class ProcessEngine(Engine):
    """A pool of ``workers`` processes; the split of an in-memory array is a temporary file they map.

    A worker whose task is past its deadline is killed; the tasks the broken pool took down with it
    run again on a fresh pool.
    """

    name = "processes"

    @contextlib.contextmanager
    def place(self, X: np.ndarray, n_machines: int, rng: np.random.Generator) -> Iterator[list[Any]]:
        # The split's copy goes to a temporary file that the workers map, removed afterwards
        # (dfmr.partition.split_to_file): tasks ship no data and the client holds none of the copy.
        with split_to_file(X, n_machines, rng) as rows:
            yield rows

    def run(self, func: Callable[..., Any], tasks: Sequence[MachineTask], out: _Collector, deadlines: Deadlines,
            desc: str) -> None:
        workers = min(self.workers, max(len(tasks), 1))
        todo = list(range(len(tasks)))
        suspects: list[int] = []
        while todo and out.open:
            running, not_started, killed = _pool_round(func, tasks, todo, workers, out, deadlines)
            if killed:
                # A worker killed here at its deadline broke the pool: the others lost are not to blame.
                todo = sorted(running + not_started)
                continue
            if not running and not_started == todo:
                # The pool broke before any task started (a worker could not even start): nothing to isolate.
                for p in todo:
                    out.failed(p, BrokenProcessPool("the process pool broke before the task started"))
                break
            suspects += running
            todo = not_started
        # A worker's death takes every task of its pool down; run each of those alone to find the culprit.
        for p in sorted(suspects):
            if p not in out.open:
                continue
            running, _, killed = _pool_round(func, tasks, [p], 1, out, deadlines)
            if running and not killed:
                out.failed(p, BrokenProcessPool("a process in the process pool was terminated abruptly"))


# -------------------------------------------------------------------------------------------- dask

_dask_running: dict[str, float] = {}  # in a dask worker process: task key -> monotonic start time


def _dask_task(func: Callable[..., Any], data: Any, args: tuple[Any, ...], machine: int, key: str) -> Any:
    _limit_this_process()
    _dask_running[key] = time.monotonic()
    try:
        return _run_task(func, data, args, machine)
    finally:
        _dask_running.pop(key, None)


def _dask_elapsed() -> dict[str, float]:
    """Run on a dask worker: seconds each of its dfmr tasks has been running (a clock local to that host)."""
    now = time.monotonic()
    return {key: now - start for key, start in list(_dask_running.items())}


@contextlib.contextmanager
def _dask_client(client: Any, n_workers: int) -> Iterator[tuple[Any, bool]]:
    """(client, started): the client passed in, else the active one, else (``started``) one of a LocalCluster
    started for the run (with a warning) and closed afterwards."""
    if client is not None:
        yield client, False
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
        yield active, False
        return
    warnings.warn(
        f"no dask.distributed Client is active: starting a LocalCluster of {n_workers} worker processes for "
        "this run and closing it afterwards. Start a Client (or pass client=...) to reuse a cluster.",
        UserWarning,
        stacklevel=5,
    )
    with LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster, set_as_default=False) as started:
        yield started, True


def _restart_dask_workers(client: Any, addresses: list[str], timeout: float) -> None:
    """Body of a background thread: the nannies of ``addresses`` replace their worker processes.

    A cluster closed meanwhile (the user closed it after the run) ends the restart: not an error.
    """
    try:
        client.restart_workers(addresses, timeout=timeout, raise_for_error=False)
    except Exception as exc:
        if client.status not in ("closing", "closed"):
            _log.warning("dask: restarting the workers %s after a deadline failed: %s", addresses, exc)


def _spec_cluster(client: Any) -> Any:
    """The client's cluster if it is a dask ``SpecCluster`` (``LocalCluster``, dask-jobqueue, ...) in this
    process, run synchronously; otherwise None (a remote scheduler's deployment keeps its own workers)."""
    from distributed.deploy.spec import SpecCluster

    cluster = getattr(client, "cluster", None)
    if isinstance(cluster, SpecCluster) and not cluster.asynchronous:
        return cluster
    return None


def _cluster_workers(cluster: Any) -> dict[Any, Any]:
    """A copy of the cluster's workers (name -> worker object), taken on its event loop."""

    async def copy() -> dict[Any, Any]:
        return dict(cluster.workers)

    try:
        return cluster.sync(copy, callback_timeout=10)
    except Exception:  # a cluster closing: nothing to keep
        return {}


async def _reopen_lost_workers(cluster: Any, known: dict[Any, Any]) -> bool:
    """On the cluster's loop: open again the workers of ``known`` (name -> worker object) that the cluster
    dropped although they are still in its ``worker_spec``; ``known`` becomes the current workers.

    Returns whether any was opened again.
    """
    from distributed.core import Status

    lost = {name: w for name, w in known.items() if name not in cluster.workers and name in cluster.worker_spec}
    known.clear()
    known.update(cluster.workers)
    if not lost or cluster.status != Status.running:
        return False
    # The cluster is closing each of them (which kills a worker process it may still be starting, under the
    # same name): a new worker of that name may only start once that is over.
    await asyncio.wait([asyncio.ensure_future(w.finished()) for w in lost.values()], timeout=30)
    cluster.scale(len(cluster.worker_spec))  # opens the workers of its spec that it lacks, under their names
    return True


def _keep_cluster_whole(cluster: Any, known: dict[Any, Any], busy: Callable[[], bool]) -> None:
    """Body of a background thread after a worker died or was restarted: keep ``cluster`` at its size.

    A ``SpecCluster`` (``LocalCluster``) closes for good the nanny of a worker name absent from the
    scheduler at the moment ``distributed.deploy.lost-worker-timeout`` (15 s) after *any* earlier removal
    of that name: a worker whose new process starts slowly on a loaded machine, or one restarted again
    about that long after an earlier death or restart, is lost, and the cluster shrinks (to no worker at
    all after a few: the next run then waits forever). Such a worker is opened again here, until that
    timeout (and a margin) has passed since ``busy()`` (a restart under way) turned false and since the
    last re-opening.
    """
    from distributed.core import Status

    grace = _lost_worker_timeout() + 1.0
    quiet_since: float | None = None
    while cluster.status == Status.running:
        try:
            reopened = cluster.sync(_reopen_lost_workers, cluster, known, callback_timeout=60)
        except Exception as exc:  # the cluster is being closed, or a look that failed: look again
            if cluster.status != Status.running:
                return
            _log.debug("dask: looking for closed workers failed: %r", exc)
            reopened = False
        now = time.monotonic()
        if busy() or reopened:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= grace:
            return
        time.sleep(0.25)


def _lost_worker_timeout() -> float:
    import dask
    from dask.utils import parse_timedelta

    return float(parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout", "15s"), "s"))


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
    return client.submit(_dask_task, func, data, task.args, task.machine, key, key=key, pure=False)


def _dask_outcome(fut: Any) -> tuple[Any, BaseException | None]:
    """(result, None) or (None, exception). ``result()`` rather than the status: a finished result lost
    with its worker before it was gathered is recomputed, and ``result()`` waits for that."""
    try:
        return fut.result(), None
    except CancelledError:
        return None, _InputLost("its task was cancelled (its input was lost with a worker)")
    except Exception as exc:
        return None, exc


class DaskEngine(Engine):
    """dask.distributed: ``client``, else the active client, else a LocalCluster started for the run.

    A worker whose task is past its deadline is restarted (by its nanny) after the task is cancelled.
    """

    name = "dask"

    #: Seconds between two questions to the workers about how long their tasks have been running.
    POLL = 0.2
    #: Seconds a worker's restart at a deadline may take before dask gives up on it.
    RESTART_TIMEOUT = 60.0

    def __init__(self, workers: int, client: Any = None) -> None:
        self.workers = workers
        self.client = client
        self.restarts: list[threading.Thread] = []

    def run(self, func: Callable[..., Any], tasks: Sequence[MachineTask], out: _Collector, deadlines: Deadlines,
            desc: str) -> None:
        from uuid import uuid4

        with _dask_client(self.client, min(self.workers, max(len(tasks), 1))) as (client, started):
            # A cluster object in this process that closes workers away too long (a LocalCluster) is
            # watched after a worker died or was restarted here (_keep_cluster_whole); one started for
            # this run is closed at its end instead.
            cluster = None if started else _spec_cluster(client)
            known = _cluster_workers(cluster) if cluster is not None else {}
            run = f"dfmr-{desc.replace(' ', '-')}-{uuid4().hex[:8]}"
            futures: dict[Any, int] = {}
            killed: list[tuple[Any, BaseException]] = []
            try:
                for position, task in enumerate(tasks):
                    futures[_submit_dask(client, func, task, f"{run}-{task.machine}")] = position
                killed = self._round(client, dict(futures), out, deadlines)
                if len(killed) == 1 and not isinstance(killed[0][1], _InputLost) and not self.restarts:
                    out.failed(futures[killed[0][0]], killed[0][1])
                    return
                # A worker's death condemns every task it was processing, and every chunk it was computing
                # (KilledWorker once the scheduler's allowed-failures are used up); so does a restart at a
                # deadline, here. Run each condemned task again, alone and with its input recomputed, so that
                # only a machine whose own task kills workers is lost.
                for position in sorted(futures[fut] for fut, _ in killed):
                    if position not in out.open:
                        continue
                    task = tasks[position]
                    fut = _submit_dask(client, func, task, f"{run}-{task.machine}-alone", again=True)
                    futures[fut] = position
                    again = self._round(client, {fut: position}, out, deadlines)
                    killed += again
                    for _, exc in again:
                        out.failed(position, exc)
            finally:
                client.cancel(list(futures))
                if started:  # the cluster is closed next: let the restarts finish first
                    for thread in self.restarts:
                        thread.join()
                elif cluster is not None and (killed or self.restarts):
                    restarts = list(self.restarts)
                    threading.Thread(
                        target=_keep_cluster_whole, args=(cluster, known, lambda: any(t.is_alive() for t in restarts)),
                        name="dfmr-dask-keep-cluster", daemon=True,
                    ).start()

    def _round(
        self, client: Any, futures: dict[Any, int], out: _Collector, deadlines: Deadlines
    ) -> list[tuple[Any, BaseException]]:
        """Wait for ``futures``, enforcing the deadlines; returns the tasks failed by a worker's death."""
        from distributed import as_completed

        killed: list[tuple[Any, BaseException]] = []
        pending = set(futures)
        arriving = as_completed(list(futures), loop=client.loop)
        polled = time.monotonic()
        while pending:
            if deadlines.total_passed():
                self._stop(client, pending, lambda _: True)
                out.fail_open(deadlines.total())
                return []
            finished = set(arriving.next_batch(block=not deadlines.active))
            if not finished:
                time.sleep(deadlines.TICK)
            for fut in finished & pending:
                pending.discard(fut)
                value, exc = _dask_outcome(fut)
                if exc is None:
                    out.done(futures[fut], value)
                elif _died(exc):
                    killed.append((fut, exc))
                else:
                    out.failed(futures[fut], exc)
            if deadlines.timeout is not None and pending and time.monotonic() - polled >= self.POLL:
                polled = time.monotonic()
                for fut, elapsed in self._stop(client, pending, deadlines.overdue).items():
                    pending.discard(fut)
                    out.failed(futures[fut], deadlines.per_machine(elapsed))
        return killed

    def _stop(self, client: Any, pending: set[Any], stop: Callable[[float], bool]) -> dict[Any, float]:
        """Cancel the pending tasks running for a time that ``stop`` accepts and restart their workers.

        Returns those tasks with their running times; a task not yet running is only cancelled when
        ``stop`` accepts any time (the total deadline).
        """
        by_key = {fut.key: fut for fut in pending}
        stopped: dict[Any, float] = {}
        restart = []
        for address, running in client.run(_dask_elapsed, on_error="return").items():
            if isinstance(running, BaseException):
                continue  # a worker being restarted: it runs nothing of ours
            for key, elapsed in running.items():
                if key in by_key and stop(elapsed):
                    stopped[by_key[key]] = elapsed
                    restart.append(address)
        if stop(0.0):
            stopped.update({fut: 0.0 for fut in pending if fut not in stopped})
        if stopped:
            client.cancel(list(stopped), force=True)
        if restart:
            # Python cannot stop the running task: its worker process is replaced by its nanny, in the
            # background while the other machines go on (run() waits for it only when it closes the cluster).
            thread = threading.Thread(
                target=_restart_dask_workers, args=(client, sorted(set(restart)), self.RESTART_TIMEOUT),
                name="dfmr-dask-restart", daemon=True,
            )
            thread.start()
            self.restarts.append(thread)
        return stopped


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


def engine(backend: str, n_jobs: int | None = None, client: Any = None) -> Engine:
    """The adapter of ``backend`` from the registry.

    Parameters
    ----------
    backend : {"serial", "threads", "processes", "dask", "spark"}
        The engine's name.
    n_jobs : int, optional
        Pool size; ``None`` uses ``os.cpu_count()``, negative values count back from it.
    client : distributed.Client or pyspark.sql.SparkSession, optional
        The cluster of ``"dask"`` or ``"spark"``.

    Returns
    -------
    Engine

    Raises
    ------
    ValueError
        If ``backend`` or ``n_jobs`` is invalid, or ``client`` is given to an engine without one.
    """
    if backend not in _ENGINES:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}.")
    module, name = _ENGINES[backend].split(":")
    cls: type[Engine] = getattr(importlib.import_module(module), name)
    return cls(_workers(n_jobs), client)


def map_machines(
    func: Callable[..., Any],
    tasks: Sequence[MachineTask],
    *,
    backend: str,
    n_jobs: int | None = None,
    client: Any = None,
    progress: bool = False,
    desc: str = "machines",
    timeout: float | None = None,
    total_timeout: float | None = None,
) -> MachineResults:
    """Run ``func(X_i, *task.args)`` for every machine where its data are, surviving machine failures.

    Parameters
    ----------
    func : callable
        A module-level function (it is pickled for the process, dask and Spark backends) taking the
        machine's ``(n, d)`` float64 data matrix and ``task.args``; its return value should be small.
    tasks : sequence of MachineTask
        One per machine.
    backend : {"serial", "threads", "processes", "dask", "spark"}
        The engine (:func:`engine`): in this thread; in a thread pool; in a process pool (the
        platform's default start method); on dask.distributed (``client``, else the active client,
        else a ``LocalCluster`` of ``n_jobs`` worker processes started with a warning and closed
        afterwards, no dashboard); on Spark (``client``, a SparkSession, else the active one; see
        :mod:`dfmr.spark`).
    n_jobs : int, optional
        Pool size (threads, processes, or workers of a LocalCluster started here); ``None`` uses
        ``os.cpu_count()``, negative values count back from it.
    client : distributed.Client or pyspark.sql.SparkSession, optional
        The cluster of ``backend="dask"`` or ``backend="spark"``.
    progress : bool, default False
        A tqdm bar on the client, advanced as machines complete (or fail).
    desc : str, default "machines"
        The bar's label (and part of the dask task keys and of the Spark job's description).
    timeout : float, optional
        Seconds a machine's task may run, counted from when it starts; a machine still running
        then is reported failed (:class:`MachineTimeout`) and stopped as its engine can (see the
        module's description). ``None``: no limit.
    total_timeout : float, optional
        Seconds the whole run may take; the machines unfinished then are reported failed.

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
        If ``backend``, ``n_jobs``, ``timeout`` or ``total_timeout`` is invalid, or ``client`` is
        given with a backend that takes none.
    """
    deadlines = Deadlines(timeout, total_timeout)
    runner = engine(backend, n_jobs, client)
    tasks = list(tasks)
    with tqdm(total=len(tasks), desc=desc, unit="machine", disable=not progress) as bar:
        out = _Collector(tasks, bar)
        if tasks:
            runner.run(func, tasks, out, deadlines, desc)
    return out.outcome()
