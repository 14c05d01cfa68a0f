"""Remotes end to end against moto's S3 server: remote/push/pull/sync/pull-job, live pushes,
S3 outages during training, and credentials that must never reach a record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import warnings

import boto3
import pytest

import mlrepro
from mlrepro.cli import main
from mlrepro.store.local import LocalStore
from mlrepro.store.s3 import S3Store

from conftest import child_env
from s3_moto import all_bucket_bytes, free_port, moto, s3_env  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "remote_scripts")


def _same_runs(a: LocalStore, b, run_ids=None):
    """Every run file and every object of `a`'s runs is byte-identical in `b`."""
    from mlrepro.store.base import objects_of

    for run_id in run_ids or a.run_ids():
        for name in a.list_run_files(run_id):
            assert b.read_run_file(run_id, name) == a.read_run_file(run_id, name), name
        for digest in objects_of(a.read_manifest(run_id)):
            assert b.read_object(digest) == a.read_object(digest)


def _rich_run(store_dir, tmp_path):
    model = tmp_path / f"saved_model-{os.urandom(4).hex()}"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(os.urandom(3000))
    (model / "variables" / "variables.data").write_bytes(os.urandom(70_000))
    with mlrepro.start_run(project="cifar", store=store_dir, params={"lr": 0.1},
                           seed=3) as run:
        for step in range(20):
            run.log_metrics({"loss": 2.0 / (step + 1), "acc": step / 20}, step=step,
                            epoch=step // 10)
        run.log_artifact(str(model), "saved_model")
        run.log_data("train", {"source": "synthetic", "digest": "ab" * 32, "size": 10})
        run.event("note", text="hello")
    return run.id


# -- remote add / list / remove ---------------------------------------------------------------

def test_remotes_are_named_in_the_local_store(s3_env, store_dir, capsys):
    assert main(["remote", "add", "team", f"s3://{s3_env}/team/"]) == 0
    assert main(["remote", "add", "backup", f"s3://{s3_env}/backup", "--default"]) == 0
    capsys.readouterr()
    assert main(["remote", "list"]) == 0
    out = capsys.readouterr().out
    assert f"team\ts3://{s3_env}/team\n" in out
    assert f"backup\ts3://{s3_env}/backup  (default)" in out
    with open(os.path.join(store_dir, "remotes.json")) as fh:
        assert json.load(fh)["default"] == "backup"
    assert main(["remote", "remove", "backup"]) == 0
    from mlrepro.aws.remote import resolve_remote

    assert resolve_remote(LocalStore(store_dir)) == f"s3://{s3_env}/team"
    assert resolve_remote(LocalStore(store_dir), f"s3://{s3_env}/other") == f"s3://{s3_env}/other"


def test_bad_remotes_are_refused_with_the_fix(store_dir, capsys, monkeypatch):
    monkeypatch.delenv("MLREPRO_REMOTE", raising=False)
    planted = _planted()
    secret = (f"s3://{planted['AWS_ACCESS_KEY_ID']}:{planted['AWS_SECRET_ACCESS_KEY']}"
              "@team-bucket/x")
    assert main(["remote", "add", "team", secret]) == 2
    err = capsys.readouterr().err
    assert "credentials" in err and planted["AWS_SECRET_ACCESS_KEY"] not in err
    assert planted["AWS_ACCESS_KEY_ID"] not in err
    assert not os.path.exists(os.path.join(store_dir, "remotes.json"))
    assert main(["remote", "add", "team", "https://team-bucket/x"]) == 2
    assert main(["remote", "add", "bad name", "s3://team-bucket/x"]) == 2
    assert main(["push"]) == 2
    assert "mlrepro remote add NAME s3://bucket/prefix" in capsys.readouterr().err
    assert main(["push", "--remote", "nosuch"]) == 2
    assert "no remote named 'nosuch'" in capsys.readouterr().err


# -- push / pull / sync -----------------------------------------------------------------------

def test_push_then_pull_preserves_every_byte(s3_env, store_dir, tmp_path, capsys):
    run_id = _rich_run(store_dir, tmp_path)
    assert main(["remote", "add", "team", f"s3://{s3_env}/team"]) == 0
    assert main(["push"]) == 0
    out = capsys.readouterr().out
    assert "pushed 1 run to" in out
    assert main(["push"]) == 0
    assert "1 already up to date" in capsys.readouterr().out
    assert main(["runs", "--store", f"s3://{s3_env}/team", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [run_id] and listed[0]["status"] == "finished"
    fresh = str(tmp_path / "laptop")
    assert main(["pull", "--store", fresh, "--remote", f"s3://{s3_env}/team",
                 run_id[-10:]]) == 0
    _same_runs(LocalStore(store_dir), LocalStore(fresh))
    code = LocalStore(fresh).read_manifest(run_id)["code"]
    if code.get("patch"):                        # code objects travel with the run too
        assert LocalStore(fresh).has_object(code["patch"])
    assert main(["show", "--store", fresh, run_id]) == 0


def test_sync_exchanges_runs_between_machines(s3_env, tmp_path, capsys, monkeypatch):
    remote = f"s3://{s3_env}/team"
    monkeypatch.setenv("MLREPRO_REMOTE", remote)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_a = _rich_run(a, tmp_path)
    run_b = _rich_run(b, tmp_path)
    assert main(["sync", "--store", a]) == 0
    assert main(["sync", "--store", b]) == 0
    assert main(["sync", "--store", a]) == 0
    capsys.readouterr()
    for store in (a, b):
        assert sorted(LocalStore(store).run_ids()) == sorted([run_a, run_b])
    _same_runs(LocalStore(a), LocalStore(b))
    assert main(["sync", "--store", b]) == 0
    out = capsys.readouterr().out
    assert "pushed 0 runs" in out and "pulled 0 runs" in out and "2 already up to date" in out


def test_a_newer_copy_at_the_destination_is_left_alone(s3_env, store_dir, tmp_path):
    from mlrepro.aws.remote import pull, push

    run_id = _rich_run(store_dir, tmp_path)
    local, remote = LocalStore(store_dir), S3Store(f"s3://{s3_env}/team")
    push(local, remote)
    with mlrepro.start_run(project="cifar", store=store_dir, run_id=run_id) as again:
        again.log_metrics({"loss": 0.01}, step=20)       # a second attempt, newer
    summary = pull(local, remote)
    assert summary.kept_newer == [run_id]
    assert LocalStore(store_dir).read_manifest(run_id)["attempts"][-1]["attempt"] == 1


# -- pushing while training ---------------------------------------------------------------------

@pytest.mark.slow
def test_a_live_run_is_pushed_while_it_trains_and_at_the_end(s3_env, store_dir):
    uri = f"s3://{s3_env}/team"
    proc = subprocess.Popen([sys.executable, os.path.join(SCRIPTS, "log_for.py"), "5"],
                            env=child_env(MLREPRO_REMOTE=uri, MLREPRO_PUSH_SECONDS="0.5"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().strip()
    remote = S3Store(uri)
    seen_running = None
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        if run_id in remote.run_ids():
            manifest = remote.read_manifest(run_id)
            if manifest["status"] == "running" and remote.read_points(run_id).steps("loss"):
                seen_running = len(remote.read_points(run_id).steps("loss"))
                assert manifest["push"] == {"remote": uri, "interval": 0.5}
                [listed] = remote.list_runs()
                assert listed["status"] == "running"
                break
        time.sleep(0.2)
    assert seen_running, "no push was seen while the run was live"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    remote = S3Store(uri)
    local = LocalStore(store_dir)
    assert remote.read_manifest(run_id)["status"] == "finished"
    assert remote.read_points(run_id).series == local.read_points(run_id).series
    assert len(local.read_points(run_id).steps("loss")) > seen_running
    _same_runs(local, remote, [run_id])                # the last push carried everything


class _Worker:
    def __init__(self, chief):
        self.is_chief = chief

    def to_record(self):
        return {"kind": "sagemaker", "is_chief": self.is_chief}


def test_only_the_chief_pushes(s3_env, store_dir, monkeypatch):
    uri = f"s3://{s3_env}/team"
    monkeypatch.setenv("MLREPRO_REMOTE", uri)
    with mlrepro.start_run(project="mw", runtime=_Worker(False)) as worker:
        worker.log_metrics({"loss": 1.0}, step=0)
    assert S3Store(uri).run_ids() == []
    with mlrepro.start_run(project="mw", runtime=_Worker(True)) as chief:
        chief.log_metrics({"loss": 1.0}, step=0)
    assert S3Store(uri).run_ids() == [chief.id]


def test_pushes_fail_quietly_then_resume_when_s3_comes_back(s3_env, store_dir, monkeypatch):
    late = s3_env + "-late"                            # a bucket that does not exist yet
    uri = f"s3://{late}/team"
    monkeypatch.setenv("MLREPRO_REMOTE", uri)
    monkeypatch.setenv("MLREPRO_PUSH_SECONDS", "0.3")
    monkeypatch.setenv("MLREPRO_S3_RETRIES", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # capture=False: in a pytest process that imported every test module, the code
        # capture would make each push upload ~100 module files and outlast the 1 s window
        with mlrepro.start_run(project="late", capture=False) as run:
            for step in range(20):
                run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
                time.sleep(0.05)
            boto3.session.Session().client("s3").create_bucket(Bucket=late)
            for step in range(20, 40):
                run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
                time.sleep(0.05)
    push_warnings = [w for w in caught if "cannot push" in str(w.message)]
    assert len(push_warnings) == 1                     # one warning per outage, not per try
    kinds = [e["kind"] for e in LocalStore(store_dir).read_events(run.id)]
    assert "push_failed" in kinds and "push_resumed" in kinds
    remote = S3Store(uri)
    assert remote.read_manifest(run.id)["status"] == "finished"
    assert remote.read_points(run.id).steps("loss") == list(range(40))


@pytest.mark.slow
def test_s3_down_leaves_training_unaffected_and_sync_uploads_later(s3_env, tmp_path,
                                                                  capsys, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    with_remote = str(tmp_path / "with-remote")
    without = str(tmp_path / "without")
    down = subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "train_tiny.py"), with_remote],
        env=child_env(MLREPRO_REMOTE=f"s3://{s3_env}/team", AWS_ENDPOINT_URL=dead,
                      MLREPRO_PUSH_SECONDS="0.3", MLREPRO_S3_RETRIES="1"),
        capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr[-3000:]
    baseline = subprocess.run([sys.executable, os.path.join(SCRIPTS, "train_tiny.py"), without],
                              env=child_env(), capture_output=True, text=True, timeout=300)
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    got = json.loads(down.stdout.strip().splitlines()[-1])
    ref = json.loads(baseline.stdout.strip().splitlines()[-1])
    assert got["weights"] == ref["weights"] and got["loss"] == ref["loss"]   # same training
    assert down.stderr.count("cannot push run") == 1
    assert "could not be pushed" in down.stderr and "mlrepro sync" in down.stderr
    local = LocalStore(with_remote)
    assert local.read_manifest(got["run"])["status"] == "finished"
    assert len(local.read_points(got["run"]).steps("loss")) == 24      # 3 epochs x 8 batches
    assert S3Store(f"s3://{s3_env}/team").run_ids() == []
    # S3 is back (this test's env points at moto): a later sync uploads the run.
    assert main(["sync", "--store", with_remote, "--remote", f"s3://{s3_env}/team"]) == 0
    remote = S3Store(f"s3://{s3_env}/team")
    assert remote.run_ids() == [got["run"]]
    _same_runs(local, remote)


# -- SageMaker job output ------------------------------------------------------------------------

def _fake_job_output(tmp_path, job):
    """Run a script as the chief of a one-host SageMaker job without MLREPRO_REMOTE."""
    base = tmp_path / "opt" / "ml"
    for d in ("input/config", "model", "output/data"):
        (base / d).mkdir(parents=True, exist_ok=True)
    env = child_env(TRAINING_JOB_NAME=job, MLREPRO_SAGEMAKER_BASE_DIR=str(base),
                    SM_HOSTS='["algo-1"]', SM_CURRENT_HOST="algo-1",
                    SM_OUTPUT_DATA_DIR=str(base / "output" / "data"),
                    SM_MODEL_DIR=str(base / "model"))
    env.pop("MLREPRO_REMOTE", None)
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, "log_for.py"), "0.5"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.split()[0]
    exported = base / "output" / "data" / "mlrepro-runs"
    assert LocalStore(str(exported)).read_manifest(run_id)["status"] == "finished"
    archive = tmp_path / "output.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:         # what SageMaker uploads at the end
        tar.add(base / "output" / "data", arcname=".")
    return run_id, str(exported), str(archive)


def test_pull_job_imports_the_run_a_job_left_in_its_output(s3_env, tmp_path, capsys):
    job = "mlrepro-20260101000000"
    run_id, exported, archive = _fake_job_output(tmp_path, job)
    client = boto3.session.Session().client("s3")
    client.upload_file(archive, s3_env, f"jobs/{job}/output/output.tar.gz")
    client.put_object(Bucket=s3_env, Key=f"jobs/{job}/output/model.tar.gz",
                      Body=b"not a tar")             # a damaged archive beside it is reported
    sm = boto3.session.Session().client("sagemaker")
    sm.create_training_job(
        TrainingJobName=job, RoleArn="arn:aws:iam::123456789012:role/SM",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{s3_env}/jobs"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 60})
    for i, source in enumerate([job, f"s3://{s3_env}/jobs/{job}/output/",
                                f"s3://{s3_env}/jobs/{job}/output/output.tar.gz", archive]):
        fresh = str(tmp_path / f"fresh{i}")
        code = main(["pull-job", source, "--store", fresh])
        out, err = capsys.readouterr()
        assert "imported 1 run" in out
        assert code == (1 if "model.tar.gz" in err else 0), err
        _same_runs(LocalStore(exported), LocalStore(fresh))
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        tar.add(HERE + "/remote_scripts", arcname="code")
    assert main(["pull-job", str(empty)]) == 2
    assert "no mlrepro runs found" in capsys.readouterr().err


def test_pull_job_refuses_archive_members_that_climb_out(tmp_path, store_dir):
    import io

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    assert main(["pull-job", str(evil), "--store", store_dir]) == 2
    assert not (tmp_path / "escaped.txt").exists()
    assert not os.path.exists(os.path.join(os.path.dirname(store_dir), "escaped.txt"))


# -- credentials -------------------------------------------------------------------------------

def _planted() -> dict:
    """Fresh fake credentials, made at run time so that no source file holds them (the
    code capture stores this checkout's uncommitted files, this test among them)."""
    import secrets
    import string

    upper = string.ascii_uppercase + string.digits
    return {"AWS_ACCESS_KEY_ID": "AKIA" + "".join(secrets.choice(upper) for _ in range(16)),
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            "AWS_SESSION_TOKEN": "FwoG" + secrets.token_urlsafe(40)}


@pytest.mark.slow
def test_credentials_never_reach_a_record_or_the_bucket(s3_env, store_dir, tmp_path, capsys,
                                                         monkeypatch):
    PLANTED = _planted()
    for key, value in PLANTED.items():                  # the credentials boto3 really uses
        monkeypatch.setenv(key, value)
    uri = f"s3://{s3_env}/team"
    in_url = f"s3://{PLANTED['AWS_ACCESS_KEY_ID']}:{PLANTED['AWS_SECRET_ACCESS_KEY']}@{s3_env}/x"
    pushed = subprocess.run([sys.executable, os.path.join(SCRIPTS, "log_for.py"), "0.5",
                             "--data", in_url],
                            env=child_env(MLREPRO_REMOTE=uri), capture_output=True, text=True,
                            timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    refused = subprocess.run([sys.executable, os.path.join(SCRIPTS, "log_for.py"), "0.3"],
                             env=child_env(MLREPRO_REMOTE=in_url), capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 0 and "credentials" in refused.stderr
    assert main(["remote", "add", "team", in_url]) == 2
    assert main(["push", "--remote", uri]) == 0
    capsys.readouterr()
    blobs = dict(all_bucket_bytes(s3_env))
    assert any(k.endswith("run.json") for k in blobs)
    for root, _dirs, files in os.walk(os.path.dirname(store_dir)):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                blobs[os.path.join(root, name)] = fh.read()
    for where, data in blobs.items():
        for value in PLANTED.values():
            assert value.encode() not in data, f"{value[:8]}... found in {where}"
