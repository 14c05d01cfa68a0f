"""SavedModels exported from an Estimator, recorded as the run's `saved_model` artifact.

The run's id is written into the SavedModel itself (`assets/mlrepro_run.json`),
so `mlrepro trace <export dir>` finds the run that produced a deployed model.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from mlrepro._estimator import binding
from mlrepro._estimator.checkpoints import checkpoint_step
from mlrepro._estimator.framework import load_tf
from mlrepro.errors import MlreproError, warn

ARTIFACT_NAME = "saved_model"
ASSETS_DIR = "assets"
EXPORT_FLUSH_SECONDS = 60.0


def record_export(estimator, export_path, *, checkpoint_path: str | None = None,
                  project: str | None = None, store=None, run=None) -> str:
    """Write the run pointer into an exported SavedModel and log it as artifact `saved_model`."""
    tf = load_tf()
    path = export_path.decode() if isinstance(export_path, bytes) else os.fspath(export_path)
    if run is None:
        run = binding.live_run(estimator.model_dir) or binding.bind(
            estimator.model_dir, project=project, store=store, allow_new=project is not None)
    checkpoint = checkpoint_path or tf.train.latest_checkpoint(estimator.model_dir)
    step = checkpoint_step(checkpoint) if checkpoint else None
    pointer = {**binding.pointer_for(run), "global_step": step}
    if not binding.write_pointer(os.path.join(path, ASSETS_DIR), pointer):
        run.warn(f"the SavedModel in {path} does not name its run; `mlrepro trace` will not "
                  "find it")
    meta = {"step": step, "format": "tf-saved-model", "export_dir": path,
            "checkpoint": os.path.basename(checkpoint) if checkpoint else None}
    run.log_artifact(path, name=ARTIFACT_NAME, meta=meta)
    run.event("export", path=path, step=step)
    binding.update_section(run, last_export={"path": path, "step": step})
    run.flush(EXPORT_FLUSH_SECONDS)
    return path


def export_saved_model(estimator, export_dir_base: str | None = None,
                       serving_input_receiver_fn: Callable | None = None, *,
                       project: str | None = None, store=None, runtime: Any = None,
                       **export_kwargs) -> str:
    """See `mlrepro.estimator.export_saved_model`."""
    load_tf()
    if serving_input_receiver_fn is None:
        raise MlreproError(
            "export_saved_model needs serving_input_receiver_fn: e.g. tf.estimator.export."
            "build_raw_serving_input_receiver_fn({'x': tf.compat.v1.placeholder(tf.float32, "
            "[None, 4])})")
    if export_dir_base is None:
        from mlrepro._estimator.config import detect_runtime, export_dir_for

        export_dir_base = export_dir_for(detect_runtime(runtime))
    run = binding.live_run(estimator.model_dir) or binding.bind(
        estimator.model_dir, project=project, store=store, allow_new=project is not None)
    path = estimator.export_saved_model(export_dir_base, serving_input_receiver_fn,
                                        **export_kwargs)
    return record_export(estimator, path, checkpoint_path=export_kwargs.get("checkpoint_path"),
                         run=run)


def recorded_exporter(exporter, *, project: str | None = None, store=None):
    """See `mlrepro.estimator.recorded_exporter`."""
    tf = load_tf()

    class RecordedExporter(tf.estimator.Exporter):
        """`exporter`, with each SavedModel it writes recorded in the model_dir's run."""

        def __init__(self, inner):
            self._inner = inner

        @property
        def name(self):
            return self._inner.name

        def export(self, estimator, export_path, checkpoint_path, eval_result,
                   is_the_final_export):
            path = self._inner.export(estimator, export_path, checkpoint_path, eval_result,
                                      is_the_final_export)
            if path:
                try:
                    record_export(estimator, path, checkpoint_path=checkpoint_path,
                                  project=project, store=store)
                except MlreproError:
                    raise
                except Exception as exc:  # noqa: BLE001 - tracking never fails an export
                    warn(f"mlrepro could not record the export {path!r} ({exc!r})")
            return path

    if not isinstance(exporter, tf.estimator.Exporter):
        raise MlreproError(f"exporter {exporter!r} is not a tf.estimator.Exporter: pass e.g. "
                           "tf.estimator.LatestExporter('saved_model', serving_input_fn)")
    return RecordedExporter(exporter)
