"""The plugin manager: named registries filled by plugins, and where the plugins come from.

Plugins are found in three places, in rising priority: the built-ins (modules named in
:data:`BUILTIN_PLUGINS`, imported by dotted name exactly as entry points are), installed
distributions (entry-point group ``leap``), and plugins registered in-process. Every kind
of component, commands included, follows one rule: the highest-priority plugin's
component of a name is used; the others are kept as *shadowed*. This module knows nothing
of the analysis: it only collects components.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from leap import hookspecs
from leap.errors import InputFileError, PluginError, one_line

ENTRY_POINT_GROUP = "leap"
LOAD_PLUGINS_ENV = "LEAP_LOAD_PLUGINS"
BLOCK_PLUGINS_ENV = "LEAP_BLOCK_PLUGINS"
STRICT_PLUGINS_ENV = "LEAP_STRICT_PLUGINS"
#: Component kinds, each filled by the hook ``register_<kind>``.
KINDS = ("loaders", "readers", "methods", "renderers", "commands")
#: What each kind of component must be able to do.
REQUIRED_METHOD = {
    "loaders": "load",
    "readers": "read",
    "methods": "compute",
    "renderers": "render",
    "commands": "main",
}
#: The built-in plugins, by dotted module name (highest priority last).
BUILTIN_PLUGINS = (
    "leap.builtins.loaders",
    "leap.builtins.readers",
    "leap.builtins.methods.permutation.plugin",
    "leap.builtins.methods.conditional",
    "leap.builtins.renderers.heatmap",
    "leap.builtins.renderers.channel_heatmap",
    "leap.builtins.renderers.bars",
    "leap.builtins.renderers.spread",
    "leap.builtins.renderers.report",
    "leap.builtins.commands.analyze",
    "leap.builtins.commands.plot",
    "leap.builtins.commands.plugins",
    "leap.builtins.commands.demo",
    "leap.builtins.commands.doctor",
    "leap.builtins.commands.compare",
    "leap.builtins.commands.refine",
)
BUILTIN_DISTRIBUTION = "leap"
IN_PROCESS = "(in-process)"


class LeapPluginWarning(UserWarning):
    """A plugin could not be loaded or registered; LEAP carries on without it."""


@dataclass(frozen=True)
class PluginOrigin:
    """Where a plugin came from: its registered name, distribution and version."""

    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class Registered:
    """One component in a registry, with the plugin that provided it."""

    component: Any
    origin: PluginOrigin

    @property
    def name(self) -> str:
        """The component's unique name."""
        return self.component.name

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The file suffixes the component claims (lower case), if any."""
        return tuple(s.lower() for s in getattr(self.component, "suffixes", ()))


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed to import or register, and why."""

    plugin: str
    distribution: str
    version: str
    error: str


@dataclass
class Registry:
    """Components of one kind, keyed by name, in priority order (first wins).

    A component whose name is already taken is kept in ``shadowed`` and not used.
    """

    kind: str
    entries: dict[str, Registered] = field(default_factory=dict)
    shadowed: list[Registered] = field(default_factory=list)

    def add(self, entry: Registered) -> None:
        """Add ``entry`` unless a higher-priority component has its name."""
        if entry.name in self.entries:
            self.shadowed.append(entry)
        else:
            self.entries[entry.name] = entry

    def get(self, name: str) -> Any:
        """The component called ``name``; :class:`PluginError` lists the known names."""
        try:
            return self.entries[name].component
        except KeyError:
            known = ", ".join(sorted(self.entries)) or "none"
            raise PluginError(f"no {self.kind[:-1]} named {name!r}; available: {known}") from None

    def for_path(self, path: Path) -> Any:
        """The highest-priority component claiming ``path``'s suffix (``.tar.gz`` style too)."""
        name = path.name.lower()
        for entry in self.entries.values():
            if any(name.endswith(s) for s in entry.suffixes):
                return entry.component
        known = ", ".join(sorted({s for e in self.entries.values() for s in e.suffixes}))
        raise InputFileError(
            f"no {self.kind[:-1]} handles {path.name!r} (suffix {path.suffix or 'none'}); "
            f"known suffixes: {known or 'none'}"
        )

    def select(self, path: Path, name: str | None) -> Any:
        """By explicit ``name`` if given, else by ``path``'s suffix."""
        return self.get(name) if name else self.for_path(path)

    def __iter__(self) -> Iterator[Registered]:
        return iter(self.entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        """Component names in priority order."""
        return list(self.entries)


@dataclass(frozen=True)
class CommandExtension:
    """Options a plugin adds to another plugin's command, and how it wraps its callback."""

    command: str
    params: tuple[Any, ...]
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]] | None
    origin: PluginOrigin


