"""Coverage of the 95% intervals of dfmr.inference per covariance model (issue 21).

For VII, VVI, EEE and VEV populations (K = 3, d = 3, the populations of
bench_covariance_models.py), each repetition draws fresh data on 8 machines of 1,000 points, fits
every machine in the model (``fit_local``), aggregates with MR and with robust_dfmr (the
estimator's default) and computes the information and jackknife intervals
(``inference.infer(...).conf_int``, which ``confidence_intervals()`` reports). The truth's
components are matched to the aggregate's (minimum KL). Counted: every interval of positive width
(the model's fixed entries, e.g. VII's off-diagonal covariances, have width 0 and are left out; a
shared entry such as EEE's matrix is counted once per component). Printed per model, aggregator
and method: the number of intervals and the coverage with its binomial standard error, overall
and for weights, means and covariance entries. Asserts nothing.

Run: ``python tests/benchmarks/bench_covariance_coverage.py`` (``--reps R``, ``--models VII,EEE``,
``--quick``).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_covariance_models import population  # noqa: E402

import dfmr  # noqa: E402
from dfmr import inference  # noqa: E402
from dfmr import information as inf  # noqa: E402

CASES = [("mr", "information"), ("mr", "jackknife"), ("robust_dfmr", "information"), ("robust_dfmr", "jackknife")]


def study(name: str, machines: int, n: int, reps: int, seed: int) -> dict:
    truth = population(name)
    k, d = truth.n_components, truth.dim
    q = d * (d + 1) // 2
    true_vec = inf.to_full_vector(truth)
    groups = np.r_[np.zeros(k), np.ones(k * d), np.full(k * q, 2)].astype(int)
    out: dict = {case: {"covered": [], "group": []} for case in CASES}
    gc.freeze()  # statsmodels' Holm adjustment calls gc.collect() on every call
    for rep in range(reps):
        rng = np.random.default_rng([seed, rep])
        parts = [truth.sample(n, rng)[0] for _ in range(machines)]
        local = [dfmr.fit_local(x, k, rng, covariance_type=name) for x in parts]
        results = {"mr": dfmr.mr(local, k, n_threads=1), "robust_dfmr": dfmr.robust_dfmr(local, k, n_threads=1)}
        for agg, method in CASES:
            res = inference.infer(results[agg], local, parts, method=method)
            order = inf.align(res.mixture, truth)
            idx = np.r_[order, (k + order[:, None] * d + np.arange(d)).ravel(),
                        (k + k * d + order[:, None] * q + np.arange(q)).ravel()]
            ci = res.conf_int(0.05).to_numpy()[idx]
            keep = ci[:, 1] > ci[:, 0]
            out[agg, method]["covered"].append(((ci[:, 0] <= true_vec) & (true_vec <= ci[:, 1]))[keep])
            out[agg, method]["group"].append(groups[keep])
    gc.unfreeze()
    return {case: {key: np.concatenate(v) for key, v in rows.items()} for case, rows in out.items()}


def report(name: str, out: dict, seconds: float) -> None:
    print(f"\n{name} ({seconds:.0f} s): coverage of 95% intervals (+- binomial s.e.)")
    print(f"{'aggregator':<13}{'method':<13}{'intervals':>10}{'all':>16}{'weights':>10}{'means':>10}{'covariances':>13}")
    for (agg, method), res in out.items():
        c, g = res["covered"], res["group"]
        se = np.sqrt(c.mean() * (1 - c.mean()) / c.size)
        parts = [f"{c[g == j].mean():.3f}" if (g == j).any() else "-" for j in range(3)]
        print(f"{agg:<13}{method:<13}{c.size:>10d}{c.mean():>10.3f} +- {se:.3f}"
              f"{parts[0]:>10}{parts[1]:>10}{parts[2]:>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--models", default="VII,VVI,EEE,VEV")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repetitions of VII")
    args = parser.parse_args()
    models = ["VII"] if args.quick else args.models.split(",")
    reps = 2 if args.quick else args.reps
    machines, n = 8, 1000
    for name in models:
        t0 = time.perf_counter()
        out = study(name, machines, n, reps, seed=2121)
        report(f"{name}: K = 3, d = 3, {machines} machines x {n} points, {reps} repetitions", out,
               time.perf_counter() - t0)


if __name__ == "__main__":
    main()
