"""Input options every command shares: --no-header for CSVs, --max-cells, and one line
when an option does not apply to the reader."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from conftest import SMALL_LAYOUT

from leap.cli import cli

SENSORS = ["--sensors", ",".join(SMALL_LAYOUT.sensors), "--dims", ",".join(SMALL_LAYOUT.dims)]


def _files(tmp_path, small_data):
    import joblib
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(small_data.X, small_data.y)
    joblib.dump(model, tmp_path / "model.pkl")
    table = np.column_stack([small_data.X, small_data.y])
    np.savetxt(tmp_path / "bare.csv", table, delimiter=",", fmt="%.17g")
    np.save(tmp_path / "m.npy", table)
    return tmp_path / "model.pkl"


def run(*args):
    done = CliRunner().invoke(cli, [str(a) for a in args])
    return done.exit_code, done.output


def test_a_csv_without_header_reads_with_no_header(tmp_path, small_data):
    model = _files(tmp_path, small_data)
    out = tmp_path / "o.csv"
    code, output = run("analyze", model, tmp_path / "bare.csv", *SENSORS, "-o", out, "-q")
    assert code == 2 and "no header?" in output and len(output.strip().splitlines()) == 1
    assert not out.exists()
    code, output = run(
        "analyze", model, tmp_path / "bare.csv", *SENSORS, "--no-header", "--label", "-1",
        "-o", out, "-q", "--n-repeats", "2",
    )  # fmt: skip
    assert code == 0, output
    assert out.exists()


def test_options_that_do_not_apply_and_caps_are_one_line(tmp_path, small_data):
    model = _files(tmp_path, small_data)
    code, output = run("doctor", model, tmp_path / "m.npy", *SENSORS, "--no-header")
    assert code == 2 and "reader 'npy' has no header option" in output
    code, output = run(
        "analyze", model, tmp_path / "m.npy", *SENSORS, "--max-cells", "10", "-q",
        "-o", tmp_path / "x.csv",
    )  # fmt: skip
    assert code == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "max_cells" in lines[0].lower().replace("-", "_"), output
