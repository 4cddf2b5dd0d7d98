"""The plugin manager, the named registries and the analysis pipeline."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as metadata
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from leap import checks, hookspecs
from leap.components import FeatureMatrix, MethodScores
from leap.data.files import existing_file, normalize_sha256, sha256_of
from leap.data.layout import SensorLayout
from leap.data.result import ImportanceResult
from leap.errors import (
    ConfigError,
    InputFileError,
    LeapError,
    MatrixError,
    ModelError,
    PluginError,
    one_line,
)
from leap.workflows.config import AnalysisConfig

ENTRY_POINT_GROUP = "leap"
LOAD_PLUGINS_ENV = "LEAP_LOAD_PLUGINS"
STRICT_PLUGINS_ENV = "LEAP_STRICT_PLUGINS"
KINDS = ("loaders", "readers", "methods", "renderers")
BUILTIN_PLUGINS = (
    "leap.builtins.loaders",
    "leap.builtins.readers",
    "leap.builtins.methods.permutation",
    "leap.builtins.methods.conditional",
    "leap.builtins.renderers.heatmap",
    "leap.builtins.commands.doctor",
    "leap.builtins.renderers.channel_heatmap",
    "leap.builtins.renderers.bars",
    "leap.builtins.renderers.spread",
    "leap.builtins.renderers.report",
    "leap.builtins.renderers.compare",
    "leap.builtins.commands.refine",
)


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

    Priority follows the hook call order: in-process plugins (last registered first),
    then installed plugins (alphabetical by distribution), then the built-ins. A
    component whose name is already taken is kept in ``shadowed`` and not used.
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


class Engine:
    """Holds the plugins and runs analyses.

    Parameters
    ----------
    plugins : iterable of modules or objects with ``@leap.hookimpl`` functions
        Registered in-process after the built-ins and installed plugins; they take
        priority over both.
    load_entry_points : bool
        Load installed plugins (entry-point group ``leap``). The environment variable
        ``LEAP_LOAD_PLUGINS`` (comma-separated distribution names; empty: none) limits which.
    strict : bool or None
        Raise :class:`PluginError` on a broken plugin instead of warning. Defaults to the
        environment variable ``LEAP_STRICT_PLUGINS`` being set to a non-empty value.
    """

    def __init__(
        self,
        plugins: Iterable[Any] = (),
        *,
        load_entry_points: bool = True,
        strict: bool | None = None,
    ) -> None:

        self.strict = bool(os.environ.get(STRICT_PLUGINS_ENV)) if strict is None else strict
        self.pm = pluggy.PluginManager("leap")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self._origins: dict[str, PluginOrigin] = {}
        self._registries: dict[str, Registry] | None = None
        leap_version = _version("leap")
        for name in BUILTIN_PLUGINS:
            module = importlib.import_module(name)
            self._add(module, PluginOrigin(name, "leap", leap_version))
        if load_entry_points:
            self._load_entry_points()
        for plugin in plugins:
            self.register(plugin)

    # -- plugins -------------------------------------------------------------------------
    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register an in-process plugin (a module, class or object with hook functions)."""
        name = name or getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin)}"
        self._add(plugin, PluginOrigin(name, "(in-process)", ""), raise_errors=True)

    def _add(self, plugin: Any, origin: PluginOrigin, raise_errors: bool = False) -> None:
        try:
            self.pm.register(plugin, name=origin.plugin)
        except (pluggy.PluginValidationError, ValueError) as exc:
            if raise_errors:
                raise PluginError(f"cannot register plugin {origin.plugin}: {exc}") from None
            self._fail(origin, exc)
            return
        self._origins[origin.plugin] = origin
        self._registries = None

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
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the host down
                self._fail(origin, exc)
                continue
            self._add(plugin, origin)

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

    @property
    def registries(self) -> dict[str, Registry]:
        """The named registries (``loaders``, ``readers``, ``methods``, ``renderers``)."""
        if self._registries is None:
            self._registries = {kind: self._collect(kind) for kind in KINDS}
        return self._registries

    def _collect(self, kind: str) -> Registry:
        registry = Registry(kind)
        hook = getattr(self.pm.hook, f"register_{kind}")
        # get_hookimpls() lists implementations in reverse call order.
        for impl in reversed(hook.get_hookimpls()):
            origin = self._origins[impl.plugin_name]
            found: list[Any] = []
            try:
                impl.function(register=found.append)
                for component in found:
                    _check_component(kind, component)
            except Exception as exc:
                self._fail(origin, exc)
                continue
            for component in found:
                registry.add(Registered(component, origin))
        return registry

    @property
    def loaders(self) -> Registry:
        """Model loaders by name."""
        return self.registries["loaders"]

    @property
    def readers(self) -> Registry:
        """Feature-matrix readers by name."""
        return self.registries["readers"]

    @property
    def methods(self) -> Registry:
        """Importance methods by name."""
        return self.registries["methods"]

    @property
    def renderers(self) -> Registry:
        """Renderers by name."""
        return self.registries["renderers"]

    def add_commands(self, cli: Any) -> None:
        """Let plugins add sub-commands to the click group ``cli``."""
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self._fail(self._origins[impl.plugin_name], exc)

    def plugin_report(self) -> dict[str, list[dict[str, Any]]]:
        """Every component (kind, name, suffixes, plugin, distribution, version) and failure."""
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
        failures = [vars(f) for f in self.failures]
        return {"components": components, "failures": failures}

    # -- the pipeline steps -------------------------------------------------------------
    def load_model(
        self, path: str | Path, loader: str | None = None, expect_sha256: str | None = None
    ) -> Any:
        """Load a fitted model with the named loader, or the one claiming the suffix.

        With ``expect_sha256``, the file's SHA-256 digest is checked first and a file that
        differs is refused before any loader (or unpickler) sees it.
        """
        path = existing_file(path, "model file")
        component = self.loaders.select(path, loader)
        if expect_sha256 is not None:
            _verify_digest(path, expect_sha256)
        model = _guarded(lambda: component.load(path), f"loader {component.name!r}", path)
        checks.check_predict(model, path)
        return model

    def read_matrix(
        self,
        path: str | Path,
        label: str | int = "label",
        reader: str | None = None,
        layout: SensorLayout | None = None,
        participant: str | None = None,
    ) -> FeatureMatrix:
        """Read a feature matrix with the named reader, or the one claiming the suffix."""
        path = existing_file(path, "feature matrix")
        component = self.readers.select(path, reader)
        layout = layout or SensorLayout()
        return _guarded(
            lambda: component.read(path, label=label, layout=layout, participant=participant),
            f"reader {component.name!r}",
            path,
        )

    def compute(
        self,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        method: str = "permutation",
        layout: SensorLayout | None = None,
        feature_names: Sequence[str] | None = None,
        groups: Sequence[Sequence[int]] | None = None,
        group_names: Sequence[str] | None = None,
        scoring: Any = None,
        n_repeats: int = 5,
        random_state: Any = None,
        sample_weight: Any = None,
        max_samples: float | int = 1.0,
        n_jobs: int | None = None,
        progress: bool = False,
    ) -> dict[str, ImportanceResult]:
        """Run an importance method; one :class:`ImportanceResult` per metric name."""
        component = self.methods.get(method)
        scores: dict[str, MethodScores] = component.compute(
            estimator,
            X,
            y,
            groups=groups,
            scoring=scoring,
            n_repeats=n_repeats,
            random_state=random_state,
            sample_weight=sample_weight,
            max_samples=max_samples,
            n_jobs=n_jobs,
            progress=progress,
        )
        params = {
            "method": method,
            "n_repeats": n_repeats,
            "random_state": random_state if isinstance(random_state, int | None) else "object",
            "max_samples": max_samples,
        }
        results = {}
        for metric, (baseline, importances) in scores.items():
            common = {
                "baseline_score": None if baseline is None else float(baseline),
                "scoring": metric,
                "method": method,
                "params": dict(params),
            }
            if groups is not None:
                names = list(group_names or [f"group_{i}" for i in range(len(groups))])
                results[metric] = ImportanceResult(importances, names, **common)
            else:
                names = list(feature_names) if feature_names is not None else None
                results[metric] = ImportanceResult.from_layout(
                    importances, layout, feature_names=names, **common
                )
        return results

    def render(
        self,
        result: ImportanceResult,
        path: str | Path | None = None,
        *,
        renderer: str = "heatmap",
        title: str = "Feature Importance Heatmap",
        **options: Any,
    ) -> Any:
        """Draw ``result`` with the named renderer, saving to ``path`` when given."""
        component = self.renderers.get(renderer)
        path = Path(path) if path is not None else None
        if (
            path is not None
            and component.suffixes
            and path.suffix.lower() not in component.suffixes
        ):
            raise LeapError(
                f"renderer {renderer!r} writes {', '.join(component.suffixes)} files, "
                f"not {path.suffix or 'files without a suffix'} ({path.name})"
            )
        return component.render(result, path, title=title, **options)

    def output_paths(self, config: AnalysisConfig) -> dict[str, Path]:
        """Every file :meth:`analyze` writes for ``config``, keyed by what it holds.

        Keys: ``csv`` (the features), ``csv:<grouping>`` (e.g. ``importance_sensor.csv``),
        ``csv:participants``, ``figure:<renderer>`` and ``report``. Figures other than the
        heatmap are named after the CSV (``importance_bars.png``), in the heatmap's folder
        and format when the renderer writes it.
        """
        csv = config.save_csv_path
        heatmap = _heatmap_path(config)
        paths = {"csv": csv}
        for name in config.grouping_names:
            paths[f"csv:{name}"] = csv.with_name(f"{csv.stem}_{name}.csv")
        if config.per_participant:
            paths["csv:participants"] = csv.with_name(f"{csv.stem}_participants.csv")
        for name in config.renderers:
            suffixes = tuple(s.lower() for s in getattr(self.renderers.get(name), "suffixes", ()))
            if name == "heatmap":
                paths["figure:heatmap"] = heatmap
                continue
            suffix = heatmap.suffix.lower()
            if suffixes and suffix not in suffixes:
                suffix = suffixes[0]
            paths[f"figure:{name}"] = heatmap.with_name(f"{csv.stem}_{name}{suffix}")
        if config.report_path is not None:
            paths["report"] = config.report_path
        return paths

    def analyze(self, config: AnalysisConfig) -> ImportanceResult:
        """Run the whole pipeline: load, read, compute, write the CSVs, figures and report.

        Returns the feature-level result; grouped results are in ``result.groups`` (by
        grouping name) and per-participant spreads in ``.spread`` of each.
        """
        from leap.data.grouping import resolve_grouping
        from leap.workflows.participants import compute_spreads, write_spreads_csv

        paths = self.output_paths(config)
        _refuse_overwriting_inputs(paths.values(), [config.model_path, config.feature_matrix])
        estimator = self.load_model(config.model_path, config.loader, config.expect_sha256)
        matrix = self.read_matrix(
            config.feature_matrix, config.label, config.reader, config.layout, config.participant
        )
        checks.check_pair(estimator, matrix, config.layout, config.scoring)
        if config.per_participant and matrix.participants is None:
            raise MatrixError(
                f"{config.feature_matrix} carries no participant ids; name the id column "
                f"(participant=..., CLI --participant) or leave per-participant analysis off"
            )
        X = _model_input(estimator, matrix)
        run: dict[str, Any] = {
            "method": config.method,
            "scoring": config.scoring,
            "n_repeats": config.n_repeats,
            "random_state": config.random_state,
            "max_samples": config.max_samples,
            "n_jobs": config.n_jobs,
        }
        groupings = [
            resolve_grouping(
                config.custom_groups if name == "custom" else name,
                layout=config.layout,
                feature_names=config.layout.feature_names,
                n_features=matrix.n_features,
                other_names=matrix.feature_names,
            )
            for name in config.grouping_names
        ]
        # Errors from the model or scorer mid-run become one-line LeapErrors (--debug: chain).
        with _method_failures(config.method):
            first = next(iter(self.compute(**run, **_data(estimator, X, matrix, config)).values()))
            results = {"feature": first}
            for grouping in groupings:
                computed = self.compute(
                    **run,
                    **_data(estimator, X, matrix, config),
                    groups=grouping.indices,
                    group_names=grouping.names,
                )
                first.groups[grouping.name] = results[grouping.name] = grouping.annotate(
                    next(iter(computed.values()))
                )
            if config.per_participant:
                spreads = compute_spreads(
                    self,
                    estimator,
                    X,
                    matrix.y,
                    matrix.participants,
                    [None, *groupings],
                    names=first.feature_names,
                    ci_level=config.ci_level,
                    progress=config.progress,
                    **run,
                )
                for result, spread in zip(results.values(), spreads, strict=True):
                    result.spread = spread
        params = {
            "model_path": str(config.model_path),
            "model_sha256": sha256_of(config.model_path),
            "feature_matrix": str(config.feature_matrix),
            "feature_matrix_sha256": sha256_of(config.feature_matrix),
            "label": matrix.label_name,
            "n_samples": int(matrix.X.shape[0]),
            "layout": config.layout.describe(),
            "ci_level": config.ci_level,
        }
        if matrix.participants is not None:
            params["n_participants"] = len(set(map(str, matrix.participants)))
        for result in results.values():
            result.ci_level = config.ci_level
            result.params.update(params)
        first.to_csv(paths["csv"])
        for name, result in first.groups.items():
            result.to_csv(paths[f"csv:{name}"])
        if config.per_participant:
            write_spreads_csv(first, paths["csv:participants"])
        options = {"aggregate": config.heatmap_aggregate, "k": config.top_k}
        for name in config.renderers:
            title = config.heatmap_title if name == "heatmap" else ""
            self._render_with(first, paths[f"figure:{name}"], name, title, options)
        if config.report_path is not None:
            self._render_with(first, paths["report"], "report", "", options)
        return first

    def _render_with(
        self, result: ImportanceResult, path: Path, name: str, title: str, options: dict
    ) -> Any:
        """Render, passing only the ``options`` the renderer's ``render`` accepts."""
        accepted = _accepted_options(self.renderers.get(name).render, options)
        return self.render(result, path, renderer=name, title=title, **accepted)


