"""Input orders that are a pure function of (seed, epoch), so a resumed run sees the same data.

Keras' own shuffling of `tf.data` pipelines (`Dataset.shuffle(...,
reshuffle_each_iteration=True)`) draws each epoch's order from a per-process
counter that no checkpoint holds (tensorflow/tensorflow#58925): a restarted
process replays epoch 0's order. Here the order of epoch *e* is
`index_shuffle(i, seed=[seed, e])`, read from a `tf.Variable` that
`ReproCallback` sets before each epoch's iterator is made (in `on_train_begin`
and `on_epoch_end`, which both Keras 3 and tf_keras call before that).
"""

from __future__ import annotations

import random
import threading
import weakref
from typing import Any

_lock = threading.Lock()
_epoch_variables: list = []  # weak references to every epoch variable of this process
ORDER_OP = "RandomIndexShuffle"  # the op tf.random.experimental.index_shuffle adds


def _register(variable) -> None:
    with _lock:
        _epoch_variables[:] = [r for r in _epoch_variables if r() is not None]
        _epoch_variables.append(weakref.ref(variable))


def set_epoch(epoch: int) -> int:
    """Point every deterministic dataset of this process at `epoch`; returns how many."""
    with _lock:
        refs = list(_epoch_variables)
    n = 0
    for ref in refs:
        var = ref()
        if var is not None:
            var.assign(int(epoch))
            n += 1
    return n


def is_epoch_variable(variable) -> bool:
    """Whether `variable` is the epoch counter of a `deterministic_dataset`."""
    with _lock:
        return any(r() is variable for r in _epoch_variables)


def active() -> int:
    """How many deterministic datasets are alive in this process."""
    with _lock:
        return sum(1 for r in _epoch_variables if r() is not None)


def is_ordered(dataset: Any, ops: list | None = None) -> bool:
    """Whether a dataset's order comes from `deterministic_dataset` (directly or downstream)."""
    if getattr(dataset, "_mlrepro_epoch_ordered", False):
        return True
    return bool(ops) and ORDER_OP in ops


def deterministic_dataset(x: Any, y: Any = None, sample_weight: Any = None, *,
                          batch_size: int = 32, shuffle: bool = True, seed: int | None = None,
                          drop_remainder: bool = False):
    """A `tf.data.Dataset` over in-memory arrays whose order depends only on (seed, epoch).

    Use it instead of `Dataset.from_tensor_slices(...).shuffle(...).batch(...)`
    when an interrupted run must resume bit for bit: `ReproCallback` sets the
    epoch before each epoch, so a restarted process sees epoch *e*'s order again.
    NumPy arrays passed straight to `fit` need none of this (Keras draws the same
    order from the seed each time).

    Args:
        x: an array, or a list/tuple/dict of arrays with the same first dimension.
        y: targets (same structure rules), or None.
        sample_weight: per-example weights, or None.
        batch_size: examples per batch.
        shuffle: shuffle each epoch (by seed and epoch); False keeps the array order.
        seed: the order's seed; default: one drawn from Python's `random` (seeded by
            `ReproCallback(seed=...)` or `deterministic=True` when made after it).
        drop_remainder: drop the last partial batch.

    Example:
        >>> import numpy as np, mlrepro.keras
        >>> ds = mlrepro.keras.deterministic_dataset(np.zeros((10, 2)), np.zeros(10),
        ...                                          batch_size=4, seed=1)
        >>> [int(b[0].shape[0]) for b in ds]
        [4, 4, 2]
    """
    import numpy as np
    import tensorflow as tf

    if not isinstance(batch_size, int) or batch_size < 1:
        from mlrepro.errors import MlreproError

        raise MlreproError(f"batch_size {batch_size!r} must be a positive int: "
                           "e.g. batch_size=32")
    data = tuple(v for v in (x, y, sample_weight) if v is not None)
    if len(data) == 1:
        data = data[0]
    tensors = tf.nest.map_structure(lambda a: tf.constant(np.asarray(a)), data)
    n = int(tf.nest.flatten(tensors)[0].shape[0])
    if seed is None:
        seed = random.randrange(2 ** 31)
    with tf.init_scope():
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="mlrepro_epoch")
    seed_t = tf.constant(int(seed), dtype=tf.int64)

    def position(i):
        if not shuffle or n < 2:
            return i
        return tf.random.experimental.index_shuffle(
            i, seed=tf.stack([seed_t, epoch.read_value()]), max_index=n - 1)

    def gather(idx):
        return tf.nest.map_structure(lambda t: tf.gather(t, idx), tensors)

    ds = (tf.data.Dataset.range(n).map(position)
          .batch(batch_size, drop_remainder=drop_remainder).map(gather))
    ds._mlrepro_epoch_ordered = True
    ds._mlrepro_epoch = epoch  # keeps the variable alive as long as the dataset
    ds._mlrepro_seed = int(seed)
    _register(epoch)
    return ds
