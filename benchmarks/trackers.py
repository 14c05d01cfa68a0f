"""The trackers compared, each set up the way its documentation says to log every step, offline.

Each `Tracker` has three moments: `load()` imports it (timed apart), `start()` does
what a user does before `fit` and returns the callbacks to pass to `fit`, `finish()`
does what a user does after `fit` so that the record is complete on disk. Everything
a tracker writes goes under the run directory it is given. Nothing here touches the
network: the worker process also points every proxy variable at a closed local port.
Each class's `logs` says exactly what it records; RESULTS.md prints it.

Model saving is off by default for the two trackers that do it (mlrepro's
checkpoints and exports, MLflow's `log_models` and checkpoints), so that every
tracker records the same kind of thing: params, per-step metrics, run metadata.
`with_models=True` turns both back on to their defaults.
"""

from __future__ import annotations

import os

PROJECT = "mlrepro-bench"
MLFLOW_BACKENDS = ("sqlite", "file")


class Tracker:
    """No tracker at all: the baseline `fit`."""

    name = "bare"
    logs = "nothing (the baseline)"

    def __init__(self, with_models: bool = False):
        self.with_models = with_models

    def load(self) -> None:
        """Import the tracker's packages."""

    def prepare(self, run_dir: str) -> None:
        """One-time store set-up a user does once per machine, not per run (not timed)."""

    def settle(self, run_dir: str) -> None:
        """Make the bytes on disk measurable (not timed), e.g. compact a database."""

    def start(self, run_dir: str, run_name: str, params: dict) -> list:
        """Do what a user does before `fit`; return the callbacks for `fit`."""
        return []

    def finish(self) -> None:
        """Do what a user does after `fit` so the record is complete on disk."""

    def version(self) -> str:
        return "-"


class MlreproTracker(Tracker):
    name = "mlrepro"
    logs = ("`mlrepro.keras.ReproCallback(project=..., store=<run dir>, log_every_n_steps=1, "
            "params=..., checkpoint=False, export=False)`: every batch's `logs` (loss, "
            "accuracy) at the global step via `Run.log_metrics`, epoch metrics and timings, "
            "TensorBoard scalars (its default), and the run record (code + uncommitted patch, "
            "environment, data fingerprint of the NumPy input, params, status, events); "
            "with `--with-models`: checkpoint=<run dir> and the default exports (.keras + "
            "SavedModel)")

    def load(self) -> None:
        import mlrepro.keras  # noqa: F401
        self._mlrepro = __import__("mlrepro")

    def start(self, run_dir, run_name, params):
        self.store = os.path.join(run_dir, "store")
        models = {"checkpoint": os.path.join(run_dir, "checkpoints")} if self.with_models \
            else {"checkpoint": False, "export": False}
        callback = self._mlrepro.keras.ReproCallback(
            project=PROJECT, store=self.store, log_every_n_steps=1, name=run_name,
            params=params, **models)
        return [callback]

    def finish(self) -> None:
        run = self._mlrepro.active_run()
        if run is not None:  # the callback finishes the run it started at train end
            run.finish()

    def version(self) -> str:
        return self._mlrepro.__version__


