"""A SageMaker entry point, run by the real sagemaker-training toolkit's `train` command.

It reads everything from mlrepro.runtime.detect() (the toolkit passes the
hyperparameters as arguments and SM_* variables), trains a tiny Keras model
with mlrepro recording, saves it to the model dir, and writes what it saw to
<output_dir>/seen.json for the test.
"""

import json
import os
import sys

import numpy as np

import mlrepro
from mlrepro.capture.data import fingerprint_files

rt = mlrepro.runtime.detect()
hp = rt.hyperparameters
train_file = os.path.join(rt.channels["training"], "train.npz")
data = np.load(train_file)

import keras  # noqa: E402  (Keras 3: one host, no multi-worker strategy)


def build():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.get({"class_name": hp["optimizer"],
                                                  "config": {"learning_rate": hp["lr"]}}),
                  loss="mse")
    return model


def repro_callback(run):
    """mlrepro.keras.ReproCallback (it records into the active run) when it exists, else a small one."""
    try:
        from mlrepro.keras import ReproCallback

        return ReproCallback(project="toolkit"), "ReproCallback"
    except ImportError:
        pass

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            run.log_metrics({"loss": float(logs["loss"])}, step=epoch, epoch=epoch)

    return Record(), "start_run"


run = mlrepro.start_run(project="toolkit", params=hp, seed=0)
run.log_data("training", fingerprint_files([train_file], source="channel:training"))
callback, kind = repro_callback(run)
model = build()
model.fit(data["x"], data["y"], epochs=hp["epochs"], batch_size=16, verbose=0,
          callbacks=[callback])
model.save(os.path.join(rt.model_dir, "model.keras"))
run.finish()
with open(os.path.join(rt.output_dir, "seen.json"), "w") as fh:
    json.dump({"argv": sys.argv[1:], "hyperparameters": hp, "channels": rt.channels,
               "model_dir": rt.model_dir, "run_id": run.id, "callback": kind}, fh)
