"""Command-line interface: ``dfmr demo | aggregate | distances | fit | score | choose | simulate``.

Every user mistake (a bad option, a missing file, data that cannot be used) ends with one line
``dfmr: error: <what is wrong and what to do>`` on stderr and exit code 2, never a traceback.
Warnings (skipped files, dropped components) are printed as ``dfmr: warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from ._validation import check_int
from .aggregate import AggregationResult, coat, dfmr, mr, tkb
from .covariance import MODEL_NAMES, SKLEARN_TYPES, UNIVARIATE_MODEL_NAMES
from .distances import pairwise_l2
from .executor import BACKENDS, check_timeout
from .filtering import center_index
from .io import LoadedMixtures, load_mixtures, save_result
from .robust import robust_dfmr
from .selection import is_grid, local_choice
from .sites import SITE_WEIGHTS
from .summary import mixture_summary, text_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .params import GaussianMixtureParams

__all__ = ["main"]

_METHODS = ("robust_dfmr", "dfmr", "mr", "coat", "tkb")
_SITE_WEIGHTS_HELP = ("shared: the sites share the mixing proportions (the paper's iid model, default); free: each "
                      "site has its own, and the weights are a robust average of theirs")
_ATTACKS = ("mean", "cov", "weight")
_COVARIANCE_TYPES = (*SKLEARN_TYPES, *MODEL_NAMES, *UNIVARIATE_MODEL_NAMES)
_COVARIANCE_HELP = "scikit-learn's full, tied, diag, spherical or an mclust model name (EII, ..., VVV; E, V in 1-D)"


class UsageError(Exception):
    """A mistake the user can fix; :func:`main` prints it on one line and returns 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors become :class:`UsageError` instead of a usage dump and exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; run '{self.prog} --help' for usage.")


