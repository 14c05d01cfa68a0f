"""tf.estimator integration (TensorFlow <= 2.15): record Estimator training with one wrapper.

`wrap_model_fn` adds mlrepro's hooks to the EstimatorSpec a model_fn returns, so
`train`, `evaluate` and `export_saved_model` of one model_dir record into one
run. The spec helpers build correct EstimatorSpecs for every mode from logits,
and `run_config` picks model_dir, seed and distribution from `mlrepro.runtime`
so the same script runs locally and on SageMaker.

Importing this module does not import TensorFlow; each function does, and says
clearly when tf.estimator is missing (it was removed in TensorFlow 2.16).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from mlrepro._estimator.binding import RUN_FILE, ModelDirError
from mlrepro._estimator.validate import ModelFnError

__all__ = ["wrap_model_fn", "run_config", "export_saved_model", "recorded_exporter",
           "spec_from_logits", "model_fn_from_logits", "model_fn_from_keras", "log_tensor",
           "run_for", "ModelFnError", "ModelDirError", "RUN_FILE"]


def wrap_model_fn(model_fn: Callable, *, project: str = "default", store: Any = None,
                  name: str | None = None, tags: Mapping | None = None,
                  every_n_steps: int | None = None,
                  tensors: "Mapping[str, str] | Sequence[str] | None" = None,
                  checkpoints: str = "all", resume: str = "auto") -> Callable:
    """Return a model_fn that records training, evaluation and checkpoints of its Estimator.

    The returned model_fn calls yours and adds hooks to the EstimatorSpec; the spec is
    otherwise unchanged (your hooks stay, after which mlrepro's run). The first TRAIN
    or EVAL graph of a model_dir starts a run and writes its id to
    `<model_dir>/mlrepro_run.json`; later `train`/`evaluate`/`export_saved_model` calls
    on that model_dir, in this process or a restarted one, continue that run (a new
    process is a new attempt; loss points past the restored step supersede the old
    ones). The run records: the `params` dict (user params), the RunConfig (seed as
    the run's seed; checkpoint and summary cadence, distribution as auto params),
    the loss and chosen tensors every `every_n_steps` steps at the global step,
    `steps_per_sec`, evaluation metrics as `eval/<metric>` (or `eval_<name>/<metric>`
    for `evaluate(name=...)`) at the evaluated global step, every checkpoint as
    artifact `checkpoints/model.ckpt-<step>`, and the global step. Only the chief
    records; a separate evaluator task records its own run whose parent is the
    training run. The run is finished when the process exits (failed if it exits
    with an exception), or earlier by `run_for(estimator).finish()`.

    Args:
        model_fn: your `model_fn(features, labels, mode, params, config)` (any subset
            of those arguments, as tf.estimator allows).
        project: the project the run belongs to (default "default", as for `start_run`
            and `ReproCallback`).
        store: where runs are recorded (default `$MLREPRO_STORE`, then the store of the
            model_dir's existing run, then `./mlrepro-runs`).
        name, tags: the run's name and tags (new runs only).
        every_n_steps: record loss and tensors on steps that are multiples of this
            (default: the RunConfig's `save_summary_steps`, the TensorBoard cadence).
            The Session fetches nothing extra on the other steps.
        tensors: more scalars to record with the loss: `{"metric": "tensor_name:0"}`
            or a list of tensor names. Inside model_fn, `log_tensor(name, tensor)` does
            the same for a tensor object.
        checkpoints: "all" (each checkpoint the Estimator writes), "final" (the last
            one of each `train` call) or "none".
        resume: a training process that finds an *unfinished* run in model_dir (killed,
            crashed, preempted) continues it only when it is the same experiment (command
            line, code, params, RunConfig) with `"auto"`; otherwise it starts a new run
            (parent `resumed-from` the old one, whose checkpoints the Estimator restores)
            and warns naming every difference. `"never"`: always a new run; `"must"`:
            fail unless a compatible unfinished run is there; `"force"`: continue it
            anyway, with the changes recorded in the attempt. Except with `"never"`, a
            finished run in model_dir is continued as before (more steps, evaluation).

    Raises:
        ModelFnError: at graph-build time, when the model_fn returns something that is
            not a usable EstimatorSpec for the mode (no loss in TRAIN, a dict, ...).
        ModelDirError: when the model_dir belongs to a run of another project.

    Example:
        >>> import mlrepro.estimator as me
        >>> est = tf.estimator.Estimator(
        ...     me.wrap_model_fn(model_fn, project="iris", every_n_steps=10),
        ...     params={"learning_rate": 0.01}, config=me.run_config("ckpt", seed=42))
        >>> est.train(train_input_fn, steps=200)
        >>> est.evaluate(eval_input_fn)
        >>> me.export_saved_model(est, "export", serving_input_receiver_fn)
    """
    from mlrepro._estimator.wrap import wrap_model_fn as _wrap

    return _wrap(model_fn, project=project, store=store, name=name, tags=tags,
                 every_n_steps=every_n_steps, tensors=tensors, checkpoints=checkpoints,
                 resume=resume)


def run_config(model_dir: str | None = None, *, seed: int | None = None,
               deterministic: bool = False, distribution: str = "auto", runtime: Any = None,
               **kwargs):
    """Return a tf.estimator.RunConfig with model_dir, seed and distribution set for this runtime.

    model_dir defaults to the runtime's checkpoint directory (SageMaker:
    `/opt/ml/checkpoints` when the job configures checkpoints, synced to S3 and
    restored on a spot restart; locally `./checkpoints`). `seed` becomes
    `tf_random_seed` (and seeds Python and NumPy now, for your input code);
    `deterministic=True` also enables TensorFlow op determinism (and picks a seed
    if none is given). distribution "auto" builds a MultiWorkerMirroredStrategy when
    several workers train (setting `TF_CONFIG` from `mlrepro.runtime` if needed; use
    `tf.estimator.train_and_evaluate`), a MirroredStrategy for several GPUs, and
    nothing on one device.

    Args:
        model_dir: the Estimator's model_dir (default: from `mlrepro.runtime`).
        seed: the graph-level seed.
        deterministic: enable op determinism.
        distribution: "auto", "none", "mirrored" or "multi_worker_mirrored".
        runtime: a `mlrepro.runtime.Runtime` (default: `mlrepro.runtime.detect()`).
        **kwargs: passed to tf.estimator.RunConfig (save_checkpoints_steps, ...,
            or train_distribute=<strategy> instead of distribution).

    Example:
        >>> config = mlrepro.estimator.run_config(seed=42, deterministic=True,
        ...                                        save_checkpoints_steps=100)
    """
    from mlrepro._estimator.config import run_config as _run_config

    return _run_config(model_dir, seed=seed, deterministic=deterministic,
                       distribution=distribution, runtime=runtime, **kwargs)


def export_saved_model(estimator, export_dir_base: str | None = None,
                       serving_input_receiver_fn: Callable | None = None, *,
                       project: str | None = None, store: Any = None, runtime: Any = None,
                       **export_kwargs) -> str:
    """Export a SavedModel and record it as artifact "saved_model" of the model_dir's run.

    Calls `estimator.export_saved_model(...)`, writes
    `assets/mlrepro_run.json` ({"run_id", "project", "store", "global_step"}) into the
    export so `mlrepro trace` can name the run, and logs the directory (waiting until
    it is stored). Call it instead of `estimator.export_saved_model`; with
    `train_and_evaluate` wrap the exporter with `recorded_exporter`.

    Args:
        estimator: the Estimator (trained with a wrapped model_fn).
        export_dir_base: where to export (default: the runtime's model_dir, which
            SageMaker uploads; locally `./model`).
        serving_input_receiver_fn: as for `Estimator.export_saved_model`.
        project: only for a model_dir that has no run yet: record the export in a new
            run of this project.
        store: where that new run is recorded.
        **export_kwargs: passed on (assets_extra, as_text, checkpoint_path, ...).

    Returns:
        The export directory (a str).

    Example:
        >>> path = mlrepro.estimator.export_saved_model(est, "export", serving_input_fn)
    """
    from mlrepro._estimator.export import export_saved_model as _export

    return _export(estimator, export_dir_base, serving_input_receiver_fn, project=project,
                   store=store, runtime=runtime, **export_kwargs)


def recorded_exporter(exporter, *, project: str | None = None, store: Any = None):
    """Wrap a tf.estimator.Exporter so each SavedModel it writes is recorded in the run.

    Each export is recorded like `export_saved_model` does (artifact "saved_model",
    run pointer in its assets).

    Example:
        >>> exporter = mlrepro.estimator.recorded_exporter(
        ...     tf.estimator.LatestExporter("saved_model", serving_input_fn))
        >>> eval_spec = tf.estimator.EvalSpec(eval_input_fn, exporters=[exporter])
    """
    from mlrepro._estimator.export import recorded_exporter as _recorded

    return _recorded(exporter, project=project, store=store)


def spec_from_logits(mode, logits, labels=None, *, task: str = "multiclass",
                     optimizer: Any = "adam", learning_rate: float = 0.001,
                     metrics_fn: Callable | None = None, extra_loss=None, update_ops=None,
                     var_list=None):
    """Return the right EstimatorSpec for `mode` from a model's logits.

    TRAIN: mean loss for the task (plus `extra_loss` and regularization losses), a
    train_op that increments the global step and runs UPDATE_OPS / `update_ops`.
    EVAL: the loss and metrics (multiclass and binary: accuracy, binary also auc;
    regression: mean_absolute_error, root_mean_squared_error) plus `metrics_fn(labels,
    predictions)`. PREDICT: predictions named like the canned Estimators' (`class_ids`,
    `probabilities`, `logits`; `logistic` for binary; `predictions` for regression)
    and export outputs `serving_default` and `predict` (PredictOutput, for any
    serving input: TensorFlow Serving's and SageMaker's REST predict), plus
    `classification` / `regression` signatures, which TensorFlow keeps when the
    serving input is serialized tf.Examples.

    Args:
        mode: the mode the Estimator passed.
        logits: [batch, n_classes] (multiclass), [batch, 1] (binary), [batch, d] (regression).
        labels: integer class ids, 0/1, or targets (ignored in PREDICT).
        task: "multiclass", "binary" or "regression".
        optimizer: a name ("adam", "sgd", "adagrad", "rmsprop", "ftrl"), a
            tf.compat.v1.train.Optimizer, or a function returning one.
        learning_rate: used with an optimizer name.

    Example:
        >>> def model_fn(features, labels, mode, params):
        ...     logits = tf.compat.v1.layers.dense(features["x"], 3)
        ...     return mlrepro.estimator.spec_from_logits(mode, logits, labels,
        ...                                               learning_rate=params["lr"])
    """
    from mlrepro._estimator.specs import spec_from_logits as _spec

    return _spec(mode, logits, labels, task=task, optimizer=optimizer,
                 learning_rate=learning_rate, metrics_fn=metrics_fn, extra_loss=extra_loss,
                 update_ops=update_ops, var_list=var_list)


def model_fn_from_logits(logits_fn: Callable, *, task: str = "multiclass",
                         optimizer: Any = "adam", learning_rate: float | None = None,
                         metrics_fn: Callable | None = None) -> Callable:
    """Return a model_fn for every mode from a function that returns logits.

    `logits_fn` is called with whichever of (features, labels, mode, params, config)
    it accepts. learning_rate defaults to `params["learning_rate"]` when present, so
    the recorded params hold it, else 0.001.

    Example:
        >>> def logits_fn(features, mode):
        ...     return tf.compat.v1.layers.dense(features["x"], 3)
        >>> model_fn = mlrepro.estimator.model_fn_from_logits(logits_fn, task="multiclass")
    """
    from mlrepro._estimator.specs import model_fn_from_logits as _from_logits

    return _from_logits(logits_fn, task=task, optimizer=optimizer, learning_rate=learning_rate,
                        metrics_fn=metrics_fn)


def model_fn_from_keras(build_model: Callable, *, task: str = "multiclass",
                        feature_key: str | None = None, optimizer: Any = "adam",
                        learning_rate: float | None = None,
                        metrics_fn: Callable | None = None) -> Callable:
    """Return a model_fn for every mode from a function that builds a fresh tf.keras.Model.

    The Estimator builds a new graph for each train/evaluate/export, so
    `build_model(params)` must build a new model each call. The model is called with
    `training=` set by the mode, on `features[feature_key]` (or the only feature, or
    the whole dict); its `losses` join the loss and its batch-norm updates run with
    the train_op. The model's outputs are the logits (no softmax at the end).

    Example:
        >>> def build(params):
        ...     return tf.keras.Sequential([tf.keras.layers.Dense(16, activation="relu"),
        ...                                 tf.keras.layers.Dense(3)])
        >>> model_fn = mlrepro.estimator.model_fn_from_keras(build, feature_key="x")
    """
    from mlrepro._estimator.specs import model_fn_from_keras as _from_keras

    return _from_keras(build_model, task=task, feature_key=feature_key, optimizer=optimizer,
                       learning_rate=learning_rate, metrics_fn=metrics_fn)


def log_tensor(name: str, tensor) -> None:
    """Inside a model_fn: record this scalar tensor as metric `name` with the loss every N steps.

    Example:
        >>> mlrepro.estimator.log_tensor("learning_rate", lr)
    """
    from mlrepro._estimator.hooks import log_tensor as _log_tensor

    _log_tensor(name, tensor)


def run_for(estimator_or_model_dir) -> Any:
    """The `mlrepro.Run` this process is recording for an Estimator (or model_dir), or None.

    Example:
        >>> run = mlrepro.estimator.run_for(est)
        >>> run.log_artifact("confusion.png"); run.finish()
    """
    from mlrepro._estimator.binding import live_run

    model_dir = getattr(estimator_or_model_dir, "model_dir", estimator_or_model_dir)
    return live_run(model_dir) if model_dir else None
