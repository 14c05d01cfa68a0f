"""Faults during real training: SIGKILL at random moments, SIGTERM, eight runs at once.

(Disk-full and read-only stores are in tests/test_run.py, which mounts a small tmpfs.)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from mlrepro.store.local import LocalStore

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from conftest import child_env  # noqa: E402

FIT = os.path.join(HERE, "scripts", "fit_until_killed.py")
WRITER = os.path.join(os.path.dirname(HERE), "scripts", "concurrent_writer.py")
TRIALS = 20


def _start(store, epochs=1000):
    proc = subprocess.Popen([sys.executable, FIT, store, str(epochs)], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line.strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.time() + 120
    while "training" not in lines and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert "training" in lines, proc.stderr.read() if proc.poll() is not None else "no start"
    # The random kill counts from the run's first manifest, not from the script's start:
    # on a loaded machine fit's set-up alone can outlast the random delay.
    runs = os.path.join(store, "runs")
    while time.time() < deadline and proc.poll() is None and not (
            os.path.isdir(runs) and any(os.path.exists(os.path.join(runs, d, "run.json"))
                                        for d in os.listdir(runs))):
        time.sleep(0.02)
    return proc, lines, reader


def _check_record(store, lines):
    """The record reads back whole, and holds every point flushed before the kill."""
    s = LocalStore(store)
    (run_id,) = s.run_ids()
    manifest = s.read_manifest(run_id)  # readable: never torn
    pts = s.read_points(run_id)
    flushed = [tuple(map(int, line.split()[1:])) for line in lines if line.startswith("flushed")]
    if flushed:
        last_epoch, last_step = flushed[-1]
        epochs_seen = sorted({e for _s, _v, _w, e in pts.series["loss"]})
        assert epochs_seen[:last_epoch + 1] == list(range(last_epoch + 1))
        assert pts.steps("batch/loss")[:last_step] == list(range(1, last_step + 1))
    for name in pts.names():  # every metric's steps are in order: no torn or interleaved points
        steps = pts.steps(name)
        assert steps == sorted(steps)
    return manifest, s


@pytest.mark.slow
def test_sigkill_at_random_moments_of_fit_keeps_every_flushed_point(tmp_path):
    rng = random.Random(20261128)
    outcomes = []
    for trial in range(TRIALS):
        store = str(tmp_path / f"store-{trial}")
        proc, lines, reader = _start(store)
        time.sleep(rng.uniform(0.0, 3.0))
        proc.kill()
        proc.wait(30)
        reader.join(5)
        manifest, s = _check_record(store, lines)
        row = s.list_runs()[0]
        assert row["status"] == "crashed"
        outcomes.append(sum(line.startswith("flushed") for line in lines))
    # the kills landed at different points of training, not all before the first epoch
    assert len(set(outcomes)) > 3, outcomes


@pytest.mark.slow
def test_sigterm_during_fit_records_preempted_with_every_point_so_far(tmp_path):
    store = str(tmp_path / "store")
    proc, lines, reader = _start(store)
    deadline = time.time() + 60
    while not any(line.startswith("flushed") for line in lines) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == -signal.SIGTERM
    reader.join(5)
    manifest, s = _check_record(store, lines)
    assert manifest["status"] == "preempted" and "SIGTERM" in manifest["error"]


@pytest.mark.slow
def test_eight_concurrent_runs_into_one_store(tmp_path):
    store = str(tmp_path / "store")
    os.makedirs(store)
    procs = [subprocess.Popen([sys.executable, WRITER, store, str(w), "2", "2000"],
                              env=child_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(8)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        ids += out.split()
    s = LocalStore(store)
    assert sorted(s.run_ids()) == sorted(ids) and len(ids) == 16
    for run_id in ids:
        assert s.read_points(run_id).steps("loss") == list(range(2000))
    assert {r["status"] for r in s.list_runs()} == {"finished"}
