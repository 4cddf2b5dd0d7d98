"""Built-in ``leap compare`` command: two importance CSVs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from leap.data.aggregates import AGGREGATE_NAMES
from leap.hookspecs import hookimpl

#: Formats the comparison figures can be written in.
FORMATS = ("png", "svg", "pdf")


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
    type=click.Choice(list(FORMATS)),
    default="png",
    show_default=True,
)
@click.option(
    "--aggregate",
    type=click.Choice(list(AGGREGATE_NAMES)),
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
    from leap.builtins.renderers.compare import (
        compare_results,
        distinct_labels,
        format_p,
        format_statistic,
        render_difference,
        render_rank_agreement,
        write_comparison_csv,
    )
    from leap.data.files import OutputSet
    from leap.data.formatting import format_number
    from leap.data.result import ImportanceResult
    from leap.errors import LeapError

    targets = {
        "csv": prefix.with_name(f"{prefix.name}.csv"),
        "ranks": prefix.with_name(f"{prefix.name}_ranks.{fmt}"),
        "difference": prefix.with_name(f"{prefix.name}_difference.{fmt}"),
    }
    outputs = OutputSet(targets, inputs=[csv_a, csv_b])
    a, b = ImportanceResult.from_csv(csv_a), ImportanceResult.from_csv(csv_b)
    default_a, default_b = distinct_labels(csv_a, csv_b)
    label_a = label_a or default_a
    label_b = label_b or default_b
    if label_a == label_b:
        label_a, label_b = f"{label_a} (A)", f"{label_b} (B)"
    comparison = compare_results(a, b, label_a, label_b)
    note = None
    with outputs:
        write_comparison_csv(comparison, outputs.path("csv"))
        render_rank_agreement(comparison, outputs.path("ranks"), k=k)
        try:
            render_difference(comparison, outputs.path("difference"), aggregate=aggregate)
        except LeapError as exc:  # e.g. results without sensor columns: ranks still compare
            note = f"leap: note: no difference heatmap: {exc}"
            outputs.discard("difference")
        written = outputs.commit()
    if note:
        click.echo(note, err=True)
    rho, tau = format_statistic(comparison.spearman), format_statistic(comparison.kendall)
    click.echo(
        f"{len(comparison.frame)} shared rows: Spearman ρ = {rho} "
        f"(p {format_p(comparison.spearman_p)}), Kendall τ = {tau} "
        f"(p {format_p(comparison.kendall_p)})"
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
def register_commands(cli: Any) -> None:
    cli.add_command(compare_command)
