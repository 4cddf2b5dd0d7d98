"""Built-in ``bars`` renderer: the top-k features (and every sensor pair and sensor) as bars.

Each bar is a mean importance; its error bar is the confidence interval of that mean over
the repeats. Bars whose interval includes zero are drawn pale, so "indistinguishable from
no effect" is visible at a glance, and bars whose interval lies below zero are orange.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from leap.data.layout import CHANNEL_SEPARATOR, PAIR_SEPARATOR
from leap.errors import LeapError
from leap.figures import (
    FIGURE_SUFFIXES,
    new_figure,
    plain_text,
    save_figure,
    shorten,
)
from leap.hookspecs import hookimpl

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from leap.data.result import ImportanceResult

SOLID = "#31688e"  # viridis blue: interval above zero
PALE = "#c6d4e1"  # interval includes zero
BELOW = "#e08214"  # orange (PuOr end): interval below zero, permuting improved the score
#: Rows drawn per panel at most, whatever ``k`` asks for (the panel title says "Top 60 of N").
MAX_ROWS = 60
LEVEL_TITLES = {
    "feature": "channel pairs",  # leap.data.result.FEATURE_LEVEL
    "sensor_pair": "sensor pairs (each permuted as a group)",
    "sensor": "sensors (every feature of the sensor permuted together)",
}


def pretty_name(name: str) -> str:
    """A readable label: ``Left_Ankle.x_acc|Sacrum.y_gyro`` → ``Left Ankle x acc ↔ Sacrum y gyro``.

    Sensor pairs read ``Left Ankle ↔ Sacrum`` (``within Sacrum`` for a sensor with itself).
    """
    parts = name.split(PAIR_SEPARATOR)
    if len(parts) == 2 and parts[0] == parts[1] and CHANNEL_SEPARATOR not in parts[0]:
        return f"within {parts[0].replace('_', ' ')}"
    return " ↔ ".join(p.replace(CHANNEL_SEPARATOR, " ").replace("_", " ") for p in parts)


def levels_of(result: ImportanceResult, level: str | None) -> list[ImportanceResult]:
    """The result itself and its grouped results (``level=None``), or the one named."""
    everything = {result.level: result, **result.groups}
    if level is None:
        return list(everything.values())
    if level not in everything:
        raise LeapError(f"this result has no {level!r} level; available: {', '.join(everything)}")
    return [everything[level]]


def top_rows(result: ImportanceResult, k: int) -> np.ndarray:
    """Row indices of the ``k`` largest mean importances, best first (ties by name).

    Unmeasurable rows (constant over the data) are left out: they were not measured.
    """
    means = result.importances_mean
    measured = np.flatnonzero(result.is_measurable)
    order = sorted(measured, key=lambda i: (-means[i], result.feature_names[i]))
    return np.asarray(order[:k], dtype=int)


def level_title(result: ImportanceResult, shown: int) -> str:
    """Panel title: what the rows are, and how many of them are shown."""
    what = LEVEL_TITLES.get(result.level, f"groups ({result.level})")
    total = len(result.feature_names)
    return f"Top {shown} of {total} {what}" if shown < total else f"All {total} {what}"


class TopBars:
    """Horizontal bars of the top-k rows, with confidence-interval error bars.

    With ``level=None`` it draws one panel per level the result holds (features, then
    each grouping: sensor pairs, sensors, ...).
    """

    name = "bars"
    suffixes = FIGURE_SUFFIXES
    options = ("k", "level")

    def render(
        self,
        result: ImportanceResult,
        path: Path | None,
        *,
        title: str = "",
        k: int = 20,
        level: str | None = None,
    ) -> Figure:
        """Draw the bars; save to ``path`` (PNG, SVG or PDF) when given."""
        if k < 1:
            raise LeapError(f"k must be at least 1, got {k}")
        panels = [(r, top_rows(r, min(k, MAX_ROWS))) for r in levels_of(result, level)]
        fig = panel_figure(panels, draw_bars, padding=2.2, row_inches=0.27)
        fig.suptitle(title or "Permutation importance", fontsize="large", fontweight="bold")
        plain_text(fig)
        if path is not None:
            save_figure(fig, path)
        return fig


def panel_figure(
    panels: list[tuple[ImportanceResult, np.ndarray]],
    draw: Callable[[Axes, ImportanceResult, np.ndarray], None],
    *,
    padding: float,
    row_inches: float,
) -> Figure:
    """One panel per level, stacked, each as tall as its rows; wide enough for the labels."""
    heights = [len(rows) + padding for _, rows in panels]
    longest = max(len(row_label(r.feature_names[i])) for r, rows in panels for i in rows)
    width = min(max(5.5 + 0.085 * longest, 9.0), 14.0)
    fig = new_figure(width, 0.9 + row_inches * sum(heights))
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (res, rows) in zip(axes, panels, strict=True):
        draw(ax, res, rows)
    return fig


def row_label(name: str) -> str:
    """The label of one row in a panel: :func:`pretty_name`, cut to a readable length."""
    return shorten(pretty_name(name))


def style_rows_axis(ax: Axes, result: ImportanceResult, rows: np.ndarray) -> None:
    """Shared look of a row panel: zero line, row labels (best on top), grid, title."""
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(
        np.arange(len(rows)), [row_label(result.feature_names[i]) for i in rows], fontsize="small"
    )
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(level_title(result, len(rows)), loc="left", fontsize="medium")


def draw_bars(ax: Axes, result: ImportanceResult, rows: np.ndarray) -> None:
    """One panel: bars for ``rows`` (best on top), CI error bars, a zero line, a legend."""
    from matplotlib.patches import Patch

    means = result.importances_mean[rows]
    low, high = (c[rows] for c in result.confidence_interval())
    includes = result.ci_includes_zero[rows]
    y = np.arange(len(rows))
    repeated = result.n_repeats > 1  # one value per row (e.g. mean |SHAP|): no interval
    colors = [
        PALE if inc and repeated else SOLID if m > 0 or not repeated else BELOW
        for inc, m in zip(includes, means, strict=True)
    ]
    ax.barh(y, means, color=colors, edgecolor=SOLID, linewidth=0.6, height=0.7)
    defined = ~(np.isnan(low) | np.isnan(high))
    if defined.any():
        err = np.vstack([means - low, high - means])[:, defined]
        ax.errorbar(
            means[defined], y[defined], xerr=err, fmt="none", ecolor="black", capsize=2.5, lw=1
        )
    style_rows_axis(ax, result, rows)
    level = f"{result.ci_level:.0%}"
    if not repeated:
        ax.set_xlabel(result.quantity[:1].upper() + result.quantity[1:], fontsize="small")
        return
    ax.set_xlabel(
        f"Mean {result.quantity}; error bars: {level} CI over {result.n_repeats} repeats",
        fontsize="small",
    )
    handles = [
        Patch(facecolor=SOLID, edgecolor=SOLID, label=f"{level} CI above 0"),
        Patch(facecolor=PALE, edgecolor=SOLID, label=f"{level} CI includes 0"),
    ]
    if any(c == BELOW for c in colors):
        handles.append(Patch(facecolor=BELOW, edgecolor=SOLID, label=f"{level} CI below 0"))
    ax.legend(
        handles=handles,
        loc="best",
        fontsize="x-small",
        framealpha=0.9,
    )
    if result.q_value is not None:
        show_discoveries(ax, result, rows)


def show_discoveries(ax: Axes, result: ImportanceResult, rows: np.ndarray) -> None:
    """Colour a panel's bars by discovery (q-value ≤ 0.05), and say so in legend and label."""
    from matplotlib.patches import Patch

    from leap.data.result import DISCOVERY_Q

    found = result.discoveries(DISCOVERY_Q)[rows]
    bars = ax.containers[0] if ax.containers else []
    for bar, discovery in zip(bars, found, strict=False):
        bar.set_facecolor(SOLID if discovery else PALE)
    test = result.params.get("inference", {})
    unit = f"{test.get('n_units', '')} held-out {test.get('unit', 'row')}s".strip()
    ax.set_xlabel(
        f"Mean {result.quantity}; error bars: {result.ci_level:.0%} CI over {unit}",
        fontsize="small",
    )
    handles = [
        Patch(facecolor=SOLID, edgecolor=SOLID, label=f"discovery (q ≤ {DISCOVERY_Q:g})"),
        Patch(facecolor=PALE, edgecolor=SOLID, label="not a discovery"),
    ]
    ax.legend(handles=handles, loc="best", fontsize="x-small", framealpha=0.9)


@hookimpl(trylast=True)
def register_renderers(register):
    register(TopBars())
