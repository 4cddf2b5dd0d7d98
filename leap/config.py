"""Configuration models: the sensor layout and the analysis settings (pydantic)."""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from leap.errors import ConfigError, LayoutError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

LEAP_SENSORS = ("Left_Ankle", "Right_Ankle", "Left_Wrist", "Right_Wrist", "Sacrum")
LEAP_DIMS = ("x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro")
PAIR_SEPARATOR = "|"
#: Built-in groupings of features (see :mod:`leap.grouping`).
GroupingName = Literal["sensor_pair", "sensor"]
#: Sensor-heatmap aggregations (see :meth:`leap.result.ImportanceResult.sensor_matrix`).
Aggregate = Literal["sum_positive", "sum", "signed", "mean", "max", "grouped"]
CHANNEL_SEPARATOR = "."


class ChannelPair(BaseModel):
    """One feature: the relation between channel ``(sensor_a, dim_a)`` and ``(sensor_b, dim_b)``."""

    model_config = ConfigDict(frozen=True)

    sensor_a: str
    dim_a: str
    sensor_b: str
    dim_b: str

    @property
    def name(self) -> str:
        """The feature name, e.g. ``Left_Ankle.x_acc|Right_Wrist.y_gyro``."""
        a = f"{self.sensor_a}{CHANNEL_SEPARATOR}{self.dim_a}"
        b = f"{self.sensor_b}{CHANNEL_SEPARATOR}{self.dim_b}"
        return f"{a}{PAIR_SEPARATOR}{b}"


class SensorLayout(BaseModel):
    """Sensors × dimensions, and the upper-triangle channel-pair features they define.

    Channels are ordered sensor-major (every dim of the first sensor, then the next
    sensor); feature ``k`` is the ``k``-th pair ``(i, j)``, ``i < j``, in row-major order.
    The default is the original LEAP study: 5 sensors × 6 dims → 30 channels → 435 pairs.
    """

    model_config = ConfigDict(frozen=True)

    sensors: tuple[str, ...] = Field(default=LEAP_SENSORS, min_length=1)
    dims: tuple[str, ...] = Field(default=LEAP_DIMS, min_length=1)

    @field_validator("sensors", "dims")
    @classmethod
    def _unique_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        duplicates = [n for n in names if n in seen or seen.add(n)]
        if duplicates:
            raise ValueError(
                f"names must be unique, repeated: {', '.join(sorted(set(duplicates)))}"
            )
        if any(not n.strip() for n in names):
            raise ValueError("names must not be empty")
        return names

    def __init__(self, **values: Any) -> None:
        # Direct construction reports bad names as a LeapError, like create() does.
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise LayoutError(f"invalid sensor layout: {_first_error(exc)}") from None

    @classmethod
    def create(cls, sensors: Any = LEAP_SENSORS, dims: Any = LEAP_DIMS) -> SensorLayout:
        """Build a layout, turning validation failures into :class:`LayoutError`."""
        try:
            return cls(sensors=tuple(sensors), dims=tuple(dims))
        except ValidationError as exc:
            raise LayoutError(f"invalid sensor layout: {_first_error(exc)}") from None

    @cached_property
    def channels(self) -> list[tuple[str, str]]:
        """The ``(sensor, dim)`` channels, sensor-major."""
        return [(s, d) for s in self.sensors for d in self.dims]

    @cached_property
    def pairs(self) -> list[ChannelPair]:
        """The channel-pair features in feature order."""
        ch = self.channels
        return [
            ChannelPair(sensor_a=ch[i][0], dim_a=ch[i][1], sensor_b=ch[j][0], dim_b=ch[j][1])
            for i in range(len(ch))
            for j in range(i + 1, len(ch))
        ]

    @property
    def n_features(self) -> int:
        """Number of channel-pair features: ``C (C - 1) / 2`` for ``C`` channels."""
        c = len(self.sensors) * len(self.dims)
        return c * (c - 1) // 2

    @cached_property
    def feature_names(self) -> list[str]:
        """Feature names in order, e.g. ``Left_Ankle.x_acc|Left_Ankle.y_acc``."""
        return [p.name for p in self.pairs]

    def describe(self) -> str:
        """A short human description, e.g. ``5 sensors × 6 dims = 435 pairs``."""
        return f"{len(self.sensors)} sensors × {len(self.dims)} dims = {self.n_features} pairs"

    def check_width(self, n_features: int, what: str = "the feature matrix") -> None:
        """Raise :class:`LayoutError` unless ``n_features`` equals the layout's feature count."""
        if n_features != self.n_features:
            raise LayoutError(
                f"{what} has {n_features} feature columns but the layout expects "
                f"{self.n_features} ({self.describe()}); pass a SensorLayout that matches the data"
            )


