"""Covariance models across sites (issue 21): distributed against global fits for every model, the
high-dimensional diagonal case, and the paper's attacks on populations of four models.

Prints figures, asserts nothing.

* ``distributed``: for each of mclust's 14 models (and E, V in one dimension), a population that
  belongs to the model (K = 3, d = 3), 12 machines of 1,000 points; the distributed fit
  (``DistributedGaussianMixture(covariance_type=model)``, aggregators robust_dfmr and mr) against the
  global fit of the same model on the pooled 12,000 points (``dfmr.fit_local``): W1 to the truth
  (ratio distributed / global; goal <= 1.1) and held-out log-likelihood per observation on 20,000 fresh
  points (global minus distributed; goal <= 0.01 nat), mean over the seeds.
* ``diag``: d = 20, K = 4, 10 sites of 400 points from a diagonal-covariance population; W1 of the
  distributed "diag" and "full" fits (goal: diag <= 0.7 x full) and of the global scikit-learn fits
  on the same 4,000 points, per seed and on average.
* ``attacks``: the paper's machine-level attacks (``dfmr.simulate.attack``: mean, cov, weight at rates
  0.1 to 0.4, seeds 0-2) on m = 20 local fits of 2,000 points of VVV, EEE, VVI and VII populations;
  W1 of robust_dfmr over the oracle's (MR over the honest machines), mean over seeds (the goal of
  tests/test_robust.py's paper suite: <= 1.10).

Run: ``python tests/benchmarks/bench_covariance_models.py`` (``--only distributed|diag|attacks``,
``--quick`` for one seed).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy.stats import special_ortho_group
from sklearn.mixture import GaussianMixture

import dfmr
from dfmr import GaussianMixtureParams, metrics, simulate
from dfmr.covariance import MODEL_NAMES


def population(name: str) -> GaussianMixtureParams:
    """K = 3 components in d = 3 (d = 1 for E and V) whose covariances belong to model ``name``."""
    if name in ("E", "V"):
        variances = [1.0, 2.2, 0.6] if name == "V" else [1.0] * 3
        return GaussianMixtureParams([0.2, 0.3, 0.5], [[0.0], [6.0], [-5.0]], np.reshape(variances, (3, 1, 1)),
                                     covariance_type=name)
    volume = [1.0, 1.6, 0.7] if name[0] == "V" else [1.0] * 3
    shapes = np.array([[2.0, 1.0, 0.5], [0.7, 1.5, 1.0], [1.2, 0.6, 1.4]])
    shapes = shapes if name[1] == "V" else (shapes[[0, 0, 0]] if name[1] == "E" else np.ones((3, 3)))
    shapes = shapes / np.exp(np.log(shapes).mean(axis=1, keepdims=True))
    rotations = special_ortho_group.rvs(3, size=3, random_state=2)
    rotations = rotations if name[2] == "V" else (rotations[[0, 0, 0]] if name[2] == "E" else np.stack([np.eye(3)] * 3))
    covariances = np.einsum("kij,kj,klj->kil", rotations, np.multiply(volume, shapes.T).T, rotations)
    means = [[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0]]
    return GaussianMixtureParams([0.2, 0.3, 0.5], means, covariances, covariance_type=name)


def distributed(seeds: range) -> None:
    m, n = 12, 1000
    print(f"Distributed (m = {m} machines of {n} points) against the global fit of the same model on {m * n} "
          f"points, mean over seeds {list(seeds)}: W1 ratio (goal <= 1.1), held-out loss in nat/obs (goal <= 0.01)")
    print(f"{'model':<7}{'W1 global':>11}{'robust W1x':>12}{'mr W1x':>9}{'robust loss':>13}{'mr loss':>10}{'s':>7}")
    worst = {"ratio": 0.0, "loss": -np.inf}
    for name in (*MODEL_NAMES, "E", "V"):
        rows = []
        start = time.perf_counter()
        for seed in seeds:
            truth = population(name)
            X = truth.sample(m * n, 1000 + seed)[0]
            test = truth.sample(20_000, 2000 + seed)[0]
            glob = dfmr.fit_local(X, 3, random_state=seed, covariance_type=name)
            row = [metrics.w1_distance(glob, truth)]
            losses = []
            for aggregator in ("robust_dfmr", "mr"):
                est = dfmr.DistributedGaussianMixture(3, covariance_type=name, n_machines=m, aggregator=aggregator,
                                                      backend="serial", random_state=seed).fit(X)
                row.append(metrics.w1_distance(est.mixture_, truth) / row[0])
                losses.append(float(glob.logpdf(test).mean() - est.score(test)))
            rows.append(row + losses)
        mean = np.mean(rows, axis=0)
        worst["ratio"] = max(worst["ratio"], mean[1])
        worst["loss"] = max(worst["loss"], mean[3])
        print(f"{name:<7}{mean[0]:>11.4f}{mean[1]:>12.3f}{mean[2]:>9.3f}{mean[3]:>13.4f}{mean[4]:>10.4f}"
              f"{time.perf_counter() - start:>7.1f}")
    print(f"worst over models (robust_dfmr): W1 ratio {worst['ratio']:.3f}, held-out loss {worst['loss']:.4f} nat/obs")


def diag_population(seed: int) -> GaussianMixtureParams:
    """d = 20, K = 4: means N(0, 1.5^2 I), diagonal covariances with variances log-uniform on [0.25, 4]."""
    rng = np.random.default_rng(seed)
    d, k = 20, 4
    variances = np.exp(rng.uniform(np.log(0.25), np.log(4.0), size=(k, d)))
    return GaussianMixtureParams(np.full(k, 1.0 / k), rng.normal(0.0, 1.5, size=(k, d)),
                                 variances[:, :, None] * np.eye(d), covariance_type="diag")


def diag(seeds: range) -> None:
    print("d = 20, K = 4, 10 sites of 400 points from a diagonal-covariance population: W1 to the truth")
    print(f"{'seed':<6}{'dist diag':>11}{'dist full':>11}{'ratio':>8}{'sklearn diag':>14}{'sklearn full':>14}")
    ratios = []
    for seed in seeds:
        truth = diag_population(seed)
        X = truth.sample(4000, 10 + seed)[0]
        w1 = {}
        for ct in ("diag", "full"):
            est = dfmr.DistributedGaussianMixture(4, covariance_type=ct, n_machines=10, backend="serial",
                                                  random_state=seed).fit(X)
            w1["dist " + ct] = metrics.w1_distance(est.mixture_, truth)
            gm = GaussianMixture(4, covariance_type=ct, n_init=4, random_state=seed).fit(X)
            cov = {"diag": lambda c: c[:, :, None] * np.eye(20), "full": lambda c: c}[ct](gm.covariances_)
            w1["sklearn " + ct] = metrics.w1_distance(GaussianMixtureParams(gm.weights_, gm.means_, cov), truth)
        ratios.append(w1["dist diag"] / w1["dist full"])
        print(f"{seed:<6}{w1['dist diag']:>11.3f}{w1['dist full']:>11.3f}{ratios[-1]:>8.3f}"
              f"{w1['sklearn diag']:>14.3f}{w1['sklearn full']:>14.3f}")
    print(f"mean ratio distributed diag / full: {np.mean(ratios):.3f} (goal <= 0.7)")


def attacks(seeds: range) -> None:
    m, n = 20, 2000
    print(f"Paper attacks, machine level, m = {m} fits of {n} points: W1 robust_dfmr / oracle, mean over seeds "
          f"{list(seeds)}")
    print(f"{'model':<7}{'attack':<8}" + "".join(f"{r:>7}" for r in (0.1, 0.2, 0.3, 0.4)))
    for name in ("VVV", "EEE", "VVI", "VII"):
        truth = population(name)
        loc = [dfmr.fit_local(truth.sample(n, 100 + i)[0], 3, random_state=i, n_init=4, covariance_type=name)
               for i in range(m)]
        for kind in ("mean", "cov", "weight"):
            cells = []
            for rate in (0.1, 0.2, 0.3, 0.4):
                ratios = []
                for seed in seeds:
                    att, bad = simulate.attack(loc, rate, kind, "machine", random_state=seed)
                    oracle = dfmr.mr([loc[i] for i in range(m) if i not in bad], 3).mixture
                    ratios.append(metrics.w1_distance(dfmr.robust_dfmr(att, 3).mixture, truth)
                                  / metrics.w1_distance(oracle, truth))
                cells.append(np.mean(ratios))
            print(f"{name:<7}{kind:<8}" + "".join(f"{c:>7.3f}" for c in cells))


def clean(seeds: range) -> None:
    """robust_dfmr against MR on clean federations: W1 to the truth and squared weight error."""
    m, n = 20, 2000
    print(f"No attack, m = {m} fits of {n} points, federations {list(seeds)}: mean W1 robust_dfmr / MR (all "
          "machines honest), and the mean squared weight error robust_dfmr / MR")
    print(f"{'model':<7}{'W1 ratio':>10}{'max':>8}{'weight MSE ratio':>18}{'machines dropped':>18}")
    for name in ("VVV", "EEE", "VVI", "VII"):
        truth = population(name)
        ratios, err_r, err_m, dropped = [], [], [], 0
        for seed in seeds:
            loc = [dfmr.fit_local(truth.sample(n, 1000 * (seed + 1) + i)[0], 3, random_state=i, n_init=4,
                                  covariance_type=name) for i in range(m)]
            res, ref = dfmr.robust_dfmr(loc, 3), dfmr.mr(loc, 3).mixture
            ratios.append(metrics.w1_distance(res.mixture, truth) / metrics.w1_distance(ref, truth))
            err_r.append(np.sum((np.sort(res.mixture.weights) - np.sort(truth.weights)) ** 2))
            err_m.append(np.sum((np.sort(ref.weights) - np.sort(truth.weights)) ** 2))
            dropped += m - res.retained.size
        print(f"{name:<7}{np.mean(ratios):>10.3f}{np.max(ratios):>8.3f}{np.sum(err_r) / np.sum(err_m):>18.3f}"
              f"{dropped:>18}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("distributed", "diag", "attacks", "clean"), help="run one part only")
    parser.add_argument("--quick", action="store_true", help="one seed")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # convergence notes of single local fits; the figures say what matters
    parts = {"distributed": (distributed, range(3)), "diag": (diag, range(5)), "attacks": (attacks, range(3)),
             "clean": (clean, range(20))}
    for name, (run, seeds) in parts.items():
        if args.only in (None, name):
            run(range(1) if args.quick else seeds)
            print()


if __name__ == "__main__":
    main()
