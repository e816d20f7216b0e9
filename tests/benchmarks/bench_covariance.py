"""Cost of each covariance model against the full (VVV) one, in one process: reduction and local EM.

Issue 21's goal: a closed-form constrained fit costs no more than a full one of the same size, an
iterative one (VEI, VEE, EVE, VVE, VEV) no more than 2x. Reduction: the local estimates are the
paper's shipped ones (K = 5, d = 10, m = 20) and, for a larger pool, m = 200 noisy copies of the
population (labels permuted); every reduction starts from every estimate (MR's default) on one
thread. Local EM (``dfmr.fit_local``, its default starts): 2,000 points of a K = 5, d = 10 mixture
with full covariances (so no model but VVV holds; the constrained M-steps do their full work). The
models alternate with the full fit in every repetition; printed per model: the median time and the
median and quartiles of the per-repetition ratio model / full, and the iterations of the result
(the reduction's MM updates of the winning start; EM's iterations). Asserts nothing about time.

Also printed: the fastest run of the model over the fastest full fit ("min / min"), which a loaded
machine disturbs least. Run: ``python tests/benchmarks/bench_covariance.py`` (``--quick`` for a smoke
run, ``--reps R``, ``--only reduction|em``, ``--only-m20``: the m = 20 reduction only).

``--callgrind``: instead of timing, the load-independent count: the reductions' estimates are written
to a text file, and the C++ harness cpp/bench/reduce_instructions.cpp (built here with CMake into
build/bench unless ``--harness PATH`` names a built one) runs ``dfmr::reduce_mixtures`` on them once per
model under ``valgrind --tool=callgrind``, counting the instructions of that call alone (after an
uncounted first run of it); printed per model: the count, its ratio to VVV's, and the harness's
objective, checked against the Python reduction's. m = 20 and m = 200 (``--only-m20``: m = 20 only).
Needs valgrind (not needed by the test suite).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import fixture_estimates, noisy_copies  # noqa: E402

from dfmr.covariance import MODEL_NAMES, get_model  # noqa: E402
from dfmr.local import fit_local_detailed  # noqa: E402
from dfmr.reduction import reduce_mixtures  # noqa: E402


def _reduce(mixtures, k: int, model: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    res = reduce_mixtures(mixtures, k, n_threads=1, covariance_type=model)
    return time.perf_counter() - t0, res.n_iter


def _em(X, k: int, model: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    res = fit_local_detailed(X, k, covariance_type=model, random_state=0)
    return time.perf_counter() - t0, res.n_iter


def run(label: str, timed, d: int, reps: int) -> None:
    print(f"\n{label}, {reps} alternating repetitions, 1 thread")
    print(f"{'model':>6} {'kind':>11} {'median s':>10} {'ratio / full':>13} {'quartiles':>17} {'min / min':>10} "
          f"{'iter':>6}")
    timed("VVV")  # warm-up
    for name in MODEL_NAMES:
        ratios, times, fulls = [], [], []
        for r in range(reps):
            # VVV's own row times two full fits: the spread of the ratio at 1.
            first, second = (timed("VVV"), timed(name)) if r % 2 == 0 else (timed(name), timed("VVV"))
            full, got = (first, second) if r % 2 == 0 else (second, first)
            ratios.append(got[0] / full[0])
            times.append(got[0])
            fulls.append(full[0])
            n_iter = got[1]
        q1, med, q3 = np.quantile(ratios, [0.25, 0.5, 0.75])
        kind = "iterative" if get_model(name, d).iterative else "closed form"
        goal = 2.0 if kind == "iterative" else 1.0
        # The fastest run of each over the fastest full one: the least disturbed by other processes on a
        # shared machine (the per-repetition ratios of a millisecond's work are not, under load).
        print(f"{name:>6} {kind:>11} {np.median(times):>10.4f} {med:>12.2f}x {q1:>7.2f}x .. {q3:.2f}x "
              f"{min(times) / min(fulls):>9.2f}x {n_iter:>6d}   goal <= {goal:g}x: "
              f"{'met' if med <= goal else 'NOT met'}")


ROOT = Path(__file__).resolve().parents[2]


def _build_harness() -> Path:
    """cpp/bench/reduce_instructions.cpp, built (Release) into build/bench of this tree."""
    build = ROOT / "build" / "bench"
    prefix = subprocess.run([sys.executable, "-m", "cmeel", "cmake"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    "-DDFMR_BUILD_EXAMPLES=ON", "-DDFMR_BUILD_TESTS=OFF", "-DDFMR_BUILD_PYTHON=OFF",
                    f"-DCMAKE_PREFIX_PATH={prefix}"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "dfmr_reduce_instructions"], check=True,
                   stdout=subprocess.DEVNULL)
    return build / "dfmr_reduce_instructions"


def _write_estimates(path: Path, mixtures) -> None:
    """The harness's input: m K d, then per estimate its weights, means and covariances (17 digits)."""
    with open(path, "w") as f:
        f.write(f"{len(mixtures)} {mixtures[0].n_components} {mixtures[0].dim}\n")
        for g in mixtures:
            for a in (g.weights, g.means, g.covariances):
                f.write(" ".join(f"{x:.17g}" for x in np.asarray(a).ravel()) + "\n")


