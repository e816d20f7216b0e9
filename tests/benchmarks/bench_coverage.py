"""Coverage and width of the 95% intervals of dfmr.inference, by aggregator and interval method.

Two settings (each repetition: fresh data, local pMLE fits on every machine, aggregation,
intervals; the truth's components matched to the aggregate's by minimum KL):

- ``1d``: the inference issue's 0.4 N(-2, 1) + 0.6 N(2, 1.5), 10 machines of 1,000 points;
- ``3d``: K = 3 well-separated components in d = 3 with correlated covariances, 10 machines of
  2,000 points (p = 29 parameters: weights, means and covariance entries).

For DFMR (with and without 20% mean-attacked machines) and MR, with the jackknife, the
information and (DFMR) the parametric bootstrap intervals, it prints the coverage per parameter group (weights, means,
covariance entries), the median interval width relative to the ideal one (2 z_0.975 times the
standard deviation of the estimates across repetitions) and the ratio of the estimates'
standard deviation to MR's. Prints figures, asserts nothing. ``--figures DIR`` saves the
vignette's plots; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np
from scipy import stats

import dfmr
from dfmr import inference, simulate
from dfmr import information as inf
from dfmr.local import fit_local
from dfmr.params import GaussianMixtureParams

SETTINGS = {
    "1d": (GaussianMixtureParams([0.4, 0.6], [[-2.0], [2.0]], [[[1.0]], [[1.5]]]), 10, 1000),
    "3d": (
        GaussianMixtureParams(
            [0.3, 0.3, 0.4],
            [[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 4.0, 3.0]],
            [
                [[1.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.0]],
                [[1.5, -0.4, 0.0], [-0.4, 1.0, 0.0], [0.0, 0.0, 0.8]],
                [[0.8, 0.0, 0.3], [0.0, 1.2, 0.0], [0.3, 0.0, 1.0]],
            ],
        ),
        10,
        2000,
    ),
}
CASES = [("dfmr", False, "jackknife"), ("dfmr", False, "information"), ("dfmr", False, "bootstrap"),
         ("mr", False, "information"), ("mr", False, "jackknife"), ("dfmr", True, "jackknife"),
         ("dfmr", True, "information"), ("dfmr", True, "bootstrap")]


def groups(k: int, d: int) -> dict[str, slice]:
    return {"weights": slice(0, k), "means": slice(k, k + k * d), "covariances": slice(k + k * d, None)}


def study(truth: GaussianMixtureParams, machines: int, n: int, reps: int, seed: int) -> dict:
    k, d = truth.n_components, truth.dim
    true_vec = inf.to_full_vector(truth)
    rows: dict = {case: {"covered": [], "width": [], "estimate": []} for case in CASES}
    gc.freeze()  # statsmodels' Holm adjustment calls gc.collect() on every call
    for rep in range(reps):
        rng = np.random.default_rng([seed, rep])
        parts = [truth.sample(n, rng)[0] for _ in range(machines)]
        local = [fit_local(x, k, rng) for x in parts]
        attacked, _ = simulate.attack(local, 0.2, kind="mean", random_state=rng)
        cache = {}
        for case in CASES:
            method, under_attack, interval = case
            mixtures = attacked if under_attack else local
            if (method, under_attack) not in cache:
                run = dfmr.dfmr if method == "dfmr" else dfmr.mr
                cache[method, under_attack] = run(mixtures, k, n_threads=1)
            res = inference.infer(cache[method, under_attack], mixtures, parts, method=interval)
            order = inf.align(res.mixture, truth)
            q = (d * (d + 1)) // 2
            idx = np.r_[order, (k + order[:, None] * d + np.arange(d)).ravel(),
                        (k + k * d + order[:, None] * q + np.arange(q)).ravel()]
            ci = res.conf_int(0.05).to_numpy()[idx]
            rows[case]["covered"].append((ci[:, 0] <= true_vec) & (true_vec <= ci[:, 1]))
            rows[case]["width"].append(ci[:, 1] - ci[:, 0])
            rows[case]["estimate"].append(res.params.to_numpy()[idx])
    gc.unfreeze()
    return {case: {key: np.asarray(v) for key, v in d.items()} for case, d in rows.items()}


def report(name: str, out: dict, k: int, d: int) -> None:
    z = stats.norm.ppf(0.975)
    sd_mr = out[("mr", False, "information")]["estimate"].std(axis=0, ddof=1)
    print(f"\n{name}: coverage of 95% intervals | median width / ideal width | sd / sd(MR)")
    print(f"{'aggregator':18s} {'intervals':12s}" + "".join(f"{g:>27s}" for g in groups(k, d)))
    for case, res in out.items():
        method, attacked, interval = case
        sd = res["estimate"].std(axis=0, ddof=1)
        ratio = np.median(res["width"], axis=0) / (2 * z * sd)
        cells = []
        for sl in groups(k, d).values():
            cells.append(f"{res['covered'][:, sl].mean():.3f} | {ratio[sl].mean():.2f} | {(sd / sd_mr)[sl].mean():.2f}")
        label = method + (" 20% attacked" if attacked else "")
        print(f"{label:18s} {interval:12s}" + "".join(f"{c:>27s}" for c in cells))


def figures(directory: Path) -> None:
    from dfmr import plots

    directory.mkdir(parents=True, exist_ok=True)
    truth, machines, n = SETTINGS["3d"]
    X, _ = truth.sample(machines * n, 7)
    est = dfmr.DistributedGaussianMixture(3, n_machines=machines, backend="serial", random_state=7).fit(X)
    attacked, bad = simulate.attack(est.local_mixtures_, 0.2, kind="mean", random_state=7)
    res = dfmr.dfmr(attacked, 3)
    parts = simulate.split(X, machines, np.random.default_rng(np.random.SeedSequence(7)))
    inf_res = inference.infer(res, attacked, parts)
    plots.plot_distance_matrix(res).savefig(directory / "inference_distances.png", dpi=80)
    plots.plot_center_distances(res).savefig(directory / "inference_cutoff.png", dpi=80)
    plots.plot_machine_pvalues(inf_res).savefig(directory / "inference_pvalues.png", dpi=80)
    est.infer(X, method="information")
    plots.plot_ellipses(est.aggregation_, est.local_mixtures_, X, est.inference_).savefig(
        directory / "inference_ellipses.png", dpi=80)
    print(f"\nfigures in {directory} (attacked machines {bad.tolist()})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 repetitions per setting (the fewest with a spread)")
    parser.add_argument("--reps-1d", type=int, default=400)
    parser.add_argument("--reps-3d", type=int, default=150)
    parser.add_argument("--figures", type=Path, default=None)
    parser.add_argument("--only", choices=sorted(SETTINGS), default=None, help="run one setting")
    args = parser.parse_args(argv)
    reps = {"1d": 2, "3d": 2} if args.quick else {"1d": args.reps_1d, "3d": args.reps_3d}
    for name, (truth, machines, n) in SETTINGS.items():
        if args.only is not None and name != args.only:
            continue
        t0 = time.perf_counter()
        out = study(truth, machines, n, reps[name], seed=2026)
        report(f"{name}: K = {truth.n_components}, d = {truth.dim}, {machines} machines x {n} points, "
               f"{reps[name]} repetitions ({time.perf_counter() - t0:.0f} s)", out, truth.n_components, truth.dim)
    if args.figures is not None:
        figures(args.figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
