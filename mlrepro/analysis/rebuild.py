"""Rebuilding a run's code from its record: the commit plus the stored patch, or the stored modules.

Outside git (or when the commit is gone), every user module the run imported is
written back at its recorded path, so the entry point's own imports resolve.

Nothing here writes to the user's repository: code is checked out into a scratch
`git clone --shared`, which reads the repository's objects and writes only its own.
Used by `mlrepro reproduce` (to re-run) and `mlrepro diff` (to show source changes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field

from mlrepro.errors import MlreproError

GIT_TIMEOUT = 120


def git(args: list[str], cwd: str, *, binary: bool = False, ok=(0,), env: dict | None = None,
        data: bytes | None = None):
    """Run git quietly; raise MlreproError with git's own message when it fails."""
    full_env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C",
                "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, input=data,
                              timeout=GIT_TIMEOUT, env=full_env)
    except FileNotFoundError:
        raise MlreproError("git is not installed: install git to rebuild recorded code")
    except subprocess.TimeoutExpired:
        raise MlreproError(f"`git {' '.join(args[:2])}` in {cwd} took over {GIT_TIMEOUT}s: "
                           "check the repository")
    if proc.returncode not in ok:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MlreproError(f"`git {' '.join(args[:2])}` failed in {cwd}: "
                           f"{message[-1] if message else proc.returncode}")
    return proc.stdout if binary else proc.stdout.decode("utf-8", "replace").strip()


def repo_root(path: str | None) -> str | None:
    """The top of the git checkout that holds `path`, if any."""
    if not path or not os.path.isdir(path):
        return None
    try:
        return git(["rev-parse", "--show-toplevel"], path)
    except MlreproError:
        return None


def has_commit(root: str, commit: str) -> bool:
    try:
        git(["cat-file", "-e", f"{commit}^{{commit}}"], root)
        return True
    except MlreproError:
        return False


def recorded_root(code: dict) -> str | None:
    """Where the run's repository was, from its recorded cwd (a hint: it may be gone)."""
    cwd, rel = code.get("cwd"), code.get("cwd_in_repo")
    if not cwd or rel is None:
        return None
    parts = [p for p in str(rel).replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    root = cwd
    for _ in parts:
        root = os.path.dirname(root)
    return root


def find_repo(commit: str, repo: str | None, code: dict) -> tuple[str | None, list[str]]:
    """The first repository holding `commit`: `repo`, the current one, then the recorded one."""
    looked = []
    for hint in ([repo] if repo else []) + [os.getcwd(), recorded_root(code)]:
        root = repo_root(hint)
        if root is None or root in looked:
            continue
        looked.append(root)
        if has_commit(root, commit):
            return root, looked
    return None, looked


def scratch_clone(root: str, dest: str) -> None:
    """A clone that borrows `root`'s objects (`--shared`) and checks nothing out."""
    git(["clone", "--quiet", "--shared", "--no-checkout", root, dest], os.path.dirname(dest))


def tree_of(clone: str, commit: str | None, patch: bytes | None) -> str:
    """The git tree of `commit` with `patch` applied, built in a throw-away index."""
    fd, index = tempfile.mkstemp(prefix="mlrepro-index-")
    os.close(fd)
    os.unlink(index)
    env = {"GIT_INDEX_FILE": index}
    try:
        git(["read-tree", commit] if commit else ["read-tree", "--empty"], clone, env=env)
        if patch:
            git(["apply", "--cached", "--binary", "--whitespace=nowarn", "-"], clone, env=env,
                data=patch)
        return git(["write-tree"], clone, env=env)
    finally:
        if os.path.exists(index):
            os.unlink(index)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Rebuilt:
    """Code rebuilt from a record, ready to run."""

    root: str
    entry: str
    cwd: str
    how: str
    notes: list[str] = field(default_factory=list)


def _read_object(store, digest: str, what: str) -> bytes:
    try:
        return store.read_object(digest)
    except MlreproError:
        raise
    except Exception as exc:  # noqa: BLE001 - a store's own error, named for the user
        raise MlreproError(f"the {what} object {digest[:12]} cannot be read from {store.uri} "
                           f"({exc}): pull the run again from its remote")


def rebuild_code(manifest: dict, store, dest: str, *, repo: str | None = None,
                 stored_source: bool = False) -> Rebuilt:
    """Rebuild the code a run used into the empty directory `dest`.

    Args:
        manifest: the run's manifest.
        store: the store holding the run's patch and entry-point objects.
        dest: a directory that does not exist yet.
        repo: a repository to look for the commit in first.
        stored_source: when the commit is nowhere to be found, rebuild from the stored
            entry-point source alone instead of refusing.
    """
    code = manifest.get("code") or {}
    run_id = manifest.get("id")
    entry_rel = code.get("entry_point")
    if not entry_rel:
        raise MlreproError(f"run {run_id} recorded no entry point (it was not started from a "
                           "script file), so there is nothing to re-run: run it by hand")
    commit, patch_digest = code.get("commit"), code.get("patch")
    patch = _read_object(store, patch_digest, "patch") if patch_digest else None
    notes: list[str] = []
    if commit:
        root, looked = find_repo(commit, repo, code)
        if root is not None:
            scratch_clone(root, dest)
            git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit],
                dest)
            how = f"commit {commit[:12]} from {root}"
            if patch:
                _apply(dest, patch, run_id)
                how += f" + uncommitted patch {patch_digest[:12]} ({len(patch)} bytes)"
        elif stored_source:
            notes.append(f"commit {commit[:12]} is in none of {', '.join(looked) or 'no repo'}; "
                         "rebuilt from the stored entry-point source alone")
            return _from_entry_source(code, store, dest, run_id, notes)
        else:
            where = ", ".join(looked) or "no git repository"
            raise MlreproError(f"commit {commit[:12]} of run {run_id} is not in {where}: run "
                               "from a clone that has it, pass --repo PATH, or pass "
                               "--stored-source to re-run the stored script alone")
    elif patch:
        os.makedirs(dest)
        _apply(dest, patch, run_id)
        how = f"uncommitted files of a repository without commits (patch {patch_digest[:12]})"
    else:
        return _from_entry_source(code, store, dest, run_id, notes)
    entry = os.path.join(dest, entry_rel)
    _check_entry(code, store, entry, notes)
    _restore_modules(code, store, dest, notes, only_different=True)
    if code.get("untracked_not_captured"):
        notes.append("untracked files too large to record are missing from the rebuilt tree: "
                     + ", ".join(code["untracked_not_captured"][:5]))
    return Rebuilt(root=dest, entry=entry, cwd=_cwd(dest, code), how=how, notes=notes)


