"""Diagnostic plots of an aggregation and its inference (matplotlib, the ``plot`` extra).

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``: nothing
opens a window and no global figure state is touched; save it with ``fig.savefig(path)`` or
show it in a notebook. Pass ``ax`` to draw into an existing axes instead (its figure is
returned).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .aggregate import AggregationResult
from .params import GaussianMixtureParams

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .inference import MachineTests, MixtureInferenceResult

__all__ = ["plot_distance_matrix", "plot_center_distances", "plot_machine_pvalues", "plot_ellipses",
           "plot_criterion_table"]

_KEPT, _DROPPED, _CENTRE = "tab:blue", "tab:red", "black"


def _axes(ax: Axes | None, size: tuple[float, float] = (6.0, 4.5)) -> tuple[Figure, Axes]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("dfmr.plots needs matplotlib: pip install 'dfmr[plot]'.") from exc
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _need_distances(result: AggregationResult) -> np.ndarray:
    if result.distances is None:
        raise ValueError(f"the {result.method!r} aggregation computed no distances; use dfmr, coat or robust_dfmr.")
    return result.distances


def plot_distance_matrix(result: AggregationResult, ax: Axes | None = None) -> Figure:
    """The m x m L2 distance matrix, filtered machines marked in red, the centre in bold.

    Parameters
    ----------
    result : AggregationResult
        An aggregation with distances (DFMR, COAT).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    D = _need_distances(result)
    fig, ax = _axes(ax, (5.5, 4.8))
    m = D.shape[0]
    image = ax.imshow(D, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="L2 distance")
    ticks = np.arange(m)
    ax.set_xticks(ticks, [str(i) for i in ticks], fontsize=7)
    ax.set_yticks(ticks, [str(i) for i in ticks], fontsize=7)
    kept = result.kept
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for i, label in enumerate(labels):
            label.set_color(_KEPT if kept[i] else _DROPPED)
            if i == result.center:
                label.set_fontweight("bold")
    for i in np.flatnonzero(~kept):
        ax.axhline(i, color=_DROPPED, lw=0.6, alpha=0.6)
        ax.axvline(i, color=_DROPPED, lw=0.6, alpha=0.6)
    ax.set_xlabel("machine")
    ax.set_ylabel("machine")
    ax.set_title(f"{result.method.upper()}: distances (filtered machines in red, centre in bold)", fontsize=9)
    return fig


