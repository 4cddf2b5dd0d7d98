"""Groupings (sensor_pair, sensor, user mappings) and grouped permutation importance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.inspection import permutation_importance as sk_permutation_importance
from sklearn.linear_model import LogisticRegression

from leap import Engine, ImportanceResult, SensorLayout, permutation_importance
from leap.data.grouping import (
    GroupingError,
    load_group_file,
    resolve_grouping,
    sensor_grouping,
    sensor_pair_grouping,
)
from leap.errors import LayoutError, ResultFormatError

# The layout of the ``small_data`` fixture: 3 sensors × 2 dims = 15 channel pairs.
SMALL_LAYOUT = SensorLayout(sensors=("Left_Ankle", "Right_Ankle", "Sacrum"), dims=("x", "y"))


def test_sensor_pair_grouping_partitions_the_leap_features():
    layout = SensorLayout()
    grouping = sensor_pair_grouping(layout)
    assert len(grouping) == 15  # 5 within-sensor + 10 between-sensor pairs
    sizes = dict(zip(grouping.names, map(len, grouping.indices), strict=True))
    assert sizes["Left_Ankle|Sacrum"] == 36  # 6 × 6 channel pairs
    assert sizes["Sacrum|Sacrum"] == 15  # 6 choose 2
    flat = sorted(i for group in grouping.indices for i in group)
    assert flat == list(range(435))  # every feature exactly once
    for name, members, sensors in zip(
        grouping.names, grouping.indices, grouping.sensors, strict=True
    ):
        assert name == "|".join(sensors)
        for k in members:
            pair = layout.pairs[k]
            assert sorted((pair.sensor_a, pair.sensor_b)) == sorted(sensors)


def test_sensor_grouping_holds_every_feature_involving_the_sensor():
    layout = SensorLayout()
    grouping = sensor_grouping(layout)
    assert grouping.names == list(layout.sensors)
    for sensor, members in zip(grouping.names, grouping.indices, strict=True):
        assert len(members) == 4 * 36 + 15  # its pairs with the 4 others, and within
        expected = [k for k, p in enumerate(layout.pairs) if sensor in (p.sensor_a, p.sensor_b)]
        assert members == expected


def test_user_mapping_by_names_and_indices():
    names = SMALL_LAYOUT.feature_names
    grouping = resolve_grouping(
        {"ankles": [names[0], "Left_Ankle.x|Right_Ankle.x"], "last": [-1, 3, 3]},
        layout=SMALL_LAYOUT,
        feature_names=names,
        n_features=15,
    )
    assert grouping.name == "custom"
    assert grouping.names == ["ankles", "last"]
    assert grouping.indices == [[0, names.index("Left_Ankle.x|Right_Ankle.x")], [14, 3]]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("channels", "unknown grouping 'channels'"),
        ({"g": ["nope"]}, "unknown feature 'nope'"),
        ({"g": [15]}, "out of range for 15 features"),
        ({"g": []}, "group 'g' is empty"),
        ({"g": "Left_Ankle.x|Right_Ankle.x"}, "must list feature names or column indices"),
        ({}, "mapping is empty"),
    ],
)
def test_bad_groupings_are_one_line_errors(spec, message):
    with pytest.raises(GroupingError, match=message):
        resolve_grouping(
            spec, layout=SMALL_LAYOUT, feature_names=SMALL_LAYOUT.feature_names, n_features=15
        )


def test_builtin_grouping_checks_the_layout_width():
    with pytest.raises(LayoutError, match="expects 435"):
        resolve_grouping("sensor_pair", layout=None, feature_names=None, n_features=15)


def test_group_file_json_and_toml(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps({"a": ["x", 1]}), encoding="utf-8")
    (tmp_path / "g.toml").write_text('[groups]\na = ["x", 1]\n', encoding="utf-8")
    (tmp_path / "bad.json").write_text('{"a": "x"}', encoding="utf-8")
    assert load_group_file(tmp_path / "g.json") == {"a": ["x", 1]}
    assert load_group_file(tmp_path / "g.toml") == {"a": ["x", 1]}
    with pytest.raises(GroupingError, match="must map group names to lists"):
        load_group_file(tmp_path / "bad.json")


# -- grouped permutation --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model(small_data):
    return LogisticRegression(max_iter=1000).fit(small_data.X, small_data.y)


@pytest.mark.parametrize("seed", [0, 7])
def test_single_column_groups_equal_the_plain_permutation(small_data, small_model, seed):
    X, y = small_data.X, small_data.y
    plain = permutation_importance(small_model, X, y, n_repeats=3, random_state=seed)
    singles = permutation_importance(
        small_model, X, y, n_repeats=3, random_state=seed, groups=[[j] for j in range(15)]
    )
    np.testing.assert_allclose(singles.importances, plain.importances, rtol=0, atol=1e-12)
    sk = sk_permutation_importance(small_model, X, y, n_repeats=3, random_state=seed)
    np.testing.assert_allclose(singles.importances, sk.importances, rtol=0, atol=1e-12)
    # One single-column group alone gives that column's row (same seed for every group).
    one = permutation_importance(
        small_model, X, y, n_repeats=3, random_state=seed, groups={"only": [4]}
    )
    assert one.feature_names == ["only"]
    np.testing.assert_allclose(one.importances[0], plain.importances[4], rtol=0, atol=1e-12)


def test_duplicated_informative_columns_score_higher_jointly():
    rng = np.random.default_rng(0)
    n = 400
    signal = rng.normal(size=n)
    noise = rng.normal(size=(n, 2))
    X = np.column_stack([signal, signal, noise])  # columns 0 and 1 are identical
    y = (signal + 0.3 * rng.normal(size=n) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    alone = permutation_importance(model, X, y, n_repeats=5, random_state=0)
    joint = permutation_importance(
        model, X, y, n_repeats=5, random_state=0, groups={"both": [0, 1], "noise": [2, 3]}
    )
    both = joint.importances_mean[0]
    # Each copy alone leaves the other intact; together the information is gone.
    assert both > alone.importances_mean[0] + 0.1
    assert both > alone.importances_mean[1] + 0.1
    assert both > 0.3
    assert abs(joint.importances_mean[1]) < 0.05


def test_builtin_groupings_through_the_api(small_data, small_model):
    result = permutation_importance(
        small_model,
        small_data.X,
        small_data.y,
        n_repeats=3,
        random_state=0,
        groups="sensor_pair",
        layout=SMALL_LAYOUT,
    )
    assert isinstance(result, ImportanceResult)
    assert result.level == "sensor_pair"
    assert result.feature_names == [
        "Left_Ankle|Left_Ankle",
        "Left_Ankle|Right_Ankle",
        "Left_Ankle|Sacrum",
        "Right_Ankle|Right_Ankle",
        "Right_Ankle|Sacrum",
        "Sacrum|Sacrum",
    ]
    assert result.group_sizes == [1, 4, 4, 1, 4, 1]
    # The planted pairs sit on Left_Ankle|Right_Ankle and Right_Ankle|Sacrum.
    best = set(np.array(result.feature_names)[np.argsort(-result.importances_mean)[:2]])
    assert best == {"Left_Ankle|Right_Ankle", "Right_Ankle|Sacrum"}
    # The heatmap can show these values directly, instead of sums of channel pairs.
    matrix = result.sensor_matrix("grouped")
    means = dict(zip(result.feature_names, result.importances_mean, strict=True))
    assert matrix.loc["Sacrum", "Right_Ankle"] == means["Right_Ankle|Sacrum"]
    # Within-sensor pairs are constant in LEAP data: unmeasurable, so masked, not 0.
    assert not result.measurable[0] and np.isnan(matrix.loc["Left_Ankle", "Left_Ankle"])

    sensors = permutation_importance(
        small_model,
        small_data.X,
        small_data.y,
        n_repeats=3,
        random_state=0,
        groups="sensor",
        layout=SMALL_LAYOUT,
    )
    assert sensors.level == "sensor"
    assert sensors.feature_names == list(SMALL_LAYOUT.sensors)
    assert sensors.group_sizes == [9, 9, 9]  # 2 × 4 cross pairs + 1 within


def test_grouped_result_csv_round_trip(tmp_path, small_data, small_model):
    result = permutation_importance(
        small_model,
        small_data.X,
        small_data.y,
        n_repeats=3,
        random_state=0,
        groups="sensor_pair",
        layout=SMALL_LAYOUT,
    )
    path = result.to_csv(tmp_path / "g.csv")
    frame = result.to_frame()
    assert list(frame.loc[1, ["sensor_a", "sensor_b", "dim_a", "dim_b"]]) == [
        "Left_Ankle",
        "Right_Ankle",
        "",
        "",
    ]
    back = ImportanceResult.from_csv(path)
    assert back.level == "sensor_pair"
    assert back.group_sizes == result.group_sizes
    assert back.row_sensors == result.row_sensors
    np.testing.assert_array_equal(back.importances, result.importances)
    np.testing.assert_array_equal(
        back.sensor_matrix("grouped").to_numpy(), result.sensor_matrix("grouped").to_numpy()
    )


def test_grouped_heatmap_needs_grouped_values():
    result = ImportanceResult.from_layout(np.ones((15, 2)), SMALL_LAYOUT)
    with pytest.raises(ResultFormatError, match="no grouped sensor-pair importances"):
        result.sensor_matrix("grouped")


def test_groupings_from_a_toml_config(tmp_path):
    from leap import AnalysisConfig

    (tmp_path / "a.toml").write_text(
        """
