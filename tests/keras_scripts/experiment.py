"""A training script with the flags a user changes between experiments, for the resume tests.

Usage: experiment.py --store S --checkpoint C [--epochs N] [--learning-rate LR]

`$EXPERIMENT_RESUME` is passed as ReproCallback(resume=...) (an environment variable,
so that it does not change the command line the resume decision compares). After
each epoch it prints `EPOCH <n>` and sleeps `$EXPERIMENT_EPOCH_SLEEP` seconds, so a
test can SIGKILL it between epochs. At the end it prints `RUN <id>`.
"""

import argparse
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--store", required=True)
parser.add_argument("--checkpoint", required=True)
parser.add_argument("--epochs", type=int, default=40)
parser.add_argument("--learning-rate", type=float, default=0.1)
args = parser.parse_args()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402

import mlrepro.keras  # noqa: E402

callback = mlrepro.keras.ReproCallback(
    project="spot", store=args.store, seed=3, checkpoint=args.checkpoint, log_every_n_steps=0,
    params={"epochs": args.epochs, "learning-rate": args.learning_rate},
    export=False, tensorboard=False, resume=os.environ.get("EXPERIMENT_RESUME", "auto"))

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(args.learning_rate), loss="mse")
pause = float(os.environ.get("EXPERIMENT_EPOCH_SLEEP", "0"))


class Pace(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        print("EPOCH", epoch, flush=True)
        time.sleep(pause)


model.fit(x, y, batch_size=16, epochs=args.epochs, verbose=0, callbacks=[callback, Pace()])
print("RUN", callback.run.id, flush=True)
