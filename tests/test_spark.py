"""The Spark backend on a real local Spark (``local[2]``, one session for the module, JRE from Debian).

Nothing is mocked. References are the serial backend on the same rows with the same seeds, the rows
of each site taken from the pandas frame the Spark DataFrame was made from (in input order), or the
partitions as Spark itself reports them (``rdd.glom``).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pandas as pd
import pytest
from pyspark import cloudpickle
from pyspark.sql import SparkSession

from dfmr.estimator import DistributedGaussianMixture
from dfmr.executor import AllMachinesFailedError, MachineTask, map_machines
from dfmr.sources import InvalidDataError
from dfmr.spark import spark_machines

K = 2
SETTINGS = dict(n_init=2, random_state=3)
HANG = 60.0  # seconds a silent machine sleeps; the deadlines here are 2-3 s
SITES = ["oslo", "bergen", "tromso", "alta"]  # sorted: alta, bergen, oslo, tromso

# The tasks defined here reach Spark's Python workers by value (this test module is not importable there).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def spark():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]").appName("dfmr-tests")
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Four sites of 2-component, 2-D data, their rows interleaved in the input."""
    rng = np.random.default_rng(8)
    sites = rng.choice(SITES, size=640)
    labels = rng.integers(0, K, size=sites.size)
    X = np.array([[-3.0, 0.0], [3.0, 1.0]])[labels] + rng.standard_normal((sites.size, 2))
    return pd.DataFrame({"x": X[:, 0], "hospital": sites, "y": X[:, 1]})


def serial_fit(parts: list) -> DistributedGaussianMixture:
    return DistributedGaussianMixture(K, backend="serial", **SETTINGS).fit_partitions(parts)


def site_rows(frame: pd.DataFrame) -> list[np.ndarray]:
    """Each site's rows in input order, sites in sorted order: the machines the Spark fit must see."""
    return [frame.loc[frame["hospital"] == s, ["x", "y"]].to_numpy() for s in sorted(SITES)]


def assert_same_fit(a: DistributedGaussianMixture, b: DistributedGaussianMixture) -> None:
    assert a.machine_indices_.tolist() == b.machine_indices_.tolist()
    for x, y in zip(a.local_mixtures_ + [a.mixture_], b.local_mixtures_ + [b.mixture_]):
        np.testing.assert_allclose(x.weights, y.weights, rtol=0, atol=1e-8)
        np.testing.assert_allclose(x.means, y.means, rtol=0, atol=1e-8)
        np.testing.assert_allclose(x.covariances, y.covariances, rtol=0, atol=1e-8)


def test_one_machine_per_site_equals_the_serial_fit_of_each_sites_rows_in_input_order(spark, frame):
    df = spark.createDataFrame(frame)
    assert df.rdd.getNumPartitions() >= 2  # every site's rows are spread over partitions, then shuffled
    est = DistributedGaussianMixture(K, backend="spark", client=spark, **SETTINGS).fit(df, site_col="hospital")
    assert est.n_machines_ == 4 and est.failed_machines_ == {}
    assert est.feature_names_in_.tolist() == ["x", "y"]
    assert_same_fit(est, serial_fit(site_rows(frame)))


def test_one_machine_per_partition_without_a_site_column(spark, frame):
    rows = frame[["x", "y"]].to_numpy()
    df = spark.sparkContext.parallelize(rows.tolist(), 3).toDF(["x", "y"])
    partitions = [np.array([[r.x, r.y] for r in part]) for part in df.rdd.glom().collect()]
    assert len(partitions) == 3 and sum(len(p) for p in partitions) == len(rows)
    est = DistributedGaussianMixture(K, backend="spark", client=spark, **SETTINGS).fit(df)
    assert est.n_machines_ == 3
    assert_same_fit(est, serial_fit(partitions))