class CommandCollector:
    """What a ``register_commands`` hook receives: a stand-in for the ``leap`` group.

    It accepts ``add_command(command)`` and the ``@cli.command()`` / ``@cli.group()``
    decorators of :class:`click.Group`, and keeps the commands for the registry, so that
    commands follow the same priority rule as every other component. :meth:`extend` adds
    options to a command another plugin provides.
    """

    def __init__(
        self, register: Callable[[Any], None], extend: Callable[..., None] | None = None
    ) -> None:
        self._register = register
        self._extend = extend

    def extend(
        self,
        command: str,
        params: Iterable[Any] = (),
        wrap: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
    ) -> None:
        """Add click ``params`` to the command named ``command`` (whichever plugin provides
        it), and optionally ``wrap`` its callback: ``wrap(callback)`` returns the new one,
        which receives the added options as keywords. The command object itself is left
        untouched; ``leap`` uses an extended copy.
        """
        if self._extend is None:
            raise PluginError("commands can only be extended from register_commands")
        self._extend(command, tuple(params), wrap)

    def add_command(self, command: Any, name: str | None = None) -> None:
        """Register a :class:`click.Command` (under ``name`` when given)."""
        if name is not None:
            command.name = name
        self._register(command)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable], Any]:
        """Decorator: make a click command of a function and register it."""
        return self._decorate("command", args, kwargs)

    def group(self, *args: Any, **kwargs: Any) -> Callable[[Callable], Any]:
        """Decorator: make a click group of a function and register it."""
        return self._decorate("group", args, kwargs)

    def _decorate(self, what: str, args: tuple, kwargs: dict) -> Callable[[Callable], Any]:
        import click

        def decorator(function: Callable) -> Any:
            command = getattr(click, what)(*args, **kwargs)(function)
            self._register(command)
            return command

        return decorator