class AnalysisConfig(BaseModel):
    """Everything one analysis run needs; loadable from a TOML file (``[analysis]`` table)."""

    model_config = ConfigDict(extra="forbid")

    model_path: Path
    feature_matrix: Path
    label: str | int = "label"
    save_csv_path: Path
    heatmap_title: str = "Feature Importance Heatmap"
    heatmap_path: Path | None = None
    renderers: list[str] = Field(default_factory=lambda: ["heatmap"])
    layout: SensorLayout = Field(default_factory=SensorLayout)
    method: str = "permutation"
    n_repeats: int = Field(default=10, ge=1)
    random_state: int | None = 42
    scoring: str | list[str] | None = None
    n_jobs: int | None = None
    max_samples: float | int = 1.0
    expect_sha256: str | None = None
    loader: str | None = None
    reader: str | None = None
    participant: str | None = None
    progress: bool = False
    groups: list[GroupingName] = Field(default_factory=list)
    custom_groups: dict[str, list[str | int]] = Field(default_factory=dict)
    per_participant: bool = False
    ci_level: float = Field(default=0.95, gt=0.0, lt=1.0)
    heatmap_aggregate: Aggregate = "sum_positive"
    top_k: int = Field(default=20, ge=1)
    report_path: Path | None = None

    @field_validator("groups", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _participants_figure_needs_participants(self) -> AnalysisConfig:
        if "participants" in self.renderers and not self.per_participant:
            raise ValueError(
                "the 'participants' figure needs per_participant = true (CLI: --per-participant)"
            )
        return self

    @property
    def grouping_names(self) -> list[str]:
        """The groupings this run computes: the built-ins asked for, then ``custom``.

        A ``grouped`` heatmap needs the ``sensor_pair`` grouping, so it adds it.
        """
        names = list(dict.fromkeys(self.groups))
        if self.heatmap_aggregate == "grouped" and "sensor_pair" not in names:
            names.insert(0, "sensor_pair")
        return names + (["custom"] if self.custom_groups else [])

    @field_validator("expect_sha256")
    @classmethod
    def _sha256_digest(cls, value: str | None) -> str | None:
        return None if value is None else normalize_sha256(value)

    @classmethod
    def create(cls, **values: Any) -> AnalysisConfig:
        """Validate ``values``, raising :class:`ConfigError` with the first problem."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"invalid analysis settings: {_first_error(exc)}") from None

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> AnalysisConfig:
        """Read settings from ``path`` (its ``[analysis]`` table, or the top level).

        Relative paths in the file are resolved against the file's folder; ``overrides``
        (e.g. command-line options) win over the file.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        values = dict(data.get("analysis", data))
        for key in ("model_path", "feature_matrix", "save_csv_path", "heatmap_path", "report_path"):
            if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                values[key] = path.parent / values[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.create(**values)


def normalize_sha256(text: str) -> str:
    """A SHA-256 hex digest in lower case (``sha256:`` prefix allowed); else ValueError."""
    digest = text.strip().lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(
            f"must be the 64 hexadecimal digits of a SHA-256 digest (as printed by "
            f"sha256sum), got {text[:80]!r}"
        )
    return digest


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
