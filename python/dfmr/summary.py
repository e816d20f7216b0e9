"""Plain-text reports of aggregation results and mixtures, in the style of statsmodels' ``summary()``.

A report has three parts: a header block of settings and diagnostics in two columns, a
per-machine table (distance to the centre, median distance, kept or not) when the method
computed distances, and the aggregated mixture, one row per component. Every part reads only
attributes of :class:`~dfmr.aggregate.AggregationResult`; fields a method does not compute
(``None``) are printed as ``n/a`` or their part is left out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .params import GaussianMixtureParams
from .robust import screening_summary_lines

if TYPE_CHECKING:
    from .aggregate import AggregationResult

__all__ = ["aggregation_summary", "mixture_summary", "text_table"]

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


def _num(x: float | None) -> str:
    """A float in at most 6 significant digits, ``n/a`` for None."""
    if x is None:
        return "n/a"
    return f"{float(x):.6g}"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _title(text: str, width: int) -> str:
    return text.center(width).rstrip()


def _pairs_block(left: Sequence[tuple[str, str]], right: Sequence[tuple[str, str]], width: int) -> list[str]:
    """Two columns of ``key: value`` lines, values right-aligned in each column (statsmodels' header layout)."""
    col = (width - 3) // 2
    lines = []
    for i in range(max(len(left), len(right))):
        cells = []
        for side in (left, right):
            if i < len(side):
                key, value = side[i]
                key = f"{key}:"
                cells.append(f"{key}{value:>{max(col - len(key), len(value) + 1)}}")
            else:
                cells.append(" " * col)
        lines.append(f"{cells[0]:<{col}}   {cells[1]}".rstrip())
    return lines


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


def _mixture_lines(mixture: GaussianMixtureParams, width: int) -> list[str]:
    title = f"Gaussian mixture: K = {mixture.n_components} components in d = {mixture.dim} dimensions"
    lines = [_title(title, width), "=" * width]
    lines += text_table(["component", "weight", "mean", "tr(Sigma)"], _component_rows(mixture), "rrlr", width)
    lines.append("=" * width)
    if mixture.dim > _MAX_MEAN_COORDS:
        lines.append(f"Means show coordinates 1-{_MEAN_HEAD} and {mixture.dim}; tr(Sigma) is the total variance.")
    else:
        lines.append("tr(Sigma) is the total variance of the component.")
    return lines


def mixture_summary(mixture: GaussianMixtureParams) -> str:
    """A plain-text table of a mixture: weight, mean and total variance of every component.

    Parameters
    ----------
    mixture : GaussianMixtureParams
        The mixture to describe.

    Returns
    -------
    str
        One row per component; means with more than six coordinates are abbreviated.

    Raises
    ------
    TypeError
        If ``mixture`` is not a :class:`GaussianMixtureParams`.
    """
    if not isinstance(mixture, GaussianMixtureParams):
        raise TypeError(f"mixture must be a GaussianMixtureParams, got {type(mixture).__name__}.")
    return "\n".join(_mixture_lines(mixture, _WIDTH))


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


def _header(result: AggregationResult) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
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
    right = [
        ("Dimension d", str(result.mixture.dim)),
        ("Components", _components_text(result)[0]),
        ("Objective", _num(result.objective)),
        ("MM iterations", str(result.n_iter)),
        ("Converged", _yes_no(result.converged)),
    ]
    return left, right


def _machine_lines(result: AggregationResult, width: int) -> list[str]:
    """Per-machine table: distance to the centre (when known), median distance, kept flag."""
    D = result.distances
    if D is None:
        return []
    to_center = result.distance_to_center
    medians = np.quantile(D, 0.5, axis=1)
    kept = result.kept
    headers = ["machine"]
    if to_center is not None:
        headers.append("distance to centre")
    headers += ["median distance", "kept"]
    rows = []
    for i in range(result.n_machines):
        label = f"{i} (centre)" if i == result.center else str(i)
        row = [label]
        if to_center is not None:
            row.append(_num(to_center[i]))
        row += [_num(medians[i]), _yes_no(bool(kept[i]))]
        rows.append(row)
    lines = ["", _title("L2 distances between local estimates", width), "=" * width]
    lines += text_table(headers, rows, "l" + "r" * (len(headers) - 1), width)
    lines.append("=" * width)
    lines.append("The centre has the smallest median distance (self-distance included).")
    return lines


def _notes(result: AggregationResult) -> list[str]:
    notes = []
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


def aggregation_summary(result: AggregationResult) -> str:
    """A statsmodels-style report of an aggregation.

    Parameters
    ----------
    result : AggregationResult
        The output of :func:`dfmr.dfmr`, :func:`dfmr.mr`, :func:`dfmr.coat` or :func:`dfmr.tkb`.

    Returns
    -------
    str
        A header block (method, machines received and retained, centre, threshold kappa,
        radius r, cut-off, objective, MM iterations, convergence, components requested and
        returned), a per-machine table when distances were computed (distance to the centre,
        median distance, kept flag), notes (excluded machines, dropped components,
        non-convergence) and the aggregated mixture.
    """
    width = _WIDTH
    name = _METHOD_NAMES.get(result.method, result.method)
    lines = [_title(f"Aggregation results: {name}", width), "=" * width]
    lines += _pairs_block(*_header(result), width)
    lines.append("=" * width)
    notes = _notes(result)
    for note in notes:
        lines += textwrap.wrap(f"Note: {note}", width, subsequent_indent="      ", break_on_hyphens=False)
    lines += _machine_lines(result, width)
    lines += screening_summary_lines(result, width)
    lines.append("")
    lines += _mixture_lines(result.mixture, width)
    return "\n".join(lines)
