"""Scale-out benchmark: dfmr on the process pool and on a 2-worker dask LocalCluster, against one global
scikit-learn ``GaussianMixture`` fit, at 1,000,000 x 10 over 20 machines and 5,000,000 x 10 over 100.

Data: the shipped population (K = 5, d = 10). Every configuration runs in a process of its own, so that
its peak memory is its own: wall time of the fit, peak RSS of the client process during the fit (Linux
VmHWM, reset after the data are generated, so sampling's temporaries do not count), reported with the
RSS after the imports subtracted and as a multiple of the data size, peak RSS of every child process
(sampled every 0.2 s: pool workers, or dask nannies and workers), W1 to the population.

- ``pool``: the client samples the data in memory and calls ``fit(X)`` with ``backend="processes"``.
- ``dask``: a dask array whose row chunks (the machines) are sampled on the workers; the client never
  holds the data; ``backend="dask"`` on a ``LocalCluster(n_workers=2, threads_per_worker=1)``.
- ``sklearn``: the client samples the data and fits ``sklearn.mixture.GaussianMixture(5)`` (defaults:
  one k-means start, max_iter 100) on all of it.
- ``spark`` (not in the default list: it needs ``pip install pyspark`` and a Java runtime, e.g. Debian's
  ``default-jre-headless``): Spark MLlib's ``GaussianMixture(k=5)`` (its defaults: tol 0.01, max_iter 100)
  in local mode on the same 2 cores (``local[2]``), on the same data written to Parquet beforehand; the
  timed part is reading the Parquet file, assembling the feature vectors and the fit. Its client is the
  Python driver, and the JVM is a child process.
- ``spark-dfmr`` (not in the default list either): dfmr's Spark backend on the same Spark, the same
  Parquet data with a ``site`` column (machine ``i``: rows ``i * N / m`` to ``(i + 1) * N / m``), fitted
  by ``fit(df, site_col="site")`` with ``backend="spark"``; timed as ``spark``: reading the file and the
  fit. The local fits run in Spark's Python workers (children of the JVM).

Prints one line per configuration and asserts nothing. ``--quick`` for a smoke run at 20,000 x 10.
Usage: ``python tests/benchmarks/bench_scale.py [--sizes 1e6:20 5e6:100] [--configs pool dask sklearn]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

N_COMPONENTS = 5
N_WORKERS = 2


class ChildPeaks:
    """Largest RSS seen for every child process (recursively), sampled in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._me = psutil.Process()
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            for child in self._me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                except Exception:  # the child exited between listing and reading
                    continue
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), rss)
            self._stop.wait(interval)

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _sample_chunk(n: int, seed: int) -> np.ndarray:
    from dfmr import simulate

    return simulate.population().sample(n, np.random.default_rng(seed))[0]


