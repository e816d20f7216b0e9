"""Tests of dfmr.summary: the reports (statsmodels tables) of aggregations, mixtures and inference results."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from conftest import assert_summary_shows_mixture, header_value

import dfmr
from dfmr import inference, simulate
from dfmr.aggregate import AggregationResult
from dfmr.params import GaussianMixtureParams
from dfmr.summary import Report, aggregation_summary, mixture_summary

K = 5


@pytest.fixture(scope="module")
def attacked() -> tuple[list[GaussianMixtureParams], np.ndarray]:
    return simulate.attack(simulate.local_estimates_fixture(), 0.2, kind="mean", random_state=0)


@pytest.fixture(scope="module")
def results(attacked: tuple[list[GaussianMixtureParams], np.ndarray]) -> dict[str, AggregationResult]:
    mixtures, _ = attacked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # MR on attacked input may drop components
        return {
            "dfmr": dfmr.dfmr(mixtures, K),
            "mr": dfmr.mr(mixtures, K),
            "coat": dfmr.coat(mixtures),
            "tkb": dfmr.tkb(mixtures, K),
        }


def machine_table(text: str) -> dict[int, tuple[bool, bool]]:
    """``{machine: (kept, is_centre)}`` parsed from the per-machine table of a summary."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("machine") and line.endswith("kept"))
    rows = {}
    for line in lines[start + 2:]:
        match = re.match(r"^(\d+)( \(centre\))?\s.*\s(yes|no)$", line)
        if not match:  # the next table's title or rule
            break
        rows[int(match.group(1))] = (match.group(3) == "yes", match.group(2) is not None)
    return rows


def test_dfmr_summary_lists_every_machine_with_kept_flags_matching_retained(results):
    res = results["dfmr"]
    rows = machine_table(res.summary())
    assert sorted(rows) == list(range(res.n_machines))
    kept = {i for i, (flag, _) in rows.items() if flag}
    assert kept == set(res.retained.tolist())
    assert [i for i, (_, centre) in rows.items() if centre] == [res.center]


def test_dfmr_summary_header_reports_filter_settings(results):
    res = results["dfmr"]
    text = res.summary()
    assert header_value(text, "Method") == "DFMR"
    assert header_value(text, "Machines received") == str(res.n_machines)
    assert header_value(text, "Machines retained") == str(len(res.retained))
    assert header_value(text, "Centre machine") == str(res.center)
    assert float(header_value(text, "Threshold kappa")) == pytest.approx(res.filter.threshold, rel=1e-5)
    assert float(header_value(text, "Radius r")) == pytest.approx(res.filter.radius, rel=1e-5)
    assert float(header_value(text, "Cut-off kappa*r")) == pytest.approx(res.filter.cutoff, rel=1e-5)
    assert float(header_value(text, "Objective")) == pytest.approx(res.objective, rel=1e-5)
    assert header_value(text, "MM iterations") == str(res.n_iter)
    assert header_value(text, "Converged") == ("yes" if res.converged else "no")
    assert header_value(text, "Components") == f"{K} of {K}"


def test_dfmr_summary_names_the_excluded_machines(results, attacked):
    res = results["dfmr"]
    excluded = sorted(set(range(res.n_machines)) - set(res.retained.tolist()))
    assert excluded  # the mean attack is filtered out
    flat = " ".join(res.summary().split())
    assert f"Machines excluded ({len(excluded)}): {', '.join(map(str, excluded))}." in flat


@pytest.mark.parametrize("method", ["dfmr", "mr", "coat", "tkb"])
def test_summary_reports_the_values_of_its_own_result(results, method):
    res = results[method]
    text = res.summary()
    assert_summary_shows_mixture(text, res.mixture)
    assert header_value(text, "Machines received") == str(res.n_machines)
    assert header_value(text, "Machines retained") == str(len(res.retained))
    assert header_value(text, "MM iterations") == str(res.n_iter)
    if res.objective is not None:
        assert float(header_value(text, "Objective")) == pytest.approx(res.objective, rel=1e-5)


@pytest.mark.parametrize("method", ["dfmr", "mr", "coat", "tkb"])
def test_summary_handles_every_method(results, method):
    res = results[method]
    text = res.summary()
    assert header_value(text, "Method") == method.upper()
    assert f"K = {res.mixture.n_components} components" in text
    has_table = res.distances is not None
    assert ("L2 distances between local estimates" in text) == has_table
    if res.objective is None:
        assert header_value(text, "Objective") == "n/a"
    if res.center is None:
        assert header_value(text, "Centre machine") == "n/a"
    if res.filter is None:
        assert header_value(text, "Threshold kappa") == "n/a"


def test_coat_summary_keeps_only_the_centre(results):
    res = results["coat"]
    rows = machine_table(res.summary())
    assert {i for i, (kept, _) in rows.items() if kept} == {res.center}
    assert header_value(res.summary(), "Components") == str(res.mixture.n_components)


def test_summary_lines_fit_the_report_width(results):
    for res in results.values():
        assert max(len(line) for line in res.summary().splitlines()) <= 80


def two_component_mixture() -> GaussianMixtureParams:
    return GaussianMixtureParams([0.4, 0.6], [[0.0, 1.0], [2.0, -3.5]], [np.eye(2), 2.0 * np.eye(2)])


