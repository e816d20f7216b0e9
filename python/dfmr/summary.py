"""Reports of aggregations, mixtures and inference results, built with statsmodels' summary tables.

A report is a :class:`statsmodels.iolib.summary.Summary` of :class:`~statsmodels.iolib.table.SimpleTable`
parts, returned as a :class:`Report`: the text itself (a ``str``, so it prints and compares as
text) that also exports ``as_html()`` and ``as_latex()``. An aggregation report has a header of
settings and diagnostics in two columns; a per-machine table (distance to the centre, median
distance, and with an inference result the Wald statistic and raw and adjusted p-values; then
kept or not) when there is something per machine to show; then the aggregated mixture, one row per
component, or, with an inference result, the parameters with standard errors and intervals.
Every part reads only attributes of its inputs; fields a method does not compute (``None``) are
printed as ``n/a`` or their part is left out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .params import GaussianMixtureParams
from .robust import screening_summary_lines
from .sites import site_summary_lines
from .support import support_note

if TYPE_CHECKING:
    from statsmodels.iolib.summary import Summary
    from statsmodels.iolib.table import SimpleTable

    from .aggregate import AggregationResult
    from .inference import MixtureInferenceResult

__all__ = ["Report", "aggregation_summary", "inference_summary", "mixture_summary", "text_table"]

_WIDTH = 78
_METHOD_NAMES = {
    "dfmr": "DFMR (distance-filtered mixture reduction)",
    "mr": "MR (mixture reduction, no filtering)",
    "coat": "COAT (centre machine's own estimate)",
    "tkb": "TKB (trimmed k-barycenter)",
    "robust_dfmr": "robust DFMR (screened components, calibrated tests)",
}
# Means longer than this are shown as their first few and last coordinates.
_MAX_MEAN_COORDS = 6
_MEAN_HEAD = 4


def _table(rows: list[list[str]], headers: list[str] | None, *, stubs: list[str] | None = None, title: str,
           style: str, **fmt: object) -> SimpleTable:
    """A statsmodels SimpleTable: ``style`` "pairs" (header block), "plain" (natural widths) or "params".

    statsmodels is imported here, not with the package: ``import dfmr`` stays light.
    """
    from statsmodels.iolib.table import SimpleTable
    from statsmodels.iolib.tableformatting import fmt_2cols, fmt_params

    base = {
        "pairs": dict(fmt_2cols, data_fmts=["%s"], colsep="   ", data_aligns="lrlr", colwidths=None),
        "plain": dict(fmt_params, data_fmts=["%s"], colsep="  ", colwidths=None),
        "params": fmt_params,
    }[style]
    return SimpleTable(rows, headers, stubs, title=title, txt_fmt={**base, **fmt})


class Report(str):
    """The text of a statsmodels :class:`~statsmodels.iolib.summary.Summary`, keeping the Summary.

    It is a ``str`` (``print`` it, search it, compare it) with the Summary's exports.

    Attributes
    ----------
    summary : statsmodels.iolib.summary.Summary
        The tables and notes the text was made from.
    """

    summary: Summary

    def __new__(cls, summary: Summary) -> Report:
        obj = super().__new__(cls, summary.as_text())
        obj.summary = summary
        return obj

    @property
    def tables(self) -> list[SimpleTable]:
        """The report's tables."""
        return self.summary.tables

    def as_text(self) -> str:
        """The report as plain text (the string itself)."""
        return str.__str__(self)

    def as_html(self) -> str:
        """The report's tables as HTML."""
        return self.summary.as_html()

    def as_latex(self) -> str:
        """The report's tables as LaTeX."""
        return self.summary.as_latex()


def _num(x: float | None) -> str:
    """A float in at most 6 significant digits, ``n/a`` for None."""
    if x is None:
        return "n/a"
    return f"{float(x):.6g}"


