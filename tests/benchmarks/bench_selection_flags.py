"""False flags of the second-round plausibility test (dfmr.selection.flag_sites) on honest sites (issue 22).

A three-component population in d = 2; twenty fixed candidates (scikit-learn's fits of K = 1..5 x full,
spherical, diag, tied on 20,000 points of it: any parameters would do, the candidates far from the truth
give the most skewed per-observation values). Each replicate draws fresh data for m honest sites of n
points, computes every site's log-likelihood and entropy of every candidate (site_values) and counts the
sites flag_sites flags at its default level 0.001, with the candidates' parameter counts as
criterion_table passes them (the materiality floor). Prints, per (m, n), the replicates with some site
flagged and the number of sites flagged.

    PYTHONPATH=python OMP_NUM_THREADS=1 python tests/benchmarks/bench_selection_flags.py
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.mixture import GaussianMixture

import dfmr
from dfmr import selection
from dfmr.covariance import get_model


def candidates(pop: dfmr.GaussianMixtureParams) -> list[dfmr.GaussianMixtureParams]:
    big, _ = pop.sample(20000, random_state=0)
    out = []
    for t in ("full", "spherical", "diag", "tied"):
        model = get_model(t, 2)
        for k in range(1, 6):
            gm = GaussianMixture(k, covariance_type=t, random_state=0).fit(big)
            out.append(dfmr.GaussianMixtureParams(gm.weights_, gm.means_, model.from_sklearn(gm.covariances_, k, 2,
                                                                                             layout=t),
                                                  covariance_type=model.name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["5x180x200", "8x300x100", "16x1000x50"],
                        help="m x n x replicates")
    args = parser.parse_args()
    pop = dfmr.GaussianMixtureParams([0.5, 0.3, 0.2], [[0, 0], [4, 0], [0, 5]],
                                     [np.eye(2), [[1, 0.6], [0.6, 1.5]], np.diag([2, 0.5])])
    cands = candidates(pop)
    ks = [c.n_components for c in cands]
    ps = [get_model(c.covariance_type, 2).n_parameters(c.n_components, 2) for c in cands]
    for setting in args.settings:
        m, n, reps = map(int, setting.split("x"))
        rng = np.random.default_rng(1)
        hit = sites = 0
        for _ in range(reps):
            X, _ = pop.sample(m * n, rng)
            values = [selection.site_values(x, cands) for x in np.split(X, m)]
            flags = selection.flag_sites(np.array([v[0] for v in values]), [n] * m, np.array([v[1] for v in values]),
                                         n_components=ks, n_parameters=ps)
            hit += flags.any()
            sites += flags.sum()
        print(f"{m} honest sites of {n} points, {len(cands)} candidates: some site flagged in {hit}/{reps} "
              f"replicates, {sites} site flags in all", flush=True)


if __name__ == "__main__":
    main()
