"""The final model as a `.keras` file and a TensorFlow SavedModel, each naming its run.

Both carry `mlrepro_run.json` ({"run_id", "project", "store"}): as an extra
member of the `.keras` zip (Keras ignores members it does not know) and in the
SavedModel's `assets/` directory, so `mlrepro trace PATH` can name the run that
made a model file found anywhere.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

from mlrepro import record
from mlrepro._keras import flavour

EMBEDDED_RUN_FILE = record.EMBEDDED_RUN_FILE
KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
FORMATS = ("keras", "saved_model")


def embedded_run(run: Any) -> bytes:
    store = getattr(run, "store", None)
    return json.dumps({"run_id": run.id, "project": run.project,
                       "store": getattr(store, "uri", None)}, sort_keys=True).encode("utf-8")


def save_keras(model: Any, directory: str, run: Any) -> str:
    """`model.save(...keras)`, then add the run file to the zip; returns the path."""
    path = os.path.join(directory, KERAS_FILE)
    model.save(path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(EMBEDDED_RUN_FILE, embedded_run(run))
    return path


def save_saved_model(model: Any, directory: str, run: Any) -> str:
    """A serving SavedModel (`model.export` in Keras 3, `tf.saved_model.save` in tf_keras)."""
    path = os.path.join(directory, SAVED_MODEL_DIR)
    if flavour.of_model(model) == flavour.KERAS3:
        try:
            model.export(path, format="tf_saved_model", verbose=False)
        except TypeError:  # Keras 3 versions without verbose=
            model.export(path, format="tf_saved_model")
    else:
        import tensorflow as tf

        tf.saved_model.save(model, path)
    assets = os.path.join(path, "assets")
    os.makedirs(assets, exist_ok=True)
    with open(os.path.join(assets, EMBEDDED_RUN_FILE), "wb") as fh:
        fh.write(embedded_run(run))
    return path
