"""The simulation study: ``dfmr simulate`` end to end, its CSV and report, seeding, resuming, summaries."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dfmr
from dfmr import study
from dfmr.cli import main
from dfmr.simulate import ATTACK_KINDS, ATTACK_LEVELS

RATES = (0.1, 0.2, 0.3, 0.4)


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """``dfmr simulate --repetitions 2 --n 20000`` (the short configuration) and its report."""
    where = tmp_path_factory.mktemp("simulate")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dfmr.cli", "simulate", "--repetitions", "2", "--n", "20000", "--no-progress"],
        cwd=where, capture_output=True, text=True, timeout=1800,
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    print(f"dfmr simulate --repetitions 2 --n 20000: {seconds:.1f} s")  # recorded, not asserted
    assert main(["simulate", "report", str(where / "dfmr_simulation.csv"), "--out-dir", str(where / "report")]) == 0
    return where


def test_short_run_has_every_method_and_cell(short_run):
    rows = read(short_run / "dfmr_simulation.csv")
    methods = study.available_methods()
    expected = {(rep, lv, kd, r, me) for rep in ("0", "1") for lv in ATTACK_LEVELS for kd in ATTACK_KINDS
                for r in RATES for me in methods}
    got = {(row["repetition"], row["level"], row["attack"], float(row["rate"]), row["method"]) for row in rows}
    assert got == expected
    assert len(rows) == len(expected)
    for row in rows:
        assert math.isfinite(float(row["w1"])) and float(row["w1"]) >= 0
        assert -1 <= float(row["ari"]) <= 1 and math.isfinite(float(row["loglik"]))


def test_short_run_dfmr_is_within_ten_percent_of_oracle_under_machine_mean_attack(short_run):
    summary = study.summarize(read(short_run / "dfmr_simulation.csv"), "w1")
    dfmr_w1 = summary[("machine", "mean", 0.2, "dfmr")][0]
    oracle_w1 = summary[("machine", "mean", 0.2, "oracle")][0]
    assert dfmr_w1 <= 1.1 * oracle_w1
    # and MR, which keeps the attacked machines, is orders of magnitude worse
    assert summary[("machine", "mean", 0.2, "mr")][0] > 100 * oracle_w1


def test_short_run_machine_counts(short_run):
    for row in read(short_run / "dfmr_simulation.csv"):
        n_bad = int(row["n_bad"])
        if row["level"] == "machine":
            assert n_bad == math.floor(float(row["rate"]) * 20 + 1e-9)
        if row["method"] == "global":
            assert row["good_dropped"] == row["bad_kept"] == ""
        elif row["method"] in ("mr", "tkb"):
            assert (int(row["good_dropped"]), int(row["bad_kept"])) == (0, n_bad)
        elif row["method"] == "oracle":
            assert int(row["bad_kept"]) == 0
        elif row["method"] == "coat":
            # one machine used: every other good machine is dropped
            assert int(row["bad_kept"]) in (0, 1)
            assert int(row["good_dropped"]) + (1 - int(row["bad_kept"])) == 20 - n_bad
        elif row["method"] == "dfmr":
            assert 0 <= int(row["good_dropped"]) <= 20 - n_bad and 0 <= int(row["bad_kept"]) <= n_bad


def test_short_run_report_has_every_method_and_cell(short_run):
    text = (short_run / "report" / "report.md").read_text()
    w1_machine = text.split("## W1 distance to the population (smaller is better): machine-level attacks")[1]
    table = w1_machine.split("\n## ")[0]
    header = next(line for line in table.splitlines() if line.startswith("| rate"))
    for label in ("global", "MR", "DFMR", "COAT", "TKB", "oracle"):
        assert f" {label} |" in header
    body = [line for line in table.splitlines() if line.startswith("| 0.")]
    assert {tuple(cell.strip() for cell in line.split("|")[1:3]) for line in body} == {
        (f"{r:g}", kd) for r in RATES for kd in ATTACK_KINDS}
    assert all(line.count("±") == len(study.available_methods()) for line in body)
    assert "component-level attacks" in text
    for level in ATTACK_LEVELS:
        png = short_run / "report" / f"w1_{level}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_cell_is_mean_and_standard_error_of_rows(short_run):
    rows = [r for r in read(short_run / "dfmr_simulation.csv")
            if (r["level"], r["attack"], r["rate"], r["method"]) == ("component", "cov", "0.3", "tkb")]
    values = np.array([float(r["w1"]) for r in rows])
    mean, se, count = study.summarize(read(short_run / "dfmr_simulation.csv"))[("component", "cov", 0.3, "tkb")]
    assert count == 2
    assert mean == pytest.approx(values.mean())
    assert se == pytest.approx(abs(values[0] - values[1]) / 2)  # sd/sqrt(2) of two values


def test_any_cell_reruns_alone_with_the_same_numbers(short_run):
    full = {(r["method"]): r for r in read(short_run / "dfmr_simulation.csv")
            if (r["repetition"], r["level"], r["attack"], r["rate"]) == ("1", "component", "weight", "0.3")}
    alone = study.study(n=20_000, repetitions=[1], rates=[0.3], attacks=["weight"], levels=["component"],
                        n_jobs=1, progress=False)
    assert {r["method"] for r in alone} == set(full)
    for row in alone:
        ref = full[row["method"]]
        for key in ("w1", "ari", "loglik"):
            assert float(ref[key]) == pytest.approx(row[key], rel=1e-12)
        assert str(row["bad_kept"]) == ref["bad_kept"]


SMALL = dict(n=2_000, n_machines=4, rates=[0.25], attacks=["mean"], levels=["machine"], methods=["dfmr", "oracle"],
             n_jobs=1, progress=False)


def test_resume_keeps_finished_repetitions_and_reruns_the_cut_one(tmp_path):
    out = tmp_path / "r.csv"
    complete = study.study(repetitions=3, out=out, **SMALL)
    lines = out.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 3 * 2
    # An interrupted run: repetition 2 was cut after one of its two rows.
    out.write_text("".join(lines[:-1]))
    assert study.study(repetitions=3, out=out, resume=True, **SMALL)
    again = read(out)
    assert len(again) == 6
    by_key = {(r["repetition"], r["method"]): r for r in again}
    for row in complete:
        assert float(by_key[(str(row["repetition"]), row["method"])]["w1"]) == pytest.approx(row["w1"], rel=1e-12)


def test_existing_output_needs_resume_and_same_settings(tmp_path):
    out = tmp_path / "r.csv"
    study.study(repetitions=1, out=out, **SMALL)
    with pytest.raises(ValueError, match="exists"):
        study.study(repetitions=1, out=out, **SMALL)
    with pytest.raises(ValueError, match="seed"):
        study.study(repetitions=2, out=out, resume=True, seed=5, **SMALL)


def test_resume_from_the_command_line_continues_the_file(tmp_path):
    out = tmp_path / "r.csv"
    args = ["simulate", "--n", "2000", "-m", "4", "--rates", "0.25", "--attacks", "cov", "--levels", "machine",
            "--methods", "dfmr", "--jobs", "1", "--no-progress", "--out", str(out)]
    assert main([*args, "--repetitions", "1"]) == 0
    assert main([*args, "--repetitions", "1"]) == 2  # exists, no --resume
    assert main([*args, "--repetitions", "2", "--resume"]) == 0
    assert [r["repetition"] for r in read(out)] == ["0", "1"]


def test_study_runs_on_a_mixsim_population_from_the_command_line(tmp_path):
    out = tmp_path / "r.csv"
    assert main(["simulate", "--mixsim", "2", "2", "0.05", "3", "--n", "2000", "-m", "4", "--rates", "0.25",
                 "--attacks", "mean", "--levels", "machine", "--repetitions", "1", "--jobs", "1", "--no-progress",
                 "--out", str(out)]) == 0
    rows = read(out)
    assert {r["method"] for r in rows} == set(study.available_methods())
    assert rows[0]["population"] != study.fingerprint(dfmr.simulate.population())


def test_repetitions_run_in_parallel_give_the_serial_numbers(tmp_path):
    serial = study.study(repetitions=2, **SMALL)
    parallel = study.study(repetitions=2, **{**SMALL, "n_jobs": 2})
    assert [r["w1"] for r in serial] == pytest.approx([r["w1"] for r in parallel], rel=1e-12)


def test_study_compares_the_papers_six_methods_and_robust_dfmr():
    assert study.available_methods() == ("global", "mr", "dfmr", "robust_dfmr", "coat", "tkb", "oracle")


def test_robust_dfmr_arm_screens_out_the_attacked_machine():
    # 4 machines, rate 0.25: one machine's means are attacked. The robust arm must drop it (and no
    # honest one) and come as close to the truth as the oracle (MR of the honest machines); MR keeps it.
    rows = study.study(repetitions=2, **{**SMALL, "methods": ["robust_dfmr", "mr", "oracle"]})
    by = {(r["repetition"], r["method"]): r for r in rows}
    for rep in (0, 1):
        robust, oracle, mr = by[rep, "robust_dfmr"], by[rep, "oracle"], by[rep, "mr"]
        assert (robust["n_bad"], robust["bad_kept"], robust["good_dropped"]) == (1, 0, 0)
        assert robust["w1"] <= 1.1 * oracle["w1"]
        assert mr["bad_kept"] == 1 and mr["w1"] > 10 * oracle["w1"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"attacks": ["shift"]}, "attack"), ({"levels": ["site"]}, "level"), ({"methods": ["mean"]}, "method"),
     ({"rates": [1.0]}, "rates"), ({"n": 10}, "too small")],
)
def test_study_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        study.study(**{**SMALL, **kwargs})


def test_report_rejects_a_file_that_is_not_a_study(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["simulate", "report", str(bad)]) == 2
    shutil.copy(bad, tmp_path / "y.csv")
    with pytest.raises(ValueError, match="not a dfmr simulation CSV"):
        study.report(tmp_path / "y.csv")
