"""Big artifacts through the S3 remote: multipart both ways, interrupted, resumed, verified."""

from __future__ import annotations

import hashlib
import os

import boto3
import pytest

import mlrepro
from mlrepro.aws.remote import pull, push
from mlrepro.errors import StoreError
from mlrepro.store import ObjectPut
from mlrepro.store import multipart
from mlrepro.store.local import LocalStore
from mlrepro.store.s3 import S3Store

from s3_moto import moto, s3_env  # noqa: F401  (fixtures)

MIB = 1 << 20


def _fail_after(store: S3Store, operation: str, allowed: int, ranged: bool = False) -> list:
    """Make the store's client fail every `operation` call after the first `allowed` ones."""
    seen: list = []

    def hook(params, **_kwargs):
        if ranged and "range" not in {k.lower() for k in params.get("headers", {})}:
            return
        seen.append(1)
        if len(seen) > allowed:
            raise ConnectionError("the network went away mid-transfer")

    store.client.meta.events.register(f"before-call.s3.{operation}", hook)
    return seen


def _sent(store: S3Store, operation: str, ranged: bool = False) -> list:
    seen: list = []

    def hook(params, **_kwargs):
        if not ranged or "range" in {k.lower() for k in params.get("headers", {})}:
            seen.append(1)

    store.client.meta.events.register(f"before-call.s3.{operation}", hook)
    return seen


