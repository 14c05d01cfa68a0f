"""The benchmark harness measures what it says: hook time, step intervals, record bytes, digests.

These check the harness itself on tiny sizes (the peers are not installed in the main
venv; `make bench` runs them from .venv-bench).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import table  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MLREPRO_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MLREPRO_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("MLREPRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")


def test_hook_timing_counts_a_trackers_batch_hooks_and_not_keras_own():
    pytest.importorskip("keras")
    import keras
    import numpy as np

    import hook_timing

    class Slow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.on_batch_end(batch, logs)  # a nested hook call is counted once

        def on_batch_end(self, batch, logs=None):
            time.sleep(0.002)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.zeros((16 * 12, 4), "float32"), np.zeros((16 * 12, 2), "float32")
    clock = hook_timing.install(warmup=2)
    clock.start()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[clock, Slow()])
    s = clock.summary()
    assert s["steps"] == 12 and s["measured_steps"] == 9
    assert s["callbacks"] == [f"{Slow.__module__}.{Slow.__qualname__}"]
    assert s["hook_calls"]["batch"] == 10  # steps 2..11, end hooks only
    per_step_us = s["hook_ns"]["batch"] / 1e3 / 10
    assert 2000 <= per_step_us < 50_000
    assert s["step_mean_ns"] >= 2e6  # the sleep is inside the step interval
    assert 0 < s["fit_to_callbacks_ns"] <= s["fit_to_first_step_ns"]


def test_peer_summary_ratios_use_minima_and_judge_mlrepro_on_hooks_plus_deferred_epoch_work():
    import peers

    def run(tracker, rep, step_us, hook_us, setup=0.0, first=1.0, size=1000, epoch_us=0.0):
        w = {"workload": "tiny", "step_mean_ns": step_us * 1e3, "step_median_ns": step_us * 1e3,
             "steps": 110, "measured_steps": 100,
             "hook_ns": {"batch": hook_us * 1e3 * 100, "begin": 0,
                         "epoch_end": epoch_us * 1e3 * 110},
             "setup_ns": setup * 1e9, "fit_to_first_step_ns": first * 1e9,
             "fit_to_callbacks_ns": 0.5e9, "finish_ns": 1e8, "record_bytes": size}
        return {"tracker": tracker, "repeat": rep, "workloads": [w], "import_ns": 0}

    results = [run("bare", 0, 600, 0), run("bare", 1, 500, 0),
               run("mlrepro", 0, 530, 8, setup=0.01, first=1.05, epoch_us=2),
               run("mlrepro", 1, 700, 10, setup=0.01, first=1.05, epoch_us=2),
               run("comet", 0, 760, 200, setup=1.0), run("comet", 1, 800, 220, setup=1.0),
               run("wandb", 0, 900, 400, setup=2.0), run("wandb", 1, 990, 420, setup=2.0)]
    summary = peers.summarize(results, ["bare", "mlrepro", "comet", "wandb"])
    mine = summary["tiny"]["mlrepro"]
    assert mine["ratio"] == pytest.approx(530 / 500)
    assert mine["added_us"] == pytest.approx(30)
    assert mine["hook_us"] == pytest.approx(11)  # 9 in batch hooks + 2 deferred to epoch end
    assert mine["startup_s"] == pytest.approx(0.06)
    rows = {r.name: r for r in peers.rows(summary, {"mlflow": "not installed"})}
    judged = rows["tiny b16: mlrepro hooks / cheapest peer (comet)"]
    assert judged.ok is True and judged.ratio == f"{11 / 210:.3f}"
    assert rows["start-up (fit -> first step): mlrepro"].ok is True
    assert rows["peers: mlflow"].value.startswith("skipped")


def test_store_bench_table_is_read_into_result_rows():
    import run_all

    text = ("benchmark                          median          target  ok\n"
            "log 1,000 points: caller thread   0.90 us/point   <= 3 us/point  yes\n"
            "  writer drain after the loop      0.05 s               -  yes\n"
            "read 1,000 points back             2100 ms       < 1000 ms  NO\n")
    rows = run_all.parse_table(text, "store")
    assert [r.name for r in rows] == ["store: log 1,000 points: caller thread",
                                      "store: writer drain after the loop",
                                      "store: read 1,000 points back"]
    assert rows[0].value == "0.90 us/point" and rows[0].ok is True and rows[2].ok is False
    assert "| store: read 1,000 points back | 2100 ms | - | < 1000 ms | NO |" in \
        table.markdown(rows)


def test_fingerprint_bench_digests_match_sha256sum_and_warm_call_uses_the_cache(tmp_path):
    import argparse

    import fingerprint_bench

    parser = argparse.ArgumentParser()
    fingerprint_bench.add_arguments(parser)
    args = parser.parse_args(["--fp-files", "3", "--fp-file-mb", "1", "--fp-repeats", "1",
                              "--fp-dir", str(tmp_path)])
    rows, text, m = fingerprint_bench.run(args, log=lambda _m: None)
    assert m["digests_match_sha256sum"] and m["same_digest_cached"]
    assert m["cache_hits"] == 3
    names = [r.name for r in rows]
    assert "fingerprint 3 MiB cold: mlrepro fingerprint_files" in names
    warm = next(r for r in rows if "digest cache" in r.name)
    assert warm.target == "< 50 ms"
    assert os.listdir(tmp_path) == []  # the 1 GB of test files is always removed


@pytest.mark.slow
def test_peer_worker_reports_steps_start_up_and_record_bytes_for_mlrepro(tmp_path):
    pytest.importorskip("mlrepro.keras")
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "peer_worker.py"), "--tracker", "mlrepro",
         "--workdir", str(tmp_path / "w"), "--out", str(out), "--workload", "tiny:16:30:5"],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    (w,) = result["workloads"]
    assert w["steps"] == 35 and w["measured_steps"] == 29
    assert any("ReproCallback" in c for c in w["callbacks"])
    assert w["hook_calls"].get("batch", 0) >= 30
    assert w["record_bytes"] > 0
    assert not (tmp_path / "w").exists()  # the worker cleans its run directory


def test_callback_overhead_pipe_table_is_read_into_result_rows():
    import run_all

    text = ("model    | batch | bare us/step | repro us/step | min ratio | hook us/step | target\n"
            "---------+-------+--------------+---------------+-----------+--------------+-------\n"
            "tiny     | 16    | 4019         | 2321          | 0.947     | 8.66         | <= 3%\n"
            "resnet20 | 128   | 582214       | 607055        | 0.775     | 53.99        | <= 1%\n")
    rows = run_all.parse_pipe_table(text, "callback")
    assert [(r.name, r.value, r.ratio, r.target) for r in rows] == [
        ("callback: tiny b16", "8.66 us/step in its hooks", "0.947x bare", "<= 3%"),
        ("callback: resnet20 b128", "53.99 us/step in its hooks", "0.775x bare", "<= 1%")]


@pytest.mark.slow
def test_checkpoint_bench_times_a_real_sigterm_and_every_checkpoint_cadence(tmp_path):
    pytest.importorskip("mlrepro.keras")
    import run_all

    out = tmp_path / "raw.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "checkpoint_bench.py"), "--quick", "--every", "1,10",
         "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = json.loads(out.read_text())
    (sample,) = raw["sigterm"]
    # the signal really came mid-training: the run saved, ended preempted, the process by the signal
    assert sample["exit_status"] == -15 and sample["run_status"] == "preempted", sample
    assert 0 <= sample["signal_to_checkpoint_s"] <= sample["signal_to_exit_s"] < 30
    per_step = raw["per_step"]
    assert per_step["unsupported"] == {}
    assert set(per_step["seconds"]) == {"bare", "no checkpoints", "epoch", "1 steps", "10 steps"}
    assert all(len(v) == 1 and v[0] > 0 for v in per_step["seconds"].values())
    assert per_step["stall"]["1 steps"]   # a save at every step was timed where it happens
    rows = {r.name: r for r in run_all.parse_table(proc.stdout, "checkpoints")}
    assert rows["checkpoints: SIGTERM -> checkpoint written (tiny b16)"].ok is True
    assert rows["checkpoints: per step: 10 steps (tiny b16)"].ratio.endswith("x no ckpt")
