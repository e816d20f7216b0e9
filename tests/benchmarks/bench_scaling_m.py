"""How aggregation scales with the number of machines m (K = 5, d = 10).

Prints, for m = 25 .. 1000: the time of the pairwise L2 distances, of MR and of DFMR (default
starts: every machine, as in the paper; "cut": starts cut short by joining an earlier start's
trajectory), the distance rate in GFLOP/s beside the GEMM rate of a
numpy 2000 x 2000 matrix product measured in the same run, and the peak memory growth; then the
sampled centre rule at m = 10,000 against exact DFMR at m = 1,000 (whole DFMR, and the centre
and filter alone), the work of the two reductions (MM iterations x pooled components), the same
under the paper's covariance and weight attacks, and how often the sampled rule retains exactly
the machines the exact rule retains. Asserts nothing about time.

The distance rate counts (mK)^2 / 2 component pairs x d^3 / 3 flops (the Cholesky factorisation
of S_a + S_b), the issue's convention; the other work per pair (forming S_a + S_b, the forward
solve, one log and one exp) is not counted.

Run: ``python tests/benchmarks/bench_scaling_m.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import noisy_copies  # noqa: E402

import dfmr  # noqa: E402

K, D = 5, 10


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median_time(fn, repeat: int) -> float:
    return float(np.median([timed(fn)[0] for _ in range(repeat)]))


def gemm_gflops(n: int, repeat: int) -> float:
    """numpy n x n matrix product rate (2 n^3 flops), median of ``repeat`` runs."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    return 2.0 * n**3 / median_time(lambda: a @ b, repeat) / 1e9


def distance_gflops(m: int, seconds: float) -> float:
    return (m * K) ** 2 / 2.0 * D**3 / 3.0 / seconds / 1e9


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def local_estimates(m: int, seed: int, rate: float = 0.2, kind: str = "mean") -> list[dfmr.GaussianMixtureParams]:
    """m local estimates of the paper's population, a fraction ``rate`` of them attacked (``kind``)."""
    rng = np.random.default_rng(seed)
    honest = noisy_copies(rng, dfmr.simulate.population(), m, noise=0.05)
    attacked, _ = dfmr.simulate.attack(honest, rate, kind=kind, random_state=seed)
    return attacked


def scaling_table(sizes: list[int], repeat: int, gemm: float) -> None:
    print(f"\n{'m':>6} {'pairwise L2':>12} {'GFLOP/s':>8} {'% GEMM':>7} {'MR':>10} {'MR/L2':>6} {'MR cut':>7} "
          f"{'DFMR':>10} {'starts':>6} {'cut':>5} {'peak RSS':>9}")
    for m in sizes:
        local = local_estimates(m, seed=m)
        t_l2 = median_time(lambda local=local: dfmr.pairwise_l2(local), repeat)
        t_mr, res_mr = timed(lambda local=local: dfmr.mr(local, K))
        t_dfmr, res = timed(lambda local=local: dfmr.dfmr(local, K))
        rate = distance_gflops(m, t_l2)
        print(f"{m:>6} {t_l2 * 1e3:>9.1f} ms {rate:>8.2f} {100 * rate / gemm:>6.1f}% {t_mr * 1e3:>7.1f} ms "
              f"{t_mr / t_l2:>6.2f} {res_mr.reduction.n_starts_cut:>7} {t_dfmr * 1e3:>7.1f} ms "
              f"{len(res.start_machines):>6} {res.reduction.n_starts_cut:>5} {peak_rss_mib():>5.0f} MiB")
        del res_mr


def sharing(m: int, repeat: int) -> None:
    """DFMR's and MR's reductions at m with shared trajectories against every start run in full."""
    local = local_estimates(m, seed=m)
    kept = [local[i] for i in dfmr.filtering.distance_filter(dfmr.coat(local).distances).retained]
    for name, mixtures in (("DFMR (retained machines)", kept), ("MR (all machines)", local)):
        pooled = dfmr.reduction.pool(mixtures)
        starts = [f for f in mixtures if f.n_components == K]
        runs = {share: [timed(lambda share=share, pooled=pooled, starts=starts: dfmr.reduction.reduce(
            pooled, K, starts, share_trajectories=share)) for _ in range(repeat)] for share in (True, False)}
        t_shared, shared = float(np.median([t for t, _ in runs[True]])), runs[True][0][1]
        t_full, full = float(np.median([t for t, _ in runs[False]])), runs[False][0][1]
        same = (shared.objective == full.objective and shared.start_index == full.start_index
                and np.array_equal(shared.start_objectives, full.start_objectives)
                and np.array_equal(shared.assignment, full.assignment))
        print(f"{name}, m = {m}, {len(starts)} starts: every start in full {t_full:.2f} s, shared trajectories "
              f"{t_shared:.2f} s ({t_full / t_shared:.1f}x), {shared.n_starts_cut} starts cut, "
              f"bit-identical: {same}")


