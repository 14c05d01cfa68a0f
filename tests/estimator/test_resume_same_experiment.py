"""The estimator lane: only the same experiment continues the unfinished run a model_dir names.

Real child Pythons: `train.py --model-dir MD` (learning rate 0.05, 40 steps) is
SIGKILLed after its first checkpoint, then another experiment trains into the same
model_dir, or the same command runs again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from procs import sigkilled

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

TRAIN_SCRIPT = """
import argparse, json, os, sys, time
sys.path.insert(0, {tests_dir!r})
import tensorflow as tf
tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
import mlrepro.estimator as me
from tiny_models import logits_fn, make_data, train_input_fn

parser = argparse.ArgumentParser()
parser.add_argument("--model-dir", required=True)
parser.add_argument("--learning-rate", type=float, default=0.05)
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()
pause_at = int(os.environ.get("EXPERIMENT_PAUSE_AT", "0"))  # not on the command line


class Pause(tf.estimator.SessionRunHook):
    def after_run(self, run_context, run_values):
        step = run_context.session.run(tf.compat.v1.train.get_global_step())
        if step == pause_at:
            time.sleep(1.5)  # the run's writer flushes the manifest every second
            print("PAUSED", flush=True)
            time.sleep(600)


x, y = make_data()
model_fn = me.wrap_model_fn(me.model_fn_from_logits(logits_fn), project="spot",
                            every_n_steps=1, resume=os.environ.get("EXPERIMENT_RESUME", "auto"))
est = tf.estimator.Estimator(model_fn, params={{"learning_rate": args.learning_rate}},
                             config=me.run_config(args.model_dir, seed=3,
                                                  save_checkpoints_steps=5))
est.train(train_input_fn(x, y), steps=args.steps, hooks=[Pause()] if pause_at else [])
run = me.run_for(est)
print(json.dumps({{"run_id": run.id, "parent": run.manifest.get("parent")}}), flush=True)
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN_SCRIPT.format(tests_dir=TESTS_DIR))
    return path


def _env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0",
            **{k: str(v) for k, v in extra.items()}}


def _train(script, model_dir, *flags, resume="auto"):
    return subprocess.run([sys.executable, str(script), "--model-dir", str(model_dir), *flags],
                          capture_output=True, text=True, timeout=300,
                          env=_env(EXPERIMENT_RESUME=resume))


def _kill_after_a_checkpoint(script, model_dir):
    proc = subprocess.Popen([sys.executable, str(script), "--model-dir", str(model_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=_env(EXPERIMENT_PAUSE_AT=7))
    with sigkilled(proc):
        for line in proc.stdout:
            if line.startswith("PAUSED"):
                break
        else:
            pytest.fail("the training child ended before step 7")
    return json.loads((model_dir / "mlrepro_run.json").read_text())["run_id"]


@pytest.mark.slow
def test_another_experiment_in_the_model_dir_of_a_killed_run_is_a_new_run(tmp_path, script,
                                                                          store):
    md = tmp_path / "md"
    old = _kill_after_a_checkpoint(script, md)
    manifest_file = tmp_path / "store" / "runs" / old / "run.json"
    before = manifest_file.read_bytes()

    refused = _train(script, md, "--learning-rate", "0.02", "--steps", "3", resume="must")
    assert refused.returncode != 0
    assert "ResumeRefused" in refused.stderr and "learning_rate 0.05 -> 0.02" in refused.stderr
    assert store.run_ids() == [old]

    proc = _train(script, md, "--learning-rate", "0.02", "--steps", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    new = result["run_id"]
    assert new != old and result["parent"] == {"kind": "resumed-from", "run": old}
    warnings = [line for line in proc.stderr.splitlines() if "another experiment" in line]
    assert len(warnings) == 1, proc.stderr[-3000:]
    assert "learning_rate 0.05 -> 0.02" in warnings[0] and "command line" in warnings[0]
    assert 'resume="force"' in warnings[0]
    assert manifest_file.read_bytes() == before  # the killed run's record, byte for byte
    assert store.effective_status(store.read_manifest(old)) == "crashed"
    assert json.loads((md / "mlrepro_run.json").read_text())["run_id"] == new
    fresh = store.read_manifest(new)
    assert fresh["status"] == "finished" and fresh["params"] == {"learning_rate": 0.02}


@pytest.mark.slow
def test_the_same_command_continues_the_killed_run(tmp_path, script, store):
    md = tmp_path / "md"
    old = _kill_after_a_checkpoint(script, md)
    proc = _train(script, md, resume="must")  # the original command line, exactly
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["run_id"] == old
    assert "another experiment" not in proc.stderr
    m = store.read_manifest(old)
    assert [a["attempt"] for a in m["attempts"]] == [0, 1] and m["status"] == "finished"


@pytest.mark.slow
def test_a_forced_resume_continues_the_killed_run_and_records_what_changed(tmp_path, script,
                                                                           store):
    md = tmp_path / "md"
    old = _kill_after_a_checkpoint(script, md)
    proc = _train(script, md, "--learning-rate", "0.02", "--steps", "3", resume="force")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["run_id"] == old
    assert "another experiment" not in proc.stderr
    attempt = store.read_manifest(old)["attempts"][1]
    assert attempt["resume"] == "force" and "learning_rate 0.05 -> 0.02" in attempt["changed"]
    assert any(c.startswith("command line ") for c in attempt["changed"])
