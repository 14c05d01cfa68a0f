"""The HTML report of several runs: one self-contained page (inline CSS and SVG, no scripts).

Learning curves overlaid per metric, final and best values, a params table and a
code-and-data table with the differing rows highlighted, and the environment
fields that differ between the runs. Pure: records in, text out.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
from html import escape
from typing import Mapping, Sequence

from mlrepro.compare.curves import summarize_series
from mlrepro.compare.sections import OPERATIONAL_VARIABLES, same_value
from mlrepro.compare.svg import color, dash, line_chart
from mlrepro.compare.text import duration, number, when

MISSING = "—"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
margin:24px 32px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid
#d8dee8;padding-bottom:4px}.sub{color:#5b6577;margin:0}
table{border-collapse:collapse;margin:6px 0 4px;font-size:13px}
th,td{border:1px solid #d8dee8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f9;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.differs td{background:#fff3bf}tr.differs td:first-child{box-shadow:inset 3px 0 #f59f00}
.mark{color:#c92a2a;font-weight:700}.swatch{display:inline-block;width:22px;height:4px;
vertical-align:middle;margin-right:6px;border-radius:2px}
td.mono{word-break:break-all;max-width:360px}table{max-width:100%}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:14px}.charts figure{margin:0;border:1px solid #d8dee8;
border-radius:6px;padding:6px}
.chart .plot{fill:#fbfcfe;stroke:#c5ccd8}.chart .grid{stroke:#e6eaf0}.chart .axis{stroke:#8a94a6}
.chart .tick{font-size:11px;fill:#5b6577}.chart .axis-label{font-size:12px;fill:#5b6577}
.chart .chart-title{font-size:13px;font-weight:600;fill:#1d2430}.chart .empty{fill:#8a94a6}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin:4px 0 10px}
.note{color:#5b6577}.same{color:#2b8a3e}
"""


def _label(m: Mapping) -> str:
    name = m.get("name")
    return m["id"] if not name or name == m["id"] else f"{name} ({m['id'][-10:]})"


def _cell(value) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return number(value)
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _differs(values: Sequence) -> bool:
    return any(not same_value(values[0], v) for v in values[1:])


