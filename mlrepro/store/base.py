"""The one store contract that the local store and the S3 remote both honour.

A store receives batches of writes (`write_batch`, the one required write) and
answers reads about runs and objects. Stores are synchronous; threads live in
`mlrepro.core.writer`, which wraps any store. Which runs a listing keeps is
`mlrepro.store.query`'s one rule.
"""

from __future__ import annotations

import abc
import json
import shutil
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator, Union

from mlrepro import record
from mlrepro.errors import AmbiguousRunId, CorruptRecord, RunNotFound, warn
from mlrepro.record import Points, decode_points, matches_prefix
from mlrepro.store.query import RunQuery, as_query

_CHUNK = 1 << 20


@dataclass
class ManifestWrite:
    """Replace a run's manifest (atomically)."""

    run_id: str
    manifest: dict


@dataclass
class MetricsAppend:
    """Append metric points: (step, value, wall, epoch, name, attempt) tuples."""

    run_id: str
    points: list = field(default_factory=list)


@dataclass
class EventsAppend:
    """Append events (dicts with at least `time` and `kind`)."""

    run_id: str
    events: list = field(default_factory=list)


@dataclass
class ObjectPut:
    """Store the bytes of a file (or given bytes) content-addressed; `digest` is filled in."""

    path: str | None = None
    data: bytes | None = None
    digest: str | None = None
    size: int | None = None


@dataclass
class RunFilePut:
    """Replace one whole file of a run directory (used when copying runs between stores)."""

    run_id: str
    name: str
    data: bytes = b""


Write = Union[ManifestWrite, MetricsAppend, EventsAppend, ObjectPut, RunFilePut]


class Store(abc.ABC):
    """Where run records live: the whole contract every store honours.

    Required: `write_batch` (the one write), `run_ids`, `read_manifest`,
    `has_object` and `open_object`. Everything else has a base implementation
    (built on those and on `read_run_file`), or raises `NotImplementedError` where a
    kind of store cannot do it (a remote has no run directory on this machine).
    Callers use these methods and never probe a store for others.
    """

    uri: str = ""
    root: str | None = None
    """The store's directory on this machine (local stores), or None."""

    # -- writing --------------------------------------------------------------
    @abc.abstractmethod
    def write_batch(self, writes: list[Write]) -> None:
        """Apply the writes in order.

        Args:
            writes: manifests, metric points, events, objects and whole run files.

        Raises:
            OSError or StoreError when the store cannot take them (the writer retries,
            then fails over to the spool).
        """

    def claim_run_id(self, run_id: str) -> bool:
        """Reserve a run id atomically. Returns False when it exists already."""
        return True

    def delete_run(self, run_id: str) -> None:
        """Remove a run's directory (its objects stay: other runs may name them)."""
        raise NotImplementedError(f"{self.uri} cannot delete runs")

    # -- runs -------------------------------------------------------------------
    @abc.abstractmethod
    def run_ids(self) -> list[str]:
        """Every run id in the store, unordered (runs mid-copy may be missing)."""

    @abc.abstractmethod
    def read_manifest(self, run_id: str) -> dict:
        """A run's manifest.

        Raises:
            RunNotFound when there is no such run; CorruptRecord when it cannot be read.
        """

    def read_run_file(self, run_id: str, name: str) -> bytes:
        """The bytes of one file of a run (`run.json`, `metrics.bin`, ...).

        Raises:
            FileNotFoundError when the run has no such file.
        """
        raise NotImplementedError(f"{self.uri} cannot read a run's files")

    def list_run_files(self, run_id: str) -> list[str]:
        """Names of the files of a run (relative, `/`-separated, `run.json` included)."""
        raise NotImplementedError(f"{self.uri} cannot list a run's files")

    def run_dir(self, run_id: str) -> str | None:
        """The run's directory on this machine, or None for a store that has none."""
        return None

    def read_points(self, run_id: str) -> Points:
        """The run's metric points (a torn tail ignored; later attempts supersede).

        Points that fail validation (garbage bytes, a name id with no name) are skipped
        with one warning naming the file.
        """
        try:
            names_raw = self.read_run_file(run_id, record.METRIC_NAMES_FILE)
            blob = self.read_run_file(run_id, record.METRICS_FILE)
        except FileNotFoundError:
            return Points()
        names = record.decode_names(names_raw)
        good, skipped = record.valid_points(blob, len(names))
        if skipped:
            where = self.run_dir(run_id)
            where = (f"{where}/{record.METRICS_FILE}" if where
                     else f"{record.METRICS_FILE} of run {run_id} in {self.uri}")
            warn(f"{where}: skipped {skipped} of {len(blob) // record.POINT.size} metric points "
                 "that are not valid points (a damaged file, or one without its "
                 f"{record.METRIC_NAMES_FILE}); restore it from a copy to see them")
        return decode_points(good, names)

    def read_events(self, run_id: str) -> list[dict]:
        """The run's events in order (a torn last line skipped)."""
        try:
            raw = self.read_run_file(run_id, record.EVENTS_FILE)
        except FileNotFoundError:
            return []
        out = []
        for line in raw.decode("utf-8", "replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn last line after SIGKILL
            if isinstance(event, dict):  # a line of garbage that happens to be JSON is not one
                out.append(event)
        return out

    def effective_status(self, manifest: dict) -> str:
        """The status a person should see: a `running` run whose heartbeat stopped is crashed."""
        return record.effective_status(manifest)

    def read_manifests(self, run_ids: Iterable[str]) -> list[dict]:
        """The readable manifests of these runs (unreadable ones are left out)."""
        out = []
        for run_id in run_ids:
            try:
                out.append(self.read_manifest(run_id))
            except (RunNotFound, CorruptRecord):
                continue
        return out

    def list_runs(self, query: RunQuery | None = None, **filters) -> list[dict]:
        """Manifests of the readable runs that `query` keeps, each with its effective status.

        Args:
            query: a `RunQuery`, or its fields as keywords (project=, status=, params=,
                fingerprint=, sort_metric=, descending=).

        Returns:
            Manifests (possibly partial: the local index keeps the listed fields),
            newest first unless the query sorts by a metric.
        """
        query = as_query(query, **filters)
        return query.select(self.read_manifests(self.run_ids()), self.effective_status)

    def resolve(self, prefix: str) -> str:
        """The one run id that `prefix` names, like a git hash prefix.

        Raises:
            RunNotFound or AmbiguousRunId, each naming the fix.
        """
        return resolve_among(self.uri, prefix.strip(), self.run_ids())

    def rebuild_index(self) -> tuple[int, list[tuple[str, str]]]:
        """Re-read every manifest into the store's index.

        Returns:
            (runs indexed, [(run id, why it could not be read)]).
        """
        raise NotImplementedError(f"{self.uri} has no index to rebuild")

    # -- objects --------------------------------------------------------------
    @abc.abstractmethod
    def has_object(self, digest: str) -> bool:
        """Whether the object with this sha256 (hex) is stored."""

    @abc.abstractmethod
    def open_object(self, digest: str) -> BinaryIO:
        """A binary file object with the object's bytes.

        Raises:
            StoreError when the object is missing (naming how to get it back).
        """

    def read_object(self, digest: str) -> bytes:
        """The object's bytes, in memory (for small objects: patches, sources, JSON)."""
        with self.open_object(digest) as fh:
            return fh.read()

    def local_object_path(self, digest: str) -> str | None:
        """The object's file on this machine, when the store keeps one (else None)."""
        return None

    def download_object(self, digest: str, path: str) -> None:
        """Write the object to the file `path` without holding it in memory."""
        with self.open_object(digest) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)

    def iter_objects(self) -> Iterator[str]:
        """Every object digest in the store."""
        raise NotImplementedError(f"{self.uri} cannot list its objects")

    def touch_object(self, digest: str) -> None:
        """Mark a stored object as just reused (a writer deduped against it), so that
        `mlrepro gc`'s grace period covers it until the manifest naming it lands."""

    def object_info(self) -> Iterator[tuple[str, int, float]]:
        """(digest, size, time written) of every object: what `mlrepro gc` weighs."""
        raise NotImplementedError(f"{self.uri} cannot list its objects")

    def delete_objects(self, digests: list[str]) -> None:
        """Remove objects (only `mlrepro.store.gc` calls this, for objects no run names)."""
        raise NotImplementedError(f"{self.uri} cannot delete objects")

    def close(self) -> None:
        """Release connections and caches; the store may be opened again later."""


