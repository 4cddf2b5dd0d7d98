"""refine / `leap refine`: leak-free curves over k and sensors, the 1-SE choice, the files."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import leap.workflows.selection
from leap import Engine, RefineResult, SensorLayout, permutation_importance, refine
from leap.cli import cli
from leap.workflows.demo import PLANTED_PAIRS, make_leap_dataset
from leap.workflows.refine import (
    FOLD_PREFIX,
    RefineError,
    _mark_choices,
    default_k_grid,
    write_matrix,
)
from leap.workflows.selection import SelectByImportance, neg_log_loss

LAYOUT = SensorLayout(dims=("x_acc", "z_gyro"))  # 5 sensors, 10 channels, 45 pairs
PLANTED = (
    "Left_Ankle.x_acc|Right_Ankle.x_acc",
    "Left_Wrist.z_gyro|Sacrum.x_acc",
    "Right_Ankle.z_gyro|Sacrum.z_gyro",
)
PLANTED_SENSORS = ("Left_Ankle", "Right_Ankle", "Left_Wrist", "Sacrum")
GRID = [1, 2, 3, 4, 6, 10, 20]


@pytest.fixture(scope="module")
def data():
    return make_leap_dataset(
        n_participants=12, windows_per_participant=20, layout=LAYOUT, planted=PLANTED
    )


@pytest.fixture(scope="module")
def result(data) -> RefineResult:
    return refine(
        LogisticRegression(max_iter=1000),
        data.X,
        data.y,
        participants=data.participants,
        layout=LAYOUT,
        k_grid=GRID,
        cv=4,
        n_repeats=2,
    )


def run(*args):
    Engine(load_entry_points=False).add_commands(cli)
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# -- what refine finds -------------------------------------------------------------------
def test_recovers_the_planted_pairs_and_sensors(result):
    assert result.k == 3
    assert set(result.features) == set(PLANTED)
    assert result.feature_ranking[:3] == result.features
    assert result.sensors == PLANTED_SENSORS
    assert result.cv == "GroupKFold, 4 folds by participant"
    assert result.scoring == "accuracy"
    full = result.full_model
    assert full["n_features"] == LAYOUT.n_features
    for chosen in (result.chosen_k, result.chosen_sensors):
        assert chosen["mean_score"] >= full["mean_score"] - full["sem_score"]


def test_one_standard_error_rule_on_the_curve(result):
    curve = result.curve
    for name, size in (("top_k", "n_features"), ("sensors", "n_sensors")):
        rows = curve[curve["curve"] == name]
        assert rows["best"].sum() == 1 and rows["choice"].sum() == 1
        best = rows.loc[rows["mean_score"].idxmax()]
        within = rows[rows["mean_score"] >= best["mean_score"] - best["sem_score"]]
        assert rows.loc[rows["choice"], size].item() == within[size].min()
    folds = curve[[c for c in curve if c.startswith(FOLD_PREFIX)]].to_numpy()
    assert folds.shape == (len(GRID) + 1 + 5, 4)  # the grid, all 45 features, 5 sensor sets
    np.testing.assert_allclose(curve["mean_score"], folds.mean(axis=1), rtol=0, atol=1e-12)
    sem = folds.std(axis=1, ddof=1) / np.sqrt(4)
    np.testing.assert_allclose(curve["sem_score"], sem, rtol=0, atol=1e-12)


def test_mark_choices_prefers_the_smallest_within_one_se():
    curve = pd.DataFrame(
        {
            "curve": ["top_k"] * 4,
            "n_features": [1, 2, 5, 10],
            "mean_score": [0.60, 0.78, 0.80, 0.79],
            "sem_score": [0.01, 0.01, 0.03, 0.01],
        }
    )
    marked = _mark_choices(curve)
    assert marked.loc[marked["best"], "n_features"].item() == 5
    assert marked.loc[marked["choice"], "n_features"].item() == 2  # 0.78 ≥ 0.80 − 0.03


def test_sensor_curve_follows_backward_elimination(result):
    path = result.sensor_path
    assert [len(s) for s in path] == [5, 4, 3, 2, 1]
    assert path[1] == PLANTED_SENSORS  # Right_Wrist goes first
    for before, after in itertools.pairwise(path):
        assert set(after) < set(before)
    rows = result.curve[result.curve["curve"] == "sensors"]
    assert rows["n_features"].tolist() == [45, 28, 15, 6, 1]
    # The first sensor row is the full model, the same fit as the last top-k row.
    full_k = result.curve[result.curve["curve"] == "top_k"].iloc[-1]
    np.testing.assert_array_equal(rows.iloc[0]["mean_score"], full_k["mean_score"])
    summary = result.summary()
    assert summary["sensors"]["elimination_order"][0] == "Right_Wrist"


# -- selection happens inside the folds ---------------------------------------------------
def test_noise_gives_chance_level_not_the_naive_inflated_score():
    """On pure noise, ranking inside each fold scores at chance; ranking on all data first
    (the naive way) reports a clearly better-than-chance score for the same k."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 400))
    y = np.tile([0, 1], 100)
    model = LogisticRegression(C=0.1, max_iter=1000)
    grid = [5, 10, 20]
    honest = refine(model, X, y, k_grid=grid, cv=5, n_repeats=2, random_state=1)
    rows = honest.curve.set_index("n_features")
    # naive: rank once on all rows, then cross-validate the top k on the same folds
    ranked = permutation_importance(
        LogisticRegression(C=0.1, max_iter=1000).fit(X, y),
        X,
        y,
        scoring=neg_log_loss,
        n_repeats=2,
        random_state=1,
    )
    order = np.argsort(-ranked.importances_mean, kind="stable")
    folds = StratifiedKFold(5, shuffle=True, random_state=1)
    naive = {k: cross_val_score(model, X[:, order[:k]], y, cv=folds).mean() for k in grid}
    for k in grid:
        assert abs(rows.at[k, "mean_score"] - 0.5) < 0.1, rows.at[k, "mean_score"]
    assert naive[20] > 0.65
    assert naive[20] - rows.at[20, "mean_score"] > 0.1
    assert honest.chosen_k["mean_score"] < 0.6


