"""Per-participant importances, their spread, and the confidence intervals of the means."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from leap import ImportanceResult, SensorLayout, analyze_permutation_importance
from leap import permutation_importance as leap_permutation_importance
from leap.data.grouping import sensor_pair_grouping
from leap.errors import MatrixError
from leap.workflows.participants import ParticipantSpread, compute_spreads

SMALL_LAYOUT = SensorLayout(sensors=("Left_Ankle", "Right_Ankle", "Sacrum"), dims=("x", "y"))


@pytest.fixture(scope="module")
def small_model(small_data):
    return LogisticRegression(max_iter=1000).fit(small_data.X, small_data.y)


@pytest.fixture
def small_files(tmp_path, small_data, small_model):
    joblib.dump(small_model, tmp_path / "model.pkl")
    np.save(tmp_path / "features.npy", small_data.to_leap_array(), allow_pickle=True)
    return tmp_path


def test_each_participant_is_permuted_on_its_own_rows(engine, small_data, small_model):
    grouping = sensor_pair_grouping(SMALL_LAYOUT)
    features, pairs = compute_spreads(
        engine,
        small_model,
        small_data.X,
        small_data.y,
        small_data.participants,
        [None, grouping],
        names=SMALL_LAYOUT.feature_names,
        n_repeats=3,
        random_state=5,
    )
    assert features.participants == [f"P{i:02d}" for i in range(1, 7)]
    assert features.values.shape == (15, 6)
    assert pairs.values.shape == (6, 6)
    assert pairs.names == grouping.names and pairs.level == "sensor_pair"
    np.testing.assert_array_equal(features.n_samples, [20] * 6)
    for column, pid in enumerate(features.participants):
        rows = small_data.participants == pid
        alone = leap_permutation_importance(
            small_model, small_data.X[rows], small_data.y[rows], n_repeats=3, random_state=5
        )
        np.testing.assert_allclose(
            features.values[:, column], alone.importances_mean, rtol=0, atol=1e-12
        )
        joint = leap_permutation_importance(
            small_model,
            small_data.X[rows],
            small_data.y[rows],
            n_repeats=3,
            random_state=5,
            groups=dict(zip(grouping.names, grouping.indices, strict=True)),
        )
        np.testing.assert_allclose(
            pairs.values[:, column], joint.importances_mean, rtol=0, atol=1e-12
        )
        assert features.baselines[column] == small_model.score(
            small_data.X[rows], small_data.y[rows]
        )


def test_spread_summary_statistics():
    values = np.array([[0.1, 0.3, 0.2, 0.6], [0.0, 0.0, 0.0, 0.0], [-0.2, 0.1, -0.1, 0.0]])
    spread = ParticipantSpread(
        names=["a", "b", "c"],
        participants=["p1", "p2", "p3", "p4"],
        values=values,
        n_samples=np.array([5, 5, 5, 5]),
        baselines=np.ones(4),
        ci_level=0.9,
    )
    summary = spread.summary()
    np.testing.assert_allclose(summary["participant_mean"], values.mean(axis=1))
    np.testing.assert_allclose(summary["participant_std"], values.std(axis=1, ddof=1))
    np.testing.assert_allclose(summary["participant_min"], values.min(axis=1))
    np.testing.assert_allclose(summary["participant_max"], values.max(axis=1))
    low, high = stats.t.interval(0.9, 3, loc=values[0].mean(), scale=stats.sem(values[0], ddof=1))
    assert summary.loc[0, "ci_low"] == pytest.approx(low, abs=1e-12)
    assert summary.loc[0, "ci_high"] == pytest.approx(high, abs=1e-12)
    assert list(summary["ci_includes_zero"]) == [False, True, True]
    assert list(summary["n_positive"]) == [4, 0, 1]
    wide = spread.to_frame()
    assert list(wide.columns[-4:]) == [
        "participant_p1",
        "participant_p2",
        "participant_p3",
        "participant_p4",
    ]
    np.testing.assert_array_equal(wide[["participant_p1", "participant_p4"]], values[:, [0, 3]])


def test_participants_that_cannot_be_scored_are_left_out_with_a_reason(engine, small_data):
    X, y = small_data.X, small_data.y.copy()
    ids = small_data.participants.astype(object)
    ids[0] = "LONE"  # one row only
    y[ids == "P02"] = 1  # one class only: ROC AUC is undefined there
    model = LogisticRegression(max_iter=1000).fit(X, y)
    (spread,) = compute_spreads(
        engine,
        model,
        X,
        y,
        ids,
        [None],
        names=SMALL_LAYOUT.feature_names,
        n_repeats=2,
        random_state=0,
        scoring="roc_auc",
    )
    assert "LONE" not in spread.participants and "P02" not in spread.participants
    assert spread.skipped["LONE"] == "only 1 row(s)"
    assert "undefined" in spread.skipped["P02"]
    assert spread.n_participants == 5


def test_no_participant_scorable_is_an_error(engine, small_data, small_model):
    with pytest.raises(MatrixError, match="no participant could be analysed"):
        compute_spreads(
            engine,
            small_model,
            small_data.X,
            small_data.y,
            np.arange(len(small_data.y)),
            [None],
            names=SMALL_LAYOUT.feature_names,
            n_repeats=1,
        )


def test_one_api_call_gives_groups_participants_and_their_csv(small_files):
    result = analyze_permutation_importance(
        small_files / "model.pkl",
        small_files / "features.npy",
        save_csv_path=small_files / "out" / "imp.csv",
        layout=SMALL_LAYOUT,
        groups=["sensor_pair", "sensor"],
        per_participant=True,
        n_repeats=2,
        random_state=0,
    )
    assert list(result.groups) == ["sensor_pair", "sensor"]
    assert result.spread.n_participants == 6
    assert result.groups["sensor"].spread.names == list(SMALL_LAYOUT.sensors)
    frame = pd.read_csv(small_files / "out" / "imp_participants.csv")
    assert list(frame["level"].value_counts().sort_index().items()) == [
        ("feature", 15),
        ("sensor", 3),
        ("sensor_pair", 6),
    ]
    for column in (
        "participant_mean",
        "participant_std",
        "participant_min",
        "participant_max",
        "ci_low",
        "ci_high",
        "ci_includes_zero",
    ):
        assert column in frame.columns
    assert [c for c in frame.columns if c.startswith("participant_P")] == [
        f"participant_P{i:02d}" for i in range(1, 7)
    ]
    sensor_rows = frame[frame["level"] == "sensor"]
    np.testing.assert_allclose(
        sensor_rows["participant_mean"], result.groups["sensor"].spread.mean, rtol=0, atol=1e-15
    )
    grouped = ImportanceResult.from_csv(small_files / "out" / "imp_sensor_pair.csv")
    np.testing.assert_array_equal(grouped.importances, result.groups["sensor_pair"].importances)
    assert result.params["n_participants"] == 6
    assert len(result.params["model_sha256"]) == 64


def test_per_participant_needs_participant_ids(tmp_path, small_data, small_model):
    joblib.dump(small_model, tmp_path / "model.pkl")
    frame = pd.DataFrame(small_data.X, columns=SMALL_LAYOUT.feature_names)
    frame["label"] = small_data.y
    frame.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(MatrixError, match="carries no participant ids"):
        analyze_permutation_importance(
            tmp_path / "model.pkl",
            tmp_path / "m.csv",
            save_csv_path=tmp_path / "o.csv",
            layout=SMALL_LAYOUT,
            per_participant=True,
            n_repeats=1,
        )
    assert not (tmp_path / "o.csv").exists()


# -- confidence intervals of the mean over repeats ------------------------------------------


def test_ci_columns_in_the_csv_and_their_values(tmp_path):
    rng = np.random.default_rng(0)
    importances = np.vstack(
        [rng.normal(0.2, 0.01, 5), rng.normal(0.0, 0.05, 5), np.full(5, 0.0), np.full(5, 0.3)]
    )
    result = ImportanceResult(importances, ["a", "b", "c", "d"])
    frame = result.to_frame()
    for column in ("ci_low", "ci_high", "ci_includes_zero", "ci_level"):
        assert column in frame.columns
    for row, values in enumerate(importances[:2]):
        low, high = stats.t.interval(0.95, 4, loc=values.mean(), scale=stats.sem(values))
        assert frame.loc[row, "ci_low"] == pytest.approx(low, abs=1e-12)
        assert frame.loc[row, "ci_high"] == pytest.approx(high, abs=1e-12)
    for row in (2, 3):  # constant repeats: the interval shrinks to the point
        assert frame.loc[row, "ci_low"] == frame.loc[row, "ci_high"] == importances[row, 0]
    assert (frame["ci_low"] <= frame["importance_mean"]).all()
    assert (frame["importance_mean"] <= frame["ci_high"]).all()
    assert list(frame["ci_includes_zero"]) == [False, True, True, False]
    back = ImportanceResult.from_csv(result.to_csv(tmp_path / "r.csv"))
    np.testing.assert_array_equal(back.ci_low, result.ci_low)
    np.testing.assert_array_equal(back.ci_includes_zero, result.ci_includes_zero)
    assert back.ci_level == 0.95


def test_ci_with_one_repeat_is_undefined_and_round_trips(tmp_path):
    result = ImportanceResult(np.array([[0.5], [-0.1]]), ["a", "b"])
    assert np.isnan(result.ci_low).all() and np.isnan(result.ci_high).all()
    assert result.ci_includes_zero.all()  # no evidence either way
    back = ImportanceResult.from_csv(result.to_csv(tmp_path / "one.csv"))
    assert np.isnan(back.ci_low).all()


def test_stored_ci_is_kept_when_the_repeats_are_dropped(tmp_path):
    result = ImportanceResult(
        np.array([[0.1, 0.2, 0.3], [0.0, 0.1, -0.1]]), ["a", "b"], ci_level=0.8
    )
    frame = result.to_frame().drop(columns=["repeat_1", "repeat_2", "repeat_3"])
    frame.to_csv(tmp_path / "summary.csv", index=False)
    back = ImportanceResult.from_csv(tmp_path / "summary.csv")
    assert back.ci_level == 0.8
    np.testing.assert_allclose(back.ci_high, result.ci_high, rtol=0, atol=1e-15)


def test_ci_covers_the_true_mean_at_about_its_level():
    rng = np.random.default_rng(42)
    draws = rng.normal(0.1, 0.05, size=(4000, 6))
    result = ImportanceResult(draws, [f"f{i}" for i in range(4000)], ci_level=0.9)
    covered = np.mean((result.ci_low <= 0.1) & (0.1 <= result.ci_high))
    assert 0.88 < covered < 0.92


def test_legacy_csv_still_reads(tmp_path):
    path = tmp_path / "legacy.csv"
    path.write_text(
        "Pair,Dimensions,Importance\n\"('Left_Ankle', 'Sacrum')\",\"('x_acc', 'y_acc')\",0.25\n",
        encoding="utf-8",
    )
    result = ImportanceResult.from_csv(path)
    assert result.level == "feature" and result.row_sensors == [("Left_Ankle", "Sacrum")]
    assert np.isnan(result.ci_low[0]) and bool(result.ci_includes_zero[0])


def test_interpreting_doc_snippets_run(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    doc = Path(__file__).resolve().parents[1] / "docs" / "interpreting.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)  # our own documentation
    result = namespace["result"]
    assert set(result.groups) == {"sensor_pair", "sensor"}
    written = {p.name for p in (tmp_path / "results").iterdir()}
    assert written == {
        "importance.csv",
        "importance_sensor_pair.csv",
        "importance_sensor.csv",
        "importance_participants.csv",
        "importance.png",
        "importance_channel_heatmap.png",
        "importance_bars.png",
        "importance_participants.png",
        "report.html",
    }
    # The planted relations lead the grouped ranking.
    top = set(result.groups["sensor_pair"].top(2)["feature"])
    assert top == {"Left_Ankle|Right_Ankle", "Right_Ankle|Sacrum"}
