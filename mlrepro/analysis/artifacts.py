"""Reading two runs' artifacts back from a store to compare what they hold, not how they were saved.

Only files whose bytes differ are read, and only kinds that can differ without
their content differing: JSON and zip-like files (see `mlrepro.compare.artifacts`)
and SavedModels. TensorFlow writes a SavedModel's variables and graph in an order
that changes from one process to the next (measured with TF 2.21 / Keras 3.15: a
model with a Dropout layer exported twice from identical weights gave different
`saved_model.pb` and `variables.*` bytes, the same values under other indices), so
a SavedModel is compared by the values of its variables, read with TensorFlow
(imported only then). Without TensorFlow it stays "differs".
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile

from mlrepro.compare.artifacts import ZIP_LIKE, compare_artifacts, member_digest, \
    zip_member_digests
from mlrepro.errors import MlreproError

NORMALISABLE = (".json",) + ZIP_LIKE   # files that can hold save metadata
MAX_CONTENT_BYTES = 1 << 30            # larger files are compared by their bytes only
SAVED_MODEL_GRAPH = "saved_model.pb"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
SAVED_MODEL_NOTE = ("same variable values; TensorFlow wrote the graph and variables in "
                    "another order")


def _read(store, digest: str | None, size: int | None) -> bytes | None:
    if not digest or (size is not None and size > MAX_CONTENT_BYTES):
        return None
    try:
        return store.read_object(digest)
    except (MlreproError, OSError):
        return None


def _file_members(name: str, data: bytes) -> tuple[dict, dict]:
    """Content and byte digests of one file: of its members if it is a zip (`.keras`)."""
    if name.endswith(ZIP_LIKE):
        content = zip_member_digests(data)
        if content is not None:
            return content, zip_member_digests(data, raw=True)
    return {name: member_digest(name, data)}, {name: hashlib.sha256(data).hexdigest()}


def saved_model_values(store, files: dict, prefix: str) -> str | None:
    """One digest over the values of a SavedModel's variables, whatever their order."""
    wanted = {rel: f for rel, f in files.items() if rel.startswith(prefix + "variables/")}
    if not wanted or sum(int(f.get("size") or 0) for f in wanted.values()) > MAX_CONTENT_BYTES:
        return None
    try:
        import tensorflow as tf
    except ImportError:
        return None
    with tempfile.TemporaryDirectory(prefix="mlrepro-savedmodel-") as tmp:
        for rel, f in wanted.items():
            data = _read(store, f.get("digest"), f.get("size"))
            if data is None:
                return None
            path = os.path.join(tmp, rel[len(prefix):])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
        try:
            reader = tf.train.load_checkpoint(os.path.join(tmp, "variables", "variables"))
            digests = []
            for key in reader.get_variable_to_shape_map():
                if key == OBJECT_GRAPH_KEY:
                    continue
                value = reader.get_tensor(key)
                digests.append(hashlib.sha256(f"{value.dtype}|{value.shape}|".encode()
                                              + value.tobytes()).hexdigest())
        except Exception:  # noqa: BLE001 - not a readable SavedModel: compare bytes
            return None
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def _saved_model_prefixes(files_a: dict, files_b: dict) -> list[str]:
    return sorted(rel[: -len(SAVED_MODEL_GRAPH)] for rel in set(files_a) & set(files_b)
                  if posixpath.basename(rel) == SAVED_MODEL_GRAPH)


def compare_run_artifacts(store, old: dict, new: dict) -> list[dict]:
    """Every artifact of the old run against the new run's artifact of the same name."""
    a, b = old.get("artifacts") or {}, new.get("artifacts") or {}
    content, raw, notes = {}, {}, {}
    for name, ea in a.items():
        eb = b.get(name)
        if not eb or ea.get("kind") != eb.get("kind"):
            continue
        if ea.get("kind") != "dir":
            if ea.get("digest") == eb.get("digest") or not name.endswith(NORMALISABLE):
                continue
            da = _read(store, ea.get("digest"), ea.get("size"))
            db = _read(store, eb.get("digest"), eb.get("size"))
            if da is not None and db is not None:
                (ca, ra), (cb, rb) = _file_members(name, da), _file_members(name, db)
                content[name], raw[name] = (ca, cb), (ra, rb)
            continue
        if ea.get("tree") == eb.get("tree"):
            continue
        fa, fb = ea.get("files") or {}, eb.get("files") or {}
        ca = {rel: f.get("digest") for rel, f in fa.items()}
        cb = {rel: f.get("digest") for rel, f in fb.items()}
        for rel in set(fa) & set(fb):
            if ca[rel] != cb[rel] and rel.endswith(NORMALISABLE):
                da = _read(store, ca[rel], fa[rel].get("size"))
                db = _read(store, cb[rel], fb[rel].get("size"))
                if da is not None and db is not None:
                    ca[rel], cb[rel] = member_digest(rel, da), member_digest(rel, db)
        for prefix in _saved_model_prefixes(fa, fb):
            graph = prefix + SAVED_MODEL_GRAPH
            parts = [r for r in set(fa) & set(fb)
                     if r == graph or r.startswith(prefix + "variables/")]
            if all(ca[r] == cb[r] for r in parts):
                continue
            va = saved_model_values(store, fa, prefix)
            if va is not None and va == saved_model_values(store, fb, prefix):
                for r in parts:
                    ca[r] = cb[r] = "values:" + va
                notes[name] = SAVED_MODEL_NOTE
        content[name] = (ca, cb)
    out = compare_artifacts(a, b, content, raw)
    for entry in out:
        if entry["name"] in notes and entry["status"] != "differs":
            entry["note"] = notes[entry["name"]]
    return out
