"""Code capture: git commit, branch, dirty flag, the uncommitted patch, the entry point.

The patch holds staged and unstaged changes against HEAD plus untracked source
files (not ignored, at most `MAX_UNTRACKED_BYTES` each), so `git apply` on the
commit rebuilds the exact tree the run used. Directories mlrepro writes into (a
store, a checkpoint directory) are never part of it, `.gitignore` or not. Every
user module the run imported is captured too (`mlrepro.capture.modules`), in git
and outside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

from mlrepro.capture.modules import Modules, capture_modules
from mlrepro.capture.redact import redact_argv, redact_url
from mlrepro.record import EMBEDDED_RUN_FILE, INDEX_FILE, OBJECTS_DIR, RUNS_DIR

MAX_UNTRACKED_BYTES = 1 << 20
MAX_UNTRACKED_FILES = 200
GIT_TIMEOUT = 10


@dataclass
class CodeSnapshot:
    """What the code of a run was. `patch` and `entry_source` are bytes to store as objects."""

    info: dict = field(default_factory=dict)
    patch: bytes | None = None
    entry_source: bytes | None = None
    modules: Modules | None = None


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


def is_mlrepro_dir(path: str) -> bool:
    """A store (`index.sqlite`, or `runs/` beside `objects/`) or a checkpoint dir mlrepro names."""
    if os.path.exists(os.path.join(path, INDEX_FILE)):
        return True
    if os.path.isdir(os.path.join(path, RUNS_DIR)) and os.path.isdir(os.path.join(path, OBJECTS_DIR)):
        return True
    return os.path.isfile(os.path.join(path, EMBEDDED_RUN_FILE))


def _not_mlrepro(root: str, paths: list[str], exclude_dirs) -> tuple[list[str], list[str]]:
    """(paths outside mlrepro's own directories, the directories left out)."""
    excluded = [os.path.realpath(d) for d in exclude_dirs if d]
    verdict: dict[str, bool] = {}
    left_out: set[str] = set()
    keep = []
    for rel in paths:
        parts = rel.split("/")[:-1]
        owner = None
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in verdict:
                full = os.path.realpath(os.path.join(root, d))
                verdict[d] = full in excluded or is_mlrepro_dir(full)
            if verdict[d]:
                owner = d
                break
        if owner is None:
            keep.append(rel)
        else:
            left_out.add(owner)
    return keep, sorted(left_out)


def capture_code(argv: list[str] | None = None, cwd: str | None = None, *,
                 exclude_dirs=(), modules: bool = True) -> CodeSnapshot:
    """Capture code state around the entry point (or cwd); never raises.

    Args:
        exclude_dirs: directories never captured (the run's own store).
        modules: also read every user module imported so far.
    """
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
        if modules:
            _add_modules(snap, info, entry, None, exclude_dirs)
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
        untracked, own_dirs = _not_mlrepro(root, untracked, exclude_dirs)
        if own_dirs:
            info["mlrepro_dirs_not_captured"] = own_dirs[:50]
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
        if modules:
            _add_modules(snap, info, entry, root, exclude_dirs)
    except Exception as exc:  # noqa: BLE001
        info["error"] = f"code capture incomplete: {exc}"
    snap.info = info
    return snap


def _add_modules(snap: CodeSnapshot, info: dict, entry: str | None, git_root: str | None,
                 exclude_dirs) -> None:
    """The user modules imported so far; outside git the entry point is named from their root."""
    try:
        found = capture_modules(entry, git_root=git_root, exclude_dirs=exclude_dirs)
    except Exception as exc:  # noqa: BLE001 - the rest of the code record stands
        info["modules_error"] = f"{type(exc).__name__}: {exc}"[:300]
        return
    snap.modules = found
    info.update(module_fields(found))
    if git_root is None:
        if entry:
            info["entry_point"] = os.path.relpath(os.path.realpath(entry), found.root) \
                .replace(os.sep, "/")
        cwd = os.path.realpath(os.getcwd())
        if cwd == found.root or cwd.startswith(found.root + os.sep):
            info["cwd_in_root"] = os.path.relpath(cwd, found.root).replace(os.sep, "/")


def module_fields(found: Modules) -> dict:
    """What the `code` section says about the modules (their objects are stored apart)."""
    out: dict = {"modules": found.listing(),
                 "modules_size": sum(len(b) for b in found.files.values())}
    if found.outside:
        out["modules_outside_root"] = list(found.outside)
    if found.too_large:
        out["modules_not_captured"] = found.too_large[:50]
    return out
