"""Where one machine's data come from: in-memory arrays, per-site files read lazily, dask collections.

A *source* is anything :func:`materialize` turns into one machine's ``(n, d)`` float64 matrix on
the worker that runs the machine's task, so that data are read where the machine's work runs and
never gathered to the client:

* a NumPy array (validated by the caller, kept as is);
* a *source*: any object with a ``load()`` method returning the machine's array, called only
  where the task runs, such as a :class:`SiteFile` (one per-site ``.npy``, ``.csv`` or Parquet
  file); :func:`site_files` lists a directory or a glob of them and checks on the client what can
  be checked from headers and metadata alone (numeric columns, width, row count where known);
* a dask chunk or partition (what :func:`dask_array_parts` and :func:`dask_dataframe_parts`
  return: row chunks of a dask array, partitions of a dask dataframe are the machines), computed
  by dask on a worker;
* a pandas DataFrame (a computed partition).

Data that cannot be used (NaN, infinity, non-numeric columns, a file that is not a numeric
table) raise :class:`InvalidDataError`, a ``ValueError``: the fit is refused with a message that
names the machine and the file or column, as for in-memory data. Anything else that goes wrong
while a machine's task runs is a run-time failure of that machine (see :mod:`dfmr.executor`).
"""

from __future__ import annotations

import csv
import errno
import glob
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .local import as_data_matrix

__all__ = [
    "DATA_SUFFIXES",
    "InvalidDataError",
    "SiteFile",
    "dask_array_parts",
    "dask_dataframe_parts",
    "is_dask_collection",
    "materialize",
    "site_files",
]

DATA_SUFFIXES = (".npy", ".csv", ".parquet", ".pq")


class InvalidDataError(ValueError):
    """A machine's data cannot be used (non-numeric, NaN or infinity, wrong shape).

    Raised on the client when metadata already show the problem, or by the worker that reads the
    data. Unlike a run-time failure of a machine it stops the fit, as invalid in-memory data do.
    """


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric_dtype(dtype: Any) -> bool:
    kind = getattr(dtype, "kind", None)
    return kind in ("f", "i", "u")


