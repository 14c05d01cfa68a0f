"""`mlrepro reproduce` on ordinary scripts: relative data paths, an untouched original, crashes.

The script is a real user script outside any git repository that reads `x.npy`
relative to the directory it was started in, appends to a file there, and is
deleted after its run; it trains with NumPy alone (seeded by mlrepro), so these
tests need no TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mlrepro.analysis.workdir import populate
from mlrepro.cli import main
from mlrepro.errors import MlreproError
from mlrepro.store import open_store

from conftest import child_env

SCRIPT = '''
import os
import numpy as np
import mlrepro

x = np.load("x.npy")
run = mlrepro.start_run(project="rel", seed=3)
w = np.zeros(x.shape[1])
crash_at = int(os.environ.get("CRASH_AT", "0"))
for step in range(1, 13):
    noise = np.random.normal(scale=0.01, size=w.shape)
    w = w - 0.1 * (x.T @ (x @ w - 1.0)) / len(x) + noise
    run.log_metrics({"loss": float(np.mean((x @ w - 1.0) ** 2))}, step=step)
    if step == crash_at:
        raise RuntimeError("the machine went away")
with open("notes.txt", "a") as fh:
    fh.write("trained\\n")
os.makedirs("out", exist_ok=True)
np.save("out/w.npy", w)
run.log_artifact("out/w.npy", name="w.npy")
print("run_id=" + run.id)
'''


def tree_digest(root: str) -> dict:
    """Every file under `root` with its bytes' digest (what 'byte-identical on disk' means)."""
    out = {}
    for top, _dirs, names in os.walk(root):
        for n in names:
            path = os.path.join(top, n)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture
def workdir(tmp_path):
    """The directory the user ran the script in, with its data (not a git repository)."""
    d = tmp_path / "experiment"
    d.mkdir()
    np.save(d / "x.npy", np.random.default_rng(0).normal(size=(32, 4)))
    (d / "notes.txt").write_text("before\n")
    (d / "train.py").write_text(SCRIPT)
    return str(d)


def run_original(workdir: str, store: str, **env) -> str:
    proc = subprocess.run([sys.executable, "train.py"], cwd=workdir, capture_output=True,
                          text=True, timeout=300, env=child_env(MLREPRO_STORE=store, **env))
    if env.get("CRASH_AT"):
        assert proc.returncode != 0 and "the machine went away" in proc.stderr
        [run_id] = open_store(store).run_ids()
        return run_id
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("run_id=")[1].split()[0]


def reproduce(store: str, run_id: str, cwd: str, capsys, *extra) -> tuple[int, dict]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = main(["reproduce", run_id, "--store", store, "--json", *extra])
    finally:
        os.chdir(old)
    return code, json.loads(capsys.readouterr().out)


def test_a_script_reading_relative_data_reproduces_bit_identical_after_it_was_deleted(
        workdir, store_dir, capsys):
    run_id = run_original(workdir, store_dir)
    os.remove(os.path.join(workdir, "train.py"))
    data_before = tree_digest(workdir)
    record_before = tree_digest(os.path.join(store_dir, "runs", run_id))

    code, result = reproduce(store_dir, run_id, workdir, capsys)

    assert (code, result["verdict"]["kind"]) == (0, "bit-identical"), result["verdict"]
    assert "1 artifact identical" in result["verdict"]["message"]
    assert result["workdir"]["source"] == workdir and result["workdir"]["files"] >= 3
    new = open_store(store_dir).read_manifest(result["new_run"])
    assert new["parent"] == {"kind": "reproduction-of", "run": run_id}
    # the re-run appended to notes.txt and wrote out/w.npy: in its copy, not here
    assert tree_digest(workdir) == data_before
    assert open(os.path.join(workdir, "notes.txt")).read() == "before\ntrained\n"
    assert tree_digest(os.path.join(store_dir, "runs", run_id)) == record_before


def test_a_crashed_run_is_judged_on_the_steps_it_reached(workdir, store_dir, capsys):
    run_id = run_original(workdir, store_dir, CRASH_AT=5)
    assert open_store(store_dir).read_manifest(run_id)["status"] != "finished"

    code, result = reproduce(store_dir, run_id, workdir, capsys)

    verdict = result["verdict"]
    assert code == 0, verdict
    assert verdict["kind"] == "bit-identical"
    assert verdict["message"].startswith("identical up to step 5 where the original stopped")
    assert verdict["partial"]["up_to_step"] == 5
    assert verdict["curves"]["points"] == 5


