"""Keras 3 + MirroredStrategy over two logical CPU devices, recorded by ReproCallback.

Usage: mirrored.py STORE CHECKPOINT_DIR
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mlrepro.keras  # noqa: E402

store, checkpoint = sys.argv[1], sys.argv[2]
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
callback = mlrepro.keras.ReproCallback(project="mirrored", store=store, seed=1,
                                       log_every_n_steps=1, checkpoint=checkpoint,
                                       export=("keras",))
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
model.fit(x, x.sum(axis=1), batch_size=16, epochs=2, verbose=0, callbacks=[callback])
print("RUN", callback.run.id, flush=True)
