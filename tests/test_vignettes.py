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


@pytest.mark.parametrize("script", sorted(p.name for p in VIGNETTES.glob("*.py")))
def test_python_vignette_runs(script, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "DFMR_VIGNETTE_OUT": str(tmp_path)}
    proc = run([sys.executable, str(VIGNETTES / script)], cwd=tmp_path, env=env, timeout=900)
    assert proc.stdout.strip(), "the vignette printed nothing"


def test_cpp_vignette_matches_numpy_reference(tmp_path):
    """The installed core, used from a separate CMake project in one call, agrees with the NumPy reference."""
    prefix, build_core, build_app = tmp_path / "prefix", tmp_path / "core", tmp_path / "app"
    eigen = eigen_prefix()
    run(["cmake", "-S", str(ROOT), "-B", str(build_core), f"-DCMAKE_PREFIX_PATH={eigen}",
         "-DDFMR_BUILD_EXAMPLES=OFF", "-DCMAKE_BUILD_TYPE=Release"])
    run(["cmake", "--build", str(build_core), "-j", "2"])
    run(["cmake", "--install", str(build_core), "--prefix", str(prefix)])
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
