"""Figures never break on what users name things, and stay bounded on large layouts.

- Text is never markup: titles, sensor and dim names and compare labels are drawn as the
  characters they are (mathtext and TeX off), in every renderer and in the HTML report.
- PDF figures embed TrueType fonts (journals reject Type 3); SVG keeps text as text.
- A bad ``MPLBACKEND`` costs one warning, not a traceback; nothing imports pyplot.
- Importing a renderer module loads no matplotlib, pandas or scipy.
- Large layouts give a readable, bounded figure: top sensors with a note, capped rows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.image import imread
from matplotlib.text import Text

from leap import Engine, ImportanceResult, SensorLayout
from leap.builtins.renderers.bars import MAX_ROWS, TopBars
from leap.builtins.renderers.channel_heatmap import MAX_CHANNELS, ChannelHeatmap
from leap.builtins.renderers.compare import (
    MAX_MOVES,
    compare_results,
    render_difference,
    render_rank_agreement,
)
from leap.builtins.renderers.heatmap import MAX_HEATMAP_SENSORS, SensorPairHeatmap
from leap.builtins.renderers.report import MAX_TABLE_ROWS, HtmlReport
from leap.builtins.renderers.spread import ParticipantSpreadPlot
from leap.cli import cli
from leap.errors import LeapError
from leap.figures import MAX_FIGURE_INCHES, figure_bytes, save_figure
from leap.workflows.participants import ParticipantSpread

REPO = Path(__file__).resolve().parents[1]
#: Strings matplotlib would parse as mathtext (some of them invalid mathtext), or TeX.
PAYLOADS = [
    r"$\frac{$",
    "$x$",
    "$",
    r"\$",
    "$$",
    r"$\undefinedmacro{a}$",
    r"a_b^{c} \n %s %% {}",
]
#: Sensor and dim names with mathtext (no "." or "|": those separate channels and pairs).
SENSORS = (r"$\frac{$", "$x$_left", r"\$B")
DIMS = ("$", r"\alpha$")
RENDERERS = {
    "heatmap": SensorPairHeatmap(),
    "channel_heatmap": ChannelHeatmap(),
    "bars": TopBars(),
    "participants": ParticipantSpreadPlot(),
}


def _result(
    sensors=SENSORS, dims=DIMS, seed=0, spread=False, participants=("P$1$", "P2")
) -> ImportanceResult:
    layout = SensorLayout(sensors=tuple(sensors), dims=tuple(dims))
    rng = np.random.default_rng(seed)
    values = rng.random((layout.n_features, 3)) ** 3 - 0.05
    result = ImportanceResult.from_layout(values, layout, scoring="accuracy")
    if spread:
        result.spread = ParticipantSpread(
            list(result.feature_names),
            list(participants),
            result.importances_mean[:, None] + rng.normal(0, 0.01, (layout.n_features, 2)),
            np.full(2, 10),
            np.ones(2),
        )
    return result


def _texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text()]


def _assert_plain(fig, *expected: str) -> None:
    texts = _texts(fig)
    assert all(not t.get_parse_math() and not t.get_usetex() for t in texts)
    shown = "\n".join(t.get_text() for t in texts)
    for piece in expected:
        assert piece in shown, piece


# -- text is never markup -------------------------------------------------------------------


# Every payload through the heatmap; the two that break matplotlib through every renderer.
CASES = [("heatmap", p) for p in PAYLOADS] + [
    (name, p) for name in RENDERERS if name != "heatmap" for p in PAYLOADS[:1] + PAYLOADS[-2:-1]
]


@pytest.mark.parametrize(("name", "title"), CASES)
def test_titles_and_names_are_drawn_literally(name, title, tmp_path):
    result = _result(spread=True)
    path = tmp_path / "f.png"
    fig = RENDERERS[name].render(result, path, title=title)
    assert imread(path).std() > 0.01  # drawn, not blank (drawing parses every text)
    _assert_plain(fig, title)
    if name in ("heatmap", "channel_heatmap"):
        _assert_plain(fig, r"$\frac{$", r"\$B")  # sensor names as tick or block labels
    if name == "channel_heatmap":
        _assert_plain(fig, r"\alpha$")  # a dim name
    if name in ("bars", "participants"):
        _assert_plain(fig, r"$\frac{$ $ ↔")  # a row label (sensor, dim, pair)


@pytest.mark.parametrize("name", list(RENDERERS))
def test_undrawable_characters_become_replacement_characters(name, tmp_path):
    """Control characters (NUL, ESC, tabs) in names and titles: no glyph warning, no crash."""
    import warnings

    result = _result(sensors=("A\x00", "B\x1b[31m", "C\tD"), dims=("x\r", "y"), spread=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph 0 missing from font" would be an error
        fig = RENDERERS[name].render(result, tmp_path / "f.svg", title="T\x00\x7f")
    shown = "".join(t.get_text() for t in _texts(fig))
    assert "\ufffd" in shown and not any(c in shown for c in "\x00\x1b\t\r\x7f")


def test_returned_figures_are_plain_too(engine):
    """A figure handed back (no path) is already plain: a user's savefig cannot parse it."""
    fig = engine.render(_result(), None, renderer="heatmap", title=r"$\frac{$")
    _assert_plain(fig, r"$\frac{$")
    assert figure_bytes(fig, "png")[:4] == b"\x89PNG"
    fig.savefig(Path(os.devnull), format="png")  # the user's own save: no parse error


