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
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leap.builtins.renderers.bars import LEVEL_TITLES, pretty_name
from leap.data.aggregates import AGGREGATIONS
from leap.data.files import atomic_path
from leap.data.formatting import format_number
from leap.figures import figure_bytes
from leap.hookspecs import hookimpl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from leap.data.result import ImportanceResult

#: Table rows on the page at most, per level (best ranks first); the CSV has every row.
MAX_TABLE_ROWS = 2000


class HtmlReport:
    """A single self-contained HTML page: summary, figures, sortable tables, run details.

    The page shows the figures it is given (``figures``: request key → image file or
    Figure); :meth:`figure_requests` says which it wants, so whoever runs the report
    draws them through the renderer registry, or hands over the files a run already wrote.
    """

    name = "report"
    suffixes = (".html", ".htm")
    options = ("aggregate", "figures")

    def figure_requests(
        self, result: ImportanceResult, options: Mapping[str, Any]
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """The figures the page shows, as ``(key, renderer name, render options)``.

        ``options`` are the run's renderer settings (``aggregate``, ``k``).
        """
        aggregate = options.get("aggregate", "sum_positive")
        k = options.get("k", 20)
        requests: list[tuple[str, str, dict[str, Any]]] = []
        has_sensors = any(len(s) == 2 for s in result.row_sensors)
        has_grouped = result.level == "sensor_pair" or "sensor_pair" in result.groups
        if has_sensors:
            aggregates = [aggregate]
            if has_grouped and aggregate != "grouped":
                aggregates.append("grouped")
            elif aggregate == "grouped":
                aggregates.append("sum_positive")
            requests += [(f"heatmap:{agg}", "heatmap", {"aggregate": agg}) for agg in aggregates]
        if any(p is not None for p in result.pairs):
            requests.append(("channel_heatmap", "channel_heatmap", {}))
        requests.append(("bars", "bars", {"k": k}))
        if any(r.spread is not None for r in (result, *result.groups.values())):
            requests.append(("participants", "participants", {"k": k}))
        return requests

    def render(
        self,
        result: ImportanceResult,
        path: Path | None,
        *,
        title: str = "",
        aggregate: str = "sum_positive",
        figures: Mapping[str, Path | Figure] | None = None,
    ) -> str:
        """Build the page (and write it to ``path`` when given); return the HTML text.

        ``figures`` maps request keys (see :meth:`figure_requests`; any other key is
        shown as its own caption) to PNG or SVG files, or to Figures.
        """
        title = title or "LEAP importance report"
        shown = [(_caption(key, result), image) for key, image in (figures or {}).items()]
        page = _page(title, result, shown, aggregate)
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(page, encoding="utf-8")
        return page


def _caption(key: str, result: ImportanceResult) -> str:
    if key == "bars" and result.q_value is not None:
        return (
            f"The most important rows at each level; error bars are {result.ci_level:.0%} "
            f"confidence intervals over {_units(result)}; dark bars: discoveries "
            "(q ≤ 0.05), pale bars: not discoveries."
        )
    if key.startswith("heatmap:"):
        name = key.partition(":")[2]
        return AGGREGATIONS[name].caption if name in AGGREGATIONS else key
    captions = {
        "channel_heatmap": "Every channel-pair feature; the squares on the diagonal are the "
        "within-sensor pairs, the diagonal itself (a channel with itself) is not a feature.",
        "bars": f"The most important rows at each level; error bars are "
        f"{result.ci_level:.0%} confidence intervals of the mean over the repeats; pale bars: "
        f"the interval includes zero.",
        "participants": "Each dot is the importance computed on one participant's rows "
        "alone; the diamond and line are the mean over participants and its confidence "
        "interval.",
    }
    return captions.get(key, key)


def _page(
    title: str,
    result: ImportanceResult,
    figures: Sequence[tuple[str, Path | Figure]],
    aggregate: str,
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
        f"<title>{_e(title)}</title><style>{_asset('report.css')}</style></head><body>",
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
        f"<script>{_asset('report.js')}</script>",
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
        bits.append(f"baseline {result.scoring} {format_number(result.baseline_score, '.4f')}")
    bits.append(f"{result.n_repeats} repeats of {result.method}")
    return "; ".join(bits) + "."


def _summary(result: ImportanceResult) -> str:
    if result.q_value is not None:
        return _discovery_summary(result)
    what = LEVEL_TITLES.get(result.level, result.level)
    means = result.importances_mean
    order = np.argsort(-means, kind="stable")[:5]
    included = result.ci_includes_zero
    items = []
    for i in order:
        low, high = result.ci_low[i], result.ci_high[i]
        ci = (
            ""
            if math.isnan(low)
            else f" ({result.ci_level:.0%} CI {format_number(low, '.4f')} to "
            f"{format_number(high, '.4f')})"
        )
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
            f"{format_number(means[i], '.4f')}{_e(ci)}{_e(note)}{_e(spread)}</li>"
        )
    n_clear = int((~included).sum())
    return (
        f"<h3>{_e(what.capitalize())}</h3><p>{n_clear} of {len(means)} have a "
        f"{result.ci_level:.0%} confidence interval that excludes zero. Largest:</p>"
        f"<ol>{''.join(items)}</ol>"
    )


def _figure(caption: str, image: Path | Figure) -> str:
    if isinstance(image, Path):
        data, mime = image.read_bytes(), _MIME[image.suffix.lower()]
    else:
        data, mime = figure_bytes(image, "png", dpi=110), "image/png"
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img src="data:{mime};base64,{encoded}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


#: Image formats a page can show inline.
EMBEDDABLE = (".png", ".svg")
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}


