"""The Quick tour inline pattern: the model is built before `ReproCallback(seed=1,
deterministic=True)` seeds anything, so its initial weights are unseeded. The callback records
them once (artifact `initial_state`), warns once naming the fix, and `mlrepro reproduce`
restores them: the re-run is bit-identical although a plain second run is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlrepro.cli import main
from mlrepro.store import open_store

from conftest import child_env

INLINE = '''
import numpy as np
import keras
from mlrepro.keras import ReproCallback

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = x @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dropout(0.3), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
cb = ReproCallback(seed=1, deterministic=True)
model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[cb])
print("run_id=" + cb.run.id)
'''


def run_inline(workdir, store) -> tuple[str, str]:
    proc = subprocess.run([sys.executable, "train.py"], cwd=workdir, capture_output=True,
                          text=True, timeout=300, env=child_env(MLREPRO_STORE=store))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split("run_id=")[1].split()[0], proc.stderr


@pytest.fixture
def workdir(tmp_path):
    d = tmp_path / "tour"
    d.mkdir()
    (d / "train.py").write_text(INLINE)
    return str(d)


@pytest.mark.tf
@pytest.mark.slow
def test_the_inline_pattern_reproduces_bit_identical_from_its_recorded_initial_state(
        workdir, store_dir, capsys):
    run_id, stderr = run_inline(workdir, store_dir)
    assert stderr.count("the model was built before ReproCallback seeded TensorFlow") == 1
    assert "create ReproCallback(seed=..., deterministic=True) before building the model" in stderr
    other, _ = run_inline(workdir, store_dir)
    store = open_store(store_dir)
    first, second = store.read_manifest(run_id), store.read_manifest(other)
    assert first["determinism"]["model_built_before_seed"] is True
    assert first["determinism"]["initial_state"] == "initial_state"
    assert set(first["artifacts"]["initial_state"]["files"]) == {"state.json", "state.npz"}
    # what the record has to make up for: a plain second run starts elsewhere
    assert first["determinism"]["initial_weights_digest"] != \
        second["determinism"]["initial_weights_digest"]

    old = os.getcwd()
    os.chdir(workdir)
    try:
        code = main(["reproduce", run_id, "--store", store_dir, "--json"])
    finally:
        os.chdir(old)
    result = json.loads(capsys.readouterr().out)
    verdict = result["verdict"]
    assert (code, verdict["kind"]) == (0, "bit-identical"), verdict
    assert any("started from its recorded initial state" in d for d in verdict["details"])
    new = store.read_manifest(result["new_run"])
    assert new["determinism"]["initial_state_restored_from"] == run_id
    assert new["determinism"]["initial_weights_digest"] == \
        first["determinism"]["initial_weights_digest"]

    assert main(["show", run_id, "--store", store_dir]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # wrapped to the terminal's width
    assert "initial state: the model was built before seeding; its initial weights are " \
           "artifact initial_state" in shown
