"""The tidy CSV: round trip, atomic writes, and the original LEAP script's format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leap import ImportanceResult, SensorLayout
from leap.errors import ResultFormatError


def _result(layout=None, repeats=3, seed=0):
    layout = layout or SensorLayout()
    rng = np.random.default_rng(seed)
    return ImportanceResult.from_layout(
        rng.normal(size=(layout.n_features, repeats)), layout, scoring="accuracy"
    )


def test_round_trip_is_exact(tmp_path):
    result = _result()
    result.to_csv(tmp_path / "r.csv")
    back = ImportanceResult.from_csv(tmp_path / "r.csv")
    np.testing.assert_array_equal(back.importances, result.importances)
    assert back.feature_names == result.feature_names
    assert back.pairs == result.pairs
    assert back.sensors == SensorLayout().sensors
    np.testing.assert_array_equal(back.ranks, result.ranks)


def test_ranks_one_is_best_and_ties_share(tmp_path):
    layout = SensorLayout(sensors=("a", "b"), dims=("x",))
    result = ImportanceResult.from_layout(np.array([[0.5]]), layout)
    assert list(result.ranks) == [1]
    layout = SensorLayout(sensors=("a", "b", "c"), dims=("x",))
    tied = ImportanceResult.from_layout(np.array([[0.2], [0.5], [0.2]]), layout)
    assert list(tied.ranks) == [2, 1, 2]


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    _result(seed=1).to_csv(path)
    before = path.read_bytes()

    def boom(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        _result(seed=2).to_csv(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        _result().to_csv(tmp_path / "r.csv")
        assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o644
        (tmp_path / "r.csv").chmod(0o640)
        _result(seed=3).to_csv(tmp_path / "r.csv")  # replacing keeps the file's mode
        assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def _legacy_csv(path, rows):
    frame = pd.DataFrame(rows, columns=["Pair", "Dimensions", "Importance"])
    frame.to_csv(path)  # the original script kept pandas' index column
    return path


def test_reads_original_leap_csv(tmp_path):
    path = _legacy_csv(
        tmp_path / "legacy.csv",
        [
            ["('Left_Ankle', 'Right_Wrist')", "('x_acc', 'y_gyro')", 0.25],
            ['("Sacrum", "Left_Ankle")', '("z_acc", "x_acc")', -0.01],
            ["('Sacrum', 'Sacrum')", "('x_acc', 'y_acc')", 0.5],
        ],
    )
    result = ImportanceResult.from_csv(path)
    assert result.feature_names[0] == "Left_Ankle.x_acc|Right_Wrist.y_gyro"
    assert result.sensors == ("Left_Ankle", "Right_Wrist", "Sacrum")
    matrix = result.sensor_matrix()
    assert (
        matrix.loc["Left_Ankle", "Right_Wrist"] == matrix.loc["Right_Wrist", "Left_Ankle"] == 0.25
    )
    assert matrix.loc["Sacrum", "Left_Ankle"] == 0.0  # negative importances are not summed
    assert matrix.loc["Sacrum", "Sacrum"] == 0.5


@pytest.mark.parametrize(
    "cell",
    [
        "__import__('os').system('touch PWNED')",
        "(open('PWNED', 'w'), 'x')",
        "('a', 'b', 'c')",
        "['a', 'b']",
        "('a' 'b')",
    ],
)
def test_code_in_legacy_cells_is_never_run(tmp_path, monkeypatch, cell):
    monkeypatch.chdir(tmp_path)
    path = _legacy_csv(tmp_path / "evil.csv", [[cell, "('x', 'y')", 0.1]])
    with pytest.raises(ResultFormatError, match="row 2, column Pair: expected a pair of quoted"):
        ImportanceResult.from_csv(path)
    assert not (tmp_path / "PWNED").exists()


def test_unrecognised_columns(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ResultFormatError, match="found: 'a', 'b'"):
        ImportanceResult.from_csv(tmp_path / "x.csv")


def test_non_number_importance(tmp_path):
    result = _result(SensorLayout(sensors=("a", "b"), dims=("x",)), repeats=1)
    result.to_csv(tmp_path / "r.csv")
    text = (tmp_path / "r.csv").read_text().splitlines()
    text[1] = text[1].rsplit(",", 1)[0] + ",abc"
    (tmp_path / "r.csv").write_text("\n".join(text))
    with pytest.raises(ResultFormatError, match="repeat_1: expected a number, got 'abc'"):
        ImportanceResult.from_csv(tmp_path / "r.csv")


def test_bunch_compatibility():
    result = _result(repeats=4)
    assert result.keys() == ["importances_mean", "importances_std", "importances"]
    np.testing.assert_array_equal(result["importances_mean"], result.importances.mean(axis=1))
    np.testing.assert_array_equal(result.importances_std, result.importances.std(axis=1))
    assert result.importances.dtype == np.float64
