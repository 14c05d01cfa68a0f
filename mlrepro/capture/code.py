"""Code capture: git commit, branch, dirty flag, the uncommitted patch, the entry point.

The patch holds staged and unstaged changes against HEAD plus untracked source
files (not ignored, at most `MAX_UNTRACKED_BYTES` each), so `git apply` on the
commit rebuilds the exact tree the run used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

from mlrepro.capture.redact import redact_argv, redact_url

MAX_UNTRACKED_BYTES = 1 << 20
MAX_UNTRACKED_FILES = 200
GIT_TIMEOUT = 10


@dataclass
class CodeSnapshot:
    """What the code of a run was. `patch` and `entry_source` are bytes to store as objects."""

    info: dict = field(default_factory=dict)
    patch: bytes | None = None
    entry_source: bytes | None = None


def _git(args: list[str], cwd: str, *, binary: bool = False, ok_codes=(0,)):
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    if proc.returncode not in ok_codes:
        raise RuntimeError(proc.stderr.decode("utf-8", "replace").strip())
    return proc.stdout if binary else proc.stdout.decode("utf-8", "replace").strip()


def entry_point(argv: list[str] | None = None) -> str | None:
    """The script that is running (`python train.py`), if it is a file."""
    candidates = [argv[0]] if argv else []
    candidates.append(getattr(sys.modules.get("__main__"), "__file__", None))
    for path in candidates:
        if path and os.path.isfile(path):
            return os.path.abspath(path)
    return None


def capture_code(argv: list[str] | None = None, cwd: str | None = None) -> CodeSnapshot:
    """Capture code state around the entry point (or cwd); never raises."""
    argv = list(sys.argv if argv is None else argv)
    snap = CodeSnapshot()
    entry = entry_point(argv)
    where = os.path.dirname(entry) if entry else (cwd or os.getcwd())
    info: dict = {"argv": redact_argv(argv), "cwd": os.getcwd(),
                  "python": os.path.basename(sys.executable or "python")}
    if entry:
        try:
            with open(entry, "rb") as fh:
                snap.entry_source = fh.read()
        except OSError:
            pass
    try:
        root = _git(["rev-parse", "--show-toplevel"], where)
    except Exception:  # noqa: BLE001 - not a git checkout, or no git
        info["git"] = None
        if entry:
            info["entry_point"] = os.path.basename(entry)
        snap.info = info
        return snap
    try:
        info["entry_point"] = os.path.relpath(entry, root) if entry else None
        info["cwd_in_repo"] = os.path.relpath(os.getcwd(), root)
        try:
            info["commit"] = _git(["rev-parse", "HEAD"], root)
        except RuntimeError:
            info["commit"] = None  # a repository with no commit yet
        try:
            info["branch"] = _git(["rev-parse", "--abbrev-ref", "HEAD"], root)
        except RuntimeError:
            info["branch"] = None
        try:
            remote = _git(["config", "--get", "remote.origin.url"], root, ok_codes=(0, 1))
            info["remote"] = redact_url(remote) if remote else None
        except RuntimeError:
            info["remote"] = None
        patch = b""
        if info["commit"]:
            patch = _git(["diff", "--binary", "HEAD"], root, binary=True)
        untracked = [p for p in _git(["ls-files", "--others", "--exclude-standard", "-z"],
                                     root, binary=True).decode("utf-8", "replace").split("\0")
                     if p]
        skipped = []
        for rel in untracked[:MAX_UNTRACKED_FILES]:
            full = os.path.join(root, rel)
            try:
                if os.path.getsize(full) > MAX_UNTRACKED_BYTES:
                    skipped.append(rel)
                    continue
            except OSError:
                continue
            patch += _git(["diff", "--binary", "--no-index", "--", "/dev/null", rel], root,
                          binary=True, ok_codes=(0, 1))
        skipped += untracked[MAX_UNTRACKED_FILES:]
        info["dirty"] = bool(patch) or bool(skipped)
        info["untracked_files"] = len(untracked)
        if skipped:
            info["untracked_not_captured"] = skipped[:50]
        snap.patch = patch or None
        info["repo_name"] = os.path.basename(root)
    except Exception as exc:  # noqa: BLE001
        info["error"] = f"code capture incomplete: {exc}"
    snap.info = info
    return snap
