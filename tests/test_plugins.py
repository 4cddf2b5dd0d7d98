"""The plugin host: registries, selection rules, in-process and installed plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from plugin_packages import (
    BROKEN_IMPORT,
    BROKEN_REGISTER,
    JSON_LOADER,
    pip_install_project,
    write_distribution,
)

import leap
from leap import Engine, hookimpl
from leap.errors import PluginError
from leap.plugin_manager import LeapPluginWarning


class _Model:
    def __init__(self, tag):
        self.tag = tag

    def predict(self, X):
        return np.zeros(len(X))

    def __eq__(self, other):
        return other == self.tag


class _Loader:
    def __init__(self, name, suffixes, model="custom"):
        self.name, self.suffixes, self.model = name, suffixes, _Model(model)

    def load(self, path):
        return self.model


def _loader_plugin(*loaders):
    class Plugin:
        @hookimpl
        def register_loaders(self, register):
            for loader in loaders:
                register(loader)

    return Plugin()


def test_builtins_are_registered(engine):
    assert engine.loaders.names() == ["pickle"]
    assert engine.readers.names() == ["npy", "npz", "csv", "parquet"]
    assert "permutation" in engine.methods
    assert "heatmap" in engine.renderers


def test_in_process_custom_loader_wins_its_suffix(tmp_path):
    (tmp_path / "m.pkl").write_bytes(b"not really a pickle")
    (tmp_path / "m.custom").write_bytes(b"")
    engine = Engine([_loader_plugin(_Loader("mine", (".custom", ".pkl")))], load_entry_points=False)
    assert engine.load_model(tmp_path / "m.custom") == "custom"
    assert engine.load_model(tmp_path / "m.pkl") == "custom"  # overrides the built-in suffix
    with pytest.raises(leap.LeapError, match="not a readable pickle"):
        engine.load_model(tmp_path / "m.pkl", loader="pickle")  # explicit name wins


def test_later_in_process_plugin_wins_and_name_clash_is_shadowed(tmp_path):
    (tmp_path / "m.x").write_bytes(b"")
    engine = Engine(load_entry_points=False)
    engine.register(_loader_plugin(_Loader("first", (".x",), "first")), name="one")
    engine.register(_loader_plugin(_Loader("second", (".x",), "second")), name="two")
    engine.register(_loader_plugin(_Loader("pickle", (".zzz",), "fake")), name="three")
    assert engine.load_model(tmp_path / "m.x") == "second"
    assert engine.loaders.get("pickle") == engine.loaders.get("pickle")
    report = engine.plugin_report()["components"]
    pickles = [c for c in report if c["name"] == "pickle"]
    assert [(c["distribution"], c["active"]) for c in pickles] == [
        ("(in-process)", True),
        ("leap", False),
    ]


def test_compound_suffix(tmp_path):
    path = tmp_path / "m.model.json"
    path.write_text("{}")
    engine = Engine([_loader_plugin(_Loader("j", (".model.json",)))], load_entry_points=False)
    assert engine.load_model(path) == "custom"


def test_unknown_names_list_the_available_ones(engine):
    with pytest.raises(PluginError, match=r"no method named 'nope'; available: (.*, )?permutation"):
        engine.methods.get("nope")


def test_invalid_component_is_reported_not_fatal():
    class Bad:
        @hookimpl
        def register_loaders(self, register):
            register(object())

    with pytest.warns(LeapPluginWarning, match="needs a non-empty string 'name'"):
        engine = Engine([Bad()], load_entry_points=False)
        assert engine.loaders.names() == ["pickle"]
    assert engine.failures[0].distribution == "(in-process)"


def test_in_process_plugin_with_unknown_hook_argument_fails_clearly():
    class Wrong:
        @hookimpl
        def register_loaders(self, register, extra):
            pass

    with pytest.raises(PluginError, match="cannot register plugin"):
        Engine([Wrong()], load_entry_points=False)


def test_every_hook_is_called(engine):
    import click

    calls = []

    class Everything:
        @hookimpl
        def register_loaders(self, register):
            calls.append("loaders")

        @hookimpl
        def register_readers(self, register):
            calls.append("readers")

        @hookimpl
        def register_methods(self, register):
            calls.append("methods")

        @hookimpl
        def register_renderers(self, register):
            calls.append("renderers")

        @hookimpl
        def register_commands(self, cli):
            @cli.command()
            def hello():
                click.echo("hi")

            calls.append("commands")

    engine.register(Everything())
    engine.registries  # noqa: B018 - builds them
    group = click.Group()
    engine.add_commands(group)
    assert sorted(calls) == ["commands", "loaders", "methods", "readers", "renderers"]
    assert "hello" in group.commands


def test_every_hookspec_has_a_test():
    from leap import hookspecs

    hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for hook in hooks:
        assert f"def {hook}(" in tests, f"no test implements the hook {hook}"


# -- installed plugins (entry points) ------------------------------------------------------


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_distribution(site, "leap-jsonmodel", "leap_jsonmodel", JSON_LOADER, version="2.5")
    write_distribution(site, "leap-broken-import", "leap_broken_import", BROKEN_IMPORT)
    write_distribution(site, "leap-broken-register", "leap_broken_register", BROKEN_REGISTER)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("LEAP_LOAD_PLUGINS")
    return site


def test_entry_point_plugins_load_and_broken_ones_are_reported(site, tmp_path):
    with pytest.warns(LeapPluginWarning) as caught:
        engine = Engine()
        assert "json-model" in engine.loaders
        assert "csv" in engine.readers  # the broken reader plugin did not take the rest down
    messages = " ".join(str(w.message) for w in caught)
    assert "leap-broken-import" in messages and "not installed" in messages
    assert "reader registration exploded" in messages
    report = engine.plugin_report()
    entry = next(c for c in report["components"] if c["name"] == "json-model")
    assert (entry["distribution"], entry["version"]) == ("leap-jsonmodel", "2.5")
    broken = {f["distribution"]: f["error"] for f in report["failures"]}
    assert broken["leap-broken-import"] == (
        "ImportError: this plugin needs a module that is not installed"
    )
    assert "RuntimeError" in broken["leap-broken-register"]
    model = tmp_path / "m.model.json"
    model.write_text('{"value": 1}')
    assert engine.load_model(model).predict([[0], [1]]) == [1, 1]


def test_load_plugins_allow_list(site, monkeypatch):
    monkeypatch.setenv("LEAP_LOAD_PLUGINS", "leap-jsonmodel")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = Engine()
    assert "json-model" in engine.loaders
    assert engine.failures == []
    monkeypatch.setenv("LEAP_LOAD_PLUGINS", "")
    assert "json-model" not in Engine().loaders


def test_strict_mode_raises_on_broken_plugin(site, monkeypatch):
    monkeypatch.setenv("LEAP_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="leap-broken"):
        Engine().registries  # noqa: B018


def _run_leap(*args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    env.pop("LEAP_LOAD_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "leap", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )


def test_leap_plugins_lists_installed_and_broken(site):
    done = _run_leap("plugins", env_extra={"PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    assert "json-model" in done.stdout and "leap-jsonmodel 2.5" in done.stdout
    assert "BROKEN  leap-broken-import:main" in done.stdout
    as_json = json.loads(_run_leap("plugins", "--json", env_extra={"PYTHONPATH": str(site)}).stdout)
    names = {(c["kind"], c["name"]) for c in as_json["components"]}
    assert ("loader", "json-model") in names and ("loader", "pickle") in names
    assert {f["distribution"] for f in as_json["failures"]} == {
        "leap-broken-import",
        "leap-broken-register",
    }


@pytest.mark.slow
def test_pip_installed_loader_is_listed_and_used_for_its_suffix(tmp_path, leap_data):
    target = tmp_path / "target"
    pip_install_project(tmp_path / "proj", target, "leap-jsonmodel", "leap_jsonmodel", JSON_LOADER)
    env = {"PYTHONPATH": str(target)}
    listing = _run_leap("plugins", env_extra=env)
    assert "json-model" in listing.stdout and "leap-jsonmodel 0.3.1" in listing.stdout
    (tmp_path / "m.model.json").write_text('{"value": 1}')
    np.save(tmp_path / "x.npy", leap_data.to_leap_array(), allow_pickle=True)
    done = _run_leap(
        "analyze", "m.model.json", "x.npy", "--n-repeats", "1", "-q", env_extra=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "importance.csv").exists()
    # A constant model loses nothing under permutation: every importance is exactly 0.
    assert np.all(leap.ImportanceResult.from_csv(tmp_path / "importance.csv").importances == 0)
