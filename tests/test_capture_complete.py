"""Complete capture: every user module, mlrepro's own directories left out, fingerprints by part.

Shaped like the cases that broke on real code: a multi-module project outside git
(a SageMaker container has no git), a default store inside the user's own git
repository, lr changed with no `params=`, a secret inside a warning.
"""

from __future__ import annotations

import os
import subprocess
import sys

from mlrepro.capture.fingerprint import fingerprints
from mlrepro.cli import main
from mlrepro.store.local import LocalStore

from conftest import ROOT

TRAIN = """\
import os, sys
import mlrepro

run = mlrepro.start_run(project="multi")
from model import build          # imported after the run started, as scripts do
from pkg.data import load

value = build(load())
run.log_metrics({"value": value}, step=0)
run.finish()
print("run_id=" + run.id)
"""
MODEL = """\
_MOMENTUM = 0.9
_WIDTH = 4


def build(xs):
    return sum(xs) * _MOMENTUM + _WIDTH
"""
DATA = """\
def load():
    return [1.0, 2.0, 3.0]
"""


def _env(tmp_path, **extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MLREPRO_PARENT", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run(cwd, args, env) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [ln.split("=", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("run_id=")][-1]


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.email=t@x", "-c", "user.name=t", "-c",
                    "init.defaultBranch=main", *args], cwd=repo, check=True, capture_output=True)


def _project(base) -> str:
    proj = os.path.join(base, "proj")
    os.makedirs(os.path.join(proj, "pkg"))
    for rel, text in (("train.py", TRAIN), ("model.py", MODEL), ("pkg/__init__.py", ""),
                      ("pkg/data.py", DATA)):
        with open(os.path.join(proj, rel), "w") as fh:
            fh.write(text)
    return proj


# -- mlrepro's own directories are never code ---------------------------------------------

def test_default_store_inside_a_git_repo_never_enters_the_next_runs_code(tmp_path):
    proj = _project(tmp_path)
    _git(proj, "init", "-q")
    _git(proj, "add", ".")
    _git(proj, "commit", "-qm", "init")
    env = _env(tmp_path)
    env.pop("MLREPRO_STORE")          # the default: ./mlrepro-runs in the user's checkout
    first = _run(proj, ["train.py"], env)
    store = LocalStore(os.path.join(proj, "mlrepro-runs"))
    with open(os.path.join(store.root, ".gitignore")) as fh:
        assert fh.read().splitlines()[-1] == "*"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=proj, capture_output=True,
                            text=True).stdout
    assert status == ""
    second = _run(proj, ["train.py"], env)
    code = store.read_manifest(second)["code"]
    assert code["dirty"] is False and code.get("patch") is None
    assert store.read_manifest(first)["fingerprint"] == store.read_manifest(second)["fingerprint"]
    # a store made before the .gitignore existed (or with it deleted) is still left out
    os.unlink(os.path.join(store.root, ".gitignore"))
    third = _run(proj, ["train.py"], env)
    code = store.read_manifest(third)["code"]
    assert code["dirty"] is False and code.get("patch") is None
    assert code["mlrepro_dirs_not_captured"] == ["mlrepro-runs"]
    # while a real untracked source file is still captured, and makes the run dirty
    with open(os.path.join(proj, "notes.py"), "w") as fh:
        fh.write("X = 1\n")
    fourth = _run(proj, ["train.py"], env)
    code = store.read_manifest(fourth)["code"]
    assert code["dirty"] is True and code["untracked_files"] == 1
    patch = store.read_object(code["patch"])
    assert b"notes.py" in patch and b"metrics.bin" not in patch and b"run.json" not in patch


# -- every user module, outside git -------------------------------------------------------

def test_multi_module_project_outside_git_records_diffs_and_rebuilds_every_module(
        tmp_path, capsys):
    proj = _project(tmp_path)
    store_dir = str(tmp_path / "store")
    env = _env(tmp_path, MLREPRO_STORE=store_dir)
    a = _run(proj, ["train.py"], env)
    with open(os.path.join(proj, "model.py")) as fh:
        text = fh.read()
    with open(os.path.join(proj, "model.py"), "w") as fh:
        fh.write(text.replace("_MOMENTUM = 0.9", "_MOMENTUM = 0.5"))
    b = _run(proj, ["train.py"], env)
    store = LocalStore(store_dir)
    ma, mb = store.read_manifest(a), store.read_manifest(b)
    assert ma["code"]["git"] is None
    assert sorted(ma["code"]["modules"]) == ["model.py", "pkg/__init__.py", "pkg/data.py",
                                             "train.py"]
    assert ma["code"]["modules"]["train.py"] == ma["code"]["entry_point_object"]
    assert ma["fingerprints"]["code"] != mb["fingerprints"]["code"]
    assert ma["fingerprint"] != mb["fingerprint"]
    assert ma["fingerprints"]["command"] == mb["fingerprints"]["command"]

    assert main(["--store", store_dir, "diff", a, b]) == 0
    out = capsys.readouterr().out
    assert "same fingerprint" not in out and "same code" not in out
    assert "changed    model.py" in out
    assert "--- a/model.py" in out and "+++ b/model.py" in out
    assert "@@ -1" in out and "-_MOMENTUM = 0.9" in out and "+_MOMENTUM = 0.5" in out

    # the whole tree comes back: the re-run imports model and pkg.data from it
    from mlrepro.analysis.reproduce import reproduce_run

    result = reproduce_run(store, a, say=lambda *_: None, child_stdout=subprocess.DEVNULL)
    assert result.verdict["kind"] == "bit-identical", result.verdict
    assert any("4 stored module(s)" in note for note in result.code["notes"])
    new = store.read_manifest(result.new_run)
    assert new["code"]["modules"] == ma["code"]["modules"]
    assert new["fingerprints"]["code"] == ma["fingerprints"]["code"]


