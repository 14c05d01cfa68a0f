"""Training state saved at epoch ends and restored by a restarted process.

A checkpoint is a directory `ckpt-epoch-NNNNN/` holding `state.npz` (every model
variable, every optimizer variable, Keras' seed-generator states and the global
NumPy RNG) and `state.json` (epoch, global step, variable names and shapes, the
Python RNG state, the weights' digest). Variables are read and assigned in model
order, so restoring needs no Keras saving format: it works the same for Keras 3
on any backend and for tf_keras, and includes what `model.save` leaves out (the
Dropout seed-generator states). A directory appears complete or not at all
(written aside, then renamed).

A checkpoint taken inside an epoch (`checkpoint_every` in steps or a duration, or
at a SIGTERM) is `ckpt-epoch-NNNNN-batch-BBBBBB/`: NNNNN epochs complete and BBBBBB
batches of the next one trained; its `state.json` says `batch` and it also holds
the metric trackers (`metrics|...` arrays). Names sort in training order.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from typing import Any

from mlrepro._keras import flavour
from mlrepro.store.files import make_own_dir

PREFIX = "ckpt-epoch-"
STATE_FILE = "state.npz"
META_FILE = "state.json"
FORMAT = 1


class CheckpointMismatch(Exception):
    """The checkpoint's variables do not fit this model (a different architecture)."""


def name(epoch: int, batch: int | None = None) -> str:
    """Directory name of the checkpoint taken after `epoch` (0-based, -1: none) completed
    and, for one taken at a step boundary, `batch` batches of the next epoch trained."""
    base = f"{PREFIX}{epoch + 1:05d}"
    return base if batch is None else f"{base}{BATCH_INFIX}{batch:06d}"


BATCH_INFIX = "-batch-"


def is_epoch_end(path: str) -> bool:
    return BATCH_INFIX not in os.path.basename(path)


def variables(model: Any, state: "list | tuple" = ()) -> list[tuple[str, str, Any]]:
    """(group, name, variable) for everything a resumed run needs, in a stable order.

    `state` are further variables a resumed run needs: random generators the input
    pipeline or the model draw from (`tf.random.Generator`, Keras SeedGenerators).
    """
    out = [("model", flavour.variable_name(v), v) for v in list(model.variables)]
    seen = {id(v) for _, _, v in out}
    for v in flavour.optimizer_variables(flavour.optimizer_of(model)):
        if id(v) not in seen:
            out.append(("optimizer", flavour.variable_name(v), v))
            seen.add(id(v))
    # tf_keras keeps the learning rate in a variable outside `optimizer.variables`;
    # ReduceLROnPlateau lowers it, so it is training state.
    rate = getattr(flavour.optimizer_of(model), "_learning_rate", None)
    if rate is not None and hasattr(rate, "assign") and id(rate) not in seen:
        out.append(("optimizer", flavour.variable_name(rate), rate))
        seen.add(id(rate))
    for v in _global_rng_variables(model):
        if id(v) not in seen:
            out.append(("rng", flavour.variable_name(v), v))
            seen.add(id(v))
    for v in state:
        inner = getattr(v, "value", None)
        if id(v) not in seen and (inner is None or callable(inner) or id(inner) not in seen):
            out.append(("state", flavour.variable_name(v), v))
            seen.add(id(v))
    return out


def state_digest(arrays: list) -> str:
    """sha256 over saved arrays in order: what a restore is checked against."""
    h = hashlib.sha256()
    for arr in arrays:
        h.update(f"{arr.dtype.str}|{arr.shape}\n".encode())
        h.update(memoryview(arr.tobytes()))
    return h.hexdigest()


def _global_rng_variables(model: Any) -> list:
    if flavour.of_model(model) != flavour.KERAS3:
        return []
    try:
        from keras.src.backend.common import global_state

        gen = global_state.get_global_attribute("global_seed_generator")
        state = getattr(gen, "state", None)
        return [state] if state is not None else []
    except Exception:  # noqa: BLE001 - a Keras without a global seed generator
        return []


def to_numpy(v: Any):
    import numpy as np

    value = v.numpy() if hasattr(v, "numpy") else v.value
    return np.asarray(value)


