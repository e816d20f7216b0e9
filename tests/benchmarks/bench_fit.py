"""The whole distributed fit against one global scikit-learn fit (the paper's set-up).

100,000 points from the shipped population over 20 machines: wall time of
``DistributedGaussianMixture(...).fit`` (local pMLE on every machine, then DFMR) and of
``sklearn.mixture.GaussianMixture(5).fit`` on all the data, with their W1 distances to the
truth. Prints figures, asserts nothing. ``--quick`` for a smoke run on 10,000 points.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.mixture import GaussianMixture

import dfmr
from dfmr import metrics, simulate


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    n, repeat = (10_000, 1) if args.quick else (100_000, args.repeat)
    truth = simulate.population()
    print(f"{n:,} points, 20 machines, K = 5, d = 10; {os.cpu_count()} CPUs; median of {repeat} runs")
    rows = {"dfmr (processes)": [], "dfmr (serial)": [], "sklearn global": []}
    w1 = {key: [] for key in rows}
    for seed in range(repeat):
        X, _ = truth.sample(n, np.random.default_rng(seed))
        for backend in ("processes", "serial"):
            est = dfmr.DistributedGaussianMixture(5, n_machines=20, backend=backend, random_state=seed)
            est, t = timed(lambda est=est, X=X: est.fit(X))
            rows[f"dfmr ({backend})"].append(t)
            w1[f"dfmr ({backend})"].append(metrics.w1_distance(est.mixture_, truth))
        gm, t = timed(lambda X=X, seed=seed: GaussianMixture(5, random_state=seed).fit(X))
        rows["sklearn global"].append(t)
        w1["sklearn global"].append(
            metrics.w1_distance(dfmr.GaussianMixtureParams(gm.weights_, gm.means_, gm.covariances_, normalize=True),
                                truth))
    base = float(np.median(rows["sklearn global"]))
    for key, times in rows.items():
        med = float(np.median(times))
        print(f"{key:<18} fit {med:7.3f} s   ({med / base:4.2f}x sklearn)   W1 to truth {np.median(w1[key]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
