"""The S3 remote against moto's HTTP server: layout, dedup, resumable and concurrent pushes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import boto3
import pytest

import mlrepro
from mlrepro.errors import StoreError
from mlrepro.aws.remote import push
from mlrepro.store.local import LocalStore
from mlrepro.store.s3 import S3Store, parse_s3_uri

from conftest import child_env
from s3_moto import all_bucket_bytes, moto, object_puts, s3_env  # noqa: F401


def _run_with(store_dir, files: dict, tmp_path, project="p"):
    """A finished run (no code capture) whose artifacts are the given name -> bytes."""
    with mlrepro.start_run(project=project, store=store_dir, capture=False) as run:
        for step in range(3):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        for name, data in files.items():
            path = tmp_path / f"{run.id}-{name}"
            path.write_bytes(data)
            run.log_artifact(str(path), name, wait=True)
    return run.id


def test_uris_are_checked_and_credentials_refused():
    assert parse_s3_uri("s3://team-bucket/a//b/") == ("team-bucket", "a/b")
    assert S3Store("s3://team-bucket/").uri == "s3://team-bucket"
    for bad in ("s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@team-bucket/x",
                "s3://user@team-bucket/x", "s3://team-bucket/x?X-Amz-Credential=abc"):
        with pytest.raises(StoreError, match="credentials") as err:
            S3Store(bad)
        assert "wJalr" not in str(err.value) and "AKIA" not in str(err.value)
    for bad in ("s3://Bad_Bucket/x", "gs://bucket/x", "s3://b/../x"):
        with pytest.raises(StoreError):
            S3Store(bad)


def test_remote_mirrors_the_local_layout(s3_env, store_dir, tmp_path):
    run_id = _run_with(store_dir, {"w.bin": b"weights"}, tmp_path)
    local = LocalStore(store_dir)
    remote = S3Store(f"s3://{s3_env}/team")
    push(local, remote)
    keys = set(all_bucket_bytes(s3_env))
    expected = {f"team/runs/{run_id}/{n}" for n in local.list_run_files(run_id)}
    expected |= {f"team/objects/{d[:2]}/{d[2:]}" for d in local.iter_objects()}
    index = {k for k in keys if k.startswith("team/index/")}
    assert keys - index == expected
    assert [k.rsplit("/", 1)[-1].split(".")[0] for k in index] == [run_id]   # its one index row


def test_pushing_a_second_run_uploads_only_its_new_objects(s3_env, moto, store_dir, tmp_path):
    checkpoint, extra = os.urandom(200_000), os.urandom(50_000)
    first = _run_with(store_dir, {"ckpt": checkpoint}, tmp_path)
    local = LocalStore(store_dir)
    remote = S3Store(f"s3://{s3_env}/team")
    push(local, remote, [first])
    second = _run_with(store_dir, {"ckpt": checkpoint, "extra": extra}, tmp_path)
    moto.start_recording()
    try:
        summary = push(LocalStore(store_dir), S3Store(f"s3://{s3_env}/team"), [second])
    finally:
        moto.stop_recording()
    import hashlib

    new = hashlib.sha256(extra).hexdigest()
    puts = object_puts(moto.requests(), s3_env)
    assert puts == [f"{s3_env}/team/objects/{new[:2]}/{new[2:]}"]      # counted at the server
    assert summary.copied.objects_copied == 1 and summary.copied.objects_present == 1
    # and the upload carried its sha256 for S3 to check on arrival
    put = [r for r in moto.requests() if r["method"] == "PUT" and new[2:] in r["url"]][0]
    assert {k.lower() for k in put["headers"]} >= {"x-amz-checksum-sha256"}


def test_a_run_appears_only_once_its_manifest_is_written(s3_env, store_dir, tmp_path):
    run_id = _run_with(store_dir, {"w": b"x" * 1000}, tmp_path)
    remote = S3Store(f"s3://{s3_env}/team")
    local = LocalStore(store_dir)
    for name in local.list_run_files(run_id):
        if name != "run.json":
            remote.write_batch([mlrepro.store.RunFilePut(run_id, name,
                                                         local.read_run_file(run_id, name))])
    assert remote.run_ids() == [] and remote.list_runs() == []
    push(local, remote)
    assert remote.run_ids() == [run_id]


@pytest.mark.slow
def test_a_push_killed_midway_completes_when_run_again(s3_env, moto, store_dir, tmp_path):
    big = tmp_path / "shards"
    big.mkdir()
    for i in range(300):
        (big / f"shard-{i:03d}.bin").write_bytes(os.urandom(32_000))
    with mlrepro.start_run(project="big", store=store_dir, capture=False) as run:
        run.log_artifact(str(big), "shards", wait=True)
    local = LocalStore(store_dir)
    total = {f"team/objects/{d[:2]}/{d[2:]}" for d in local.iter_objects()}
    uri = f"s3://{s3_env}/team"
    client = boto3.session.Session().client("s3")
    proc = subprocess.Popen([sys.executable, "-m", "mlrepro", "push", "--store", store_dir,
                             "--remote", uri], env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        listed = client.list_objects_v2(Bucket=s3_env, Prefix="team/objects/").get("KeyCount", 0)
        if listed >= 20:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the push finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    present = {k for k in all_bucket_bytes(s3_env) if k.startswith("team/objects/")}
    assert 20 <= len(present) < len(total)
    assert S3Store(uri).run_ids() == []            # no manifest: readers see no half run
    moto.start_recording()
    try:
        rerun = subprocess.run([sys.executable, "-m", "mlrepro", "push", "--store", store_dir,
                                "--remote", uri], env=child_env(), capture_output=True,
                               text=True, timeout=300)
    finally:
        moto.stop_recording()
    assert rerun.returncode == 0, rerun.stderr
    uploaded = {p.split("/", 1)[1] for p in object_puts(moto.requests(), s3_env)}
    assert uploaded == total - present             # what was there is skipped, the rest moves
    remote = S3Store(uri)
    assert remote.run_ids() == [run.id]
    assert sorted(remote.iter_objects()) == sorted(local.iter_objects())


@pytest.mark.slow
def test_two_machines_pushing_different_runs_at_once(s3_env, tmp_path):
    shared = os.urandom(400_000)                   # the same checkpoint bytes in both runs
    stores = []
    for machine in ("a", "b"):
        store = str(tmp_path / f"machine-{machine}")
        _run_with(store, {"ckpt": shared, "own": os.urandom(100_000),
                          **{f"f{i}": os.urandom(5_000) for i in range(30)}}, tmp_path,
                  project=machine)
        stores.append(store)
    uri = f"s3://{s3_env}/team"
    procs = [subprocess.Popen([sys.executable, "-m", "mlrepro", "push", "--store", s,
                               "--remote", uri], env=child_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for s in stores]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    fresh = LocalStore(str(tmp_path / "fresh"))
    from mlrepro.aws.remote import pull

    pulled = pull(fresh, S3Store(uri))
    assert not pulled.problems and len(pulled.copied.runs) == 2
    for s in stores:
        src = LocalStore(s)
        for run_id in src.run_ids():
            for name in src.list_run_files(run_id):
                assert fresh.read_run_file(run_id, name) == src.read_run_file(run_id, name)
            for digest in src.iter_objects():
                assert fresh.read_object(digest) == src.read_object(digest)


def test_a_failed_append_is_applied_once_when_retried(s3_env):
    from mlrepro.store.base import MetricsAppend

    store = S3Store(f"s3://{s3_env}/team")
    run_id = "20260101T000000-abcdef0123"
    assert store.claim_run_id(run_id)
    store.write_batch([MetricsAppend(run_id, [(0, 1.0, 1.0, 0, "loss", 0)])])
    failures = []

    def fail_once(params, **_kwargs):
        if params["url_path"].endswith("metrics.bin") and not failures:
            failures.append(1)
            raise ConnectionError("S3 went away mid-write")

    store.client.meta.events.register("before-call.s3.PutObject", fail_once)
    batch = [MetricsAppend(run_id, [(1, 0.5, 2.0, 0, "loss", 0), (1, 0.9, 2.0, 0, "acc", 0)])]
    with pytest.raises(Exception, match="went away"):
        store.write_batch(batch)
    store.write_batch(batch)                            # the writer's retry
    points = S3Store(store.uri).read_points(run_id)
    assert points.steps("loss") == [0, 1] and points.steps("acc") == [1]


def test_unreachable_s3_is_a_one_line_store_error(monkeypatch, tmp_path):
    from s3_moto import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MLREPRO_S3_RETRIES", "1")
    with pytest.raises(StoreError, match="cannot list in s3://nobody-home/x"):
        S3Store("s3://nobody-home/x").run_ids()


def test_a_missing_bucket_names_the_fix(s3_env):
    with pytest.raises(StoreError, match="does not exist: create it"):
        S3Store(f"s3://{s3_env}-missing/x").run_ids()


def test_a_live_runs_copy_reads_as_running_for_two_push_intervals(s3_env):
    from mlrepro.record import new_manifest
    from mlrepro.store.base import ManifestWrite

    store = S3Store(f"s3://{s3_env}/team")
    now = time.time()
    for run_id, interval in (("20260101T000000-aaaaaaaaaa", 300),
                             ("20260101T000000-bbbbbbbbbb", None)):
        m = new_manifest(run_id, "p", None, started=now - 400, host="elsewhere", pid=1)
        m["heartbeat"] = now - 400                 # pushed 400 s ago
        if interval:
            m["push"] = {"remote": store.uri, "interval": interval}
        store.write_batch([ManifestWrite(run_id, m)])
    status = {m["id"]: m["status"] for m in store.list_runs()}
    assert status == {"20260101T000000-aaaaaaaaaa": "running",
                      "20260101T000000-bbbbbbbbbb": "crashed"}
