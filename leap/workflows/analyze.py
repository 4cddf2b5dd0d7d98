"""The analysis workflow: load, read, compute, then write the CSVs, figures and report.

Every output is named and checked before the long computation (collisions with each
other or with an input are refused), staged beside its target, and committed as a set
only when everything has succeeded: a failed or interrupted run leaves earlier outputs
as they were.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leap import checks
from leap.components import MethodSettings
from leap.data.files import OutputSet, check_output_path, sha256_of
from leap.engine import Engine, model_input
from leap.errors import LeapError, MatrixError, one_line
from leap.workflows.config import AnalysisConfig

if TYPE_CHECKING:
    from leap.data.result import ImportanceResult

#: Renderers that are not figures of a run's result (``--figures all`` leaves them out).
NOT_FIGURES = frozenset({"report"})


def figure_names(engine: Engine, names: list[str]) -> list[str]:
    """Expand ``["all"]`` to every registered figure renderer; check the names exist."""
    if names == ["all"]:
        return [n for n in engine.renderers.names() if n not in NOT_FIGURES]
    for name in names:
        engine.renderers.get(name)
    return names


def output_paths(engine: Engine, config: AnalysisConfig) -> dict[str, Path]:
    """Every file :func:`analyze` may write for ``config``, keyed by what it holds.

    Keys: ``csv`` (the features), ``csv:<grouping>`` (e.g. ``importance_sensor.csv``),
    ``csv:participants``, ``figure:<renderer>`` and ``report``. The heatmap goes to
    ``heatmap_path`` (default: the CSV's name with ``.png``); other figures are named after
    the CSV (``importance_bars.png``), in the heatmap's folder and format when the renderer
    writes it, else in the renderer's first format.
    """
    csv = check_output_path(config.save_csv_path, "CSV")
    heatmap = check_output_path(config.heatmap_path or csv.with_suffix(".png"), "heatmap")
    paths = {"csv": csv}
    for name in config.grouping_names:
        paths[f"csv:{name}"] = csv.with_name(f"{csv.stem}_{name}.csv")
    if config.per_participant:
        paths["csv:participants"] = csv.with_name(f"{csv.stem}_participants.csv")
    for name in figure_names(engine, config.renderers):
        if name == "heatmap":
            paths["figure:heatmap"] = heatmap
            continue
        suffixes = tuple(s.lower() for s in getattr(engine.renderers.get(name), "suffixes", ()))
        suffix = heatmap.suffix.lower()
        if suffixes and suffix not in suffixes:
            suffix = suffixes[0]
        paths[f"figure:{name}"] = heatmap.with_name(f"{csv.stem}_{name}{suffix}")
    if config.report_path is not None:
        paths["report"] = config.report_path
    return paths


def analyze(engine: Engine, config: AnalysisConfig) -> ImportanceResult:
    """Run the whole pipeline for ``config`` and write its outputs as one set.

    Returns the feature-level result; grouped results are in ``result.groups`` (by
    grouping name) and per-participant spreads in ``.spread`` of each. The files written
    are listed in ``result.params["outputs"]``.
    """
    from leap.data.grouping import resolve_grouping
    from leap.workflows.participants import compute_spreads

    paths = output_paths(engine, config)
    inputs = [config.model_path, config.feature_matrix, *config.input_files]
    outputs = OutputSet(paths, inputs)
    for key, path in paths.items():
        if key.startswith("figure:") or key == "report":
            engine.check_output("report" if key == "report" else key.partition(":")[2], path)
    estimator = engine.load_model(
        config.model_path, config.loader, config.expect_sha256, trust=config.trust
    )
    matrix = engine.read_matrix(
        config.feature_matrix,
        config.label,
        config.reader,
        config.layout,
        config.participant,
        header=config.header,
        max_cells=config.max_cells,
    )
    checks.check_pair(estimator, matrix, config.layout, config.scoring)
    if config.per_participant and matrix.participants is None:
        raise MatrixError(
            f"{config.feature_matrix} carries no participant ids; name the id column "
            f"(participant=..., CLI --participant) or leave per-participant analysis off"
        )
    X = model_input(estimator, matrix)
    settings = MethodSettings(
        scoring=config.scoring,
        n_repeats=config.n_repeats,
        random_state=config.random_state,
        max_samples=config.max_samples,
        n_jobs=config.n_jobs,
        progress=config.progress,
    )
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
    data: dict[str, Any] = {
        "method": config.method,
        "layout": config.layout,
        "settings": settings,
        "participants": matrix.participants,
    }
    with method_failures(config.method):
        first = _first_metric(engine.compute(estimator, X, matrix.y, **data))
        _refuse_undefined(first, config)
        results = {"feature": first}
        for grouping in groupings:
            spec = dict(zip(grouping.names, grouping.indices, strict=True))
            grouped = _first_metric(engine.compute(estimator, X, matrix.y, groups=spec, **data))
            grouped = grouping.annotate(grouped)
            _refuse_undefined(grouped, config)
            first.groups[grouping.name] = results[grouping.name] = grouped
        if config.per_participant and matrix.participants is not None:
            spreads = compute_spreads(
                engine,
                estimator,
                X,
                matrix.y,
                matrix.participants,
                [None, *groupings],
                names=first.feature_names,
                method=config.method,
                scoring=config.scoring,
                n_repeats=config.n_repeats,
                random_state=config.random_state,
                max_samples=config.max_samples,
                n_jobs=config.n_jobs,
                ci_level=config.ci_level,
                progress=config.progress,
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
    _write(engine, config, first, paths, outputs)
    return first


def _write(
    engine: Engine,
    config: AnalysisConfig,
    result: ImportanceResult,
    paths: dict[str, Path],
    outputs: OutputSet,
) -> None:
    """Write every output to its staging path, then commit them together."""
    from leap.workflows.participants import write_spreads_csv

    options = {"aggregate": config.heatmap_aggregate, "k": config.top_k}
    with outputs:
        result.to_csv(outputs.path("csv"))
        for name, grouped in result.groups.items():
            grouped.to_csv(outputs.path(f"csv:{name}"))
        if config.per_participant:
            write_spreads_csv(result, outputs.path("csv:participants"))
        written: dict[tuple[str, tuple], Path] = {}
        for key in [k for k in paths if k.startswith("figure:")]:
            name = key.partition(":")[2]
            if config.renderers == ["all"] and not engine.applies(name, result):
                outputs.discard(key)
                continue
            title = config.heatmap_title if name == "heatmap" else ""
            engine.render(result, outputs.path(key), renderer=name, title=title, **options)
            declared = tuple(getattr(engine.renderers.get(name), "options", ()))
            chosen = tuple(sorted((k, v) for k, v in options.items() if k in declared))
            written[(name, chosen)] = outputs.path(key)
        if "report" in paths:
            with engine.requested_figures("report", result, options, reuse=written) as figures:
                engine.render(
                    result,
                    outputs.path("report"),
                    renderer="report",
                    title="",
                    figures=figures,
                    **options,
                )
        written_paths = outputs.commit()
    result.params["outputs"] = [str(p) for p in written_paths]


def _first_metric(results: Any) -> ImportanceResult:
    return next(iter(results.values())) if isinstance(results, dict) else results


def _refuse_undefined(result: ImportanceResult, config: AnalysisConfig) -> None:
    """A NaN or infinite score means nothing: refuse it rather than write a CSV of NaN."""
    import numpy as np

    base = result.baseline_score
    if base is not None and not math.isfinite(base):
        raise LeapError(
            f"the model's score ({result.scoring}) is {base} on {config.feature_matrix}; "
            "check the label column, the classes and the scorer (leap doctor MODEL MATRIX)"
        )
    if not np.isfinite(result.importances).all():
        raise LeapError(
            f"the model's score ({result.scoring}) is undefined (NaN or infinite) on some "
            f"permuted copies of {config.feature_matrix}; check the scorer and the data"
        )


@contextlib.contextmanager
def method_failures(method: str) -> Iterator[None]:
    """Turn anything a method (or the model or scorer it calls) raises into one line."""
    try:
        yield
    except LeapError:
        raise
    except Exception as exc:
        raise LeapError(
            f"method {method!r} failed while scoring the model: {type(exc).__name__}: "
            f"{one_line(exc) or 'no message'}"
        ) from exc
