"""The sensor layout: sensors, channel dims and the channel pairs that name the features."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from leap.errors import LayoutError

LEAP_SENSORS = ("Left_Ankle", "Right_Ankle", "Left_Wrist", "Right_Wrist", "Sacrum")
LEAP_DIMS = ("x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro")
PAIR_SEPARATOR = "|"
#: Built-in groupings of features (see :mod:`leap.data.grouping`).
GroupingName = Literal["sensor_pair", "sensor"]
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
        duplicates = [n for i, n in enumerate(names) if n in names[:i]]  # a few names only
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
            raise LayoutError(f"invalid sensor layout: {first_validation_error(exc)}") from None

    @classmethod
    def create(cls, sensors: Any = LEAP_SENSORS, dims: Any = LEAP_DIMS) -> SensorLayout:
        """Build a layout, turning validation failures into :class:`LayoutError`."""
        try:
            return cls(sensors=tuple(sensors), dims=tuple(dims))
        except ValidationError as exc:
            raise LayoutError(f"invalid sensor layout: {first_validation_error(exc)}") from None

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


def first_validation_error(exc: ValidationError) -> str:
    """The first problem of a pydantic ``ValidationError``, as ``where: message``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
