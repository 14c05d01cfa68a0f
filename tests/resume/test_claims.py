"""The parts of the resume claim that need no second process: what the recorder may read,
every reason the judgement gives, the other callbacks' state, and the attempts' record.

The end-to-end truth of each claim (SIGKILL, restart, byte comparison) is
test_matrix.py; these tests pin the rules it rests on, quickly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mlrepro._keras import exactness

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from conftest import child_env  # noqa: E402

import mlrepro  # noqa: E402


# -- exactness: every reason, each naming its cause ---------------------------------------

def _facts(**kw) -> exactness.Facts:
    base = dict(op_determinism=True, seed=1, input_kind="tf.data")
    base.update(kw)
    return exactness.Facts(**base)


def test_every_reason_is_named_not_only_the_first():
    verdict = exactness.judge(_facts(
        reshuffles=True, unseeded_shuffle=True, python_ops=True,
        random_ops=["RandomUniform in MapDataset"],
        pipeline_writes=["RngReadAndSkip in ParallelMapDatasetV2"], parallel_writes=True,
        model_random=["RandomStandardNormal (layer sequential/noisy)"]))
    text = " | ".join(verdict["reasons"])
    assert verdict["exact"] is False
    for cause in ("reshuffles each iteration", "without a seed", "Python code",
                  "RandomUniform in MapDataset", "RngReadAndSkip", "parallel map",
                  "RandomStandardNormal (layer sequential/noisy)"):
        assert cause in text, cause
    assert len(verdict["reasons"]) == 7
    assert all(":" in r or "use" in r or "pass" in r for r in verdict["reasons"])  # each a fix


def test_checkpointed_generator_state_and_seeded_replayed_ops_stay_exact():
    saved = exactness.judge(_facts(pipeline_writes=["RngReadAndSkip in MapDataset"],
                                   pipeline_state_saved=1, callbacks_saved=["EarlyStopping"]))
    assert saved["exact"] is True, saved["reasons"]
    assert "checkpointed" in saved["input_order"]
    assert any("EarlyStopping" in n for n in saved["notes"])
    lost = exactness.judge(_facts(pipeline_writes=["RngReadAndSkip in MapDataset"]))
    assert lost["exact"] is False and "could not find" in lost["reasons"][0]


# -- the pipeline: read only what is provably side-effect free ------------------------------

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from mlrepro._keras import cbstate, datafp, pipeline  # noqa: E402


def _slices():
    rng = np.random.default_rng(0)
    return tf.data.Dataset.from_tensor_slices((rng.normal(size=(32, 4, 4, 1)).astype("float32"),
                                               np.zeros(32)))


def test_pipelines_with_random_state_are_fingerprinted_by_structure_and_left_untouched():
    gen = tf.random.Generator.from_seed(3)
    flip = keras.layers.RandomFlip()
    cases = {
        "RngReadAndSkip": _slices().map(lambda a, b: (a + gen.normal(tf.shape(a)), b)).batch(8),
        "AssignVariableOp": _slices().batch(8).map(lambda a, b: (flip(a), b)),
        "RandomUniform": _slices().map(
            lambda a, b: (tf.image.random_flip_left_right(a), b)).batch(8),
        "Python": tf.data.Dataset.from_generator(
            lambda: iter([1, 2]), output_signature=tf.TensorSpec((), tf.int32)),
    }
    for op, ds in cases.items():
        before = gen.state.numpy().copy(), flip._seed_generators[0].state.numpy().copy()
        fp = datafp.fingerprint(ds, role="train")
        assert fp["method"] == "structure", op
        assert op in fp["note"], (op, fp["note"])
        after = gen.state.numpy(), flip._seed_generators[0].state.numpy()
        assert all((b == a).all() for b, a in zip(before, after)), f"{op}: reading changed state"
    assert pipeline.analyze(cases["RngReadAndSkip"]).variables == ["StateVar:0"]
    plain = _slices().shuffle(32, seed=1, reshuffle_each_iteration=False).batch(8)
    assert datafp.fingerprint(plain, role="train")["method"] == "first_batches"
    ordered = mlrepro.keras.deterministic_dataset(np.zeros((8, 2)), np.zeros(8), seed=1)
    assert pipeline.analyze(ordered).replayable  # its epoch variable is only read


def test_parallel_map_drawing_from_a_generator_is_named():
    gen = tf.random.Generator.from_seed(3)
    ds = _slices().map(lambda a, b: (a + gen.normal(tf.shape(a)), b), num_parallel_calls=2)
    pipe = pipeline.analyze(ds)
    assert pipe.parallel_writes and pipe.writes == ["RngReadAndSkip in ParallelMapDatasetV2"]


# -- the other callbacks ----------------------------------------------------------------------

def test_shipped_stateful_callbacks_round_trip_and_unknown_ones_are_watched():
    stop = keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    stop.wait, stop.best, stop.best_epoch = 2, 0.25, 4
    stop.best_weights = [np.ones((2, 2), "float32")]
    plateau = keras.callbacks.ReduceLROnPlateau()
    plateau.wait, plateau.cooldown_counter, plateau.best = 1, 2, 0.5

    class Counter(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = 0

    counter = Counter()
    callbacks = [stop, plateau, keras.callbacks.TerminateOnNaN(), counter]
    assert [cbstate.kind(c) for c in callbacks] == ["stateful", "stateful", "stateless",
                                                     "unknown"]
    values, arrays = cbstate.save(callbacks)
    digest = cbstate.digest(values, arrays)
    fresh = [keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True),
             keras.callbacks.ReduceLROnPlateau(), keras.callbacks.TerminateOnNaN(), Counter()]
    assert cbstate.restore(fresh, values, arrays) == ["0:EarlyStopping", "1:ReduceLROnPlateau"]
    assert (fresh[0].wait, fresh[0].best, fresh[0].best_epoch) == (2, 0.25, 4)
    assert fresh[0].best_weights[0].tolist() == [[1, 1], [1, 1]]
    assert (fresh[1].wait, fresh[1].cooldown_counter, fresh[1].best) == (1, 2, 0.5)
    assert cbstate.digest(*cbstate.save(fresh)) == digest
    watched = cbstate.watch(callbacks)
    assert cbstate.changed(watched, callbacks) == []
    counter.seen = 5
    (reason,) = cbstate.changed(watched, callbacks)
    assert "Counter changed seen" in reason


def test_an_unknown_stateful_callback_turns_the_claim_false_with_its_name(tmp_path):
    class Counter(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs_seen = 0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs_seen += 1

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    cb = mlrepro.keras.ReproCallback(project="watch", seed=1, deterministic=True,
                                     checkpoint=str(tmp_path / "ckpt"), export=False,
                                     tensorboard=False, log_every_n_steps=0)
    model.fit(np.zeros((16, 3)), np.zeros(16), epochs=2, verbose=0, callbacks=[cb, Counter()])
    resume = cb.run.manifest["resume"]
    assert resume["exact"] is False
    assert any("Counter changed epochs_seen" in r for r in resume["reasons"])
    assert resume["check"]["held"] is False and resume["check"]["at"] == "train end"


# -- attempts ---------------------------------------------------------------------------------

def test_a_killed_attempt_reads_crashed_and_the_summary_covers_every_attempt(store_dir):
    script = textwrap.dedent(f"""
        import os, mlrepro
        run = mlrepro.start_run(project="attempts", store={store_dir!r})
        for step, loss in enumerate([3.0, 1.0, 2.0], 1):
            run.log_metrics({{"loss": loss}}, step=step)
        run.flush()
        print(run.id, flush=True)
        os._exit(9)   # dies without a word, as a SIGKILLed job does
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True,
                          text=True, timeout=120)
    run_id = proc.stdout.split()[0]
    with mlrepro.start_run(project="attempts", store=store_dir, run_id=run_id) as again:
        again.log_metrics({"loss": 1.5}, step=3)
        again.log_metrics({"loss": 1.2}, step=4)
    manifest = mlrepro.open_store(store_dir).read_manifest(run_id)
    assert [a["status"] for a in manifest["attempts"]] == ["crashed", "finished"]
    loss = manifest["metrics_summary"]["loss"]
    assert (loss["min"], loss["max"], loss["count"]) == (1.0, 3.0, 5)
    assert (loss["last"], loss["step"]) == (1.2, 4)
