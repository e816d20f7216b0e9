"""Shared helpers for the test suite: seeded random mixtures, the shipped local estimates, comparisons."""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # make ``import reference`` work under every pytest import mode
    sys.path.insert(0, str(TESTS_DIR))

from dfmr import GaussianMixtureParams  # noqa: E402

# Importing rpy2 (tests/test_r_bridge.py does at collection) puts R's library directories on
# LD_LIBRARY_PATH, which every process-pool or Dask worker started later would inherit (dfmr.r
# undoes it for its own import; a test module importing rpy2 directly bypasses that).
_LD_LIBRARY_PATH = os.environ.get("LD_LIBRARY_PATH")


# Machines that hang on purpose (the deadline tests) sleep until their test has ended, not for their
# whole sleep: the serial and threads engines cannot stop a thread, and a thread abandoned at a
# deadline sits inside single_threaded_blas, which would skew the BLAS settings that later tests see.
# The flag is a file named in the environment, so that the machines' worker processes (process pool,
# Dask) see it too. Each pytest process makes its own (pytest_configure): under pytest-xdist the
# workers inherit the controller's environment, and one shared file would let a test ending on one
# worker wake the machines that a deadline test on the other worker needs hanging.
_RELEASE_VAR = "DFMR_TESTS_RELEASE_FILE"


def pytest_configure(config: pytest.Config) -> None:
    os.environ[_RELEASE_VAR] = os.path.join(tempfile.mkdtemp(prefix="dfmr-tests-"), "released")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.path.dirname(os.environ.pop(_RELEASE_VAR)), ignore_errors=True)


def hang(seconds: float) -> None:
    """Sleep ``seconds``, or until the test that started the sleep has ended (see ``release_hung_machines``)."""
    end = time.monotonic() + seconds
    release = os.environ.get(_RELEASE_VAR)  # inherited from the pytest process that started this machine
    while time.monotonic() < end and not (release and os.path.exists(release)):
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def release_hung_machines():
    """After each test, wake the machines it left hanging and wait for the abandoned machine threads."""
    release = os.environ[_RELEASE_VAR]
    if os.path.exists(release):
        os.remove(release)
    yield
    with open(release, "w"):
        pass
    for thread in threading.enumerate():
        if thread.name.startswith("dfmr-machine"):
            thread.join(timeout=10.0)


