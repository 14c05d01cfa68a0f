"""`mlrepro reproduce` of an Estimator run whose command names an absolute model_dir.

The model_dir still holds the original's checkpoints and `mlrepro_run.json`: a
re-run there would continue the original run (train 0 steps, add an attempt,
replace its export). The re-run must be a new run trained in a fresh directory,
and the original's record and model_dir must stay byte-identical on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from mlrepro.cli import main

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

TRAIN_SCRIPT = """
import json, os, sys
sys.path.insert(0, {tests_dir!r})
import tensorflow as tf
tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
import mlrepro.estimator as me
from tiny_models import eval_input_fn, logits_fn, make_data, train_input_fn

model_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ["MODEL_DIR"]
x, y = make_data()
model_fn = me.wrap_model_fn(me.model_fn_from_logits(logits_fn), project="repro", every_n_steps=1)
est = tf.estimator.Estimator(model_fn, params={{"learning_rate": 0.05}},
                             config=me.run_config(model_dir, seed=5, deterministic=True,
                                                  save_checkpoints_steps=10))
est.train(train_input_fn(x, y), steps=12)
est.evaluate(eval_input_fn(x, y))
print(json.dumps({{"run_id": me.run_for(est).id}}))
"""


def tree_digest(root) -> dict:
    out = {}
    for top, _dirs, names in os.walk(root):
        for n in names:
            path = os.path.join(top, n)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def train(tmp_path, args, **env) -> str:
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT.format(tests_dir=TESTS_DIR))
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONHASHSEED": "0", **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]


@pytest.mark.slow
def test_reproduce_with_an_absolute_model_dir_argument_leaves_the_original_untouched(
        tmp_path, store, capsys):
    model_dir = str(tmp_path / "md")
    run_id = train(tmp_path, [model_dir])
    record, checkpoints = tree_digest(store.run_dir(run_id)), tree_digest(model_dir)

    code = main(["reproduce", run_id, "--store", store.uri, "--json"])
    result = json.loads(capsys.readouterr().out)

    assert code == 0, result["verdict"]
    assert result["verdict"]["curves"]["identical"], result["verdict"]
    new = store.read_manifest(result["new_run"])
    assert new["parent"] == {"kind": "reproduction-of", "run": run_id}
    assert new["estimator"]["global_step"] == 12  # trained afresh, not continued
    assert tree_digest(store.run_dir(run_id)) == record
    assert tree_digest(model_dir) == checkpoints
    m = store.read_manifest(run_id)
    assert len(m["attempts"]) == 1 and m["parent"] is None


@pytest.mark.slow
def test_reproduce_refuses_a_model_dir_the_script_names_itself(tmp_path, store, capsys):
    model_dir = str(tmp_path / "md")
    run_id = train(tmp_path, [], MODEL_DIR=model_dir)
    record, checkpoints = tree_digest(store.run_dir(run_id)), tree_digest(model_dir)

    os.environ["MODEL_DIR"] = model_dir  # as the user's shell would still have it
    try:
        code = main(["reproduce", run_id, "--store", store.uri])
    finally:
        del os.environ["MODEL_DIR"]

    err = capsys.readouterr().err
    assert code == 2 and f"{model_dir} still holds run {run_id}'s checkpoints" in err
    assert "move the directory aside" in err and len(err.strip().splitlines()) == 1
    assert tree_digest(store.run_dir(run_id)) == record
    assert tree_digest(model_dir) == checkpoints
    assert store.run_ids() == [run_id]


@pytest.mark.slow
def test_a_re_run_by_hand_with_mlrepro_parent_never_reopens_the_original(tmp_path, store):
    model_dir = str(tmp_path / "md")
    run_id = train(tmp_path, [model_dir])
    record, checkpoints = tree_digest(store.run_dir(run_id)), tree_digest(model_dir)
    script = tmp_path / "train.py"
    proc = subprocess.run(
        [sys.executable, str(script), model_dir], cwd=tmp_path, text=True, capture_output=True,
        timeout=300, env={**os.environ, "MLREPRO_PARENT": json.dumps(
            {"kind": "reproduction-of", "run": run_id})})
    assert proc.returncode != 0
    assert (f"model_dir {model_dir} holds the checkpoints of run {run_id}, which this process "
            "reproduces") in proc.stderr
    assert "give the re-run a fresh model_dir" in proc.stderr
    assert tree_digest(store.run_dir(run_id)) == record
    assert tree_digest(model_dir) == checkpoints