def test_summary_mentions_dropped_components():
    res = AggregationResult(
        mixture=two_component_mixture(), method="mr", n_machines=3, retained=np.arange(3),
        objective=0.5, n_iter=4, n_components_requested=3,
    )
    text = " ".join(res.summary().split())
    assert "2 of 3 (dropped 1)" in text
    assert "1 of the 3 requested components received no mass in the reduction and were dropped" in text


def test_summary_does_not_mention_dropping_when_all_components_returned(results):
    assert "dropped" not in results["dfmr"].summary()


def test_summary_reports_non_convergence():
    res = AggregationResult(
        mixture=two_component_mixture(), method="tkb", n_machines=4, retained=np.arange(4),
        objective=1.0, n_iter=100, converged=False, n_components_requested=2,
    )
    text = " ".join(res.summary().split())
    assert "Converged: no" in text
    assert "stopped after 100 MM iterations without converging" in text


def test_mixture_summary_has_one_row_per_component_with_its_weight():
    mix = two_component_mixture()
    text = mixture_summary(mix)
    rows = [line.split() for line in text.splitlines() if re.match(r"^\s+\d+\s+0\.\d{4}\s", line)]
    assert [int(r[0]) for r in rows] == [0, 1]
    assert [float(r[1]) for r in rows] == pytest.approx(mix.weights, abs=5e-5)
    assert "[   0    1]" in text and "[   2 -3.5]" in text  # short means in full
    assert "K = 2 components in d = 2 dimensions" in text


def test_mixture_summary_abbreviates_long_means():
    mix = simulate.population()
    text = mixture_summary(mix)
    assert text.count("...") == mix.n_components
    assert f"coordinates 1-4 and {mix.dim}" in text


def test_mixture_summary_rejects_other_objects():
    with pytest.raises(TypeError, match="GaussianMixtureParams"):
        mixture_summary({"weights": [1.0]})


@pytest.fixture(scope="module")
def inferred(attacked, results) -> inference.MixtureInferenceResult:
    mixtures, _ = attacked
    return inference.infer(results["dfmr"], mixtures, n_samples=5000)


def test_reports_are_text_that_exports_html_and_latex(results):
    report = results["dfmr"].summary()
    assert isinstance(report, Report) and isinstance(report, str)
    assert report.as_text() == str(report) == report.summary.as_text()
    html, latex = report.as_html(), report.as_latex()
    assert html.count("<table") == len(report.tables) == 3  # header, machines, mixture
    assert "<td>Machines retained:</td>" in html
    assert "\\begin{tabular}" in latex and "Machines retained:" in latex


def test_summary_with_inference_lists_every_machine_with_its_adjusted_p_value(results, inferred, attacked):
    res = results["dfmr"]
    text = aggregation_summary(res, inferred)
    rows = machine_table(text)
    assert sorted(rows) == list(range(res.n_machines))
    assert {i for i, (kept, _) in rows.items() if kept} == set(res.retained.tolist())
    lines = text.splitlines()
    header = next(line for line in lines if line.strip().startswith("machine"))
    assert header.split()[-4:] == ["p-value", "holm", "p", "kept"]
    for line in lines[lines.index(header) + 2: lines.index(header) + 2 + res.n_machines]:
        machine = int(line.split()[0])
        shown = line.split()[-2]
        adjusted = inferred.machine_tests.pvalues_adjusted[machine]
        assert shown == ("<1e-16" if adjusted < 1e-16 else f"{adjusted:.2g}")
    _, bad = attacked
    flat = " ".join(text.split())
    assert "p-values below 0.05: " + ", ".join(f"machine {i}" for i in bad) + "." in flat
    assert header_value(text, "Intervals") == "jackknife (t, 19 df)"
    assert max(len(line) for line in text.splitlines()) <= 80


def test_summary_parameter_table_matches_the_inference_result(results, inferred):
    text = inferred.summary(aggregation=results["dfmr"])
    ci = inferred.conf_int()
    for name in ("w1", "w5", "mu[3][7]"):
        row = next(line.split() for line in text.splitlines() if line.startswith(name + " "))
        assert float(row[1]) == pytest.approx(inferred.params[name], abs=5e-5)
        assert float(row[2]) == pytest.approx(inferred.bse[name], abs=5e-5)
        assert float(row[-2]) == pytest.approx(ci.loc[name, "lower"], abs=5e-5)
        assert float(row[-1]) == pytest.approx(ci.loc[name, "upper"], abs=5e-5)
    assert "Sigma[" not in text
    with_cov = inferred.summary(covariances=True)
    assert sum(line.startswith("Sigma[") for line in with_cov.splitlines()) == 5 * 55


def test_inference_summary_without_aggregation_lists_the_tests(inferred):
    text = inferred.summary()
    assert "Per-machine tests against the aggregate" in text
    assert header_value(text, "Machines retained") == str(inferred.retained.size)
    assert "L2 distances" not in text


def test_robust_dfmr_summary_keeps_the_notes_and_the_screening_block(attacked):
    mixtures, _ = attacked
    text = dfmr.robust_dfmr(mixtures, K).summary()
    assert "Screening decisions" in text
    assert "Note: Means show coordinates 1-4 and 10" in text
