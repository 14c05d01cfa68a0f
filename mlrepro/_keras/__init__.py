"""Private parts of `mlrepro.keras`: one concept per module, the callback glues them.

- `callback`: `ReproCallback`, which `mlrepro.keras` exports: Keras events to `Run` calls.
- `flavour`: which Keras a model belongs to (Keras 3 on any backend, or tf_keras).
- `fitargs`: the arguments of the `fit` call the callback runs in.
- `params`: optimizer, loss, metrics, model, distribution and precision as plain data.
- `pipeline`: what a `tf.data` pipeline reads and whether it reshuffles.
- `datafp`: fingerprints of the training and validation inputs.
- `order`: input orders that are a pure function of (seed, epoch).
- `exactness`: whether an interrupted run can resume bit for bit, and why not.
- `checkpoint`: save and restore weights, optimizer and RNG state.
- `runfile`: the run id kept beside the checkpoints.
- `export`: the final `.keras` file and SavedModel, with the run id inside.
- `tensorboard`: scalars and hparams event files under the run.
- `chief`: which process writes under tf.distribute.

Nothing here imports TensorFlow or Keras at import time.
"""
