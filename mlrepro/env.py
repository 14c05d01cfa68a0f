"""Every `MLREPRO_*` environment variable, each with one typed reader.

Nothing else in mlrepro reads these names from the environment: a module that
needs one imports it from here and calls `.get()` (which reads `os.environ`, or
the mapping it is given, so callers stay testable). A flag is true for `1`,
`true`, `yes` or `on` (any case); a number that does not parse, or falls below
its minimum, reads as its default. Variables of other programs (SageMaker's
`SM_*`, TensorFlow's `TF_CONFIG`) are named in `mlrepro.runtime`.

Example:
    >>> from mlrepro import env
    >>> env.FLUSH_SECONDS.get({"MLREPRO_FLUSH_SECONDS": "0.2"})
    0.2
    >>> env.DISABLE.get({"MLREPRO_DISABLE": "Yes"})
    True
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

TRUE_WORDS = ("1", "true", "yes", "on")


def truthy(text: str | None) -> bool:
    """The one reading of an on/off variable's text (ours and other programs' alike)."""
    return (text or "").strip().lower() in TRUE_WORDS


class Variable:
    """One variable: its name and what it is for (plain classes: `import mlrepro` stays light)."""

    __slots__ = ("name", "doc")

    def __init__(self, name: str, doc: str):
        self.name = name
        self.doc = doc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value as set, or None when unset or empty."""
        value = (os.environ if environ is None else environ).get(self.name)
        return value if value not in (None, "") else None

    def is_set(self, environ: Mapping[str, str] | None = None) -> bool:
        return self.raw(environ) is not None


class Text(Variable):
    """A string (a path, a URI, a name)."""

    __slots__ = ("default",)

    def __init__(self, name: str, doc: str, default: str | None = None):
        super().__init__(name, doc)
        self.default = default

    def get(self, environ: Mapping[str, str] | None = None) -> str | None:
        value = self.raw(environ)
        return self.default if value is None else value


class Flag(Variable):
    """On or off."""

    __slots__ = ()

    def get(self, environ: Mapping[str, str] | None = None) -> bool:
        return truthy(self.raw(environ))


class Number(Variable):
    """A float; unparsable or below `minimum` reads as `default`."""

    __slots__ = ("default", "minimum")

    def __init__(self, name: str, doc: str, default: float = 0.0,
                 minimum: float | None = None):
        super().__init__(name, doc)
        self.default = default
        self.minimum = minimum

    def get(self, environ: Mapping[str, str] | None = None) -> float:
        try:
            value = float(self.raw(environ) or self.default)
        except ValueError:
            return self.default
        if self.minimum is not None and value < self.minimum:
            return self.default
        return value


class Whole(Variable):
    """An int; unparsable or below `minimum` reads as `default` (None: no default)."""

    __slots__ = ("default", "minimum")

    def __init__(self, name: str, doc: str, default: int | None = None,
                 minimum: int | None = None):
        super().__init__(name, doc)
        self.default = default
        self.minimum = minimum

    def get(self, environ: Mapping[str, str] | None = None, *, strict: bool = False) -> int | None:
        """The value; with `strict`, a set but invalid value raises ValueError naming it."""
        text = self.raw(environ)
        if text is None:
            return self.default
        try:
            value = int(text.strip())
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"below {self.minimum}")
        except ValueError:
            if strict:
                raise ValueError(f"{self.name}={text!r} is not a whole number"
                                 + (f" >= {self.minimum}" if self.minimum is not None else ""))
            return self.default
        return value


class Json(Variable):
    """A JSON value; text that is not JSON is returned as the string it is."""

    __slots__ = ()

    def get(self, environ: Mapping[str, str] | None = None) -> Any:
        value = self.raw(environ)
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:
            return value


# -- the store and the recorder ------------------------------------------------------------
STORE = Text("MLREPRO_STORE", "the default store: a directory or s3://bucket/prefix",
             default="./mlrepro-runs")
SPOOL = Text("MLREPRO_SPOOL", "where a run goes when its store cannot be written "
                              "(default ~/.cache/mlrepro/spool)")
CACHE = Text("MLREPRO_CACHE", "the data digest cache's directory (default ~/.cache/mlrepro)")
DISABLE = Flag("MLREPRO_DISABLE", "record nothing (runs still work, write nowhere)")
FLUSH_SECONDS = Number("MLREPRO_FLUSH_SECONDS", "how often the writer thread writes",
                       default=0.5, minimum=0.0)
