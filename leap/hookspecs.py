"""Hook specifications: the whole contract between LEAP and its plugins.

Every ``register_*`` hook receives a ``register`` callback; call it once per component
you provide. Components are plain objects described in :mod:`leap.components`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("leap")
hookimpl = pluggy.HookimplMarker("leap")


@hookspec
def register_loaders(register: Callable[[Any], None]) -> None:
    """Register model loaders.

    :param register: call ``register(loader)`` for each loader; a loader has ``name``,
        ``suffixes`` (e.g. ``(".pkl", ".joblib")``) and ``load(path) -> estimator``
        (see :class:`leap.components.ModelLoader`).
    """


@hookspec
def register_readers(register: Callable[[Any], None]) -> None:
    """Register feature-matrix readers.

    :param register: call ``register(reader)`` for each reader; a reader has ``name``,
        ``suffixes`` and ``read(path, *, label, layout, participant) -> FeatureMatrix``
        (see :class:`leap.components.MatrixReader`).
    """


@hookspec
def register_methods(register: Callable[[Any], None]) -> None:
    """Register importance methods.

    :param register: call ``register(method)`` for each method; a method has ``name`` and
        ``compute(estimator, X, y, *, groups, scoring, ...) -> dict[str, MethodScores]``
        (see :class:`leap.components.ImportanceMethod`).
    """


@hookspec
def register_renderers(register: Callable[[Any], None]) -> None:
    """Register renderers that turn an :class:`~leap.data.result.ImportanceResult` into a file.

    :param register: call ``register(renderer)`` for each renderer; a renderer has
        ``name``, ``suffixes`` (the output formats it writes) and
        ``render(result, path, *, title) -> object``
        (see :class:`leap.components.Renderer`).
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``leap`` command line.

    :param cli: the :class:`click.Group` behind ``leap``; decorate functions with
        ``@cli.command()`` to add commands.
    """
