"""The bundled example as a two-host SageMaker job on this one machine, through the real toolkit.

Two `train` processes of the sagemaker-training toolkit (what the TensorFlow
Deep Learning Containers run), each with its own SAGEMAKER_BASE_DIR tree: one
`resourceconfig.json` naming hosts algo-1 and algo-2 with its own
`current_host`, the same `checkpointconfig.json`, synthetic CIFAR-10 binaries as
the `training` channel. algo-1 and algo-2 resolve to 127.0.0.2 and 127.0.0.3
through an /etc/hosts entry this test adds and removes (root only, as in CI).
Nothing sets TF_CONFIG: mlrepro builds it from the host list in each container.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from conftest import ROOT, child_env
from test_runtime import make_sagemaker_tree

from mlrepro.store.local import LocalStore

EXAMPLE = os.path.join(ROOT, "examples", "resnet_cifar10")
HOSTS = {"algo-1": "127.0.0.2", "algo-2": "127.0.0.3"}
ETC_HOSTS = "/etc/hosts"
JOB_TIMEOUT = 420
EPOCH_LOSS = re.compile(r" - loss: ([0-9.]+)")


@contextlib.contextmanager
def resolvable(hosts: dict, path: str = ETC_HOSTS):
    """Make `hosts` (name -> address) resolve through /etc/hosts; the lines go again afterwards.

    The file is rewritten in place (it is often a bind mount), and only the lines
    carrying this call's marker are removed, whatever happened meanwhile.
    """
    if os.geteuid() != 0 or not os.access(path, os.W_OK):
        pytest.skip(f"the two-host job needs its host names in {path}: run as root (CI does)")
    taken = [name for name in hosts if _resolves(name)]
    if taken:
        pytest.skip(f"{', '.join(taken)} already resolve here; this test will not shadow them")
    marker = f"# mlrepro-test {uuid.uuid4().hex}"
    with open(path, "a") as fh:
        fh.write("".join(f"{addr} {name}  {marker}\n" for name, addr in hosts.items()))
    try:
        yield
    finally:
        with open(path, "r+") as fh:
            kept = [line for line in fh.readlines() if marker not in line]
            fh.seek(0)
            fh.writelines(kept)
            fh.truncate()


def _resolves(name: str) -> bool:
    try:
        socket.gethostbyname(name)
        return True
    except OSError:
        return False


def _toolkit_train() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "train")
    if not os.path.exists(exe):
        pytest.skip("the sagemaker-training toolkit's `train` command is not installed")
    return exe


def _ports() -> tuple[int, int]:
    """Two free TF ports, and the exchange's (one above) free too, below the ephemeral range."""
    from test_distribute import _free_ports

    p1, p2 = _free_ports(2)
    return p1, p2


def _cifar(directory: str) -> None:
    sys.path.insert(0, EXAMPLE)
    try:
        import formats
    finally:
        sys.path.remove(EXAMPLE)
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(80, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=80)
    formats.write_binary_dir(directory, {"train": (images[:64], labels[:64]),
                                         "test": (images[64:], labels[64:])})


def _source(tmp_path, name: str, edit: str = "") -> str:
    """The example's directory as the job's code (`sagemaker_submit_directory`)."""
    source = tmp_path / name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if edit:
        with open(source / "train.py", "a") as fh:
            fh.write(edit)
    return str(source)


def _job(tmp_path, sources: dict, epochs: int) -> dict:
    """Run one toolkit per host; return host -> (base dir, output, return code); seconds too."""
    train = _toolkit_train()
    p1, p2 = _ports()
    addresses = f"algo-1=algo-1:{p1},algo-2=algo-2:{p2}"
    procs = {}
    started = time.monotonic()
    for host in HOSTS:
        hps = {"data": "\"cifar-binary\"", "depth": "8", "epochs": str(epochs),
               "batch-size": "16", "verbose": "2", "log-every-n-steps": "1",
               "export": "\"none\"", "sagemaker_program": "\"train.py\"",
               "sagemaker_submit_directory": json.dumps(sources[host]),
               "sagemaker_container_log_level": "20", "sagemaker_job_name": "\"two-host\""}
        base = make_sagemaker_tree(tmp_path / host, hosts=tuple(HOSTS), current_host=host,
                                   instance_type="ml.c5.xlarge", hyperparameters=hps,
                                   checkpoint_local_path="/opt/ml/checkpoints")
        _cifar(os.path.join(base, "input", "data", "training"))
        env = child_env(SAGEMAKER_BASE_DIR=base, TRAINING_JOB_NAME="two-host",
                        MLREPRO_HOST_ADDRESSES=addresses, TF_CPP_MIN_LOG_LEVEL="2",
                        AWS_REGION="us-east-1")
        for name in ("MLREPRO_STORE", "MLREPRO_SAGEMAKER_BASE_DIR", "TF_CONFIG",
                     "TF_USE_LEGACY_KERAS"):
            env.pop(name, None)   # the example and mlrepro decide these inside the job
        log = open(tmp_path / f"{host}.log", "w+")
        procs[host] = (base, log, subprocess.Popen([train], env=env, cwd=base, stdout=log,
                                                   stderr=subprocess.STDOUT))
    try:
        for _, _, proc in procs.values():
            proc.wait(timeout=JOB_TIMEOUT)
    finally:
        for _, _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    seconds = time.monotonic() - started
    out = {}
    for host, (base, log, proc) in procs.items():
        log.seek(0)
        out[host] = {"base": base, "log": log.read(), "rc": proc.returncode}
        log.close()
    out["seconds"] = seconds
    return out


