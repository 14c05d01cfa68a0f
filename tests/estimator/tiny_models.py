"""Tiny data and models for the tf.estimator tests, built in memory (no downloads)."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

N_FEATURES = 4
N_CLASSES = 3

def make_data(n=64, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, N_FEATURES).astype("float32")
    y = ((x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)).astype("int64")
    return x, y

def train_input_fn(x, y, batch=16):
    def input_fn():
        ds = tf.data.Dataset.from_tensor_slices(({"x": x}, y))
        return ds.shuffle(len(x), seed=1).repeat().batch(batch)
    return input_fn

def eval_input_fn(x, y, batch=32):
    def input_fn():
        return tf.data.Dataset.from_tensor_slices(({"x": x}, y)).batch(batch)
    return input_fn

def serving_input_fn():
    x = tf.compat.v1.placeholder(tf.float32, [None, N_FEATURES], name="x")
    return tf.estimator.export.ServingInputReceiver({"x": x}, {"x": x})

def logits_fn(features, mode):
    """A two-layer net with dropout, written with Keras layers in the Estimator's graph."""
    h = tf.keras.layers.Dense(8, activation="relu")(features["x"])
    h = tf.keras.layers.Dropout(0.2)(h, training=mode == tf.estimator.ModeKeys.TRAIN)
    return tf.keras.layers.Dense(N_CLASSES)(h)

def fetch_dir_artifact(store, manifest, name, target):
    """Materialise a directory artifact from the store's objects into `target`."""
    entry = manifest["artifacts"][name]
    assert entry["kind"] == "dir", entry
    for rel, info in entry["files"].items():
        path = os.path.join(target, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(store.read_object(info["digest"]))
    return str(target)

