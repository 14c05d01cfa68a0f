"""Only the same experiment continues an unfinished run: ReproCallback(resume=...).

The scenario of a new user: `experiment.py --epochs 40 --learning-rate 0.1` is
SIGKILLed after two epochs, then `--epochs 3 --learning-rate 0.05` runs in the same
directory. Real child Pythons, real checkpoints and store; the pure comparison is
tested without TensorFlow. A deliberate change continued with resume="force" (recorded
in the attempt) is tested in-process in tests/test_keras.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import child_env
from procs import sigkilled
from mlrepro.core import sameness

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_scripts",
                      "experiment.py")


# -- the comparison (pure) ---------------------------------------------------------------
def _identity(**changes):
    base = dict(argv=["train.py", "--epochs", "40"], code={"commit": "a" * 40},
                params={"epochs": 40, "lr": 0.1},
                auto={"fit": {"epochs": 40, "batch_size": 16},
                      "model": {"name": "sequential_1", "summary": "...", "config": {
                          "name": "sequential_1", "layers": [{"name": "dense_3", "units": 8}]}}})
    base.update(changes)
    return sameness.identity(**base)


def test_the_same_experiment_has_no_differences_even_with_renumbered_layers():
    other = _identity(auto={"fit": {"epochs": 40, "batch_size": 16, "verbose": 2},
                            "model": {"name": "sequential", "summary": "other", "config": {
                                "name": "sequential", "layers": [{"name": "dense", "units": 8}]}}})
    assert sameness.differences(_identity(), other) == []


def test_every_difference_is_named_with_old_and_new_value():
    new = _identity(argv=["train.py", "--epochs", "3"], code={"commit": "b" * 40},
                    params={"epochs": 3, "lr": 0.05, "extra": 1},
                    auto={"fit": {"epochs": 3, "batch_size": 16},
                          "model": {"config": {"layers": [{"units": 16}]}}})
    diffs = sameness.differences(_identity(), new)
    assert "epochs 40 -> 3" in diffs and "lr 0.1 -> 0.05" in diffs
    assert "extra (not set) -> 1" in diffs and "fit.epochs 40 -> 3" in diffs
    assert "command line 'train.py --epochs 40' -> 'train.py --epochs 3'" in diffs
    assert "code commit aaaaaaaaaa -> bbbbbbbbbb" in diffs
    assert any(d.startswith("model.config.layers ") for d in diffs)
    assert len(diffs) == 7


def test_a_part_the_old_run_did_not_record_is_not_a_difference():
    old = sameness.identity(argv=None, code=None, params={"lr": 0.1}, auto={})
    assert sameness.differences(old, _identity(params={"lr": 0.1})) == []


def test_an_unknown_resume_mode_names_the_allowed_ones():
    with pytest.raises(sameness.MlreproError, match="'auto', 'never', 'must', 'force'"):
        sameness.check_mode("sometimes")


# -- real processes -------------------------------------------------------------------------
def _args(base, epochs, lr):
    return [sys.executable, SCRIPT, "--store", str(base / "store"), "--checkpoint",
            str(base / "ckpt"), "--epochs", str(epochs), "--learning-rate", str(lr)]


def _run(base, epochs, lr, resume="auto"):
    return subprocess.run(_args(base, epochs, lr), env=child_env(EXPERIMENT_RESUME=resume),
                          capture_output=True, text=True, timeout=300)


def _run_id(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("RUN ")][0]


def _kill_after_two_epochs(base, epochs=40, lr=0.1):
    proc = subprocess.Popen(_args(base, epochs, lr), env=child_env(EXPERIMENT_EPOCH_SLEEP=30),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    with sigkilled(proc):
        for line in proc.stdout:
            if line.startswith("EPOCH 1"):
                break
        else:
            pytest.fail("the training child ended before its second epoch")
        time.sleep(1.0)  # the run's writer flushes every 0.2 s (conftest)
    import mlrepro

    store = mlrepro.open_store(str(base / "store"))
    (run_id,) = store.run_ids()
    return store, run_id


@pytest.mark.slow
@pytest.mark.tf
def test_a_different_experiment_starts_a_new_run_and_leaves_the_killed_one_untouched(tmp_path):
    store, old = _kill_after_two_epochs(tmp_path)
    manifest_file = tmp_path / "store" / "runs" / old / "run.json"
    before = manifest_file.read_bytes()

    refused = _run(tmp_path, 3, 0.05, resume="must")
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert "ResumeRefused" in last and old in last and "another experiment" in last
    assert "learning-rate 0.1 -> 0.05" in last and "epochs 40 -> 3" in last
    assert store.run_ids() == [old]  # refused before anything was recorded

    proc = _run(tmp_path, 3, 0.05)
    new = _run_id(proc)
    assert new != old
    warnings = [line for line in proc.stderr.splitlines() if "another experiment" in line]
    assert len(warnings) == 1, proc.stderr[-3000:]
    for words in ("learning-rate 0.1 -> 0.05", "epochs 40 -> 3", "fit.epochs 40 -> 3",
                  "optimizer.learning_rate 0.1 -> 0.05", "command line", old, new,
                  'resume="force"'):
        assert words in warnings[0], words
    assert manifest_file.read_bytes() == before  # the old run's record, byte for byte
    old_manifest = store.read_manifest(old)
    assert store.effective_status(old_manifest) == "crashed"
    assert old_manifest["params"] == {"epochs": 40, "learning-rate": 0.1}
    fresh = store.read_manifest(new)
    assert fresh["status"] == "finished" and len(fresh["attempts"]) == 1
    assert fresh["params"] == {"epochs": 3, "learning-rate": 0.05}
    assert fresh["resume"]["restored"] is None
    assert [p[0] for p in store.read_points(new).series["loss"]] == [4, 8, 12]
    declined = [e for e in store.read_events(new) if e["kind"] == "resume_declined"]
    assert declined and declined[0]["run"] == old


@pytest.mark.slow
@pytest.mark.tf
def test_the_same_command_resumes_the_killed_run(tmp_path):
    store, old = _kill_after_two_epochs(tmp_path, epochs=6)
    resumed = _run(tmp_path, 6, 0.1, resume="must")  # the same experiment: must is satisfied
    assert _run_id(resumed) == old and "another experiment" not in resumed.stderr
    manifest = store.read_manifest(old)
    assert manifest["status"] == "finished" and len(manifest["attempts"]) == 2
    # from the last complete checkpoint (epoch 1's may still be in flight at the kill)
    assert manifest["resume"]["restored"]["epoch"] in (0, 1)
    assert "changed" not in manifest["attempts"][1]
    assert [p[0] for p in store.read_points(old).series["loss"]] == [4, 8, 12, 16, 20, 24]


# -- in-process: the modes that need no second experiment ---------------------------------
def _fit(directory, resume="auto", epochs=1):
    import keras
    import numpy as np

    import mlrepro.keras

    callback = mlrepro.keras.ReproCallback(project="modes", checkpoint=str(directory),
                                           export=False, tensorboard=False, resume=resume)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((8, 4)), np.zeros(8), epochs=epochs, verbose=0, callbacks=[callback])
    return callback.run


def _as_if_killed(directory):
    from mlrepro._keras import runfile

    info = runfile.read(str(directory))
    runfile.write(str(directory), **{**info, "status": "running"})


@pytest.mark.tf
def test_never_starts_a_new_run_beside_an_unfinished_one_of_the_same_experiment(tmp_path):
    first = _fit(tmp_path / "ck")
    _as_if_killed(tmp_path / "ck")
    again = _fit(tmp_path / "ck")  # the same experiment resumes by default
    assert again.id == first.id and again.attempt == 1
    _as_if_killed(tmp_path / "ck")
    assert _fit(tmp_path / "ck", resume="never").id != first.id


@pytest.mark.tf
def test_must_raises_in_fit_when_nothing_is_there_to_continue(tmp_path):
    with pytest.raises(sameness.ResumeRefused, match="holds no unfinished mlrepro run"):
        _fit(tmp_path / "ck", resume="must")
    _fit(tmp_path / "ck")
    with pytest.raises(sameness.ResumeRefused, match="finished"):
        _fit(tmp_path / "ck", resume="must")


def test_must_and_force_need_checkpoints():
    pytest.importorskip("keras")
    import mlrepro.keras

    with pytest.raises(sameness.MlreproError, match="checkpoint=False"):
        mlrepro.keras.ReproCallback(project="p", checkpoint=False, resume="must")