def plot_center_distances(result: AggregationResult, ax: Axes | None = None) -> Figure:
    """Each machine's distance to the centre against the cut-off ``kappa * r``.

    Parameters
    ----------
    result : AggregationResult
        An aggregation with a centre (DFMR; COAT shows no cut-off).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    _need_distances(result)
    to_centre = result.distance_to_center
    fig, ax = _axes(ax)
    kept = result.kept
    machines = np.arange(result.n_machines)
    ax.bar(machines[kept], to_centre[kept], color=_KEPT, label="retained")
    ax.bar(machines[~kept], to_centre[~kept], color=_DROPPED, label="filtered")
    if result.filter is not None:
        cut, r = result.filter.cutoff, result.filter.radius
        ax.axhline(cut, color="k", ls="--", lw=1, label=f"cut-off kappa*r = {cut:.3g}")
        ax.axhline(r, color="grey", ls=":", lw=1, label=f"radius r = {r:.3g}")
    ax.set_xticks(machines, [f"{i}*" if i == result.center else str(i) for i in machines], fontsize=7)
    ax.set_xlabel("machine (* centre)")
    ax.set_ylabel("L2 distance to the centre")
    ax.legend(fontsize=8)
    return fig


def plot_machine_pvalues(
    tests: MachineTests | MixtureInferenceResult, ax: Axes | None = None, alpha: float | None = None
) -> Figure:
    """Per-machine adjusted p-values (``-log10``) with the rejection line, coloured by retained or not.

    Parameters
    ----------
    tests : MachineTests or MixtureInferenceResult
        The per-machine tests (or an inference result that has them).
    ax : matplotlib.axes.Axes, optional
    alpha : float, optional
        Level of the line; default the tests' own.

    Returns
    -------
    matplotlib.figure.Figure
    """
    tests = getattr(tests, "machine_tests", tests)
    if tests is None:
        raise ValueError("no per-machine tests: infer them with the machines' sample sizes or data.")
    alpha = tests.alpha if alpha is None else alpha
    fig, ax = _axes(ax)
    machines = np.arange(tests.statistic.size)
    # Adjusted p-values of exactly 0 (statistics beyond double precision) are drawn at 1e-300.
    height = -np.log10(np.clip(tests.pvalues_adjusted, 1e-300, 1.0))
    kept = tests.retained
    ax.bar(machines[kept], height[kept], color=_KEPT, label="retained")
    ax.bar(machines[~kept], height[~kept], color=_DROPPED, label="filtered")
    ax.axhline(-np.log10(alpha), color="k", ls="--", lw=1, label=f"{tests.method}-adjusted p = {alpha:g}")
    ax.set_xticks(machines, [str(i) for i in machines], fontsize=7)
    ax.set_xlabel("machine")
    ax.set_ylabel(f"-log10 {tests.method}-adjusted p-value")
    if height.max() > 50:
        ax.set_yscale("symlog", linthresh=10)
    ax.legend(fontsize=8)
    return fig


def _ellipse_points(centre: np.ndarray, cov: np.ndarray, radius: float, n: int = 100) -> np.ndarray:
    """Points of ``{x : (x - c)' cov^-1 (x - c) = radius^2}`` (2-D)."""
    angle = np.linspace(0.0, 2.0 * np.pi, n)
    circle = np.stack([np.cos(angle), np.sin(angle)])
    return centre[:, None] + radius * np.linalg.cholesky(cov) @ circle


def plot_ellipses(
    mixture: GaussianMixtureParams | AggregationResult,
    local_mixtures: Sequence[GaussianMixtureParams] | None = None,
    X: ArrayLike | None = None,
    inference: MixtureInferenceResult | None = None,
    *,
    dims: tuple[int, int] = (0, 1),
    level: float = 0.95,
    max_points: int = 2000,
    ax: Axes | None = None,
    random_state: int | None = 0,
) -> Figure:
    """Components as ellipses over a data sample: local estimates, the aggregate, mean confidence regions.

    Parameters
    ----------
    mixture : GaussianMixtureParams or AggregationResult
        The aggregate (drawn thick).
    local_mixtures : sequence of GaussianMixtureParams, optional
        Local estimates (drawn thin; red for machines an AggregationResult filtered).
    X : array_like of shape (n, d), optional
        Data; at most ``max_points`` rows (a seeded random subset) are scattered.
    inference : MixtureInferenceResult, optional
        Adds the ``level`` confidence ellipse of each aggregate mean (filled), from ``cov_params()``.
    dims : (int, int), default (0, 1)
        The pair of coordinates shown (0-based).
    level : float, default 0.95
        Probability content of every ellipse: of a component for its Gaussian, of a confidence
        region for the mean.
    max_points : int, default 2000
    ax : matplotlib.axes.Axes, optional
    random_state : int or None, default 0
        Seed of the subset of ``X``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    result = mixture if isinstance(mixture, AggregationResult) else None
    mix = result.mixture if result is not None else mixture
    i, j = (int(dims[0]), int(dims[1]))
    if i == j or not (0 <= i < mix.dim and 0 <= j < mix.dim):
        raise ValueError(f"dims must be two different coordinates in [0, {mix.dim - 1}], got {dims!r}.")
    pair = np.array([i, j])
    radius = float(np.sqrt(stats.chi2(2).ppf(level)))
    fig, ax = _axes(ax, (6.0, 5.0))
    if X is not None:
        X = np.asarray(X, dtype=np.float64)
        rows = np.random.default_rng(random_state).permutation(X.shape[0])[:max_points]
        ax.scatter(X[rows, i], X[rows, j], s=3, color="0.6", alpha=0.5, label="data", rasterized=True)
    if local_mixtures is not None:
        kept = result.kept if result is not None else np.ones(len(local_mixtures), bool)
        for m, local in enumerate(local_mixtures):
            for k in range(local.n_components):
                pts = _ellipse_points(local.means[k, pair], local.covariances[k][np.ix_(pair, pair)], radius)
                ax.plot(*pts, color=_KEPT if kept[m] else _DROPPED, lw=0.5, alpha=0.5)
    for k in range(mix.n_components):
        pts = _ellipse_points(mix.means[k, pair], mix.covariances[k][np.ix_(pair, pair)], radius)
        ax.plot(*pts, color=_CENTRE, lw=2)
        ax.annotate(str(k + 1), mix.means[k, pair], fontsize=9, ha="left", va="bottom")
    if inference is not None:
        names = inference.param_names
        cov = inference.cov_params().to_numpy()
        for k in range(mix.n_components):
            idx = [names.index(f"mu[{k + 1}][{c + 1}]") for c in pair]
            region = _ellipse_points(mix.means[k, pair], cov[np.ix_(idx, idx)], radius)
            ax.fill(*region, color="tab:orange", alpha=0.7, lw=0)
    ax.set_xlabel(f"x{i + 1}")
    ax.set_ylabel(f"x{j + 1}")
    ax.set_title(
        f"{level:.0%} ellipses: aggregate (black), local (blue kept, red filtered), mean confidence (orange)",
        fontsize=8,
    )
    ax.set_aspect("equal", adjustable="datalim")
    return fig


def plot_criterion_table(table: pd.DataFrame, criterion: str | None = None, ax: Axes | None = None) -> Figure:
    """A criterion against K, one line per covariance model, the chosen candidate circled (mclust's BIC plot,
    with scikit-learn's sign: lower is better).

    Parameters
    ----------
    table : pandas.DataFrame
        A :func:`dfmr.criterion_table` (or an estimator's ``criterion_table_``).
    criterion : {"bic", "icl"}, optional
        The column to draw; the table's own criterion by default.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .selection import best_index

    column = criterion or table.attrs.get("criterion", "bic")
    if column not in ("bic", "icl"):
        raise ValueError(f"criterion must be 'bic' or 'icl', got {column!r}.")
    fig, ax = _axes(ax)
    for name, rows in table.groupby("covariance_type", sort=False):
        ax.plot(rows["n_components"], rows[column], marker="o", ms=3, lw=1, label=str(name))
    best = table.iloc[best_index(table, column)]
    ax.plot([best["n_components"]], [best[column]], "o", ms=12, mfc="none", mec="black",
            label=f"chosen: K = {best['n_components']}, {best['covariance_type']}")
    flagged = table["flagged_sites"].iloc[0]
    ax.set_title(f"{column.upper()} over {table['n_machines_kept'].iloc[0]} sites"
                 + (f" ({len(flagged)} flagged: {_indices(flagged)})" if flagged else ""), fontsize=9)
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{column.upper()} (lower is better)")
    ax.legend(fontsize=7, ncol=2)
    return fig


def _indices(idx: Sequence[int]) -> str:
    return ", ".join(map(str, idx))