# The files that take the longest (about two thirds of the suite's time on the last CI runs), slowest
# first. Under pytest-xdist (--dist loadfile --no-loadscope-reorder, as tests/run runs it) each file
# goes whole to the next free worker in collection order, so these go first: a long file handed out
# last would leave the other worker idle while it runs. A file missing here or renamed only loses
# that ordering; without xdist the order is untouched.
_SLOW_FILES_FIRST = ("test_inference.py", "test_robust.py", "test_benchmarks.py", "test_vignettes.py",
                     "test_study.py", "test_r_bridge.py", "test_local.py", "test_hostile.py", "test_spark.py",
                     "test_robust_calibration.py", "test_estimator.py", "test_dask.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: i for i, name in enumerate(_SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order


def pytest_collection_finish(session: pytest.Session) -> None:
    if _LD_LIBRARY_PATH is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = _LD_LIBRARY_PATH


def random_spd(rng: np.random.Generator, d: int, scale: float = 1.0, cond: float = 5.0) -> np.ndarray:
    """Random symmetric positive-definite matrix with eigenvalues in ``scale * [1, cond]``."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = scale * np.exp(rng.uniform(0.0, np.log(cond), d))
    s = (q * eig) @ q.T
    return 0.5 * (s + s.T)


def random_mixture(
    rng: np.random.Generator, n_components: int, dim: int, spread: float = 2.0, scale: float = 1.0, cond: float = 5.0
) -> GaussianMixtureParams:
    """Random mixture: Dirichlet(5) weights, N(0, spread^2 I) means, random SPD covariances."""
    return GaussianMixtureParams(
        rng.dirichlet(np.full(n_components, 5.0)),
        spread * rng.standard_normal((n_components, dim)),
        np.array([random_spd(rng, dim, scale, cond) for _ in range(n_components)]),
        normalize=True,
    )


def noisy_copies(
    rng: np.random.Generator, truth: GaussianMixtureParams, m: int, noise: float = 0.15
) -> list[GaussianMixtureParams]:
    """``m`` perturbed copies of ``truth`` with randomly permuted labels, like local estimates."""
    out = []
    d = truth.dim
    for _ in range(m):
        w = rng.dirichlet(200.0 * truth.weights)
        mu = truth.means + noise * rng.standard_normal(truth.means.shape)
        cov = []
        for s in truth.covariances:
            a = np.eye(d) + 0.5 * noise * rng.standard_normal((d, d)) / np.sqrt(d)
            cov.append(a @ s @ a.T)
        order = rng.permutation(truth.n_components)
        out.append(GaussianMixtureParams(w[order], mu[order], np.array(cov)[order], normalize=True))
    return out


@functools.lru_cache(maxsize=1)
def _fixture_arrays() -> dict[str, np.ndarray]:
    import dfmr

    path = Path(dfmr.__file__).resolve().parent / "data" / "local_estimates_K5_d10_m20.npz"
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def fixture_estimates() -> list[GaussianMixtureParams]:
    """The 20 shipped local pMLE estimates (K = 5, d = 10)."""
    arr = _fixture_arrays()
    return [
        GaussianMixtureParams(w, mu, cov, normalize=True)
        for w, mu, cov in zip(arr["weights"], arr["means"], arr["covariances"])
    ]


def match_order(a: GaussianMixtureParams, b: GaussianMixtureParams) -> np.ndarray:
    """Permutation ``p`` with ``b.permute(p)`` aligned to ``a`` (Hungarian matching on means and covariances)."""
    if a.n_components != b.n_components:
        raise AssertionError(f"different numbers of components: {a.n_components} vs {b.n_components}")
    cost = np.linalg.norm(a.means[:, None] - b.means[None], axis=-1) + np.linalg.norm(
        a.covariances[:, None] - b.covariances[None], axis=(-2, -1)
    )
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def assert_mixture_close(
    actual: GaussianMixtureParams,
    expected: GaussianMixtureParams,
    rtol: float,
    atol: float = 0.0,
    permute: bool = True,
) -> np.ndarray:
    """Assert two mixtures agree (optionally up to a component permutation); returns the permutation of ``actual``."""
    order = match_order(expected, actual) if permute else np.arange(actual.n_components)
    got = actual.permute(order) if permute else actual
    if expected.n_components != got.n_components:
        raise AssertionError(f"different numbers of components: {got.n_components} vs {expected.n_components}")
    np.testing.assert_allclose(got.weights, expected.weights, rtol=rtol, atol=atol, err_msg="weights")
    scale_mu = max(1.0, float(np.abs(expected.means).max()))
    np.testing.assert_allclose(got.means, expected.means, rtol=rtol, atol=atol * scale_mu, err_msg="means")
    scale_s = float(np.abs(expected.covariances).max())
    np.testing.assert_allclose(
        got.covariances, expected.covariances, rtol=rtol, atol=atol * scale_s, err_msg="covariances"
    )
    return order


def header_value(text: str, key: str) -> str:
    """The value printed after ``key:`` in the header of a summary report."""
    match = re.search(rf"{re.escape(key)}:\s+(.+?)(?:\s{{3}}|$)", text, flags=re.MULTILINE)
    assert match, f"{key} not in the header"
    return match.group(1).strip()


def assert_summary_shows_mixture(text: str, mixture: GaussianMixtureParams) -> None:
    """Assert the component table of a summary shows ``mixture``: weights, shown mean coordinates, traces."""
    rows = re.findall(r"^\s+(\d+)\s+(\d\.\d{4})\s+\[(.*)\]\s+(\S+)$", text, flags=re.MULTILINE)
    assert [int(r[0]) for r in rows] == list(range(mixture.n_components)), text
    np.testing.assert_allclose([float(r[1]) for r in rows], mixture.weights, rtol=0, atol=5e-5, err_msg="weights")
    shown = [[float(x) for x in r[2].split() if x != "..."] for r in rows]
    coords = list(range(mixture.dim)) if mixture.dim <= 6 else [0, 1, 2, 3, mixture.dim - 1]  # all up to six
    np.testing.assert_allclose(shown, mixture.means[:, coords], rtol=5e-4, atol=1e-300, err_msg="means")
    traces = np.trace(mixture.covariances, axis1=1, axis2=2)
    np.testing.assert_allclose([float(r[3]) for r in rows], traces, rtol=5e-4, err_msg="tr(Sigma)")


@pytest.fixture
def shipped_estimates() -> list[GaussianMixtureParams]:
    """The 20 shipped local estimates as a fixture."""
    return fixture_estimates()
