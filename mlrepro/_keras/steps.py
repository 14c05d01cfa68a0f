"""Resuming in the middle of an epoch: whether it can be exact, and skipping what was trained.

Keras 3's `fit` has no initial step, only an initial epoch. Its loop calls
`reset_metrics()` and `on_epoch_begin(epoch)` before it makes the epoch's
iterator (`for ... in epoch_iterator`), so a callback can, at the first
`on_epoch_begin` of a resumed attempt, make that one pass of the epoch iterator
skip the `k` batches the interrupted attempt already trained: they are drawn
from the same iterator (same order, not trained) and the loop continues at
batch `k`. That gives the same remaining batches exactly when the epoch's order
depends only on what the checkpoint restores: NumPy input on the TensorFlow
backend (the same permutation from the global seed every epoch, FACTS.md),
`mlrepro.keras.deterministic_dataset`, and `tf.data` pipelines with a fixed,
seeded order. Everything else (`why_not_step`) resumes at the epoch boundary.

The metric trackers (`model.metrics_variables`) are saved with a mid-epoch
checkpoint and put back after Keras' `reset_metrics()`, so the resumed epoch's
epoch-level metrics cover the whole epoch.
"""

from __future__ import annotations

from typing import Any

from mlrepro._keras import exactness, flavour

STEP = "step"
EPOCH = "epoch"
METRICS_PREFIX = "metrics|"


def why_not_step(f: exactness.Facts, steps_per_execution: int = 1,
                 epoch_iterator: Any = None) -> str | None:
    """Why a mid-epoch checkpoint cannot be resumed at its batch; None when it can."""
    if f.flavour != flavour.KERAS3:
        return "tf_keras: mlrepro resumes tf_keras runs at epoch boundaries only"
    if f.multi_worker:
        return "MultiWorkerMirroredStrategy: resumed at epoch boundaries only"
    if f.backend != "tensorflow":
        return f"the {f.backend} backend: mid-epoch resume is implemented for TensorFlow only"
    if epoch_iterator is None or not hasattr(epoch_iterator, "_enumerate_iterator"):
        return "the epoch iterator of fit was not found, so no batches can be skipped"
    if steps_per_execution and int(steps_per_execution) > 1:
        return (f"steps_per_execution={int(steps_per_execution)}: the train function "
                "consumes several batches per call")
    if f.steps_per_epoch:
        return ("steps_per_epoch is set: Keras carries one iterator across epochs, whose "
                "position a restarted process cannot take up")
    if f.seed is None:
        return "no seed was set, so the input order of a restarted process differs"
    if f.input_kind == "arrays":
        if f.shuffle == "batch":
            return "shuffle=\"batch\" reorders within batches per process"
        return None
    if f.input_kind != "tf.data":
        return {"sequence": "a PyDataset/Sequence decides its own order",
                "python": "a Python generator cannot be rewound or skipped in order"}.get(
            f.input_kind, f"input of kind {f.input_kind!r} cannot be skipped in order")
    if f.reshuffles or f.unseeded_shuffle:
        return ("the tf.data pipeline reshuffles per iteration or shuffles without a seed, "
                "so a restarted process draws another order: use "
                "mlrepro.keras.deterministic_dataset(...)")
    if f.python_ops:
        return "the tf.data pipeline runs Python code whose position cannot be taken up"
    if f.random_ops:
        return "the tf.data pipeline draws from unseeded stateful random ops"
    if f.pipeline_writes:
        return ("the tf.data pipeline writes random-generator state, which prefetching "
                "advances ahead of the batches trained, so a mid-epoch checkpoint cannot "
                "hold it")
    return None


def skip_batches(epoch_iterator: Any, count: int) -> None:
    """Make the next pass of Keras 3's epoch iterator start at batch `count`.

    The batches before it are drawn from the epoch's own iterator (so the rest come
    in the same order) without training; the loop and every callback then see
    batch numbers `count`, `count + 1`, ... as in the interrupted attempt. Applies to
    one pass only.
    """
    original = type(epoch_iterator)._enumerate_iterator

    def enumerate_skipping():
        epoch_iterator.__dict__.pop("_enumerate_iterator", None)   # this pass only
        for i, item in enumerate(original(epoch_iterator)):
            if i < count:
                next(item[2])   # the batch the interrupted attempt trained
                continue
            yield item

    epoch_iterator._enumerate_iterator = enumerate_skipping


def metric_arrays(model: Any) -> dict:
    """The metric trackers' variables, as extra checkpoint arrays."""
    from mlrepro._keras.checkpoint import to_numpy

    out = {}
    for i, v in enumerate(_metric_variables(model)):
        out[f"{METRICS_PREFIX}{i:04d}"] = to_numpy(v)
    return out


def restore_metrics(model: Any, arrays: dict) -> bool:
    """Assign saved metric trackers back; False when they do not fit (nothing assigned)."""
    saved = [arrays[k] for k in sorted(arrays) if k.startswith(METRICS_PREFIX)]
    targets = _metric_variables(model)
    if not saved or len(saved) != len(targets) or any(
            tuple(int(d) for d in v.shape) != tuple(a.shape) for v, a in zip(targets, saved)):
        return False
    for v, a in zip(targets, saved):
        v.assign(a)
    return True


def _metric_variables(model: Any) -> list:
    try:
        return list(model.metrics_variables)
    except Exception:  # noqa: BLE001 - tf_keras or a model without metrics
        return []
