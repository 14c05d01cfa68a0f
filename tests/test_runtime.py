"""mlrepro.runtime: where a run runs (local, Deep Learning AMI, SageMaker) and what it is given.

SageMaker is faked with the real tree: `input/config/{resourceconfig,hyperparameters,
inputdataconfig,checkpointconfig}.json` in the shapes the platform writes, the
`SM_*` variables the training toolkit sets, and, in the slow test, the real
`sagemaker-training` toolkit's `train` command running an entry point.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import mlrepro
from mlrepro.runtime import cluster as _cluster
from mlrepro.runtime import tfconfig as _tfconfig
from mlrepro import runtime as runtime_mod
from mlrepro.runtime import detect, parse_argv
from mlrepro.store.local import LocalStore

from conftest import child_env

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "runtime_scripts")


def make_sagemaker_tree(base, *, hosts=("algo-1",), current_host="algo-1",
                        instance_type="ml.m5.xlarge", hyperparameters=None,
                        channels=("training",), checkpoint_local_path=None,
                        checkpoint_dir=False, job_config=None) -> str:
    """A SageMaker /opt/ml tree with the platform's file names and JSON shapes."""
    base = str(base)
    config = os.path.join(base, "input", "config")
    os.makedirs(config, exist_ok=True)
    for sub in ("model", os.path.join("output", "data")):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    hosts = list(hosts)
    resource = {
        "current_host": current_host,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": hosts,
        "instance_groups": [{"instance_group_name": "homogeneousCluster",
                             "instance_type": instance_type, "hosts": hosts}],
        "network_interface_name": "eth0",
    }
    # hyperparameters.json: every value a string (the SDKs JSON-encode non-strings).
    hps = {"epochs": "2", "lr": "0.05", "optimizer": "\"sgd\"", "shuffle": "true",
           "layers": "[8, 4]", "sagemaker_job_name": "\"job-from-hps\"",
           "sagemaker_program": "\"train.py\"",
           "sagemaker_submit_directory": "\"s3://bucket/job/source/sourcedir.tar.gz\"",
           "sagemaker_region": "\"us-east-1\""}
    if hyperparameters is not None:
        hps = hyperparameters
    data_config = {}
    for name in channels:
        os.makedirs(os.path.join(base, "input", "data", name), exist_ok=True)
        data_config[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                             "RecordWrapperType": "None"}
    files = {"resourceconfig.json": resource, "hyperparameters.json": hps,
             "inputdataconfig.json": data_config}
    if checkpoint_local_path is not None:
        files["checkpointconfig.json"] = {"LocalPath": checkpoint_local_path,
                                          "S3Uri": "s3://bucket/job/checkpoints"}
    if job_config is not None:
        files["trainingjobconfig.json"] = job_config
    for name, value in files.items():
        with open(os.path.join(config, name), "w") as fh:
            json.dump(value, fh)
    if checkpoint_dir:
        os.makedirs(os.path.join(base, "checkpoints"), exist_ok=True)
    return base


def toolkit_env(base, **extra) -> dict:
    """The variables the 5.x training toolkit sets for an entry point (SM_* and friends)."""
    base = str(base)
    with open(os.path.join(base, "input", "config", "resourceconfig.json")) as fh:
        resource = json.load(fh)
    env = {
        "TRAINING_JOB_NAME": "mlrepro-test-job",
        "SM_MODEL_DIR": os.path.join(base, "model"),
        "SM_OUTPUT_DATA_DIR": os.path.join(base, "output", "data"),
        "SM_CHANNELS": json.dumps(["training"]),
        "SM_CHANNEL_TRAINING": os.path.join(base, "input", "data", "training"),
        "SM_HPS": json.dumps({"epochs": 2, "lr": 0.05, "optimizer": "sgd", "version": "3"}),
        "SM_HOSTS": json.dumps(sorted(resource["hosts"])),
        "SM_CURRENT_HOST": resource["current_host"],
        "SM_NUM_GPUS": "0",
        "SM_TRAINING_ENV": json.dumps({"job_name": "mlrepro-test-job",
                                       "current_host": resource["current_host"],
                                       "hosts": sorted(resource["hosts"])}),
    }
    env.update(extra)
    return env


# -- local and DLAMI -------------------------------------------------------------------------

