"""`Run`: the live record of one training run.

Everything a run writes goes through its background writer (`mlrepro.core.writer`);
no method here raises into training once the run has started (problems become
warnings and events). The last status is the true one: finished, failed, killed
(SIGINT / SIGTERM), preempted (SIGTERM on a spot job), or crashed (read from a
dead writer). Integrations use the public methods only; what reacts to a run's
start and end plugs in as an observer (`mlrepro.core.observers`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable, Mapping

from mlrepro import env, record
from mlrepro.capture.fingerprint import fingerprints
from mlrepro.capture.redact import redact, redact_text
from mlrepro.capture.seeds import apply_seed
from mlrepro.core import lifecycle, observers, registry
from mlrepro.core.lifecycle import FINISH_TIMEOUT
from mlrepro.core.observers import FinishHook, RunObserver
from mlrepro.core.writer import Writer, spool_dir
from mlrepro.errors import MlreproError, warn
from mlrepro.record import NO_EPOCH, ensure_safe_name, jsonable
from mlrepro.store import EventsAppend, ManifestWrite, ObjectPut, Store, open_store

# Code and environment capture (git, package metadata) and the local store (sqlite3) are
# imported when a run starts, not at `import mlrepro`.

active_runs = registry.active_runs
active_run = registry.active_run

REPRODUCTION_OF = "reproduction-of"  # the parent kind `mlrepro reproduce` sets

__all__ = ["Run", "start_run", "active_run", "active_runs", "FINISH_TIMEOUT"]


class Run:
    """One run. Use `mlrepro.start_run(...)` to make one; also a context manager.

    Args:
        project: the project the run belongs to (a plain name).
        name: a human name for the run; defaults to its id.
        params: user hyperparameters (any JSON-able values; secrets are redacted).
        tags: free-form labels.
        seed: seed Python, NumPy and imported frameworks with this; recorded.
        deterministic: also enable op determinism (TensorFlow) and record it.
        store: a path, `s3://` URI or `Store`; default `$MLREPRO_STORE`, the runtime's
            store (SageMaker: inside the checkpoint dir) or `./mlrepro-runs`.
        run_id: continue this run (a restart of the same job) instead of starting a new one.
        parent: `{"kind": "reproduction-of"|"resumed-from", "run": id}` (default
            `$MLREPRO_PARENT`).
        write: False makes a run that records nothing (non-chief workers); default:
            record unless `$MLREPRO_DISABLE` is set or this process is not the chief.
        capture: capture code and environment at start (default True).
        runtime: the `mlrepro.runtime.Runtime` this process runs in (default: detected).

    Example:
        >>> import mlrepro
        >>> with mlrepro.start_run(project="demo", params={"lr": 0.1}) as run:
        ...     run.log_metrics({"loss": 0.5}, step=1)
    """

    def __init__(self, project: str = "default", *, name: str | None = None,
                 params: Mapping | None = None, tags: Mapping | None = None,
                 seed: int | None = None, deterministic: bool = False,
                 store: "str | Store | None" = None, run_id: str | None = None,
                 parent: Mapping | None = None, write: bool | None = None,
                 capture: bool = True, runtime: Any = None):
        _check(project, seed)
        self.project = project
        self._lock = threading.RLock()
        self._dirty = True
        self._finished = False
        self._next_step = 0
        self._last_manifest_write = 0.0
        self._warnings = 0
        self._objects: list[ObjectPut] = []
        self._observers: list[RunObserver] = []
        self._writer: Writer | None = None
        self._append: Callable = _discard
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.heartbeat_interval = env.HEARTBEAT_SECONDS.get()
        if runtime is None:
            from mlrepro.runtime import detect_or_none   # not at `import mlrepro`

            runtime = detect_or_none()
        self._runtime = runtime
        self.writes = _decide_writes(write, self._runtime)
        self.determinism = apply_seed(_seed_for(seed, deterministic), deterministic)
        self.seed = self.determinism["seed"]
        self.store = self._open_store(store) if self.writes else None
        explicit_parent = parent
        parent = _parent_from_env() if parent is None else parent
        if isinstance(parent, Mapping) and parent.get("kind") == REPRODUCTION_OF and \
                run_id == parent.get("run"):
            run_id = None  # a re-run is always a new run, never an attempt of the original
        resumed = None
        if run_id is not None and self.store is not None:
            resumed = self._load_for_resume(run_id)
        if resumed is not None:  # $MLREPRO_PARENT is for new runs only
            self._continue(resumed, params, explicit_parent)
        else:
            self._begin(run_id, name, params, tags, parent)
        self.manifest.update(seed=self.seed, determinism=self.determinism,
                             heartbeat_interval=self.heartbeat_interval)
        if capture:
            self._capture(code=resumed is None)
        self._capture_runtime()
        if self.store is not None:
            self._start_writing(resumed is not None)
        registry.add(self)
        lifecycle.install()
        self._hear_the_jobs_stop_signal()

    # -- set-up -----------------------------------------------------------------
    def _hear_the_jobs_stop_signal(self) -> None:
        """On SageMaker, SIGTERM when the launcher exits: the toolkit dies of the job's
        stop signal without forwarding it (see `mlrepro.runtime.parent_exit`)."""
        from mlrepro.runtime import SAGEMAKER
        from mlrepro.runtime.parent_exit import signal_on_parent_exit

        if getattr(self._runtime, "kind", None) == SAGEMAKER:
            signal_on_parent_exit()

    def _open_store(self, store) -> Store:
        if store is None:  # SageMaker: inside the checkpoint dir, so a spot restart finds it
            from mlrepro.runtime import default_store

            store = default_store(self._runtime)
        try:
            return open_store(store)
        except MlreproError:
            raise
        except Exception as exc:  # noqa: BLE001
            warn(f"mlrepro cannot open the store {store!r} ({exc}); recording to the spool")
            return _spool_store()

    def _claim_id(self) -> str:
        if self.store is None:  # a run that writes nothing (a non-chief worker) claims nothing
            return record.new_run_id()
        for _ in range(20):
            run_id = record.new_run_id()
            try:
                if self.store.claim_run_id(run_id):
                    return run_id
            except OSError as exc:
                warn(f"mlrepro cannot create a run in {self.store.uri} ({exc}); training "
                     f"continues and the run is spooled to {spool_dir()}")
                self.store = _spool_store()
        raise MlreproError(f"could not claim a unique run id in {self.store.uri}")

    def _load_for_resume(self, run_id: str) -> dict | None:
        try:
            if run_id not in self.store.run_ids():
                return None
            manifest = self.store.read_manifest(run_id)
        except Exception as exc:  # noqa: BLE001
            warn(f"mlrepro cannot read run {run_id} to resume it ({exc}); starting it afresh")
            return None
        return copy.deepcopy(manifest)

    def _begin(self, run_id, name, params, tags, parent) -> None:
        """A new run: claim an id and lay out its manifest."""
        self.id = run_id or self._claim_id()
        self.attempt = 0
        self._prior_summary: dict = {}   # metric summaries of earlier attempts (none)
        self.manifest = record.new_manifest(self.id, self.project, name, started=time.time(),
                                            host=self.host, pid=self.pid)
        self.manifest["params"] = redact(jsonable(dict(params or {})))
        self.manifest["tags"] = redact(jsonable(dict(tags or {})))
        self.manifest["parent"] = jsonable(dict(parent)) if parent else None

    def _continue(self, manifest: dict, params, parent) -> None:
        """A restart of a recorded run: a new attempt of the same run."""
        now = time.time()
        self.id = manifest["id"]
        self.manifest = manifest
        self.attempt = len(manifest.get("attempts") or [])
        self._prior_summary = dict(manifest.get("metrics_summary") or {})
        for earlier in manifest.get("attempts") or []:
            if not earlier.get("status"):  # it ended without a word: killed or lost
                earlier["status"] = record.CRASHED
        manifest["attempts"] = list(manifest.get("attempts") or []) + [
            {"attempt": self.attempt, "start_time": now, "host": self.host, "pid": self.pid}]
        manifest.update(status=record.RUNNING, end_time=None, heartbeat=now, error=None,
                        writer={"host": self.host, "pid": self.pid})
        if params:
            manifest["params"].update(redact(jsonable(dict(params))))
        if parent and not manifest.get("parent"):
            manifest["parent"] = jsonable(dict(parent))

    def _capture(self, code: bool) -> None:
        from mlrepro.capture.code import capture_code
        from mlrepro.capture.environment import capture_environment

        try:
            self.manifest["environment"] = capture_environment()
        except Exception as exc:  # noqa: BLE001
            self._warn(f"environment capture failed: {exc!r}")
        if not code:
            return
        try:
            snap = capture_code(exclude_dirs=self._own_dirs())
            info = dict(snap.info)
            if snap.patch:
                info["patch"] = self._keep_object(snap.patch)
                info["patch_size"] = len(snap.patch)
            if snap.entry_source is not None:
                info["entry_point_object"] = self._keep_object(snap.entry_source)
            for data in (snap.modules.files.values() if snap.modules else ()):
                self._keep_object(data)
            self.manifest["code"] = info
            self._modules_root = snap.modules.root if snap.modules else None
        except Exception as exc:  # noqa: BLE001
            self._warn(f"code capture failed: {exc!r}")

    def _own_dirs(self) -> list[str]:
        root = getattr(self.store, "root", None)
        return [root] if isinstance(root, str) else []

    def _refresh_modules(self) -> None:
        """Add the user modules imported since the run started (the usual order in a script)."""
        root = getattr(self, "_modules_root", None)
        if root is None:
            return
        from mlrepro.capture.code import module_fields
        from mlrepro.capture.modules import capture_modules

        try:
            with self._lock:
                code = self.manifest.get("code") or {}
                known = dict(code.get("modules") or {})
            # the same root as at the start, so that paths stay comparable
            found = capture_modules(None, git_root=root, exclude_dirs=self._own_dirs())
            new = {rel: data for rel, data in found.files.items() if rel not in known}
            if not new:
                return
            for data in new.values():
                self._writer.submit(ObjectPut(data=data))
            with self._lock:
                fields = module_fields(found)
                merged = {**fields["modules"], **known}   # as first read, when read twice
                code = self.manifest.setdefault("code", {})
                code["modules"] = dict(sorted(merged.items()))
                code["modules_size"] = code.get("modules_size", 0) + sum(
                    len(b) for b in new.values())
                for key in ("modules_outside_root", "modules_not_captured"):
                    if fields.get(key):
                        code[key] = sorted(set(code.get(key) or []) | set(fields[key]))[:50]
                self._dirty = True
        except Exception as exc:  # noqa: BLE001
            self._warn(f"capturing modules imported during the run failed: {exc!r}")

    def _keep_object(self, data: bytes) -> str:
        """Queue bytes to be stored as an object; returns their digest."""
        self._objects.append(ObjectPut(data=data))
        return hashlib.sha256(data).hexdigest()

    def _capture_runtime(self) -> None:
        if self._runtime is None:
            return
        try:
            self.manifest["runtime"] = self._runtime.to_record()
        except Exception as exc:  # noqa: BLE001
            self._warn(f"runtime capture failed: {exc!r}")

    def _start_writing(self, resumed: bool) -> None:
        """Start the writer, queue the captured objects, and start the observers."""
        self._writer = Writer(self.store, self.id, interval=env.FLUSH_SECONDS.get(),
                              spool_factory=_spool_store, on_cycle=self._on_cycle,
                              on_failover=self._on_failover)
        self._append = self._writer.points.append
        for put in self._objects:
            self._writer.submit(put)
        self._objects = []
        for factory in observers.default_factories():
            try:
                observer = factory(self)
            except Exception as exc:  # noqa: BLE001 - the run records locally all the same
                self._warn(redact_text(f"cannot set up {_name_of(factory)}: {exc}"))
                continue
            if observer is not None:
                self.add_observer(observer)
        self.event("resumed" if resumed else "started", attempt=self.attempt)
        self._writer.wake()

    # -- logging (never raises) ---------------------------------------------------
    def log_params(self, params: Mapping, *, auto: bool = False) -> None:
        """Record hyperparameters; `auto=True` files them as auto-captured (not user) params."""
        try:
            from mlrepro.capture.redact import redact

            clean = redact(jsonable(dict(params)))
            with self._lock:
                self.manifest["auto_params" if auto else "params"].update(clean)
                self._dirty = True
        except Exception as exc:  # noqa: BLE001
            self._warn(f"log_params failed: {exc!r}")

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def set_tags(self, tags: Mapping) -> None:
        try:
            from mlrepro.capture.redact import redact

            with self._lock:
                self.manifest["tags"].update(redact(jsonable(dict(tags))))
                self._dirty = True
        except Exception as exc:  # noqa: BLE001
            self._warn(f"set_tags failed: {exc!r}")

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None,
                    epoch: int | None = None) -> None:
        """Record metric values at a step (default: one past the last step logged)."""
        if step is None:
            step = self._next_step
        if step >= self._next_step:
            self._next_step = step + 1
        wall = time.time()
        ep = NO_EPOCH if epoch is None else epoch
        attempt = self.attempt
        append = self._append
        done = 0
        try:
            for name, value in metrics.items():
                append((step, float(value), wall, ep, name, attempt))
                done += 1
        except Exception:  # noqa: BLE001 - a bad value must not reach training
            self._log_metrics_slow(metrics, done, step, wall, ep)

    def _log_metrics_slow(self, metrics, done, step, wall, ep) -> None:
        try:
            items = list(dict(metrics).items())[done:]
        except Exception as exc:  # noqa: BLE001
            self._warn(f"metrics {metrics!r} are not a mapping of names to numbers ({exc})")
            return
        for name, value in items:
            try:
                self._append((int(step), float(value), wall, ep, str(name), self.attempt))
            except Exception as exc:  # noqa: BLE001
                self._warn(f"metric {name!r}={value!r} is not a number ({exc}); skipped")

    def log_metric(self, name: str, value: float, step: int | None = None,
                   epoch: int | None = None) -> None:
        self.log_metrics({name: value}, step=step, epoch=epoch)

    def log_artifact(self, path: str, name: str | None = None, *,
                     wait: bool = False, meta: Mapping | None = None) -> None:
        """Store a file or directory content-addressed and name it in the run."""
        try:
            path = os.fspath(path)
            name = ensure_safe_name(name or os.path.basename(os.path.normpath(path)))
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} does not exist")
        except Exception as exc:  # noqa: BLE001
            self._warn(f"artifact not recorded: {exc}")
            return
        if self._writer is None:
            return
        self._writer.submit(lambda: self._store_artifact(path, name, dict(meta or {})))
        if wait:
            self._writer.flush(FINISH_TIMEOUT * 6)

    def _store_artifact(self, path: str, name: str, meta: dict) -> list:
        store = self._writer.store
        entry: dict = {"logged_at": time.time(), "step": self._next_step - 1, **jsonable(meta)}
        if os.path.isdir(path):
            files = {}
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for fname in sorted(names):
                    full = os.path.join(root, fname)
                    rel = os.path.relpath(full, path).replace(os.sep, "/")
                    put = ObjectPut(path=full)
                    store.write_batch([put])
                    files[rel] = {"digest": put.digest, "size": put.size}
            entry.update(kind="dir", files=files, size=sum(f["size"] for f in files.values()),
                         tree=record.tree_digest({k: v["digest"] for k, v in files.items()}))
        else:
            put = ObjectPut(path=path)
            store.write_batch([put])
            entry.update(kind="file", digest=put.digest, size=put.size)
        with self._lock:
            self.manifest["artifacts"][name] = entry
            self._dirty = True
        return [EventsAppend(self.id, [{"time": time.time(), "kind": "artifact", "name": name,
                                        "digest": entry.get("digest") or entry.get("tree")}])]

    def log_data(self, name: str, fingerprint: Mapping) -> None:
        """Record the fingerprint of one input (see `mlrepro.capture.data`)."""
        try:
            fp = self._file_list_apart(redact(jsonable(dict(fingerprint))))
            with self._lock:
                self.manifest["data"][str(name)] = fp
                self._dirty = True
        except Exception as exc:  # noqa: BLE001
            self._warn(f"log_data failed: {exc!r}")

    def _file_list_apart(self, fp: dict) -> dict:
        """A long file list is stored as an object; the manifest keeps its head and digest."""
        from mlrepro.capture.data import INLINE_FILE_LIST

        for part in [fp, *(v for v in (fp.get("parts") or {}).values() if isinstance(v, dict))]:
            listing = part.get("file_list")
            if isinstance(listing, list) and len(listing) > INLINE_FILE_LIST:
                data = record.canonical_json(listing).encode("utf-8")
                put = ObjectPut(data=data)
                if self._writer is not None:
                    self._writer.submit(put)
                else:
                    self._objects.append(put)
                part["file_list"] = listing[:INLINE_FILE_LIST]
                part["file_list_object"] = hashlib.sha256(data).hexdigest()
                part["file_list_entries"] = len(listing)
        return fp

    def set_section(self, section: str, value: Any) -> None:
        """Replace a manifest section owned by an integration (e.g. `runtime`, `resume`)."""
        try:
            with self._lock:
                self.manifest[section] = jsonable(value)
                self._dirty = True
        except Exception as exc:  # noqa: BLE001
            self._warn(f"recording {section} failed: {exc!r}")

    def update_section(self, section: str, **fields) -> None:
        """Merge fields into a dict section of the manifest (e.g. `estimator`, `resume`)."""
        try:
            with self._lock:
                current = self.manifest.get(section)
                merged = dict(current) if isinstance(current, dict) else {}
                merged.update(jsonable(fields))
                self.manifest[section] = merged
                self._dirty = True
        except Exception as exc:  # noqa: BLE001
            self._warn(f"recording {section} failed: {exc!r}")

    def section(self, section: str):
        """A copy of one manifest section as it stands now."""
        with self._lock:
            return copy.deepcopy(self.manifest.get(section))

    def note_attempt(self, **fields) -> None:
        """Add facts to this attempt's entry in `attempts` (e.g. what a forced resume changed)."""
        with self._lock:
            attempts = self.manifest.get("attempts") or []
            if attempts:
                attempts[-1].update(jsonable(fields))
                self._dirty = True

    def warn(self, message: str) -> None:
        """A tracking problem: a `MlreproWarning`, a `warning` event and the run's warning count."""
        self._warn(message)

    def event(self, kind: str, **fields) -> None:
        """Append an event (`kind` plus JSON-able fields) to the run's events."""
        if self._writer is None:
            return
        try:
            self._writer.submit(EventsAppend(self.id, [{"time": time.time(), "kind": kind,
                                                         **redact(jsonable(fields))}]))
        except Exception:  # noqa: BLE001
            pass

    def _warn(self, message: str) -> None:
        self._warnings += 1
        with self._lock:
            self.manifest["warnings"] = self._warnings
            self._dirty = True
        message = redact_text(str(message))  # events and stderr logs alike never hold secrets
        self.event("warning", message=message)
        warn("mlrepro: " + message)

    # -- what integrations and observers use ------------------------------------------
    @property
    def runtime(self) -> Any:
        """The `mlrepro.runtime.Runtime` the run was started in (None if detection failed)."""
        return self._runtime

    @property
    def current_store(self) -> Store | None:
        """Where the run's records go now: its store, or the spool after the store failed."""
        return self._writer.store if self._writer is not None else self.store

    @property
    def spooled(self) -> bool:
        """True once the store failed and the rest of the run went to the local spool."""
        return self._writer is not None and self._writer.failed_over

    def after_writes(self, action: Callable[[], Any]) -> None:
        """Call `action()` on the writer thread once everything queued before it is written.

        Keeps slow work (encoding TensorBoard events, deleting staged files) out of the
        training loop. A run that writes nothing calls it at once. Failures are warnings.
        """
        if self._writer is None:
            try:
                action()
            except Exception as exc:  # noqa: BLE001
                self._warn(f"{_name_of(action)} failed: {exc!r}")
            return

        def op() -> list:
            action()
            return []

        self._writer.submit(op)

    def write_soon(self) -> None:
        """Ask the writer to write what is queued now rather than at its next interval."""
        if self._writer is not None:
            self._writer.wake()

    def adopt_id(self, run_id: str) -> None:
        """Take the chief's run id (a worker that writes nothing names the chief's run)."""
        if self.writes:
            raise MlreproError(f"run {self.id} writes its own record: only a run started with "
                               "write=False can adopt another run's id")
        with self._lock:
            self.id = run_id
            self.manifest["id"] = run_id

    def add_observer(self, observer: RunObserver) -> None:
        """Plug in an observer; a run that writes nothing has no observers."""
        if self._writer is None:
            return
        try:
            observer.started(self)
        except Exception as exc:  # noqa: BLE001 - reported at once, then set aside
            self._warn(redact_text(f"{observer!r} could not start: {exc}"))
            return
        self._observers.append(observer)

    def add_finish_hook(self, hook: Callable[["Run"], None]) -> None:
        """Call `hook(run)` after the final record is written (an observer of the end only)."""
        self.add_observer(FinishHook(hook))

    def fingerprints(self) -> dict:
        """The run's part fingerprints now (code, data, params, environment, run)."""
        return self._snapshot(clear_dirty=False)["fingerprints"]

    # -- writer-thread callbacks ------------------------------------------------------
    def _snapshot(self, clear_dirty: bool = True) -> dict:
        from mlrepro.capture.environment import refresh_frameworks

        with self._lock:
            refreshed = refresh_frameworks(self.manifest.get("environment") or {})
            if refreshed is not None:  # a framework was imported after the run started
                self.manifest["environment"] = refreshed
            manifest = copy.deepcopy(self.manifest)
            if clear_dirty:
                self._dirty = False
        writer = self._writer
        if writer is not None:
            summary = writer.summary_json()
            if summary:
                prior = self._prior_summary
                manifest["metrics_summary"] = {
                    **manifest.get("metrics_summary", {}),
                    **{name: _combine_summary(prior.get(name), s) for name, s in summary.items()}}
            manifest["warnings"] = self._warnings + len(writer.errors)
            if writer.dropped:
                manifest["dropped_records"] = writer.dropped
        parts = fingerprints(manifest)
        manifest["fingerprints"] = parts
        manifest["fingerprint"] = parts["run"]
        return manifest

    def _on_cycle(self) -> list:
        now = time.time()
        beat = now - self._last_manifest_write >= self.heartbeat_interval
        if not (self._dirty or beat):
            return []
        if beat and not self._finished:
            with self._lock:
                self.manifest["heartbeat"] = now
        self._last_manifest_write = now
        out = [ManifestWrite(self.id, self._snapshot())]
        if beat and not self._finished:
            out.insert(0, EventsAppend(self.id, [{"time": now, "kind": "heartbeat",
                                                   "step": self._next_step - 1}]))
        return out

    def _on_failover(self, spool: Store, error: Exception) -> None:
        try:
            spool.claim_run_id(self.id)
        except Exception:  # noqa: BLE001
            pass
        with self._lock:
            self.manifest.setdefault("spooled", {})["reason"] = str(error)
            self._dirty = True

    # -- ending ---------------------------------------------------------------------
    def flush(self, timeout: float = FINISH_TIMEOUT) -> bool:
        """Write everything logged so far; False if it did not finish within `timeout`."""
        if self._writer is None:
            return True
        with self._lock:
            self._dirty = True
        return self._writer.flush(timeout)

    def finish(self, status: str = record.FINISHED, *, error: str | None = None,
               timeout: float = FINISH_TIMEOUT) -> bool:
        """Mark the run ended and flush within `timeout` seconds; never hangs, never raises."""
        if status not in record.FINAL_STATUSES:
            raise MlreproError(f"status {status!r} is not a final status: use one of "
                               f"{', '.join(record.FINAL_STATUSES)}")
        with lifecycle.finishing():     # a signal now waits until the last records are written
            return self._finish(status, error, timeout)

    def _finish(self, status: str, error: str | None, timeout: float) -> bool:
        with self._lock:
            if self._finished:
                return True
            self._finished = True
            now = time.time()
            self.manifest.update(status=status, end_time=now, heartbeat=now)
            if error:
                self.manifest["error"] = redact_text(error)[-4000:]
            attempts = self.manifest.get("attempts") or []
            if attempts:
                attempts[-1].update(end_time=now, status=status)
            self._dirty = True
        registry.remove(self)
        if self._writer is None:
            return True
        self._refresh_modules()
        self.event("status", status=status)
        ok = self._writer.close(timeout)
        for observer in self._observers:
            try:
                observer.finished(self)
            except Exception as exc:  # noqa: BLE001 - the run's status stays the true one
                self._warn(f"{observer!r} failed at the end of the run: {exc!r}")
        if not ok:
            msg = (f"mlrepro could not write run {self.id} within {timeout:.0f}s "
                   f"({self._writer.pending()} records pending); its record may be incomplete")
            try:
                sys.stderr.write("WARNING: " + msg + "\n")
            except Exception:  # noqa: BLE001
                pass
        return ok

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish(record.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish(record.KILLED, error="KeyboardInterrupt")
        else:
            self.finish(record.FAILED, error="".join(
                traceback.format_exception(exc_type, exc, tb)))

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def path(self) -> str | None:
        """The run's directory, for a local store."""
        return self.store.run_dir(self.id) if self.store is not None else None

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, project={self.project!r}, status={self.status!r})"


