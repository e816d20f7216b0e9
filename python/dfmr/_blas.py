"""One BLAS thread where local fits run, without changing the process-wide setting under other threads.

Why not ``threadpoolctl.threadpool_limits(limits=1)``: it changes a process-wide setting and, on
exit, restores what it saw on entry, so two overlapping fits in two threads left BLAS at one
thread for the rest of the process. threadpoolctl >= 3.6 also lets only one "controlling" thread
set OpenBLAS's limit (others silently do nothing), so a fit started from a second thread ran
with several BLAS threads and gave results different in the last bits from a lone fit. (OpenBLAS's
``openblas_set_num_threads_local`` does not help: with OpenBLAS's own threads it sets the
process-wide value too.)

What :func:`single_threaded_blas` does instead, in the thread that runs the local fit (the
caller's thread for the serial backend, each pool thread for the threads backend):

- OpenBLAS on OpenMP, and MKL: their per-thread calls (``omp_set_num_threads`` in the calling
  thread, ``MKL_Set_Num_Threads_Local``), undone on exit. Other threads see no change.
- OpenBLAS with its own threads (the build in the numpy and scipy wheels), BLIS and the rest have
  only a process-wide setting. Fits share one reference-counted limit under a lock: the first fit
  to enter saves the original limits and sets one thread, the last one to leave restores them,
  whatever the order of the exits; the calls bypass threadpoolctl's controlling-thread rule so
  that they take effect from any thread.

What other threads see with the process-wide setting: every BLAS call of the process uses one
thread while at least one in-process fit runs, and the original limits come back when the last
overlapping fit ends (a limit another thread sets in that window is overwritten by the restore).

Worker processes (the ``"processes"`` backend) set one thread for their whole life at start-up
and never touch the parent's setting.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Callable

from threadpoolctl import ThreadpoolController

__all__ = ["limit_worker_threads", "single_threaded_blas"]

# Read by OpenBLAS, MKL, BLIS and OpenMP runtimes that initialise after the worker starts.
_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")

_shared_lock = threading.Lock()
_shared_users = 0
_shared_original: list[tuple[Any, int]] = []


def _symbol(dynlib: ctypes.CDLL, name: str) -> Any:
    return getattr(dynlib, name, None)


def _thread_local_setter(lib: Any) -> Callable[[int], int] | None:
    """A function setting ``lib``'s thread count for the calling thread only and returning the previous one."""
    if lib.internal_api == "openblas" and getattr(lib, "threading_layer", None) == "openmp":
        get_max = _symbol(lib.dynlib, "omp_get_max_threads")
        set_omp = _symbol(lib.dynlib, "omp_set_num_threads")
        if get_max is None or set_omp is None:
            return None

        def set_openmp(n: int) -> int:
            previous = get_max()
            set_omp(n)
            return previous

        return set_openmp
    if lib.internal_api == "mkl":
        return _symbol(lib.dynlib, "MKL_Set_Num_Threads_Local")
    return None


@contextmanager
def _thread_limit(setter: Callable[[int], int]) -> Iterator[None]:
    previous = setter(1)
    try:
        yield
    finally:
        setter(previous)


@contextmanager
def _shared_limit(libs: list[Any]) -> Iterator[None]:
    """Process-wide limit of one thread for ``libs``, reference-counted across overlapping users."""
    global _shared_users
    with _shared_lock:
        if _shared_users == 0:
            _shared_original[:] = [(lib, lib.num_threads) for lib in libs]
            _set_all([(lib, 1) for lib in libs])
        _shared_users += 1
    try:
        yield
    finally:
        with _shared_lock:
            _shared_users -= 1
            if _shared_users == 0:
                _set_all(_shared_original)
                _shared_original.clear()


def _set_all(settings: list[tuple[Any, int]]) -> None:
    for lib, n in settings:
        clear = getattr(lib, "clear_controlling_thread", None)
        if clear is not None:  # threadpoolctl's OpenBLAS: let this thread's call take effect
            clear(force=True)
        lib.set_num_threads(n)
        if clear is not None:
            clear(force=True)


@contextmanager
def single_threaded_blas(controller: ThreadpoolController | None = None) -> Iterator[None]:
    """One BLAS thread for the local fits run by the calling thread (see the module docstring).

    Besides avoiding oversubscription when local fits run in a thread pool, one thread makes every
    backend do the same floating-point operations in the same order, hence give identical results.

    Parameters
    ----------
    controller : threadpoolctl.ThreadpoolController, optional
        The loaded libraries; pass one to skip the scan of the process's libraries (~10 ms)
        when entering once per task.
    """
    controller = ThreadpoolController() if controller is None else controller
    libs = [lib for lib in controller.lib_controllers if lib.user_api == "blas"]
    shared = []
    with ExitStack() as stack:
        for lib in libs:
            setter = _thread_local_setter(lib)
            if setter is None:
                shared.append(lib)
            else:
                stack.enter_context(_thread_limit(setter))
        if shared:
            stack.enter_context(_shared_limit(shared))
        yield


def limit_worker_threads() -> None:
    """Initializer of worker processes: one BLAS/OpenMP thread each, so workers do not oversubscribe."""
    for var in _THREAD_ENV_VARS:
        os.environ[var] = "1"
    ThreadpoolController().limit(limits=1)
