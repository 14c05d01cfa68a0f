"""Shared fixtures: every test gets its own store, spool and cache, never the user's."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def isolated_mlrepro(tmp_path, monkeypatch):
    """Point the default store, spool and digest cache into this test's tmp dir."""
    monkeypatch.setenv("MLREPRO_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MLREPRO_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("MLREPRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MLREPRO_FLUSH_SECONDS", "0.2")
    yield


@pytest.fixture
def store_dir(tmp_path):
    return str(tmp_path / "store")


def child_env(**extra) -> dict:
    """Environment for a child Python that imports this checkout's mlrepro."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_py(args, **kwargs):
    return subprocess.run([sys.executable, *args], env=kwargs.pop("env", child_env()),
                          capture_output=True, text=True, timeout=kwargs.pop("timeout", 300),
                          **kwargs)


@contextlib.contextmanager
def tmpfs(path, size="256k", read_only=False):
    """A real small filesystem at `path` (needs root, as in CI); skips the test otherwise."""
    os.makedirs(path, exist_ok=True)
    opts = f"size={size}"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); CI runs as root")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_read_only(path):
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