def test_a_partial_verdict_still_says_diverged_when_a_reached_step_differs(
        workdir, store_dir, capsys):
    run_id = run_original(workdir, store_dir, CRASH_AT=5)
    np.save(os.path.join(workdir, "x.npy"), np.ones((32, 4)))  # the data changed since

    code, result = reproduce(store_dir, run_id, workdir, capsys)

    assert code == 1 and result["verdict"]["kind"] == "diverged", result["verdict"]
    assert result["verdict"]["message"].startswith("diverged at step 1 on loss")


def test_the_copy_skips_the_store_git_and_the_runs_own_checkpoints(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "data").mkdir(parents=True)
    (src / "data" / "a.csv").write_text("1,2\n")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    (src / "mlrepro-runs" / "runs").mkdir(parents=True)
    (src / "checkpoints" / "mlrepro-p").mkdir(parents=True)
    (src / "checkpoints" / "mlrepro-p" / "mlrepro_run.json").write_text('{"run_id": "R1"}')
    (src / "pretrained").mkdir()
    (src / "pretrained" / "mlrepro_run.json").write_text('{"run_id": "R0"}')
    dest.mkdir()
    (dest / "train.py").write_text("recorded code")
    (src / "train.py").write_text("edited since")

    done = populate(str(src), str(dest), "R1", skip=[str(src / "mlrepro-runs")])

    assert sorted(tree_digest(str(dest))) == ["data/a.csv", "pretrained/mlrepro_run.json",
                                              "train.py"]
    assert (dest / "train.py").read_text() == "recorded code"
    assert done.files == 2
    assert any("checkpoints/mlrepro-p/" in s for s in done.skipped)
    with pytest.raises(MlreproError, match="--copy-limit"):
        populate(str(src), str(tmp_path / "other"), "R1", limit_mb=1e-6)


def test_a_reproduction_never_continues_the_run_it_reproduces(store_dir, monkeypatch):
    import mlrepro

    with mlrepro.start_run(project="p", store=store_dir) as original:
        original.log_metrics({"loss": 1.0}, step=1)
    original.flush()
    path = os.path.join(store_dir, "runs", original.id)
    before = tree_digest(path)
    monkeypatch.setenv("MLREPRO_PARENT", json.dumps({"kind": "reproduction-of",
                                                     "run": original.id}))
    with mlrepro.start_run(project="p", store=store_dir, run_id=original.id) as again:
        again.log_metrics({"loss": 1.0}, step=1)
    assert again.id != original.id
    assert again.manifest["parent"] == {"kind": "reproduction-of", "run": original.id}
    assert tree_digest(path) == before
    # a restart of the reproduction itself (a spot restart of its job) continues the reproduction
    with mlrepro.start_run(project="p", store=store_dir, run_id=again.id) as restarted:
        pass
    assert restarted.id == again.id and len(restarted.manifest["attempts"]) == 2
    assert tree_digest(path) == before


def test_a_continued_run_does_not_take_the_parent_from_the_environment(store_dir, monkeypatch):
    import mlrepro

    with mlrepro.start_run(project="p", store=store_dir) as first:
        pass
    monkeypatch.setenv("MLREPRO_PARENT", "20000101-000000-abcdef")
    with mlrepro.start_run(project="p", store=store_dir, run_id=first.id) as again:
        pass
    assert again.id == first.id and again.manifest["parent"] is None


def test_a_run_that_crashes_again_in_the_re_run_is_judged_on_the_reached_steps(
        workdir, store_dir, capsys, monkeypatch):
    run_id = run_original(workdir, store_dir, CRASH_AT=7)
    monkeypatch.setenv("CRASH_AT", "7")  # the crash is part of the recipe: it happens again

    code, result = reproduce(store_dir, run_id, workdir, capsys)

    assert code == 0, result["verdict"]
    assert result["verdict"]["message"].startswith(
        "identical up to step 7 where the original stopped (failed): bit-identical")
