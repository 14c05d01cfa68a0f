"""Train a tiny Keras model with ReproCallback for many epochs until the parent kills us.

After each epoch a second callback flushes the run and prints `flushed EPOCH STEP`:
everything up to that point must survive any kill that comes later.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mlrepro  # noqa: E402
import mlrepro.keras  # noqa: E402

store, epochs = sys.argv[1], int(sys.argv[2])


class ReportFlushed(keras.callbacks.Callback):
    def __init__(self, repro):
        super().__init__()
        self.repro = repro
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        assert self.repro.run.flush(10)
        print(f"flushed {epoch} {self.steps}", flush=True)


rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x.sum(axis=1) > 0).astype("int32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(2)])
model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
repro = mlrepro.keras.ReproCallback(project="kill", store=store, log_every_n_steps=1,
                                    checkpoint=False, export=False, tensorboard=False)
print("training", flush=True)
model.fit(x, y, batch_size=16, epochs=epochs, callbacks=[repro, ReportFlushed(repro)],
          verbose=0)
print("done", flush=True)
