"""Packaging: one version everywhere (pyproject.toml: the wheel, the sdist, dfmr.__version__, CMake and the R
package), type information shipped, scikit-learn's error types."""

from __future__ import annotations

import re
from importlib import metadata, resources
from pathlib import Path

import dfmr

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_version() -> str:
    match = re.search(r'^version = "([0-9.]+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert match, "pyproject.toml has no version line"
    return match.group(1)


def test_version_comes_from_pyproject():
    assert dfmr.__version__ == metadata.version("dfmr") == _pyproject_version()


def test_r_package_version_is_the_pyproject_version():
    match = re.search(r"^Version: *(\S+) *$", (ROOT / "r_bridge" / "DESCRIPTION").read_text(), re.MULTILINE)
    assert match, "r_bridge/DESCRIPTION has no Version field"
    assert match.group(1) == _pyproject_version() == dfmr.__version__


def test_cmake_reads_the_version_from_pyproject():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(dfmr VERSION \$\{DFMR_VERSION\}", cmake, re.MULTILINE)
    assert "pyproject.toml" in cmake and not re.search(r"VERSION [0-9]+\.[0-9]+\.[0-9]+ LANGUAGES", cmake)


def test_py_typed_is_installed():
    assert resources.files("dfmr").joinpath("py.typed").is_file()
