"""Small durable-file primitives shared by the stores and the spool.

Every file is created with mode 0666 (0444 for immutable objects) and the process
umask decides the rest, like `open()` would: with umask 002 a team shares one store
directory; with umask 022 others can read it. (`tempfile.mkstemp` would force 0600.)
"""

from __future__ import annotations

import json
import os
import secrets

from mlrepro.record import GITIGNORE_FILE, GITIGNORE_TEXT, canonical_json

FILE_MODE = 0o666    # before the umask: files appended to or rewritten
OBJECT_MODE = 0o444  # before the umask: content-addressed objects never change


def create_temp(directory: str, prefix: str = ".tmp-", mode: int = FILE_MODE) -> tuple[int, str]:
    """A new file in `directory` opened for writing, its mode `mode` less the umask."""
    while True:
        path = os.path.join(directory, prefix + secrets.token_hex(6))
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), path
        except FileExistsError:
            continue


def atomic_write_bytes(path: str, data: bytes, *, fsync: bool = True) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it: never a torn file."""
    directory = os.path.dirname(path) or "."
    fd, tmp = create_temp(directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def make_own_dir(path: str) -> None:
    """Create a directory for mlrepro's own files, with a `.gitignore` of `*` if it is new.

    Like Python's venv: a store or checkpoint directory created inside a user's git
    checkout stays out of `git status`, so it is never captured as the run's code.
    A directory that already exists is left as it is (it may be the user's own).
    """
    if os.path.isdir(path):
        return
    os.makedirs(path, exist_ok=True)
    try:
        with open(os.path.join(path, GITIGNORE_FILE), "x", encoding="utf-8") as fh:
            fh.write(GITIGNORE_TEXT)
    except OSError:
        pass  # created by a concurrent process, or not writable: git status shows it


def atomic_write_json(path: str, value, *, fsync: bool = True) -> None:
    """JSON with sorted keys, indented for people, written atomically."""
    text = json.dumps(value, sort_keys=True, indent=1, default=str, allow_nan=True)
    atomic_write_bytes(path, text.encode("utf-8") + b"\n", fsync=fsync)


def append_bytes(path: str, data: bytes) -> None:
    """Append all of `data` or nothing: a failed write (disk full) is cut back off.

    Files appended to here have one writer each (the run's writer thread), so
    truncating back to the size before the write cannot hurt anyone else's data.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        start = os.fstat(fd).st_size
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except BaseException:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def digest_key(value) -> str:
    """sha256 of the canonical JSON of a value."""
    import hashlib

    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