def test_rankings_never_see_the_test_fold(data, monkeypatch):
    """Every ranking is fitted on a training fold (or, for the final list, on all rows)."""
    fitted_on: list[frozenset[bytes]] = []
    original = SelectByImportance.fit

    def spy(self, X, y, participants=None):
        if self.groups is None:  # the top-k rankings (sensor steps see column subsets)
            fitted_on.append(frozenset(row.tobytes() for row in np.asarray(X)))
        return original(self, X, y, participants)

    monkeypatch.setattr(leap.workflows.selection.SelectByImportance, "fit", spy)
    rows = np.arange(len(data.y))
    splits = [(rows[rows % 3 != i], rows[rows % 3 == i]) for i in range(3)]
    out = refine(
        LogisticRegression(max_iter=1000),
        data.X,
        data.y,
        k_grid=[3],
        cv=splits,
        sensors=False,
        n_repeats=1,
    )
    train_sets = [frozenset(r.tobytes() for r in data.X[train]) for train, _ in splits]
    all_rows = frozenset(r.tobytes() for r in data.X)
    assert fitted_on == [*train_sets, all_rows]  # one per fold, then the final ranking
    for (_, test), seen in zip(splits, fitted_on, strict=False):
        assert not seen & {r.tobytes() for r in data.X[test]}
    assert out.cv == "3 given splits" and len(out.fold_rankings) == 3


# -- files --------------------------------------------------------------------------------
def test_csv_round_trip(result, tmp_path):
    path = result.to_csv(tmp_path / "out" / "curve.csv")
    back = pd.read_csv(path)
    assert list(back.columns[:10]) == [
        "curve",
        "n_features",
        "n_sensors",
        "sensors",
        "mean_score",
        "std_score",
        "sem_score",
        "stability",
        "best",
        "choice",
    ]
    np.testing.assert_allclose(back["mean_score"], result.curve["mean_score"], rtol=0, atol=0)
    assert back.loc[back["choice"] & (back["curve"] == "sensors"), "sensors"].item() == (
        ";".join(PLANTED_SENSORS)
    )
    assert not list(path.parent.glob(".*tmp*"))


def test_plot_shows_the_curves_and_marks_the_choices(result, tmp_path):
    path = tmp_path / "curve.png"
    fig = result.plot(path)
    assert isinstance(fig, Figure) and path.stat().st_size > 20_000
    top_k, sensors = fig.axes
    rows = result.curve[result.curve["curve"] == "top_k"]
    line = top_k.lines[0]
    np.testing.assert_array_equal(line.get_xdata(), rows["n_features"])
    np.testing.assert_allclose(line.get_ydata(), rows["mean_score"], rtol=0, atol=0)
    star = next(ln for ln in top_k.lines if ln.get_marker() == "*")
    assert star.get_xdata()[0] == result.k
    star = next(ln for ln in sensors.lines if ln.get_marker() == "*")
    assert star.get_xdata()[0] == len(PLANTED_SENSORS)
    labels = [t.get_text() for t in sensors.get_xticklabels()]
    assert labels[1] == "4\n− Right Wrist"
    with pytest.raises(RefineError, match=r"\.png, \.svg or \.pdf"):
        result.plot(tmp_path / "curve.jpg")


