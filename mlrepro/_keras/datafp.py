"""Fingerprints of the inputs a `fit` call trains and validates on.

- NumPy (and other array) inputs: a digest of the contents, part by part (x, y,
  sample weights).
- `tf.data` pipelines: element spec and cardinality, plus the digest of the files
  the pipeline reads where its graph names them (cached by size, mtime and inode,
  so a second fingerprint of unchanged files is a `stat` per file); else, when
  reading is stable and side-effect free, a digest of the first `DIGEST_BATCHES`
  batches; else only the structure. `method` says which one was used.
- Keras `PyDataset`/`Sequence`: a digest of its first batches (random access).
- Python generators: not read (that would consume them); recorded as such.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from mlrepro._keras import pipeline
from mlrepro.capture.data import combine, fingerprint_array, fingerprint_files

DIGEST_BATCHES = 4
METHOD_CONTENT = "content"
METHOD_FILES = "files"
METHOD_FIRST_BATCHES = "first_batches"
METHOD_STRUCTURE = "structure"
METHOD_NONE = "none"


def fingerprint(x: Any, y: Any = None, sample_weight: Any = None, *, role: str,
                pipe: "pipeline.Pipeline | None" = None) -> dict:
    """The fingerprint of one input (`role` is `train` or `validation`); never raises."""
    started = time.perf_counter()
    try:
        if pipeline.is_dataset(x):
            out = _dataset(x, pipe if pipe is not None else pipeline.analyze(x))
        elif is_keras_sequence(x):
            out = _sequence(x)
        elif is_arrayish(x):
            out = _arrays({"x": x, "y": y, "sample_weight": sample_weight})
        elif x is None:
            out = {"kind": "none", "method": METHOD_NONE, "digest": None}
        else:
            out = {"kind": "python", "type": type(x).__qualname__, "method": METHOD_NONE,
                   "digest": None, "note": "a Python iterator or generator cannot be read "
                                           "without consuming it; not fingerprinted"}
    except Exception as exc:  # noqa: BLE001 - a fingerprint is descriptive, never fatal
        out = {"kind": "error", "method": METHOD_NONE, "digest": None,
               "error": f"{type(exc).__name__}: {exc}"[:300]}
    out["role"] = role
    out["seconds"] = round(time.perf_counter() - started, 4)
    return out


def is_arrayish(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return bool(value) and all(is_arrayish(v) or v is None for v in value)
    if isinstance(value, dict):
        return bool(value) and all(is_arrayish(v) for v in value.values())
    return hasattr(value, "shape") and hasattr(value, "dtype")


def is_keras_sequence(value: Any) -> bool:
    names = {k.__name__ for k in type(value).__mro__}
    return bool(names & {"PyDataset", "Sequence"}) and hasattr(value, "__getitem__")


def _flatten(name: str, value: Any, out: dict) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        for k in sorted(value):
            _flatten(f"{name}.{k}", value[k], out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(f"{name}.{i}", v, out)
    else:
        out[name] = value


def _arrays(named: dict) -> dict:
    import numpy as np

    leaves: dict = {}
    for name, value in named.items():
        _flatten(name, value, leaves)
    parts = {name: fingerprint_array(np.asarray(value), source=name)
             for name, value in leaves.items()}
    out = combine(parts, source="arrays")
    rows = [p["shape"][0] for p in parts.values() if p.get("shape")]
    out.update(kind="arrays", method=METHOD_CONTENT, examples=rows[0] if rows else None)
    return out


def _dataset(ds: Any, pipe: "pipeline.Pipeline") -> dict:
    spec = pipeline.element_spec(ds)
    card = pipeline.cardinality(ds)
    out: dict = {"kind": "tf.data", "source": "tf.data pipeline", "element_spec": spec,
                 "cardinality": card,
                 "ops": [op for op in pipe.ops if op.endswith("Dataset") or "Dataset" in op]}
    if pipe.error:
        out["graph_error"] = pipe.error
    h = hashlib.sha256(f"{spec}|{card}\n".encode())
    if pipe.files:
        files = fingerprint_files(pipe.files)
        out.update(method=METHOD_FILES, files=files.get("files"), size=files.get("size"),
                   source=files.get("root"), root=files.get("root"),
                   files_digest=files.get("digest"), file_list=files.get("file_list"),
                   cached_files=files.get("cached"))
        h.update(f"files={files.get('digest')}\n".encode())
        h.update(("ops=" + ",".join(out["ops"])).encode())
    elif pipe.replayable:
        batches, nbytes = _first_batches_digest(ds, h)
        out.update(method=METHOD_FIRST_BATCHES, batches=batches, size=nbytes,
                   note=f"digest of the first {batches} batches: the pipeline names no "
                        "files mlrepro can find")
    else:
        h.update(("ops=" + ",".join(out["ops"])).encode())
        why = pipe.why_not_replayable() or "its graph could not be read"
        out.update(method=METHOD_STRUCTURE,
                   note=f"structure only (element spec, cardinality, ops): it names no files "
                        f"and reading its first batches is not stable or would change "
                        f"training because {why}")
    out["digest"] = h.hexdigest()
    return out


def _first_batches_digest(ds: Any, h) -> tuple[int, int]:
    import numpy as np
    import tensorflow as tf

    n = 0
    size = 0
    for element in ds.take(DIGEST_BATCHES):
        for leaf in tf.nest.flatten(element):
            arr = np.asarray(leaf.numpy() if hasattr(leaf, "numpy") else leaf)
            h.update(f"{arr.dtype.str}|{arr.shape}\n".encode())
            data = arr.tobytes() if arr.dtype != object else repr(arr.tolist()).encode()
            h.update(data)
            size += len(data)
        n += 1
    return n, size


def _sequence(seq: Any) -> dict:
    import numpy as np

    h = hashlib.sha256()
    count = len(seq)
    h.update(f"{type(seq).__qualname__}|{count}\n".encode())
    n = 0
    for i in range(min(DIGEST_BATCHES, count)):
        batch = seq[i]
        leaves: dict = {}
        _flatten("b", batch, leaves)
        for name in sorted(leaves):
            arr = np.asarray(leaves[name])
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}\n".encode())
            h.update(arr.tobytes())
        n += 1
    return {"kind": "sequence", "type": type(seq).__qualname__, "batches_total": count,
            "method": METHOD_FIRST_BATCHES, "batches": n, "digest": h.hexdigest(),
            "note": f"digest of the first {n} batches of the {type(seq).__qualname__}"}
