"""Cost of choosing (K, covariance model) over a grid: dfmr against scikit-learn and mclust (issue 22).

N points are drawn from the shipped population (K0 = 5, d = 10). In one process, on the same cores:

- scikit-learn: the plain loop a user writes, ``GaussianMixture(k, covariance_type=t)`` with its
  defaults (n_init=1, tol=1e-3, k-means initialisation) fitted to the pooled data for every k in
  1..kmax and every type, and the lowest ``bic()`` kept;
- dfmr: ``DistributedGaussianMixture(n_components=range(1, kmax + 1), covariance_type=<the same
  types>, n_machines=20, backend="processes")`` (its defaults: robust DFMR, two rounds) on the same
  data: round 1 (every machine fits the grid), one aggregation per candidate, round 2;
- mclust (unless ``--no-mclust``): ``Mclust(x, G = 1:kmax, modelNames = <the same models>)`` in
  Rscript on the same data, timed inside R around the call (reading the data is not counted).

Prints each method's wall time and choice, and the ratios dfmr / scikit-learn (goal <= 0.7) and
dfmr / mclust (goal < 1). The machine may be shared: figures come from one run, in one process
(mclust in a child process started from it), one after the other.

    PYTHONPATH=python python tests/benchmarks/bench_selection_cost.py --n 100000
    PYTHONPATH=python python tests/benchmarks/bench_selection_cost.py --n 1000000
    PYTHONPATH=python python tests/benchmarks/bench_selection_cost.py --quick     # smoke run

With ``--site n`` it instead fits the grid on ONE site of n points, single-threaded, twice: the default
(screen, then refine the two best by the site's BIC) and ``refine=None`` (every candidate by the default
rule, the grid before the screen), and prints each one's CPU time and the candidates' objectives (the
grid's: the plain log-likelihood since fit_grid_local's plain-MLE fits; the screen's loss per candidate):

    PYTHONPATH=python OMP_NUM_THREADS=1 python tests/benchmarks/bench_selection_cost.py --site 50000
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture

import dfmr
from dfmr.covariance import get_model

POPULATION = Path(dfmr.__file__).parent / "data" / "mixsim_K5_d10_omega0.1_seed1.npz"


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children (the worker pools)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def sklearn_grid(X: np.ndarray, ks: list[int], types: list[str], seed: int) -> tuple[tuple[int, str], float, float]:
    t0, c0 = time.perf_counter(), cpu_seconds()
    best, best_bic = None, np.inf
    for t in types:
        for k in ks:
            bic = GaussianMixture(k, covariance_type=t, random_state=seed).fit(X).bic(X)
            if bic < best_bic:
                best, best_bic = (k, t), bic
    return best, time.perf_counter() - t0, cpu_seconds() - c0


def dfmr_grid(X: np.ndarray, ks: list[int], types: list[str], machines: int, seed: int,
              n_jobs: int | None) -> tuple[tuple[int, str], float, float]:
    t0, c0 = time.perf_counter(), cpu_seconds()
    est = dfmr.DistributedGaussianMixture(n_components=ks, covariance_type=types, n_machines=machines,
                                          backend="processes", n_jobs=n_jobs, random_state=seed).fit(X)
    return (est.n_components_, est.covariance_type_), time.perf_counter() - t0, cpu_seconds() - c0


def mclust_grid(X: np.ndarray, ks: list[int], models: list[str]) -> tuple[tuple[int, str], float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.bin")
        np.ascontiguousarray(X.T).tofile(path)  # column-major for R's matrix()
        script = (f'suppressMessages(library(mclust)); n <- {X.shape[0]}; d <- {X.shape[1]}; '
                  f'x <- matrix(readBin("{path}", "double", n * d), n, d); '
                  f"t <- system.time(fit <- Mclust(x, G = {min(ks)}:{max(ks)}, "
                  f"modelNames = c({','.join(repr(m) for m in models)}), verbose = FALSE)); "
                  "cat(fit$G, fit$modelName, t[['elapsed']], sum(t[c('user.self', 'sys.self')]))")
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=True).stdout.split()
    return (int(out[0]), out[1]), float(out[2]), float(out[3])


def site_grid(X: np.ndarray, ks: list[int], types: list[str], seed: int) -> None:
    """One site's grid, screened (the default) and refine=None, in this process; CPU time and per-candidate values."""
    from dfmr.selection import candidate_grid, fit_grid_local

    grid = candidate_grid(ks, types, X.shape[1])
    results = {}
    for refine in (2, None):
        c0 = time.process_time()
        results[refine] = fit_grid_local(X, grid, seed, refine=refine)
        print(f"refine={refine}: {time.process_time() - c0:6.1f} s CPU", flush=True)
    bic = [-2 * f.loglik + c.n_parameters(X.shape[1]) * np.log(X.shape[0]) for c, f in zip(grid, results[2])]
    order = np.argsort(bic)
    print("candidate        site BIC rank  objective:        screened   refine=None   difference  starts  iterations")
    for j, c in enumerate(grid):
        s, f = results[2][j], results[None][j]
        print(f"K = {c.n_components} {c.covariance_type:<10} {int(np.where(order == j)[0][0]) + 1:>6}  "
              f"{s.penalized_loglik:22.1f} {f.penalized_loglik:13.1f} {s.penalized_loglik - f.penalized_loglik:12.1f}"
              f"  {len(s.start_penalized_logliks)}/{len(f.start_penalized_logliks)}  {s.n_iter}/{f.n_iter}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=float, default=1e5, help="total points N")
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--kmax", type=int, default=9)
    parser.add_argument("--types", nargs="+", default=["full", "tied", "diag", "spherical"])
    parser.add_argument("--n-jobs", type=int, default=None, help="dfmr's worker processes (default: every CPU)")
    parser.add_argument("--no-mclust", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 4,000, K = 1..3, two types, no mclust")
    parser.add_argument("--only", choices=("sklearn", "dfmr", "mclust"), default=None,
                        help="run one method alone on the same sample and print its line (no ratio): at N = 1e6, "
                        "where one loop takes an hour, the three can run as separate processes")
    parser.add_argument("--site", type=float, default=None, help="one site of this many points: screened grid "
                        "against refine=None (nothing else)")
    args = parser.parse_args()
    # Candidates with more components than the population warn that the sites' proportions differ; the cost
    # is what is measured here.
    warnings.simplefilter("ignore", UserWarning)
    if args.quick:
        args.n, args.kmax, args.types, args.machines, args.no_mclust = 4000, 3, ["full", "spherical"], 4, True
    pop = dfmr.GaussianMixtureParams.from_dict({k: v for k, v in np.load(POPULATION).items()
                                                if k in ("weights", "means", "covariances")})
    ks = list(range(1, args.kmax + 1))
    if args.site is not None:
        X, _ = pop.sample(int(args.site), random_state=args.seed)
        print(f"one site: n = {X.shape[0]:,}, d = {X.shape[1]}, grid K = 1..{args.kmax} x {args.types}")
        site_grid(X, ks, args.types, args.seed)
        return
    X, _ = pop.sample(int(args.n), random_state=args.seed)
    models = [get_model(t, X.shape[1]).name for t in args.types]
    print(f"N = {X.shape[0]:,}, d = {X.shape[1]}, grid K = 1..{args.kmax} x {args.types} "
          f"({len(ks) * len(args.types)} models), {args.machines} machines, {os.cpu_count()} CPUs")
    if args.only in (None, "sklearn"):
        sk_choice, sk_time, sk_cpu = sklearn_grid(X, ks, args.types, args.seed)
        print(f"scikit-learn loop: {sk_time:7.1f} s wall, {sk_cpu:7.1f} s CPU, chose K = {sk_choice[0]}, "
              f"{sk_choice[1]}", flush=True)
    if args.only in (None, "dfmr"):
        ours, our_time, our_cpu = dfmr_grid(X, ks, args.types, args.machines, args.seed, args.n_jobs)
        print(f"dfmr grid:         {our_time:7.1f} s wall, {our_cpu:7.1f} s CPU, chose K = {ours[0]}, {ours[1]}",
              flush=True)
    if args.only == "mclust":
        mc_choice, mc_time, mc_cpu = mclust_grid(X, ks, models)
        print(f"mclust Mclust:     {mc_time:7.1f} s wall, {mc_cpu:7.1f} s CPU, chose G = {mc_choice[0]}, "
              f"{mc_choice[1]}")
    if args.only is not None:
        return
    # On a shared machine the wall-time ratio moves with the load between the two runs; the CPU-time ratio
    # is steadier (both use the same 2 cores: scikit-learn through BLAS threads, dfmr through processes).
    print(f"dfmr / scikit-learn: {our_time / sk_time:.2f} wall, {our_cpu / sk_cpu:.2f} CPU (goal <= 0.7)", flush=True)
    if not args.no_mclust:
        mc_choice, mc_time, mc_cpu = mclust_grid(X, ks, models)
        print(f"mclust Mclust:     {mc_time:7.1f} s wall, {mc_cpu:7.1f} s CPU, "
              f"chose G = {mc_choice[0]}, {mc_choice[1]}")
        print(f"dfmr / mclust: {our_time / mc_time:.2f} wall, {our_cpu / mc_cpu:.2f} CPU (goal < 1)")


if __name__ == "__main__":
    main()
