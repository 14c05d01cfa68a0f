"""`strategy()`: the right tf.distribute strategy for where the process runs, and worker checks.

- one device: the default strategy;
- several local GPUs: `MirroredStrategy`;
- several hosts (or workers): `MultiWorkerMirroredStrategy`, after setting the
  `TF_CONFIG` that `mlrepro.runtime` built from a SageMaker host list when no
  launcher set one.

`check_workers(run, strategy)` gathers every worker's code and environment
fingerprints through the strategy's own collectives (no shared file system
needed) and records them on the chief's run; a difference is a warning.
Importing this module does not import TensorFlow; calling `strategy()` does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from mlrepro import env
from mlrepro.errors import MlreproError
from mlrepro.runtime import tfconfig as _tfconfig
from mlrepro.runtime import workers as _workers
from mlrepro.runtime.detection import Runtime, detect

LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"
WORKERS_SECTION = "workers"   # the manifest section check_workers writes
DEFAULT = "default"           # the choices of `plan`
MIRRORED = "mirrored"
MULTI_WORKER = "multi_worker"

__all__ = ["strategy", "plan", "check_workers", "require_tf_keras"]


def require_tf_keras(environ: "dict[str, str] | None" = None) -> None:
    """Fail at once unless Keras models will be tf_keras models (MWMS cannot train Keras 3 ones).

    Keras 3 under MultiWorkerMirroredStrategy fails inside `fit`
    (keras-team/keras#20585); tf_keras (Keras 2) trains. Passes when
    `TF_USE_LEGACY_KERAS=1` (so `tf.keras` is tf_keras) or `tf_keras` is imported.
    """
    environ = os.environ if environ is None else environ
    if env.truthy(environ.get(LEGACY_KERAS_ENV)) or "tf_keras" in sys.modules:
        return
    raise MlreproError(
        "MultiWorkerMirroredStrategy cannot train Keras 3 models (keras-team/keras#20585): "
        "pip install tf_keras and set TF_USE_LEGACY_KERAS=1 before importing TensorFlow "
        "(then use tf.keras), or `import tf_keras as keras` before calling strategy(); "
        "a custom training loop without Keras can pass check_keras=False")


def _validated(rt: Runtime) -> None:
    try:
        config = _tfconfig.parse(os.environ.get(_tfconfig.TF_CONFIG_ENV))
    except ValueError as exc:
        raise MlreproError(f"{exc}: fix the TF_CONFIG variable or unset it "
                           "(mlrepro builds one from a SageMaker host list)") from None
    config = config or rt.tf_config or {}
    if "ps" in (config.get("cluster") or {}):
        raise MlreproError("TF_CONFIG names parameter servers, but strategy() builds "
                           "MultiWorkerMirroredStrategy only: build "
                           "tf.distribute.experimental.ParameterServerStrategy yourself")


def plan(rt: Runtime, local_gpus: int) -> str:
    """Which strategy fits: "multi_worker", "mirrored" or "default" (pure; see `strategy`).

    Several workers with a TF_CONFIG (set, or built from a host list) train with
    MultiWorkerMirroredStrategy. Several workers without one (an MPI/Horovod
    launch with no host list) keep the default strategy: each process trains
    its replica and the launcher's library averages gradients. One worker with
    several GPUs mirrors over them.
    """
    if rt.world_size > 1:
        return MULTI_WORKER if rt.tf_config is not None else DEFAULT
    return MIRRORED if local_gpus > 1 else DEFAULT


def strategy(runtime: Runtime | None = None, *, check_keras: bool = True) -> Any:
    """The tf.distribute strategy for this runtime: default, Mirrored or MultiWorkerMirrored.

    Call it at the start of the program, before other TensorFlow work (the
    multi-worker strategy must be built before TensorFlow initialises).

    Args:
        runtime: the `Runtime` to build for (default: `mlrepro.runtime.detect()`).
        check_keras: with several workers, fail at once unless tf_keras is in use
            (Keras 3 cannot train under MultiWorkerMirroredStrategy).

    Example:
        >>> import mlrepro
        >>> strategy = mlrepro.distribute.strategy()
        >>> with strategy.scope():
        ...     model = build_model()
    """
    rt = runtime if runtime is not None else detect()
    _validated(rt)
    if plan(rt, 0) == MULTI_WORKER:
        if check_keras:
            require_tf_keras()
        rt.write_env()
        import tensorflow as tf

        return tf.distribute.MultiWorkerMirroredStrategy()
    import tensorflow as tf

    if plan(rt, len(tf.config.list_physical_devices("GPU"))) == MIRRORED:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _current_strategy():
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    try:
        return tf.distribute.get_strategy()
    except Exception:  # noqa: BLE001
        return None


def _gather(strat: Any, mine: _workers.WorkerPrint) -> list[_workers.WorkerPrint]:
    """Every replica's row, through the strategy's collective (each worker must call this)."""
    import tensorflow as tf

    # float32 carries these small integers exactly, and every device's collectives support it.
    row = tf.constant([_workers.encode(mine)], dtype=tf.float32)
    value = strat.experimental_distribute_values_from_function(lambda _ctx: row)
    gathered = strat.gather(value, axis=0)
    return [_workers.decode(r) for r in gathered.numpy().tolist()]


def check_workers(run: Any, strategy: Any = None) -> dict:
    """Compare every worker's code and environment fingerprints with the chief's.

    A collective: under several workers every worker must call it at the same
    point (ReproCallback does, in `on_train_begin`). The chief records the
    result as the run's `workers` section; a difference is recorded and warned
    about on the chief and on the worker that differs. Workers that do not write
    adopt the chief's run id. Never raises: a failure is a warning.

    Args:
        run: this process's `Run` (a non-chief's run records nothing but still compares).
        strategy: the strategy spanning the workers (default: the one in scope).

    Example:
        >>> strategy = mlrepro.distribute.strategy()
        >>> run = mlrepro.start_run(project="cifar10")
        >>> mlrepro.distribute.check_workers(run, strategy)["consistent"]
        True
    """
    try:
        rt = run.runtime
        if not isinstance(rt, Runtime):
            rt = detect()
        prints = run.fingerprints()
        mine = _workers.WorkerPrint(rank=int(rt.rank or 0), host=rt.current_host,
                                    code=prints["code"], environment=prints["environment"],
                                    run_id=run.id)
        rows = [mine]
        strat = strategy if strategy is not None else _current_strategy()
        if rt.world_size > 1 and strat is not None:
            rows = _gather(strat, mine)
        result = _workers.compare(rows, rt.world_size)
        if strat is not None:
            result["strategy"] = type(strat).__name__
            result["replicas"] = int(getattr(strat, "num_replicas_in_sync", 1))
    except Exception as exc:  # noqa: BLE001 - tracking never breaks training
        message = f"the worker consistency check failed ({exc!r}); workers were not compared"
        run.warn(message)
        result = {"checked": False, "consistent": None, "reason": message}
        run.set_section(WORKERS_SECTION, result)
        return result
    if not result["checked"] and rt.world_size > 1:
        run.warn(f"workers were not compared ({result['reason']}): pass the strategy that "
                   "spans them, e.g. check_workers(run, strategy)")
    elif result["checked"] and not result["consistent"]:
        own = [m for m in result["mismatches"] if m["rank"] == mine.rank]
        if rt.is_chief or own:
            run.warn(_workers.describe(result))
    if result.get("checked") and not run.writes and result.get("run_id"):
        run.adopt_id(result["run_id"])
    run.set_section(WORKERS_SECTION, result)
    return result
