"""Remotes: named S3 stores that a team pushes runs to and pulls runs from.

`mlrepro remote add team s3://bucket/prefix` names a remote in the local store's
`remotes.json`; `push`, `pull` and `sync` move runs between the two, objects first
and the manifest last, only what is missing or newer. `$MLREPRO_REMOTE` (a name or
a URI) picks the remote when no `--remote` is given.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from mlrepro import env, record
from mlrepro.errors import MlreproError
from mlrepro.store import Store
from mlrepro.store.base import objects_of
from mlrepro.store.files import atomic_write_json
from mlrepro.store.s3 import S3Store
from mlrepro.store.transfer import CopyReport, copy_run

REMOTES_FILE = "remotes.json"        # in the local store's root: {"remotes": {...}, "default": ...}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


# -- named remotes -------------------------------------------------------------------------

def _root(local: Store) -> str:
    root = local.root
    if root is None:
        raise MlreproError(f"remotes are named in a local store, not in {local.uri}: "
                           "give --store a directory")
    return root


def load_remotes(local: Store) -> dict:
    """The local store's remotes: {"remotes": {name: {"uri": ...}}, "default": name|None}."""
    path = os.path.join(_root(local), REMOTES_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {"remotes": {}, "default": None}
    except ValueError as exc:
        raise MlreproError(f"{path} is not valid JSON ({exc}): fix it or delete it and add "
                           "the remotes again")
    data.setdefault("remotes", {})
    data.setdefault("default", None)
    return data


def add_remote(local: Store, name: str, uri: str, *, default: bool = False) -> dict:
    """Name an S3 remote in the local store (credentials never go in the URI).

    Example:
        >>> add_remote(open_store("./mlrepro-runs"), "team", "s3://bucket/mlrepro")  # doctest: +SKIP
    """
    if not _NAME_RE.match(name or ""):
        raise MlreproError(f"remote name {name!r} must be letters, digits, '.', '_' or '-': "
                           "e.g. `mlrepro remote add team s3://bucket/prefix`")
    if not uri.startswith("s3://"):
        raise MlreproError(f"remote URI {uri!r} is not an S3 URI: use s3://bucket/prefix")
    canonical = S3Store(uri).uri          # validates: bucket name, no credentials, no query
    data = load_remotes(local)
    data["remotes"][name] = {"uri": canonical}
    if default or not data.get("default") or data["default"] not in data["remotes"]:
        data["default"] = name
    os.makedirs(_root(local), exist_ok=True)
    atomic_write_json(os.path.join(_root(local), REMOTES_FILE), data)
    return data


def remove_remote(local: Store, name: str) -> dict:
    data = load_remotes(local)
    if name not in data["remotes"]:
        raise MlreproError(f"no remote named {name!r}: list them with `mlrepro remote list`")
    del data["remotes"][name]
    if data.get("default") == name:
        data["default"] = next(iter(sorted(data["remotes"])), None)
    atomic_write_json(os.path.join(_root(local), REMOTES_FILE), data)
    return data


def resolve_remote(local: Store | None, name_or_uri: str | None = None,
                   environ: Mapping[str, str] | None = None) -> str:
    """The URI of the remote to use: the argument, else `$MLREPRO_REMOTE`, else the default."""
    wanted = name_or_uri or env.REMOTE.get(environ)
    data = load_remotes(local) if local is not None and local.root is not None else \
        {"remotes": {}, "default": None}
    if wanted:
        if wanted.startswith("s3://"):
            return wanted
        if wanted in data["remotes"]:
            return data["remotes"][wanted]["uri"]
        raise MlreproError(f"no remote named {wanted!r}: add it with "
                           f"`mlrepro remote add {wanted} s3://bucket/prefix`")
    if data.get("default") in data["remotes"]:
        return data["remotes"][data["default"]]["uri"]
    raise MlreproError("no remote is configured: add one with "
                       "`mlrepro remote add NAME s3://bucket/prefix` or set MLREPRO_REMOTE")


# -- moving runs ------------------------------------------------------------------------------

@dataclass
class TransferSummary:
    """What a push, pull or sync did, run by run."""

    copied: CopyReport = field(default_factory=CopyReport)
    up_to_date: list[str] = field(default_factory=list)
    kept_newer: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def line(self, verb: str, where: str) -> str:
        c = self.copied
        text = (f"{verb} {len(c.runs)} run{'s' if len(c.runs) != 1 else ''} {where} "
                f"({c.objects_copied} objects, {_size(c.bytes_copied)} moved; "
                f"{c.objects_present} objects already there)")
        if self.up_to_date:
            text += f"; {len(self.up_to_date)} already up to date"
        if self.kept_newer:
            text += f"; {len(self.kept_newer)} newer at the destination, left alone"
        return text


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _freshness(manifest: dict) -> tuple:
    """Later attempts, later heartbeats and ended runs are newer copies of the same run."""
    return (len(manifest.get("attempts") or []), manifest.get("status") != record.RUNNING,
            float(manifest.get("heartbeat") or 0), float(manifest.get("end_time") or 0))


def transfer(src: Store, dst: Store, run_ids: list[str] | None = None,
             summary: TransferSummary | None = None) -> TransferSummary:
    """Copy runs from `src` to `dst`: only missing objects move, manifests go last.

    A run whose copy at `dst` is identical is skipped; one whose copy at `dst` is
    newer (more attempts, a later heartbeat) is left alone. A run with objects
    missing in `src` is not copied, so `dst` never names an object it lacks.
    """
    summary = summary or TransferSummary()
    ids = [src.resolve(r) for r in run_ids] if run_ids else sorted(src.run_ids())
    have = set(dst.run_ids())
    for run_id in ids:
        try:
            local = src.read_manifest(run_id)
            theirs = None
            if run_id in have:
                try:
                    theirs = dst.read_run_file(run_id, record.MANIFEST_FILE)
                except FileNotFoundError:
                    theirs = None
            if theirs is not None:
                if src.read_run_file(run_id, record.MANIFEST_FILE) == theirs:
                    summary.up_to_date.append(run_id)
                    continue
                if _freshness(json.loads(theirs)) > _freshness(local):
                    summary.kept_newer.append(run_id)
                    continue
            missing = [d for d in objects_of(local) if not src.has_object(d)]
            if missing:
                summary.problems.append((run_id, f"{len(missing)} of its objects are missing "
                                                 f"from {src.uri} (e.g. {missing[0][:12]}): "
                                                 "copy it from a store that has them"))
                continue
            before = len(summary.copied.skipped)
            copy_run(src, dst, run_id, summary.copied)
            summary.problems.extend(summary.copied.skipped[before:])
        except (MlreproError, OSError, ValueError) as exc:
            summary.problems.append((run_id, str(exc)))
    return summary


def push(local: Store, remote: Store, run_ids: list[str] | None = None) -> TransferSummary:
    """Send local runs (all, or the ones named) to the remote."""
    return transfer(local, remote, run_ids)


def pull(local: Store, remote: Store, run_ids: list[str] | None = None) -> TransferSummary:
    """Fetch runs (all, or the ones named) from the remote into the local store."""
    return transfer(remote, local, run_ids)


def sync(local: Store, remote: Store) -> tuple[TransferSummary, TransferSummary]:
    """Push what the remote lacks, then pull what the local store lacks."""
    return push(local, remote), pull(local, remote)
