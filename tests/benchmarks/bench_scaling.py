"""How dfmr's cost grows: aggregation time against m, K and d, and the whole fit against N.

For every series it prints the wall times, the same times for the baseline where it can run,
and the fitted growth exponent b of ``time ~ size^b`` (least squares on the log-log points).

- Aggregation (``dfmr.dfmr(mixtures, K)``: distances, centre, filter, MR): m = 20 .. 1,000
  (K = 5, d = 10), K = 2 .. 20 (m = 20, d = 10), d = 2 .. 100 (m = 20, K = 5). Local estimates are
  noisy, label-permuted copies of a random mixture. Baseline: the plain NumPy implementation in
  tests/reference.py (run up to ``--numpy-max-m`` machines; it is quadratic in m and slow).
- Whole fit (``DistributedGaussianMixture(5, n_machines=20).fit(X)``, processes backend: 20
  local pMLEs, then DFMR) against N = 1e4 .. 5e6 points of the shipped population (K = 5, d = 10).
  Baseline: scikit-learn's ``GaussianMixture(5).fit(X)`` on all the data (there is no NumPy EM in
  tests/reference.py), up to ``--sklearn-max-n`` points.

Both baselines run with one BLAS thread: on a shared, loaded machine OpenBLAS's spinning worker
threads made the NumPy baseline over ten times slower than on one thread.

Prints figures, asserts nothing. ``--quick`` for a smoke run with small sizes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import best_time, numpy_dfmr  # noqa: E402
from conftest import noisy_copies, random_mixture  # noqa: E402

import dfmr  # noqa: E402


def exponent(sizes: Sequence[float], times: Sequence[float]) -> float:
    """Slope of log(time) against log(size)."""
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def series(
    title: str, name: str, sizes: Sequence[int], ours: Callable[[int], float], base: Callable[[int], float | None],
    base_name: str,
) -> None:
    print(f"\n{title}")
    print(f"| {name} | dfmr (s) | {base_name} (s) | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    ours_t, base_t, base_sizes = [], [], []
    for size in sizes:
        t = ours(size)
        b = base(size)
        ours_t.append(t)
        if b is not None:
            base_t.append(b)
            base_sizes.append(size)
        b_text, ratio = ("-", "-") if b is None else (f"{b:.4g}", f"{b / t:.1f}x")
        print(f"| {size:,} | {t:.4g} | {b_text} | {ratio} |", flush=True)
    line = f"growth exponent: dfmr {exponent(sizes, ours_t):.2f}"
    if len(base_sizes) >= 2:
        line += f", {base_name} {exponent(base_sizes, base_t):.2f} (over {base_sizes[0]:,} .. {base_sizes[-1]:,})"
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: check that it runs")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per point (default: 3)")
    parser.add_argument("--numpy-max-m", type=int, default=200, help="largest m for the NumPy baseline")
    parser.add_argument("--sklearn-max-n", type=int, default=1_000_000, help="largest N for the sklearn baseline")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    rng = np.random.default_rng(2026)
    print(f"dfmr {dfmr.__version__}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}; "
          f"best of {repeat} runs (one run for the whole fit at N >= 1e6)")

    def local(m: int, k: int, d: int) -> list[dfmr.GaussianMixtureParams]:
        return noisy_copies(rng, random_mixture(rng, k, d, spread=3.0), m, noise=0.05)

    def agg_pair(m: int, k: int, d: int, numpy_ok: bool) -> tuple[float, float | None]:
        mixtures = local(m, k, d)
        ours = best_time(lambda: dfmr.dfmr(mixtures, k), repeat)
        with threadpool_limits(1):
            base = best_time(lambda: numpy_dfmr(mixtures, k), 1) if numpy_ok else None
        return ours, base

    def run_agg(title: str, name: str, sizes: Sequence[int], shape: Callable[[int], tuple[int, int, int]]) -> None:
        cache: dict[int, tuple[float, float | None]] = {}

        def pair(size: int) -> tuple[float, float | None]:
            if size not in cache:
                m, k, d = shape(size)
                cache[size] = agg_pair(m, k, d, m <= args.numpy_max_m)
            return cache[size]

        series(title, name, sizes, lambda s: pair(s)[0], lambda s: pair(s)[1], "NumPy")

    if args.quick:
        ms, ks, ds, ns = (10, 20), (2, 4), (2, 4), (5_000, 10_000)
    else:
        ms, ks, ds, ns = (20, 50, 100, 200, 500, 1000), (2, 5, 10, 20), (2, 5, 10, 30, 100), (
            10_000, 100_000, 1_000_000, 5_000_000)
    run_agg("Aggregation against m (K = 5, d = 10)", "m", ms, lambda m: (m, 5, 10))
    run_agg("Aggregation against K (m = 20, d = 10)", "K", ks, lambda k: (20, k, 10))
    run_agg("Aggregation against d (m = 20, K = 5)", "d", ds, lambda d: (20, 5, d))

    from sklearn.mixture import GaussianMixture

    truth = dfmr.simulate.population()

    def fit_pair(n: int) -> tuple[float, float | None]:
        X, _ = truth.sample(n, np.random.default_rng(n))
        reps = repeat if n < 1_000_000 else 1
        est = dfmr.DistributedGaussianMixture(5, n_machines=20, backend="processes", random_state=0)
        ours = best_time(lambda: est.fit(X), reps)
        with threadpool_limits(1):
            base = (best_time(lambda: GaussianMixture(5, random_state=0).fit(X), reps)
                    if n <= args.sklearn_max_n else None)
        return ours, base

    fits = {n: fit_pair(n) for n in ns}
    series("Whole distributed fit against N (m = 20, K = 5, d = 10)", "N", ns, lambda n: fits[n][0],
           lambda n: fits[n][1], "sklearn global")
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    raise SystemExit(code)
