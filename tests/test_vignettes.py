"""The vignettes run as written: the Python walk-through and the C++ consumer project."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference

from dfmr import simulate

ROOT = Path(__file__).resolve().parents[1]
VIGNETTES = ROOT / "vignettes"


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def eigen_prefix() -> str:
    return run([sys.executable, "-m", "cmeel", "cmake"]).stdout.strip()


def method_rows(lines: list[str]) -> dict[str, list[float]]:
    """``{method: [machines, W1, loglik, ARI]}`` from the walk-through's table lines."""
    return {line.split()[0]: [float(x) for x in line.split()[1:]] for line in lines}


def check_python_walkthrough(out: str, where: Path) -> None:
    """What the walk-through says: DFMR drops the attacked machines and matches the oracle; MR is ruined."""
    assert "population: K = 5, d = 10; 100,000 points over 20 machines of 5,000" in out
    lines = out.splitlines()
    blocks = {}
    for i, line in enumerate(lines):
        head = re.fullmatch(r"(\w+) attack on machines \[([\d, ]+)\]; DFMR kept (\d+) machines, dropped \[([\d, ]*)\]",
                            line)
        if head:
            attacked, dropped = ([int(x) for x in g.split(", ") if x] for g in (head[2], head[4]))
            assert lines[i + 1].split() == ["method", "machines", "W1", "loglik", "ARI"]
            blocks[head[1]] = attacked, int(head[3]), dropped, method_rows(lines[i + 2:i + 8])
    assert list(blocks) == ["mean", "cov", "weight"]
    for kind, (attacked, kept, dropped, rows) in blocks.items():
        assert list(rows) == ["global", "DFMR", "MR", "COAT", "TKB", "oracle"]
        assert len(attacked) == 4 and kept + len(dropped) == 20
        assert [r[0] for r in rows.values()] == [20, kept, 20, 1, 20, 16]  # machines each method used
        assert rows["global"] == blocks["mean"][3]["global"]  # the global fit sees no attack
        if kind == "weight":  # a mild attack: no method suffers much
            assert all(r[1] < 1.0 for r in rows.values())
        else:  # DFMR keeps exactly the good machines, so it prints the oracle's numbers; MR is ruined
            assert dropped == attacked and rows["DFMR"] == rows["oracle"]
            assert rows["MR"][1] > 10 * rows["DFMR"][1]
    # The report of the mean attack: the machines beyond the cut-off are the attacked ones.
    attacked, kept, _, _ = blocks["mean"]
    assert re.search(rf"^Machines retained:\s+{kept}\s", out, flags=re.MULTILINE)
    cutoff = float(re.search(r"Cut-off kappa\*r:\s+(\S+)", out)[1])
    table = re.findall(r"^(\d+)(?: \(centre\))?\s+(\S+)\s+\S+\s+(yes|no)$", out, flags=re.MULTILINE)
    assert [int(m) for m, _, _ in table] == list(range(20))
    assert all((flag == "yes") == (float(dist) <= cutoff) for _, dist, flag in table)
    assert [int(m) for m, _, flag in table if flag == "no"] == attacked
    figure = where / "dfmr_walkthrough.png"
    assert f"figure written to {figure}" in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def check_dask_walkthrough(out: str, where: Path) -> None:
    """The engines give the process pool's mixture; a broken site is reported and left out."""
    files = ", ".join(f"site{i}.npy" for i in range(8))
    assert f"8 per-site files in {where / 'sites'}: {files}" in out
    assert sorted(p.name for p in (where / "sites").iterdir()) == [f"site{i}.npy" for i in range(8)]
    assert float(re.search(r"process pool: 8 machines, W1 to the population (\S+)", out)[1]) < 0.1
    assert "dask cluster: 8 machines, largest difference of the means from the pool: 0.0e+00" in out
    assert "dask array with 8 row chunks: same mixture as the pool: True" in out
    assert "with site 5 broken: failed machines {5: 'ValueError: the sample covariance of X is singular" in out
    match = re.search(r"aggregated the other 7 \(machines \[0, 1, 2, 3, 4, 6, 7\]\); W1 to the population (\S+)", out)
    assert match and float(match[1]) < 0.1
    assert re.search(r"^Machines received:\s+7\s", out, flags=re.MULTILINE)
    assert "machine 5: ValueError: the sample covariance" in out


