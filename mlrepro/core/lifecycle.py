"""Process hooks that make a run's last status the true one.

An uncaught exception marks active runs failed; SIGTERM/SIGINT/SIGHUP mark them
killed (preempted on a spot job), flush them within a bounded time, then hand the
signal to the previous handler or its default action; interpreter exit finishes
whatever is still running.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import traceback
from typing import Any

from mlrepro import env, record
from mlrepro.core.registry import active_runs

FINISH_TIMEOUT = 5.0   # seconds a run may take to write its last records when it ends

_hooks_installed = False
_previous_handlers: dict[int, Any] = {}
_last_exception: list[BaseException] = []


def install() -> None:
    """Install the hooks once per process (signals only from the main thread)."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    previous_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        _last_exception[:] = [exc]
        previous_hook(exc_type, exc, tb)

    sys.excepthook = excepthook
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if signum is None:
            continue
        try:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue
            if signum == signal.SIGINT and previous is signal.default_int_handler:
                continue  # KeyboardInterrupt is handled by __exit__ / excepthook
            _previous_handlers[signum] = previous
            signal.signal(signum, _on_signal)
        except (ValueError, OSError):
            pass


def _on_signal(signum, frame) -> None:
    spot = env.SPOT.get()
    name = signal.Signals(signum).name
    runs = active_runs()
    for run in runs:
        run_spot = spot or bool(getattr(run.runtime, "spot", False))
        status = record.PREEMPTED if (run_spot and signum == signal.SIGTERM) else record.KILLED
        try:
            run.finish(status, error=f"received {name}", timeout=FINISH_TIMEOUT)
        except Exception:  # noqa: BLE001
            pass
    previous = _previous_handlers.get(signum)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _at_exit() -> None:
    runs = active_runs()
    exc = _last_exception[0] if _last_exception else None
    for run in runs:
        try:
            if exc is None:
                run.finish(record.FINISHED)
            elif isinstance(exc, KeyboardInterrupt):
                run.finish(record.KILLED, error="KeyboardInterrupt")
            elif isinstance(exc, SystemExit) and exc.code in (0, None):
                run.finish(record.FINISHED)
            else:
                run.finish(record.FAILED, error="".join(traceback.format_exception(
                    type(exc), exc, exc.__traceback__)))
        except Exception:  # noqa: BLE001
            pass
