"""Built-in ``leap demo`` command: a whole run on generated data with planted pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from leap.cli import print_grouped, print_top, show_progress
from leap.hookspecs import hookimpl


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), default="demo_output")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
def demo(directory: Path, quiet: bool) -> None:
    """Generate LEAP-shaped data with planted pairs, fit a model and analyse it in DIRECTORY."""
    from leap.workflows.demo import PLANTED_PAIRS, run_demo

    result = run_demo(directory, progress=show_progress(quiet))
    if quiet:
        return
    click.echo(f"Planted informative pairs: {', '.join(PLANTED_PAIRS)}")
    print_top(result, 5)
    for grouped in result.groups.values():
        print_grouped(grouped, 5)
    written = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    click.echo(f"Wrote into {directory}: {', '.join(written)}")


@hookimpl(trylast=True)
def register_commands(cli: Any) -> None:
    cli.add_command(demo)
