"""Pushing a run to the remote while it trains, and once more when it ends.

With `MLREPRO_REMOTE` set (a remote's name or an `s3://` URI), the chief's run is
recorded locally as usual and a daemon thread copies it to the remote every
`MLREPRO_PUSH_SECONDS` (default 300) and at `finish()`. Only new objects move.
`LivePush` is a run observer (`mlrepro.core.observers`): `observer_for` offers it
to every run that writes.
When S3 cannot be reached, training goes on: one warning, an event, the run stays
in the local store (on SageMaker also in the job's output), and the next push —
or `mlrepro sync` later — uploads it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Mapping

from mlrepro import env, record
from mlrepro.aws.remote import resolve_remote
from mlrepro.core.observers import RunObserver
from mlrepro.errors import warn
from mlrepro.store import EventsAppend, open_store
from mlrepro.store.s3 import PUSH_SECTION, parse_s3_uri
from mlrepro.store.transfer import copy_run

DEFAULT_PUSH_SECONDS = env.PUSH_SECONDS.default
DEFAULT_PUSH_TIMEOUT = env.PUSH_TIMEOUT.default
KILLED_PUSH_TIMEOUT = 30.0                    # the last push of a run stopped by a signal


class LivePush(RunObserver):
    """Copies one run from its local store to a remote, periodically and at the end.

    Args:
        run: the `Run` being recorded (its writer's current store is the source).
        remote_uri: `s3://bucket/prefix` of the remote.
        interval: seconds between pushes while the run is live.
        final_timeout: seconds `finish()` waits for the last push.

    Example:
        >>> # MLREPRO_REMOTE=s3://team-bucket/mlrepro python train.py   (starts one for you)
        >>> run.add_observer(LivePush(run, "s3://team/mlrepro", interval=60))  # doctest: +SKIP
    """

    def __init__(self, run: Any, remote_uri: str, *, interval: float = DEFAULT_PUSH_SECONDS,
                 final_timeout: float = DEFAULT_PUSH_TIMEOUT):
        self.run = run
        self.remote_uri = remote_uri
        self.interval = interval
        self.final_timeout = final_timeout
        self.pushes = 0
        self.failures = 0
        self.last_error: str | None = None
        self._remote = None
        self._stop = threading.Event()
        self._lock = threading.Lock()           # one push at a time
        self._thread = threading.Thread(target=self._loop, name=f"mlrepro-push-{run.id}",
                                        daemon=True)

    def started(self, run: Any) -> None:
        # Readers of the remote judge a live run by how often it is pushed.
        run.set_section(PUSH_SECTION, {"remote": self.remote_uri, "interval": self.interval})
        self._thread.start()

    def __repr__(self) -> str:
        return f"the live push to {self.remote_uri}"

    # -- pushing ---------------------------------------------------------------------
    def push_once(self) -> bool:
        """Copy the run to the remote now; False (with one warning per outage) if it failed."""
        with self._lock:
            if self.run.spooled:
                # The spool holds only what came after the local store failed: pushing it
                # would replace the remote's full copy. `mlrepro recover` then `sync` mends it.
                if self.last_error is None:
                    self.last_error = "the run is spooled"
                    warn(f"mlrepro stops pushing run {self.run.id}: its local store failed and "
                         "it is spooled; run `mlrepro recover` and then `mlrepro sync`")
                return False
            source = self.run.current_store
            try:
                if self._remote is None:
                    self._remote = open_store(self.remote_uri)
                copy_run(source, self._remote, self.run.id)
            except Exception as exc:  # noqa: BLE001 - never into training
                self.failures += 1
                first = self.last_error is None
                self.last_error = str(exc)
                if first:
                    self._tell("push_failed", error=str(exc), remote=self.remote_uri)
                    warn(f"mlrepro cannot push run {self.run.id} to {self.remote_uri} ({exc}); "
                         f"training continues, the run stays in {source.uri} and is pushed "
                         f"again in {self.interval:.0f}s, at the end, or by `mlrepro sync`")
                return False
            self.pushes += 1
            if self.last_error is not None:
                self._tell("push_resumed", remote=self.remote_uri, failures=self.failures)
                self.last_error = None
            return True

    def _tell(self, kind: str, **fields) -> None:
        try:
            self.run.event(kind, **fields)
        except Exception:  # noqa: BLE001
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.push_once()

    def finished(self, run: Any) -> None:
        """The last push, bounded by `final_timeout`; the outcome is said, never raised."""
        self._stop.set()
        done = threading.Event()
        result: list[bool] = []

        def last():
            result.append(self.push_once())
            done.set()

        # A run stopped by a signal (Ctrl-C, a spot interruption) has little time left.
        timeout = self.final_timeout
        if run.status in (record.KILLED, record.PREEMPTED):
            timeout = min(timeout, KILLED_PUSH_TIMEOUT)
        threading.Thread(target=last, name=f"mlrepro-push-last-{run.id}", daemon=True).start()
        if not done.wait(timeout):
            warn(f"mlrepro: the last push of run {run.id} to {self.remote_uri} did not finish "
                 f"within {timeout:.0f}s; push it later with `mlrepro push {run.id}`")
            return
        if result and not result[0]:
            warn(f"mlrepro: run {run.id} ended but could not be pushed to {self.remote_uri} "
                 f"({self.last_error}); push it later with `mlrepro sync`")
            # Only failures are noted afterwards: the local copy then differs from the
            # remote's anyway, and the next sync carries the note up with the rest.
            _note_locally(run, "push_failed", error=self.last_error, remote=self.remote_uri)


def _note_locally(run, kind: str, **fields) -> None:
    """An event written straight to the local record (the writer has closed by now)."""
    try:
        run.current_store.write_batch([EventsAppend(run.id, [{"time": time.time(), "kind": kind,
                                                              **fields}])])
    except Exception:  # noqa: BLE001
        pass


def observer_for(run: Any, environ: Mapping[str, str] | None = None) -> LivePush | None:
    """A push of `run` to `$MLREPRO_REMOTE`, if that names a remote and this process writes it."""
    wanted = env.REMOTE.get(environ)
    if not wanted or not run.writes:
        return None
    if getattr(run.runtime, "is_chief", True) is False:
        return None
    uri = resolve_remote(run.store, wanted, environ)
    if uri.rstrip("/") == run.store.uri.rstrip("/"):
        return None                      # the run is written straight to the remote already
    parse_s3_uri(uri)                    # a URI with credentials is refused here, loudly
    return LivePush(run, uri, interval=env.PUSH_SECONDS.get(environ),
                    final_timeout=env.PUSH_TIMEOUT.get(environ))
