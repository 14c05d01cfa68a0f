"""Seeds and determinism: set them everywhere asked, and record exactly what was done."""

from __future__ import annotations

import os
import random
import sys


def apply_seed(seed: int | None, deterministic: bool = False) -> dict:
    """Seed Python, NumPy and any imported framework; enable op determinism if asked.

    Frameworks are only touched if already imported, so `import mlrepro` and
    `start_run` never pull TensorFlow in. Returns the record of what was applied.
    """
    record: dict = {"seed": seed, "deterministic": bool(deterministic), "applied": [],
                    "python_hash_seed": os.environ.get("PYTHONHASHSEED")}
    if seed is None and not deterministic:
        return record
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        record["seed"] = seed
        record["seed_generated"] = True
    random.seed(seed)
    record["applied"].append("python.random")
    try:
        import numpy as np

        np.random.seed(seed % (2 ** 32))
        record["applied"].append("numpy.random")
    except ImportError:
        pass
    if "tensorflow" in sys.modules:
        record["applied"] += seed_tensorflow(seed, deterministic)
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.manual_seed(seed)
            record["applied"].append("torch.manual_seed")
        except Exception:  # noqa: BLE001
            pass
    # No TF_DETERMINISTIC_OPS in os.environ: child processes would inherit it, and an
    # unseeded random op in a child then fails. Op determinism is enabled in-process
    # (seed_tensorflow) as soon as TensorFlow is imported.
    return record


def seed_tensorflow(seed: int, deterministic: bool) -> list[str]:
    """Seed TensorFlow and Keras (3 or 2) and turn op determinism on."""
    applied = []
    import tensorflow as tf

    tf.random.set_seed(seed)
    applied.append("tf.random.set_seed")
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(getattr(keras, "utils", None), "set_random_seed"):
        try:
            keras.utils.set_random_seed(seed)
            applied.append("keras.utils.set_random_seed")
        except Exception:  # noqa: BLE001
            pass
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None:
        try:
            tf_keras.utils.set_random_seed(seed)
            applied.append("tf_keras.utils.set_random_seed")
        except Exception:  # noqa: BLE001
            pass
    if deterministic:
        try:
            tf.config.experimental.enable_op_determinism()
            applied.append("tf.config.experimental.enable_op_determinism")
        except Exception:  # noqa: BLE001
            pass
    return applied