def _epoch_losses(log: str) -> list[float]:
    return [float(v) for v in EPOCH_LOSS.findall(log)]


def _run_id(log: str) -> str:
    return log.split("train.py: run ")[1].split()[0]


def _store(base: str, *parts) -> str:
    return os.path.join(base, *parts, "mlrepro-runs")


def _both_succeeded(job: dict) -> None:
    for host in HOSTS:
        log = job[host]["log"]
        assert job[host]["rc"] == 0, f"{host}:\n{log[-5000:]}"
        assert "Reporting training SUCCESS" in log, log[-3000:]
        assert os.path.isfile(os.path.join(job[host]["base"], "output", "success"))


@pytest.mark.slow
def test_the_example_as_a_two_host_sagemaker_job_records_one_run_of_two_workers(tmp_path):
    source = _source(tmp_path, "code")
    with resolvable(HOSTS):
        job = _job(tmp_path, {"algo-1": source, "algo-2": source}, epochs=2)
    print(f"two-host toolkit job: {job['seconds']:.1f} s")
    _both_succeeded(job)
    chief, worker = job["algo-1"], job["algo-2"]
    # Both trained together, in lock step: the same loss after every epoch.
    losses = _epoch_losses(chief["log"])
    assert len(losses) == 2 and losses == _epoch_losses(worker["log"])
    # Exactly one run, written by the chief into its checkpoint dir and exported to its output.
    run_id = _run_id(chief["log"])
    assert _run_id(worker["log"]) == run_id and "not written on this worker" in worker["log"]
    stored = LocalStore(_store(chief["base"], "checkpoints"))
    exported = LocalStore(_store(chief["base"], "output", "data"))
    assert stored.run_ids() == exported.run_ids() == [run_id]
    for parts in (("checkpoints",), ("output", "data")):
        assert not os.path.exists(_store(worker["base"], *parts))
    m = exported.read_manifest(run_id)
    assert m["status"] == "finished"
    # TF_CONFIG was built by mlrepro from the host list (nothing else set one).
    rt = m["runtime"]
    assert (rt["kind"], rt["launcher"], rt["hosts"], rt["rank"], rt["world_size"]) == \
        ("sagemaker", "sagemaker", ["algo-1", "algo-2"], 0, 2)
    assert rt["tf_config_built_by_mlrepro"] is True and rt["job_name"] == "two-host"
    assert m["auto_params"]["keras"]["flavour"] == "tf_keras"
    # Both workers reported, with the chief's code and environment fingerprints.
    section = m["workers"]
    assert (section["world_size"], section["reported"], section["checked"],
            section["consistent"], section["replicas"]) == (2, 2, True, True, 2)
    assert section["strategy"] == "CollectiveAllReduceStrategy"   # MultiWorkerMirroredStrategy
    assert [(w["rank"], w["host"]) for w in section["workers"]] == [(0, "algo-1"), (1, "algo-2")]
    for w in section["workers"]:
        assert (w["code"], w["environment"]) == \
            (m["fingerprints"]["code"], m["fingerprints"]["environment"])
    # The recorded loss is what both workers saw, and the model is the chief's alone.
    epoch_loss = exported.read_points(run_id).series.get("epoch/loss") or \
        exported.read_points(run_id).series.get("loss")
    assert epoch_loss
    assert os.listdir(os.path.join(chief["base"], "model")) == ["resnet8.keras"]
    assert os.listdir(os.path.join(worker["base"], "model")) == []
    # The chief's checkpoints (whose variable reads the worker joined, writing nothing).
    assert sorted(a for a in m["artifacts"] if a.startswith("checkpoints/")) == \
        ["checkpoints/epoch-00001", "checkpoints/epoch-00002"]
    assert [f for _, _, files in os.walk(os.path.join(worker["base"], "checkpoints"))
            for f in files] == []
    print("recorded workers section:", json.dumps(section, indent=2, sort_keys=True))


@pytest.mark.slow
def test_a_second_host_running_changed_code_is_recorded_and_warned_and_nothing_hangs(tmp_path):
    sources = {"algo-1": _source(tmp_path, "code"),
               "algo-2": _source(tmp_path, "code-edited", edit="\n# a fix only algo-2 got\n")}
    with resolvable(HOSTS):
        job = _job(tmp_path, sources, epochs=1)
    print(f"two-host toolkit job, changed code: {job['seconds']:.1f} s")
    _both_succeeded(job)
    chief, worker = job["algo-1"], job["algo-2"]
    assert _epoch_losses(chief["log"]) == _epoch_losses(worker["log"])
    run_id = _run_id(chief["log"])
    exported = LocalStore(_store(chief["base"], "output", "data"))
    assert exported.run_ids() == [run_id]
    m = exported.read_manifest(run_id)
    section = m["workers"]
    assert section["checked"] and section["consistent"] is False
    assert section["mismatches"] == [{"rank": 1, "host": "algo-2", "parts": ["code"]}]
    said = "worker 1 (algo-2) differs in code from the chief"
    assert said in chief["log"] and said in worker["log"]
    assert any(said in e["message"] for e in exported.read_events(run_id)
               if e["kind"] == "warning")
