"""The S3 store's index: a listing of every run for one LIST and a few GETs, however many runs.

Built only on what S3 gives: lexicographic LIST, conditional PUT (If-None-Match) and
objects that never change once written.

```
<prefix>/index/delta/<run id>.<ns>.<rand>.json   one row per manifest write (immutable)
<prefix>/index/head/<generation:010d>.json       a snapshot: its segments, the deltas it consumed
<prefix>/index-segments/<sha256>.json.gz         rows of a range of run ids (immutable)
```

- **Writers** put the manifest, then one small delta row (the fields a listing needs) under a
  key nobody else can take; they never read or rewrite shared objects, so any number of
  jobs can push at once. A writer deletes its own previous delta for the run: the new row
  supersedes it.
- **Readers** LIST `index/` (deltas and heads together), GET the newest head and its segments,
  and GET the deltas that head has not consumed. Rows merge by a version that only grows
  (attempts, final status, heartbeat, end time, write time), so the order in which rows are
  read never matters and a run that goes running -> finished shows its last state.
- **Compaction** (by a reader that saw `COMPACT_AFTER` pending deltas, or by a writer ending
  a run that saw `WRITER_COMPACT_AFTER`) rewrites only the segments whose id range the pending
  rows fall in (new runs have the newest ids, so usually the last one), and publishes head
  G+1 with If-None-Match: of two compactors, one wins and the other gives up. The deltas
  that head G consumed are deleted only when G+1 is published (they are in G+1 too); a
  reader whose GET meets a deleted object lists again. So no row is lost even where a
  conditional PUT is not atomic: an overwritten head's deltas stay pending.
- `rebuild` (`mlrepro index --rebuild --store s3://...`) rescans every manifest: the repair
  for a writer that died between its manifest and its delta, or a hand-edited bucket.

Pure row logic plus I/O through the store's small S3 helpers; no boto3 here.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from mlrepro import record
from mlrepro.errors import StoreError

INDEX_DIR = "index"                  # deltas and heads: one LIST reads both
DELTA_DIR = "delta"
HEAD_DIR = "head"
SEGMENT_DIR = "index-segments"       # outside INDEX_DIR, so the LIST stays short
SEGMENT_ROWS = 16384                 # rows per segment before it splits (~2 MB gzipped)
COMPACT_AFTER = 8                    # pending deltas a reader folds into a new head
WRITER_COMPACT_AFTER = 8             # pending deltas a writer ending a run folds in
# So a cold reader meets at most 7 pending deltas: 1 LIST + 1 head + ceil(runs / 16384)
# segments + 7 GETs (10,000 runs: <= 10 requests; 100,000 runs: <= 16).
HEARTBEAT_ROW_SECONDS = 60           # a live run's heartbeat / metrics move its row this often
READ_ATTEMPTS = 4
THREADS = 8
_WRITTEN = "_written"

# The manifest fields a listing needs (what the local SQLite index keeps, plus `push`,
# which stretches the remote's heartbeat limit, and `attempts`, which orders versions).
ROW_FIELDS = ("id", "project", "name", "status", "start_time", "end_time", "heartbeat",
              "fingerprint", "params", "tags", "metrics_summary", "parent", "push")


def row_of(manifest: dict, written: float | None = None) -> dict:
    """The index row of a manifest (a partial manifest: what `mlrepro runs` shows and filters)."""
    row = {k: manifest.get(k) for k in ROW_FIELDS if manifest.get(k) is not None}
    writer = manifest.get("writer") or {}
    row["writer"] = {"host": writer.get("host"), "pid": writer.get("pid")}
    row["attempts"] = len(manifest.get("attempts") or [])
    row[_WRITTEN] = time.time() if written is None else written
    return row


def version(row: dict) -> tuple:
    """Later attempts, then an ended run, then later heartbeats and ends, then later writes."""
    return (row.get("attempts") or 0, row.get("status") != record.RUNNING,
            float(row.get("heartbeat") or 0), float(row.get("end_time") or 0),
            float(row.get(_WRITTEN) or 0))


def merge(rows: dict, more: Iterable[dict]) -> dict:
    """Fold rows into `rows` (id -> row), keeping the newest version of each run."""
    for row in more:
        old = rows.get(row["id"])
        if old is None or version(row) >= version(old):
            rows[row["id"]] = row
    return rows


def listed(row: dict) -> dict:
    """A row as `list_runs` returns it: the bookkeeping fields dropped, in place (rows are
    decoded afresh for each listing, and copying 10,000 dicts is a visible cost)."""
    row.pop(_WRITTEN, None)
    row.pop("attempts", None)
    for key in ("params", "tags", "metrics_summary"):
        if key not in row:
            row[key] = {}
    return row


def minor_update(a: dict | None, b: dict) -> bool:
    """Whether row `b` may be skipped after `a`: a live run's heartbeat and metric summary moved,
    nothing else, within the row period (the listing's heartbeat lags by at most that)."""
    if a is None or b.get("status") != record.RUNNING:
        return False
    strip = (_WRITTEN, "heartbeat", "metrics_summary")
    if {k: v for k, v in a.items() if k not in strip} != \
            {k: v for k, v in b.items() if k not in strip}:
        return False
    return float(b.get("heartbeat") or 0) - float(a.get("heartbeat") or 0) < HEARTBEAT_ROW_SECONDS


def encode_segment(rows: list[dict]) -> bytes:
    text = json.dumps({"rows": rows}, sort_keys=True, separators=(",", ":"), default=str)
    return gzip.compress(text.encode("utf-8"), compresslevel=5, mtime=0)


def decode_segment(data: bytes) -> list[dict]:
    return json.loads(gzip.decompress(data))["rows"]


class _Gone(Exception):
    """An index object listed a moment ago was deleted by a compaction: list again."""


class Snapshot:
    """What one read of the index saw: the head, its segments' rows, the pending deltas."""

    def __init__(self, head: dict | None, head_key: str | None, segment_rows: dict,
                 pending: dict, stale_consumed: list[str]):
        self.head = head
        self.head_key = head_key
        self.segment_rows = segment_rows          # segment key -> rows
        self.pending = pending                    # delta key -> row
        self.stale_consumed = stale_consumed

    @property
    def generation(self) -> int:
        return int(self.head["generation"]) if self.head else 0

    def rows(self) -> dict:
        out: dict = {}
        for rows in self.segment_rows.values():
            merge(out, rows)
        return merge(out, self.pending.values())


class RemoteIndex:
    """The index of one S3 store (see the module doc for the layout and the rules)."""

    def __init__(self, store):
        """`store`: the `S3Store` whose index this is (its key, GET/PUT/LIST/DELETE helpers)."""
        self.store = store
        self._last: dict[str, tuple[str, dict]] = {}    # run id -> (our last delta key, row)
        self._lock = threading.Lock()

    # -- keys -------------------------------------------------------------------------------
    def _index_key(self, *parts: str) -> str:
        return self.store._key(INDEX_DIR, *parts)

    def delta_prefix(self) -> str:
        return self._index_key(DELTA_DIR) + "/"

    def head_prefix(self) -> str:
        return self._index_key(HEAD_DIR) + "/"

    def head_key(self, generation: int) -> str:
        return self._index_key(HEAD_DIR, f"{generation:010d}.json")

    def segment_key(self, data: bytes) -> str:
        return self.store._key(SEGMENT_DIR, hashlib.sha256(data).hexdigest() + ".json.gz")

    # -- writing rows ---------------------------------------------------------------------------
    def record(self, manifest: dict) -> None:
        """Write the delta row of a manifest just written (after it, never before)."""
        run_id = manifest["id"]
        row = row_of(manifest)
        with self._lock:                  # one row at a time per run and process
            previous = self._last.get(run_id)
            if previous is not None and minor_update(previous[1], row):
                return
            key = self.delta_prefix() + \
                f"{run_id}.{time.time_ns():020d}.{os.urandom(4).hex()}.json"
            self.store._put(key, json.dumps(row, sort_keys=True, default=str).encode("utf-8"),
                            ContentType="application/json")
            self._last[run_id] = (key, row)
        if previous is not None:
            self.store.delete_keys([previous[0]], quiet=True)   # superseded by the new row
        if row.get("status") != record.RUNNING:
            try:
                self.compact_if(WRITER_COMPACT_AFTER)
            except Exception:  # noqa: BLE001 - an optimisation: the row is written, a reader
                pass           # compacts (or reports a damaged index) later

    # -- reading ----------------------------------------------------------------------------------
    def _get_json(self, key: str):
        try:
            return json.loads(self.store._get(key).decode("utf-8"))
        except FileNotFoundError:
            raise _Gone(key) from None

    def _get_segment(self, key: str) -> list[dict]:
        try:
            return decode_segment(self.store._get(key))
        except FileNotFoundError:
            raise _Gone(key) from None

    def _list(self) -> tuple[list[str], list[str]]:
        deltas, heads = [], []
        dp, hp = self.delta_prefix(), self.head_prefix()
        for key in self.store.list_keys(self._index_key("")):
            if key.startswith(dp) and key.endswith(".json"):
                deltas.append(key)
            elif key.startswith(hp) and key.endswith(".json"):
                heads.append(key)
        return deltas, sorted(heads)

    def read(self, *, segments_wanted: bool = True) -> Snapshot | None:
        """One consistent read: None when the index has never been built (no head, no delta)."""
        missing = ""
        for _attempt in range(READ_ATTEMPTS):
            deltas, heads = self._list()
            if not heads and not deltas:
                return None
            try:
                head = self._get_json(heads[-1]) if heads else None
                consumed = set(head.get("consumed", [])) if head else set()
                pending_keys = [k for k in deltas if k.rsplit("/", 1)[-1] not in consumed]
                seg_keys = [s["key"] for s in head["segments"]] if head and segments_wanted else []
                with ThreadPoolExecutor(max_workers=THREADS) as pool:
                    seg_futures = [pool.submit(self._get_segment, k) for k in seg_keys]
                    row_futures = [pool.submit(self._get_json, k) for k in pending_keys]
                    segs = [f.result() for f in seg_futures]
                    rows = [f.result() for f in row_futures]
            except _Gone as gone:
                missing = str(gone)
                continue
            return Snapshot(head, heads[-1] if heads else None, dict(zip(seg_keys, segs)),
                            dict(zip(pending_keys, rows)),
                            [k for k in deltas if k.rsplit("/", 1)[-1] in consumed])
        if missing.startswith(self.store._key(SEGMENT_DIR) + "/"):
            # The newest head names a segment that is not there (deleted by hand): damage,
            # which the store repairs by a rescan.
            raise ValueError(f"segment {missing} of the newest head is missing")
        raise StoreError(f"the index of {self.store.uri} changed under {READ_ATTEMPTS} reads in a "
                         "row: run the command again")

    def rows(self) -> list[dict] | None:
        """Every run's newest row; compacts when many deltas are pending.

        None when no head exists yet: the first head always comes from a full rescan
        (`rebuild`), so runs pushed before the bucket had an index are in it.
        """
        snap = self.read()
        if snap is None or snap.head is None:
            return None
        rows = snap.rows()
        if len(snap.pending) >= COMPACT_AFTER:
            try:
                self.compact(snap)
            except StoreError:
                pass  # read-only credentials, a lost race: the listing is right anyway
        return list(rows.values())

    # -- compaction -----------------------------------------------------------------------------
    def compact_if(self, threshold: int) -> bool:
        deltas, heads = self._list()
        if len(deltas) < threshold:
            return False
        snap = self.read(segments_wanted=False)
        if snap is None or snap.head is None or len(snap.pending) < threshold:
            return False                  # no head yet: the first one is a reader's rescan
        return self.compact(snap)

    def compact(self, snap: Snapshot) -> bool:
        """Publish head G+1 = head G plus the pending rows; False when another compactor won."""
        if snap.head is None:
            return False                  # the first head comes from `rebuild` (a rescan)
        segments = list(snap.head["segments"])
        firsts = [s["first"] for s in segments]
        touched: dict[int, list[dict]] = {}
        for row in snap.pending.values():
            at = max(bisect.bisect_right(firsts, row["id"]) - 1, 0)
            touched.setdefault(at, []).append(row)
        if not segments:
            touched = {0: list(snap.pending.values())}
        new_segments = []
        for i in range(max(len(segments), 1)):
            if i not in touched:
                new_segments.append(segments[i])
                continue
            base = {}
            if i < len(segments):
                key = segments[i]["key"]
                rows = snap.segment_rows.get(key)
                if rows is None:
                    try:
                        rows = self._get_segment(key)
                    except _Gone:
                        raise StoreError(f"segment {key} is gone: run `mlrepro index --rebuild "
                                         f"--store {self.store.uri}`") from None
                merge(base, rows)
            merge(base, touched[i])
            new_segments += self._put_segments(sorted(base.values(), key=lambda r: r["id"]))
        return self._publish(snap, new_segments, list(snap.pending))

    def _put_segments(self, rows: list[dict]) -> list[dict]:
        out = []
        for start in range(0, len(rows), SEGMENT_ROWS):
            chunk = rows[start:start + SEGMENT_ROWS]
            data = encode_segment(chunk)
            key = self.segment_key(data)
            self.store._put(key, data, ContentType="application/gzip")
            out.append({"key": key, "first": chunk[0]["id"], "last": chunk[-1]["id"],
                        "rows": len(chunk)})
        return out

    def _publish(self, snap: Snapshot, segments: list[dict], consumed_keys: list[str]) -> bool:
        generation = snap.generation + 1
        head = {"generation": generation, "segments": segments, "written": time.time(),
                "rows": sum(s["rows"] for s in segments),
                "consumed": sorted(k.rsplit("/", 1)[-1] for k in consumed_keys)}
        if not self.store.put_if_absent(self.head_key(generation),
                                        json.dumps(head, sort_keys=True).encode("utf-8")):
            return False
        # What head G consumed is in G+1 too: those deltas can go now, and heads before G.
        old_heads = [self.head_key(g) for g in range(max(snap.generation - 3, 1),
                                                     snap.generation)]
        self.store.delete_keys(snap.stale_consumed + old_heads, quiet=True)
        return True

    def rebuild(self, *, unless_built: bool = False) -> tuple[int, list[tuple[str, str]]]:
        """Rescan every manifest into a new head (the repair); returns (indexed, problems).

        With `unless_built` (a first listing), stop as soon as someone else built a head.
        """
        for _attempt in range(READ_ATTEMPTS):
            deltas, heads = self._list()
            if unless_built and heads:
                return 0, []
            generation = int(heads[-1].rsplit("/", 1)[-1].split(".")[0]) if heads else 0
            good, bad = self.store.scan_manifests()
            now = time.time()
            rows: dict = {}
            merge(rows, (row_of(m, written=now) for m in good))
            with ThreadPoolExecutor(max_workers=THREADS) as pool:
                def get(key):
                    try:
                        return self._get_json(key)
                    except (_Gone, ValueError):     # gone, or damaged: the scan has the run
                        return None
                found = [r for r in pool.map(get, deltas) if r is not None]
            live = set(rows)
            merge(rows, (r for r in found if r["id"] in live))   # a row needs its manifest
            # After a rebuild every delta listed before the scan is consumed; the next
            # compaction deletes them.
            if self.publish(list(rows.values()), generation, consumed=deltas):
                return len(good), bad
        raise StoreError(f"the index of {self.store.uri} kept changing during the rebuild: "
                         "run `mlrepro index --rebuild` again")

    def publish(self, rows: list[dict], generation: int, consumed: list[str] = ()) -> bool:
        """Head `generation + 1` holding exactly `rows` (a rebuild; a bulk seed of a bench)."""
        segments = self._put_segments(sorted(rows, key=lambda r: r["id"]))
        head = {"generation": generation} if generation else None
        return self._publish(Snapshot(head, None, {}, {}, []), segments, list(consumed))

    def live_segments(self) -> set[str]:
        """Segment keys that some head still names (gc keeps these)."""
        _deltas, heads = self._list()
        out = set()
        for key in heads:
            try:
                out.update(s["key"] for s in self._get_json(key)["segments"])
            except _Gone:
                continue
        return out


__all__ = ["RemoteIndex", "row_of", "version", "merge", "listed", "ROW_FIELDS"]
