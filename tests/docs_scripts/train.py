"""The docs' example project: a tiny Keras classifier recorded as project `cifar10`.

tests/test_docs_examples.py trains it twice (`--lr 0.1`, `--lr 0.01`) to make the store the
README's and docs' command examples run against, and `mlrepro reproduce` re-runs it from
there. With DOCS_RUN_TAIL set (the fixture only, never a re-run) the run's id ends with that
tail, so the examples can name the runs `3f9a` and `77c2`.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402

import mlrepro.keras  # noqa: E402
from mlrepro import record  # noqa: E402


def _fixed_tail(tail: str) -> None:
    new_run_id = record.new_run_id
    record.new_run_id = lambda now=None: new_run_id(now)[:16] + tail


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if os.environ.get("DOCS_RUN_TAIL"):
        _fixed_tail(os.environ["DOCS_RUN_TAIL"])

    callback = mlrepro.keras.ReproCallback(project="cifar10", params={"lr": args.lr}, seed=1,
                                           deterministic=True, checkpoint=False,
                                           export=("keras",), tensorboard=False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=args.lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=args.epochs, validation_split=0.25, verbose=0,
              callbacks=[callback])
    print(f"run_id={callback.run.id}")


if __name__ == "__main__":
    main()
