"""`mlrepro gc`: remove the objects no run names any more, never one a live run may still name.

An object is kept when
- a readable manifest names it (every run, whatever its status), or
- it was written (or reused: writers refresh an old object they dedupe against, see
  `Store.touch_object`) within the grace period, or
- it was written after the oldest live run started (less `CLOCK_SLACK`, for clocks that
  disagree): a run being written uploads its objects before the manifest that names
  them, so anything since its start may be its.

A manifest that cannot be read stops the collection (what it names is unknown). In
an S3 store, gc also removes index segments no head names and aborts multipart
uploads abandoned before the cut-off; in a local store, stale temporary files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from mlrepro import record
from mlrepro.errors import CorruptRecord, MlreproError, RunNotFound
from mlrepro.store.base import Store, objects_of

DEFAULT_GRACE = 24 * 3600.0          # seconds an unreferenced object is kept after its last write
SEGMENT_GRACE = 3600.0               # index segments younger than this always stay
CLOCK_SLACK = 300.0                  # a live run's start vs the store's clock (S3 keeps seconds)


@dataclass
class GcReport:
    """What a collection found (and removed, unless it was a dry run)."""

    dry_run: bool
    runs: int = 0
    live_runs: list[str] = field(default_factory=list)
    kept: int = 0
    kept_recent: int = 0
    removed: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    other: list[str] = field(default_factory=list)      # index segments, uploads, temp files
    cutoff: float = 0.0

    def line(self, uri: str) -> str:
        verb = "would remove" if self.dry_run else "removed"
        text = (f"{verb} {len(self.removed)} objects ({self.removed_bytes / 1e6:.1f} MB) from "
                f"{uri}; kept {self.kept} named by {self.runs} runs and {self.kept_recent} "
                "recent ones")
        if self.live_runs:
            text += f" ({len(self.live_runs)} live run{'s' if len(self.live_runs) > 1 else ''})"
        if self.other:
            text += f"; {verb} {len(self.other)} index segments, uploads or temp files"
        return text


def collect(store: Store, *, grace: float = DEFAULT_GRACE, dry_run: bool = False,
            now: float | None = None) -> GcReport:
    """Find (and unless `dry_run`, delete) the objects of `store` that no run names."""
    if grace < 0:
        raise MlreproError(f"--grace {grace:g} is negative: give seconds >= 0 (default "
                           f"{DEFAULT_GRACE:g})")
    now = time.time() if now is None else now
    report = GcReport(dry_run=dry_run)
    # Objects are listed before the manifests are read: an object written after this list
    # is not a candidate at all, and a manifest naming an older one is read below.
    objects = list(store.object_info())
    referenced: set[str] = set()
    cutoff = now - grace
    for run_id in sorted(store.run_ids()):
        try:
            manifest = store.read_manifest(run_id)
        except RunNotFound:
            continue                                  # copied away meanwhile
        except CorruptRecord as exc:
            if _claimed_only(store, run_id):          # claimed, first manifest not yet written
                report.live_runs.append(run_id)
                cutoff = min(cutoff, _id_time(run_id, now) - CLOCK_SLACK)
                continue
            raise MlreproError(f"gc stopped: the manifest of run {run_id} cannot be read "
                               f"({exc}); repair or delete that run, then run gc again") from None
        report.runs += 1
        referenced.update(objects_of(manifest))
        if store.effective_status(manifest) == record.RUNNING:
            report.live_runs.append(run_id)
            cutoff = min(cutoff, float(manifest.get("start_time") or 0) - CLOCK_SLACK)
    report.cutoff = cutoff
    doomed = []
    for digest, size, mtime in objects:
        if digest in referenced:
            report.kept += 1
        elif mtime >= cutoff:
            report.kept_recent += 1
        else:
            doomed.append(digest)
            report.removed_bytes += size
    report.removed = doomed
    if not dry_run and doomed:
        store.delete_objects(doomed)
    _other(store, cutoff, report)
    return report


def _claimed_only(store: Store, run_id: str) -> bool:
    try:
        return record.MANIFEST_FILE not in store.list_run_files(run_id)
    except (NotImplementedError, OSError):
        return False


def _id_time(run_id: str, default: float) -> float:
    """When a run started, from its time-sortable id (UTC seconds)."""
    import calendar

    try:
        return float(calendar.timegm(time.strptime(run_id[:15], "%Y%m%dT%H%M%S")))
    except ValueError:
        return 0.0 if default is None else min(default, 0.0)


def _other(store: Store, cutoff: float, report: GcReport) -> None:
    """The store kind's own leftovers: S3 segments and uploads, local temp files."""
    from mlrepro.store.s3 import S3Store

    if isinstance(store, S3Store):
        # A compactor PUTs its segments just before the head that names them: an hour's
        # floor, whatever --grace says, keeps gc from taking one in between.
        segments = store.garbage(min(cutoff, time.time() - SEGMENT_GRACE))
        uploads = store.stale_uploads(cutoff)
        report.other += [k for k, _ in segments] + [k for k, _ in uploads]
        if not report.dry_run:
            store.delete_keys([k for k, _ in segments])
            for key, upload_id in uploads:
                store.abort_upload(key, upload_id)
    elif store.root is not None:
        tmp = os.path.join(store.root, record.OBJECTS_DIR, "tmp")
        for name in sorted(os.listdir(tmp)) if os.path.isdir(tmp) else []:
            path = os.path.join(tmp, name)
            try:
                if os.stat(path).st_mtime < cutoff:
                    report.other.append(path)
                    if not report.dry_run:
                        os.unlink(path)
            except FileNotFoundError:
                continue


__all__ = ["collect", "GcReport", "DEFAULT_GRACE"]
