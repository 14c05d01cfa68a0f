"""`mlrepro launch` builds real SageMaker v3 (ModelTrainer) jobs; moto's server receives them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest

from mlrepro.cli import main
from mlrepro.store.local import LocalStore
from mlrepro.store.s3 import S3Store

from conftest import ROOT, child_env
from s3_moto import moto, s3_env  # noqa: F401

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TF = "2.19"
IMAGE = f"763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:{TF}-gpu-py312"
TRAIN = """import argparse
import helper
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int)
p.add_argument("--lr", type=float)
print(p.parse_args(), helper.VALUE)
"""


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def project(tmp_path):
    """A git checkout with a training script, committed, plus one uncommitted change."""
    src = tmp_path / "project" / "trainer"
    src.mkdir(parents=True)
    (src / "train.py").write_text(TRAIN)
    (src / "helper.py").write_text("VALUE = 1\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    _git(tmp_path / "project", "init", "-q")
    _git(tmp_path / "project", "add", "trainer/train.py", "trainer/helper.py")
    _git(tmp_path / "project", "commit", "-qm", "first")
    (src / "helper.py").write_text("VALUE = 2  # uncommitted\n")
    return src


@pytest.fixture
def sagemaker_env(s3_env, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")  # moto has no SimulatePrincipalPolicy
    return s3_env


def _arrived(moto, operation="CreateTrainingJob") -> list[dict]:
    """The JSON bodies of `operation` requests moto's server received."""
    out = []
    for r in moto.requests():
        target = {k.lower(): v for k, v in r["headers"].items()}.get("x-amz-target", "")
        if target.endswith("." + operation):
            body = r["body"]
            out.append(json.loads(body if isinstance(body, str) else body.decode()))
    return out


def _launch_args(bucket, script, *extra):
    return ["launch", str(script), "--instance-type", "ml.g5.xlarge", "--instance-count", "2",
            "--spot", "--hp", "epochs=3", "--hp", "lr=0.1",
            "--channel", f"training=s3://{bucket}/data/cifar10/", "--role", ROLE,
            "--bucket", bucket, "--framework-version", TF, "--remote", f"s3://{bucket}/team",
            *extra]