def _rss_mb(field: str) -> float:
    """VmRSS or VmHWM (peak since the last reset) of this process, in MB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # resets VmHWM to the current RSS


def run_one(config: str, n: int, m: int, seed: int) -> dict:
    """One configuration, in this process; returns its figures."""
    import dfmr
    from dfmr import metrics, simulate

    truth = simulate.population()
    out: dict = {"config": config, "n": n, "machines": m}
    if config == "sklearn":
        from sklearn.mixture import GaussianMixture
    elif config in ("spark", "spark-dfmr"):
        return _run_spark(n, m, seed, truth, out, dfmr_backend=config == "spark-dfmr")
    else:
        import dask.array  # noqa: F401  (imports before the baseline, as for the others)
        import distributed  # noqa: F401
    baseline = _rss_mb("VmRSS")
    with ChildPeaks() as children:
        if config == "dask":
            import dask
            import dask.array as da
            from distributed import Client, LocalCluster

            sizes = [n // m + (1 if i < n % m else 0) for i in range(m)]
            chunks = [
                da.from_delayed(dask.delayed(_sample_chunk)(size, seed * 1_000 + i), (size, truth.dim), np.float64)
                for i, size in enumerate(sizes)
            ]
            X = da.concatenate(chunks)
            _reset_peak()
            with LocalCluster(
                n_workers=N_WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster, Client(cluster) as client:
                t0 = time.perf_counter()
                est = dfmr.DistributedGaussianMixture(
                    N_COMPONENTS, backend="dask", client=client, random_state=seed
                ).fit(X)
                out["seconds"] = time.perf_counter() - t0
            mixture = est.mixture_
        else:
            X = truth.sample(n, np.random.default_rng(seed))[0]
            _reset_peak()
            t0 = time.perf_counter()
            if config == "pool":
                est = dfmr.DistributedGaussianMixture(
                    N_COMPONENTS, n_machines=m, backend="processes", n_jobs=N_WORKERS, random_state=seed
                ).fit(X)
                mixture = est.mixture_
            else:
                gm = GaussianMixture(N_COMPONENTS, random_state=seed).fit(X)
                mixture = dfmr.GaussianMixtureParams(gm.weights_, gm.means_, gm.covariances_, normalize=True)
            out["seconds"] = time.perf_counter() - t0
    out["client_peak_mb"] = _rss_mb("VmHWM") - baseline
    out["children_peak_mb"] = sorted((rss / 2**20 for rss in children.peaks.values()), reverse=True)
    out["w1"] = float(metrics.w1_distance(mixture, truth))
    return out


def _run_spark(n: int, m: int, seed: int, truth, out: dict, dfmr_backend: bool) -> dict:
    import tempfile

    import pandas as pd
    from pyspark.ml.clustering import GaussianMixture
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import SparkSession

    import dfmr
    from dfmr import metrics

    X = truth.sample(n, np.random.default_rng(seed))[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.parquet")
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        if dfmr_backend:
            frame["site"] = np.arange(n) * m // n
        frame.to_parquet(path)
        del X, frame
        baseline = _rss_mb("VmRSS")
        with ChildPeaks() as children:
            spark = (SparkSession.builder.master(f"local[{N_WORKERS}]").config("spark.driver.memory", "8g")
                     .config("spark.ui.enabled", "false").getOrCreate())
            _reset_peak()
            t0 = time.perf_counter()
            df = spark.read.parquet(path)
            if dfmr_backend:
                est = dfmr.DistributedGaussianMixture(
                    N_COMPONENTS, backend="spark", client=spark, random_state=seed
                ).fit(df, site_col="site")
                out["seconds"] = time.perf_counter() - t0
                mixture = est.mixture_
            else:
                features = VectorAssembler(inputCols=df.columns, outputCol="features").transform(df).select("features")
                model = GaussianMixture(k=N_COMPONENTS, seed=seed).fit(features)
                out["seconds"] = time.perf_counter() - t0
                gaussians = model.gaussiansDF.collect()
                mixture = dfmr.GaussianMixtureParams(
                    np.asarray(model.weights), [np.asarray(g["mean"]) for g in gaussians],
                    [g["cov"].toArray() for g in gaussians], normalize=True,
                )
            spark.stop()
    out["client_peak_mb"] = _rss_mb("VmHWM") - baseline
    out["children_peak_mb"] = sorted((rss / 2**20 for rss in children.peaks.values()), reverse=True)
    out["w1"] = float(metrics.w1_distance(mixture, truth))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1e6:20", "5e6:100"], help="N:machines pairs")
    parser.add_argument("--configs", nargs="+", default=["pool", "dask", "sklearn"],
                        help="any of pool, dask, sklearn, spark, spark-dfmr (the last two need pyspark and Java)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one smoke run at 20,000 x 10 over 4 machines")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: config:n:m, run in this process
    args = parser.parse_args(argv)
    if args.one:
        config, n, m = args.one.split(":")
        print(json.dumps(run_one(config, int(n), int(m), args.seed)))
        return 0
    sizes = ["2e4:4"] if args.quick else args.sizes
    print(f"{os.cpu_count()} CPUs (shared with other jobs; load average {os.getloadavg()[0]:.1f}); "
          f"K = {N_COMPONENTS}, d = 10; {N_WORKERS} workers for dfmr")
    for size in sizes:
        n_text, m_text = size.split(":")
        n, m = int(float(n_text)), int(m_text)
        data_mb = n * 10 * 8 / 2**20
        print(f"\n{n:,} x 10 ({data_mb:.0f} MB of float64) over {m} machines")
        base = None
        for config in args.configs:
            proc = subprocess.run(
                [sys.executable, __file__, "--one", f"{config}:{n}:{m}", "--seed", str(args.seed)],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                print(f"  {config:<10} failed:\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            base = r["seconds"] if config == "sklearn" else base
            kids = ", ".join(f"{x:.0f}" for x in r["children_peak_mb"][:4]) or "none"
            print(f"  {config:<10} {r['seconds']:8.1f} s   client peak above imports {r['client_peak_mb']:6.0f} MB "
                  f"({r['client_peak_mb'] / data_mb:4.2f}x data)   child peaks [{kids}] MB   W1 {r['w1']:.4f}")
        if base is not None:
            print(f"  (sklearn global fit: {base:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