def test_local_hyperparameters_come_from_argv_parsed_back_to_types(tmp_path):
    rt = detect(environ={}, base_dir=str(tmp_path / "none"), root=str(tmp_path),
                argv=["train.py", "--epochs", "3", "--lr=0.1", "--batch-size", "32",
                      "--shuffle", "--offset", "-1", "--layers", "[8, 4]", "--opt", "adam",
                      "--flag", "False", "positional"])
    assert rt.kind == "local"
    assert rt.hyperparameters == {"epochs": 3, "lr": 0.1, "batch_size": 32, "shuffle": True,
                                  "offset": -1, "layers": [8, 4], "opt": "adam", "flag": False}
    assert (rt.rank, rt.world_size, rt.is_chief, rt.launcher) == (0, 1, True, "single")
    assert rt.model_dir == "model" and rt.checkpoint_dir == "checkpoints"
    assert rt.job_name is None and rt.instance_type is None


def test_parse_argv_matches_what_the_toolkit_passes():
    assert parse_argv(["--epochs", "2", "--lr", "0.05", "--optimizer", "sgd"]) == \
        {"epochs": 2, "lr": 0.05, "optimizer": "sgd"}


def test_local_run_honours_sagemaker_style_variables(tmp_path):
    rt = detect(environ={"SM_MODEL_DIR": "/m", "SM_CHANNEL_TRAIN": "/data/train"},
                base_dir=str(tmp_path / "none"), root=str(tmp_path), argv=["x"])
    assert rt.kind == "local"
    assert rt.model_dir == "/m" and rt.channels == {"train": "/data/train"}


def _fake_machine(root, *, dlami=True, version_file=None, ec2_type="g5.2xlarge", gpus=0):
    if dlami:
        os.makedirs(os.path.join(root, "opt", "aws", "dlami", "bin"), exist_ok=True)
    if version_file:
        os.makedirs(os.path.join(root, "etc", "dlami"), exist_ok=True)
        with open(os.path.join(root, "etc", "dlami", "dlami_version"), "w") as fh:
            fh.write(version_file + "\n")
    if ec2_type:
        dmi = os.path.join(root, "sys", "devices", "virtual", "dmi", "id")
        os.makedirs(dmi, exist_ok=True)
        with open(os.path.join(dmi, "sys_vendor"), "w") as fh:
            fh.write("Amazon EC2\n")
        with open(os.path.join(dmi, "product_name"), "w") as fh:
            fh.write(ec2_type + "\n")
    os.makedirs(os.path.join(root, "dev"), exist_ok=True)
    for i in range(gpus):
        open(os.path.join(root, "dev", f"nvidia{i}"), "w").close()
    open(os.path.join(root, "dev", "nvidiactl"), "w").close()


def test_dlami_is_detected_from_the_amis_own_marks(tmp_path):
    root = str(tmp_path / "machine")
    _fake_machine(root, version_file="Deep Learning OSS Nvidia Driver AMI GPU TensorFlow 2.18",
                  gpus=4)
    rt = detect(environ={}, base_dir=str(tmp_path / "none"), root=root, argv=["t.py"])
    assert rt.kind == "dlami"
    assert rt.dlami_version == "Deep Learning OSS Nvidia Driver AMI GPU TensorFlow 2.18"
    assert rt.instance_type == "g5.2xlarge"
    assert rt.num_gpus == 4
    limited = detect(environ={"CUDA_VISIBLE_DEVICES": "0,1"}, base_dir=str(tmp_path / "none"),
                     root=root, argv=["t.py"])
    assert limited.num_gpus == 2
    record = rt.to_record()
    assert record["kind"] == "dlami" and record["dlami_version"].startswith("Deep Learning")


def test_dlami_directory_alone_is_enough_and_a_plain_machine_is_local(tmp_path):
    dlami_root, plain_root = str(tmp_path / "dlami"), str(tmp_path / "plain")
    _fake_machine(dlami_root, ec2_type=None)
    _fake_machine(plain_root, dlami=False, ec2_type="m5.large")
    none = str(tmp_path / "none")
    assert detect(environ={}, base_dir=none, root=dlami_root, argv=["t"]).kind == "dlami"
    plain = detect(environ={}, base_dir=none, root=plain_root, argv=["t"])
    assert plain.kind == "local" and plain.instance_type == "m5.large"


