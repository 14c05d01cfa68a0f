"""`mlrepro.distribute`: the tf.distribute strategy for where the process runs, and worker checks.

`strategy()` builds the default strategy on one device, `MirroredStrategy` over
several local GPUs, and `MultiWorkerMirroredStrategy` over several hosts (after
setting the `TF_CONFIG` that `mlrepro.runtime` built from a SageMaker host list).
`check_workers(run, strategy)` compares every worker's code and environment
fingerprints with the chief's (over TCP, waiting at most `$MLREPRO_WORKERS_TIMEOUT`
seconds for a worker; a missing one is a warning and training goes on). The logic lives in `mlrepro.runtime.strategy`;
importing this module does not import TensorFlow.

Example:
    >>> import mlrepro
    >>> strategy = mlrepro.distribute.strategy()
    >>> with strategy.scope():
    ...     model = build_model()
"""

from mlrepro.runtime.strategy import (DEFAULT, LEGACY_KERAS_ENV, MIRRORED, MULTI_WORKER,
                                      WORKERS_SECTION, check_workers, plan, require_tf_keras,
                                      strategy)

__all__ = ["strategy", "plan", "check_workers", "require_tf_keras", "DEFAULT", "MIRRORED",
           "MULTI_WORKER", "WORKERS_SECTION", "LEGACY_KERAS_ENV"]
