"""The benchmark scripts keep working (smoke runs; they print figures and assert no timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent / "benchmarks"


@pytest.mark.parametrize(
    ("script", "expected"),
    [("bench_core.py", "speed-up"), ("bench_fit.py", "x sklearn"), ("bench_scaling_m.py", "MiB"),
     ("bench_coverage.py", "jackknife")],
)
def test_benchmark_runs(script, expected):
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if expected in line]
    assert len(lines) >= 2, proc.stdout


def test_core_versions_benchmark_compares_a_core_with_itself():
    # Both cores compiled from the same commit: the harness must report identical results.
    proc = subprocess.run([sys.executable, str(BENCH / "bench_core_versions.py"), "--quick", "--baseline", "HEAD"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "baseline / current" in line]
    assert [line.split()[0] for line in lines] == ["pairwise", "MR"], proc.stdout
    assert all(line.endswith("largest relative difference 0.0e+00") for line in lines), proc.stdout
