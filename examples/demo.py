"""`make demo`, until the ResNet example runs: a small real Keras training, recorded.

Trains a tiny conv net on synthetic CIFAR-shaped data for 2 epochs with
`mlrepro.keras.ReproCallback`, then prints `mlrepro runs` and `mlrepro show`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import mlrepro  # noqa: E402
from mlrepro.cli import main as cli  # noqa: E402


def main() -> int:
    import keras

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(512, 32, 32, 3), dtype=np.uint8).astype("float32") / 255.0
    y = rng.integers(0, 10, size=(512,))
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    callback = mlrepro.keras.ReproCallback(project="demo", seed=42, deterministic=True)
    model.fit(x, y, batch_size=32, epochs=2, validation_split=0.1, callbacks=[callback],
              verbose=2)
    run_id = callback.run.id
    print("\n$ mlrepro runs")
    cli(["runs"])
    print(f"\n$ mlrepro show {run_id}")
    cli(["show", run_id])
    return 0


if __name__ == "__main__":
    sys.exit(main())
