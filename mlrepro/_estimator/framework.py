"""Load TensorFlow with tf.estimator, or say clearly why it cannot be used."""

from __future__ import annotations

from mlrepro.errors import MlreproError

# Estimator mode names as a person reads them in an error message.
MODE_NAMES = {"train": "TRAIN", "eval": "EVAL", "infer": "PREDICT"}


class EstimatorUnavailable(MlreproError):
    """tf.estimator cannot be imported in this environment."""


def load_tf():
    """TensorFlow, checked to have `tf.estimator` (removed in TensorFlow 2.16)."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise EstimatorUnavailable(
            f"mlrepro.estimator needs TensorFlow ({exc}): pip install 'tensorflow<=2.15' "
            "'tensorflow-estimator<=2.15'") from exc
    try:
        estimator = tf.estimator
        estimator.EstimatorSpec  # noqa: B018 - the attribute access is the check
    except (AttributeError, ImportError) as exc:
        raise EstimatorUnavailable(
            f"tf.estimator is not available in TensorFlow {tf.__version__} (it was removed in "
            "2.16): use mlrepro.keras.ReproCallback, or install tensorflow<=2.15 with "
            "tensorflow-estimator") from exc
    return tf


def mode_name(mode) -> str:
    """TRAIN / EVAL / PREDICT for an Estimator mode key."""
    return MODE_NAMES.get(str(mode), str(mode).upper())