def callgrind(label: str, mixtures, k: int, harness: Path) -> None:
    """Instructions of one dfmr::reduce_mixtures call per model (callgrind), over VVV's."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--callgrind needs valgrind on the PATH")
    d = mixtures[0].dim
    print(f"\n{label}: instructions of dfmr::reduce_mixtures (callgrind, 1 thread, one call after an uncounted one)")
    print(f"{'model':>6} {'kind':>11} {'instructions':>13} {'/ VVV':>7} {'iter':>5} {'cut':>4}  objective (harness)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "estimates.txt"
        _write_estimates(data, mixtures)
        counts, runs = {}, {}
        for name in ("VVV",) + tuple(m for m in MODEL_NAMES if m != "VVV"):
            out = Path(tmp) / f"callgrind.{name}"
            run = subprocess.run([valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
                                  "--toggle-collect=*measured_reduction*", str(harness), str(data), name],
                                 capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
            if run.returncode != 0:
                raise SystemExit(f"harness failed for {name}:\n{run.stderr[-2000:]}")
            counts[name] = int(re.search(r"^summary: (\d+)", out.read_text(), re.M).group(1))
            line = run.stdout.split()
            objective, n_iter, cut = float(line[2]), int(line[4]), int(line[6])
            runs[name] = (n_iter, cut, objective)
            # The harness reduces what the Python reduction reduces: the same objective.
            expected = reduce_mixtures(mixtures, k, n_threads=1, covariance_type=name).objective
            if not np.isclose(objective, expected, rtol=1e-12, atol=0.0):
                raise SystemExit(f"{name}: harness objective {objective!r} != Python's {expected!r}")
        for name in MODEL_NAMES:
            kind = "iterative" if get_model(name, d).iterative else "closed form"
            goal = 2.0 if kind == "iterative" else 1.0
            ratio = counts[name] / counts["VVV"]
            n_iter, cut, objective = runs[name]
            print(f"{name:>6} {kind:>11} {counts[name] / 1e6:>12.2f}M {ratio:>6.2f}x {n_iter:>5d} {cut:>4d}  "
                  f"{objective:.10f}   goal <= {goal:g}x: {'met' if ratio <= goal else 'NOT met'}")


def _random_covariance(rng: np.random.Generator, d: int) -> np.ndarray:
    """A covariance with a random orientation and eigenvalues in [0.5, 2]."""
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * rng.uniform(0.5, 2.0, d)) @ q.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, the paper's estimates only")
    parser.add_argument("--only", choices=("reduction", "em"))
    parser.add_argument("--only-m20", action="store_true", help="the reduction of the m = 20 shipped estimates only")
    parser.add_argument("--callgrind", action="store_true",
                        help="instruction counts of the C++ reduction under valgrind instead of timings")
    parser.add_argument("--harness", type=Path, help="a built dfmr_reduce_instructions (default: build it)")
    args = parser.parse_args()
    reps = 1 if args.quick else args.reps
    paper = fixture_estimates()
    if args.callgrind:
        harness = args.harness or _build_harness()
        callgrind("reduction, paper estimates (shipped): m = 20, K = 5, d = 10", paper, 5, harness)
        if not args.only_m20:
            copies = noisy_copies(np.random.default_rng(0), paper[0], 200, noise=0.1)
            callgrind("reduction, noisy copies of a shipped estimate: m = 200, K = 5, d = 10", copies, 5, harness)
        return
    if args.only != "em":
        run("reduction, paper estimates (shipped): m = 20, K = 5, d = 10",
            lambda m: _reduce(paper, 5, m), paper[0].dim, reps)
    if not args.quick and not args.only_m20 and args.only != "em":
        copies = noisy_copies(np.random.default_rng(0), paper[0], 200, noise=0.1)
        run("reduction, noisy copies of a shipped estimate: m = 200, K = 5, d = 10",
            lambda m: _reduce(copies, 5, m), copies[0].dim, reps)
    if not args.quick and not args.only_m20 and args.only != "reduction":
        rng = np.random.default_rng(1)
        k, d, n = 5, 10, 2000
        means = rng.normal(0.0, 1.0, (k, d))  # overlapping: EM iterates (about 50 times for VVV)
        X = np.concatenate([rng.multivariate_normal(means[j], _random_covariance(rng, d), n // k) for j in range(k)])
        run(f"local EM (fit_local): n = {n}, K = {k}, d = {d}, full-covariance population",
            lambda m: _em(X, k, m), d, reps)


if __name__ == "__main__":
    main()
