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
