"""Step checkpoints, the checkpoint at SIGTERM, and resuming at the exact batch.

Real processes (forks of the matrix's fork server, tests/resume/case.py) train a
tiny conv net for 4 epochs of 8 batches. A process sends itself SIGTERM as a
random mid-epoch batch begins (as a spot notice arrives while training): it must
write a checkpoint at the next step boundary, end its attempt `preempted` and die
of the signal; the restart must continue at that batch (every global step logged
once, no gap, nothing trained twice) and end byte-identical to an uninterrupted
run. Claim <=> truth: where the input order cannot be skipped in order, the
record says `granularity: "epoch"`, why, and how many steps were trained again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_matrix import TIMEOUT, Server, _kill_when_marked, _wait  # noqa: E402

import mlrepro  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.tf]

EPOCHS, BATCHES = 4, 8
TOTAL = EPOCHS * BATCHES


@pytest.fixture(scope="module")
def server():
    s = Server("keras3")
    yield s
    s.close()


@pytest.fixture(scope="module")
def straight(server, tmp_path_factory):
    """Uninterrupted recorded runs, one per case, made once."""
    made = {}

    def get(case):
        if case not in made:
            d = tmp_path_factory.mktemp(f"straight-{case}")
            log = str(d / "log")
            server.start(log, case, "--mode", "callback", "--log-every", "1",
                         "--store", str(d / "store"), "--checkpoint", str(d / "ckpt"),
                         "--out", str(d / "weights.bin"))
            _wait(log)
            manifest, points, _events = _manifest(d / "store")
            made[case] = {"weights": (d / "weights.bin").read_bytes(),
                          "manifest": manifest, "points": points}
        return made[case]

    return get


def _manifest(store_dir):
    """The one run's manifest, metric points and events."""
    store = mlrepro.open_store(str(store_dir))
    (run_id,) = store.run_ids()
    with open(os.path.join(str(store_dir), "runs", run_id, "events.jsonl")) as fh:
        events = [json.loads(line) for line in fh if line.strip()]
    return store.read_manifest(run_id), store.read_points(run_id), events


def _wait_exit(log: str) -> int:
    deadline = time.time() + TIMEOUT
    while not os.path.exists(log + ".exit"):
        assert time.time() < deadline, f"{log}: the child never ended"
        time.sleep(0.1)
    time.sleep(0.05)
    with open(log + ".exit") as fh:
        return int(fh.read().strip())


def _log(log: str) -> str:
    with open(log) as fh:
        return fh.read()[-3000:]


def _recorded(d, *extra):
    return ("--mode", "callback", "--log-every", "1", "--store", str(d / "store"),
            "--checkpoint", str(d / "ckpt"), "--out", str(d / "weights.bin"), *extra)


def _assert_one_point_per_step(points, where):
    steps = points.steps("batch/loss")
    assert steps == list(range(1, TOTAL + 1)), f"{where}: global steps {steps}"


