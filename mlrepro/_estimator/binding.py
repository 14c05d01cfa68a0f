"""Which run a model_dir belongs to: one run per model_dir, its id kept beside the checkpoints.

`train`, `evaluate` and `export` of the same model_dir record into one run. The
first TRAIN or EVAL graph of a model_dir starts the run and writes
`<model_dir>/mlrepro_run.json`; later calls in the same process reuse the live
run; a later process (a restarted job, an export script) continues the same run
as a new attempt. A separate `evaluator` task of a distributed
`train_and_evaluate` records its own run, linked to the training run as its parent.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Mapping

from mlrepro import env, record
from mlrepro import runtime as runtime_mod
from mlrepro.capture.redact import redact
from mlrepro.core.run import Run, reproduced_run, start_run
from mlrepro.errors import MlreproError, warn

RUN_FILE = record.EMBEDDED_RUN_FILE  # in a model_dir and in a SavedModel's assets/ (see `mlrepro trace`)
CHIEF, WORKER, EVALUATOR = "chief", "worker", "evaluator"

_lock = threading.RLock()
_live: dict[str, Run] = {}
_pointer_written: set[str] = set()


class ModelDirError(MlreproError):
    """A model_dir already belongs to a run that cannot be continued as asked."""


def model_dir_key(model_dir: str) -> str:
    """One key per model_dir, however the path was spelled."""
    model_dir = os.fspath(model_dir)
    if "://" in model_dir:
        return model_dir.rstrip("/")
    return os.path.realpath(model_dir)


def read_pointer(model_dir: str) -> dict | None:
    """The `{"run_id", "project", "store"}` kept in a model_dir, or None."""
    import tensorflow as tf

    path = os.path.join(model_dir, RUN_FILE)
    try:
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path, "r") as fh:
            data = json.loads(fh.read())
    except (ValueError, OSError, tf.errors.OpError) as exc:
        warn(f"mlrepro cannot read {path} ({exc}); this model_dir starts a new run")
        return None
    if not isinstance(data, dict) or not record.is_run_id(str(data.get("run_id", ""))):
        warn(f"mlrepro ignores {path}: it does not name a run id; this model_dir starts a new run")
        return None
    return data


def pointer_for(run: Run) -> dict:
    """What a model_dir or a SavedModel keeps to name its run."""
    return {"run_id": run.id, "project": run.project,
            "store": run.store.uri if run.store is not None else None}


def write_pointer(directory: str, data: Mapping) -> bool:
    """Write `mlrepro_run.json` atomically into `directory`; False (and a warning) on failure."""
    import tensorflow as tf

    path = os.path.join(directory, RUN_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        tf.io.gfile.makedirs(directory)
        with tf.io.gfile.GFile(tmp, "w") as fh:
            fh.write(json.dumps(dict(data), sort_keys=True, indent=1) + "\n")
        tf.io.gfile.rename(tmp, path, overwrite=True)
        return True
    except (OSError, tf.errors.OpError) as exc:
        warn(f"mlrepro cannot write {path} ({exc}); a restarted job will start a new run")
        return False


def live_run(model_dir: str) -> Run | None:
    """The run this process is recording for `model_dir`, if one is running."""
    key = model_dir_key(model_dir)
    with _lock:
        for candidate in (_live.get(key), _live.get(key + "#evaluator")):
            if candidate is not None and candidate.status == record.RUNNING:
                return candidate
    return None


def role_of(config: Any) -> str:
    """chief, worker or evaluator, from an Estimator RunConfig."""
    if config is None:
        return CHIEF
    if getattr(config, "task_type", None) == EVALUATOR:
        return EVALUATOR
    return CHIEF if getattr(config, "is_chief", True) else WORKER


def _store_for(store, pointer: Mapping | None, rt):
    """Explicit store > $MLREPRO_STORE > the store of the model_dir's run > runtime default."""
    if store is not None or env.STORE.is_set():
        return store
    recorded = (pointer or {}).get("store")
    if recorded and ("://" in recorded or os.path.isdir(recorded)):
        return recorded  # not a path of another machine that does not exist here
    try:
        return runtime_mod.default_store(rt)
    except Exception:  # noqa: BLE001
        return None


