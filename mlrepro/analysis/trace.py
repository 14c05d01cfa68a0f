"""`mlrepro trace PATH`: which run produced this model or file, and what it was made from.

Any file is found by its content digest among the artifacts runs logged (a bare
weights file, a checkpoint, a file inside a logged directory). A directory (a
SavedModel) is found by its tree digest, by the digests of its files, and by the
run id mlrepro embeds in exports (`mlrepro_run.json`). A `.keras` or `.zip` (also
one inside a directory or archive) is searched for the embedded member and matched
by its members too: a `model.save` of the trained model has other save metadata
than the run's `model.keras`, but the same `model.weights.h5`. A SageMaker
`model.tar.gz` is unpacked into a temporary directory and traced like a directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field

from mlrepro.capture.data import file_digest
from mlrepro.errors import MlreproError
from mlrepro.record import EMBEDDED_RUN_FILE, tree_digest
from mlrepro.compare.text import short, when

MAX_MEMBER_FILES = 5000
MAX_ZIP_BYTES = 1 << 31
ZIP_SUFFIXES = (".keras", ".zip")
# Members that describe a model, not its trained values: any run of the same
# architecture has them, so they tie nothing to one run.
DESCRIPTIVE_MEMBERS = (".json",)
MAX_PARENT_DEPTH = 20

EXACT = "exact"        # the whole file or directory is a logged artifact
EMBEDDED = "embedded"  # the export names the run that wrote it
MEMBER = "member"      # a file inside it is (part of) a logged artifact
STRENGTH = {EXACT: 0, EMBEDDED: 1, MEMBER: 2}


@dataclass
class Evidence:
    """What was found on disk: digests to look up and embedded run ids."""

    digest: str | None = None                              # of PATH itself, if a file
    trees: dict[str, str] = field(default_factory=dict)    # tree digest -> relative dir
    files: dict[str, str] = field(default_factory=dict)    # file digest -> relative path
    embedded: list[dict] = field(default_factory=list)     # parsed mlrepro_run.json files
    members: dict[tuple, list] = field(default_factory=dict)  # (crc, size) -> [(sha, where)]


def _read_embedded(data: bytes, where: str) -> dict | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(value, dict) and isinstance(value.get("run_id"), str):
        return dict(value, found_in=where)
    return None


def _scan_dir(root: str, ev: Evidence, prefix: str = "") -> None:
    per_dir: dict[str, dict[str, str]] = {}
    count = 0
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(base, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            count += 1
            if count > MAX_MEMBER_FILES:
                return
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            digest = file_digest(full)
            ev.files.setdefault(digest, prefix + rel)
            parts = rel.split("/")
            for depth in range(len(parts)):
                d = "/".join(parts[:depth])
                per_dir.setdefault(d, {})["/".join(parts[depth:])] = digest
            if name == EMBEDDED_RUN_FILE:
                with open(full, "rb") as fh:
                    found = _read_embedded(fh.read(), prefix + rel)
                if found:
                    ev.embedded.append(found)
            elif name.endswith(ZIP_SUFFIXES) and zipfile.is_zipfile(full):
                _scan_zip(full, ev, prefix + rel)
    for d, files in per_dir.items():
        where = prefix + d if d else (prefix + "/" if prefix else ".")  # "model.tar.gz:/"
        ev.trees.setdefault(tree_digest(files), where)


def _scan_zip(path: str, ev: Evidence, where: str | None = None) -> None:
    """The embedded run file of a zip, and the digests of its members that hold values."""
    where = where or os.path.basename(path)
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir() or info.file_size > MAX_ZIP_BYTES:
                    continue
                if os.path.basename(info.filename) == EMBEDDED_RUN_FILE:
                    found = _read_embedded(zf.read(info), f"{where}:{info.filename}")
                    if found:
                        ev.embedded.append(found)
                elif not info.filename.endswith(DESCRIPTIVE_MEMBERS):
                    digest = hashlib.sha256(zf.read(info)).hexdigest()
                    ev.members.setdefault((info.CRC, info.file_size), []).append(
                        (digest, f"{where}:{info.filename}"))
    except (zipfile.BadZipFile, OSError, ValueError):
        pass


def zip_artifact_matches(store, name: str, digest: str | None, ev: Evidence) -> list[str]:
    """Members of a logged zip (a run's `model.keras`) that are byte-identical to ones found.

    Only the zip's central directory is read unless a member's CRC and size match.
    """
    if not ev.members or not digest or not name.endswith(ZIP_SUFFIXES):
        return []
    try:
        local = store.local_object_path(digest)
        source = local if local else io.BytesIO(store.read_object(digest))
        with zipfile.ZipFile(source) as zf:
            out = []
            for info in zf.infolist():
                found = ev.members.get((info.CRC, info.file_size))
                if not found or info.is_dir():
                    continue
                sha = hashlib.sha256(zf.read(info)).hexdigest()
                out += [f"{where!r} is member {info.filename!r} of artifact {name!r}"
                        for d, where in found if d == sha]
            return out
    except (zipfile.BadZipFile, OSError, ValueError, MlreproError):
        return []


def _safe_members(tf: tarfile.TarFile):
    for member in tf.getmembers():
        name = member.name.replace("\\", "/")
        if name.startswith("/") or ".." in name.split("/"):
            continue
        if member.isfile() or member.isdir():
            yield member


def gather_evidence(path: str) -> Evidence:
    """Digests and embedded run ids of a file, directory, `.keras` zip or `model.tar.gz`."""
    ev = Evidence()
    if os.path.isdir(path):
        _scan_dir(path, ev)
        return ev
    ev.digest = file_digest(path)
    ev.files[ev.digest] = os.path.basename(path)
    if zipfile.is_zipfile(path):
        _scan_zip(path, ev)
    elif tarfile.is_tarfile(path):
        with tempfile.TemporaryDirectory(prefix="mlrepro-trace-") as tmp:
            with tarfile.open(path) as tf:
                members = list(_safe_members(tf))
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # Python without extraction filters: members were vetted above
                    tf.extractall(tmp, members=members)
            _scan_dir(tmp, ev, prefix=os.path.basename(path) + ":")
    return ev


@dataclass
class Match:
    """One way a run is tied to the traced path."""

    run_id: str
    how: str
    detail: str


def find_matches(manifests: list[dict], ev: Evidence, store=None) -> list[Match]:
    """Every artifact of every manifest that the evidence points at.

    With `store`, logged zips are also opened to match the members found.
    """
    out = []
    for m in manifests:
        for name, art in sorted((m.get("artifacts") or {}).items()):
            if store is not None and art.get("kind") != "dir" and \
                    art.get("digest") != ev.digest and art.get("digest") not in ev.files:
                for detail in zip_artifact_matches(store, name, art.get("digest"), ev)[:1]:
                    out.append(Match(m["id"], MEMBER, detail))
            if art.get("kind") == "dir":
                tree = art.get("tree")
                if tree in ev.trees:
                    where = ev.trees[tree]
                    out.append(Match(m["id"], EXACT, f"directory {where!r} is artifact {name!r}"
                                     if where != "." else f"the directory is artifact {name!r}"))
                    continue
                files = sorted((art.get("files") or {}).items())
                exact = [rel for rel, f in files if (f or {}).get("digest") == ev.digest]
                if exact:
                    out.append(Match(m["id"], EXACT, f"the file is {exact[0]!r} of artifact "
                                                     f"{name!r}"))
                    continue
                here = [rel for rel, f in files if (f or {}).get("digest") in ev.files]
                if here:
                    out.append(Match(m["id"], MEMBER, f"{len(here)} of the {len(files)} files "
                                                      f"of artifact {name!r} are here: "
                                                      f"{', '.join(here[:4])}"
                                                      + (" ..." if len(here) > 4 else "")))
            else:
                digest = art.get("digest")
                if digest and digest == ev.digest:
                    out.append(Match(m["id"], EXACT, f"the file is artifact {name!r}"))
                elif digest and digest in ev.files:
                    out.append(Match(m["id"], MEMBER, f"{ev.files[digest]!r} is artifact "
                                                      f"{name!r}"))
    return out


def _all_manifests(store) -> list[dict]:
    out = []
    for run_id in store.run_ids():
        try:
            out.append(store.read_manifest(run_id))
        except MlreproError:
            continue
    out.sort(key=lambda m: m.get("start_time") or 0)
    return out


def trace_path(store, path: str) -> dict:
    """Runs that produced `path`, how each is tied to it, and their lineage."""
    if not os.path.exists(path):
        raise MlreproError(f"{path} does not exist: give the path of a model file, export "
                           "directory or model.tar.gz")
    ev = gather_evidence(path)
    manifests = _all_manifests(store)
    by_id = {m["id"]: m for m in manifests}
    matches = find_matches(manifests, ev, store)
    unresolved = []
    for emb in ev.embedded:
        run_id = emb["run_id"]
        if run_id not in by_id:
            other = _embedded_store_manifest(emb, store)
            if other is not None:
                by_id[run_id] = other
                manifests.append(other)
        if run_id in by_id:
            where = "" if emb.get("in_other_store") is None else \
                f" (found in its own store {emb['in_other_store']})"
            matches.append(Match(run_id, EMBEDDED, f"{emb['found_in']} names run {run_id}"
                                                   f"{where}"))
        else:
            unresolved.append(emb)
    runs: dict[str, list[Match]] = {}
    for match in matches:
        runs.setdefault(match.run_id, []).append(match)
    order = sorted(runs, key=lambda r: (min(STRENGTH[x.how] for x in runs[r]),
                                        by_id[r].get("start_time") or 0))
    return {
        "path": os.path.abspath(path),
        "digest": ev.digest,
        "store": store.uri,
        "runs": [{"id": r, "matches": [x.__dict__ for x in runs[r]],
                  "lineage": lineage(by_id[r], by_id, manifests)} for r in order],
        "unresolved_embedded": unresolved,
    }


def _embedded_store_manifest(emb: dict, store) -> dict | None:
    """The run an export names, read from the local store the export says it was written to."""
    uri = emb.get("store")
    if not isinstance(uri, str) or "://" in uri or not os.path.isdir(uri):
        return None
    if os.path.realpath(uri) == os.path.realpath(str(store.uri)):
        return None
    from mlrepro.store import open_store

    try:
        other = open_store(uri)
        if emb["run_id"] not in other.run_ids():
            return None
        manifest = other.read_manifest(emb["run_id"])
    except (MlreproError, OSError):
        return None
    emb["in_other_store"] = other.uri
    return manifest


def lineage(m: dict, by_id: dict, manifests: list[dict]) -> dict:
    """Code, data, params and parents of a run; also the runs that descend from it."""
    code = m.get("code") or {}
    parents = []
    node, seen = m, {m["id"]}
    while node.get("parent") and len(parents) < MAX_PARENT_DEPTH:
        parent = node["parent"]
        pid = parent.get("run")
        known = by_id.get(pid)
        parents.append({"kind": parent.get("kind"), "run": pid, "in_store": known is not None,
                        "name": (known or {}).get("name"), "status": (known or {}).get("status")})
        if known is None or pid in seen:
            break
        seen.add(pid)
        node = known
    children = [{"kind": (c.get("parent") or {}).get("kind"), "run": c["id"]}
                for c in manifests if (c.get("parent") or {}).get("run") == m["id"]]
    return {
        "project": m.get("project"), "name": m.get("name"), "status": m.get("status"),
        "start_time": m.get("start_time"), "fingerprint": m.get("fingerprint"),
        "code": {k: code.get(k) for k in ("commit", "branch", "dirty", "remote", "patch",
                                          "patch_size", "entry_point", "entry_point_object",
                                          "argv")},
        "data": {n: {k: (d or {}).get(k) for k in ("kind", "source", "digest", "size", "files")}
                 for n, d in sorted((m.get("data") or {}).items())},
        "params": m.get("params") or {},
        "seed": m.get("seed"),
        "deterministic": bool((m.get("determinism") or {}).get("deterministic")),
        "parents": parents,
        "children": children,
    }


def trace_text(result: dict) -> str:
    out = [f"{result['path']}" + (f"  sha256 {result['digest'][:16]}" if result["digest"]
                                   else "  (directory)")]
    for i, run in enumerate(result["runs"]):
        lin = run["lineage"]
        title = "produced by" if i == 0 else "also tied to"
        out.append(f"{title} run {run['id']}  (project {lin['project']}, {lin['status']}, "
                   f"started {when(lin['start_time'])})")
        for match in run["matches"]:
            out.append(f"  matched {match['how']}: {match['detail']}")
        code = lin["code"]
        if code.get("commit"):
            patch = (f", uncommitted patch {code['patch'][:12]} ({code.get('patch_size')} bytes)"
                     if code.get("patch") else "")
            out.append(f"  code     commit {code['commit'][:12]} on {code.get('branch')}{patch}")
        else:
            out.append("  code     not from a git checkout" + (
                f"; stored entry point {code['entry_point_object'][:12]}"
                if code.get("entry_point_object") else ""))
        if code.get("argv"):
            out.append(f"  command  {' '.join(code['argv'])}")
        for name, d in lin["data"].items():
            out.append(f"  data     {name}: {d.get('kind')} {d.get('source')} digest "
                       f"{(d.get('digest') or '-')[:12]}")
        if lin["params"]:
            out.append("  params   " + ", ".join(f"{k}={short(v, 30)}"
                                                 for k, v in sorted(lin["params"].items())))
        out.append(f"  seed     {lin['seed']}" + (" (deterministic)" if lin["deterministic"]
                                                   else ""))
        for p in lin["parents"]:
            out.append(f"  parent   {p['kind']} {p['run']}" + ("" if p["in_store"]
                                                               else " (not in this store)"))
        for c in lin["children"]:
            out.append(f"  child    {c['kind']} {c['run']}")
    for emb in result["unresolved_embedded"]:
        out.append(f"embedded run id {emb['run_id']} ({emb['found_in']}, store "
                   f"{emb.get('store')}) is not in {result['store']}: pull it or pass --store")
    return "\n".join(out)
