"""The whole distributed fit against one global scikit-learn fit (the paper's set-up, issue 7).

For every size N (default 1e5, 1e6, 5e6) and 5 data seeds, N points are drawn from the shipped
population (K = 5, d = 10) and, alternating in the same process:

- ``DistributedGaussianMixture(5, n_machines=20, backend="processes")`` fits them end to end
  (local penalised MLE on every machine, then DFMR);
- ``sklearn.mixture.GaussianMixture(5)`` (its defaults) fits all of them at once;
- every machine's local fit (:func:`dfmr.local.fit_local` on the same kind of split) is timed on
  its own (CPU time, one BLAS thread as in the workers), for the straggler ratio slowest / median
  machine;
- at sizes up to ``--threads-up-to`` (1e6) the same fit with ``backend="threads"``.

Printed per size, each a median over the seeds of the per-seed figure: the wall-time ratio
dfmr / scikit-learn, the W1 distance of both fits to the truth, slowest / median machine time.

Then peak memory, each in a fresh process of its own:

- the client of a process-pool fit at ``--memory-n`` points (default 5e6), by ``fit(X)`` and by
  ``fit_partitions`` of the pieces: peak resident size of the client above its size before the
  data were loaded, in units of the data's size;
- scoring (``score_samples``) of 1e6 x 10 points by dfmr's estimator and by scikit-learn's:
  peak of memory allocated during the call (tracemalloc, which numpy reports to), and the ratio.

``--machines N`` prints instead every machine's local fit at N points for every seed: CPU time,
starts run and their final values (where stragglers come from).

Prints figures, asserts nothing. ``--quick`` for a smoke run (N = 10,000, one seed, memory runs at
N = 20,000). The machine may be shared: ratios come from runs alternated in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture

import dfmr
from dfmr import local, metrics, simulate
from dfmr._blas import single_threaded_blas

K, M = 5, 20


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def cpu_time(fn) -> float:
    """CPU seconds of ``fn()`` in this thread: a machine's work, unlike wall time unmoved by other load, and
    unlike the process's CPU time not charged with BLAS threads still spinning after scikit-learn's fit."""
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def sklearn_mixture(gm: GaussianMixture) -> dfmr.GaussianMixtureParams:
    return dfmr.GaussianMixtureParams(gm.weights_, gm.means_, gm.covariances_, normalize=True)


def compare(n: int, seeds: int, threads: bool) -> None:
    truth = simulate.population()
    rows: dict[str, list[float]] = {"ratio": [], "w1_dfmr": [], "w1_sklearn": [], "straggler": [],
                                    "t_dfmr": [], "t_sklearn": [], "threads": []}
    for seed in range(seeds):
        X, _ = truth.sample(n, np.random.default_rng(seed))
        est = dfmr.DistributedGaussianMixture(K, n_machines=M, backend="processes", random_state=seed)
        if seed % 2:  # alternate which of the two runs first
            gm, t_sk = timed(lambda X=X, seed=seed: GaussianMixture(K, random_state=seed).fit(X))
            est, t_df = timed(lambda est=est, X=X: est.fit(X))
        else:
            est, t_df = timed(lambda est=est, X=X: est.fit(X))
            gm, t_sk = timed(lambda X=X, seed=seed: GaussianMixture(K, random_state=seed).fit(X))
        if threads:
            with_threads = dfmr.DistributedGaussianMixture(K, n_machines=M, backend="threads", random_state=seed)
            rows["threads"].append(timed(lambda est=with_threads, X=X: est.fit(X))[1] / t_df)
        parts = simulate.split(X, M, np.random.default_rng(seed))
        # One BLAS thread, as in the pool's workers: with the default threads on a shared 2-core machine the
        # CPU time of a ~50 ms fit measured mostly BLAS threads spinning (earlier runs: 3.96 at 1e5).
        with single_threaded_blas():
            machine = [cpu_time(lambda part=part, j=j: local.fit_local(part, K, j)) for j, part in enumerate(parts)]
        rows["ratio"].append(t_df / t_sk)
        rows["t_dfmr"].append(t_df)
        rows["t_sklearn"].append(t_sk)
        rows["w1_dfmr"].append(metrics.w1_distance(est.mixture_, truth))
        rows["w1_sklearn"].append(metrics.w1_distance(sklearn_mixture(gm), truth))
        rows["straggler"].append(max(machine) / float(np.median(machine)))
    med = {key: float(np.median(value)) for key, value in rows.items() if value}
    print(f"N = {n:>9,}: dfmr {med['t_dfmr']:7.3f} s, sklearn {med['t_sklearn']:7.3f} s, "
          f"ratio {med['ratio']:.2f}x sklearn (target <= 0.7) | W1 to truth dfmr {med['w1_dfmr']:.4f}, "
          f"sklearn {med['w1_sklearn']:.4f} | slowest / median machine {med['straggler']:.2f} (target <= 2)"
          + (f" | threads / processes backend {np.median(rows['threads']):.2f}" if threads else ""), flush=True)


def machines(n: int, seeds: int) -> None:
    """Every machine's local fit on its own (one BLAS thread, CPU time): where the local time goes."""
    truth = simulate.population()
    for seed in range(seeds):
        X, _ = truth.sample(n, np.random.default_rng(seed))
        times = []
        with single_threaded_blas():
            for j, part in enumerate(simulate.split(X, M, np.random.default_rng(seed))):
                t0 = time.thread_time()
                fit = local.fit_local_detailed(part, K, j)
                times.append(time.thread_time() - t0)
                values = ", ".join(f"{v:.1f}" for v in fit.start_penalized_logliks)
                print(f"seed {seed} machine {j:2d}: {1e3 * times[-1]:6.1f} ms CPU, {len(fit.start_penalized_logliks)} "
                      f"starts run, result after {fit.n_iter} iterations; final values of the starts: {values}")
        print(f"seed {seed}: local CPU of all machines {sum(times):.3f} s, slowest / median machine "
              f"{max(times) / float(np.median(times)):.2f}", flush=True)


