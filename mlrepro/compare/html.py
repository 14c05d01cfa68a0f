"""The HTML report of several runs: one self-contained page (inline CSS and SVG, no scripts).

First a one-screen summary (the runs, named by what differs among them; what differs, key
by key; who won each key metric and by which rule; each run's reproducibility as its record
states it), then the informative learning curves (timing metrics and series flat within
every run folded away below them), final and best values with the best run marked, the
params that differ (`--all`: every param), code and data, and the environment differences.
Readable on a phone: tables scroll inside their box, charts scale. Pure: records in, text out.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
from html import escape
from typing import Mapping, Sequence

from mlrepro.compare.curves import summarize_series
from mlrepro.compare.naming import run_labels
from mlrepro.compare.summary import (best_indexes, direction_rule, metric_groups,
                                     reproducibility, winners)
from mlrepro.compare.svg import color, dash, line_chart
from mlrepro.compare.tables import (MISSING, code_data_rows, comparison_table, differs,
                                    environment_brief, environment_rows,
                                    flatten_environment, param_rows, rid)
from mlrepro.compare.text import duration, exact, number, printable, when

__all__ = ["render_report", "flatten_environment", "comparison_table"]

SUMMARY_ROWS = 8   # differing params shown in the summary (all of them are in Params)

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
margin:20px auto;padding:0 24px;max-width:1240px;background:#fff}
h1{font-size:22px;margin:0 0 4px;overflow-wrap:anywhere}h2{font-size:17px;margin:26px 0 10px;
border-bottom:1px solid #d8dee8;padding-bottom:4px}h3{font-size:14px;margin:14px 0 6px}
.sub{color:#5b6577;margin:0}
.scroll{overflow-x:auto;max-width:100%;margin:6px 0 4px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #d8dee8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f9;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}
th.run{white-space:nowrap}.rid{display:block;font:400 11px ui-monospace,Menlo,Consolas,
monospace;color:#5b6577}
tr.differs td{background:#fff3bf}tr.differs th:first-child{box-shadow:inset 3px 0 #f59f00}
td.best{font-weight:700;background:#d3f9d8 !important}.star{color:#2b8a3e}
.mark{color:#c92a2a;font-weight:700}.rule{display:block;font-weight:400;font-size:11px;
color:#5b6577}
.swatch{display:inline-block;width:22px;height:4px;vertical-align:middle;margin-right:6px;
border-radius:2px}
td.mono{overflow-wrap:break-word;max-width:360px}.nowrap{white-space:nowrap}
code{overflow-wrap:anywhere}
code,.mono,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{margin:4px 0;white-space:pre-wrap;overflow-wrap:anywhere;max-height:420px;overflow:auto}
details.fold summary{cursor:pointer;color:#1d2430}
details.more{margin:12px 0;border:1px solid #d8dee8;border-radius:6px;padding:6px 10px}
details.more>summary{cursor:pointer;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:14px}
.charts figure{margin:0;border:1px solid #d8dee8;border-radius:6px;padding:6px;
flex:1 1 420px;max-width:560px;min-width:0}
svg.chart{display:block;width:100%;height:auto}
.chart .plot{fill:#fbfcfe;stroke:#c5ccd8}.chart .grid{stroke:#e6eaf0}.chart .axis{stroke:#8a94a6}
.chart .tick{font-size:11px;fill:#5b6577}.chart .axis-label{font-size:12px;fill:#5b6577}
.chart .chart-title{font-size:13px;font-weight:600;fill:#1d2430}.chart .empty{fill:#8a94a6}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:4px 0 10px}
.note{color:#5b6577}.same{color:#2b8a3e}
.repro{font-weight:600}.repro-verified,.repro-exact{color:#2b8a3e}
.repro-deterministic{color:#1c7ed6}.repro-unverifiable,.repro-diverged{color:#c92a2a}
@media (max-width:640px){body{padding:0 10px;margin:10px auto}h1{font-size:19px}
.charts figure{flex-basis:100%}td.mono{max-width:220px}th.run{white-space:normal;
min-width:110px}}
"""


def _metric_names(series_by_run: Sequence[Mapping], patterns: Sequence[str] | None) -> list[str]:
    names = sorted({n for s in series_by_run for n in s})
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return names


def _metric_texts(values: Sequence) -> list[str]:
    """Metric values rounded for reading, in full where rounding would make two look equal."""
    texts = [MISSING if v is None else number(v) for v in values]
    if len(set(texts)) < len({exact(v) for v in values}):
        texts = [MISSING if v is None else exact(v) for v in values]
    return texts


def _swatch(i: int) -> str:
    style = f"background:{color(i)};" + ("border-top:2px dashed #fff;" if dash(i) else "")
    return f'<span class="swatch" style="{style}"></span>'


