"""The `mlrepro runs` table: the columns a reader compares runs by, fitted to the terminal.

Which columns: the run's id, status and times, then the params that differ among the
listed runs (user params, then auto-captured ones by dotted key such as
`optimizer.learning_rate`), then the key metrics (the one sorted on first, then
`loss`, `val_loss`, `val_accuracy`, `accuracy` where recorded). Columns that do not fit
the width are dropped, least useful first, and a last line says which and that
`--wide` shows them. Pure formatting: the caller passes rows, auto params and a width.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from mlrepro.compare.sections import flatten, same_value
from mlrepro.compare.text import duration, end_of, number, short, table, when
from mlrepro.errors import MlreproError

KEY_METRICS = ("loss", "val_loss", "val_accuracy", "accuracy")
FALLBACK_METRICS = 3
# Metrics that measure the machine, not the model: never picked by default.
TIMING_METRIC = re.compile(r"(_time_s|_per_s|_seconds)$|^(batch/|lr$|learning_rate$)")
CELL_WIDTH = 24
GAP = "  "
FIXED = ("id", "project", "name", "status", "started", "time")


def is_timing_metric(name: str) -> bool:
    """True for metrics that say how fast a run went (`epoch_time_s`, `examples_per_s`)."""
    return bool(re.search(r"(_time_s|_per_s|_seconds)$", str(name)))


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def differing(maps: Sequence[Mapping]) -> list[str]:
    """The keys whose values are not the same in every map (missing counts as different).

    Example:
        >>> differing([{"lr": 0.1, "bs": 32}, {"lr": 0.01, "bs": 32}])
        ['lr']
    """
    keys = sorted({k for m in maps for k in m})
    out = []
    for key in keys:
        values = [m.get(key, _MISSING) for m in maps]
        first = values[0]
        if any(v is _MISSING for v in values) or not all(same_value(first, v) for v in values):
            out.append(key)
    return out


_MISSING = object()


def key_metrics(rows: Sequence[Mapping], sort: str | None = None) -> list[str]:
    """The metrics a reader looks at first: the sorted one, then loss/val_loss/val_accuracy/
    accuracy where any run recorded them, else the most common non-timing ones."""
    seen: dict[str, int] = {}
    for r in rows:
        for name in _dict(r.get("metrics_summary")):
            seen[name] = seen.get(name, 0) + 1
    chosen = [m for m in KEY_METRICS if m in seen]
    if not chosen:
        chosen = [n for n, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))
                  if not TIMING_METRIC.search(n)][:FALLBACK_METRICS]
    if sort:
        chosen = [sort] + [m for m in chosen if m != sort]
    return chosen


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value)
    return short(value, CELL_WIDTH)


def runs_table(rows: list[dict], *, width: int = 80, sort: str | None = None,
               auto_params: Mapping[str, Mapping] | None = None,
               columns: Sequence[str] | None = None, wide: bool = False) -> str:
    """One line per run, with the columns chosen for the reader and fitted to `width`.

    Args:
        rows: index rows (`id`, `status`, `params`, `metrics_summary`...).
        width: the terminal's width in characters.
        sort: the metric the rows are sorted on (always shown, first among metrics).
        auto_params: run id -> that run's auto-captured params (nested; compared by
            dotted key).
        columns: exactly these columns (fixed names, param keys or metric names), after
            the id; None chooses them.
        wide: every chosen column, however wide.
    """
    if not rows:
        return "no runs"
    params = [_dict(r.get("params")) for r in rows]
    flat_params = [flatten(p) for p in params]
    autos = [flatten(_dict((auto_params or {}).get(r["id"]))) for r in rows]
    user_keys = differing(flat_params)
    # Runs whose manifest was not read (auto_params has no entry) are left out of the comparison.
    known = [a for r, a in zip(rows, autos) if r["id"] in (auto_params or {})]
    auto_keys = [k for k in differing(known) if k not in user_keys] if len(known) > 1 else []
    metric_names = key_metrics(rows, sort)

    def cells(kind: str, key: str) -> list[str]:
        out = []
        for r, p, a in zip(rows, flat_params, autos):
            if kind == "fixed":
                out.append(_fixed(r, key))
            elif kind == "param":
                out.append(_cell(p.get(key)))
            elif kind == "auto":
                out.append(_cell(a.get(key)))
            else:
                out.append(number(_dict(_dict(r.get("metrics_summary")).get(key)).get("last")))
        return out

    if columns is not None:
        chosen = _named_columns(columns, rows, flat_params, autos)
    else:
        has_name = any((r.get("name") or "") not in ("", r["id"]) for r in rows)
        chosen = ([("fixed", "id"), ("fixed", "project"), ("fixed", "status")]
                  + ([("fixed", "name")] if has_name else [])
                  + [("fixed", "started"), ("fixed", "time")]
                  + [("param", k) for k in user_keys] + [("auto", k) for k in auto_keys]
                  + [("metric", m) for m in metric_names])
    built = [(kind, key, _header(kind, key), cells(kind, key)) for kind, key in chosen]
    shown = built
    hidden: list[str] = []
    if columns is None and not wide:
        shown, hidden = _fit(built, width, metric_names[:1] if sort else [])
    text = table([c[2] for c in shown], [list(r) for r in zip(*[c[3] for c in shown])])
    if hidden:
        names = ", ".join(hidden[:4]) + (", …" if len(hidden) > 4 else "")
        note = (f"({len(hidden)} column{'s' if len(hidden) != 1 else ''} hidden to fit "
                f"{width} columns: {names}; --wide shows all)")
        text += "\n" + (note if len(note) <= width else
                        f"({len(hidden)} columns hidden; --wide shows all)")
    return text


def _header(kind: str, key: str) -> str:
    return key.upper() if kind == "fixed" else short(str(key), CELL_WIDTH)


def _fixed(r: Mapping, key: str) -> str:
    if key == "id":
        return str(r["id"])
    if key == "project":
        return short(r.get("project") or "", 20)
    if key == "name":
        name = r.get("name") or ""
        return "" if name == r["id"] else short(name, CELL_WIDTH)
    if key == "status":
        return str(r.get("status") or "?")
    if key == "started":
        return when(r.get("start_time"))
    return duration(r.get("start_time"), end_of(r))


def _named_columns(columns, rows, flat_params, autos) -> list[tuple[str, str]]:
    metrics = {n for r in rows for n in _dict(r.get("metrics_summary"))}
    user = {k for p in flat_params for k in p}
    auto = {k for a in autos for k in a}
    out = [("fixed", "id")]
    for name in columns:
        name = name.strip()
        if not name or name.lower() == "id":
            continue
        if name.lower() in FIXED:
            out.append(("fixed", name.lower()))
        elif name in user:
            out.append(("param", name))
        elif name in auto:
            out.append(("auto", name))
        elif name in metrics:
            out.append(("metric", name))
        else:
            known = sorted(user | auto | metrics)
            hint = ", ".join(list(FIXED) + known[:10]) + (", …" if len(known) > 10 else "")
            raise MlreproError(f"--columns {name!r} is not a column of the runs listed: give "
                               f"a run field, param or metric name ({hint})")
    return out


def _width_of(column) -> int:
    return max([len(column[2])] + [len(c) for c in column[3]])


def _fit(built, width: int, keep: list[str]):
    """The columns that fit in `width`, chosen by usefulness and kept in display order."""
    def rank(item):
        i, (kind, key, _h, _c) = item
        if kind == "fixed" and key in ("id", "status"):
            return (0, i)
        if kind == "metric" and key in keep:
            return (1, i)
        if kind == "metric" and key == first_metric:
            return (3, i)
        order = {"param": 2, "auto": 4, "metric": 5}
        if kind in order:
            return (order[kind], i)
        return (6 + ("name", "time", "started", "project").index(key), i)

    first_metric = next((key for kind, key, _h, _c in built if kind == "metric"), None)
    total, taken = 0, set()
    for i, column in sorted(enumerate(built), key=rank):
        need = _width_of(column) + (len(GAP) if taken else 0)
        if total + need <= width or not taken:
            taken.add(i)
            total += need
    shown = [c for i, c in enumerate(built) if i in taken]
    hidden = [c[2] for i, c in enumerate(built) if i not in taken]
    return shown, hidden
