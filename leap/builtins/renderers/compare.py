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
from typing import Any

import click
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from leap.builtins.renderers.bars import pretty_name
from leap.builtins.renderers.heatmap import (
    FIGURE_SUFFIXES,
    annotate_cells,
    color_scale,
    save_figure,
)
from leap.data.files import atomic_path
from leap.data.formatting import format_number
from leap.data.result import ImportanceResult
from leap.errors import LeapError
from leap.hookspecs import hookimpl


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
    va = ma.loc[sensors, sensors].to_numpy()
    vb = mb.loc[sensors, sensors].to_numpy()
    diff = vb - va
    labels = [s.replace("_", " ") for s in sensors]
    n = len(sensors)
    fig = Figure(figsize=(3 * (1.9 + 0.95 * n), 1.9 + 0.95 * n), layout="constrained")
    axes = fig.subplots(1, 3)
    both = np.concatenate([va.ravel(), vb.ravel()])
    cmap, norm = color_scale(both)
    for ax, values, name in (
        (axes[0], va, comparison.label_a),
        (axes[1], vb, comparison.label_b),
    ):
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm)
        _sensor_axes(ax, labels, name)
        annotate_cells(ax, values, image.cmap, image.norm)
    bar = fig.colorbar(image, ax=axes[:2], shrink=0.8, location="bottom", aspect=40)
    bar.set_label(f"{_AGGREGATES.get(aggregate, aggregate)} ({comparison.a.scoring} drop)")
    dcmap, dnorm = color_scale(diff, diverging=True)
    image = axes[2].imshow(np.ma.masked_invalid(diff), cmap=dcmap, norm=dnorm)
    _sensor_axes(axes[2], labels, f"{comparison.label_b} − {comparison.label_a}")
    annotate_cells(axes[2], diff, image.cmap, image.norm)
    bar = fig.colorbar(image, ax=axes[2], shrink=0.8, location="bottom", aspect=20)
    bar.set_label(
        f"Difference: larger in {comparison.label_b} (red) or {comparison.label_a} (blue)"
    )
    fig.suptitle(
        title or f"Sensor-pair importance: {comparison.label_b} vs {comparison.label_a}",
        fontsize="large",
        fontweight="bold",
    )
    if path is not None:
        save_figure(fig, Path(path))
    return fig


_AGGREGATES = {
    "sum_positive": "Sum of positive channel-pair importances",
    "sum": "Sum of channel-pair importances",
    "signed": "Signed sum of channel-pair importances",
    "mean": "Mean channel-pair importance",
    "max": "Largest channel-pair importance",
    "grouped": "Sensor pair permuted as a group",
}


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
    k = max(1, min(k, n))
    fig = Figure(figsize=(14.5, 6.8), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.0, 1.25])
    left.scatter(frame["rank_a"], frame["rank_b"], s=14, color="#31688e", alpha=0.6, lw=0)
    left.plot([1, n], [1, n], color="#888888", lw=1, ls="--", label="same rank")
    left.set_xlabel(f"Rank in {comparison.label_a} (1 = most important)")
    left.set_ylabel(f"Rank in {comparison.label_b}")
    left.set_xlim(0, n + 1)
    left.set_ylim(0, n + 1)
    left.invert_yaxis()
    left.set_aspect("equal")
    left.legend(loc="lower right", fontsize="small")
    left.set_title(
        f"Spearman ρ = {_fmt(comparison.spearman)} (p = {_fmt_p(comparison.spearman_p)})\n"
        f"Kendall τ = {_fmt(comparison.kendall)} (p = {_fmt_p(comparison.kendall_p)}); "
        f"{n} shared rows",
        fontsize="medium",
    )
    _draw_top_moves(right, comparison, k)
    fig.suptitle(
        title or f"Rank agreement: {comparison.label_a} vs {comparison.label_b}",
        fontsize="large",
        fontweight="bold",
    )
    if path is not None:
        save_figure(fig, Path(path))
    return fig


