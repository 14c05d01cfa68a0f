"""Comparing the artifacts two runs logged under the same names, by content.

Model files change on every save even when the weights are bit-identical
(measured with Keras 3.15 / TF 2.21): a `.keras` zip stamps its members with the
save time, its `metadata.json` holds the save date and its `config.json` holds
`shared_object_id`s (Python object addresses of the saving process); a
SavedModel's `fingerprint.pb` differs on every export; NumPy `.npz` files stamp
their members; checkpoint metadata records when and by which run it was written;
`mlrepro_run.json` names the run. So content is compared, not bytes: zip-like
files by their members, JSON without those keys (`member_digest`), and members
that only ever hold save metadata are listed as volatile instead of different.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import zipfile
from typing import Any, Mapping

from mlrepro.record import EMBEDDED_RUN_FILE

VOLATILE_MEMBERS = ("fingerprint.pb", EMBEDDED_RUN_FILE)
VOLATILE_JSON_KEYS = ("shared_object_id", "date_saved", "created", "run_id", "attempt")
ZIP_LIKE = (".keras", ".zip", ".npz")
MAX_NESTING = 2

IDENTICAL = "identical"
IDENTICAL_EXCEPT_VOLATILE = "identical-except-volatile"
DIFFERS = "differs"
MISSING = "missing"
ADDED = "added"


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_JSON_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def zip_member_digests(data: bytes, _depth: int = 0, *, raw: bool = False
                       ) -> dict[str, str] | None:
    """`{member: member_digest}` of a zip held in `data` (`raw`: byte digests), or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if raw:
                return {i.filename: hashlib.sha256(zf.read(i)).hexdigest()
                        for i in zf.infolist() if not i.is_dir()}
            return {i.filename: member_digest(i.filename, zf.read(i), _depth + 1)
                    for i in zf.infolist() if not i.is_dir()}
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def member_digest(name: str, data: bytes, _depth: int = 0) -> str:
    """The digest of a file's content: JSON without save metadata, zips by their members.

    Example:
        >>> a = member_digest("m.json", b'{"units": 6, "shared_object_id": 1}')
        >>> a == member_digest("m.json", b'{"shared_object_id": 2, "units": 6}')
        True
    """
    if name.endswith(".json"):
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            pass
        else:
            data = json.dumps(_strip(value), sort_keys=True, separators=(",", ":")).encode()
    elif name.endswith(ZIP_LIKE) and _depth < MAX_NESTING:
        members = zip_member_digests(data, _depth)
        if members is not None:
            data = ("zip:" + json.dumps(members, sort_keys=True)).encode()
    return hashlib.sha256(data).hexdigest()


def members_of(entry: Mapping) -> dict[str, str] | None:
    """`{relative path: digest}` of a directory artifact as recorded (None for a file)."""
    if entry.get("kind") == "dir":
        return {rel: (f or {}).get("digest") for rel, f in (entry.get("files") or {}).items()}
    return None


def _content_id(entry: Mapping):
    return entry.get("digest") if entry.get("kind") != "dir" else entry.get("tree")


def compare_artifact(name: str, a: Mapping | None, b: Mapping | None, *,
                     content: tuple | None = None, raw: tuple | None = None) -> dict:
    """One artifact of the reference run (`a`) against the same-named one of `b`.

    Args:
        name: the artifact's name.
        a: the reference run's artifact entry (None: absent).
        b: the other run's entry.
        content: `(members_a, members_b)`, each `{path: content digest}` (see
            `member_digest`), when the caller read the differing files.
        raw: `(members_a, members_b)` with byte digests, to name what differs in bytes
            only (default: a directory's recorded file digests).
    """
    if a is None or b is None:
        return {"name": name, "status": MISSING if b is None else ADDED}
    if _content_id(a) is not None and _content_id(a) == _content_id(b):
        return {"name": name, "status": IDENTICAL}
    ma, mb = content if content else (members_of(a), members_of(b))
    if ma is None or mb is None:
        return {"name": name, "status": DIFFERS, "members": []}
    differing = sorted(r for r in set(ma) | set(mb) if ma.get(r) != mb.get(r))
    real = [r for r in differing if posixpath.basename(r) not in VOLATILE_MEMBERS]
    if real:
        return {"name": name, "status": DIFFERS, "members": real}
    ra, rb = raw if raw else (members_of(a), members_of(b))
    if ra is not None and rb is not None:
        volatile = sorted(r for r in set(ra) | set(rb) if ra.get(r) != rb.get(r))
    else:
        volatile = differing
    return {"name": name, "status": IDENTICAL_EXCEPT_VOLATILE,
            "volatile": volatile or ["zip timestamps"]}


def compare_artifacts(a: Mapping[str, Mapping], b: Mapping[str, Mapping],
                      content: Mapping[str, tuple] | None = None,
                      raw: Mapping[str, tuple] | None = None) -> list[dict]:
    """Every artifact of `a` compared with `b`'s artifact of the same name.

    Args:
        a: the reference run's `artifacts` section.
        b: the other run's `artifacts` section.
        content: `{name: (members_a, members_b)}` content digests the caller computed
            for artifacts whose bytes differ (zip members, normalised JSON).
        raw: `{name: (members_a, members_b)}` byte digests of the same members.
    """
    content, raw = content or {}, raw or {}
    return [compare_artifact(name, a.get(name), b.get(name), content=content.get(name),
                             raw=raw.get(name))
            for name in sorted(set(a) | set(b))]
