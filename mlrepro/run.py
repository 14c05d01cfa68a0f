"""`Run`: the live record of one training run.

Everything a run writes goes through its background `Writer`; no method here
raises into training once the run has started (problems become warnings and
events). The last status is the true one: finished, failed, killed (SIGINT /
SIGTERM), preempted (SIGTERM on a spot job), or crashed (read from a dead writer).
"""

from __future__ import annotations

import copy
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any, Mapping

from mlrepro import record
from mlrepro.errors import MlreproError
from mlrepro.record import NO_EPOCH, ensure_safe_name, jsonable
from mlrepro.store import EventsAppend, ManifestWrite, ObjectPut, Store, open_store
from mlrepro.writer import Writer, spool_dir, warn

HEARTBEAT_ENV = "MLREPRO_HEARTBEAT_SECONDS"
FLUSH_ENV = "MLREPRO_FLUSH_SECONDS"
DISABLE_ENV = "MLREPRO_DISABLE"
SPOT_ENV = "MLREPRO_SPOT"
PARENT_ENV = "MLREPRO_PARENT"  # JSON {"kind": ..., "run": ...}: set by `mlrepro reproduce`
SEED_ENV = "MLREPRO_SEED"  # the seed for `seed=None`: set by `mlrepro reproduce` for generated seeds
FINISH_TIMEOUT = 5.0

_active: list["Run"] = []
_active_lock = threading.RLock()


def active_runs() -> list["Run"]:
    """Every unfinished run of this process, oldest first."""
    with _active_lock:
        return list(_active)