HEARTBEAT_SECONDS = Number("MLREPRO_HEARTBEAT_SECONDS", "how often a live run's manifest is "
                           "rewritten as a heartbeat", default=10.0, minimum=0.0)
SPOT = Flag("MLREPRO_SPOT", "set in spot jobs by `mlrepro launch --spot` (a SIGTERM ends a run "
                            "as `preempted` in every process)")
PREEMPTION_TIMEOUT = Text("MLREPRO_PREEMPTION_TIMEOUT", "how long a SIGTERM waits for the next "
                          "step boundary's checkpoint in Keras `fit` (seconds or \"30s\"; "
                          "overrides ReproCallback(preemption_timeout=...))")
CHECKPOINT_EVERY = Text("MLREPRO_CHECKPOINT_EVERY", "how often a ReproCallback created without "
                        "checkpoint_every checkpoints (\"10min\", \"500 steps\", \"epoch\"; "
                        "`mlrepro launch --spot` sets 10min)")
PARENT = Json("MLREPRO_PARENT", 'the parent of new runs, {"kind": ..., "run": ...} '
                                "(set by `mlrepro reproduce` and `launch --from`)")
SEED = Whole("MLREPRO_SEED", "the seed of runs started with seed=None and deterministic=True "
                             "(set by `mlrepro reproduce` for a generated seed)", minimum=0)
DEBUG = Flag("MLREPRO_DEBUG", "the CLI prints a traceback for an internal error")

# -- remotes and S3 ----------------------------------------------------------------------------
REMOTE = Text("MLREPRO_REMOTE", "the default remote (a name or s3:// URI); in a training "
                                "process, push the run there while it trains")
PUSH_SECONDS = Number("MLREPRO_PUSH_SECONDS", "seconds between pushes of a live run",
                      default=300.0, minimum=1e-9)
PUSH_TIMEOUT = Number("MLREPRO_PUSH_TIMEOUT", "how long finish() waits for the last push",
                      default=600.0, minimum=1e-9)
S3_RETRIES = Whole("MLREPRO_S3_RETRIES", "attempts per S3 request", default=3, minimum=1)

# -- SageMaker jobs ----------------------------------------------------------------------------
SAGEMAKER_ROLE = Text("MLREPRO_SAGEMAKER_ROLE", "`mlrepro launch`'s default execution role ARN")
SAGEMAKER_BUCKET = Text("MLREPRO_SAGEMAKER_BUCKET", "`mlrepro launch`'s default bucket")
LAUNCH = Json("MLREPRO_LAUNCH", "set in a launched job: how it was launched (for launch --from)")
SAGEMAKER_BASE_DIR = Text("MLREPRO_SAGEMAKER_BASE_DIR", "the SageMaker tree's root (wins over "
                                                        "the toolkit's SAGEMAKER_BASE_DIR)")

# -- multi-worker placement ---------------------------------------------------------------------
TF_PORT = Whole("MLREPRO_TF_PORT", "the port of every worker in a TF_CONFIG built from host "
                                   "names", default=2222, minimum=1)
HOST_ADDRESSES = Text("MLREPRO_HOST_ADDRESSES", "host=addr:port,... overrides for a TF_CONFIG "
                                                "built from host names")
WORKERS_TIMEOUT = Number("MLREPRO_WORKERS_TIMEOUT", "seconds check_workers waits for every "
                                                   "worker (a worker: for the chief)",
                         default=60.0, minimum=0.0)
TF_CONFIG_SOURCE = Text("MLREPRO_TF_CONFIG_SOURCE", "set beside a TF_CONFIG that mlrepro built: "
                                                    "the launcher it was built for")

ALL: tuple[Variable, ...] = (
    STORE, SPOOL, CACHE, DISABLE, FLUSH_SECONDS, HEARTBEAT_SECONDS, SPOT, PREEMPTION_TIMEOUT,
    CHECKPOINT_EVERY, PARENT, SEED, DEBUG,
    REMOTE, PUSH_SECONDS, PUSH_TIMEOUT, S3_RETRIES, SAGEMAKER_ROLE, SAGEMAKER_BUCKET, LAUNCH,
    SAGEMAKER_BASE_DIR, TF_PORT, HOST_ADDRESSES, TF_CONFIG_SOURCE, WORKERS_TIMEOUT)
