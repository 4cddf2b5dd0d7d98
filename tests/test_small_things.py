"""Small things a new user hit: scorer suggestions, ``-0.000``, compare's labels."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from leap import Engine, ImportanceResult, SensorLayout
from leap.checks import check_scoring
from leap.data.formatting import format_number
from leap.errors import ConfigError

LAYOUT = SensorLayout(sensors=("A", "B", "C"), dims=("x", "y"))


@pytest.mark.parametrize(
    ("typed", "suggested", "model"),
    [
        ("acc", "accuracy", LogisticRegression()),
        ("ACC", "accuracy", LogisticRegression()),
        ("balanced", "balanced_accuracy", LogisticRegression()),
        ("f1macro", "f1_macro", LogisticRegression()),
        ("mse", "neg_mean_squared_error", Ridge()),
        ("mean_absolute_error", "neg_mean_absolute_error", Ridge()),
    ],
)
def test_unknown_scoring_suggests_the_intended_name(typed, suggested, model):
    with pytest.raises(ConfigError, match=f"unknown scoring '{typed}'; did you mean {suggested}"):
        check_scoring(model, typed)


def test_unknown_scoring_without_a_close_name_points_to_the_list():
    with pytest.raises(ConfigError, match="get_scorer_names"):
        check_scoring(LogisticRegression(), "xyzzy")


@pytest.mark.parametrize(
    ("value", "spec", "shown"),
    [
        (-0.00002, ".4f", "0.0000"),
        (-0.00002, "+.4f", "+0.0000"),
        (-0.0, ".3f", "0.000"),
        (-0.0, ".2e", "0.00e+00"),
        (-0.0002, ".4f", "-0.0002"),
        (-1e-5, ".2e", "-1.00e-05"),
        (0.00002, "+.4f", "+0.0000"),
        (-np.inf, ".3f", "-inf"),
        (np.nan, ".3f", "nan"),
    ],
)
def test_format_number_never_shows_negative_zero(value, spec, shown):
    assert format_number(value, spec) == shown


def test_heatmap_cells_show_no_negative_zero():
    values = np.full((LAYOUT.n_features, 2), -1e-6)  # every cell rounds to zero
    values[0] = 0.3
    result = ImportanceResult.from_layout(values, LAYOUT)
    fig = result.plot(aggregate="signed")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts and not any(t.startswith(("-0.000", "−0.000")) for t in texts)
    assert "0.000" in texts


def test_compare_labels_tell_apart_two_files_with_the_same_name(tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("model_a", "model_b"):
        (tmp_path / folder).mkdir()
        values = rng.uniform(0.0, 0.3, (LAYOUT.n_features, 2))
        ImportanceResult.from_layout(values, LAYOUT).to_csv(tmp_path / folder / "importance.csv")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "leap",
            "compare",
            "model_a/importance.csv",
            "model_b/importance.csv",
            "-o",
            "cmp",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "model_b/importance − model_a/importance" in done.stdout
    columns = list(pd.read_csv(tmp_path / "cmp.csv").columns)
    assert "mean_model_a/importance" in columns and "mean_model_b/importance" in columns


def test_report_page_shows_no_negative_zero():
    values = np.full((LAYOUT.n_features, 3), -1e-7)
    values[0] = 0.2
    result = ImportanceResult.from_layout(values, LAYOUT, baseline_score=-1e-9)
    page = Engine(load_entry_points=False).render(result, None, renderer="report")
    assert "0.0000" in page and "-0.0000" not in page