@pytest.mark.slow
def test_a_200_mib_artifact_is_pushed_and_pulled_in_parts_and_resumes(s3_env, tmp_path):
    data = os.urandom(200 * MIB)
    digest = hashlib.sha256(data).hexdigest()
    src = tmp_path / "checkpoint.bin"
    src.write_bytes(data)
    local = LocalStore(str(tmp_path / "local"))
    with mlrepro.start_run(project="big", store=local, capture=False) as run:
        run.log_artifact(str(src), "checkpoint.bin", wait=True)
    uri = f"s3://{s3_env}/team"
    parts = -(-len(data) // multipart.PART_SIZE)

    # Push, cut off after 5 parts went up; the upload stays open on S3.
    remote = S3Store(uri)
    _fail_after(remote, "UploadPart", 5)
    first = push(local, remote)
    assert first.problems and "went away" in first.problems[0][1]
    assert S3Store(uri).run_ids() == []                  # no manifest: nobody sees half a run
    # Pushed again (a new process, nothing remembered locally): S3 tells which parts it has.
    remote = S3Store(uri)
    uploads = _sent(remote, "UploadPart")
    again = push(local, remote)
    assert not again.problems and again.copied.runs == [run.id]
    stats = remote.last_transfer
    assert stats.resumed and stats.parts == parts and stats.reused >= 5
    assert stats.reused + stats.sent == parts and len(uploads) == stats.sent < parts
    client = boto3.session.Session().client("s3")
    assert client.list_multipart_uploads(Bucket=s3_env).get("Uploads", []) == []
    head = client.head_object(Bucket=s3_env, Key=remote.object_key(digest))
    assert head["ContentLength"] == len(data)

    # Pull into a fresh store, cut off after 4 ranged GETs; pulled again, only the rest moves.
    fresh = LocalStore(str(tmp_path / "fresh"))
    remote = S3Store(uri)
    _fail_after(remote, "GetObject", 4, ranged=True)
    assert pull(fresh, remote).problems
    assert not fresh.has_object(digest)
    remote = S3Store(uri)
    ranged = _sent(remote, "GetObject", ranged=True)
    done = pull(fresh, remote)
    assert not done.problems and done.copied.runs == [run.id]
    stats = remote.last_transfer
    assert stats.resumed and stats.reused >= 4 and stats.reused + stats.sent == parts
    assert len(ranged) == stats.sent                    # only the parts left were fetched
    got = hashlib.sha256()
    with fresh.open_object(digest) as fh:
        for chunk in iter(lambda: fh.read(8 * MIB), b""):
            got.update(chunk)
    assert got.hexdigest() == digest
    leftovers = [n for n in os.listdir(os.path.dirname(fresh.object_path(digest)) or ".")
                 if n.startswith(multipart.PARTIAL_PREFIX)]
    assert leftovers == []


def test_a_resumed_download_whose_parts_were_damaged_is_refused_then_refetched(s3_env, tmp_path):
    data = os.urandom(12 * MIB)
    store = S3Store(f"s3://{s3_env}/team", part_size=5 * MIB)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    put = ObjectPut(path=str(path))
    store.put_object(put)
    key = store.object_key(put.digest)
    out = tmp_path / "out.bin"
    reader = S3Store(store.uri, part_size=5 * MIB)
    _fail_after(reader, "GetObject", 2, ranged=True)
    with pytest.raises(StoreError):
        multipart.download(reader, key, str(out), put.digest, len(data), 5 * MIB)
    partial = tmp_path / (multipart.PARTIAL_PREFIX + put.digest)
    with open(partial, "r+b") as fh:                     # a disk flips a byte of a done part
        fh.seek(10)
        fh.write(bytes([fh.read(1)[0] ^ 0xFF]))
    reader = S3Store(store.uri, part_size=5 * MIB)
    with pytest.raises(StoreError, match="does not hash to its name"):
        multipart.download(reader, key, str(out), put.digest, len(data), 5 * MIB)
    assert not out.exists() and not partial.exists()
    stats = multipart.download(reader, key, str(out), put.digest, len(data), 5 * MIB)
    assert not stats.resumed and stats.sent == 3 and out.read_bytes() == data


def test_a_file_that_changes_while_it_uploads_is_not_stored_under_the_old_digest(s3_env, tmp_path):
    store = S3Store(f"s3://{s3_env}/team", part_size=5 * MIB)
    path = tmp_path / "growing.bin"
    path.write_bytes(os.urandom(11 * MIB))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(os.urandom(11 * MIB))               # rewritten after it was hashed
    with pytest.raises(StoreError, match="changed while it was uploaded"):
        multipart.upload(store, store.object_key(digest), str(path), digest, 11 * MIB, 5 * MIB)
    assert not store.has_object(digest)
    client = boto3.session.Session().client("s3")
    assert client.list_multipart_uploads(Bucket=s3_env).get("Uploads", []) == []


def test_an_object_corrupted_in_the_bucket_is_refused_on_read(s3_env):
    store = S3Store(f"s3://{s3_env}/team")
    put = ObjectPut(data=b"the real bytes")
    store.put_object(put)
    boto3.session.Session().client("s3").put_object(
        Bucket=s3_env, Key=store.object_key(put.digest), Body=b"other bytes")
    with pytest.raises(StoreError, match="does not hash to its name"):
        S3Store(store.uri).read_object(put.digest)


@pytest.mark.slow
def test_a_push_and_a_pull_killed_mid_transfer_resume_afterwards(s3_env, tmp_path, monkeypatch):
    import json
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    from conftest import child_env

    data = os.urandom(120 * MIB)
    digest = hashlib.sha256(data).hexdigest()
    local = LocalStore(str(tmp_path / "local"))
    src = tmp_path / "ckpt.bin"
    src.write_bytes(data)
    with mlrepro.start_run(project="big", store=local, capture=False) as run:
        run.log_artifact(str(src), "ckpt.bin", wait=True)
    uri = f"s3://{s3_env}/team"
    key = S3Store(uri).object_key(digest)
    client = boto3.session.Session().client("s3")
    parts = -(-len(data) // multipart.PART_SIZE)

    def listed_parts():
        ups = client.list_multipart_uploads(Bucket=s3_env).get("Uploads", [])
        if not ups:
            return 0
        return len(client.list_parts(Bucket=s3_env, Key=key,
                                     UploadId=ups[0]["UploadId"]).get("Parts", []))

    def kill_when(cmd, ready, env):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.05)
        assert proc.poll() is None, "the transfer ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    mlrepro_cmd = [sys.executable, "-m", "mlrepro"]
    kill_when(mlrepro_cmd + ["push", "--store", local.root, "--remote", uri],
              lambda: listed_parts() >= 2, child_env())
    assert 2 <= listed_parts() < parts
    # The rerun in this process, with a fresh store (nothing carried over but S3 and the disk),
    # so its requests can be counted at the client (moto's recorder tears 16 MiB bodies).
    remote = S3Store(uri)
    uploads = _sent(remote, "UploadPart")
    assert not push(local, remote).problems
    stats = remote.last_transfer
    assert stats.resumed and stats.reused >= 2
    assert len(uploads) == stats.sent == parts - stats.reused

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    fresh = str(tmp_path / "fresh")
    state = tmp / (multipart.PARTIAL_PREFIX + digest + ".json")

    def fetched():
        try:
            return len(json.loads(state.read_text())["done"]) >= 2
        except (OSError, ValueError):
            return False

    kill_when(mlrepro_cmd + ["pull", "--store", fresh, "--remote", uri], fetched,
              child_env(TMPDIR=str(tmp)))
    done_before = len(json.loads(state.read_text())["done"])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))      # where the killed pull left it
    remote = S3Store(uri)
    ranged = _sent(remote, "GetObject", ranged=True)
    assert not pull(LocalStore(fresh), remote).problems
    assert remote.last_transfer.reused == done_before
    assert len(ranged) == parts - done_before              # only the parts not yet fetched
    assert LocalStore(fresh).read_object(digest) == data
    assert not state.exists()
