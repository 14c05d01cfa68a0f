"""The re-run's working directory: the recorded one's files, copied, so relative paths work.

A script that reads `x.npy` or `PetImages/` relative to the directory it was
started in needs those files at the same relative paths when `mlrepro reproduce`
re-runs it. The re-run starts in the rebuilt code tree; every file of the
recorded working directory that the rebuilt tree does not hold is copied in
beside the code (the rebuilt code wins: it is the recorded code). A copy, not
links: whatever the re-run writes, appends to or deletes lands in the scratch
tree and never reaches the original's files.

Not copied: `.git`, the store the runs are recorded in, and directories that
name the reproduced run in their `mlrepro_run.json` (its checkpoint directory or
estimator model_dir: a re-run that found them would continue the original
instead of training afresh). Symbolic links are copied as links.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field

from mlrepro.errors import MlreproError
from mlrepro.record import EMBEDDED_RUN_FILE

DEFAULT_LIMIT_MB = 2048.0
SKIPPED_NAMES = (".git",)


@dataclass
class Populated:
    """What was copied into the re-run's working directory."""

    source: str | None
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def names_run(directory: str, run_id: str) -> bool:
    """Whether `directory/mlrepro_run.json` names `run_id` (a checkpoint dir or model_dir)."""
    try:
        with open(os.path.join(directory, EMBEDDED_RUN_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("run_id") == run_id


def state_dirs(manifest: dict) -> list[str]:
    """Directories the run kept training state in: its Keras checkpoint dir, its model_dir."""
    out = []
    for path in ((manifest.get("resume") or {}).get("checkpoint_dir"),
                 (manifest.get("estimator") or {}).get("model_dir")):
        if isinstance(path, str) and path and "://" not in path:
            out.append(path)
    return out


def redirect_state_dirs(manifest: dict, args: list[str], scratch: str,
                        notes: list[str]) -> list[str]:
    """Point the re-run away from the original's checkpoint dir and model_dir.

    An absolute path to one would be read and written by the re-run in place: it
    would continue the original's training instead of repeating it, and overwrite
    the original's files. When the recorded command names it, the argument is
    replaced by a fresh directory under `scratch`. One reached by a relative path
    inside the recorded working directory is left out of the copy; a Keras
    checkpoint dir the script names itself is redirected by the callback (it sees
    the run file of the reproduced run); an absolute estimator model_dir named
    inside the script is refused.

    Returns the arguments to run with.
    """
    run_id = manifest["id"]
    args = list(args)
    model_dir = (manifest.get("estimator") or {}).get("model_dir")
    for n, path in enumerate(state_dirs(manifest)):
        if not (os.path.isabs(path) and os.path.isdir(path) and names_run(path, run_id)):
            continue
        fresh = os.path.join(scratch, f"state-{n}", os.path.basename(os.path.normpath(path)))
        replaced = False
        for i, arg in enumerate(args):
            prefix, sep, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
            if value and os.path.isabs(value) and \
                    os.path.normpath(value) == os.path.normpath(path):
                args[i], replaced = prefix + sep + fresh, True
        if replaced:
            os.makedirs(os.path.dirname(fresh), exist_ok=True)
            notes.append(f"argument {path} holds run {run_id}'s checkpoints: the re-run trains "
                         f"in a fresh directory instead ({fresh})")
        elif path == model_dir:  # recorded absolute: the script names it so
            raise MlreproError(
                f"{path} still holds run {run_id}'s checkpoints ({EMBEDDED_RUN_FILE} names it), "
                "and the script trains there: the re-run would continue that run "
                "instead of repeating it and overwrite its files; move the directory aside "
                "(or make the script's path relative) and reproduce again")
    return args


def _plan(source: str, dest: str, run_id: str, skip_roots: list[str]):
    """(files to copy as (src, dst), links as (src, dst), total bytes, skipped notes)."""
    files, links, skipped, total = [], [], [], 0
    skip_real = [os.path.realpath(p) for p in [*skip_roots, dest] if p]
    for top, dirs, names in os.walk(source):
        rel_top = os.path.relpath(top, source)
        keep = []
        for d in sorted(dirs):
            full = os.path.join(top, d)
            rel = os.path.normpath(os.path.join(rel_top, d))
            if os.path.islink(full):
                links.append((full, os.path.join(dest, rel)))
            elif d in SKIPPED_NAMES or os.path.realpath(full) in skip_real:
                skipped.append(rel + "/")
            elif names_run(full, run_id):
                skipped.append(rel + "/ (run " + run_id + "'s own checkpoints)")
            else:
                keep.append(d)
        dirs[:] = keep
        for n in sorted(names):
            full = os.path.join(top, n)
            target = os.path.join(dest, os.path.normpath(os.path.join(rel_top, n)))
            if os.path.lexists(target):
                continue  # the rebuilt code is the recorded code
            if os.path.islink(full):
                links.append((full, target))
            elif os.path.isfile(full):
                files.append((full, target))
                total += os.path.getsize(full)
    return files, links, total, skipped


def populate(source: str | None, dest: str, run_id: str, *, skip: list[str] | None = None,
             limit_mb: float = DEFAULT_LIMIT_MB, dry_run: bool = False) -> Populated:
    """Copy `source`'s files that `dest` lacks into `dest` (see the module docstring).

    Raises MlreproError when they add up to more than `limit_mb` megabytes.
    `dry_run` checks and counts without copying.
    """
    out = Populated(source=source)
    if not source:
        out.notes.append("no working directory was recorded: relative paths resolve against "
                         "the rebuilt code tree")
        return out
    if not os.path.isdir(source):
        out.notes.append(f"the recorded working directory {source} is not here: relative paths "
                         "resolve against the rebuilt code tree alone")
        return out
    files, links, total, out.skipped = _plan(source, dest, run_id, skip or [])
    if total > limit_mb * 1e6:
        raise MlreproError(
            f"the recorded working directory {source} holds {total / 1e6:.0f} MB the re-run "
            f"would need a copy of (over the limit of {limit_mb:g} MB): pass "
            f"--copy-limit {math.ceil(total / 1e6) + 1} to copy it, or move what the script "
            "does not read out of that directory")
    out.files, out.bytes = len(files), total
    if dry_run:
        out.notes.append(f"working directory: {len(files)} file{'' if len(files) == 1 else 's'} "
                         f"({total / 1e6:.1f} MB) of {source} would be copied for the re-run")
        return out
    for src, dst in files:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    for src, dst in links:
        if not os.path.lexists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(os.readlink(src), dst)
    out.notes.append(f"working directory: {len(files)} file{'' if len(files) == 1 else 's'} "
                     f"({total / 1e6:.1f} MB) copied from {source}; the re-run's writes stay "
                     "in the copy")
    if out.skipped:
        out.notes.append("not copied: " + ", ".join(out.skipped[:5])
                         + (" ..." if len(out.skipped) > 5 else ""))
    return out