def _summary(runs, labels, series_by_run, groups) -> str:
    won = winners(series_by_run, groups["curves"]) if len(runs) > 1 else []
    best_on: dict[int, list[str]] = {}
    for w in won:
        for i in w["winners"]:
            best_on.setdefault(i, []).append(w["metric"])
    rows = []
    for i, (m, label) in enumerate(zip(runs, labels)):
        status, why = reproducibility(m)
        rows.append(
            f'<tr><td title="{escape(printable(m.get("id")))}">{_swatch(i)}'
            f"{escape(label)}{rid(m, label)}</td>"
            f"<td>{escape(printable(m.get('status')))}</td>"
            f'<td><span class="repro repro-{status}">{status}</span> '
            f'<span class="note">{escape(printable(why))}</span></td>'
            f"<td>{escape(printable(', '.join(best_on.get(i, []))) or MISSING)}</td></tr>")
    parts = ['<section id="summary"><h2>Summary</h2>',
             '<div class="scroll"><table id="summary-runs"><thead><tr><th>run</th>'
             "<th>status</th><th>reproducibility</th><th>best on</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table></div>"]
    if len(runs) < 2:
        parts.append('<p class="note">One run: nothing to compare it with.</p></section>')
        return "".join(parts)
    parts.append("<h3>What differs</h3>")
    differing = [r for r in param_rows(runs) if differs(r[1])]
    if differing:
        parts.append(comparison_table("param", runs, labels, differing[:SUMMARY_ROWS],
                                      table_id="summary-differs"))
        if len(differing) > SUMMARY_ROWS:
            parts.append(f'<p class="note">and {len(differing) - SUMMARY_ROWS} more params: '
                         "see Params below.</p>")
    else:
        parts.append('<p class="same">No param differs.</p>')
    parts.append(f'<p class="note" id="summary-sections">{_sections_line(runs)}</p>')
    parts.append("<h3>Who won</h3>")
    if won:
        body = []
        for w in won:
            who = ", ".join(escape(labels[i]) for i in w["winners"])
            values = [w["best"][i] for i in w["winners"]]
            if not who:
                recorded = [v for v in w["best"] if v is not None]
                who = "tie: no run is better" if len(recorded) > 1 else \
                    "only one run recorded it"
            body.append(f"<tr><th>{escape(printable(w['metric']))}</th><td>{who}</td>"
                        f'<td class="num">{escape(_metric_texts(values)[0]) if values else MISSING}'
                        f"</td><td class=\"note\">{escape(w['rule'])}</td></tr>")
        parts.append('<div class="scroll"><table id="winners"><thead><tr><th>metric</th>'
                     "<th>best run</th><th>best value</th><th>rule</th></tr></thead>"
                     f"<tbody>{''.join(body)}</tbody></table></div>")
    else:
        parts.append('<p class="note">No learning curves to compare.</p>')
    parts.append("</section>")
    return "".join(parts)


def _sections_line(runs) -> str:
    code = code_data_rows(runs)
    code_diff = [label for label, values in code if differs(values)]
    env_diff = [label for label, values in environment_rows(runs) if differs(values)]
    code_words = "same" if not [c for c in code_diff if not c.startswith("data ")] else \
        "differs (" + ", ".join(c for c in code_diff if not c.startswith("data ")) + ")"
    data_words = "same" if not [c for c in code_diff if c.startswith("data ")] else \
        "differs (" + ", ".join(c[5:] for c in code_diff if c.startswith("data ")) + ")"
    env_words = "same" if not env_diff else \
        f"{len(env_diff)} difference{'s' if len(env_diff) != 1 else ''} (see below)"
    return f"Code: {code_words}. Data: {data_words}. Environment: {env_words}."


def _figures(runs, labels, series_by_run, names) -> str:
    figures = []
    for name in names:
        lines = [(label, [(float(p[0]), float(p[1])) for p in s.get(name, [])])
                 for label, s in zip(labels, series_by_run)]
        figures.append(f'<figure data-metric="{escape(printable(name))}">'
                       f"{line_chart(printable(name), lines)}</figure>")
    return f'<div class="charts">{"".join(figures)}</div>'


def _charts(runs, labels, series_by_run, groups) -> str:
    if not any(groups.values()):
        return '<p class="note">No metrics were recorded.</p>'
    legend = "".join(f'<span class="entry" title="{escape(printable(m.get("id")))}">'
                     f"{_swatch(i)}{escape(label)}</span>"
                     for i, (m, label) in enumerate(zip(runs, labels)))
    out = [f'<div class="legend">{legend}</div>']
    if groups["curves"]:
        out.append(_figures(runs, labels, series_by_run, groups["curves"]))
    else:
        out.append('<p class="note">Every metric is a timing or constant: see below.</p>')
    for key, ident, what in (("constant", "constant-charts", "Constant within each run"),
                             ("timing", "timing-charts", "Timing (how fast, not how well)")):
        names = groups[key]
        if names:
            out.append(f'<details class="more" id="{ident}"><summary>{what}: '
                       f"{escape(', '.join(printable(n) for n in names))}</summary>"
                       f"{_figures(runs, labels, series_by_run, names)}</details>")
    return "".join(out)


