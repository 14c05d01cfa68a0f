"""The two workloads of the tracker comparison: a tiny dense net and ResNet-20, on synthetic data.

Both are built the same way for every tracker (same seed, same data), so the only
difference between two runs of a workload is the tracker attached to `fit`.
Import this module only after TensorFlow may be imported (it imports Keras).

Example:
    >>> model, x, y = build("tiny", steps=100, batch_size=16, seed=0)
    >>> model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
"""

from __future__ import annotations

import numpy as np

WORKLOADS = ("tiny", "resnet20")
TINY_FEATURES = 32
CLASSES = 10


def tiny_model(keras):
    """A two-layer dense classifier: a step costs well under a millisecond on a CPU."""
    inputs = keras.Input((TINY_FEATURES,))
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(hidden)
    return keras.Model(inputs, outputs, name="tiny")


def _basic_block(keras, x, filters: int, stride: int):
    layers = keras.layers
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal")(x)
    y = layers.BatchNormalization()(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                      kernel_initializer="he_normal")(y)
    y = layers.BatchNormalization()(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 kernel_initializer="he_normal")(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


def resnet20(keras):
    """ResNet-20 for 32x32x3 images (He et al. 2016, CIFAR variant: 3 x 3 blocks, ~0.27M params)."""
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            x = _basic_block(keras, x, filters, 2 if stage > 0 and block == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet20")


def data(workload: str, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs and labels shaped like the workload's real data (CIFAR-10 for ResNet-20)."""
    rng = np.random.default_rng(seed)
    shape = (samples, TINY_FEATURES) if workload == "tiny" else (samples, 32, 32, 3)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, CLASSES, size=(samples,), dtype=np.int64)
    return x, y


def build(workload: str, *, steps: int, batch_size: int, seed: int):
    """A compiled model and exactly `steps` batches of data for one `fit` epoch."""
    import keras

    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    keras.utils.set_random_seed(seed)
    model = tiny_model(keras) if workload == "tiny" else resnet20(keras)
    optimizer = keras.optimizers.Adam(1e-3) if workload == "tiny" else \
        keras.optimizers.SGD(0.1, momentum=0.9)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = data(workload, steps * batch_size, seed)
    return model, x, y