# -- SageMaker ---------------------------------------------------------------------------------

def test_sagemaker_tree_alone_is_detected_with_paths_hosts_and_hyperparameters(tmp_path):
    base = make_sagemaker_tree(tmp_path / "ml", checkpoint_dir=True)
    rt = detect(environ={}, base_dir=base, argv=["ignored.py", "--epochs", "99"])
    assert rt.kind == "sagemaker"
    assert rt.model_dir == os.path.join(base, "model")
    assert rt.output_dir == os.path.join(base, "output", "data")
    assert rt.checkpoint_dir == os.path.join(base, "checkpoints")
    assert rt.channels == {"training": os.path.join(base, "input", "data", "training")}
    # hyperparameters.json values are strings: parsed back; the toolkit's own are dropped.
    assert rt.hyperparameters == {"epochs": 2, "lr": 0.05, "optimizer": "sgd", "shuffle": True,
                                  "layers": [8, 4]}
    assert rt.job_name == "job-from-hps"
    assert rt.instance_type == "ml.m5.xlarge"
    assert (rt.hosts, rt.current_host, rt.rank, rt.world_size, rt.is_chief) == \
        (["algo-1"], "algo-1", 0, 1, True)
    assert rt.tf_config is None and rt.to_env() == {}


def test_sagemaker_variables_win_and_sm_hps_keeps_its_types(tmp_path):
    base = make_sagemaker_tree(tmp_path / "ml")
    env = toolkit_env(base, SM_CHANNEL_EVAL="/elsewhere/eval")
    rt = detect(environ=env, base_dir=base, argv=["x"])
    assert rt.job_name == "mlrepro-test-job"            # TRAINING_JOB_NAME beats the hp
    assert rt.hyperparameters == {"epochs": 2, "lr": 0.05, "optimizer": "sgd", "version": "3"}
    assert rt.channels["eval"] == "/elsewhere/eval"
    assert rt.num_gpus == 0
    assert rt.checkpoint_dir is None                     # no checkpoint config, no dir


def test_sagemaker_base_dir_comes_from_the_toolkits_variable_and_ours_wins(tmp_path):
    toolkit = make_sagemaker_tree(tmp_path / "toolkit", instance_type="ml.c5.xlarge")
    ours = make_sagemaker_tree(tmp_path / "ours", instance_type="ml.p3.2xlarge")
    assert detect(environ={"SAGEMAKER_BASE_DIR": toolkit}, argv=["x"]).instance_type == \
        "ml.c5.xlarge"
    both = {"SAGEMAKER_BASE_DIR": toolkit, "MLREPRO_SAGEMAKER_BASE_DIR": ours}
    assert detect(environ=both, argv=["x"]).instance_type == "ml.p3.2xlarge"


def test_job_name_and_spot_come_from_the_training_job_config(tmp_path):
    base = make_sagemaker_tree(tmp_path / "ml", hyperparameters={"epochs": "1"},
                               job_config={"TrainingJobName": "from-job-config",
                                           "EnableManagedSpotTraining": True,
                                           "ResourceConfig": {"InstanceCount": 1}})
    rt = detect(environ={}, base_dir=base, argv=["x"])
    assert (rt.job_name, rt.spot) == ("from-job-config", True)
    assert rt.to_record()["spot"] is True


def test_checkpoint_config_local_path_is_moved_under_a_relocated_tree(tmp_path):
    base = make_sagemaker_tree(tmp_path / "ml", checkpoint_local_path="/opt/ml/checkpoints")
    assert detect(environ={}, base_dir=base, argv=["x"]).checkpoint_dir == \
        os.path.join(base, "checkpoints")
    custom = make_sagemaker_tree(tmp_path / "ml2", checkpoint_local_path="/mnt/ckpt")
    assert detect(environ={}, base_dir=custom, argv=["x"]).checkpoint_dir == "/mnt/ckpt"


