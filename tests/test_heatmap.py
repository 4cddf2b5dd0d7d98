"""The built-in sensor-pair heatmap: values, files, formats."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from leap import ImportanceResult, SensorLayout, plot_sensor_pair_importance

LAYOUT = SensorLayout(sensors=("A", "B", "C"), dims=("x", "y"))


def _result():
    # 15 pairs; give each a distinct signed value so every aggregate is checkable.
    values = np.linspace(-0.2, 1.2, LAYOUT.n_features)
    return ImportanceResult.from_layout(values[:, None], LAYOUT)


def _expected(aggregate):
    result = _result()
    values = result.importances_mean
    if aggregate == "sum_positive":
        values = np.clip(values, 0, None)
    reduce = {"sum_positive": np.sum, "sum": np.sum, "mean": np.mean, "max": np.max}[aggregate]
    out = np.zeros((3, 3))
    for i, a in enumerate(LAYOUT.sensors):
        for j, b in enumerate(LAYOUT.sensors):
            sel = [
                v
                for p, v in zip(result.pairs, values, strict=True)
                if {p.sensor_a, p.sensor_b} == {a, b}
            ]
            out[i, j] = reduce(sel)
    return out


@pytest.mark.parametrize("aggregate", ["sum_positive", "sum", "mean", "max"])
def test_sensor_matrix_values(aggregate):
    matrix = _result().sensor_matrix(aggregate)
    np.testing.assert_allclose(matrix.to_numpy(), _expected(aggregate), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(matrix.to_numpy(), matrix.to_numpy().T)


def test_leap_default_sums_36_channel_pairs_per_sensor_pair():
    result = ImportanceResult.from_layout(np.ones((435, 1)), SensorLayout())
    matrix = result.sensor_matrix()
    assert matrix.loc["Left_Ankle", "Sacrum"] == 36  # 6 × 6 channel pairs
    assert matrix.loc["Sacrum", "Sacrum"] == 15  # 6 choose 2 within one sensor


def test_plotted_image_carries_the_matrix(tmp_path):
    path = tmp_path / "h.png"
    _result().to_csv(tmp_path / "r.csv")
    fig = plot_sensor_pair_importance(tmp_path / "r.csv", "Title here", path)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array().filled(np.nan), _expected("sum_positive"))
    assert ax.get_title() == "Title here"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C"]
    texts = {t.get_text() for t in ax.texts}
    assert f"{_expected('sum_positive')[0, 1]:.3f}" in texts
    assert "positive importances" in fig.axes[1].get_ylabel()
    pixels = imread(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 400
    assert pixels.std() > 0.05  # not a blank image


@pytest.mark.parametrize(
    "suffix,magic", [(".svg", b"<?xml"), (".pdf", b"%PDF"), (".png", b"\x89PNG")]
)
def test_formats_by_suffix(tmp_path, suffix, magic, engine):
    path = tmp_path / f"h{suffix}"
    engine.render(_result(), path, title="t")
    assert path.read_bytes().startswith(magic)


def test_wrong_suffix_is_a_clear_error(tmp_path, engine):
    from leap.errors import LeapError

    with pytest.raises(LeapError, match=r"writes \.png, \.svg, \.pdf files, not \.jpg"):
        engine.render(_result(), tmp_path / "h.jpg", title="t")


def test_result_without_sensors_cannot_be_drawn(engine):
    from leap.errors import ResultFormatError

    result = ImportanceResult(np.ones((2, 1)), ["a", "b"])
    with pytest.raises(ResultFormatError, match="no sensor information"):
        engine.render(result, None, title="t")