def _pvalue(x: float) -> str:
    return "<1e-16" if x < 1e-16 else f"{x:.2g}"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _pairs_table(title: str, left: Sequence[tuple[str, str]], right: Sequence[tuple[str, str]]) -> SimpleTable:
    """Two columns of ``key: value`` pairs under a title (statsmodels' header layout)."""
    rows = []
    for i in range(max(len(left), len(right))):
        row = []
        for side in (left, right):
            key, value = side[i] if i < len(side) else ("", "")
            row += [f"{key}:" if key else "", value]
        rows.append(row)
    return _table(rows, None, title=title, style="pairs")


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], aligns: str, width: int) -> list[str]:
    """A table with a rule under the headers; ``aligns`` holds one ``l`` or ``r`` per column.

    Columns are as wide as their widest cell plus a gap, and the gap grows so that the table
    fills ``width`` when it is narrower.
    """
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(headers)]
    gap = min(8, max(3, (width - sum(widths)) // max(len(headers) - 1, 1)))

    def fmt(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, aligns)]
        return (" " * gap).join(parts).rstrip()

    out = [fmt(headers), "-" * max(width, len(fmt(headers)))]
    out.extend(fmt(r) for r in rows)
    return out


def _format_means(means: np.ndarray) -> list[str]:
    """Mean vectors, one line each, coordinates aligned across rows.

    All coordinates are shown up to six; beyond that the first four, ``...`` and the last.
    """
    shown = means if means.shape[1] <= _MAX_MEAN_COORDS else means[:, [*range(_MEAN_HEAD), -1]]
    cells = np.array([[f"{x:.4g}" for x in row] for row in shown])
    width = max(len(c) for c in cells.ravel())
    out = []
    for row in cells:
        coords = [c.rjust(width) for c in row]
        if means.shape[1] > _MAX_MEAN_COORDS:
            coords.insert(_MEAN_HEAD, "...")
        out.append("[" + " ".join(coords) + "]")
    return out




def _component_rows(mixture: GaussianMixtureParams) -> list[list[str]]:
    traces = np.trace(mixture.covariances, axis1=1, axis2=2)
    return [
        [str(k), f"{w:.4f}", mean, f"{t:.4g}"]
        for k, (w, mean, t) in enumerate(zip(mixture.weights, _format_means(mixture.means), traces))
    ]


def _mixture_table(mixture: GaussianMixtureParams) -> tuple[SimpleTable, str]:
    title = f"Gaussian mixture: K = {mixture.n_components} components in d = {mixture.dim} dimensions"
    table = _table(
        _component_rows(mixture), ["component", "weight", "mean", "tr(Sigma)"], title=title, style="plain",
        data_aligns="rrlr", colsep="   ",
    )
    if mixture.dim > _MAX_MEAN_COORDS:
        note = f"Means show coordinates 1-{_MEAN_HEAD} and {mixture.dim}; tr(Sigma) is the total variance."
    else:
        note = "tr(Sigma) is the total variance of the component."
    return table, note


def _report(tables: list[SimpleTable], notes: Sequence[str], extra: Sequence[str] = ()) -> Report:
    """Tables, then wrapped notes, then ``extra`` lines as they are (e.g. robust_dfmr's screening block)."""
    from statsmodels.iolib.summary import Summary

    summary = Summary()
    summary.tables.extend(tables)
    wrap = textwrap.TextWrapper(_WIDTH, subsequent_indent="      ", break_on_hyphens=False)
    text = ["\n".join(wrap.wrap(f"Note: {n}")) for n in notes] + (["\n".join(extra)] if extra else [])
    if text:
        # One call: statsmodels' add_extra_txt replaces the extra text rather than appending to it.
        summary.add_extra_txt(text)
    return Report(summary)


def mixture_summary(mixture: GaussianMixtureParams) -> Report:
    """A table of a mixture: weight, mean and total variance of every component.

    Parameters
    ----------
    mixture : GaussianMixtureParams
        The mixture to describe.

    Returns
    -------
    Report
        One row per component; means with more than six coordinates are abbreviated.

    Raises
    ------
    TypeError
        If ``mixture`` is not a :class:`GaussianMixtureParams`.
    """
    if not isinstance(mixture, GaussianMixtureParams):
        raise TypeError(f"mixture must be a GaussianMixtureParams, got {type(mixture).__name__}.")
    table, note = _mixture_table(mixture)
    return _report([table], [note])


def _components_text(result: AggregationResult) -> tuple[str, str | None]:
    """The 'Components' header value and, if components were dropped, a note saying so."""
    got = result.mixture.n_components
    asked = result.n_components_requested
    if asked is None:
        return f"{got}", None
    if got < asked:
        dropped = asked - got
        note = (
            f"{dropped} of the {asked} requested components received no mass in the reduction and "
            f"were dropped: the aggregate has {got} component{'s' if got != 1 else ''}."
        )
        return f"{got} of {asked} (dropped {dropped})", note
    return f"{got} of {asked}", None


def _header(
    result: AggregationResult, inference: MixtureInferenceResult | None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    decision = result.filter
    left = [
        ("Method", result.method.upper()),
        ("Machines received", str(result.n_machines)),
        ("Machines retained", str(len(result.retained))),
        ("Centre machine", "n/a" if result.center is None else str(result.center)),
        ("Threshold kappa", _num(None if decision is None else decision.threshold)),
        ("Radius r", _num(None if decision is None else decision.radius)),
        ("Cut-off kappa*r", _num(None if decision is None else decision.cutoff)),
    ]
    if result.size_source is not None:
        left.append(("Site sizes", _SIZE_SOURCES[result.size_source]))
    right = [
        ("Dimension d", str(result.mixture.dim)),
        ("Components", _components_text(result)[0]),
        ("Covariance model", result.mixture.covariance_type),
        ("Objective", _num(result.objective)),
        ("MM iterations", str(result.n_iter)),
        ("Converged", _yes_no(result.converged)),
    ]
    if inference is not None:
        right += _inference_pairs(inference)
    return left, right


def _inference_pairs(inference: MixtureInferenceResult) -> list[tuple[str, str]]:
    if inference.method == "jackknife":
        how = f"jackknife (t, {inference.df_resid:g} df)"
    elif inference.method == "bootstrap":
        how = "parametric bootstrap"
    else:
        how = f"{inference.kind} information"
    return [
        ("Intervals", how),
        ("Observations", "n/a" if inference.nobs is None else str(inference.nobs)),
    ]


def _machine_table(result: AggregationResult, inference: MixtureInferenceResult | None) -> SimpleTable | None:
    """Per-machine table: distance to the centre and median distance (when known), tests (when run), kept."""
    D = result.distances
    tests = None if inference is None else inference.machine_tests
    if D is None and tests is None:
        return None
    headers, columns = ["machine"], []
    if result.distance_to_center is not None:
        headers.append("dist. to centre")
        columns.append([_num(x) for x in result.distance_to_center])
    if D is not None:
        headers.append("median dist.")
        columns.append([_num(x) for x in np.quantile(D, 0.5, axis=1)])
    if tests is not None:
        headers += ["Wald", "p-value", f"{tests.method} p"]
        columns += [
            [f"{x:.4g}" for x in tests.statistic], [_pvalue(x) for x in tests.pvalues],
            [_pvalue(x) for x in tests.pvalues_adjusted],
        ]
    headers.append("kept")
    columns.append([_yes_no(bool(k)) for k in result.kept])
    rows = [
        [f"{i} (centre)" if i == result.center else str(i), *(col[i] for col in columns)]
        for i in range(result.n_machines)
    ]
    title = "L2 distances between local estimates" if D is not None else "Per-machine tests against the aggregate"
    return _table(rows, headers, title=title, style="plain", data_aligns="l" + "r" * (len(headers) - 1))


def _params_table(inference: MixtureInferenceResult, alpha: float, covariances: bool) -> SimpleTable:
    """statsmodels' parameter table: coef, std err, z (or t), P>|z|, interval bounds."""
    names = inference.param_names
    keep = [i for i, name in enumerate(names) if covariances or not name.startswith("Sigma")]
    params, bse = inference.params.to_numpy(), inference.bse.to_numpy()
    tvalues, pvalues = inference.tvalues.to_numpy(), inference.pvalues.to_numpy()
    ci = inference.conf_int(alpha).to_numpy()
    stat = "t" if inference.use_t else "z"
    rows = [
        [
            f"{params[i]:.4f}", f"{bse[i]:.4f}", "" if np.isnan(tvalues[i]) else f"{tvalues[i]:.3f}",
            "" if np.isnan(pvalues[i]) else f"{pvalues[i]:.3f}", f"{ci[i, 0]:.4f}", f"{ci[i, 1]:.4f}",
        ]
        for i in keep
    ]
    what = "Weights, means and covariances" if covariances else "Weights and means"
    return _table(
        rows, ["coef", "std err", stat, f"P>|{stat}|", f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"],
        stubs=[names[i] for i in keep], title=f"{what} ({inference.method})", style="params",
    )


def _inference_notes(inference: MixtureInferenceResult, covariances: bool) -> list[str]:
    notes = [
        "Components are numbered from 1 in the order of the aggregate (means_); w_K = 1 - sum of the "
        "others. Tests of 'parameter = 0' are left blank for weights and variances.",
    ]
    if not covariances:
        notes.append("Covariance entries are left out; summary(covariances=True) lists them.")
    tests = inference.machine_tests
    if tests is not None:
        flagged = np.flatnonzero(tests.reject)
        notes.append(
            f"Per-machine Wald statistics have {tests.df} degrees of freedom; {tests.method}-adjusted "
            f"p-values below {tests.alpha:g}: "
            + (", ".join(f"machine {int(i)}" for i in flagged) if flagged.size else "none") + "."
        )
    if inference.jackknife_failed.size:
        notes.append(
            f"{inference.jackknife_failed.size} leave-one-out or bootstrap aggregates with fewer components "
            "were left out."
        )
    return notes


def aggregation_summary(
    result: AggregationResult,
    inference: MixtureInferenceResult | None = None,
    *,
    alpha: float = 0.05,
    covariances: bool = False,
) -> Report:
    """A statsmodels-style report of an aggregation, with inference when given.

    Parameters
    ----------
    result : AggregationResult
        The output of :func:`dfmr.dfmr`, :func:`dfmr.mr`, :func:`dfmr.coat` or :func:`dfmr.tkb`.
    inference : MixtureInferenceResult, optional
        Standard errors, intervals and per-machine tests of ``result`` (:func:`dfmr.inference.infer`).
    alpha : float, default 0.05
        Intervals of level ``1 - alpha`` (with ``inference``).
    covariances : bool, default False
        List the covariance entries too (with ``inference``).

    Returns
    -------
    Report
        A header (method, machines received and retained, centre, threshold kappa, radius r,
        cut-off, objective, MM iterations, convergence, components requested and returned,
        and the interval method), a per-machine table when distances or tests exist (distance
        to the centre, median distance, Wald statistic, p-value, adjusted p-value, kept),
        the aggregated mixture, the parameters with standard errors and intervals (with
        ``inference``), and notes (excluded machines, dropped components, non-convergence,
        machines the tests flag).
    """
    name = _METHOD_NAMES.get(result.method, result.method)
    tables = [_pairs_table(f"Aggregation results: {name}", *_header(result, inference))]
    machines = _machine_table(result, inference)
    if machines is not None:
        tables.append(machines)
    mixture, mixture_note = _mixture_table(result.mixture)
    tables.append(mixture)
    notes = _notes(result)
    support = support_note(result.support)
    if support is not None:
        notes.append(support)
    if inference is not None:
        tables.append(_params_table(inference, alpha, covariances))
        notes += _inference_notes(inference, covariances)
    # robust_dfmr's screening decisions (machine, component, rule, statistic), as robust.py formats them;
    # the sites' proportions and their homogeneity test, as sites.py formats them.
    return _report(tables, [*notes, mixture_note],
                   screening_summary_lines(result, _WIDTH) + site_summary_lines(result, _WIDTH))


def inference_summary(
    inference: MixtureInferenceResult,
    aggregation: AggregationResult | None = None,
    *,
    alpha: float = 0.05,
    covariances: bool = False,
) -> Report:
    """The report of an inference result; with its aggregation, :func:`aggregation_summary` of both.

    Parameters
    ----------
    inference : MixtureInferenceResult
    aggregation : AggregationResult, optional
    alpha : float, default 0.05
    covariances : bool, default False

    Returns
    -------
    Report
    """
    if aggregation is not None:
        return aggregation_summary(aggregation, inference, alpha=alpha, covariances=covariances)
    left = [
        ("Aggregator", inference.aggregator.upper()),
        ("Machines received", str(inference.n_machines)),
        ("Machines retained", str(inference.retained.size)),
    ]
    right = [("Dimension d", str(inference.mixture.dim)), *_inference_pairs(inference)]
    tables = [_pairs_table("Inference for an aggregated Gaussian mixture", left, right)]
    tests = inference.machine_tests
    if tests is not None:
        rows = [
            [str(i), f"{tests.statistic[i]:.4g}", _pvalue(tests.pvalues[i]), _pvalue(tests.pvalues_adjusted[i]),
             _yes_no(bool(tests.retained[i]))]
            for i in range(tests.statistic.size)
        ]
        tables.append(_table(
            rows, ["machine", "Wald", "p-value", f"{tests.method} p", "kept"],
            title="Per-machine tests against the aggregate", style="plain", data_aligns="lrrrr",
        ))
    tables.append(_params_table(inference, alpha, covariances))
    return _report(tables, _inference_notes(inference, covariances))


_SIZE_SOURCES = {"server": "given (server)", "claimed": "claimed (capped)", "equal": "equal"}


def _size_notes(result: AggregationResult) -> list[str]:
    """How the pool was weighted: by which sizes, and which claims were capped or missing."""
    sizes = result.sizes
    if result.size_source is None or result.method == "coat":
        return []
    if result.size_source == "equal":
        return ["Pool weights w_ik / |R|: no sample sizes were given by the server or claimed by the estimates."]
    if result.size_source == "server":
        return ["Pool weights w_ik n_i / sum_R n_j with the sample sizes given by the server (authoritative)."]
    notes = [
        f"Pool weights w_ik n_i / sum_R n_j with the sample sizes the estimates claim (untrusted): a missing "
        f"claim counts as the median claim ({_num(sizes.median_claim)}), every claim is capped at "
        f"{_num(sizes.cap)} (5x the median claim). Pass n_samples= for sizes the server knows."
    ]
    if sizes.capped.size:
        notes.append(f"Claims capped ({sizes.capped.size}): machines {', '.join(str(int(i)) for i in sizes.capped)}.")
    if sizes.unclaimed.size:
        notes.append(f"No size claimed ({sizes.unclaimed.size}, counted at the median claim): machines "
                     f"{', '.join(str(int(i)) for i in sizes.unclaimed)}.")
    return notes


def _notes(result: AggregationResult) -> list[str]:
    notes = _size_notes(result)
    excluded = np.flatnonzero(~result.kept)
    if result.method == "dfmr" and result.filter is not None:
        notes.append(
            f"Machines are kept when their distance to the centre is at most the cut-off "
            f"kappa*r = {_num(result.filter.cutoff)}."
        )
    if result.method == "coat":
        notes.append("COAT returns the centre machine's estimate (smallest median distance) without reduction.")
    elif result.method in ("mr", "tkb"):
        notes.append("No machine filter: every machine's estimate enters the reduction.")
    if result.method == "tkb":
        level = "" if result.alpha is None else f" (alpha = {result.alpha:g})"
        notes.append(
            f"TKB{level} transports only the cheapest 1 - alpha of the pooled mass in each assignment step; "
            "it trims components, not whole machines."
        )
    if excluded.size and result.method != "coat":
        notes.append(f"Machines excluded ({excluded.size}): {', '.join(str(int(i)) for i in excluded)}.")
    dropped = _components_text(result)[1]
    if dropped is not None:
        notes.append(dropped)
    if not result.converged:
        notes.append(
            f"The reduction stopped after {result.n_iter} MM iterations without converging; "
            "raise max_iter or loosen tol."
        )
    return notes