@dataclass(frozen=True)
class SiteFile:
    """One machine's data in a file, read only by :meth:`load` (on the worker).

    Parameters
    ----------
    path : str
        A ``.npy`` array (numeric dtype, 1-D or 2-D), a comma-separated ``.csv`` table (numbers
        only, at most one header line) or a Parquet file (``.parquet``/``.pq``, numeric columns
        only).
    """

    path: str

    @property
    def kind(self) -> str:
        suffix = Path(self.path).suffix.lower()
        if suffix not in DATA_SUFFIXES:
            raise InvalidDataError(
                f"{self.path}: unsupported data file type {suffix or '(none)'!r}; use .npy, .csv or .parquet files."
            )
        return {".pq": ".parquet"}.get(suffix, suffix)

    def shape(self) -> tuple[int | None, int]:
        """``(rows, columns)`` from the file's header or metadata only; rows is None for CSV.

        Raises
        ------
        InvalidDataError
            If the header or metadata already show that the data are not a numeric table
            (for CSV: the first data row, naming the offending column).
        """
        kind = self.kind
        if kind == ".npy":
            fmt = np.lib.format
            with open(self.path, "rb") as fh:
                try:
                    version = fmt.read_magic(fh)
                    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read_header(fh)
                except ValueError as exc:
                    raise InvalidDataError(f"{self.path}: not a .npy array ({exc}).") from None
            if not _numeric_dtype(dtype):
                raise InvalidDataError(f"{self.path}: dtype {dtype} is not numeric.")
            if len(shape) not in (1, 2):
                raise InvalidDataError(f"{self.path}: array of shape {shape}; expected (n, d) or (n,).")
            return int(shape[0]), int(shape[1]) if len(shape) == 2 else 1
        if kind == ".parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(self.path)
            for field in schema:
                if not _numeric_arrow(field.type):
                    raise InvalidDataError(
                        f"{self.path}: column {field.name!r} has type {field.type}, not numeric; "
                        "drop or encode it before fitting."
                    )
            return int(pq.read_metadata(self.path).num_rows), len(schema)
        header, first = self._csv_head()
        self._check_csv_row(header, first, 1 + (header is not None))
        return None, len(first)

    def _csv_head(self) -> tuple[list[str] | None, list[str]]:
        """The header (None when the first line is numeric) and the first data row of a CSV file."""
        with open(self.path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            first = next(reader, None)
            if first is None:
                raise InvalidDataError(f"{self.path}: the file is empty.")
            if all(_is_number(cell) for cell in first):
                return None, first
            row = next(reader, None)
            if row is None:
                raise InvalidDataError(f"{self.path}: only a header line, no data rows.")
            return first, row

    def _check_csv_row(self, header: list[str] | None, row: list[str], line: int) -> None:
        width = len(header) if header is not None else len(row)
        if len(row) != width:
            raise InvalidDataError(f"{self.path}: line {line} has {len(row)} fields, expected {width}.")
        for j, cell in enumerate(row):
            if not _is_number(cell):
                name = f"{header[j]!r} (column {j + 1})" if header is not None else f"{j + 1}"
                raise InvalidDataError(
                    f"{self.path}: column {name} holds non-numeric values (line {line}: {cell!r}); "
                    "drop or encode it before fitting."
                )

    def load(self) -> np.ndarray:
        """The file's data as an ``(n, d)`` float64 matrix.

        Raises
        ------
        InvalidDataError
            If the file is not a numeric table or holds NaN or infinity; the message names the file
            (and, for CSV and Parquet, the column).
        """
        kind = self.kind
        if kind == ".npy":
            try:
                data = np.load(self.path, allow_pickle=False, mmap_mode="r")
            except ValueError as exc:
                raise InvalidDataError(f"{self.path}: not a numeric .npy array ({exc}).") from None
            return self._matrix(data)
        if kind == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(self.path)
            for field in table.schema:
                if not _numeric_arrow(field.type):
                    raise InvalidDataError(f"{self.path}: column {field.name!r} has type {field.type}, not numeric.")
            if table.num_columns == 0:
                raise InvalidDataError(f"{self.path}: no columns.")
            columns = [col.to_numpy(zero_copy_only=False).astype(np.float64) for col in table.columns]
            return self._matrix(np.column_stack(columns), table.column_names)
        header, _ = self._csv_head()
        try:
            data = np.loadtxt(self.path, delimiter=",", ndmin=2, skiprows=int(header is not None))
        except ValueError:
            self._locate_csv_error(header)
            raise
        return self._matrix(data, header)

    def _locate_csv_error(self, header: list[str] | None) -> None:
        """Raise an InvalidDataError naming the first bad line and column of a CSV file numpy refused."""
        with open(self.path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            if header is not None:
                next(reader)
            for line, row in enumerate(reader, start=1 + (header is not None)):
                self._check_csv_row(header if header is not None else None, row, line)
        raise InvalidDataError(f"{self.path}: not a comma-separated numeric table.")

    def _matrix(self, data: np.ndarray, columns: Sequence[str] | None = None) -> np.ndarray:
        if columns is not None and data.ndim == 2 and data.shape[1] == len(columns):
            bad = ~np.isfinite(data).all(axis=0)
            if bad.any():
                name = columns[int(np.argmax(bad))]
                raise InvalidDataError(
                    f"{self.path}: column {name!r} contains NaN, infinity or missing values; "
                    "drop or impute them before fitting."
                )
        return _as_matrix(data, self.path)


def _numeric_arrow(arrow_type: Any) -> bool:
    import pyarrow.types as pt

    return bool(pt.is_integer(arrow_type) or pt.is_floating(arrow_type))


def _as_matrix(data: Any, name: str) -> np.ndarray:
    """``data`` validated as an (n, d) float64 matrix; no copy when it already is a finite C-ordered one."""
    if (
        type(data) is np.ndarray
        and data.dtype == np.float64
        and data.ndim == 2
        and data.shape[1] > 0
        and data.flags.c_contiguous
        and np.isfinite(data).all()
    ):
        return data
    try:
        return as_data_matrix(data, name)
    except ValueError as exc:
        raise InvalidDataError(str(exc)) from None


def site_files(location: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[SiteFile]:
    """The per-site data files of a directory, a glob pattern or a list of paths: one machine each.

    Only headers and metadata are read here (on the client): every file must hold a numeric table
    and all must have the same number of columns.

    Parameters
    ----------
    location : path, glob pattern or sequence of paths
        A directory (its ``.npy``, ``.csv``, ``.parquet`` and ``.pq`` files, sorted by name), a
        pattern such as ``"sites/*.parquet"`` (sorted matches), or the files themselves.

    Returns
    -------
    list of SiteFile
        Machine ``i`` is file ``i``.

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    InvalidDataError
        If a directory or pattern holds no data file, a file is not a numeric table (naming the
        file and column), or the widths differ.
    """
    if isinstance(location, (str, os.PathLike)):
        text = os.fspath(location)
        if os.path.isdir(text):
            paths = sorted(str(p) for p in Path(text).iterdir() if p.suffix.lower() in DATA_SUFFIXES and p.is_file())
        elif glob.has_magic(text):
            paths = sorted(glob.glob(text))
        else:
            paths = [text]
        if not paths:
            raise InvalidDataError(f"{text}: no .npy, .csv or .parquet data files found.")
    else:
        paths = [os.fspath(p) for p in location]
    files = []
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(errno.ENOENT, "no such data file", p)
        files.append(SiteFile(p))
    widths = {f.path: f.shape()[1] for f in files}
    if len(set(widths.values())) > 1:
        listed = ", ".join(f"{Path(p).name}: d = {d}" for p, d in widths.items())
        raise InvalidDataError(f"the site files differ in the number of columns ({listed}); all must share one d.")
    return files


def is_dask_collection(obj: Any) -> bool:
    """True for a dask array, dataframe or delayed object (without importing dask when absent)."""
    return hasattr(obj, "__dask_graph__") and callable(obj.__dask_graph__)


def dask_array_parts(X: Any) -> list[Any]:
    """The row chunks of a 2-D (or 1-D) dask array as delayed objects: one machine each.

    The columns are merged into one chunk (a no-op when they already are), so each row chunk is
    one machine's ``(n_i, d)`` block; nothing is computed.

    Raises
    ------
    InvalidDataError
        If the array is not 1-D or 2-D, its dtype is not numeric, or a row chunk is empty.
    """
    if X.ndim not in (1, 2):
        raise InvalidDataError(f"the dask array must have shape (n, d) or (n,), got {X.ndim} dimensions.")
    if not _numeric_dtype(X.dtype):
        raise InvalidDataError(f"the dask array has dtype {X.dtype}, not a numeric type.")
    if X.ndim == 2:
        X = X.rechunk({1: -1})
    rows = X.chunks[0]
    if any(isinstance(c, float) and math.isnan(c) for c in rows):
        raise InvalidDataError("the dask array has unknown chunk sizes; call X.compute_chunk_sizes() first.")
    if 0 in rows:
        raise InvalidDataError(f"the dask array has an empty row chunk (chunk {rows.index(0)}); rechunk it.")
    return list(X.to_delayed().ravel())


def dask_dataframe_parts(df: Any) -> list[Any]:
    """The partitions of a dask dataframe as delayed pandas DataFrames: one machine each.

    Raises
    ------
    InvalidDataError
        If a column is not numeric (named, from the dataframe's metadata: nothing is computed).
    """
    for name, dtype in df.dtypes.items():
        if not _numeric_dtype(dtype):
            raise InvalidDataError(f"column {name!r} has dtype {dtype}, not numeric; drop or encode it before fitting.")
    if len(df.columns) == 0:
        raise InvalidDataError("the dask dataframe has no columns.")
    return list(df.to_delayed())


def materialize(data: Any, name: str = "X") -> np.ndarray:
    """One machine's data as an ``(n, d)`` float64 matrix, where the machine's task runs.

    Parameters
    ----------
    data : ndarray, source, pandas.DataFrame or dask object
        An array is checked (and returned without a copy when it already is a finite float64
        matrix); a source (an object with a
        ``load()`` method returning an array, such as :class:`SiteFile`) is loaded; a
        DataFrame is converted column by column; a dask object (a chunk on a non-dask backend) is
        computed in this process first.
    name : str
        How error messages call the data.

    Raises
    ------
    InvalidDataError
        If the data are not a finite numeric table.
    """
    if isinstance(data, SiteFile):
        return data.load()
    if callable(getattr(data, "load", None)):
        return _as_matrix(data.load(), name)
    if is_dask_collection(data):
        import dask

        (data,) = dask.compute(data, scheduler="sync")
    if hasattr(data, "dtypes") and hasattr(data, "columns"):  # a pandas DataFrame (a partition)
        for column, dtype in data.dtypes.items():
            if not _numeric_dtype(dtype):
                raise InvalidDataError(f"{name}: column {column!r} has dtype {dtype}, not numeric.")
        X = _as_matrix(data.to_numpy(dtype=np.float64, na_value=np.nan), name)
        return X
    return _as_matrix(data, name)
