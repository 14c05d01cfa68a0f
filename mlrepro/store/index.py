"""The SQLite index of a local store: a cache of the manifests, rebuildable at any time.

WAL mode and a busy timeout let several processes write runs at once. Nothing
here is the truth: `run.json` files are, and `rebuild` re-reads them.

Any string may reach a column (a run name decoded from bytes with lone surrogates,
control characters, ...). SQLite takes only valid UTF-8 text, so a string that is
not encodable is stored as a BLOB of its `surrogatepass` bytes and read back as the
same string; JSON columns hold ASCII-escaped JSON. A value of the wrong type
(hand-edited `run.json`) becomes NULL or JSON text: one odd run never stops the
others from being indexed.

An index the process cannot write (a shared or read-only store) is opened
read-only (`open(read_only=True)`); `Index(MEMORY)` is a throw-away one in memory.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import urllib.parse
from typing import Iterable

from mlrepro.store.files import FILE_MODE
from mlrepro.store.query import RunQuery, param_matches, param_sql, sql_can_express

MEMORY = ":memory:"

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


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value):
    """A TEXT column's value: a str SQLite can hold, or the BLOB `_untext` turns back."""
    if value is None:
        return None
    if not isinstance(value, str):
        return _dump(value)
    if _encodable(value):
        return value
    # the halves of a split surrogate pair become their character, as in run.json (JSON)
    value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return value if _encodable(value) else value.encode("utf-8", "surrogatepass")


