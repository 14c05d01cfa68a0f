"""Copying runs between stores (spool -> store, local <-> S3): objects first, manifest last.

A reader of the destination never sees a run whose objects are missing, and an
interrupted copy is finished by running it again (only missing objects move).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

from mlrepro import record
from mlrepro.store.base import (EventsAppend, MetricsAppend, ObjectPut, RunFilePut, Store,
                                objects_of)


@dataclass
class CopyReport:
    """What one copy moved."""

    runs: list[str] = field(default_factory=list)
    objects_copied: int = 0
    objects_present: int = 0
    bytes_copied: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _copy_objects(src: Store, dst: Store, run_id: str, manifest: dict,
                  report: CopyReport, done: set | None = None) -> None:
    for digest in objects_of(manifest):
        if done is not None:
            if digest in done:
                continue
            done.add(digest)
        if dst.has_object(digest):
            dst.touch_object(digest)          # reused: gc's grace starts again
            report.objects_present += 1
            continue
        if not src.has_object(digest):
            report.skipped.append((run_id, f"object {digest[:12]} missing in {src.uri}"))
            continue
        put, temporary = _streamed_put(src, digest)
        try:
            dst.write_batch([put])
        finally:
            if temporary:
                os.unlink(temporary)
        if put.digest != digest:
            report.skipped.append((run_id, f"object {digest[:12]} in {src.uri} does not hash to "
                                           "its name (corrupt)"))
            continue
        report.objects_copied += 1
        report.bytes_copied += put.size or 0


def _streamed_put(src: Store, digest: str) -> tuple[ObjectPut, str | None]:
    """An ObjectPut that reads from a file, so big objects never sit in memory.

    Returns the put and the temporary file to delete afterwards (None when the
    source store keeps the object as a file of its own).
    """
    path = src.local_object_path(digest)
    if path is not None:
        return ObjectPut(path=path), None
    fd, tmp = tempfile.mkstemp(prefix="mlrepro-object-")
    os.close(fd)
    try:
        src.download_object(digest, tmp)
    except BaseException:
        os.unlink(tmp)
        raise
    return ObjectPut(path=tmp), tmp


def copy_run(src: Store, dst: Store, run_id: str, report: CopyReport | None = None) -> CopyReport:
    """Copy one run and every object it names from `src` to `dst`."""
    report = report or CopyReport()
    manifest = src.read_manifest(run_id)
    done: set = set()
    _copy_objects(src, dst, run_id, manifest, report, done)
    names = src.list_run_files(run_id)
    files = [RunFilePut(run_id, n, src.read_run_file(run_id, n))
             for n in names if n != record.MANIFEST_FILE]
    if files:
        dst.write_batch(files)
    # The manifest last, re-read so it matches the files copied just before it; a live
    # run may have named new objects meanwhile, so those are copied before it too.
    latest = src.read_run_file(run_id, record.MANIFEST_FILE)
    try:
        _copy_objects(src, dst, run_id, json.loads(latest), report, done)
    except ValueError:
        latest = json.dumps(manifest, sort_keys=True, indent=1, default=str).encode() + b"\n"
    dst.write_batch([RunFilePut(run_id, record.MANIFEST_FILE, latest)])
    report.runs.append(run_id)
    return report


def merge_spooled_run(spool: Store, dst: Store, run_id: str,
                      report: CopyReport | None = None) -> CopyReport:
    """Bring a run that failed over to the spool back into `dst`.

    If `dst` already holds the start of the run, the spooled points and events are
    appended to it (names re-mapped) and the spooled manifest, the newer one, wins.
    """
    report = report or CopyReport()
    if run_id not in dst.run_ids() or record.MANIFEST_FILE not in dst.list_run_files(run_id):
        return copy_run(spool, dst, run_id, report)
    manifest = spool.read_manifest(run_id)
    _copy_objects(spool, dst, run_id, manifest, report)
    files = spool.list_run_files(run_id)
    writes: list = []
    if record.METRICS_FILE in files and record.METRIC_NAMES_FILE in files:
        names = record.decode_names(spool.read_run_file(run_id, record.METRIC_NAMES_FILE))
        pts = record.raw_points(spool.read_run_file(run_id, record.METRICS_FILE), names)
        writes.append(MetricsAppend(run_id, pts))
    if record.EVENTS_FILE in files:
        events = []
        for line in spool.read_run_file(run_id, record.EVENTS_FILE).decode(
                "utf-8", "replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        writes.append(EventsAppend(run_id, events))
    writes.append(RunFilePut(run_id, record.MANIFEST_FILE,
                             spool.read_run_file(run_id, record.MANIFEST_FILE)))
    dst.write_batch(writes)
    report.runs.append(run_id)
    return report
