"""The documentation site: every page is in the nav, the API page covers the public API,
and its snippets run. (`make test` also builds the site with ``mkdocs build --strict``.)
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import leap

ROOT = Path(__file__).resolve().parents[1]


def _hook():
    path = ROOT / "docs" / "hooks" / "api_reference.py"
    spec = importlib.util.spec_from_file_location("leap_docs_api_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_page_is_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    in_nav = set(re.findall(r":\s*([\w-]+\.md)\s*$", config, flags=re.MULTILINE))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages == in_nav


def test_api_page_documents_every_public_name_where_it_is_defined():
    hook = _hook()
    page = hook.on_page_markdown((ROOT / "docs" / "api.md").read_text(), None, None, None)
    blocks = re.findall(r"^::: (\S+)$", page, flags=re.MULTILINE)
    assert len(blocks) == len(leap.__all__)
    for path in blocks:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name) is getattr(leap, name)


@pytest.mark.slow
def test_notebooks_page_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "docs" / "notebooks.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    namespace: dict = {}
    exec(compile(block, "notebooks.md", "exec"), namespace)  # our own docs
    result = namespace["result"]
    assert "data:image/png;base64," in result._repr_html_()
    assert result.top(1)["feature"].item() in namespace["data"].planted
    assert list(tmp_path.iterdir()) == []
