"""The paper's simulation study: repetitions of local fits, Byzantine attacks and aggregation, and its report.

One *repetition* draws ``n`` points from the population, splits them over ``m`` machines, fits the
local pMLE on every machine and the global pMLE on all the data, and draws a fresh test sample.
Every *cell* (level x attack x failure rate) of the repetition then attacks the same local
estimates and runs every method on them, so that differences between cells and methods are not
blurred by refitting. All randomness comes from ``numpy.random.default_rng`` seeded with
``[seed, repetition, ...]`` (the data, each machine's fit, the test sample, and each cell's attack
have their own key), so any repetition or cell can be rerun alone and gives the same numbers.

The oracle is MR over the machines known to be good (:func:`dfmr.simulate.oracle`); where a
component-level attack leaves no machine untouched, it is MR over all the estimates as they were
before the attack (an oracle that knows and undoes the attack).

Metrics per repetition, cell and method (one CSV row each):

- ``w1``: :func:`dfmr.metrics.w1_distance` to the population;
- ``ari``: adjusted Rand index between the estimate's maximum-posterior labels of the test sample
  and the components that generated it (overlapping components keep even the truth below 1);
- ``loglik``: mean log-likelihood of the test sample;
- ``good_dropped`` / ``bad_kept``: good machines left out and attacked machines used (empty for
  the global fit, which sees raw data; TKB trims components, not machines, so it keeps all);
- ``seconds``: wall time of the method (the global fit: its EM on all the data; the others: the
  aggregation of the ``m`` local estimates, whose fitting they share).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from . import aggregate, metrics
from .local import fit_local
from .params import GaussianMixtureParams
from .simulate import ATTACK_KINDS, ATTACK_LEVELS, attack, split
from .simulate import population as shipped_population

__all__ = ["COLUMNS", "DEFAULT_RATES", "available_methods", "fingerprint", "report", "study", "summarize"]

DEFAULT_RATES = (0.1, 0.2, 0.3, 0.4)
COLUMNS = (
    "population", "seed", "n", "n_machines", "repetition", "level", "attack", "rate", "method",
    "w1", "ari", "loglik", "good_dropped", "bad_kept", "n_bad", "seconds",
)
_LABELS = {
    "global": "global", "mr": "MR", "dfmr": "DFMR", "robust_dfmr": "robust DFMR", "coat": "COAT",
    "tkb": "TKB", "oracle": "oracle",
}
# Keys of the seed sequence [seed, repetition, key, ...] of each random stream.
_DATA, _LOCAL, _GLOBAL, _TEST, _ATTACK = range(5)


def available_methods() -> tuple[str, ...]:
    """The methods the study compares: the paper's six, plus ``robust_dfmr`` where the package has it."""
    import dfmr

    core = ("global", "mr", "dfmr", "coat", "tkb", "oracle")
    return (*core[:3], "robust_dfmr", *core[3:]) if hasattr(dfmr, "robust_dfmr") else core


def fingerprint(mixture: GaussianMixtureParams) -> str:
    """A short hash of a population's parameters, stored in every row so that ``resume`` can check it."""
    digest = hashlib.sha256()
    for arr in (mixture.weights, mixture.means, mixture.covariances):
        digest.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
    return digest.hexdigest()[:12]


def _rate_key(rate: float) -> int:
    return round(rate * 1_000_000)


def _aggregate(
    method: str, local: list[GaussianMixtureParams], clean: list[GaussianMixtureParams], bad: np.ndarray, k: int,
    sizes: list[int],
) -> tuple[Any, np.ndarray]:
    """The method's mixture and the machines it used (``clean``: the estimates before the attack; ``sizes``: n_i)."""
    m = len(local)
    if method == "oracle":
        good = np.setdiff1d(np.arange(m), bad)
        if good.size == 0:  # every machine has an attacked component: the oracle undoes the attack
            return aggregate.mr(clean, k, n_threads=1).mixture, good  # and uses no attacked estimate
        return aggregate.mr([local[i] for i in good], k, n_threads=1).mixture, good
    if method == "coat":
        res = aggregate.coat(local, n_threads=1)
    elif method == "robust_dfmr":
        import dfmr

        # The attack rebuilds the estimates it corrupts; the machines' sample sizes are passed explicitly.
        res = dfmr.robust_dfmr(local, k, n_samples=sizes, n_threads=1)
    else:
        res = getattr(aggregate, method)(local, k, n_threads=1)
    return res.mixture, np.asarray(res.retained, dtype=np.intp)


