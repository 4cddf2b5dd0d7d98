"""The engine: the pipeline steps load_model, read_matrix, compute and render.

Each step picks a component from the plugin registries (:mod:`leap.plugin_manager`) and
guards it: whatever a component raises reaches the caller as one-line
:class:`~leap.errors.LeapError`. Workflows (:mod:`leap.workflows`) chain the steps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leap import checks
from leap.components import FeatureMatrix, MethodSettings
from leap.data.files import existing_file, normalize_sha256, shown_path
from leap.data.layout import SensorLayout
from leap.errors import ConfigError, InputFileError, LeapError, ModelError, one_line
from leap.plugin_manager import PluginHost

if TYPE_CHECKING:
    from leap.data.grouping import GroupSpec
    from leap.data.result import ImportanceResult

#: What a progress bar counts, by grouping (single features: "features").
PROGRESS_UNITS = {"sensor_pair": "sensor pairs", "sensor": "sensors"}
#: Read model files in chunks of this size while hashing and copying them.
CHUNK_BYTES = 1 << 20


class Engine(PluginHost):
    """Holds the plugins (see :class:`~leap.plugin_manager.PluginHost`) and runs the steps.

    Parameters are those of :class:`~leap.plugin_manager.PluginHost`: ``plugins``,
    ``load_entry_points``, ``strict`` and ``block``.
    """

    def load_model(
        self,
        path: str | Path,
        loader: str | None = None,
        expect_sha256: str | None = None,
        trust: Sequence[str] = (),
    ) -> Any:
        """Load a fitted model with the named loader, or the one claiming the suffix.

        With ``expect_sha256`` the file is read once: its bytes are hashed and copied to a
        private temporary file, and the loader sees that copy only when the digest matches,
        so the file cannot be swapped between the check and the load. ``trust`` names types
        a loader that checks the types in a file (one declaring the option ``trusted``, such
        as leap-skops') may accept; other loaders refuse it, as a pickle runs any code.
        """
        path = existing_file(path, "model file")
        component = self.loaders.select(path, loader)
        options: dict[str, Any] = {}
        if trust:
            if "trusted" not in getattr(component, "options", ()):
                raise ConfigError(
                    f"--trust applies to loaders that check the types in a file (skops); "
                    f"the {component.name!r} loader runs whatever the file holds"
                )
            options["trusted"] = tuple(trust)
        companions = getattr(component, "companion_files", None)
        beside = list(companions(path)) if companions is not None else []
        with _verified_copy(path, expect_sha256, beside) as source:
            model = guarded(
                lambda: component.load(source, **options), f"loader {component.name!r}", path
            )
        checks.check_predict(model, path)
        return model

    def read_matrix(
        self,
        path: str | Path,
        label: str | int = "label",
        reader: str | None = None,
        layout: SensorLayout | None = None,
        participant: str | None = None,
        *,
        header: bool | None = None,
        max_cells: int | None = None,
    ) -> FeatureMatrix:
        """Read a feature matrix with the named reader, or the one claiming the suffix.

        ``header`` (CSV: ``False`` reads the first row as data) and ``max_cells`` (a cap
        on rows × columns, default ``LEAP_MAX_CELLS``) go to readers that declare them
        among their ``options``; asking a reader for one it does not declare is an error.
        """
        path = existing_file(path, "feature matrix")
        component = self.readers.select(path, reader)
        layout = layout or SensorLayout()
        options = {
            k: v for k, v in {"header": header, "max_cells": max_cells}.items() if v is not None
        }
        declared = set(getattr(component, "options", ()))
        for key in options:
            if key not in declared:
                flag = "--no-header/--header" if key == "header" else "--max-cells"
                raise ConfigError(
                    f"reader {component.name!r} has no {key} option ({flag} is for readers "
                    f"that declare it: {', '.join(_declaring(self, key)) or 'none'})"
                )
        return guarded(
            lambda: component.read(
                path, label=label, layout=layout, participant=participant, **options
            ),
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
        groups: GroupSpec | None = None,
        group_names: Sequence[str] | None = None,
        participants: Any = None,
        settings: MethodSettings | None = None,
        **options: Any,
    ) -> ImportanceResult | dict[str, ImportanceResult]:
        """Run an importance method.

        Parameters
        ----------
        estimator, X, y
            The fitted model and the data it is scored on.
        method : str
            A registered importance method.
        layout, feature_names
            Name the features (by default the LEAP layout's names, or ``X``'s columns).
        groups : str, mapping or list of index lists, optional
            Columns permuted jointly: ``"sensor_pair"``, ``"sensor"``, a mapping of group
            name to feature names or indices, or index lists (named by ``group_names``).
        participants : array of shape (n_samples,), optional
            Participant id per row of ``X``: the tests of importance are then over
            participants (their rows are not independent), else over rows.
        settings : MethodSettings, optional
            The run's settings; keyword ``options`` (any :class:`MethodSettings` field)
            override it.

        Returns
        -------
        ImportanceResult, or dict of them by metric name
            One result when ``settings.scoring`` names one metric, a dict for several,
            whichever method ran.
        """
        from leap.data.grouping import resolve_grouping
        from leap.data.result import ImportanceResult

        settings = (settings or MethodSettings()).replace(**options)
        if feature_names is None and hasattr(X, "columns"):
            feature_names = [str(c) for c in X.columns]
        grouping = None
        if groups is not None:
            if group_names is not None:
                groups = dict(zip(group_names, groups, strict=True))
            grouping = resolve_grouping(
                groups,
                layout=layout,
                feature_names=layout.feature_names if layout is not None else feature_names,
                n_features=_n_columns(X),
                other_names=feature_names,
            )
        if settings.progress is True:
            counted = PROGRESS_UNITS.get(grouping.name, "groups") if grouping else "features"
            settings = settings.replace(progress=counted)
        component = self.methods.get(method)
        extra = {}
        if "participants" in getattr(component, "options", ()):
            extra["participants"] = participants
        scores = component.compute(
            estimator,
            X,
            y,
            groups=None if grouping is None else grouping.indices,
            **settings.method_keywords(),
            **extra,
        )
        if not isinstance(scores, Mapping) or not scores:
            raise LeapError(
                f"method {method!r} returned {type(scores).__name__}, not a dict of "
                "MethodScores by metric name"
            )
        params = {"method": method, **settings.describe()}
        quantity = getattr(component, "quantity", None)
        if isinstance(quantity, str) and quantity:
            params["quantity"] = quantity
        results = {}
        for metric, found in scores.items():
            baseline, importances = found[0], found[1]
            common = {
                "baseline_score": None if baseline is None else float(baseline),
                "scoring": metric,
                "method": method,
                "params": dict(params),
            }
            if grouping is not None:
                result = grouping.annotate(ImportanceResult(importances, grouping.names, **common))
            else:
                names = list(feature_names) if feature_names is not None else None
                result = ImportanceResult.from_layout(
                    importances, layout, feature_names=names, **common
                )
            results[metric] = _with_inference(result, found, participants, settings)
        if settings.several_metrics() or len(results) > 1:
            return results
        return next(iter(results.values()))

    def render(
        self,
        result: ImportanceResult,
        path: str | Path | None = None,
        *,
        renderer: str = "heatmap",
        title: str = "Feature Importance Heatmap",
        **options: Any,
    ) -> Any:
        """Draw ``result`` with the named renderer, saving to ``path`` when given.

        ``options`` not among the renderer's declared ``options`` are left out, so one set
        of settings can be offered to every renderer.
        """
        component = self.renderers.get(renderer)
        path = None if path is None else self.check_output(renderer, path)
        declared = set(getattr(component, "options", ()))
        accepted = {k: v for k, v in options.items() if k in declared}
        with contextlib.ExitStack() as stack:
            if "figures" in declared and "figures" not in accepted:
                figures = self.requested_figures(renderer, result, options)
                accepted["figures"] = stack.enter_context(figures)
            try:
                return component.render(result, path, title=title, **accepted)
            except LeapError:
                raise
            except OSError as exc:
                reason = exc.strerror or one_line(exc)
                where = shown_path(path) if path is not None else "its figure"
                raise LeapError(f"renderer {renderer!r} cannot write {where}: {reason}") from exc
            except Exception as exc:
                raise LeapError(
                    f"renderer {renderer!r} failed: {type(exc).__name__}: {one_line(exc)}"
                ) from exc

    @contextlib.contextmanager
    def requested_figures(
        self,
        renderer: str,
        result: ImportanceResult,
        options: Mapping[str, Any],
        reuse: Mapping[tuple[str, tuple], Path] | None = None,
    ) -> Iterator[dict[str, Path]]:
        """The figures a renderer such as the report shows, drawn through the registry.

        The renderer lists them with ``figure_requests(result, options)`` as ``(key,
        renderer name, render options)``. Each is taken from ``reuse`` (``(renderer name,
        sorted declared options) -> PNG or SVG file`` a run already wrote) or drawn as PNG
        into a temporary folder that lives as long as the block.
        """
        ask = getattr(self.renderers.get(renderer), "figure_requests", None)
        requests = [] if ask is None else ask(result, dict(options))
        with tempfile.TemporaryDirectory(prefix="leap-figures-") as scratch:
            figures: dict[str, Path] = {}
            for key, name, wanted in requests:
                if name not in self.renderers or not self.applies(name, result):
                    continue
                declared = getattr(self.renderers.get(name), "options", ())
                chosen = tuple(sorted((k, v) for k, v in wanted.items() if k in declared))
                done = (reuse or {}).get((name, chosen))
                if done is not None and done.suffix.lower() in (".png", ".svg"):
                    figures[key] = done
                    continue
                figures[key] = Path(scratch) / f"figure-{len(figures)}.png"
                self.render(result, figures[key], renderer=name, title="", **wanted)
            yield figures

    def check_output(self, renderer: str, path: str | Path) -> Path:
        """``path`` as a Path, or one LeapError line unless the renderer writes its format."""
        component = self.renderers.get(renderer)
        path = Path(path)
        suffixes = tuple(s.lower() for s in getattr(component, "suffixes", ()))
        if suffixes and path.suffix.lower() not in suffixes:
            raise LeapError(
                f"renderer {renderer!r} writes {', '.join(suffixes)} files, "
                f"not {path.suffix or 'files without a suffix'} ({path.name})"
            )
        return path

    def applies(self, renderer: str, result: ImportanceResult) -> bool:
        """Whether the named renderer has something to draw for ``result``."""
        check = getattr(self.renderers.get(renderer), "applies", None)
        return True if check is None else bool(check(result))


def _declaring(engine: Engine, option: str) -> list[str]:
    return [e.name for e in engine.readers if option in getattr(e.component, "options", ())]


def _with_inference(
    result: ImportanceResult, scores: Any, participants: Any, settings: MethodSettings
) -> ImportanceResult:
    """Attach the tests of importance > 0 where the method gave their moments or per-row
    differences."""
    measurable = getattr(scores, "measurable", None)
    if measurable is not None:
        result.measurable = measurable
    moments = getattr(scores, "unit_moments", None)
    if moments is not None:
        return result.add_moments(moments)
    differences = getattr(scores, "row_differences", None)
    if differences is None:
        return result
    rows = getattr(scores, "rows", None)

    def used(values: Any) -> Any:
        if values is None:
            return None
        values = np.asarray(values)
        return values if rows is None else values[rows]

    return result.add_inference(
        differences, participants=used(participants), sample_weight=used(settings.sample_weight)
    )


@contextlib.contextmanager
def _verified_copy(
    path: Path, expect_sha256: str | None, companions: Sequence[Path] = ()
) -> Iterator[Path]:
    """``path`` itself, or (with a digest) a private copy of the bytes that were hashed.

    ``companions`` (files a loader reads beside the model, which bind themselves to the
    model's content, such as leap-lightgbm's class sidecar) are copied along unhashed.
    """
    if expect_sha256 is None:
        yield path
        return
    try:
        expected = normalize_sha256(expect_sha256)
    except ValueError as exc:
        raise ConfigError(f"expect_sha256 {exc}") from None
    folder = Path(tempfile.mkdtemp(prefix="leap-verified-"))
    try:
        copy = folder / path.name
        digest = _copy_and_hash(path, copy)
        if digest != expected:
            raise ModelError(
                f"{path} has SHA-256 {digest}, not the expected {expected}; refusing to load "
                "it (loading a pickle runs code from the file)"
            )
        for extra in companions:
            if Path(extra).is_file():
                shutil.copyfile(extra, folder / Path(extra).name)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _copy_and_hash(source: Path, target: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    try:
        with source.open("rb") as src, open(target, "xb") as dst:
            os.chmod(target, 0o600)
            while chunk := src.read(CHUNK_BYTES):
                digest.update(chunk)
                dst.write(chunk)
    except OSError as exc:
        raise InputFileError(f"cannot read model file {source}: {exc.strerror}") from None
    return digest.hexdigest()


def guarded(call: Callable[[], Any], who: str, path: Path) -> Any:
    """Run a component's ``call``; anything but a LeapError becomes one InputFileError line."""
    try:
        return call()
    except LeapError:
        raise
    except Exception as exc:
        raise InputFileError(
            f"{who} could not read {path}: {type(exc).__name__}: {one_line(exc)}"
        ) from exc


def model_input(estimator: Any, matrix: FeatureMatrix) -> Any:
    """Give the estimator a DataFrame when it was fitted on named columns, else the array."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return matrix.X
    import pandas as pd

    return pd.DataFrame(matrix.X, columns=list(names))


def _n_columns(X: Any) -> int:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) == 2:
        return int(shape[1])
    return len(X[0])


_default_engine: Engine | None = None


def get_engine() -> Engine:
    """The process-wide default engine (built-ins plus installed plugins), created once."""
    global _default_engine
    if _default_engine is None:
        _default_engine = Engine()
    return _default_engine