@pytest.mark.parametrize("suffix", [".csv", ".npz", ".parquet", ".npy"])
def test_reduced_matrix_reads_back(result, data, tmp_path, suffix, engine):
    from leap.components import FeatureMatrix

    matrix = FeatureMatrix(data.X, data.y, LAYOUT.feature_names, data.participants)
    columns = result.columns("features")
    path = write_matrix(matrix, columns, tmp_path / f"reduced{suffix}")
    back = engine.read_matrix(path, layout=LAYOUT)
    np.testing.assert_array_equal(back.X, data.X[:, columns])
    np.testing.assert_array_equal(back.y, data.y)
    if suffix != ".npy":  # a plain .npy has no room for names or ids
        assert back.feature_names == [LAYOUT.feature_names[j] for j in columns]
        assert back.participants.tolist() == data.participants.tolist()


def test_reduced_sensor_matrix_is_a_leap_layout_of_its_own(result, data, tmp_path, engine):
    from leap.components import FeatureMatrix

    sub = SensorLayout(sensors=PLANTED_SENSORS, dims=LAYOUT.dims)
    matrix = FeatureMatrix(data.X, data.y, LAYOUT.feature_names, data.participants)
    path = write_matrix(matrix, result.columns("sensors"), tmp_path / "four.npy", layout=sub)
    back = engine.read_matrix(path, layout=sub)
    assert back.feature_names == sub.feature_names
    assert back.participants.tolist() == data.participants.tolist()
    np.testing.assert_array_equal(back.X, data.X[:, result.columns("sensors")])


# -- settings and errors ----------------------------------------------------------------
def test_default_grid():
    assert default_k_grid(4) == [1, 2, 3, 4]
    grid = default_k_grid(435)
    assert grid[:10] == list(range(1, 11)) and grid[-1] == 435
    assert all(b > a for a, b in itertools.pairwise(grid))


def test_regression_without_participants_uses_plain_folds():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    y = 3 * X[:, 2] + 0.1 * rng.normal(size=80)
    out = refine(Ridge(), X, y, k_grid=[1, 2], cv=3, n_repeats=2)
    assert out.cv == "KFold, 3 folds" and out.scoring == "r2"
    assert out.features == ["x2"] and out.sensors is None
    assert set(out.curve["curve"]) == {"top_k"}
    assert out.params["rank_scoring"] == "r2"


def test_leave_one_participant_out(data):
    few = np.isin(data.participants, np.unique(data.participants)[:4])
    out = refine(
        LogisticRegression(max_iter=1000),
        data.X[few],
        data.y[few],
        participants=data.participants[few],
        layout=LAYOUT,
        k_grid=[3],
        cv="logo",
        sensors=False,
        n_repeats=1,
    )
    assert out.n_folds == 4 and out.cv == "leave one participant out, 4 folds"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cv": "logo"}, "needs participant ids"),
        ({"cv": 1}, "at least 2 folds"),
        ({"cv": "loo"}, "a number of folds or 'logo'"),
        ({"k_grid": [0, 3]}, "every k must be an integer from 1 to 45"),
        ({"sensors": True, "layout": SensorLayout()}, "needs the layout's 435 columns"),
        ({"feature_names": ["a"]}, "1 feature names for 45 columns"),
        ({"participants": ["p"]}, "one id per row"),
    ],
)
def test_bad_settings(data, kwargs, message):
    kwargs.setdefault("layout", LAYOUT)
    with pytest.raises(RefineError, match=message):
        refine(LogisticRegression(), data.X, data.y, **kwargs)


def test_a_model_that_cannot_be_cloned_is_refused(data):
    with pytest.raises(RefineError, match="must be a scikit-learn estimator"):
        refine(object(), data.X, data.y, layout=LAYOUT)


# -- the command line --------------------------------------------------------------------
@pytest.fixture
def files(tmp_path, data):
    model = LogisticRegression(max_iter=1000).fit(data.X, data.y)
    joblib.dump(model, tmp_path / "model.pkl")
    frame = pd.DataFrame(data.X, columns=LAYOUT.feature_names)
    frame["label"] = data.y
    frame["participant"] = data.participants
    frame.to_csv(tmp_path / "features.csv", index=False)
    return tmp_path


