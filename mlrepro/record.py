"""The run record format: file names, statuses, ids and the manifest's shape.

Pure logic only (no I/O), so the schema is testable without a store. Every
file name of the on-disk record is named here and nowhere else.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

SCHEMA_VERSION = 1

# Files of a store and of one run directory.
INDEX_FILE = "index.sqlite"
OBJECTS_DIR = "objects"
RUNS_DIR = "runs"
MANIFEST_FILE = "run.json"
METRICS_FILE = "metrics.bin"
METRIC_NAMES_FILE = "metrics.names"
EVENTS_FILE = "events.jsonl"
# Written into exported models ({"run_id", "project", "store"}) so `mlrepro trace` can
# name the run that made a model found anywhere.
EMBEDDED_RUN_FILE = "mlrepro_run.json"
# Written into every directory mlrepro creates for its own files (stores, checkpoint dirs),
# as Python's venv does, so that git (and so code capture) never sees what is inside.
GITIGNORE_FILE = ".gitignore"
GITIGNORE_TEXT = "# Created by mlrepro: run records and checkpoints, not source code\n*\n"

# Statuses. `crashed` is never written: it is how a `running` record with a dead
# writer reads (see `effective_status`).
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
KILLED = "killed"
PREEMPTED = "preempted"
CRASHED = "crashed"
STATUSES = (RUNNING, FINISHED, FAILED, KILLED, PREEMPTED, CRASHED)
FINAL_STATUSES = (FINISHED, FAILED, KILLED, PREEMPTED)

# One metric point on disk: step, value, wall time, epoch, name id, attempt, flags.
# Fixed size, little endian, append-only; a torn tail (SIGKILL mid-write) is ignored.
POINT = struct.Struct("<qddiiHH")
NO_EPOCH = -1

_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{10}$")


def new_run_id(now: float | None = None) -> str:
    """A run id that sorts by start time and is unique across hosts (40 random bits)."""
    t = time.gmtime(time.time() if now is None else now)
    return time.strftime("%Y%m%dT%H%M%S", t) + "-" + secrets.token_hex(5)


def is_run_id(text: str) -> bool:
    return bool(_ID_RE.match(text))


def matches_prefix(run_id: str, prefix: str) -> bool:
    """A prefix names a run if the id, or the id's random tail, starts with it."""
    prefix, run_id = prefix.lower(), run_id.lower()
    return run_id.startswith(prefix) or run_id.split("-", 1)[-1].startswith(prefix)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every digest is taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str,
                      allow_nan=True)


def tree_digest(file_digests: Mapping[str, str]) -> str:
    """The digest of a directory artifact (`tree`): sha256 of `{relative path: digest}`."""
    import hashlib

    return hashlib.sha256(canonical_json(dict(file_digests)).encode()).hexdigest()


def jsonable(value: Any, _depth: int = 0) -> Any:
    """Turn any param value into plain JSON data, never raising.

    Non-finite floats stay floats (JSON NaN/Infinity is read back by Python);
    unknown objects become their repr, so hostile params cannot break a record.
    """
    if _depth > 20:
        return "<nested too deep>"
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v, _depth + 1) for v in items]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return jsonable(item(), _depth + 1)
        except Exception:  # noqa: BLE001 - a hostile object must not break a record
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return jsonable(tolist(), _depth + 1)
        except Exception:  # noqa: BLE001
            pass
    try:
        return repr(value)
    except Exception:  # noqa: BLE001
        return f"<unrepresentable {type(value).__name__}>"


def new_manifest(run_id: str, project: str, name: str | None, *, started: float,
                 host: str, pid: int) -> dict:
    """The manifest of a run that has just started, with every section present."""
    return {
        "schema_version": SCHEMA_VERSION,
        "id": run_id,
        "project": project,
        "name": name or run_id,
        "status": RUNNING,
        "start_time": started,
        "end_time": None,
        "heartbeat": started,
        "writer": {"host": host, "pid": pid},
        "attempts": [{"attempt": 0, "start_time": started, "host": host, "pid": pid}],
        "params": {},
        "auto_params": {},
        "tags": {},
        "seed": None,
        "determinism": {},
        "code": {},
        "environment": {},
        "data": {},
        "artifacts": {},
        "runtime": {"kind": "local"},
        "fingerprint": None,
        "fingerprints": {},
        "parent": None,
        "metrics_summary": {},
        "warnings": 0,
        "error": None,
    }