def active_run() -> "Run | None":
    """The most recently started run of this process that has not finished."""
    with _active_lock:
        return _active[-1] if _active else None


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class Run:
    """One run. Use `mlrepro.start_run(...)` to make one; also a context manager.

    Args:
        project: the project the run belongs to (a plain name).
        name: a human name for the run; defaults to its id.
        params: user hyperparameters (any JSON-able values; secrets are redacted).
        tags: free-form labels.
        seed: seed Python, NumPy and imported frameworks with this; recorded.
        deterministic: also enable op determinism (TensorFlow) and record it.
        store: a path, `s3://` URI or `Store`; default `$MLREPRO_STORE` or `./mlrepro-runs`.
        run_id: continue this run (a restart of the same job) instead of starting a new one.
        parent: `{"kind": "reproduction-of"|"resumed-from", "run": id}`.
        write: False makes a run that records nothing (non-chief workers).
        capture: capture code and environment at start (default True).

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
        if not isinstance(project, str) or not project.strip() or "/" in project:
            raise MlreproError(f"project {project!r} must be a non-empty name without '/': "
                               "e.g. project=\"cifar10\"")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise MlreproError(f"seed {seed!r} must be an int or None: e.g. seed=42")
        self.project = project
        self._lock = threading.RLock()
        self._dirty = True
        self._finished = False
        self._next_step = 0
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.heartbeat_interval = _float_env(HEARTBEAT_ENV, 10.0)
        self._last_manifest_write = 0.0
        self._warnings = 0
        self._runtime = runtime
        self._finish_hooks: list = []
        if parent is None and os.environ.get(PARENT_ENV):
            try:
                import json

                parent = json.loads(os.environ[PARENT_ENV])
            except ValueError:
                parent = {"kind": "child-of", "run": os.environ[PARENT_ENV]}
        if runtime is None:
            runtime = self._runtime = _detect_runtime()
        if write is None:
            write = os.environ.get(DISABLE_ENV, "") not in ("1", "true", "yes")
            if write and runtime is not None and getattr(runtime, "is_chief", True) is False:
                write = False
        self.writes = bool(write)

        from mlrepro.capture.redact import redact
        from mlrepro.capture.seeds import apply_seed

        if seed is None and deterministic and os.environ.get(SEED_ENV, "").isdigit():
            seed = int(os.environ[SEED_ENV])
        self.determinism = apply_seed(seed, deterministic)
        self.seed = self.determinism["seed"]
        now = time.time()
        if store is None and self.writes:
            store = _runtime_store(runtime)
        self.store = self._open_store(store) if self.writes else None
        resumed = None
        if run_id is not None and self.store is not None:
            resumed = self._load_for_resume(run_id)
        if resumed is not None:
            self.id = resumed["id"]
            self.manifest = resumed
            self.attempt = len(resumed.get("attempts") or [])
            resumed["attempts"] = list(resumed.get("attempts") or []) + [
                {"attempt": self.attempt, "start_time": now, "host": self.host, "pid": self.pid}]
            resumed.update(status=record.RUNNING, end_time=None, heartbeat=now, error=None,
                           writer={"host": self.host, "pid": self.pid})
            if params:
                resumed["params"].update(redact(jsonable(dict(params))))
        else:
            self.id = run_id or self._claim_id()
            self.attempt = 0
            self.manifest = record.new_manifest(self.id, project, name, started=now,
                                                host=self.host, pid=self.pid)
            self.manifest["params"] = redact(jsonable(dict(params or {})))
            self.manifest["tags"] = redact(jsonable(dict(tags or {})))
            self.manifest["parent"] = jsonable(dict(parent)) if parent else None
        if resumed is not None and parent and not resumed.get("parent"):
            resumed["parent"] = jsonable(dict(parent))
        self.manifest["seed"] = self.seed
        self.manifest["determinism"] = self.determinism
        self.manifest["heartbeat_interval"] = self.heartbeat_interval
        self._objects: list[ObjectPut] = []
        if capture and resumed is None:
            self._capture()
        elif capture:
            self._capture(environment_only=True)
        self._capture_runtime()
        self.writer = None
        if self.store is not None:
            self.writer = Writer(self.store, self.id,
                                 interval=_float_env(FLUSH_ENV, 0.5),
                                 spool_factory=self._spool_store,
                                 on_cycle=self._on_cycle, on_failover=self._on_failover)
            self._append = self.writer.points.append
            for put in self._objects:
                self.writer.submit(put)
            self._objects = []
            _runtime_export(self, runtime)
            _live_push(self)
            self.event("started" if resumed is None else "resumed", attempt=self.attempt)
            self.writer.wake()
        else:
            self._append = _discard
        with _active_lock:
            _active.append(self)
        from mlrepro import _lifecycle

        _lifecycle.install()

    # -- set-up -----------------------------------------------------------------
    def _open_store(self, store) -> Store | None:
        try:
            return open_store(store)
        except MlreproError:
            raise
        except Exception as exc:  # noqa: BLE001
            warn(f"mlrepro cannot open the store {store!r} ({exc}); recording to the spool")
            return self._spool_store()

    def _spool_store(self) -> Store:
        from mlrepro.store.local import LocalStore

        return LocalStore(spool_dir())

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
                self.store = self._spool_store()
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

    def _capture(self, environment_only: bool = False) -> None:
        from mlrepro.capture.environment import capture_environment

        try:
            self.manifest["environment"] = capture_environment()
        except Exception as exc:  # noqa: BLE001
            self._warn(f"environment capture failed: {exc!r}")
        if environment_only:
            return
        from mlrepro.capture.code import capture_code

        try:
            snap = capture_code()
            code = dict(snap.info)
            if snap.patch:
                put = ObjectPut(data=snap.patch)
                code["patch"] = _digest_bytes(snap.patch)
                code["patch_size"] = len(snap.patch)
                self._objects.append(put)
            if snap.entry_source is not None:
                put = ObjectPut(data=snap.entry_source)
                code["entry_point_object"] = _digest_bytes(snap.entry_source)
                self._objects.append(put)
            self.manifest["code"] = code
        except Exception as exc:  # noqa: BLE001
            self._warn(f"code capture failed: {exc!r}")

    def _capture_runtime(self) -> None:
        rt = self._runtime
        if rt is None:
            try:
                from mlrepro import runtime as runtime_mod

                rt = runtime_mod.detect()
            except Exception:  # noqa: BLE001 - runtime detection is descriptive only
                rt = None
        if rt is not None and hasattr(rt, "to_record"):
            try:
                self.manifest["runtime"] = rt.to_record()
            except Exception as exc:  # noqa: BLE001
                self._warn(f"runtime capture failed: {exc!r}")
        self._runtime = rt

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
        if self.writer is None:
            return
        self.writer.submit(lambda: self._store_artifact(path, name, dict(meta or {})))
        if wait:
            self.writer.flush(FINISH_TIMEOUT * 6)

    def _store_artifact(self, path: str, name: str, meta: dict) -> list:
        store = self.writer.store
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
            with self._lock:
                self.manifest["data"][str(name)] = jsonable(dict(fingerprint))
                self._dirty = True
        except Exception as exc:  # noqa: BLE001
            self._warn(f"log_data failed: {exc!r}")

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

    def warn(self, message: str) -> None:
        """A tracking problem: a `MlreproWarning`, a `warning` event and the run's warning count."""
        self._warn(message)

    def event(self, kind: str, **fields) -> None:
        if self.writer is None:
            return
        try:
            self.writer.submit(EventsAppend(self.id, [{"time": time.time(), "kind": kind,
                                                        **jsonable(fields)}]))
        except Exception:  # noqa: BLE001
            pass

    def _warn(self, message: str) -> None:
        self._warnings += 1
        with self._lock:
            self.manifest["warnings"] = self._warnings
            self._dirty = True
        self.event("warning", message=message)
        warn("mlrepro: " + message)

    # -- writer-thread callbacks ------------------------------------------------------
    def _snapshot(self, clear_dirty: bool = True) -> dict:
        from mlrepro.capture.fingerprint import fingerprints

        with self._lock:
            manifest = copy.deepcopy(self.manifest)
            if clear_dirty:
                self._dirty = False
        if self.writer is not None:
            summary = self.writer.summary_json()
            if summary:
                manifest["metrics_summary"] = {**manifest.get("metrics_summary", {}), **summary}
            manifest["warnings"] = self._warnings + len(self.writer.errors)
            if self.writer.dropped:
                manifest["dropped_records"] = self.writer.dropped
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

    def fingerprints(self) -> dict:
        """The run's part fingerprints now (code, data, params, environment, run)."""
        return self._snapshot(clear_dirty=False)["fingerprints"]

    def add_finish_hook(self, hook) -> None:
        """Call `hook(run)` on the writer's side after the final record is written."""
        self._finish_hooks.append(hook)

    # -- ending ---------------------------------------------------------------------
    def flush(self, timeout: float = FINISH_TIMEOUT) -> bool:
        """Write everything logged so far; False if it did not finish within `timeout`."""
        if self.writer is None:
            return True
        with self._lock:
            self._dirty = True
        return self.writer.flush(timeout)

    def finish(self, status: str = record.FINISHED, *, error: str | None = None,
               timeout: float = FINISH_TIMEOUT) -> bool:
        """Mark the run ended and flush within `timeout` seconds; never hangs, never raises."""
        if status not in record.FINAL_STATUSES:
            raise MlreproError(f"status {status!r} is not a final status: use one of "
                               f"{', '.join(record.FINAL_STATUSES)}")
        with self._lock:
            if self._finished:
                return True
            self._finished = True
            now = time.time()
            self.manifest.update(status=status, end_time=now, heartbeat=now)
            if error:
                from mlrepro.capture.redact import redact_text

                self.manifest["error"] = redact_text(error)[-4000:]
            attempts = self.manifest.get("attempts") or []
            if attempts:
                attempts[-1].update(end_time=now, status=status)
            self._dirty = True
        with _active_lock:
            if self in _active:
                _active.remove(self)
        if self.writer is None:
            return True
        self.event("status", status=status)
        ok = self.writer.close(timeout)
        for hook in self._finish_hooks:
            try:
                hook(self)
            except Exception as exc:  # noqa: BLE001 - the run's status stays the true one
                self._warn(f"finish hook {getattr(hook, '__name__', hook)!r} failed: {exc!r}")
        if not ok:
            msg = (f"mlrepro could not write run {self.id} within {timeout:.0f}s "
                   f"({self.writer.pending()} records pending); its record may be incomplete")
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
        run_dir = getattr(self.store, "run_dir", None)
        return run_dir(self.id) if run_dir else None

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, project={self.project!r}, status={self.status!r})"


