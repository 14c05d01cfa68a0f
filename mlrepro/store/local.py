"""The embedded local store: run directories, content-addressed objects, a SQLite index.

```
<root>/index.sqlite             cache of the manifests (rebuildable)
<root>/objects/ab/cdef...       sha256-addressed blobs, stored once
<root>/runs/<id>/run.json       the manifest, rewritten atomically
<root>/runs/<id>/metrics.bin    fixed-size metric points, append-only
<root>/runs/<id>/metrics.names  metric names, one a line, append-only
<root>/runs/<id>/events.jsonl   status changes, heartbeats, warnings
```
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import threading
from typing import Iterator

from mlrepro import env, record
from mlrepro.errors import CorruptRecord, RunNotFound, StoreError, warn
from mlrepro.record import encode_points
from mlrepro.store.base import (EventsAppend, ManifestWrite, MetricsAppend, ObjectPut, RunFilePut,
                                Store, Write)
from mlrepro.store.files import (OBJECT_MODE, append_bytes, atomic_write_bytes, atomic_write_json,
                                 create_temp, make_own_dir)
from mlrepro.store.index import MEMORY, Index
from mlrepro.store.query import RunQuery, as_query

_CHUNK = 1 << 20


def pid_alive(pid: int) -> bool:
    """Whether a process of this host runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    # A zombie (killed child not yet reaped) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


