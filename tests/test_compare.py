"""``leap compare``: matching two results, rank agreement, the difference heatmap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.image import imread
from scipy import stats

from leap import ImportanceResult, SensorLayout
from leap.builtins.renderers.compare import (
    compare_results,
    render_difference,
    render_rank_agreement,
)
from leap.builtins.renderers.heatmap import DIVERGING_COLORMAP
from leap.cli import cli
from leap.engine import Engine
from leap.errors import LeapError

LAYOUT = SensorLayout(sensors=("A", "B", "C"), dims=("x", "y"))


def _pair():
    rng = np.random.default_rng(3)
    base = np.linspace(0.0, 0.3, LAYOUT.n_features)
    a = ImportanceResult.from_layout(base[:, None] + rng.normal(0, 0.001, (15, 2)), LAYOUT)
    shifted = base.copy()
    shifted[[0, 14]] = shifted[[14, 0]]  # the best and the worst swap places
    b = ImportanceResult.from_layout(shifted[:, None] + rng.normal(0, 0.001, (15, 2)), LAYOUT)
    return a, b


def test_comparison_table_and_rank_correlations():
    a, b = _pair()
    comparison = compare_results(a, b, "m1", "m2")
    frame = comparison.frame
    assert list(frame["feature"]) == LAYOUT.feature_names
    np.testing.assert_allclose(frame["difference"], b.importances_mean - a.importances_mean)
    assert frame.loc[14, "rank_a"] == 1 and frame.loc[14, "rank_b"] == 15
    assert comparison.spearman == pytest.approx(
        stats.spearmanr(a.importances_mean, b.importances_mean).statistic
    )
    assert comparison.kendall == pytest.approx(
        stats.kendalltau(a.importances_mean, b.importances_mean).statistic
    )
    # Ranks 1 and 15 swapped: Spearman 1 - 6·(2·14²)/(15·(15²-1)) = 0.3; Kendall 1 - 2·27/105.
    assert comparison.spearman == pytest.approx(0.3, abs=1e-12)
    assert comparison.kendall == pytest.approx(1 - 2 * 27 / 105, abs=1e-12)
    same = compare_results(a, a)
    assert same.spearman == pytest.approx(1.0) and same.kendall == pytest.approx(1.0)


def test_rows_are_matched_by_name_not_position():
    a = ImportanceResult(np.array([[0.3], [0.2], [0.1]]), ["x", "y", "z"])
    b = ImportanceResult(np.array([[0.1], [0.3], [0.9]]), ["z", "x", "w"])
    comparison = compare_results(a, b)
    assert list(comparison.frame["feature"]) == ["x", "z"]
    np.testing.assert_allclose(comparison.frame["mean_b"], [0.3, 0.1])
    assert comparison.only_a == ["y"] and comparison.only_b == ["w"]
    with pytest.raises(LeapError, match="share 0 feature name"):
        compare_results(a, ImportanceResult(np.ones((2, 1)), ["p", "q"]))


def test_difference_heatmap_values(tmp_path):
    a, b = _pair()
    comparison = compare_results(a, b, "m1", "m2")
    fig = render_difference(comparison, tmp_path / "d.png", aggregate="sum")
    left, middle, right = fig.axes[:3]
    expected = b.sensor_matrix("sum").to_numpy() - a.sensor_matrix("sum").to_numpy()
    np.testing.assert_allclose(right.images[0].get_array().filled(np.nan), expected, atol=1e-15)
    np.testing.assert_allclose(
        left.images[0].get_array().filled(np.nan), a.sensor_matrix("sum").to_numpy()
    )
    assert right.images[0].cmap.name.startswith(DIVERGING_COLORMAP)
    assert right.get_title() == "m2 − m1" and middle.get_title() == "m2"
    # A and B share one colour scale, so equal values look equal.
    assert left.images[0].norm.vmax == middle.images[0].norm.vmax
    assert imread(tmp_path / "d.png").std() > 0.05


def test_rank_agreement_figure(tmp_path):
    a, b = _pair()
    comparison = compare_results(a, b, "m1", "m2")
    fig = render_rank_agreement(comparison, tmp_path / "r.svg", k=5)
    scatter = fig.axes[0].collections[0]
    np.testing.assert_array_equal(
        scatter.get_offsets(), comparison.frame[["rank_a", "rank_b"]].to_numpy()
    )
    title = fig.axes[0].get_title()
    assert f"Spearman ρ = {comparison.spearman:.3f}" in title
    assert f"Kendall τ = {comparison.kendall:.3f}" in title
    slope_labels = [t.get_text() for t in fig.axes[1].texts]
    assert "#15" in slope_labels  # the former best fell to the bottom
    assert (tmp_path / "r.svg").read_bytes().startswith(b"<?xml")


def test_leap_compare_command(tmp_path):
    a, b = _pair()
    a.to_csv(tmp_path / "cohort_a.csv")
    b.to_csv(tmp_path / "cohort_b.csv")
    Engine(load_entry_points=False).add_commands(cli)
    run = CliRunner().invoke(
        cli,
        [
            "compare",
            str(tmp_path / "cohort_a.csv"),
            str(tmp_path / "cohort_b.csv"),
            "-o",
            str(tmp_path / "cmp"),
            "--format",
            "pdf",
        ],
    )
    assert run.exit_code == 0, run.output
    assert "Spearman ρ" in run.output and "Kendall τ" in run.output
    for name in ("cmp_difference.pdf", "cmp_ranks.pdf"):
        assert (tmp_path / name).read_bytes().startswith(b"%PDF")
    table = pd.read_csv(tmp_path / "cmp.csv")
    assert list(table.columns) == [
        "feature",
        "mean_cohort_a",
        "mean_cohort_b",
        "difference",
        "rank_cohort_a",
        "rank_cohort_b",
    ]
    assert len(table) == 15


def test_compare_without_sensor_columns_still_ranks(tmp_path):
    ImportanceResult(np.array([[0.3], [0.2], [0.1]]), ["x", "y", "z"]).to_csv(tmp_path / "a.csv")
    ImportanceResult(np.array([[0.1], [0.3], [0.2]]), ["x", "y", "z"]).to_csv(tmp_path / "b.csv")
    Engine(load_entry_points=False).add_commands(cli)
    run = CliRunner().invoke(
        cli,
        ["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "-o", str(tmp_path / "c")],
    )
    assert run.exit_code == 0, run.output
    assert (tmp_path / "c_ranks.png").exists() and not (tmp_path / "c_difference.png").exists()
    assert "no difference heatmap" in run.output
