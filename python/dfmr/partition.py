"""Splitting one data set across machines."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._validation import check_int

__all__ = ["SplitRows", "split", "split_to_file"]


def _pieces(n: int, n_machines: int, random_state: int | np.random.Generator | None) -> list[np.ndarray]:
    """The row indices of every machine: a seeded shuffle dealt out as evenly as possible."""
    n_machines = check_int(n_machines, "n_machines", 1, n)
    return np.array_split(np.random.default_rng(random_state).permutation(n), n_machines)


def _check_2d(X: ArrayLike) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of shape (n, d), got shape {X.shape}.")
    return X


def split(X: ArrayLike, n_machines: int, random_state: int | np.random.Generator | None = None) -> list[np.ndarray]:
    """Shuffle the rows of ``X`` and split them across machines as evenly as possible.

    The pieces are the only copy made: an array ``X`` is not copied before being dealt out.

    Parameters
    ----------
    X : array_like, shape (n, d)
        Data, one observation per row.
    n_machines : int
        Number of machines, between 1 and ``n``.
    random_state : int, numpy.random.Generator or None, default None
        Seed or generator for the shuffle.

    Returns
    -------
    list of numpy.ndarray
        ``n_machines`` arrays of shape ``(n_i, d)``; the ``n_i`` differ by at most one.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D or ``n_machines`` is not an integer in ``[1, n]``.
    """
    X = _check_2d(X)
    return [X[idx] for idx in _pieces(X.shape[0], n_machines, random_state)]


@dataclass(frozen=True)
class SplitRows:
    """One machine's rows in the file written by :func:`split_to_file`, read where its task runs.

    Pickles as a few numbers and a path, so a process-pool task ships no data; :meth:`load`
    maps the rows read-only (the operating system's page cache is shared by all processes).

    Parameters
    ----------
    path : str
        The file of the shuffled rows (raw C-ordered float64).
    start : int
        Index of the machine's first row in the file.
    rows, cols : int
        The machine's data shape.
    """

    path: str
    start: int
    rows: int
    cols: int

    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``, known without reading the file."""
        return self.rows, self.cols

    def load(self) -> np.ndarray:
        """The machine's ``(rows, cols)`` float64 rows, a read-only view of the memory-mapped file."""
        mapped = np.memmap(self.path, dtype=np.float64, mode="r", offset=self.start * self.cols * 8,
                           shape=(self.rows, self.cols))
        return mapped.view(np.ndarray)


# Rows written per block: about 8 MiB, the client's only temporary while it writes the split.
_WRITE_BYTES = 8 << 20


@contextlib.contextmanager
def split_to_file(
    X: ArrayLike, n_machines: int, random_state: int | np.random.Generator | None = None
) -> Iterator[list[SplitRows]]:
    """:func:`split`, written to a temporary file instead of memory; removed when the block exits.

    The same rows in the same order as :func:`split` with the same arguments, so a fit on either
    gives bit-identical results. The client writes the shuffled rows block by block (about 8 MiB
    of temporary memory) into a file of the temporary directory (``TMPDIR``); it never maps it, so
    the split's copy is held by the operating system's page cache (evictable to disk), not by the
    client, and each machine's task maps only its own rows (:class:`SplitRows`). The file is
    removed however the block is left (an exception, ``KeyboardInterrupt``, a broken process pool);
    only a client killed outright (SIGKILL) leaves it behind, as ``dfmr-split-*.f64``.

    Parameters
    ----------
    X : array_like, shape (n, d)
        Data, one observation per row; float64 data (C or Fortran order) are read without a copy.
    n_machines : int
        Number of machines, between 1 and ``n``.
    random_state : int, numpy.random.Generator or None, default None
        Seed or generator for the shuffle (as in :func:`split`).

    Yields
    ------
    list of SplitRows
        One per machine, in machine order.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D or ``n_machines`` is not an integer in ``[1, n]``.
    OSError
        If the temporary file cannot be written (e.g. the disk is full); nothing is left behind.
    """
    X = np.asarray(_check_2d(X), dtype=np.float64)  # no copy of float64 data, in either memory order
    n, d = X.shape
    pieces = _pieces(n, n_machines, random_state)
    fd, path = tempfile.mkstemp(prefix="dfmr-split-", suffix=".f64")
    try:
        step = max(1, _WRITE_BYTES // (8 * d))
        with os.fdopen(fd, "wb") as fh:
            for idx in pieces:
                for first in range(0, idx.size, step):
                    fh.write(np.ascontiguousarray(X[idx[first : first + step]]).data)
        starts = np.cumsum([0] + [idx.size for idx in pieces])
        yield [SplitRows(path, int(start), int(idx.size), d) for start, idx in zip(starts, pieces)]
    finally:
        os.unlink(path)