def _apply(dest: str, patch: bytes, run_id) -> None:
    try:
        git(["apply", "--binary", "--whitespace=nowarn", "-"], dest, data=patch)
    except MlreproError as exc:
        raise MlreproError(f"the uncommitted patch of run {run_id} does not apply to its commit "
                           f"({exc}): the record is inconsistent; re-run the script by hand")


def _check_entry(code: dict, store, entry: str, notes: list[str]) -> None:
    """Make sure the entry point is byte-for-byte the recorded one."""
    digest = code.get("entry_point_object")
    if not digest:
        return
    try:
        with open(entry, "rb") as fh:
            ok = sha256(fh.read()) == digest
    except OSError:
        ok = False
    if ok:
        notes.append("entry point matches the recorded source")
        return
    source = _read_object(store, digest, "entry point")
    os.makedirs(os.path.dirname(entry), exist_ok=True)
    with open(entry, "wb") as fh:
        fh.write(source)
    notes.append("entry point restored from its stored source (the commit and patch did not "
                 "rebuild it exactly)")


def _cwd(dest: str, code: dict) -> str:
    rel = code.get("cwd_in_repo")
    if rel and ".." not in str(rel).split("/"):
        path = os.path.normpath(os.path.join(dest, rel))
        if os.path.isdir(path):
            return path
    return dest


def _safe_rel(rel: str) -> str | None:
    parts = [p for p in str(rel).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or str(rel).startswith("/"):
        return None
    return os.path.join(*parts)


def _restore_modules(code: dict, store, dest: str, notes: list[str], *,
                     only_different: bool) -> int:
    """Write each stored user module to its place under `dest`; returns how many were written.

    With `only_different`, a module the commit and patch already rebuilt byte for byte
    is left alone (in git, the stored modules only fill what git does not hold).
    """
    written = 0
    for rel, digest in sorted((code.get("modules") or {}).items()):
        safe = _safe_rel(rel)
        if safe is None:
            continue
        path = os.path.join(dest, safe)
        if only_different:
            try:
                with open(path, "rb") as fh:
                    if sha256(fh.read()) == digest:
                        continue
            except OSError:
                pass
        data = _read_object(store, digest, f"module {rel}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
        written += 1
    if written and only_different:
        notes.append(f"{written} imported module(s) restored from their stored source (the "
                     "commit and patch did not hold them as the run imported them)")
    return written


def _from_modules(code: dict, store, dest: str, notes: list[str]) -> Rebuilt:
    """The whole tree of user modules the run imported, each at its recorded path."""
    os.makedirs(dest)
    count = _restore_modules(code, store, dest, notes, only_different=False)
    entry = os.path.join(dest, _safe_rel(code.get("entry_point") or "") or "")
    _check_entry(code, store, entry, notes)
    notes.append(f"rebuilt from the {count} stored module(s) the run imported")
    if code.get("modules_outside_root"):
        notes.append("modules imported from outside the project root are not part of the "
                     "record: " + ", ".join(code["modules_outside_root"][:5]))
    cwd = dest
    rel = _safe_rel(code.get("cwd_in_root") or code.get("cwd_in_repo") or "")
    if rel and os.path.isdir(os.path.join(dest, rel)):
        cwd = os.path.join(dest, rel)
    return Rebuilt(root=dest, entry=entry, cwd=cwd,
                   how=f"stored sources of {count} module(s)", notes=notes)


def _from_entry_source(code: dict, store, dest: str, run_id, notes: list[str]) -> Rebuilt:
    if code.get("modules") and code.get("entry_point") and \
            _safe_rel(code["entry_point"]) in {_safe_rel(r) for r in code["modules"]}:
        return _from_modules(code, store, dest, notes)
    digest = code.get("entry_point_object")
    if not digest:
        raise MlreproError(f"run {run_id} has neither a commit nor a stored entry point: its "
                           "code cannot be rebuilt")
    source = _read_object(store, digest, "entry point")
    name = os.path.basename(str(code.get("entry_point")))
    os.makedirs(dest)
    entry = os.path.join(dest, name)
    with open(entry, "wb") as fh:
        fh.write(source)
    notes.append("only the entry point is stored: modules it imports from beside it are not "
                 "part of the record")
    return Rebuilt(root=dest, entry=entry, cwd=dest,
                   how=f"stored entry-point source {digest[:12]}", notes=notes)