class LocalStore(Store):
    """A store in a directory; safe for several processes writing different runs at once."""

    def __init__(self, root: str):
        self.root: str = os.path.abspath(os.path.expanduser(root))
        self.uri = self.root
        self.index = Index(os.path.join(self.root, record.INDEX_FILE))
        self._names: dict[str, dict[str, int]] = {}
        self._names_lock = threading.Lock()
        self._memory_index: Index | None = None
        self._index_skipped = False
        self.host = socket.gethostname()

    # -- paths ----------------------------------------------------------------
    def run_dir(self, run_id: str) -> str:
        """The run's directory, `<root>/runs/<id>`."""
        return os.path.join(self.root, record.RUNS_DIR, run_id)

    def object_path(self, digest: str) -> str:
        """Where the object with this digest lives (or would live) in the store."""
        return os.path.join(self.root, record.OBJECTS_DIR, digest[:2], digest[2:])

    def local_object_path(self, digest: str) -> str | None:
        path = self.object_path(digest)
        return path if os.path.exists(path) else None

    def _ensure_root(self) -> None:
        make_own_dir(self.root)
        os.makedirs(os.path.join(self.root, record.RUNS_DIR), exist_ok=True)
        os.makedirs(os.path.join(self.root, record.OBJECTS_DIR), exist_ok=True)

    # -- writing --------------------------------------------------------------
    def claim_run_id(self, run_id: str) -> bool:
        self._ensure_root()
        try:
            os.mkdir(self.run_dir(run_id))
        except FileExistsError:
            return False
        return True

    def write_batch(self, writes: list[Write]) -> None:
        manifests = []
        for w in writes:
            if isinstance(w, MetricsAppend):
                self._append_points(w.run_id, w.points)
            elif isinstance(w, EventsAppend):
                lines = "".join(json.dumps(e, sort_keys=True, default=str) + "\n"
                                for e in w.events)
                append_bytes(os.path.join(self.run_dir(w.run_id), record.EVENTS_FILE),
                             lines.encode("utf-8"))
            elif isinstance(w, ObjectPut):
                self.put_object(w)
            elif isinstance(w, RunFilePut):
                name = record.ensure_safe_name(w.name, "run file name")
                path = os.path.join(self.run_dir(w.run_id), name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                atomic_write_bytes(path, w.data)
                self._names.pop(w.run_id, None)
                if name == record.MANIFEST_FILE:
                    manifests.append(record.validate_manifest(json.loads(w.data)))
            elif isinstance(w, ManifestWrite):
                os.makedirs(self.run_dir(w.run_id), exist_ok=True)
                atomic_write_json(os.path.join(self.run_dir(w.run_id), record.MANIFEST_FILE),
                                  w.manifest)
                manifests.append(w.manifest)
            else:
                raise TypeError(f"unknown write {type(w).__name__}")
        if manifests and not self.index.writable():
            # run.json is the record; the index is a cache its other users bring up to date
            if not self._index_skipped:
                self._index_skipped = True
                warn(f"cannot write the index {self.index.path} (its owner may have another "
                     "umask); runs are recorded and list from their manifests: give the store's "
                     "users group write access, e.g. `chmod -R g+w` on it")
        elif manifests:
            latest = {m["id"]: m for m in manifests}
            for run_id, why in self._unindexable(self.index.upsert(latest.values())):
                warn(f"run {run_id} {why}")

    def _name_ids(self, run_id: str) -> dict[str, int]:
        ids = self._names.get(run_id)
        if ids is None:
            path = os.path.join(self.run_dir(run_id), record.METRIC_NAMES_FILE)
            ids = {}
            if os.path.exists(path):
                with open(path, "rb") as fh:
                    for i, name in enumerate(record.decode_names(fh.read())):
                        ids.setdefault(name, i)
            self._names[run_id] = ids
        return ids

    def _append_points(self, run_id: str, points: list) -> None:
        if not points:
            return
        with self._names_lock:
            ids = self._name_ids(run_id)
            encoded, new = record.number_names(points, ids)
            directory = self.run_dir(run_id)
            if new:
                try:
                    append_bytes(os.path.join(directory, record.METRIC_NAMES_FILE),
                                 "".join(json.dumps(n) + "\n" for n in new).encode("utf-8"))
                except BaseException:
                    self._names.pop(run_id, None)
                    raise
            append_bytes(os.path.join(directory, record.METRICS_FILE), encode_points(encoded))

    def put_object(self, put: ObjectPut) -> str:
        """Store bytes once by sha256; fills `put.digest` and `put.size`."""
        self._ensure_root()
        tmp_dir = os.path.join(self.root, record.OBJECTS_DIR, "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        if put.data is not None:
            digest = hashlib.sha256(put.data).hexdigest()
            put.digest, put.size = digest, len(put.data)
            if not self.has_object(digest):
                self._install(digest, tmp_dir, lambda fh: fh.write(put.data))
            else:
                self.touch_object(digest)
            return digest
        hasher = hashlib.sha256()
        size = 0
        fd, tmp = create_temp(tmp_dir, "", OBJECT_MODE)
        try:
            with os.fdopen(fd, "wb") as out, open(put.path, "rb") as src:
                while True:
                    chunk = src.read(_CHUNK)
                    if not chunk:
                        break
                    hasher.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = hasher.hexdigest()
            put.digest, put.size = digest, size
            final = self.object_path(digest)
            if os.path.exists(final):
                os.unlink(tmp)
                self.touch_object(digest)         # reused: gc's grace starts again
            else:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return digest

    def _install(self, digest: str, tmp_dir: str, write) -> None:
        fd, tmp = create_temp(tmp_dir, "", OBJECT_MODE)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            final = self.object_path(digest)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # -- reading --------------------------------------------------------------
    def run_ids(self) -> list[str]:
        runs = os.path.join(self.root, record.RUNS_DIR)
        try:
            return [d for d in os.listdir(runs) if not d.startswith(".")]
        except FileNotFoundError:
            return []

    def read_manifest(self, run_id: str) -> dict:
        path = os.path.join(self.run_dir(run_id), record.MANIFEST_FILE)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except PermissionError as exc:
            raise CorruptRecord(f"cannot read {path} ({exc.strerror}): ask its owner to make it "
                                "readable (`chmod -R a+rX` on the run directory); runs written "
                                "by mlrepro now follow the umask")
        except FileNotFoundError:
            if os.path.isdir(self.run_dir(run_id)):
                raise CorruptRecord(f"run {run_id} has no {record.MANIFEST_FILE} (its writer died "
                                    f"before the first write): delete {self.run_dir(run_id)}")
            raise RunNotFound(f"no run {run_id!r} in {self.uri}: list runs with `mlrepro runs`")
        try:
            return record.validate_manifest(json.loads(raw.decode("utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptRecord(f"{path} is corrupt ({exc}): restore it from a copy (a remote or "
                                "backup) or delete the run directory; other runs are unaffected")

    def list_run_files(self, run_id: str) -> list[str]:
        directory = self.run_dir(run_id)
        out = []
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for f in sorted(files):
                if f.startswith(".tmp-"):
                    continue
                out.append(os.path.relpath(os.path.join(root, f), directory).replace(os.sep, "/"))
        return out

    def read_run_file(self, run_id: str, name: str) -> bytes:
        name = record.ensure_safe_name(name, "run file name")
        with open(os.path.join(self.run_dir(run_id), name), "rb") as fh:
            return fh.read()

    def effective_status(self, manifest: dict) -> str:
        return record.effective_status(manifest, this_host=self.host, pid_alive=pid_alive)

    def _read_all(self) -> tuple[list[dict], list[tuple[str, str]]]:
        good, bad = [], []
        for run_id in sorted(self.run_ids()):
            try:
                good.append(self.read_manifest(run_id))
            except (CorruptRecord, RunNotFound) as exc:
                bad.append((run_id, str(exc)))
        return good, bad

    def _unindexable(self, failures: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(run_id, f"cannot be indexed ({why}): restore "
                 f"{os.path.join(self.run_dir(run_id), record.MANIFEST_FILE)} from a copy or "
                 "delete the run directory; other runs are unaffected")
                for run_id, why in failures]

    def rebuild_index(self) -> tuple[int, list[tuple[str, str]]]:
        """Re-read every manifest into a fresh index; returns (indexed, [(run id, problem)])."""
        if not os.path.isdir(self.root):
            raise StoreError(f"there is no store at {self.root}: check --store (or "
                             f"${env.STORE.name}); a store is made by the first run written to it")
        if not self.index.writable():
            raise StoreError(f"cannot write the index {self.index.path} (this user may not "
                             f"write {self.root}): rebuild it as a user who can; read commands "
                             "work without it")
        good, bad = self._read_all()
        try:
            try:
                failures = self.index.replace_all(good)
            except sqlite3.DatabaseError as exc:
                if "not a database" not in str(exc) and "malformed" not in str(exc):
                    raise
                self.index.reset()
                failures = self.index.replace_all(good)
        except sqlite3.Error as exc:  # full disk, a lock held for over a minute
            raise StoreError(f"cannot write the index {self.index.path} ({exc}): "
                             "free space or check the store's permissions, then run "
                             "`mlrepro index --rebuild`")
        bad += self._unindexable(failures)
        return len(good) - len(failures), sorted(bad)

    def _index_in_memory(self, why: str) -> Index:
        """An index of the manifests built in memory, when the store's cannot be used."""
        if self._memory_index is None:
            index = Index(MEMORY)
            good, bad = self._read_all()
            index.replace_all(good)
            self._memory_index = index
            unreadable = (f"; {len(bad)} runs are unreadable and not listed, e.g. {bad[0][1]}"
                          if bad else "")
            warn(f"listing {self.root} from its run manifests instead of the index ({why}); "
                 "a user who can write the store can run `mlrepro index --rebuild`" + unreadable)
        return self._memory_index

    def _listing_index(self) -> Index:
        """The index to answer a listing from, up to date with the run directories on disk."""
        if not self.index.writable():
            if self._memory_index is not None:
                return self._memory_index
            cannot = "this user cannot write the store, and its index"
            if not self.index.exists():
                return self._index_in_memory(f"{cannot} does not exist")
            try:
                self.index.open_read_only()
                missing = set(self.run_ids()) - set(self.index.ids())
            except sqlite3.Error as exc:
                return self._index_in_memory(f"{cannot} cannot be read: {exc}")
            if self.read_manifests(sorted(missing)):
                return self._index_in_memory(f"{cannot} lacks {len(missing)} runs")
            return self.index
        try:
            if not self.index.exists():
                self.rebuild_index()
                return self.index
            try:
                missing = set(self.run_ids()) - set(self.index.ids())
            except sqlite3.DatabaseError as exc:
                if "not a database" not in str(exc) and "malformed" not in str(exc):
                    raise
                warn(f"the index {self.index.path} was unreadable ({exc}); rebuilt it from "
                     "the run manifests")
                self.rebuild_index()
                return self.index
            if missing:  # a run whose index write failed, or copied in by hand
                self.index.add_missing(self.read_manifests(sorted(missing)))
        except (StoreError, sqlite3.Error, OSError) as exc:  # a full disk, a lock held too long
            return self._index_in_memory(f"{self.index.path} cannot be written: {exc}")
        return self.index

    def list_runs(self, query: RunQuery | None = None, **filters) -> list[dict]:
        """The index answers the query (rebuilt first if it is missing or unreadable; built in
        memory when the store cannot be written)."""
        query = as_query(query, **filters)
        if not os.path.isdir(os.path.join(self.root, record.RUNS_DIR)):
            return []
        index = self._listing_index()
        try:
            rows = index.query(query)
        except sqlite3.Error as exc:
            if not index.read_only:
                raise
            rows = self._index_in_memory(f"{index.path} cannot be read: {exc}").query(query)
        wanted = query.statuses()
        for row in rows:
            row["status"] = self.effective_status(row)
        return [r for r in rows if wanted is None or r["status"] in wanted]

    def has_object(self, digest: str) -> bool:
        return os.path.exists(self.object_path(digest))

    def open_object(self, digest: str):
        try:
            return open(self.object_path(digest), "rb")
        except FileNotFoundError:
            raise StoreError(f"object {digest[:12]} is missing from {self.uri}: "
                             "pull the run again from its remote")

    def iter_objects(self) -> Iterator[str]:
        base = os.path.join(self.root, record.OBJECTS_DIR)
        for sub in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            if len(sub) != 2:
                continue
            for rest in sorted(os.listdir(os.path.join(base, sub))):
                yield sub + rest

    def touch_object(self, digest: str) -> None:
        try:
            os.utime(self.object_path(digest))
        except OSError:
            pass  # a read-only store: nothing to protect from gc there

    def object_info(self) -> Iterator[tuple[str, int, float]]:
        for digest in self.iter_objects():
            try:
                st = os.stat(self.object_path(digest))
            except FileNotFoundError:
                continue
            yield digest, st.st_size, st.st_mtime

    def delete_objects(self, digests: list[str]) -> None:
        for digest in digests:
            try:
                os.unlink(self.object_path(digest))
            except FileNotFoundError:
                pass

    def delete_run(self, run_id: str) -> None:
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
        self._names.pop(run_id, None)

    def close(self) -> None:
        self.index.close()
        if self._memory_index is not None:
            self._memory_index.close()
            self._memory_index = None
