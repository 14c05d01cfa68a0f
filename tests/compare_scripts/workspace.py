"""Helpers shared by the compare, report, trace and reproduce tests: a git repo with a training
script, data files outside it, and real runs of the script in child processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TRAIN_TINY = os.path.join(HERE, "train_tiny.py")
TRAIN_CALLBACK = os.path.join(HERE, "train_callback.py")
COUNT = os.path.join(HERE, "count.py")


def git(repo: str, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.email=test@example.com", "-c", "user.name=Test",
                           "-c", "init.defaultBranch=main", *args], cwd=repo,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def make_repo(base: str, script: str, name: str) -> str:
    """A git repository under `base` whose first commit holds `script` as `name`."""
    repo = os.path.join(base, "repo")
    os.makedirs(repo)
    shutil.copy(script, os.path.join(repo, name))
    git(repo, "init", "-q")
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"add {name}")
    return repo


def edit_line(path: str, old: str, new: str) -> None:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    assert text.count(old) == 1, f"{old!r} is not exactly once in {path}"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text.replace(old, new))


def run_env(base: str, **extra) -> dict:
    """Environment for a training child: its own store, spool and digest cache under `base`."""
    env = dict(os.environ)
    env.update(MLREPRO_STORE=os.path.join(base, "store"), MLREPRO_SPOOL=os.path.join(base, "spool"),
               MLREPRO_CACHE=os.path.join(base, "cache"), TF_CPP_MIN_LOG_LEVEL="2",
               MLREPRO_FLUSH_SECONDS="0.2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MLREPRO_PARENT", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_script(cwd: str, script: str, args: list[str], env: dict) -> str:
    """Run a script as a user would (`python train.py ...`) and return the id of its run."""
    proc = subprocess.run([sys.executable, script, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [line.split("=", 1)[1] for line in proc.stdout.splitlines()
           if line.startswith("run_id=")]
    assert ids, proc.stdout
    return ids[-1]


def write_regression_data(path: str, seed: int = 0, n: int = 48) -> str:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([[0.5], [-1.0], [2.0], [0.25]], dtype="float32")
         + 0.1 * rng.normal(size=(n, 1)).astype("float32"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, x=x, y=y)
    return path


def write_text_data(path: str, text: str = "hello data\n") -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def fetch_artifact(store, manifest: dict, name: str, dest: str) -> str:
    """Write an artifact back out of the store (as a user downloading a model would)."""
    entry = manifest["artifacts"][name]
    if entry["kind"] == "file":
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as fh:
            fh.write(store.read_object(entry["digest"]))
        return dest
    for rel, f in entry["files"].items():
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(store.read_object(f["digest"]))
    return dest