@pytest.mark.parametrize("case", ["numpy", "deterministic_dataset"])
def test_sigterm_mid_epoch_checkpoints_that_step_and_the_restart_continues_bit_exact(
        server, straight, tmp_path, case, capsys):
    epoch, batch = random.randint(1, 2), random.randint(1, BATCHES - 2)
    where = f"{case}, SIGTERM as epoch {epoch} batch {batch} began"
    log = str(tmp_path / "log0")
    server.start(log, case, *_recorded(tmp_path, "--sigterm-at", f"{epoch}:{batch}"))
    status = _wait_exit(log)
    assert status == -signal.SIGTERM, f"{where}: exit status {status}\n{_log(log)}"
    assert not os.path.exists(log + ".rc"), f"{where}: fit went on to the end"
    manifest, _points, events = _manifest(tmp_path / "store")
    # the signal came as batch `batch` began: that batch trains, the next boundary saves
    step = epoch * BATCHES + batch + 1
    name = f"ckpt-epoch-{epoch:05d}-batch-{batch + 1:06d}"
    assert manifest["status"] == "preempted"
    assert manifest["attempts"][-1]["status"] == "preempted"
    (saved,) = [e for e in events if e["kind"] == "preemption_checkpoint"]
    assert saved["checkpoint"] == name and saved["step"] == step, (where, saved)
    assert saved["save_seconds"] >= 0
    assert manifest["attempts"][-1]["preemption"]["checkpoint"] == name
    with open(tmp_path / "ckpt" / name / "state.json") as fh:
        meta = json.load(fh)
    assert (meta["global_step"], meta["batch"], meta["epoch"]) == (step, batch + 1, epoch - 1)
    assert f"checkpoints/{name[5:]}" in manifest["artifacts"]

    log = str(tmp_path / "log1")
    server.start(log, case, *_recorded(tmp_path))
    _wait(log)
    manifest, points, events = _manifest(tmp_path / "store")
    resume = manifest["resume"]
    assert manifest["status"] == "finished"
    assert [a["status"] for a in manifest["attempts"]] == ["preempted", "finished"]
    assert resume["granularity"] == "step" and "why_not_step" not in resume, (where, resume)
    assert resume["restored"]["checkpoint"] == name
    assert resume["restored"]["batch"] == batch + 1
    assert resume["restored"]["verified"] is True
    assert resume["restored"]["skipped_batches"] == batch + 1
    assert resume["restored"]["metrics_restored"] is True
    assert resume["lost_steps"] == 0 and manifest["attempts"][-1]["lost_steps"] == 0
    assert resume["exact"] is True, resume["reasons"]
    _assert_one_point_per_step(points, where)
    # the first point of the restart is the step after the checkpoint's
    restart = [p for p in points.series["batch/loss"]]
    assert restart[step][0] == step + 1
    ref = straight(case)
    assert (tmp_path / "weights.bin").read_bytes() == ref["weights"], \
        f"{where}: the resumed weights differ from an uninterrupted run's"
    shown = _show(tmp_path / "store", capsys)
    assert f"resume      exact, at the step; restored {name} (step {step}), 0 steps trained " \
        "again" in shown, shown
    assert f"preempted   attempt 0: SIGTERM, saved {name} at step {step} in " in shown, shown
    # the interrupted epoch's epoch-level loss covers the whole epoch (the metric
    # trackers were restored), as in the uninterrupted run
    assert points.values("loss") == ref["points"].values("loss"), where
    assert points.steps("loss") == [BATCHES * (e + 1) for e in range(EPOCHS)]


def _show(store_dir, capsys) -> str:
    from mlrepro.cli import main

    store = mlrepro.open_store(str(store_dir))
    (run_id,) = store.run_ids()
    capsys.readouterr()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "250"   # whole lines
    try:
        assert main(["show", "--store", str(store_dir), run_id]) == 0
    finally:
        os.environ.pop("COLUMNS") if old is None else os.environ.update(COLUMNS=old)
    return capsys.readouterr().out


def test_checkpoint_every_n_steps_writes_at_those_steps_and_sigkill_resumes_there(
        server, straight, tmp_path):
    log, marker = str(tmp_path / "log0"), str(tmp_path / "marker")
    pid = server.start(log, "numpy", *_recorded(tmp_path, "--every", "3 steps",
                                                "--kill-at", "1:5", "--marker", marker))
    _kill_when_marked(pid, marker, log)
    assert _wait_exit(log) == -signal.SIGKILL
    manifest, _points, _events = _manifest(tmp_path / "store")
    saved = sorted(a["global_step"] for n, a in manifest["artifacts"].items()
                   if n.startswith("checkpoints/"))
    killed_at = BATCHES + 5 + 1   # batch 5 of epoch 1 had trained
    assert saved == [3, 6, 9, 12], saved
    assert sorted(n for n in os.listdir(tmp_path / "ckpt") if n.startswith("ckpt-")) == [
        "ckpt-epoch-00001-batch-000001", "ckpt-epoch-00001-batch-000004"]   # keep 2

    log = str(tmp_path / "log1")
    server.start(log, "numpy", *_recorded(tmp_path, "--every", "3 steps"))
    _wait(log)
    manifest, points, _events = _manifest(tmp_path / "store")
    resume = manifest["resume"]
    assert resume["restored"]["global_step"] == 12 and resume["restored"]["batch"] == 4
    assert resume["granularity"] == "step"
    assert resume["lost_steps"] == killed_at - 12   # trained after the checkpoint, again
    _assert_one_point_per_step(points, "3 steps, SIGKILL at 1:5")
    assert (tmp_path / "weights.bin").read_bytes() == straight("numpy")["weights"]
    saved = sorted(a["global_step"] for n, a in manifest["artifacts"].items()
                   if n.startswith("checkpoints/"))
    assert saved == list(range(3, TOTAL, 3)), saved


