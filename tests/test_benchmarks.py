"""The benchmark scripts keep working, and the core gives the results of a fixed earlier core.

The benchmark runs are smoke runs (marker ``smoke``): they check that each script completes and
prints its sections, not its figures (timings are never asserted). The core comparison is a real
check: bench_core_versions compiles the core of a fixed earlier commit next to this one and must
report identical distances and reductions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent / "benchmarks"


@pytest.mark.smoke
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


# The last core before the AVX-512 kernel and the shared vector types (015252e, 3e0468a), which
# changed how distances are computed but not their bits. A change of the core's numbers must move
# this commit forward, saying why the numbers changed.
EARLIER_CORE = "0e8defc"


def test_core_gives_the_same_results_as_an_earlier_core():
    # CI runs in a fresh clone: it needs the history back to EARLIER_CORE (not a shallow clone).
    known = subprocess.run(["git", "-C", str(BENCH.parents[1]), "cat-file", "-e", f"{EARLIER_CORE}^{{commit}}"],
                           capture_output=True, text=True)
    assert known.returncode == 0, f"commit {EARLIER_CORE} is not in this clone (shallow?): {known.stderr}"
    proc = subprocess.run([sys.executable, str(BENCH / "bench_core_versions.py"), "--quick", "--baseline",
                           EARLIER_CORE], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "baseline / current" in line]
    assert [line.split()[0] for line in lines] == ["pairwise", "MR"], proc.stdout
    assert all(line.endswith("largest relative difference 0.0e+00") for line in lines), proc.stdout
