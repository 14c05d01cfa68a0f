"""The SQLite index of a local store: a cache of the manifests, rebuildable at any time.

WAL mode and a busy timeout let several processes write runs at once. Nothing
here is the truth: `run.json` files are, and `rebuild` re-reads them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from typing import Iterable

from mlrepro.store.query import RunQuery, param_matches, param_sql, sql_can_express

INDEX_VERSION = 1

_COLUMNS = ("id", "project", "name", "status", "start_time", "end_time", "heartbeat",
            "host", "pid", "fingerprint", "params", "tags", "summary", "parent")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, project TEXT, name TEXT, status TEXT,
    start_time REAL, end_time REAL, heartbeat REAL, host TEXT, pid INTEGER,
    fingerprint TEXT, params TEXT, tags TEXT, summary TEXT, parent TEXT
);
CREATE INDEX IF NOT EXISTS runs_project ON runs(project, start_time);
CREATE INDEX IF NOT EXISTS runs_start ON runs(start_time);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs(fingerprint);
PRAGMA user_version = {INDEX_VERSION};
"""


def _finite(value):
    """SQLite's JSON functions reject NaN/Infinity: index them as strings."""
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _dump(value) -> str:
    return json.dumps(_finite(value), sort_keys=True, default=str)


def _row_of(manifest: dict) -> tuple:
    writer = manifest.get("writer") or {}
    parent = manifest.get("parent")
    return (
        manifest["id"], manifest.get("project"), manifest.get("name"), manifest.get("status"),
        manifest.get("start_time"), manifest.get("end_time"), manifest.get("heartbeat"),
        writer.get("host"), writer.get("pid"), manifest.get("fingerprint"),
        _dump(manifest.get("params") or {}),
        _dump(manifest.get("tags") or {}),
        _dump(manifest.get("metrics_summary") or {}),
        json.dumps(parent, sort_keys=True) if parent else None,
    )


class Index:
    """One connection per process, serialised by a lock (the writer thread shares it)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False,
                                   isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 60000")
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError:
                pass  # read-only store: reading still works
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != INDEX_VERSION:
                if version:
                    conn.execute("DROP TABLE IF EXISTS runs")
                conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def reset(self) -> None:
        """Throw the index away (it is only a cache): used when its file is not a database."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._conn = None
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.remove(self.path + suffix)
                except FileNotFoundError:
                    pass

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def upsert(self, manifests: Iterable[dict]) -> None:
        self._write([_row_of(m) for m in manifests], replace_all=False)

    def replace_all(self, manifests: Iterable[dict]) -> None:
        self._write([_row_of(m) for m in manifests], replace_all=True)

    def _write(self, rows: list[tuple], *, replace_all: bool) -> None:
        if not rows and not replace_all:
            return
        marks = ",".join("?" * len(_COLUMNS))
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if replace_all:
                    conn.execute("DELETE FROM runs")
                conn.executemany(f"INSERT OR REPLACE INTO runs ({','.join(_COLUMNS)}) "
                                 f"VALUES ({marks})", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._connect().execute("SELECT id FROM runs")]

    def query(self, query: RunQuery) -> list[dict]:
        """Rows as partial manifests, filtered and sorted by `query` (status is left to the
        caller: it depends on whether the writer is alive, which the index cannot know)."""
        where, args = [], []
        if query.project is not None:
            where.append("project = ?")
            args.append(query.project)
        if query.fingerprint is not None:
            where.append("fingerprint = ?")
            args.append(query.fingerprint)
        in_python = {}
        for key, value in (query.params or {}).items():
            if not sql_can_express(key):
                in_python[key] = value          # filtered below, by the same rule
                continue
            condition, values = param_sql("params", key, value)
            where.append(condition)
            args += values
        sql = f"SELECT {','.join(_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if query.sort_metric and sql_can_express(query.sort_metric):
            path = '$."' + query.sort_metric + '".last'
            sql += (" ORDER BY json_extract(summary, ?) IS NULL, json_extract(summary, ?) "
                    + ("DESC" if query.descending else "ASC") + ", start_time DESC")
            args += [path, path]
        else:
            sql += " ORDER BY start_time DESC"
        with self._lock:
            rows = self._connect().execute(sql, args).fetchall()
        # One json.loads over all rows: decoding 10,000 small documents one by one
        # costs more than the query itself.
        blobs = json.loads("[" + ",".join(
            f"[{r[10] or '{}'},{r[11] or '{}'},{r[12] or '{}'},{r[13] or 'null'}]"
            for r in rows) + "]")
        out = []
        for r, (params, tags, summary, parent) in zip(rows, blobs):
            out.append({"id": r[0], "project": r[1], "name": r[2], "status": r[3],
                        "start_time": r[4], "end_time": r[5], "heartbeat": r[6],
                        "writer": {"host": r[7], "pid": r[8]}, "fingerprint": r[9],
                        "params": params, "tags": tags, "metrics_summary": summary,
                        "parent": parent})
        if in_python:
            out = [m for m in out
                   if all(param_matches(m["params"], k, v) for k, v in in_python.items())]
        if query.sort_metric and not sql_can_express(query.sort_metric):
            out = query.sort(out)
        return out

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
