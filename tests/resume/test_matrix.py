"""The resume conformance matrix: what the record claims about resume is what resume gives.

For every case (tests/resume/case.py) four real processes train: a bare `fit`
with the same seeds, an uninterrupted `fit` + ReproCallback, and one that is
SIGKILLed at a random batch in the middle of an epoch and restarted (twice for
`two_kills`). Asserted: bare and recorded runs end with the same weight bytes
(the recorder never changes training), and claim <=> truth: `resume.exact` true
means the resumed weights are byte-identical to the uninterrupted run's; weights
that differ mean `exact` is false with a reason naming the cause.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from test_keras_subprocess import _env  # noqa: E402

pytest.importorskip("keras")
pytest.importorskip("tensorflow")

import mlrepro  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.tf]

CASE = os.path.join(HERE, "case.py")
EPOCHS, BATCHES = 4, 8
# case -> None when the resume must be exact, else words the reason must contain
MATRIX = {
    "generator_map": None,
    "random_flip_map": None,
    "layer_random_normal": "RandomStandardNormal",
    "layer_generator": None,
    "early_stopping": None,
    "reduce_lr": None,
    "reshuffle_random": "reshuffles each iteration",
    "seeded_fixed_flip": None,
    "numpy_validation_split": None,
    "lr_schedule": None,
    "preprocessing_in_model": None,
    "two_kills": None,
    "shipped_callbacks": None,
}
LEGACY_MATRIX = {"tf_keras_reduce_lr": None}
# The same claim with a checkpoint every 3 steps, and the granularity each pattern must get:
# "step" restores the newest step checkpoint and skips the batches its epoch trained,
# "epoch" the newest epoch-end one; either way lost_steps is what was trained again.
STEP_EVERY = 3
STEP_MATRIX = {
    "layer_generator": (None, "step"),
    "early_stopping": (None, "step"),
    "lr_schedule": (None, "step"),
    "numpy_validation_split": (None, "step"),
    "shipped_callbacks": (None, "step"),
    "generator_map": (None, "epoch"),         # generator state that prefetching runs ahead
    "random_flip_map": (None, "epoch"),
    "reshuffle_random": ("reshuffles each iteration", "epoch"),
}
TIMEOUT = 300


class Server:
    """A `case.py --serve` process: one TensorFlow import, a fresh fork per run."""

    def __init__(self, flavour: str):
        self.proc = subprocess.Popen([sys.executable, CASE, "--serve"],
                                     env=_env(MATRIX_FLAVOUR=flavour), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def start(self, log: str, *argv: str) -> int:
        self.proc.stdin.write(json.dumps({"log": log, "argv": list(argv)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line.startswith("PID "), f"the fork server died: {line!r}"
        return int(line.split()[1])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def servers():
    made = {}

    def get(flavour):
        if flavour not in made:
            made[flavour] = Server(flavour)
        return made[flavour]

    yield get
    for server in made.values():
        server.close()


def _wait(log: str) -> None:
    deadline = time.time() + TIMEOUT
    while not os.path.exists(log + ".rc"):
        assert time.time() < deadline, f"{log} never ended"
        time.sleep(0.2)
    with open(log + ".rc") as fh:
        rc = fh.read().strip()
    with open(log) as fh:
        text = fh.read()
    assert rc == "0", text[-3000:]


def _kill_when_marked(pid: int, marker: str, log: str) -> None:
    deadline = time.time() + TIMEOUT
    while not os.path.exists(marker):
        if os.path.exists(log + ".rc"):
            with open(log) as fh:
                pytest.fail("the child ended before its kill point:\n" + fh.read()[-3000:])
        assert time.time() < deadline, "the child never reached its kill point"
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


# validation_split=0.25 keeps 6 of the 8 batches for training
SPLIT_CASES = {"numpy_validation_split", "shipped_callbacks"}


def _kill_points(case: str, rng: random.Random) -> list[str]:
    """Random mid-epoch batches, after the first checkpoint (and before early stopping)."""
    last = (BATCHES * 3 // 4 if case in SPLIT_CASES else BATCHES) - 2  # never an epoch's last
    if case == "two_kills":
        return [f"1:{rng.randint(1, last)}", f"2:{rng.randint(1, last)}"]
    return [f"{rng.randint(1, 2)}:{rng.randint(1, last)}"]


def _run_case(server: Server, tmp, case: str, extra: tuple = ()) -> dict:
    d = {name: tmp / name for name in ("bare", "straight", "resumed")}
    for p in d.values():
        p.mkdir()
    kills = _kill_points(case, random.Random())
    common = ("--mode", "callback", *extra)

    def recorded(name):
        return ("--store", str(d[name] / "store"), "--checkpoint", str(d[name] / "ckpt"),
                "--out", str(d[name] / "weights.bin"))

    bare_log = str(d["bare"] / "log")
    server.start(bare_log, case, "--mode", "bare", "--out", str(d["bare"] / "weights.bin"))
    straight_log = str(d["straight"] / "log")
    server.start(straight_log, case, *common, *recorded("straight"))
    for i, at in enumerate(kills):
        log, marker = str(d["resumed"] / f"log{i}"), str(d["resumed"] / f"marker{i}")
        pid = server.start(log, case, *common, *recorded("resumed"), "--kill-at", at,
                           "--marker", marker)
        _kill_when_marked(pid, marker, log)
    resumed_log = str(d["resumed"] / "log-final")
    server.start(resumed_log, case, *common, *recorded("resumed"))
    for log in (bare_log, straight_log, resumed_log):
        _wait(log)
    out = {"kills": kills}
    for name in d:
        out[name] = (d[name] / "weights.bin").read_bytes()
    for name in ("straight", "resumed"):
        store = mlrepro.open_store(str(d[name] / "store"))
        (run_id,) = store.run_ids()
        out[name + "_manifest"] = store.read_manifest(run_id)
    return out


def _check(result: dict, case: str, cause: str | None) -> None:
    where = f"{case}, killed at {result['kills']}"
    assert result["bare"] == result["straight"], \
        f"{where}: adding ReproCallback changed the trained weights"
    manifest = result["resumed_manifest"]
    resume = manifest["resume"]
    identical = result["resumed"] == result["straight"]
    reasons = " | ".join(resume["reasons"])
    # claim <=> truth
    if resume["exact"]:
        assert identical, f"{where}: the record claims an exact resume, the weights differ"
    if not identical:
        assert resume["exact"] is False and reasons, f"{where}: weights differ, no reason"
    if cause is None:
        assert resume["exact"] is True and identical, f"{where}: not exact: {reasons}"
    else:
        assert resume["exact"] is False and cause in reasons, f"{where}: {reasons}"
    # the restore was checked against the checkpoint's digest, and the prediction re-checked
    assert resume["restored"]["verified"] is True, where
    assert resume["check"]["at"] == "train end", where
    assert resume["check"]["held"] is (not resume["check"]["problems"])
    # every attempt has a status; the summary covers them all
    attempts = manifest["attempts"]
    assert len(attempts) == len(result["kills"]) + 1
    assert [a["status"] for a in attempts] == ["crashed"] * len(result["kills"]) + ["finished"]
    straight = result["straight_manifest"]["metrics_summary"]["loss"]
    summary = manifest["metrics_summary"]["loss"]
    assert summary["count"] >= straight["count"], \
        f"{where}: metrics_summary covers only the last attempt"
    assert summary["step"] == straight["step"]
    if identical:
        assert summary["last"] == straight["last"]


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_resume_claim_matches_truth_and_the_recorder_never_changes_training(
        servers, tmp_path, case):
    _check(_run_case(servers("keras3"), tmp_path, case), case, MATRIX[case])


@pytest.mark.parametrize("case", sorted(LEGACY_MATRIX))
def test_tf_keras_resume_claim_matches_truth(servers, tmp_path, case):
    pytest.importorskip("tf_keras")
    _check(_run_case(servers("tf_keras"), tmp_path, case), case, LEGACY_MATRIX[case])


def _killed_step(at: str, case: str) -> int:
    epoch, batch = (int(v) for v in at.split(":"))
    per_epoch = BATCHES * 3 // 4 if case in SPLIT_CASES else BATCHES
    return epoch * per_epoch + batch + 1, per_epoch, epoch


@pytest.mark.parametrize("case", sorted(STEP_MATRIX))
def test_step_checkpoints_resume_at_the_granularity_the_record_claims(servers, tmp_path, case):
    cause, granularity = STEP_MATRIX[case]
    result = _run_case(servers("keras3"), tmp_path, case,
                       ("--every", f"{STEP_EVERY} steps", "--log-every", "1"))
    _check(result, case, cause)
    resume = result["resumed_manifest"]["resume"]
    (at,) = result["kills"]
    killed, per_epoch, epoch = _killed_step(at, case)
    where = f"{case}, killed at {at} (step {killed})"
    assert resume["granularity"] == granularity, (where, resume.get("why_not_step"))
    assert ("why_not_step" in resume) is (granularity == "epoch"), where
    restored = resume["restored"]
    if granularity == "step":   # the newest step checkpoint written before the kill
        expected = (killed - 1) // STEP_EVERY * STEP_EVERY
        assert restored["global_step"] == expected, (where, restored)
        assert restored["batch"] == expected - (expected // per_epoch) * per_epoch
    else:                       # the newest epoch end
        assert restored["checkpoint"] == f"ckpt-epoch-{epoch:05d}", (where, restored)
        expected = epoch * per_epoch
    assert resume["lost_steps"] == killed - expected, (where, resume["lost_steps"])
