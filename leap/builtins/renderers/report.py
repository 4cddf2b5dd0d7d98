"""Built-in ``report`` renderer: one self-contained HTML file with every view of a run.

Figures are embedded as base64 PNG, tables sort with a few lines of inline JavaScript, and
nothing is fetched from the network, so the file opens offline and can be archived or
mailed as is. The run parameters and the SHA-256 fingerprints of the model and data files
say exactly what was analysed.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from leap.builtins.renderers.bars import LEVEL_TITLES, TopBars, pretty_name
from leap.builtins.renderers.channel_heatmap import ChannelHeatmap
from leap.builtins.renderers.heatmap import SensorPairHeatmap
from leap.builtins.renderers.spread import ParticipantSpreadPlot
from leap.data.files import atomic_path
from leap.data.result import FEATURE_LEVEL, ImportanceResult
from leap.hookspecs import hookimpl
from leap.workflows.participants import PARTICIPANT_PREFIX

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1d;
       max-width: 1180px; margin: 0 auto; padding: 1.5em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
nav a { margin-right: 1em; } .muted { color: #5f5f5f; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: .92em; }
table { border-collapse: collapse; font-size: .88em; margin: .6em 0 1.2em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e4e4e4; text-align: right;
         white-space: nowrap; }
table.params td { text-align: left; }
td.name, th.name { text-align: left; } td.mono { font-family: ui-monospace, monospace; }
table.sortable th { cursor: pointer; background: #f3f3f3; position: sticky; top: 0; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.zero td { color: #777; } .scroll { max-height: 34em; overflow: auto; }
details { margin: .8em 0; } summary { cursor: pointer; font-weight: 600; }
"""

