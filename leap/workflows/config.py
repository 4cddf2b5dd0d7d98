"""The settings of one analysis run (pydantic), loadable from TOML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leap.data.aggregates import Aggregate
from leap.data.files import normalize_sha256, read_settings
from leap.data.layout import GroupingName, SensorLayout, first_validation_error
from leap.errors import ConfigError


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
    #: CSV header: None (the first row names the columns, refused if it looks like data),
    #: False (no header row), True (a header whatever it looks like).
    header: bool | None = None
    #: Cap on rows × columns read (default: LEAP_MAX_CELLS, else the readers' default).
    max_cells: int | None = Field(default=None, ge=1)
    #: Types a type-checking loader (leap-skops) may accept in the model file.
    trust: list[str] = Field(default_factory=list)
    #: Other files the run reads (a config or group file): no output may replace them.
    input_files: list[Path] = Field(default_factory=list)

    @field_validator("groups", "trust", mode="before")
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
            raise ConfigError(f"invalid analysis settings: {first_validation_error(exc)}") from None

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> AnalysisConfig:
        """Read settings from ``path`` (its ``[analysis]`` table, or the top level).

        Relative paths in the file are resolved against the file's folder; ``overrides``
        (e.g. command-line options) win over the file.
        """
        path = Path(path)
        data = read_settings(path, "config file", ConfigError)
        values = data.get("analysis", data)
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path}: [analysis] must be a table of settings")
        values = dict(values)
        for key in ("model_path", "feature_matrix", "save_csv_path", "heatmap_path", "report_path"):
            if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                values[key] = path.parent / values[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.create(**values)
