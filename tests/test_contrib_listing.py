"""`leap plugins --json` lists every package in plugins_contrib/ with its distribution and
version, as installed by `make test` (pip install ./plugins_contrib/NAME, not editable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONTRIB = sorted(ROOT.glob("plugins_contrib/*/pyproject.toml"))
EXPECTED = {"leap-skops", "leap-onnx", "leap-shap", "leap-dask"}


def _project(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]


def test_the_four_contrib_packages_exist():
    assert EXPECTED <= {_project(p)["name"] for p in CONTRIB}


@pytest.mark.parametrize("pyproject", CONTRIB, ids=[p.parent.name for p in CONTRIB])
def test_contrib_package_layout(pyproject):
    """What `make test` relies on: setuptools, an entry point, a [test] extra, tests/."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    package = pyproject.parent
    assert data["build-system"]["build-backend"] == "setuptools.build_meta"
    assert data["project"]["entry-points"]["leap"]
    assert "test" in data["project"]["optional-dependencies"]
    assert (package / "README.md").is_file()
    assert sorted((package / "tests").glob("test_*.py"))
    assert not list(package.rglob("conftest.py")), "conftest.py names clash in one pytest run"


def test_test_file_names_are_unique_across_the_one_pytest_run():
    files = [*ROOT.glob("tests/test_*.py"), *ROOT.glob("plugins_contrib/*/tests/test_*.py")]
    names = [f.name for f in files]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.fixture(scope="module")
def report() -> dict:
    env = {
        k: v for k, v in os.environ.items() if k not in ("LEAP_LOAD_PLUGINS", "LEAP_STRICT_PLUGINS")
    }
    done = subprocess.run(
        [sys.executable, "-c", "from leap.cli import main; main()", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize("pyproject", CONTRIB, ids=[p.parent.name for p in CONTRIB])
def test_leap_plugins_lists_contrib_package(report, pyproject):
    project = _project(pyproject)
    name, version = project["name"], project["version"]
    mine = [c for c in report["components"] if c["distribution"] == name]
    assert mine, f"{name} is not listed by `leap plugins`; run `make test` to install it"
    assert {c["version"] for c in mine} == {version}
    assert all(c["active"] for c in mine)
    assert not [f for f in report["failures"] if f["distribution"] == name]
    entry_points = set(project["entry-points"]["leap"])
    assert {c["plugin"] for c in mine} == {f"{name}:{ep}" for ep in entry_points}


def test_components_by_kind(report):
    by_name = {(c["kind"], c["name"]): c["distribution"] for c in report["components"]}
    assert by_name[("loader", "skops")] == "leap-skops"
    assert by_name[("loader", "onnx")] == "leap-onnx"
    assert by_name[("method", "shap")] == "leap-shap"
    assert by_name[("method", "dask")] == "leap-dask"