@pytest.mark.parametrize("label", PAYLOADS[:2] + PAYLOADS[-2:-1])
def test_compare_labels_are_drawn_literally(label, tmp_path):
    comparison = compare_results(_result(seed=0), _result(seed=1), label, "B$")
    fig = render_difference(comparison, tmp_path / "d.png")
    _assert_plain(fig, label, "B$")
    fig = render_rank_agreement(comparison, tmp_path / "r.png")
    _assert_plain(fig, f"Rank in {label}", r"$\frac{$")
    assert imread(tmp_path / "r.png").std() > 0.01


def test_cli_plot_draws_a_mathtext_title_literally(tmp_path):
    _result().to_csv(tmp_path / "r.csv")
    Engine(load_entry_points=False).add_commands(cli)
    out = tmp_path / "h.png"
    run = CliRunner().invoke(
        cli, ["plot", str(tmp_path / "r.csv"), "-o", str(out), "--title", r"$\frac{$"]
    )
    assert run.exit_code == 0, run.output
    assert imread(out).std() > 0.01


def test_cli_compare_draws_mathtext_labels_literally(tmp_path):
    _result(seed=0).to_csv(tmp_path / "a.csv")
    _result(seed=1).to_csv(tmp_path / "b.csv")
    Engine(load_entry_points=False).add_commands(cli)
    args = ["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    args += ["--label-a", r"$\frac{$", "--label-b", "$x$", "-o", str(tmp_path / "cmp")]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    for name in ("cmp_ranks.png", "cmp_difference.png"):
        assert imread(tmp_path / name).std() > 0.01


def test_compare_refuses_duplicated_names_in_one_line():
    result = _result()
    twice = ImportanceResult(
        np.vstack([result.importances, result.importances[:1]]),
        [*result.feature_names, result.feature_names[0]],
    )
    with pytest.raises(LeapError, match="more than once") as caught:
        compare_results(twice, result, "A\nB", "C")
    assert "\n" not in str(caught.value)


def test_report_escapes_every_name(tmp_path):
    script = "<script>alert(1)</script>"
    result = _result(sensors=(script, r"$\frac{$", "S&T"), spread=True, participants=(script, "P"))
    fig = TopBars().render(result, None, title=script)
    page = HtmlReport().render(
        result, tmp_path / "r.html", title=f"{script} $x$", figures={script: fig}
    )
    assert "alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert r"$\frac{$" in page and "S&amp;T" in page and "$x$" in page


# -- fonts ----------------------------------------------------------------------------------


def test_pdf_embeds_truetype_fonts_without_changing_the_users_settings(tmp_path):
    import matplotlib

    fig = SensorPairHeatmap().render(_result(), None, title="Fonts")
    with matplotlib.rc_context({"pdf.fonttype": 3, "svg.fonttype": "path"}):
        save_figure(fig, tmp_path / "h.pdf")
        save_figure(fig, tmp_path / "h.svg")
        assert matplotlib.rcParams["pdf.fonttype"] == 3  # set for the save only
    pdf = (tmp_path / "h.pdf").read_bytes()
    # TrueType outlines (FontFile2), as a CID-keyed TrueType font; never Type 3.
    assert b"/FontFile2" in pdf and b"/Subtype /CIDFontType2" in pdf
    assert b"/Type3" not in pdf
    svg = (tmp_path / "h.svg").read_text(encoding="utf-8")
    assert "<text" in svg and "Fonts" in svg  # text kept as text, not glyph outlines


def test_every_renderer_writes_truetype_pdf(tmp_path):
    result = _result(spread=True)
    for name, renderer in RENDERERS.items():
        path = tmp_path / f"{name}.pdf"
        renderer.render(result, path, title=r"$\frac{$")
        pdf = path.read_bytes()
        assert b"/FontFile2" in pdf and b"/Type3" not in pdf, name


# -- backend and imports --------------------------------------------------------------------


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        timeout=300,
    )


def test_garbage_mplbackend_falls_back_to_agg_with_one_warning(tmp_path):
    run = _python(
        f"""
        import sys, warnings
        warnings.simplefilter("always")
        import numpy as np
        from leap import ImportanceResult, SensorLayout
        from leap.builtins.renderers.heatmap import SensorPairHeatmap
        from leap.builtins.renderers.bars import TopBars
        layout = SensorLayout(sensors=("A", "B"), dims=("x", "y"))
        result = ImportanceResult.from_layout(np.ones((layout.n_features, 2)), layout)
        SensorPairHeatmap().render(result, None, title="")
        TopBars().render(result, None, title="")
        import matplotlib
        from pathlib import Path
        SensorPairHeatmap().render(result, Path({str(tmp_path / "h.png")!r}), title="")
        assert matplotlib.get_backend().lower() == "agg", matplotlib.get_backend()
        assert "matplotlib.pyplot" not in sys.modules
        print("drawn")
        """,
        MPLBACKEND="no_such_backend",
    )
    assert run.returncode == 0, run.stderr
    assert "drawn" in run.stdout
    assert run.stderr.count("MPLBACKEND") == 1, run.stderr
    assert "no_such_backend" in run.stderr and "Traceback" not in run.stderr
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_cli_with_garbage_mplbackend_warns_in_one_line(tmp_path):
    _result().to_csv(tmp_path / "r.csv")
    run = subprocess.run(
        [sys.executable, "-m", "leap", "plot", str(tmp_path / "r.csv"), "-o", "h.png"],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "garbage", "LEAP_LOAD_PLUGINS": ""},
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "MPLBACKEND" in line]
    assert len(lines) == 1 and lines[0].startswith("leap: warning:"), run.stderr
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_a_valid_mplbackend_is_kept():
    run = _python(
        """
        from leap.figures import load_matplotlib
        print(load_matplotlib().get_backend())
        """,
        MPLBACKEND="svg",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "svg" and run.stderr == ""


def test_renderer_modules_import_no_heavy_library():
    run = _python(
        """
        import sys
        import leap
        before = set(sys.modules)
        import leap.figures
        import leap.builtins.renderers.heatmap
        import leap.builtins.renderers.channel_heatmap
        import leap.builtins.renderers.bars
        import leap.builtins.renderers.spread
        import leap.builtins.renderers.report
        import leap.builtins.renderers.compare
        heavy = {"matplotlib", "pandas", "scipy", "sklearn"}
        print(sorted(m for m in set(sys.modules) - before if m.split(".")[0] in heavy))
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_no_module_imports_pyplot():
    importing = re.compile(
        r"^\s*(import matplotlib\.pyplot|from matplotlib(\.pyplot| import pyplot))", re.M
    )
    sources = sorted((REPO / "leap").rglob("*.py"))
    assert sources
    users = [str(p.relative_to(REPO)) for p in sources if importing.search(p.read_text("utf-8"))]
    assert users == []


# -- large layouts --------------------------------------------------------------------------


def _numbered(n_sensors, n_dims, seed=0):
    names = [f"Sensor_{i}" for i in range(n_sensors)]
    return _result(sensors=names, dims=[f"d{j}" for j in range(n_dims)], seed=seed)


def _peak_bytes(draw) -> tuple[object, int]:
    """What ``draw()`` returns, and the peak of Python/NumPy memory it allocated."""
    tracemalloc.start()
    try:
        out = draw()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _within_size(fig) -> None:
    width, height = fig.get_size_inches()
    assert width <= MAX_FIGURE_INCHES and height <= MAX_FIGURE_INCHES


@pytest.mark.slow
def test_a_large_heatmap_shows_the_largest_40_sensors_with_a_note(tmp_path):
    result = _numbered(60, 1)  # 1,770 sensor pairs
    path = tmp_path / "h.png"
    fig, peak = _peak_bytes(lambda: SensorPairHeatmap().render(result, path, title=""))
    assert peak < 150 * 2**20  # an image resampled to the 27-inch figure took 450 MB
    _within_size(fig)
    ax = fig.axes[0]
    shown = [t.get_text() for t in ax.get_xticklabels()]
    assert len(shown) == MAX_HEATMAP_SENSORS
    assert f"{MAX_HEATMAP_SENSORS} of 60 shown" in ax.get_xlabel()
    # The shown sensors are those with the largest total |importance|, in layout order.
    matrix = result.sensor_matrix()
    totals = np.nansum(np.abs(matrix.to_numpy()), axis=1)
    expected = sorted(np.argsort(-totals, kind="stable")[:MAX_HEATMAP_SENSORS])
    assert shown == [matrix.index[i].replace("_", " ") for i in expected]
    plotted = ax.collections[0].get_array() if not ax.images else ax.images[0].get_array()
    np.testing.assert_allclose(
        np.ma.filled(plotted, np.nan).reshape(MAX_HEATMAP_SENSORS, -1),
        matrix.iloc[expected, expected].to_numpy(),
        rtol=0,
        atol=0,
    )
    assert len(ax.texts) == 0  # no numbers in cells too small for them
    assert max(imread(path).shape[:2]) <= MAX_FIGURE_INCHES * 150


@pytest.mark.slow
def test_a_large_channel_heatmap_shows_whole_sensors_up_to_the_channel_cap(tmp_path):
    result = _numbered(50, 3)  # 150 channels, 11,175 channel pairs
    path = tmp_path / "c.png"
    fig = ChannelHeatmap().render(result, path, title="")
    _within_size(fig)
    assert not fig.axes[0].images  # a mesh: its memory does not grow with the pixels
    ax = fig.axes[0]
    assert len(ax.get_xticklabels()) == MAX_CHANNELS  # 40 whole sensors of 3 channels
    assert "40 of 50 sensors shown" in ax.get_xlabel()
    assert imread(path).std() > 0.01


@pytest.mark.slow
def test_large_comparisons_are_bounded(tmp_path):
    comparison = compare_results(_numbered(45, 1, seed=0), _numbered(45, 1, seed=1))
    fig = render_difference(comparison, tmp_path / "d.png")
    _within_size(fig)
    assert "30 of 45 shown" in fig.get_suptitle()
    assert all(len(ax.get_xticklabels()) == 30 for ax in fig.axes[:3])
    fig = render_rank_agreement(comparison, tmp_path / "r.png", k=10**6)
    _within_size(fig)
    assert fig.axes[1].get_title().startswith(f"Top {MAX_MOVES} of A")


def test_bars_cap_the_rows_and_say_so(tmp_path):
    result = _numbered(30, 1)  # 435 rows
    fig = TopBars().render(result, tmp_path / "b.png", title="", k=10**6)
    _within_size(fig)
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == MAX_ROWS
    assert ax.get_title(loc="left") == f"Top {MAX_ROWS} of 435 channel pairs"


def test_participant_figure_refuses_k_below_one():
    with pytest.raises(LeapError, match="k must be at least 1"):
        ParticipantSpreadPlot().render(_result(spread=True), None, title="", k=0)


def test_very_long_names_are_cut_in_figures(tmp_path):
    long = "L" * 5000
    result = _result(sensors=(long, "B", "C"), dims=("x" * 300, "y"), spread=True)
    for name, renderer in RENDERERS.items():
        fig = renderer.render(result, tmp_path / f"{name}.png", title="")
        _within_size(fig)
        longest = max(len(t.get_text()) for t in _texts(fig))
        assert longest < 200, name


def test_report_tables_are_capped_with_a_note():
    n = MAX_TABLE_ROWS + 50
    result = ImportanceResult(np.linspace(0, 1, n)[:, None], [f"f{i}" for i in range(n)])
    page = HtmlReport().render(result, None, figures={})
    assert page.count("<tr") == MAX_TABLE_ROWS + 1 + page.count('<tr><td class="name">')
    assert f"first {MAX_TABLE_ROWS:,} of {n:,} rows" in page


def test_heatmap_applies_only_where_there_are_sensor_pairs():
    from leap.data.grouping import sensor_grouping

    layout = SensorLayout(sensors=("A", "B"), dims=("x",))
    grouping = sensor_grouping(layout)
    sensors_only = grouping.annotate(ImportanceResult(np.ones((2, 2)), list(grouping.names)))
    heatmap = SensorPairHeatmap()
    assert heatmap.applies(_result())
    assert not heatmap.applies(sensors_only)
    assert not heatmap.applies(ImportanceResult(np.ones((2, 1)), ["a", "b"]))


def test_a_single_wide_sensor_is_cut_to_its_largest_channels():
    from leap.builtins.renderers.channel_heatmap import channel_matrix, largest_blocks

    result = _numbered(1, 130)  # one sensor, 130 channels: no whole sensor fits
    matrix, note = largest_blocks(channel_matrix(result), MAX_CHANNELS)
    assert matrix.shape == (MAX_CHANNELS, MAX_CHANNELS)
    assert note.startswith(f"{MAX_CHANNELS} of 130 channels shown")


@pytest.mark.slow
def test_cli_analyze_with_mathtext_sensor_and_dim_names(tmp_path, small_data):
    """Every figure and the report of one run, with names matplotlib would parse."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    joblib.dump(
        LogisticRegression(max_iter=500).fit(small_data.X, small_data.y), tmp_path / "model.pkl"
    )
    np.save(tmp_path / "features.npy", small_data.to_leap_array(), allow_pickle=True)
    Engine(load_entry_points=False).add_commands(cli)
    out = tmp_path / "out"
    args = ["analyze", str(tmp_path / "model.pkl"), str(tmp_path / "features.npy")]
    args += ["--sensors", r"$\frac{$,$x$,S_$", "--dims", r"$,\alpha$"]
    args += ["-o", str(out / "imp.csv"), "--groups", "sensor_pair,sensor", "--per-participant"]
    args += ["--figures", "all", "--heatmap", str(out / "imp.pdf"), "--report", str(out / "r.html")]
    args += ["--n-repeats", "2", "--title", r"$\frac{$"]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    pdfs = sorted(out.glob("*.pdf"))
    assert pdfs
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert b"/FontFile2" in data and b"/Type3" not in data, pdf.name
    page = (out / "r.html").read_text(encoding="utf-8")
    assert r"$\frac{$" in page and "<img" in page


_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=".|"),
    min_size=1,
    max_size=40,
).filter(str.strip)


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=st.text(max_size=200), sensors=st.lists(_NAME, min_size=2, max_size=3, unique=True))
def test_any_title_and_sensor_names_draw(title, sensors):
    """Any text (control characters, surrogates in titles, markup) draws; names stay plain."""
    import warnings

    result = _result(sensors=sensors, dims=("x", "y"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Glyph … missing from font(s)"
        for renderer in (SensorPairHeatmap(), TopBars()):
            fig = renderer.render(result, None, title=title)
            assert figure_bytes(fig, "png", dpi=40)[:4] == b"\x89PNG"
            assert all(not t.get_parse_math() for t in _texts(fig))