def validate_manifest(data: Any) -> dict:
    """Check a manifest read from disk; raise ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("run.json does not hold a JSON object")
    for key in ("id", "project", "status", "start_time"):
        if data.get(key) is None:
            raise ValueError(f"run.json has no {key!r}")
    if data["status"] not in STATUSES:
        raise ValueError(f"run.json has an unknown status {data['status']!r}")
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(f"run.json has schema_version {version!r}; this mlrepro reads up to "
                         f"{SCHEMA_VERSION}: upgrade mlrepro")
    for key, kinds in _FIELD_TYPES.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)
                                  and bool not in kinds):
            raise ValueError(f"run.json has a {type(value).__name__} as {key!r}, not "
                             + " or ".join(k.__name__ for k in kinds))
    return data


# What each field of a manifest must be when present and not null: a hand-edited or
# damaged run.json fails here, as one unreadable run, instead of deep inside a reader.
_NUMBER = (int, float)
_FIELD_TYPES: dict[str, tuple] = {
    "id": (str,), "project": (str,), "name": (str,), "start_time": _NUMBER,
    "end_time": _NUMBER, "heartbeat": _NUMBER, "attempts": (list,), "parent": (dict,),
    **{key: (dict,) for key in ("writer", "params", "auto_params", "tags", "determinism",
                                "code", "environment", "data", "artifacts", "runtime",
                                "fingerprints", "metrics_summary")},
}


def effective_status(manifest: Mapping, *, now: float | None = None,
                     this_host: str | None = None, stale_after: float = 120.0,
                     pid_alive=None) -> str:
    """The status a person should see: a `running` run whose writer is gone reads as crashed.

    On the writer's own host a dead pid is proof; elsewhere a heartbeat older than
    `stale_after` seconds is.
    """
    status = manifest.get("status", RUNNING)
    if status != RUNNING:
        return status
    writer = manifest.get("writer") or {}
    if this_host is not None and writer.get("host") == this_host and pid_alive is not None:
        pid = writer.get("pid")
        if isinstance(pid, int) and not pid_alive(pid):
            return CRASHED
    heartbeat = manifest.get("heartbeat") or manifest.get("start_time") or 0
    now = time.time() if now is None else now
    if now - float(heartbeat) > stale_after:
        return CRASHED
    return RUNNING


@dataclass
class MetricSummary:
    """Last, min and max of one metric, kept as points arrive."""

    last: float = math.nan
    last_step: int = 0
    min: float = math.inf
    max: float = -math.inf
    count: int = 0

    def add(self, value: float, step: int) -> None:
        self.count += 1
        if step >= self.last_step or self.count == 1:
            self.last, self.last_step = value, step
        if value == value:  # NaN compares false: keep min/max finite-or-inf
            if value < self.min:
                self.min = value
            if value > self.max:
                self.max = value

    def to_json(self) -> dict:
        return {"last": self.last, "step": self.last_step, "min": self.min,
                "max": self.max, "count": self.count}


@dataclass
class Points:
    """Metric points read back from a run, one list per metric name.

    When a run was resumed, a later attempt's point at a step supersedes the
    earlier attempt's point at the same or a later step of that metric.
    """

    series: dict[str, list[tuple[int, float, float, int]]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.series)

    def values(self, name: str) -> list[float]:
        return [p[1] for p in self.series.get(name, [])]

    def steps(self, name: str) -> list[int]:
        return [p[0] for p in self.series.get(name, [])]


def raw_points(blob: bytes, names: list[str]) -> list[tuple[int, float, float, int, str, int]]:
    """(step, value, wall, epoch, name, attempt) tuples as written, torn tail ignored."""
    usable = len(blob) - len(blob) % POINT.size
    return [(s, v, w, e, names[n] if 0 <= n < len(names) else f"#{n}", a)
            for s, v, w, e, n, a, _f in POINT.iter_unpack(memoryview(blob)[:usable])]


def point_is_valid(point: tuple, name_count: int) -> bool:
    """Whether an unpacked point could have been written by mlrepro: its name id names a
    line of metrics.names, its epoch is an epoch, its wall time a time, its flags zero."""
    _step, _value, wall, epoch, name_id, _attempt, flags = point
    return (0 <= name_id < name_count and epoch >= NO_EPOCH and flags == 0
            and math.isfinite(wall) and wall >= 0)


def valid_points(blob: bytes, name_count: int) -> tuple[bytes, int]:
    """The whole points of `blob` that pass `point_is_valid`, and how many did not."""
    usable = len(blob) - len(blob) % POINT.size
    view = memoryview(blob)[:usable]
    bad = [i for i, p in enumerate(POINT.iter_unpack(view)) if not point_is_valid(p, name_count)]
    if not bad:
        return bytes(view), 0
    size, keep, start = POINT.size, [], 0
    for i in bad:
        keep.append(view[start:i * size])
        start = (i + 1) * size
    keep.append(view[start:])
    return b"".join(keep), len(bad)


def decode_names(blob: bytes) -> list[str]:
    """metrics.names as a list (line i names id i): JSON strings, or a line read as it is.

    Never raises: a line that is not UTF-8 or not JSON keeps its place (bytes that are
    not UTF-8 become lone surrogates, as `os.fsdecode` makes them).
    """
    out = []
    for line in blob.split(b"\n")[:-1]:
        text = line.decode("utf-8", "surrogateescape")
        try:
            name = json.loads(text)
        except ValueError:
            name = text
        out.append(name if isinstance(name, str) else json.dumps(name))
    return out


def decode_points(blob: bytes, names: list[str]) -> Points:
    """Decode metrics.bin (ignoring a torn tail) and resolve supersession by attempt."""
    usable = len(blob) - len(blob) % POINT.size
    raw: dict[str, list[tuple[int, float, float, int, int]]] = {}
    for step, value, wall, epoch, name_id, attempt, _flags in POINT.iter_unpack(
            memoryview(blob)[:usable]):
        name = names[name_id] if 0 <= name_id < len(names) else f"#{name_id}"
        raw.setdefault(name, []).append((step, value, wall, epoch, attempt))
    out = Points()
    for name, pts in raw.items():
        attempts = {p[4] for p in pts}
        if len(attempts) > 1:
            pts = _supersede(pts)
        elif any(pts[i][0] > pts[i + 1][0] for i in range(len(pts) - 1)):
            # hooks run on a thread pool (Keras' async callbacks) may log out of order
            pts = sorted(pts, key=lambda p: p[0])
        out.series[name] = [(s, v, w, e) for s, v, w, e, _a in pts]
    return out


def _supersede(pts: list[tuple[int, float, float, int, int]]) -> list:
    """Keep, for each attempt, only points before the step where the next attempt began."""
    by_attempt: dict[int, list] = {}
    for p in pts:
        by_attempt.setdefault(p[4], []).append(p)
    order = sorted(by_attempt)
    kept: list = []
    for i, attempt in enumerate(order):
        series = by_attempt[attempt]
        later = [min(p[0] for p in by_attempt[a]) for a in order[i + 1:]]
        cut = min(later) if later else None
        kept.extend(p for p in series if cut is None or p[0] < cut)
    kept.sort(key=lambda p: (p[0], p[4]))
    return kept


def number_names(points, ids: dict[str, int]) -> tuple[list[tuple], list[str]]:
    """Replace each point's metric name by its id in `ids` (extended in place).

    Returns the encoded-ready tuples and the names that were new, in id order: the
    caller appends those to metrics.names before the points that use them.
    """
    encoded, new = [], []
    for step, value, wall, epoch, name, attempt in points:
        nid = ids.get(name)
        if nid is None:
            nid = ids[name] = len(ids)
            new.append(name)
        encoded.append((step, value, wall, epoch, nid, attempt))
    return encoded, new


def encode_points(points: Iterable[tuple[int, float, float, int, int, int]]) -> bytes:
    """Encode (step, value, wall, epoch, name_id, attempt) tuples for metrics.bin."""
    pack = POINT.pack
    return b"".join(pack(s, v, w, e, n, a, 0) for s, v, w, e, n, a in points)


def ensure_safe_name(name: str, what: str = "artifact name") -> str:
    """Refuse names that could escape a directory (absolute, `..`, NUL)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"{what} {name!r} is empty or has a NUL byte: use a plain relative name")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or os.path.isabs(name) or any(
            part == ".." for part in norm.split("/")):
        raise ValueError(f"{what} {name!r} is absolute or climbs out with '..': "
                         "use a relative name inside the run")
    return norm
