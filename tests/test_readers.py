"""Every built-in reader, on real files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leap.errors import InputFileError, MatrixError


def _frame(data):
    frame = pd.DataFrame(data.X, columns=data.layout.feature_names)
    frame["label"] = data.y
    frame["participant"] = data.participants
    return frame


def test_npy_original_leap_object_layout(engine, leap_files, leap_data):
    matrix = engine.read_matrix(leap_files["matrix"], "label")
    np.testing.assert_array_equal(matrix.X, leap_data.X)
    np.testing.assert_array_equal(matrix.y, leap_data.y)
    np.testing.assert_array_equal(matrix.participants, leap_data.participants)
    assert matrix.X.dtype == np.float64
    assert matrix.feature_names[0] == "Left_Ankle.x_acc|Left_Ankle.y_acc"
    assert matrix.label_name == "label"


def test_npy_numeric_leap_layout_with_numeric_participants(engine, tmp_path, small_data):
    ids = np.repeat(np.arange(6), 20).astype(float)
    np.save(tmp_path / "m.npy", np.column_stack([small_data.X, small_data.y, ids]))
    matrix = engine.read_matrix(tmp_path / "m.npy", "label", layout=small_data.layout)
    np.testing.assert_array_equal(matrix.participants, ids)
    assert matrix.feature_names == small_data.layout.feature_names


@pytest.mark.parametrize("label", ["label", -1, 4, "4"])
def test_npy_plain_numeric_label_by_name_or_index(engine, tmp_path, label):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(30, 5))
    data[:, 4] = rng.integers(0, 2, 30)
    np.save(tmp_path / "plain.npy", data)
    matrix = engine.read_matrix(tmp_path / "plain.npy", label)
    np.testing.assert_array_equal(matrix.X, data[:, :4])
    np.testing.assert_array_equal(matrix.y, data[:, 4])
    assert matrix.feature_names == ["x0", "x1", "x2", "x3"]


def test_npy_label_by_index_in_the_middle(engine, tmp_path):
    data = np.arange(12, dtype=float).reshape(4, 3)
    np.save(tmp_path / "plain.npy", data)
    matrix = engine.read_matrix(tmp_path / "plain.npy", 0)
    np.testing.assert_array_equal(matrix.y, data[:, 0])
    np.testing.assert_array_equal(matrix.X, data[:, 1:])


def test_npz(engine, tmp_path, small_data):
    np.savez(
        tmp_path / "m.npz",
        X=small_data.X,
        y=small_data.y,
        feature_names=np.array(small_data.layout.feature_names),
        participants=small_data.participants,
    )
    matrix = engine.read_matrix(tmp_path / "m.npz", layout=small_data.layout)
    np.testing.assert_array_equal(matrix.X, small_data.X)
    np.testing.assert_array_equal(matrix.participants, small_data.participants)
    assert matrix.feature_names == small_data.layout.feature_names


def test_npz_without_x_names_the_arrays(engine, tmp_path):
    np.savez(tmp_path / "m.npz", features=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(MatrixError, match=r"lacks the array.*X.*found: features, y"):
        engine.read_matrix(tmp_path / "m.npz")


def test_csv_and_parquet_round_trip(engine, tmp_path, small_data):
    frame = _frame(small_data)
    frame.to_csv(tmp_path / "m.csv", index=False)
    frame.to_parquet(tmp_path / "m.parquet")
    for name in ("m.csv", "m.parquet"):
        matrix = engine.read_matrix(tmp_path / name, "label", layout=small_data.layout)
        np.testing.assert_allclose(matrix.X, small_data.X, rtol=0, atol=0)
        np.testing.assert_array_equal(matrix.y, small_data.y)
        assert list(matrix.participants) == list(small_data.participants)
        assert matrix.feature_names == small_data.layout.feature_names


def test_csv_custom_label_and_participant_columns(engine, tmp_path, small_data):
    frame = _frame(small_data).rename(columns={"label": "activity", "participant": "subject"})
    frame.to_csv(tmp_path / "m.csv", index=False)
    matrix = engine.read_matrix(tmp_path / "m.csv", "activity", participant="subject")
    assert matrix.n_features == 15
    assert matrix.label_name == "activity"
    with pytest.raises(MatrixError, match=r"label 'label' not found.*available: .*activity"):
        engine.read_matrix(tmp_path / "m.csv", "label")


def test_string_labels_are_kept(engine, tmp_path):
    frame = pd.DataFrame(
        {"a": [0.1, 0.2, 0.3], "b": [1.0, 2.0, 3.0], "label": ["walk", "run", "walk"]}
    )
    frame.to_csv(tmp_path / "m.csv", index=False)
    matrix = engine.read_matrix(tmp_path / "m.csv")
    assert list(matrix.y) == ["walk", "run", "walk"]


def test_nan_is_reported_with_column_and_row(engine, tmp_path):
    frame = pd.DataFrame({"a": [0.1, np.nan, 0.3], "b": [1.0, 2.0, 3.0], "label": [0, 1, 0]})
    frame.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(MatrixError, match=r"NaN or infinite.*column\(s\) a .*row.* 1"):
        engine.read_matrix(tmp_path / "m.csv")


def test_object_npy_with_code_is_refused(engine, tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    array = np.empty((2, 3), dtype=object)
    array[:] = 1.0
    array[0, 0] = Evil()
    np.save(tmp_path / "evil.npy", array, allow_pickle=True)
    with pytest.raises(InputFileError, match=r"refusing to load builtins.print"):
        engine.read_matrix(tmp_path / "evil.npy")


def test_unknown_suffix_lists_known_ones(engine, tmp_path):
    (tmp_path / "m.xlsx").write_bytes(b"x")
    with pytest.raises(InputFileError, match=r"no reader handles 'm.xlsx'.*\.csv.*\.npy"):
        engine.read_matrix(tmp_path / "m.xlsx")


def test_missing_file(engine, tmp_path):
    with pytest.raises(InputFileError, match="feature matrix not found"):
        engine.read_matrix(tmp_path / "nope.npy")


def test_max_cells_limit_reads_the_environment(monkeypatch):
    from leap.builtins.readers import DEFAULT_MAX_CELLS, max_cells_limit
    from leap.errors import ConfigError

    monkeypatch.delenv("LEAP_MAX_CELLS", raising=False)
    assert max_cells_limit() == DEFAULT_MAX_CELLS
    assert max_cells_limit(7) == 7
    monkeypatch.setenv("LEAP_MAX_CELLS", " 2_000_000 ")
    assert max_cells_limit() == 2_000_000
    for bad in ("-5", "0", "1e6", "many"):
        monkeypatch.setenv("LEAP_MAX_CELLS", bad)
        with pytest.raises(ConfigError, match="LEAP_MAX_CELLS"):
            max_cells_limit()
    with pytest.raises(ConfigError, match="max_cells must be a positive"):
        max_cells_limit(True)


@pytest.mark.parametrize(
    "cell, numeric",
    [("1", True), ("-2.5", True), ("1e-3", True), (" 7 ", True), ("nan", False),
     ("inf", False), ("-Infinity", False), ("", False), ("label", False), ("x1", False)],
)  # fmt: skip
def test_looks_like_number(cell, numeric):
    from leap.builtins.readers import looks_like_number

    assert looks_like_number(cell) is numeric


def test_leap_object_file_round_trips_bitwise(engine, tmp_path, small_data):
    """The interpreter gives exactly what numpy wrote (float bits, labels, ids)."""
    array = small_data.to_leap_array()
    np.save(tmp_path / "m.npy", array, allow_pickle=True)
    matrix = engine.read_matrix(tmp_path / "m.npy", layout=small_data.layout)
    assert matrix.X.tobytes() == np.asarray(array[:, :-2], dtype=np.float64).tobytes()
    assert matrix.y.tolist() == array[:, -2].tolist()
    assert matrix.participants.tolist() == array[:, -1].tolist()
