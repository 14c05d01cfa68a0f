"""The `mlrepro` command line: runs, show, index, recover; exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import mlrepro
from mlrepro.cli import main
from mlrepro.store.local import LocalStore

from conftest import child_env


def _runs(store):
    ids = []
    for lr, opt in ((0.1, "sgd"), (0.01, "adam"), (0.1, "adam")):
        with mlrepro.start_run(project="cifar" if opt == "sgd" else "mnist", store=store,
                               params={"lr": lr, "opt": opt}, name=f"{opt}-{lr}") as run:
            for step in range(5):
                run.log_metrics({"loss": lr * 10 - step * 0.01, "acc": step / 5}, step=step)
        ids.append(run.id)
    return ids


def test_runs_lists_a_table_and_filters(store_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    a, b, c = _runs(store_dir)
    assert main(["runs", "--store", store_dir]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["ID", "PROJECT", "STATUS", "NAME"]
    assert out.splitlines()[0].split()[-3:] == ["lr", "opt", "loss"]  # differing params
    assert all(i in out for i in (a, b, c)) and "sgd-0.1" in out
    assert main(["runs", "--store", store_dir, "--project", "mnist", "--param", "lr=0.1",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [c]
    assert main(["runs", "--store", store_dir, "--sort", "loss", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)][0] == b
    assert main(["runs", "--store", store_dir, "--status", "failed"]) == 0
    assert capsys.readouterr().out.strip() == "no runs"


def test_runs_uses_the_store_from_the_environment(store_dir, capsys):
    _runs(store_dir)  # MLREPRO_STORE points at store_dir (conftest)
    assert main(["runs", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_show_prints_everything_readable_and_as_json(store_dir, capsys):
    a, _b, _c = _runs(store_dir)
    assert main(["show", a.split("-")[1][:7], "--store", store_dir]) == 0
    out = capsys.readouterr().out
    for needle in (a, "status      finished", "params:", "lr", "metrics:", "loss", "code:",
                   "environment:", "python 3."):
        assert needle in out
    assert main(["show", a, "--json", "--metrics", "--store", store_dir]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["id"] == a and [s for s, _v in data["metrics"]["loss"]] == list(range(5))


@pytest.mark.parametrize("argv,message", [
    (["show", "nosuchrun"], "no run matches 'nosuchrun'"),
    (["show", "2"], "matches 3 runs"),
    (["runs", "--param", "lr"], "--param 'lr' is not KEY=VALUE"),
    (["runs", "--status", "odd"], "invalid choice"),
    (["runs", "--store", "gs://bucket"], "unknown scheme 'gs'"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(store_dir, capsys, argv, message):
    _runs(store_dir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_corrupt_record_is_reported_and_the_others_still_listed(store_dir, capsys):
    a, b, c = _runs(store_dir)
    with open(os.path.join(LocalStore(store_dir).run_dir(b), "run.json"), "w") as fh:
        fh.write("{not json")
    assert main(["index", "--rebuild", "--store", store_dir]) == 0
    captured = capsys.readouterr()
    assert "indexed 2 runs" in captured.out and b in captured.err
    assert main(["runs", "--json", "--store", store_dir]) == 0
    assert {r["id"] for r in json.loads(capsys.readouterr().out)} == {a, c}
    assert main(["show", b, "--store", store_dir]) == 2
    assert "is corrupt" in capsys.readouterr().err
    assert main(["show", a, "--store", store_dir]) == 0


def test_the_installed_command_runs_in_a_real_process(store_dir):
    _runs(store_dir)
    proc = subprocess.run([sys.executable, "-m", "mlrepro", "runs", "--store", store_dir],
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.count("finished") == 3
    proc = subprocess.run([sys.executable, "-m", "mlrepro", "show", "zzz", "--store", store_dir],
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("mlrepro: error: no run matches")


def test_importing_mlrepro_pulls_in_no_framework():
    code = ("import sys, mlrepro; bad = [m for m in ('tensorflow', 'keras', 'sagemaker', "
            "'boto3', 'numpy') if m in sys.modules]; print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr
