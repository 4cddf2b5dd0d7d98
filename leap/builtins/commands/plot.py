"""Built-in ``leap plot`` command: the sensor-pair heatmap of an importance CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from leap.data.aggregates import AGGREGATE_NAMES
from leap.hookspecs import hookimpl


@click.command()
@click.argument("csv_file", type=click.Path(path_type=Path, readable=False))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="Figure to write (.png/.svg/.pdf).  [default: the CSV's name with .png]",
)
@click.option("--title", default="Feature Importance Heatmap", show_default=True)
@click.option(
    "--aggregate",
    type=click.Choice(list(AGGREGATE_NAMES)),
    default="sum_positive",
    show_default=True,
    help="How the channel pairs of two sensors are combined; grouped reads the "
    "CSV_sensor_pair.csv written beside the CSV by --groups sensor_pair.",
)
def plot(csv_file: Path, out: Path | None, title: str, aggregate: str) -> None:
    """Draw the sensor-pair heatmap of an importance CSV (LEAP's or the original script's)."""
    from leap.api import plot_sensor_pair_importance

    out = out or csv_file.with_suffix(".png")
    plot_sensor_pair_importance(csv_file, title, out, aggregate=aggregate)
    click.echo(f"Wrote {out}")


@hookimpl(trylast=True)
def register_commands(cli: Any) -> None:
    cli.add_command(plot)