def test_cli_writes_curve_plot_summary_and_reduced_matrix(files, engine):
    out = files / "res" / "refine.csv"
    done = run(
        "refine",
        files / "model.pkl",
        files / "features.csv",
        "--sensors",
        ",".join(LAYOUT.sensors),
        "--dims",
        ",".join(LAYOUT.dims),
        "-o",
        out,
        "--k",
        ",".join(map(str, GRID)),
        "--cv",
        "4",
        "--n-repeats",
        "2",
        "--write-matrix",
        files / "res" / "reduced.csv",
        "--keep",
        "sensors",
    )
    assert done.exit_code == 0, done.output
    assert "GroupKFold, 4 folds by participant" in done.output
    assert "Top-k, 1-SE choice: k = 3" in done.output
    assert "Left_Ankle, Right_Ankle, Left_Wrist, Sacrum" in done.output
    summary = json.loads(out.with_suffix(".json").read_text())
    assert set(summary["top_k"]["features"]) == set(PLANTED)
    assert summary["sensors"]["sensors"] == list(PLANTED_SENSORS)
    assert summary["params"]["feature_matrix"].endswith("features.csv")
    assert out.with_suffix(".png").stat().st_size > 20_000
    reduced = engine.read_matrix(files / "res" / "reduced.csv")
    assert reduced.n_features == 28 and "Right_Wrist" not in " ".join(reduced.feature_names)


def test_cli_refuses_to_overwrite_its_input(files):
    done = CliRunner().invoke(
        cli,
        [
            "refine",
            str(files / "model.pkl"),
            str(files / "features.csv"),
            "--write-matrix",
            str(files / "features.csv"),
        ],
    )
    assert done.exit_code == 2
    assert "refusing to overwrite the input file" in done.output


def test_cli_rejects_a_bad_cv(files):
    done = run("refine", files / "model.pkl", files / "features.csv", "--cv", "many")
    assert done.exit_code == 2 and "a number of folds or 'logo'" in done.output


# -- the acceptance run: the full LEAP-shaped set through the console script -------
@pytest.mark.slow
def test_leap_refine_on_the_synthetic_leap_set(tmp_path):
    data = make_leap_dataset(n_participants=24, windows_per_participant=20)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    joblib.dump(model.fit(data.X, data.y), tmp_path / "model.pkl")
    np.save(tmp_path / "features.npy", data.to_leap_array(), allow_pickle=True)
    env = {**os.environ, "LEAP_LOAD_PLUGINS": ""}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("leap")),
            "refine",
            "model.pkl",
            "features.npy",
            "--n-repeats",
            "3",
            "--n-jobs",
            "2",
            "--write-matrix",
            "reduced.npy",
            "--keep",
            "sensors",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "refine.json").read_text())
    assert set(summary["sensors"]["sensors"]) == {
        "Left_Ankle",
        "Right_Ankle",
        "Left_Wrist",
        "Sacrum",
    }
    assert set(summary["top_k"]["features"]) == set(PLANTED_PAIRS)
    full = summary["full_model"]
    for chosen in (summary["top_k"], summary["sensors"]):
        assert chosen["mean_score"] >= full["mean_score"] - full["sem_score"]
    sub = SensorLayout(sensors=tuple(summary["sensors"]["sensors"]))
    reduced = Engine(load_entry_points=False).read_matrix(tmp_path / "reduced.npy", layout=sub)
    assert reduced.n_features == sub.n_features == 276


def test_docs_python_snippets_run_in_order(tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    text = (Path(__file__).resolve().parents[1] / "docs" / "refine.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "refine.md", "exec"), namespace)  # our own docs
    assert set(namespace["result"].features) == set(PLANTED)
    assert namespace["result"].sensors == PLANTED_SENSORS
    assert (tmp_path / "refine" / "curve.png").stat().st_size > 20_000
    assert json.loads((tmp_path / "refine" / "summary.json").read_text())["top_k"]["k"] == 3
    search = namespace["search"]
    assert search.best_params_ == {"select__k": 3}  # the three planted sensor pairs
    assert set(search.best_estimator_["select"].selected_units_) == {
        "Left_Ankle|Right_Ankle",
        "Left_Wrist|Sacrum",
        "Right_Ankle|Sacrum",
    }


def test_the_progress_bar_moves_with_every_fit(data, monkeypatch):
    """In this process the bar counts model fits, so it moves within a fold."""
    import leap.workflows.refine as refine_module

    bars = []

    class Recorder:
        def __init__(self, *args, total=None, **kwargs):
            self.total, self.n, self.steps = total, 0, []
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            self.n += n
            self.steps.append(self.n)

    monkeypatch.setattr(refine_module, "tqdm", Recorder)
    refine(Ridge(), data.X, data.y.astype(float), k_grid=[1, 2], cv=2, n_repeats=1, sensors=False)
    (bar,) = bars
    # 3 jobs (2 folds, then all data) x (1 ranking + 3 candidates: k = 1, 2 and all) = 12
    assert bar.total == 12 and bar.n == 12
    assert bar.steps[:4] == [1, 2, 3, 4]  # one step per fit inside the first fold