def _level_table(result: ImportanceResult) -> str:
    from leap.data.result import FEATURE_LEVEL

    what = LEVEL_TITLES.get(result.level, result.level)
    if result.q_value is not None:
        return _tested_table(result)
    low, high = result.confidence_interval()
    included = result.ci_includes_zero
    columns = ["rank", "name", "mean", "std", "CI low", "CI high", "CI includes 0"]
    if result.level != FEATURE_LEVEL:
        columns.append("columns")
    body = []
    for i in np.argsort(result.ranks, kind="stable")[:MAX_TABLE_ROWS]:
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
        f"confidence interval of that mean.{_cut_note(len(result.feature_names))}</p>"
        + _table(columns, body, sorted_by=0)
    )


def _participant_table(result: ImportanceResult) -> str:
    from leap.data.result import FEATURE_LEVEL
    from leap.workflows.participants import PARTICIPANT_PREFIX

    spread = result.spread
    frame = spread.to_frame().sort_values("participant_mean", ascending=False, kind="stable")
    n_rows = len(frame)
    frame = frame.head(MAX_TABLE_ROWS)
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
        f"participants; n &gt; 0: participants for whom it is above zero.{_e(skipped)}"
        f"{_cut_note(n_rows)}</p>"
        + _table(columns, body, sorted_by=1, ascending=False)
        + "</details>"
    )


def _cut_note(n_rows: int) -> str:
    """A sentence saying the table is cut (empty when it is not)."""
    if n_rows <= MAX_TABLE_ROWS:
        return ""
    return (
        f" The table shows the first {MAX_TABLE_ROWS:,} of {n_rows:,} rows; the CSV has every row."
    )


def _is_pid(column: str) -> bool:
    from leap.workflows.participants import PARTICIPANT_PREFIX

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
    shown = format_number(value, fmt[2:-1]) if isinstance(value, float) else fmt.format(value)
    return f'<td data-v="{value!r}">{shown}</td>'


def _name(name: str) -> str:
    return f'<td class="name" data-v="{_e(name)}" title="{_e(name)}">{_e(pretty_name(name))}</td>'


def _text(text: str) -> str:
    return f'<td data-v="{_e(text)}">{_e(text)}</td>'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _asset(name: str) -> str:
    """The page's stylesheet or script, shipped beside this module."""
    from importlib.resources import files

    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def _leap_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leap")
    except PackageNotFoundError:
        return "unknown"


def _units(result: ImportanceResult) -> str:
    """``"300 held-out rows"`` / ``"12 participants"``: what the test is over."""
    test = result.params.get("inference", {})
    unit = str(test.get("unit", "row"))
    count = test.get("n_units")
    noun = "participants" if unit == "participant" else "held-out rows"
    return f"{count} {noun}" if count is not None else noun


