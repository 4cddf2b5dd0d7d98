"""The `leap` command line, on real files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
from click.testing import CliRunner
from sklearn.inspection import permutation_importance as sk_permutation_importance

from leap.cli import cli


def run(*args, cwd=None):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_help_reads_well():
    done = run("--help")
    assert done.exit_code == 0
    for command in ("analyze", "plot", "plugins", "demo"):
        assert command in done.output
    analyze_help = run("analyze", "--help").output
    assert "--n-repeats" in analyze_help and "--config" in analyze_help


def test_analyze_writes_csv_and_heatmap(leap_files, leap_data, leap_model):
    out = leap_files["dir"] / "res" / "imp.csv"
    done = run(
        "analyze",
        leap_files["model"],
        leap_files["matrix"],
        "-o",
        out,
        "--n-repeats",
        "2",
        "--random-state",
        "3",
        "--top",
        "3",
    )
    assert done.exit_code == 0, done.output
    assert "Top 3 features" in done.output
    frame = pd.read_csv(out)
    expected = sk_permutation_importance(
        leap_model, leap_data.X, leap_data.y, n_repeats=2, random_state=3
    )
    np.testing.assert_allclose(frame["importance_mean"], expected.importances_mean, atol=1e-12)
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_analyze_from_toml_config_with_override(leap_files):
    config = leap_files["dir"] / "leap.toml"
    config.write_text(
        '[analysis]\nmodel_path = "model.pkl"\nfeature_matrix = "features.npy"\n'
        'save_csv_path = "out/imp.csv"\nn_repeats = 1\nheatmap_title = "From TOML"\n'
    )
    done = run("analyze", "--config", config, "--random-state", "5", "-q")
    assert done.exit_code == 0, done.output
    assert done.output == ""
    assert (leap_files["dir"] / "out/imp.csv").exists()


def test_custom_layout_from_the_command_line(tmp_path, small_data):
    import joblib
    from sklearn.linear_model import LogisticRegression

    joblib.dump(LogisticRegression().fit(small_data.X, small_data.y), tmp_path / "m.pkl")
    np.savez(tmp_path / "x.npz", X=small_data.X, y=small_data.y)
    done = run(
        "analyze",
        tmp_path / "m.pkl",
        tmp_path / "x.npz",
        "-o",
        tmp_path / "i.csv",
        "--sensors",
        "Left_Ankle,Right_Ankle,Sacrum",
        "--dims",
        "x,y",
        "-q",
    )
    assert done.exit_code == 0, done.output
    assert len(pd.read_csv(tmp_path / "i.csv")) == 15


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "leap", "analyze", tmp_path / "none.pkl", tmp_path / "x.npy"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("leap: error: model file not found")
    assert "Traceback" not in done.stderr


def test_missing_arguments_is_a_usage_error():
    done = run("analyze")
    assert done.exit_code == 2
    assert "give MODEL and MATRIX, or --config FILE" in done.output


def test_plot_reads_csv(tmp_path):
    from leap import ImportanceResult, SensorLayout

    ImportanceResult.from_layout(np.ones((435, 1)), SensorLayout()).to_csv(tmp_path / "r.csv")
    done = run("plot", tmp_path / "r.csv", "--title", "Hello", "-o", tmp_path / "r.pdf")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_demo_prints_planted_pairs_on_top(tmp_path):
    from leap.workflows.demo import PLANTED_PAIRS

    done = run("demo", tmp_path / "demo")
    assert done.exit_code == 0, done.output
    top = pd.read_csv(tmp_path / "demo" / "importance.csv").nsmallest(3, "rank")
    assert set(top["feature"]) == set(PLANTED_PAIRS)
    for name in ("model.pkl", "features.npy", "importance.csv", "importance.png", "report.html"):
        assert (tmp_path / "demo" / name).exists()
    pairs = pd.read_csv(tmp_path / "demo" / "importance_sensor_pair.csv").nsmallest(3, "rank")
    assert set(pairs["feature"]) == {
        "Left_Ankle|Right_Ankle",
        "Left_Wrist|Sacrum",
        "Right_Ankle|Sacrum",
    }
    assert "Top 5 by sensor_pair (permuted jointly)" in done.output
    shown = [line.split()[1] for line in done.output.splitlines() if line.startswith("    ")]
    assert set(shown[:3]) == set(PLANTED_PAIRS)