def weights_digest(model: Any) -> str:
    """sha256 over the model's weights in order: equal digests mean identical weights."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(memoryview(w.tobytes()))
    return h.hexdigest()


def save(model: Any, directory: str, *, epoch: int, global_step: int, extra: dict,
         state: "list | tuple" = (), state_arrays: "list | None" = None,
         callbacks: "tuple[dict, dict] | None" = None, batch: int | None = None,
         extra_arrays: "dict | None" = None) -> str:
    """Write the checkpoint taken after `epoch`; returns its directory.

    `state_arrays`, when given, are the values of the `state` variables read earlier
    (at the epoch end, before the next epoch's iterator could draw from them).
    `callbacks` is `(values, arrays)` from `cbstate.save`: the other callbacks' state.
    """
    from mlrepro._keras import cbstate

    import numpy as np

    make_own_dir(directory)   # with a .gitignore of `*`: checkpoints are never code
    final = os.path.join(directory, name(epoch, batch))
    tmp = tempfile.mkdtemp(prefix=".tmp-" + name(epoch, batch) + "-", dir=directory)
    try:
        arrays = {}
        listing = []
        early = iter(state_arrays) if state_arrays is not None else None
        for i, (group, vname, var) in enumerate(variables(model, state)):
            arr = next(early) if early is not None and group == "state" else to_numpy(var)
            arrays[f"v{i:05d}"] = arr
            listing.append({"group": group, "name": vname, "shape": list(arr.shape),
                            "dtype": arr.dtype.str})
        digest = state_digest(list(arrays.values()))
        cb_values, cb_arrays = callbacks or ({}, {})
        arrays.update(cb_arrays)
        arrays.update(extra_arrays or {})
        np_state = np.random.get_state()
        arrays["numpy_random_keys"] = np.asarray(np_state[1])
        meta = {
            "format": FORMAT, "epoch": int(epoch), "global_step": int(global_step),
            "batch": int(batch or 0),
            "created": time.time(), "variables": listing,
            "weights_digest": weights_digest(model), "state_digest": digest,
            "callbacks": cb_values, "callbacks_digest": cbstate.digest(cb_values, cb_arrays),
            "numpy_random": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python_random": _python_state(),
            **extra,
        }
        with open(os.path.join(tmp, STATE_FILE), "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        with open(os.path.join(tmp, META_FILE), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, sort_keys=True, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def completed(directory: str) -> list[str]:
    """Complete checkpoint directories, oldest first."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(PREFIX)
                       and os.path.isfile(os.path.join(directory, n, META_FILE))
                       and os.path.isfile(os.path.join(directory, n, STATE_FILE)))
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names]


def latest(directory: str, epoch_end: bool = False) -> str | None:
    """The newest checkpoint (with `epoch_end`: the newest taken at an epoch end)."""
    found = [p for p in completed(directory) if not epoch_end or is_epoch_end(p)]
    return found[-1] if found else None


def read_meta(path: str) -> dict:
    with open(os.path.join(path, META_FILE), encoding="utf-8") as fh:
        return json.load(fh)


def restore(model: Any, path: str, state: "list | tuple" = ()) -> dict:
    """Assign the checkpoint at `path` to the model, optimizer and RNGs; returns its meta.

    The meta's `verified` says whether the variables read back after the restore
    hash to the digest the checkpoint stored; `callback_arrays` holds the other
    callbacks' saved arrays (for `cbstate.restore`). Raises CheckpointMismatch (and
    assigns nothing) when the variables do not fit.
    """
    import numpy as np

    meta = read_meta(path)
    flavour.build_optimizer(model)
    targets = variables(model, state)
    listing = meta.get("variables") or []
    with np.load(os.path.join(path, STATE_FILE), allow_pickle=False) as data:
        arrays = [data[f"v{i:05d}"] for i in range(len(listing))]
        keys = data["numpy_random_keys"] if "numpy_random_keys" in data.files else None
        meta["callback_arrays"] = {k: data[k] for k in data.files if k.startswith("cb|")}
        meta["metric_arrays"] = {k: data[k] for k in data.files if k.startswith("metrics|")}
    problems = _mismatches(targets, listing, arrays)
    if problems:
        raise CheckpointMismatch("; ".join(problems[:3]))
    for (_group, _name, var), arr in zip(targets, arrays):
        var.assign(arr)
    if meta.get("state_digest"):
        meta["verified"] = state_digest([to_numpy(v) for _, _, v in targets]) == \
            meta["state_digest"]
    if keys is not None and meta.get("numpy_random"):
        algo, pos, has_gauss, cached = meta["numpy_random"]
        np.random.set_state((algo, keys, pos, has_gauss, cached))
    if meta.get("python_random"):
        version, internal, gauss = meta["python_random"]
        random.setstate((version, tuple(internal), gauss))
    return meta


def _mismatches(targets: list, listing: list, arrays: list) -> list[str]:
    if len(targets) != len(listing):
        counts = {}
        for g, _, _ in targets:
            counts[g] = counts.get(g, 0) + 1
        saved = {}
        for item in listing:
            saved[item["group"]] = saved.get(item["group"], 0) + 1
        return [f"the checkpoint holds {saved} variables, the model {counts}"]
    out = []
    for (group, vname, var), item, arr in zip(targets, listing, arrays):
        shape = tuple(int(d) for d in var.shape)
        if group != item["group"] or shape != tuple(arr.shape):
            out.append(f"{vname} {shape} vs saved {item['name']} {tuple(arr.shape)}")
    return out


def prune(directory: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` checkpoints and the newest one taken at an epoch
    end (what a resume that cannot start mid-epoch restores); returns the deleted paths."""
    found = completed(directory)
    doomed = found[:-keep] if keep > 0 else found
    ends = [p for p in found if is_epoch_end(p)]
    if ends:
        doomed = [p for p in doomed if p != ends[-1]]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed


def remove_all(directory: str) -> None:
    """Delete mlrepro's checkpoints (only directories it named) in `directory`."""
    for p in completed(directory):
        shutil.rmtree(p, ignore_errors=True)
    try:
        for n in os.listdir(directory):
            if n.startswith(".tmp-" + PREFIX):
                shutil.rmtree(os.path.join(directory, n), ignore_errors=True)
    except OSError:
        pass