@contextlib.contextmanager
def _method_failures(method: str) -> Iterator[None]:
    try:
        yield
    except LeapError:
        raise
    except Exception as exc:
        reason = one_line(exc) or "no message"
        raise LeapError(
            f"method {method!r} failed while scoring the model: {type(exc).__name__}: {reason}"
        ) from exc


def _data(estimator: Any, X: Any, matrix: FeatureMatrix, config: AnalysisConfig) -> dict:
    return {
        "estimator": estimator,
        "X": X,
        "y": matrix.y,
        "layout": config.layout,
        "progress": config.progress,
    }


def _accepted_options(function: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(function).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(options)
    names = {p.name for p in params}
    return {k: v for k, v in options.items() if k in names}


def _heatmap_path(config: AnalysisConfig) -> Path:
    return config.heatmap_path or config.save_csv_path.with_suffix(".png")


def _refuse_overwriting_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    inputs = [Path(p) for p in inputs]
    resolved = {p.resolve() for p in inputs}
    for out in map(Path, outputs):
        # samefile also catches hard links and other spellings of an existing file
        same = out.exists() and any(p.exists() and os.path.samefile(out, p) for p in inputs)
        if same or out.resolve() in resolved:
            raise LeapError(f"refusing to overwrite the input file {out} with an output")


def _verify_digest(path: Path, expected: str) -> None:
    """Raise :class:`ModelError` unless ``path``'s SHA-256 digest is ``expected``."""
    try:
        expected = normalize_sha256(expected)
    except ValueError as exc:
        raise ConfigError(f"expect_sha256 {exc}") from None
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(
            f"{path} has SHA-256 {actual}, not the expected {expected}; refusing to load it "
            f"(loading a pickle runs code from the file)"
        )


def _model_input(estimator: Any, matrix: FeatureMatrix) -> Any:
    """Give the estimator a DataFrame when it was fitted on named columns, else the array."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return matrix.X
    import pandas as pd

    return pd.DataFrame(matrix.X, columns=list(names))


def _guarded(call: Callable[[], Any], who: str, path: Path) -> Any:
    try:
        return call()
    except LeapError:
        raise
    except Exception as exc:
        raise InputFileError(
            f"{who} could not read {path}: {type(exc).__name__}: {one_line(exc)}"
        ) from exc


def _check_component(kind: str, component: Any) -> None:
    needs = {"loaders": "load", "readers": "read", "methods": "compute", "renderers": "render"}
    if not isinstance(getattr(component, "name", None), str) or not component.name:
        raise PluginError(f"a {kind[:-1]} needs a non-empty string 'name', got {component!r}")
    if not callable(getattr(component, needs[kind], None)):
        raise PluginError(f"{kind[:-1]} {component.name!r} has no {needs[kind]}() method")
    if kind in ("loaders", "readers") and not isinstance(
        getattr(component, "suffixes", None), tuple
    ):
        raise PluginError(f"{kind[:-1]} {component.name!r} needs a tuple 'suffixes'")


def _dist_name(ep: metadata.EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else ep.module


def _canon(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


_default_engine: Engine | None = None


def get_engine() -> Engine:
    """The process-wide default engine (built-ins plus installed plugins), created once."""
    global _default_engine
    if _default_engine is None:
        _default_engine = Engine()
    return _default_engine
