"""Real data: handwritten digits split over machines, some of them Byzantine.

The paper's real-data example clusters handwritten digits (NIST features). This walk-through uses
scikit-learn's ``load_digits`` (1,797 8x8 images of the digits 0-9; it ships with scikit-learn, so
nothing is downloaded): each repetition splits the images at random into a training part (70 %) and
a held-out part (30 %), projects them on the first principal components of the training part, deals
the training rows over ``m`` machines, fits a K = 10 component penalised MLE on every machine,
replaces the estimates of a fraction of the machines by the paper's mean attack, and aggregates
with DFMR, MR, TKB and COAT. A global pMLE on all the training rows (what a single trusted machine
holding all the data would get) and the oracle (MR over the good machines) are the yardsticks.

Scores, on the held-out rows: the adjusted Rand index between each mixture's maximum-posterior
labels and the true digits, and the mean log-likelihood. The table gives mean and standard error
over the repetitions.

    python vignettes/real_data_digits.py                 # short configuration (2 splits), as in tests/run
    python vignettes/real_data_digits.py --splits 20     # the figures in vignettes/real_data_digits.md
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

import dfmr
from dfmr import metrics, simulate

METHODS = ("global", "DFMR", "MR", "TKB", "COAT", "oracle")


def one_split(X: np.ndarray, y: np.ndarray, seed: int, *, dim: int, machines: int, rate: float) -> dict:
    """ARI and held-out log-likelihood of every method on one random split."""
    rng = np.random.default_rng(seed)
    X_train, X_test, _, y_test = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    pca = PCA(n_components=dim, random_state=seed).fit(X_train)
    Z_train, Z_test = pca.transform(X_train), pca.transform(X_test)
    k = 10
    parts = simulate.split(Z_train, machines, rng)
    local = [dfmr.fit_local(part, k, random_state=rng) for part in parts]
    attacked, bad = simulate.attack(local, rate, kind="mean", level="machine", random_state=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # MR of attacked estimates may drop components
        fits = {
            "global": dfmr.fit_local(Z_train, k, random_state=rng),
            "DFMR": dfmr.dfmr(attacked, k).mixture,
            "MR": dfmr.mr(attacked, k).mixture,
            "TKB": dfmr.tkb(attacked, k).mixture,
            "COAT": dfmr.coat(attacked).mixture,
            "oracle": simulate.oracle(attacked, bad, k).mixture,
        }
    scores = {}
    for name, mix in fits.items():
        labels = np.argmax(mix.component_logpdf(Z_test) + np.log(mix.weights), axis=1)
        scores[name] = (metrics.ari(labels, y_test), metrics.log_likelihood(mix, Z_test))
    return scores


def run(splits: int, dim: int = 5, machines: int = 6, rate: float = 0.34, seed: int = 0) -> dict:
    """Scores of every method over ``splits`` random splits: ``{method: (ari array, loglik array)}``."""
    digits = load_digits()
    X, y = digits.data, digits.target
    per_split = [one_split(X, y, seed + s, dim=dim, machines=machines, rate=rate) for s in range(splits)]
    return {m: (np.array([s[m][0] for s in per_split]), np.array([s[m][1] for s in per_split])) for m in METHODS}


def _fmt(values: np.ndarray) -> str:
    se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return f"{values.mean():.3f} ± {se:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, default=2, help="random train/test splits (default: 2)")
    parser.add_argument("--dim", type=int, default=5, help="principal components kept (default: 5)")
    parser.add_argument("--machines", type=int, default=6, help="machines (default: 6)")
    parser.add_argument("--rate", type=float, default=0.34, help="failure rate (default: 0.34, 2 of 6 machines)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = run(args.splits, args.dim, args.machines, args.rate, args.seed)
    n_bad = simulate.attack(simulate.local_estimates_fixture()[: args.machines], args.rate)[1].size
    print(f"load_digits: 1,797 images, 10 digits; PCA to {args.dim} dimensions; {args.machines} machines, "
          f"{n_bad} under the mean attack; K = 10; {args.splits} random 70/30 splits (mean ± standard error)")
    print()
    print("| method | ARI (held-out, true digits) | held-out log-likelihood per image |")
    print("| --- | ---: | ---: |")
    for name in METHODS:
        ari, ll = results[name]
        print(f"| {name} | {_fmt(ari)} | {_fmt(ll)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
