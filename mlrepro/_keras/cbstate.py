"""The state of the other callbacks in `fit`, saved in the checkpoint and restored on resume.

A restarted process builds its callbacks afresh: `EarlyStopping` forgets how many
epochs it has waited, `ReduceLROnPlateau` its cooldown, `ModelCheckpoint` its best
value, so a resumed run stops or decays at another epoch (measured, FACTS.md).
The callbacks Keras 3 and tf_keras ship keep that state in a few named attributes;
those are saved with every checkpoint and put back at the first `on_epoch_begin`
of the resumed attempt (after every callback's own `on_train_begin` has reset
them). A callback mlrepro does not know is watched instead: if one of its
attributes changes during training, the record says its state is not saved.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

# Class name -> the attributes that carry its state from one epoch to the next.
STATEFUL = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch", "best_weights"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
    "ModelCheckpoint": ("best", "epochs_since_last_save"),
}
# Shipped callbacks whose effect on training needs no state of theirs (the learning
# rate they set lives in the optimizer's variables, which the checkpoint holds).
STATELESS = ("History", "ProgbarLogger", "BaseLogger", "LearningRateScheduler",
             "TerminateOnNaN", "CSVLogger", "BackupAndRestore", "TensorBoard",
             "RemoteMonitor", "SwapEMAWeights", "ReproCallback")
SHIPPED_MODULES = ("keras", "tf_keras")
WATCH_TYPES = (bool, int, float, str, type(None))


def _shipped(cb: Any) -> bool:
    return type(cb).__module__.split(".")[0] in SHIPPED_MODULES


def kind(cb: Any) -> str:
    """`stateful` (saved), `stateless`, or `unknown` (watched)."""
    name = type(cb).__name__
    if name == "ReproCallback" or (_shipped(cb) and name in STATELESS):
        return "stateless"
    for klass in type(cb).__mro__:
        if klass.__name__ in STATEFUL and klass.__module__.split(".")[0] in SHIPPED_MODULES:
            return "stateful"
    return "unknown"


def _stateful_fields(cb: Any) -> tuple:
    for klass in type(cb).__mro__:
        if klass.__name__ in STATEFUL:
            return STATEFUL[klass.__name__]
    return ()


def label(cb: Any, index: int) -> str:
    return f"{index}:{type(cb).__name__}"


def others(callbacks: list) -> list:
    """(label, callback) for every callback but mlrepro's own."""
    return [(label(cb, i), cb) for i, cb in enumerate(callbacks)
            if type(cb).__name__ != "ReproCallback"]


def save(callbacks: list) -> tuple[dict, dict]:
    """(JSON-able values, arrays) of the stateful callbacks, keyed by label."""
    import numpy as np

    values: dict = {}
    arrays: dict = {}
    for key, cb in others(callbacks):
        if kind(cb) != "stateful":
            continue
        entry = {}
        for attr in _stateful_fields(cb):
            if not hasattr(cb, attr):
                continue
            value = getattr(cb, attr)
            if attr == "best_weights":
                entry[attr] = None if value is None else len(value)
                for i, w in enumerate(value or []):
                    arrays[f"cb|{key}|{attr}|{i}"] = np.asarray(w)
            else:
                entry[attr] = _plain(value)
        values[key] = entry
    return values, arrays


def restore(callbacks: list, values: dict, arrays: dict) -> list[str]:
    """Put saved state back; returns the labels restored (a callback list that changed
    shape restores only what still matches by position and class)."""
    done = []
    for key, cb in others(callbacks):
        entry = values.get(key)
        if entry is None or kind(cb) != "stateful":
            continue
        for attr, value in entry.items():
            if attr == "best_weights":
                value = None if value is None else [
                    arrays[f"cb|{key}|{attr}|{i}"] for i in range(int(value))]
            setattr(cb, attr, value)
        done.append(key)
    return done


def digest(values: dict, arrays: dict) -> str:
    """sha256 of saved callback state, to check a restore against."""
    h = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode())
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(memoryview(arrays[name].tobytes()))
    return h.hexdigest()


def watch(callbacks: list) -> dict:
    """label -> {attribute: plain value} of every unknown callback, to compare later."""
    out = {}
    for key, cb in others(callbacks):
        if kind(cb) == "unknown":
            out[key] = _attributes(cb)
    return out


def changed(before: dict, callbacks: list) -> list[str]:
    """Reasons for each unknown callback whose attributes changed since `watch`."""
    reasons = []
    for key, cb in others(callbacks):
        if key not in before:
            continue
        now = _attributes(cb)
        diff = sorted(k for k in set(before[key]) | set(now) if before[key].get(k) != now.get(k))
        if diff:
            reasons.append(
                f"callback {type(cb).__name__} changed {', '.join(diff[:5])} during training; "
                "mlrepro does not know it and saves none of its state, so a restarted process "
                "starts it afresh: keep its state in the model (a variable) or recompute it "
                "from the epoch number")
    return reasons


def notes(callbacks: list) -> list[str]:
    out = []
    for _key, cb in others(callbacks):
        name = type(cb).__name__
        if name == "CSVLogger" and not getattr(cb, "append", False):
            out.append("CSVLogger(append=False) rewrites its file in a restarted process "
                       "(the weights are not affected): pass append=True to keep every row")
        if name == "BackupAndRestore":
            out.append("BackupAndRestore loads its own backup too, after mlrepro's restore: "
                       "at the first epoch mlrepro checks that the state is still its "
                       "checkpoint's and assigns it again if not")
    return out


def _attributes(cb: Any) -> dict:
    out = {}
    for k, v in vars(cb).items():
        if k in ("model", "params", "validation_data") or k.startswith("__"):
            continue
        if isinstance(v, WATCH_TYPES):
            out[k] = _plain(v)
        elif hasattr(v, "shape") and hasattr(v, "dtype") and getattr(v, "size", 0) <= 1:
            out[k] = _plain(v)
        elif isinstance(v, (list, tuple, dict)):
            out[k] = f"{type(v).__name__}[{len(v)}]"
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return repr(value)
    if isinstance(value, (int,)) or (hasattr(value, "dtype") and "int" in str(value.dtype)):
        return int(f)
    return f if not math.isnan(f) else "nan"