def _repetition(task: dict[str, Any]) -> list[dict[str, Any]]:
    """All rows of one repetition (run in a worker process)."""
    from threadpoolctl import threadpool_limits

    truth = GaussianMixtureParams(*task["population"])
    seed, rep, k = task["seed"], task["repetition"], truth.n_components
    with threadpool_limits(1), warnings.catch_warnings():
        # Reductions of attacked estimates may drop components; the metrics show the consequence.
        warnings.simplefilter("ignore", RuntimeWarning)
        data_rng = np.random.default_rng([seed, rep, _DATA])
        X, _ = truth.sample(task["n"], data_rng)
        parts = split(X, task["n_machines"], data_rng)
        sizes = [len(part) for part in parts]
        local = [fit_local(part, k, random_state=np.random.default_rng([seed, rep, _LOCAL, i]))
                 for i, part in enumerate(parts)]
        t0 = time.perf_counter()
        global_fit = fit_local(X, k, random_state=np.random.default_rng([seed, rep, _GLOBAL]))
        global_seconds = time.perf_counter() - t0
        del X, parts
        X_test, y_test = truth.sample(task["n_test"], np.random.default_rng([seed, rep, _TEST]))

        rows = []
        for level, kind, rate in task["cells"]:
            key = [seed, rep, _ATTACK, ATTACK_LEVELS.index(level), ATTACK_KINDS.index(kind), _rate_key(rate)]
            attacked, bad = attack(local, rate, kind, level, random_state=np.random.default_rng(key))
            for method in task["methods"]:
                if method == "global":
                    mixture, used, seconds = global_fit, None, global_seconds
                else:
                    t0 = time.perf_counter()
                    mixture, used = _aggregate(method, attacked, local, bad, k, sizes)
                    seconds = time.perf_counter() - t0
                labels = np.argmax(mixture.component_logpdf(X_test) + np.log(mixture.weights), axis=1)
                rows.append({
                    "population": task["fingerprint"], "seed": seed, "n": task["n"], "n_machines": task["n_machines"],
                    "repetition": rep, "level": level, "attack": kind, "rate": rate, "method": method,
                    "w1": metrics.w1_distance(mixture, truth), "ari": metrics.ari(labels, y_test),
                    "loglik": metrics.log_likelihood(mixture, X_test),
                    "good_dropped": "" if used is None else int(np.setdiff1d(np.setdiff1d(
                        np.arange(task["n_machines"]), bad), used).size),
                    "bad_kept": "" if used is None else int(np.intersect1d(bad, used).size),
                    "n_bad": int(bad.size), "seconds": seconds,
                })
    return rows


def _check_choice(values: Iterable[Any], allowed: Sequence[str], name: str) -> tuple[Any, ...]:
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} is empty.")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {name} {unknown[0]!r}; allowed: {', '.join(allowed)}.")
    return values


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a dfmr simulation CSV (missing columns {', '.join(sorted(missing))}).")
        return list(reader)


def _completed(path: Path, settings: dict[str, str], expected: set[tuple[str, str, str, str]]) -> dict[int, list]:
    """Rows of the repetitions of ``path`` that finished, after checking that they used the same settings."""
    by_rep: dict[int, list[dict[str, str]]] = defaultdict(list)
    for row in _read_rows(path):
        for key, value in settings.items():
            if row[key] != value:
                raise ValueError(
                    f"{path} was made with {key} = {row[key]}, not {value}; resume with the same settings "
                    "or write to another file."
                )
        by_rep[int(row["repetition"])].append(row)
    done = {}
    for rep, rows in by_rep.items():
        cells = {(r["level"], r["attack"], str(_rate_key(float(r["rate"]))), r["method"]) for r in rows}
        if expected <= cells:
            done[rep] = rows
    return done


