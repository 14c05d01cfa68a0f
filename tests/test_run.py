"""Run lifecycle: what is recorded, and that the last status is the true one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

import mlrepro
from mlrepro.core.observers import RunObserver
from mlrepro.store.local import LocalStore

from conftest import child_env, remount_read_only, run_py, tmpfs

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "scripts")


def test_run_records_params_metrics_tags_and_artifacts(store_dir, tmp_path):
    f = tmp_path / "plot.png"
    f.write_bytes(b"\x89PNG fake")
    with mlrepro.start_run(project="p", store=store_dir, params={"lr": 0.1, "layers": [2, 3]},
                           tags={"team": "vision"}, seed=7) as run:
        run.log_params({"batch_size": 32})
        for step in range(20):
            run.log_metrics({"loss": 2.0 - step * 0.1}, step=step, epoch=step // 10)
        run.log_metric("val_acc", 0.9)
        run.log_artifact(str(f))
    store = LocalStore(store_dir)
    m = store.read_manifest(run.id)
    assert m["status"] == "finished" and m["end_time"] >= m["start_time"]
    assert m["params"] == {"lr": 0.1, "layers": [2, 3], "batch_size": 32}
    assert m["tags"] == {"team": "vision"} and m["seed"] == 7
    assert "python.random" in m["determinism"]["applied"]
    assert m["artifacts"]["plot.png"]["size"] == len(b"\x89PNG fake")
    assert m["metrics_summary"]["loss"]["min"] == pytest.approx(0.1)
    pts = store.read_points(run.id)
    assert pts.steps("loss") == list(range(20))
    assert [p[3] for p in pts.series["loss"]] == [0] * 10 + [1] * 10
    assert pts.steps("val_acc") == [20]  # one past the last step logged
    assert m["fingerprint"] and set(m["fingerprints"]) == {"code", "command", "data",
                                                            "params", "config",
                                                            "environment", "run"}
    kinds = [e["kind"] for e in store.read_events(run.id)]
    assert kinds[0] == "started" and "status" in kinds


def test_points_are_flushed_within_a_second_without_an_explicit_flush(store_dir):
    run = mlrepro.start_run(project="p", store=store_dir)
    run.log_metrics({"loss": 1.0}, step=0)
    deadline = time.time() + 1.0
    store = LocalStore(store_dir)
    while time.time() < deadline and not store.read_points(run.id).steps("loss"):
        time.sleep(0.05)
    assert store.read_points(run.id).steps("loss") == [0]
    run.finish()


def test_exception_in_the_block_marks_failed_with_the_error(store_dir):
    with pytest.raises(ValueError):
        with mlrepro.start_run(project="p", store=store_dir) as run:
            raise ValueError("bad batch")
    m = LocalStore(store_dir).read_manifest(run.id)
    assert m["status"] == "failed" and "bad batch" in m["error"]


def test_bad_metric_values_warn_and_keep_the_good_ones(store_dir):
    with mlrepro.start_run(project="p", store=store_dir) as run:
        with pytest.warns(mlrepro.MlreproWarning, match="not a number"):
            run.log_metrics({"loss": 1.0, "text": "abc", "inf": float("inf")}, step=0)
    pts = LocalStore(store_dir).read_points(run.id)
    assert pts.values("loss") == [1.0] and pts.values("inf") == [float("inf")]
    assert "text" not in pts.series


def test_bad_arguments_at_start_are_one_clear_error():
    with pytest.raises(mlrepro.MlreproError, match="project"):
        mlrepro.start_run(project="")
    with pytest.raises(mlrepro.MlreproError, match="seed"):
        mlrepro.start_run(project="p", seed="42")


@pytest.mark.parametrize("how,status", [("normal", "finished"), ("raise", "failed"),
                                        ("sigterm", "preempted"), ("sigint", "killed"),
                                        ("sigterm_in_finish", "finished")])
def test_the_last_status_is_the_true_one(store_dir, how, status):
    """sigterm_in_finish: a SIGTERM while finish writes the last records waits for them (the
    run keeps its status and every point), then the process still ends by the signal."""
    proc = run_py([os.path.join(SCRIPTS, "exit_paths.py"), store_dir, how], timeout=60)
    run_id = proc.stdout.split()[0]
    if how.startswith("sigterm"):
        assert proc.returncode == -signal.SIGTERM
    m = LocalStore(store_dir).read_manifest(run_id)
    assert m["status"] == status, proc.stderr
    assert LocalStore(store_dir).read_points(run_id).steps("loss") == list(range(50))
    if how == "raise":
        assert "diverged at step 50" in m["error"]


def test_sigterm_on_a_spot_job_reads_as_preempted_too(store_dir):
    proc = run_py([os.path.join(SCRIPTS, "exit_paths.py"), store_dir, "sigterm"],
                  env=child_env(MLREPRO_SPOT="1"), timeout=60)
    assert LocalStore(store_dir).read_manifest(proc.stdout.split()[0])["status"] == "preempted"


@pytest.mark.slow
def test_sigkill_keeps_every_flushed_point_and_reads_as_crashed(store_dir):
    proc = subprocess.Popen([sys.executable, os.path.join(SCRIPTS, "log_forever.py"), store_dir],
                            env=child_env(), stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().split()[1]
    flushed = 0
    while flushed < 2000:
        line = proc.stdout.readline()
        if line.startswith("flushed"):
            flushed = int(line.split()[1])
    proc.kill()
    proc.wait(10)
    store = LocalStore(store_dir)
    steps = store.read_points(run_id).steps("loss")
    assert steps[:flushed] == list(range(flushed))
    assert steps == list(range(len(steps)))  # nothing torn or out of order
    rows = store.list_runs()
    assert rows[0]["id"] == run_id and rows[0]["status"] == "crashed"


@pytest.mark.slow
def test_finish_gives_up_within_its_time_limit_instead_of_hanging(store_dir):
    run = mlrepro.start_run(project="p", store=store_dir)

    class Stuck:
        uri = "stuck"

        def write_batch(self, writes):
            time.sleep(30)

    run._writer.store = Stuck()
    run.log_metrics({"loss": 1.0}, step=0)
    start = time.time()
    assert run.finish(timeout=1.0) is False
    assert time.time() - start < 3.0


def _train_like_loop(run, steps=2000):
    total = 0.0
    for step in range(steps):
        total += step  # the "training"
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / steps}, step=step)
    return total


@pytest.mark.slow
def test_a_full_store_warns_and_spools_while_training_goes_on(tmp_path):
    with tmpfs(tmp_path / "small", size="2m") as small:
        store = os.path.join(small, "store")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = mlrepro.start_run(project="full", store=store)
            run.log_metrics({"warmup": 9.0}, step=0)
            assert run.flush()  # the start of the run is on the store's disk
            filler = os.path.join(small, "filler")
            with open(filler, "wb") as fh:  # fill the disk after the run started
                try:
                    fh.write(b"x" * (4 << 20))
                except OSError:
                    pass
            assert _train_like_loop(run, 5000) == sum(range(5000))
            assert run.finish(timeout=10)
        assert run.spooled
        assert any("spooled" in str(w.message) for w in caught)
        spool = LocalStore(os.environ["MLREPRO_SPOOL"])
        assert run.id in spool.run_ids()
        assert spool.read_manifest(run.id)["status"] == "finished"
        # nothing the store already had is corrupted: its manifest still parses
        assert LocalStore(store).read_manifest(run.id)["status"] == "running"
        os.remove(filler)
        subprocess.run(["mount", "-o", "remount,size=8m", small], check=True)
        # once there is room again, `mlrepro recover` brings the run back whole
        from mlrepro.cli import main
        assert main(["recover", "--store", store]) == 0
        merged = LocalStore(store)
        assert merged.read_manifest(run.id)["status"] == "finished"
        assert merged.read_points(run.id).steps("loss") == list(range(5000))


@pytest.mark.slow
def test_a_read_only_store_warns_and_training_goes_on(tmp_path):
    with tmpfs(tmp_path / "ro", size="1m") as ro:
        remount_read_only(ro)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = mlrepro.start_run(project="ro", store=os.path.join(ro, "store"))
            assert _train_like_loop(run, 500) == sum(range(500))
            run.finish(timeout=10)
        assert any("spool" in str(w.message) for w in caught)
        spool = LocalStore(os.environ["MLREPRO_SPOOL"])
        assert spool.read_points(run.id).steps("loss") == list(range(500))


_IMPORT_ORDER = """
import sys
{before}
import mlrepro
run = mlrepro.start_run(project="order", store=sys.argv[1])
{after}
run.log_metrics({{"loss": float(numpy.float32(0.5))}}, step=0)
run.finish()
print(run.id)
"""


def test_environment_fingerprint_does_not_depend_on_import_order(store_dir):
    ids = []
    for before, after in (("import numpy", ""), ("", "import numpy")):
        proc = run_py(["-c", _IMPORT_ORDER.format(before=before, after=after), store_dir])
        assert proc.returncode == 0, proc.stderr
        ids.append(proc.stdout.split()[-1])
    store = LocalStore(store_dir)
    first, second = (store.read_manifest(i) for i in ids)
    assert first["environment"]["frameworks"] == second["environment"]["frameworks"]
    assert first["environment"]["frameworks"]["numpy"]  # recorded although imported later
    assert first["fingerprints"]["environment"] == second["fingerprints"]["environment"]


def test_environment_fingerprint_tells_other_framework_versions_and_builds_apart():
    from mlrepro.capture.environment import capture_environment, refresh_frameworks
    from mlrepro.capture.fingerprint import environment_fingerprint

    env = capture_environment()
    same = capture_environment()
    assert environment_fingerprint(env) == environment_fingerprint(same)
    older = {**env, "frameworks": {**env["frameworks"], "numpy": "1.26.4"}}
    assert environment_fingerprint(older) != environment_fingerprint(env)
    cuda = {**env, "frameworks": {**env["frameworks"], "cuda": "11.8", "tf_built_with_cuda": True}}
    assert environment_fingerprint(cuda) != environment_fingerprint(env)
    assert refresh_frameworks(env) is None   # nothing imported since: no change, same print


class _Recorder(RunObserver):
    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def started(self, run):
        self.calls.append(("started", run.status))
        if self.fail_at == "started":
            raise RuntimeError("observer broke at start")

    def finished(self, run):
        self.calls.append(("finished", run.status))
        if self.fail_at == "finished":
            raise RuntimeError("observer broke at the end")


def test_observers_see_start_and_end_and_cannot_break_the_run(store_dir):
    ok, broken_start, broken_end = _Recorder(), _Recorder("started"), _Recorder("finished")
    with pytest.warns(mlrepro.MlreproWarning) as caught:
        with mlrepro.start_run(project="obs", store=store_dir) as run:
            for observer in (ok, broken_start, broken_end):
                run.add_observer(observer)
            run.log_metrics({"loss": 1.0}, step=0)
    assert ok.calls == [("started", "running"), ("finished", "finished")]
    assert broken_start.calls == [("started", "running")]       # set aside after failing
    assert broken_end.calls[-1] == ("finished", "finished")
    messages = " ".join(str(w.message) for w in caught)
    assert "observer broke at start" in messages and "observer broke at the end" in messages
    m = LocalStore(store_dir).read_manifest(run.id)
    assert m["status"] == "finished" and m["metrics_summary"]["loss"]["count"] == 1
    events = LocalStore(store_dir).read_events(run.id)
    assert any("observer broke at start" in e.get("message", "") for e in events)
