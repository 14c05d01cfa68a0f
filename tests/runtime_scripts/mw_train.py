"""A worker of a two-host job: mlrepro builds TF_CONFIG from the SageMaker host list.

Run by tests/test_distribute.py as two processes on 127.0.0.1. Each reads its
own fake SageMaker tree ($MLREPRO_SAGEMAKER_BASE_DIR), trains a tiny tf_keras
model under MultiWorkerMirroredStrategy, and writes what it saw to $MW_OUT.
"""

import json
import os
import sys

import numpy as np

import mlrepro

rt = mlrepro.runtime.detect()
strategy = mlrepro.distribute.strategy(rt)   # sets TF_CONFIG, then builds the strategy

import tensorflow as tf  # noqa: E402  (tf.keras is tf_keras: TF_USE_LEGACY_KERAS=1)

keras = tf.keras
epochs = int(rt.hyperparameters.get("epochs", 2))
skip = bool(os.environ.get("MW_SKIP_CHECK"))       # a worker that never checks workers
use_callback = bool(os.environ.get("MW_CALLBACK"))  # record with ReproCallback (it checks)
run = workers = None
if not use_callback:
    run = mlrepro.start_run(project="multiworker", params=rt.hyperparameters, seed=3)
    workers = None if skip else mlrepro.distribute.check_workers(run, strategy)

with strategy.scope():
    # With ReproCallback: BatchNormalization too, whose statistics are read through a
    # collective (synchronised on read), as in the ResNet example.
    model = keras.Sequential([keras.layers.Dense(4, activation="relu", input_shape=(3,)),
                              *([keras.layers.BatchNormalization()] if use_callback else []),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(float(rt.hyperparameters.get("lr", 0.05))),
                  loss="mse")

x = np.random.RandomState(0).rand(64, 3).astype("float32")
y = x.sum(axis=1, keepdims=True)
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


class LogLoss(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        run.log_metrics({"loss": float(logs["loss"])}, step=epoch, epoch=epoch)


callbacks = [LogLoss()]
if use_callback:
    from mlrepro.keras import ReproCallback

    callbacks = [] if skip else [ReproCallback(project="multiworker", seed=3,
                                               checkpoint=os.environ["MW_CKPT"], export="keras")]
history = model.fit(ds, epochs=epochs, verbose=0, callbacks=callbacks)
if use_callback and callbacks:
    run = callbacks[0].run
if run is not None:
    run.finish()
with open(os.environ["MW_OUT"], "w") as fh:
    json.dump({"rank": rt.rank, "is_chief": rt.is_chief, "writes": run and run.writes,
               "run_id": run and run.id,
               "tf_config": json.loads(os.environ["TF_CONFIG"]),
               "replicas": strategy.num_replicas_in_sync, "multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
               "loss": history.history["loss"], "workers": workers,
               "model_class": type(model).__module__,
               "argv": sys.argv[1:]}, fh)