def _discard(_item) -> None:
    pass


def _detect_runtime():
    """`mlrepro.runtime.detect()`, or None if it fails (runtime capture is descriptive)."""
    try:
        from mlrepro import runtime as runtime_mod

        return runtime_mod.detect()
    except Exception:  # noqa: BLE001
        return None


def _runtime_store(rt):
    """The runtime's default store (SageMaker: inside the checkpoint dir), or None."""
    try:
        from mlrepro import runtime as runtime_mod

        return runtime_mod.default_store(rt)
    except Exception:  # noqa: BLE001
        return None


def _runtime_export(run, rt) -> None:
    """On SageMaker, copy the finished run into the job's output (a finish hook)."""
    try:
        from mlrepro import runtime as runtime_mod

        runtime_mod.export_run_on_finish(run, rt)
    except Exception as exc:  # noqa: BLE001
        run._warn(f"cannot arrange to copy the run into the job output: {exc!r}")


def _live_push(run) -> None:
    """With MLREPRO_REMOTE set, push the run to that remote periodically and at the end."""
    from mlrepro.remote import REMOTE_ENV

    if not os.environ.get(REMOTE_ENV):
        return
    try:
        from mlrepro.live_push import attach

        attach(run)
    except Exception as exc:  # noqa: BLE001 - the run records locally all the same
        from mlrepro.capture.redact import redact_text

        run._warn(redact_text(f"cannot push this run to its remote: {exc}"))


def _digest_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def start_run(project: str = "default", **kwargs) -> Run:
    """Start recording a run (see `Run` for the arguments)."""
    return Run(project, **kwargs)