def _untext(value):
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def _real(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _integer(value):
    if isinstance(value, bool) or not isinstance(value, int) or not -2**63 <= value < 2**63:
        return None
    return value


def _json_or_empty(value) -> str:
    return _dump(value if isinstance(value, dict) else {})


def _summaries(value) -> dict:
    """The metrics summary with only entries shaped like one (`{name: {last, min, ...}}`)."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, dict)}


def _row_of(manifest: dict) -> tuple:
    writer = manifest.get("writer")
    writer = writer if isinstance(writer, dict) else {}
    parent = manifest.get("parent")
    return (
        _text(manifest["id"]), _text(manifest.get("project")), _text(manifest.get("name")),
        _text(manifest.get("status")), _real(manifest.get("start_time")),
        _real(manifest.get("end_time")), _real(manifest.get("heartbeat")),
        _text(writer.get("host")), _integer(writer.get("pid")), _text(manifest.get("fingerprint")),
        _json_or_empty(manifest.get("params")),
        _json_or_empty(manifest.get("tags")),
        _json_or_empty(_summaries(manifest.get("metrics_summary"))),
        _dump(parent) if isinstance(parent, dict) and parent else None,
    )


def _bindable(value) -> bool:
    """Whether SQLite can take `value` as a query argument and compare it with stored JSON.

    Its JSON paths need valid text, and SQLite 3.40's `json_extract` cuts a string at an
    escaped NUL (`"\\u0000"` reads as ''): such values are matched in Python.
    """
    if isinstance(value, str):
        return _encodable(value) and "\x00" not in value
    if isinstance(value, (list, tuple)):
        return all(_bindable(v) for v in value)
    if isinstance(value, dict):
        return all(_bindable(k) and _bindable(v) for k, v in value.items())
    return True


def _sql_key(key: str) -> bool:
    """Whether SQLite's JSON path can name this key of a column written by `_dump`.

    SQLite 3.40 compares a path label with the key as written in the JSON text, and
    `_dump` writes every character outside printable ASCII (and `\\`, `"`) as an escape:
    such keys are matched in Python, by the same rule.
    """
    return sql_can_express(key) and all(" " <= c <= "~" and c != "\\" for c in key)


def can_write(path: str) -> bool:
    """Whether this process may create or change the SQLite file `path` and its WAL files."""
    directory = os.path.dirname(path) or "."
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    return all(os.access(path + suffix, os.W_OK) for suffix in ("", "-wal", "-shm")
               if os.path.exists(path + suffix))


class Index:
    """One connection per process, serialised by a lock (the writer thread shares it)."""

    def __init__(self, path: str):
        self.path = path
        self.read_only = False
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def open_read_only(self) -> None:
        """Use the index without ever writing it (a store this process cannot write).

        Raises:
            sqlite3.DatabaseError when it cannot be read, or is of another version.
        """
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self.read_only = True
            uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
            try:
                self._conn = self._probe(uri)
            except sqlite3.OperationalError:
                # A WAL database needs its -shm file, which a reader of a directory it cannot
                # write cannot create. Without a -wal file every write is checkpointed into
                # the database itself, so reading it as immutable misses nothing.
                if os.path.exists(self.path + "-wal"):
                    raise
                self._conn = self._probe(uri + "&immutable=1")

    @staticmethod
    def _probe(uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False,
                               isolation_level=None)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != INDEX_VERSION:
                raise sqlite3.DatabaseError(f"index version {version}, not {INDEX_VERSION}")
            conn.execute("SELECT id FROM runs LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != MEMORY and not os.path.exists(self.path):
                # SQLite would create it 0644 whatever the umask: create it ourselves, so a
                # team sharing the store (umask 002) can all write the index.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
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
        return self.path == MEMORY or os.path.exists(self.path)

    def writable(self) -> bool:
        return self.path == MEMORY or (not self.read_only and can_write(self.path))

    def upsert(self, manifests: Iterable[dict]) -> list[tuple[str, str]]:
        """Index these manifests; returns [(run id, why)] for any that could not be."""
        return self._write(manifests, replace_all=False)

    def add_missing(self, manifests: Iterable[dict]) -> list[tuple[str, str]]:
        """Index runs the index lacks, never replacing a row (its writer's row is newer)."""
        return self._write(manifests, replace_all=False, verb="INSERT OR IGNORE")

    def replace_all(self, manifests: Iterable[dict]) -> list[tuple[str, str]]:
        return self._write(manifests, replace_all=True)

    def _write(self, manifests: Iterable[dict], *, replace_all: bool,
               verb: str = "INSERT OR REPLACE") -> list[tuple[str, str]]:
        rows, bad = [], []
        for m in manifests:
            try:
                rows.append(_row_of(m))
            except Exception as exc:  # noqa: BLE001 - one odd manifest must not stop the rest
                bad.append((str(m.get("id")), repr(exc)))
        if not rows and not replace_all:
            return bad
        sql = f"{verb} INTO runs ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})"
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if replace_all:
                    conn.execute("DELETE FROM runs")
                try:
                    conn.executemany(sql, rows)
                except (sqlite3.InterfaceError, sqlite3.ProgrammingError, OverflowError,
                        ValueError):
                    for row in rows:  # find the rows SQLite refuses; keep the others
                        try:
                            conn.execute(sql, row)
                        except (sqlite3.InterfaceError, sqlite3.ProgrammingError,
                                OverflowError, ValueError) as exc:
                            bad.append((str(_untext(row[0])), repr(exc)))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return bad

    def ids(self) -> list[str]:
        with self._lock:
            return [_untext(r[0]) for r in self._connect().execute("SELECT id FROM runs")]

    def query(self, query: RunQuery) -> list[dict]:
        """Rows as partial manifests, filtered and sorted by `query` (status is left to the
        caller: it depends on whether the writer is alive, which the index cannot know)."""
        where, args = [], []
        if query.project is not None:
            where.append("project = ?")
            args.append(_text(query.project))
        if query.fingerprint is not None:
            where.append("fingerprint = ?")
            args.append(_text(query.fingerprint))
        for key, value in (query.params or {}).items():
            if not _sql_key(key) or not _bindable(value):
                continue                        # filtered below, by the same rule
            condition, values = param_sql("params", key, value)
            where.append(condition)
            args += values
        sql = f"SELECT {','.join(_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sort_in_sql = bool(query.sort_metric and _sql_key(query.sort_metric))
        if sort_in_sql:
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
            out.append({"id": _untext(r[0]), "project": _untext(r[1]), "name": _untext(r[2]),
                        "status": _untext(r[3]), "start_time": r[4], "end_time": r[5],
                        "heartbeat": r[6], "writer": {"host": _untext(r[7]), "pid": r[8]},
                        "fingerprint": _untext(r[9]),
                        "params": params, "tags": tags, "metrics_summary": summary,
                        "parent": parent})
        if query.params:
            # SQL only narrows: SQLite 3.40 reads a stored text holding a NUL as cut there
            # ("a\u0000b" extracts as "a"), so every param is checked again by the one rule.
            out = [m for m in out
                   if all(param_matches(m["params"], k, v) for k, v in query.params.items())]
        if query.sort_metric and not sort_in_sql:
            out = query.sort(out)
        return out

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