def _combine_summary(earlier: dict | None, now: dict) -> dict:
    """One metric's summary over every attempt: this attempt's and the earlier ones'."""
    if not earlier:
        return now
    later = now.get("step", 0) >= earlier.get("step", 0) or not now.get("count")
    last = now if later else earlier
    return {"last": last.get("last"), "step": last.get("step"),
            "min": min(earlier.get("min", math.inf), now.get("min", math.inf)),
            "max": max(earlier.get("max", -math.inf), now.get("max", -math.inf)),
            "count": int(earlier.get("count", 0)) + int(now.get("count", 0))}


def start_run(project: str = "default", **kwargs) -> Run:
    """Start recording a run (see `Run` for the arguments)."""
    return Run(project, **kwargs)


# -- helpers ------------------------------------------------------------------------------

def _check(project, seed) -> None:
    if not isinstance(project, str) or not project.strip() or "/" in project:
        raise MlreproError(f"project {project!r} must be a non-empty name without '/': "
                           "e.g. project=\"cifar10\"")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise MlreproError(f"seed {seed!r} must be an int or None: e.g. seed=42")


def _discard(_item) -> None:
    pass


def _name_of(thing) -> str:
    return getattr(thing, "__qualname__", None) or repr(thing)


def _spool_store() -> Store:
    from mlrepro.store.local import LocalStore

    return LocalStore(spool_dir())


def _decide_writes(write: bool | None, rt: Any) -> bool:
    """Explicit `write=`, else: not with MLREPRO_DISABLE, and only on the chief."""
    if write is not None:
        return bool(write)
    return not env.DISABLE.get() and getattr(rt, "is_chief", True) is not False


def _seed_for(seed: int | None, deterministic: bool) -> int | None:
    """A deterministic run without a seed takes `$MLREPRO_SEED` (set by `mlrepro reproduce`)."""
    if seed is None and deterministic:
        return env.SEED.get()
    return seed


def reproduced_run() -> str | None:
    """The run `$MLREPRO_PARENT` says this process reproduces (never to be reopened), or None."""
    try:
        parent = _parent_from_env()
    except Exception:  # noqa: BLE001 - a malformed variable is reported when a run starts
        return None
    if isinstance(parent, Mapping) and parent.get("kind") == REPRODUCTION_OF and \
            parent.get("run"):
        return str(parent["run"])
    return None


def _parent_from_env() -> dict | None:
    """`$MLREPRO_PARENT`: JSON `{"kind", "run"}`, or a bare run id (a child of it)."""
    value = env.PARENT.get()
    if value is None or isinstance(value, dict):
        return value
    return {"kind": "child-of", "run": str(value)}
