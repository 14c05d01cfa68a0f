"""ReproCallback across processes: SIGKILL and resume, the tf_keras lane, tf.distribute.

Each test runs real training in child Pythons (tests/keras_scripts/), so a
restarted process starts from nothing but the checkpoint directory, as a
preempted job does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile

import pytest

from conftest import child_env
from procs import sigkilled

pytest.importorskip("keras")
pytest.importorskip("tensorflow")

import mlrepro  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.tf]

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_scripts")
TRAIN = os.path.join(SCRIPTS, "train.py")
TIME_METRICS = ("epoch_time_s", "train_time_s", "examples_per_s", "steps_per_s")


def _env(**extra) -> dict:
    """A child's environment without determinism switches leaked by in-process tests."""
    env = child_env(**extra)
    for name in ("TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC"):
        if name not in extra:
            env.pop(name, None)
    return env


def _train(tmp, name, *extra, env=None, kill_at=None, python=sys.executable):
    """Run train.py to the end, or until it reaches `kill_at` and is SIGKILLed."""
    base = tmp / name
    base.mkdir(exist_ok=True)
    args = [python, TRAIN, "--store", str(base / "store"), "--checkpoint",
            str(base / "ckpt"), "--out", str(base / "weights.bin"), *extra]
    if kill_at is None:
        proc = subprocess.run(args, env=env or _env(), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [line.split()[1] for line in proc.stdout.splitlines()
                if line.startswith("RUN ")][0]
    marker = base / "marker"
    proc = subprocess.Popen(args, env={**(env or _env()), "TRAIN_KILL_AT": kill_at,
                                       "TRAIN_MARKER": str(marker)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with sigkilled(proc):
        deadline = time.time() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "the training child never reached the kill point"
            time.sleep(0.2)
    return None


def _history(points):
    """Every deterministic metric series as (step, value, epoch) tuples."""
    return {name: [(s, v, e) for s, v, _w, e in series]
            for name, series in points.series.items() if name not in TIME_METRICS}


def _kill_and_resume(tmp, *extra, env=None, python=sys.executable):
    """(uninterrupted store, its run id, resumed store, resumed run id)."""
    straight_id = _train(tmp, "straight", *extra, env=env, python=python)
    _train(tmp, "resumed", *extra, env=env, python=python, kill_at="2:2")  # epoch 2, batch 2/6
    resumed = mlrepro.open_store(str(tmp / "resumed" / "store"))
    (killed_id,) = resumed.run_ids()
    killed = resumed.read_manifest(killed_id)
    assert killed["status"] == "running"  # SIGKILL: nobody could mark it
    assert "batch/loss" in resumed.read_points(killed_id).names()
    resumed_id = _train(tmp, "resumed", *extra, env=env, python=python)
    assert resumed_id == killed_id  # the restart continued the same run
    return (mlrepro.open_store(str(tmp / "straight" / "store")), straight_id, resumed,
            resumed_id)


@pytest.mark.parametrize("input_kind", ["numpy", "tfdata"])
def test_sigkill_mid_epoch_then_restart_ends_bit_identical_with_the_same_history(tmp_path,
                                                                                 input_kind):
    straight, straight_id, resumed, run_id = _kill_and_resume(tmp_path, "--input", input_kind)
    assert (tmp_path / "straight" / "weights.bin").read_bytes() == \
        (tmp_path / "resumed" / "weights.bin").read_bytes()
    manifest = resumed.read_manifest(run_id)
    assert manifest["status"] == "finished" and len(manifest["attempts"]) == 2
    resume = manifest["resume"]
    assert resume["exact"] is True and resume["reasons"] == []
    assert resume["restored"]["epoch"] == 1 and resume["restored"]["global_step"] == 12
    assert resume["attempt"] == 1
    # the killed attempt's points past the restored step are superseded, not duplicated
    expected = _history(straight.read_points(straight_id))
    got = _history(resumed.read_points(run_id))
    assert set(got) == set(expected)
    for name in expected:
        assert got[name] == expected[name], name
    assert [p[0] for p in got["batch/loss"]] == list(range(1, 25))
    events = [e["kind"] for e in resumed.read_events(run_id)]
    assert "restored" in events and "resumed" in events


def test_tf_keras_lane_records_and_resumes_exactly_with_deterministic_dataset(tmp_path):
    env = _env(TF_USE_LEGACY_KERAS="1")
    extra = ("--legacy", "--input", "ordered", "--no-dropout", "--export")
    straight, straight_id, resumed, run_id = _kill_and_resume(tmp_path, *extra, env=env)
    assert (tmp_path / "straight" / "weights.bin").read_bytes() == \
        (tmp_path / "resumed" / "weights.bin").read_bytes()
    manifest = straight.read_manifest(straight_id)
    auto = manifest["auto_params"]
    assert auto["keras"]["flavour"] == "tf_keras"
    assert auto["optimizer"]["name"] == "Adam"
    assert auto["optimizer"]["learning_rate"] == pytest.approx(0.01)
    assert auto["fit"]["epochs"] == 4 and auto["model"]["params_trainable"] > 0
    assert manifest["data"]["train"]["method"] == "first_batches"
    assert manifest["resume"]["exact"] is True
    assert "deterministic_dataset" in manifest["resume"]["input_order"]
    points = straight.read_points(straight_id)
    assert points.steps("loss") == [6, 12, 18, 24] and len(points.values("lr")) == 4
    keras_file = tmp_path / "exported.keras"
    keras_file.write_bytes(straight.read_object(manifest["artifacts"]["model.keras"]["digest"]))
    with zipfile.ZipFile(keras_file) as zf:
        assert json.loads(zf.read("mlrepro_run.json"))["run_id"] == straight_id
    expected = _history(points)
    got = _history(resumed.read_points(run_id))
    for name in expected:
        assert got[name] == expected[name], name


def _jax_python() -> str | None:
    """An interpreter with jax and Keras 3: this one, or $MLREPRO_JAX_PYTHON."""
    import importlib.util

    if importlib.util.find_spec("jax") is not None:
        return sys.executable
    return os.environ.get("MLREPRO_JAX_PYTHON") or None


def test_jax_backend_resumes_bit_identical_where_jax_is_installed(tmp_path):
    python = _jax_python()
    if python is None:
        pytest.skip("jax is not installed (set MLREPRO_JAX_PYTHON to a Python with jax+keras)")
    env = _env(KERAS_BACKEND="jax")
    straight, straight_id, resumed, run_id = _kill_and_resume(
        tmp_path, "--input", "numpy", "--export", env=env, python=python)
    assert (tmp_path / "straight" / "weights.bin").read_bytes() == \
        (tmp_path / "resumed" / "weights.bin").read_bytes()
    manifest = resumed.read_manifest(run_id)
    assert manifest["auto_params"]["keras"]["backend"] == "jax"
    assert manifest["resume"]["exact"] is True and manifest["resume"]["restored"]["epoch"] == 1
    assert "model.keras" in straight.read_manifest(straight_id)["artifacts"]
    expected = _history(straight.read_points(straight_id))
    got = _history(resumed.read_points(run_id))
    for name in expected:
        assert got[name] == expected[name], name


def test_mirrored_strategy_records_its_replicas(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, "mirrored.py"),
                           str(tmp_path / "store"), str(tmp_path / "ckpt")],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = mlrepro.open_store(str(tmp_path / "store"))
    (run_id,) = store.run_ids()
    manifest = store.read_manifest(run_id)
    assert manifest["status"] == "finished"
    assert manifest["auto_params"]["distribution"] == {"strategy": "MirroredStrategy",
                                                       "replicas": 2}
    assert "checkpoints/epoch-00002" in manifest["artifacts"]
    assert store.read_points(run_id).steps("batch/loss") == list(range(1, 9))


def test_only_the_chief_of_a_multi_worker_job_writes(tmp_path):
    from test_distribute import _free_ports   # the worker exchange's port free too

    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in (0, 1):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = _env(TF_CONFIG=config, TF_USE_LEGACY_KERAS="1",
                        MLREPRO_SPOOL=str(tmp_path / f"spool{index}"))
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(SCRIPTS, "multiworker.py"),
             str(tmp_path / f"store{index}"), str(tmp_path / f"ckpt{index}")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(dict(line.split(" ", 1) for line in out.splitlines() if " " in line))
    chief_id, chief_writes = outputs[0]["RUN"].split()
    worker_id, worker_writes = outputs[1]["RUN"].split()
    assert (chief_writes, worker_writes) == ("True", "False")
    assert worker_id == chief_id  # the worker adopted the chief's run id
    assert outputs[0]["LOSS"] == outputs[1]["LOSS"]
    assert not (tmp_path / "store1").exists() and not (tmp_path / "ckpt1").exists()
    assert not (tmp_path / "spool1").exists()
    store = mlrepro.open_store(str(tmp_path / "store0"))
    manifest = store.read_manifest(chief_id)
    assert manifest["status"] == "finished"
    assert manifest["auto_params"]["distribution"]["workers"] == 2
    assert manifest["workers"]["consistent"] is True and manifest["workers"]["reported"] == 2


UNCAUGHT = """
import sys, numpy as np, keras, mlrepro.keras

class Explode(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise ValueError("kaboom in epoch " + str(epoch))

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
callback = mlrepro.keras.ReproCallback(project="uncaught", store=sys.argv[1], checkpoint=False,
                                       export=False)
model.fit(np.zeros((8, 4)), np.zeros(8), epochs=2, verbose=0, callbacks=[callback, Explode()])
"""


def test_an_uncaught_exception_in_fit_marks_the_run_failed_with_its_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-c", UNCAUGHT, str(tmp_path / "store")],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "kaboom in epoch 0" in proc.stderr
    store = mlrepro.open_store(str(tmp_path / "store"))
    (run_id,) = store.run_ids()
    manifest = store.read_manifest(run_id)
    assert manifest["status"] == "failed"
    assert "ValueError: kaboom in epoch 0" in manifest["error"]


SAME = """
import hashlib, sys, numpy as np, keras, tensorflow as tf
import mlrepro.keras

keras.utils.set_random_seed(4)
tf.config.experimental.enable_op_determinism()
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 6, 6, 1)).astype("float32")
y = rng.integers(0, 3, 64)
model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3),
                          keras.layers.Flatten(), keras.layers.Dropout(0.3),
                          keras.layers.Dense(3)])
model.compile(optimizer=keras.optimizers.Adam(0.01),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
callbacks = []
if sys.argv[1] == "with":
    callbacks = [mlrepro.keras.ReproCallback(project="same", store=sys.argv[2],
                                             checkpoint=sys.argv[3], log_every_n_steps=1)]
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
model.fit(ds, epochs=3, verbose=0, callbacks=callbacks)
print("DIGEST", hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
"""


def test_adding_the_callback_leaves_training_bit_identical(tmp_path):
    digests = []
    for arm in ("without", "with"):
        proc = subprocess.run([sys.executable, "-c", SAME, arm, str(tmp_path / "store"),
                               str(tmp_path / "ckpt")], env=_env(), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        digests.append([ln for ln in proc.stdout.splitlines() if ln.startswith("DIGEST")][0])
    assert digests[0] == digests[1]
    manifest = mlrepro.open_store(str(tmp_path / "store")).read_manifest(
        mlrepro.open_store(str(tmp_path / "store")).run_ids()[0])
    assert manifest["data"]["train"]["method"] == "first_batches"  # it read the pipeline
    assert "checkpoints/epoch-00003" in manifest["artifacts"]
