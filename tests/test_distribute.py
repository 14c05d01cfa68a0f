"""mlrepro.distribute: the strategy for the runtime, one writer, and workers checked against the chief.

The multi-worker tests run two real worker processes on 127.0.0.1, each with
its own fake SageMaker tree (a two-host resource config), so the TF_CONFIG they
train under is the one mlrepro built from the host list.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time

import pytest

import mlrepro
from mlrepro.runtime import exchange as _exchange
from mlrepro.runtime import workers as _workers
from mlrepro.distribute import DEFAULT, MIRRORED, MULTI_WORKER, plan
from mlrepro.runtime import detect
from mlrepro.store.local import LocalStore

from conftest import child_env
from test_runtime import make_sagemaker_tree

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "runtime_scripts")
WORKER_TIMEOUT = 240


# -- choosing the strategy (pure) ----------------------------------------------------------------

def test_plan_picks_default_mirrored_or_multi_worker(tmp_path):
    none = str(tmp_path / "none")
    single = detect(environ={}, base_dir=none, root=str(tmp_path), argv=["x"])
    assert plan(single, local_gpus=0) == DEFAULT
    assert plan(single, local_gpus=1) == DEFAULT
    assert plan(single, local_gpus=4) == MIRRORED
    base = make_sagemaker_tree(tmp_path / "ml", hosts=("algo-1", "algo-2"),
                               current_host="algo-1")
    two_hosts = detect(environ={}, base_dir=base, argv=["x"])
    assert plan(two_hosts, local_gpus=8) == MULTI_WORKER
    horovod = detect(environ={"HOROVOD_RANK": "1", "HOROVOD_SIZE": "2"}, base_dir=none,
                     root=str(tmp_path), argv=["x"])
    assert plan(horovod, local_gpus=1) == DEFAULT


def test_keras3_multi_host_request_fails_at_once_naming_the_fix(tmp_path):
    base = make_sagemaker_tree(tmp_path / "ml", hosts=("algo-1", "algo-2"),
                               current_host="algo-1")
    code = (
        "import sys, mlrepro\n"
        "try:\n"
        "    mlrepro.distribute.strategy()\n"
        "except mlrepro.MlreproError as exc:\n"
        "    print('ERROR', exc)\n"
        "print('TF_IMPORTED', 'tensorflow' in sys.modules)\n")
    env = child_env(MLREPRO_SAGEMAKER_BASE_DIR=base)
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR MultiWorkerMirroredStrategy cannot train Keras 3" in proc.stdout
    assert "TF_USE_LEGACY_KERAS=1" in proc.stdout and "tf_keras" in proc.stdout
    assert "TF_IMPORTED False" in proc.stdout  # it failed before doing any work


def test_malformed_tf_config_is_a_user_error_not_a_silent_single_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:1"]}')
    rt = detect(base_dir=str(tmp_path / "none"), argv=["x"])
    assert rt.world_size == 1 and rt.problems  # detection notes it and never raises
    with pytest.raises(mlrepro.MlreproError, match="TF_CONFIG is not JSON.*fix the TF_CONFIG"):
        mlrepro.distribute.strategy(rt)


def test_parameter_server_tf_config_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"], "ps": ["p:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    rt = detect(base_dir=str(tmp_path / "none"), argv=["x"])
    with pytest.raises(mlrepro.MlreproError, match="parameter servers"):
        mlrepro.distribute.strategy(rt)


# -- worker fingerprints (pure) ----------------------------------------------------------------------

def test_worker_fingerprints_survive_the_json_row_the_exchange_carries():
    worker = _workers.WorkerPrint(rank=3, host="algo-4", code="ab" * 32, environment="cd" * 32,
                                  run_id="20261128T120000-0123456789")
    row = json.loads(json.dumps(_workers.as_row(worker)))
    assert _workers.from_row(row) == worker
    with pytest.raises(ValueError, match="not a worker row"):
        _workers.from_row({"rank": 1, "host": "algo-2"})


def test_the_chief_listens_one_port_above_the_clusters_tf_servers():
    config = {"cluster": {"worker": ["algo-1:2222", "algo-2:2222"]},
              "task": {"type": "worker", "index": 1}}
    assert _exchange.chief_address(config) == ("algo-1", 2223)
    mpi = {"cluster": {"worker": ["algo-1:2222", "algo-1:2223", "algo-2:2222", "algo-2:2223"]},
           "task": {"type": "worker", "index": 2}}
    assert _exchange.chief_address(mpi) == ("algo-1", 2224)   # above every local process's port
    assert _exchange.chief_address(None) is None


def test_compare_names_the_worker_and_part_that_differ_and_counts_missing_workers():
    chief = _workers.WorkerPrint(0, "algo-1", "aa" * 32, "bb" * 32, "run-1")
    same = _workers.WorkerPrint(1, "algo-2", "aa" * 32, "bb" * 32)
    other_env = _workers.WorkerPrint(2, "algo-3", "aa" * 32, "ee" * 32)
    ok = _workers.compare([chief, same, same], 2)  # a worker's replicas count once
    assert ok["checked"] and ok["consistent"] and ok["reported"] == 2 and ok["run_id"] == "run-1"
    bad = _workers.compare([other_env, chief, same], 3)
    assert bad["consistent"] is False
    assert bad["mismatches"] == [{"rank": 2, "host": "algo-3", "parts": ["environment"]}]
    assert "worker 2 (algo-3) differs in environment" in _workers.describe(bad)
    missing = _workers.compare([chief], 2, names=["algo-1", "algo-2"])
    assert missing["checked"] is False and "1 of 2 workers reported" in missing["reason"]
    assert missing["missing"] == [{"rank": 1, "host": "algo-2"}]
    assert "missing: worker 1 (algo-2)" in missing["reason"]


def test_single_process_gets_a_local_strategy_and_a_consistent_workers_section(store_dir):
    import tensorflow as tf

    strategy = mlrepro.distribute.strategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        assert isinstance(strategy, tf.distribute.MirroredStrategy)
    else:
        assert strategy is tf.distribute.get_strategy()
    with mlrepro.start_run(project="p", store=store_dir, capture=False) as run:
        result = mlrepro.distribute.check_workers(run, strategy)
    assert result["checked"] and result["consistent"] and result["reported"] == 1
    manifest = LocalStore(store_dir).read_manifest(run.id)
    assert manifest["workers"]["consistent"] is True
    assert manifest["workers"]["workers"][0]["code"] == manifest["fingerprints"]["code"]


# -- two real workers on 127.0.0.1 ----------------------------------------------------------------------

def _free_ports(n: int) -> list[int]:
    """`n` free TF ports and the worker exchange's (one above the highest) free too.

    Taken below the ephemeral range (32768 up): the port after a just-freed
    ephemeral one is often the next connection's own local port.
    """
    rng = random.Random()
    for _ in range(200):
        start = rng.randrange(20000, 32000 - n)
        try:
            for port in range(start, start + n + 1):
                with socket.socket() as probe:
                    probe.bind(("", port))
        except OSError:
            continue
        return list(range(start, start + n))
    raise AssertionError("no free ports below the ephemeral range")


def _run_two_workers(tmp_path, scripts, extra=({}, {})):
    """Start one worker per host of a two-host SageMaker job; return (outputs, logs, seconds)."""
    store = str(tmp_path / "store")
    p1, p2 = _free_ports(2)
    procs, outs, logs = [], [], []
    started = time.time()
    for i, (host, script) in enumerate(zip(("algo-1", "algo-2"), scripts)):
        base = make_sagemaker_tree(tmp_path / f"{host}-ml", hosts=("algo-1", "algo-2"),
                                   current_host=host,
                                   hyperparameters={"epochs": "2", "lr": "0.05"})
        out = tmp_path / f"{host}.json"
        log = open(tmp_path / f"{host}.log", "w+")
        env = child_env(MLREPRO_SAGEMAKER_BASE_DIR=base, MLREPRO_STORE=store,
                        MLREPRO_HOST_ADDRESSES=f"algo-1=127.0.0.1:{p1},algo-2=127.0.0.1:{p2}",
                        TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", MW_OUT=str(out),
                        TRAINING_JOB_NAME="mw-job", **extra[i])
        env.pop("TF_CONFIG", None)
        procs.append(subprocess.Popen([sys.executable, script], env=env, cwd=str(tmp_path),
                                      stdout=log, stderr=subprocess.STDOUT))
        outs.append(out)
        logs.append(log)
    try:
        for proc in procs:
            proc.wait(timeout=WORKER_TIMEOUT)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.time() - started
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read())
        log.close()
    for proc, text in zip(procs, texts):
        assert proc.returncode == 0, text[-4000:]
    return [json.loads(o.read_text()) for o in outs], texts, elapsed, LocalStore(store)


@pytest.mark.slow
def test_two_workers_train_under_mlrepros_tf_config_and_only_the_chief_writes(tmp_path):
    script = str(tmp_path / "train.py")
    shutil.copy(os.path.join(SCRIPTS, "mw_train.py"), script)
    (chief, worker), logs, elapsed, store = _run_two_workers(tmp_path, [script, script])
    print(f"two workers: {elapsed:.1f}s")
    # TF_CONFIG came from the two-host resource config; both trained together.
    for out, index in ((chief, 0), (worker, 1)):
        assert out["tf_config"]["task"] == {"type": "worker", "index": index}
        assert len(out["tf_config"]["cluster"]["worker"]) == 2
        assert out["multi_worker"] is True and out["replicas"] == 2
        assert out["model_class"].startswith("tf_keras")
    assert chief["loss"] == worker["loss"] and len(chief["loss"]) == 2
    assert (chief["is_chief"], chief["writes"]) == (True, True)
    assert (worker["is_chief"], worker["writes"]) == (False, False)
    # Exactly one run, written by the chief; the worker adopted its id.
    assert store.run_ids() == [chief["run_id"]] == [worker["run_id"]]
    manifest = store.read_manifest(chief["run_id"])
    assert manifest["status"] == "finished"
    rt = manifest["runtime"]
    assert (rt["kind"], rt["rank"], rt["world_size"], rt["hosts"], rt["launcher"]) == \
        ("sagemaker", 0, 2, ["algo-1", "algo-2"], "sagemaker")
    assert rt["tf_config_built_by_mlrepro"] is True and rt["job_name"] == "mw-job"
    # Both workers' fingerprints were compared with the chief's.
    section = manifest["workers"]
    assert section["checked"] and section["consistent"] and section["reported"] == 2
    assert [(w["rank"], w["host"]) for w in section["workers"]] == [(0, "algo-1"), (1, "algo-2")]
    assert section["workers"][0]["code"] == section["workers"][1]["code"] == \
        manifest["fingerprints"]["code"]
    assert section["workers"][1]["environment"] == manifest["fingerprints"]["environment"]
    assert [round(v[1], 6) for v in store.read_points(chief["run_id"]).series["loss"]] == \
        [round(v, 6) for v in chief["loss"]]


@pytest.mark.slow
def test_a_worker_running_other_code_is_recorded_and_warned_about(tmp_path):
    script = str(tmp_path / "train.py")
    shutil.copy(os.path.join(SCRIPTS, "mw_train.py"), script)
    edited = str(tmp_path / "train_edited.py")
    with open(script) as src, open(edited, "w") as dst:
        dst.write(src.read() + "\n# an edit only worker 2 has\n")
    (chief, worker), logs, _, store = _run_two_workers(tmp_path, [script, edited])
    assert store.run_ids() == [chief["run_id"]]
    manifest = store.read_manifest(chief["run_id"])
    section = manifest["workers"]
    assert section["checked"] and section["consistent"] is False
    assert section["mismatches"] == [{"rank": 1, "host": "algo-2", "parts": ["code"]}]
    assert "worker 1 (algo-2) differs in code from the chief" in logs[0]   # chief warns
    assert "worker 1 (algo-2) differs in code from the chief" in logs[1]   # so does the worker
    warnings = [e for e in store.read_events(chief["run_id"]) if e["kind"] == "warning"]
    assert any("differs in code" in e["message"] for e in warnings)
    assert manifest["warnings"] >= 1


# -- a worker that never checks: bounded waits, a warning naming it, training goes on ---------------

CHECK_ONLY = os.path.join(SCRIPTS, "check_only.py")


def _check_only(tmp_path, modes, timeout="3", skip_sleep="0"):
    return _run_two_workers(tmp_path, [CHECK_ONLY, CHECK_ONLY], extra=[
        {"CHECK_MODE": mode, "MLREPRO_WORKERS_TIMEOUT": timeout, "SKIP_SLEEP": skip_sleep}
        for mode in modes])


def test_two_workers_exchange_fingerprints_without_tensorflow_and_one_run_is_written(tmp_path):
    (chief, worker), logs, elapsed, store = _check_only(tmp_path, ["call", "call"], timeout="120")
    assert chief["workers"]["checked"] and chief["workers"]["consistent"] is True, logs
    assert worker["run_id"] == chief["run_id"] and store.run_ids() == [chief["run_id"]]
    assert chief["seconds"] < 100, logs   # no waiting out the timeout when everyone reports


def test_a_worker_that_never_checks_is_named_and_the_chief_trains_on(tmp_path):
    (chief, worker), logs, elapsed, store = _check_only(tmp_path, ["call", "skip"],
                                                        skip_sleep="8")
    section = chief["workers"]
    assert section["checked"] is False and section["missing"] == [{"rank": 1, "host": "algo-2"}]
    assert 2.5 < chief["seconds"] < 6    # bounded by MLREPRO_WORKERS_TIMEOUT=3, not forever
    assert "worker 1 (algo-2)" in logs[0] and "training goes on" in logs[0]
    manifest = store.read_manifest(chief["run_id"])
    assert manifest["status"] == "finished" and manifest["workers"]["missing"][0]["rank"] == 1
    warnings = [e["message"] for e in store.read_events(chief["run_id"]) if e["kind"] == "warning"]
    assert any("worker 1 (algo-2)" in m for m in warnings)


def test_a_worker_whose_chief_never_checks_warns_naming_the_chief_and_trains_on(tmp_path):
    (chief, worker), logs, elapsed, store = _check_only(tmp_path, ["skip", "call"],
                                                        skip_sleep="1")
    section = worker["workers"]
    assert section["checked"] is False and section["missing"] == [{"rank": 0, "host": "algo-1"}]
    assert 2.5 < worker["seconds"] < 10  # reaching the chief is bounded by the timeout too
    assert "worker 0 (algo-1)" in logs[1] and "could not be reached" in logs[1]
    assert "training goes on" in logs[1]
    assert store.run_ids() == [chief["run_id"]]


@pytest.mark.slow
def test_under_mwms_a_worker_that_never_checks_costs_the_timeout_and_both_train_on(tmp_path):
    script = str(tmp_path / "train.py")
    shutil.copy(os.path.join(SCRIPTS, "mw_train.py"), script)
    (chief, worker), logs, elapsed, store = _run_two_workers(
        tmp_path, [script, script], extra=[{"MLREPRO_WORKERS_TIMEOUT": "3"},
                                           {"MLREPRO_WORKERS_TIMEOUT": "3", "MW_SKIP_CHECK": "1"}])
    assert chief["loss"] == worker["loss"] and len(chief["loss"]) == 2   # still in lock step
    section = store.read_manifest(chief["run_id"])["workers"]
    assert section["checked"] is False and section["missing"] == [{"rank": 1, "host": "algo-2"}]
    assert "missing: worker 1 (algo-2)" in logs[0] and "training goes on" in logs[0]


@pytest.mark.slow
def test_with_a_worker_missing_the_chief_takes_no_checkpoints_it_could_not_share(tmp_path):
    # Under MWMS a checkpoint's or export's variable reads are collectives: a worker
    # without mlrepro would not join them, and training would fail. Training goes on.
    script = str(tmp_path / "train.py")
    shutil.copy(os.path.join(SCRIPTS, "mw_train.py"), script)
    ckpt = str(tmp_path / "ckpt")
    (chief, worker), logs, elapsed, store = _run_two_workers(
        tmp_path, [script, script], extra=[
            {"MLREPRO_WORKERS_TIMEOUT": "3", "MW_CALLBACK": "1", "MW_CKPT": ckpt},
            {"MLREPRO_WORKERS_TIMEOUT": "3", "MW_CALLBACK": "1", "MW_CKPT": ckpt,
             "MW_SKIP_CHECK": "1"}])
    assert chief["loss"] == worker["loss"] and len(chief["loss"]) == 2
    manifest = store.read_manifest(chief["run_id"])
    assert manifest["status"] == "finished"
    assert manifest["workers"]["missing"] == [{"rank": 1, "host": "algo-2"}]
    assert not [a for a in manifest["artifacts"] if a.startswith("checkpoints/")]
    assert "model.keras" not in manifest["artifacts"]
    assert "this run takes no checkpoints, exports no model" in logs[0]
    assert "initial_weights_digest" not in manifest.get("determinism", {})
    assert not os.path.exists(ckpt) or not os.listdir(ckpt)
