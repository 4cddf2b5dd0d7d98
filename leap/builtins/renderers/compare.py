"""``leap compare A.csv B.csv``: two importance results side by side (two models, two cohorts).

Matches rows by feature (or group) name, then draws

- the difference heatmap: sensor × sensor matrices of A and B and their difference B − A
  (same aggregation for both), and
- the rank agreement: the rank of every feature in A against its rank in B, with Spearman's
  ρ and Kendall's τ, and how the top-k of A moved in B.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leap.builtins.renderers.bars import row_label
from leap.builtins.renderers.heatmap import (
    MIN_ANNOTATED_CELL,
    annotate_cells,
    color_scale,
    largest_sensors,
)
from leap.data.aggregates import AGGREGATIONS
from leap.data.files import atomic_path
from leap.data.formatting import format_number
from leap.errors import LeapError
from leap.figures import (
    draw_matrix,
    new_figure,
    plain_text,
    save_figure,
    shorten,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from leap.data.result import ImportanceResult

#: The difference heatmap shows at most this many sensors (largest total |importance| in
#: A and B together); the comparison CSV has every row.
MAX_COMPARE_SENSORS = 30
#: Rows followed in the rank chart at most, whatever ``k`` asks for.
MAX_MOVES = 40
#: Labels of A and B are cut to this many characters in figures.
LABEL_CHARS = 40


@dataclass
class Comparison:
    """Two results matched by row name.

    Attributes
    ----------
    a, b : ImportanceResult
    label_a, label_b : str
        Names used in figures and tables.
    frame : DataFrame
        One row per shared name: ``feature``, ``mean_a``, ``mean_b``, ``difference``
        (b − a), ``rank_a``, ``rank_b`` (1 = most important; ranks among shared rows).
    spearman, spearman_p, kendall, kendall_p : float
        Rank correlations of the mean importances over the shared rows, and p-values.
    only_a, only_b : list of str
        Names present in one result only (left out of the comparison).
    """

    a: ImportanceResult
    b: ImportanceResult
    label_a: str
    label_b: str
    frame: pd.DataFrame
    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    only_a: list[str]
    only_b: list[str]


def compare_results(
    a: ImportanceResult, b: ImportanceResult, label_a: str = "A", label_b: str = "B"
) -> Comparison:
    """Match ``a`` and ``b`` by row name and measure how well their rankings agree."""
    import pandas as pd
    from scipy import stats

    for result, label in ((a, label_a), (b, label_b)):
        seen: set[str] = set()
        repeated = []  # every repeat occurrence, in order
        for n in result.feature_names:
            if n in seen:
                repeated.append(n)
            seen.add(n)
        if repeated:
            raise LeapError(
                f"{shorten(label, LABEL_CHARS)} names {len(repeated)} row(s) more than once "
                f"(first: {shorten(repr(repeated[0]), LABEL_CHARS)}); rows are matched by "
                f"name, so every name must be unique"
            )
    in_b = set(b.feature_names)
    shared = [n for n in a.feature_names if n in in_b]
    if len(shared) < 2:
        raise LeapError(
            f"{label_a} and {label_b} share {len(shared)} feature name(s); a comparison needs "
            f"at least 2 (were they computed on the same layout and grouping?)"
        )
    mean_a = pd.Series(a.importances_mean, index=a.feature_names)[shared].to_numpy()
    mean_b = pd.Series(b.importances_mean, index=b.feature_names)[shared].to_numpy()
    frame = pd.DataFrame(
        {
            "feature": shared,
            "mean_a": mean_a,
            "mean_b": mean_b,
            "difference": mean_b - mean_a,
            "rank_a": pd.Series(mean_a).rank(ascending=False, method="min").to_numpy(int),
            "rank_b": pd.Series(mean_b).rank(ascending=False, method="min").to_numpy(int),
        }
    )
    with warnings.catch_warnings():
        # Constant input (e.g. an all-zero result) makes the correlation undefined: NaN.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = stats.spearmanr(mean_a, mean_b)
        tau = stats.kendalltau(mean_a, mean_b)
    in_a = set(a.feature_names)
    return Comparison(
        a,
        b,
        label_a,
        label_b,
        frame,
        float(rho.statistic),
        float(rho.pvalue),
        float(tau.statistic),
        float(tau.pvalue),
        [n for n in a.feature_names if n not in in_b],
        [n for n in b.feature_names if n not in in_a],
    )


def render_difference(
    comparison: Comparison,
    path: str | Path | None = None,
    *,
    aggregate: str = "sum_positive",
    title: str = "",
) -> Figure:
    """Sensor × sensor heatmaps of A and B (shared scale) and of B − A (diverging)."""
    ma = comparison.a.sensor_matrix(aggregate)
    mb = comparison.b.sensor_matrix(aggregate)
    sensors = [s for s in ma.index if s in mb.index]
    if not sensors:
        raise LeapError("the two results have no sensor in common")
    total = ma.loc[sensors, sensors].abs() + mb.loc[sensors, sensors].abs()
    kept, note = largest_sensors(total, MAX_COMPARE_SENSORS)
    sensors = list(kept.index)
    va = ma.loc[sensors, sensors].to_numpy()
    vb = mb.loc[sensors, sensors].to_numpy()
    diff = vb - va
    labels = [shorten(s.replace("_", " "), 30) for s in sensors]
    label_a, label_b = figure_labels(comparison)
    n = len(sensors)
    cell = min(0.95, 11.0 / n)  # three panels side by side, at most about 40 inches wide
    fig = new_figure(3 * (1.9 + cell * n), 1.9 + cell * n)
    axes = fig.subplots(1, 3)
    both = np.concatenate([va.ravel(), vb.ravel()])
    cmap, norm = color_scale(both)
    for ax, values, name in ((axes[0], va, label_a), (axes[1], vb, label_b)):
        image = draw_matrix(ax, values, cmap, norm)
        _sensor_axes(ax, labels, name)
        if cell >= MIN_ANNOTATED_CELL:
            annotate_cells(ax, values, image.cmap, image.norm)
    bar = fig.colorbar(image, ax=axes[:2], shrink=0.8, location="bottom", aspect=40)
    bar.set_label(f"{AGGREGATIONS[aggregate].label} ({comparison.a.scoring} drop)")
    dcmap, dnorm = color_scale(diff, diverging=True)
    image = draw_matrix(axes[2], diff, dcmap, dnorm)
    _sensor_axes(axes[2], labels, f"{label_b} − {label_a}")
    if cell >= MIN_ANNOTATED_CELL:
        annotate_cells(axes[2], diff, image.cmap, image.norm)
    bar = fig.colorbar(image, ax=axes[2], shrink=0.8, location="bottom", aspect=20)
    bar.set_label(f"Difference: larger in {label_b} (red) or {label_a} (blue)")
    fig.suptitle(
        title or f"Sensor-pair importance: {label_b} vs {label_a}{note}",
        fontsize="large",
        fontweight="bold",
    )
    plain_text(fig)
    if path is not None:
        save_figure(fig, Path(path))
    return fig


def _sensor_axes(ax: Any, labels: list[str], title: str) -> None:
    n = len(labels)
    ax.set_xticks(range(n), labels, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels)
    ax.set_title(title, fontweight="bold")


def render_rank_agreement(
    comparison: Comparison, path: str | Path | None = None, *, k: int = 15, title: str = ""
) -> Figure:
    """Rank in A against rank in B for every shared row, and where A's top-k went in B."""
    frame = comparison.frame
    n = len(frame)
    k = max(1, min(k, n, MAX_MOVES))
    label_a, label_b = figure_labels(comparison)
    fig = new_figure(14.5, max(6.8, 1.6 + 0.26 * k))
    left, right = fig.subplots(1, 2, width_ratios=[1.0, 1.25])
    left.scatter(frame["rank_a"], frame["rank_b"], s=14, color="#31688e", alpha=0.6, lw=0)
    left.plot([1, n], [1, n], color="#888888", lw=1, ls="--", label="same rank")
    left.set_xlabel(f"Rank in {label_a} (1 = most important)")
    left.set_ylabel(f"Rank in {label_b}")
    left.set_xlim(0, n + 1)
    left.set_ylim(0, n + 1)
    left.invert_yaxis()
    left.set_aspect("equal")
    left.legend(loc="lower right", fontsize="small")
    rho, tau = format_statistic(comparison.spearman), format_statistic(comparison.kendall)
    left.set_title(
        f"Spearman ρ = {rho} (p = {format_p(comparison.spearman_p)})\n"
        f"Kendall τ = {tau} (p = {format_p(comparison.kendall_p)}); {n} shared rows",
        fontsize="medium",
    )
    _draw_top_moves(right, comparison, k)
    fig.suptitle(
        title or f"Rank agreement: {label_a} vs {label_b}",
        fontsize="large",
        fontweight="bold",
    )
    plain_text(fig)
    if path is not None:
        save_figure(fig, Path(path))
    return fig


