"""Separate processes: the same seed gives an identical loss history; a restart continues the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

TRAIN_SCRIPT = """
import json, sys
sys.path.insert(0, {tests_dir!r})
import tensorflow as tf
tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
import mlrepro.estimator as me
from tiny_models import eval_input_fn, logits_fn, make_data, train_input_fn

model_dir, steps, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x, y = make_data()
model_fn = me.wrap_model_fn(me.model_fn_from_logits(logits_fn), project="repro", every_n_steps=1)
est = tf.estimator.Estimator(model_fn, params={{"learning_rate": 0.05}},
                             config=me.run_config(model_dir, seed=seed, deterministic=True,
                                                  save_checkpoints_steps=10))
est.train(train_input_fn(x, y), steps=steps)
results = est.evaluate(eval_input_fn(x, y))
print(json.dumps({{"run_id": me.run_for(est).id, "eval_loss": float(results["loss"])}}))
"""


@pytest.fixture
def train_script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN_SCRIPT.format(tests_dir=TESTS_DIR))
    return path


def start(script, model_dir, steps, seed):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, str(script), str(model_dir), str(steps), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def result_of(proc, timeout=180):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_rerunning_a_recorded_run_with_its_seed_gives_the_identical_loss_history(
        tmp_path, train_script, store):
    procs = [start(train_script, tmp_path / name, 25, seed)
             for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    first, second, different = (result_of(p) for p in procs)
    assert store.read_manifest(first["run_id"])["seed"] == 7  # the seed a re-run needs

    runs = {r["run_id"]: store.read_points(r["run_id"]) for r in (first, second, different)}
    a, b, c = (runs[r["run_id"]] for r in (first, second, different))
    assert a.steps("loss") == list(range(25))
    assert a.steps("loss") == b.steps("loss")
    assert a.values("loss") == b.values("loss")  # bit-identical, step by step
    assert a.values("eval/loss") == b.values("eval/loss")
    assert first["eval_loss"] == second["eval_loss"]
    assert a.values("loss") != c.values("loss")  # the seed matters: the check is not vacuous
    manifests = [store.read_manifest(r["run_id"]) for r in (first, second)]
    assert all(m["status"] == "finished" for m in manifests)
    assert manifests[0]["fingerprints"]["params"] == manifests[1]["fingerprints"]["params"]


@pytest.mark.slow
def test_a_restarted_process_continues_the_same_run_as_a_new_attempt(tmp_path, train_script,
                                                                     store):
    first = result_of(start(train_script, tmp_path / "md", 12, 3))
    second = result_of(start(train_script, tmp_path / "md", 8, 3))  # the job, restarted
    assert second["run_id"] == first["run_id"] and store.run_ids() == [first["run_id"]]
    m = store.read_manifest(first["run_id"])
    assert [(a["attempt"], a["status"]) for a in m["attempts"]] == [(0, "finished"),
                                                                    (1, "finished")]
    points = store.read_points(first["run_id"])
    assert points.steps("loss") == list(range(20))  # continued from the restored step 12
    assert points.steps("eval/loss") == [12, 20]
    assert {"checkpoints/model.ckpt-12", "checkpoints/model.ckpt-20"} <= set(m["artifacts"])
    assert m["estimator"]["global_step"] == 20