def test_a_site_failing_at_run_time_is_reported_and_the_rest_fitted(spark, frame):
    broken = frame.copy()
    broken.loc[broken["hospital"] == "oslo", "y"] = 2.0  # a constant column: that site's fit fails
    df = spark.createDataFrame(broken)
    est = DistributedGaussianMixture(K, backend="spark", client=spark, **SETTINGS).fit(df, site_col="hospital")
    assert list(est.failed_machines_) == [2]  # oslo is the third site in sorted order
    assert "the sample covariance" in est.failed_machines_[2]
    reference = serial_fit([p if i != 2 else FailsToLoad() for i, p in enumerate(site_rows(frame))])
    assert_same_fit(est, reference)


class FailsToLoad:
    """A machine source whose loading raises (the serial stand-in of a machine that fails)."""

    def load(self) -> np.ndarray:
        raise ConnectionError("no data")


def test_invalid_data_stop_the_fit_naming_the_machine_or_column(spark, frame):
    est = DistributedGaussianMixture(K, backend="spark", client=spark, **SETTINGS)
    with_gap = frame.astype({"y": "float64"}).copy()
    with_gap.loc[with_gap.index[with_gap["hospital"] == "bergen"][3], "y"] = np.nan
    with pytest.raises(InvalidDataError, match=r"machine 1: .*contains NaN or infinity"):
        est.fit(spark.createDataFrame(with_gap), site_col="hospital")
    with pytest.raises(InvalidDataError, match=r"column 'hospital' has type string, not a numeric"):
        est.fit(spark.createDataFrame(frame))  # no site column named: the site names are a feature
    with pytest.raises(InvalidDataError, match=r"site_col 'clinic' is not a column"):
        est.fit(spark.createDataFrame(frame), site_col="clinic")
    with pytest.raises(ValueError, match=r"fitted with backend='spark', not 'serial'"):
        DistributedGaussianMixture(K, backend="serial").fit(spark.createDataFrame(frame), site_col="hospital")
    with pytest.raises(ValueError, match=r"4 values of 'hospital', which are the machines, but n_machines = 3"):
        DistributedGaussianMixture(K, backend="spark", client=spark, n_machines=3).fit(
            spark.createDataFrame(frame), site_col="hospital"
        )


def sleepy_sum(X: np.ndarray, machine: int, slow: int) -> float:
    if machine == slow:
        time.sleep(HANG)
    return float(X.sum())


def test_a_site_past_its_timeout_is_killed_and_reported_the_others_kept(spark, frame):
    machines, _ = spark_machines(spark.createDataFrame(frame), "hospital")
    tasks = [MachineTask(i, m, (i, 1)) for i, m in enumerate(machines)]
    start = time.monotonic()
    out = map_machines(sleepy_sum, tasks, backend="spark", client=spark, timeout=3.0)
    assert time.monotonic() - start < HANG / 2
    assert list(out.failures) == [1]
    assert out.failures[1].startswith("MachineTimeout: it was still running after its timeout of 3 s")
    expected = [p.sum() for p in site_rows(frame)]
    assert [out.results[i] for i in (0, 2, 3)] == [pytest.approx(expected[i], rel=1e-12) for i in (0, 2, 3)]


def test_the_job_is_cancelled_at_the_total_timeout(spark, frame):
    machines, _ = spark_machines(spark.createDataFrame(frame), "hospital")
    tasks = [MachineTask(i, m, (i, 0)) for i, m in enumerate(machines)]
    start = time.monotonic()
    with pytest.raises(AllMachinesFailedError, match=r"machine 0: MachineTimeout: the run's total_timeout of 3 s"):
        map_machines(sleepy_sum, tasks, backend="spark", client=spark, total_timeout=3.0)
    assert time.monotonic() - start < HANG / 2
    # The cancelled job's executors are free again: a new job runs.
    assert spark.range(10).count() == 10


def test_arrays_run_one_task_per_machine_and_match_serial(spark, frame):
    parts = site_rows(frame)
    est = DistributedGaussianMixture(K, backend="spark", client=spark, **SETTINGS).fit_partitions(parts)
    assert_same_fit(est, serial_fit(parts))