def test_a_duration_checkpoints_at_step_boundaries_that_far_apart(server, tmp_path):
    # each step takes at least 50 ms (the test's callback sleeps): 32 steps, >= 1.6 s
    log = str(tmp_path / "log")
    server.start(log, "numpy", *_recorded(tmp_path, "--every", "0.25s", "--keep", "100",
                                          "--step-sleep", "0.05"))
    _wait(log)
    manifest, _points, _events = _manifest(tmp_path / "store")
    assert manifest["resume"]["checkpoint_every"] == "0.25s"
    saved = []
    for name in sorted(os.listdir(tmp_path / "ckpt")):
        if name.startswith("ckpt-"):
            with open(tmp_path / "ckpt" / name / "state.json") as fh:
                meta = json.load(fh)
            saved.append((meta["created"], meta["global_step"], meta["batch"], name))
    assert len(saved) >= 3, saved
    assert len(saved) == len([n for n in manifest["artifacts"] if n.startswith("checkpoints/")])
    times = [t for t, _, _, _ in saved]
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.25, saved
    steps = [s for _, s, _, _ in saved]
    assert steps == sorted(set(steps)) and steps[-1] < TOTAL, saved
    # each at a step boundary, named by its place in the epoch
    for _t, step, batch, name in saved:
        assert name == f"ckpt-epoch-{step // BATCHES:05d}-batch-{batch:06d}", saved
        assert batch == step % BATCHES


def test_an_input_order_that_cannot_be_skipped_resumes_at_the_epoch_and_says_so(
        server, tmp_path, capsys):
    batch = random.randint(1, BATCHES - 2)
    log = str(tmp_path / "log0")
    # unseeded per-iteration reshuffling: a restarted process draws another order
    server.start(log, "reshuffle_random", *_recorded(tmp_path, "--sigterm-at", f"1:{batch}"))
    assert _wait_exit(log) == -signal.SIGTERM, _log(log)
    manifest, _points, events = _manifest(tmp_path / "store")
    assert manifest["status"] == "preempted"
    assert manifest["resume"]["granularity"] == "epoch"
    assert "reshuffles" in manifest["resume"]["why_not_step"]
    (saved,) = [e for e in events if e["kind"] == "preemption_checkpoint"]
    assert saved["step"] == BATCHES + batch + 1

    log = str(tmp_path / "log1")
    server.start(log, "reshuffle_random", *_recorded(tmp_path))
    _wait(log)
    manifest, points, _events = _manifest(tmp_path / "store")
    resume = manifest["resume"]
    assert resume["granularity"] == "epoch" and "reshuffles" in resume["why_not_step"]
    assert resume["restored"]["checkpoint"] == "ckpt-epoch-00001"
    assert resume["restored"]["batch"] == 0
    assert resume["lost_steps"] == batch + 1        # epoch 1's batches 0..batch, again
    assert resume["exact"] is False
    _assert_one_point_per_step(points, "reshuffle_random")
    shown = _show(tmp_path / "store", capsys)
    assert "resume      not exact, at the epoch; restored ckpt-epoch-00001 (step " \
        f"{BATCHES}), {batch + 1} steps trained again\n" in shown, shown
    assert "            not at the step: the tf.data pipeline reshuffles" in shown, shown


def test_no_step_boundary_within_the_timeout_saves_nothing_new_and_says_so(
        server, tmp_path, capsys):
    log = str(tmp_path / "log0")
    server.start(log, "numpy", *_recorded(tmp_path, "--sigterm-at", "1:3", "--stall",
                                          "--env", "MLREPRO_PREEMPTION_TIMEOUT=1.5s"))
    assert _wait_exit(log) == -signal.SIGTERM, _log(log)
    manifest, _points, events = _manifest(tmp_path / "store")
    assert manifest["status"] == "preempted"
    note = manifest["attempts"][-1]["preemption"]
    assert note["checkpoint"] is None and "no step boundary came within" in note["reason"]
    assert "preemption_timeout=1.5s" in note["reason"] and 1.5 <= note["seconds"] < 30
    (saved,) = [e for e in events if e["kind"] == "preemption_checkpoint"]
    assert saved["checkpoint"] is None
    # nothing new: only the checkpoint of epoch 0's end
    assert sorted(n for n in os.listdir(tmp_path / "ckpt") if n.startswith("ckpt-")) == [
        "ckpt-epoch-00001"]
    assert "preempted   attempt 0: SIGTERM, no step boundary came within " \
        "preemption_timeout=1.5s" in _show(tmp_path / "store", capsys)
