"""The runs of this process that have not finished: what `mlrepro.active_run()` answers.

A run adds itself when it starts and removes itself when it finishes; the
process hooks (`mlrepro.core.lifecycle`) finish whatever is still here when the
process ends or is signalled.
"""

from __future__ import annotations

import threading
from typing import Any

_active: list[Any] = []
_lock = threading.RLock()


def add(run: Any) -> None:
    with _lock:
        _active.append(run)


def remove(run: Any) -> None:
    with _lock:
        if run in _active:
            _active.remove(run)


def active_runs() -> list[Any]:
    """Every unfinished run of this process, oldest first."""
    with _lock:
        return list(_active)


def active_run() -> Any:
    """The most recently started run of this process that has not finished, or None."""
    with _lock:
        return _active[-1] if _active else None