def _draw_top_moves(ax: Any, comparison: Comparison, k: int) -> None:
    """A bump chart: A's top-k in A's order on the left, in B's order on the right.

    Slots are ordinal (ties broken by name), so tied ranks never overlap; the labels carry
    the actual ranks. Lines of rows that moved far are highlighted.
    """
    label_a, label_b = figure_labels(comparison)
    top = comparison.frame.sort_values(["rank_a", "feature"]).head(k)
    left_slot = {idx: n + 1 for n, idx in enumerate(top.index)}
    right_order = top.assign(_name=top["feature"]).sort_values(["rank_b", "_name"]).index
    right_slot = {idx: n + 1 for n, idx in enumerate(right_order)}
    for idx, row in top.iterrows():
        moved = abs(int(row["rank_b"]) - int(row["rank_a"]))
        color = "#31688e" if moved <= max(2, k // 5) else "#c2185b"
        ax.plot([0, 1], [left_slot[idx], right_slot[idx]], color=color, lw=1.4, marker="o", ms=4)
        ax.text(
            -0.04,
            left_slot[idx],
            f"{row_label(row['feature'])}  #{int(row['rank_a'])}",
            ha="right",
            va="center",
            fontsize="small",
        )
        ax.text(
            1.04,
            right_slot[idx],
            f"#{int(row['rank_b'])}",
            ha="left",
            va="center",
            color=color,
            fontsize="small",
        )
    ax.set_ylim(len(top) + 0.6, 0.4)
    ax.set_xlim(-0.05, 1.15)
    ax.set_xticks([0, 1], [f"order in {label_a}", f"order in {label_b}"])
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(
        f"Top {len(top)} of {label_a} and their rank in {label_b}\n"
        f"(highlighted: moved more than {max(2, k // 5)} places)",
        fontsize="medium",
    )


def figure_labels(comparison: Comparison) -> tuple[str, str]:
    """The names of A and B as figures show them: one line, at most LABEL_CHARS long."""
    return shorten(comparison.label_a, LABEL_CHARS), shorten(comparison.label_b, LABEL_CHARS)


def format_statistic(value: float) -> str:
    """A correlation to three decimals, or ``undefined``."""
    return "undefined" if np.isnan(value) else format_number(value, ".3f")


def format_p(value: float) -> str:
    """A p-value to three decimals (``< 0.001`` below), or a dash when undefined."""
    if np.isnan(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def distinct_labels(path_a: Path, path_b: Path) -> tuple[str, str]:
    """Short names for two files that tell them apart: the stems, with folders if needed.

    ``runs/a.csv`` and ``runs/b.csv`` give ``a`` and ``b``; ``model_a/importance.csv`` and
    ``model_b/importance.csv`` give ``model_a/importance`` and ``model_b/importance`` (as
    many parent folders as it takes); the same file twice gives the stem twice.
    """
    if path_a.stem != path_b.stem:
        return path_a.stem, path_b.stem
    if path_a.name != path_b.name:
        return path_a.name, path_b.name
    parents_a = path_a.absolute().parent.parts[::-1]
    parents_b = path_b.absolute().parent.parts[::-1]
    for depth in range(1, max(len(parents_a), len(parents_b)) + 1):
        folders_a, folders_b = parents_a[:depth][::-1], parents_b[:depth][::-1]
        if folders_a != folders_b:
            return "/".join((*folders_a, path_a.stem)), "/".join((*folders_b, path_b.stem))
    return path_a.stem, path_b.stem


def write_comparison_csv(comparison: Comparison, path: str | Path) -> Path:
    """Write the matched table (with the labels as column suffixes) atomically."""
    path = Path(path)
    frame = comparison.frame.rename(
        columns={
            "mean_a": f"mean_{comparison.label_a}",
            "mean_b": f"mean_{comparison.label_b}",
            "rank_a": f"rank_{comparison.label_a}",
            "rank_b": f"rank_{comparison.label_b}",
        }
    )
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.17g")
    return path
