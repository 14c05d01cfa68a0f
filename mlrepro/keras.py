"""`mlrepro.keras`: record a Keras training run by adding one callback to `model.fit`.

`ReproCallback` works with Keras 3 on any backend (TensorFlow is the main lane)
and with tf_keras (Keras 2, `TF_USE_LEGACY_KERAS=1`). `deterministic_dataset`
gives an input order that is a pure function of (seed, epoch), which is what an
interrupted run needs to resume bit for bit, also in the middle of an epoch
(`checkpoint_every="500 steps"` or `"10min"`, and the checkpoint written at the
next step boundary after a SIGTERM). The implementation lives in
`mlrepro._keras`; importing this module imports Keras, never at `import mlrepro`.

Example:
    >>> import mlrepro.keras
    >>> model.fit(x, y, epochs=3, callbacks=[mlrepro.keras.ReproCallback(project="cifar10")])
"""

from mlrepro._keras.callback import DEFAULT_LOG_EVERY_N_STEPS, ReproCallback
from mlrepro._keras.order import deterministic_dataset

__all__ = ["ReproCallback", "deterministic_dataset", "DEFAULT_LOG_EVERY_N_STEPS"]
