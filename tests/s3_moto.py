"""moto's S3/SageMaker server on 127.0.0.1 for the tests: a real HTTP API, not in-process patching.

One server per test session (started on first use, stopped at exit); each test gets
a fresh bucket and fake credentials, so tests never see each other's objects.
Import the fixtures into a test module: `from s3_moto import moto, s3_env  # noqa: F401`.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import pytest

REGION = "us-east-1"
FAKE_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """A `python -m moto.server` child process with its request recorder available."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="moto-")
        self.recording = os.path.join(self.dir, "recording.jsonl")
        env = dict(os.environ, MOTO_RECORDER_FILEPATH=self.recording, **FAKE_KEYS)
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=2).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("moto server did not start: " + open(
                        os.path.join(self.dir, "server.log")).read()[-2000:])
                time.sleep(0.2)

    def _post(self, path: str) -> None:
        req = urllib.request.Request(self.url + path, data=b"", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def start_recording(self) -> None:
        self._post("/moto-api/recorder/reset-recording")
        self._post("/moto-api/recorder/start-recording")

    def stop_recording(self) -> None:
        self._post("/moto-api/recorder/stop-recording")

    def requests(self) -> list[dict]:
        """Every request the server received since `start_recording` (method, url, headers, body)."""
        out = []
        try:
            with open(self.recording, encoding="utf-8") as fh:
                for line in fh:
                    entry = json.loads(line)
                    if entry.get("body_encoded") and entry.get("body"):
                        entry["body"] = base64.b64decode(entry["body"])
                    out.append(entry)
        except FileNotFoundError:
            pass
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


_server: list[MotoServer] = []


def shared_server() -> MotoServer:
    if not _server:
        _server.append(MotoServer())
        atexit.register(_server[0].stop)
    return _server[0]


@pytest.fixture(scope="session")
def moto():
    """The session's moto server (started once)."""
    return shared_server()


@pytest.fixture
def s3_env(moto, monkeypatch, tmp_path):
    """Fake credentials pointed at moto, and a fresh bucket; returns its name."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3",
                 "AWS_ENDPOINT_URL_SAGEMAKER", "MLREPRO_REMOTE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key, value in FAKE_KEYS.items():
        monkeypatch.setenv(key, value)
    import boto3

    bucket = "mlrepro-" + uuid.uuid4().hex[:16]
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    return bucket


def object_puts(requests: list[dict], bucket: str, part: str = "/objects/") -> list[str]:
    """Paths of the PUT requests that stored objects (content-addressed blobs) in `bucket`."""
    out = []
    for r in requests:
        path = r["url"].split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        if r["method"] == "PUT" and path.startswith(bucket + "/") and part in "/" + path:
            out.append(path)
    return out


def all_bucket_bytes(bucket: str) -> dict[str, bytes]:
    """Every key of a bucket and its bytes."""
    import boto3

    client = boto3.session.Session().client("s3")
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out
