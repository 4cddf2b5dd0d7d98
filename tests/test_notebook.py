"""Notebooks: the example notebook runs, and a result shows itself (table, heatmap)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from leap import ImportanceResult, SensorLayout

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = SensorLayout(sensors=("A", "B", "C"), dims=("x", "y"))


def _result(**kwargs) -> ImportanceResult:
    rng = np.random.default_rng(1)
    values = rng.normal(0.0, 0.01, (LAYOUT.n_features, 4))
    values[3] += 0.25
    return ImportanceResult.from_layout(values, LAYOUT, scoring="accuracy", **kwargs)


def test_plot_returns_the_heatmap_figure_of_the_sensor_matrix():
    result = _result()
    fig = result.plot()
    assert isinstance(fig, Figure)
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(
        image.filled(np.nan), result.sensor_matrix().to_numpy(), rtol=0, atol=1e-12
    )
    grouped = result.plot(aggregate="max")
    assert "largest" in grouped.axes[0].get_title()


def test_to_frame_is_the_table_the_csv_holds(tmp_path):
    result = _result()
    result.to_csv(tmp_path / "r.csv")
    again = ImportanceResult.from_csv(tmp_path / "r.csv").to_frame()
    frame = result.to_frame()
    assert list(frame.columns) == list(again.columns)
    np.testing.assert_allclose(
        frame["importance_mean"], again["importance_mean"], rtol=0, atol=1e-12
    )


def test_html_view_ranks_the_top_rows_and_embeds_the_heatmap():
    result = _result(baseline_score=0.9)
    page = result._repr_html_()
    assert page.count("<tr>") == 1 + 10  # the header and the top 10 rows
    best = result.top(1)["feature"].item()
    assert page.index(best) < page.index("</tr>", page.index("<tbody>"))  # first data row
    assert "95% CI" in page and "baseline 0.9000" in page
    assert "data:image/png;base64," in page
    assert "<th>p</th>" not in page  # no p-values computed


def test_html_view_shows_p_and_q_values_when_present():
    result = _result()
    n = len(result.feature_names)
    # Set as attributes, so this holds whether or not the class declares the fields.
    result.p_value = np.linspace(0.0005, 1.0, n)
    result.q_value = np.minimum(1.0, result.p_value * 2)
    page = result._repr_html_()
    assert "<th>p</th><th>q</th>" in page


def test_html_view_of_rows_without_sensor_pairs_is_a_table_only():
    result = ImportanceResult(np.array([[0.3, 0.2], [-1e-6, 0.0]]), ["x", "y"])
    page = result._repr_html_()
    assert "<img" not in page and page.count("<tr>") == 3
    assert "-0.0000" not in page  # -5e-7 rounds to zero: shown without a sign


def test_html_view_escapes_names():
    result = ImportanceResult(np.array([[0.3]]), ["<b>x</b>"])
    assert "&lt;b&gt;x&lt;/b&gt;" in result._repr_html_()


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    # A kernel spec for this interpreter (the virtualenv's), found first through
    # JUPYTER_PATH, so a user-wide "python3" kernel elsewhere is never picked.
    spec = tmp_path / "jupyter" / "kernels" / "leap-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "LEAP test", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.chdir(tmp_path)

    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name="leap-test", timeout=300, resources={"metadata": {"path": tmp_path}}
    )
    client.execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    pages = [out.data["text/html"] for out in outputs if "text/html" in out.get("data", {})]
    views = [page for page in pages if "ImportanceResult" in page]
    assert len(views) == 1
    assert "data:image/png;base64," in views[0]
    assert "Left_Ankle.x_acc|Right_Ankle.x_acc" in views[0]  # a planted pair ranks high
    assert any("image/png" in out.get("data", {}) for out in outputs)  # the plotted Figure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jupyter"]  # nothing written
