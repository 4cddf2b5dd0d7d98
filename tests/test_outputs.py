"""Outputs are committed as a set: collisions and inputs refused before any work, nothing
half-written by a late failure or an interruption, stale temporary files swept, and a
score that means nothing refused instead of written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from click.testing import CliRunner

import leap
from leap.cli import cli
from leap.data.files import OutputSet, remove_stale_temporaries, staging_path
from leap.errors import LeapError


def run(*args: object) -> tuple[int, str]:
    done = CliRunner().invoke(cli, [str(a) for a in args])
    return done.exit_code, done.output


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("leap: error: "), output
    return lines[0]


@pytest.fixture
def earlier_run(leap_files):
    """A folder with a finished run in it, whose files must survive every failed run."""
    out = leap_files["dir"] / "out"
    code, output = run(
        "analyze", leap_files["model"], leap_files["matrix"], "-o", out / "imp.csv",
        "--n-repeats", "2", "-q",
    )  # fmt: skip
    assert code == 0, output
    return leap_files | {"out": out}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "{out}/imp.png"], "same file"),
        (["-o", "{out}/imp.csv", "--heatmap", "{out}/imp.csv"], "same file"),
        (["-o", "{out}/imp.csv", "--report", "{out}/imp.csv"], "same file"),
        (["-o", "{out}/r.html", "--report", "{out}/r.html"], "same file"),
        (["-o", "{out}/imp.csv", "--report", "{out}/report.pdf"], "writes .html, .htm files"),
        (["-o", "{model}"], "input file"),
        (["-o", "{out}/imp.csv", "--heatmap", "{matrix}"], "input file"),
        (["-o", "{out}/imp.csv", "--figures", "nope"], "no renderer named 'nope'"),
        (["-o", ""], "names no file"),
        (["-o", "."], "names no file"),
        (["-o", "/"], "names no file"),
        (["-o", "{out}/" + "x" * 300 + ".csv"], "the limit is 255"),
        (["-o", "{out}/imp.csv", "--max-samples", "inf"], "fraction"),
        (["-o", "{out}/imp.csv", "--max-samples", "nan"], "fraction"),
        (["-o", "{out}/imp.csv", "--max-samples", "-1"], "fraction"),
        (["-o", "{out}/imp.csv", "--max-samples", "2.5"], "whole number"),
        (["-o", "{out}/imp.csv", "--n-repeats", "0"], "--n-repeats"),
        (["-o", "{out}/t.csv", "--title", "$\\frac{$", "--n-repeats", "2"], None),
    ],
)
def test_bad_outputs_are_refused_before_any_work(earlier_run, extra, message):
    out = earlier_run["out"]
    before = snapshot(out)
    names = {"out": out, "model": earlier_run["model"], "matrix": earlier_run["matrix"]}
    args = list(extra)
    for key, value in names.items():
        args = [a.replace(f"{{{key}}}", str(value)) for a in args]
    code, output = run("analyze", earlier_run["model"], earlier_run["matrix"], *args, "-q")
    if message is None:  # a valid run: nothing to refuse
        assert code == 0, output
        return
    assert code == 2, output
    assert message in one_error_line(output)
    assert snapshot(out) == before
    assert not list(out.glob(".*"))


def test_outputs_may_not_replace_the_config_or_group_file(earlier_run, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        f'[analysis]\nmodel_path = "{earlier_run["model"]}"\n'
        f'feature_matrix = "{earlier_run["matrix"]}"\nsave_csv_path = "{tmp_path}/run.png"\n'
        f'heatmap_path = "{config}"\n',
        encoding="utf-8",
    )
    before = config.read_bytes()
    code, output = run("analyze", "--config", config, "-q")
    assert code == 2 and "input file" in one_error_line(output)
    assert config.read_bytes() == before
    groups = tmp_path / "groups.json"
    groups.write_text('{"ankles": [0, 1]}', encoding="utf-8")
    code, output = run(
        "analyze", earlier_run["model"], earlier_run["matrix"], "--group-file", groups,
        "-o", tmp_path / "groups.csv", "--heatmap", tmp_path / "x.png", "-q",
    )  # fmt: skip
    assert code == 0, output  # groups.csv is not groups.json
    code, output = run(
        "analyze", earlier_run["model"], earlier_run["matrix"], "--group-file", groups,
        "-o", tmp_path / "g.csv", "--report", groups, "-q",
    )  # fmt: skip
    assert code == 2 and "input file" in one_error_line(output)


def test_plot_and_compare_never_overwrite_their_inputs(earlier_run):
    csv = earlier_run["out"] / "imp.csv"
    before = csv.read_bytes()
    code, output = run("plot", csv, "-o", csv)
    assert code == 2 and "input file" in one_error_line(output)
    other = earlier_run["out"] / "other.csv"
    other.write_bytes(before)
    code, output = run("compare", csv, other, "-o", earlier_run["out"] / "imp")
    assert code == 2 and "input file" in one_error_line(output)
    assert csv.read_bytes() == before == other.read_bytes()


def test_a_run_failing_after_the_computation_leaves_the_earlier_set(earlier_run, monkeypatch):
    out = earlier_run["out"]
    before = snapshot(out)
    from leap.builtins.renderers import heatmap

    def explode(*args, **kwargs):
        raise LeapError("the heatmap could not be drawn")

    monkeypatch.setattr(heatmap.SensorPairHeatmap, "render", explode)
    code, output = run(
        "analyze", earlier_run["model"], earlier_run["matrix"], "-o", out / "imp.csv",
        "--n-repeats", "3", "--random-state", "1", "-q",
    )  # fmt: skip
    assert code == 2 and "could not be drawn" in one_error_line(output)
    assert snapshot(out) == before  # the new CSV was staged, never committed
    assert not list(out.glob(".*"))


class NanModel:
    """A model whose score is NaN on any data."""

    classes_ = np.array([0, 1])

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros(len(X), dtype=int)

    def score(self, X, y):
        return float("nan")


def test_a_score_that_means_nothing_is_refused(tmp_path, small_data):
    from conftest import SMALL_LAYOUT

    joblib.dump(NanModel(), tmp_path / "nan.pkl")
    np.savez(tmp_path / "m.npz", X=small_data.X, y=small_data.y)
    with pytest.raises(LeapError, match=r"score .* is nan"):
        leap.analyze_permutation_importance(
            tmp_path / "nan.pkl", tmp_path / "m.npz", save_csv_path=tmp_path / "o.csv",
            layout=SMALL_LAYOUT, n_repeats=2,
        )  # fmt: skip
    assert not (tmp_path / "o.csv").exists()


def test_stale_temporaries_of_dead_processes_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    stale = tmp_path / f".imp.csv.leap-{pid}-abcd1234.tmp.csv"
    stale.write_text("half")
    mine = staging_path(tmp_path / "imp.csv")
    mine.write_text("in progress")
    unrelated = tmp_path / ".hidden"
    unrelated.write_text("keep")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert mine.exists() and unrelated.exists() and not stale.exists()


def test_an_output_set_commits_together_or_not_at_all(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    targets = {"a": tmp_path / "a.txt", "b": tmp_path / "sub" / "b.txt"}
    with pytest.raises(KeyboardInterrupt), OutputSet(targets) as outputs:
        outputs.path("a").write_text("new a")
        raise KeyboardInterrupt
    assert (tmp_path / "a.txt").read_text() == "old a" and not (tmp_path / "sub" / "b.txt").exists()
    assert [p.name for p in tmp_path.rglob(".*")] == []
    with OutputSet(targets) as outputs:
        outputs.path("a").write_text("new a")
        outputs.path("b").write_text("new b")
        outputs.commit()
    assert (tmp_path / "a.txt").read_text() == "new a"
    assert (tmp_path / "sub" / "b.txt").read_text() == "new b"
    assert oct((tmp_path / "sub" / "b.txt").stat().st_mode & 0o777) != oct(0o600)


def test_an_unwritable_folder_is_one_line(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        "leap.data.files.os.access",
        lambda path, mode: False if Path(path) == locked else real_access(path, mode),
    )
    with pytest.raises(LeapError, match="read-only or permission denied"):
        OutputSet({"csv": locked / "x.csv"})