def _positive_int(text: str) -> int:
    try:
        return check_int(int(text), "value", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


def _positive_float(text: str) -> float:
    """An argparse type for a number of seconds: finite and > 0."""
    try:
        return check_timeout(float(text), "value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}") from None


def _components_arg(text: str) -> int | list[int]:
    """``-k``: one K, an inclusive range ``A:B`` (mclust's ``G = A:B``) or a comma-separated list."""
    try:
        if ":" in text:
            low, high = (int(part) for part in text.split(":"))
            values = list(range(low, high + 1))
        else:
            values = [int(part) for part in text.split(",")]
        if not values or min(values) < 1 or len(set(values)) != len(values):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer K, a range such as 1:9 or a list such as 2,3,5; got {text!r}") from None
    return values[0] if len(values) == 1 and ":" not in text and "," not in text else values


def _models_arg(text: str) -> str | list[str]:
    """``--covariance-type``: one model, a comma-separated list of models, or "all" (mclust's fourteen)."""
    from .selection import candidate_grid

    value: str | list[str] = text if "," not in text else text.split(",")
    try:
        candidate_grid(1, value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _float_in(low: float, high: float | None, closed_high: bool = False) -> Callable[[str], float]:
    """An argparse type accepting floats in ``[low, high)`` (``[low, high]`` if ``closed_high``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = high is not None and (value > high if closed_high else value >= high)
        if not np.isfinite(value) or value < low or above:
            bound = "infinity)" if high is None else f"{high:g}{']' if closed_high else ')'}"
            raise argparse.ArgumentTypeError(f"expected a number in [{low:g}, {bound}, got {text!r}")
        return value

    return parse


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="dfmr",
        description="Byzantine-tolerant aggregation of local Gaussian mixture estimates "
        "(distance-filtered mixture reduction).",
    )
    parser.add_argument("--version", action="version", version=f"dfmr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="attack the 20 shipped local estimates and compare DFMR, MR, COAT, TKB and the oracle",
        description="Load the paper's 20 local estimates (K = 5, d = 10), attack a fraction of the machines, "
        "aggregate with DFMR, MR, COAT, TKB and the oracle, and compare their W1 distances to the population.",
    )
    demo.add_argument("--attack", choices=_ATTACKS, default="mean", help="kind of Byzantine attack (default: mean)")
    demo.add_argument(
        "--rate", type=_float_in(0.0, 1.0), default=0.2, help="fraction of machines attacked, in [0, 1) (default: 0.2)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the attack (default: 0)")
    demo.add_argument("--plot", metavar="FILE.png", help="save a bar chart of the distances to the centre")
    demo.set_defaults(run=_cmd_demo)

    agg = sub.add_parser(
        "aggregate",
        help="aggregate local estimates read from files",
        description="Aggregate local estimates (.json or .npz files, or directories of them). "
        "Corrupt or invalid files are skipped and reported on stderr.",
    )
    agg.add_argument("paths", nargs="+", metavar="PATH", help="local estimate files or directories")
    agg.add_argument(
        "-k", "--n-components", type=_components_arg,
        help="number of components K (required except for coat, and when the estimates hold several K: each K "
        "is then aggregated separately; a range 1:9 or a list 2,3,5 keeps those K)"
    )
    agg.add_argument("--out-dir", metavar="DIR",
                     help="with several K or models: write each candidate's aggregate as DIR/K<k>_<model>.json, "
                     "to send back to the sites (the second round of model selection)")
    agg.add_argument("--method", choices=_METHODS, default="robust_dfmr",
                     help="aggregation method (default: robust_dfmr; dfmr is the paper's method)")
    agg.add_argument(
        "--threshold", type=_float_in(1.0, None), metavar="KAPPA", help="DFMR threshold kappa >= 1 (default: m**0.1)"
    )
    agg.add_argument("--alpha", type=_float_in(0.0, 1.0), help="TKB trimming level in [0, 1) (default: 0.5)")
    agg.add_argument("--site-weights", choices=SITE_WEIGHTS, default="shared", help=_SITE_WEIGHTS_HELP)
    agg.add_argument("--covariance-type", choices=_COVARIANCE_TYPES, metavar="MODEL",
                     help=f"covariance model of the aggregate: {_COVARIANCE_HELP} (default: the model a strict "
                     "majority of the estimates carry, else full)")
    agg.add_argument("--out", metavar="RESULT.json", help="write the result as JSON")
    agg.add_argument("--normalize", action="store_true", help="rescale weights whose sum is off by rounding")
    agg.set_defaults(run=_cmd_aggregate)

    dist = sub.add_parser(
        "distances",
        help="pairwise L2 distances between local estimates",
        description="Print the matrix of L2 distances between local estimates and the COAT centre.",
    )
    dist.add_argument("paths", nargs="+", metavar="PATH", help="local estimate files or directories")
    dist.add_argument("--out", metavar="D.csv", help="write the matrix as CSV, with the file names as labels")
    dist.add_argument("--normalize", action="store_true", help="rescale weights whose sum is off by rounding")
    dist.set_defaults(run=_cmd_distances)

    fit = sub.add_parser(
        "fit",
        help="fit a local estimate to one machine's data, or every site of a directory and aggregate",
        description="Fit a K-component Gaussian mixture by penalised maximum likelihood to one machine's "
        "data (.npy array or .csv table, one observation per row). Given a directory or a glob pattern of "
        "per-site files (.npy, .csv, .parquet; one file per machine), fit every site where the fits run "
        "(the files are read by the workers, not by this process) and aggregate the local estimates.",
    )
    fit.add_argument(
        "data", metavar="DATA", help="a .npy file or a comma-separated .csv file (one header line allowed), "
        "or a directory or quoted glob pattern of per-site files",
    )
    fit.add_argument("-k", "--n-components", type=_components_arg, required=True,
                     help="number of components K, or a grid to choose from by BIC: a range 1:9 or a list 2,3,5")
    fit.add_argument(
        "--out", metavar="FILE.json", help="write the fitted mixture (one file) or the aggregation result (sites)"
    )
    fit.add_argument("--seed", type=int, default=0, help="seed of the k-means++ starts (default: 0)")
    fit.add_argument("--covariance-type", type=_models_arg, default="full", metavar="MODEL",
                     help=f"covariance model of the local fits and the aggregate: {_COVARIANCE_HELP} (default: "
                     "full); a comma-separated list or 'all' (mclust's fourteen) to choose from by BIC")
    fit.add_argument("--criterion", choices=("bic", "icl"), default="bic",
                     help="criterion that chooses among a grid (default: bic; lower is better)")
    sites = fit.add_argument_group("per-site files (DATA is a directory or a glob pattern)")
    sites.add_argument("--out-dir", metavar="DIR", help="write every site's local estimate as DIR/<site>.json")
    sites.add_argument("--method", choices=_METHODS, default="robust_dfmr",
                       help="aggregation method (default: robust_dfmr; dfmr is the paper's method)")
    sites.add_argument("--site-weights", choices=SITE_WEIGHTS, default="shared", help=_SITE_WEIGHTS_HELP)
    sites.add_argument(
        "--backend", choices=BACKENDS, default="processes", help="where the local fits run (default: processes)"
    )
    sites.add_argument(
        "--scheduler", metavar="ADDRESS", help="dask scheduler to use with --backend dask (default: a local cluster)"
    )
    sites.add_argument("--n-jobs", type=int, help="workers of the pool or local cluster (default: all CPUs)")
    sites.add_argument("--progress", action="store_true", help="show a progress bar over the sites")
    sites.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                       help="a site whose fit runs longer is reported failed and left out (default: no limit)")
    sites.add_argument("--total-timeout", type=_positive_float, metavar="SECONDS",
                       help="sites unfinished after this long are reported failed and left out (default: no limit)")
    fit.set_defaults(run=_cmd_fit)
    _add_selection_rounds(sub)
    _add_simulate(sub)
    return parser


def _indices(idx: Sequence[int] | np.ndarray) -> str:
    return ", ".join(str(int(i)) for i in idx) if len(idx) else "none"


def _import_figure() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed; run 'pip install matplotlib' "
            "(or 'pip install dfmr[plot]'), or leave out --plot."
        ) from None
    return Figure


def _plot_distances(figure_cls: type[Figure], result: AggregationResult, bad: np.ndarray, path: str) -> None:
    """Bar chart of every machine's distance to the centre, coloured by attacked/kept, with the cut-off."""
    decision = result.filter
    assert decision is not None  # DFMR always records its filter decision
    m = result.n_machines
    attacked = np.zeros(m, dtype=bool)
    attacked[bad] = True
    kept = result.kept
    categories = [
        ("good, kept", "tab:blue", ~attacked & kept),
        ("good, excluded", "tab:orange", ~attacked & ~kept),
        ("attacked, excluded", "tab:red", attacked & ~kept),
        ("attacked, kept", "tab:purple", attacked & kept),
    ]
    fig = figure_cls(figsize=(max(6.0, 0.35 * m + 2.0), 4.0), layout="constrained")
    ax = fig.subplots()
    x = np.arange(m)
    for label, colour, mask in categories:
        if mask.any():
            ax.bar(x[mask], decision.distance_to_center[mask], color=colour, label=label)
    ax.axhline(
        decision.cutoff, color="black", linestyle="--", linewidth=1.0, label=f"cut-off kappa*r = {decision.cutoff:.3g}"
    )
    ax.set_xticks(x, [f"{i}\ncentre" if i == result.center else str(i) for i in x])
    ax.set_xlabel("machine")
    ax.set_ylabel(f"L2 distance to centre machine {result.center}")
    ax.set_title(f"DFMR filter: {len(result.retained)} of {m} machines kept")
    ax.legend(loc="upper left", fontsize="small")
    fig.savefig(path)


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import metrics, simulate

    figure_cls = _import_figure() if args.plot else None
    local = simulate.local_estimates_fixture()
    truth = simulate.population()
    k = truth.n_components
    attacked, bad = simulate.attack(local, args.rate, kind=args.attack, level="machine", random_state=args.seed)
    results = {
        "robust DFMR (default)": robust_dfmr(attacked, k),
        "DFMR": dfmr(attacked, k),
        "MR": mr(attacked, k),
        "COAT": coat(attacked),
        "TKB": tkb(attacked, k),
        "Oracle": simulate.oracle(attacked, bad, k),
    }
    m = len(local)
    intro = (
        f"Demo: {m} local estimates (K = {k}, d = {truth.dim}), each fitted to 5,000 points of the shipped "
        f"population; {len(bad)} machines get the {args.attack} attack (rate {args.rate:g}, seed {args.seed})."
    )
    print(textwrap.fill(intro, 78))
    print()
    print(results["DFMR"].summary())
    print()

    rows = [
        [name, str(len(res.retained)), str(res.mixture.n_components), f"{metrics.w1_distance(res.mixture, truth):.6g}"]
        for name, res in results.items()
    ]
    print("W1 distance to the population (smaller is better)")
    print("\n".join(text_table(["method", "machines used", "components", "W1"], rows, "lrrr", 60)))
    print("Oracle: mixture reduction over the machines known to be good.")
    print()

    dfmr_res = results["DFMR"]
    kept = set(int(i) for i in dfmr_res.retained)
    bad_set = set(int(i) for i in bad)
    print(f"Attacked machines ({args.attack} attack): {_indices(bad)}")
    print(f"DFMR retained ({len(kept)}): {_indices(sorted(kept))}")
    print(f"DFMR excluded ({m - len(kept)}): {_indices(sorted(set(range(m)) - kept))}")
    print(f"Attacked but retained: {_indices(sorted(bad_set & kept))}")
    print(f"Good but excluded: {_indices(sorted(set(range(m)) - bad_set - kept))}")
    if 2 * len(bad) >= m:
        print("Note: half or more of the machines are attacked; DFMR and COAT assume a majority of good machines.")

    if figure_cls is not None:
        _plot_distances(figure_cls, dfmr_res, bad, args.plot)
        print(f"dfmr: wrote {args.plot}", file=sys.stderr)
    return 0


def _load(args: argparse.Namespace) -> LoadedMixtures:
    loaded = load_mixtures(args.paths, normalize=args.normalize)
    if not loaded.mixtures:
        if loaded.skipped:
            reason = f"none of the {len(loaded.skipped)} inputs is valid (see the warnings above)"
        else:
            reason = "no .json or .npz files were found"
        raise UsageError(f"no local estimates to use: {reason}; pass files written by GaussianMixtureParams.save.")
    return loaded


def _check_site_weights(args: argparse.Namespace) -> None:
    if args.site_weights == "free" and args.method not in ("robust_dfmr", "dfmr", "mr"):
        raise UsageError(f"--site-weights free applies to --method robust_dfmr, dfmr or mr, not {args.method}.")


def _cmd_aggregate(args: argparse.Namespace) -> int:
    method = args.method
    if args.threshold is not None and method != "dfmr":
        raise UsageError(f"--threshold applies only to --method dfmr, not {method}; add '--method dfmr' or remove it.")
    if args.alpha is not None and method != "tkb":
        raise UsageError(f"--alpha applies only to --method tkb, not {method}; remove it.")
    model = _model_option(method, args.covariance_type)
    _check_site_weights(args)
    free = {"site_weights": args.site_weights}
    loaded = _load(args)
    mixtures, k = loaded.mixtures, args.n_components
    groups: dict[tuple[int, str], list[int]] = {}
    for i, mix in enumerate(mixtures):
        groups.setdefault((mix.n_components, mix.covariance_type), []).append(i)
    if len(groups) > 1 or isinstance(k, list):
        return _aggregate_candidates(args, loaded, groups, model)
    if args.out_dir:
        raise UsageError("--out-dir applies when the estimates hold several K or models; use --out.")
    if method != "coat" and k is None:
        raise UsageError(f"-k/--n-components is required for --method {method}; e.g. add '-k 5'.")
    if method == "dfmr":
        result = dfmr(mixtures, k, threshold=args.threshold, **free, **model)
    elif method == "mr":
        result = mr(mixtures, k, **free, **model)
    elif method == "tkb":
        result = tkb(mixtures, k, alpha=0.5 if args.alpha is None else args.alpha, **model)
    elif method == "robust_dfmr":
        result = robust_dfmr(mixtures, k, **free, **model)
    else:
        result = coat(mixtures)

    kept = result.kept
    skipped = f" (skipped {len(loaded.skipped)} invalid)" if loaded.skipped else ""
    print(f"Read {len(mixtures)} local estimates{skipped}")
    rows = [[str(i), name, "yes" if kept[i] else "no"] for i, name in enumerate(loaded.names)]
    print("\n".join(text_table(["machine", "source", "kept"], rows, "rlr", 60)))
    print()
    print(result.summary())
    if args.out:
        save_result(result, args.out, names=loaded.names)
        print(f"dfmr: wrote {args.out}", file=sys.stderr)
    return 0


def _model_option(method: str, covariance_type: str | None) -> dict[str, str]:
    """The aggregator's ``covariance_type`` argument for ``--covariance-type`` (none when not given)."""
    if covariance_type is None:
        return {}
    if method == "coat":
        raise UsageError("--covariance-type does not apply to --method coat, which returns one of the estimates.")
    return {"covariance_type": covariance_type}


def _aggregate_candidates(
    args: argparse.Namespace, loaded: LoadedMixtures, groups: dict[tuple[int, str], list[int]], model: dict[str, str],
) -> int:
    """``dfmr aggregate`` over estimates of several candidates (K, model): each is aggregated on its own."""
    method, wanted = args.method, args.n_components
    if method == "coat" or args.threshold is not None or args.alpha is not None:
        raise UsageError("several candidates are aggregated with --method dfmr, mr or robust_dfmr, without "
                         "--threshold or --alpha.")
    if isinstance(wanted, int):
        wanted = [wanted]
    if wanted is not None:
        missing = sorted(set(wanted) - {K for K, _ in groups})
        if missing:
            raise UsageError(f"no estimates with K = {', '.join(map(str, missing))} among the inputs.")
        groups = {key: idx for key, idx in groups.items() if key[0] in wanted}
    skipped = f" (skipped {len(loaded.skipped)} invalid)" if loaded.skipped else ""
    print(f"Read {len(loaded.mixtures)} local estimates of {len(groups)} candidates{skipped}")
    aggregate = {"dfmr": dfmr, "mr": mr, "robust_dfmr": robust_dfmr}[method]
    out_dir = Path(args.out_dir) if args.out_dir else None
    rows = []
    for (K, name), idx in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        result = aggregate([loaded.mixtures[i] for i in idx], K, site_weights=args.site_weights, **model)
        rows.append([str(K), name, str(len(idx)), str(int(result.kept.sum())), str(result.mixture.n_components)])
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            result.mixture.save(out_dir / f"K{K}_{name}.json")
    print("\n".join(text_table(["K", "model", "estimates", "kept", "aggregate K"], rows, "rlrrr", 60)))
    if out_dir is not None:
        print(f"dfmr: wrote {len(rows)} candidate aggregates to {out_dir}; every site returns its log-likelihood "
              "of each (dfmr.selection.site_values) and dfmr.criterion_table chooses", file=sys.stderr)
    return 0


def _cmd_distances(args: argparse.Namespace) -> int:
    loaded = _load(args)
    D = pairwise_l2(loaded.mixtures)
    m = len(loaded.names)
    rows = [[f"{i} {name}"] + [f"{x:.4g}" for x in D[i]] for i, name in enumerate(loaded.names)]
    print(f"L2 distances between {m} local estimates")
    print("\n".join(text_table(["machine", *map(str, range(m))], rows, "l" + "r" * m, 0)))
    c = center_index(D)
    print(f"Centre (smallest median distance): machine {c} ({loaded.names[c]})")
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["name", *loaded.names])
            writer.writerows([name, *(repr(float(x)) for x in row)] for name, row in zip(loaded.names, D))
        print(f"dfmr: wrote {args.out}", file=sys.stderr)
    return 0


def _read_data(path: str) -> np.ndarray:
    """One machine's observations from a ``.npy`` array or a comma-separated table (one header line allowed)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, EOFError) as exc:
            raise UsageError(f"{path}: not a numeric .npy array ({exc}); write the data with numpy.save.") from None
        if not isinstance(data, np.ndarray):
            data.close()
            raise UsageError(f"{path}: holds an .npz archive, not one array; write the data with numpy.save.")
        return data
    if suffix in (".csv", ".txt"):
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError:
            pass
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)
        except ValueError as exc:
            raise UsageError(
                f"{path}: cannot read a numeric table ({exc}); expected comma-separated numbers, "
                "one observation per row, with at most one header line."
            ) from None
    raise UsageError(f"{path}: unsupported data file type {suffix or '(none)'!r}; use a .npy or .csv file.")


def _dask_client(address: str | None) -> contextlib.AbstractContextManager[Any]:
    if address is None:
        return contextlib.nullcontext()
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs dask.distributed; run 'pip install dfmr[dask]'.") from None
    return Client(address, set_as_default=False)


def _cmd_fit_sites(args: argparse.Namespace) -> int:
    from .estimator import DistributedGaussianMixture
    from .sources import site_files

    if args.scheduler is not None and args.backend != "dask":
        raise UsageError(f"--scheduler applies only to --backend dask, not {args.backend}; add '--backend dask'.")
    _check_site_weights(args)
    files = site_files(args.data)
    names = [Path(f.path).name for f in files]
    with _dask_client(args.scheduler) as client:
        est = DistributedGaussianMixture(
            args.n_components, covariance_type=args.covariance_type, criterion=args.criterion, aggregator=args.method,
            site_weights=args.site_weights, backend=args.backend, client=client, n_jobs=args.n_jobs,
            progress=args.progress, timeout=args.timeout, total_timeout=args.total_timeout, random_state=args.seed,
        ).fit_partitions(files)
    for machine, reason in est.failed_machines_.items():
        print(f"dfmr: warning: site {machine} ({names[machine]}) failed and is left out: {reason}", file=sys.stderr)
    kept = est.aggregation_.kept
    status = dict.fromkeys(est.failed_machines_, "failed")
    status.update((int(m), "yes" if kept[j] else "no") for j, m in enumerate(est.machine_indices_))
    print(f"Fitted {est.n_machines_} of {len(files)} sites (K = {est.n_components_}, covariance model "
          f"{est.covariance_type_}, d = {est.n_features_in_}, backend {args.backend})")
    if "criterion_table_" in est.__dict__:
        _print_criterion_table(est.criterion_table_)
    rows = [[str(i), name, status[i]] for i, name in enumerate(names)]
    print("\n".join(text_table(["site", "file", "kept"], rows, "rlr", 60)))
    print()
    print(est.summary())
    if args.out_dir:
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for machine, mixture in zip(est.machine_indices_, est.local_mixtures_):
            mixture.save(out_dir / f"{Path(names[machine]).stem}.json")
        print(f"dfmr: wrote {est.n_machines_} local estimates to {out_dir}", file=sys.stderr)
    if args.out:
        save_result(est.aggregation_, args.out, names=[names[m] for m in est.machine_indices_])
        print(f"dfmr: wrote {args.out}", file=sys.stderr)
    return 0


def _print_criterion_table(table: Any) -> None:
    """The candidates' criteria, the chosen one marked (lower is better)."""
    best = table.attrs["best"]
    rows = [[str(r.n_components), r.covariance_type, f"{r.log_likelihood:.6g}", str(r.n_parameters), f"{r.bic:.6g}",
             f"{r.icl:.6g}", "<-" if i == best else ""] for i, r in enumerate(table.itertuples())]
    print(f"Model selection by {table.attrs['criterion'].upper()} over {table['n_machines_kept'].iloc[0]} site(s)"
          + (f", flagged: {', '.join(map(str, table['flagged_sites'].iloc[0]))}" if table["flagged_sites"].iloc[0]
             else ""))
    print("\n".join(text_table(["K", "model", "log-lik", "params", "BIC", "ICL", "chosen"], rows, "rlrrrrl", 90)))
    print()


def _cmd_fit(args: argparse.Namespace) -> int:
    from .local import fit_local

    if os.path.isdir(args.data) or glob.has_magic(args.data):
        return _cmd_fit_sites(args)
    only_sites = ("out_dir", "scheduler", "n_jobs", "timeout", "total_timeout")
    site_options = [f"--{name.replace('_', '-')}" for name in only_sites if getattr(args, name)]
    if site_options:
        raise UsageError(f"{', '.join(site_options)} apply only when DATA is a directory or glob of per-site files.")
    X = _read_data(args.data)
    try:
        if is_grid(args.n_components, args.covariance_type):
            table, mixtures = local_choice(X, args.n_components, args.covariance_type, args.criterion,
                                           random_state=args.seed)
            _print_criterion_table(table)
            mixture = mixtures[table.attrs["best"]]
        else:
            mixture = fit_local(X, args.n_components, random_state=args.seed, covariance_type=args.covariance_type)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    n, d = (X.shape[0], 1) if X.ndim == 1 else X.shape[:2]
    print(f"Penalised MLE on {n} observations in d = {d} dimensions, covariance model {mixture.covariance_type}")
    print(mixture_summary(mixture))
    if args.out:
        mixture.save(args.out)
        print(f"dfmr: wrote {args.out}", file=sys.stderr)
    else:
        print("dfmr: not saved; pass --out LOCAL.json to save the estimate.", file=sys.stderr)
    return 0


def _add_selection_rounds(sub: argparse._SubParsersAction) -> None:
    """``dfmr score`` (a site's second round of model selection) and ``dfmr choose`` (the server's)."""
    score = sub.add_parser(
        "score",
        help="model selection, second round on a site: score every candidate aggregate on the site's data",
        description="Read the site's data and the candidate aggregates the server sent (written by 'dfmr "
        "aggregate --out-dir'), and write the site's log-likelihood and classification entropy of every "
        "candidate as a JSON score file, to send back to the server ('dfmr choose'). The data stay on the site.",
    )
    score.add_argument("data", metavar="DATA", help="the site's data: a .npy file or a comma-separated .csv file")
    score.add_argument("candidates", nargs="+", metavar="CANDIDATE",
                       help="candidate aggregate files (.json/.npz) or directories of them")
    score.add_argument("--out", metavar="SCORES.json", required=True, help="where to write the scores")
    score.set_defaults(run=_cmd_score)

    choose = sub.add_parser(
        "choose",
        help="model selection, server side: read the sites' score files and choose (K, model) by BIC or ICL",
        description="Read every site's score file ('dfmr score') for the candidates the server sent, flag sites "
        "whose values are implausible against the others, sum exactly over the rest and print the criterion "
        "table (dfmr.criterion_table) with the chosen candidate marked. A file that is unreadable, lacks a "
        "candidate or scored another version of one counts as a flagged site.",
    )
    choose.add_argument("scores", nargs="+", metavar="SCORES", help="the sites' score files or directories of them")
    choose.add_argument("--candidates", nargs="+", required=True, metavar="CANDIDATE",
                        help="the candidate aggregates sent to the sites (files or directories)")
    choose.add_argument("--sizes", metavar="N1,N2,...|SIZES.csv",
                        help="the sites' sizes as the server knows them (trusted), in the order of the score files, "
                        "or a CSV file of 'score file name,size' rows; without it the sizes the sites claim are used, "
                        "with a warning")
    choose.add_argument("--criterion", choices=("bic", "icl"), default="bic", help="default: bic (lower is better)")
    choose.add_argument("--level", type=_float_in(0.0, 1.0), default=0.001,
                        help="level of the test that flags implausible sites (default: 0.001)")
    choose.add_argument("--out", metavar="TABLE.csv", help="write the criterion table as CSV")
    choose.set_defaults(run=_cmd_choose)


def _load_candidates(paths: Sequence[str]) -> tuple[list[GaussianMixtureParams], list[str]]:
    loaded = load_mixtures(paths, on_error="raise")
    if not loaded.mixtures:
        raise UsageError("no candidate aggregates found; pass the files written by 'dfmr aggregate --out-dir'.")
    names = [Path(name).stem for name in loaded.names]
    if len(set(names)) != len(names):
        raise UsageError(f"two candidate files share a name ({', '.join(sorted(names))}); keep one of each.")
    return loaded.mixtures, names


def _cmd_score(args: argparse.Namespace) -> int:
    from .selection import site_scores

    X = _read_data(args.data)
    candidates, names = _load_candidates(args.candidates)
    try:
        doc = site_scores(X, candidates, names)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    print(f"Scored {len(names)} candidates on {doc['n_samples']} observations")
    print(f"dfmr: wrote {args.out}; send it to the server ('dfmr choose')", file=sys.stderr)
    return 0


def _score_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            files.extend(sorted((p for p in entry.iterdir() if p.suffix.lower() == ".json" and p.is_file()),
                                key=lambda p: p.name))
        elif entry.exists():
            files.append(entry)
        else:
            raise FileNotFoundError(2, "no such file or directory", str(entry))
    if not files:
        raise UsageError("no score files found; pass the files written by 'dfmr score'.")
    return files


def _read_sizes(text: str, files: list[Path]) -> np.ndarray:
    """``--sizes``: a comma-separated list in the order of the score files, or a CSV of (file name, size)."""
    if Path(text).is_file():
        with open(text, newline="", encoding="utf-8") as fh:
            rows = [row for row in csv.reader(fh) if row]
        table: dict[str, str] = {}
        for row in rows:
            if len(row) != 2:
                raise UsageError(f"{text}: every row must be 'score file name,size', got {row!r}.")
            table[row[0].strip()] = row[1]
        keys = [next((k for k in (f.name, f.stem, str(f)) if k in table), None) for f in files]
        missing = [f.name for f, k in zip(files, keys) if k is None]
        if missing:
            raise UsageError(f"{text}: no size for {', '.join(missing)}.")
        values = [table[k] for k in keys if k is not None]
    else:
        values = text.split(",")
    try:
        sizes = np.array([float(v) for v in values])
    except ValueError:
        raise UsageError(f"--sizes: expected numbers, got {text!r}.") from None
    if sizes.shape != (len(files),) or not np.all(np.isfinite(sizes)) or np.any(sizes < 1):
        raise UsageError(f"--sizes: expected {len(files)} sizes >= 1 (one per score file), got {text!r}.")
    return sizes


def _cmd_choose(args: argparse.Namespace) -> int:
    from .selection import criterion_table, read_site_scores

    candidates, names = _load_candidates(args.candidates)
    files = _score_files(args.scores)
    loglik, entropy, claimed, problems = read_site_scores(files, candidates, names)
    for f, problem in zip(files, problems):
        if problem is not None:
            print(f"dfmr: warning: {f.name}: {problem}; the site is flagged", file=sys.stderr)
    if args.sizes is not None:
        sizes = _read_sizes(args.sizes, files)
    else:
        print("dfmr: warning: no --sizes: using the sizes the sites claim, which are not trusted", file=sys.stderr)
        # A site that claims nothing usable counts as the median claim; its values are flagged anyway.
        sizes = np.where(np.isfinite(claimed) & (claimed >= 1), claimed, np.nan)
        if np.all(np.isnan(sizes)):
            raise UsageError("no score file claims a size; pass --sizes.")
        sizes = np.where(np.isnan(sizes), np.nanmedian(sizes), sizes)
    try:
        table = criterion_table(candidates, loglik, sizes, args.criterion, site_entropy=entropy, level=args.level)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"Read the scores of {len(files)} sites for {len(names)} candidates")
    _print_criterion_table(table)
    best = table.attrs["best"]
    flagged = table["flagged_sites"].iloc[0]
    if flagged:
        print(f"Flagged sites: {', '.join(files[i].name for i in flagged)}")
    print(f"Chosen: {names[best]} (K = {table['n_components'].iloc[best]}, model "
          f"{table['covariance_type'].iloc[best]})")
    if args.out:
        table.assign(candidate=names).to_csv(args.out, index=False)
        print(f"dfmr: wrote {args.out}", file=sys.stderr)
    return 0


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    """``dfmr simulate [options]`` runs the paper's study; ``dfmr simulate report RESULTS.csv`` reports it."""
    from .simulate import ATTACK_KINDS, ATTACK_LEVELS
    from .study import DEFAULT_RATES, available_methods

    sim = sub.add_parser(
        "simulate",
        help="run the paper's simulation study (or 'simulate report RESULTS.csv' to tabulate and plot one)",
        description="Repeat: draw N points from a population, fit every machine's pMLE, attack the local estimates "
        "at every level x attack x failure rate, aggregate with every method, and stream W1, ARI, log-likelihood, "
        "machine counts and times to a CSV. 'dfmr simulate report RESULTS.csv' writes its tables and plots.",
    )
    sim.add_argument("--n", type=_positive_int, default=100_000, help="points per repetition (default: 100000)")
    sim.add_argument("-m", "--machines", type=_positive_int, default=20, help="number of machines (default: 20)")
    sim.add_argument("--repetitions", type=_positive_int, default=20, help="number of repetitions (default: 20)")
    sim.add_argument("--first-repetition", type=int, default=0, metavar="R",
                     help="index of the first repetition, to rerun a part of a study alone (default: 0)")
    sim.add_argument("--rates", type=_float_in(0.0, 1.0), nargs="+", default=list(DEFAULT_RATES), metavar="RATE",
                     help="failure rates (default: 0.1 0.2 0.3 0.4)")
    sim.add_argument("--attacks", choices=ATTACK_KINDS, nargs="+", default=list(ATTACK_KINDS), metavar="ATTACK",
                     help="attacks among mean, cov, weight (default: all)")
    sim.add_argument("--levels", choices=ATTACK_LEVELS, nargs="+", default=list(ATTACK_LEVELS), metavar="LEVEL",
                     help="attack levels among machine, component (default: both)")
    sim.add_argument("--methods", choices=available_methods(), nargs="+", metavar="METHOD",
                     help=f"methods among {', '.join(available_methods())} (default: all)")
    sim.add_argument("--seed", type=int, default=0, help="root seed; repetition r uses [seed, r, ...] (default: 0)")
    sim.add_argument("--population", metavar="NAME|FILE",
                     help="a shipped population name or a params file (.json/.npz); default: the paper's MixSim one")
    sim.add_argument("--mixsim", nargs=4, metavar=("K", "D", "MAXOMEGA", "SEED"),
                     help="generate the population with MixSim's rule instead (K components, D dimensions)")
    sim.add_argument("--out", default="dfmr_simulation.csv", metavar="RESULTS.csv",
                     help="CSV receiving the rows as repetitions finish (default: dfmr_simulation.csv)")
    sim.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    sim.add_argument("--jobs", type=_positive_int, help="worker processes (default: one per CPU)")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(run=_cmd_simulate)
    sim_sub = sim.add_subparsers(dest="simulate_command", metavar="report")
    rep = sim_sub.add_parser(
        "report",
        help="markdown tables and PNG plots of a simulation CSV",
        description="Write report.md (mean ± standard error per cell: rows failure rate x attack, columns methods) "
        "and w1_<level>.png (W1 against the failure rate, one line per method) for a 'dfmr simulate' CSV.",
    )
    rep.add_argument("csv", metavar="RESULTS.csv", help="the CSV written by 'dfmr simulate'")
    rep.add_argument("--out-dir", metavar="DIR", help="where to write the report (default: next to the CSV)")
    rep.set_defaults(run=_cmd_simulate_report)


