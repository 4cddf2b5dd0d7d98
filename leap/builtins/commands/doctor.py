"""Built-in ``leap doctor`` command: check a model/matrix pair without analysing it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from leap.cli import input_options, layout_from, parse_label
from leap.hookspecs import hookimpl

EXIT_PROBLEMS = 2


@click.command()
@click.argument("model", type=click.Path(path_type=Path, readable=False))
@click.argument("matrix", type=click.Path(path_type=Path, readable=False))
@input_options
@click.option("--scoring", help="A scikit-learn scorer name.  [default: the model's own score]")
@click.pass_context
def doctor(ctx: click.Context, model: Path, matrix: Path, **options: Any) -> None:
    """Check MODEL and MATRIX fit together, without running the analysis.

    Prints every problem found (loader, reader, label, classes, width against the layout
    and the model, feature names, NaN, scorer), or an OK summary; exits with status 2
    when there is a problem. Loading a pickled MODEL runs code from it, as `leap analyze`
    would: use --expect-sha256 for files from elsewhere.
    """
    from leap.workflows.doctor import diagnose

    layout = layout_from(options.pop("sensors"), options.pop("dims"))
    label = parse_label(options.pop("label")) or "label"
    report = diagnose(model, matrix, label=label, layout=layout, **options)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        ctx.exit(EXIT_PROBLEMS)


@hookimpl(trylast=True)
def register_commands(cli: Any) -> None:
    cli.add_command(doctor)