def test_two_host_job_elects_algo_1_and_builds_tf_config_from_the_host_list(tmp_path):
    ranks = {}
    for host in ("algo-2", "algo-1"):
        base = make_sagemaker_tree(tmp_path / host, hosts=("algo-2", "algo-1"),
                                   current_host=host)
        rt = detect(environ={}, base_dir=base, argv=["x"])
        ranks[host] = rt
        assert rt.hosts == ["algo-1", "algo-2"] and rt.world_size == 2
        assert rt.launcher == "sagemaker" and rt.master_addr == "algo-1"
        assert rt.tf_config["cluster"] == {"worker": ["algo-1:2222", "algo-2:2222"]}
    assert ranks["algo-1"].is_chief and ranks["algo-1"].rank == 0
    assert not ranks["algo-2"].is_chief and ranks["algo-2"].rank == 1
    assert ranks["algo-2"].tf_config["task"] == {"type": "worker", "index": 1}
    environ: dict = {}
    assert ranks["algo-2"].write_env(environ) == environ
    assert json.loads(environ["TF_CONFIG"])["task"]["index"] == 1
    # Detected again after the export (e.g. by start_run), it still names its source.
    again = detect(environ=environ, base_dir=str(tmp_path / "algo-2"), argv=["x"])
    assert (again.launcher, again.tf_config_built, again.rank) == ("sagemaker", True, 1)
    assert again.tf_config == ranks["algo-2"].tf_config
    record = ranks["algo-2"].to_record()
    assert record["hosts"] == ["algo-1", "algo-2"] and record["rank"] == 1
    assert record["tf_config_built_by_mlrepro"] is True
    assert not any("/" in str(v) for v in record.values())  # no paths in the record


def test_a_tf_config_already_set_is_used_not_rebuilt(tmp_path):
    base = make_sagemaker_tree(tmp_path / "ml", hosts=("algo-1", "algo-2"),
                               current_host="algo-1")
    given = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
             "task": {"type": "worker", "index": 0}}
    rt = detect(environ={"TF_CONFIG": json.dumps(given)}, base_dir=base, argv=["x"])
    assert (rt.launcher, rt.rank, rt.world_size, rt.is_chief) == ("tf_config", 1, 3, False)
    assert rt.to_env() == {}
    environ = {"TF_CONFIG": json.dumps(given)}
    assert rt.write_env(environ) == {} and json.loads(environ["TF_CONFIG"]) == given


def test_host_addresses_let_two_hosts_share_one_machine(tmp_path):
    base = make_sagemaker_tree(tmp_path / "ml", hosts=("algo-1", "algo-2"),
                               current_host="algo-2")
    env = {"MLREPRO_HOST_ADDRESSES": "algo-1=127.0.0.1:30001,algo-2=127.0.0.1:30002"}
    rt = detect(environ=env, base_dir=base, argv=["x"])
    assert rt.tf_config["cluster"]["worker"] == ["127.0.0.1:30001", "127.0.0.1:30002"]
    assert rt.tf_config["task"]["index"] == 1


@pytest.mark.parametrize("variables, rank, chief", [
    ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4"}, 0, True),
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4"}, 3, False),
    ({"HOROVOD_RANK": "2", "HOROVOD_SIZE": "4"}, 2, False),
    ({"PMI_RANK": "0", "PMI_SIZE": "2"}, 0, True),
])
def test_mpi_and_horovod_launches_take_the_rank_from_the_launcher(tmp_path, variables, rank,
                                                                  chief):
    rt = detect(environ=variables, base_dir=str(tmp_path / "none"), root=str(tmp_path),
                argv=["x"])
    assert (rt.launcher, rt.rank, rt.is_chief) == ("mpi", rank, chief)
    assert rt.world_size == int(next(v for k, v in variables.items() if k.endswith("SIZE")))
    assert rt.tf_config is None  # no host list: nothing to build


def test_sagemaker_mpi_job_builds_one_worker_per_process(tmp_path):
    base = make_sagemaker_tree(tmp_path / "ml", hosts=("algo-1", "algo-2"),
                               current_host="algo-2")
    env = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
           "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    rt = detect(environ=env, base_dir=base, argv=["x"])
    assert (rt.launcher, rt.rank, rt.local_rank, rt.is_chief) == ("mpi", 3, 1, False)
    assert rt.tf_config["cluster"]["worker"] == ["algo-1:2222", "algo-1:2223",
                                                 "algo-2:2222", "algo-2:2223"]
    assert rt.tf_config["task"]["index"] == 3