def check_real_data_digits(out: str, where: Path) -> None:
    """The table has every method; DFMR, which drops the attacked machines, beats MR held out."""
    assert out.startswith("load_digits: 1,797 images, 10 digits; PCA to 5 dimensions; 6 machines, 2 under the "
                          "mean attack; K = 10; 2 random 70/30 splits")
    rows = re.findall(r"^\| (\w+) \| (\S+) ± (\S+) \| (\S+) ± (\S+) \|$", out, flags=re.MULTILINE)
    scores = {name: [float(x) for x in values] for name, *values in rows}
    assert list(scores) == ["global", "DFMR", "MR", "TKB", "COAT", "oracle"]
    assert all(-1 <= s[0] <= 1 and s[1] >= 0 and s[2] < 0 and s[3] >= 0 for s in scores.values())
    assert scores["DFMR"][2] > scores["MR"][2] and scores["DFMR"][0] > scores["MR"][0]


VIGNETTE_CHECKS = {
    "python_walkthrough.py": check_python_walkthrough,
    "dask_walkthrough.py": check_dask_walkthrough,
    "real_data_digits.py": check_real_data_digits,
}


@pytest.mark.parametrize("script", sorted(p.name for p in VIGNETTES.glob("*.py")))
def test_python_vignette_prints_what_it_says(script, tmp_path):
    check = VIGNETTE_CHECKS[script]  # a new vignette needs its checks here
    env = {**os.environ, "MPLBACKEND": "Agg", "DFMR_VIGNETTE_OUT": str(tmp_path)}
    proc = run([sys.executable, str(VIGNETTES / script)], cwd=tmp_path, env=env, timeout=900)
    check(proc.stdout, tmp_path)


def test_cpp_vignette_matches_numpy_reference(tmp_path):
    """The installed core, used from a separate CMake project in one call, agrees with the NumPy reference."""
    prefix, build_core, build_app = tmp_path / "prefix", tmp_path / "core", tmp_path / "app"
    eigen = eigen_prefix()
    if os.environ.get("DFMR_TESTS_CORE_PREFIX"):
        # tests/run has just built this tree's core (Release) for ctest and installed it there: the
        # same install rules, without compiling the core once more inside the suite.
        prefix = Path(os.environ["DFMR_TESTS_CORE_PREFIX"])
    else:
        run(["cmake", "-S", str(ROOT), "-B", str(build_core), f"-DCMAKE_PREFIX_PATH={eigen}",
             "-DDFMR_BUILD_EXAMPLES=OFF", "-DCMAKE_BUILD_TYPE=Release"])
        run(["cmake", "--build", str(build_core), "-j", "2"])
        run(["cmake", "--install", str(build_core), "--prefix", str(prefix)])
    assert (prefix / "include" / "dfmr").is_dir(), f"no installed core in {prefix}"
    run(["cmake", "-S", str(VIGNETTES / "cpp"), "-B", str(build_app), f"-DCMAKE_PREFIX_PATH={prefix};{eigen}"])
    run(["cmake", "--build", str(build_app)])

    local, bad = simulate.attack(simulate.local_estimates_fixture(), 0.2, kind="mean", random_state=3)
    lines = [f"{len(local)} 5 {local[0].dim}"]
    for f in local:
        for w, mu, cov in zip(f.weights, f.means, f.covariances):
            lines.append(" ".join(repr(float(x)) for x in [w, *mu, *cov.ravel()]))
    estimates = tmp_path / "estimates.txt"
    estimates.write_text("\n".join(lines) + "\n")
    out = run([str(build_app / "aggregate"), str(estimates)]).stdout

    D = reference.pairwise_l2_numpy(local)
    centre, cutoff, retained = reference.filter_numpy(D)
    expected = reference.dfmr_numpy(local, 5)
    assert int(re.search(r"^centre (\d+)$", out, re.M).group(1)) == centre
    kept = [int(x) for x in re.search(r"^kept(.*)$", out, re.M).group(1).split()]
    assert kept == retained.tolist() == expected.retained.tolist()
    assert not set(kept) & set(bad.tolist())
    assert float(re.search(r"cutoff (\S+)", out).group(1)) == pytest.approx(cutoff, rel=1e-8)
    assert float(re.search(r"^objective (\S+)", out, re.M).group(1)) == pytest.approx(expected.objective, rel=1e-8)
    rows = re.findall(r"^weight (\S+) mean (.*)$", out, re.M)
    weights = np.array([float(w) for w, _ in rows])
    means = np.array([[float(x) for x in mu.split()] for _, mu in rows])
    order, ref_order = np.argsort(means[:, 0]), np.argsort(expected.mixture.means[:, 0])
    np.testing.assert_allclose(weights[order], expected.mixture.weights[ref_order], rtol=1e-8)
    np.testing.assert_allclose(means[order], expected.mixture.means[ref_order], rtol=1e-8, atol=1e-10)
