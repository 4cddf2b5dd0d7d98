"""ImportanceResult: the numbers an analysis produces, and their tidy CSV form."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leap.data.aggregates import AGGREGATIONS
from leap.data.files import atomic_path, existing_file
from leap.data.layout import LEAP_SENSORS, ChannelPair, SensorLayout
from leap.data.stats import (
    Inference,
    UnitMoments,
    bh_qvalues,
    includes_zero,
    t_interval,
    t_test,
    unit_moments,
)
from leap.errors import InputFileError, ResultFormatError, one_line

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAIR_COLUMNS = ("sensor_a", "dim_a", "sensor_b", "dim_b")
CI_COLUMNS = ("ci_low", "ci_high", "ci_includes_zero", "ci_level")
#: Columns of the test of "importance > 0" (empty cells where no test was made).
TEST_COLUMNS = ("p_value", "q_value", "measurable")
#: The q-value below which a row counts as a discovery in reports.
DISCOVERY_Q = 0.05
REPEAT_PREFIX = "repeat_"
FEATURE_LEVEL = "feature"
LEGACY_COLUMNS = ("Pair", "Dimensions", "Importance")
# Exactly a 2-tuple of quoted names, as the original LEAP script wrote them: ('A', 'B').
_TUPLE_OF_TWO = re.compile(
    r"""^\s*\(\s*(?P<qa>['"])(?P<a>[^'"]*)(?P=qa)\s*,\s*(?P<qb>['"])(?P<b>[^'"]*)(?P=qb)\s*,?\s*\)\s*$"""
)


@dataclass
class ImportanceResult:
    """Importances of features (or feature groups), with the run's metadata.

    Attribute access mirrors scikit-learn's ``Bunch`` (``importances_mean``,
    ``importances_std``, ``importances``; also ``result["importances_mean"]``).

    Parameters
    ----------
    importances : ndarray of shape (n_features, n_repeats)
        Decrease in score per feature and repeat (float64).
    feature_names : list of str
        One name per row of ``importances``.
    pairs : list of ChannelPair or None
        The sensor channels behind each feature; ``None`` where a row is not one pair.
    sensors : tuple of str
        Sensor order for sensor-level views.
    baseline_score : float or None
        Score of the unpermuted data.
    scoring : str
        Name of the metric.
    method : str
        Name of the importance method that produced the numbers.
    params : dict
        Run parameters (n_repeats, random_state, file fingerprints, ...).
    level : str
        What a row is: ``"feature"`` (one column), or the grouping whose groups the rows
        are (``"sensor_pair"``, ``"sensor"``, ``"custom"``).
    row_sensors : list of tuple of str
        The sensors each row stands for: ``(a, b)`` for a channel pair or a sensor pair,
        ``(s,)`` for a sensor, ``()`` when unknown. Derived from ``pairs`` by default.
    group_sizes : list of int
        Number of feature columns permuted together in each row (1 for features).
    ci_level : float
        Confidence level of :meth:`confidence_interval` (default 0.95).
    ci : tuple of two ndarrays or None
        A stored interval (read from a CSV); ``None`` computes it from :attr:`inference`,
        or else from the repeats.
    p_value : ndarray of shape (n_features,) or None
        One-sided p-value of "importance > 0" over the held-out rows (or participants);
        NaN for unmeasurable rows; ``None`` when the method gave no per-row differences
        (e.g. a scorer that is not a mean over rows, such as ROC AUC).
    q_value : ndarray of shape (n_features,) or None
        Benjamini–Hochberg q-values of :attr:`p_value` over the measurable rows of this
        result (each grouping in :attr:`groups` has its own).
    measurable : ndarray of bool of shape (n_features,) or None
        False for a feature (or group) constant over the data: disturbing it cannot change
        anything, so its importance is not measured. ``None``: every row is measurable.
    inference : leap.data.stats.Inference or None
        The test behind :attr:`p_value` (mean, standard error, unit, number of units).
    groups : dict of str to ImportanceResult
        Grouped results of the same run, keyed by grouping name (``sensor_pair``, ...).
    spread : leap.workflows.participants.ParticipantSpread or None
        Per-participant importances of these rows, when the run computed them.
    """

    importances: np.ndarray
    feature_names: list[str]
    pairs: list[ChannelPair | None] = field(default_factory=list)
    sensors: tuple[str, ...] = ()
    baseline_score: float | None = None
    scoring: str = "score"
    method: str = "permutation"
    params: dict[str, Any] = field(default_factory=dict)
    level: str = FEATURE_LEVEL
    row_sensors: list[tuple[str, ...]] = field(default_factory=list)
    group_sizes: list[int] = field(default_factory=list)
    ci_level: float = 0.95
    ci: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    groups: dict[str, ImportanceResult] = field(default_factory=dict, repr=False)
    spread: Any = field(default=None, repr=False)
    p_value: np.ndarray | None = field(default=None, repr=False)
    q_value: np.ndarray | None = field(default=None, repr=False)
    measurable: np.ndarray | None = field(default=None, repr=False)
    inference: Inference | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.importances = np.asarray(self.importances, dtype=np.float64)
        if self.importances.ndim != 2 or self.importances.shape[0] != len(self.feature_names):
            raise ValueError(
                f"importances must have shape (n_features, n_repeats) with n_features="
                f"{len(self.feature_names)}, got {self.importances.shape}"
            )
        if not self.pairs:
            self.pairs = [None] * len(self.feature_names)
        if not self.row_sensors:
            self.row_sensors = [
                (p.sensor_a, p.sensor_b) if p is not None else () for p in self.pairs
            ]
        if not self.group_sizes:
            self.group_sizes = [1] * len(self.feature_names)
        n = len(self.feature_names)
        if not len(self.pairs) == len(self.row_sensors) == len(self.group_sizes) == n:
            raise ValueError("pairs, row_sensors and group_sizes need one entry per row")
        if not 0.0 < self.ci_level < 1.0:
            raise ValueError(f"ci_level must lie strictly between 0 and 1, got {self.ci_level}")
        if not self.sensors:
            self.sensors = _sensor_order(self.row_sensors)
        for name in ("p_value", "q_value"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape != (n,):
                    raise ValueError(f"{name} needs one entry per row, got shape {value.shape}")
                setattr(self, name, value)
        if self.measurable is not None:
            self.measurable = np.asarray(self.measurable, dtype=bool)
            if self.measurable.shape != (n,):
                raise ValueError("measurable needs one entry per row")

    @classmethod
    def from_layout(
        cls, importances: np.ndarray, layout: SensorLayout | None, **kwargs: Any
    ) -> ImportanceResult:
        """Build a result whose rows are ``layout``'s channel pairs (or unnamed columns)."""
        importances = np.asarray(importances, dtype=np.float64)
        if layout is None:
            names = kwargs.pop("feature_names", None) or [
                f"x{i}" for i in range(importances.shape[0])
            ]
            return cls(importances, list(names), **kwargs)
        layout.check_width(importances.shape[0], "the importance result")
        kwargs.pop("feature_names", None)
        return cls(importances, layout.feature_names, list(layout.pairs), layout.sensors, **kwargs)

    # -- the Bunch-compatible view -------------------------------------------------------
    @property
    def importances_mean(self) -> np.ndarray:
        """Mean importance over repeats, shape (n_features,)."""
        return np.mean(self.importances, axis=1)

    @property
    def importances_std(self) -> np.ndarray:
        """Standard deviation over repeats (population, ``ddof=0``, as scikit-learn)."""
        return np.std(self.importances, axis=1)

    def __getitem__(self, key: str) -> Any:
        if key in ("importances", "importances_mean", "importances_std"):
            return getattr(self, key)
        raise KeyError(key)

    def keys(self) -> list[str]:
        """The Bunch keys, for code written against scikit-learn's result."""
        return ["importances_mean", "importances_std", "importances"]

    @property
    def n_repeats(self) -> int:
        """Number of repeats (columns of ``importances``)."""
        return self.importances.shape[1]

    @property
    def quantity(self) -> str:
        """What one importance value measures, in words, for labels and headings.

        The method's own words when it declares them (its ``quantity`` attribute, which
        the engine records as ``params["quantity"]``; e.g. ``"mean |SHAP|"``), otherwise
        the drop in the score when the row's columns are permuted.
        """
        declared = self.params.get("quantity")
        if isinstance(declared, str) and declared.strip():
            return declared.strip()
        return f"drop in {self.scoring} when permuted"

    def confidence_interval(self, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Student-t interval of the mean importance, per row.

        With per-row differences (:attr:`inference`, see :meth:`add_inference`) it is the
        interval over the held-out rows, or over participants when ids are known: how the
        importance would vary with other data from the same population, for this model.
        Without them it falls back to the interval over repeats, which measures only the
        permutation noise (see ``docs/interpreting.md``); rows with fewer than two repeats
        get NaN. A stored interval (from a CSV) is returned when ``level`` is omitted or
        equals :attr:`ci_level`.
        """
        level = self.ci_level if level is None else level
        if self.ci is not None and level == self.ci_level:
            return self.ci
        if self.inference is not None:
            return self.inference.interval(level)
        return t_interval(self.importances, level)

    @property
    def ci_low(self) -> np.ndarray:
        """Lower end of the :attr:`ci_level` confidence interval of the mean."""
        return self.confidence_interval()[0]

    @property
    def ci_high(self) -> np.ndarray:
        """Upper end of the :attr:`ci_level` confidence interval of the mean."""
        return self.confidence_interval()[1]

    @property
    def ci_includes_zero(self) -> np.ndarray:
        """True where the interval includes zero, or cannot be computed (one repeat)."""
        return includes_zero(*self.confidence_interval())

    @property
    def is_measurable(self) -> np.ndarray:
        """Per row: whether its importance could be measured (see :attr:`measurable`)."""
        if self.measurable is None:
            return np.ones(len(self.feature_names), dtype=bool)
        return self.measurable

    @property
    def ranks(self) -> np.ndarray:
        """Rank by mean importance, 1 = most important; ties share the best rank.

        Unmeasurable rows are left out of the ranking: they rank after every measurable
        row (and have an empty rank in :meth:`to_frame` and the CSV).
        """
        values = pd.Series(self.importances_mean)
        values[~self.is_measurable] = np.nan
        ranks = values.rank(ascending=False, method="min", na_option="keep")
        return ranks.fillna(int(self.is_measurable.sum()) + 1).to_numpy(int)

    def add_inference(
        self,
        differences: np.ndarray,
        *,
        participants: Any = None,
        sample_weight: Any = None,
        measurable: Any = None,
    ) -> ImportanceResult:
        """Test "importance > 0" from per-row differences; set p-, q-values and the interval.

        Parameters
        ----------
        differences : ndarray of shape (n_features, n_rows)
            Per held-out row, its share of the undisturbed score minus its share of the
            disturbed score, averaged over repeats (``MethodScores.row_differences``).
        participants : array of shape (n_rows,), optional
            Participant id per row: the test is then over participants (two or more).
        sample_weight : array of shape (n_rows,), optional
            Row weights the scorer used.
        measurable : array of bool of shape (n_features,), optional
            False for unmeasurable rows (default: keep :attr:`measurable`).

        Returns
        -------
        ImportanceResult
            ``self``, with :attr:`inference`, :attr:`p_value` and :attr:`q_value` set and
            the stored interval cleared, so :meth:`confidence_interval` is the test's.
        """
        if measurable is not None:
            self.measurable = np.asarray(measurable, dtype=bool)
        differences = np.asarray(differences, dtype=np.float64)
        if differences.ndim != 2 or differences.shape[0] != len(self.feature_names):
            raise ValueError(
                f"differences must have shape (n_features={len(self.feature_names)}, n_rows), "
                f"got {differences.shape}"
            )
        return self.add_moments(unit_moments(differences, participants, sample_weight))

    def add_moments(self, moments: UnitMoments) -> ImportanceResult:
        """Test "importance > 0" from the rows' moments over the test's units (as
        :meth:`add_inference`, with the per-row differences already reduced)."""
        if moments.mean.shape != (len(self.feature_names),):
            raise ValueError(
                f"moments must have shape (n_features={len(self.feature_names)},), "
                f"got {moments.mean.shape}"
            )
        self.inference = t_test(moments, measurable=self.is_measurable)
        self.p_value = self.inference.p_value
        self.q_value = bh_qvalues(self.p_value)
        self.ci = None
        self.params = {**self.params, "inference": self.inference.describe()}
        return self

    def discoveries(self, q: float = DISCOVERY_Q) -> np.ndarray:
        """Per row: a discovery at false discovery rate ``q`` (q-value ≤ ``q``).

        All false when the result has no q-values; unmeasurable rows are never discoveries.
        """
        if self.q_value is None:
            return np.zeros(len(self.feature_names), dtype=bool)
        with np.errstate(invalid="ignore"):
            return (self.q_value <= q) & self.is_measurable

    # -- views ---------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """The tidy table: one row per feature, in feature order."""
        frame = pd.DataFrame({"feature": self.feature_names})
        for col in PAIR_COLUMNS:
            frame[col] = [getattr(p, col) if p is not None else "" for p in self.pairs]
        # Grouped rows name their sensors without channel dims.
        for col, pos in (("sensor_a", 0), ("sensor_b", 1)):
            frame[col] = [
                cell or (sensors[pos] if len(sensors) > pos else "")
                for cell, sensors in zip(frame[col], self.row_sensors, strict=True)
            ]
        frame["importance_mean"] = self.importances_mean
        frame["importance_std"] = self.importances_std
        ranks = self.ranks
        if self.is_measurable.all():
            frame["rank"] = ranks
        else:  # unmeasurable rows are out of the ranking: an empty cell
            frame["rank"] = pd.Series(ranks, dtype="Int64").where(self.is_measurable)
        low, high = self.confidence_interval()
        frame["ci_low"] = low
        frame["ci_high"] = high
        frame["ci_includes_zero"] = includes_zero(low, high)
        frame["ci_level"] = self.ci_level
        nan = np.full(len(self.feature_names), np.nan)
        frame["p_value"] = nan if self.p_value is None else self.p_value
        frame["q_value"] = nan if self.q_value is None else self.q_value
        frame["measurable"] = self.is_measurable
        frame["level"] = self.level
        frame["n_columns"] = self.group_sizes
        for r in range(self.n_repeats):
            frame[f"{REPEAT_PREFIX}{r + 1}"] = self.importances[:, r]
        return frame

    def top(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` most important measurable rows, best first."""
        frame = self.to_frame()[self.is_measurable]
        return frame.sort_values(["rank", "feature"], kind="stable").head(k)

    def sensor_matrix(self, aggregate: str = "sum_positive") -> pd.DataFrame:
        """Symmetric sensor × sensor matrix aggregating the channel-pair importances.

        ``aggregate`` is ``"sum_positive"`` (the original LEAP heatmap: the sum of the
        positive mean importances of every channel pair between two sensors), ``"sum"``,
        ``"signed"`` (the same signed sum, meant for a diverging colour scale), ``"mean"``,
        ``"max"``, or ``"grouped"``: the importance of each sensor pair permuted as one
        group (``groups["sensor_pair"]``, or this result when its rows are sensor pairs)
        instead of a combination of separately permuted channel pairs. The diagonal holds
        the within-sensor pairs. Unmeasurable rows (:attr:`measurable`) are left out, so
        a cell all of whose rows are unmeasurable is NaN; :meth:`measurable_matrix` says
        which cells those are.
        """
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {list(AGGREGATIONS)}, got {aggregate!r}")
        source: ImportanceResult | None = self
        if aggregate == "grouped" and self.level != "sensor_pair":
            source = self.groups.get("sensor_pair")
            if source is None:
                raise ResultFormatError(
                    "no grouped sensor-pair importances to draw; run the analysis with "
                    "groups=['sensor_pair'] (CLI: --groups sensor_pair) or plot its "
                    "*_sensor_pair.csv"
                )
        assert source is not None
        measurable = source.is_measurable
        pair_rows = [(i, s) for i, s in enumerate(source.row_sensors) if len(s) == 2]
        rows = [(i, s) for i, s in pair_rows if measurable[i]]
        if not pair_rows:
            raise ResultFormatError(
                "this result has no sensor information (no sensor_a/sensor_b columns); "
                "it cannot be drawn as a sensor-pair heatmap"
            )
        values = source.importances_mean
        if aggregate == "sum_positive":
            values = np.clip(values, 0.0, None)
        sensors = source.sensors
        index = {s: i for i, s in enumerate(sensors)}
        buckets: dict[tuple[int, int], list[float]] = {}
        for row, (sensor_a, sensor_b) in rows:
            a, b = sorted((index[sensor_a], index[sensor_b]))
            buckets.setdefault((a, b), []).append(float(values[row]))
        n = len(sensors)
        matrix = np.full((n, n), np.nan)
        for (a, b), vals in buckets.items():
            matrix[a, b] = matrix[b, a] = AGGREGATIONS[aggregate].reduce(vals)
        return pd.DataFrame(matrix, index=list(sensors), columns=list(sensors))

    def measurable_matrix(self, aggregate: str = "sum_positive") -> pd.DataFrame:
        """Sensor × sensor booleans: False where a cell of :meth:`sensor_matrix` is unmeasurable.

        A cell is unmeasurable when rows fall on it and every one of them is unmeasurable
        (constant over the data: the within-sensor pairs of LEAP's features, for
        instance). Cells with no row at all stay True: they are missing, not unmeasurable
        (NaN in :meth:`sensor_matrix` either way).
        """
        source: ImportanceResult = self
        if aggregate == "grouped" and self.level != "sensor_pair":
            source = self.groups.get("sensor_pair", self)
        sensors = source.sensors
        index = {s: i for i, s in enumerate(sensors)}
        n = len(sensors)
        seen = np.zeros((n, n), dtype=bool)
        measured = np.zeros((n, n), dtype=bool)
        for row, found in enumerate(source.row_sensors):
            if len(found) == 2:
                a, b = index[found[0]], index[found[1]]
                seen[a, b] = seen[b, a] = True
                if source.is_measurable[row]:
                    measured[a, b] = measured[b, a] = True
        mask = measured | ~seen
        return pd.DataFrame(mask, index=list(sensors), columns=list(sensors))

    # -- CSV -----------------------------------------------------------------------------
    def to_csv(self, path: str | Path) -> Path:
        """Write the tidy table to ``path`` atomically; return the path."""
        path = Path(path)
        frame = self.to_frame()
        # The csv module leaves a lone carriage return unquoted, and readers take it for a
        # line end: quote every cell in the (rare) table whose names hold one.
        text = frame.select_dtypes(exclude="number").to_numpy().ravel()
        quoting = csv.QUOTE_ALL if any("\r" in str(cell) for cell in text) else csv.QUOTE_MINIMAL
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.17g", quoting=quoting)
        return path

    @classmethod
    def from_csv(cls, path: str | Path) -> ImportanceResult:
        """Read a CSV written by :meth:`to_csv`, or one written by the original LEAP script.

        Cells are parsed as data only (numbers and quoted names); nothing is evaluated.
        """
        path = existing_file(path, "importance CSV")
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ResultFormatError(f"{path} is not a readable CSV: {one_line(exc)}") from None
        except OSError as exc:
            raise InputFileError(f"cannot read {path}: {exc.strerror}") from None
        columns = set(frame.columns)
        if {"feature", "importance_mean"} <= columns:
            return _from_tidy(frame, path)
        if set(LEGACY_COLUMNS) <= columns:
            return _from_legacy(frame, path)
        found = ", ".join(_preview(str(c)) for c in frame.columns)  # repr: one line
        raise ResultFormatError(
            f"{path} has neither LEAP's columns (feature, importance_mean, ...) nor the "
            f"original script's (Pair, Dimensions, Importance); found: {found}"
        )

    # -- notebooks (plot, _repr_html_) ---------------------------------------------------
    # The table is to_frame() (what the CSV holds); the figure is the registered heatmap
    # renderer, looked up through the public package so a plugin that replaces "heatmap"
    # draws here too.
    def plot(
        self, aggregate: str = "sum_positive", *, title: str = "", engine: Any = None
    ) -> Figure:
        """Draw the sensor-pair heatmap and return its matplotlib ``Figure``.

        Parameters
        ----------
        aggregate : str
            How the channel pairs of two sensors are combined; see :meth:`sensor_matrix`.
        title : str
            Figure title; empty for a title that names the aggregation.
        engine : leap.Engine or None
            Engine whose ``heatmap`` renderer draws the figure; ``None`` for the default
            engine (built-ins plus installed plugins).

        Returns
        -------
        matplotlib.figure.Figure
            The figure (nothing is saved or shown; ``fig.savefig(...)`` saves it).
        """
        import leap

        engine = leap.get_engine() if engine is None else engine
        return engine.render(self, None, renderer="heatmap", title=title, aggregate=aggregate)

    def _repr_html_(self) -> str:
        """Jupyter's rich view: a summary line, the top rows as a table, and the heatmap."""
        import html

        from leap.data.formatting import format_number

        top = self.top(10)
        rows = top.index.to_numpy()
        p_value = getattr(self, "p_value", None)
        q_value = getattr(self, "q_value", None)
        extra = [
            (name, np.asarray(values, dtype=np.float64))
            for name, values in (("p", p_value), ("q", q_value))
            if values is not None
        ]
        level = f"{self.ci_level:.0%}"
        heads = ["rank", "feature", "mean", f"{level} CI"] + [name for name, _ in extra]
        cell = '<td style="text-align:right">{}</td>'
        body = []
        for row, (_, record) in zip(rows, top.iterrows(), strict=True):
            low, high = record["ci_low"], record["ci_high"]
            interval = (
                "–"
                if np.isnan(low) or np.isnan(high)
                else f"[{format_number(low, '.4f')}, {format_number(high, '.4f')}]"
            )
            cells = [
                cell.format(int(record["rank"])),
                f'<td style="text-align:left">{html.escape(str(record["feature"]))}</td>',
                cell.format(format_number(record["importance_mean"], ".4f")),
                cell.format(interval),
            ]
            for _, values in extra:
                value = values[row] if row < len(values) else np.nan
                cells.append(cell.format("–" if np.isnan(value) else format_number(value, ".3g")))
            body.append("<tr>" + "".join(cells) + "</tr>")
        head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        facts = [
            f"{len(self.feature_names)} rows ({self.level})",
            f"method {self.method}",
            f"{self.n_repeats} repeat(s)",
            f"scoring {self.scoring}",
        ]
        if self.baseline_score is not None:
            facts.append(f"baseline {format_number(self.baseline_score, '.4f')}")
        if self.groups:
            facts.append("groups: " + ", ".join(self.groups))
        summary = html.escape("ImportanceResult: " + "; ".join(facts))
        parts = [f"<p><b>{summary}</b></p>", f"<p>Top {len(top)} by mean importance</p>", table]
        parts.append(self._heatmap_img())
        return "<div>" + "".join(parts) + "</div>"

    def _heatmap_img(self) -> str:
        """The heatmap as an inline base64 PNG ``<img>``; empty when it cannot be drawn."""
        import base64
        import io

        from leap.errors import LeapError

        if not any(len(sensors) == 2 for sensors in self.row_sensors):
            return ""  # no sensor pairs (e.g. sensor-level rows): the table says it all
        try:
            figure = self.plot()
        except LeapError:
            return ""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=72)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        return f'<img alt="sensor-pair heatmap" src="data:image/png;base64,{data}"/>'

    # -- end of notebooks ----------------------------------------------------------------


def _from_tidy(frame: pd.DataFrame, path: Path) -> ImportanceResult:
    repeat_cols = sorted(
        (c for c in frame.columns if c.startswith(REPEAT_PREFIX)),
        key=lambda c: _parse_int(c[len(REPEAT_PREFIX) :], path, "repeat column"),
    )
    value_cols = repeat_cols or ["importance_mean"]
    importances = (
        np.column_stack(
            [
                [_parse_float(v, path, col, row) for row, v in enumerate(frame[col])]
                for col in value_cols
            ]
        )
        if len(frame)
        else np.empty((0, len(value_cols)))
    )
    pairs: list[ChannelPair | None] = [None] * len(frame)
    row_sensors: list[tuple[str, ...]] = [()] * len(frame)
    if set(PAIR_COLUMNS) <= set(frame.columns):
        for row, cells in enumerate(frame[list(PAIR_COLUMNS)].itertuples(index=False)):
            if all(cells):
                pairs[row] = ChannelPair(**dict(zip(PAIR_COLUMNS, cells, strict=True)))
            row_sensors[row] = tuple(c for c in (cells[0], cells[2]) if c)
    extra: dict[str, Any] = {"row_sensors": row_sensors}
    if "level" in frame.columns and len(frame):
        levels = set(frame["level"])
        extra["level"] = levels.pop() if len(levels) == 1 else "mixed"
    if "n_columns" in frame.columns:
        extra["group_sizes"] = [
            _parse_int(v, path, f"n_columns value in row {row + 2}")
            for row, v in enumerate(frame["n_columns"])
        ]
    if {"ci_low", "ci_high"} <= set(frame.columns):
        extra["ci"] = tuple(
            np.array(
                [
                    _parse_float(v, path, col, row, allow_nan=True)
                    for row, v in enumerate(frame[col])
                ],
                dtype=np.float64,
            )
            for col in ("ci_low", "ci_high")
        )
        if "ci_level" in frame.columns and len(frame):
            level = _parse_float(frame["ci_level"].iloc[0], path, "ci_level", 0)
            if not 0.0 < level < 1.0:
                raise ResultFormatError(f"{path}: ci_level must lie between 0 and 1, got {level}")
            extra["ci_level"] = level
    for col in ("p_value", "q_value"):  # absent in older CSVs; empty cells where untested
        if col in frame.columns:
            values = [
                _parse_float(v, path, col, row, allow_nan=True) for row, v in enumerate(frame[col])
            ]
            if not all(math.isnan(v) for v in values):
                extra[col] = np.array(values, dtype=np.float64)
    if "measurable" in frame.columns:
        flags = {"True": True, "False": False, "true": True, "false": False, "1": True, "0": False}
        bad = [v for v in frame["measurable"] if v not in flags]
        if bad:
            raise ResultFormatError(
                f"{path}: column measurable holds {_preview(bad[0])}, not True or False"
            )
        extra["measurable"] = np.array([flags[v] for v in frame["measurable"]], dtype=bool)
    return ImportanceResult(
        importances, list(frame["feature"]), pairs, params={"source": str(path)}, **extra
    )


def _from_legacy(frame: pd.DataFrame, path: Path) -> ImportanceResult:
    pairs: list[ChannelPair | None] = []
    values = []
    for row, (pair_cell, dims_cell, value) in enumerate(
        zip(frame["Pair"], frame["Dimensions"], frame["Importance"], strict=True)
    ):
        sensor_a, sensor_b = _parse_name_tuple(pair_cell, path, "Pair", row)
        dim_a, dim_b = _parse_name_tuple(dims_cell, path, "Dimensions", row)
        pairs.append(ChannelPair(sensor_a=sensor_a, dim_a=dim_a, sensor_b=sensor_b, dim_b=dim_b))
        values.append(_parse_float(value, path, "Importance", row))
    names = [p.name for p in pairs if p is not None]
    return ImportanceResult(
        np.asarray(values, dtype=np.float64).reshape(-1, 1),
        names,
        pairs,
        params={"source": str(path), "format": "original LEAP CSV"},
    )


def _parse_name_tuple(cell: str, path: Path, column: str, row: int) -> tuple[str, str]:
    match = _TUPLE_OF_TWO.match(cell)
    if match is None:
        raise ResultFormatError(
            f"{path}, row {row + 2}, column {column}: expected a pair of quoted names like "
            f"('Left_Ankle', 'Sacrum'), got {_preview(cell)}"
        )
    return match["a"], match["b"]


def _parse_float(cell: str, path: Path, column: str, row: int, allow_nan: bool = False) -> float:
    if allow_nan and cell == "":
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise ResultFormatError(
            f"{path}, row {row + 2}, column {column}: expected a number, got {_preview(cell)}"
        ) from None
    if math.isnan(value) and not allow_nan:
        raise ResultFormatError(f"{path}, row {row + 2}, column {column}: value is NaN")
    return value


def _parse_int(text: str, path: Path, what: str) -> int:
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is True, int("²") fails
        raise ResultFormatError(f"{path}: malformed {what} name {REPEAT_PREFIX}{text!r}")
    return int(text)


def _sensor_order(row_sensors: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for sensors in row_sensors:
        for sensor in sensors:
            seen.setdefault(sensor)
    known = [s for s in LEAP_SENSORS if s in seen]
    return tuple(known + [s for s in seen if s not in LEAP_SENSORS])


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
