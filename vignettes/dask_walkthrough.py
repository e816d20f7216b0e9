"""Walk-through: the same distributed fit on the embedded process pool and on dask.distributed.

Eight sites each keep their own data file. dfmr fits a local penalised MLE where each file is read
(never on the client), then aggregates the local estimates with DFMR. The same fit runs

1. on the embedded default, a process pool on this machine (nothing to start);
2. on a dask.distributed cluster (here a LocalCluster of two worker processes; with a real
   cluster, pass ``Client("scheduler-address:8786")``), from the same files;
3. on a dask array whose row chunks are the machines;

and gives the same mixture each time for the same ``random_state``. A site whose fit fails at run
time is reported in ``failed_machines_`` and left out; the others carry on.

Measured scale-out figures (1,000,000 and 5,000,000 points of d = 10; process pool, dask, and
scikit-learn's global GaussianMixture) are in ``vignettes/performance.md``, section "Scale-out on
Dask", with the command that printed them (``tests/benchmarks/bench_scale.py``).

Run: ``python vignettes/dask_walkthrough.py`` (set ``DFMR_VIGNETTE_OUT`` to keep the files).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import dfmr
from dfmr import metrics, simulate
from dfmr.sources import site_files


def main() -> None:
    out = Path(os.environ.get("DFMR_VIGNETTE_OUT") or tempfile.mkdtemp())
    sites = out / "sites"
    sites.mkdir(parents=True, exist_ok=True)
    truth = simulate.population()
    rng = np.random.default_rng(2026)
    for i in range(8):
        np.save(sites / f"site{i}.npy", truth.sample(2_500, rng)[0])
    files = site_files(sites)
    print(f"{len(files)} per-site files in {sites}: {', '.join(Path(f.path).name for f in files)}")

    settings = dict(n_components=5, aggregator="dfmr", random_state=0)

    # 1. The embedded default: a process pool; each worker reads its own file.
    pool = dfmr.DistributedGaussianMixture(**settings, backend="processes", n_jobs=2).fit_partitions(files)
    w1 = metrics.w1_distance(pool.mixture_, truth)
    print(f"\nprocess pool: {pool.n_machines_} machines, W1 to the population {w1:.4f}")

    # 2. The same fit on dask.distributed. Workers read the files; only local estimates come back.
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        on_dask = dfmr.DistributedGaussianMixture(**settings, backend="dask", client=client).fit_partitions(files)
        gap = np.abs(on_dask.means_ - pool.means_).max()
        print(f"dask cluster: {on_dask.n_machines_} machines, largest difference of the means from the pool: {gap:.1e}")

        # 3. A dask array: its row chunks are the machines, loaded lazily on the workers.
        chunks = [
            da.from_delayed(dask.delayed(np.load)(f.path), shape=(f.shape()[0], 10), dtype=np.float64) for f in files
        ]
        X = da.concatenate(chunks)
        from_array = dfmr.DistributedGaussianMixture(**settings, backend="dask").fit(X)  # the active client
        print(f"dask array with {X.numblocks[0]} row chunks: same mixture as the pool: "
              f"{np.allclose(from_array.means_, pool.means_, rtol=0, atol=1e-8)}")

        # A site whose data make its local fit fail (a constant column: singular sample covariance).
        broken = np.load(files[5].path)
        broken[:, 3] = 1.0
        np.save(sites / "site5.npy", broken)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            survivor = dfmr.DistributedGaussianMixture(**settings, backend="dask").fit_partitions(site_files(sites))
    print(f"\nwith site 5 broken: failed machines {survivor.failed_machines_}")
    print(f"aggregated the other {survivor.n_machines_} (machines {survivor.machine_indices_.tolist()}); "
          f"W1 to the population {metrics.w1_distance(survivor.mixture_, truth):.4f}")
    print()
    print(survivor.summary())


if __name__ == "__main__":
    main()
