"""Built-in ``channel_heatmap`` renderer: the channel × channel (e.g. 30 × 30) matrix.

Each cell is the mean importance of one channel-pair feature; the matrix is symmetric and
its diagonal (a channel with itself, not a feature) is grey. Lines and labels mark the
sensor blocks, so within-sensor pairs are the squares on the diagonal.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from leap.builtins.renderers.heatmap import color_scale, hatch_unmeasurable, value_label
from leap.data.layout import CHANNEL_SEPARATOR
from leap.errors import ResultFormatError
from leap.figures import (
    FIGURE_SUFFIXES,
    draw_matrix,
    new_figure,
    plain_text,
    save_figure,
    shorten,
)
from leap.hookspecs import hookimpl

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from leap.data.result import ImportanceResult

#: Larger layouts show whole sensors, those with the largest total |importance|, up to
#: this many channels (20 sensors of 6 channels); the CSV has every channel pair.
MAX_CHANNELS = 120


def channel_matrix(result: ImportanceResult) -> pd.DataFrame:
    """Symmetric channel × channel matrix of mean importances (NaN where no feature).

    Unmeasurable features (constant over the data) are NaN too; :func:`unmeasurable_cells`
    tells them apart from missing ones.

    Channels are ordered sensor-major (the result's sensor order, then each sensor's
    dims in order of first appearance); labels are ``Sensor.dim``.
    """
    import pandas as pd

    pairs = [(i, p) for i, p in enumerate(result.pairs) if p is not None]
    if not pairs:
        raise ResultFormatError(
            "this result has no channel pairs (sensor_a, dim_a, sensor_b, dim_b); a channel "
            "heatmap needs the feature-level result, not a grouped one"
        )
    dims: dict[str, dict[str, None]] = {s: {} for s in result.sensors}
    for _, p in pairs:
        dims.setdefault(p.sensor_a, {})[p.dim_a] = None
        dims.setdefault(p.sensor_b, {})[p.dim_b] = None
    channels = [(s, d) for s in dims for d in dims[s]]
    index = {c: i for i, c in enumerate(channels)}
    matrix = np.full((len(channels), len(channels)), np.nan)
    means = np.where(result.is_measurable, result.importances_mean, np.nan)  # n/a, not 0
    for row, p in pairs:
        a, b = index[(p.sensor_a, p.dim_a)], index[(p.sensor_b, p.dim_b)]
        matrix[a, b] = matrix[b, a] = means[row]
    labels = [f"{s}{CHANNEL_SEPARATOR}{d}" for s, d in channels]
    return pd.DataFrame(matrix, index=labels, columns=labels)


def unmeasurable_cells(result: ImportanceResult) -> pd.DataFrame:
    """Channel × channel booleans, labelled as :func:`channel_matrix`: True where the
    feature exists but is unmeasurable."""
    frame = channel_matrix(result)
    mask = np.zeros(frame.shape, dtype=bool)
    position = {label: i for i, label in enumerate(frame.index)}
    for row, p in enumerate(result.pairs):
        if p is not None and not result.is_measurable[row]:
            a = position[f"{p.sensor_a}{CHANNEL_SEPARATOR}{p.dim_a}"]
            b = position[f"{p.sensor_b}{CHANNEL_SEPARATOR}{p.dim_b}"]
            mask[a, b] = mask[b, a] = True
    return type(frame)(mask, index=frame.index, columns=frame.columns)


class ChannelHeatmap:
    """Channel × channel heatmap with the sensor blocks outlined and labelled."""

    name = "channel_heatmap"
    suffixes = FIGURE_SUFFIXES
    options = ()

    def applies(self, result: ImportanceResult) -> bool:
        """Only results whose rows are channel pairs have a channel matrix."""
        return any(p is not None for p in result.pairs)

    def render(self, result: ImportanceResult, path: Path | None, *, title: str = "") -> Figure:
        """Draw :func:`channel_matrix`; save to ``path`` (PNG, SVG or PDF) when given."""
        matrix, note = largest_blocks(channel_matrix(result), MAX_CHANNELS)
        values = matrix.to_numpy()
        channels = [label.split(CHANNEL_SEPARATOR, 1) for label in matrix.index]
        sensors = list(dict.fromkeys(s for s, _ in channels))
        n = len(channels)
        side = min(max(5.0, 0.26 * n + 2.5), 16.0)
        fig = new_figure(side + 2.4, side + 1.0)
        ax = fig.add_subplot()
        cmap, norm = color_scale(values)
        image = draw_matrix(ax, values, cmap, norm)
        fontsize = 8 if n <= 36 else 6
        unmeasured = unmeasurable_cells(result).reindex(
            index=matrix.index, columns=matrix.columns, fill_value=False
        )
        hatch_unmeasurable(ax, unmeasured.to_numpy(dtype=bool), label=n <= 12)
        dim_labels = [shorten(d.replace("_", " "), 16) for _, d in channels]
        rotation = 90 if max(map(len, dim_labels)) > 2 else 0
        ax.set_xticks(range(n), dim_labels, rotation=rotation, fontsize=fontsize)
        ax.set_yticks(range(n), dim_labels, fontsize=fontsize)
        ax.tick_params(length=2, pad=2)
        # Sensor blocks: boundaries as lines, names centred on each block (top and right).
        starts = [i for i, (s, _) in enumerate(channels) if i == 0 or channels[i - 1][0] != s]
        bounds = [*starts, n]
        for edge in bounds[1:-1]:
            ax.axhline(edge - 0.5, color="black", linewidth=1.4)
            ax.axvline(edge - 0.5, color="black", linewidth=1.4)
        centres = [(a + b - 1) / 2 for a, b in pairwise(bounds)]
        names = [shorten(s.replace("_", " "), 24) for s in sensors]
        name_size = "medium" if len(sensors) <= 10 else "x-small"
        top = ax.secondary_xaxis("top")
        top.set_xticks(centres, names, fontsize=name_size, fontweight="bold")
        top.tick_params(length=0)
        right = ax.secondary_yaxis("right")
        right.set_yticks(centres, names, fontsize=name_size, fontweight="bold", rotation=-90)
        right.tick_params(length=0, pad=4)
        for label in right.get_yticklabels():
            label.set_verticalalignment("center")
        ax.set_title(
            title or "Channel-pair importance (each cell one feature)",
            fontsize="large",
            fontweight="bold",
        )
        bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
        bar.set_label(value_label("Mean importance of the channel pair", result))
        if note:
            ax.set_xlabel(note, fontsize="small")
        plain_text(fig)
        if path is not None:
            save_figure(fig, path)
        return fig


def largest_blocks(matrix: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, str]:
    """``matrix`` cut to whole sensors, largest total |importance| first, ≤ ``limit`` channels.

    Sensors keep their order; the note (empty when nothing is cut) says what is shown. A
    single sensor with more than ``limit`` channels is cut to its largest channels.
    """
    n = len(matrix.index)
    if n <= limit:
        return matrix, ""
    sensor_of = [label.split(CHANNEL_SEPARATOR, 1)[0] for label in matrix.index]
    totals = np.nansum(np.abs(matrix.to_numpy()), axis=1)
    per_sensor: dict[str, float] = {}
    widths: dict[str, int] = {}
    for sensor, total in zip(sensor_of, totals, strict=True):
        per_sensor[sensor] = per_sensor.get(sensor, 0.0) + float(total)
        widths[sensor] = widths.get(sensor, 0) + 1
    chosen: set[str] = set()
    used = 0
    for sensor in sorted(per_sensor, key=lambda s: -per_sensor[s]):  # stable: ties by order
        if used + widths[sensor] <= limit:
            chosen.add(sensor)
            used += widths[sensor]
    if chosen:
        keep = np.flatnonzero([s in chosen for s in sensor_of])
        what = f"{len(chosen)} of {len(per_sensor)} sensors"
    else:
        keep = np.sort(np.argsort(-totals, kind="stable")[:limit])
        what = f"{limit} of {n} channels"
    note = f"{what} shown: largest total |importance|; the CSV has every channel pair"
    return matrix.iloc[keep, keep], note


@hookimpl(trylast=True)
def register_renderers(register):
    register(ChannelHeatmap())
