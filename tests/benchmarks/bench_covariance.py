"""Cost of mixture reduction under each covariance model, against the full (VVV) reduction, in one process.

Issue 21's goal: a closed-form constrained reduction costs no more than a full one of the same size,
an iterative one (VEI, VEE, EVE, VVE, VEV) no more than 2x. The local estimates are the paper's
shipped ones (K = 5, d = 10, m = 20) and, for a larger pool, m = 200 noisy copies of the population
(labels permuted); every reduction starts from every estimate (MR's default) on one thread. The
models alternate with the full reduction in every repetition; printed per model: the median time
and the median and quartiles of the per-repetition ratio model / full, and the MM iterations of the
winning start. Asserts nothing about time.

Run: ``python tests/benchmarks/bench_covariance.py`` (``--quick`` for a smoke run, ``--reps R``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import fixture_estimates, noisy_copies  # noqa: E402

from dfmr.covariance import MODEL_NAMES, get_model  # noqa: E402
from dfmr.reduction import reduce_mixtures  # noqa: E402


def _time(mixtures, k: int, model: str | None) -> tuple[float, int]:
    t0 = time.perf_counter()
    res = reduce_mixtures(mixtures, k, n_threads=1, covariance_type=model)
    return time.perf_counter() - t0, res.n_iter


def run(label: str, mixtures, k: int, reps: int) -> None:
    print(f"\n{label}: m = {len(mixtures)}, K = {k}, d = {mixtures[0].dim}, {reps} alternating repetitions, 1 thread")
    print(f"{'model':>6} {'kind':>11} {'median s':>10} {'ratio / full':>13} {'quartiles':>17} {'MM iter':>8}")
    _time(mixtures, k, None)  # warm-up
    for name in MODEL_NAMES:
        ratios, times = [], []
        for r in range(reps):
            order = (None, name) if r % 2 == 0 else (name, None)
            got = {m: _time(mixtures, k, m) for m in order}
            ratios.append(got[name][0] / got[None][0])
            times.append(got[name][0])
            n_iter = got[name][1]
        q1, med, q3 = np.quantile(ratios, [0.25, 0.5, 0.75])
        kind = "iterative" if get_model(name, mixtures[0].dim).iterative else "closed form"
        goal = 2.0 if kind == "iterative" else 1.0
        print(f"{name:>6} {kind:>11} {np.median(times):>10.4f} {med:>12.2f}x {q1:>7.2f}x .. {q3:.2f}x {n_iter:>8d}"
              f"   goal <= {goal:g}x: {'met' if med <= goal else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, the paper's estimates only")
    args = parser.parse_args()
    reps = 1 if args.quick else args.reps
    paper = fixture_estimates()
    run("paper estimates (shipped)", paper, 5, reps)
    if not args.quick:
        rng = np.random.default_rng(0)
        truth = paper[0]
        run("noisy copies of a shipped estimate", noisy_copies(rng, truth, 200, noise=0.1), 5, reps)


if __name__ == "__main__":
    main()
