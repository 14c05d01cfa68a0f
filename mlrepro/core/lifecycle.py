"""Process hooks that make a run's last status the true one.

An uncaught exception marks active runs failed; SIGTERM marks them preempted
(SageMaker spot and stop, Kubernetes eviction, `timeout`: the process is asked to
go), SIGINT/SIGHUP killed; each flushes them within a bounded time, then hands the
signal to the previous handler or its default action; interpreter exit finishes
whatever is still running.

A training loop that can save at its next step boundary (`ReproCallback` inside
`fit`) registers as the SIGTERM *taker* (`take_sigterm`): then SIGTERM only asks
it to save (`request()` on the main thread, between bytecodes) and starts a
deadline; the taker calls `end_preempted()` once saved. If no step boundary
comes before the deadline, a thread records that nothing new was saved and ends
the process as the signal asks anyway. A second SIGTERM ends it at once.

A signal that comes while a run writes its last records (`finishing()`, inside
`Run.finish`) waits for them: the run keeps the status it is ending with, and the
signal is delivered again once every finish in progress has returned.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from mlrepro import record
from mlrepro.core.registry import active_runs

FINISH_TIMEOUT = 5.0   # seconds a run may take to write its last records when it ends

_hooks_installed = False
_previous_handlers: dict[int, Any] = {}
_last_exception: list[BaseException] = []
_takers: list = []              # objects with request() and preemption_timeout (seconds)
_deferred: list = []            # the SIGTERM being deferred: [Deferred]
_finish_lock = threading.RLock()  # reentrant: the handler may run on a thread holding it
_finishing = [0]                # how many runs are writing their last records now
_held: list = []                # a signal that came meanwhile: [signum]


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


class Deferred:
    """A SIGTERM waiting for the taker's step boundary."""

    def __init__(self, signum: int, frame, timeout: float):
        self.signum = signum
        self.frame = frame
        self.timeout = timeout
        self.received = time.monotonic()
        self.state = "requested"        # -> saving -> ended
        self.lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.received


def take_sigterm(taker) -> None:
    """`taker` saves at its next step boundary when SIGTERM comes (until `release_sigterm`)."""
    _takers.append(taker)


def release_sigterm(taker) -> None:
    _takers[:] = [t for t in _takers if t is not taker]


def deferred() -> "Deferred | None":
    """The SIGTERM being deferred, if any."""
    return _deferred[0] if _deferred else None


def start_saving() -> bool:
    """The taker begins its save; False when the deadline has already ended the run."""
    pending = deferred()
    if pending is None:
        return False
    with pending.lock:
        if pending.state != "requested":
            return False
        pending.state = "saving"
        return True


def end_preempted(**note) -> None:
    """The taker saved (or had nothing to save): end every run as preempted, then exit as
    the signal asks. `note` goes into each run's attempt entry as `preemption`."""
    pending = deferred()
    if pending is None:
        return
    with pending.lock:
        if pending.state == "ended":
            return
        pending.state = "ended"
    _note_runs(dict(note, seconds=round(pending.elapsed(), 3)))
    _end(pending.signum, pending.frame)


def _note_runs(note: dict) -> None:
    for run in active_runs():
        try:
            run.note_attempt(preemption=note)
        except Exception:  # noqa: BLE001
            pass


def _deadline(pending: Deferred) -> None:
    time.sleep(pending.timeout)
    with pending.lock:
        if pending.state == "ended":
            return
        saving, pending.state = pending.state == "saving", "ended"
    what = ("the checkpoint did not finish" if saving else "no step boundary came")
    note = {"checkpoint": None, "seconds": round(pending.elapsed(), 3),
            "reason": f"{what} within preemption_timeout={pending.timeout:g}s of SIGTERM; "
                      "nothing new was saved"}
    for run in active_runs():
        try:
            run.event("preemption_checkpoint", **note)
        except Exception:  # noqa: BLE001
            pass
    _note_runs(note)
    _finish_all(pending.signum)
    previous = _previous_handlers.get(pending.signum)
    if not callable(previous):
        _default_action_from_any_thread(pending.signum)
    os._exit(128 + pending.signum)


def _default_action_from_any_thread(signum: int) -> None:
    """Python sets handlers only on the main thread, which is stuck: ask libc directly."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.signal.restype = ctypes.c_void_p
        libc.signal(ctypes.c_int(signum), ctypes.c_void_p(0))   # SIG_DFL
        os.kill(os.getpid(), signum)
        time.sleep(1.0)
    except Exception:  # noqa: BLE001 - then the exit status says it
        pass


def _on_signal(signum, frame) -> None:
    if signum == signal.SIGTERM and _takers and not _deferred and \
            threading.current_thread() is threading.main_thread():
        taker = _takers[-1]
        pending = Deferred(signum, frame, float(taker.preemption_timeout))
        _deferred.append(pending)
        threading.Thread(target=_deadline, args=(pending,), name="mlrepro-preemption",
                         daemon=True).start()
        try:
            taker.request()
            return
        except Exception:  # noqa: BLE001 - then end now, as without a taker
            pending.state = "ended"
    elif _deferred and _deferred[0].state != "ended":
        _deferred[0].state = "ended"
        _note_runs({"checkpoint": None, "reason": f"a second {signal.Signals(signum).name} "
                                                  "came before the step boundary"})
    _end(signum, frame)


def _finish_all(signum: int) -> None:
    name = signal.Signals(signum).name
    status = record.PREEMPTED if signum == signal.SIGTERM else record.KILLED
    for run in active_runs():
        try:
            run.finish(status, error=f"received {name}", timeout=FINISH_TIMEOUT)
        except Exception:  # noqa: BLE001
            pass


@contextlib.contextmanager
def finishing():
    """A run writes its last records: a signal that comes meanwhile waits until they are
    written (or the finish's own timeout ends), then is delivered again."""
    with _finish_lock:
        _finishing[0] += 1
    try:
        yield
    finally:
        with _finish_lock:
            _finishing[0] -= 1
            held = list(_held) if _finishing[0] == 0 else []
            if held:
                _held.clear()
        if held:
            os.kill(os.getpid(), held[0])   # the handler runs again, on the main thread


def _end(signum, frame) -> None:
    with _finish_lock:
        if _finishing[0]:
            if not _held:
                _held.append(signum)
            return
    _finish_all(signum)
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