def test_modules_of_installed_packages_the_stdlib_and_mlrepro_are_not_user_code(tmp_path):
    from mlrepro.capture.modules import user_module_paths

    import json as stdlib_module  # noqa: F401 - in sys.modules either way
    paths = user_module_paths()
    assert not any("site-packages" in p or "dist-packages" in p for p in paths)
    assert not any(p.startswith(os.path.join(ROOT, "mlrepro") + os.sep) for p in paths)
    assert os.path.realpath(stdlib_module.__file__) not in paths


# -- fingerprints by part -----------------------------------------------------------------

def _manifest(**over):
    m = {"code": {"commit": "c" * 40, "patch": None, "entry_point_object": "e" * 64,
                  "modules": {"train.py": "e" * 64, "model.py": "m" * 64},
                  "argv": ["/abs/train.py", "--epochs", "2"]},
         "params": {}, "auto_params": {"optimizer": {"class": "SGD", "learning_rate": 0.001}},
         "data": {}, "environment": {"python": "3.11"}, "seed": 1, "determinism": {}}
    for key, value in over.items():
        m[key] = value
    return m


def test_each_part_of_the_fingerprint_is_separately_comparable():
    base = fingerprints(_manifest())
    assert set(base) == {"code", "command", "params", "config", "data", "environment", "run"}
    lr = fingerprints(_manifest(auto_params={"optimizer": {"class": "SGD",
                                                           "learning_rate": 0.01}}))
    assert lr["config"] != base["config"] and lr["run"] != base["run"]
    assert {k for k in base if base[k] != lr[k]} == {"config", "run"}
    cmd = _manifest()
    cmd["code"] = dict(cmd["code"], argv=["/abs/train.py", "--epochs", "3"])
    assert {k for k, v in fingerprints(cmd).items() if v != base[k]} == {"command", "run"}
    moved = _manifest()
    moved["code"] = dict(moved["code"], argv=["/elsewhere/train.py", "--epochs", "2"])
    assert fingerprints(moved) == base          # where the script lives is not the experiment
    mod = _manifest()
    mod["code"] = dict(mod["code"], modules={"train.py": "e" * 64, "model.py": "n" * 64})
    assert {k for k, v in fingerprints(mod).items() if v != base[k]} == {"code", "run"}


# -- secrets in warnings and events -------------------------------------------------------

def test_warnings_and_events_are_redacted_like_params(tmp_path):
    import mlrepro

    store_dir = str(tmp_path / "store")
    url = "https://deploy:PLANTEDwarntoken@git.example.com/x.git"
    key = "AKIAPLANTEDWARN00000"
    with mlrepro.start_run(project="secrets", store=store_dir, capture=False) as run:
        run.warn(f"could not fetch {url} with key {key}")
        run.event("custom", source=url, api_key="PLANTEDeventkey", note=f"key {key}")
    leaks = []
    for root, _dirs, files in os.walk(store_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                data = fh.read()
            leaks += [(name, s) for s in ("PLANTEDwarntoken", key, "PLANTEDeventkey")
                      if s.encode() in data]
    assert leaks == []
    events = LocalStore(store_dir).read_events(run.id)
    warning = [e for e in events if e["kind"] == "warning"][0]
    assert warning["message"] == "could not fetch https://***@git.example.com/x.git with key ***"
    custom = [e for e in events if e["kind"] == "custom"][0]
    assert custom["api_key"] == "***" and custom["source"].startswith("https://***@")


def test_a_data_argument_is_the_same_command_relative_or_absolute():
    data = {"train": {"kind": "files", "paths": ["/work/data/train.npz"], "digest": "d"}}
    rel = _manifest(data=data)
    rel["code"] = dict(rel["code"], argv=["train.py", "--data", "../data/train.npz"],
                       cwd="/work/proj")
    absolute = _manifest(data=data)
    absolute["code"] = dict(absolute["code"], cwd="/tmp/x",
                            argv=["/tmp/x/train.py", "--data", "/work/data/train.npz"])
    assert fingerprints(rel)["command"] == fingerprints(absolute)["command"]
    other = _manifest(data=data)
    other["code"] = dict(other["code"], argv=["train.py", "--data", "../data/other.npz"],
                         cwd="/work/proj")
    assert fingerprints(other)["command"] != fingerprints(rel)["command"]


LATE = """\
import sys
import mlrepro
if sys.argv[1] == "before":
    import tensorflow
run = mlrepro.start_run(project="order")
if sys.argv[1] == "after":
    import tensorflow                      # the usual order: after `start_run`
run.finish()
print("run_id=" + run.id)
"""


def test_frameworks_are_recorded_whether_imported_before_or_after_the_run_started(tmp_path):
    proj = tmp_path / "order"
    proj.mkdir()
    (proj / "late.py").write_text(LATE)
    store_dir = str(tmp_path / "store")
    env = _env(tmp_path, MLREPRO_STORE=store_dir, TF_CPP_MIN_LOG_LEVEL="3")
    before = _run(str(proj), ["late.py", "before"], env)
    after = _run(str(proj), ["late.py", "after"], env)
    store = LocalStore(store_dir)
    mb, ma = store.read_manifest(before), store.read_manifest(after)
    assert ma["environment"]["frameworks"] == mb["environment"]["frameworks"]
    assert "tensorflow" in ma["environment"]["frameworks"]
    assert "tf_built_with_cuda" in ma["environment"]["frameworks"]    # known only once imported
    assert ma["fingerprints"]["environment"] == mb["fingerprints"]["environment"]
