"""`run_config`: a RunConfig whose model_dir, seed and distribution fit where the job runs."""

from __future__ import annotations

import os
from typing import Any

from mlrepro._estimator.framework import load_tf
from mlrepro.errors import MlreproError

DEFAULT_MODEL_DIR = "checkpoints"   # locally, like mlrepro.runtime's checkpoint_dir
DEFAULT_EXPORT_DIR = "model"        # locally, like mlrepro.runtime's model_dir
DISTRIBUTIONS = ("auto", "none", "mirrored", "multi_worker_mirrored")
TF_CONFIG_ENV = "TF_CONFIG"


def detect_runtime(runtime: Any = None) -> Any:
    """`runtime`, or `mlrepro.runtime.detect()`, or None where that module is missing or fails."""
    if runtime is not None:
        return runtime
    from mlrepro.runtime import detect_or_none

    return detect_or_none()


def choose_distribution(requested: str, *, workers: int, gpus: int,
                        parameter_servers: bool = False, task_type: str | None = None) -> str:
    """Which strategy `run_config` builds: a pure function of the request and the machine.

    "auto" means multi_worker_mirrored when more than one worker trains, mirrored
    when this worker has more than one GPU, and none otherwise. A cluster with
    parameter servers keeps the Estimator's own between-graph replication, and an
    evaluator task (which does not train) gets none.
    """
    if requested not in DISTRIBUTIONS:
        raise MlreproError(f"distribution {requested!r} must be one of "
                           f"{', '.join(repr(d) for d in DISTRIBUTIONS)}, or pass "
                           "train_distribute=<a tf.distribute strategy>")
    if requested != "auto":
        return requested
    if parameter_servers or task_type == "evaluator":
        return "none"
    if workers > 1:
        return "multi_worker_mirrored"
    if gpus > 1:
        return "mirrored"
    return "none"


def model_dir_for(rt: Any) -> str:
    """Where an Estimator keeps its checkpoints on this runtime."""
    return (getattr(rt, "checkpoint_dir", None) or getattr(rt, "model_dir", None)
            or DEFAULT_MODEL_DIR)


def export_dir_for(rt: Any) -> str:
    """Where a SavedModel is exported on this runtime (SageMaker uploads its model_dir)."""
    return getattr(rt, "model_dir", None) or DEFAULT_EXPORT_DIR


def run_config(model_dir: str | None = None, *, seed: int | None = None,
               deterministic: bool = False, distribution: str = "auto", runtime: Any = None,
               **kwargs):
    """See `mlrepro.estimator.run_config`."""
    tf = load_tf()
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise MlreproError(f"seed {seed!r} must be an int or None: e.g. run_config(seed=42)")
    rt = detect_runtime(runtime)
    workers = int(getattr(rt, "world_size", None) or len(getattr(rt, "hosts", None) or []) or 1)
    gpus = int(getattr(rt, "num_gpus", 0) or 0)
    if "train_distribute" in kwargs:
        if distribution != "auto":
            raise MlreproError("give either distribution=... or train_distribute=..., not both")
        strategy = kwargs.pop("train_distribute")
        chosen = "explicit"
    else:
        cluster, task_type = _tf_config_cluster()
        chosen = choose_distribution(distribution, workers=workers, gpus=gpus,
                                     parameter_servers=bool(cluster.get("ps")),
                                     task_type=task_type)
        strategy = _strategy(tf, chosen, rt)
    from mlrepro.capture.seeds import apply_seed

    applied = apply_seed(seed, deterministic)
    seed = applied["seed"]
    if model_dir is None:
        model_dir = model_dir_for(rt)
        if "://" not in model_dir:  # a directory mlrepro chose: never captured as code
            from mlrepro.store.files import make_own_dir

            make_own_dir(model_dir)
    model_dir = os.fspath(model_dir)
    return tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=seed,
                                  train_distribute=strategy, **kwargs)


def _tf_config_cluster() -> tuple[dict, str | None]:
    """The cluster and this task's type from $TF_CONFIG ({} and None when unset or unreadable)."""
    import json

    try:
        data = json.loads(os.environ.get(TF_CONFIG_ENV) or "{}")
        return dict(data.get("cluster") or {}), (data.get("task") or {}).get("type")
    except (ValueError, TypeError, AttributeError):
        return {}, None


def _strategy(tf, chosen: str, rt: Any):
    if chosen == "none":
        return None
    if chosen == "mirrored":
        return tf.distribute.MirroredStrategy()
    if not os.environ.get(TF_CONFIG_ENV):
        write_env = getattr(rt, "write_env", None)
        if callable(write_env):
            write_env()
    if not os.environ.get(TF_CONFIG_ENV):
        raise MlreproError("distribution 'multi_worker_mirrored' needs TF_CONFIG, and neither "
                           "the environment nor mlrepro.runtime provides one: set TF_CONFIG, or "
                           "launch the job with `mlrepro launch` / on SageMaker")
    return tf.distribute.experimental.MultiWorkerMirroredStrategy()