class MlflowTracker(Tracker):
    name = "mlflow"
    logs = ("`mlflow.tensorflow.autolog(log_every_epoch=False, log_every_n_steps=1, "
            "log_models=False, checkpoint=False)` with the tracking store in the run dir: every "
            "batch's `logs` via `mlflow.log_metrics(..., synchronous=False)`, fit and optimizer "
            "params, model summary, TensorBoard event files (its default), dataset info; "
            "with `--with-models`: log_models=True, checkpoint=True (its defaults)")

    def __init__(self, with_models: bool = False, backend: str = "sqlite"):
        super().__init__(with_models)
        if backend not in MLFLOW_BACKENDS:
            raise ValueError(f"mlflow backend must be one of {MLFLOW_BACKENDS}, got {backend!r}")
        self.backend = backend

    def load(self) -> None:
        import mlflow
        import mlflow.tensorflow  # noqa: F401
        self._mlflow = mlflow

    def _uri(self, run_dir: str) -> str:
        if self.backend == "sqlite":
            return "sqlite:///" + os.path.join(run_dir, "mlflow.db")
        return "file://" + os.path.join(run_dir, "mlruns")

    def prepare(self, run_dir: str) -> None:
        # A new SQLite store runs its schema migrations once (seconds); a user pays that on
        # the first run of a machine only, so it is done here, outside the timed part.
        # Artifacts would default to ./mlruns of the working directory: keep them in run_dir.
        mlflow = self._mlflow
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        mlflow.set_tracking_uri(self._uri(run_dir))
        if mlflow.get_experiment_by_name(PROJECT) is None:
            artifacts = os.path.join(run_dir, "artifacts")
            os.makedirs(artifacts, exist_ok=True)
            mlflow.create_experiment(PROJECT, artifact_location="file://" + artifacts)
        mlflow.set_experiment(PROJECT)
        self.settle(run_dir)

    def settle(self, run_dir: str) -> None:
        # SQLite reuses the free pages the migrations left, so the file's growth alone can
        # read 0: compact it before (the baseline) and after the run.
        if self.backend != "sqlite":
            return
        import sqlite3

        conn = sqlite3.connect(os.path.join(run_dir, "mlflow.db"), timeout=30)
        try:
            conn.execute("VACUUM")
        finally:
            conn.close()

    def start(self, run_dir, run_name, params):
        mlflow = self._mlflow
        mlflow.set_tracking_uri(self._uri(run_dir))
        mlflow.set_experiment(PROJECT)
        mlflow.tensorflow.autolog(log_every_epoch=False, log_every_n_steps=1,
                                  log_models=self.with_models, checkpoint=self.with_models,
                                  silent=True)
        mlflow.start_run(run_name=run_name)
        mlflow.log_params(params)
        return []

    def finish(self) -> None:
        mlflow = self._mlflow
        mlflow.end_run()
        flush = getattr(mlflow, "flush_async_logging", None)
        if flush is not None:
            flush()

    def version(self) -> str:
        return self._mlflow.__version__


class CometTracker(Tracker):
    name = "comet"
    logs = ("`comet_ml.OfflineExperiment(offline_directory=<run dir>, auto_metric_step_rate=1)` "
            "and its Keras callback (`experiment.get_callback('keras')`): `batch_loss`, "
            "`batch_accuracy` every step, epoch metrics, fit/optimizer params, model graph, "
            "plus its defaults (stdout capture, code, git, environment, CPU/memory sampling); "
            "the record is the offline zip written by `end()`")

    def load(self) -> None:
        import comet_ml
        self._comet = comet_ml

    def start(self, run_dir, run_name, params):
        self.directory = os.path.join(run_dir, "comet")
        os.makedirs(self.directory, exist_ok=True)
        self.experiment = self._comet.OfflineExperiment(
            project_name=PROJECT, offline_directory=self.directory, auto_metric_step_rate=1,
            display_summary_level=0)
        self.experiment.set_name(run_name)
        self.experiment.log_parameters(params)
        return [self.experiment.get_callback("keras")]

    def finish(self) -> None:
        self.experiment.end()

    def version(self) -> str:
        return self._comet.__version__


class WandbTracker(Tracker):
    name = "wandb"
    logs = ("`wandb.init(mode='offline', dir=<run dir>, config=params)` and "
            "`wandb.integration.keras.WandbMetricsLogger(log_freq=1)`: `batch/loss`, "
            "`batch/accuracy`, `batch/learning_rate`, `batch/batch_step` every step via "
            "`wandb.log`, epoch metrics, plus its defaults (system metrics, git, requirements, "
            "console output)")

    def load(self) -> None:
        import wandb
        from wandb.integration.keras import WandbMetricsLogger
        self._wandb = wandb
        self._logger = WandbMetricsLogger

    def start(self, run_dir, run_name, params):
        self.run = self._wandb.init(project=PROJECT, name=run_name, dir=run_dir, mode="offline",
                                    config=params)
        return [self._logger(log_freq=1)]

    def finish(self) -> None:
        self.run.finish()

    def version(self) -> str:
        return self._wandb.__version__


TRACKERS = {cls.name: cls for cls in (Tracker, MlreproTracker, MlflowTracker, CometTracker,
                                      WandbTracker)}
PEERS = ("mlflow", "comet", "wandb")
MODULES = {"mlrepro": "mlrepro", "mlflow": "mlflow", "comet": "comet_ml", "wandb": "wandb"}


def make(name: str, *, mlflow_backend: str = "sqlite", with_models: bool = False) -> Tracker:
    """The tracker called `name` (one of `TRACKERS`)."""
    if name not in TRACKERS:
        raise ValueError(f"tracker must be one of {tuple(TRACKERS)}, got {name!r}")
    if name == "mlflow":
        return MlflowTracker(with_models, mlflow_backend)
    return TRACKERS[name](with_models)
