"""Built-in ``leap analyze`` command: the whole analysis of a model on a feature matrix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from leap.cli import (
    input_options,
    layout_from,
    parse_label,
    print_grouped,
    print_top,
    progress_log,
    show_progress,
)
from leap.data.aggregates import AGGREGATE_NAMES
from leap.hookspecs import hookimpl


def _max_samples(text: str | None) -> float | int | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise click.BadParameter(f"give a fraction (0, 1] or a row count, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"give a fraction (0, 1] or a row count, got {text!r}")
    if value > 1:
        if not value.is_integer():
            raise click.BadParameter(f"a row count must be a whole number, got {text!r}")
        return int(value)
    return value


@click.command()
# readable=False: LEAP checks its input files itself, with one-line errors (exit status 2)
@click.argument("model", type=click.Path(path_type=Path, readable=False), required=False)
@click.argument("matrix", type=click.Path(path_type=Path, readable=False), required=False)
@input_options
@click.option(
    "-o",
    "--out",
    "save_csv_path",
    type=click.Path(path_type=Path),
    help="CSV to write.  [default: importance.csv]",
)
@click.option("--title", "heatmap_title", help="Heatmap title.")
@click.option(
    "--heatmap",
    "heatmap_path",
    type=click.Path(path_type=Path),
    help="Heatmap file (.png/.svg/.pdf).  [default: the CSV's name with .png]",
)
@click.option("--method", help="Importance method (see `leap plugins`).  [default: permutation]")
@click.option(
    "--n-repeats", type=click.IntRange(min=1), help="Permutations per feature.  [default: 10]"
)
@click.option("--random-state", type=int, help="Seed.  [default: 42]")
@click.option("--scoring", help="A scikit-learn scorer name.  [default: the model's own score]")
@click.option("--n-jobs", type=int, help="Parallel jobs (-1: all cores).")
@click.option("--max-samples", help="Fraction (≤1) or number of rows per repeat.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="TOML file with these settings ([analysis] table); options override it.",
)
@click.option(
    "--groups",
    metavar="LIST",
    help="Also permute groups jointly: sensor_pair, sensor (comma-separated); each writes "
    "CSV_<grouping>.csv.",
)
@click.option(
    "--group-file",
    type=click.Path(path_type=Path),
    help="JSON/TOML mapping of group name to feature names or indices (a 'custom' grouping).",
)
@click.option(
    "--per-participant",
    is_flag=True,
    default=None,
    help="Also analyse each participant's rows alone; writes CSV_participants.csv.",
)
@click.option(
    "--figures",
    metavar="LIST",
    help="Figures to write (renderer names, see `leap plugins`): heatmap, channel_heatmap, "
    "bars, participants, or all (every figure that applies).  [default: heatmap]",
)
@click.option(
    "--aggregate",
    "heatmap_aggregate",
    type=click.Choice(list(AGGREGATE_NAMES)),
    help="Heatmap cells: sum_positive (original), sum, signed, mean, max, or grouped "
    "(sensor pairs permuted jointly).  [default: sum_positive]",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    help="Write a self-contained HTML report with every figure and table.",
)
@click.option(
    "--ci-level",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Confidence level of the intervals.  [default: 0.95]",
)
@click.option(
    "--figure-top",
    "top_k",
    type=click.IntRange(min=1),
    help="Rows in the bar and participant figures.  [default: 20]",
)
@click.option(
    "--top",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many top features to print.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
def analyze(
    model: Path | None,
    matrix: Path | None,
    config_file: Path | None,
    sensors: str | None,
    dims: str | None,
    label: str | None,
    top: int,
    quiet: bool,
    max_samples: str | None,
    group_file: Path | None,
    figures: str | None,
    **options: Any,
) -> None:
    """Compute permutation importances of MODEL on MATRIX; write a CSV and a heatmap.

    \b
    One call can answer the questions of a study, e.g.
      leap analyze model.pkl features.npy -o out/importance.csv \\
        --groups sensor_pair,sensor --per-participant --figures all \\
        --report out/report.html
    """
    from leap.cli import names_list
    from leap.data.grouping import load_group_file
    from leap.engine import get_engine
    from leap.workflows.analyze import analyze as run_analysis
    from leap.workflows.config import AnalysisConfig

    values = {k: v for k, v in options.items() if v is not None and v != ()}
    inputs = [p for p in (config_file, group_file) if p is not None]
    if group_file is not None:
        values["custom_groups"] = load_group_file(group_file)
    if figures:
        values["renderers"] = names_list(figures) or []
    values.update(model_path=model, feature_matrix=matrix, label=parse_label(label))
    values["max_samples"] = _max_samples(max_samples)
    if sensors or dims:
        values["layout"] = layout_from(sensors, dims)
    values["progress"] = show_progress(quiet)
    values["input_files"] = inputs
    if config_file is not None:
        config = AnalysisConfig.from_toml(config_file, **values)
    else:
        if model is None or matrix is None:
            raise click.UsageError("give MODEL and MATRIX, or --config FILE")
        values.setdefault("save_csv_path", Path("importance.csv"))
        config = AnalysisConfig.create(**{k: v for k, v in values.items() if v is not None})
    with progress_log(quiet):
        result = run_analysis(get_engine(), config)
    if quiet:
        return
    print_top(result, top)
    for grouped in result.groups.values():
        print_grouped(grouped, min(top, 5))
    if result.spread is not None:
        skipped = result.spread.skipped
        click.echo(
            f"Per-participant importances: {result.spread.n_participants} participants"
            + (f" ({len(skipped)} left out)" if skipped else "")
        )
    click.echo("Wrote " + ", ".join(result.params["outputs"]))


@hookimpl(trylast=True)
def register_commands(cli: Any) -> None:
    cli.add_command(analyze)
