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
from typing import Any, Mapping, NamedTuple

from mlrepro import env, record
from mlrepro import runtime as runtime_mod
from mlrepro.capture.redact import redact
from mlrepro.core import sameness
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


class _Decision(NamedTuple):
    new_run: bool
    changed: list


def _decide(resume: str | None, pointer: Mapping, store, model_dir: str, params: Any,
            config: Any) -> _Decision:
    """Continue the model_dir's run, or start a new one (`resume=`; see `wrap_model_fn`)."""
    if resume is None:  # evaluation, export: always the model_dir's run
        return _Decision(False, [])
    if resume == sameness.NEVER:
        return _Decision(True, [])
    old = pointer["run_id"]
    manifest = _recorded(store, old)
    if manifest is not None and manifest.get("status") == record.FINISHED:
        if resume == sameness.MUST:
            raise sameness.ResumeRefused(
                f"resume=\"must\" but run {old} in model_dir {model_dir} finished: nothing "
                "to continue; leave resume at \"auto\" to continue it with more steps")
        return _Decision(False, [])  # more steps, evaluation, export: the same run
    if manifest is None:  # nothing to compare against: continue, as a restart always did
        return _Decision(False, [])
    auto = config_params(config) if config is not None else {}
    try:
        diffs = sameness.differences(
            sameness.from_manifest(manifest, list(auto)),
            sameness.this_process(params if isinstance(params, Mapping) else {}, auto))
    except Exception as exc:  # noqa: BLE001 - tracking never fails training
        warn(f"mlrepro could not compare this process with run {old} ({exc!r}); "
             "continuing that run")
        return _Decision(False, [])
    if not diffs or resume == sameness.FORCE:
        return _Decision(False, diffs)
    if resume == sameness.MUST:
        raise sameness.ResumeRefused(
            f"resume=\"must\" but unfinished run {old} in model_dir {model_dir} is another "
            f"experiment ({sameness.summary(diffs)}): rerun its own command, or pass "
            "resume=\"force\" to continue it with these changes")
    return _Decision(True, diffs)


def _recorded(store, run_id: str) -> dict | None:
    from mlrepro.store import open_store

    try:
        opened = open_store(store)
        if run_id not in opened.run_ids():
            return None
        return opened.read_manifest(run_id)
    except Exception:  # noqa: BLE001 - start_run warns about an unreadable store itself
        return None


def bind(model_dir: str, *, project: str | None, store=None, name: str | None = None,
         tags: Mapping | None = None, role: str = CHIEF, allow_new: bool = True,
         resume: str | None = None, params: Any = None, config: Any = None) -> Run:
    """The run that records `model_dir`: the live one, the one it names, or a new one.

    `resume` (training only; see `wrap_model_fn`) decides whether an unfinished run
    that model_dir names is continued: `params` and `config` are what this process
    will record, compared with what that run recorded.

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
        elif pointer is not None and not (decision := _decide(
                resume, pointer, chosen_store, model_dir, params, config)).new_run:
            run = start_run(project, run_id=pointer["run_id"], store=chosen_store, write=write,
                            runtime=rt)
            if tags:
                run.set_tags(tags)
            if decision.changed:
                run.note_attempt(resume=sameness.FORCE, changed=decision.changed)
                run.event("resume_forced", run=pointer["run_id"], changed=decision.changed)
        elif pointer is not None:  # a different experiment: a new run from those checkpoints
            old = pointer["run_id"]
            run = start_run(project, name=name, tags=tags, store=chosen_store, write=write,
                            runtime=rt, parent={"kind": "resumed-from", "run": old})
            pointer = None  # model_dir now names the new run
            if decision.changed:
                run.event("resume_declined", run=old, differences=decision.changed)
                run.warn(f"model_dir {model_dir} holds unfinished run {old} of another "
                         f"experiment ({sameness.summary(decision.changed)}), so this is a new "
                         f"run {run.id} and run {old} stays as it was; the Estimator restores "
                         f"that run's checkpoints from model_dir, so the new run's parent is "
                         f"resumed-from {old}. For a fresh start use a fresh model_dir; to "
                         "continue that run anyway pass wrap_model_fn(..., resume=\"force\")")
        else:
            if resume == sameness.MUST:
                raise sameness.ResumeRefused(
                    f"resume=\"must\" but model_dir {model_dir} holds no mlrepro run "
                    f"({RUN_FILE} is missing): nothing to continue; leave resume at \"auto\" "
                    "to start a new run")
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

