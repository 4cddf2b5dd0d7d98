"""Interrupting an analysis (Ctrl-C) never costs an earlier result.

An analysis is interrupted in the middle of the permutations, while the CSV is being
written and while the figure is being written, in-process and with a real SIGINT sent to
a `leap analyze` process. Each time the previous CSV and PNG keep their exact bytes and no
temporary file is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from leap import Engine, SensorLayout, analyze_permutation_importance, hookimpl
from leap.components import MethodScores
from leap.data.result import ImportanceResult

LAYOUT = SensorLayout(sensors=("Left_Ankle", "Right_Ankle", "Sacrum"), dims=("x", "y"))


@pytest.fixture
def run(tmp_path: Path) -> dict[str, Any]:
    """Model and matrix files, and a first, complete analysis in ``tmp_path/out``."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, LAYOUT.n_features))
    y = (X[:, 2] - X[:, 9] > 0).astype(np.int64)
    joblib.dump(LogisticRegression().fit(X, y), tmp_path / "model.pkl")
    np.save(tmp_path / "features.npy", np.column_stack([X, y]))
    out = tmp_path / "out" / "importance.csv"
    plugin = InterruptedMethodPlugin()
    engine = Engine(plugins=[plugin], load_entry_points=False)
    options = {"layout": LAYOUT, "n_repeats": 2, "save_csv_path": out, "engine": engine}
    analyze_permutation_importance(tmp_path / "model.pkl", tmp_path / "features.npy", **options)
    return {
        "dir": tmp_path,
        "out": out,
        "options": options,
        "method": plugin.method,
        "before": _snapshot(out.parent),
    }


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (hidden temporary files included) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _analyze(run: dict[str, Any], **overrides: Any) -> ImportanceResult:
    options = {**run["options"], **overrides}
    return analyze_permutation_importance(
        run["dir"] / "model.pkl", run["dir"] / "features.npy", **options
    )


class InterruptedMethod:
    """Scores half of the columns like the built-in method, then Ctrl-C arrives."""

    name = "interrupted"

    def __init__(self) -> None:
        self.columns_done = 0

    def compute(self, estimator: Any, X: Any, y: Any, **options: Any) -> dict[str, MethodScores]:
        X = np.asarray(X)
        rng = np.random.default_rng(0)
        baseline = estimator.score(X, y)
        drops = []
        for column in range(X.shape[1]):
            if column == X.shape[1] // 2:
                raise KeyboardInterrupt
            shuffled = X.copy()
            shuffled[:, column] = rng.permutation(shuffled[:, column])
            drops.append(baseline - estimator.score(shuffled, y))
            self.columns_done += 1
        raise AssertionError("never reached")


class InterruptedMethodPlugin:
    """An in-process plugin providing :class:`InterruptedMethod`."""

    def __init__(self) -> None:
        self.method = InterruptedMethod()

    @hookimpl
    def register_methods(self, register):
        register(self.method)


def test_first_run_wrote_both_outputs(run: dict[str, Any]) -> None:
    assert set(run["before"]) == {"importance.csv", "importance.png"}
    assert ImportanceResult.from_csv(run["out"]).importances.shape == (LAYOUT.n_features, 2)


def test_interrupt_during_the_permutations(run: dict[str, Any]) -> None:
    with pytest.raises(KeyboardInterrupt):
        _analyze(run, method="interrupted")
    assert run["method"].columns_done == LAYOUT.n_features // 2
    assert _snapshot(run["out"].parent) == run["before"]


def test_interrupt_while_the_csv_is_written(run: dict[str, Any], monkeypatch) -> None:
    real_to_csv = pd.DataFrame.to_csv

    def half_then_interrupt(self: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> None:
        real_to_csv(self.head(len(self) // 2), path, *args, **kwargs)
        assert Path(path).stat().st_size > 0  # a partial file exists at this moment
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _analyze(run, random_state=7)
    assert _snapshot(run["out"].parent) == run["before"]


def test_interrupt_while_the_figure_is_written(run: dict[str, Any], monkeypatch) -> None:
    def partial_png(self: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        partial = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
        if hasattr(target, "write"):
            target.write(partial)
        else:
            Path(target).write_bytes(partial)
        raise KeyboardInterrupt

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", partial_png)
    with pytest.raises(KeyboardInterrupt):
        _analyze(run, random_state=7)
    after = _snapshot(run["out"].parent)
    assert set(after) == {"importance.csv", "importance.png"}  # no temporary file left
    # Outputs are committed as a set: the new CSV, written before the figure, was only
    # staged, so the earlier run's CSV and figure are both still there, together.
    assert after == run["before"]


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    from leap import hookimpl
    from leap.cli import main
    from leap.engine import get_engine

    started = Path(sys.argv[1])

    class Endless:
        name = "endless"

        def compute(self, estimator, X, y, **options):
            estimator.predict(X)
            started.touch()
            while True:  # a very long analysis, until Ctrl-C
                time.sleep(0.01)

    class Plugin:
        @staticmethod
        @hookimpl
        def register_methods(register):
            register(Endless())

    get_engine().register(Plugin)
    sys.argv = ["leap", *sys.argv[2:]]
    main()
    """
)


@pytest.mark.slow  # starts a Python process (a few seconds)
def test_sigint_to_a_running_leap_analyze(run: dict[str, Any]) -> None:
    """A real Ctrl-C (SIGINT) to `leap analyze` in the middle of the analysis."""
    started = run["dir"] / "started"
    args = [
        sys.executable, "-c", SCRIPT, str(started), "analyze",
        str(run["dir"] / "model.pkl"), str(run["dir"] / "features.npy"),
        "-o", str(run["out"]), "--method", "endless",
        "--sensors", ",".join(LAYOUT.sensors), "--dims", ",".join(LAYOUT.dims),
    ]  # fmt: skip
    env = {**os.environ, "LEAP_LOAD_PLUGINS": ""}
    # A shell running the suite in the background (CI may) starts children with SIGINT
    # ignored, and Python then never turns it into KeyboardInterrupt: give the child the
    # default disposition a terminal's Ctrl-C meets.
    process = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120  # a guard against a hung child, not a measurement
        while not started.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), process.communicate(timeout=10)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode not in (0, 2), (process.returncode, stderr)
    assert b"Aborted" in stderr and b"Traceback" not in stderr, stderr
    assert _snapshot(run["out"].parent) == run["before"]
