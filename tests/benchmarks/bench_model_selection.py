"""Choosing (K, covariance model) across sites against centralised mclustBIC (issue 22).

Each replicate draws a population (K0 components; K0 = 1 a single Gaussian, else dfmr.mixsim with
the given MaxOmega; its average pairwise overlap is printed), m sites of n points, and runs the two
rounds by hand with dfmr.selection (what DistributedGaussianMixture does with a grid, but with the
attacked sites' messages replaced):

1. every site fits the whole grid (fit_grid_local, the estimator's defaults);
2. the server aggregates each candidate with robust_dfmr (sizes known) and constrains it to its model;
3. every site returns its log-likelihood and entropy of every aggregate (site_values);
4. criterion_table (two rounds), and one_round_loglik + criterion_table (one round).

References, both centralised mclust on the pooled clean data via Rscript: mclustBIC(x, G, modelNames) with its
default hierarchical start ("mclust"), and the same plus --mclust-starts seeded random hierarchical starts
(hcRandomPairs) merged by mclustBICupdate, the best BIC per (G, model) ("mclust best of starts"). The one round
is printed with one_round_loglik's default (the AIC density) and with the sites' own fits (surrogate="own").
--cache DIR keeps each replicate's rounds and reference results, so a rerun re-evaluates them in seconds.

With --byzantine, floor(0.2 m) sites are Byzantine in both rounds, the attack rotating over
replicates: round 1 the paper's mean / cov / weight attacks, a spurious far component added to every
fit ("add"), or corrupted site data (every point shifted by 5 standard deviations, "data"); round 2 a
lie that cancels the BIC penalty so that the largest K wins ("penalty"), or values from another
site's candidate ("shuffle").

Prints one line per replicate and the agreement rates; also the largest relative gap between the
two-round log-likelihood (summed over unflagged sites) and the pooled log-likelihood at the same
parameters, and the number of replicates where one site alone picks a smaller K than mclust.

    PYTHONPATH=python OMP_NUM_THREADS=1 python tests/benchmarks/bench_model_selection.py --reps 12
    PYTHONPATH=python OMP_NUM_THREADS=1 python tests/benchmarks/bench_model_selection.py --reps 12 --byzantine
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import pickle
import subprocess
import tempfile
import time

import numpy as np

import dfmr
from dfmr import selection
from dfmr.covariance import get_model
from dfmr.mixsim import _scale_for, overlap_matrix

# mclust names its one-component models XXX (full), XXI (diagonal), XII (spherical), X (1-D); at K = 1 the
# grid's models that coincide are compared through these classes.
ONE_COMPONENT = {"VVV": "XXX", "EEE": "XXX", "EVE": "XXX", "VEE": "XXX", "VVE": "XXX", "EEV": "XXX", "VEV": "XXX",
                 "EVV": "XXX", "VVI": "XXI", "EEI": "XXI", "VEI": "XXI", "EVI": "XXI", "VII": "XII", "EII": "XII",
                 "E": "X", "V": "X"}
ROUND1 = ("mean", "cov", "weight", "add", "data")
ROUND2 = ("penalty", "shuffle")
# robust_dfmr constrains its reduction to a model once the core takes covariance_type=; until then the
# aggregate is constrained afterwards (selection.project_to_model), as the estimator's grid does.
MODEL_AWARE = "covariance_type" in inspect.signature(dfmr.robust_dfmr).parameters


def population(K0: int, d: int, omega: float, rng: np.random.Generator,
               small: float = 0.0) -> dfmr.GaussianMixtureParams:
    if K0 == 1:
        A = rng.standard_normal((d, d))
        return dfmr.GaussianMixtureParams([1.0], rng.uniform(size=(1, d)), [A @ A.T / d + 0.1 * np.eye(d)])
    pop = dfmr.mixsim.mixsim(K0, d, omega, rng)
    if not small:
        return pop
    # One small cluster (weight `small`, the others equal), the covariances' common scale solved again so that
    # the largest pairwise overlap is still MaxOmega (MixSim's rule for given weights).
    weights = np.r_[small, np.full(K0 - 1, (1.0 - small) / (K0 - 1))]
    log_scale = _scale_for(weights, pop.means, pop.covariances, omega, 1e-8)
    if log_scale is None:
        raise ValueError(f"MaxOmega = {omega} is not reached with a cluster of weight {small}")
    return dfmr.GaussianMixtureParams(weights, pop.means, pop.covariances * math.exp(log_scale), normalize=True)


def mclust_choice(X: np.ndarray, ks: list[int], models: list[str],
                  starts: int = 0) -> dict[str, tuple[int, str, float]]:
    """mclustBIC's choice on the pooled data and its BIC (scikit-learn's sign: -2 log L + p log N).

    Returns {"default": ...} (mclustBIC's own hierarchical start) and, with ``starts`` > 0, {"best": ...}:
    mclustBIC also from ``starts`` seeded random hierarchical starts (``hcRandomPairs(x, seed = s)``), the
    best BIC per (G, model) kept by ``mclustBICupdate`` (mclust's documented cure for a poor EM maximum).
    Both are centralised mclust on the pooled data.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.csv")
        np.savetxt(path, X, delimiter=",")
        names = ",".join(f'"{m}"' for m in dict.fromkeys(models))
        grid = f"G = c({','.join(map(str, ks))}), modelNames = c({names}), verbose = FALSE"
        # mclust's hierarchical start runs on a random subset of large data: seeded, so that reruns agree.
        script = ("suppressMessages(library(mclust)); set.seed(0); "
                  f'x <- as.matrix(read.csv("{path}", header = FALSE)); '
                  f"b <- mclustBIC(x, {grid}); "
                  "s <- summary(b, x); cat(s$G, s$modelName, sprintf('%.6f', s$bic[1]), ''); "
                  f"for (j in seq_len({starts})) {{ "
                  f"r <- mclustBIC(x, {grid}, initialization = list(hcPairs = hcRandomPairs(x, seed = j))); "
                  "b <- mclustBICupdate(b, r) }; "
                  f"if ({starts} > 0) {{ s <- summary(b, x); cat(s$G, s$modelName, sprintf('%.6f', s$bic[1])) }}")
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=True).stdout.split()
    res = {"default": (int(out[0]), out[1], -float(out[2]))}
    if starts > 0:
        res["best"] = (int(out[3]), out[4], -float(out[5]))
    return res


def sklearn_bic(X: np.ndarray, k: int, model: str) -> float:
    """scikit-learn's pooled BIC of its MLE with k components (8 starts) for an mclust model name of the grid."""
    from sklearn.mixture import GaussianMixture

    kind = {"VVV": "full", "XXX": "full", "V": "full", "X": "full", "VVI": "diag", "XXI": "diag", "E": "tied",
            "EEE": "tied", "VII": "spherical", "XII": "spherical"}[model]
    return float(GaussianMixture(k, covariance_type=kind, n_init=8, tol=1e-6, max_iter=1000, random_state=0)
                 .fit(X).bic(X))


def add_component(mix: dfmr.GaussianMixtureParams, rng: np.random.Generator) -> dfmr.GaussianMixtureParams:
    """A spurious component far from the data (weight 0.2) replacing the lightest one (K is kept)."""
    k = int(np.argmin(mix.weights))
    means, covs, w = mix.means.copy(), mix.covariances.copy(), mix.weights.copy()
    means[k] = mix.means.mean(axis=0) + 20 * np.sqrt(np.diag(mix.covariances.mean(axis=0))) * rng.choice([-1, 1])
    w[k] = 0.2
    return dfmr.GaussianMixtureParams(w / w.sum(), means, covs, covariance_type=mix.covariance_type)


def same_model(c: selection.Candidate, d: int) -> tuple[int, str]:
    """A choice as mclust names it: at K = 1 the models that differ only between components are one (e.g.
    EEE, EEV and VVV are all XXX), so one and two rounds choosing 1 EEE and 1 EEV agree."""
    name = get_model(c.covariance_type, d).name
    return c.n_components, ONE_COMPONENT[name] if c.n_components == 1 else name


def cache_path(args: argparse.Namespace, r: int) -> str | None:
    """The replicate's cache file: keyed by every argument that changes round 1 and round 2 (not --reps, the
    mclust starts or the cache itself) and by the replicate."""
    if not args.cache:
        return None
    key = {k: v for k, v in sorted(vars(args).items()) if k not in ("reps", "cache", "mclust_starts")}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(args.cache, f"{digest}-rep{r}.pkl")


def save(path: str | None, rec: dict) -> None:
    if path:
        with open(path + ".tmp", "wb") as f:
            pickle.dump(rec, f)
        os.replace(path + ".tmp", path)


def simulate(args: argparse.Namespace, r: int, rng: np.random.Generator, n_bad: int) -> dict:
    """Rounds 1 and 2 of replicate r (the expensive part): population, data, site fits, attacks, aggregates,
    the sites' round-2 values with the liars' lies."""
    ks = list(range(1, args.kmax + 1))
    K0, d = args.k0[r % len(args.k0)], args.dims[(r // len(args.k0)) % len(args.dims)]
    omega = args.omegas[r % len(args.omegas)]
    pop = population(K0, d, omega, rng, args.small_weight)
    # In 1-D full and diag are the same model (V): the grid keeps each model once, and so does mclust's.
    grid = selection.candidate_grid(ks, args.models, d)
    avg = float(np.mean(overlap_matrix(pop)[np.triu_indices(K0, 1)])) if K0 > 1 else 0.0
    X, _ = pop.sample(args.sites * args.n, rng)
    sites = np.split(X, args.sites)
    bad = np.sort(rng.choice(args.sites, n_bad, replace=False)) if n_bad else np.array([], int)
    attack1, attack2 = ROUND1[r % len(ROUND1)], ROUND2[r % len(ROUND2)]
    data = [s + 5 * s.std(axis=0) if (i in bad and attack1 == "data") else s for i, s in enumerate(sites)]
    fits = [selection.fit_grid_local(s, grid, rng.integers(2**32), n_init=args.n_init, penalty=args.penalty)
            for s in data]
    local = [[f.mixture for f in site] for site in fits]
    own = np.array([[f.loglik for f in site] for site in fits])
    for i in bad:
        for j in range(len(grid)):
            mix = local[i][j]
            if attack1 == "add":
                local[i][j] = add_component(mix, rng)
            elif attack1 in ("mean", "cov", "weight"):
                attacked, _ = dfmr.simulate.attack([mix, mix], 0.5, attack1, random_state=rng)
                local[i][j] = attacked[0] if attacked[0] is not mix else attacked[1]
    sizes = [args.n] * args.sites
    aggregates, robust_errors = [], []
    for j, c in enumerate(grid):
        model = {"covariance_type": get_model(c.covariance_type, d).name} if MODEL_AWARE else {}
        fits_j = [local[i][j] for i in range(args.sites)]
        try:
            res = dfmr.robust_dfmr(fits_j, c.n_components, n_samples=sizes, **model)
        except ValueError as exc:  # counted and printed: the replicate goes on with the paper's DFMR
            robust_errors.append(f"rep {r} K={c.n_components} {c.covariance_type}: {exc}")
            res = dfmr.dfmr(fits_j, c.n_components, n_samples=sizes, **model)
        aggregates.append(selection.project_to_model(res.mixture, c.covariance_type))
    values = [selection.site_values(s, aggregates) for s in data]
    ll = np.array([v[0] for v in values])
    ent = np.array([v[1] for v in values])
    if n_bad and attack2 == "penalty":
        p = np.array([c.n_parameters(d) for c in grid])
        ll[bad] += 1.5 * p * math.log(args.sites * args.n) / (2 * n_bad)
    elif n_bad:
        ll[bad] = ll[np.roll(bad, 1)][:, rng.permutation(len(grid))]
    return dict(K0=K0, d=d, omega=omega, avg=avg, grid=grid, X=X, bad=bad, attack1=attack1, attack2=attack2,
                local=local, own=own, sizes=sizes, aggregates=aggregates, robust_errors=robust_errors, ll=ll,
                ent=ent, rng_state=rng.bit_generator.state, mclust={}, sklearn={})


def one_round_variants(args: argparse.Namespace) -> dict[str, dict]:
    """The one-round estimates reported: selection.one_round_loglik's default and, where it offers one, the
    other site density (own fits / AIC surrogate), so that both are measured on the same replicates."""
    variants = {"one round": {}}
    if "surrogate" in inspect.signature(selection.one_round_loglik).parameters:
        variants = {"one round": {"surrogate": "aic"}, "one round (own fits)": {"surrogate": "own"}}
    return variants


def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    ks = list(range(1, args.kmax + 1))
    n_bad = int(math.floor(0.2 * args.sites)) if args.byzantine else 0
    refs = ["default"] + (["best"] if args.mclust_starts else [])
    ref_label = {"default": "mclust", "best": f"mclust best of {args.mclust_starts + 1} starts"}
    agree2 = dict.fromkeys(refs, 0)
    agree_k0 = dict.fromkeys(refs, 0)
    k0_found = dict.fromkeys(refs, 0)
    differ = dict.fromkeys(refs, 0)
    better = dict.fromkeys(refs, 0)
    pooled_prefers_ours = dict.fromkeys(refs, 0)
    variants = one_round_variants(args)
    agree1 = dict.fromkeys(variants, 0)
    flags1 = dict.fromkeys(variants, 0)
    honest1 = dict.fromkeys(variants, 0)
    smaller = 0
    worst_gap, flagged_honest, caught = 0.0, 0, 0
    gaps1: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    robust_errors: list[str] = []
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    print(f"grid K = 1..{args.kmax} x {args.models}; m = {args.sites}, n = {args.n} per site; n_init = {args.n_init}; "
          f"Byzantine sites: {n_bad}; small cluster weight: {args.small_weight or 'none'}; "
          f"site penalty: {'default' if args.penalty is None else args.penalty}; "
          f"mclust references: {', '.join(ref_label[k] for k in refs)}")
    for r in range(args.reps):
        t0 = time.time()
        path = cache_path(args, r)
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                rec = pickle.load(f)
            rng.bit_generator.state = rec["rng_state"]
            source = "cached"
        else:
            rec = simulate(args, r, rng, n_bad)
            save(path, rec)
            source = "computed"
        K0, d, grid, X, bad = rec["K0"], rec["d"], rec["grid"], rec["X"], rec["bad"]
        local, own, sizes, aggregates = rec["local"], rec["own"], rec["sizes"], rec["aggregates"]
        ll, ent = rec["ll"], rec["ent"]
        data = np.split(X, args.sites)
        if rec["attack1"] == "data":
            data = [s + 5 * s.std(axis=0) if i in bad else s for i, s in enumerate(data)]
        robust_errors += rec["robust_errors"]
        pairs = [(c.n_components, c.covariance_type) for c in grid]
        table = dfmr.criterion_table(pairs, ll, sizes, site_entropy=ent, n_features=d)
        best = grid[table.attrs["best"]]
        honest = np.setdiff1d(np.arange(args.sites), bad)
        flags = set(table["flagged_sites"].iloc[0])
        flagged_honest += len(flags & set(honest.tolist()))
        caught += len(flags & set(bad.tolist()))
        if not n_bad:  # with liars kept, their (false) values are in the sum by design
            kept = np.setdiff1d(np.arange(args.sites), sorted(flags))
            pooled = np.vstack([data[i] for i in kept])
            exact = np.array([a.logpdf(pooled).sum() for a in aggregates])
            worst_gap = max(worst_gap, float(np.max(np.abs(table["log_likelihood"] - exact) / np.abs(exact))))
        one = {}
        for name, kw in variants.items():
            # What the estimator's one round does (selection.one_round_table: the reported values' flags, the
            # implausible densities' NaN rows); the values themselves for the gaps below.
            approx, ent1 = selection.one_round_loglik(aggregates, local, own, sizes, random_state=r, **kw)
            if hasattr(selection, "one_round_table"):
                table1 = selection.one_round_table(pairs, aggregates, local, own, sizes, n_features=d,
                                                   random_state=r, **kw)
            else:
                table1 = dfmr.criterion_table(pairs, approx, sizes, site_entropy=ent1, n_features=d,
                                              flagged=selection.flag_sites(own, sizes))
            one[name] = grid[table1.attrs["best"]]
            agree1[name] += same_model(one[name], d) == same_model(best, d)
            flags1[name] += len(set(table1["flagged_sites"].iloc[0]) & set(bad.tolist()))
            honest1[name] += len(set(table1["flagged_sites"].iloc[0]) & set(honest.tolist()))
            # How far the one-round log-likelihood is from the exact (two-round) one, over the sites both keep.
            both = np.setdiff1d(np.arange(args.sites), sorted(flags | set(table1["flagged_sites"].iloc[0])))
            diff = approx[both].sum(axis=0) - ll[both].sum(axis=0)
            gap1 = np.abs(diff)
            # What a choice depends on: the error of each candidate's contrast with the two rounds' choice.
            contrast = np.abs(diff - diff[table.attrs["best"]])
            gaps1[name].append((float(gap1.max()), float(np.median(gap1)),
                                float(np.max(gap1 / np.abs(ll[both].sum(axis=0)))),
                                float(np.median(np.delete(contrast, table.attrs["best"])))))
        if args.mclust_starts not in rec["mclust"]:
            rec["mclust"][args.mclust_starts] = mclust_choice(X, ks, [get_model(c.covariance_type, d).name
                                                                      for c in grid], args.mclust_starts)
            save(path, rec)
        mc = rec["mclust"][args.mclust_starts]
        ours = (best.n_components, get_model(best.covariance_type, d).name)
        our_bic = -2.0 * aggregates[table.attrs["best"]].logpdf(X).sum() + best.n_parameters(d) * math.log(len(X))
        line = []
        for ref in refs:
            G, model, mclust_bic = mc[ref]
            same = (ours[0], ONE_COMPONENT[ours[1]] if ours[0] == 1 else ours[1]) == (G, model)
            agree2[ref] += same
            line.append(f"{ref_label[ref]} {G} {model}")
            if G == K0:
                k0_found[ref] += 1
                agree_k0[ref] += best.n_components == K0
            if same:
                continue
            differ[ref] += 1
            # The pooled clean data's BIC at our chosen aggregate against mclust's best BIC (its EM from a
            # hierarchical start can miss a better maximum, e.g. a small cluster), and which K the pooled data
            # prefer at the best maxima found: scikit-learn's MLE from 8 starts at both choices, our aggregate,
            # mclust's own fit (the lowest BIC at each choice counts).
            better[ref] += our_bic < mclust_bic
            for key in (ours, (G, model)):
                if key not in rec["sklearn"]:
                    rec["sklearn"][key] = sklearn_bic(X, *key)
                    save(path, rec)
            ref_ours = min(our_bic, rec["sklearn"][ours])
            ref_mclust = min(mclust_bic, rec["sklearn"][(G, model)])
            pooled_prefers_ours[ref] += ref_ours < ref_mclust
            line.append(f"pooled BIC ours {our_bic:.1f} vs {ref_label[ref]} {mclust_bic:.1f}; best maxima found: "
                        f"K = {ours[0]} {ref_ours:.1f}, K = {G} {ref_mclust:.1f} (pooled data prefer "
                        f"{'ours' if ref_ours < ref_mclust else 'mclust'}'s)")
        # Does one site alone (its own fits, its own BIC) choose a smaller K than the pooled data?
        site_bic = -2 * own + np.array([c.n_parameters(d) for c in grid]) * math.log(args.n)
        site_k = [grid[int(np.argmin(row))].n_components for row in site_bic[honest]]
        smaller += min(site_k) < mc["default"][0]
        print(f"rep {r:2d} K0={K0} d={d:2d} MaxOmega={rec['omega']:.3f} avg overlap={rec['avg']:.4f} | "
              + " | ".join(line[:1] + [x for x in line[1:] if not x.startswith("pooled")])
              + f" | two rounds {ours[0]} {ours[1]} | "
              + " | ".join(f"{name} {b.n_components} {get_model(b.covariance_type, d).name}" for name, b in one.items())
              + f" | smallest site K {min(site_k)} | "
              + (f"attack {rec['attack1']}/{rec['attack2']} bad {bad.tolist()} flagged {sorted(flags)} | " if n_bad
                 else f"flagged {sorted(flags)} | ")
              + "".join(x + " | " for x in line if x.startswith("pooled"))
              + " | ".join(f"{name} gap max {gaps1[name][-1][0]:.1f} nats, contrast error median "
                           f"{gaps1[name][-1][3]:.1f}" for name in variants)
              + f" | {time.time() - t0:.0f} s ({source})", flush=True)
    R = args.reps
    for ref in refs:
        print(f"\ntwo rounds = {ref_label[ref]}'s (K, model): {agree2[ref]}/{R} = {agree2[ref] / R:.1%}")
        print(f"two rounds K = K0 where {ref_label[ref]} finds K0: {agree_k0[ref]}/{k0_found[ref]}")
        print(f"two rounds != {ref_label[ref]}'s with a better (lower) pooled BIC than its choice: "
              f"{better[ref]}/{differ[ref]}")
        print(f"two rounds != {ref_label[ref]}'s where the pooled data's best maxima found (scikit-learn, 8 starts, "
              f"or the fits themselves) prefer our K: {pooled_prefers_ours[ref]}/{differ[ref]}")
    print()
    for name in variants:
        print(f"{name} = two rounds: {agree1[name]}/{R} = {agree1[name] / R:.1%}")
        g = np.array(gaps1[name])
        print(f"{name} log-likelihood minus two-round, |sum over sites|: median over candidates "
              f"{np.median(g[:, 1]):.1f} nats, largest {g[:, 0].max():.1f} nats ({g[:, 2].max():.1e} relative); "
              f"its contrasts with the two rounds' choice, error: median over replicates of the median over "
              f"candidates {np.median(g[:, 3]):.1f} nats")
    print(f"replicates where one site alone picks a smaller K than mclust: {smaller}/{R}")
    print(f"largest relative gap, two-round log-likelihood vs pooled at the same parameters: {worst_gap:.2e}")
    print(f"honest sites flagged: {flagged_honest}; Byzantine sites flagged: {caught}/{n_bad * R}; by the one round: "
          + ", ".join(f"{flags1[name]}/{n_bad * R} and {honest1[name]} honest ({name})" for name in variants))
    print(f"candidates where robust_dfmr raised (aggregated by dfmr instead): {len(robust_errors)}")
    for line in robust_errors:
        print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--sites", type=int, default=16)
    parser.add_argument("--n", type=int, default=1000, help="points per site")
    parser.add_argument("--kmax", type=int, default=6)
    parser.add_argument("--n-init", type=int, default=16, help="starts of each local fit (the estimator's default: 16)")
    parser.add_argument("--models", nargs="+", default=["full", "diag"])
    parser.add_argument("--k0", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--omegas", type=float, nargs="+", default=[0.001, 0.01, 0.05], help="MixSim MaxOmega")
    parser.add_argument("--small-weight", type=float, default=0.0,
                        help="give one cluster this weight (K0 >= 2; the others equal, MaxOmega kept): populations "
                             "where one site alone picks a smaller K than the pooled data (0: MixSim's equal weights)")
    parser.add_argument("--penalty", type=float, default=None,
                        help="penalty multiplier of the sites' grid fits (fit_grid_local; default: its own, the "
                             "plain MLE; 1: DESIGN.md's local estimate, the grid before this option)")
    parser.add_argument("--byzantine", action="store_true", help="20%% Byzantine sites in both rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mclust-starts", type=int, default=4,
                        help="seeded random hierarchical starts (hcRandomPairs) merged into mclustBIC's default start "
                             "by mclustBICupdate: the second reference, 'mclust best of starts' (0: default only)")
    parser.add_argument("--cache", default=None,
                        help="directory (e.g. under /tmp) of one pickle per replicate: data, site fits, aggregates, "
                             "round-2 values, mclust's and scikit-learn's results; a rerun with the same arguments "
                             "re-evaluates the one round and the references in seconds")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
