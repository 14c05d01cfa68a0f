"""Input pipelines whose batches are a pure function of (seed, epoch), for exact resume.

The order of epoch `e` is `tf.random.experimental.index_shuffle(i, seed=[seed, e])`;
each batch's augmentation (pad 4, random 32x32 crop, random horizontal flip) is
drawn by stateless ops keyed on what that order fixes. So the same seed gives
the same batches in every process, and a job resumed at epoch `k`, batch `s`
sees exactly the batches the uninterrupted job would have seen. With Keras,
`keras_train_dataset` takes the epoch from `mlrepro.keras.deterministic_dataset`
(set by `ReproCallback` before each epoch, and to the restored epoch on a
resume); without Keras, `train_dataset(start_epoch=k, skip_batches=s)`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import formats
from data import Split
from hparams import steps_per_epoch

# Per-channel mean and standard deviation of the CIFAR-10 training images (0..1 scale).
# Fixed constants rather than statistics of whatever data is loaded, so every source,
# split and subset is normalised identically.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
PAD = 4
_CROP, _FLIP = 1, 2  # stream ids for the stateless augmentation seeds


def normalise(images):
    """uint8 NHWC -> float32, per-channel mean and standard deviation removed."""
    x = tf.cast(images, tf.float32) / 255.0
    return (x - tf.constant(MEAN)) / tf.constant(STD)


def epoch_order(size: int, seed: int, epoch):
    """The permutation of [0, size) used in `epoch`: `index_shuffle(i, seed=[seed, epoch])`.

    The same order `mlrepro.keras.deterministic_dataset` draws for that seed and epoch.
    """
    indices = tf.range(size, dtype=tf.int64)
    if size < 2:
        return indices
    seeds = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.index_shuffle(indices, seeds, tf.cast(size - 1, tf.int64))


def augment(images, seed, position, first_index):
    """Pad 4, random 32x32 crop, random horizontal flip, for one batch.

    Drawn by stateless ops from (seed, the batch's position in its epoch, the
    index of its first example): both are fixed by (seed, epoch), so the
    augmentation is too. Each image gets its own crop offset and flip.
    """
    n = tf.shape(images)[0]
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(position, tf.int64)])
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(first_index, tf.int64))
    crop_seed = tf.random.experimental.stateless_fold_in(key, _CROP)
    flip_seed = tf.random.experimental.stateless_fold_in(key, _FLIP)
    padded = tf.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]])
    offsets = tf.random.stateless_uniform([n, 2], crop_seed, minval=0, maxval=2 * PAD + 1,
                                          dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(formats.HEIGHT)[None, :]
    cols = offsets[:, 1:] + tf.range(formats.WIDTH)[None, :]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    cropped = tf.gather(cropped, cols, axis=2, batch_dims=1)
    flip = tf.random.stateless_uniform([n], flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(cropped, axis=[2]), cropped)


def make_batch(images, labels, indices, position, seed, augmentation: bool = True):
    """The training batch of examples `indices` that starts at `position` of its epoch."""
    x = tf.gather(images, indices)
    if augmentation:
        x = augment(x, seed, position, indices[0])
    return normalise(x), tf.gather(labels, indices)


def keras_train_dataset(split: Split, *, batch_size: int, seed: int,
                        augmentation: bool = True) -> tf.data.Dataset:
    """One epoch of training batches per iteration, for `model.fit` with `ReproCallback`.

    The order comes from `mlrepro.keras.deterministic_dataset`: ReproCallback
    sets its epoch before each epoch (and to the restored epoch when a restarted
    job resumes), so epoch `e` gets `epoch_order(size, seed, e)` in any process.
    """
    import mlrepro.keras

    order = mlrepro.keras.deterministic_dataset(np.arange(split.size, dtype=np.int64),
                                                batch_size=batch_size, seed=seed)
    # The table is an input of the pipeline (not captured inside a function), so the
    # in-memory cache filled when the split was loaded serves every batch.
    ds = tf.data.Dataset.zip((order.enumerate(), split.table.repeat()))
    ds = ds.map(lambda numbered, table: make_batch(
        table[0], table[1], numbered[1], numbered[0] * batch_size, seed, augmentation))
    return _with_options(ds).prefetch(tf.data.AUTOTUNE)


def train_dataset(split: Split, *, batch_size: int, seed: int, epochs: int,
                  start_epoch: int = 0, skip_batches: int = 0,
                  augmentation: bool = True) -> tf.data.Dataset:
    """The batches of epochs `start_epoch` .. `epochs - 1` in one dataset (Estimator, custom loops).

    The same batches `keras_train_dataset` gives epoch by epoch. `skip_batches`
    drops the first batches of `start_epoch`, so a job restarted at global step
    `s` continues with exactly the batch the uninterrupted job would have used.
    """
    size = split.size
    steps = steps_per_epoch(size, batch_size)

    def one_epoch(images, labels, epoch):
        order = epoch_order(size, seed, epoch)

        def batch(b):
            indices = order[b * batch_size:(b + 1) * batch_size]
            return make_batch(images, labels, indices, b * batch_size, seed, augmentation)

        return tf.data.Dataset.range(steps).map(batch)

    epochs_ds = tf.data.Dataset.range(start_epoch, epochs)
    ds = tf.data.Dataset.zip((split.table.repeat(), epochs_ds)).flat_map(
        lambda table, epoch: one_epoch(table[0], table[1], epoch))
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps * max(0, epochs - start_epoch)))
    if skip_batches:
        ds = ds.skip(skip_batches)
    return _with_options(ds).prefetch(tf.data.AUTOTUNE)


def eval_dataset(split: Split, *, batch_size: int) -> tf.data.Dataset:
    """The split in file order, batched and normalised (no augmentation)."""
    size = split.size
    steps = steps_per_epoch(size, batch_size)

    def batches(images, labels):
        def batch(b):
            return (normalise(images[b * batch_size:(b + 1) * batch_size]),
                    labels[b * batch_size:(b + 1) * batch_size])

        return tf.data.Dataset.range(steps).map(batch)

    ds = split.table.flat_map(batches).apply(tf.data.experimental.assert_cardinality(steps))
    return _with_options(ds).prefetch(tf.data.AUTOTUNE)


def _with_options(ds: tf.data.Dataset) -> tf.data.Dataset:
    # Several workers each build this pipeline and take every k-th batch of the same
    # global order; sharding by file would change what a seed means.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options)