def sampled_centre(m_big: int, m_exact: int, n_starts: int, sample: int, repeat: int) -> None:
    """Times are medians of ``repeat`` runs of each call."""
    local = local_estimates(m_exact, seed=1)
    exact = dfmr.dfmr(local, K, n_starts=n_starts)
    t_exact = median_time(lambda: dfmr.dfmr(local, K, n_starts=n_starts), repeat)
    t_exact_all = median_time(lambda: dfmr.dfmr(local, K), repeat)
    t_exact_centre = median_time(lambda: dfmr.coat(local), repeat)
    big = local_estimates(m_big, seed=2)
    rss0 = peak_rss_mib()
    res = dfmr.dfmr(big, K, center="sampled", n_center_sample=sample, n_starts=n_starts, random_state=0)
    t_centre = median_time(lambda: dfmr.coat(big, center="sampled", n_center_sample=sample, random_state=0), repeat)
    t_big = median_time(lambda: dfmr.dfmr(big, K, center="sampled", n_center_sample=sample, n_starts=n_starts,
                                          random_state=0), repeat)
    work_exact, work_big = reduction_work(exact), reduction_work(res)
    print(f"\nexact DFMR, m = {m_exact}: {t_exact:.2f} s with n_starts={n_starts}, {t_exact_all:.2f} s with all "
          f"{len(exact.retained)} retained starts; its centre and filter alone (COAT) {t_exact_centre:.2f} s")
    print(f"sampled-centre DFMR, m = {m_big} (n_center_sample={sample}, n_starts={n_starts}): {t_big:.2f} s "
          f"= {t_big / t_exact:.2f}x exact m = {m_exact} (same n_starts), {t_big / t_exact_all:.2f}x exact "
          f"m = {m_exact} with its default starts; of which centre and filter "
          f"{t_centre:.2f} s ({t_centre / t_exact_centre:.2f}x the exact rule's at m = {m_exact}); "
          f"retained {len(res.retained)}; "
          f"peak RSS grew {peak_rss_mib() - rss0:.0f} MiB (no m x m matrix)")
    print(f"reduction work (MM iterations of all starts x pooled components): exact m = {m_exact}, "
          f"n_starts={n_starts}: {work_exact[0]} x {work_exact[1]:,}; sampled m = {m_big}: "
          f"{work_big[0]} x {work_big[1]:,} = {work_big[0] * work_big[1] / (work_exact[0] * work_exact[1]):.1f}x "
          f"the exact run's")
    # The reduction's share depends on the data: other attacks of the paper, same sizes and starts.
    for kind in ("cov", "weight"):
        small, large = local_estimates(m_exact, seed=1, kind=kind), local_estimates(m_big, seed=2, kind=kind)
        with warnings.catch_warnings():  # a reduction may drop a component under these attacks; timing only
            warnings.simplefilter("ignore", RuntimeWarning)
            e = dfmr.dfmr(small, K, n_starts=n_starts)
            r = dfmr.dfmr(large, K, center="sampled", n_center_sample=sample, n_starts=n_starts, random_state=0)
            t_e = median_time(lambda small=small: dfmr.dfmr(small, K, n_starts=n_starts), repeat)
            t_r = median_time(lambda large=large: dfmr.dfmr(large, K, center="sampled", n_center_sample=sample,
                                                            n_starts=n_starts, random_state=0), repeat)
        (ie, ne), (ir, nr) = reduction_work(e), reduction_work(r)
        print(f"20% {kind} attack instead: sampled m = {m_big} {t_r:.2f} s = {t_r / t_e:.2f}x exact m = {m_exact} "
              f"({t_e:.2f} s, same n_starts); retained {len(r.retained)} / {len(e.retained)}; reduction work "
              f"{ir} x {nr:,} against {ie} x {ne:,} ({ir * nr / (ie * ne):.1f}x)")


def reduction_work(result) -> tuple[int, int]:
    """MM iterations summed over the starts, and the number of pooled components they sweep."""
    return int(np.sum(result.reduction.start_n_iter)), int(result.reduction.assignment.shape[0])


def agreement(m: int, reps: int, sample: int) -> None:
    same = 0
    centre_same = 0
    differ = []
    for seed in range(reps):
        local = local_estimates(m, seed=100 + seed, rate=0.3)
        exact = dfmr.coat(local)
        e = dfmr.filtering.distance_filter(exact.distances)
        with warnings.catch_warnings():  # the one-start reduction may drop a component; only the filter matters
            warnings.simplefilter("ignore", RuntimeWarning)
            s = dfmr.dfmr(local, K, center="sampled", n_center_sample=sample, random_state=seed, n_starts=1)
        same += np.array_equal(e.retained, s.retained)
        centre_same += e.center == s.center
        differ.append(len(np.setxor1d(e.retained, s.retained)))
    print(f"agreement, m = {m}, 30% mean attack, n_center_sample = {sample}: same retained set in {same}/{reps} "
          f"({100 * same / reps:.0f}%), same centre in {centre_same}/{reps}, machines kept by one rule only: "
          f"mean {np.mean(differ):.1f} of {m}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: check that it runs")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 3
    print(f"dfmr {dfmr.__version__}; {os.cpu_count()} CPUs; K = {K}, d = {D}; medians of {repeat} runs; "
          "the machine may be shared: compare ratios, not absolute times")
    gemm = gemm_gflops(400 if args.quick else 2000, repeat)
    print(f"GEMM (numpy {400 if args.quick else 2000}^2 matmul): {gemm:.1f} GFLOP/s")
    scaling_table([25, 50] if args.quick else [25, 100, 200, 400, 1000], repeat, gemm)
    if args.quick:
        sharing(60, 1)
        sampled_centre(400, 100, n_starts=5, sample=20, repeat=1)
        agreement(60, 2, sample=20)
    else:
        sharing(1000, 1)
        sampled_centre(10_000, 1000, n_starts=10, sample=50, repeat=repeat)
        agreement(200, 20, sample=50)
        agreement(1000, 5, sample=50)
    print(f"GEMM again at the end: {gemm_gflops(400 if args.quick else 2000, repeat):.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