def comparison_table(row_label: str, runs: Sequence[Mapping], rows: Sequence[tuple[str, list]],
                     *, only_differences: bool = False, table_id: str = "") -> str:
    """A table with one column per run; rows whose values differ get class `differs`."""
    head = "".join(f'<th><span class="swatch" style="background:{color(i)}"></span>'
                   f"{escape(_label(m))}</th>" for i, m in enumerate(runs))
    body = []
    for label, values in rows:
        differs = len(values) > 1 and _differs(values)
        if only_differences and not differs:
            continue
        cls = ' class="differs"' if differs else ""
        mark = ' <span class="mark" title="differs between runs">≠</span>' if differs else ""
        cells = "".join(f'<td class="mono">{escape(_cell(v))}</td>' for v in values)
        body.append(f"<tr{cls}><th>{escape(label)}{mark}</th>{cells}</tr>")
    if not body:
        return ""
    ident = f' id="{table_id}"' if table_id else ""
    return (f"<table{ident}><thead><tr><th>{escape(row_label)}</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _runs_table(runs: Sequence[Mapping]) -> str:
    rows = []
    for i, m in enumerate(runs):
        parent = m.get("parent") or {}
        rows.append(
            f'<tr><td><span class="swatch" style="background:{color(i)}"></span>'
            f'<span class="mono">{escape(m["id"])}</span></td>'
            f'<td>{escape("" if m.get("name") in (None, m["id"]) else str(m["name"]))}</td>'
            f"<td>{escape(str(m.get('project')))}</td><td>{escape(str(m.get('status')))}</td>"
            f"<td>{escape(when(m.get('start_time')))}</td>"
            f"<td>{escape(duration(m.get('start_time'), m.get('end_time')))}</td>"
            f'<td class="mono">{escape(str(m.get("fingerprint") or MISSING)[:12])}</td>'
            f"<td>{escape((parent.get('kind', '') + ' ' + parent.get('run', '')).strip())}</td>"
            "</tr>")
    return ("<table id=\"runs\"><thead><tr><th>run</th><th>name</th><th>project</th>"
            "<th>status</th><th>started</th><th>time</th><th>fingerprint</th><th>parent</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _metric_names(series_by_run: Sequence[Mapping], patterns: Sequence[str] | None) -> list[str]:
    names = sorted({n for s in series_by_run for n in s})
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return names


def _charts(runs, series_by_run, names) -> str:
    if not names:
        return '<p class="note">No metrics were recorded.</p>'
    legend = "".join(f'<span><span class="swatch" style="background:{color(i)};'
                     f'{"border-top:2px dashed #fff;" if dash(i) else ""}"></span>'
                     f"{escape(_label(m))}</span>" for i, m in enumerate(runs))
    figures = []
    for name in names:
        lines = [(_label(m), [(float(p[0]), float(p[1])) for p in s.get(name, [])])
                 for m, s in zip(runs, series_by_run)]
        figures.append(f'<figure data-metric="{escape(name)}">{line_chart(name, lines)}</figure>')
    return f'<div class="legend">{legend}</div><div class="charts">{"".join(figures)}</div>'


def _summary_rows(series_by_run, names) -> list[tuple[str, list]]:
    rows = []
    for name in names:
        summaries = [summarize_series(name, s.get(name, [])) for s in series_by_run]
        rows.append((f"{name} final", [s["final"] for s in summaries]))
        mode = next((s["mode"] for s in summaries if s["mode"]), "min")
        rows.append((f"{name} {mode}", [s["best"] for s in summaries]))
    return rows


def _param_rows(runs) -> list[tuple[str, list]]:
    rows = []
    for section, prefix in (("params", ""), ("auto_params", "auto: ")):
        keys = sorted({k for m in runs for k in (m.get(section) or {})})
        for key in keys:
            rows.append((prefix + key, [(m.get(section) or {}).get(key) for m in runs]))
    rows.append(("seed", [m.get("seed") for m in runs]))
    rows.append(("deterministic", [bool((m.get("determinism") or {}).get("deterministic"))
                                   for m in runs]))
    return rows


def _short_digest(value):
    """sha256 digests shown by their first 16 hex digits (still unique in practice)."""
    return value[:16] if isinstance(value, str) and len(value) == 64 else value


def _code_data_rows(runs) -> list[tuple[str, list]]:
    codes = [m.get("code") or {} for m in runs]
    rows = [("commit", [c.get("commit") for c in codes]),
            ("branch", [c.get("branch") for c in codes]),
            ("uncommitted patch", [_short_digest(c.get("patch")) for c in codes]),
            ("entry point", [c.get("entry_point") for c in codes]),
            ("entry point source", [_short_digest(c.get("entry_point_object")) for c in codes]),
            ("arguments", [" ".join((c.get("argv") or [])[1:]) for c in codes])]
    names = sorted({n for m in runs for n in (m.get("data") or {})})
    for name in names:
        rows.append((f"data {name}", [_short_digest(((m.get("data") or {}).get(name) or {})
                                                    .get("digest")) for m in runs]))
    return rows


def flatten_environment(env: Mapping) -> dict[str, object]:
    """The environment fields a person compares, as `field: value` (packages one per row)."""
    env = env or {}
    cpu = env.get("cpu") or {}
    out: dict[str, object] = {
        "python": env.get("python"), "platform": env.get("platform"),
        "machine": env.get("machine"), "cpu": cpu.get("model"), "cpu cores": cpu.get("cores"),
        "accelerators": ", ".join(env.get("accelerators") or []) or None,
        "gpus": ", ".join(f"{g.get('name')} (driver {g.get('driver')})"
                          for g in env.get("gpus") or []) or None,
    }
    for name, version in sorted((env.get("frameworks") or {}).items()):
        out[f"framework {name}"] = version
    for name, version in sorted((env.get("packages") or {}).items()):
        out[f"package {name}"] = version
    for name, value in sorted((env.get("variables") or {}).items()):
        if not OPERATIONAL_VARIABLES.match(name):
            out[f"variable {name}"] = value
    return out


def _environment(runs) -> str:
    flat = [flatten_environment(m.get("environment") or {}) for m in runs]
    keys = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    rows = [(k, [f.get(k) for f in flat]) for k in keys]
    table = comparison_table("field", runs, rows, only_differences=True,
                             table_id="environment-differences")
    if table:
        return table
    first = flat[0] if flat else {}
    brief = ", ".join(f"{k} {first.get(k)}" for k in ("python", "framework tensorflow",
                                                       "framework keras", "accelerators")
                      if first.get(k))
    return f'<p class="same" id="environment-same">No differences: every run had the same ' \
           f"environment ({escape(brief)}).</p>"


def render_report(runs: Sequence[Mapping], series_by_run: Sequence[Mapping], *,
                  metrics: Sequence[str] | None = None, title: str | None = None,
                  generated: float | None = None) -> str:
    """The whole report page.

    Args:
        runs: manifests, in the order to show them (the first is the baseline colour).
        series_by_run: for each run, `{metric: [(step, value, ...), ...]}`.
        metrics: glob patterns of the metrics to chart (default: all).
        title: the page title.
        generated: when the report was made (a Unix time), shown in the header.
    """
    runs = list(runs)
    names = _metric_names(series_by_run, metrics)
    title = title or f"mlrepro report: {len(runs)} run{'s' if len(runs) != 1 else ''}"
    stamp = _dt.datetime.fromtimestamp(generated).strftime("%Y-%m-%d %H:%M:%S") if generated \
        else ""
    summary = comparison_table("metric", runs, _summary_rows(series_by_run, names),
                               table_id="metric-summary")
    params = comparison_table("param", runs, _param_rows(runs), table_id="params")
    code = comparison_table("", runs, _code_data_rows(runs), table_id="code-data")
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{len(runs)} runs · {len(names)} metrics'
        + (f" · generated {escape(stamp)}" if stamp else "") + "</p>",
        "<h2>Runs</h2>", _runs_table(runs),
        "<h2>Learning curves</h2>", _charts(runs, series_by_run, names),
        "<h2>Final and best values</h2>", summary or '<p class="note">No metrics.</p>',
        "<h2>Params</h2>", params or '<p class="note">No params.</p>',
        "<p class=\"note\">Highlighted rows (≠) differ between the runs.</p>",
        "<h2>Code and data</h2>", code,
        "<h2>Environment differences</h2>", _environment(runs),
        "</body></html>",
    ])
