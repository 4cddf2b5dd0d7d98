"""`leap doctor MODEL MATRIX`: every problem of a pair, found without running the analysis."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LinearRegression, LogisticRegression

from leap import Engine, SensorLayout, hookimpl
from leap.cli import cli
from leap.data.files import sha256_of
from leap.engine import get_engine
from leap.workflows.doctor import Diagnosis, diagnose

LAYOUT = SensorLayout(sensors=("Left_Ankle", "Right_Ankle", "Sacrum"), dims=("x", "y"))
LAYOUT_ARGS = ["--sensors", "Left_Ankle,Right_Ankle,Sacrum", "--dims", "x,y"]


@pytest.fixture
def pair(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, LAYOUT.n_features))
    y = (X[:, 3] > 0).astype(np.int64)
    model = LogisticRegression().fit(X, y)
    joblib.dump(model, tmp_path / "model.pkl")
    np.save(tmp_path / "features.npy", np.column_stack([X, y]))
    return {"dir": tmp_path, "X": X, "y": y, "model": model}


def doctor(*args: Any) -> Any:
    group = cli
    get_engine().add_commands(group)  # as the `leap` console script does
    return CliRunner().invoke(group, ["doctor", *map(str, args)])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_good_pair_is_ok(pair: dict[str, Any]) -> None:
    before = _files(pair["dir"])
    done = doctor(pair["dir"] / "model.pkl", pair["dir"] / "features.npy", *LAYOUT_ARGS)
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * (len(lines) - 1)
    topics = [line.split()[1] for line in lines[:-1]]
    assert topics == ["model", "matrix", "width", "names", "label", "scoring", "trial"]
    assert lines[-1] == "OK: no problems found; `leap analyze` should run on this pair."
    assert (
        "15 feature columns = the layout's 15 (3 sensors × 2 dims = 15 pairs) = the model's 15"
        in done.stdout
    )
    accuracy = pair["model"].score(pair["X"], pair["y"])
    assert f"baseline score = {accuracy:.4g} on 50 rows" in done.stdout
    assert _files(pair["dir"]) == before  # the doctor writes nothing


def test_every_problem_is_listed_with_exit_status_2(pair: dict[str, Any]) -> None:
    narrow = pair["dir"] / "narrow.pkl"
    joblib.dump(LogisticRegression().fit(pair["X"][:, :10], pair["y"]), narrow)
    done = doctor(narrow, pair["dir"] / "features.npy", *LAYOUT_ARGS, "--scoring", "r2")
    assert done.exit_code == 2
    problems = [line for line in done.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 2, done.stdout
    assert "width" in problems[0] and "was fitted on 10" in problems[0]
    assert "scoring" in problems[1] and "'r2' is a regression metric" in problems[1]
    assert done.stdout.splitlines()[-1] == "2 problems found; fix them first."
    assert "trial" not in done.stdout  # no scoring attempt once a check failed


def test_model_and_matrix_problems_are_both_found(pair: dict[str, Any]) -> None:
    joblib.dump({"not": "a model"}, pair["dir"] / "dict.pkl")
    X = pair["X"].copy()
    X[4, 2] = np.nan
    np.save(pair["dir"] / "nan.npy", np.column_stack([X, pair["y"]]))
    report = diagnose(
        pair["dir"] / "dict.pkl", pair["dir"] / "nan.npy", layout=LAYOUT, engine=_engine()
    )
    assert isinstance(report, Diagnosis) and not report.ok
    assert [(f.topic, f.ok) for f in report.findings] == [("model", False), ("matrix", False)]
    assert "holds a builtins.dict" in report.findings[0].message
    assert "NaN or infinite value(s)" in report.findings[1].message and "row(s) 4" in (
        report.findings[1].message
    )


def test_matrix_checks_run_without_a_model(pair: dict[str, Any]) -> None:
    report = diagnose(pair["dir"] / "missing.pkl", pair["dir"] / "features.npy", engine=_engine())
    assert [(f.topic, f.ok) for f in report.findings] == [
        ("model", False),
        ("matrix", True),
        ("width", False),  # the default LEAP layout has 435 features, not 15
    ]
    assert "model file not found" in report.findings[0].message
    assert "the layout expects 435" in report.findings[2].message


def test_label_and_class_problems(pair: dict[str, Any]) -> None:
    np.save(pair["dir"] / "one.npy", np.column_stack([pair["X"], np.ones(50)]))
    report = diagnose(
        pair["dir"] / "model.pkl", pair["dir"] / "one.npy", layout=LAYOUT, engine=_engine()
    )
    assert [f.topic for f in report.problems] == ["label"]
    assert "single class" in report.problems[0].message
    report = diagnose(
        pair["dir"] / "model.pkl",
        pair["dir"] / "features.npy",
        layout=LAYOUT,
        label="nope",
        engine=_engine(),
    )
    assert [f.topic for f in report.problems] == ["matrix"]
    assert "label 'nope' not found" in report.problems[0].message


def test_regressor_scorers(pair: dict[str, Any]) -> None:
    joblib.dump(LinearRegression().fit(pair["X"], pair["X"][:, 0]), pair["dir"] / "reg.pkl")
    report = diagnose(
        pair["dir"] / "reg.pkl",
        pair["dir"] / "features.npy",
        layout=LAYOUT,
        scoring="roc_auc",
        engine=_engine(),
    )
    assert [f.topic for f in report.problems] == ["scoring"]
    assert "classification metric but the model (LinearRegression) is a regressor" in (
        report.problems[0].message
    )
    ok = diagnose(
        pair["dir"] / "reg.pkl", pair["dir"] / "features.npy", layout=LAYOUT, engine=_engine()
    )
    assert ok.ok, ok.lines()
    assert "the model's own score() of LinearRegression (r2)" in "\n".join(ok.lines())


class BrokenModel:
    """Looks like a fitted classifier, but its predict fails on real data."""

    n_features_in_ = 15
    classes_ = np.array([0, 1])

    def fit(self, X: Any, y: Any) -> BrokenModel:
        return self

    def predict(self, X: Any) -> Any:
        raise ValueError("this model was built for another numpy")

    def score(self, X: Any, y: Any) -> float:
        return float(np.mean(self.predict(X) == y))


class BrokenLoaderPlugin:
    class Loader:
        name = "broken"
        suffixes = (".broken",)

        def load(self, path: Path) -> BrokenModel:
            return BrokenModel()

    @staticmethod
    @hookimpl
    def register_loaders(register):
        register(BrokenLoaderPlugin.Loader())


def test_trial_scoring_catches_what_the_checks_cannot(pair: dict[str, Any]) -> None:
    (pair["dir"] / "m.broken").write_text("any")
    engine = Engine(plugins=[BrokenLoaderPlugin], load_entry_points=False)
    report = diagnose(
        pair["dir"] / "m.broken", pair["dir"] / "features.npy", layout=LAYOUT, engine=engine
    )
    assert [f.topic for f in report.problems] == ["trial"]
    assert report.problems[0].message == (
        "scoring the unpermuted matrix failed: ValueError: this model was built for another numpy"
    )


class _MakesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_expect_sha256_is_checked_before_unpickling(pair: dict[str, Any]) -> None:
    marker = pair["dir"] / "ran"
    joblib.dump(_MakesMarker(marker), pair["dir"] / "hostile.pkl")
    done = doctor(
        pair["dir"] / "hostile.pkl",
        pair["dir"] / "features.npy",
        *LAYOUT_ARGS,
        "--expect-sha256",
        "a" * 64,
    )
    assert done.exit_code == 2
    assert "PROBLEM  model    " in done.stdout and "refusing to load it" in done.stdout
    assert not marker.exists()
    report = diagnose(
        pair["dir"] / "model.pkl",
        pair["dir"] / "features.npy",
        layout=LAYOUT,
        expect_sha256=sha256_of(pair["dir"] / "model.pkl"),
        engine=_engine(),
    )
    assert report.ok and "(SHA-256 as expected)" in report.findings[0].message


def test_doctor_is_listed_in_the_help() -> None:
    get_engine().add_commands(cli)
    done = CliRunner().invoke(cli, ["--help"])
    assert "doctor" in done.output
    assert "--expect-sha256" in CliRunner().invoke(cli, ["doctor", "--help"]).output


def _engine() -> Engine:
    return Engine(load_entry_points=False)
