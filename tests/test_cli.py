"""Tests of the ``dfmr`` command line, in-process through ``main`` and once as a real subprocess."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_io import CORRUPT, assert_round_trip

import dfmr
from dfmr import metrics, simulate
from dfmr.cli import main
from dfmr.io import save_mixtures
from dfmr.local import fit_local
from dfmr.params import GaussianMixtureParams

K = 5
PYTHON_DIR = Path(dfmr.__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def demo_table(out: str) -> dict[str, tuple[int, int, float]]:
    """``{method: (machines used, components, W1)}`` from the demo's comparison table."""
    rows = re.findall(r"^(robust DFMR \(default\)|DFMR|MR|COAT|TKB|Oracle)\s+(\d+)\s+(\d+)\s+(\S+)$", out,
                      flags=re.MULTILINE)
    return {name: (int(used), int(k), float(w1)) for name, used, k, w1 in rows}


def expected_demo(kind: str, rate: float, seed: int) -> tuple[np.ndarray, dict[str, dfmr.AggregationResult]]:
    attacked, bad = simulate.attack(simulate.local_estimates_fixture(), rate, kind=kind, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        results = {
            "robust DFMR (default)": dfmr.robust_dfmr(attacked, K),
            "DFMR": dfmr.dfmr(attacked, K),
            "MR": dfmr.mr(attacked, K),
            "COAT": dfmr.coat(attacked),
            "TKB": dfmr.tkb(attacked, K),
            "Oracle": simulate.oracle(attacked, bad, K),
        }
    return bad, results


@pytest.mark.parametrize(("kind", "seed"), [("mean", 0), ("cov", 1), ("weight", 2)])
def test_demo_names_attacked_machines_and_dfmr_beats_mr(capsys, kind, seed):
    code, out, err = run(capsys, "demo", "--attack", kind, "--seed", seed)
    assert code == 0, err
    bad, results = expected_demo(kind, 0.2, seed)
    assert len(bad) == 4
    assert f"Attacked machines ({kind} attack): {', '.join(map(str, bad))}" in out
    retained = results["DFMR"].retained
    assert f"DFMR retained ({len(retained)}): {', '.join(map(str, retained))}" in out

    truth = simulate.population()
    w1 = {name: metrics.w1_distance(res.mixture, truth) for name, res in results.items()}
    assert w1["DFMR"] < w1["MR"]
    # The default aggregator is within the issue-13 goal of the oracle on the paper's attacks.
    assert w1["robust DFMR (default)"] <= 1.10 * w1["Oracle"]
    table = demo_table(out)
    assert set(table) == set(results)
    for name, res in results.items():
        used, k, printed = table[name]
        assert used == len(res.retained)
        assert k == res.mixture.n_components
        assert printed == pytest.approx(w1[name], rel=1e-5)
    assert results["DFMR"].summary() in out


def test_demo_rate_changes_the_number_of_attacked_machines(capsys):
    code, out, _ = run(capsys, "demo", "--rate", "0.3", "--seed", "5")
    assert code == 0
    bad, _ = expected_demo("mean", 0.3, 5)
    assert len(bad) == 6
    assert f"Attacked machines (mean attack): {', '.join(map(str, bad))}" in out


def test_demo_plot_writes_a_png(capsys, tmp_path):
    path = tmp_path / "filter.png"
    code, _, err = run(capsys, "demo", "--plot", path)
    assert code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"dfmr: wrote {path}" in err


def test_demo_plot_without_matplotlib_is_a_usage_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    path = tmp_path / "filter.png"
    code, out, err = run(capsys, "demo", "--plot", path)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("dfmr: error: --plot needs matplotlib")
    assert out == "" and not path.exists()


def test_demo_runs_as_a_subprocess():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "dfmr.cli", "demo"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    bad, _ = expected_demo("mean", 0.2, 0)
    assert f"Attacked machines (mean attack): {', '.join(map(str, bad))}" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def attacked() -> list[GaussianMixtureParams]:
    return simulate.attack(simulate.local_estimates_fixture(), 0.2, kind="mean", random_state=0)[0]


@pytest.fixture
def estimates_dir(tmp_path, attacked) -> Path:
    """The 20 attacked estimates plus corrupt files of five kinds, in one directory."""
    directory = tmp_path / "estimates"
    save_mixtures(attacked, directory)
    for kind in ("truncated_json", "nan_json", "garbage_npz", "wrong_shapes_npz", "non_pd_json"):
        CORRUPT[kind](directory / kind)
    return directory


def loaded_valid(directory: Path) -> list[GaussianMixtureParams]:
    return [GaussianMixtureParams.load(p) for p in sorted(directory.glob("machine_*.json"))]


def test_aggregate_skips_corrupt_files_and_matches_dfmr_on_the_valid_ones(capsys, tmp_path, estimates_dir):
    out_path = tmp_path / "result.json"
    code, out, err = run(capsys, "aggregate", estimates_dir, "-k", K, "--method", "dfmr", "--out", out_path)
    assert code == 0, err
    for name in ("truncated_json.json", "nan_json.json", "garbage_npz.npz", "wrong_shapes_npz.npz", "non_pd_json.json"):
        assert re.search(rf"^dfmr: warning: skipped {re.escape(name)}: ", err, flags=re.MULTILINE), name
    assert "Traceback" not in err

    expected = dfmr.dfmr(loaded_valid(estimates_dir), K)
    data = json.loads(out_path.read_text())
    assert data["method"] == "dfmr"
    assert data["names"] == [f"machine_{i:03d}.json" for i in range(20)]
    assert data["retained"] == expected.retained.tolist()
    assert data["center"] == expected.center
    saved = GaussianMixtureParams.from_dict(data["mixture"])
    np.testing.assert_array_equal(saved.means, expected.mixture.means)
    np.testing.assert_array_equal(saved.covariances, expected.mixture.covariances)
    assert_round_trip(saved, expected.mixture)
    assert expected.summary() in out
    assert "Read 20 local estimates (skipped 5 invalid)" in out


def test_aggregate_output_maps_machine_indices_to_files(capsys, estimates_dir):
    code, out, _ = run(capsys, "aggregate", estimates_dir, "-k", K)  # the default method: robust_dfmr
    assert code == 0
    valid = loaded_valid(estimates_dir)
    expected = dfmr.robust_dfmr(valid, K)
    _, bad = simulate.attack(simulate.local_estimates_fixture(), 0.2, kind="mean", random_state=0)
    assert set(expected.retained) == set(range(20)) - set(bad.tolist())  # every attacked machine dropped
    for i in range(20):
        flag = "yes" if i in expected.retained else "no"
        assert re.search(rf"^\s*{i}\s+machine_{i:03d}\.json\s+{flag}$", out, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("argv", "compute"),
    [
        (["--method", "mr"], lambda m: dfmr.mr(m, K)),
        (["--method", "coat"], lambda m: dfmr.coat(m)),
        (["--method", "tkb", "--alpha", "0.3"], lambda m: dfmr.tkb(m, K, alpha=0.3)),
        (["--method", "dfmr", "--threshold", "10"], lambda m: dfmr.dfmr(m, K, threshold=10.0)),
        ([], lambda m: dfmr.robust_dfmr(m, K)),
    ],
)
def test_aggregate_methods_and_options_match_the_library(capsys, tmp_path, attacked, argv, compute):
    save_mixtures(attacked, tmp_path / "in")
    out_path = tmp_path / "r.json"
    k_args = [] if "coat" in argv else ["-k", K]
    code, _, err = run(capsys, "aggregate", tmp_path / "in", *k_args, *argv, "--out", out_path)
    assert code == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = compute(loaded_valid(tmp_path / "in"))
    data = json.loads(out_path.read_text())
    assert data["method"] == expected.method
    assert data["retained"] == expected.retained.tolist()
    assert_round_trip(GaussianMixtureParams.from_dict(data["mixture"]), expected.mixture)
    screening = getattr(expected, "screening", None)
    if screening is None:
        assert data["screening"] is None
    else:  # robust_dfmr's every decision is in the file, as summary() shows it
        assert data["screening"]["kept"] == screening.kept.tolist()
        assert [(x["machine"], x["rule"]) for x in data["screening"]["decisions"]] == [
            (x.machine, x.rule) for x in screening.decisions]
        assert data["screening"]["decisions"], "the mean attack on 4 machines is screened"


def test_distances_csv_matches_pairwise_l2(capsys, tmp_path, estimates_dir):
    out_path = tmp_path / "D.csv"
    code, out, err = run(capsys, "distances", estimates_dir, "--out", out_path)
    assert code == 0, err
    mixtures = loaded_valid(estimates_dir)
    D = dfmr.pairwise_l2(mixtures)
    with open(out_path, newline="") as fh:
        rows = list(csv.reader(fh))
    names = [f"machine_{i:03d}.json" for i in range(20)]
    assert rows[0] == ["name", *names]
    assert [r[0] for r in rows[1:]] == names
    np.testing.assert_array_equal(np.array([[float(x) for x in r[1:]] for r in rows[1:]]), D)
    c = dfmr.filtering.center_index(D)
    assert f"Centre (smallest median distance): machine {c} ({names[c]})" in out


@pytest.fixture(scope="module")
def machine_data() -> np.ndarray:
    X, _ = simulate.population().sample(1500, random_state=3)
    return X


def test_fit_saves_the_penalised_mle(capsys, tmp_path, machine_data):
    np.save(tmp_path / "x.npy", machine_data)
    out_path = tmp_path / "local.json"
    code, out, err = run(capsys, "fit", tmp_path / "x.npy", "-k", K, "--seed", 4, "--out", out_path)
    assert code == 0, err
    expected = fit_local(machine_data, K, random_state=4)
    assert_round_trip(GaussianMixtureParams.load(out_path), expected)
    assert f"Penalised MLE on 1500 observations in d = {machine_data.shape[1]} dimensions" in out


def test_fit_reads_csv_with_a_header_line(capsys, tmp_path, machine_data):
    header = ",".join(f"x{j}" for j in range(machine_data.shape[1]))
    np.savetxt(tmp_path / "x.csv", machine_data, delimiter=",", header=header, comments="", fmt="%.17g")
    out_path = tmp_path / "local.json"
    code, _, err = run(capsys, "fit", tmp_path / "x.csv", "-k", K, "--out", out_path)
    assert code == 0, err
    assert_round_trip(GaussianMixtureParams.load(out_path), fit_local(machine_data, K, random_state=0))


def test_fit_without_out_says_how_to_save(capsys, tmp_path, machine_data):
    np.save(tmp_path / "x.npy", machine_data)
    code, out, err = run(capsys, "fit", tmp_path / "x.npy", "-k", 2)
    assert code == 0
    assert "pass --out" in err
    assert "K = 2 components" in out


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"dfmr {dfmr.__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["aggregate", "--help"], ["demo", "-h"]])
def test_help_exits_zero(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "usage: dfmr" in out


def _corrupt_only_dir(tmp: Path) -> Path:
    directory = tmp / "bad"
    directory.mkdir()
    CORRUPT["nan_json"](directory / "a")
    CORRUPT["garbage_npz"](directory / "b")
    return directory


def _npy(tmp: Path, array: np.ndarray) -> Path:
    path = tmp / "data.npy"
    np.save(path, array)
    return path


USAGE_ERRORS: dict[str, tuple[Callable[[Path, Path], list[object]], str]] = {
    "no command": (lambda tmp, est: [], "required: COMMAND"),
    "unknown command": (lambda tmp, est: ["frobnicate"], "invalid choice"),
    "missing k": (lambda tmp, est: ["aggregate", est], "-k/--n-components is required"),
    "k not a number": (lambda tmp, est: ["aggregate", est, "-k", "five"], "expected a positive integer"),
    "missing path": (lambda tmp, est: ["aggregate", tmp / "nope", "-k", K], "no such file or directory"),
    "threshold below one": (lambda tmp, est: ["aggregate", est, "-k", K, "--threshold", "0.5"], "[1, infinity)"),
    "alpha with dfmr": (lambda tmp, est: ["aggregate", est, "-k", K, "--alpha", "0.3"], "--alpha applies only"),
    "threshold with mr": (
        lambda tmp, est: ["aggregate", est, "-k", K, "--method", "mr", "--threshold", "2"],
        "--threshold applies only",
    ),
    "unknown method": (lambda tmp, est: ["aggregate", est, "-k", K, "--method", "avg"], "invalid choice"),
    "empty directory": (lambda tmp, est: ["aggregate", tmp / "empty", "-k", K], "no .json or .npz files"),
    "only corrupt files": (lambda tmp, est: ["aggregate", _corrupt_only_dir(tmp), "-k", K], "none of the 2 inputs"),
    "rate out of range": (lambda tmp, est: ["demo", "--rate", "1.5"], "[0, 1)"),
    "unknown attack": (lambda tmp, est: ["demo", "--attack", "nuke"], "invalid choice"),
    "fit unsupported file": (lambda tmp, est: ["fit", tmp / "x.json", "-k", 2], "use a .npy or .csv file"),
    "fit missing file": (lambda tmp, est: ["fit", tmp / "x.npy", "-k", 2], "no such file or directory"),
    "fit k zero": (lambda tmp, est: ["fit", _npy(tmp, np.zeros((5, 2))), "-k", 0], "expected a positive integer"),
    "fit too few rows": (lambda tmp, est: ["fit", _npy(tmp, np.ones((3, 2))), "-k", 5], "X has 3 rows"),
    "fit empty npy": (lambda tmp, est: ["fit", _write(tmp / "e.npy", ""), "-k", 1], "not a numeric .npy array"),
    "fit npz named npy": (lambda tmp, est: ["fit", _npz_as_npy(tmp), "-k", 1], "holds an .npz archive"),
    "fit text csv": (lambda tmp, est: ["fit", _write(tmp / "t.csv", "a,b\nc,d\n"), "-k", 1], "numeric table"),
    "distances nothing valid": (lambda tmp, est: ["distances", _corrupt_only_dir(tmp)], "none of the 2 inputs"),
}


def _npz_as_npy(tmp: Path) -> Path:
    path = tmp / "archive.npy"
    with open(path, "wb") as fh:
        np.savez(fh, x=np.zeros((5, 2)))
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_user_mistakes_give_one_line_and_exit_code_2(capsys, tmp_path, estimates_dir, case):
    (tmp_path / "empty").mkdir()
    build, expected = USAGE_ERRORS[case]
    code, out, err = run(capsys, *build(tmp_path, estimates_dir))
    assert code == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if not line.startswith("dfmr: warning:")]
    assert len(errors) == 1, err
    assert errors[0].startswith("dfmr: error: ")
    assert expected in errors[0]
    assert out == ""