def bind(model_dir: str, *, project: str | None, store=None, name: str | None = None,
         tags: Mapping | None = None, role: str = CHIEF, allow_new: bool = True) -> Run:
    """The run that records `model_dir`: the live one, the one it names, or a new one.

    Raises ModelDirError when the model_dir belongs to another project, or when
    `allow_new` is False and it names no run.
    """
    key = model_dir_key(model_dir)
    cache_key = key + "#evaluator" if role == EVALUATOR else key
    with _lock:
        pointer = read_pointer(model_dir)
        run = _live.get(cache_key)
        if run is not None and run.status != record.RUNNING:
            run = None  # finished (by the user, or a signal): continue it as a new attempt
        if run is not None and role == CHIEF:
            wiped = pointer is None and key in _pointer_written
            moved = pointer is not None and pointer["run_id"] != run.id
            if wiped or moved:  # the model_dir was deleted or taken over: its run is over
                run.event("model_dir_replaced", model_dir=str(model_dir))
                run.finish(record.FINISHED)
                _pointer_written.discard(key)
                run = None
        owner = run.project if run is not None else (pointer or {}).get("project")
        if owner is not None and project is not None and owner != project:
            run_id = run.id if run is not None else pointer["run_id"]
            raise ModelDirError(
                f"model_dir {model_dir} holds run {run_id} of project {owner!r}, not "
                f"{project!r}: use a fresh model_dir, or project={owner!r} to continue that run")
        if run is not None:
            return run
        if pointer is not None and role != EVALUATOR and reproduced_run() == pointer["run_id"]:
            raise ModelDirError(
                f"model_dir {model_dir} holds the checkpoints of run {pointer['run_id']}, which "
                "this process reproduces: a re-run there would continue that run instead of "
                "repeating it; give the re-run a fresh model_dir")
        if pointer is None and not allow_new:
            raise ModelDirError(
                f"model_dir {model_dir} has no mlrepro run ({RUN_FILE} is missing): train it "
                "with a model_fn from mlrepro.estimator.wrap_model_fn, or pass project=... to "
                "record this export in a new run")
        project = project or (pointer or {}).get("project")
        rt = runtime_mod.detect_or_none()
        chosen_store = _store_for(store, pointer, rt)
        write = None if role in (CHIEF, EVALUATOR) else False
        if role == EVALUATOR:
            parent = {"kind": "evaluation-of", "run": pointer["run_id"]} if pointer else None
            run = start_run(project, name=name, tags=tags, store=chosen_store, parent=parent,
                            write=write, runtime=rt)
        elif pointer is not None:
            run = start_run(project, run_id=pointer["run_id"], store=chosen_store, write=write,
                            runtime=rt)
            if tags:
                run.set_tags(tags)
        else:
            run = start_run(project, name=name, tags=tags, store=chosen_store, write=write,
                            runtime=rt)
        if run.writes and role == CHIEF and pointer is None:
            if write_pointer(model_dir, pointer_for(run)):
                _pointer_written.add(key)
        elif pointer is not None and role == CHIEF:
            _pointer_written.add(key)
        run.update_section("estimator", model_dir=str(model_dir), role=role)
        run.event("estimator_bound", model_dir=str(model_dir), role=role,
                  continued=pointer is not None and role != EVALUATOR)
        _live[cache_key] = run
        return run


def update_section(run: Run, **fields) -> None:
    """Merge fields into the run's `estimator` section (never raises)."""
    run.update_section("estimator", **fields)


def record_config(run: Run, params: Any, config: Any) -> None:
    """Record the Estimator's `params` (user params) and RunConfig (auto params, seed)."""
    try:
        if isinstance(params, Mapping) and params:
            _note_changed_params(run, params)
            run.log_params(params)
        if config is not None:
            run.log_params(config_params(config), auto=True)
            seed = getattr(config, "tf_random_seed", None)
            deterministic = _op_determinism()
            run.set_section("seed", seed)
            run.set_section("determinism", {
                "seed": seed, "deterministic": deterministic,
                "applied": (["RunConfig.tf_random_seed",
                             "keras initializer seeds from tf_random_seed, per graph"]
                            if seed is not None else [])
                + (["tf.config.experimental.enable_op_determinism"] if deterministic else []),
                "python_hash_seed": os.environ.get("PYTHONHASHSEED")})
            update_section(run, task_type=getattr(config, "task_type", None),
                           task_id=getattr(config, "task_id", None),
                           is_chief=getattr(config, "is_chief", None),
                           num_worker_replicas=getattr(config, "num_worker_replicas", None))
    except Exception as exc:  # noqa: BLE001
        warn(f"mlrepro could not record the Estimator's params and RunConfig ({exc!r})")


def config_params(config: Any) -> dict:
    """The RunConfig settings that change what training computes or keeps."""
    out = {}
    for field in ("tf_random_seed", "save_checkpoints_steps", "save_checkpoints_secs",
                  "keep_checkpoint_max", "keep_checkpoint_every_n_hours", "save_summary_steps",
                  "log_step_count_steps"):
        out[f"run_config.{field}"] = getattr(config, field, None)
    for field in ("train_distribute", "eval_distribute"):
        strategy = getattr(config, field, None)
        out[f"run_config.{field}"] = None if strategy is None else type(strategy).__name__
        if strategy is not None:
            out[f"run_config.{field}.replicas"] = getattr(strategy, "num_replicas_in_sync", None)
    return out


def _op_determinism() -> bool:
    try:
        from tensorflow.python.framework import config as tf_config

        return bool(tf_config.is_op_determinism_enabled())
    except Exception:  # noqa: BLE001
        return env.truthy(os.environ.get("TF_DETERMINISTIC_OPS"))


def _note_changed_params(run: Run, params: Mapping) -> None:
    new = redact(record.jsonable(dict(params)))
    old = run.section("params") or {}
    changed = sorted(k for k, v in new.items() if k in old and old[k] != v)
    if changed:
        run.warn(f"params {', '.join(changed)} differ from those run {run.id} recorded before; "
                  "the new values replace them (use a fresh model_dir for a new experiment)")