def study(
    population: GaussianMixtureParams | None = None,
    *,
    n: int = 100_000,
    n_machines: int = 20,
    repetitions: int | Iterable[int] = 20,
    rates: Iterable[float] = DEFAULT_RATES,
    attacks: Iterable[str] = ATTACK_KINDS,
    levels: Iterable[str] = ATTACK_LEVELS,
    methods: Iterable[str] | None = None,
    seed: int = 0,
    n_test: int = 10_000,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    n_jobs: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run the paper's simulation study (Zhang, Tan & Chen 2026, Section 5).

    Parameters
    ----------
    population : GaussianMixtureParams, optional
        The population; ``None`` uses the shipped MixSim population (K = 5, d = 10, MaxOmega 0.1).
        :func:`dfmr.mixsim.mixsim` makes new ones.
    n : int, default 100000
        Points per repetition, split evenly over the machines.
    n_machines : int, default 20
        Number of machines ``m``.
    repetitions : int or iterable of int, default 20
        Number of repetitions (indices ``0 .. r-1``), or the indices to run.
    rates : iterable of float, default (0.1, 0.2, 0.3, 0.4)
        Failure rates in ``[0, 1)``.
    attacks : iterable of {"mean", "cov", "weight"}, default all three
    levels : iterable of {"machine", "component"}, default both
    methods : iterable of str, optional
        A subset of :func:`available_methods` (the default).
    seed : int, default 0
        Root seed; repetition ``r`` uses the seed sequences ``[seed, r, ...]``.
    n_test : int, default 10000
        Size of the fresh test sample of every repetition (ARI, log-likelihood).
    out : path, optional
        CSV file that receives the rows of every repetition as soon as it finishes.
    resume : bool, default False
        Keep the finished repetitions already in ``out`` (which must have the same population,
        seed, ``n`` and ``m``) and run only the others; without it an existing ``out`` is an error.
    n_jobs : int, optional
        Worker processes; ``None`` uses one per CPU, 1 runs in this process.
    progress : bool, default True
        Show a progress bar (tqdm, on stderr) over repetitions.

    Returns
    -------
    list of dict
        One row per repetition, cell and method, with the keys :data:`COLUMNS` (resumed rows
        included, as read from the file: strings), ordered by repetition.

    Raises
    ------
    ValueError
        For an unknown attack, level or method, a rate outside ``[0, 1)``, an existing ``out``
        without ``resume``, or an ``out`` made with other settings.
    """
    truth = shipped_population() if population is None else population
    if not isinstance(truth, GaussianMixtureParams):
        raise TypeError(f"population must be a GaussianMixtureParams, got {type(truth).__name__}.")
    for name, value, low in (("n", n, 2), ("n_machines", n_machines, 1), ("n_test", n_test, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if n < n_machines * 2 * truth.n_components:
        raise ValueError(f"n = {n} is too small for {n_machines} machines and K = {truth.n_components}.")
    reps = list(range(repetitions)) if isinstance(repetitions, (int, np.integer)) else [int(r) for r in repetitions]
    rates = tuple(float(r) for r in rates)
    if not rates or any(not 0.0 <= r < 1.0 for r in rates):
        raise ValueError(f"rates must be non-empty and lie in [0, 1), got {rates}.")
    attacks = _check_choice(attacks, ATTACK_KINDS, "attack")
    levels = _check_choice(levels, ATTACK_LEVELS, "level")
    methods = _check_choice(available_methods() if methods is None else methods, available_methods(), "method")
    cells = [(level, kind, rate) for level in levels for kind in attacks for rate in rates]

    fp = fingerprint(truth)
    settings = {"population": fp, "seed": str(seed), "n": str(n), "n_machines": str(n_machines)}
    path = None if out is None else Path(out)
    done: dict[int, list] = {}
    if path is not None and path.exists():
        if not resume:
            raise ValueError(f"{path} exists; pass resume=True (--resume) to continue it, or choose another file.")
        expected = {(lv, kd, str(_rate_key(r)), me) for lv, kd, r in cells for me in methods}
        done = _completed(path, settings, expected)
        kept = [row for rep in sorted(done) for row in done[rep]]
        _write(path, kept, mode="w")  # drops the rows of repetitions that were cut short
    elif path is not None:
        _write(path, [], mode="w")

    todo = [r for r in reps if r not in done]
    base = {
        "population": (truth.weights, truth.means, truth.covariances), "fingerprint": fp, "seed": seed, "n": n,
        "n_machines": n_machines, "n_test": n_test, "cells": cells, "methods": methods,
    }
    results: dict[int, list] = dict(done)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(reps), initial=len(reps) - len(todo), desc="repetitions", disable=not progress)
    workers = (os.cpu_count() or 1) if n_jobs is None else int(n_jobs)

    def finish(rep: int, rows: list[dict[str, Any]]) -> None:
        results[rep] = rows
        if path is not None:
            _write(path, rows, mode="a")
        bar.update(1)

    try:
        if workers <= 1 or len(todo) <= 1:
            for rep in todo:
                finish(rep, _repetition({**base, "repetition": rep}))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
                futures = {pool.submit(_repetition, {**base, "repetition": rep}): rep for rep in todo}
                for fut in as_completed(futures):
                    finish(futures[fut], fut.result())
    finally:
        bar.close()
    return [row for rep in sorted(results) for row in results[rep]]


def _write(path: Path, rows: list[dict[str, Any]], mode: str) -> None:
    new = mode == "w"
    with path.open(mode, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
        fh.flush()
        os.fsync(fh.fileno())


def summarize(rows: Iterable[dict[str, Any]], metric: str = "w1") -> dict[tuple[str, str, float, str], tuple]:
    """Mean, standard error and count of a metric per (level, attack, rate, method).

    Parameters
    ----------
    rows : iterable of dict
        Rows as returned by :func:`study` or read from its CSV.
    metric : str, default "w1"
        A numeric column: ``w1``, ``ari``, ``loglik``, ``good_dropped``, ``bad_kept`` or ``seconds``.

    Returns
    -------
    dict
        ``(level, attack, rate, method) -> (mean, standard error, number of repetitions)``; the
        standard error is ``sd / sqrt(count)`` (NaN for a single repetition). Cells where the
        metric does not apply (machine counts of the global fit) are left out.
    """
    groups: dict[tuple[str, str, float, str], list[float]] = defaultdict(list)
    for row in rows:
        value = row[metric]
        if value == "" or value is None:
            continue
        groups[(row["level"], row["attack"], float(row["rate"]), row["method"])].append(float(value))
    out = {}
    for key, values in groups.items():
        arr = np.asarray(values)
        se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.nan
        out[key] = (float(arr.mean()), se, int(arr.size))
    return out


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    values = set(values)
    return [v for v in order if v in values] + sorted(values - set(order))


_METRICS = {
    "w1": "W1 distance to the population (smaller is better)",
    "ari": "adjusted Rand index on a fresh sample against the true labels (larger is better)",
    "loglik": "mean log-likelihood of a fresh sample (larger is better)",
    "good_dropped": "good machines dropped",
    "bad_kept": "attacked machines kept",
}
_METHOD_ORDER = ("global", "mr", "dfmr", "robust_dfmr", "coat", "tkb", "oracle")


def _table(summary: dict, level: str, attacks: list[str], rates: list[float], methods: list[str]) -> list[str]:
    lines = [
        "| rate | attack | " + " | ".join(_LABELS.get(m, m) for m in methods) + " |",
        "| ---: | --- | " + " | ".join("---:" for _ in methods) + " |",
    ]
    for rate in rates:
        for kind in attacks:
            cells = []
            for method in methods:
                entry = summary.get((level, kind, rate, method))
                cells.append("" if entry is None else f"{entry[0]:.4g} ± {entry[1]:.2g}")
            lines.append(f"| {rate:g} | {kind} | " + " | ".join(cells) + " |")
    return lines


def report(csv_path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Write the markdown tables and PNG plots of a study's CSV.

    Parameters
    ----------
    csv_path : path
        The CSV written by :func:`study`.
    out_dir : path, optional
        Where to write ``report.md`` and ``w1_<level>.png``; default: the CSV's directory.

    Returns
    -------
    pathlib.Path
        The markdown file. For every metric (W1, ARI, log-likelihood, and the machine counts) and
        every attack level it holds a table in the paper's layout: rows failure rate x attack,
        columns methods, cells ``mean ± standard error`` over repetitions. Each PNG plots W1
        against the failure rate, one panel per attack, one line per method, with standard-error
        bars, on a log scale.

    Raises
    ------
    ValueError
        If the file is not a simulation CSV or holds no rows.
    """
    csv_path = Path(csv_path)
    rows = _read_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} holds no results yet.")
    out_dir = csv_path.parent if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    levels = _ordered({r["level"] for r in rows}, ATTACK_LEVELS)
    attacks = _ordered({r["attack"] for r in rows}, ATTACK_KINDS)
    rates = sorted({float(r["rate"]) for r in rows})
    methods = _ordered({r["method"] for r in rows}, _METHOD_ORDER)
    n_reps = len({r["repetition"] for r in rows})
    first = rows[0]
    lines = [
        "# Simulation study",
        "",
        f"{n_reps} repetitions; N = {int(first['n']):,} points over m = {first['n_machines']} machines; "
        f"seed {first['seed']}; population {first['population']}. Cells: mean ± standard error over repetitions.",
    ]
    for metric, title in _METRICS.items():
        summary = summarize(rows, metric)
        for level in levels:
            lines += ["", f"## {title}: {level}-level attacks", ""]
            lines += _table(summary, level, attacks, rates, [m for m in methods if metric in ("w1", "ari", "loglik")
                                                              or m != "global"])
    md = out_dir / "report.md"
    md.write_text("\n".join(lines) + "\n")
    summary = summarize(rows, "w1")
    for level in levels:
        _plot(summary, level, attacks, rates, methods, out_dir / f"w1_{level}.png")
    return md


def _plot(summary: dict, level: str, attacks: list[str], rates: list[float], methods: list[str], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(attacks) + 1.6, 3.0), dpi=80, layout="constrained")
    axes = fig.subplots(1, len(attacks), squeeze=False)[0]
    for ax, kind in zip(axes, attacks):
        for method in methods:
            pts = [(r, *summary[(level, kind, r, method)][:2]) for r in rates if (level, kind, r, method) in summary]
            if pts:
                x, y, se = map(np.asarray, zip(*pts))
                ax.errorbar(x, y, yerr=np.nan_to_num(se), marker="o", markersize=3, capsize=2,
                            label=_LABELS.get(method, method))
        ax.set_yscale("log")
        ax.set_title(f"{kind} attack ({level})", fontsize="medium")
        ax.set_xlabel("failure rate")
        ax.set_xticks(rates)
    axes[0].set_ylabel("W1 to the population")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    fig.savefig(path)
