"""mlrepro: reproducible, portable TensorFlow training records.

`import mlrepro` is light: it never imports TensorFlow, Keras or sagemaker.
Integrations (`mlrepro.keras`, `mlrepro.estimator`) and `mlrepro.distribute`
load on first attribute access. The package map is in docs/development.md
(Module map); the layers and the direction of imports between them are checked by
import-linter (`pyproject.toml`).
"""

from __future__ import annotations

import importlib

from mlrepro.core import observers as _observers
from mlrepro.core.run import Run, active_run, start_run
from mlrepro.errors import (AmbiguousRunId, CheckFailed, CorruptRecord, MlreproError,
                            MlreproWarning, RunNotFound, StoreError)
from mlrepro.record import SCHEMA_VERSION
from mlrepro.store import Store, open_store

__version__ = "0.1.0"

__all__ = [
    "__version__", "SCHEMA_VERSION", "start_run", "active_run", "Run", "Store", "open_store",
    "MlreproError", "RunNotFound", "AmbiguousRunId", "CorruptRecord", "StoreError",
    "CheckFailed", "MlreproWarning", "keras", "estimator", "runtime", "distribute",
]



# The built-in observers every run that writes is offered, in this order: on SageMaker a
# copy into the job's output when the run ends; with $MLREPRO_REMOTE a push to that remote
# while it trains and at the end. They live in their own layers; only this package joins them,
# and imports them when a run starts, so that `import mlrepro` stays light.
def _job_output_export(run):
    from mlrepro.core.job_export import observer_for

    return observer_for(run)


def _live_push(run):
    from mlrepro.aws.live_push import observer_for

    return observer_for(run)


_observers.register_default(_job_output_export)
_observers.register_default(_live_push)

_LAZY = ("keras", "estimator", "runtime", "distribute")


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"mlrepro.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mlrepro' has no attribute {name!r}")
