"""`checkpoint_every` and `preemption_timeout`: every accepted form, and one clear error otherwise.

The behaviour they drive (checkpoints at those steps, the SIGTERM checkpoint, the
exact-batch resume) is tested with real processes in tests/resume/test_step_resume.py.
"""

from __future__ import annotations

import pytest

from mlrepro._keras import cadence, exactness, steps
from mlrepro.errors import MlreproError


@pytest.mark.parametrize("value,expected", [
    ("epoch", cadence.Cadence(epochs=1)),
    (1, cadence.Cadence(epochs=1)),
    (5, cadence.Cadence(epochs=5)),
    ("500 steps", cadence.Cadence(steps=500)),
    ("500steps", cadence.Cadence(steps=500)),
    ("1 step", cadence.Cadence(steps=1)),
    ("30s", cadence.Cadence(seconds=30.0)),
    ("90 s", cadence.Cadence(seconds=90.0)),
    ("10min", cadence.Cadence(seconds=600.0)),
    ("1h", cadence.Cadence(seconds=3600.0)),
    ("1.5h", cadence.Cadence(seconds=5400.0)),
])
def test_checkpoint_every_accepts_epochs_steps_and_durations(value, expected):
    assert cadence.parse_every(value) == expected


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "0 steps", "steps", "10 parsecs", "0s",
                                   "", "every epoch", None])
def test_a_bad_checkpoint_every_is_one_error_naming_it_and_the_forms(value):
    with pytest.raises(MlreproError) as info:
        cadence.parse_every(value)
    message = str(info.value)
    assert repr(value) in message and '"500 steps"' in message and '"10min"' in message
    assert "\n" not in message


def test_the_record_shows_the_cadence_as_asked():
    assert [cadence.parse_every(v).describe() for v in ("epoch", 3, "20 steps", "10min")] == \
        [1, 3, "20 steps", "600s"]


@pytest.mark.parametrize("value,seconds", [(30, 30.0), (0.5, 0.5), ("45", 45.0),
                                           ("2min", 120.0), ("90 s", 90.0)])
def test_preemption_timeout_takes_seconds_or_a_duration(value, seconds):
    assert cadence.parse_duration(value, "preemption_timeout") == seconds


@pytest.mark.parametrize("value", [0, -3, "soon", True, float("inf")])
def test_a_bad_preemption_timeout_is_one_error_naming_it(value):
    with pytest.raises(MlreproError, match="preemption_timeout"):
        cadence.parse_duration(value, "preemption_timeout")


def test_the_callback_checks_both_at_construction(monkeypatch):
    pytest.importorskip("keras")
    import mlrepro.keras

    with pytest.raises(MlreproError, match="checkpoint_every '5 epochs'"):
        mlrepro.keras.ReproCallback(project="p", checkpoint_every="5 epochs")
    with pytest.raises(MlreproError, match="preemption_timeout"):
        mlrepro.keras.ReproCallback(project="p", preemption_timeout="later")
    cb = mlrepro.keras.ReproCallback(project="p", checkpoint_every="10 steps",
                                     preemption_timeout="1min")
    assert cb.preemption_timeout == 60.0
    assert mlrepro.keras.ReproCallback(project="p").preemption_timeout == \
        cadence.DEFAULT_PREEMPTION_TIMEOUT == 30.0
    monkeypatch.setenv("MLREPRO_PREEMPTION_TIMEOUT", "5s")
    assert mlrepro.keras.ReproCallback(project="p", preemption_timeout=90).preemption_timeout \
        == 5.0
    monkeypatch.setenv("MLREPRO_PREEMPTION_TIMEOUT", "whenever")
    with pytest.raises(MlreproError, match="MLREPRO_PREEMPTION_TIMEOUT"):
        mlrepro.keras.ReproCallback(project="p")


# -- when a restart can continue at the batch (claim <=> truth in test_step_resume.py) -----

class _Iterator:
    def _enumerate_iterator(self):
        yield from ()


def _facts(**kw) -> exactness.Facts:
    base = dict(op_determinism=True, seed=1, input_kind="arrays")
    base.update(kw)
    return exactness.Facts(**base)


def test_numpy_and_ordered_pipelines_resume_at_the_step():
    assert steps.why_not_step(_facts(), 1, _Iterator()) is None
    assert steps.why_not_step(_facts(input_kind="tf.data", ordered=True), 1, _Iterator()) is None


@pytest.mark.parametrize("facts,spe,words", [
    (dict(flavour="tf_keras"), 1, "tf_keras"),
    (dict(multi_worker=True), 1, "MultiWorkerMirroredStrategy"),
    (dict(), 4, "steps_per_execution=4"),
    (dict(steps_per_epoch=3), 1, "steps_per_epoch"),
    (dict(seed=None), 1, "no seed"),
    (dict(input_kind="python"), 1, "generator"),
    (dict(input_kind="sequence"), 1, "PyDataset"),
    (dict(input_kind="tf.data", reshuffles=True), 1, "reshuffles"),
    (dict(input_kind="tf.data", unseeded_shuffle=True), 1, "without a seed"),
    (dict(input_kind="tf.data", python_ops=True), 1, "Python code"),
    (dict(input_kind="tf.data", pipeline_writes=["RngReadAndSkip"]), 1, "prefetching"),
])
def test_every_reason_a_restart_resumes_only_at_the_epoch(facts, spe, words):
    assert words in steps.why_not_step(_facts(**facts), spe, _Iterator())


def test_without_keras_epoch_iterator_there_is_no_step_resume():
    assert "epoch iterator" in steps.why_not_step(_facts(), 1, None)


def test_the_environment_sets_the_cadence_only_where_the_script_does_not(monkeypatch):
    """`mlrepro launch --spot` sets MLREPRO_CHECKPOINT_EVERY=10min for scripts that create a
    plain ReproCallback(); an argument the script gives wins."""
    from mlrepro._keras.arguments import default_cadence

    monkeypatch.delenv("MLREPRO_CHECKPOINT_EVERY", raising=False)
    assert default_cadence(None) == "epoch"
    monkeypatch.setenv("MLREPRO_CHECKPOINT_EVERY", "10min")
    assert cadence.parse_every(default_cadence(None)) == cadence.Cadence(seconds=600.0)
    assert default_cadence("3 steps") == "3 steps" and default_cadence(2) == 2
    monkeypatch.setenv("MLREPRO_CHECKPOINT_EVERY", "4")
    assert default_cadence(None) == 4                    # a bare number: epochs
    monkeypatch.setenv("MLREPRO_CHECKPOINT_EVERY", "soon")
    with pytest.raises(MlreproError) as info:
        default_cadence(None)
    assert str(info.value).startswith("$MLREPRO_CHECKPOINT_EVERY: ") and "'soon'" in str(info.value)


@pytest.mark.tf
def test_a_callback_without_checkpoint_every_takes_the_environments(monkeypatch):
    import mlrepro.keras

    monkeypatch.setenv("MLREPRO_CHECKPOINT_EVERY", "7 steps")
    assert mlrepro.keras.ReproCallback(project="p")._cadence == cadence.Cadence(steps=7)
    assert mlrepro.keras.ReproCallback(project="p", checkpoint_every="epoch")._cadence == \
        cadence.Cadence(epochs=1)
