"""The documented functions: thin wrappers over the default :class:`~leap.engine.Engine`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from leap.config import AnalysisConfig, SensorLayout
from leap.engine import Engine, get_engine
from leap.errors import LeapError
from leap.plugins.permutation import metric_name
from leap.result import ImportanceResult


def analyze_permutation_importance(
    model_path: str | Path,
    feature_matrix: str | Path,
    label: str | int = "label",
    save_csv_path: str | Path = "importance.csv",
    heatmap_title: str = "Feature Importance Heatmap",
    *,
    engine: Engine | None = None,
    **options: Any,
) -> ImportanceResult:
    """Compute permutation importances of a saved model on a saved feature matrix.

    Writes the tidy CSV to ``save_csv_path`` and the sensor-pair heatmap next to it (same
    stem, ``.png``), and returns the :class:`~leap.result.ImportanceResult`.

    Parameters
    ----------
    model_path : str or Path
        A fitted model file (``.pkl``/``.joblib`` built in; more via plugins). Unpickling
        runs code from the file: use only files you trust, and pin the file with
        ``expect_sha256=`` (see ``docs/safety.md``).
    feature_matrix : str or Path
        ``.npy`` (original LEAP layout or plain numeric), ``.npz``, ``.csv`` or ``.parquet``.
    label : str or int
        The label column, by name or position.
    save_csv_path : str or Path
        Where to write the CSV (written atomically; folders are created).
    heatmap_title : str
        Title of the heatmap.
    engine : Engine, optional
        The engine to use (default: built-ins plus installed plugins).
    **options
        Any other :class:`~leap.config.AnalysisConfig` field: ``layout``, ``method``,
        ``n_repeats`` (10), ``random_state`` (42), ``scoring``, ``n_jobs``, ``loader``,
        ``reader``, ``heatmap_path``, ``max_samples``, ``participant``, ``progress``,
        ``expect_sha256`` (refuse a model file whose SHA-256 digest differs, before loading).
    """
    config = AnalysisConfig.create(
        model_path=model_path,
        feature_matrix=feature_matrix,
        label=label,
        save_csv_path=save_csv_path,
        heatmap_title=heatmap_title,
        **options,
    )
    return (engine or get_engine()).analyze(config)


def plot_sensor_pair_importance(
    csv_file: str | Path,
    title: str = "Feature Importance Heatmap",
    save_path: str | Path | None = None,
    *,
    aggregate: str = "sum_positive",
    engine: Engine | None = None,
) -> Figure:
    """Draw the sensor × sensor heatmap of an importance CSV and return the Figure.

    Reads this project's CSV or the original LEAP script's (``Pair``, ``Dimensions``,
    ``Importance``), parsing cells as data only. Saves to ``save_path`` when given (PNG,
    SVG or PDF by suffix). Never opens a window.
    """
    result = ImportanceResult.from_csv(csv_file)
    return (engine or get_engine()).render(
        result, save_path, renderer="heatmap", title=title, aggregate=aggregate
    )


def permutation_importance(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    scoring: Any = None,
    n_repeats: int = 5,
    n_jobs: int | None = None,
    random_state: Any = None,
    sample_weight: Any = None,
    max_samples: float | int = 1.0,
    groups: Mapping[str, Sequence[int | str]] | Sequence[Sequence[int]] | None = None,
    layout: SensorLayout | None = None,
    method: str = "permutation",
    progress: bool = False,
    engine: Engine | None = None,
) -> ImportanceResult | dict[str, ImportanceResult]:
    """Drop-in for :func:`sklearn.inspection.permutation_importance`, with equal numbers.

    Returns an :class:`~leap.result.ImportanceResult` (``importances_mean``,
    ``importances_std``, ``importances`` as scikit-learn's ``Bunch``), or a dict of them
    keyed by metric when ``scoring`` names several metrics.

    Extra keywords: ``groups`` permutes columns jointly (a mapping of group name to column
    names or indices, or a list of index lists); ``layout`` names the features by sensor
    channel pair; ``method`` picks another registered importance method.
    """
    feature_names = [str(c) for c in X.columns] if hasattr(X, "columns") else None
    index_groups, group_names = _resolve_groups(groups, feature_names)
    results = (engine or get_engine()).compute(
        estimator,
        X,
        y,
        method=method,
        layout=layout,
        feature_names=feature_names,
        groups=index_groups,
        group_names=group_names,
        scoring=scoring,
        n_repeats=n_repeats,
        random_state=random_state,
        sample_weight=sample_weight,
        max_samples=max_samples,
        n_jobs=n_jobs,
        progress=progress,
    )
    if not isinstance(scoring, list | tuple | dict) and list(results) == [metric_name(scoring)]:
        return results[metric_name(scoring)]
    return results


def _resolve_groups(
    groups: Mapping[str, Sequence[int | str]] | Sequence[Sequence[int]] | None,
    feature_names: list[str] | None,
) -> tuple[list[list[int]] | None, list[str] | None]:
    if groups is None:
        return None, None
    items = (
        list(groups.items())
        if isinstance(groups, Mapping)
        else [(f"group_{i}", g) for i, g in enumerate(groups)]
    )
    position = {n: i for i, n in enumerate(feature_names or [])}
    resolved = []
    for name, members in items:
        cols = []
        for m in members:
            if isinstance(m, str):
                if m not in position:
                    raise LeapError(f"group {name!r} names an unknown feature {m!r}")
                cols.append(position[m])
            else:
                cols.append(int(m))
        if not cols:
            raise LeapError(f"group {name!r} is empty")
        resolved.append(cols)
    return resolved, [str(name) for name, _ in items]
