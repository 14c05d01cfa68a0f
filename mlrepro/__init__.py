"""mlrepro: reproducible, portable TensorFlow training records.

`import mlrepro` is light: it never imports TensorFlow, Keras or sagemaker.
Integrations (`mlrepro.keras`, `mlrepro.estimator`) and `mlrepro.runtime` /
`mlrepro.distribute` load on first attribute access.
"""

from __future__ import annotations

import importlib

from mlrepro.errors import (AmbiguousRunId, CheckFailed, CorruptRecord, MlreproError,
                            RunNotFound, StoreError)
from mlrepro.record import SCHEMA_VERSION
from mlrepro.run import Run, active_run, start_run
from mlrepro.store import Store, open_store
from mlrepro.writer import MlreproWarning

__version__ = "0.1.0"

__all__ = [
    "__version__", "SCHEMA_VERSION", "start_run", "active_run", "Run", "Store", "open_store",
    "MlreproError", "RunNotFound", "AmbiguousRunId", "CorruptRecord", "StoreError",
    "CheckFailed", "MlreproWarning", "keras", "estimator", "runtime", "distribute",
]

_LAZY = ("keras", "estimator", "runtime", "distribute")


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"mlrepro.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mlrepro' has no attribute {name!r}")
