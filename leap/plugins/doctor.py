"""Built-in ``leap doctor`` command: check a model/matrix pair without analysing it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from leap.hookspecs import hookimpl

EXIT_PROBLEMS = 2


@click.command()
@click.argument("model", type=click.Path(path_type=Path, readable=False))
@click.argument("matrix", type=click.Path(path_type=Path, readable=False))
@click.option("--label", help="Label column: a name or a position.  [default: label]")
@click.option("--scoring", help="A scikit-learn scorer name.  [default: the model's own score]")
@click.option("--sensors", help="Comma-separated sensor names.  [default: the 5 LEAP sensors]")
@click.option("--dims", help="Comma-separated channel dims.  [default: x/y/z acc and gyro]")
@click.option("--loader", help="Model loader by name.  [default: by file suffix]")
@click.option("--reader", help="Matrix reader by name.  [default: by file suffix]")
@click.option("--participant", help="Participant-id column.  [default: participant, if present]")
@click.option(
    "--expect-sha256",
    metavar="DIGEST",
    help="Refuse the model file unless its SHA-256 digest is DIGEST (checked before loading).",
)
@click.pass_context
def doctor(ctx: click.Context, model: Path, matrix: Path, **options: Any) -> None:
    """Check MODEL and MATRIX fit together, without running the analysis.

    Prints every problem found (loader, reader, label, classes, width against the layout
    and the model, feature names, NaN, scorer), or an OK summary; exits with status 2
    when there is a problem. Loading a pickled MODEL runs code from it, as `leap analyze`
    would: use --expect-sha256 for files from elsewhere.
    """
    from leap.cli import _label, _names
    from leap.config import SensorLayout
    from leap.doctor import diagnose

    sensors, dims = options.pop("sensors"), options.pop("dims")
    layout = None
    if sensors or dims:
        layout = SensorLayout.create(
            _names(sensors) or SensorLayout().sensors, _names(dims) or SensorLayout().dims
        )
    label = _label(options.pop("label")) or "label"
    report = diagnose(model, matrix, label=label, layout=layout, **options)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        ctx.exit(EXIT_PROBLEMS)


@hookimpl(trylast=True)
def register_commands(cli: Any) -> None:
    cli.add_command(doctor)