# Click a header to sort by it (again to reverse); empty cells stay at the bottom.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("th");
  heads.forEach(function (th, col) {
    th.tabIndex = 0;
    function sort() {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = Number(x), ny = Number(y);
        var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
  });
});
"""


class HtmlReport:
    """A single self-contained HTML page: summary, figures, sortable tables, run details."""

    name = "report"
    suffixes = (".html", ".htm")

    def render(
        self,
        result: ImportanceResult,
        path: Path | None,
        *,
        title: str = "",
        aggregate: str = "sum_positive",
        k: int = 20,
        figures: Mapping[str, Figure] | None = None,
    ) -> str:
        """Build the page (and write it to ``path`` when given); return the HTML text.

        ``figures`` adds further figures (caption → Figure) after the built-in ones.
        """
        title = title or "LEAP importance report"
        shown = [*_builtin_figures(result, aggregate, k), *(figures or {}).items()]
        page = _page(title, result, shown, aggregate)
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(page, encoding="utf-8")
        return page


def _builtin_figures(
    result: ImportanceResult, aggregate: str, k: int
) -> Iterable[tuple[str, Figure]]:
    has_sensors = any(len(s) == 2 for s in result.row_sensors)
    has_grouped = result.level == "sensor_pair" or "sensor_pair" in result.groups
    if has_sensors:
        aggregates = [aggregate]
        if has_grouped and aggregate != "grouped":
            aggregates.append("grouped")
        elif aggregate == "grouped":
            aggregates.append("sum_positive")
        for agg in aggregates:
            yield (
                _HEATMAP_CAPTIONS.get(agg, agg),
                SensorPairHeatmap().render(result, None, title="", aggregate=agg),
            )
    if any(p is not None for p in result.pairs):
        yield (
            "Every channel-pair feature; the squares on the diagonal are the within-sensor "
            "pairs, the diagonal itself (a channel with itself) is not a feature.",
            ChannelHeatmap().render(result, None),
        )
    yield (
        f"The most important rows at each level; error bars are {result.ci_level:.0%} "
        f"confidence intervals of the mean over the repeats; pale bars: the interval "
        f"includes zero.",
        TopBars().render(result, None, k=k),
    )
    if any(r.spread is not None for r in (result, *result.groups.values())):
        yield (
            "Each dot is the importance computed on one participant's rows alone; the "
            "diamond and line are the mean over participants and its confidence interval.",
            ParticipantSpreadPlot().render(result, None, k=k),
        )


_HEATMAP_CAPTIONS = {
    "sum_positive": "Sensor × sensor: the sum of the positive channel-pair importances (the "
    "original LEAP view). Each channel pair was permuted alone, so correlated pairs can "
    "share or hide importance.",
    "sum": "Sensor × sensor: the sum of the channel-pair importances.",
    "signed": "Sensor × sensor: the signed sum of the channel-pair importances, centred on "
    "zero; negative cells are pairs whose permutation improved the score.",
    "mean": "Sensor × sensor: the mean channel-pair importance.",
    "max": "Sensor × sensor: the largest channel-pair importance.",
    "grouped": "Sensor × sensor: each sensor pair permuted as one group, i.e. what the model "
    "loses without the relation between the two sensors.",
}


def _page(
    title: str, result: ImportanceResult, figures: Sequence[tuple[str, Figure]], aggregate: str
) -> str:
    levels = {result.level: result, **result.groups}
    nav = [("summary", "Summary"), ("figures", "Figures"), ("tables", "Tables")]
    if any(r.spread is not None for r in levels.values()):
        nav.append(("participants", "Participants"))
    nav += [("run", "Run"), ("reading", "Reading the numbers")]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(_lede(result))}</p>',
        "<nav>" + "".join(f'<a href="#{i}">{_e(t)}</a>' for i, t in nav) + "</nav>",
        '<h2 id="summary">Summary</h2>',
        *(_summary(r) for r in levels.values()),
        '<h2 id="figures">Figures</h2>',
        *(_figure(caption, fig) for caption, fig in figures),
        '<h2 id="tables">Tables</h2>',
        '<p class="muted">Click a column header to sort.</p>',
        *(_level_table(r) for r in levels.values()),
    ]
    if "participants" in dict(nav):
        parts.append('<h2 id="participants">Participants</h2>')
        parts.extend(_participant_table(r) for r in levels.values() if r.spread is not None)
    parts += [
        '<h2 id="run">Run</h2>',
        _params_table(result, aggregate),
        '<h2 id="reading">Reading the numbers</h2>',
        _READING,
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _lede(result: ImportanceResult) -> str:
    p = result.params
    bits = []
    if "model_path" in p:
        bits.append(f"Model {Path(str(p['model_path'])).name}")
    if "feature_matrix" in p:
        bits.append(f"data {Path(str(p['feature_matrix'])).name}")
    if "n_samples" in p:
        bits.append(f"{p['n_samples']} rows")
    if "n_participants" in p:
        bits.append(f"{p['n_participants']} participants")
    if result.baseline_score is not None:
        bits.append(f"baseline {result.scoring} {result.baseline_score:.4f}")
    bits.append(f"{result.n_repeats} repeats of {result.method}")
    return "; ".join(bits) + "."


def _summary(result: ImportanceResult) -> str:
    what = LEVEL_TITLES.get(result.level, result.level)
    means = result.importances_mean
    order = np.argsort(-means, kind="stable")[:5]
    included = result.ci_includes_zero
    items = []
    for i in order:
        low, high = result.ci_low[i], result.ci_high[i]
        ci = "" if math.isnan(low) else f" ({result.ci_level:.0%} CI {low:.4f} to {high:.4f})"
        note = " — interval includes zero" if included[i] else ""
        spread = ""
        s = result.spread
        if s is not None and result.feature_names[i] in s.names:
            row = s.names.index(result.feature_names[i])
            spread = (
                f"; positive for {int((s.values[row] > 0).sum())} of "
                f"{s.n_participants} participants"
            )
        items.append(
            f"<li><b>{_e(pretty_name(result.feature_names[i]))}</b>: "
            f"{means[i]:.4f}{_e(ci)}{_e(note)}{_e(spread)}</li>"
        )
    n_clear = int((~included).sum())
    return (
        f"<h3>{_e(what.capitalize())}</h3><p>{n_clear} of {len(means)} have a "
        f"{result.ci_level:.0%} confidence interval that excludes zero. Largest:</p>"
        f"<ol>{''.join(items)}</ol>"
    )


def _figure(caption: str, fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _level_table(result: ImportanceResult) -> str:
    what = LEVEL_TITLES.get(result.level, result.level)
    low, high = result.confidence_interval()
    included = result.ci_includes_zero
    columns = ["rank", "name", "mean", "std", "CI low", "CI high", "CI includes 0"]
    if result.level != FEATURE_LEVEL:
        columns.append("columns")
    body = []
    for i in np.argsort(result.ranks, kind="stable"):
        name = result.feature_names[i]
        cells = [
            _num(result.ranks[i], "{:d}"),
            _name(name),
            _num(result.importances_mean[i]),
            _num(result.importances_std[i]),
            _num(low[i]),
            _num(high[i]),
            _text("yes" if included[i] else "no"),
        ]
        if result.level != FEATURE_LEVEL:
            cells.append(_num(result.group_sizes[i], "{:d}"))
        body.append(f"<tr{' class=zero' if included[i] else ''}>{''.join(cells)}</tr>")
    return (
        f"<h3>{_e(what.capitalize())}</h3>"
        f'<p class="muted">Mean over {result.n_repeats} repeats; {result.ci_level:.0%} '
        f"confidence interval of that mean.</p>" + _table(columns, body, sorted_by=0)
    )


def _participant_table(result: ImportanceResult) -> str:
    spread = result.spread
    frame = spread.to_frame().sort_values("participant_mean", ascending=False, kind="stable")
    columns = ["name", "mean", "std", "min", "max", "CI low", "CI high", "CI includes 0", "n > 0"]
    columns += [c.removeprefix(PARTICIPANT_PREFIX) for c in frame.columns if _is_pid(c)]
    body = []
    for _, row in frame.iterrows():
        cells = [
            _name(row["feature"]),
            *(
                _num(row[c])
                for c in (
                    "participant_mean",
                    "participant_std",
                    "participant_min",
                    "participant_max",
                    "ci_low",
                    "ci_high",
                )
            ),
            _text("yes" if row["ci_includes_zero"] else "no"),
            _num(row["n_positive"], "{:d}"),
            *(_num(row[c]) for c in frame.columns if _is_pid(c)),
        ]
        body.append(f"<tr>{''.join(cells)}</tr>")
    what = LEVEL_TITLES.get(result.level, result.level)
    skipped = (
        f" Left out: {', '.join(f'{p} ({r})' for p, r in spread.skipped.items())}."
        if spread.skipped
        else ""
    )
    return (
        f"<details{' open' if result.level != FEATURE_LEVEL else ''}><summary>"
        f"{_e(what.capitalize())}: {spread.n_participants} participants</summary>"
        f'<p class="muted">Importance computed on each participant\'s rows alone; mean, '
        f"sample std, range and {spread.ci_level:.0%} confidence interval over "
        f"participants; n &gt; 0: participants for whom it is above zero.{_e(skipped)}</p>"
        + _table(columns, body, sorted_by=1, ascending=False)
        + "</details>"
    )


def _is_pid(column: str) -> bool:
    return column.startswith(PARTICIPANT_PREFIX) and column not in {
        "participant_mean",
        "participant_std",
        "participant_min",
        "participant_max",
    }


def _params_table(result: ImportanceResult, aggregate: str) -> str:
    rows: dict[str, Any] = {
        "created (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "leap version": _leap_version(),
        "method": result.method,
        "scoring": result.scoring,
        "baseline score": result.baseline_score,
        "ci_level": result.ci_level,
        "heatmap aggregation": aggregate,
        "groupings": ", ".join(result.groups) or "none",
    }
    rows.update(result.params)
    body = []
    for key, value in rows.items():
        cls = ' class="mono"' if key.endswith("sha256") else ""
        body.append(f'<tr><td class="name">{_e(key)}</td><td{cls}>{_e(value)}</td></tr>')
    return (
        '<p class="muted">The SHA-256 fingerprints identify the exact model and data files '
        "(compare with <code>sha256sum FILE</code>).</p>"
        f'<table class="params">{"".join(body)}</table>'
    )


def _table(
    columns: list[str], body: list[str], sorted_by: int | None = None, ascending: bool = True
) -> str:
    order = f' aria-sort="{"ascending" if ascending else "descending"}"'
    heads = "".join(
        f'<th scope="col"{" class=name" if c == "name" else ""}'
        f"{order if n == sorted_by else ''}>{_e(c)}</th>"
        for n, c in enumerate(columns)
    )
    return (
        f'<div class="scroll"><table class="sortable"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _num(value: Any, fmt: str = "{:.4f}") -> str:
    value = float(value) if fmt != "{:d}" else int(value)
    if isinstance(value, float) and not math.isfinite(value):
        return '<td data-v="">–</td>'
    return f'<td data-v="{value!r}">{fmt.format(value)}</td>'


def _name(name: str) -> str:
    return f'<td class="name" data-v="{_e(name)}" title="{_e(name)}">{_e(pretty_name(name))}</td>'


def _text(text: str) -> str:
    return f'<td data-v="{_e(text)}">{_e(text)}</td>'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _leap_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leap")
    except PackageNotFoundError:
        return "unknown"


_READING = """
<ul>
<li><b>Importance</b> is the drop in the score when a feature (or a group of features) is
permuted: shuffled across rows so that its link to the label is broken. Zero means the model
did not use it <i>in a way that permuting could reveal</i>; a negative value means the
shuffled column scored better, which is noise or over-fitting.</li>
<li><b>Channel pairs vs. groups.</b> A channel pair permuted alone keeps its correlated
siblings intact, so the model can often fall back on them: summing channel pairs is not the
importance of a sensor pair. The grouped rows permute every channel of a sensor pair (or of a
sensor) together and answer "what does the model lose without it?".</li>
<li><b>Confidence intervals over repeats</b> say how precisely the repeated permutations pin
down the mean for <i>this</i> model on <i>this</i> data. They do not cover a different
sample, new participants or a retrained model, and with many features some intervals exclude
zero by chance (about 5% of truly useless ones at the 95% level).</li>
<li><b>Intervals over participants</b> treat the participants as a sample of a population:
they are wider, and they are the ones to quote for "does this hold across people?". With few
participants, or few rows per participant, they are rough.</li>
</ul>
"""


@hookimpl(trylast=True)
def register_renderers(register):
    register(HtmlReport())
