"""Which Keras a model belongs to: Keras 3 (any backend) or tf_keras (Keras 2).

The two have different callback protocols and different internals for the few
things the callback touches (variables, optimizer build, resume by epoch).
`LEGACY_ENV` is TensorFlow's own switch for `tf.keras` meaning tf_keras.
"""

from __future__ import annotations

import os
import sys
from typing import Any

LEGACY_ENV = "TF_USE_LEGACY_KERAS"
KERAS3 = "keras3"
TF_KERAS = "tf_keras"


def legacy_requested(environ=None) -> bool:
    """True when `TF_USE_LEGACY_KERAS` asks for tf_keras (as TensorFlow reads it)."""
    environ = os.environ if environ is None else environ
    return environ.get(LEGACY_ENV, "").strip().lower() in ("1", "true", "yes")


def callback_base() -> type:
    """The `Callback` class of the Keras this process uses (object if none is importable)."""
    order = ("tf_keras", "keras") if legacy_requested() else ("keras", "tf_keras")
    for name in order:
        try:
            module = __import__(name)
            base = module.callbacks.Callback
        except Exception:  # noqa: BLE001 - a missing or broken Keras: try the other
            continue
        if name == "keras" and not hasattr(module, "version"):
            continue  # Keras 2 installed as `keras`: use tf_keras or object
        return base
    return object


def of_model(model: Any) -> str:
    """`tf_keras` for a tf_keras model, else `keras3`."""
    for klass in type(model).__mro__:
        if klass.__module__.split(".")[0] == "tf_keras":
            return TF_KERAS
    return KERAS3


def describe(model: Any) -> dict:
    """Keras flavour, version and backend of a model, for the record."""
    flavour = of_model(model)
    out: dict = {"flavour": flavour}
    if flavour == TF_KERAS:
        tfk = sys.modules.get("tf_keras")
        out["version"] = getattr(tfk, "__version__", None)
        out["backend"] = "tensorflow"
    else:
        keras = sys.modules.get("keras")
        out["version"] = getattr(keras, "__version__", None) or getattr(
            getattr(keras, "version", None), "__call__", lambda: None)()
        try:
            out["backend"] = keras.backend.backend()
        except Exception:  # noqa: BLE001
            out["backend"] = os.environ.get("KERAS_BACKEND", "tensorflow")
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        out["tensorflow"] = getattr(tf, "__version__", None)
    return out


def variable_name(v: Any) -> str:
    """A variable's path (Keras 3) or name (tf_keras / tf.Variable)."""
    return str(getattr(v, "path", None) or getattr(v, "name", ""))


def optimizer_of(model: Any) -> Any:
    """The model's optimizer, unwrapping a loss-scale wrapper only for its config."""
    return getattr(model, "optimizer", None)


def optimizer_variables(optimizer: Any) -> list:
    """The optimizer's variables as a list (a property in Keras 3, sometimes a method)."""
    if optimizer is None:
        return []
    variables = getattr(optimizer, "variables", None)
    if callable(variables):
        variables = variables()
    return list(variables or [])


def build_optimizer(model: Any) -> bool:
    """Create the optimizer's slot variables now, so they can be saved or restored.

    Keras 3 builds them before `on_train_begin` only for some optimizers; tf_keras
    builds them on the first step. Returns whether the optimizer is built.
    """
    optimizer = optimizer_of(model)
    if optimizer is None:
        return False
    if getattr(optimizer, "built", False):
        return True
    build = getattr(optimizer, "build", None)
    if build is None:  # tf_keras legacy optimizers create their slots here
        build = getattr(optimizer, "_create_all_weights", None)
    if build is None:
        return False
    scope = _strategy_scope(model)
    if scope is not None:
        with scope:
            build(model.trainable_variables)
    else:
        build(model.trainable_variables)
    return bool(getattr(optimizer, "built", True))


def _strategy_scope(model: Any):
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        return None
    try:
        return strategy.scope()
    except Exception:  # noqa: BLE001
        return None


def set_initial_epoch(model: Any, epoch: int) -> bool:
    """Make the running `fit` start at `epoch` (what BackupAndRestore does in each Keras)."""
    if of_model(model) == KERAS3:
        model._initial_epoch = int(epoch)
        return True
    model._training_state = _TfKerasStart(int(epoch))
    return True


def clear_initial_epoch(model: Any) -> None:
    if of_model(model) == KERAS3:
        if getattr(model, "_initial_epoch", None) is not None:
            model._initial_epoch = None
    elif isinstance(getattr(model, "_training_state", None), _TfKerasStart):
        model._training_state = None


class _TfKerasStart:
    """tf_keras asks `model._training_state` where fit resumes (epoch, step)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def maybe_load_initial_counters_from_ckpt(self, steps_per_epoch, initial_epoch, mode=None):
        return (max(self.epoch, int(initial_epoch or 0)), 0)

    def back_up(self, epoch, batch=0):  # called by tf_keras' own BackupAndRestore only
        pass

    def delete_backup(self):
        pass
