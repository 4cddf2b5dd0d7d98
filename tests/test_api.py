"""The documented API, end to end on real files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.inspection import permutation_importance as sk_permutation_importance

import leap
from leap import (
    ImportanceResult,
    SensorLayout,
    analyze_permutation_importance,
    plot_sensor_pair_importance,
)


def test_documented_snippet_verbatim(leap_files, monkeypatch):
    monkeypatch.chdir(leap_files["dir"])
    (leap_files["dir"] / "path/to").mkdir(parents=True)
    leap_files["model"].rename("path/to/saved_model.pkl")
    leap_files["matrix"].rename("path/to/feature_matrix.npy")

    from leap import analyze_permutation_importance

    analyze_permutation_importance(
        model_path="path/to/saved_model.pkl",
        feature_matrix="path/to/feature_matrix.npy",
        label="label",
        save_csv_path="path/to/save/importance.csv",
        heatmap_title="Feature Importance Heatmap",
    )
    from leap import plot_sensor_pair_importance

    fig = plot_sensor_pair_importance(
        csv_file="path/to/save/importance.csv", title="Feature Importance Heatmap"
    )
    assert isinstance(fig, Figure)
    assert (leap_files["dir"] / "path/to/save/importance.csv").stat().st_size > 10_000
    assert (leap_files["dir"] / "path/to/save/importance.png").stat().st_size > 20_000


def test_analysis_equals_sklearn_and_writes_tidy_csv(leap_files, leap_data, leap_model):
    out = leap_files["dir"] / "out" / "imp.csv"
    result = analyze_permutation_importance(
        leap_files["model"], leap_files["matrix"], "label", out, "T", n_repeats=3
    )
    expected = sk_permutation_importance(
        leap_model, leap_data.X, leap_data.y, n_repeats=3, random_state=42
    )
    np.testing.assert_allclose(result.importances, expected.importances, rtol=0, atol=1e-12)
    frame = pd.read_csv(out)
    assert list(frame.columns[:8]) == [
        "feature",
        "sensor_a",
        "dim_a",
        "sensor_b",
        "dim_b",
        "importance_mean",
        "importance_std",
        "rank",
    ]
    assert [c for c in frame.columns if c.startswith("repeat_")] == [
        "repeat_1",
        "repeat_2",
        "repeat_3",
    ]
    assert len(frame) == 435
    assert frame["feature"].tolist() == SensorLayout().feature_names
    np.testing.assert_allclose(frame["importance_mean"], expected.importances_mean, atol=1e-12)
    np.testing.assert_allclose(frame["importance_std"], expected.importances_std, atol=1e-12)
    assert frame.loc[frame["importance_mean"].idxmax(), "rank"] == 1
    assert out.with_suffix(".png").exists()
    assert result.params["n_samples"] == leap_data.X.shape[0]


def test_planted_pairs_rank_on_top(leap_files, leap_data):
    result = analyze_permutation_importance(
        leap_files["model"], leap_files["matrix"], "label", leap_files["dir"] / "i.csv"
    )
    top = set(result.top(len(leap_data.planted))["feature"])
    assert top == set(leap_data.planted)


def test_keywords_reach_the_engine(leap_files, leap_data, leap_model):
    heatmap = leap_files["dir"] / "fig.svg"
    result = analyze_permutation_importance(
        leap_files["model"],
        leap_files["matrix"],
        label=-2,
        save_csv_path=leap_files["dir"] / "i.csv",
        n_repeats=2,
        random_state=7,
        scoring="balanced_accuracy",
        max_samples=0.5,
        heatmap_path=heatmap,
        loader="pickle",
        reader="npy",
    )
    expected = sk_permutation_importance(
        leap_model,
        leap_data.X,
        leap_data.y,
        n_repeats=2,
        random_state=7,
        scoring="balanced_accuracy",
        max_samples=0.5,
    )
    np.testing.assert_allclose(result.importances, expected.importances, rtol=0, atol=1e-12)
    assert result.scoring == "balanced_accuracy"
    assert heatmap.read_text().lstrip().startswith("<?xml")


def test_custom_layout(tmp_path, small_data):
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(small_data.X, small_data.y)
    import joblib

    joblib.dump(model, tmp_path / "m.joblib")
    np.savez(tmp_path / "x.npz", X=small_data.X, y=small_data.y)
    result = analyze_permutation_importance(
        tmp_path / "m.joblib",
        tmp_path / "x.npz",
        "label",
        tmp_path / "i.csv",
        layout=small_data.layout,
        n_repeats=2,
    )
    assert result.feature_names == small_data.layout.feature_names
    assert len(result.feature_names) == 15
    assert result.sensors == small_data.layout.sensors


def test_width_mismatch_says_both_numbers(leap_files, small_data):
    with pytest.raises(
        leap.LeapError,
        match=r"435 feature columns, the layout expects 15 .* model was fitted on 435",
    ):
        analyze_permutation_importance(
            leap_files["model"],
            leap_files["matrix"],
            "label",
            leap_files["dir"] / "i.csv",
            layout=small_data.layout,
        )


def test_drop_in_permutation_importance_matches_sklearn(small_data):
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier().fit(small_data.X, small_data.y)
    for seed in (0, 1, 2):
        ours = leap.permutation_importance(
            model, small_data.X, small_data.y, n_repeats=4, random_state=seed
        )
        theirs = sk_permutation_importance(
            model, small_data.X, small_data.y, n_repeats=4, random_state=seed
        )
        for key in ("importances_mean", "importances_std", "importances"):
            np.testing.assert_allclose(ours[key], theirs[key], rtol=0, atol=1e-12)
            np.testing.assert_allclose(getattr(ours, key), theirs[key], rtol=0, atol=1e-12)
    assert isinstance(ours, ImportanceResult)


def test_drop_in_multi_metric_and_dataframe(small_data):
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame(small_data.X, columns=small_data.layout.feature_names)
    model = LogisticRegression().fit(frame, small_data.y)
    scoring = ["accuracy", "neg_log_loss"]
    ours = leap.permutation_importance(
        model, frame, small_data.y, scoring=scoring, n_repeats=3, random_state=0
    )
    theirs = sk_permutation_importance(
        model, frame, small_data.y, scoring=scoring, n_repeats=3, random_state=0
    )
    assert set(ours) == set(scoring)
    for name in scoring:
        np.testing.assert_allclose(
            ours[name].importances, theirs[name].importances, rtol=0, atol=1e-12
        )
        assert ours[name].feature_names == small_data.layout.feature_names


def test_drop_in_with_layout_names_features_by_sensor(small_data):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(small_data.X, small_data.y)
    result = leap.permutation_importance(
        model, small_data.X, small_data.y, layout=small_data.layout, random_state=0
    )
    assert result.pairs[0].sensor_a == "Left_Ankle"
    assert result.sensor_matrix().shape == (3, 3)


def test_plot_returns_figure_without_saving(tmp_path, small_data):
    result = ImportanceResult.from_layout(np.ones((15, 2)), small_data.layout)
    result.to_csv(tmp_path / "r.csv")
    fig = plot_sensor_pair_importance(tmp_path / "r.csv", "t")
    assert isinstance(fig, Figure)
    assert list(tmp_path.iterdir()) == [tmp_path / "r.csv"]
