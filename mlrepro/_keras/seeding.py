"""Seeds applied when the callback is made, and what the process's determinism looks like.

Seeding happens in `ReproCallback.__init__`, not in `on_train_begin`: by then
the model's weights and Keras' input permutation ops exist already. Whether a
model existed before seeding is recorded, since its initial weights then came
from an unseeded generator.
"""

from __future__ import annotations

import sys


def apply_now(seed: int | None, deterministic: bool) -> dict:
    """Seed everything imported (see mlrepro.capture.seeds); {} when nothing was asked."""
    if seed is None and not deterministic:
        return {}
    from mlrepro.capture.seeds import apply_seed

    existed = layers_created_before()
    record = apply_seed(seed, deterministic)
    record["model_existed"] = existed
    return record


def layers_created_before() -> bool:
    """Whether Keras had named a layer already (its weights were drawn before seeding)."""
    if "keras" in sys.modules:
        try:
            from keras.src.backend.common import global_state

            if any(global_state.get_global_attribute("object_name_uids", {}).values()):
                return True
        except Exception:  # noqa: BLE001
            pass
    tf_keras_backend = sys.modules.get("tf_keras.src.backend")
    if tf_keras_backend is not None:
        uids = getattr(tf_keras_backend, "PER_GRAPH_OBJECT_NAME_UIDS", None)
        try:
            return any(any(d.values()) for d in uids.values()) if uids else False
        except Exception:  # noqa: BLE001
            return False
    return False


def op_determinism() -> bool | None:
    """Whether TensorFlow op determinism is on (None without TensorFlow)."""
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.framework import config

        return bool(config.is_op_determinism_enabled())
    except Exception:  # noqa: BLE001
        return None


def global_seed() -> int | None:
    """The global seed TensorFlow or Keras 3 was given, if any."""
    if "tensorflow" in sys.modules:
        try:
            from tensorflow.python.framework import random_seed

            seed = random_seed.get_seed(None)[0]
            if seed is not None:
                return seed
        except Exception:  # noqa: BLE001
            pass
    if "keras" in sys.modules:
        try:
            from keras.src.backend.common import global_state

            return global_state.get_global_attribute("global_random_seed")
        except Exception:  # noqa: BLE001
            pass
    return None


def accelerator() -> bool:
    """A GPU or TPU is visible to TensorFlow."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    try:
        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    except Exception:  # noqa: BLE001
        return False
