"""The user's own modules a run imported: every source file that is not Python's or installed.

A module counts as the user's when its file is a `.py` outside the standard library,
outside every site-packages / dist-packages directory and outside mlrepro itself: the
entry point's siblings (`model.py`, `data.py`), a SageMaker `source_dir`, the module
of a wrapped `model_fn`, a package put on `sys.path` by hand. They are stored
content-addressed by their path relative to one root (the git checkout, else the
directory holding the entry point and the modules), so the whole tree can be
rebuilt and diffed file by file, in git and outside it. Pure apart from reading
the files.
"""

from __future__ import annotations

import hashlib
import os
import site
import sys
import sysconfig
from dataclasses import dataclass, field

MAX_MODULE_BYTES = 1 << 20
MAX_MODULES = 2000
MAX_OUTSIDE_LISTED = 50
_INSTALLED_PARTS = ("site-packages", "dist-packages")
_MLREPRO_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


@dataclass
class Modules:
    """Module files relative to `root`: `files` maps path -> bytes; `outside` are absolute."""

    root: str
    files: dict = field(default_factory=dict)
    outside: list = field(default_factory=list)
    too_large: list = field(default_factory=list)

    def listing(self) -> dict:
        """path -> sha256, as the record keeps it (sorted by path)."""
        return {rel: hashlib.sha256(data).hexdigest() for rel, data in sorted(self.files.items())}


def _library_dirs() -> list[str]:
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            dirs.add(sysconfig.get_paths()[key])
        except KeyError:
            pass
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:  # some virtualenvs' site module
        pass
    try:
        dirs.add(site.getusersitepackages())
    except AttributeError:
        pass
    return sorted(os.path.realpath(d) for d in dirs if d)


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def user_module_paths(modules=None, *, exclude_dirs=()) -> list[str]:
    """Real paths of the `.py` files of the imported modules that are the user's own."""
    modules = sys.modules if modules is None else modules
    library = _library_dirs()
    excluded = [os.path.realpath(d) for d in exclude_dirs if d] + [_MLREPRO_DIR]
    skip = tuple(d.rstrip(os.sep) + os.sep for d in library + excluded)
    out = set()
    for module in list(modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path.endswith(".py"):
            continue
        # string tests first: a TensorFlow process has thousands of installed modules,
        # and resolving each path costs a stat per directory (~0.3 s in all)
        if path.startswith(skip) or _installed(path):
            continue
        real = os.path.realpath(path)
        if _installed(real) or real.startswith(skip):
            continue
        if os.path.isfile(real):
            out.add(real)
    return sorted(out)


_NEEDLES = tuple(f"{os.sep}{part}{os.sep}" for part in _INSTALLED_PARTS)


def _installed(path: str) -> bool:
    return _NEEDLES[0] in path or _NEEDLES[1] in path


def project_root(entry: str | None, paths: list[str], git_root: str | None = None) -> str:
    """The git checkout, else the deepest directory holding the entry point and the modules.

    A module so far away that the common directory would be `/` or a top-level
    directory (`/home`) stays outside the root instead.
    """
    if git_root:
        return os.path.realpath(git_root)
    base = os.path.dirname(os.path.realpath(entry)) if entry else os.path.realpath(os.getcwd())
    root = base
    for path in paths:
        candidate = os.path.commonpath([root, os.path.dirname(path)])
        if len([p for p in candidate.split(os.sep) if p]) >= 2:
            root = candidate
    return root


def capture_modules(entry: str | None, *, git_root: str | None = None, modules=None,
                    exclude_dirs=()) -> Modules:
    """The entry point and every user module imported so far, read from disk."""
    paths = user_module_paths(modules, exclude_dirs=exclude_dirs)
    if entry and os.path.isfile(entry):
        paths = sorted(set(paths) | {os.path.realpath(entry)})
    root = project_root(entry, paths, git_root)
    out = Modules(root=root)
    for path in paths:
        if not _under(path, root):
            if len(out.outside) < MAX_OUTSIDE_LISTED:
                out.outside.append(path)
            continue
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        try:
            if os.path.getsize(path) > MAX_MODULE_BYTES or len(out.files) >= MAX_MODULES:
                out.too_large.append(rel)
                continue
            with open(path, "rb") as fh:
                out.files[rel] = fh.read()
        except OSError:
            continue
    return out
