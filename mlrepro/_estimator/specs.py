"""EstimatorSpecs for TRAIN, EVAL and PREDICT from logits, with export outputs for serving.

One function builds the right spec for whichever mode the Estimator asks for:
loss and metrics from the task, a train_op that increments the global step and
runs the update ops (batch norm), and `serving_default` / `predict` signatures
that TensorFlow Serving and the SageMaker TensorFlow container call, so the same
model_fn trains locally and serves anywhere.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from mlrepro._estimator.framework import load_tf, mode_name
from mlrepro._estimator.validate import ModelFnError
from mlrepro.errors import MlreproError

TASKS = ("multiclass", "binary", "regression")
OPTIMIZERS = {"adam": "AdamOptimizer", "sgd": "GradientDescentOptimizer",
              "adagrad": "AdagradOptimizer", "rmsprop": "RMSPropOptimizer",
              "ftrl": "FtrlOptimizer"}
SERVING_KEY = "serving_default"
PREDICT_KEY = "predict"
DEFAULT_LEARNING_RATE = 0.001


def check_task(task: str) -> None:
    if task not in TASKS:
        raise MlreproError(f"task {task!r} must be one of {', '.join(repr(t) for t in TASKS)}")


def make_optimizer(optimizer: Any, learning_rate: float):
    """A tf.compat.v1 optimizer from a name, an optimizer, or a function returning one."""
    tf = load_tf()
    if isinstance(optimizer, str):
        key = optimizer.lower().replace("_", "").replace("optimizer", "")
        if key not in OPTIMIZERS:
            raise MlreproError(f"optimizer {optimizer!r} must be one of "
                               f"{', '.join(repr(k) for k in OPTIMIZERS)}, or a "
                               "tf.compat.v1.train.Optimizer")
        return getattr(tf.compat.v1.train, OPTIMIZERS[key])(learning_rate=learning_rate)
    if callable(optimizer) and not isinstance(optimizer, tf.compat.v1.train.Optimizer):
        optimizer = optimizer()
    if not isinstance(optimizer, tf.compat.v1.train.Optimizer):
        raise MlreproError(f"optimizer {optimizer!r} is not a tf.compat.v1.train.Optimizer: "
                           "Estimator graphs need one, e.g. tf.compat.v1.train.AdamOptimizer(1e-3) "
                           "or optimizer=\"adam\"")
    return optimizer


def predictions_for(task: str, logits) -> dict:
    """The prediction tensors of a task, named like the canned Estimators' heads."""
    tf = load_tf()
    if task == "multiclass":
        return {"logits": logits, "probabilities": tf.nn.softmax(logits),
                "class_ids": tf.argmax(logits, axis=-1)}
    if task == "binary":
        flat = tf.reshape(logits, [-1])
        p = tf.sigmoid(flat)
        return {"logits": flat, "logistic": p, "probabilities": tf.stack([1.0 - p, p], axis=-1),
                "class_ids": tf.cast(p > 0.5, tf.int64)}
    return {"predictions": logits}


def export_outputs_for(task: str, predictions: Mapping) -> dict:
    """serving_default and predict (any receiver); classification/regression (tf.Example)."""
    tf = load_tf()
    out_lib = tf.estimator.export
    outputs = {SERVING_KEY: out_lib.PredictOutput(dict(predictions)),
               PREDICT_KEY: out_lib.PredictOutput(dict(predictions))}
    if task in ("multiclass", "binary"):
        outputs["classification"] = out_lib.ClassificationOutput(
            scores=predictions["probabilities"])
    elif predictions["predictions"].shape[-1:] == [1]:
        outputs["regression"] = out_lib.RegressionOutput(
            value=tf.reshape(predictions["predictions"], [-1]))
    return outputs


def _labels(task: str, labels, logits, mode):
    tf = load_tf()
    if labels is None:
        raise ModelFnError(f"spec_from_logits got no labels in {mode_name(mode)} mode: make "
                           "input_fn return (features, labels) for training and evaluation")
    if isinstance(labels, Mapping):
        raise ModelFnError(f"spec_from_logits got a dict of labels in {mode_name(mode)} mode: "
                           "pass the one label tensor, e.g. labels['y']")
    labels = tf.convert_to_tensor(labels)
    if labels.dtype == tf.string:
        raise ModelFnError(f"spec_from_logits got string labels in {mode_name(mode)} mode: map "
                           "them to integer class ids in input_fn")
    if task == "multiclass":
        return tf.reshape(tf.cast(labels, tf.int64), [-1])
    if task == "binary":
        return tf.reshape(tf.cast(labels, tf.float32), [-1])
    return tf.reshape(tf.cast(labels, logits.dtype), tf.shape(logits))


def _loss(task: str, logits, labels, predictions):
    tf = load_tf()
    if task == "multiclass":
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    elif task == "binary":
        per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                              logits=predictions["logits"])
    else:
        per_example = tf.math.squared_difference(logits, labels)
    return tf.reduce_mean(per_example)


def _metrics(task: str, labels, predictions) -> dict:
    tf = load_tf()
    m = tf.compat.v1.metrics
    if task == "multiclass":
        return {"accuracy": m.accuracy(labels, predictions["class_ids"])}
    if task == "binary":
        return {"accuracy": m.accuracy(labels, tf.cast(predictions["class_ids"], tf.float32)),
                "auc": m.auc(labels, predictions["logistic"])}
    pred = predictions["predictions"]
    return {"mean_absolute_error": m.mean_absolute_error(labels, pred),
            "root_mean_squared_error": m.root_mean_squared_error(labels, pred)}


