"""dfmr.executor.map_machines on the in-process and process-pool backends, and dfmr.sources' per-site files.

The dask backend is exercised against a real cluster in test_dask.py. Every expected value here is an
independent computation (numpy on the same arrays), never a run of the code under test.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
from conftest import hang

from dfmr.cli import main
from dfmr.executor import AllMachinesFailedError, MachineTask, map_machines
from dfmr.sources import InvalidDataError, SiteFile, materialize, site_files

LOCAL_BACKENDS = ["serial", "threads", "processes"]


def column_sums(X: np.ndarray, scale: float) -> np.ndarray:
    return scale * X.sum(axis=0)


def fails_on_negative_scale(X: np.ndarray, scale: float) -> np.ndarray:
    if scale < 0:
        raise np.linalg.LinAlgError("a numerical failure on this machine")
    return scale * X.sum(axis=0)


def kills_its_process_on_negative_scale(X: np.ndarray, scale: float) -> np.ndarray:
    if scale < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return scale * X.sum(axis=0)


def pid_of_worker(X: np.ndarray) -> int:
    return os.getpid()


@pytest.fixture
def parts() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.standard_normal((20 + i, 3)) for i in range(8)]


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_results_come_back_in_machine_order(backend, parts):
    tasks = [MachineTask(i, X, (float(i + 1),)) for i, X in enumerate(parts)]
    out = map_machines(column_sums, tasks, backend=backend, n_jobs=2)
    assert out.failures == {} and out.machines == list(range(8)) and out.succeeded == list(range(8))
    for i, X in enumerate(parts):
        np.testing.assert_array_equal(out.results[i], (i + 1) * X.sum(axis=0))


def test_processes_backend_runs_in_worker_processes(parts):
    out = map_machines(pid_of_worker, [MachineTask(i, X) for i, X in enumerate(parts)], backend="processes", n_jobs=2)
    assert os.getpid() not in out.results


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_a_machine_failing_at_run_time_is_reported_and_the_rest_complete(backend, parts):
    scales = [1.0, 2.0, 3.0, -1.0, 5.0, 6.0, 7.0, 8.0]
    tasks = [MachineTask(10 + i, X, (s,)) for i, (X, s) in enumerate(zip(parts, scales))]
    out = map_machines(fails_on_negative_scale, tasks, backend=backend, n_jobs=2)
    assert list(out.failures) == [13]
    assert "LinAlgError: a numerical failure on this machine" in out.failures[13]
    assert out.results[3] is None and out.succeeded == [10, 11, 12, 14, 15, 16, 17]
    for i in (0, 1, 2, 4, 5, 6, 7):
        np.testing.assert_array_equal(out.results[i], scales[i] * parts[i].sum(axis=0))


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_all_machines_failing_is_a_clear_error(backend, parts):
    tasks = [MachineTask(i, X, (-1.0,)) for i, X in enumerate(parts[:3])]
    with pytest.raises(AllMachinesFailedError, match=r"all 3 machines failed.*machine 0: LinAlgError"):
        map_machines(fails_on_negative_scale, tasks, backend=backend, n_jobs=2)


def test_a_killed_pool_worker_loses_only_its_machine(parts):
    scales = [1.0, 2.0, 3.0, 4.0, -1.0, 6.0, 7.0, 8.0]
    tasks = [MachineTask(i, X, (s,)) for i, (X, s) in enumerate(zip(parts, scales))]
    out = map_machines(kills_its_process_on_negative_scale, tasks, backend="processes", n_jobs=2)
    assert list(out.failures) == [4]
    assert "worker process died" in out.failures[4] and "BrokenProcessPool" in out.failures[4]
    for i in (0, 1, 2, 3, 5, 6, 7):
        np.testing.assert_array_equal(out.results[i], scales[i] * parts[i].sum(axis=0))


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_invalid_data_found_where_it_is_read_stops_the_run(backend, tmp_path, parts):
    bad = parts[2].copy()
    bad[4, 1] = np.nan
    for i, X in enumerate(parts):
        np.save(tmp_path / f"site{i}.npy", bad if i == 2 else X)
    tasks = [MachineTask(i, f, (1.0,)) for i, f in enumerate(site_files(tmp_path))]
    with pytest.raises(InvalidDataError, match=r"machine 2: .*site2\.npy contains NaN or infinity \(first in row 4\)"):
        map_machines(column_sums, tasks, backend=backend, n_jobs=2)


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_bad_backend_settings_are_refused(backend):
    with pytest.raises(ValueError, match="backend must be one of"):
        map_machines(column_sums, [], backend="gpu")
    with pytest.raises(ValueError, match="client is used by backend='dask' or 'spark' only"):
        map_machines(column_sums, [], backend=backend, client=object())
    with pytest.raises(ValueError, match="n_jobs"):
        map_machines(column_sums, [], backend=backend, n_jobs=0)
    for bad in (0, -1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(ValueError, match="timeout must be None or a finite number of seconds > 0"):
            map_machines(column_sums, [], backend=backend, timeout=bad)
        with pytest.raises(ValueError, match="total_timeout must be None or a finite number of seconds > 0"):
            map_machines(column_sums, [], backend=backend, total_timeout=bad)


# ---------------------------------------------------------------------------------------- deadlines


def sleeps_on_negative_scale(X: np.ndarray, scale: float, pid_file: str) -> np.ndarray:
    """Machine with a negative scale hangs (sleeps far past any deadline here), after writing its pid."""
    if scale < 0:
        with open(pid_file, "w") as fh:
            fh.write(str(os.getpid()))
        hang(SLEEP)
    return scale * X.sum(axis=0)


SLEEP = 20.0  # what a hung machine sleeps; every deadline below is 1-2 s


def process_is_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie not yet reaped) within a second (a kill is not instant)."""
    for _ in range(20):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ")[1][0] == "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError):  # gone before open, or between open and read (ESRCH)
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_a_machine_past_its_timeout_is_reported_by_name_and_the_rest_complete(backend, parts, tmp_path):
    pid_file = str(tmp_path / "pid")
    scales = [1.0, 2.0, 3.0, -1.0, 5.0, 6.0, 7.0, 8.0]
    tasks = [MachineTask(10 + i, X, (s, pid_file)) for i, (X, s) in enumerate(zip(parts, scales))]
    start = time.monotonic()
    out = map_machines(sleeps_on_negative_scale, tasks, backend=backend, n_jobs=2, timeout=1.0)
    took = time.monotonic() - start
    assert list(out.failures) == [13]
    assert out.failures[13].startswith("MachineTimeout: it was still running after its timeout of 1 s")
    assert out.results[3] is None
    for i in (0, 1, 2, 4, 5, 6, 7):
        np.testing.assert_array_equal(out.results[i], scales[i] * parts[i].sum(axis=0))
    assert took < SLEEP / 2  # reported at the deadline, not when the sleep ends
    pid = int(open(pid_file).read())
    if backend == "processes":
        assert process_is_gone(pid)  # its worker was killed
    else:
        # Python cannot stop a thread: the machine's thread is abandoned, still sleeping, as documented.
        assert pid == os.getpid()
        assert any(t.name == "dfmr-machine-13" and t.daemon and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_machines_unfinished_at_the_total_timeout_are_reported_and_the_finished_kept(backend, parts, tmp_path):
    pid_file = str(tmp_path / "pid")
    scales = [1.0, 2.0, 3.0, 4.0, -1.0, -1.0, -1.0, -1.0]
    tasks = [MachineTask(i, X, (s, pid_file)) for i, (X, s) in enumerate(zip(parts, scales))]
    start = time.monotonic()
    out = map_machines(sleeps_on_negative_scale, tasks, backend=backend, n_jobs=2, total_timeout=2.0)
    assert time.monotonic() - start < SLEEP / 2
    assert list(out.failures) == [4, 5, 6, 7]
    assert all(why == "MachineTimeout: the run's total_timeout of 2 s passed before it finished"
               for why in out.failures.values())
    for i in range(4):
        np.testing.assert_array_equal(out.results[i], scales[i] * parts[i].sum(axis=0))
    if backend == "processes":
        assert process_is_gone(int(open(pid_file).read()))


def test_every_machine_past_its_timeout_is_a_clear_error(parts, tmp_path):
    tasks = [MachineTask(i, X, (-1.0, str(tmp_path / "pid"))) for i, X in enumerate(parts[:2])]
    with pytest.raises(AllMachinesFailedError, match=r"all 2 machines failed.*machine 1: MachineTimeout"):
        map_machines(sleeps_on_negative_scale, tasks, backend="processes", n_jobs=2, timeout=1.0)


def test_progress_bar_counts_every_machine(parts, capsys):
    tasks = [MachineTask(i, X, (-1.0 if i == 1 else 1.0,)) for i, X in enumerate(parts)]
    map_machines(fails_on_negative_scale, tasks, backend="serial", progress=True, desc="local fits")
    err = capsys.readouterr().err
    assert "local fits" in err and "8/8" in err and "failed=1" in err


# ------------------------------------------------------------------------------------------ sources


def test_site_files_of_every_format_load_the_same_matrix(tmp_path):
    X = np.random.default_rng(1).standard_normal((30, 3))
    cols = ["a", "b", "c"]
    np.save(tmp_path / "s0.npy", X)
    pd.DataFrame(X, columns=cols).to_csv(tmp_path / "s1.csv", index=False)
    np.savetxt(tmp_path / "s2.csv", X, delimiter=",")  # no header line
    pd.DataFrame(X, columns=cols).to_parquet(tmp_path / "s3.parquet")
    (tmp_path / "notes.txt").write_text("not data")
    files = site_files(tmp_path)
    assert [os.path.basename(f.path) for f in files] == ["s0.npy", "s1.csv", "s2.csv", "s3.parquet"]
    assert [f.shape() for f in files] == [(30, 3), (None, 3), (None, 3), (30, 3)]
    for f in files:
        np.testing.assert_allclose(materialize(f), X, rtol=1e-15, atol=0)
    assert [f.path for f in site_files(str(tmp_path / "s*.csv"))] == [files[1].path, files[2].path]


def test_csv_with_a_non_numeric_column_is_refused_naming_it(tmp_path):
    path = tmp_path / "site.csv"
    path.write_text("x1,region,x2\n0.5,north,1.5\n0.7,south,2.5\n")
    with pytest.raises(InvalidDataError, match=r"column 'region' \(column 2\) holds non-numeric values"):
        site_files(tmp_path)
    with pytest.raises(InvalidDataError, match=r"column 'region' \(column 2\)"):
        SiteFile(str(path)).load()


def test_csv_with_a_bad_value_further_down_names_line_and_column(tmp_path):
    path = tmp_path / "site.csv"
    path.write_text("x1,x2\n0.5,1.5\n0.7,2.5\n0.9,n/a\n")
    (f,) = site_files(tmp_path)  # the header and the first data row are fine
    with pytest.raises(InvalidDataError, match=r"column 'x2' \(column 2\) holds non-numeric values \(line 4: 'n/a'\)"):
        f.load()


def test_parquet_with_a_string_column_or_missing_values_is_refused(tmp_path):
    pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(InvalidDataError, match=r"column 'label' has type \w*string, not numeric"):
        site_files(tmp_path / "a.parquet")
    pd.DataFrame({"x": [1.0, 2.0], "y": [np.nan, 1.0]}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InvalidDataError, match=r"column 'y' contains NaN"):
        SiteFile(str(tmp_path / "b.parquet")).load()


def test_site_files_must_share_their_width(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((5, 2)))
    np.save(tmp_path / "b.npy", np.zeros((5, 3)))
    with pytest.raises(InvalidDataError, match=r"differ in the number of columns \(a\.npy: d = 2, b\.npy: d = 3\)"):
        site_files(tmp_path)
    with pytest.raises(InvalidDataError, match="no .npy, .csv or .parquet"):
        site_files(tmp_path / "*.csv")


def test_a_site_file_is_not_read_on_the_client(tmp_path):
    X = np.random.default_rng(2).standard_normal((50, 2))
    np.save(tmp_path / "a.npy", X)
    (f,) = site_files(tmp_path)
    os.remove(f.path)  # site_files kept only the path; the worker reads the file when it runs
    out = map_machines(column_sums, [MachineTask(0, f, (1.0,)), MachineTask(1, X, (1.0,))], backend="serial")
    assert list(out.failures) == [0] and "FileNotFoundError" in out.failures[0]


def test_cli_passes_the_deadlines_and_refuses_bad_ones(tmp_path, parts, capsys):
    for i, X in enumerate(parts[:3]):
        np.save(tmp_path / f"site{i}.npy", np.vstack([X, X + 5.0]))
    code = main(["fit", str(tmp_path), "-k", "1", "--backend", "threads", "--timeout", "60", "--total-timeout", "120"])
    assert code == 0, capsys.readouterr().err
    assert "Fitted 3 of 3 sites" in capsys.readouterr().out
    assert main(["fit", str(tmp_path), "-k", "1", "--timeout", "0"]) == 2
    assert "expected a finite number of seconds > 0, got '0'" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "site0.npy"), "-k", "1", "--total-timeout", "5"]) == 2
    assert "--total-timeout apply only when DATA is a directory" in capsys.readouterr().err
