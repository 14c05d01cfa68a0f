"""A tiny deterministic Keras script recorded by `mlrepro.keras.ReproCallback` alone.

The callback starts the run, fingerprints the arrays, logs batch and epoch
metrics, checkpoints every epoch and exports `model.keras` and a SavedModel, each
naming its run.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402

import mlrepro.keras  # noqa: E402

HIDDEN = 8


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--project", default="callback")
    args = parser.parse_args()

    callback = mlrepro.keras.ReproCallback(
        project=args.project, params={"lr": args.lr, "epochs": args.epochs}, seed=1,
        deterministic=True, checkpoint=args.checkpoints, log_every_n_steps=1,
        tensorboard=False)
    with np.load(args.data) as data:
        x, y = data["x"], data["y"]
    model = keras.Sequential([keras.Input((x.shape[1],)),
                              keras.layers.Dense(HIDDEN, activation="relu"),
                              keras.layers.Dropout(0.1),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=args.lr), loss="mse")
    model.fit(x, y, epochs=args.epochs, batch_size=8, shuffle=True, verbose=0,
              callbacks=[callback])
    print(f"run_id={callback.run.id}")


if __name__ == "__main__":
    main()