def _value_rows(series_by_run, names, *, mark: bool) -> list[tuple]:
    rows = []
    for name in names:
        summaries = [summarize_series(name, s.get(name, [])) for s in series_by_run]
        mode = next((s["mode"] for s in summaries if s["mode"]), "min")
        shown = escape(printable(name))
        finals = [s["final"] for s in summaries]
        bests = [s["best"] for s in summaries]
        rule = f'<span class="rule">{escape(direction_rule(name))}</span>' if mark else ""
        rows.append((f"{shown} final", finals, _metric_texts(finals),
                     best_indexes(finals, name) if mark else []))
        rows.append((f"{shown} {mode}", bests, _metric_texts(bests),
                     best_indexes(bests, name) if mark else [], rule))
    return rows


def _values(runs, labels, series_by_run, groups) -> str:
    table = comparison_table("metric", runs, labels,
                             _value_rows(series_by_run, groups["curves"], mark=len(runs) > 1),
                             table_id="metric-summary")
    out = [table or '<p class="note">No learning curves.</p>']
    if len(runs) > 1 and table:
        out.append('<p class="note">★ the best run on that row; ≠ rows differ between the '
                   "runs.</p>")
    other = groups["constant"] + groups["timing"]
    if other:
        out.append(f'<details class="more" id="other-values"><summary>Timing and constant '
                   f"metrics ({len(other)})</summary>"
                   + comparison_table("metric", runs, labels,
                                      _value_rows(series_by_run, other, mark=False),
                                      table_id="other-metric-summary") + "</details>")
    return "".join(out)


def _params(runs, labels, show_all: bool) -> str:
    rows = param_rows(runs)
    only = not show_all and len(runs) > 1
    table = comparison_table("param", runs, labels, rows, only_differences=only,
                             table_id="params")
    hidden = sum(1 for r in rows if not differs(r[1])) if only else 0
    out = [table or '<p class="same">No param differs.</p>']
    if hidden:
        out.append(f'<p class="note" id="params-hidden">{hidden} identical param'
                   f"{'s' if hidden != 1 else ''} not shown: <code>mlrepro report --all</code> "
                   "includes them.</p>")
    return "".join(out)


def _runs_table(runs, labels) -> str:
    rows = []
    for i, (m, label) in enumerate(zip(runs, labels)):
        parent = m.get("parent") if isinstance(m.get("parent"), Mapping) else {}
        parent_text = f"{parent.get('kind', '')} {parent.get('run', '')}".strip()
        rows.append(
            f'<tr><td class="nowrap">{_swatch(i)}{escape(label)}</td>'
            f'<td class="mono nowrap">{escape(printable(m.get("id")))}</td>'
            f"<td>{escape(printable(m.get('project')))}</td>"
            f"<td class=\"nowrap\">{escape(when(m.get('start_time')))}</td>"
            f"<td>{escape(duration(m.get('start_time'), m.get('end_time')))}</td>"
            f'<td class="mono">{escape(str(m.get("fingerprint") or MISSING)[:12])}</td>'
            f"<td>{escape(printable(parent_text))}</td>"
            "</tr>")
    return ('<div class="scroll"><table id="runs"><thead><tr><th>run</th><th>id</th>'
            "<th>project</th><th>started</th><th>time</th><th>fingerprint</th><th>parent</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _environment(runs, labels) -> str:
    table = comparison_table("field", runs, labels, environment_rows(runs),
                             only_differences=True, table_id="environment-differences")
    if table:
        return table
    brief = environment_brief(runs)
    return ('<p class="same" id="environment-same">No differences: every run had the same '
            f"environment{f' ({escape(brief)})' if brief else ''}.</p>")


def render_report(runs: Sequence[Mapping], series_by_run: Sequence[Mapping], *,
                  metrics: Sequence[str] | None = None, title: str | None = None,
                  generated: float | None = None, show_all: bool = False) -> str:
    """The whole report page.

    Args:
        runs: manifests, in the order to show them (the first is the baseline colour).
        series_by_run: for each run, `{metric: [(step, value, ...), ...]}`.
        metrics: glob patterns of the metrics to chart (default: all).
        title: the page title.
        generated: when the report was made (a Unix time), shown in the header.
        show_all: list every param, not only those that differ.
    """
    runs = list(runs)
    labels = run_labels(runs)
    names = _metric_names(series_by_run, metrics)
    groups = metric_groups(series_by_run, names)
    title = printable(title or f"mlrepro report: {len(runs)} run{'s' if len(runs) != 1 else ''}")
    stamp = _dt.datetime.fromtimestamp(generated).strftime("%Y-%m-%d %H:%M:%S") if generated \
        else ""
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{len(runs)} runs · {len(names)} metrics'
        + (f" · generated {escape(stamp)}" if stamp else "") + "</p>",
        _summary(runs, labels, series_by_run, groups),
        "<h2>Learning curves</h2>", _charts(runs, labels, series_by_run, groups),
        "<h2>Final and best values</h2>", _values(runs, labels, series_by_run, groups),
        "<h2>Params</h2>", _params(runs, labels, show_all),
        "<h2>Runs</h2>", _runs_table(runs, labels),
        "<h2>Code and data</h2>",
        comparison_table("", runs, labels, code_data_rows(runs), table_id="code-data"),
        "<h2>Environment differences</h2>", _environment(runs, labels),
        "</body></html>",
    ])