class PluginHost:
    """The pluggy manager, the plugins' origins and the component registries.

    Parameters
    ----------
    plugins : iterable of modules or objects with ``@leap.hookimpl`` functions
        Registered in-process after the built-ins and installed plugins; they take
        priority over both.
    load_entry_points : bool
        Load installed plugins (entry-point group ``leap``). ``LEAP_LOAD_PLUGINS``
        (comma-separated distribution names; empty: none) limits which.
    strict : bool or None
        Raise :class:`PluginError` on a broken plugin instead of warning. Defaults to
        ``LEAP_STRICT_PLUGINS`` being set to a non-empty value.
    block : iterable of str, optional
        Plugins not to register, by the name ``leap plugins`` shows (a built-in module
        such as ``leap.builtins.renderers.heatmap``, or ``distribution:entry-point``), or
        by distribution name. Added to those in ``LEAP_BLOCK_PLUGINS`` (comma-separated).
    """

    def __init__(
        self,
        plugins: Iterable[Any] = (),
        *,
        load_entry_points: bool = True,
        strict: bool | None = None,
        block: Iterable[str] = (),
    ) -> None:
        self.strict = bool(os.environ.get(STRICT_PLUGINS_ENV)) if strict is None else strict
        from_env = os.environ.get(BLOCK_PLUGINS_ENV, "").split(",")
        self._block = {_canon(n) for n in [*block, *from_env] if n.strip()}
        self.pm = pluggy.PluginManager("leap")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.blocked: list[PluginOrigin] = []
        self._origins: dict[str, PluginOrigin] = {}
        self._registries: dict[str, Registry] = {}
        version = distribution_version(BUILTIN_DISTRIBUTION)
        for name in BUILTIN_PLUGINS:
            self._load(
                name, PluginOrigin(name, BUILTIN_DISTRIBUTION, version), importlib.import_module
            )
        if load_entry_points:
            self._load_entry_points()
        for plugin in plugins:
            self.register(plugin)

    # -- registering ----------------------------------------------------------------------
    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register an in-process plugin (a module, class or object with hook functions)."""
        name = name or getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin)}"
        origin = PluginOrigin(name, IN_PROCESS, "")
        if self._is_blocked(origin):
            return
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"cannot register plugin {name}: {one_line(exc)}") from None
        self._origins[name] = origin
        self._registries.clear()

    def _is_blocked(self, origin: PluginOrigin) -> bool:
        names = {_canon(origin.plugin), _canon(origin.distribution)}
        if not names & self._block:
            return False
        self.blocked.append(origin)
        self.pm.set_blocked(origin.plugin)
        return True

    def _load(self, name: str, origin: PluginOrigin, load: Callable[[str], Any]) -> None:
        if self._is_blocked(origin):
            return
        try:
            plugin = load(name)
            self.pm.register(plugin, name=origin.plugin)
        except Exception as exc:  # a broken plugin must not take the host down
            self._fail(origin, exc)
            return
        self._origins[origin.plugin] = origin
        self._registries.clear()

    def _load_entry_points(self) -> None:
        allowed = os.environ.get(LOAD_PLUGINS_ENV)
        allow = None if allowed is None else {_canon(n) for n in allowed.split(",") if n.strip()}
        seen: set[tuple[str, str]] = set()
        # Reverse alphabetical registration: pluggy calls the last registered first, so the
        # alphabetically first distribution gets the highest priority.
        found = sorted(
            metadata.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda ep: (_dist_name(ep), ep.name),
            reverse=True,
        )
        for ep in found:
            dist = _dist_name(ep)
            if (dist, ep.name) in seen or (allow is not None and _canon(dist) not in allow):
                continue
            seen.add((dist, ep.name))
            version = ep.dist.version if ep.dist is not None else ""
            origin = PluginOrigin(f"{dist}:{ep.name}", dist, version)
            self._load(ep.name, origin, _loader_of(ep))

    def _fail(self, origin: PluginOrigin, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {one_line(exc)}"
        failure = PluginFailure(origin.plugin, origin.distribution, origin.version, error)
        if self.strict:
            raise PluginError(
                f"plugin {origin.plugin} ({origin.distribution} {origin.version}) failed: {error}"
            ) from exc
        if failure not in self.failures:
            self.failures.append(failure)
            warnings.warn(
                f"LEAP plugin {origin.plugin} from {origin.distribution} {origin.version} "
                f"was skipped: {error}",
                LeapPluginWarning,
                stacklevel=3,
            )

    # -- the registries -------------------------------------------------------------------
    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` (one of :data:`KINDS`), collected on first use."""
        if kind not in self._registries:
            self._registries[kind] = self._collect(kind)
        return self._registries[kind]

    @property
    def registries(self) -> dict[str, Registry]:
        """Every registry, by kind."""
        return {kind: self.registry(kind) for kind in KINDS}

    def _collect(self, kind: str) -> Registry:
        registry = Registry(kind)
        every_extension: list[CommandExtension] = []
        hook = getattr(self.pm.hook, f"register_{kind}")
        # get_hookimpls() lists implementations in reverse call order.
        for impl in reversed(hook.get_hookimpls()):
            origin = self._origins[impl.plugin_name]
            found: list[Any] = []
            extensions: list[Any] = []
            try:
                if kind == "commands":
                    collector = CommandCollector(
                        found.append, lambda *e, out=extensions: out.append(e)
                    )
                    impl.function(cli=collector)
                else:
                    impl.function(register=found.append)
                for component in found:
                    check_component(kind, component)
            except Exception as exc:
                self._fail(origin, exc)
                continue
            for component in found:
                registry.add(Registered(component, origin))
            every_extension += [
                CommandExtension(command, params, wrap, origin)
                for command, params, wrap in extensions
            ]
        if every_extension:
            _apply_extensions(registry, every_extension)
        return registry

    @property
    def loaders(self) -> Registry:
        """Model loaders by name."""
        return self.registry("loaders")

    @property
    def readers(self) -> Registry:
        """Feature-matrix readers by name."""
        return self.registry("readers")

    @property
    def methods(self) -> Registry:
        """Importance methods by name."""
        return self.registry("methods")

    @property
    def renderers(self) -> Registry:
        """Renderers by name."""
        return self.registry("renderers")

    @property
    def commands(self) -> Registry:
        """Sub-commands of ``leap`` (:class:`click.Command` objects) by name."""
        return self.registry("commands")

    def add_commands(self, cli: Any) -> None:
        """Add the active commands to the click group ``cli``."""
        for entry in self.commands:
            cli.add_command(entry.component, entry.name)

    def plugin_report(self) -> dict[str, list[dict[str, Any]]]:
        """Every component (kind, name, suffixes, plugin, distribution, version, active),
        every failed plugin and every blocked one."""
        components = [
            {
                "kind": kind[:-1],
                "name": entry.name,
                "suffixes": list(entry.suffixes),
                "plugin": entry.origin.plugin,
                "distribution": entry.origin.distribution,
                "version": entry.origin.version,
                "active": active,
            }
            for kind, registry in self.registries.items()
            for entries, active in ((registry, True), (registry.shadowed, False))
            for entry in entries
        ]
        return {
            "components": components,
            "failures": [vars(f) for f in self.failures],
            "blocked": [vars(b) for b in self.blocked],
        }


