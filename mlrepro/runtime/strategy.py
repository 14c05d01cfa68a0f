"""`strategy()`: the right tf.distribute strategy for where the process runs, and worker checks.

- one device: the default strategy;
- several local GPUs: `MirroredStrategy`;
- several hosts (or workers): `MultiWorkerMirroredStrategy`, after setting the
  `TF_CONFIG` that `mlrepro.runtime` built from a SageMaker host list when no
  launcher set one.

`check_workers(run, strategy)` gathers every worker's code and environment
fingerprints on the chief over TCP, bounded by a timeout (no shared file system
needed, no TensorFlow collective that a missing worker would hang), and records
them on the chief's run; a difference, or a missing worker, is a warning.
Importing this module does not import TensorFlow; calling `strategy()` does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from mlrepro import env
from mlrepro.errors import MlreproError
from mlrepro.runtime import exchange as _exchange_mod
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


def _exchange(rt: Runtime, mine: _workers.WorkerPrint, timeout: float,
              ) -> tuple[list[_workers.WorkerPrint], list[str]]:
    """Every worker's print as the chief collected it (see `mlrepro.runtime.exchange`)."""
    config = rt.tf_config
    if config is None:
        try:
            config = _tfconfig.parse(os.environ.get(_tfconfig.TF_CONFIG_ENV))
        except ValueError:
            config = None
    where = _exchange_mod.chief_address(config)
    if where is None:
        return [mine], ["no TF_CONFIG names the chief's address"]
    row = _workers.as_row(mine)
    if rt.is_chief:
        rows, problems = _exchange_mod.serve(row, rt.world_size, where[1], timeout)
    else:
        got, problem = _exchange_mod.report(row, where[0], where[1], timeout)
        rows, problems = (got or [row]), ([problem] if problem else [])
    prints = []
    for item in rows:
        try:
            prints.append(_workers.from_row(item))
        except (ValueError, AttributeError) as exc:
            problems.append(str(exc))
    return prints, problems


def check_workers(run: Any, strategy: Any = None, *, timeout: float | None = None) -> dict:
    """Compare every worker's code and environment fingerprints with the chief's.

    Every worker should call it once (ReproCallback does, in `on_train_begin`):
    each sends its fingerprints to the chief over TCP, beside TensorFlow, and
    gets every worker's back. It never blocks longer than `timeout` (twice that on a
    worker: reaching the chief, then its answer): a worker that does not report
    in time is a warning naming it, and training goes on. The chief records the
    result as the run's `workers` section; a difference is recorded and warned
    about on the chief and on the worker that differs. Workers that do not write
    adopt the chief's run id. Never raises: a failure is a warning.

    Args:
        run: this process's `Run` (a non-chief's run records nothing but still compares).
        strategy: the strategy spanning the workers (default: the one in scope); only
            its class and replica count are recorded.
        timeout: seconds to wait for the other workers (default
            `$MLREPRO_WORKERS_TIMEOUT`, 60).

    Example:
        >>> strategy = mlrepro.distribute.strategy()
        >>> run = mlrepro.start_run(project="cifar10")
        >>> mlrepro.distribute.check_workers(run, strategy)["consistent"]
        True
    """
    problems: list[str] = []
    try:
        rt = run.runtime
        if not isinstance(rt, Runtime):
            rt = detect()
        seconds = env.WORKERS_TIMEOUT.get() if timeout is None else float(timeout)
        prints = run.fingerprints()
        mine = _workers.WorkerPrint(rank=int(rt.rank or 0), host=rt.current_host,
                                    code=prints["code"], environment=prints["environment"],
                                    run_id=run.id)
        rows = [mine]
        if rt.world_size > 1:
            rows, problems = _exchange(rt, mine, seconds)
        names = _exchange_mod.member_names(rt.tf_config, rt.hosts, rt.world_size)
        result = _workers.compare(rows, rt.world_size, names=names)
        result["timeout_s"] = seconds
        if problems:
            result["problems"] = problems
        strat = strategy if strategy is not None else _current_strategy()
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
        run.warn(f"workers were not compared ({result['reason']}"
                 + "".join(f"; {p}" for p in problems)
                 + "); training goes on without the check")
    elif result["checked"] and not result["consistent"]:
        own = [m for m in result["mismatches"] if m["rank"] == mine.rank]
        if rt.is_chief or own:
            run.warn(_workers.describe(result))
    chief_id = next((w.run_id for w in rows if w.rank == 0 and w.run_id), None)
    if not run.writes and chief_id and chief_id != run.id:
        run.adopt_id(chief_id)   # the chief answered, even if another worker did not
    run.set_section(WORKERS_SECTION, result)
    return result
