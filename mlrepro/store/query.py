"""Which runs a listing keeps and in what order: one rule for every store.

`RunQuery` is what `mlrepro runs` asks for (project, status, params, fingerprint,
sort by a metric). The rule for comparing a wanted param with a recorded one is
written once, in `param_kind`: numbers compare as numbers (1 == 1.0, and a bool
as 0/1), None matches a recorded null, strings compare as strings, anything else
(lists, dicts) as canonical JSON; a param the run does not have never matches.
`param_matches` applies it in Python (stores without an index, e.g. S3) and
`param_sql` renders the same rule for the local store's SQLite index, so both
stores list the same runs for the same query. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

NUMBER, NULL, TEXT, JSON = "number", "null", "text", "json"


def param_kind(value: Any) -> str:
    """How a wanted param value is compared (see the module doc)."""
    if isinstance(value, (bool, int, float)):
        return NUMBER
    if value is None:
        return NULL
    if isinstance(value, str):
        return TEXT
    return JSON


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def param_matches(have: Mapping, key: str, want: Any) -> bool:
    """Whether a run's params `have` satisfy `key=want` under the one rule."""
    if key not in have:
        return False
    got, kind = have[key], param_kind(want)
    if kind == NUMBER:
        return isinstance(got, (bool, int, float)) and float(got) == float(want)
    if kind == NULL:
        return got is None
    if kind == TEXT:
        return isinstance(got, str) and got == want
    return not isinstance(got, str) and _canonical(got) == _canonical(want)


def sql_can_express(key: str) -> bool:
    """Whether SQLite's JSON path syntax can name this key (it cannot quote a `"` inside one)."""
    return '"' not in key


def param_sql(column: str, key: str, want: Any) -> tuple[str, list]:
    """The same rule as an SQLite condition on a JSON `column` (and its arguments).

    Only for keys `sql_can_express`; the index applies `param_matches` to the others.
    """
    if not sql_can_express(key):
        raise ValueError(f"SQLite cannot name the param key {key!r} in a JSON path")
    path = '$."' + key + '"'
    kind = param_kind(want)
    if kind == NUMBER:
        return (f"json_type({column}, ?) IN ('integer', 'real', 'true', 'false') "
                f"AND CAST(json_extract({column}, ?) AS REAL) = ?", [path, path, float(want)])
    if kind == NULL:
        return f"json_type({column}, ?) = 'null'", [path]
    if kind == TEXT:
        return f"json_type({column}, ?) = 'text' AND json_extract({column}, ?) = ?", \
            [path, path, want]
    return (f"json_type({column}, ?) IN ('array', 'object') "
            f"AND json(json_extract({column}, ?)) = json(?)", [path, path, _canonical(want)])


def metric_last(manifest: Mapping, name: str) -> float | None:
    """A run's last value of metric `name` (the sort key), or None."""
    value = ((manifest.get("metrics_summary") or {}).get(name) or {}).get("last")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class RunQuery:
    """What a listing keeps and how it is sorted.

    Args:
        project: only runs of this project.
        status: only runs whose effective status (a dead writer reads as crashed) is this
            one, or one of these.
        params: only runs whose params match every `key: value` (the rule above).
        fingerprint: only runs with this fingerprint (the same experiment).
        sort_metric: order by this metric's last value (runs without it last); else newest
            first.
        descending: with `sort_metric`, largest first.

    Example:
        >>> q = RunQuery(params={"lr": 0.1})
        >>> q.matches({"project": "p", "params": {"lr": 0.1}}), q.matches({"params": {"lr": "0.1"}})
        (True, False)
    """

    project: str | None = None
    status: "str | Sequence[str] | None" = None
    params: Mapping | None = None
    fingerprint: str | None = None
    sort_metric: str | None = None
    descending: bool = False

    def statuses(self) -> set[str] | None:
        if not self.status:
            return None
        return {self.status} if isinstance(self.status, str) else set(self.status)

    def matches(self, manifest: Mapping) -> bool:
        """Project, fingerprint and params (status needs the store: see `select`)."""
        if self.project is not None and manifest.get("project") != self.project:
            return False
        if self.fingerprint is not None and manifest.get("fingerprint") != self.fingerprint:
            return False
        have = manifest.get("params") or {}
        return all(param_matches(have, k, v) for k, v in (self.params or {}).items())

    def sort(self, rows: list[dict]) -> list[dict]:
        """Newest first; with `sort_metric`, by its last value (runs without it last)."""
        rows = sorted(rows, key=lambda m: m.get("start_time") or 0, reverse=True)
        if not self.sort_metric:
            return rows
        have = [m for m in rows if metric_last(m, self.sort_metric) is not None]
        have.sort(key=lambda m: metric_last(m, self.sort_metric), reverse=self.descending)
        return have + [m for m in rows if metric_last(m, self.sort_metric) is None]

    def select(self, manifests: Iterable[dict], status_of: Callable[[dict], str]) -> list[dict]:
        """The manifests this query keeps, each with its effective `status`, in order."""
        wanted = self.statuses()
        rows = []
        for m in manifests:
            if not self.matches(m):
                continue
            m["status"] = status_of(m)
            if wanted is None or m["status"] in wanted:
                rows.append(m)
        return self.sort(rows)


def as_query(query: RunQuery | None = None, **filters) -> RunQuery:
    """`query`, or a `RunQuery` of the keyword filters (`Store.list_runs` takes either)."""
    if query is not None and filters:
        raise TypeError("give list_runs a RunQuery or keyword filters, not both")
    return query if query is not None else RunQuery(**filters)
