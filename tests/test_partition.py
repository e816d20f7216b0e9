"""dfmr.partition: the seeded split, in memory and through a temporary file for the process pool."""

from __future__ import annotations

import os
import pickle
import tempfile
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from dfmr import estimator
from dfmr.estimator import DistributedGaussianMixture
from dfmr.partition import SplitRows, split, split_to_file
from dfmr.simulate import population


@pytest.fixture
def tmpdir_only(tmp_path, monkeypatch):
    """The temporary directory of ``tempfile`` redirected to an empty folder of this test."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return population().sample(6_000, np.random.default_rng(3))[0]


@pytest.mark.parametrize("n_machines", [1, 7, 20])
def test_split_to_file_holds_the_rows_of_split_and_is_removed(X, n_machines, tmpdir_only):
    with split_to_file(X, n_machines, 4) as rows:
        assert len(os.listdir(tmpdir_only)) == 1
        for part, expected in zip(rows, split(X, n_machines, 4), strict=True):
            loaded = part.load()
            assert part.shape() == expected.shape == loaded.shape
            np.testing.assert_array_equal(loaded, expected)
            assert not loaded.flags.writeable
    assert os.listdir(tmpdir_only) == []


def test_split_to_file_of_fortran_ordered_data_holds_the_rows_of_split(X, tmpdir_only):
    with split_to_file(np.asfortranarray(X), 3, 1) as rows:
        for part, expected in zip(rows, split(X, 3, 1), strict=True):
            np.testing.assert_array_equal(part.load(), expected)


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, BrokenProcessPool])
def test_split_file_is_removed_when_the_block_raises(X, error, tmpdir_only):
    with pytest.raises(error), split_to_file(X, 3, 0):
        assert len(os.listdir(tmpdir_only)) == 1
        raise error("stop")
    assert os.listdir(tmpdir_only) == []


def test_a_machines_rows_pickle_without_data(X, tmpdir_only):
    with split_to_file(X, 2, 0) as rows:
        # A task ships the path and three integers, however many rows the machine has.
        assert len(pickle.dumps(rows[0])) < 200 < X[: rows[0].rows].nbytes
        assert isinstance(pickle.loads(pickle.dumps(rows[0])), SplitRows)


def test_process_pool_fit_ships_file_rows_and_removes_the_file(X, tmpdir_only, monkeypatch):
    seen = []
    real = estimator.map_machines

    def spy(func, tasks, **kwargs):
        if kwargs["backend"] == "processes":
            seen.extend(task.data for task in tasks)
            assert len(os.listdir(tmpdir_only)) == 1
        return real(func, tasks, **kwargs)

    monkeypatch.setattr(estimator, "map_machines", spy)
    pool = DistributedGaussianMixture(5, n_machines=3, backend="processes", n_jobs=2, random_state=2).fit(X)
    assert [type(d) for d in seen] == [SplitRows] * 3
    assert os.listdir(tmpdir_only) == []
    serial = DistributedGaussianMixture(5, n_machines=3, backend="serial", random_state=2).fit(X)
    assert pool.mixture_ == serial.mixture_


@pytest.mark.parametrize("error", [KeyboardInterrupt, BrokenProcessPool, RuntimeError])
def test_process_pool_fit_removes_the_file_when_interrupted(X, error, tmpdir_only, monkeypatch):
    def interrupted(func, tasks, **kwargs):
        assert len(os.listdir(tmpdir_only)) == 1
        raise error("interrupted")

    monkeypatch.setattr(estimator, "map_machines", interrupted)
    with pytest.raises(error):
        DistributedGaussianMixture(5, n_machines=3, backend="processes", random_state=0).fit(X)
    assert os.listdir(tmpdir_only) == []


def test_a_failed_process_pool_fit_leaves_no_file(X, tmpdir_only):
    bad = X.copy()
    bad[:, 2] = 1.0  # every machine's sample covariance is singular: all local fits fail in the workers
    with pytest.raises(ValueError, match="all 2 machines failed"):
        DistributedGaussianMixture(5, n_machines=2, backend="processes", n_jobs=2, random_state=0).fit(bad)
    assert os.listdir(tmpdir_only) == []
