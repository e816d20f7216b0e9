"""Tests of dfmr.summary: the plain-text reports of aggregation results and mixtures."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import dfmr
from dfmr import simulate
from dfmr.aggregate import AggregationResult
from dfmr.params import GaussianMixtureParams
from dfmr.summary import aggregation_summary, mixture_summary

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
    start = next(i for i, line in enumerate(lines) if line.startswith("machine") and line.endswith("kept"))
    rows = {}
    for line in lines[start + 2:]:
        if line.startswith("="):
            break
        match = re.match(r"^(\d+)( \(centre\))?\s.*\s(yes|no)$", line)
        assert match, f"unexpected row {line!r}"
        rows[int(match.group(1))] = (match.group(3) == "yes", match.group(2) is not None)
    return rows


def header_value(text: str, key: str) -> str:
    match = re.search(rf"{re.escape(key)}:\s+(.+?)(?:\s{{3}}|$)", text, flags=re.MULTILINE)
    assert match, f"{key} not in the header"
    return match.group(1).strip()


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


def test_summary_method_equals_aggregation_summary(results):
    for res in results.values():
        assert res.summary() == aggregation_summary(res)


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
