"""The plugin host: blocking, commands as plugins, extended commands, renderer options,
the report drawn through the registry, and one result type for every method."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL_LAYOUT
from plugin_packages import write_distribution

import leap
from leap import Engine, ImportanceResult, MethodScores, hookimpl
from leap.cli import LeapGroup, cli
from leap.errors import PluginError
from leap.plugin_manager import BUILTIN_PLUGINS

THIRD_PARTY_DOCTOR = '''
import click
import leap


@click.command("doctor")
def doctor():
    """A third-party doctor."""
    click.echo("third-party doctor ran")


@leap.hookimpl
def register_commands(cli):
    cli.add_command(doctor)
'''


def test_block_a_builtin_by_name(monkeypatch):
    monkeypatch.setenv("LEAP_BLOCK_PLUGINS", "leap.builtins.renderers.bars")
    engine = Engine(load_entry_points=False)
    assert "bars" not in engine.renderers and "heatmap" in engine.renderers
    report = engine.plugin_report()
    assert [b["plugin"] for b in report["blocked"]] == ["leap.builtins.renderers.bars"]


def test_block_through_the_engine_argument_commands_too():
    engine = Engine(load_entry_points=False, block=["leap.builtins.commands.doctor"])
    assert "doctor" not in engine.commands and "analyze" in engine.commands


def test_block_an_in_process_plugin():
    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register(type("M", (), {"name": "mine", "compute": lambda *a, **k: {}})())

    engine = Engine(load_entry_points=False, block=["mine-plugin"])
    engine.register(Plugin(), name="mine-plugin")
    assert "mine" not in engine.methods
    assert [b.plugin for b in engine.blocked] == ["mine-plugin"]


def test_every_builtin_can_be_blocked():
    engine = Engine(load_entry_points=False, block=BUILTIN_PLUGINS)
    assert all(len(engine.registry(kind)) == 0 for kind in engine.registries)
    assert len(engine.blocked) == len(BUILTIN_PLUGINS)


def test_leap_plugins_shows_blocked_and_shadowed_commands(tmp_path):
    site = tmp_path / "site"
    write_distribution(site, "leap-doctor2", "leap_doctor2", THIRD_PARTY_DOCTOR)
    env = {
        "PYTHONPATH": str(site),
        "LEAP_BLOCK_PLUGINS": "leap.builtins.renderers.spread",
        "PATH": "",
    }
    run = subprocess.run(
        [sys.executable, "-m", "leap", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    report = json.loads(run.stdout)
    doctors = [c for c in report["components"] if c["kind"] == "command" and c["name"] == "doctor"]
    assert [(c["distribution"], c["active"]) for c in doctors] == [
        ("leap-doctor2", True),
        ("leap", False),
    ]
    assert [b["plugin"] for b in report["blocked"]] == ["leap.builtins.renderers.spread"]
    table = subprocess.run(
        [sys.executable, "-m", "leap", "plugins"], capture_output=True, text=True, env=env
    ).stdout
    assert re.search(r"command\s+doctor \(shadowed\)", table)
    assert "BLOCKED  leap.builtins.renderers.spread" in table
    doctor = subprocess.run(
        [sys.executable, "-m", "leap", "doctor"], capture_output=True, text=True, env=env
    )
    assert doctor.returncode == 0 and "third-party doctor ran" in doctor.stdout


def test_an_in_process_command_replaces_the_builtin():
    @click.command("plot")
    def plot():
        click.echo("my plot")

    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            cli.add_command(plot)

    engine = Engine(load_entry_points=False, plugins=[Plugin()])
    assert engine.commands.get("plot") is plot
    assert [e.origin.plugin for e in engine.commands.shadowed] == ["leap.builtins.commands.plot"]
    group = LeapGroup("leap")
    engine.add_commands(group)
    assert group.commands["plot"] is plot


def test_a_plugin_extends_another_command_without_touching_it(monkeypatch):
    seen = {}

    def wrap(callback):
        def wrapped(*args, greeting=None, **kwargs):
            seen["greeting"] = greeting
            return callback(*args, **kwargs)

        return wrapped

    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            cli.extend("plugins", params=[click.Option(["--greeting"])], wrap=wrap)

    engine = Engine(load_entry_points=False, plugins=[Plugin()])
    monkeypatch.setattr("leap.engine._default_engine", engine)
    done = CliRunner().invoke(cli, ["plugins", "--greeting", "hi", "--json"])
    assert done.exit_code == 0, done.output
    assert seen == {"greeting": "hi"}
    builtin = Engine(load_entry_points=False).commands.get("plugins")
    assert "greeting" not in [p.name for p in builtin.params]


def test_the_root_group_resolves_commands_through_the_registry(monkeypatch):
    @click.command("hello")
    def hello():
        click.echo("hello from a plugin")

    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            cli.add_command(hello)

    monkeypatch.setattr(
        "leap.engine._default_engine", Engine(load_entry_points=False, plugins=[Plugin()])
    )
    assert "hello" in CliRunner().invoke(cli, ["--help"]).output
    assert CliRunner().invoke(cli, ["hello"]).output == "hello from a plugin\n"


def test_a_command_that_is_not_a_click_command_is_reported():
    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            cli.add_command(type("NotACommand", (), {"name": "x"})())

    with pytest.raises(PluginError, match="command 'x' has no main"):
        Engine(load_entry_points=False, plugins=[Plugin()], strict=True).commands  # noqa: B018


class ConstantMethod:
    name = "constant"

    def compute(self, estimator, X, y, *, groups, scoring, n_repeats, **settings):
        n = len(groups) if groups is not None else X.shape[1]
        return {"score": MethodScores(1.0, np.ones((n, n_repeats)))}


class MethodPlugin:
    @hookimpl
    def register_methods(self, register):
        register(ConstantMethod())


def test_one_result_type_whichever_method_ran(small_data):
    from sklearn.linear_model import LogisticRegression

    engine = Engine(load_entry_points=False, plugins=[MethodPlugin()])
    model = LogisticRegression().fit(small_data.X, small_data.y)
    kwargs = {"n_repeats": 2, "random_state": 0, "engine": engine}
    for method in ("permutation", "constant"):
        one = leap.permutation_importance(
            model, small_data.X, small_data.y, method=method, **kwargs
        )
        assert isinstance(one, ImportanceResult), method
        grouped = leap.permutation_importance(
            model,
            small_data.X,
            small_data.y,
            method=method,
            groups="sensor",
            layout=SMALL_LAYOUT,
            **kwargs,
        )
        assert isinstance(grouped, ImportanceResult) and grouped.level == "sensor"
    several = leap.permutation_importance(
        model, small_data.X, small_data.y, scoring=["accuracy"], **kwargs
    )
    assert isinstance(several, dict) and list(several) == ["accuracy"]


def test_renderers_get_only_the_options_they_declare(engine, small_data):
    seen = {}

    class Recorder:
        name = "recorder"
        suffixes = (".txt",)
        options = ("k",)

        def render(self, result, path, *, title, **options):
            seen.update(options)

    class Plugin:
        @hookimpl
        def register_renderers(self, register):
            register(Recorder())

    engine.register(Plugin())
    result = ImportanceResult(np.ones((2, 3)), ["a", "b"])
    engine.render(result, None, renderer="recorder", title="", k=3, aggregate="sum")
    assert seen == {"k": 3}


def test_the_report_shows_the_registered_heatmap(leap_files, small_data):
    """Replacing the heatmap renderer changes the report: it embeds that renderer's file."""
    marker = b"<svg xmlns='http://www.w3.org/2000/svg'><text>my heatmap</text></svg>"

    class SvgHeatmap:
        name = "heatmap"
        suffixes = (".png", ".svg")
        options = ("aggregate",)

        def render(self, result, path, *, title, aggregate="sum_positive"):
            Path(path).write_bytes(marker)

    class Plugin:
        @hookimpl
        def register_renderers(self, register):
            register(SvgHeatmap())

    engine = Engine(load_entry_points=False, plugins=[Plugin()])
    out = leap_files["dir"] / "out"
    leap.analyze_permutation_importance(
        leap_files["model"],
        leap_files["matrix"],
        save_csv_path=out / "imp.csv",
        n_repeats=2,
        report_path=out / "report.html",
        engine=engine,
    )
    import base64

    page = (out / "report.html").read_text(encoding="utf-8")
    assert base64.b64encode(marker).decode() in page
    assert (out / "imp.png").read_bytes() == marker


def test_progress_bars_say_what_they_count(small_data, capsys):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(small_data.X, small_data.y)
    engine = Engine(load_entry_points=False)
    for groups, counted in ((None, "features"), ("sensor_pair", "sensor pairs")):
        engine.compute(
            model,
            small_data.X,
            small_data.y,
            layout=SMALL_LAYOUT,
            groups=groups,
            n_repeats=2,
            random_state=0,
            progress=True,
        )
        assert f"permuting {counted}" in capsys.readouterr().err
