"""A tiny deterministic Keras training that records its run; prints the run id and a weights digest.

Usage: train_tiny.py STORE_OR_EMPTY [EPOCHS]
"""

import hashlib
import json
import sys
import time

import keras  # imported first, so that start_run(seed=...) seeds it too
import numpy as np

import mlrepro

store = sys.argv[1] or None
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
run = mlrepro.start_run(project="tiny", store=store, seed=7, deterministic=True,
                        params={"epochs": epochs, "lr": 0.05}, capture=False)

x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="binary_crossentropy")


class Log(keras.callbacks.Callback):
    step = 0

    def on_train_batch_end(self, batch, logs=None):
        run.log_metrics({"loss": logs["loss"]}, step=self.step)
        self.step += 1
        time.sleep(0.05)  # long enough for several pushes to be attempted mid-training

    def on_epoch_end(self, epoch, logs=None):
        run.log_metrics({"epoch_loss": logs["loss"]}, step=self.step, epoch=epoch)


history = model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                    callbacks=[Log()])
digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
run.finish()
print(json.dumps({"run": run.id, "weights": digest, "loss": history.history["loss"]}))
