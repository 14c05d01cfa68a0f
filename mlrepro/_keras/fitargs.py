"""The arguments of the `fit` call a callback runs in.

Keras hands callbacks only `params` (epochs, steps, verbose); batch size,
validation settings, class weights and the inputs themselves stay in `fit`'s
frame. The callback reads that frame once, in `on_train_begin`: a read of local
variables, no patching of Keras. Works for Keras 3 (every backend's `fit` has
the same argument names) and tf_keras.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

FIT_ARGUMENTS = ("batch_size", "epochs", "verbose", "validation_split", "shuffle",
                 "initial_epoch", "steps_per_epoch", "validation_steps",
                 "validation_batch_size", "validation_freq")
MAX_FRAMES = 40


@dataclass
class FitCall:
    """What one `fit` call was given (inputs after Keras' own validation split)."""

    found: bool = False
    arguments: dict = field(default_factory=dict)
    x: Any = None
    y: Any = None
    sample_weight: Any = None
    validation: Any = None          # (x, y, sample_weight) or a dataset, or None
    class_weight: Any = None
    callback_list: Any = None       # the CallbackList object fit made (lives as long as fit)
    epoch_iterator: Any = None      # Keras 3: the EpochIterator fit loops over


def find(model: Any, start=None) -> FitCall:
    """Read the innermost `fit` frame of `model` on this thread's stack."""
    frame = start or sys._getframe(1)
    depth = 0
    while frame is not None and depth < MAX_FRAMES:
        if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model:
            return _from_locals(frame.f_locals)
        frame = frame.f_back
        depth += 1
    return FitCall()


def _from_locals(local: dict) -> FitCall:
    args = {k: _plain(local.get(k)) for k in FIT_ARGUMENTS if k in local}
    validation = local.get("validation_data")
    if validation is None and "val_x" in local:
        validation = (local.get("val_x"), local.get("val_y"), local.get("val_sample_weight"))
    class_weight = local.get("class_weight")
    sample_weight = local.get("sample_weight")
    args["class_weight_present"] = class_weight is not None
    if isinstance(class_weight, dict) and len(class_weight) <= 100:
        args["class_weight"] = {str(k): _plain(v) for k, v in class_weight.items()}
    args["sample_weight_present"] = sample_weight is not None
    args["validation_data_present"] = validation is not None
    if validation is not None:
        args["validation_data_type"] = describe_type(validation)
    args["x_type"] = describe_type(local.get("x"))
    callbacks = local.get("callbacks")
    if callbacks is not None and not hasattr(callbacks, "callbacks"):
        callbacks = None
    return FitCall(found=True, arguments=args, x=local.get("x"), y=local.get("y"),
                   sample_weight=sample_weight, validation=validation,
                   class_weight=class_weight, callback_list=callbacks,
                   epoch_iterator=local.get("epoch_iterator"))


def describe_type(value: Any) -> str:
    """`numpy.ndarray`, `tensorflow...TFRecordDatasetV2`, `tuple[...]`..."""
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}[" + ", ".join(describe_type(v) for v in value) + "]"
    if isinstance(value, dict):
        return "dict[" + ", ".join(f"{k}: {describe_type(v)}" for k, v in value.items()) + "]"
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}" if value is not None else "None"


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value) if hasattr(value, "__float__") else repr(value)
    except Exception:  # noqa: BLE001
        return repr(value)


def leading_dimension(x: Any) -> int | None:
    """Number of examples of an array input (or of its first array), else None."""
    first = x
    while isinstance(first, (list, tuple)) and first:
        first = first[0]
    if isinstance(first, dict) and first:
        first = next(iter(first.values()))
    shape = getattr(first, "shape", None)
    if not shape or shape[0] is None:
        return None
    return int(shape[0])


def examples_per_epoch(fit: FitCall, steps: int | None) -> int | None:
    """Examples one epoch trains on: all of an array input, or batch x steps of a dataset."""
    x = fit.x
    if x is None:
        return None
    if hasattr(x, "element_spec"):
        from mlrepro._keras.pipeline import static_batch_size

        batch = static_batch_size(x)
        return batch * steps if batch and steps else None
    n = leading_dimension(x)
    if n is None:
        return None
    batch = fit.arguments.get("batch_size") or 32
    if fit.arguments.get("steps_per_epoch"):
        return min(n, int(fit.arguments["steps_per_epoch"]) * int(batch))
    return n

