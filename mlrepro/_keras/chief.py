"""Which process writes the run under tf.distribute: the chief, and only it.

The chief is task `chief` when the cluster has one, else worker 0 (TensorFlow's
own rule for MultiWorkerMirroredStrategy). `mlrepro.runtime.detect()` knows the
same for SageMaker hosts; a strategy's cluster resolver, when the model has one,
has the last word.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

TF_CONFIG_ENV = "TF_CONFIG"


def from_task(task_type: str | None, task_id: int | None, cluster: Mapping | None) -> bool:
    """A pure function of the task and cluster, as in TF_CONFIG."""
    if not task_type:
        return True
    cluster = cluster or {}
    if task_type == "chief":
        return True
    if task_type == "worker":
        return "chief" not in cluster and int(task_id or 0) == 0
    return False  # evaluator, ps


def from_tf_config(environ: Mapping[str, str] | None = None) -> bool | None:
    """Chief-ness from TF_CONFIG, or None when it is not set or not readable."""
    environ = os.environ if environ is None else environ
    raw = environ.get(TF_CONFIG_ENV)
    if not raw:
        return None
    try:
        config = json.loads(raw)
        task = config.get("task") or {}
        return from_task(task.get("type"), task.get("index"), config.get("cluster"))
    except (ValueError, AttributeError, TypeError):
        return None


def from_strategy(strategy: Any) -> bool | None:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None
    try:
        spec = resolver.cluster_spec().as_dict()
    except Exception:  # noqa: BLE001
        spec = {}
    if not spec:
        return None
    return from_task(getattr(resolver, "task_type", None), getattr(resolver, "task_id", None),
                     spec)


def is_chief(model: Any = None, runtime: Any = None) -> bool:
    """Whether this process should write: strategy, then runtime, then TF_CONFIG."""
    decided = from_strategy(getattr(model, "distribute_strategy", None)) if model is not None \
        else None
    if decided is not None:
        return decided
    if runtime is not None and getattr(runtime, "is_chief", None) is not None:
        return bool(runtime.is_chief)
    decided = from_tf_config()
    return True if decided is None else decided


def multi_worker(model: Any = None) -> bool:
    strategy = getattr(model, "distribute_strategy", None)
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None:
        try:
            spec = resolver.cluster_spec().as_dict()
            return sum(len(v) for k, v in spec.items() if k in ("chief", "worker")) > 1
        except Exception:  # noqa: BLE001
            return False
    raw = os.environ.get(TF_CONFIG_ENV)
    if raw:
        try:
            cluster = json.loads(raw).get("cluster") or {}
            return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker")) > 1
        except (ValueError, AttributeError, TypeError):
            return False
    return False
