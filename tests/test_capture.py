"""Capture: code state, environment, redaction of planted secrets."""

from __future__ import annotations

import json
import os
import subprocess

from mlrepro.capture import redact
from mlrepro.capture.code import capture_code
from mlrepro.capture.data import fingerprint_array, fingerprint_files
from mlrepro.capture.environment import capture_environment
from mlrepro.store.local import LocalStore

from conftest import child_env, run_py

HERE = os.path.dirname(os.path.abspath(__file__))

PLANTED = ["AKIAPLANTED000000000", "PLANTEDsecretaccesskeyvalue0123456789abcd",
           "PLANTEDsessiontoken", "PLANTEDdbpassword", "ghp_PLANTEDgithubtoken0123456789abcdefgh",
           "PLANTEDurlpass", "sk-PLANTEDparamsecret1234567890", "PLANTEDargvpassword",
           "hf_PLANTEDnestedtoken1234567890abcdef", "PLANTEDsmhpstoken", "PLANTEDremotetoken"]


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})


def test_planted_secrets_never_reach_the_store(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    script = repo / "train.py"
    script.write_text(open(os.path.join(HERE, "scripts", "secret_run.py")).read())
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "init")
    _git(repo, "remote", "add", "origin",
         "https://oauth2:PLANTEDremotetoken@gitlab.example.com/team/repo.git")
    script.write_text(script.read_text() + "\n# a local change\n")
    store = str(tmp_path / "store")
    env = child_env(
        AWS_ACCESS_KEY_ID="AKIAPLANTED000000000",
        AWS_SECRET_ACCESS_KEY="PLANTEDsecretaccesskeyvalue0123456789abcd",
        AWS_SESSION_TOKEN="PLANTEDsessiontoken",
        MLREPRO_DB_PASSWORD="PLANTEDdbpassword",
        GITHUB_TOKEN="ghp_PLANTEDgithubtoken0123456789abcdefgh",
        SM_HPS=json.dumps({"epochs": 3, "wandb_api_key": "PLANTEDsmhpstoken"}),
        SM_TRAINING_ENV=json.dumps({"hyperparameters": {"api_token": "PLANTEDsmhpstoken"},
                                    "job_name": "job-1"}),
        TF_CONFIG_URL="https://user:PLANTEDurlpass@host/x",
        PLANTED_PARAM="sk-PLANTEDparamsecret1234567890",
        PLANTED_URLPASS="PLANTEDurlpass",
        PLANTED_HF="hf_PLANTEDnestedtoken1234567890abcdef",
    )
    proc = run_py([str(script), store, "--password", "PLANTEDargvpassword"], env=env,
                  cwd=str(repo))
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.split()[-1]
    leaks = []
    for root, _dirs, files in os.walk(store):
        for f in files:
            data = open(os.path.join(root, f), "rb").read()
            leaks += [(f, s) for s in PLANTED if s.encode() in data]
    assert leaks == []
    m = LocalStore(store).read_manifest(run_id)
    # what was redacted is still visibly there, so the record stays useful
    assert m["params"]["api_key"] == "***" and m["params"]["lr"] == 0.1
    assert m["params"]["db"] == "postgres://***@db/x" and m["params"]["note"] == "uses ***"
    assert m["code"]["remote"] == "https://***@gitlab.example.com/team/repo.git"
    assert m["code"]["argv"][-2:] == ["--password", "***"]
    assert m["environment"]["variables"]["SM_HPS"] == {"epochs": 3, "wandb_api_key": "***"}
    assert "AWS_SECRET_ACCESS_KEY" not in m["environment"]["variables"]
    assert m["code"]["dirty"] is True
    events = LocalStore(store).read_events(run_id)
    assert [e["message"] for e in events if e["kind"] == "warning"] == [
        "cannot reach https://***@mirror.example.com/x with ***"]
    fetched = [e for e in events if e["kind"] == "fetched"][0]
    assert fetched["hf_token"] == "***" and fetched["note"] == "key ***"
    # and the warning printed on stderr is the redacted one (stderr also shows the user's
    # source line the warning names: its variable names are not secrets, their values are)
    assert "cannot reach https://***@mirror.example.com/x with ***" in proc.stderr
    assert [s for s in PLANTED if s in proc.stderr] == []


def test_redaction_rules():
    assert redact.redact_url("https://u:p@h.com/x?sig=abc&x=1") == "https://***@h.com/x?sig=***&x=1"
    assert redact.redact_argv(["--api-key=xyz", "--lr", "0.1", "--token", "t", "password=1"]) == [
        "--api-key=***", "--lr", "0.1", "--token", "***", "password=***"]
    assert redact.redact({"tokenizer": "bert", "max_tokens": 5, "author": "ann"}) == {
        "tokenizer": "bert", "max_tokens": 5, "author": "ann"}
    assert redact.redact_text("id AKIAABCDEFGHIJKLMNOP end") == "id *** end"


def test_code_capture_has_commit_branch_and_a_patch_that_rebuilds_the_tree(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("print('v1')\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "init")
    (repo / "train.py").write_text("print('v2')\n")
    (repo / "new_module.py").write_text("X = 1\n")
    snap = capture_code(argv=[str(repo / "train.py")], cwd=str(repo))
    assert snap.info["branch"] == "main" and snap.info["dirty"] is True
    assert len(snap.info["commit"]) == 40 and snap.info["untracked_files"] == 1
    # apply the patch to a clean checkout of the commit: the same tree comes back
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    patch = tmp_path / "p.diff"
    patch.write_bytes(snap.patch)
    _git(clone, "apply", str(patch))
    assert (clone / "train.py").read_text() == "print('v2')\n"
    assert (clone / "new_module.py").read_text() == "X = 1\n"


def test_environment_lists_packages_hardware_and_only_allowed_variables():
    env = capture_environment({"TF_ENABLE_ONEDNN_OPTS": "0", "HOME": "/root",
                               "SM_CURRENT_HOST": "algo-1"})
    assert env["variables"] == {"SM_CURRENT_HOST": "algo-1", "TF_ENABLE_ONEDNN_OPTS": "0"}
    assert "numpy" in env["packages"] and env["cpu"]["cores"] >= 1
    assert env["memory_bytes"] > 0 and env["accelerators"]


def test_file_fingerprints_change_with_content_and_are_cached(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for i in range(3):
        (d / f"part-{i}.bin").write_bytes(os.urandom(1000))
    first = fingerprint_files([str(d)])
    again = fingerprint_files([str(d)])
    assert first["digest"] == again["digest"] and again["cached"] == 3
    (d / "part-1.bin").write_bytes(os.urandom(1000))
    assert fingerprint_files([str(d)])["digest"] != first["digest"]


def test_array_fingerprint_depends_on_values_dtype_and_shape():
    import numpy as np

    a = np.arange(12, dtype=np.float32)
    assert fingerprint_array(a)["digest"] == fingerprint_array(a.copy())["digest"]
    assert fingerprint_array(a)["digest"] != fingerprint_array(a.reshape(3, 4))["digest"]
    assert fingerprint_array(a)["digest"] != fingerprint_array(a.astype(np.float64))["digest"]
