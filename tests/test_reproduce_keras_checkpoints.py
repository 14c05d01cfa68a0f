"""`mlrepro reproduce` of a killed Keras run whose script names an absolute checkpoint dir.

The dir still holds the original's `mlrepro_run.json` (status running) and its
epoch-1 checkpoint: a re-run there would restore it and continue the original.
The re-run must train afresh in a directory of its own, be judged on the steps
the original reached, and leave the original's record and checkpoints untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from mlrepro.cli import main
from mlrepro.store import open_store

from conftest import child_env

SCRIPT = '''
import os, time
import numpy as np
import keras
import mlrepro.keras

cb = mlrepro.keras.ReproCallback(project="ck", seed=4, deterministic=True,
                                 checkpoint=os.environ["CKPT"], export=False,
                                 tensorboard=False, log_every_n_steps=1)
x = np.random.default_rng(1).normal(size=(32, 3)).astype("float32")
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")


class Killed(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0 and os.environ.get("KILL_AFTER_FIRST_EPOCH"):
            time.sleep(1.5)  # the writer flushes the epoch's points and checkpoint
            os._exit(9)


model.fit(x, x[:, :1], epochs=2, batch_size=8, verbose=0, callbacks=[cb, Killed()])
'''


def tree_digest(root) -> dict:
    out = {}
    for top, _dirs, names in os.walk(root):
        for n in names:
            with open(os.path.join(top, n), "rb") as fh:
                out[os.path.relpath(os.path.join(top, n), root)] = \
                    hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.mark.tf
@pytest.mark.slow
def test_a_killed_run_reproduces_afresh_without_touching_its_checkpoint_dir(
        tmp_path, store_dir, capsys, monkeypatch):
    work, ckpt = tmp_path / "work", str(tmp_path / "elsewhere" / "ckpt")
    work.mkdir()
    (work / "train.py").write_text(SCRIPT)
    proc = subprocess.run([sys.executable, "train.py"], cwd=work, capture_output=True, text=True,
                          timeout=300, env=child_env(MLREPRO_STORE=store_dir, CKPT=ckpt,
                                                     KILL_AFTER_FIRST_EPOCH=1))
    assert proc.returncode == 9, proc.stderr[-2000:]
    store = open_store(store_dir)
    [run_id] = store.run_ids()
    assert store.effective_status(store.read_manifest(run_id)) == "crashed"
    assert json.load(open(os.path.join(ckpt, "mlrepro_run.json")))["status"] == "running"
    record, checkpoints = tree_digest(store.run_dir(run_id)), tree_digest(ckpt)

    monkeypatch.setenv("CKPT", ckpt)  # the script reads it, as in the user's shell
    monkeypatch.chdir(work)
    code = main(["reproduce", run_id, "--store", store_dir, "--json"])
    result = json.loads(capsys.readouterr().out)

    verdict = result["verdict"]
    assert code == 0, verdict
    assert verdict["message"].startswith("identical up to step 4 where the original stopped "
                                         "(crashed): bit-identical"), verdict["message"]
    new = store.read_manifest(result["new_run"])
    assert new["parent"] == {"kind": "reproduction-of", "run": run_id}
    assert new["resume"]["restored"] is None and new["status"] == "finished"
    assert new["resume"]["checkpoint_dir"] != ckpt
    assert tree_digest(store.run_dir(run_id)) == record
    assert tree_digest(ckpt) == checkpoints