def _discovery_summary(result: ImportanceResult) -> str:
    """The headline of a tested result: discoveries at q ≤ 0.05, and what that means."""
    from leap.data.result import DISCOVERY_Q

    what = LEVEL_TITLES.get(result.level, result.level)
    measurable = result.is_measurable
    found = result.discoveries(DISCOVERY_Q)
    p_value = result.p_value if result.p_value is not None else np.full(len(found), np.nan)
    n_tested = int((~np.isnan(p_value)).sum())
    n_unmeasured = int((~measurable).sum())
    means = result.importances_mean
    low, high = result.confidence_interval()
    q_value = result.q_value
    assert q_value is not None
    order = [i for i in np.argsort(-means, kind="stable") if measurable[i]][:5]
    items = []
    for i in order:
        ci = (
            ""
            if math.isnan(low[i])
            else f" ({result.ci_level:.0%} CI {format_number(low[i], '.4f')} to "
            f"{format_number(high[i], '.4f')}"
        )
        ci += f"; q = {q_value[i]:.3g})" if ci else f" (q = {q_value[i]:.3g})"
        mark = " — discovery" if found[i] else ""
        items.append(
            f"<li><b>{_e(pretty_name(result.feature_names[i]))}</b>: "
            f"{format_number(means[i], '.4f')}{_e(ci)}{_e(mark)}</li>"
        )
    beyond = (
        " beyond what the other features carry (conditional importance)"
        if result.method == "conditional"
        else ""
    )
    text = (
        f"{int(found.sum())} of {n_tested} {what} are discoveries at q ≤ {DISCOVERY_Q:g}: "
        f"on these {_units(result)}, disturbing each of them lowers the model's "
        f"{result.scoring}{beyond} by more than chance explains. Among the discoveries, the "
        f"expected share of false ones is at most {DISCOVERY_Q:.0%} (Benjamini–Hochberg "
        f"over the {n_tested} tested). This is about the model's reliance on them, not "
        "their association with the label."
    )
    if n_unmeasured:
        text += (
            f" {n_unmeasured} {what} are constant over the data: they cannot be measured and "
            "are left out of the ranking and the count."
        )
    return f"<h3>{_e(what.capitalize())}</h3><p>{_e(text)} Largest:</p><ol>{''.join(items)}</ol>"


def _tested_table(result: ImportanceResult) -> str:
    """The table of a tested result: interval over held-out units, p, q, discovery."""
    from leap.data.result import DISCOVERY_Q, FEATURE_LEVEL

    what = LEVEL_TITLES.get(result.level, result.level)
    low, high = result.confidence_interval()
    found = result.discoveries(DISCOVERY_Q)
    measurable = result.is_measurable
    p_value, q_value = result.p_value, result.q_value
    assert p_value is not None and q_value is not None
    columns = ["rank", "name", "mean", "CI low", "CI high", "p", "q", "discovery"]
    if result.level != FEATURE_LEVEL:
        columns.append("columns")
    body = []
    for i in np.argsort(result.ranks, kind="stable"):
        rank = _num(result.ranks[i], "{:d}") if measurable[i] else _text("–")
        cells = [
            rank,
            _name(result.feature_names[i]),
            _num(result.importances_mean[i]) if measurable[i] else _text("not measurable"),
            _num(low[i]),
            _num(high[i]),
            _num(p_value[i], "{:.3g}"),
            _num(q_value[i], "{:.3g}"),
            _text("yes" if found[i] else "no" if measurable[i] else "n/a"),
        ]
        if result.level != FEATURE_LEVEL:
            cells.append(_num(result.group_sizes[i], "{:d}"))
        body.append(f"<tr{'' if found[i] else ' class=zero'}>{''.join(cells)}</tr>")
    return (
        f"<h3>{_e(what.capitalize())}</h3>"
        f'<p class="muted">Mean over {result.n_repeats} repeats; {result.ci_level:.0%} '
        f"confidence interval over {_e(_units(result))}; one-sided p-value of importance "
        f"&gt; 0 and its Benjamini–Hochberg q-value; discovery: q ≤ {DISCOVERY_Q:g}. "
        "Constant (unmeasurable) rows come last.</p>" + _table(columns, body, sorted_by=0)
    )


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
<li><b>p- and q-values.</b> Where the score is a mean over rows (accuracy, balanced accuracy,
R², squared or absolute error), each held-out row's change in loss is kept, and the test of
"importance &gt; 0" is over the rows (over participants when ids are given). The q-value is
the Benjamini–Hochberg adjustment across all rows of one table: calling everything with
q ≤ 0.05 a discovery keeps the expected share of false discoveries at 5% or less. They speak
of the model's reliance on a feature on these data, not of the feature's link to the
label. Features constant over the data cannot be measured and are marked as such.</li>
<li><b>Conditional importance</b> (method <code>conditional</code>) permutes only the part
of a feature that the other features cannot predict, so a sensor that merely echoes an
informative one gets about zero; plain permutation credits both.</li>
<li><b>Confidence intervals over repeats</b> (shown when no test was possible, e.g. ROC AUC)
say only how precisely the repeated permutations pin down the mean for <i>this</i> model on
<i>this</i> data; with many features some exclude zero by chance.</li>
<li><b>Intervals over participants</b> treat the participants as a sample of a population:
they are wider, and they are the ones to quote for "does this hold across people?". With few
participants, or few rows per participant, they are rough.</li>
</ul>
"""


@hookimpl(trylast=True)
def register_renderers(register):
    register(HtmlReport())