@pytest.mark.slow
def test_a_two_instance_spot_job_arrives_field_by_field(sagemaker_env, moto, project, capsys):
    bucket = sagemaker_env
    moto.start_recording()
    try:
        assert main(_launch_args(bucket, project / "train.py")) == 0
    finally:
        moto.stop_recording()
    out = capsys.readouterr().out
    job_name = out.split()[1].rstrip(":")
    assert out.startswith(f"launched {job_name}: 2 x ml.g5.xlarge (spot)")
    job = boto3.session.Session().client("sagemaker").describe_training_job(
        TrainingJobName=job_name)
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["EnableManagedSpotTraining"] is True
    assert job["HyperParameters"] == {"epochs": "3", "lr": "0.1"}
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://{bucket}/mlrepro/{job_name}/checkpoints",
        "LocalPath": "/opt/ml/checkpoints"}
    stop = job["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] == 2 * stop["MaxRuntimeInSeconds"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in job["InputDataConfig"]}
    assert channels["training"] == f"s3://{bucket}/data/cifar10/"
    # moto's DescribeTrainingJob leaves out Environment: read the request that arrived.
    [request] = _arrived(moto)
    env = request["Environment"]
    assert env["MLREPRO_REMOTE"] == f"s3://{bucket}/team" and env["MLREPRO_SPOT"] == "1"
    launched = json.loads(env["MLREPRO_LAUNCH"])
    assert launched["instance_count"] == 2 and launched["image_uri"] == IMAGE
    assert launched["channels"] == {"training": f"s3://{bucket}/data/cifar10/"}
    assert launched["code"]["entry"] == "trainer/train.py"
    assert len(launched["code"]["commit"]) == 40
    assert not any(k.startswith("AWS_") for k in env)
    # the uploaded code: the script's directory as it is now, plus mlrepro beside it
    code_prefix = channels["code"].split(f"s3://{bucket}/", 1)[1]
    s3 = boto3.session.Session().client("s3")
    keys = {o["Key"][len(code_prefix) + 1:] for o in s3.list_objects_v2(
        Bucket=bucket, Prefix=code_prefix).get("Contents", [])}
    assert {"train.py", "helper.py", "mlrepro/__init__.py", "mlrepro/aws/launch.py"} <= keys
    assert not any("__pycache__" in k for k in keys)
    body = s3.get_object(Bucket=bucket, Key=f"{code_prefix}/helper.py")["Body"].read()
    assert body == (project / "helper.py").read_bytes()
    # the uncommitted patch is kept (locally and in the remote) for `launch --from` later
    patch = launched["code"]["patch"]
    assert S3Store(f"s3://{bucket}/team").has_object(patch)
    assert b"VALUE = 2" in LocalStore(os.environ["MLREPRO_STORE"]).read_object(patch)


@pytest.mark.slow
def test_dry_run_prints_the_request_a_real_launch_sends_and_sends_nothing(
        sagemaker_env, moto, project, capsys):
    bucket = sagemaker_env
    moto.start_recording()
    try:
        assert main(_launch_args(bucket, project / "train.py", "--dry-run")) == 0
        dry_out, dry_err = capsys.readouterr()
        assert moto.requests() == []                       # nothing reached the server
        assert main(_launch_args(bucket, project / "train.py")) == 0
        capsys.readouterr()
    finally:
        moto.stop_recording()
    dry = json.loads(dry_out)
    [real] = _arrived(moto)
    assert "nothing was sent to AWS" in dry_err
    name = dry["TrainingJobName"]

    def same_job(request):
        return json.loads(json.dumps(request).replace(request["TrainingJobName"], name))

    assert same_job(real) == dry


def test_dry_run_needs_no_credentials_or_network(project, tmp_path):
    env = child_env()
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(
        tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true", HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "mlrepro", "launch", str(project / "train.py"),
                           "--instance-type", "ml.m5.xlarge", "--role", ROLE, "--bucket", "b-1",
                           "--region", "eu-west-1", "--framework-version", TF, "--dry-run"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    request = json.loads(proc.stdout)
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith(
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/tensorflow-training:2.19-cpu")
    assert request["ResourceConfig"]["InstanceCount"] == 1
    assert "CheckpointConfig" not in request and not request.get("EnableManagedSpotTraining")


@pytest.fixture
def dry_run_args(project, tmp_path, monkeypatch) -> list:
    """`mlrepro launch` arguments for a dry run of the project's script, with no AWS
    configuration or credentials anywhere in reach."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return ["launch", str(project / "train.py"), "--instance-type", "ml.m5.xlarge",
            "--role", ROLE, "--bucket", "b-1", "--region", "eu-west-1",
            "--framework-version", TF, "--dry-run"]


def test_two_instances_ship_tf_keras_pinned_and_mlrepro_and_the_dry_run_says_so(
        dry_run_args, capsys):
    args = dry_run_args
    assert main(args + ["--instance-count", "2"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["ResourceConfig"]["InstanceCount"] == 2
    assert f"ships requirements.txt with tf_keras=={TF}.* (Keras 3 cannot train on 2 " \
           "instances" in err
    assert "ships mlrepro (this package, mlrepro/ beside train.py)" in err
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "tf_keras" not in err and "ships mlrepro" in err


def test_a_spot_dry_run_says_what_an_interruption_does_and_on_demand_says_nothing(
        dry_run_args, capsys):
    args = dry_run_args + ["--max-run", "3600"]
    assert main(args + ["--spot", "--checkpoint-s3-uri", "s3://b-1/ck/"]) == 0
    out, err = capsys.readouterr()
    request = json.loads(out)
    assert request["Environment"]["MLREPRO_SPOT"] == "1"
    plan = [line for line in err.splitlines() if line.startswith(
        "dry run: on a spot interruption, ")]
    assert len(plan) == 3, err
    assert "SIGTERM" in plan[0] and "/opt/ml/checkpoints restored from s3://b-1/ck/" in plan[0]
    assert "7200 s in all" in plan[0]                  # max-wait: twice max-run
    assert "/opt/ml/checkpoints/mlrepro-runs" in plan[1] and "next step" in plan[1]
    assert "MLREPRO_PREEMPTION_TIMEOUT" in plan[1] and "preempted" in plan[1]
    assert "same run" in plan[2] and "checkpoint_every" in plan[2]
    assert request["Environment"]["MLREPRO_CHECKPOINT_EVERY"] == "10min"   # the spot default
    assert "every 10min" in plan[2]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "spot interruption" not in err
    assert "MLREPRO_CHECKPOINT_EVERY" not in json.loads(out)["Environment"]


def test_checkpoint_every_reaches_the_job_and_a_bad_one_is_refused(dry_run_args, capsys):
    args = dry_run_args
    assert main(args + ["--spot", "--checkpoint-every", "500 steps"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["Environment"]["MLREPRO_CHECKPOINT_EVERY"] == "500 steps"
    assert "every 500 steps" in err
    assert main(args + ["--checkpoint-every", "2"]) == 0        # on demand too: 2 epochs
    assert json.loads(capsys.readouterr().out)["Environment"]["MLREPRO_CHECKPOINT_EVERY"] == "2"
    assert main(args + ["--checkpoint-every", "soon"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "--checkpoint-every" in err and "'soon'" in err and '"10min"' in err


def test_staged_code_pins_tf_keras_beside_the_users_requirements(project, tmp_path):
    from mlrepro.aws.launch import spec_for_script, stage_code

    spec = spec_for_script(str(project / "train.py"), instance_type="ml.m5.xlarge",
                           instance_count=2, framework_version="2.21")
    staged, shipped = stage_code(spec, str(tmp_path / "a"))
    assert open(os.path.join(staged, "requirements.txt")).read().startswith(
        "tf_keras==2.21.*  # added by mlrepro launch")
    assert os.path.isfile(os.path.join(staged, "mlrepro", "runtime", "exchange.py"))
    assert len(shipped) == 2
    (project / "requirements.txt").write_text("pillow==11.0")   # no final newline
    staged, _ = stage_code(spec, str(tmp_path / "b"))
    lines = open(os.path.join(staged, "requirements.txt")).read().splitlines()
    assert lines[0] == "pillow==11.0" and lines[1].startswith("tf_keras==2.21.*")
    (project / "requirements.txt").write_text("tf-keras==2.21.0\n")   # the user's own pin wins
    staged, shipped = stage_code(spec, str(tmp_path / "c"))
    assert open(os.path.join(staged, "requirements.txt")).read() == "tf-keras==2.21.0\n"
    assert any("already names tf_keras: kept as written" in line for line in shipped)
    assert open(project / "requirements.txt").read() == "tf-keras==2.21.0\n"  # source untouched


def _record_locally(project, argv, env=None):
    proc = subprocess.run([sys.executable, "-c",
                           "import runpy, sys, mlrepro\n"
                           "sys.argv = sys.argv[1:]\n"
                           "run = mlrepro.start_run(project='relaunch')\n"
                           "runpy.run_path(sys.argv[0], run_name='__main__')\n"
                           "run.finish(); print(run.id)",
                           str(project / "train.py"), *argv],
                          cwd=project, env=env or child_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-1]


@pytest.mark.slow
def test_launch_from_a_recorded_run_rebuilds_its_code_and_hyperparameters(
        sagemaker_env, moto, project, capsys):
    bucket = sagemaker_env
    run_id = _record_locally(project, ["--epochs", "2", "--lr", "0.5"])
    (project / "helper.py").write_text("VALUE = 3  # changed after the run\n")
    assert main(["launch", "--from", run_id[-10:], "--instance-type", "ml.m5.xlarge",
                 "--role", ROLE, "--bucket", bucket, "--framework-version", TF,
                 "--no-remote"]) == 0
    capsys.readouterr()
    job_name = None
    sm = boto3.session.Session().client("sagemaker")
    for summary in sm.list_training_jobs()["TrainingJobSummaries"]:
        job = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
        if job["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge" and \
                job["HyperParameters"] == {"epochs": "2", "lr": "0.5"}:
            job_name = summary["TrainingJobName"]
    assert job_name, "the relaunched job did not arrive"
    code_uri = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in job["InputDataConfig"]}["code"]
    prefix = code_uri.split(f"s3://{bucket}/", 1)[1]
    s3 = boto3.session.Session().client("s3")
    helper = s3.get_object(Bucket=bucket, Key=f"{prefix}/helper.py")["Body"].read()
    assert helper == b"VALUE = 2  # uncommitted\n"       # the recorded code, not today's


def test_launch_from_a_job_run_uses_what_the_launch_recorded(project, tmp_path, capsys):
    """A run recorded inside a job has no git checkout: MLREPRO_LAUNCH and SM_HPS carry it."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                            text=True).stdout.strip()
    container_code = tmp_path / "opt-ml-code"               # the job's code dir: no .git
    container_code.mkdir()
    (container_code / "train.py").write_text(TRAIN)
    (container_code / "helper.py").write_text("VALUE = 1\n")
    launch_record = {"instance_type": "ml.g5.2xlarge", "instance_count": 2, "spot": True,
                     "image_uri": IMAGE, "channels": {"training": "s3://b-1/data/"},
                     "code": {"commit": commit, "entry": "trainer/train.py",
                              "source": "trainer"}}
    env = child_env(TRAINING_JOB_NAME="job-1", SM_HPS='{"epochs": 4, "lr": 0.25}',
                    MLREPRO_LAUNCH=json.dumps(launch_record),
                    MLREPRO_SAGEMAKER_BASE_DIR=str(tmp_path / "no-opt-ml"))
    run_id = _record_locally(container_code, ["--epochs", "4", "--lr", "0.25"], env)
    assert main(["launch", "--from", run_id, "--role", ROLE, "--bucket", "b-1", "--region",
                 "us-east-1", "--repo", str(project.parent), "--no-remote", "--dry-run"]) == 0
    request = json.loads(capsys.readouterr().out)
    assert request["ResourceConfig"] == {"InstanceCount": 2, "InstanceType": "ml.g5.2xlarge",
                                         "VolumeSizeInGB": 30}
    assert request["EnableManagedSpotTraining"] is True
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert request["HyperParameters"] == {"epochs": "4", "lr": "0.25"}
    assert [c["ChannelName"] for c in request["InputDataConfig"]][0] == "training"
    assert json.loads(request["Environment"]["MLREPRO_PARENT"]) == {
        "kind": "reproduction-of", "run": run_id}


def test_launch_mistakes_are_one_line_errors(project, capsys, monkeypatch):
    monkeypatch.delenv("MLREPRO_SAGEMAKER_ROLE", raising=False)
    script = str(project / "train.py")
    base = ["launch", script, "--bucket", "b-1", "--region", "us-east-1", "--dry-run",
            "--no-remote", "--framework-version", TF]
    cases = [
        (base, "no instance type: pass --instance-type"),
        (base + ["--instance-type", "ml.m5.xlarge"], "no SageMaker execution role"),
        (base + ["--instance-type", "m5.xlarge", "--role", ROLE], "not a SageMaker instance"),
        (base + ["--instance-type", "ml.m5.xlarge", "--role", ROLE, "--max-run", "100",
                 "--max-wait", "50"], "max-wait >= max-run"),
        (base + ["--instance-type", "ml.m5.xlarge", "--role", ROLE, "--channel",
                 "training=/local/data"], "is not an S3 URI"),
        (["launch", script + ".missing", "--instance-type", "ml.m5.xlarge"], "does not exist"),
        (base[:-2] + ["--framework-version", "1.99", "--instance-type", "ml.m5.xlarge",
                      "--role", ROLE], "--image-uri"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_importing_launch_stays_light():
    code = ("import sys, mlrepro.aws.launch, mlrepro.aws.remote, mlrepro.store.s3;"
            "print(sorted(m for m in ('sagemaker', 'boto3', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                         text=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_the_example_launcher_dry_runs(tmp_path):
    script = os.path.join(ROOT, "examples", "resnet_cifar10", "launch_sagemaker.py")
    if not os.path.exists(os.path.join(os.path.dirname(script), "train.py")):
        pytest.skip("examples/resnet_cifar10/train.py is not written yet")
    env = child_env(HOME=str(tmp_path))
    for name in [n for n in env if n.startswith("AWS_")]:
        del env[name]
    proc = subprocess.run([sys.executable, script, "--dry-run", "--instance-count", "2",
                           "--spot", "--role", ROLE, "--bucket", "b-1", "--region", "us-east-1",
                           "--framework-version", TF, "--data-uri", "s3://b-1/cifar10/"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    request = json.loads(proc.stdout)
    assert request["HyperParameters"]["data"] == "tfrecord"
    assert request["ResourceConfig"]["InstanceCount"] == 2
    # --checkpoint-every is left to train.py's spot default; the dry run says what happens
    assert "checkpoint-every" not in request["HyperParameters"]
    assert request["EnableManagedSpotTraining"] is True
    plan = [line for line in proc.stderr.splitlines() if "on a spot interruption" in line]
    assert len(plan) == 3, proc.stderr
    assert request["CheckpointConfig"]["S3Uri"] in plan[0] and "SIGTERM" in plan[0]
    assert "MLREPRO_PREEMPTION_TIMEOUT" in plan[1] and "preempted" in plan[1]
