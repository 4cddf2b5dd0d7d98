"""Built-in ``participants`` renderer: how the importances vary between participants.

For the top-k rows of each level, one dot per participant (the importance computed on that
participant's rows alone), the mean over participants and its confidence interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from leap.builtins.renderers.bars import (
    MAX_ROWS,
    levels_of,
    panel_figure,
    style_rows_axis,
    top_rows,
)
from leap.errors import LeapError
from leap.figures import FIGURE_SUFFIXES, plain_text, save_figure
from leap.hookspecs import hookimpl

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from leap.data.result import ImportanceResult
    from leap.workflows.participants import ParticipantSpread

DOT = "#5b5b5b"
MEAN = "#c2185b"  # magenta: apart from the greys, readable for the common colour-vision types


class ParticipantSpreadPlot:
    """Per-participant importances of the top-k rows, with mean and CI over participants."""

    name = "participants"
    suffixes = FIGURE_SUFFIXES
    options = ("k", "level")

    def applies(self, result: ImportanceResult) -> bool:
        """Only per-participant runs have a spread to draw."""
        return any(r.spread is not None for r in (result, *result.groups.values()))

    def render(
        self,
        result: ImportanceResult,
        path: Path | None,
        *,
        title: str = "",
        k: int = 20,
        level: str | None = None,
    ) -> Figure:
        """Draw the spread; save to ``path`` (PNG, SVG or PDF) when given."""
        if k < 1:
            raise LeapError(f"k must be at least 1, got {k}")
        rows = min(k, MAX_ROWS)
        panels = [(r, top_rows(r, rows)) for r in levels_of(result, level) if r.spread is not None]
        if not panels:
            raise LeapError(
                "this result has no per-participant importances; run the analysis with "
                "per_participant=True (CLI: --per-participant)"
            )
        fig = panel_figure(panels, draw_spread, padding=2.4, row_inches=0.29)
        n = panels[0][0].spread.n_participants
        fig.suptitle(
            title or f"Importance per participant ({n} participants)",
            fontsize="large",
            fontweight="bold",
        )
        plain_text(fig)
        if path is not None:
            save_figure(fig, path)
        return fig


def draw_spread(ax: Axes, result: ImportanceResult, rows: np.ndarray) -> None:
    """One panel: participant dots, mean over participants and its CI, for ``rows``."""
    from matplotlib.lines import Line2D

    spread: ParticipantSpread = result.spread
    values = spread.values[rows]
    low, high = (c[rows] for c in spread.confidence_interval())
    mean = spread.mean[rows]
    y = np.arange(len(rows))
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, size=values.shape)
    ax.scatter(
        values.ravel(),
        (y[:, None] + jitter).ravel(),
        s=12,
        color=DOT,
        alpha=0.55,
        linewidths=0,
        zorder=2,
    )
    defined = ~(np.isnan(low) | np.isnan(high))
    ax.hlines(y[defined], low[defined], high[defined], color=MEAN, linewidth=2.2, zorder=3)
    ax.scatter(mean, y, marker="D", s=28, color=MEAN, edgecolors="white", zorder=4)
    style_rows_axis(ax, result, rows)
    ax.set_xlabel(
        f"Drop in {result.scoring} when permuted within one participant's rows",
        fontsize="small",
    )
    level = f"{spread.ci_level:.0%}"
    ax.legend(
        handles=[
            Line2D([], [], marker="o", ls="", color=DOT, alpha=0.55, label="one participant"),
            Line2D(
                [],
                [],
                marker="D",
                color=MEAN,
                lw=2.2,
                label=f"mean over participants, {level} CI",
            ),
        ],
        loc="best",
        fontsize="x-small",
        framealpha=0.9,
    )


@hookimpl(trylast=True)
def register_renderers(register):
    register(ParticipantSpreadPlot())