def resolve_among(uri: str, prefix: str, ids) -> str:
    """The one id of `ids` that `prefix` names (RunNotFound / AmbiguousRunId otherwise)."""
    ids = set(ids)
    if prefix in ids:
        return prefix
    hits = sorted(i for i in ids if prefix and matches_prefix(i, prefix))
    if not hits:
        raise RunNotFound(f"no run matches {prefix!r} in {uri}: "
                          "list runs with `mlrepro runs`")
    if len(hits) > 1:
        shown = ", ".join(hits[:5]) + (" ..." if len(hits) > 5 else "")
        raise AmbiguousRunId(f"{prefix!r} matches {len(hits)} runs ({shown}): "
                             "give more characters of the id")
    return hits[0]


def objects_of(manifest: dict) -> Iterable[str]:
    """Every object digest a manifest refers to: artifacts, code (patch, entry point, every
    stored module), data file lists kept apart, extra objects. Copies, pushes and gc all
    read this one list."""
    seen = set()

    def digest(value):
        if isinstance(value, str) and len(value) == 64 and value not in seen:
            seen.add(value)
            yield value

    def walk(node, named=("digest", "object", "patch")):
        if isinstance(node, dict):
            for key, value in node.items():
                if (key in named or key.endswith("_object")) and isinstance(value, str):
                    yield from digest(value)
                else:
                    yield from walk(value, named)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, named)

    for section in ("artifacts", "code", "extra_objects"):
        yield from walk(manifest.get(section))
    modules = (manifest.get("code") or {}).get("modules")
    for value in (modules.values() if isinstance(modules, dict) else ()):  # path -> sha256
        yield from digest(value)
    # data fingerprints are digests of the files, not objects: only `*_object` names one
    yield from walk(manifest.get("data"), named=())
