"""Feature groupings: which columns are permuted together.

A grouping turns a specification into index lists (the columns of each group) and group
names. Two built-ins follow the :class:`~leap.data.layout.SensorLayout`:

``sensor_pair``
    one group per pair of sensors (and one per sensor with itself): every channel pair
    whose two channels sit on those sensors. Permuting the group scrambles everything the
    model could learn from the relation between the two sensors.
``sensor``
    one group per sensor: every feature that involves the sensor. Permuting it answers
    "what does the model lose when this sensor's information is scrambled?".

A user mapping ``{group name: [feature names or column indices]}`` gives any other grouping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leap.data.files import existing_file, read_settings
from leap.data.layout import PAIR_SEPARATOR, SensorLayout
from leap.errors import LeapError

BUILTIN_GROUPINGS = ("sensor_pair", "sensor")
CUSTOM = "custom"

GroupSpec = str | Mapping[str, Sequence[int | str]] | Sequence[Sequence[int]]


class GroupingError(LeapError):
    """A grouping specification does not fit the features."""


@dataclass(frozen=True)
class Grouping:
    """Groups of feature columns, permuted jointly.

    Attributes
    ----------
    name : str
        The grouping's name (``sensor_pair``, ``sensor`` or ``custom``); the ``level`` of
        the results it produces.
    names : list of str
        One name per group (``Left_Ankle|Sacrum``, ``Sacrum``, or the user's names).
    indices : list of list of int
        The feature columns of each group.
    sensors : list of tuple of str
        The sensors each group stands for: ``(a, b)`` for a sensor pair (``(a, a)`` within
        one sensor), ``(s,)`` for a sensor, ``()`` for a user group.
    """

    name: str
    names: list[str]
    indices: list[list[int]]
    sensors: list[tuple[str, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sensors:
            object.__setattr__(self, "sensors", [()] * len(self.names))

    def __len__(self) -> int:
        return len(self.names)

    def annotate(self, result: Any) -> Any:
        """Mark an :class:`~leap.data.result.ImportanceResult` computed for these groups."""
        result.level = self.name
        result.row_sensors = list(self.sensors)
        result.group_sizes = [len(g) for g in self.indices]
        result.pairs = [None] * len(self.names)
        result.sensors = _sensor_order(self.sensors, result.sensors)
        return result


def sensor_pair_grouping(layout: SensorLayout) -> Grouping:
    """One group per sensor pair ``a ≤ b`` (layout order), holding its channel pairs."""
    position = {s: i for i, s in enumerate(layout.sensors)}
    members: dict[tuple[str, str], list[int]] = {}
    for k, pair in enumerate(layout.pairs):
        a, b = sorted((pair.sensor_a, pair.sensor_b), key=position.__getitem__)
        members.setdefault((a, b), []).append(k)
    keys = [
        (a, b)
        for i, a in enumerate(layout.sensors)
        for b in layout.sensors[i:]
        if (a, b) in members
    ]
    return Grouping(
        "sensor_pair",
        [f"{a}{PAIR_SEPARATOR}{b}" for a, b in keys],
        [members[key] for key in keys],
        list(keys),
    )


def sensor_grouping(layout: SensorLayout) -> Grouping:
    """One group per sensor, holding every feature with a channel on that sensor."""
    indices = [
        [k for k, p in enumerate(layout.pairs) if sensor in (p.sensor_a, p.sensor_b)]
        for sensor in layout.sensors
    ]
    return Grouping("sensor", list(layout.sensors), indices, [(s,) for s in layout.sensors])


def custom_grouping(
    mapping: Mapping[str, Sequence[int | str]] | Sequence[Sequence[int]],
    feature_names: Sequence[str] | None,
    n_features: int,
    name: str = CUSTOM,
    other_names: Sequence[str] | None = None,
) -> Grouping:
    """Groups from ``{group name: [feature names or column indices]}`` (or index lists).

    Names are looked up in ``feature_names``, then in ``other_names`` (e.g. the column
    names of the file, when the layout names the features differently).
    """
    items = (
        list(mapping.items())
        if isinstance(mapping, Mapping)
        else [(f"group_{i}", g) for i, g in enumerate(mapping)]
    )
    if not items:
        raise GroupingError("the group mapping is empty; give at least one group")
    position = {str(n): i for i, n in enumerate(other_names or [])}
    position.update({str(n): i for i, n in enumerate(feature_names or [])})
    indices = []
    for group, members in items:
        if isinstance(members, str | bytes) or not isinstance(members, Sequence):
            raise GroupingError(
                f"group {group!r} must list feature names or column indices, got {members!r}"
            )
        cols: list[int] = []
        for m in members:
            if isinstance(m, str):
                if m not in position:
                    hint = "" if position else " (the features have no names; use indices)"
                    raise GroupingError(f"group {group!r} names an unknown feature {m!r}{hint}")
                col = position[m]
            elif isinstance(m, int) and not isinstance(m, bool):
                col = m + n_features if m < 0 else m
                if not 0 <= col < n_features:
                    raise GroupingError(
                        f"group {group!r}: column index {m} is out of range for "
                        f"{n_features} features"
                    )
            else:
                raise GroupingError(
                    f"group {group!r}: {m!r} is neither a feature name nor an index"
                )
            if col not in cols:
                cols.append(col)
        if not cols:
            raise GroupingError(f"group {group!r} is empty")
        indices.append(cols)
    return Grouping(name, [str(g) for g, _ in items], indices)


def resolve_grouping(
    spec: GroupSpec,
    *,
    layout: SensorLayout | None,
    feature_names: Sequence[str] | None,
    n_features: int,
    other_names: Sequence[str] | None = None,
) -> Grouping:
    """Turn a grouping specification into a :class:`Grouping`.

    Parameters
    ----------
    spec : str, mapping or list of index lists
        ``"sensor_pair"``, ``"sensor"``, ``{name: [feature names or indices]}``, or a list
        of index lists (named ``group_0``, ``group_1``, ...).
    layout : SensorLayout or None
        Needed by the built-in groupings (default: the LEAP layout); must match
        ``n_features``.
    feature_names : list of str or None
        Column names, to resolve names in a mapping.
    n_features : int
        Number of feature columns.
    other_names : list of str or None
        Further names a mapping may use (the file's column names).
    """
    if isinstance(spec, str):
        if spec not in BUILTIN_GROUPINGS:
            raise GroupingError(
                f"unknown grouping {spec!r}; built-in: {', '.join(BUILTIN_GROUPINGS)} "
                f"(or pass a mapping of group name to feature names or indices)"
            )
        layout = layout or SensorLayout()
        layout.check_width(n_features, f"grouping {spec!r} needs a layout; the data")
        return sensor_pair_grouping(layout) if spec == "sensor_pair" else sensor_grouping(layout)
    return custom_grouping(spec, feature_names, n_features, other_names=other_names)


def _sensor_order(
    row_sensors: Sequence[tuple[str, ...]], current: Sequence[str]
) -> tuple[str, ...]:
    seen = dict.fromkeys(s for sensors in row_sensors for s in sensors)
    return tuple(current) if set(seen) <= set(current) and current else tuple(seen)


def load_group_file(path: str | Path) -> dict[str, list[str | int]]:
    """Read a user grouping ``{group name: [feature names or indices]}`` from JSON or TOML.

    A TOML file may hold the mapping at the top level or in a ``[groups]`` table.
    """
    path = existing_file(path, "group file")
    data = read_settings(path, "group file", GroupingError)
    if path.suffix.lower() == ".toml":
        data = data.get("groups", data)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise GroupingError(
            f"group file {path} must map group names to lists of feature names or indices, "
            f'e.g. {{"lower_body": ["Left_Ankle.x_acc|Right_Ankle.x_acc", 12]}}'
        )
    return {str(k): v for k, v in data.items()}
