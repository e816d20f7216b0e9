"""The Spark engine: the machines are the sites (or the partitions) of a Spark DataFrame.

``DistributedGaussianMixture(backend="spark", client=spark).fit(df, site_col="hospital")`` fits one
machine per value of the site column (``groupBy(site_col).applyInPandas``), or one per partition
of ``df`` when no site column is named (``mapInPandas``, a partition's Arrow batches concatenated);
the features are all the other columns, which must be numeric. Each machine's rows are turned into
a matrix and fitted inside the Spark task, on the executor that holds them: only the estimates
(a few small arrays per machine) leave the executors.

Spark guarantees no order, so the engine makes one: machine ``i`` is the ``i``-th site value in
sorted order (partition ``i`` without a site column) and gets the seed of machine ``i`` of every
other backend, and each machine's rows are put back in their input order (a row id is attached
with ``monotonically_increasing_id`` before the shuffle and sorted by inside the task). The fit
then equals ``fit_partitions([rows of each site, in input order])`` on the serial backend.

Failures follow :mod:`dfmr.executor`: an exception in a machine's fit is caught inside its task and
sent back, so the machine is reported failed and the others go on; invalid data (NaN, a
non-numeric column, too few rows) stop the fit with the machine named. Deadlines: with
``timeout``, each machine's fit runs in a process forked inside its Spark task, killed at the
deadline (the task itself then reports the machine failed, so the job goes on); with
``total_timeout``, the job is cancelled at the deadline (``cancelJobGroup``). The results of one
job come back together, so the machines reported failed then are all those of the job.

Other machine data (arrays, site files) given with ``backend="spark"`` run as one Spark task per
machine over ``SparkContext.parallelize``, the data travelling with the task.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable
from uuid import uuid4

import numpy as np

from .executor import Deadlines, Engine, MachineTask, _Collector, _limit_this_process
from .sources import InvalidDataError, materialize

__all__ = ["ROW_ID", "SparkEngine", "SparkRows", "is_spark_dataframe", "spark_machines"]

#: The column of input row numbers attached to the DataFrame (dropped from the features).
ROW_ID = "__dfmr_row_id__"

_OUTCOME_SCHEMA = "position long, outcome binary"


def is_spark_dataframe(obj: Any) -> bool:
    """True for a ``pyspark.sql.DataFrame`` (classic or Connect), without importing pyspark."""
    return type(obj).__module__.startswith("pyspark.sql") and type(obj).__name__ == "DataFrame"


@dataclass(frozen=True)
class SparkRows:
    """One machine's rows of a Spark DataFrame: a site's group or a partition, read only inside the Spark job.

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        The data with the :data:`ROW_ID` column attached (shared by every machine of the fit).
    site_col : str or None
        The site column; ``None``: the machines are the partitions.
    key : object
        The machine's site value, or its partition index.
    features : tuple of str
        The feature columns, in order.
    """

    frame: Any
    site_col: str | None
    key: Any
    features: tuple[str, ...]

    def shape(self) -> tuple[None, int]:
        """``(None, d)``: the rows are known only inside the job."""
        return None, len(self.features)


def spark_machines(df: Any, site_col: str | None = None) -> tuple[list[SparkRows], list[str]]:
    """The machines of a Spark DataFrame, in machine order, and its feature columns.

    Only the schema, the distinct site values (a small job) or the number of partitions are read
    here; the rows stay on the executors.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        The data: numeric feature columns, and the site column if ``site_col`` is given.
    site_col : str, optional
        One machine per value of this column (sorted), else one per partition.

    Returns
    -------
    machines : list of SparkRows
    features : list of str

    Raises
    ------
    InvalidDataError
        If a feature column is not numeric, there is no feature column, ``site_col`` is missing
        or has missing values, or the DataFrame has no rows.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    columns = list(df.columns)
    if site_col is not None and site_col not in columns:
        raise InvalidDataError(f"site_col {site_col!r} is not a column of the DataFrame (columns: {columns}).")
    if ROW_ID in columns:
        raise InvalidDataError(f"the DataFrame has a column named {ROW_ID!r}, which dfmr reserves for row numbers.")
    features = [c for c in columns if c != site_col]
    if not features:
        raise InvalidDataError("the DataFrame has no feature column besides the site column.")
    for name in features:
        kind = df.schema[name].dataType
        if not isinstance(kind, T.NumericType) or isinstance(kind, T.DecimalType):
            raise InvalidDataError(
                f"column {name!r} has type {kind.simpleString()}, not a numeric (integer or floating) type; "
                "drop or encode it before fitting."
            )
    frame = df.withColumn(ROW_ID, F.monotonically_increasing_id())
    if site_col is None:
        keys: list[Any] = list(range(df.rdd.getNumPartitions()))
    else:
        keys = [row[0] for row in df.select(site_col).distinct().collect()]
        if any(k is None for k in keys):
            raise InvalidDataError(f"site_col {site_col!r} has missing values; every row needs a site.")
        keys.sort()
    if not keys:
        raise InvalidDataError("the DataFrame has no rows.")
    return [SparkRows(frame, site_col, key, tuple(features)) for key in keys], features


