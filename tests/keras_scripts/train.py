"""A small training script for the subprocess tests of mlrepro.keras.ReproCallback.

Usage: train.py --store S --checkpoint C --out weights.bin [--input numpy|tfdata|ordered|reshuffle]
                [--epochs N] [--kill-at EPOCH:BATCH --marker FILE] [--legacy]

With --kill-at it writes the marker file at that batch and then waits for the
test to SIGKILL it. It prints `RUN <id>` and writes the final weights' bytes.
"""

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--store", required=True)
parser.add_argument("--checkpoint", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--input", default="numpy")
parser.add_argument("--epochs", type=int, default=4)
# Also from the environment: a restart must repeat the killed command line exactly,
# or it is another experiment (ReproCallback(resume="auto")).
parser.add_argument("--kill-at", default=os.environ.get("TRAIN_KILL_AT"))
parser.add_argument("--marker", default=os.environ.get("TRAIN_MARKER"))
parser.add_argument("--legacy", action="store_true")
parser.add_argument("--export", action="store_true")
parser.add_argument("--no-dropout", action="store_true")
args = parser.parse_args()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if args.legacy:
    import tf_keras as keras
else:
    import keras
import numpy as np

import mlrepro.keras

# The callback comes first: it seeds everything before the model draws its weights.
callback = mlrepro.keras.ReproCallback(
    project="resume-test", store=args.store, seed=7, deterministic=True,
    log_every_n_steps=1, checkpoint=args.checkpoint, params={"input": args.input},
    export=("keras",) if args.export else False, tensorboard=False)

rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6, 6, 1)).astype("float32")
y = rng.integers(0, 3, size=96)
model = keras.Sequential([
    keras.Input((6, 6, 1)),
    keras.layers.Conv2D(4, 3, activation="relu"),
    keras.layers.Flatten(),
    keras.layers.Dropout(0.0 if args.no_dropout else 0.3),
    keras.layers.Dense(3),
])
model.compile(optimizer=keras.optimizers.Adam(0.01),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])

if args.input != "numpy":
    import tensorflow as tf
if args.input == "numpy":
    data = dict(x=x, y=y, batch_size=16, shuffle=True)
elif args.input == "tfdata":
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=5,
                                                            reshuffle_each_iteration=False)
    data = dict(x=ds.batch(16))
elif args.input == "reshuffle":
    data = dict(x=tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=5).batch(16))
elif args.input == "ordered":
    data = dict(x=mlrepro.keras.deterministic_dataset(x, y, batch_size=16, seed=11))
else:
    sys.exit(f"unknown input {args.input}")


class KillSwitch(keras.callbacks.Callback):
    """Stop dead in the middle of an epoch so the test can SIGKILL this process."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            time.sleep(1.0)  # let the run's writer flush the points logged so far
            with open(args.marker, "w") as fh:
                fh.write(str(os.getpid()))
            while True:
                time.sleep(1)


callbacks = [callback]
if args.kill_at:
    epoch, batch = (int(v) for v in args.kill_at.split(":"))
    callbacks.append(KillSwitch(epoch, batch))
model.fit(epochs=args.epochs, verbose=0, callbacks=callbacks, **data)
with open(args.out, "wb") as fh:
    for w in model.get_weights():
        fh.write(np.ascontiguousarray(w).tobytes())
print("RUN", callback.run.id, flush=True)
