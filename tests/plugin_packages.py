"""Build tiny plugin distributions for tests: real metadata that importlib finds on sys.path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

JSON_LOADER = '''
import json
from pathlib import Path

import leap


class Constant:
    """A 'model' stored as JSON: predicts a constant class."""

    def __init__(self, value):
        self.value = value
        self.classes_ = [0, 1]

    def fit(self, X, y):
        return self

    def predict(self, X):
        return [self.value] * len(X)

    def score(self, X, y):
        return sum(int(p == t) for p, t in zip(self.predict(X), y)) / len(y)


class JsonLoader:
    name = "json-model"
    suffixes = (".model.json",)

    def load(self, path: Path):
        return Constant(json.loads(path.read_text())["value"])


@leap.hookimpl
def register_loaders(register):
    register(JsonLoader())
'''

BROKEN_IMPORT = "raise ImportError('this plugin needs a module that is not installed')\n"

BROKEN_REGISTER = """
import leap


@leap.hookimpl
def register_readers(register):
    raise RuntimeError("reader registration exploded")
"""


def write_distribution(
    site: Path, dist: str, module: str, source: str, version: str = "1.0", ep_name: str = "main"
) -> None:
    """Write ``module.py`` and a ``dist-info`` with a ``leap`` entry point into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[leap]\n{ep_name} = {module}\n")


def pip_install_project(project: Path, target: Path, dist: str, module: str, source: str) -> None:
    """Create a pyproject-based project and ``pip install`` it into ``target``, as a user would."""
    (project / module).mkdir(parents=True)
    (project / module / "__init__.py").write_text(textwrap.dedent(source))
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "0.3.1"

            [project.entry-points.leap]
            {module} = "{module}"
            """
        )
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(project),
        ],
        check=True,
    )
