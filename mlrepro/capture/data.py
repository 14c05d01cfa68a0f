"""Data fingerprints: a digest per input, cheap to recompute when nothing changed.

File digests are cached by (path, size, mtime, inode) in a small SQLite file so a
second fingerprint of unchanged files costs a `stat` per file.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from mlrepro import env

_CHUNK = 4 << 20
MAX_RECORDED_PATHS = 100
INLINE_FILE_LIST = 100   # entries of a file list kept in the manifest; the rest in an object
_lock = threading.Lock()


def cache_path(environ=None) -> str:
    base = env.CACHE.get(environ) or os.path.join(os.path.expanduser("~"), ".cache", "mlrepro")
    return os.path.join(base, "file-digests.sqlite")


def _open_cache(path: str):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, "
                     "mtime_ns INTEGER, inode INTEGER, digest TEXT)")
        return conn
    except (sqlite3.Error, OSError):
        return None


def file_digest(path: str) -> str:
    """sha256 of a file, read in large chunks (hashlib releases the GIL on them)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files named, and every file under directories named, sorted."""
    out = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                out.extend(os.path.join(root, f) for f in sorted(files))
        elif os.path.exists(p):
            out.append(p)
    return sorted(set(out))


def fingerprint_files(paths: Iterable[str], *, source: str | None = None, cache: bool = True,
                      workers: int = 2) -> dict:
    """One digest over the files' names (relative to their common root) and contents."""
    paths = [os.fspath(p) for p in paths]
    files = expand_paths(paths)
    if not files:
        return {"kind": "files", "source": source, "files": 0, "size": 0, "digest": None,
                "error": "no files found"}
    conn = _open_cache(cache_path()) if cache else None
    stats = [os.stat(f) for f in files]
    digests: dict[str, str] = {}
    todo = []
    for f, st in zip(files, stats):
        real = os.path.realpath(f)
        hit = None
        if conn is not None:
            try:
                hit = conn.execute("SELECT digest FROM digests WHERE path=? AND size=? AND "
                                   "mtime_ns=? AND inode=?",
                                   (real, st.st_size, st.st_mtime_ns, st.st_ino)).fetchone()
            except sqlite3.Error:
                hit = None
        if hit:
            digests[f] = hit[0]
        else:
            todo.append((f, real, st))
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for (f, real, st), d in zip(todo, pool.map(lambda t: file_digest(t[0]), todo)):
                digests[f] = d
        if conn is not None:
            try:
                conn.executemany("INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?)",
                                 [(real, st.st_size, st.st_mtime_ns, st.st_ino, digests[f])
                                  for f, real, st in todo])
            except sqlite3.Error:
                pass
    if conn is not None:
        conn.close()
    root = os.path.commonpath([os.path.abspath(f) for f in files])
    if len(files) == 1:
        root = os.path.dirname(os.path.abspath(files[0]))
    h = hashlib.sha256()
    listing = []
    for f, st in zip(files, stats):
        rel = os.path.relpath(os.path.abspath(f), root).replace(os.sep, "/")
        h.update(f"{rel}\0{st.st_size}\0{digests[f]}\n".encode("utf-8"))
        listing.append({"path": rel, "size": st.st_size, "sha256": digests[f]})
    # Every file is listed (a run moves a long list into an object of its own, see
    # `Run.log_data`), so a diff can name the one file of thousands that changed.
    return {"kind": "files", "source": source or root, "root": root, "files": len(files),
            "size": sum(st.st_size for st in stats), "digest": h.hexdigest(),
            "file_list": listing, "cached": len(files) - len(todo),
            # The inputs as given (when few), so `mlrepro reproduce` can fingerprint them again.
            "paths": [os.path.abspath(p) for p in paths]
            if len(paths) <= MAX_RECORDED_PATHS else None}


def fingerprint_array(array, *, source: str = "numpy") -> dict:
    """Digest of an array's dtype, shape and bytes (C order)."""
    import numpy as np

    arr = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{arr.shape}\n".encode())
    h.update(memoryview(arr).cast("B") if arr.size else b"")
    return {"kind": "array", "source": source, "dtype": arr.dtype.str,
            "shape": list(arr.shape), "size": int(arr.nbytes), "digest": h.hexdigest()}


def combine(parts: dict[str, dict], *, source: str) -> dict:
    """One fingerprint over several named parts (e.g. x and y of a NumPy input)."""
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(f"{name}={parts[name].get('digest')}\n".encode())
    return {"kind": "composite", "source": source, "parts": parts,
            "size": sum(int(p.get("size") or 0) for p in parts.values()),
            "digest": h.hexdigest()}
