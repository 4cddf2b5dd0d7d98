"""MkDocs hook: the API reference lists exactly the names ``leap.__all__`` exports.

``docs/api.md`` holds the marker ``<!-- leap-public-api -->``; this hook replaces it with
one mkdocstrings block per public name, pointing at the module that defines it. The list
therefore follows ``leap/__init__.py`` (add a name there and it is documented; a name
without a docstring fails the strict build through mkdocstrings' warnings).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys

MARKER = "<!-- leap-public-api -->"

#: Reference sections, in page order; a public name not listed here goes to "Other".
SECTIONS = {
    "Analyses": (
        "permutation_importance",
        "analyze_permutation_importance",
        "plot_sensor_pair_importance",
        "refine",
        "SelectByImportance",
        "AnalysisConfig",
    ),
    "Results and layouts": ("ImportanceResult", "RefineResult", "SensorLayout", "ChannelPair"),
    "Engine and plugins": (
        "Engine",
        "get_engine",
        "hookimpl",
        "FeatureMatrix",
        "MethodScores",
        "MethodSettings",
    ),
    "Errors": ("LeapError",),
}


def defining_path(name: str) -> str:
    """Dotted path of the object ``leap.<name>`` where it is defined (for mkdocstrings)."""
    leap = importlib.import_module("leap")
    obj = getattr(leap, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    # An instance (e.g. the hookimpl marker): the leap module whose source assigns it.
    assignment = re.compile(rf"^{re.escape(name)}\s*(:[^=]*)?=", re.MULTILINE)
    for module_name, module in sorted(sys.modules.items()):
        if not module_name.startswith("leap.") or getattr(module, name, None) is not obj:
            continue
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            continue
        if assignment.search(source):
            return f"{module_name}.{name}"
    raise LookupError(f"cannot tell where leap.{name} is defined")


def reference_markdown() -> str:
    """The generated part of the API page: a heading per section, a block per name."""
    leap = importlib.import_module("leap")
    public = list(leap.__all__)
    listed = {n for names in SECTIONS.values() for n in names}
    sections = {k: [n for n in v if n in public] for k, v in SECTIONS.items()}
    sections["Other"] = [n for n in public if n not in listed]
    parts = []
    for title, names in sections.items():
        if not names:
            continue
        parts.append(f"## {title}\n")
        parts += [f"::: {defining_path(n)}\n    options:\n      heading_level: 3\n" for n in names]
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):  # the MkDocs hook signature
    """Fill the API page's marker with the reference blocks."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference_markdown())