def _simulation_population(args: argparse.Namespace) -> GaussianMixtureParams | None:
    from .mixsim import mixsim
    from .params import GaussianMixtureParams
    from .simulate import population

    if args.mixsim and args.population:
        raise UsageError("give --population or --mixsim, not both.")
    if args.mixsim:
        try:
            k, d, omega, seed = int(args.mixsim[0]), int(args.mixsim[1]), float(args.mixsim[2]), int(args.mixsim[3])
        except ValueError:
            raise UsageError(f"--mixsim expects K D MAXOMEGA SEED (integers, a number, an integer), "
                             f"got {' '.join(args.mixsim)}.") from None
        return mixsim(k, d, omega, random_state=seed)
    if args.population is None:
        return None
    if Path(args.population).suffix in (".json", ".npz"):
        return GaussianMixtureParams.load(args.population)
    return population(args.population)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .study import study

    rows = study(
        _simulation_population(args), n=args.n, n_machines=args.machines,
        repetitions=range(args.first_repetition, args.first_repetition + args.repetitions), rates=args.rates,
        attacks=args.attacks, levels=args.levels, methods=args.methods, seed=args.seed, out=args.out,
        resume=args.resume, n_jobs=args.jobs, progress=not args.no_progress,
    )
    print(f"{len(rows)} rows in {args.out}; 'dfmr simulate report {args.out}' writes the tables and plots.")
    return 0


def _cmd_simulate_report(args: argparse.Namespace) -> int:
    from .study import report

    _import_figure()
    print(f"wrote {report(args.csv, args.out_dir)}")
    return 0


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Print warnings raised inside the block as they occur, as ``dfmr: warning: ...`` lines, once each."""
    seen: set[str] = set()

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        text = _one_line(message)
        if text not in seen:
            seen.add(text)
            print(f"dfmr: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dfmr`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 2 for a usage error or unusable input (reported on one line on stderr),
        130 when interrupted.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        with _warnings_to_stderr():
            return int(args.run(args))
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        print(f"dfmr: error: {_one_line(exc)}", file=sys.stderr)
    except BrokenPipeError:
        # The reader went away (``dfmr demo | head``): stop quietly, and keep the interpreter's
        # final flush of stdout from raising again (the recipe of the Python signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except FileNotFoundError as exc:
        print(f"dfmr: error: {exc.filename}: no such file or directory; check the path.", file=sys.stderr)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"dfmr: error: {where}{exc.strerror or _one_line(exc)}.", file=sys.stderr)
    except ValueError as exc:  # invalid data or arguments rejected by the library, e.g. InvalidMixtureError
        print(f"dfmr: error: {_one_line(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("dfmr: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
