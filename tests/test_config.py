"""SensorLayout and AnalysisConfig."""

from __future__ import annotations

import numpy as np
import pytest

from leap import AnalysisConfig, SensorLayout
from leap.errors import ConfigError, LayoutError


def test_default_layout_is_the_original_study():
    layout = SensorLayout()
    assert layout.sensors == ("Left_Ankle", "Right_Ankle", "Left_Wrist", "Right_Wrist", "Sacrum")
    assert layout.dims == ("x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro")
    assert layout.n_features == len(layout.pairs) == 435
    # upper triangle, row-major, channels sensor-major
    i, j = np.triu_indices(30, k=1)
    channels = layout.channels
    for k in (0, 1, 5, 6, 100, 434):
        pair = layout.pairs[k]
        assert (pair.sensor_a, pair.dim_a) == channels[i[k]]
        assert (pair.sensor_b, pair.dim_b) == channels[j[k]]
    assert layout.feature_names[5] == "Left_Ankle.x_acc|Right_Ankle.x_acc"
    assert layout.feature_names[-1] == "Sacrum.y_gyro|Sacrum.z_gyro"


def test_any_sensor_set():
    layout = SensorLayout(sensors=["a", "b"], dims=["x", "y", "z"])
    assert layout.n_features == 15
    assert layout.describe() == "2 sensors × 3 dims = 15 pairs"


@pytest.mark.parametrize(
    "sensors,dims,message",
    [
        (["a", "a"], ["x"], "sensors: names must be unique, repeated: a"),
        (["a"], ["x", "y", "x"], "dims: names must be unique, repeated: x"),
        ([], ["x"], "sensors"),
    ],
)
def test_invalid_layouts(sensors, dims, message):
    with pytest.raises(LayoutError, match=message):
        SensorLayout.create(sensors, dims)


def test_toml_paths_are_relative_to_the_file_and_overrides_win(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "a.toml"
    path.write_text(
        'model_path = "m.pkl"\nfeature_matrix = "/data/x.npy"\nsave_csv_path = "o.csv"\n'
        "n_repeats = 3\n"
    )
    config = AnalysisConfig.from_toml(path, n_repeats=7, random_state=None)
    assert config.model_path == tmp_path / "cfg" / "m.pkl"
    assert str(config.feature_matrix) == "/data/x.npy"
    assert config.n_repeats == 7
    assert config.random_state == 42  # None means "not given", not "unseeded"


def test_toml_errors_are_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("model_path = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        AnalysisConfig.from_toml(bad)
    bad.write_text('model_path = "m"\nfeature_matrix = "x"\nsave_csv_path = "o"\nn_repeat = 3\n')
    with pytest.raises(ConfigError, match="n_repeat: Extra inputs are not permitted"):
        AnalysisConfig.from_toml(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        AnalysisConfig.from_toml(tmp_path / "missing.toml")


def test_config_validation_message():
    with pytest.raises(ConfigError, match="n_repeats: Input should be greater than or equal to 1"):
        AnalysisConfig.create(model_path="m", feature_matrix="x", save_csv_path="o", n_repeats=0)
