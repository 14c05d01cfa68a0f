"""The report's comparison tables: one column per run, named by what differs, one row per key.

A row is highlighted (class `differs`, a ≠ mark) only when its values are not the same in
every run; the best cell of a metric row gets class `best` and a ★. Nested configuration is
compared key by key (`optimizer.learning_rate`), floats that are float32 values are shown at
float32 precision, and a long value (a model config, a summary) is folded into a closed
`<details>` rather than filling the page. Pure: values in, HTML text out.
"""

from __future__ import annotations

import json
from html import escape
from typing import Mapping, Sequence

from mlrepro.compare.naming import short_id
from mlrepro.compare.sections import OPERATIONAL_VARIABLES, flatten, same_value
from mlrepro.compare.svg import color
from mlrepro.compare.text import exact, printable

MISSING = "—"
FOLD_OVER = 80      # characters: a longer value is folded
FOLD_PREVIEW = 48


def _text(value) -> str:
    """A recorded value as text: floats at their (float32) precision, JSON for structures."""
    if value is None:
        return MISSING
    if isinstance(value, (bool, int, float)):
        return exact(value)
    if isinstance(value, str):
        return printable(value) if "\n" not in value else \
            "\n".join(printable(line) for line in value.split("\n"))
    flat = json.dumps(value, sort_keys=True, default=str)
    return flat if len(flat) <= FOLD_OVER else json.dumps(value, sort_keys=True, indent=1,
                                                          default=str)


def cell_html(value, *, text: str | None = None) -> str:
    """One table cell's content; long or multi-line values folded, short ones as they are."""
    text = _text(value) if text is None else text
    if len(text) <= FOLD_OVER and "\n" not in text:
        return escape(text)
    flat = " ".join(text.split())
    preview = flat[:FOLD_PREVIEW] + "…"
    return (f'<details class="fold"><summary>{escape(preview)} <span class="note">'
            f"({len(text.splitlines())} lines)</span></summary><pre>{escape(text)}</pre>"
            "</details>")


def differs(values: Sequence) -> bool:
    return len(values) > 1 and any(not same_value(values[0], v) for v in values[1:])


def run_header(i: int, m: Mapping, label: str) -> str:
    """A run's column head: its colour, its label, and its short id (the full id as title)."""
    return (f'<th class="run" title="{escape(printable(m.get("id")))}">'
            f'<span class="swatch" style="background:{color(i)}"></span>{escape(label)}'
            f"{rid(m, label)}</th>")


def rid(m: Mapping, label: str) -> str:
    """The short id under a run's label (not repeated when the label is the short id)."""
    tail = short_id(m.get("id"))
    return "" if label == tail else f'<span class="rid">{escape(tail)}</span>'


def comparison_table(row_label: str, runs: Sequence[Mapping], labels: Sequence[str],
                     rows: Sequence[tuple], *, only_differences: bool = False,
                     table_id: str = "") -> str:
    """A table with one column per run.

    Args:
        rows: `(label, values)` or `(label, values, texts, best, note)`: `label` and `note`
            are HTML, `texts` overrides how each value is shown, `best` lists the positions
            to mark as the best, `note` follows the label on a line of its own.
        only_differences: leave out the rows whose values are the same in every run.
    """
    head = "".join(run_header(i, m, lab) for i, (m, lab) in enumerate(zip(runs, labels)))
    body = []
    for row in rows:
        label, values = row[0], row[1]
        texts = row[2] if len(row) > 2 and row[2] else [None] * len(values)
        best = set(row[3]) if len(row) > 3 else set()
        note = row[4] if len(row) > 4 else ""
        diff = differs(values)
        if only_differences and not diff:
            continue
        cls = ' class="differs"' if diff else ""
        mark = ' <span class="mark" title="differs between runs">≠</span>' if diff else ""
        cells = []
        for j, (value, text) in enumerate(zip(values, texts)):
            klass = "num" if isinstance(value, (int, float)) and not isinstance(value, bool) \
                else "mono"
            star = ""
            if j in best:
                klass += " best"
                star = ' <span class="star" title="best">★</span>'
            cells.append(f'<td class="{klass}">{cell_html(value, text=text)}{star}</td>')
        body.append(f"<tr{cls}><th>{label}{mark}{note}</th>{''.join(cells)}</tr>")
    if not body:
        return ""
    ident = f' id="{table_id}"' if table_id else ""
    return (f'<div class="scroll"><table{ident}><thead><tr><th>{escape(row_label)}</th>{head}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def param_rows(runs: Sequence[Mapping]) -> list[tuple]:
    """User params, then auto-captured ones, each nested config key by key (dotted)."""
    rows = []
    for section, prefix in (("params", ""), ("auto_params", "auto: ")):
        flat = [flatten(m.get(section) if isinstance(m.get(section), Mapping) else {})
                for m in runs]
        for key in sorted({k for f in flat for k in f}):
            label = escape(prefix + printable(key)).replace(".", ".<wbr>")  # wraps on a phone
            rows.append((label, [f.get(key) for f in flat]))
    rows.append(("seed", [m.get("seed") for m in runs]))
    rows.append(("deterministic", [bool((m.get("determinism") or {}).get("deterministic"))
                                   for m in runs]))
    return rows


def _short_digest(value):
    """sha256 digests shown by their first 16 hex digits (still unique in practice)."""
    return value[:16] if isinstance(value, str) and len(value) == 64 else value


def code_data_rows(runs: Sequence[Mapping]) -> list[tuple]:
    codes = [m.get("code") or {} for m in runs]
    rows = [("commit", [c.get("commit") for c in codes]),
            ("branch", [c.get("branch") for c in codes]),
            ("uncommitted patch", [_short_digest(c.get("patch")) for c in codes]),
            ("entry point", [c.get("entry_point") for c in codes]),
            ("entry point source", [_short_digest(c.get("entry_point_object")) for c in codes]),
            ("arguments", [" ".join(map(str, (c.get("argv") or [])[1:])) for c in codes])]
    names = sorted({n for m in runs for n in (m.get("data") or {})})
    for name in names:
        rows.append((f"data {escape(printable(name))}",
                     [_short_digest(((m.get("data") or {}).get(name) or {}).get("digest"))
                      for m in runs]))
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


def environment_rows(runs: Sequence[Mapping]) -> list[tuple]:
    flat = [flatten_environment(m.get("environment") or {}) for m in runs]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    return [(escape(printable(k)), [f.get(k) for f in flat]) for k in keys]


def environment_brief(runs: Sequence[Mapping]) -> str:
    first = flatten_environment(runs[0].get("environment") or {}) if runs else {}
    return ", ".join(f"{k} {first.get(k)}" for k in ("python", "framework tensorflow",
                                                      "framework keras", "accelerators")
                     if first.get(k))
