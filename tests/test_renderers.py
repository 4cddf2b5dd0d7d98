"""The figure renderers and the HTML report: files written, and the values they carry."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.colors import to_rgba
from matplotlib.image import imread

from leap import ImportanceResult, SensorLayout
from leap.builtins.renderers.bars import BELOW, PALE, SOLID, pretty_name
from leap.builtins.renderers.channel_heatmap import channel_matrix
from leap.builtins.renderers.heatmap import COLORMAP, DIVERGING_COLORMAP
from leap.cli import cli
from leap.data.files import sha256_of
from leap.data.grouping import sensor_grouping, sensor_pair_grouping
from leap.errors import LeapError
from leap.workflows.participants import ParticipantSpread

LAYOUT = SensorLayout(sensors=("Left_Ankle", "Right_Ankle", "Sacrum"), dims=("x", "y"))
PARTICIPANTS = ["P1", "P2", "P3", "P4"]


def _grouped(grouping, means):
    rng = np.random.default_rng(len(means))
    importances = np.asarray(means)[:, None] + rng.normal(0, 0.01, size=(len(means), 3))
    return grouping.annotate(ImportanceResult(importances, list(grouping.names)))


def _spread(result, seed):
    rng = np.random.default_rng(seed)
    values = result.importances_mean[:, None] + rng.normal(
        0, 0.05, size=(len(result.feature_names), 4)
    )
    return ParticipantSpread(
        list(result.feature_names),
        PARTICIPANTS,
        values,
        np.full(4, 10),
        np.ones(4),
        level=result.level,
    )


@pytest.fixture
def result():
    """15 channel pairs with distinct means (some negative), grouped results, spreads."""
    rng = np.random.default_rng(0)
    means = np.linspace(-0.05, 0.3, LAYOUT.n_features)
    rng.shuffle(means)
    importances = means[:, None] + rng.normal(0, 0.004, size=(LAYOUT.n_features, 3))
    res = ImportanceResult.from_layout(importances, LAYOUT, scoring="accuracy")
    res.groups["sensor_pair"] = _grouped(sensor_pair_grouping(LAYOUT), [0, 0.4, -0.02, 0, 0.25, 0])
    res.groups["sensor"] = _grouped(sensor_grouping(LAYOUT), [0.3, 0.5, 0.2])
    for i, r in enumerate((res, *res.groups.values())):
        r.spread = _spread(r, i)
    res.params.update(model_path="m.pkl", model_sha256="ab" * 32, n_samples=40)
    return res


# -- sensor heatmap -------------------------------------------------------------------------


def test_heatmap_grouped_values_and_diverging_scale(engine, result, tmp_path):
    fig = engine.render(result, tmp_path / "g.png", title="", aggregate="grouped")
    image = fig.axes[0].images[0]
    grouped = result.groups["sensor_pair"]
    means = dict(zip(grouped.feature_names, grouped.importances_mean, strict=True))
    plotted = image.get_array().filled(np.nan)
    assert plotted[0, 1] == plotted[1, 0] == means["Left_Ankle|Right_Ankle"]
    assert plotted[2, 1] == means["Right_Ankle|Sacrum"]
    assert plotted[0, 2] == means["Left_Ankle|Sacrum"] < 0
    assert image.cmap.name.startswith(DIVERGING_COLORMAP)  # a negative cell: centred on 0
    assert image.norm.vmin == -image.norm.vmax
    assert "permuted as one group" in fig.axes[1].get_ylabel()
    assert "drop in accuracy" in fig.axes[1].get_ylabel()
    assert imread(tmp_path / "g.png").std() > 0.05


def test_heatmap_signed_is_diverging_even_when_positive(engine):
    positive = ImportanceResult.from_layout(np.linspace(0.01, 0.3, 15)[:, None], LAYOUT)
    fig = engine.render(positive, None, title="t", aggregate="signed")
    image = fig.axes[0].images[0]
    np.testing.assert_allclose(
        image.get_array().filled(np.nan), positive.sensor_matrix("sum").to_numpy()
    )
    assert image.cmap.name.startswith(DIVERGING_COLORMAP)
    fig = engine.render(positive, None, title="t", aggregate="mean")
    image = fig.axes[0].images[0]
    assert image.cmap.name.startswith(COLORMAP) and image.norm.vmin == 0


# -- channel heatmap ------------------------------------------------------------------------


def test_channel_heatmap_cells_are_the_feature_means(engine, result, tmp_path):
    fig = engine.render(result, tmp_path / "c.svg", renderer="channel_heatmap", title="")
    plotted = fig.axes[0].images[0].get_array()
    assert plotted.shape == (6, 6)
    assert plotted.mask.diagonal().all()  # a channel with itself is not a feature
    names = channel_matrix(result).index.tolist()
    assert names[:3] == ["Left_Ankle.x", "Left_Ankle.y", "Right_Ankle.x"]
    means = dict(zip(result.feature_names, result.importances_mean, strict=True))
    for feature, value in means.items():
        a, b = feature.split("|")
        i, j = names.index(a), names.index(b)
        assert plotted[i, j] == plotted[j, i] == value
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"] * 3
    sensors = ["Left Ankle", "Right Ankle", "Sacrum"]
    top, right = ax.child_axes
    assert [t.get_text() for t in top.get_xticklabels()] == sensors
    assert [t.get_text() for t in right.get_yticklabels()] == sensors
    # Block boundaries after every sensor but the last, on both axes.
    vertical = sorted(line.get_xdata()[0] for line in ax.lines if np.ptp(line.get_xdata()) == 0)
    horizontal = sorted(line.get_ydata()[0] for line in ax.lines if np.ptp(line.get_ydata()) == 0)
    assert vertical == horizontal == [1.5, 3.5]
    assert (tmp_path / "c.svg").read_bytes().startswith(b"<?xml")


def test_channel_heatmap_needs_channel_pairs(engine, result):
    with pytest.raises(LeapError, match="needs the feature-level result"):
        engine.render(result.groups["sensor"], None, renderer="channel_heatmap", title="")


# -- bars -----------------------------------------------------------------------------------


def test_bars_carry_the_top_k_means_and_intervals(engine, result, tmp_path):
    fig = engine.render(result, tmp_path / "b.png", renderer="bars", title="", k=6)
    axes = [ax for ax in fig.axes if ax.patches]
    assert len(axes) == 3  # features, sensor pairs, sensors
    features, pairs, sensors = axes
    order = np.argsort(-result.importances_mean)[:6]
    widths = [p.get_width() for p in features.patches]
    np.testing.assert_allclose(widths, result.importances_mean[order], rtol=0, atol=1e-15)
    assert [t.get_text() for t in features.get_yticklabels()] == [
        pretty_name(result.feature_names[i]) for i in order
    ]
    # Error bars span the confidence interval of each mean.
    segments = features.collections[0].get_segments()
    np.testing.assert_allclose(
        [s[:, 0] for s in segments],
        np.column_stack([result.ci_low[order], result.ci_high[order]]),
        rtol=0,
        atol=1e-12,
    )
    assert "95% CI over 3 repeats" in features.get_xlabel()
    assert len(pairs.patches) == 6 and len(sensors.patches) == 3  # fewer rows than k: all
    np.testing.assert_allclose(
        sorted((p.get_width() for p in sensors.patches), reverse=True),
        sorted(result.groups["sensor"].importances_mean, reverse=True),
    )
    assert features.get_title(loc="left") == "Top 6 of 15 channel pairs"
    assert pairs.get_title(loc="left").startswith("All 6 sensor pairs")
    assert imread(tmp_path / "b.png").shape[1] > 1000


def test_bar_colours_say_where_the_interval_lies(engine):
    importances = np.array([[0.5, 0.5, 0.51], [0.0, 0.2, -0.2], [-0.3, -0.31, -0.3]])
    res = ImportanceResult(importances, ["up", "unclear", "down"])
    fig = engine.render(res, None, renderer="bars", title="", k=3)
    colours = [p.get_facecolor() for p in fig.axes[0].patches]
    assert colours == [to_rgba(SOLID), to_rgba(PALE), to_rgba(BELOW)]


def test_pretty_names():
    assert pretty_name("Left_Ankle.x_acc|Sacrum.y_gyro") == "Left Ankle x acc ↔ Sacrum y gyro"
    assert pretty_name("Left_Ankle|Sacrum") == "Left Ankle ↔ Sacrum"
    assert pretty_name("Sacrum|Sacrum") == "within Sacrum"
    assert pretty_name("Right_Wrist") == "Right Wrist"


# -- participants ---------------------------------------------------------------------------


def test_participant_figure_plots_every_participant(engine, result, tmp_path):
    fig = engine.render(
        result, tmp_path / "p.pdf", renderer="participants", title="", k=4, level="sensor"
    )
    ax = fig.axes[0]
    dots, means = ax.collections[0], ax.collections[-1]
    spread = result.groups["sensor"].spread
    order = np.argsort(-result.groups["sensor"].importances_mean)
    np.testing.assert_allclose(
        np.sort(dots.get_offsets()[:, 0]), np.sort(spread.values.ravel()), rtol=0, atol=1e-15
    )
    np.testing.assert_allclose(means.get_offsets()[:, 0], spread.mean[order], rtol=0, atol=1e-15)
    assert fig.get_suptitle() == "Importance per participant (4 participants)"
    assert (tmp_path / "p.pdf").read_bytes().startswith(b"%PDF")


def test_participant_figure_needs_a_spread(engine):
    plain = ImportanceResult.from_layout(np.ones((15, 2)), LAYOUT)
    with pytest.raises(LeapError, match="per_participant=True"):
        engine.render(plain, None, renderer="participants", title="")


@pytest.mark.parametrize(
    "renderer,suffix,magic",
    [
        ("heatmap", ".pdf", b"%PDF"),
        ("channel_heatmap", ".png", b"\x89PNG"),
        ("bars", ".svg", b"<?xml"),
        ("participants", ".pdf", b"%PDF"),
        ("bars", ".png", b"\x89PNG"),
    ],
)
def test_figures_in_each_format(engine, result, tmp_path, renderer, suffix, magic):
    path = tmp_path / f"fig{suffix}"
    engine.render(result, path, renderer=renderer, title="")
    assert path.read_bytes().startswith(magic)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


# -- report ---------------------------------------------------------------------------------


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_is_self_contained(engine, result, tmp_path):
    path = tmp_path / "r.html"
    engine.render(result, path, renderer="report", title="Study X")
    page = path.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(page)
    images = [a["src"] for t, a in parser.tags if t == "img"]
    assert len(images) == 5  # grouped + sum heatmaps, channels, bars, participants
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    # Nothing is fetched: no external scripts, styles, images or fonts.
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert not [t for t, a in parser.tags if t == "link"]
    assert [t for t, a in parser.tags if t == "script"] == ["script"]
    tables = [a for t, a in parser.tags if t == "table" and a.get("class") == "sortable"]
    assert len(tables) == 6  # three levels, and three participant tables
    rows = re.findall(r'<td class="name" data-v="([^"]+)"', page)
    assert rows.count("Left_Ankle|Right_Ankle") == 2  # grouped table and participant table
    assert "ab" * 32 in page and "<title>Study X</title>" in page
    assert "Click a column header to sort" in page and "aria-sort" in page


def test_one_cli_call_gives_everything(tmp_path, small_data):
    from sklearn.linear_model import LogisticRegression

    from leap.engine import get_engine

    joblib.dump(
        LogisticRegression(max_iter=1000).fit(small_data.X, small_data.y), tmp_path / "model.pkl"
    )
    np.save(tmp_path / "features.npy", small_data.to_leap_array(), allow_pickle=True)
    get_engine().add_commands(cli)
    out = tmp_path / "out"
    run = CliRunner().invoke(
        cli,
        [
            "analyze",
            str(tmp_path / "model.pkl"),
            str(tmp_path / "features.npy"),
            "--sensors",
            "Left_Ankle,Right_Ankle,Sacrum",
            "--dims",
            "x,y",
            "-o",
            str(out / "imp.csv"),
            "--groups",
            "sensor_pair,sensor",
            "--per-participant",
            "--figures",
            "all",
            "--report",
            str(out / "report.html"),
            "--n-repeats",
            "2",
            "--aggregate",
            "grouped",
        ],
    )
    assert run.exit_code == 0, run.output
    expected = [
        "imp.csv",
        "imp_sensor_pair.csv",
        "imp_sensor.csv",
        "imp_participants.csv",
        "imp.png",
        "imp_channel_heatmap.png",
        "imp_bars.png",
        "imp_participants.png",
        "report.html",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    assert "by sensor_pair (permuted jointly)" in run.output  # top rows among the measurable
    assert "Per-participant importances: 6 participants" in run.output
    page = (out / "report.html").read_text(encoding="utf-8")
    assert sha256_of(tmp_path / "model.pkl") in page
    assert sha256_of(tmp_path / "features.npy") in page
    grouped = ImportanceResult.from_csv(out / "imp_sensor_pair.csv")
    heat = imread(out / "imp.png")
    assert heat.std() > 0.05 and grouped.level == "sensor_pair"


@pytest.mark.slow
def test_leap_shaped_matrix_end_to_end(leap_files):
    """The issue's "done when", on the full 5 × 6 layout with participants."""
    from leap import analyze_permutation_importance

    out = leap_files["dir"] / "out"
    result = analyze_permutation_importance(
        leap_files["model"],
        leap_files["matrix"],
        save_csv_path=out / "importance.csv",
        groups=["sensor_pair", "sensor"],
        per_participant=True,
        renderers=["heatmap", "channel_heatmap", "bars", "participants"],
        report_path=out / "report.html",
        heatmap_aggregate="grouped",
        n_repeats=2,
    )
    pairs, sensors = result.groups["sensor_pair"], result.groups["sensor"]
    assert len(pairs.feature_names) == 15 and len(sensors.feature_names) == 5
    top_pairs = set(np.array(pairs.feature_names)[np.argsort(-pairs.importances_mean)[:3]])
    assert top_pairs == {"Left_Ankle|Right_Ankle", "Left_Wrist|Sacrum", "Right_Ankle|Sacrum"}
    assert sensors.feature_names[int(np.argmin(sensors.importances_mean))] == "Right_Wrist"
    assert result.spread.values.shape == (435, 8)
    assert {p.name for p in out.iterdir()} >= {
        "importance_channel_heatmap.png",
        "importance_bars.png",
        "report.html",
    }
