"""docs/plugins.md: its hook reference matches leap/hookspecs.py, and its snippets run."""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import pytest

from leap import components

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
BLOCK = re.compile(
    r"(?:<!-- file: (?P<file>[\w.\-]+) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```", re.DOTALL
)
#: Which component protocol each registering hook is about.
PROTOCOLS = {
    "register_loaders": (components.ModelLoader, "load"),
    "register_readers": (components.MatrixReader, "read"),
    "register_methods": (components.ImportanceMethod, "compute"),
    "register_renderers": (components.Renderer, "render"),
}


def hookspecs() -> dict[str, dict]:
    """Every hook in leap/hookspecs.py: its signature as written, and its marker options."""
    tree = ast.parse((ROOT / "leap" / "hookspecs.py").read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            if isinstance(target, ast.Name) and target.id == "hookspec":
                options = {k.arg: ast.literal_eval(k.value) for k in getattr(deco, "keywords", [])}
                returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
                found[node.name] = {
                    "signature": f"{node.name}({ast.unparse(node.args)}){returns}",
                    "options": options,
                }
    return found


def hook_sections() -> dict[str, str]:
    """The '### `signature`' sections of the hook reference, keyed by signature."""
    reference = DOC.split("## Hook reference", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### `(.+?)`\s*$", reference, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_hook_is_documented_with_its_signature():
    specs = hookspecs()
    assert len(specs) >= 5
    sections = hook_sections()
    assert sorted(sections) == sorted(spec["signature"] for spec in specs.values())
    for spec in specs.values():
        text = sections[spec["signature"]]
        for option, value in spec["options"].items():
            if value:  # firstresult, historic, ...: a plugin author must be told
                assert option in text, f"{spec['signature']}: document {option}"


@pytest.mark.parametrize("hook", sorted(PROTOCOLS))
def test_hook_sections_name_the_component_contract(hook):
    protocol, method = PROTOCOLS[hook]
    (text,) = [t for sig, t in hook_sections().items() if sig.startswith(f"{hook}(")]
    assert f"{method}(" in text and "name" in text
    for parameter in inspect.signature(getattr(protocol, method)).parameters:
        if parameter not in ("self", "options"):
            assert parameter in text, f"{hook}: {method}() parameter {parameter!r} undocumented"
    if "suffixes" in getattr(protocol, "__annotations__", {}):
        assert "suffixes" in text
    assert f"leap.components.{protocol.__name__}" in text


def test_packaging_snippet_declares_the_entry_point():
    (toml,) = [code for file, lang, code in blocks() if lang == "toml"]
    project = tomllib.loads(toml)
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["project"]["entry-points"]["leap"] == {"coefficients": "leap_coefficients"}
    assert "test" in project["project"]["optional-dependencies"]


def test_every_contrib_package_is_a_worked_example():
    for pyproject in ROOT.glob("plugins_contrib/*/pyproject.toml"):
        assert f"### {pyproject.parent.name}:" in DOC


def blocks() -> list[tuple[str | None, str, str]]:
    return [(m["file"], m["lang"], m["code"]) for m in BLOCK.finditer(DOC)]


def test_python_snippets_run_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("LEAP_LOAD_PLUGINS", raising=False)  # the worked examples need them
    monkeypatch.delenv("LEAP_DASK_SCHEDULER", raising=False)
    monkeypatch.delenv("LEAP_SKOPS_TRUSTED", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {"__name__": "docs_plugins"}
    ran = 0
    try:
        for file, lang, code in blocks():
            if file is not None:
                (tmp_path / file).write_text(code, encoding="utf-8")
            elif lang == "python":
                exec(compile(code, "docs/plugins.md", "exec"), namespace)  # our own docs
                ran += 1
        tests = {n: f for n, f in namespace.items() if n.startswith("test_") and callable(f)}
        assert len(tests) == 3
        for name, test in tests.items():
            kwargs = {}
            if "tmp_path" in inspect.signature(test).parameters:
                kwargs["tmp_path"] = tmp_path / name
                kwargs["tmp_path"].mkdir()
            test(**kwargs)
    finally:
        sys.modules.pop("leap_coefficients", None)
    assert ran >= 6
    assert (tmp_path / "leap_coefficients.py").exists()
    assert (tmp_path / "importance.csv").exists() and (tmp_path / "shap.png").stat().st_size
    assert namespace["shap_result"].method == "shap"
    assert namespace["on_cluster"].method == "dask"