def spec_from_logits(mode, logits, labels=None, *, task: str = "multiclass",
                     optimizer: Any = "adam", learning_rate: float = DEFAULT_LEARNING_RATE,
                     metrics_fn: Callable | None = None, extra_loss=None, update_ops=None,
                     var_list=None):
    """See `mlrepro.estimator.spec_from_logits`."""
    tf = load_tf()
    check_task(task)
    modes = tf.estimator.ModeKeys
    predictions = predictions_for(task, logits)
    if mode == modes.PREDICT:
        return tf.estimator.EstimatorSpec(mode, predictions=predictions,
                                          export_outputs=export_outputs_for(task, predictions))
    labels = _labels(task, labels, logits, mode)
    loss = _loss(task, logits, labels, predictions)
    if extra_loss is not None:
        extra = list(extra_loss) if isinstance(extra_loss, (list, tuple)) else [extra_loss]
        if extra:
            loss = loss + tf.add_n(extra)
    regularization = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES)
    if regularization:
        loss = loss + tf.add_n(regularization)
    if mode == modes.EVAL:
        metrics = _metrics(task, labels, predictions)
        if metrics_fn is not None:
            metrics.update(metrics_fn(labels, predictions))
        return tf.estimator.EstimatorSpec(mode, loss=loss, predictions=predictions,
                                          eval_metric_ops=metrics)
    opt = make_optimizer(optimizer, learning_rate)
    deps = list(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS))
    deps += [op for op in (update_ops or []) if op not in deps]
    with tf.control_dependencies(deps):
        train_op = opt.minimize(loss, global_step=tf.compat.v1.train.get_global_step(),
                                var_list=var_list)
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op,
                                      predictions=predictions)


def _call_with_accepted(fn: Callable, **available):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(**available)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn(**available)
    return fn(**{k: v for k, v in available.items() if k in params})


def _learning_rate(learning_rate, params) -> float:
    if learning_rate is not None:
        return learning_rate
    if isinstance(params, Mapping) and "learning_rate" in params:
        return params["learning_rate"]
    return DEFAULT_LEARNING_RATE


def model_fn_from_logits(logits_fn: Callable, *, task: str = "multiclass",
                         optimizer: Any = "adam", learning_rate: float | None = None,
                         metrics_fn: Callable | None = None) -> Callable:
    """See `mlrepro.estimator.model_fn_from_logits`."""
    check_task(task)
    if not callable(logits_fn):
        raise MlreproError(f"logits_fn {logits_fn!r} is not callable: pass a function "
                           "(features, mode, params) -> logits tensor")

    def model_fn(features, labels, mode, params, config):
        logits = _call_with_accepted(logits_fn, features=features, labels=labels, mode=mode,
                                     params=params, config=config)
        _check_logits(logits, mode, "logits_fn")
        return spec_from_logits(mode, logits, labels, task=task, optimizer=optimizer,
                                learning_rate=_learning_rate(learning_rate, params),
                                metrics_fn=metrics_fn)

    return model_fn


def _check_logits(logits, mode, source: str) -> None:
    tf = load_tf()
    if not isinstance(logits, tf.Tensor):
        raise ModelFnError(f"{source} returned {type(logits).__name__} in {mode_name(mode)} "
                           "mode, not a logits tensor: return the model's output tensor")


def model_inputs(features, feature_key: str | None):
    """What the Keras model is called on: one feature, or the whole features dict."""
    if feature_key is not None:
        if not isinstance(features, Mapping) or feature_key not in features:
            have = sorted(features) if isinstance(features, Mapping) else type(features).__name__
            raise ModelFnError(f"feature_key {feature_key!r} is not among the features "
                               f"({have}): pass one of those names")
        return features[feature_key]
    if isinstance(features, Mapping) and len(features) == 1:
        return next(iter(features.values()))
    return features


def model_fn_from_keras(build_model: Callable, *, task: str = "multiclass",
                        feature_key: str | None = None, optimizer: Any = "adam",
                        learning_rate: float | None = None,
                        metrics_fn: Callable | None = None) -> Callable:
    """See `mlrepro.estimator.model_fn_from_keras`."""
    check_task(task)
    if not callable(build_model):
        raise MlreproError(f"build_model {build_model!r} is not callable: pass a function "
                           "(params) -> tf.keras.Model that builds a fresh model")

    def model_fn(features, labels, mode, params, config):
        tf = load_tf()
        model = _call_with_accepted(build_model, params=params, mode=mode, config=config)
        if not isinstance(model, tf.keras.Model):
            raise ModelFnError(f"build_model returned {type(model).__name__} in "
                               f"{mode_name(mode)} mode, not a tf.keras.Model: build and return "
                               "a fresh model on every call")
        training = mode == tf.estimator.ModeKeys.TRAIN
        inputs = model_inputs(features, feature_key)
        logits = model(inputs, training=training)
        _check_logits(logits, mode, "the Keras model")
        update_ops = []
        if training and hasattr(model, "get_updates_for"):  # batch norm's moving averages
            update_ops = list(model.get_updates_for(None)) + list(
                model.get_updates_for(tf.nest.flatten(inputs)))
        return spec_from_logits(mode, logits, labels, task=task, optimizer=optimizer,
                                learning_rate=_learning_rate(learning_rate, params),
                                metrics_fn=metrics_fn, extra_loss=list(model.losses) or None,
                                update_ops=update_ops, var_list=model.trainable_variables)

    return model_fn
