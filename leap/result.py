"""ImportanceResult: the numbers an analysis produces, and their tidy CSV form."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leap.config import LEAP_SENSORS, ChannelPair, SensorLayout
from leap.errors import InputFileError, ResultFormatError
from leap.files import atomic_path, existing_file

PAIR_COLUMNS = ("sensor_a", "dim_a", "sensor_b", "dim_b")
REPEAT_PREFIX = "repeat_"
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
    """

    importances: np.ndarray
    feature_names: list[str]
    pairs: list[ChannelPair | None] = field(default_factory=list)
    sensors: tuple[str, ...] = ()
    baseline_score: float | None = None
    scoring: str = "score"
    method: str = "permutation"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.importances = np.asarray(self.importances, dtype=np.float64)
        if self.importances.ndim != 2 or self.importances.shape[0] != len(self.feature_names):
            raise ValueError(
                f"importances must have shape (n_features, n_repeats) with n_features="
                f"{len(self.feature_names)}, got {self.importances.shape}"
            )
        if not self.pairs:
            self.pairs = [None] * len(self.feature_names)
        if not self.sensors:
            self.sensors = _sensor_order(p for p in self.pairs if p is not None)

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
    def ranks(self) -> np.ndarray:
        """Rank by mean importance, 1 = most important; ties share the best rank."""
        return pd.Series(self.importances_mean).rank(ascending=False, method="min").to_numpy(int)

    # -- views ---------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """The tidy table: one row per feature, in feature order."""
        frame = pd.DataFrame({"feature": self.feature_names})
        for col in PAIR_COLUMNS:
            frame[col] = [getattr(p, col) if p is not None else "" for p in self.pairs]
        frame["importance_mean"] = self.importances_mean
        frame["importance_std"] = self.importances_std
        frame["rank"] = self.ranks
        for r in range(self.n_repeats):
            frame[f"{REPEAT_PREFIX}{r + 1}"] = self.importances[:, r]
        return frame

    def top(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` most important rows, best first."""
        return self.to_frame().sort_values(["rank", "feature"], kind="stable").head(k)

    def sensor_matrix(self, aggregate: str = "sum_positive") -> pd.DataFrame:
        """Symmetric sensor × sensor matrix aggregating the channel-pair importances.

        ``aggregate`` is ``"sum_positive"`` (the original LEAP heatmap: the sum of the
        positive mean importances of every channel pair between two sensors), ``"sum"``,
        ``"mean"`` or ``"max"``. The diagonal holds the within-sensor pairs.
        """
        if not any(p is not None for p in self.pairs):
            raise ResultFormatError(
                "this result has no sensor information (no sensor_a/sensor_b columns); "
                "it cannot be drawn as a sensor-pair heatmap"
            )
        values = self.importances_mean
        if aggregate == "sum_positive":
            values = np.clip(values, 0.0, None)
        reducers = {"sum_positive": np.sum, "sum": np.sum, "mean": np.mean, "max": np.max}
        if aggregate not in reducers:
            raise ValueError(f"aggregate must be one of {sorted(reducers)}, got {aggregate!r}")
        index = {s: i for i, s in enumerate(self.sensors)}
        buckets: dict[tuple[int, int], list[float]] = {}
        for pair, value in zip(self.pairs, values, strict=True):
            if pair is None:
                continue
            a, b = sorted((index[pair.sensor_a], index[pair.sensor_b]))
            buckets.setdefault((a, b), []).append(float(value))
        n = len(self.sensors)
        matrix = np.full((n, n), np.nan)
        for (a, b), vals in buckets.items():
            matrix[a, b] = matrix[b, a] = reducers[aggregate](vals)
        return pd.DataFrame(matrix, index=list(self.sensors), columns=list(self.sensors))

    # -- CSV -----------------------------------------------------------------------------
    def to_csv(self, path: str | Path) -> Path:
        """Write the tidy table to ``path`` atomically; return the path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            self.to_frame().to_csv(tmp, index=False, float_format="%.17g")
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
            raise ResultFormatError(f"{path} is not a readable CSV: {_one_line(exc)}") from None
        except OSError as exc:
            raise InputFileError(f"cannot read {path}: {exc.strerror}") from None
        columns = set(frame.columns)
        if {"feature", "importance_mean"} <= columns:
            return _from_tidy(frame, path)
        if set(LEGACY_COLUMNS) <= columns:
            return _from_legacy(frame, path)
        raise ResultFormatError(
            f"{path} has neither LEAP's columns (feature, importance_mean, ...) nor the "
            f"original script's (Pair, Dimensions, Importance); found: {', '.join(frame.columns)}"
        )


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
    if set(PAIR_COLUMNS) <= set(frame.columns):
        for row, cells in enumerate(frame[list(PAIR_COLUMNS)].itertuples(index=False)):
            if all(cells):
                pairs[row] = ChannelPair(**dict(zip(PAIR_COLUMNS, cells, strict=True)))
    return ImportanceResult(
        importances, list(frame["feature"]), pairs, params={"source": str(path)}
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


def _parse_float(cell: str, path: Path, column: str, row: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ResultFormatError(
            f"{path}, row {row + 2}, column {column}: expected a number, got {_preview(cell)}"
        ) from None
    if math.isnan(value):
        raise ResultFormatError(f"{path}, row {row + 2}, column {column}: value is NaN")
    return value


def _parse_int(text: str, path: Path, what: str) -> int:
    if not text.isdigit():
        raise ResultFormatError(f"{path}: malformed {what} name {REPEAT_PREFIX}{text!r}")
    return int(text)


def _sensor_order(pairs: Sequence[ChannelPair] | Any) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for p in pairs:
        seen.setdefault(p.sensor_a)
        seen.setdefault(p.sensor_b)
    known = [s for s in LEAP_SENSORS if s in seen]
    return tuple(known + [s for s in seen if s not in LEAP_SENSORS])


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
