"""Fingerprinting a run's recorded data again, to tell whether it is still what the run read.

Only inputs that name files can be checked before a run (`kind: files`, or
composites of them); arrays and pipelines are fingerprinted by the script
itself, so `mlrepro reproduce` compares those after the new run has recorded them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlrepro.capture.data import fingerprint_files

SAME = "same"
CHANGED = "changed"
MISSING = "missing"
UNVERIFIABLE = "unverifiable"


@dataclass
class DataCheck:
    """The outcome of re-fingerprinting one recorded input."""

    name: str
    status: str
    detail: str
    recorded: str | None = None
    current: str | None = None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def recorded_paths(fp: dict) -> list[str] | None:
    """The files or directories an input was fingerprinted from, when the record says."""
    if fp.get("paths"):
        return list(fp["paths"])
    source, listing = fp.get("source"), fp.get("file_list") or []
    if source and os.path.isabs(str(source)) and listing and len(listing) == fp.get("files"):
        return [os.path.join(source, f["path"]) for f in listing]
    return None


def _changed_files(old: dict, new: dict) -> list[str]:
    before = {f["path"]: f.get("sha256") for f in old.get("file_list") or []}
    after = {f["path"]: f.get("sha256") for f in new.get("file_list") or []}
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def recheck_input(name: str, fp: dict) -> DataCheck:
    """Fingerprint one recorded input again and say whether it changed."""
    kind = fp.get("kind")
    recorded = fp.get("digest")
    if kind == "composite":
        parts = [recheck_input(f"{name}.{k}", v) for k, v in sorted((fp.get("parts") or {})
                                                                     .items())]
        bad = [p for p in parts if p.status in (CHANGED, MISSING)]
        if bad:
            return DataCheck(name, bad[0].status, bad[0].detail, recorded)
        if any(p.status == UNVERIFIABLE for p in parts):
            return DataCheck(name, UNVERIFIABLE, "; ".join(p.detail for p in parts
                                                             if p.status == UNVERIFIABLE),
                             recorded)
        return DataCheck(name, SAME, "every part unchanged", recorded, recorded)
    if kind != "files":
        return DataCheck(name, UNVERIFIABLE, f"an input of kind {kind or 'unknown'!r} is "
                         "fingerprinted by the script itself; compared after the new run",
                         recorded)
    paths = recorded_paths(fp)
    if not paths:
        return DataCheck(name, UNVERIFIABLE, f"the record does not say which files {name!r} "
                         f"was read from (source {fp.get('source')!r})", recorded)
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        return DataCheck(name, MISSING, f"{missing[0]} no longer exists", recorded)
    now = fingerprint_files(paths)
    if now.get("digest") == recorded:
        return DataCheck(name, SAME, f"{fp.get('files')} files, digest {recorded[:12]}",
                         recorded, recorded)
    changed = _changed_files(fp, now)
    what = f"changed files: {', '.join(changed[:5])}" if changed else "file set changed"
    return DataCheck(name, CHANGED, f"digest {str(recorded)[:12]} -> {now['digest'][:12]} "
                     f"({what})", recorded, now.get("digest"))


def recheck_data(data: dict) -> list[DataCheck]:
    """Every recorded input of a run, fingerprinted again."""
    return [recheck_input(name, fp or {}) for name, fp in sorted((data or {}).items())]
