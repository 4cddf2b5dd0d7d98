"""The ``leap`` command line: a thin layer over the engine."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from leap.data.layout import SensorLayout
from leap.engine import get_engine
from leap.errors import LeapError
from leap.workflows.config import AnalysisConfig

EXIT_BAD_INPUT = 2


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _label(text: str | None) -> str | int | None:
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


_AGGREGATES = ("sum_positive", "sum", "signed", "mean", "max", "grouped")
_ALL_FIGURES = ("heatmap", "channel_heatmap", "bars", "participants")


def _figure_names(text: str) -> list[str]:
    names = _names(text) or []
    return list(_ALL_FIGURES) if names == ["all"] else names


def _print_grouped(result: Any, k: int) -> None:
    top = result.top(k)
    level = f"{result.ci_level:.0%}"
    click.echo(f"Top {len(top)} by {result.level} (permuted jointly), {level} CI over repeats:")
    width = max((len(f) for f in top["feature"]), default=10)
    for _, row in top.iterrows():
        flag = "  (includes 0)" if row["ci_includes_zero"] else ""
        click.echo(
            f"  {int(row['rank']):>3}  {row['feature']:<{width}}  {row['importance_mean']:+.4f}"
            f"  [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]{flag}"
        )


def input_options(command: Any) -> Any:
    """Add the options every command reading a MODEL and a MATRIX shares."""
    options = [
        click.option("--label", help="Label column: a name or a position.  [default: label]"),
        click.option(
            "--participant", help="Participant-id column.  [default: participant, if present]"
        ),
        click.option("--loader", help="Model loader by name.  [default: by file suffix]"),
        click.option("--reader", help="Matrix reader by name.  [default: by file suffix]"),
        click.option(
            "--sensors", help="Comma-separated sensor names.  [default: the 5 LEAP sensors]"
        ),
        click.option("--dims", help="Comma-separated channel dims.  [default: x/y/z acc and gyro]"),
        click.option(
            "--expect-sha256",
            metavar="DIGEST",
            help="Refuse the model file unless its SHA-256 digest is DIGEST (checked before "
            "loading).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def layout_from(sensors: str | None, dims: str | None) -> SensorLayout | None:
    """The layout named by ``--sensors``/``--dims`` (LEAP's for the one not given), or None."""
    if not (sensors or dims):
        return None
    return SensorLayout.create(
        _names(sensors) or SensorLayout().sensors, _names(dims) or SensorLayout().dims
    )


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _print_top(result: Any, k: int) -> None:
    top = result.top(k)
    metric = "the model's score" if result.scoring == "score" else result.scoring
    click.echo(f"Top {len(top)} features (drop in {metric}, ± std over repeats; {result.method}):")
    width = max((len(f) for f in top["feature"]), default=10)
    for _, row in top.iterrows():
        click.echo(
            f"  {int(row['rank']):>3}  {row['feature']:<{width}}  "
            f"{row['importance_mean']:+.4f} ± {row['importance_std']:.4f}"
        )


class LeapGroup(click.Group):
    """Turns :class:`LeapError` into one readable line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LeapError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"leap: error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


@click.group(cls=LeapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="leap")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """LEAP: which sensors and sensor pairs drive a trained model's predictions.

    \b
    Start with `leap demo` to see a full run on generated data, then
    `leap analyze MODEL MATRIX` on your own files.
    """
    ctx.obj = {"debug": debug}


@cli.command()
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
@click.option("--method", help="Importance method.  [default: permutation]")
@click.option(
    "--n-repeats", type=click.IntRange(min=1), help="Permutations per feature.  [default: 10]"
)
@click.option("--random-state", type=int, help="Seed.  [default: 42]")
@click.option("--scoring", help="A scikit-learn scorer name.  [default: the model's own score]")
@click.option("--n-jobs", type=int, help="Parallel jobs (-1: all cores).")
@click.option("--max-samples", type=float, help="Fraction (≤1) or number of rows per repeat.")
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
    help="Figures to write: heatmap, channel_heatmap, bars, participants, or all.  "
    "[default: heatmap]",
)
@click.option(
    "--aggregate",
    "heatmap_aggregate",
    type=click.Choice(list(_AGGREGATES)),
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
@click.option("--top", default=10, show_default=True, help="How many top features to print.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
def analyze(
    model,
    matrix,
    config_file,
    sensors,
    dims,
    label,
    top,
    quiet,
    max_samples,
    group_file,
    figures,
    **options,
):
    """Compute permutation importances of MODEL on MATRIX; write a CSV and a heatmap.

    \b
    One call can answer the questions of a study, e.g.
      leap analyze model.pkl features.npy -o out/importance.csv \\
        --groups sensor_pair,sensor --per-participant --figures all \\
        --report out/report.html
    """
    from leap.data.grouping import load_group_file

    values = {k: v for k, v in options.items() if v is not None}
    if group_file is not None:
        values["custom_groups"] = load_group_file(group_file)
    if figures:
        values["renderers"] = _figure_names(figures)
    values.update(model_path=model, feature_matrix=matrix, label=_label(label))
    if max_samples is not None:
        values["max_samples"] = int(max_samples) if max_samples > 1 else max_samples
    if sensors or dims:
        values["layout"] = layout_from(sensors, dims)
    values["progress"] = _show_progress(quiet)
    if config_file is not None:
        config = AnalysisConfig.from_toml(config_file, **values)
    else:
        if model is None or matrix is None:
            raise click.UsageError("give MODEL and MATRIX, or --config FILE")
        values.setdefault("save_csv_path", Path("importance.csv"))
        config = AnalysisConfig.create(**{k: v for k, v in values.items() if v is not None})
    if figures and figures.strip() == "all" and not config.per_participant:
        config = config.model_copy(
            update={"renderers": [r for r in config.renderers if r != "participants"]}
        )
    engine = get_engine()
    result = engine.analyze(config)
    if not quiet:
        _print_top(result, top)
        for grouped in result.groups.values():
            _print_grouped(grouped, min(top, 5))
        if result.spread is not None:
            click.echo(
                f"Per-participant importances: {result.spread.n_participants} participants"
                + (f" ({len(result.spread.skipped)} left out)" if result.spread.skipped else "")
            )
        click.echo("Wrote " + ", ".join(str(p) for p in engine.output_paths(config).values()))


@cli.command()
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
    type=click.Choice(list(_AGGREGATES)),
    default="sum_positive",
    show_default=True,
    help="How the channel pairs of two sensors are combined.",
)
def plot(csv_file: Path, out: Path | None, title: str, aggregate: str) -> None:
    """Draw the sensor-pair heatmap of an importance CSV (LEAP's or the original script's)."""
    from leap.api import plot_sensor_pair_importance

    out = out or csv_file.with_suffix(".png")
    plot_sensor_pair_importance(csv_file, title, out, aggregate=aggregate)
    click.echo(f"Wrote {out}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List every registered component and every plugin that failed to load."""
    report = get_engine().plugin_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    rows = [
        (
            c["kind"],
            c["name"] + ("" if c["active"] else " (shadowed)"),
            " ".join(c["suffixes"]) or "-",
            f"{c['distribution']} {c['version']}".strip(),
        )
        for c in report["components"]
    ]
    header = ("KIND", "NAME", "SUFFIXES", "PROVIDED BY")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for failure in report["failures"]:
        click.echo(
            f"BROKEN  {failure['plugin']} ({failure['distribution']} {failure['version']}): "
            f"{failure['error']}"
        )


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path), default="demo_output")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
def demo(directory: Path, quiet: bool) -> None:
    """Generate LEAP-shaped data with planted pairs, fit a model and analyse it in DIRECTORY."""
    from leap.workflows.demo import PLANTED_PAIRS, run_demo

    result = run_demo(directory, progress=_show_progress(quiet))
    if quiet:
        return
    click.echo(f"Planted informative pairs: {', '.join(PLANTED_PAIRS)}")
    _print_top(result, 5)
    for grouped in result.groups.values():
        _print_grouped(grouped, 5)
    written = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    click.echo(f"Wrote into {directory}: {', '.join(written)}")


def _warn_in_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"leap: warning: {message}", err=True)


def main() -> None:
    """Entry point of the ``leap`` console script."""
    warnings.showwarning = _warn_in_one_line
    get_engine().add_commands(cli)
    cli(prog_name="leap")
