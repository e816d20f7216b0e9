"""Speed of the compiled core against the plain NumPy baseline in tests/reference.py.

Prints figures; asserts nothing about time (timing belongs in benchmarks, not unit tests).
Run: ``python tests/benchmarks/bench_core.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import noisy_copies, random_mixture  # noqa: E402
from reference import mr_numpy, pairwise_l2_numpy  # noqa: E402

import dfmr  # noqa: E402
from dfmr.filtering import distance_filter  # noqa: E402


def best_time(fn, repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls, in seconds (the least disturbed run)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_dfmr(mixtures: list[dfmr.GaussianMixtureParams], k: int) -> None:
    """The whole DFMR aggregation with the NumPy baseline: distances, filter, MR."""
    decision = distance_filter(pairwise_l2_numpy(mixtures))
    mr_numpy([mixtures[i] for i in decision.retained], k)


def report(label: str, core_s: float, numpy_s: float | None, goal_s: float | None) -> None:
    ratio = f"{numpy_s / core_s:7.1f}x" if numpy_s is not None else "      -"
    base = f"{numpy_s * 1e3:10.1f} ms" if numpy_s is not None else "          -"
    goal = f"(goal <= {goal_s * 1e3:g} ms)" if goal_s is not None else ""
    print(f"{label:<44} core {core_s * 1e3:9.2f} ms   numpy {base}   speed-up {ratio}  {goal}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: check that it runs")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 7
    rng = np.random.default_rng(2026)
    print(f"dfmr {dfmr.__version__}; {os.cpu_count()} CPUs; best of {repeat} runs")

    fixture = dfmr.simulate.local_estimates_fixture()
    core = best_time(lambda: dfmr.dfmr(fixture, 5), max(repeat, 3) * 5)
    base = best_time(lambda: numpy_dfmr(fixture, 5), repeat)
    report("DFMR, fixture (m=20, K=5, d=10)", core, base, 0.005)

    m, k, d = (12, 4, 6) if args.quick else (60, 8, 12)
    truth = random_mixture(rng, k, d, spread=3.0)
    local = noisy_copies(rng, truth, m, noise=0.05)
    core = best_time(lambda: dfmr.dfmr(local, k), repeat)
    base = best_time(lambda: numpy_dfmr(local, k), 1)
    report(f"DFMR, m={m}, K={k}, d={d}", core, base, 0.1)

    m, k, d = (20, 4, 6) if args.quick else (200, 10, 20)
    many = [random_mixture(rng, k, d) for _ in range(m)]
    for threads in (1, 2):
        core = best_time(lambda threads=threads: dfmr.pairwise_l2(many, n_threads=threads), max(1, repeat // 2))
        base = best_time(lambda: pairwise_l2_numpy(many), 1) if threads == 1 else None
        report(f"pairwise L2, m={m}, K={k}, d={d}, {threads} thread(s)", core, base, 1.5 if threads == 2 else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
