"""Errors a user can cause, each a sentence that names the thing and the fix.

Only `mlrepro.cli.main` turns these into exit codes; library code raises them.
Problems inside tracking during training are `MlreproWarning`s instead (see `warn`).
"""


class MlreproError(Exception):
    """A problem the user can fix; the message says what and how."""

    exit_code = 2


class RunNotFound(MlreproError):
    """No run id in the store starts with the given prefix."""


class AmbiguousRunId(MlreproError):
    """More than one run id starts with the given prefix."""


class CorruptRecord(MlreproError):
    """A run's record on disk cannot be read."""


class StoreError(MlreproError):
    """A store cannot be opened or written."""


class CheckFailed(MlreproError):
    """A check the user asked for did not pass (e.g. a reproduction diverged)."""

    exit_code = 1


class MlreproWarning(UserWarning):
    """Tracking had a problem; training goes on."""


# Packages whose frames are never the user's line: mlrepro itself, the frameworks that call its
# callbacks and hooks (a warning raised in a Keras callback names the user's `model.fit(...)`),
# and the standard library's plumbing between them (`with` blocks, threads).
_NOT_USERS = frozenset({"mlrepro", "keras", "tf_keras", "tensorflow", "tensorflow_estimator",
                        "absl", "contextlib", "threading", "concurrent", "importlib", "runpy"})


_THREAD_REGISTRY: dict = {}  # what warnings records of the warnings raised on mlrepro's threads


def _user_frame():
    """The innermost frame outside `_NOT_USERS` (None on a thread that only runs mlrepro)."""
    import sys

    frame = sys._getframe(2)  # the caller of `warn`
    while frame is not None:
        spec = frame.f_globals.get("__spec__")  # `python -m mlrepro`: __name__ is __main__
        name = getattr(spec, "name", None) or frame.f_globals.get("__name__") or ""
        if name.partition(".")[0] not in _NOT_USERS:
            return frame
        frame = frame.f_back
    return None


def warn(message: str, *, stacklevel: int | None = None) -> None:
    """A tracking problem: a visible `MlreproWarning`, never an exception.

    The warning names the user's line (the first frame outside mlrepro and the frameworks),
    not mlrepro's own source: `train.py:41: MlreproWarning: ...` for `model.fit` on line 41.
    On one of mlrepro's own threads (the writer, the live push) there is no user line: the
    warning names the thread, `<mlrepro thread mlrepro-push>:0: MlreproWarning: ...`, and
    no source line is echoed under it (that would repeat the message's own f-string).
    `stacklevel` (as `warnings.warn` counts it) names another frame instead.
    """
    import threading
    import warnings

    if stacklevel is not None:
        warnings.warn(message, MlreproWarning, stacklevel=stacklevel)
        return
    frame = _user_frame()
    if frame is None:
        warnings.warn_explicit(message, MlreproWarning,
                               f"<mlrepro thread {threading.current_thread().name}>", 0,
                               module="mlrepro", registry=_THREAD_REGISTRY)
        return
    module_globals = frame.f_globals
    # No module_globals: with them warnings asks the module's loader for its source, and a
    # loader that refuses (a module run as __main__ by -m) would turn a warning into an error.
    warnings.warn_explicit(message, MlreproWarning, frame.f_code.co_filename, frame.f_lineno,
                           module=module_globals.get("__name__", "<string>"),
                           registry=module_globals.setdefault("__warningregistry__", {}))
