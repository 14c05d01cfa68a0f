"""Auto-capture on a TF1-style Estimator project shaped like the 2018 SageMaker ResNet example.

The model_fn lives in its own module and keeps its hyperparameters as module
constants passed straight to `tf.compat.v1.train.MomentumOptimizer` and a
piecewise-constant schedule; the input_fn reads binary record files with
`FixedLengthRecordDataset`; the model_dir is run_config()'s relative default.
Nothing is named to mlrepro, yet the record must hold all of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mlrepro.cli import main
from mlrepro.store.local import LocalStore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL = """\
import tensorflow as tf

_INITIAL_LEARNING_RATE = 0.1
_MOMENTUM = 0.9
_BOUNDARIES = [10]
_DECAY = [1.0, 0.1]


def model_fn(features, labels, mode, params):
    logits = tf.keras.layers.Dense(3)(features["x"])
    loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
    global_step = tf.compat.v1.train.get_or_create_global_step()
    learning_rate = tf.compat.v1.train.piecewise_constant(
        global_step, _BOUNDARIES, [_INITIAL_LEARNING_RATE * d for d in _DECAY])
    optimizer = tf.compat.v1.train.MomentumOptimizer(learning_rate=learning_rate,
                                                     momentum=_MOMENTUM)
    train_op = optimizer.minimize(loss, global_step)
    return tf.estimator.EstimatorSpec(mode=mode, loss=loss, train_op=train_op)
"""
DATA = """\
import tensorflow as tf

_RECORD_BYTES = 4 * 4 + 1   # four float32 features and a label byte
_BATCH_SIZE = 16


def input_fn(filenames):
    def parse(record):
        raw = tf.io.decode_raw(record, tf.uint8)
        x = tf.bitcast(tf.reshape(raw[:16], [4, 4]), tf.float32)
        return {"x": x}, tf.cast(raw[16], tf.int64)

    def fn():
        dataset = tf.data.FixedLengthRecordDataset(filenames, _RECORD_BYTES)
        return dataset.map(parse).repeat().batch(_BATCH_SIZE)
    return fn
"""
TRAIN = """\
import json, os
import tensorflow as tf
import mlrepro.estimator

from data import input_fn
from model import model_fn

tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
estimator = tf.estimator.Estimator(
    mlrepro.estimator.wrap_model_fn(model_fn, project="resnet", every_n_steps=5),
    config=mlrepro.estimator.run_config(seed=1, save_checkpoints_steps=10))
estimator.train(input_fn(["data/train_0.bin", "data/train_1.bin"]), steps=20)
run = mlrepro.estimator.run_for(estimator)
run.finish()
print("run_id=" + run.id)
"""


def _project(base: str) -> str:
    proj = os.path.join(base, "proj")
    os.makedirs(os.path.join(proj, "data"))
    for name, text in (("model.py", MODEL), ("data.py", DATA), ("train.py", TRAIN)):
        with open(os.path.join(proj, name), "w") as fh:
            fh.write(text)
    rng = np.random.RandomState(0)
    for i in range(2):
        x = rng.randn(32, 4).astype("<f4")
        y = (x[:, 0] > 0).astype("uint8") + (x[:, 1] > 0).astype("uint8")
        with open(os.path.join(proj, "data", f"train_{i}.bin"), "wb") as fh:
            for row, label in zip(x, y):
                fh.write(row.tobytes() + bytes([label]))
    return proj


def _train(proj: str, store: str) -> str:
    env = dict(os.environ, MLREPRO_STORE=store, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MLREPRO_PARENT", None)
    proc = subprocess.run([sys.executable, "train.py"], cwd=proj, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [ln.split("=", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("run_id=")][-1]


def test_tf1_model_fn_module_constants_optimizer_schedule_batch_and_files_are_recorded(
        tmp_path, capsys):
    proj = _project(str(tmp_path))
    store_dir = str(tmp_path / "store")
    first = _train(proj, store_dir)
    store = LocalStore(store_dir)
    m = store.read_manifest(first)
    auto = m["auto_params"]
    opt = auto["optimizer"]
    assert opt["class"] == "MomentumOptimizer" and opt["momentum"] == pytest.approx(0.9)
    assert opt["use_nesterov"] is False and opt["variables"] == 2      # kernel and bias
    assert "learning_rate" in opt["learning_rate"]                   # a schedule: per step
    points = store.read_points(first)
    assert points.steps("learning_rate") == [0, 5, 10, 15]
    assert points.values("learning_rate") == [pytest.approx(v) for v in (0.1, 0.1, 0.1, 0.01)]
    assert auto["input.batch_size"] == 16
    assert auto["run_config.tf_random_seed"] == 1
    # the files the input_fn's FixedLengthRecordDataset reads
    train = m["data"]["train"]
    assert train["kind"] == "files" and train["files"] == 2 and train["size"] == 2 * 32 * 17
    assert [f["path"] for f in train["file_list"]] == ["train_0.bin", "train_1.bin"]
    # the relative default model_dir ('checkpoints'): its checkpoints are recorded ...
    assert sorted(n for n in m["artifacts"] if n.startswith("checkpoints/")) == [
        "checkpoints/model.ckpt-0", "checkpoints/model.ckpt-10", "checkpoints/model.ckpt-20"]
    # ... and it, like the store, stays out of the code
    with open(os.path.join(proj, "checkpoints", ".gitignore")) as fh:
        assert "*" in fh.read().split()
    assert sorted(m["code"]["modules"]) == ["data.py", "model.py", "train.py"]

    # the same project with one module constant changed: another experiment, and diff says where
    other = str(tmp_path / "other")
    shutil.copytree(proj, other, ignore=shutil.ignore_patterns("checkpoints"))
    path = os.path.join(other, "model.py")
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text.replace("_MOMENTUM = 0.9", "_MOMENTUM = 0.5"))
    second = _train(other, store_dir)
    m2 = store.read_manifest(second)
    assert m2["auto_params"]["optimizer"]["momentum"] == pytest.approx(0.5)
    assert m["fingerprints"]["data"] == m2["fingerprints"]["data"]
    assert {k for k in m["fingerprints"] if m["fingerprints"][k] != m2["fingerprints"][k]} == {
        "code", "config", "run"}
    assert main(["--store", store_dir, "diff", first, second]) == 0
    out = capsys.readouterr().out
    assert "same fingerprint" not in out
    assert "changed  optimizer.momentum: 0.9 -> 0.5" in out
    assert "--- a/model.py" in out and "-_MOMENTUM = 0.9" in out and "+_MOMENTUM = 0.5" in out
    print(json.dumps(auto, indent=1))