# ------------------------------------------------------------------------------ inside a Spark task


def _in_child(func: Callable[..., Any], X: np.ndarray, args: tuple[Any, ...], write_fd: int) -> None:
    """In the forked process: run the fit, send its pickled outcome, exit without Python's clean-up."""
    try:
        try:
            payload = pickle.dumps((func(X, *args), None))
        except Exception as exc:
            payload = pickle.dumps((None, exc))
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(payload)
    finally:
        os._exit(0)


def _call_with_deadline(func: Callable[..., Any], X: np.ndarray, args: tuple[Any, ...], timeout: float) -> Any:
    """``func(X, *args)`` in a forked process, killed if it runs past ``timeout`` seconds."""
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _in_child(func, X, args, write_fd)
    os.close(write_fd)
    chunks = []
    try:
        while True:
            left = start + timeout - time.monotonic()
            ready, _, _ = select.select([read_fd], [], [], max(left, 0.0))
            if not ready:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise Deadlines(timeout).per_machine(time.monotonic() - start)
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError("its process died while running it")
    value, exc = pickle.loads(b"".join(chunks))
    if exc is not None:
        raise exc
    return value


def _outcome(func: Callable[..., Any], data: Any, args: tuple[Any, ...], machine: int, timeout: float | None) -> bytes:
    """One machine's task inside Spark: ``(result, None)`` or ``(None, exception)``, pickled; never raises."""
    _limit_this_process()
    try:
        X = materialize(data, f"machine {machine}'s data")
        value = func(X, *args) if timeout is None else _call_with_deadline(func, X, args, timeout)
        return pickle.dumps((value, None))
    except Exception as exc:
        try:
            return pickle.dumps((None, exc))
        except Exception:
            return pickle.dumps((None, RuntimeError(" ".join(f"{type(exc).__name__}: {exc}".split()))))


def _rows_of(pdf: Any, features: Sequence[str]) -> Any:
    """A machine's rows back in their input order, features only."""
    return pdf.sort_values(ROW_ID, kind="stable")[list(features)]


# ----------------------------------------------------------------------------------------- engine


