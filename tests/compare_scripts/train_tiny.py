"""A tiny deterministic Keras training script, run as a real user script by the tests.

It records a run (params, data fingerprint, per-batch and per-epoch metrics) and
exports the model three ways: a bare weights file, a `.keras` file and a SavedModel
with the run id embedded in its assets, as `mlrepro.keras.ReproCallback` does.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402,F401  (imported before start_run so it is seeded)
import keras  # noqa: E402

import mlrepro  # noqa: E402
from mlrepro.capture.data import fingerprint_files  # noqa: E402

HIDDEN = 8
ACTIVATION = "relu"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="out")
    parser.add_argument("--project", default="tiny")
    parser.add_argument("--export", action="store_true", help="also export a SavedModel")
    args = parser.parse_args()

    run = mlrepro.start_run(project=args.project, params={"lr": args.lr, "epochs": args.epochs},
                            seed=args.seed, deterministic=True)
    run.log_data("train", fingerprint_files([args.data]))
    with np.load(args.data) as data:
        x, y = data["x"], data["y"]

    model = keras.Sequential([keras.Input((x.shape[1],)),
                              keras.layers.Dense(HIDDEN, activation=ACTIVATION),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=args.lr), loss="mse",
                  metrics=["mae"])

    class Log(keras.callbacks.Callback):
        step = 0

        def on_train_batch_end(self, batch, logs=None):
            run.log_metrics({"batch/loss": logs["loss"]}, step=self.step)
            self.step += 1

        def on_epoch_end(self, epoch, logs=None):
            run.log_metrics(logs, step=self.step, epoch=epoch)

    model.fit(x, y, epochs=args.epochs, batch_size=8, shuffle=True, verbose=0, callbacks=[Log()])

    os.makedirs(args.out, exist_ok=True)
    weights = os.path.join(args.out, "model.weights.h5")
    model.save_weights(weights)
    run.log_artifact(weights)
    keras_file = os.path.join(args.out, "model.keras")
    model.save(keras_file)
    run.log_artifact(keras_file)
    if args.export:
        exported = os.path.join(args.out, "saved_model")
        model.export(exported, verbose=False)
        os.makedirs(os.path.join(exported, "assets"), exist_ok=True)
        with open(os.path.join(exported, "assets", "mlrepro_run.json"), "w") as fh:
            json.dump({"run_id": run.id, "project": run.project, "store": run.store.uri}, fh)
        run.log_artifact(exported, "saved_model")
    run.finish()
    print(f"run_id={run.id}")


if __name__ == "__main__":
    main()
