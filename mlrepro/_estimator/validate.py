"""What a model_fn may return, and errors that name the mode and the fix.

These are programming errors found while the Estimator builds its graph, so
they raise (as `ModelFnError`, also a `ValueError` like TensorFlow's own) instead
of becoming tracking warnings.
"""

from __future__ import annotations

import traceback

from mlrepro._estimator.framework import mode_name
from mlrepro.errors import MlreproError

SPEC_FIX = ("return tf.estimator.EstimatorSpec(mode, loss=..., train_op=...), or build one with "
            "mlrepro.estimator.spec_from_logits(mode, logits, labels)")


class ModelFnError(MlreproError, ValueError):
    """A model_fn returned something the Estimator cannot use in the mode it was called in."""


def check_spec(result, mode):
    """Return `result` if it is a usable EstimatorSpec for `mode`; raise ModelFnError if not."""
    import tensorflow as tf

    name = mode_name(mode)
    if isinstance(result, tf.estimator.EstimatorSpec):
        if result.mode != mode and mode in ("train", "eval") and result.loss is None:
            raise ModelFnError(
                f"model_fn returned an EstimatorSpec without a loss in {name} mode (it was built "
                f"for {mode_name(result.mode)} mode): build it with the `mode` the Estimator "
                "passed and loss=<scalar tensor> whenever mode is TRAIN or EVAL")
        if result.mode != mode:
            raise ModelFnError(
                f"model_fn returned an EstimatorSpec for {mode_name(result.mode)} mode when the "
                f"Estimator called it in {name} mode: build the spec with the `mode` argument "
                "the Estimator passed, e.g. EstimatorSpec(mode, ...)")
        if mode in ("train", "eval") and result.loss is None:
            raise ModelFnError(f"model_fn returned an EstimatorSpec without a loss in {name} "
                               "mode: pass loss=<scalar tensor> whenever mode is TRAIN or EVAL")
        if mode == "train" and result.train_op is None:
            raise ModelFnError(
                "model_fn returned an EstimatorSpec without a train_op in TRAIN mode: pass "
                "train_op=optimizer.minimize(loss, global_step=tf.compat.v1.train."
                "get_global_step())")
        return result
    if hasattr(result, "as_estimator_spec"):
        raise ModelFnError(
            f"model_fn returned a {type(result).__name__} in {name} mode, which only "
            "TPUEstimator accepts: return result.as_estimator_spec() for tf.estimator.Estimator")
    hint = ""
    if isinstance(result, dict) and "loss" in result:
        hint = " (its 'loss' entry belongs in EstimatorSpec(mode, loss=...))"
    elif result is None:
        hint = " (is a `return` missing for this mode?)"
    raise ModelFnError(f"model_fn returned {_describe(result)} in {name} mode, not a "
                       f"tf.estimator.EstimatorSpec{hint}: {SPEC_FIX}")


def _describe(value) -> str:
    if value is None:
        return "None"
    kind = type(value).__name__
    return f"an {kind}" if kind[:1].lower() in "aeiou" else f"a {kind}"


_TRANSLATIONS = (
    ("Missing loss", "an EstimatorSpec without a loss in {mode} mode",
     "pass loss=<scalar tensor> to EstimatorSpec whenever mode is TRAIN or EVAL"),
    ("Missing train_op", "an EstimatorSpec without a train_op in {mode} mode",
     "pass train_op=optimizer.minimize(loss, global_step=tf.compat.v1.train.get_global_step())"),
    ("Missing predictions", "an EstimatorSpec without predictions in {mode} mode",
     "pass predictions=<tensor or dict of tensors> when mode is PREDICT"),
    ("Loss must be scalar", "a loss that is not a scalar in {mode} mode",
     "reduce it to one number, e.g. loss=tf.reduce_mean(per_example_loss)"),
    ("loss must be Tensor", "a loss that is not a Tensor in {mode} mode",
     "pass the loss tensor itself, not a Python number or a Keras loss object"),
    ("train_op must be Operation or Tensor", "a train_op that is not an op in {mode} mode",
     "pass the op optimizer.minimize(...) returns"),
)


def translate(exc: BaseException, mode) -> ModelFnError | None:
    """A ModelFnError for TensorFlow's EstimatorSpec checks raised inside a model_fn, else None."""
    if not isinstance(exc, (ValueError, TypeError)) or isinstance(exc, MlreproError):
        return None
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames or "tensorflow_estimator" not in frames[-1].filename:
        return None
    text = str(exc)
    for needle, what, fix in _TRANSLATIONS:
        if needle in text:
            return ModelFnError(f"model_fn built {what.format(mode=mode_name(mode))} "
                                f"(TensorFlow says: {text.strip()}): {fix}")
    return None