class SparkEngine(Engine):
    """Spark: ``client`` (a SparkSession), else the active session.

    Machines given as :class:`SparkRows` run in one job over their DataFrame (per site or per
    partition); any other machine data run as one task per machine over ``parallelize``.
    """

    name = "spark"

    def __init__(self, workers: int, client: Any = None) -> None:
        self.workers = workers
        self.client = client

    def _session(self) -> Any:
        if self.client is not None:
            return self.client
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise ImportError("backend='spark' needs pyspark; install it with 'pip install dfmr[spark]'.") from None
        active = SparkSession.getActiveSession()
        if active is None:
            raise ValueError("backend='spark' needs a SparkSession: pass client=spark (or start one first).")
        return active

    def run(self, func: Callable[..., Any], tasks: Sequence[MachineTask], out: _Collector, deadlines: Deadlines,
            desc: str) -> None:
        session = self._session()
        timeout = deadlines.timeout
        frames: dict[tuple[int, str | None], list[int]] = {}
        others = []
        for position, task in enumerate(tasks):
            if isinstance(task.data, SparkRows):
                frames.setdefault((id(task.data.frame), task.data.site_col), []).append(position)
            else:
                others.append(position)
        jobs = [self._frame_job(func, tasks, positions, timeout) for positions in frames.values()]
        if others:
            chosen = [(p, tasks[p].machine, tasks[p].data, tasks[p].args) for p in others]
            jobs.append(
                session.sparkContext.parallelize(chosen, len(chosen))
                .map(lambda t: (t[0], _outcome(func, t[2], t[3], t[1], timeout)))
            )
        for job in jobs:
            rows = self._collect(session, job, deadlines, desc)
            if rows is None:
                out.fail_open(deadlines.total())
                return
            for position, payload in rows:
                value, exc = pickle.loads(payload)
                if exc is None:
                    out.done(position, value)
                else:
                    out.failed(position, exc)
        for position in sorted(out.open):  # a partition without rows sent nothing
            out.failed(position, InvalidDataError(
                f"partition {tasks[position].data.key} of the DataFrame holds no rows; repartition it."
            ))

    @staticmethod
    def _frame_job(func: Callable[..., Any], tasks: Sequence[MachineTask], positions: list[int],
                   timeout: float | None) -> Any:
        """The DataFrame of ``(position, outcome)`` of the machines of one Spark DataFrame."""
        first = tasks[positions[0]].data
        features, site_col = first.features, first.site_col
        lookup = {tasks[p].data.key: (p, tasks[p].machine, tasks[p].args) for p in positions}

        def outcome_frame(position: int, machine: int, args: tuple[Any, ...], pdf: Any) -> Any:
            import pandas as pd

            payload = _outcome(func, _rows_of(pdf, features), args, machine, timeout)
            return pd.DataFrame({"position": [position], "outcome": [payload]})

        if site_col is not None:
            def per_site(key: tuple[Any, ...], pdf: Any) -> Any:
                return outcome_frame(*lookup[key[0]], pdf)

            return first.frame.groupBy(site_col).applyInPandas(per_site, schema=_OUTCOME_SCHEMA)

        def per_partition(batches: Iterator[Any]) -> Iterator[Any]:
            import pandas as pd
            from pyspark import TaskContext

            parts = list(batches)
            if parts:
                yield outcome_frame(*lookup[TaskContext.get().partitionId()], pd.concat(parts))

        return first.frame.mapInPandas(per_partition, schema=_OUTCOME_SCHEMA)

    @staticmethod
    def _collect(session: Any, job: Any, deadlines: Deadlines, desc: str) -> list[tuple[int, bytes]] | None:
        """The job's ``(position, outcome)`` rows; None if the total deadline passed (the job is cancelled)."""
        context = session.sparkContext
        group = f"dfmr-{desc.replace(' ', '-')}-{uuid4().hex[:8]}"
        box: dict[str, Any] = {}

        def collect() -> None:
            context.setJobGroup(group, f"dfmr: {desc}", interruptOnCancel=True)
            try:
                rows = job.collect()
                box["rows"] = [(int(r[0]), bytes(r[1])) for r in rows]
            except Exception as exc:
                box["error"] = exc

        thread = threading.Thread(target=collect, name=group, daemon=True)
        thread.start()
        thread.join(None if deadlines.end is None else max(deadlines.end - time.monotonic(), 0.0))
        if thread.is_alive():
            context.cancelJobGroup(group)
            thread.join()
            return None
        if "error" in box:
            raise box["error"]
        return box["rows"]
