"""Built-in ``leap plugins`` command: every component, and where it comes from."""

from __future__ import annotations

import json
from typing import Any

import click

from leap.hookspecs import hookimpl


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List every registered component, and every plugin that failed to load or is blocked.

    A component another plugin replaced (same kind and name) is marked "(shadowed)".
    Block any plugin, built-ins included, by its PLUGIN name in LEAP_BLOCK_PLUGINS
    (comma-separated).
    """
    from leap.engine import get_engine

    report = get_engine().plugin_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    rows = [
        (
            c["kind"],
            c["name"] + ("" if c["active"] else " (shadowed)"),
            " ".join(c["suffixes"]) or "-",
            c["plugin"],
            f"{c['distribution']} {c['version']}".strip(),
        )
        for c in report["components"]
    ]
    header = ("KIND", "NAME", "SUFFIXES", "PLUGIN", "PROVIDED BY")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for failure in report["failures"]:
        click.echo(
            f"BROKEN  {failure['plugin']} ({failure['distribution']} {failure['version']}): "
            f"{failure['error']}"
        )
    for blocked in report["blocked"]:
        click.echo(f"BLOCKED  {blocked['plugin']} ({blocked['distribution']} {blocked['version']})")


@hookimpl(trylast=True)
def register_commands(cli: Any) -> None:
    cli.add_command(plugins)
