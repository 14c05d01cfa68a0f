"""`mlrepro get RUN [ARTIFACT]`: copy a run's artifacts out of a store (local or S3).

An artifact is a file or a directory in the run's manifest whose bytes are
content-addressed objects; each object is checked against its digest as it is
written, so what lands on disk is what the run logged.
"""

from __future__ import annotations

import hashlib
import os
import posixpath

from mlrepro.errors import MlreproError

CHUNK = 1 << 20


def _safe_join(root: str, rel: str, what: str) -> str:
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith("/") or ".." in parts:
        raise MlreproError(f"{what} names the path {rel!r}, which leaves its directory: the "
                           "record is damaged; read the object by hand")
    return os.path.join(root, *[p for p in parts if p not in ("", ".")])


def _write_object(store, digest: str, dest: str, force: bool) -> int:
    """Stream one object to `dest` (written aside, checked against its digest, renamed)."""
    if os.path.lexists(dest) and not force:
        raise MlreproError(f"{dest} exists: pass -o to write elsewhere, or --force to replace it")
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    tmp = f"{dest}.mlrepro-get-{os.getpid()}"
    h, size = hashlib.sha256(), 0
    try:
        with store.open_object(digest) as src, open(tmp, "wb") as dst:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                h.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        if h.hexdigest() != digest:
            raise MlreproError(f"object {digest[:12]} in {store.uri} does not match its digest: "
                               "the store is damaged; pull the run again from its remote")
        os.replace(tmp, dest)
    except (MlreproError, OSError):  # ours, or this machine's disk: reported as they are
        raise
    except Exception as exc:  # noqa: BLE001 - a store's own error (S3), named for the user
        raise MlreproError(f"object {digest[:12]} cannot be read from {store.uri} ({exc}): "
                           "pull the run again from its remote")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return size


def artifact_entry(manifest: dict, name: str) -> dict:
    """The manifest entry of artifact `name`; a one-line error naming the others if absent."""
    artifacts = manifest.get("artifacts") or {}
    if name in artifacts:
        return artifacts[name]
    names = sorted(artifacts)
    listing = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
    raise MlreproError(f"run {manifest['id']} has no artifact {name!r}: "
                       + (f"choose one of {listing}" if names else "it logged no artifacts"))


def copy_artifact(store, manifest: dict, name: str, dest: str, *, force: bool = False) -> dict:
    """Write artifact `name` of the run to `dest` (a file, or a directory for a dir artifact).

    Returns `{"name", "kind", "path", "files", "bytes"}`.
    """
    entry = artifact_entry(manifest, name)
    what = f"artifact {name!r} of run {manifest['id']}"
    if entry.get("kind") == "dir":
        if os.path.exists(dest) and not os.path.isdir(dest):
            raise MlreproError(f"{dest} is a file and {what} is a directory: pass -o a "
                               "directory path")
        total, files = 0, entry.get("files") or {}
        for rel, f in sorted(files.items()):
            total += _write_object(store, f["digest"], _safe_join(dest, rel, what), force)
        os.makedirs(dest, exist_ok=True)
        return {"name": name, "kind": "dir", "path": dest, "files": len(files), "bytes": total}
    if not entry.get("digest"):
        raise MlreproError(f"{what} has no stored content (it was too large or failed to "
                           "upload): it cannot be copied out")
    if os.path.isdir(dest):
        dest = os.path.join(dest, posixpath.basename(name))
    size = _write_object(store, entry["digest"], dest, force)
    return {"name": name, "kind": "file", "path": dest, "files": 1, "bytes": size}


def copy_artifacts(store, ref: str, name: str | None, output: str | None, *,
                   force: bool = False) -> list[dict]:
    """`mlrepro get`: one artifact (to `output` or `./<its base name>`), or all of them
    (each under its name, in `output` or `./<run id>`)."""
    run_id = store.resolve(ref)
    manifest = store.read_manifest(run_id)
    if name is not None:
        dest = output or posixpath.basename(name.rstrip("/")) or name
        return [copy_artifact(store, manifest, name, dest, force=force)]
    artifacts = manifest.get("artifacts") or {}
    if not artifacts:
        raise MlreproError(f"run {run_id} logged no artifacts: there is nothing to get")
    root = output or run_id
    return [copy_artifact(store, manifest, n, _safe_join(root, n, f"artifact {n!r}"),
                          force=force) for n in sorted(artifacts)]