[analysis]
model_path = "model.pkl"
feature_matrix = "features.npy"
save_csv_path = "out/importance.csv"
groups = ["sensor"]
per_participant = true
heatmap_aggregate = "grouped"
report_path = "out/report.html"
renderers = ["heatmap", "participants"]

[analysis.custom_groups]
ankles = ["Left_Ankle.x_acc|Right_Ankle.x_acc", 0]
""",
        encoding="utf-8",
    )
    config = AnalysisConfig.from_toml(tmp_path / "a.toml")
    # A grouped heatmap needs the sensor-pair grouping: it is added, first.
    assert config.grouping_names == ["sensor_pair", "sensor", "custom"]
    assert config.custom_groups == {"ankles": ["Left_Ankle.x_acc|Right_Ankle.x_acc", 0]}
    assert config.report_path == tmp_path / "out" / "report.html"
    from leap.workflows.analyze import output_paths

    paths = output_paths(Engine(load_entry_points=False), config)
    assert paths["csv:custom"] == tmp_path / "out" / "importance_custom.csv"
    assert paths["figure:participants"] == tmp_path / "out" / "importance_participants.png"


def test_participants_figure_without_participants_is_refused_up_front():
    from leap import AnalysisConfig
    from leap.errors import ConfigError

    with pytest.raises(ConfigError, match="needs per_participant"):
        AnalysisConfig.create(
            model_path="m.pkl",
            feature_matrix="f.npy",
            save_csv_path="o.csv",
            renderers=["participants"],
        )
