"""The initial state of a model built before seeding: recorded once, restored by `reproduce`.

`model.fit(..., callbacks=[ReproCallback(seed=1, deterministic=True)])` makes the
callback after the model, so the initial weights (and the seed generators'
states) came from an unseeded generator and differ in every process. The
callback then records them, at the start of training, as the artifact
`initial_state` (the checkpoint format of `mlrepro._keras.checkpoint`: every model
and optimizer variable, Keras' seed-generator states, NumPy's and Python's RNG
states), and a re-run made by `mlrepro reproduce` assigns them before its first
step, so the inline pattern reproduces bit for bit. A plain second run of the
script is still not seeded: the warning names the fix.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from mlrepro._keras import checkpoint as _ckpt
from mlrepro._keras import flavour
from mlrepro.core.run import reproduced_run
from mlrepro.errors import warn

ARTIFACT = "initial_state"
_warned: list[bool] = []


def warn_built_before_seed(seed_record: dict) -> None:
    """Once per process: `deterministic=True` came after the model was built."""
    if _warned or not (seed_record.get("model_existed") and seed_record.get("deterministic")):
        return
    _warned.append(True)
    warn("mlrepro: the model was built before ReproCallback seeded TensorFlow, so its initial "
         "weights are not seeded and a second run of this script starts from others; mlrepro "
         f"records them (artifact {ARTIFACT!r}) and `mlrepro reproduce` restores them, but to "
         "make the script itself repeatable create ReproCallback(seed=..., deterministic=True) "
         "before building the model")


def keep(run: Any, model: Any, seed_record: dict, writes: bool, along: bool = False) -> dict:
    """Restore the original's initial state in a re-run, then record this run's if needed.

    `along`: an MWMS worker that writes nothing still takes the chief's save (its variable
    reads are collectives every worker must join) and throws it away.
    Returns the fields for the run's `determinism` section.
    """
    fields: dict = {}
    original = reproduced_run()
    entry = _recorded(run, original) if original else None
    built_before = bool(seed_record.get("model_existed"))
    if not (built_before or entry) or not list(model.variables):
        return fields
    flavour.build_optimizer(model)  # its variables are part of the state, in every run alike
    if entry is not None and _restore(run, model, original, entry):
        fields["initial_state_restored_from"] = original
    if built_before and (writes or along):
        directory = tempfile.mkdtemp(prefix="mlrepro-initial-state-")
        path = _ckpt.save(model, directory, epoch=-1, global_step=0,
                          extra={"run_id": run.id, "what": ARTIFACT})
        if not writes:
            shutil.rmtree(directory, ignore_errors=True)
            return fields
        run.log_artifact(path, name=ARTIFACT, meta={"global_step": 0})
        run.after_writes(lambda: shutil.rmtree(directory, ignore_errors=True))
        fields["initial_state"] = ARTIFACT
    return fields


def _recorded(run: Any, original: str) -> dict | None:
    """The original run's `initial_state` artifact entry, if it recorded one."""
    store = getattr(run, "store", None)
    if store is None:
        return None
    try:
        entry = (store.read_manifest(original).get("artifacts") or {}).get(ARTIFACT)
    except Exception:  # noqa: BLE001 - the original is not in this store: nothing to restore
        return None
    return entry if entry and entry.get("kind") == "dir" else None


def _restore(run: Any, model: Any, original: str, entry: dict) -> bool:
    """Assign the original's initial state to the model (a warning, False, if it does not fit)."""
    store = run.store
    with tempfile.TemporaryDirectory(prefix="mlrepro-initial-state-") as tmp:
        for rel, f in (entry.get("files") or {}).items():
            if rel not in (_ckpt.STATE_FILE, _ckpt.META_FILE):
                continue
            with open(os.path.join(tmp, rel), "wb") as fh:
                fh.write(store.read_object(f["digest"]))
        try:
            _ckpt.restore(model, tmp)
        except _ckpt.CheckpointMismatch as exc:
            warn(f"mlrepro: the initial state of run {original} does not fit this model ({exc});"
                 " the re-run starts from its own initial weights")
            return False
    run.event("initial_state_restored", from_run=original)
    return True
