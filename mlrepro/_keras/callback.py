"""`ReproCallback`: record a Keras training run by adding one callback to `model.fit`.

Works with Keras 3 on any backend (TensorFlow is the main lane) and with tf_keras
(Keras 2, `TF_USE_LEGACY_KERAS=1`): the same class speaks both callback protocols.
Importing this module imports Keras (whichever this process uses), never at
`import mlrepro`.

Accelerators and host syncs: batch-level logging never forces a per-step
device-to-host copy. The batch hook returns after one integer test on all but
every `log_every_n_steps`-th step (default 50) and never touches a tensor on
those. On Keras 3 the callback is `async_safe`, so Keras keeps dispatching batch
hooks on its callback thread: the values it hands over are already host floats
and the training loop never waits for us. On tf_keras the callback accepts
tensor logs (`_supports_tf_logs`), so Keras does not convert logs to NumPy on
every step for us; we convert only on the logged steps. Epoch-level values
(metrics, learning rate) are read once per epoch, when Keras has synced anyway.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import types
import weakref
from typing import Any, Iterable, Mapping

from mlrepro._keras import arguments as _arguments
from mlrepro._keras import cadence as _cadence
from mlrepro._keras import cbstate as _cbstate
from mlrepro._keras import chief as _chief
from mlrepro._keras import checkpoint as _ckpt
from mlrepro._keras import datafp as _datafp
from mlrepro._keras import exactness as _exactness
from mlrepro._keras import facts as _facts
from mlrepro._keras import export as _export
from mlrepro._keras import fitargs as _fitargs
from mlrepro._keras import flavour as _flavour
from mlrepro._keras import initial_state as _initial
from mlrepro._keras import order as _order
from mlrepro._keras import params as _params
from mlrepro._keras import pipeline as _pipeline
from mlrepro._keras import reproduction as _reproduction
from mlrepro._keras import resume as _resume
from mlrepro._keras import runfile as _runfile
from mlrepro._keras import resumestate as _resumestate
from mlrepro._keras import seeding as _seeding
from mlrepro._keras import steps as _steps
from mlrepro._keras import tensorboard as _tb
from mlrepro._keras.order import deterministic_dataset
from mlrepro import env as _env
from mlrepro.core import active_run, lifecycle as _lifecycle, start_run
from mlrepro.errors import warn as _warn
from mlrepro.runtime import detect_or_none
from mlrepro.runtime.strategy import check_workers

__all__ = ["ReproCallback", "deterministic_dataset", "DEFAULT_LOG_EVERY_N_STEPS"]

DEFAULT_LOG_EVERY_N_STEPS = 50
CHECKPOINT_EVERY_EPOCH = _arguments.CHECKPOINT_EVERY_EPOCH
LOCAL_CHECKPOINT_ROOT = "checkpoints"          # when mlrepro.runtime gives none
CHECKPOINT_SUBDIR = "mlrepro-{project}"        # inside the runtime's checkpoint dir
BATCH_PREFIX = "batch/"
EXPORT_FLUSH_TIMEOUT = 120.0
NEVER = 1 << 62      # "no step action is due": the step hook's one integer test fails
RESUME_SECTION = "resume"
DETERMINISM_SECTION = "determinism"
# Metrics that measure wall time: they differ between otherwise identical runs.
TIME_METRICS = ("epoch_time_s", "train_time_s", "examples_per_s", "steps_per_s")
WARNINGS_PER_HOOK = 3  # a hook failing on every step warns this often, then counts silently

_Base = _flavour.callback_base()


def _default_hook(self, *args, **kwargs):
    """A hook that does nothing; Keras skips callbacks whose hooks are all like this."""


_default_hook._is_default = True


class ReproCallback(_Base):
    """Record a Keras `fit` run: params, metrics, data, checkpoints, exports, TensorBoard.

    Starts a run in `on_train_begin` unless one is active (`mlrepro.active_run()`),
    and finishes only a run it started: `finished` at the end of `fit`, `failed`
    (or `killed` on Ctrl-C) when `fit` raises. A restarted job that finds an
    unfinished run beside its checkpoints continues that run as a new attempt from
    its last checkpoint. Tracking problems become `MlreproWarning`s; they never
    fail `fit`.

    Args:
        project: the run's project (a plain name).
        store: where runs are recorded (path or `s3://`); default `$MLREPRO_STORE`,
            the runtime's store, or `./mlrepro-runs`.
        name: a human name for the run.
        params: your hyperparameters, recorded as the run's params.
        tags: free-form labels.
        seed: seed Python, NumPy, TensorFlow and Keras now (create the callback before
            the model for seeded initial weights).
        deterministic: also enable TensorFlow op determinism (implies a seed; one is
            drawn and recorded if none is given).
        log_every_n_steps: log batch metrics every N steps (0: epoch metrics only).
        checkpoint: checkpoint directory (and where the run id is kept for restarts);
            default `<runtime checkpoint dir>/mlrepro-<project>`; False disables
            checkpoints and resume.
        checkpoint_every: `"epoch"` or an int N: at every N-th epoch end;
            `"N steps"`: after every N optimizer steps; a duration (`"30s"`, `"10min"`,
            `"1h"`): at the first step boundary after that much time since the last
            checkpoint. A restart continues at the checkpoint's batch when the input
            order allows it (`resume.granularity`), else at its epoch's start. Default
            (None): `$MLREPRO_CHECKPOINT_EVERY` if set (`mlrepro launch --spot` sets
            `10min`), else `"epoch"`.
        preemption_timeout: on SIGTERM (spot and stop, eviction, `timeout`) a checkpoint
            is written at the next step boundary if one comes within this many seconds
            (a number or `"30s"`; default 30, `$MLREPRO_PREEMPTION_TIMEOUT` overrides);
            then the run ends `preempted` and the process exits as the signal asks.
        keep_checkpoints: how many checkpoints to keep on disk (all are in the store).
        export: formats written at the end, from `("keras", "saved_model")`; False: none.
        tensorboard: write TensorBoard scalars and hparams under the run (local stores).
        resume: `"auto"`: continue an unfinished run beside the checkpoints only when this
            is the same experiment (command line, code, params, optimizer, model, fit
            arguments), else start a new run and warn naming every difference; `"never"`:
            always a new run; `"must"`: raise unless a compatible unfinished run is there;
            `"force"`: continue it even if something changed (recorded in the attempt).

    Example:
        >>> import keras, numpy as np, mlrepro.keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> cb = mlrepro.keras.ReproCallback(project="demo", checkpoint=False, export=False)
        >>> _ = model.fit(np.zeros((8, 4)), np.zeros(8), epochs=1, verbose=0, callbacks=[cb])
        >>> cb.run.status
        'finished'
    """

    async_safe = True  # Keras 3: our batch hook is thread-safe; keep Keras' async dispatch

    def __init__(self, project: str = "default", *, store: Any = None, name: str | None = None,
                 params: Mapping | None = None, tags: Mapping | None = None,
                 seed: int | None = None, deterministic: bool = False,
                 log_every_n_steps: int = DEFAULT_LOG_EVERY_N_STEPS,
                 checkpoint: "str | os.PathLike | bool | None" = None,
                 checkpoint_every: "str | int | None" = None,
                 keep_checkpoints: int = 2,
                 export: "Iterable[str] | bool | None" = _export.FORMATS,
                 tensorboard: bool = True, resume: str = _resume.AUTO,
                 preemption_timeout: "float | str" = _cadence.DEFAULT_PREEMPTION_TIMEOUT):
        super().__init__()
        self._supports_tf_logs = True  # tf_keras: tensors on batch hooks, read every N steps
        checkpoint_every = _arguments.default_cadence(checkpoint_every)
        _arguments.validate(project, seed, log_every_n_steps, checkpoint, checkpoint_every,
                            keep_checkpoints)
        self.project = project
        self._store = store
        self._name = name
        self._user_params = dict(params or {})
        self._tags = dict(tags or {})
        self._every = int(log_every_n_steps)
        self._checkpoint_arg = checkpoint
        self._cadence = _cadence.parse_every(checkpoint_every)
        self._checkpoint_every = self._cadence.epochs   # None: steps or a duration
        override = _env.PREEMPTION_TIMEOUT.get()
        self.preemption_timeout = _cadence.parse_duration(
            override, _env.PREEMPTION_TIMEOUT.name) if override is not None else \
            _cadence.parse_duration(preemption_timeout, "preemption_timeout")
        self._keep = int(keep_checkpoints)
        self._formats = _arguments.export_formats(export)
        self._tensorboard = bool(tensorboard)
        self._resume_mode = _resume.check(resume, checkpoint)
        self._seed_record = _seeding.apply_now(seed, deterministic)
        _initial.warn_built_before_seed(self._seed_record)
        self.run: Any = None
        self._reset()
        if self._every == 0:  # let Keras skip our batch hooks entirely
            self.on_train_batch_end = types.MethodType(_default_hook, self)

    # -- state ------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._owns_run = False
        self._writes = False
        self._reads_along = False         # a non-writing MWMS worker: joins the chief's reads
        self._no_exports = False          # a worker is missing: no weights read, no exports
        self._ckpt_dir: str | None = None
        self._step0 = 0                   # global step at the start of the current epoch
        self._epoch = 0
        self._batch = -1
        self._t_epoch = 0.0
        self._t_train_end: float | None = None
        self._examples_per_epoch: int | None = None
        self._tb_writer = None
        self._tb_points: list = []
        self._batch_names: dict = {}
        self._train_ended = False
        self._finalizer = None
        self._last_epoch: int | None = None
        self._temp_dirs: list[str] = []
        self._failures: dict[str, int] = {}
        self._resume = _resumestate.ResumeState()
        self._pending_checkpoint: tuple | None = None   # (epoch, step, random state)
        self._due = NEVER                 # global step at which the step hook acts
        self._last_ckpt_step: int | None = None
        self._clock = None                # a duration cadence's timer
        self._why_not_step: str | None = "checkpoints are off"
        self._train_pipe = None
        self._epoch_iterator = None
        self._skip: tuple | None = None   # (epoch, batches) the resumed epoch skips
        self._metric_arrays: dict | None = None
        self._reassign: dict | None = None  # a mid-epoch checkpoint, assigned again at its batch
        self._skipped = 0                 # batches of this epoch an earlier attempt trained
        self._taking_sigterm = False

    # -- Keras hooks --------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        try:
            self._begin()
        except _resume.ResumeRefused:
            raise  # resume="must": the user asked for a failure rather than a new run
        except Exception as exc:  # noqa: BLE001 - tracking never fails fit
            if self.run is None:
                self.run = _NullRun()
            self._hook_failed("on_train_begin", exc)

    def on_epoch_begin(self, epoch, logs=None):
        if self.run is not None and self._ckpt_dir is not None:
            self._write_pending_checkpoint()
            self._stage_epoch("resume state",
                              lambda: self._resume.begin_epoch(self.run, self.model, epoch))
        self._epoch = epoch
        self._batch = -1
        self._skipped = 0
        if self._skip is not None:
            skip, self._skip = self._skip, None
            if skip[0] == epoch:
                self._stage_epoch("skip trained batches", lambda: self._skip_batches(*skip))
        self._t_train_end = None
        self._t_epoch = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        # Called on the main thread, between two steps (Keras 3 dispatches only the
        # batch-end hooks on its callback thread): the weights are those of a real
        # step boundary. All but the steps that save pass one integer test.
        if self._step0 + batch < self._due:
            return
        try:
            self._at_step_boundary(batch)
        except Exception as exc:  # noqa: BLE001
            self._hook_failed("on_train_batch_begin", exc)

    def on_train_batch_end(self, batch, logs=None):
        try:
            if batch > self._batch:
                self._batch = batch
            step = self._step0 + batch + 1
            if step % self._every or not logs:
                return
            names = self._batch_names
            values = {}
            for key, value in logs.items():
                name = names.get(key)
                if name is None:
                    name = names[key] = BATCH_PREFIX + key
                values[name] = value
            self.run.log_metrics(values, step=step, epoch=self._epoch)
            if self._tb_writer is not None:
                self._tb_points.append((step, values))
        except Exception as exc:  # noqa: BLE001
            self._hook_failed("on_train_batch_end", exc)

    def on_test_begin(self, logs=None):
        if self._t_train_end is None:
            self._t_train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        try:
            self._end_epoch(epoch, logs or {})
        except Exception as exc:  # noqa: BLE001
            self._hook_failed("on_epoch_end", exc)

    def on_train_end(self, logs=None):
        try:
            self._end()
        except Exception as exc:  # noqa: BLE001
            self._hook_failed("on_train_end", exc)

    # -- tf_keras protocol (when the base class is Keras 3's) -------------------------------
    def _implements_train_batch_hooks(self) -> bool:
        return self._checkpoint_arg is not False or \
            not getattr(self.on_train_batch_end, "_is_default", False)

    def _implements_test_batch_hooks(self) -> bool:
        return False

    def _implements_predict_batch_hooks(self) -> bool:
        return False

    # -- begin --------------------------------------------------------------------------------
    def _begin(self) -> None:
        self._stop_step_checkpoints()   # a fit before this one that raised
        self._reset()
        self.run = None
        model = self.model
        fit = _fitargs.find(model)
        runtime = detect_or_none()
        self._writes = _chief.is_chief(model, runtime)
        info = None
        self._ckpt_dir = self._checkpoint_dir(runtime)
        if self._ckpt_dir is not None:
            info = _runfile.read(self._ckpt_dir)
            if _runfile.held_by_live_process(info):
                _warn(f"mlrepro: another process (pid {info.get('pid')}) is training into "
                      f"{self._ckpt_dir}; this run takes no checkpoints: pass "
                      "ReproCallback(checkpoint=...) a directory of its own")
                self._ckpt_dir, info = None, None
            if _reproduction.holds_original(info):  # a re-run never continues the original
                self._ckpt_dir, info = _reproduction.fresh_checkpoint_dir(self.project), None
        resumable = _runfile.resumable(info, self.project)
        decision = _resume.decide(self._resume_mode, info, resumable, project=self.project,
                                  ckpt_dir=self._ckpt_dir, store=self._store, runtime=runtime,
                                  model=model, fit=fit, keras_params=self.params,
                                  user_params=self._user_params)
        resumable = decision.resume
        active = active_run()
        if active is not None:
            self.run, self._owns_run = active, False
            if self._user_params:
                active.log_params(self._user_params)
        else:
            store = self._store if self._store is not None else (
                info.get("store") if resumable else None)
            self.run = start_run(
                self.project, name=self._name, params=self._user_params, tags=self._tags,
                store=store, run_id=info["run_id"] if resumable else None,
                write=self._writes, runtime=runtime)
            self._owns_run = True
        run = self.run
        self._stage("resume decision", lambda: self._note_decision(decision))
        self._writes = self._writes and getattr(run, "writes", True)
        self._reads_along = not self._writes and _multi_worker(model)
        self._watch_fit(fit)
        # Workers first: under MWMS the stages below read variables through collectives
        # that every worker must join (see _in_scratch), which a missing worker would not.
        workers = self._stage("check_workers", lambda: _check_workers(run, model))
        if _multi_worker(model) and not (workers or {}).get("checked"):
            self._without_shared_reads(run)
        kept = None
        if not self._no_exports:   # the initial state's save reads every variable
            kept = self._stage("initial state", lambda: _initial.keep(
                run, model, self._seed_record, self._writes, along=self._reads_along))
        self._stage("determinism", lambda: self._record_determinism(model))
        if kept:
            run.update_section(DETERMINISM_SECTION, **kept)
        restored = None
        if self._ckpt_dir is not None:
            if self._writes and info is not None and not resumable:
                _ckpt.remove_all(self._ckpt_dir)  # a finished run's checkpoints
            if self._writes:
                self._stage("run file", lambda: self._write_runfile(_runfile.RUNNING))
            self._stage("optimizer build", lambda: _flavour.build_optimizer(model))
            self._stage("random state", lambda: self._resume.prepare(model, fit))
            self._why_not_step = "the granularity check failed"
            self._stage("granularity", lambda: self._judge_steps(model, fit))
            if resumable:
                restored = self._stage("restore", lambda: self._restore(model))
        initial = (restored or {}).get("next_epoch", int(fit.arguments.get("initial_epoch") or 0))
        self._stage("input order", lambda: _order.set_epoch(initial))
        auto = self._stage("params", lambda: self._record_params(model, fit)) or {}
        pipes = self._stage("data", lambda: self._record_data(fit)) or {}
        self._stage("resume", lambda: self._record_resume(model, fit, pipes, restored))
        self._examples_per_epoch = _fitargs.examples_per_epoch(fit, self.params.get("steps"))
        if self._tensorboard and self._writes:
            self._stage("tensorboard", lambda: self._open_tensorboard(auto))
        if self._ckpt_dir is not None:
            self._stage("step checkpoints", self._start_step_checkpoints)

    def _note_decision(self, decision: _resume.Decision) -> None:
        if decision.forced:
            self.run.note_attempt(resume="force", changed=decision.differences)
            self.run.event("resume_forced", run=decision.old_run, changed=decision.differences)
        elif decision.differences:
            self.run.event("resume_declined", run=decision.old_run,
                           differences=decision.differences)
            self.run.warn(_resume.declined_message(decision, self.run.id, self._ckpt_dir))

    def _stage(self, what: str, fn):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one stage failing costs that stage only
            self._hook_failed(f"on_train_begin ({what})", exc)
            return None

    def _checkpoint_dir(self, runtime: Any) -> str | None:
        arg = self._checkpoint_arg
        if arg is False:
            return None
        if arg is not None and arg is not True:
            return os.path.abspath(os.fspath(arg))
        root = getattr(runtime, "checkpoint_dir", None) or LOCAL_CHECKPOINT_ROOT
        return os.path.abspath(os.path.join(root, CHECKPOINT_SUBDIR.format(project=self.project)))

    def _write_runfile(self, status: str, latest: str | None = None) -> None:
        if self._ckpt_dir is None or not self._writes:
            return
        current = _runfile.read(self._ckpt_dir) or {}
        store = getattr(getattr(self.run, "store", None), "uri", None)
        _runfile.write(self._ckpt_dir, run_id=self.run.id, project=self.project, store=store,
                       status=status, latest=latest or current.get("latest"))

    def _restore(self, model: Any) -> dict | None:
        newest = _ckpt.latest(self._ckpt_dir)
        path = newest if self._why_not_step is None else _ckpt.latest(self._ckpt_dir,
                                                                        epoch_end=True)
        if path is None:
            return None
        try:
            meta = _ckpt.restore(model, path, self._resume.variables)
        except _ckpt.CheckpointMismatch as exc:
            self._hook_failed("restore", RuntimeError(
                f"checkpoint {path} does not fit this model ({exc}); training starts afresh"))
            return None
        epoch = int(meta["epoch"])
        batch = int(meta.get("batch") or 0)
        step = int(meta["global_step"])
        _flavour.set_initial_epoch(model, epoch + 1)
        self._step0 = step - batch        # the global step at the start of the epoch
        self._last_ckpt_step = step
        if epoch >= 0:
            self._last_epoch = epoch  # a restart after the last epoch still exports
        if batch:
            self._skip = (epoch + 1, batch)
            self._metric_arrays = meta.get("metric_arrays") or {}
        if not _ckpt.is_epoch_end(path):   # read after that epoch's on_epoch_begin hooks
            self._reassign = dict(meta, path=path)
        reached = self._furthest_step(newest)
        restored = {"checkpoint": os.path.basename(path), "epoch": epoch,
                    "next_epoch": epoch + 1, "batch": batch, "global_step": step,
                    "weights_digest": meta.get("weights_digest"),
                    "from_run": meta.get("run_id"), "attempt": self.run.attempt,
                    "verified": meta.get("verified"),
                    "lost_steps": max(0, reached - step) if reached is not None else None}
        self._resume.pending = dict(meta, path=path)
        self.run.event("restored", **restored)
        return restored

    def _watch_fit(self, fit: _fitargs.FitCall) -> None:
        """Learn that `fit` raised: its CallbackList dies without `on_train_end`."""
        if not self._owns_run or fit.callback_list is None:
            return
        self._finalizer = weakref.finalize(fit.callback_list, _fit_gone, weakref.ref(self))
        self._finalizer.atexit = False  # at exit, mlrepro.core.run's own hook knows the exception

    def _record_determinism(self, model: Any) -> None:
        run = self.run
        record = dict(run.section(DETERMINISM_SECTION) or {})
        rec = self._seed_record
        if rec.get("applied"):
            record.update(seed=rec.get("seed"), deterministic=rec.get("deterministic"),
                          applied=rec.get("applied"), applied_by="ReproCallback.__init__")
            if rec.get("seed_generated"):
                record["seed_generated"] = True
            run.set_section("seed", rec.get("seed"))
        determinism = _seeding.op_determinism()
        if determinism is not None:
            record["op_determinism"] = determinism
        record["model_built_before_seed"] = bool(rec.get("model_existed"))
        if not self._no_exports:   # reading the weights is a collective under MWMS
            record["initial_weights_digest"] = _ckpt.weights_digest(model)
        run.set_section(DETERMINISM_SECTION, record)

    def _record_params(self, model: Any, fit: _fitargs.FitCall) -> dict:
        auto, texts = _params.collect(model, fit.arguments, self.params)
        if not fit.found:
            auto["fit"]["note"] = "fit's frame was not found; only Keras' params are known"
        self.run.log_params(auto, auto=True)
        if self._writes and "model_config.json" in texts and \
                "config" not in (auto.get("model") or {}):
            self._log_text_artifact("model_config.json", texts["model_config.json"])
        return auto

    def _log_text_artifact(self, name: str, text: str) -> None:
        directory = tempfile.mkdtemp(prefix="mlrepro-keras-")
        self._temp_dirs.append(directory)
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        self.run.log_artifact(path, name=name)

    def _judge_steps(self, model: Any, fit: _fitargs.FitCall) -> None:
        """Sets why a restart could not continue at a checkpoint's batch (None: it can)."""
        self._epoch_iterator = fit.epoch_iterator
        if _pipeline.is_dataset(fit.x):
            self._train_pipe = _pipeline.analyze(fit.x)
        facts = _facts.gather(model, fit, {"train": self._train_pipe}, self._seed_record,
                              scan=self._resume.scan, callbacks=self._resume.callbacks,
                              pipeline_state=len(self._resume.pipeline_variables))
        spe = getattr(model, "steps_per_execution", 1)
        try:
            spe = int(spe if not hasattr(spe, "numpy") else spe.numpy())
        except Exception:  # noqa: BLE001
            spe = 1
        self._why_not_step = _steps.why_not_step(facts, spe, fit.epoch_iterator)

    def _furthest_step(self, newest: str | None) -> int | None:
        """The furthest global step the interrupted attempts are known to have trained:
        the newest checkpoint's, or their last metric point's, whichever is later."""
        reached = None
        if newest is not None:
            try:
                reached = int(_ckpt.read_meta(newest)["global_step"])
            except Exception:  # noqa: BLE001
                reached = None
        try:
            points = self.run.store.read_points(self.run.id)
            last = max((s[-1] for s in (points.steps(n) for n in points.names()) if s),
                       default=None)
            if last is not None and (reached is None or last > reached):
                reached = int(last)
        except Exception:  # noqa: BLE001 - a store that cannot read points back
            pass
        return reached

    # -- step checkpoints and SIGTERM -----------------------------------------------------------
    def _start_step_checkpoints(self) -> None:
        if self._reassign is not None:
            self._due = 0   # the first step boundary assigns the checkpoint again
        if self._ckpt_dir is None or not (self._writes or self._reads_along):
            return
        if self._cadence.steps is not None:
            n = self._cadence.steps
            self._due = 0 if self._reassign is not None else (self._step0 // n + 1) * n
        elif self._cadence.seconds is not None:
            if _multi_worker(self.model):
                self.run.warn(f"checkpoint_every={self._cadence.describe()!r}: workers of "
                              "MultiWorkerMirroredStrategy cannot agree on a wall-clock "
                              "moment, so this run checkpoints at epoch ends: use a number "
                              "of steps")
                self._checkpoint_every = 1
            else:
                self._restart_clock()
        if not _multi_worker(self.model):   # workers would save at different steps
            _lifecycle.take_sigterm(self)
            self._taking_sigterm = True

    def _stop_step_checkpoints(self) -> None:
        self._due = NEVER
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        if self._taking_sigterm:
            _lifecycle.release_sigterm(self)
            self._taking_sigterm = False

    def _restart_clock(self) -> None:
        """A duration cadence: the step hook acts at the first step after `seconds`."""
        if self._cadence.seconds is None or self._train_ended:
            return
        if self._clock is not None:
            self._clock.cancel()
        import threading

        self._clock = threading.Timer(self._cadence.seconds, self._make_due)
        self._clock.daemon = True
        self._clock.start()

    def _make_due(self) -> None:
        self._due = 0

    def request(self) -> None:
        """lifecycle: SIGTERM came (main thread); save at the next step boundary."""
        self._due = 0

    def _at_step_boundary(self, batch: int) -> None:
        step = self._step0 + batch
        if self._reassign is not None:
            meta, self._reassign = self._reassign, None
            self._assign_again(meta, batch)
        if _sigterm_waiting():
            self._preempt_at(batch)
            return
        if self._cadence.steps is not None:
            n = self._cadence.steps
            self._due = (step // n + 1) * n
        else:
            self._due = NEVER
        if step == self._last_ckpt_step:
            self._restart_clock()
            return
        self._save_at_step(batch, step)

    def _save_at_step(self, batch: int, step: int) -> str | None:
        state = self._resume.read_state(self.model)
        if self._writes:
            return self._save_checkpoint(self._epoch - 1, step, state, batch=batch)
        if self._reads_along:   # an MWMS worker: the chief's reads, into scratch
            _in_scratch(lambda d: _ckpt.save(
                self.model, d, epoch=self._epoch - 1, global_step=step, extra={},
                batch=batch, extra_arrays=_steps.metric_arrays(self.model),
                **self._resume.checkpoint_extras(state)))
            self._last_ckpt_step = step
        return None

    def _preempt_at(self, batch: int | None) -> None:
        """Save the state of this step boundary (or of the train end, `batch` None), record
        it, end the run as preempted and exit as SIGTERM asks."""
        if not _lifecycle.start_saving():
            return   # the deadline came first and ended the run
        t0 = time.monotonic()
        name, error = None, None
        step = self._step0 + (batch or 0)
        try:
            if self._writes and self._ckpt_dir is not None:
                if step == self._last_ckpt_step:
                    name = os.path.basename(_ckpt.latest(self._ckpt_dir) or "") or None
                elif batch is None:
                    name = self._save_checkpoint(self._last_epoch if self._last_epoch
                                                 is not None else -1, step,
                                                 self._resume.read_state(self.model))
                else:
                    name = self._save_at_step(batch, step)
        except Exception as exc:  # noqa: BLE001 - then the record says nothing was saved
            error = repr(exc)
            self._hook_failed("preemption checkpoint", exc)
        note = {"checkpoint": name, "step": step, "epoch": self._epoch,
                "batch": batch, "save_seconds": round(time.monotonic() - t0, 3)}
        if error:
            note["reason"] = f"the checkpoint failed: {error}"[:500]
        try:
            self.run.event("preemption_checkpoint", **note)
        except Exception:  # noqa: BLE001
            pass
        self._stop_step_checkpoints()
        _lifecycle.end_preempted(**note)    # ends every run; the process exits as asked

    def _assign_again(self, meta: dict, batch: int) -> None:
        """At the resumed batch, after every callback's on_epoch_begin ran again, assign the
        mid-epoch checkpoint once more: the state it holds was read at this very point,
        after those hooks (a LearningRateScheduler sets the rate there; BackupAndRestore
        loads its own epoch backup in on_train_begin)."""
        if int(meta.get("batch") or 0) != batch:
            self._hook_failed("resume", RuntimeError(
                f"the resumed epoch began at batch {batch}, not at the checkpoint's batch "
                f"{meta.get('batch')}"))
            return
        again = _ckpt.restore(self.model, meta["path"], self._resume.variables)
        _cbstate.restore(self._resume.callbacks, meta.get("callbacks") or {},
                         again.get("callback_arrays") or {})
        current = dict((self.run.section(RESUME_SECTION) or {}).get("restored") or {})
        current.update(assigned_at_batch=batch, verified=again.get("verified"))
        self.run.update_section(RESUME_SECTION, restored=current)
        if again.get("verified") is False:
            self._resume._fail(self.run, "the restored state does not match the digest the "
                                         "checkpoint stored")

    def _skip_batches(self, epoch: int, count: int) -> None:
        _steps.skip_batches(self._epoch_iterator, count)
        self._skipped = count
        arrays, self._metric_arrays = self._metric_arrays, None
        restored = _steps.restore_metrics(self.model, arrays or {})
        current = dict((self.run.section(RESUME_SECTION) or {}).get("restored") or {})
        current.update(skipped_batches=count, metrics_restored=restored)
        if not restored:
            current["metrics_note"] = (f"epoch {epoch}'s epoch-level metrics cover only the "
                                       f"batches after batch {count}")
        self.run.update_section(RESUME_SECTION, restored=current)

    def _record_data(self, fit: _fitargs.FitCall) -> dict:
        pipes = {}
        inputs = {"train": (fit.x, fit.y, fit.sample_weight)}
        if fit.validation is not None:
            val = fit.validation
            if _pipeline.is_dataset(val) or not isinstance(val, (tuple, list)):
                inputs["validation"] = (val, None, None)
            else:
                val = tuple(val) + (None,) * (3 - len(val))
                inputs["validation"] = val[:3]
        if not fit.found:
            return pipes
        for role, (x, y, sw) in inputs.items():
            pipe = self._train_pipe if role == "train" and self._train_pipe is not None \
                else _pipeline.analyze(x) if _pipeline.is_dataset(x) else None
            pipes[role] = pipe
            self.run.log_data(role, _datafp.fingerprint(x, y, sw, role=role, pipe=pipe))
        return pipes

    def _record_resume(self, model: Any, fit: _fitargs.FitCall, pipes: dict,
                       restored: dict | None) -> None:
        facts = _facts.gather(model, fit, pipes, self._seed_record, scan=self._resume.scan,
                              callbacks=self._resume.callbacks,
                              pipeline_state=len(self._resume.pipeline_variables))
        verdict = _exactness.judge(facts)
        verdict.update(checkpoint_dir=self._ckpt_dir,
                       checkpoint_every=self._cadence.describe() if self._ckpt_dir else None,
                       restored=restored, attempt=self.run.attempt)
        if self._ckpt_dir is not None:
            verdict["granularity"] = _steps.STEP if self._why_not_step is None else _steps.EPOCH
            if self._why_not_step is not None:
                verdict["why_not_step"] = self._why_not_step
            if self._why_not_step is None:
                verdict["notes"] = [n for n in verdict["notes"]
                                    if n != _exactness.NOTE_EPOCH_BOUNDARY] + [
                    "resume restores the newest checkpoint (an epoch-end checkpoint, or a step "
                    "checkpoint: checkpoint_every in steps or a duration, or at SIGTERM) and "
                    "skips the batches its epoch already trained, drawn in the same order"]
        if restored:
            verdict["lost_steps"] = restored.get("lost_steps")
            self.run.note_attempt(restored_step=restored.get("global_step"),
                                  lost_steps=restored.get("lost_steps"),
                                  granularity=verdict.get("granularity"))
        if self._ckpt_dir is None:
            verdict["reasons"] = list(verdict["reasons"]) + ["checkpoints are off"]
            verdict["exact"] = False
        if restored and restored.get("verified") is False:
            verdict["reasons"] = list(verdict["reasons"]) + [
                "the restored state does not match the digest the checkpoint stored"]
            verdict["exact"] = False
        self.run.set_section(RESUME_SECTION, verdict)

    def _open_tensorboard(self, auto: dict) -> None:
        logdir = _tb.logdir_for(self.run)
        if logdir is None:
            return
        if not _tb.available():
            self._hook_failed("on_train_begin (tensorboard)", RuntimeError(
                "TensorBoard is not installed, so no event files are written: "
                "pip install tensorboard, or pass tensorboard=False"))
            return
        self._tb_writer = _tb.EventWriter(logdir)
        self.run.add_observer(self._tb_writer)   # closes the event file if the run ends first
        user = dict(self.run.section("params") or {})
        self._tb_writer.hparams(_params.hparams(user, auto), trial_id=self.run.id)

    # -- epochs ---------------------------------------------------------------------------------
    def _end_epoch(self, epoch: int, logs: Mapping) -> None:
        now = time.perf_counter()
        run = self.run
        steps = self._batch + 1 if self._batch >= 0 else int(self.params.get("steps") or 0)
        step = self._step0 + steps
        elapsed = now - self._t_epoch
        train_time = (self._t_train_end or now) - self._t_epoch
        values = dict(logs)
        lr = _params.learning_rate(self.model)
        if lr is not None:
            values["lr"] = lr
        values["epoch_time_s"] = elapsed
        values["train_time_s"] = train_time
        if train_time > 0:   # rates of what this attempt trained
            trained = steps - self._skipped
            if self._examples_per_epoch:
                values["examples_per_s"] = self._examples_per_epoch * (
                    trained / steps if steps else 1.0) / train_time
            if trained:
                values["steps_per_s"] = trained / train_time
        run.log_metrics(values, step=step, epoch=epoch)
        self._step0 = step
        self._last_epoch = epoch
        if self._tb_writer is not None:
            points, self._tb_points = self._tb_points, []
            points.append((step, values))
            # Encoded and written on the run's writer thread, not in the training loop.
            tb = self._tb_writer
            run.after_writes(lambda: tb.scalars(points))
        at_end = self._checkpoint_every is not None and \
            (epoch + 1) % self._checkpoint_every == 0
        # Step and duration cadences write epoch-end checkpoints too when a restart
        # cannot start mid-epoch: they are what it restores.
        at_end = at_end or (self._checkpoint_every is None and self._why_not_step is not None)
        if self._ckpt_dir is not None and self._writes and at_end:
            # Written when every callback's on_epoch_end has run (ours runs first, before
            # EarlyStopping counts or ReduceLROnPlateau lowers the rate): at the next
            # on_epoch_begin or at the end. Random state is read now, before tf_keras makes
            # the next epoch's iterator. A worker reading along does the same reads.
            self._pending_checkpoint = (epoch, step, self._resume.read_state(self.model))
        elif self._ckpt_dir is not None and self._reads_along and at_end:
            self._pending_checkpoint = (epoch, step, self._resume.read_state(self.model))
        _order.set_epoch(epoch + 1)
        run.write_soon()

    def _stage_epoch(self, what: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            self._hook_failed(f"on_epoch_end ({what})", exc)

    def _write_pending_checkpoint(self) -> None:
        pending, self._pending_checkpoint = self._pending_checkpoint, None
        if pending is not None and self._writes and pending[1] == self._last_ckpt_step:
            return   # a step checkpoint at this very step was written already
        if pending is not None and self._writes:
            self._stage_epoch("checkpoint", lambda: self._save_checkpoint(*pending))
        elif pending is not None:   # an MWMS worker: the chief's reads, into scratch
            epoch, step, state_arrays = pending
            self._stage_epoch("checkpoint", lambda: _in_scratch(lambda d: _ckpt.save(
                self.model, d, epoch=epoch, global_step=step, extra={},
                **self._resume.checkpoint_extras(state_arrays))))

    def _save_checkpoint(self, epoch: int, step: int, state_arrays: list,
                         batch: int | None = None) -> str:
        """An epoch-end checkpoint, or (with `batch`) one `batch` batches into epoch+1."""
        run = self.run
        mid = {} if batch is None else {"batch": batch,
                                        "extra_arrays": _steps.metric_arrays(self.model)}
        path = _ckpt.save(self.model, self._ckpt_dir, epoch=epoch, global_step=step,
                          extra={"run_id": run.id, "attempt": run.attempt,
                                 "project": self.project},
                          **mid, **self._resume.checkpoint_extras(state_arrays))
        self._last_ckpt_step = step
        where = f"epoch {epoch}" if batch is None else f"step {step}"
        self._resume.check(run, self.model, where)
        name = os.path.basename(path)
        run.log_artifact(path, name="checkpoints/" + name[len("ckpt-"):],
                         meta={"epoch": epoch, "global_step": step, "batch": batch or 0})
        self._write_runfile(_runfile.RUNNING, latest=name)
        directory, keep = self._ckpt_dir, self._keep
        run.after_writes(lambda: _ckpt.prune(directory, keep))
        self._restart_clock()
        return name

    # -- end -------------------------------------------------------------------------------------
    def _end(self) -> None:
        self._train_ended = True
        if self._finalizer is not None:
            self._finalizer.detach()
        self._stop_step_checkpoints()
        run = self.run
        if run is None:
            return
        self._write_pending_checkpoint()
        if _sigterm_waiting():   # fit ended before another step: its end is the boundary
            self._stage_end("preemption checkpoint", lambda: self._preempt_at(None))
        if self._no_exports:
            pass
        elif self._writes and self._formats and self._last_epoch is not None:
            self._stage_end("export", self._export_model)
        elif self._reads_along and self._formats and self._last_epoch is not None:
            self._stage_end("export", lambda: _in_scratch(self._export_along))
        if self._tb_writer is not None:
            run.after_writes(self._tb_writer.close)  # after the scalars queued before it
        _flavour.clear_initial_epoch(self.model)
        if self._ckpt_dir is not None:
            self._stage_end("resume check",
                            lambda: self._resume.check(run, self.model, "train end"))
        self._stage_end("run file", lambda: self._write_runfile(_runfile.FINISHED))
        for directory in self._temp_dirs:
            run.after_writes(lambda d=directory: shutil.rmtree(d, ignore_errors=True))
        if self._owns_run:
            run.finish("finished")

    def _stage_end(self, what: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            self._hook_failed(f"on_train_end ({what})", exc)

    def _export_model(self) -> None:
        run, model = self.run, self.model
        directory = tempfile.mkdtemp(prefix="mlrepro-export-")
        self._temp_dirs.append(directory)
        meta = {"epoch": self._last_epoch, "global_step": self._step0,
                "weights_digest": _ckpt.weights_digest(model)}
        writers = {"keras": (_export.save_keras, _export.KERAS_FILE),
                   "saved_model": (_export.save_saved_model, _export.SAVED_MODEL_DIR)}
        for fmt in self._formats:
            save, name = writers[fmt]
            try:
                path = save(model, directory, run)
            except Exception as exc:  # noqa: BLE001 - e.g. a model Keras cannot serialize
                self._hook_failed(f"on_train_end (export {fmt})", exc)
                continue
            run.log_artifact(path, name=name, meta={**meta, "format": fmt})
        run.flush(EXPORT_FLUSH_TIMEOUT)

    def _without_shared_reads(self, run: Any) -> None:
        """Not every worker reported: some may not join the reads of checkpoints and exports."""
        if self._writes:
            run.warn("not every worker reported to check_workers, so not every worker may "
                     "join the variable reads of checkpoints, exports and weight digests (under "
                     "MultiWorkerMirroredStrategy, reading a variable synchronised on read, "
                     "such as BatchNormalization's statistics, is a collective: a worker "
                     "missing from it fails or hangs training): this run takes no "
                     "checkpoints, exports no model and records no initial weights digest; "
                     "use ReproCallback on every worker")
        self._ckpt_dir, self._reads_along, self._no_exports = None, False, True

    def _export_along(self, directory: str) -> None:
        """The chief's `_export_model` reads, in its order, into a scratch directory."""
        _ckpt.weights_digest(self.model)
        writers = {"keras": _export.save_keras, "saved_model": _export.save_saved_model}
        for fmt in self._formats:
            writers[fmt](self.model, directory, self.run)

    # -- failures --------------------------------------------------------------------------------
    def _hook_failed(self, hook: str, exc: BaseException) -> None:
        count = self._failures[hook] = self._failures.get(hook, 0) + 1
        if count > WARNINGS_PER_HOOK:
            return
        message = f"ReproCallback.{hook} failed: {exc!r}; training continues"
        if count == WARNINGS_PER_HOOK:
            message += " (further failures of this hook are not reported)"
        try:
            if self.run is not None:
                self.run.warn(message)
            else:
                _warn("mlrepro: " + message)
        except Exception:  # noqa: BLE001 - warnings turned into errors must not reach fit
            pass


# -- helpers ---------------------------------------------------------------------------------

class _NullRun:
    """Stands in when no run could be started: every call does nothing."""

    id = None
    writes = False
    attempt = 0
    store = None
    path = None
    runtime = None
    status = "unrecorded"

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def warn(self, message: str) -> None:
        _warn("mlrepro: " + message)

    def after_writes(self, action) -> None:
        action()


def _fit_gone(ref) -> None:
    """Called when fit's CallbackList is collected; if on_train_end never ran, fit raised."""
    self = ref()
    if self is None or self._train_ended or not self._owns_run or self.run is None:
        return
    self._stop_step_checkpoints()
    exc = sys.exc_info()[1]  # set when fit's frames die inside an except block
    status = "killed" if isinstance(exc, KeyboardInterrupt) else "failed"
    detail = (f"{type(exc).__name__}: {exc}" if exc is not None else
              "the caller handled the exception, so its message is not visible here")
    try:
        if self._tb_writer is not None:
            self.run.after_writes(self._tb_writer.close)
        _flavour.clear_initial_epoch(self.model)
        self.run.finish(status, error=f"model.fit raised before on_train_end ({detail})")
    except Exception:  # noqa: BLE001
        pass


def _sigterm_waiting() -> bool:
    pending = _lifecycle.deferred()
    return pending is not None and pending.state == "requested"


def _multi_worker(model: Any) -> bool:
    """Whether the model trains under MultiWorkerMirroredStrategy."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(getattr(model, "distribute_strategy", None),
                                         tf.distribute.MultiWorkerMirroredStrategy)


def _in_scratch(write) -> None:
    """Run `write(directory)` into a temporary directory, then remove it.

    Under MultiWorkerMirroredStrategy reading a model's variables (a checkpoint, an
    export) runs collectives that every worker must join, in the same order: when
    only the chief wrote, the others would pair their next all-reduce with the
    chief's reads, and training would fail or hang. So the workers that write
    nothing take the same checkpoints and exports, and throw them away.
    """
    directory = tempfile.mkdtemp(prefix="mlrepro-along-")
    try:
        write(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _check_workers(run: Any, model: Any) -> dict:
    return check_workers(run, getattr(model, "distribute_strategy", None))
