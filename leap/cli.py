"""The ``leap`` command line: the root group, and the helpers every command shares.

Every sub-command is a plugin component (hook ``register_commands``): the root group
looks commands up in the engine's registry when they are asked for, so an installed
plugin's command of the same name replaces the built-in, and ``leap --help`` imports no
heavy library. Command plugins use the public helpers here: :func:`input_options`,
:func:`layout_from`, :func:`parse_label`, :func:`show_progress`, :func:`print_top` and
:func:`print_grouped`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import click

from leap.data.formatting import format_number
from leap.engine import get_engine
from leap.errors import LeapError, one_line

#: Exit status for bad input (a LeapError): one readable line on stderr.
EXIT_BAD_INPUT = 2


def names_list(text: str | None) -> list[str] | None:
    """Comma-separated names, stripped; ``None`` for no text."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def parse_label(text: str | None) -> str | int | None:
    """A ``--label`` value: an integer position, or a column name."""
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


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
            help="Refuse the model file unless its SHA-256 digest is DIGEST (checked on the "
            "very bytes that are loaded).",
        ),
        click.option(
            "--header/--no-header",
            default=None,
            help="CSV: the first row names the columns (--header), or is data (--no-header).  "
            "[default: a header, refused when it looks like data]",
        ),
        click.option(
            "--max-cells",
            type=click.IntRange(min=1),
            help="Refuse matrices with more rows × columns than this.  "
            "[default: $LEAP_MAX_CELLS, else 100,000,000]",
        ),
        click.option(
            "--trust",
            metavar="TYPE",
            multiple=True,
            help="Accept this type in a model file whose loader checks types (skops); "
            "repeatable. Only for files whose source you trust.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def layout_from(sensors: str | None, dims: str | None) -> Any:
    """The layout named by ``--sensors``/``--dims`` (LEAP's for the one not given), or None."""
    if not (sensors or dims):
        return None
    from leap.data.layout import SensorLayout

    return SensorLayout.create(
        names_list(sensors) or SensorLayout().sensors, names_list(dims) or SensorLayout().dims
    )


def show_progress(quiet: bool) -> bool:
    """Progress bars only for a person at a terminal, and not with ``--quiet``."""
    return not quiet and sys.stderr.isatty()


def print_top(result: Any, k: int) -> None:
    """Print the ``k`` most important rows of a feature-level result."""
    top = result.top(k)
    repeats = result.n_repeats > 1
    spread = ", ± std over repeats" if repeats else ""
    click.echo(f"Top {len(top)} features ({result.quantity}{spread}; {result.method}):")
    width = max((len(f) for f in top["feature"]), default=10)
    for _, row in top.iterrows():
        cell = format_number(row["importance_mean"], "+.4f")
        if repeats:
            cell += f" ± {format_number(row['importance_std'], '.4f')}"
        q_value = row.get("q_value", float("nan"))
        if q_value == q_value:
            cell += f"  q {q_value:.3g}"
        click.echo(f"  {int(row['rank']):>3}  {row['feature']:<{width}}  {cell}")


def print_grouped(result: Any, k: int) -> None:
    """Print the ``k`` most important groups of a grouped result, with their intervals."""
    top = result.top(k)
    unit = f"held-out {result.inference.unit}s" if result.inference is not None else "repeats"
    what = f"{result.ci_level:.0%} CI over {unit}"
    click.echo(f"Top {len(top)} by {result.level} (permuted jointly), {what}:")
    width = max((len(f) for f in top["feature"]), default=10)
    for _, row in top.iterrows():
        flag = "  (includes 0)" if row["ci_includes_zero"] else ""
        low, high = format_number(row["ci_low"], "+.4f"), format_number(row["ci_high"], "+.4f")
        mean = format_number(row["importance_mean"], "+.4f")
        q = (
            f"  q {row['q_value']:.3g}"
            if "q_value" in row and row["q_value"] == row["q_value"]
            else ""
        )
        name = f"{row['feature']:<{width}}"
        click.echo(f"  {int(row['rank']):>3}  {name}  {mean}  [{low}, {high}]{q}{flag}")


def progress_log(quiet: bool) -> contextlib.AbstractContextManager[None]:
    """While a command runs, show the ``leap`` loggers' progress lines on stderr.

    Plugins report progress they cannot draw as a bar (no terminal) as INFO records of a
    logger under ``leap.`` (e.g. ``leap.plugins.shap``); nothing is shown with ``--quiet``.
    """
    return contextlib.nullcontext() if quiet else _logging_to_stderr()


@contextlib.contextmanager
def _logging_to_stderr() -> Iterator[None]:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("leap: %(message)s"))
    log = logging.getLogger("leap")
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


class LeapGroup(click.Group):
    """The ``leap`` group: commands come from the registry; a LeapError is one line, exit 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *get_engine().commands.names()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        commands = get_engine().commands
        if name in commands:
            return commands.get(name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LeapError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"leap: error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except click.UsageError as exc:  # a bad option value: one line too, and where to look
            where = exc.ctx.command_path if exc.ctx is not None else "leap"
            message = one_line(exc.format_message())
            click.echo(f"leap: error: {message} (see {where} --help)", err=True)
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


def _warn_in_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"leap: warning: {one_line(message)}", err=True)


def main() -> None:
    """Entry point of the ``leap`` console script."""
    warnings.showwarning = _warn_in_one_line
    try:
        get_engine()
    except LeapError as exc:  # e.g. a broken plugin under LEAP_STRICT_PLUGINS
        click.echo(f"leap: error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    cli(prog_name="leap")
