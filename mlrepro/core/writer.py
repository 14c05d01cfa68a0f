"""The background writer: every write of a run goes through here, off the training thread.

It wraps any `Store`. Callers append metric points to a deque (a few hundred
nanoseconds) and queue other writes; a daemon thread drains both at least every
`interval` seconds. When the store fails, a batch is retried a bounded number of
times, then the run fails over to a local spool store and a warning says where.
Nothing here ever raises into the caller.
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import threading
import time
from typing import Callable

from mlrepro import env
from mlrepro.errors import warn
from mlrepro.record import MetricSummary
from mlrepro.store.base import MetricsAppend, Store

MAX_PENDING_POINTS = 20_000_000  # ~2 GB of tuples: past this, points are dropped and counted


def spool_dir(environ=None) -> str:
    """Where records go when the store cannot be written (`$MLREPRO_SPOOL`, else ~/.cache)."""
    if env.SPOOL.is_set(environ):
        return env.SPOOL.get(environ)
    home = os.path.expanduser("~")
    candidate = os.path.join(home, ".cache", "mlrepro", "spool")
    try:
        os.makedirs(candidate, exist_ok=True)
        if os.access(candidate, os.W_OK):
            return candidate
    except OSError:
        pass
    return os.path.join(tempfile.gettempdir(), f"mlrepro-spool-{os.getuid()}")


def _count(write) -> int:
    return len(write.points) if isinstance(write, MetricsAppend) else 1


class Writer:
    """Drains queued writes for one run into a store, failing over to a spool."""

    def __init__(self, store: Store, run_id: str, *, interval: float = 0.5, retries: int = 2,
                 spool_factory: Callable[[], Store] | None = None,
                 on_cycle: Callable[[], list] | None = None,
                 on_failover: Callable[[Store, Exception], None] | None = None):
        self.store = store
        self.primary = store
        self.run_id = run_id
        self.interval = interval
        self.retries = retries
        self.points: collections.deque = collections.deque()
        self.summaries: dict[str, MetricSummary] = {}
        self.failed_over = False
        self.dead = False
        self.dropped = 0
        self.errors: list[str] = []
        self._ops: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = False
        self._spool_factory = spool_factory
        self._on_cycle = on_cycle
        self._on_failover = on_failover
        self._summary_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"mlrepro-writer-{run_id}",
                                        daemon=True)
        self._thread.start()

    # -- caller side ----------------------------------------------------------
    def submit(self, op) -> None:
        """Queue a store write, or a callable run on the writer thread that returns writes."""
        self._ops.append(op)

    def wake(self) -> None:
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is written; False on timeout."""
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        self._ops.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        ok = self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(max(0.0, min(timeout, 1.0)))
        return ok

    def pending(self) -> int:
        return len(self.points) + len(self._ops)

    def summary_json(self) -> dict:
        with self._summary_lock:
            return {name: s.to_json() for name, s in self.summaries.items()}

    # -- writer thread ----------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._cycle()
            except BaseException as exc:  # noqa: BLE001 - the thread must survive anything
                self._note(f"mlrepro writer error: {exc!r}")
            if self._stop and not self._ops and not self.points:
                return

    def _drain_points(self) -> list:
        pts = self.points
        n = len(pts)
        if n == 0:
            return []
        popleft = pts.popleft
        drained = [popleft() for _ in range(n)]
        if n > MAX_PENDING_POINTS:  # only reachable if the store is far slower than the caller
            self.dropped += n - MAX_PENDING_POINTS
            drained = drained[-MAX_PENDING_POINTS:]
        with self._summary_lock:
            summaries = self.summaries
            for step, value, _wall, _epoch, name, _attempt in drained:
                s = summaries.get(name)
                if s is None:
                    s = summaries[name] = MetricSummary()
                s.add(value, step)
        return drained

    def _cycle(self) -> None:
        ops = [self._ops.popleft() for _ in range(len(self._ops))]
        pts = self._drain_points()
        batch: list = [MetricsAppend(self.run_id, pts)] if pts else []
        barriers = []
        for op in ops:
            if isinstance(op, threading.Event):
                barriers.append(op)
            elif callable(op):
                self._write(batch)
                batch = []
                try:
                    batch.extend(op() or [])
                except Exception as exc:  # noqa: BLE001
                    self._note(f"mlrepro could not prepare a record: {exc!r}")
            else:
                batch.append(op)
        if self._on_cycle is not None:
            try:
                batch.extend(self._on_cycle() or [])
            except Exception as exc:  # noqa: BLE001
                self._note(f"mlrepro heartbeat failed: {exc!r}")
        self._write(batch)
        for b in barriers:
            b.set()

    def _write(self, batch: list) -> None:
        """Write each record with bounded retries; on lasting failure, the rest go to the spool.

        Records are applied one at a time so that a retry never repeats one that
        already landed (no duplicated points after a transient error).
        """
        for i, write in enumerate(batch):
            if self.dead:
                self.dropped += sum(_count(w) for w in batch[i:])
                return
            error: Exception | None = None
            for attempt in range(self.retries + 1):
                try:
                    self.store.write_batch([write])
                    error = None
                    break
                except Exception as exc:  # noqa: BLE001
                    error = exc
                    time.sleep(0.05 * (attempt + 1))
            if error is None:
                continue
            if not self.failed_over and self._spool_factory is not None:
                self._fail_over(error)
                try:
                    self.store.write_batch([write])
                    continue
                except Exception as exc:  # noqa: BLE001
                    error = exc
            self.dead = True
            self._note(f"mlrepro cannot write run {self.run_id} anywhere ({error!r}); "
                       "training continues, further records of this run are dropped")
            self.dropped += sum(_count(w) for w in batch[i:])
            return

    def _fail_over(self, error: Exception) -> None:
        try:
            spool = self._spool_factory()
        except Exception as exc:  # noqa: BLE001
            self._note(f"mlrepro cannot open the spool ({exc!r})")
            return
        self.failed_over = True
        self._note(f"mlrepro cannot write to the store {self.primary.uri} ({error}); training "
                   f"continues and run {self.run_id} is spooled to {spool.uri}: when the store "
                   f"is writable again run `mlrepro recover --from {spool.uri}`")
        self.store = spool
        if self._on_failover is not None:
            try:
                self._on_failover(spool, error)
            except Exception as exc:  # noqa: BLE001
                self._note(f"mlrepro spool setup failed: {exc!r}")

    def _note(self, message: str) -> None:
        self.errors.append(message)
        try:
            warn(message)
        except Exception:  # noqa: BLE001 - warnings turned into errors must not escape
            try:
                sys.stderr.write("WARNING: " + message + "\n")
            except Exception:  # noqa: BLE001
                pass
