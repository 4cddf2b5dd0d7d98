"""The shape of the code: one-way layers, no import cycle, a light start, public API in contrib.

The import graph is read from the source (AST), counting imports inside functions and the
package ``__init__`` modules that every import runs; imports only for type checkers
(``if TYPE_CHECKING:``) are left out, as they never run.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "leap"
CONTRIB = ROOT / "plugins_contrib"
HEAVY = ("matplotlib", "sklearn", "pandas", "numba", "scipy", "pyarrow")

#: The layers, lowest first: a module may import from its own layer or the ones before it.
LAYERS = (
    ("leap.errors",),
    ("leap.data", "leap.figures"),
    ("leap.components", "leap.hookspecs", "leap.checks"),
    ("leap.plugin_manager",),
    ("leap.engine",),
    ("leap.workflows",),
    ("leap.api",),
    ("leap.cli",),
    ("leap.builtins",),
    ("leap.__main__",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The leap modules importing ``path`` runs, its packages' ``__init__`` included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in known:
                    found.add(candidate)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    return {module_name(f): imported_modules(f, known) for f in files}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def layer_of(module: str) -> int | None:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def test_the_import_graph_has_no_cycle():
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_sits_in_a_layer():
    unplaced = [m for m in import_graph() if m != "leap" and layer_of(m) is None]
    assert unplaced == []


def test_imports_only_go_down_the_layers():
    upward = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if module != "leap" and target != "leap" and layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_the_core_never_imports_a_builtin():
    graph = import_graph()
    core = [m for m in graph if layer_of(m) is not None and layer_of(m) < layer_of("leap.builtins")]
    leaks = [f"{m} -> {t}" for m in core for t in graph[m] if t.startswith("leap.builtins")]
    assert leaks == []


def test_the_package_init_imports_nothing_at_start():
    assert import_graph()["leap"] == set()


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def test_import_leap_loads_no_heavy_library():
    assert _loaded_after("import leap") == []


def test_leap_help_loads_no_heavy_library():
    code = (
        "import os; os.environ['LEAP_LOAD_PLUGINS'] = ''\n"
        "from click.testing import CliRunner\nfrom leap.cli import cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\nassert result.exit_code == 0\n"
        "assert 'analyze' in result.output and 'refine' in result.output"
    )
    assert _loaded_after(code) == []


def test_public_names_resolve_lazily():
    import leap

    for name in leap.__all__:
        assert getattr(leap, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        leap.nope  # noqa: B018


def _contrib_imports() -> list[tuple[Path, str]]:
    found = []
    for path in sorted(CONTRIB.rglob("*.py")):
        if "build" in path.relative_to(CONTRIB).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((path, node.module))
                found += [(path, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_contrib_packages_use_public_api_only():
    bad = [
        f"{path.relative_to(ROOT)}: {name}"
        for path, name in _contrib_imports()
        if name.split(".")[0] == "leap"
        and (name.startswith("leap.builtins") or any(p.startswith("_") for p in name.split(".")))
    ]
    assert bad == []


def test_the_contrib_scan_sees_imports():
    names = {name for _, name in _contrib_imports()}
    assert "leap.hookimpl" in names


def test_one_table_names_the_aggregations():
    import typing

    from leap.data.aggregates import AGGREGATE_NAMES, Aggregate

    assert typing.get_args(Aggregate) == AGGREGATE_NAMES
