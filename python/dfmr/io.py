"""Reading local estimates from untrusted files, and writing estimates and aggregation results.

Local estimates arrive from machines that may be faulty or Byzantine, so a file is treated as
hostile bytes: it is read whole under a size limit, parsed in memory (``.npz`` archives member by
member, with every ``.npy`` header checked before any array is allocated, never unpickling), and
validated by :class:`~dfmr.params.GaussianMixtureParams`. A file that fails any step is skipped
with a warning naming it and the reason, or rejected with :class:`~dfmr.params.InvalidMixtureError`.

Accepted formats
----------------
``.json``
    One mixture in the format of :meth:`GaussianMixtureParams.save
    <dfmr.params.GaussianMixtureParams.save>` (versioned: version 3 files name the covariance
    model, older ones hold full-covariance mixtures).
``.npz``
    Arrays ``weights``, ``means``, ``covariances`` holding either one mixture (shapes (K,),
    (K, d), (K, d, d)) or m stacked mixtures (shapes (m, K), (m, K, d), (m, K, d, d), the layout
    of the shipped fixture), which are named ``file[0]``, ..., ``file[m-1]``. An optional array
    ``n_samples`` (shape () or (m,), positive integers) gives the sample sizes; files without it
    load as before, with ``n_samples`` None. An optional string array ``covariance_type`` (shape
    (), for every mixture of the file, or (m,)) names the covariance model (scikit-learn's or
    mclust's name, :mod:`dfmr.covariance`); files without it hold full-covariance mixtures.

A malformed model name, or covariances outside the model a file names, make the file (entry)
invalid like any other malformed field, with a ``ValueError`` naming it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Union

import numpy as np

from ._validation import reject_json_constant
from .params import GaussianMixtureParams, InvalidMixtureError

if TYPE_CHECKING:
    from .aggregate import AggregationResult

__all__ = [
    "MAX_FILE_BYTES",
    "LoadedMixtures",
    "SkippedMixtureWarning",
    "load_mixtures",
    "result_to_dict",
    "save_mixtures",
    "save_result",
]

PathLike = Union[str, os.PathLike]

MAX_FILE_BYTES = 256 * 2**20
"""Default limit on the size of one file (and on the uncompressed arrays of one ``.npz``)."""

SUFFIXES = (".json", ".npz")
_KEYS = ("weights", "means", "covariances")
_MACHINE_FILE = re.compile(r"machine_\d+\.json")


class SkippedMixtureWarning(UserWarning):
    """Issued by :func:`load_mixtures` for every file or stacked entry it skips."""


class LoadedMixtures(NamedTuple):
    """What :func:`load_mixtures` read.

    Attributes
    ----------
    mixtures : list of GaussianMixtureParams
        The valid local estimates, in file order (stacked entries in their stored order).
    names : list of str
        One name per mixture: the file name, or ``file[i]`` for entry i of a stacked ``.npz``.
    skipped : list of (str, str)
        ``(name, reason)`` for every file or entry that was not loaded.
    """

    mixtures: list[GaussianMixtureParams]
    names: list[str]
    skipped: list[tuple[str, str]]


def _expand(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """Directories become their ``*.json`` and ``*.npz`` files (sorted by name); files stay as given."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            members = [p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file()]
            files.extend(sorted(members, key=lambda p: p.name))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", os.fspath(path))
    return files


def _display_names(files: list[Path]) -> list[str]:
    """File names where they are unique, full paths where two inputs share a file name."""
    counts = Counter(p.name for p in files)
    return [p.name if counts[p.name] == 1 else os.fspath(p) for p in files]