def _draw_top_moves(ax: Any, comparison: Comparison, k: int) -> None:
    """A bump chart: A's top-k in A's order on the left, in B's order on the right.

    Slots are ordinal (ties broken by name), so tied ranks never overlap; the labels carry
    the actual ranks. Lines of rows that moved far are highlighted.
    """
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
            f"{pretty_name(row['feature'])}  #{int(row['rank_a'])}",
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
    ax.set_xticks([0, 1], [f"order in {comparison.label_a}", f"order in {comparison.label_b}"])
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(
        f"Top {len(top)} of {comparison.label_a} and their rank in {comparison.label_b}\n"
        f"(highlighted: moved more than {max(2, k // 5)} places)",
        fontsize="medium",
    )


def _fmt(value: float) -> str:
    return "undefined" if np.isnan(value) else format_number(value, ".3f")


def _fmt_p(value: float) -> str:
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


@click.command("compare")
@click.argument("csv_a", type=click.Path(path_type=Path))
@click.argument("csv_b", type=click.Path(path_type=Path))
@click.option("--label-a", help="Name of A in figures.  [default: A's file stem]")
@click.option("--label-b", help="Name of B in figures.  [default: B's file stem]")
@click.option(
    "-o",
    "--out",
    "prefix",
    type=click.Path(path_type=Path),
    default=Path("comparison"),
    show_default=True,
    help="Output prefix: writes PREFIX_difference.FMT, PREFIX_ranks.FMT and PREFIX.csv.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([s.lstrip(".") for s in FIGURE_SUFFIXES]),
    default="png",
    show_default=True,
)
@click.option(
    "--aggregate",
    type=click.Choice(list(_AGGREGATES)),
    default="sum_positive",
    show_default=True,
    help="How the channel pairs of two sensors are combined in the difference heatmap.",
)
@click.option("--top", "k", default=15, show_default=True, help="Rows followed in the rank chart.")
def compare_command(
    csv_a: Path,
    csv_b: Path,
    label_a: str | None,
    label_b: str | None,
    prefix: Path,
    fmt: str,
    aggregate: str,
    k: int,
) -> None:
    """Compare two importance CSVs (two models, or two cohorts): difference and rank agreement."""
    a, b = ImportanceResult.from_csv(csv_a), ImportanceResult.from_csv(csv_b)
    default_a, default_b = distinct_labels(csv_a, csv_b)
    label_a = label_a or default_a
    label_b = label_b or default_b
    if label_a == label_b:
        label_a, label_b = f"{label_a} (A)", f"{label_b} (B)"
    comparison = compare_results(a, b, label_a, label_b)
    csv_path = write_comparison_csv(comparison, prefix.with_name(f"{prefix.name}.csv"))
    ranks_path = prefix.with_name(f"{prefix.name}_ranks.{fmt}")
    render_rank_agreement(comparison, ranks_path, k=k)
    written = [csv_path, ranks_path]
    diff_path = prefix.with_name(f"{prefix.name}_difference.{fmt}")
    try:
        render_difference(comparison, diff_path, aggregate=aggregate)
        written.append(diff_path)
    except LeapError as exc:  # e.g. results without sensor columns: ranks still compare
        click.echo(f"leap: note: no difference heatmap: {exc}", err=True)
    click.echo(
        f"{len(comparison.frame)} shared rows: Spearman ρ = {_fmt(comparison.spearman)} "
        f"(p {_fmt_p(comparison.spearman_p)}), Kendall τ = {_fmt(comparison.kendall)} "
        f"(p {_fmt_p(comparison.kendall_p)})"
    )
    if comparison.only_a or comparison.only_b:
        click.echo(
            f"Left out: {len(comparison.only_a)} row(s) only in {label_a}, "
            f"{len(comparison.only_b)} only in {label_b}"
        )
    biggest = comparison.frame.reindex(
        comparison.frame["difference"].abs().sort_values(ascending=False).index
    ).head(5)
    click.echo(f"Largest differences ({label_b} − {label_a}):")
    for _, row in biggest.iterrows():
        click.echo(f"  {format_number(row['difference'], '+.4f')}  {row['feature']}")
    click.echo("Wrote " + ", ".join(str(p) for p in written))


@hookimpl(trylast=True)
def register_commands(cli):
    cli.add_command(compare_command)