def test_chief_election_is_the_same_rule_for_every_launcher():
    chief_task = {"cluster": {"chief": ["c:1"], "worker": ["w:1"]},
                  "task": {"type": "chief", "index": 0}}
    worker0 = {"cluster": {"worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 0}}
    evaluator = {"cluster": {"worker": ["w:1"], "evaluator": ["e:1"]},
                 "task": {"type": "evaluator", "index": 0}}
    assert _cluster.place({"TF_CONFIG": json.dumps(chief_task)}).is_chief
    assert _cluster.place({"TF_CONFIG": json.dumps(worker0)}).is_chief
    assert not _cluster.place({"TF_CONFIG": json.dumps(evaluator)}).is_chief
    assert _cluster.place({}, ["algo-1", "algo-10", "algo-2"], "algo-1").is_chief
    assert _cluster.place({"HOROVOD_RANK": "0", "HOROVOD_SIZE": "2"}).is_chief
    assert _cluster.place({}).is_chief


def test_malformed_inputs_are_noted_never_raised(tmp_path):
    base = make_sagemaker_tree(tmp_path / "ml")
    with open(os.path.join(base, "input", "config", "hyperparameters.json"), "w") as fh:
        fh.write("{not json")
    rt = detect(environ={"TF_CONFIG": "{oops", "SM_HOSTS": "nope"}, base_dir=base, argv=["x"])
    assert rt.kind == "sagemaker" and rt.hyperparameters == {}
    assert any("hyperparameters.json" in p for p in rt.problems)
    assert any("TF_CONFIG" in p for p in rt.problems)
    assert rt.to_record()["problems"]


def test_tf_config_builder_rejects_a_host_outside_the_list():
    with pytest.raises(ValueError, match="not in the host list"):
        _tfconfig.build(["algo-1"], "algo-9")
    with pytest.raises(ValueError, match="host=address"):
        _tfconfig.parse_addresses("algo-1:1234")


def test_detection_does_not_import_tensorflow():
    code = ("import sys, mlrepro; mlrepro.runtime.detect(); mlrepro.distribute; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
            "sorted(m for m in sys.modules if 'tensorflow' in m)[:5]")
    proc = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# -- the run on SageMaker: stored beside the checkpoints, exported into the job output ---------

def test_run_on_sagemaker_lives_in_the_checkpoint_dir_and_is_copied_to_the_output(
        tmp_path, monkeypatch):
    base = make_sagemaker_tree(tmp_path / "ml", checkpoint_local_path="/opt/ml/checkpoints")
    for name, value in toolkit_env(base).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLREPRO_SAGEMAKER_BASE_DIR", base)
    monkeypatch.delenv("MLREPRO_STORE")
    with mlrepro.start_run(project="sm", params={"epochs": 2}, capture=False) as run:
        run.log_metrics({"loss": 0.5}, step=0)
        assert run.path.startswith(os.path.join(base, "checkpoints", "mlrepro-runs"))
    stored = LocalStore(os.path.join(base, "checkpoints", "mlrepro-runs"))
    exported = LocalStore(os.path.join(base, "output", "data", "mlrepro-runs"))
    assert stored.run_ids() == exported.run_ids() == [run.id]
    manifest = exported.read_manifest(run.id)
    assert manifest["status"] == "finished"
    assert manifest["runtime"]["kind"] == "sagemaker"
    assert manifest["runtime"]["job_name"] == "mlrepro-test-job"
    assert manifest["runtime"]["instance_type"] == "ml.m5.xlarge"
    assert [p[1] for p in exported.read_points(run.id).series["loss"]] == [0.5]


def test_mlrepro_store_wins_over_the_checkpoint_dir(tmp_path, monkeypatch):
    base = make_sagemaker_tree(tmp_path / "ml", checkpoint_dir=True)
    rt = detect(environ={}, base_dir=base, argv=["x"])
    assert runtime_mod.default_store(rt, {}) == os.path.join(base, "checkpoints", "mlrepro-runs")
    assert runtime_mod.default_store(rt, {"MLREPRO_STORE": "/s"}) is None
    local = detect(environ={}, base_dir=str(tmp_path / "none"), argv=["x"])
    assert runtime_mod.default_store(local, {}) is None


def test_a_non_chief_worker_records_nothing(tmp_path, monkeypatch):
    base = make_sagemaker_tree(tmp_path / "ml", hosts=("algo-1", "algo-2"),
                               current_host="algo-2")
    monkeypatch.setenv("MLREPRO_SAGEMAKER_BASE_DIR", base)
    run = mlrepro.start_run(project="sm", capture=False)
    assert run.writes is False and run._runtime.rank == 1
    run.log_metrics({"loss": 1.0})
    assert set(run.fingerprints()) >= {"code", "environment", "run"}
    run.finish()
    assert not os.path.exists(os.environ["MLREPRO_STORE"])


# -- the real sagemaker-training toolkit ---------------------------------------------------------

def _toolkit_train_command():
    exe = os.path.join(os.path.dirname(sys.executable), "train")
    if not os.path.exists(exe):
        pytest.skip("the sagemaker-training toolkit's `train` command is not installed")
    return exe


@pytest.mark.slow
def test_toolkit_runs_an_entry_point_that_records_the_sagemaker_runtime(tmp_path):
    train = _toolkit_train_command()
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(os.path.join(SCRIPTS, "sm_entry.py"), source / "entry.py")
    host = socket.gethostname()  # the toolkit waits until every host name resolves
    base = make_sagemaker_tree(
        tmp_path / "opt_ml", hosts=(host,), current_host=host, instance_type="ml.m5.large",
        checkpoint_local_path="/opt/ml/checkpoints",
        hyperparameters={"epochs": "2", "lr": "0.05", "optimizer": "\"sgd\"",
                         "sagemaker_program": "\"entry.py\"",
                         "sagemaker_submit_directory": json.dumps(str(source)),
                         "sagemaker_container_log_level": "20"})
    import numpy as np

    rng = np.random.RandomState(0)
    x = rng.rand(48, 3).astype("float32")
    np.savez(os.path.join(base, "input", "data", "training", "train.npz"), x=x,
             y=x.sum(axis=1, keepdims=True))
    env = child_env(SAGEMAKER_BASE_DIR=base, TRAINING_JOB_NAME="mlrepro-toolkit-job",
                    TF_CPP_MIN_LOG_LEVEL="2", AWS_REGION="us-east-1")
    for name in ("MLREPRO_STORE", "MLREPRO_SAGEMAKER_BASE_DIR", "TF_CONFIG"):
        env.pop(name, None)
    started = time.time()
    proc = subprocess.run([train], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=240)
    elapsed = time.time() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Reporting training SUCCESS" in out
    seen = json.loads((tmp_path / "opt_ml" / "output" / "data" / "seen.json").read_text())
    # The toolkit passed the hyperparameters as arguments and as SM_HPS.
    assert seen["argv"] == ["--epochs", "2", "--lr", "0.05", "--optimizer", "sgd"]
    assert seen["hyperparameters"] == {"epochs": 2, "lr": 0.05, "optimizer": "sgd"}
    assert seen["channels"] == {"training": os.path.join(base, "input", "data", "training")}
    assert seen["model_dir"] == os.path.join(base, "model")
    assert os.listdir(os.path.join(base, "model"))
    # The run lives beside the checkpoints and a copy is in the job output.
    stored = LocalStore(os.path.join(base, "checkpoints", "mlrepro-runs"))
    exported = LocalStore(os.path.join(base, "output", "data", "mlrepro-runs"))
    assert stored.run_ids() == exported.run_ids() == [seen["run_id"]]
    manifest = exported.read_manifest(seen["run_id"])
    assert manifest["status"] == "finished"
    rt = manifest["runtime"]
    assert (rt["kind"], rt["job_name"], rt["instance_type"]) == \
        ("sagemaker", "mlrepro-toolkit-job", "ml.m5.large")
    assert (rt["hosts"], rt["current_host"], rt["rank"], rt["world_size"]) == \
        ([host], host, 0, 1)
    assert manifest["params"]["epochs"] == 2 and manifest["params"]["optimizer"] == "sgd"
    assert manifest["data"]["training"]["digest"]
    losses = exported.read_points(seen["run_id"]).series["loss"]
    assert losses  # ReproCallback may log per batch; the stand-in logs once per epoch
    if seen["callback"] == "start_run":
        assert len(losses) == 2
    print(f"toolkit job: {elapsed:.1f}s, callback: {seen['callback']}")