def _read_capped(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidMixtureError(f"file is {size} bytes, above the limit of {max_bytes} bytes.")
    with open(path, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise InvalidMixtureError(f"file grew beyond the limit of {max_bytes} bytes while being read.")
    return raw


def _parse_json(raw: bytes, normalize: bool) -> GaussianMixtureParams:
    data = json.loads(raw.decode("utf-8"), parse_constant=reject_json_constant)
    return GaussianMixtureParams.from_dict(data, normalize=normalize)


def _read_npy(data: bytes, key: str) -> np.ndarray:
    """One ``.npy`` member, its header checked before ``numpy`` allocates the announced shape."""
    fh = BytesIO(data)
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise InvalidMixtureError(f"{key}: unsupported .npy format version {version}.")
    if key == "covariance_type":
        # Model names: unicode strings only (never objects, which would need unpickling).
        if dtype.kind != "U":
            raise InvalidMixtureError(f"{key}: expected a string (one model for the file) or one string per "
                                      f"mixture, got dtype {dtype}.")
    elif dtype.kind not in "fiu":
        raise InvalidMixtureError(f"{key}: dtype {dtype} is not a real number type.")
    announced = math.prod(shape) * dtype.itemsize
    if announced > len(data) - fh.tell():
        raise InvalidMixtureError(f"{key}: header announces shape {shape} but the data is truncated.")
    fh.seek(0)
    return np.lib.format.read_array(fh, allow_pickle=False)


def _read_npz(raw: bytes, max_bytes: int) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    budget = max_bytes
    with zipfile.ZipFile(BytesIO(raw)) as archive:
        members = {name[: -len(".npy")]: name for name in archive.namelist() if name.endswith(".npy")}
        missing = [key for key in _KEYS if key not in members]
        if missing:
            raise InvalidMixtureError(
                f"missing array(s) {', '.join(missing)}; expected weights, means and covariances."
            )
        for key in _KEYS:
            info = archive.getinfo(members[key])
            if info.file_size > budget:
                raise InvalidMixtureError(f"{key}: uncompressed arrays exceed the limit of {max_bytes} bytes.")
            budget -= info.file_size
            with archive.open(info) as fh:
                arrays[key] = _read_npy(fh.read(info.file_size), key)
        # Optional: sample sizes (read by dfmr.robust_dfmr) and the covariance model.
        for key in ("n_samples", "covariance_type"):
            if key not in members:
                continue
            info = archive.getinfo(members[key])
            if info.file_size > budget:
                raise InvalidMixtureError(f"{key}: uncompressed arrays exceed the limit of {max_bytes} bytes.")
            budget -= info.file_size
            with archive.open(info) as fh:
                arrays[key] = _read_npy(fh.read(info.file_size), key)
    return arrays


def _parse_npz(
    raw: bytes, normalize: bool, max_bytes: int
) -> list[tuple[str, GaussianMixtureParams | InvalidMixtureError]]:
    """``[("", mixture)]`` for one mixture, ``[("[i]", mixture or error), ...]`` for a stacked file."""
    arrays = _read_npz(raw, max_bytes)
    w, mu, cov = (arrays[key] for key in _KEYS)
    sizes = arrays.get("n_samples")
    if sizes is not None and (sizes.dtype.kind not in "iuf" or sizes.ndim != (0 if w.ndim <= 1 else 1)
                              or (w.ndim > 1 and sizes.shape[0] != w.shape[0])):
        raise InvalidMixtureError(
            f"n_samples: expected one sample size per mixture, got dtype {sizes.dtype} and shape {sizes.shape}."
        )
    models = arrays.get("covariance_type")
    if models is not None and (models.dtype.kind != "U" or models.ndim > (0 if w.ndim <= 1 else 1)
                               or (models.ndim == 1 and models.shape[0] != w.shape[0])):
        raise InvalidMixtureError(
            "covariance_type: expected a string (one model for the file) or one string per mixture, got dtype "
            f"{models.dtype} and shape {models.shape}."
        )

    def model(i: int | None) -> str:
        if models is None:
            return "full"
        return str(models.item() if models.ndim == 0 else models[i])

    if w.ndim <= 1:
        n = None if sizes is None else sizes.item()
        return [("", GaussianMixtureParams(w, mu, cov, normalize=normalize, n_samples=n, covariance_type=model(None)))]
    if w.ndim != 2 or mu.ndim != 3 or cov.ndim != 4 or not (w.shape[0] == mu.shape[0] == cov.shape[0]):
        raise InvalidMixtureError(
            "expected one mixture (weights (K,), means (K, d), covariances (K, d, d)) or m stacked "
            f"mixtures ((m, K), (m, K, d), (m, K, d, d)); got shapes {w.shape}, {mu.shape}, {cov.shape}."
        )
    if w.shape[0] == 0:
        raise InvalidMixtureError("the stacked arrays hold no mixtures (m = 0).")
    entries: list[tuple[str, GaussianMixtureParams | InvalidMixtureError]] = []
    for i in range(w.shape[0]):
        try:
            n = None if sizes is None else sizes[i].item()
            entries.append((f"[{i}]", GaussianMixtureParams(w[i], mu[i], cov[i], normalize=normalize, n_samples=n,
                                                            covariance_type=model(i))))
        except InvalidMixtureError as exc:
            entries.append((f"[{i}]", exc))
    return entries


def _parse(
    raw: bytes, suffix: str, normalize: bool, max_bytes: int
) -> list[tuple[str, GaussianMixtureParams | InvalidMixtureError]]:
    """The entries of one file; raises :class:`InvalidMixtureError` for anything unreadable."""
    if suffix not in SUFFIXES:
        raise InvalidMixtureError(f"unsupported file type {suffix or '(none)'!r}; expected .json or .npz.")
    kind = "JSON mixture file" if suffix == ".json" else ".npz archive"
    try:
        if suffix == ".json":
            return [("", _parse_json(raw, normalize))]
        return _parse_npz(raw, normalize, max_bytes)
    except InvalidMixtureError:
        raise
    except Exception as exc:
        # Hostile bytes reach json, zipfile, zlib/bz2/lzma and numpy's header parser, which between
        # them raise a dozen exception types (ValueError, BadZipFile, EOFError, OverflowError,
        # zlib.error and others). Every one of them means "not a mixture file".
        raise InvalidMixtureError(f"not a valid {kind} ({type(exc).__name__}: {exc}).") from None


def load_mixtures(
    paths: PathLike | Sequence[PathLike],
    *,
    normalize: bool = False,
    on_error: str = "skip",
    max_bytes: int = MAX_FILE_BYTES,
) -> LoadedMixtures:
    """Read local estimates from files that may be corrupt or malicious.

    Parameters
    ----------
    paths : path or sequence of paths
        A directory (all its ``*.json`` and ``*.npz`` files, sorted by name), a file, or a
        sequence of files and directories.
    normalize : bool, default False
        Passed to :class:`~dfmr.params.GaussianMixtureParams`: rescale weights whose sum is off
        by at most ``LIMITS.normalize_atol``.
    on_error : {"skip", "raise"}, default "skip"
        ``"skip"``: leave out every file or stacked entry that is unreadable, malformed or
        invalid, issuing a :class:`SkippedMixtureWarning` that names it and says why.
        ``"raise"``: raise :class:`~dfmr.params.InvalidMixtureError` at the first one.
    max_bytes : int, default MAX_FILE_BYTES
        Largest accepted file, and largest total uncompressed size of the arrays of one ``.npz``.

    Returns
    -------
    LoadedMixtures
        ``(mixtures, names, skipped)``; unpacks as a tuple.

    Raises
    ------
    FileNotFoundError
        If a path given does not exist.
    InvalidMixtureError
        With ``on_error="raise"``, for the first invalid file or entry.
    OSError
        With ``on_error="raise"``, if an existing file cannot be read.
    ValueError
        If ``on_error`` is not ``"skip"`` or ``"raise"``.

    Notes
    -----
    All mixtures must share one dimension d. Mixtures whose dimension differs from the most
    common one (ties: the dimension of the first mixture read) are treated as invalid.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}.")
    files = _expand(paths)
    loaded: list[tuple[str, GaussianMixtureParams]] = []
    skipped: list[tuple[str, str]] = []

    def reject(name: str, reason: str) -> None:
        if on_error == "raise":
            raise InvalidMixtureError(f"{name}: {reason}")
        warnings.warn(f"skipped {name}: {reason}", SkippedMixtureWarning, stacklevel=3)
        skipped.append((name, reason))

    for path, name in zip(files, _display_names(files)):
        try:
            raw = _read_capped(path, max_bytes)
            entries = _parse(raw, path.suffix.lower(), normalize, max_bytes)
        except InvalidMixtureError as exc:
            reject(name, str(exc))
            continue
        except OSError as exc:
            if on_error == "raise":
                raise
            reject(name, f"cannot read the file ({exc.strerror or exc}).")
            continue
        for suffix, entry in entries:
            if isinstance(entry, InvalidMixtureError):
                reject(name + suffix, str(entry))
            else:
                loaded.append((name + suffix, entry))

    if loaded:
        dims = Counter(mix.dim for _, mix in loaded)
        top = max(dims.values())
        majority = next(mix.dim for _, mix in loaded if dims[mix.dim] == top)
        kept = []
        for name, mix in loaded:
            if mix.dim == majority:
                kept.append((name, mix))
            else:
                reject(name, f"dimension d = {mix.dim} differs from d = {majority} of the other estimates.")
        loaded = kept
    return LoadedMixtures([mix for _, mix in loaded], [name for name, _ in loaded], skipped)


def save_mixtures(
    mixtures: Sequence[GaussianMixtureParams], directory: PathLike, *, overwrite: bool = False
) -> list[Path]:
    """Write local estimates as ``machine_000.json``, ``machine_001.json``, ... in ``directory``.

    Parameters
    ----------
    mixtures : sequence of GaussianMixtureParams
        The estimates, written in order.
    directory : path
        Created if missing.
    overwrite : bool, default False
        Replace the ``machine_NNN.json`` files already in ``directory`` (all of them, so that the
        directory holds exactly ``mixtures``). Without it such files are an error.

    Returns
    -------
    list of pathlib.Path
        The files written; :func:`load_mixtures` on ``directory`` reads them back in order.

    Raises
    ------
    TypeError
        If an element is not a :class:`~dfmr.params.GaussianMixtureParams`.
    FileExistsError
        If ``directory`` already holds ``machine_NNN.json`` files and ``overwrite`` is False.
    """
    mixtures = list(mixtures)
    for i, mix in enumerate(mixtures):
        if not isinstance(mix, GaussianMixtureParams):
            raise TypeError(f"mixtures[{i}] must be a GaussianMixtureParams, got {type(mix).__name__}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    existing = [p for p in directory.iterdir() if _MACHINE_FILE.fullmatch(p.name)]
    if existing and not overwrite:
        raise FileExistsError(
            errno.EEXIST,
            f"{len(existing)} machine_NNN.json file(s) already present; pass overwrite=True to replace them",
            os.fspath(directory),
        )
    for p in existing:
        p.unlink()
    digits = max(3, len(str(len(mixtures) - 1)))
    paths = []
    for i, mix in enumerate(mixtures):
        path = directory / f"machine_{i:0{digits}d}.json"
        mix.save(path)
        paths.append(path)
    return paths


def result_to_dict(result: AggregationResult, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Plain-Python form of an aggregation result, the JSON schema of :func:`save_result`."""
    decision = result.filter
    if names is not None and len(names) != result.n_machines:
        raise ValueError(f"names: expected {result.n_machines} names (one per machine), got {len(names)}.")
    return {
        "format": "dfmr.AggregationResult",
        "version": 1,
        "method": result.method,
        "n_machines": int(result.n_machines),
        "names": None if names is None else [str(n) for n in names],
        "retained": [int(i) for i in result.retained],
        "center": None if result.center is None else int(result.center),
        "distances": None if result.distances is None else np.asarray(result.distances).tolist(),
        "threshold": None if decision is None else float(decision.threshold),
        "radius": None if decision is None else float(decision.radius),
        "cutoff": None if decision is None else float(decision.cutoff),
        "objective": None if result.objective is None else float(result.objective),
        "n_iter": int(result.n_iter),
        "converged": bool(result.converged),
        "n_components_requested": result.n_components_requested,
        "mixture": result.mixture.to_dict(),
        "screening": _screening_to_dict(getattr(result, "screening", None)),
        # Free site proportions (dfmr.sites): one row per machine, null for the sites not kept.
        "site_weights": None if result.site_weights is None else [
            None if np.isnan(row).any() else row.tolist() for row in np.asarray(result.site_weights)],
    }


def _screening_to_dict(screening: Any) -> dict[str, Any] | None:
    """robust_dfmr's decisions (machine, component, slot, rule, statistic, cut-off), or None."""
    if screening is None:
        return None

    def number(x: float) -> float | None:  # JSON has no inf
        return float(x) if np.isfinite(x) else None

    votes = getattr(screening, "votes", None)
    return {
        "level": float(screening.level),
        "n_samples_known": bool(screening.n_samples_known),
        # Where the tests' sizes came from ("server", "claimed" or "unknown") and, without server
        # sizes, the size the votes calibrate (null with server sizes).
        "size_source": str(screening.size_source),
        "calibrated_n": number(screening.calibrated_n),
        # Each machine's share of a vote (1 / the size of its group of near-identical estimates, 0 when
        # dropped in hygiene) and the groups of machines that share one.
        "votes": None if votes is None else [float(v) for v in votes],
        "vote_groups": [[int(i) for i in group] for group in screening.vote_groups],
        # The consistency check against the machines inside DFMR's radius ("off", "no contrast", "passed" or
        # "rejected": then the aggregate is over those machines), its statistic, adjusted p-value and the
        # machines outside the radius.
        "consistency": str(getattr(screening, "consistency", "off")),
        "consistency_statistic": number(getattr(screening, "consistency_statistic", math.nan)),
        "consistency_p_value": number(getattr(screening, "consistency_p_value", math.nan)),
        "consistency_machines": [int(i) for i in getattr(screening, "consistency_machines", ())],
        "decisions": [
            {"machine": int(x.machine), "component": x.component, "slot": x.slot, "rule": x.rule,
             "statistic": number(x.statistic), "cutoff": number(x.cutoff)}
            for x in screening.decisions
        ],
        "kept": np.asarray(screening.kept, dtype=bool).tolist(),
        "notes": list(screening.notes),
    }


def save_result(result: AggregationResult, path: PathLike, *, names: Sequence[str] | None = None) -> None:
    """Write an aggregation result as JSON.

    Parameters
    ----------
    result : AggregationResult
        Output of :func:`dfmr.dfmr`, :func:`dfmr.mr`, :func:`dfmr.coat` or :func:`dfmr.tkb`.
    path : path
        The JSON file to write.
    names : sequence of str, optional
        One name per machine (e.g. ``load_mixtures(...).names``), stored so that the machine
        indices in the file can be traced back to their sources.

    Raises
    ------
    ValueError
        If ``names`` does not hold one name per machine.

    Notes
    -----
    The file holds ``method``, ``n_machines``, ``names`` (or null), ``retained``, ``center``, ``distances``
    (m x m or null), ``threshold``, ``radius``, ``cutoff`` (DFMR, else null), ``objective``,
    ``n_iter``, ``converged``, ``n_components_requested``, ``mixture`` (the
    :meth:`~dfmr.params.GaussianMixtureParams.to_dict` form), ``screening`` (robust_dfmr's, else null:
    ``level``, ``n_samples_known``, ``size_source``, ``calibrated_n``, ``votes`` (each machine's share of
    a vote), ``vote_groups`` (the machines sharing one), ``consistency``, ``consistency_statistic``,
    ``consistency_p_value``, ``consistency_machines`` (the check against DFMR's machines), ``decisions``,
    ``kept``, ``notes``) and
    ``site_weights``. Floats round-trip exactly.
    """
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result_to_dict(result, names), fh, allow_nan=False)
