"""One worker of a two-worker tf_keras MultiWorkerMirroredStrategy job on 127.0.0.1.

Usage (TF_CONFIG set by the test): multiworker.py STORE CHECKPOINT_DIR
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import mlrepro.keras  # noqa: E402

store, checkpoint = sys.argv[1], sys.argv[2]
strategy = tf.distribute.MultiWorkerMirroredStrategy()
callback = mlrepro.keras.ReproCallback(project="multiworker", store=store, seed=1,
                                       deterministic=True, log_every_n_steps=1,
                                       checkpoint=checkpoint, export=False)
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1))).batch(16)
history = model.fit(ds, epochs=2, verbose=0, callbacks=[callback])
print("RUN", callback.run.id, callback.run.writes, flush=True)
print("LOSS", ",".join(f"{v:.6f}" for v in history.history["loss"]), flush=True)