def _apply_extensions(registry: Registry, extensions: list[CommandExtension]) -> None:
    """Replace each extended command by a copy with the added options and wrapped callback."""
    import copy

    for name, entry in list(registry.entries.items()):
        mine = [e for e in extensions if e.command == name]
        if not mine:
            continue
        command = copy.copy(entry.component)
        command.params = list(command.params)
        taken = {p.name for p in command.params}
        for extension in mine:
            command.params += [p for p in extension.params if p.name not in taken]
            taken |= {p.name for p in extension.params}
            if extension.wrap is not None:
                command.callback = extension.wrap(command.callback)
        registry.entries[name] = Registered(command, entry.origin)


def check_component(kind: str, component: Any) -> None:
    """Raise :class:`PluginError` unless ``component`` fits its kind's contract."""
    if not isinstance(getattr(component, "name", None), str) or not component.name:
        raise PluginError(f"a {kind[:-1]} needs a non-empty string 'name', got {component!r}")
    needed = REQUIRED_METHOD[kind]
    if not callable(getattr(component, needed, None)):
        raise PluginError(f"{kind[:-1]} {component.name!r} has no {needed}() method")
    if kind in ("loaders", "readers") and not isinstance(
        getattr(component, "suffixes", None), tuple
    ):
        raise PluginError(f"{kind[:-1]} {component.name!r} needs a tuple 'suffixes'")


def distribution_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or ``"unknown"``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _loader_of(ep: metadata.EntryPoint) -> Callable[[str], Any]:
    """``ep.load`` in the shape the plugin host calls loaders: ``load(name)``."""

    def load(_name: str) -> Any:
        return ep.load()

    return load


def _dist_name(ep: metadata.EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else ep.module


def _canon(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")
