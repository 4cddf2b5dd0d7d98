"""The documented functions: thin wrappers over the default :class:`~leap.engine.Engine`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leap.data.layout import SensorLayout
from leap.engine import Engine, get_engine
from leap.workflows.analyze import analyze
from leap.workflows.config import AnalysisConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from leap.data.result import ImportanceResult


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
    stem, ``.png``), and returns the :class:`~leap.data.result.ImportanceResult`. One call can
    also give grouped (sensor-pair, sensor) importances, the per-participant spread, more
    figures and an HTML report: see ``options`` below.

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
        Any other :class:`~leap.data.layout.AnalysisConfig` field: ``layout``, ``method``,
        ``n_repeats`` (10), ``random_state`` (42), ``scoring``, ``n_jobs``, ``loader``,
        ``reader``, ``heatmap_path``, ``max_samples``, ``participant``, ``progress``,
        ``expect_sha256`` (refuse a model file whose SHA-256 digest differs, before loading).

        The questions beyond single features:

        - ``groups``: ``"sensor_pair"``, ``"sensor"``, a list of both, or a mapping
          ``{group name: [feature names or indices]}``; each grouping is permuted jointly
          and written to ``<csv stem>_<grouping>.csv`` (results in ``result.groups``).
        - ``per_participant=True``: the same analysis on each participant's rows; spread
          and confidence interval over participants in ``<csv stem>_participants.csv``
          (``result.spread``, and ``.spread`` of each grouped result).
        - ``renderers``: figures to write, e.g. ``["heatmap", "channel_heatmap", "bars",
          "participants"]`` (the heatmap at ``heatmap_path``, the others named
          ``<csv stem>_<renderer>`` in its folder and format); ``heatmap_aggregate``
          (``sum_positive``, ``sum``, ``signed``, ``mean``, ``max``, ``grouped``);
          ``top_k`` (bars shown, 20).
        - ``report_path``: a self-contained HTML report with every figure and table.
        - ``ci_level``: confidence level of the intervals (0.95; see
          ``docs/interpreting.md``).

    Raises
    ------
    LeapError
        For any bad input (a subclass says which kind), with a one-line message; nothing
        already on disk is overwritten or truncated when the run fails.
    """
    groups = options.get("groups")
    if isinstance(groups, Mapping):
        options["custom_groups"] = options.pop("groups")
    elif isinstance(groups, str):
        options["groups"] = [groups]
    config = AnalysisConfig.create(
        model_path=model_path,
        feature_matrix=feature_matrix,
        label=label,
        save_csv_path=save_csv_path,
        heatmap_title=heatmap_title,
        **options,
    )
    return analyze(engine or get_engine(), config)


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
    SVG or PDF by suffix), never onto ``csv_file`` itself. ``aggregate="grouped"`` reads
    the jointly permuted sensor pairs from ``<csv stem>_sensor_pair.csv`` beside
    ``csv_file`` (written by ``groups="sensor_pair"``) when ``csv_file`` is not that table.
    Never opens a window.
    """
    from leap.data.files import refuse_overwriting_inputs
    from leap.data.result import ImportanceResult

    csv_file = Path(csv_file)
    inputs = [csv_file]
    result = ImportanceResult.from_csv(csv_file)
    if aggregate == "grouped" and result.level != "sensor_pair":
        beside = csv_file.with_name(f"{csv_file.stem}_sensor_pair.csv")
        if beside.exists():
            result.groups["sensor_pair"] = ImportanceResult.from_csv(beside)
            inputs.append(beside)
    if save_path is not None:
        refuse_overwriting_inputs([save_path], inputs)
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
    groups: str | Mapping[str, Sequence[int | str]] | Sequence[Sequence[int]] | None = None,
    layout: SensorLayout | None = None,
    method: str = "permutation",
    participants: Any = None,
    progress: bool = False,
    engine: Engine | None = None,
) -> ImportanceResult | dict[str, ImportanceResult]:
    """Drop-in for :func:`sklearn.inspection.permutation_importance`, with equal numbers.

    Returns an :class:`~leap.data.result.ImportanceResult` (``importances_mean``,
    ``importances_std``, ``importances`` as scikit-learn's ``Bunch``), or a dict of them
    keyed by metric when ``scoring`` names several metrics.

    Extra keywords: ``groups`` permutes columns jointly, with the same row permutation for
    every column of a group: ``"sensor_pair"`` (every channel pair between two sensors),
    ``"sensor"`` (every feature involving a sensor), a mapping of group name to column
    names or indices, or a list of index lists; rows of the result are then the groups
    (``result.level`` says which grouping). ``layout`` names the features by sensor channel
    pair (the built-in groupings use it, default the LEAP layout); ``method`` picks another
    registered importance method. Where the scorer is a mean over rows, the result also
    carries one-sided p-values of "importance > 0" over the rows given (over participants
    with ``participants``, one id per row) and Benjamini-Hochberg q-values
    (``result.p_value``, ``result.q_value``; see ``docs/interpreting.md``).
    """
    return (engine or get_engine()).compute(
        estimator,
        X,
        y,
        method=method,
        layout=layout,
        groups=groups,
        participants=participants,
        scoring=scoring,
        n_repeats=n_repeats,
        random_state=random_state,
        sample_weight=sample_weight,
        max_samples=max_samples,
        n_jobs=n_jobs,
        progress=progress,
    )