def _status_bytes(key: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak RSS since the last reset) of this process, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def child_client(path: str, how: str) -> dict[str, float]:
    """In a fresh process: client memory of a process-pool fit of the data saved at ``path``.

    ``how`` is ``fit`` (``fit(X)``: the client splits) or ``partitions`` (``fit_partitions`` of the
    20 pieces, loaded before the fit as the user would hold them). Two measures: the peak of memory
    allocated during the fit (tracemalloc, which numpy reports to) plus the data themselves, and the
    peak resident size (Linux VmHWM, reset once the data are loaded) above the resident size before the
    data were loaded. Not ``getrusage``'s ``ru_maxrss``: Linux keeps it across ``exec``, so a child
    started from a big parent reports the parent's size (earlier runs of this script printed 13.1x).
    """
    before = _status_bytes("VmRSS")
    X = np.load(path)
    data = np.array_split(X, M) if how == "partitions" else X
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # resets VmHWM to the current resident size
    tracemalloc.start()
    est = dfmr.DistributedGaussianMixture(K, n_machines=M, backend="processes", random_state=0)
    est.fit_partitions(data) if how == "partitions" else est.fit(X)
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"data": X.nbytes, "extra": _status_bytes("VmHWM") - before, "traced": X.nbytes + traced}


def child_score(path: str, which: str) -> dict[str, float]:
    """In a fresh process: memory allocated at the peak of ``score_samples`` on the data at ``path``."""
    X = np.load(path)
    fit_on = X[:20_000]
    if which == "dfmr":
        model = dfmr.DistributedGaussianMixture(K, n_machines=2, backend="serial", random_state=0).fit(fit_on)
    else:
        model = GaussianMixture(K, random_state=0).fit(fit_on)
    tracemalloc.start()
    model.score_samples(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"data": X.nbytes, "peak": peak}


def in_child(*args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(n_client: int, n_score: int) -> None:
    truth = simulate.population()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "X.npy")
        np.save(path, truth.sample(n_client, np.random.default_rng(0))[0])
        for how, call in (("fit", "fit(X)"), ("partitions", "fit_partitions(20 arrays)")):
            client = in_child("client", path, how)
            print(f"client memory, process pool, {call}, N = {n_client:,}: data + peak allocated during the fit "
                  f"{client['traced'] / client['data']:.2f}x the data; peak resident size above the process before "
                  f"the data {client['extra'] / client['data']:.2f}x (the data {client['data'] / 2**20:,.0f} MiB; "
                  "target <= 2)", flush=True)
        np.save(path, truth.sample(n_score, np.random.default_rng(1))[0])
        ours, theirs = in_child("score", path, "dfmr"), in_child("score", path, "sklearn")
        print(f"score_samples peak memory, {n_score:,} x 10: dfmr {ours['peak'] / 2**20:,.0f} MiB, scikit-learn "
              f"{theirs['peak'] / 2**20:,.0f} MiB = {ours['peak'] / theirs['peak']:.2f}x sklearn (target <= 1.2; "
              f"the data {ours['data'] / 2**20:,.0f} MiB)", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        kind, *rest = argv[1:]
        print(json.dumps(child_client(*rest) if kind == "client" else child_score(*rest)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 10,000, one seed, memory at N = 20,000")
    parser.add_argument("--sizes", type=float, nargs="*", default=[1e5, 1e6, 5e6],
                        help="N of the timed fits (none: memory only)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--memory-n", type=float, default=5e6)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--machines", type=float, default=None, metavar="N",
                        help="instead: every machine's local fit at N points, per seed (time, starts, values)")
    parser.add_argument("--threads-up-to", type=float, default=1e6,
                        help="also time the threads backend at sizes up to this")
    args = parser.parse_args(argv)
    sizes, seeds, n_client, n_score = [int(s) for s in args.sizes], args.seeds, int(args.memory_n), 1_000_000
    if args.quick:
        sizes, seeds, n_client, n_score = [10_000], 1, 20_000, 20_000
    if args.machines is not None:
        machines(int(args.machines), seeds)
        return 0
    print(f"K = {K}, d = 10, m = {M} machines, processes backend; {os.cpu_count()} CPUs; "
          f"median over {seeds} data seeds", flush=True)
    for n in sizes:
        compare(n, seeds, n <= args.threads_up_to)
    if not args.no_memory:
        memory(n_client, n_score)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
