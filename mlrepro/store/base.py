"""The one store contract that the local store and the S3 remote both honour.

A store receives batches of writes (`write_batch`, the one required method) and
answers reads about runs. Stores are synchronous; threads live in
`mlrepro.writer`, which wraps any store.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Union

from mlrepro.errors import AmbiguousRunId, RunNotFound
from mlrepro.record import Points, matches_prefix


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
    """Where run records live. Subclasses implement `write_batch` and the readers."""

    uri: str = ""

    @abc.abstractmethod
    def write_batch(self, writes: list[Write]) -> None:
        """Apply the writes in order; raise OSError/StoreError when the store cannot take them."""

    # -- runs ---------------------------------------------------------------
    def claim_run_id(self, run_id: str) -> bool:
        """Reserve a run id; False if it exists already. Default: always free."""
        return True

    @abc.abstractmethod
    def run_ids(self) -> list[str]:
        """Every run id in the store (unordered)."""

    @abc.abstractmethod
    def read_manifest(self, run_id: str) -> dict:
        """The manifest; raise CorruptRecord if unreadable, RunNotFound if absent."""

    def list_run_files(self, run_id: str) -> list[str]:
        """Names of the files in a run's directory (run.json included)."""
        return []

    def read_run_file(self, run_id: str, name: str) -> bytes:
        raise NotImplementedError

    def read_points(self, run_id: str) -> Points:
        return Points()

    def read_events(self, run_id: str) -> list[dict]:
        return []

    def list_runs(self, **filters) -> list[dict]:
        """Manifests of all readable runs, newest first (filters are store-specific)."""
        out = []
        for run_id in self.run_ids():
            try:
                out.append(self.read_manifest(run_id))
            except Exception:  # noqa: BLE001 - listing reports the rest
                continue
        out.sort(key=lambda m: m.get("start_time") or 0, reverse=True)
        return out

    def resolve(self, prefix: str) -> str:
        """The one run id that `prefix` names, like a git hash prefix."""
        prefix = prefix.strip()
        ids = self.run_ids()
        if prefix in ids:
            return prefix
        hits = sorted(i for i in ids if prefix and matches_prefix(i, prefix))
        if not hits:
            raise RunNotFound(f"no run matches {prefix!r} in {self.uri}: "
                              "list runs with `mlrepro runs`")
        if len(hits) > 1:
            shown = ", ".join(hits[:5]) + (" ..." if len(hits) > 5 else "")
            raise AmbiguousRunId(f"{prefix!r} matches {len(hits)} runs ({shown}): "
                                 "give more characters of the id")
        return hits[0]

    # -- objects ------------------------------------------------------------
    @abc.abstractmethod
    def has_object(self, digest: str) -> bool: ...

    @abc.abstractmethod
    def open_object(self, digest: str):
        """A binary file object with the object's bytes."""

    def read_object(self, digest: str) -> bytes:
        with self.open_object(digest) as fh:
            return fh.read()

    def iter_objects(self) -> Iterator[str]:
        return iter(())

    def close(self) -> None:
        pass


def objects_of(manifest: dict) -> Iterable[str]:
    """Every object digest a manifest refers to (artifacts, code, data snapshots)."""
    seen = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if (key in ("digest", "object", "patch") or key.endswith("_object")) \
                        and isinstance(value, str) and len(value) == 64:
                    if value not in seen:
                        seen.add(value)
                        yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for section in ("artifacts", "code", "extra_objects"):
        yield from walk(manifest.get(section))
