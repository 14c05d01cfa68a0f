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


def warn(message: str, *, stacklevel: int = 3) -> None:
    """A tracking problem: a visible `MlreproWarning`, never an exception."""
    import warnings

    warnings.warn(message, MlreproWarning, stacklevel=stacklevel)
