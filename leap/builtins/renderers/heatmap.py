"""Built-in ``heatmap`` renderer: the sensor × sensor importance matrix.

Figures are built with matplotlib's object API (no pyplot, no global state), so they work
on a headless machine and never block.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from leap.data.aggregates import AGGREGATIONS
from leap.data.formatting import format_number
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
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

    from leap.data.result import ImportanceResult

COLORMAP = "viridis"  # perceptually uniform and colour-blind safe
#: For values of both signs, centred on zero; ColorBrewer lists RdBu as colour-blind safe.
DIVERGING_COLORMAP = "RdBu_r"
MISSING_COLOR = "#9e9e9e"  # cells without a value: a mid grey no colour map above uses
#: Larger layouts show the sensors with the largest total |importance| (the CSV has all).
MAX_HEATMAP_SENSORS = 40
#: Cells narrower than this (inches) carry no number: it would not fit.
MIN_ANNOTATED_CELL = 0.9


class SensorPairHeatmap:
    """Sensor × sensor heatmap; each cell aggregates the channel pairs of two sensors.

    The default aggregation (``sum_positive``) is the original LEAP heatmap: the sum of the
    positive mean importances of all channel pairs between two sensors. ``grouped`` draws
    the jointly permuted sensor-pair importances instead. Non-negative values use the
    sequential ``viridis`` map from zero; values of both signs (and ``signed``) use a
    diverging map centred on zero, so a negative cell never looks like a small positive one.
    """

    name = "heatmap"
    suffixes = FIGURE_SUFFIXES
    options = ("aggregate",)

    def applies(self, result: ImportanceResult) -> bool:
        """Results with sensor pairs (channel pairs or grouped sensor pairs) have a matrix."""
        return any(len(s) == 2 for s in result.row_sensors) or "sensor_pair" in result.groups

    def render(
        self,
        result: ImportanceResult,
        path: Path | None,
        *,
        title: str,
        aggregate: str = "sum_positive",
    ) -> Figure:
        """Draw the matrix (see :meth:`ImportanceResult.sensor_matrix` for ``aggregate``)."""
        matrix = result.sensor_matrix(aggregate)
        matrix, note = largest_sensors(matrix, MAX_HEATMAP_SENSORS)
        labels = [shorten(s.replace("_", " "), 30) for s in matrix.index]
        values = matrix.to_numpy()
        n = len(labels)
        cell = min(1.25, 24.0 / n)  # 1.25 in up to 19 sensors, then a 24-inch square
        fig = new_figure(2.6 + cell * n, 1.6 + 0.88 * cell * n)
        ax = fig.add_subplot()
        cmap, norm = color_scale(values, diverging=aggregate == "signed")
        image = draw_matrix(ax, values, cmap, norm)
        ax.set_xticks(range(n), labels, rotation=35, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("Sensor" + note)
        ax.set_ylabel("Sensor")
        ax.set_title(title or AGGREGATIONS[aggregate].title, fontsize="large", fontweight="bold")
        if cell >= MIN_ANNOTATED_CELL:
            annotate_cells(ax, values, image.cmap, image.norm)
        measured = result.measurable_matrix(aggregate).reindex(
            index=matrix.index, columns=matrix.columns, fill_value=True
        )
        hatch_unmeasurable(ax, ~measured.to_numpy(dtype=bool), label=cell >= MIN_ANNOTATED_CELL)
        bar = fig.colorbar(image, ax=ax, shrink=0.85)
        bar.set_label(value_label(AGGREGATIONS[aggregate].label, result))
        plain_text(fig)
        if path is not None:
            save_figure(fig, path)
        return fig


def largest_sensors(matrix: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, str]:
    """``matrix`` cut to the ``limit`` sensors with the largest total |value|, and a note.

    The sensors keep their order; the note (empty when nothing is cut) says how many are
    shown and that the CSV holds them all. Rows and columns are sensors (a square frame).
    """
    n = len(matrix.index)
    if n <= limit:
        return matrix, ""
    totals = np.nansum(np.abs(matrix.to_numpy()), axis=1)
    # The largest totals; ties go to the earlier sensor, so the cut is deterministic.
    keep = np.sort(np.argsort(-totals, kind="stable")[:limit])
    note = f" ({limit} of {n} shown: largest total |importance|; the CSV has every sensor)"
    return matrix.iloc[keep, keep], note


def color_scale(values: np.ndarray, *, diverging: bool = False) -> tuple[Colormap, Normalize]:
    """Colour map and normalisation for ``values``.

    Sequential (``viridis``, from 0) when every finite value is ≥ 0; otherwise, or when
    ``diverging`` is asked for, a diverging map with limits symmetric about zero.
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    if diverging or low < 0:
        limit = max(abs(low), abs(high)) or 1.0
        cmap, norm = colormaps[DIVERGING_COLORMAP], Normalize(-limit, limit)
    else:
        cmap, norm = colormaps[COLORMAP], Normalize(0.0, high if high > 0 else 1.0)
    return cmap.with_extremes(bad=MISSING_COLOR), norm


def value_label(what: str, result: ImportanceResult) -> str:
    """Colour-bar or axis label: what is shown, and what one value measures (its method's
    words, :attr:`ImportanceResult.quantity`: the drop in the score when permuted, unless the
    method declares otherwise)."""
    return f"{what}\n({result.quantity}; {result.method})"


def annotate_cells(ax, values: np.ndarray, cmap: Colormap, norm) -> None:
    """Write each finite value in its cell, dark on light colours and light on dark ones."""
    finite = values[np.isfinite(values)]
    scale = np.max(np.abs(finite)) if finite.size else 0.0
    spec = ".3f" if scale >= 0.01 or scale == 0 else ".2e"
    for (i, j), value in np.ndenumerate(values):
        if not np.isfinite(value):
            continue
        r, g, b, _ = cmap(norm(value))
        luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
        ax.text(
            j,
            i,
            format_number(value, spec),
            ha="center",
            va="center",
            fontsize="medium",
            color="black" if luminance > 0.5 else "white",
        )


#: Legend and cell text of cells that cannot be measured (constant over the data).
UNMEASURABLE_LABEL = "not measurable (constant over the data)"


def hatch_unmeasurable(ax, mask: np.ndarray, *, label: bool = True) -> None:
    """Hatch the cells where ``mask`` is true, write "n/a" in them, and add a legend entry.

    Those cells' features are constant over the data: disturbing them changes nothing,
    so they are not "unimportant" but unmeasured, and must not read as a 0.
    """
    from matplotlib.patches import Patch, Rectangle

    cells = np.argwhere(mask)
    if not len(cells):
        return
    for i, j in cells:
        ax.add_patch(
            Rectangle(
                (j - 0.5, i - 0.5), 1.0, 1.0, facecolor=MISSING_COLOR, edgecolor="#424242",
                hatch="///", linewidth=0.0,
            )
        )  # fmt: skip
        if label:
            ax.text(j, i, "n/a", ha="center", va="center", fontsize="small", color="black")
    handle = Patch(facecolor=MISSING_COLOR, edgecolor="#424242", hatch="///")
    ax.legend(
        [handle], [UNMEASURABLE_LABEL], loc="upper left", bbox_to_anchor=(0.0, -0.18),
        frameon=False, fontsize="small",
    )  # fmt: skip


@hookimpl(trylast=True)
def register_renderers(register):
    register(SensorPairHeatmap())
