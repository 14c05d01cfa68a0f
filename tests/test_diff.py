"""`mlrepro diff` and `mlrepro runs --same-as`: what differs between two real runs.

The comparisons in `mlrepro.compare` are pure and tested on plain dicts first;
then real runs of real scripts (Keras training, and a fast TensorFlow-free
script) go through the command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from mlrepro.cli import main
from mlrepro.compare import (compare_curves, diff_environment, diff_mapping, environment_drift,
                             summarize_series)
from mlrepro.analysis.diff import header_lines
from mlrepro.compare.sections import diff_packages
from mlrepro.store import open_store

from compare_scripts.workspace import (COUNT, TRAIN_TINY, edit_line, git, make_repo, run_env,
                                       run_script, write_regression_data, write_text_data)


# -- pure comparisons ----------------------------------------------------------------------

def test_diff_mapping_reports_added_removed_and_changed_keys():
    d = diff_mapping({"lr": 0.1, "bs": 32, "opt": "sgd", "n": float("nan")},
                     {"lr": 0.05, "bs": 32.0, "wd": 0.0, "n": float("nan")})
    assert d == {"added": {"wd": 0.0}, "removed": {"opt": "sgd"},
                 "changed": {"lr": {"a": 0.1, "b": 0.05}}}
    assert diff_mapping({"flag": True}, {"flag": 1})["changed"] == {"flag": {"a": True, "b": 1}}


def test_packages_are_sorted_into_upgraded_downgraded_added_removed():
    d = diff_packages({"numpy": "1.26.4", "keras": "3.15.1", "six": "1.16", "tf": "2.21.0rc1"},
                      {"numpy": "2.4.6", "keras": "3.9.0", "absl-py": "2.1", "tf": "2.21.0"})
    assert d["upgraded"] == {"numpy": {"a": "1.26.4", "b": "2.4.6"},
                             "tf": {"a": "2.21.0rc1", "b": "2.21.0"}}
    assert d["downgraded"] == {"keras": {"a": "3.15.1", "b": "3.9.0"}}
    assert d["added"] == {"absl-py": "2.1"} and d["removed"] == {"six": "1.16"}


def test_environment_diff_names_framework_cuda_and_hardware_changes():
    a = {"python": "3.11.7", "machine": "x86_64", "cpu": {"model": "Xeon", "cores": 8},
         "accelerators": ["cpu"], "gpus": [], "frameworks": {"tensorflow": "2.21.0", "cuda": None},
         "packages": {"tensorflow": "2.21.0"}, "variables": {"TF_DETERMINISTIC_OPS": "1",
                                                              "MLREPRO_STORE": "/a"},
         "hostname": "a"}
    b = {"python": "3.11.7", "machine": "x86_64", "cpu": {"model": "EPYC", "cores": 8},
         "accelerators": ["NVIDIA H100"], "gpus": [{"name": "NVIDIA H100", "driver": "550.1"}],
         "frameworks": {"tensorflow": "2.20.0", "cuda": "12.5", "keras": "3.15.1"},
         "packages": {"tensorflow": "2.20.0"}, "variables": {"MLREPRO_STORE": "/b"},
         "hostname": "b"}
    d = diff_environment(a, b)
    lines = environment_drift(d)
    assert "cpu.model: Xeon -> EPYC" in lines
    assert 'accelerators: ["cpu"] -> ["NVIDIA H100"]' in lines
    assert "gpus: none -> NVIDIA H100 (driver 550.1)" in lines
    assert "tensorflow: 2.21.0 -> 2.20.0" in lines          # framework version
    assert "package tensorflow downgraded: 2.21.0 -> 2.20.0" in lines
    assert "variable TF_DETERMINISTIC_OPS unset (was 1)" in lines
    assert not any("MLREPRO_STORE" in line or "hostname" in line for line in lines)
    # CUDA recorded on one side only (not built with CUDA / not imported) is not a change;
    # keras missing on one side is "not imported yet", not drift.
    assert not any(line.startswith(("cuda", "keras")) for line in lines)
    assert diff_environment(a, a)["same"]


def test_first_difference_of_curves_is_the_first_differing_step():
    a = {"loss": [(0, 1.0), (1, 0.5), (2, 0.25)], "acc": [(0, 0.1), (1, 0.2)]}
    b = {"loss": [(0, 1.0), (1, 0.5), (2, 0.26)], "acc": [(0, 0.1), (1, 0.2)],
         "epoch_time": [(0, 3.0)]}
    c = compare_curves(a, b)
    assert not c.identical and not c.within
    assert (c.first_divergence.step, c.first_divergence.metric) == (2, "loss")
    assert c.per_metric["acc"]["first_difference"] is None
    assert c.ignored == ["epoch_time"]


def test_diff_header_names_runs_by_what_differs_and_keeps_the_ids():
    a = {"id": "20260101T000000-aaaa", "name": "20260101T000000-aaaa"}
    b = {"id": "20260101T000001-bbbb", "name": "small-lr"}
    assert header_lines([a, b], ["lr=0.1", "lr=0.01"], 80) == [
        "A  lr=0.1   20260101T000000-aaaa", "B  lr=0.01  20260101T000001-bbbb  small-lr"]
    # nothing differs: the labels are the short id or the name, not repeated beside them
    assert header_lines([a, b], ["aaaa", "small-lr"], 80) == [
        "A            20260101T000000-aaaa", "B  small-lr  20260101T000001-bbbb"]
    long = header_lines([a, b], ["x" * 36, "y" * 36], 60)
    assert all(len(line) <= 60 and line.endswith("…") for line in long)


def test_best_value_is_max_for_accuracy_and_min_for_loss():
    assert summarize_series("val_accuracy", [(0, 0.5), (1, 0.9), (2, 0.8)])["best"] == 0.9
    s = summarize_series("val_loss", [(0, 0.5), (1, 0.2), (2, 0.3)])
    assert (s["best"], s["best_step"], s["final"], s["final_step"]) == (0.2, 1, 0.3, 2)


# -- two real Keras training runs: one hyperparameter and one line of code differ ----------

@pytest.fixture(scope="module")
def keras_pair(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("diff-keras"))
    repo = make_repo(base, TRAIN_TINY, "train.py")
    data = write_regression_data(os.path.join(base, "data", "train.npz"))
    env = run_env(base)
    run_a = run_script(repo, "train.py", ["--data", data, "--lr", "0.05", "--out",
                                          os.path.join(base, "out-a")], env)
    edit_line(os.path.join(repo, "train.py"), "HIDDEN = 8", "HIDDEN = 6")
    run_b = run_script(repo, "train.py", ["--data", data, "--lr", "0.1", "--out",
                                          os.path.join(base, "out-b")], env)
    return {"store": env["MLREPRO_STORE"], "a": run_a, "b": run_b, "repo": repo}


def _diff_json(capsys, store, a, b, *extra):
    assert main(["diff", a, b, "--store", store, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.tf
@pytest.mark.slow
def test_diff_shows_exactly_the_changed_hyperparameter_and_code_line(keras_pair, capsys):
    d = _diff_json(capsys, keras_pair["store"], keras_pair["a"], keras_pair["b"])
    assert d["params"]["params"] == {"added": {}, "removed": {},
                                     "changed": {"lr": {"a": 0.05, "b": 0.1}}}
    assert d["params"]["auto_params"] == {"added": {}, "removed": {}, "changed": {}}
    code = d["code"]
    assert code["commit"]["same"] and code["patch"]["a"] is None and code["patch"]["b"]
    source = code["source"]
    assert source["how"] == "git" and source["commits"] == []
    changed = [line for line in source["unified_diff"].splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-HIDDEN = 8", "+HIDDEN = 6"]
    assert d["data"]["same"] and d["data"]["inputs"]["train"]["status"] == "same"
    store = open_store(keras_pair["store"])
    packages = [store.read_manifest(keras_pair[side])["environment"]["packages"]
                for side in ("a", "b")]
    if packages[0] == packages[1]:
        assert d["environment"]["same"], environment_drift(d["environment"])
    else:  # the shared venv changed between the runs: only those packages may be listed
        assert all(line.startswith("package ") for line in environment_drift(d["environment"]))
    assert d["determinism"]["same"] and d["determinism"]["a"]["deterministic"]
    loss = d["metrics"]["metrics"]["loss"]
    assert not loss["same_curve"] and loss["first_difference"]["step"] >= 0
    assert loss["a"]["final"] != loss["b"]["final"] and loss["a"]["points"] == 2
    assert d["labels"] == ["lr=0.05", "lr=0.1"]   # each run named by what differs


@pytest.mark.tf
@pytest.mark.slow
def test_diff_text_has_one_block_per_section(keras_pair, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per metric (narrower splits them)
    assert main(["diff", keras_pair["a"].split("-")[1][:6], keras_pair["b"].split("-")[1][:6],
                 "--store", keras_pair["store"]]) == 0
    text = capsys.readouterr().out
    assert "params:\n  changed  lr: 0.05 -> 0.1\ncode:" in text
    assert text.splitlines()[:2] == [f"A  lr=0.05  {keras_pair['a']}",
                                     f"B  lr=0.1   {keras_pair['b']}"]
    assert "    -HIDDEN = 8\n    +HIDDEN = 6" in text
    assert "  arguments  --lr 0.05 -> 0.1; --out " in text
    assert "data:\n  same: train\n" in text
    assert "determinism:\n  same (seed 1, deterministic True)" in text
    assert "batch/loss: final" in text and "curves differ from step 0" in text
    assert "identical param not shown; --all shows them)" in text.splitlines()[-1]
    assert main(["diff", keras_pair["a"], keras_pair["b"], "--all",
                 "--store", keras_pair["store"]]) == 0
    every = capsys.readouterr().out
    assert "data:\n  train: same (" in every
    assert "--all shows them" not in every and "  same     " in every


# -- fast runs without TensorFlow ------------------------------------------------------------

@pytest.fixture
def count_repo(tmp_path):
    base = str(tmp_path)
    repo = make_repo(base, COUNT, "count.py")
    data = write_text_data(os.path.join(base, "data", "d.txt"))
    return {"base": base, "repo": repo, "data": data, "env": run_env(base),
            "store": os.path.join(base, "store")}


def test_diff_of_committed_change_lists_the_commit_range(count_repo, capsys):
    r = count_repo
    a = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    edit_line(os.path.join(r["repo"], "count.py"), "SCALE_OFFSET = 0.0", "SCALE_OFFSET = 0.5")
    git(r["repo"], "commit", "-q", "-am", "offset the scale")
    b = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    d = _diff_json(capsys, r["store"], a, b)
    commits = d["code"]["source"]["commits"]
    assert [(c["side"], c["subject"]) for c in commits] == [("b", "offset the scale")]
    assert "+SCALE_OFFSET = 0.5" in d["code"]["source"]["unified_diff"]
    assert d["params"]["same"] and not d["code"]["same"]
    assert main(["diff", a, b, "--store", r["store"]]) == 0
    assert "+ " + commits[0]["commit"][:12] + " offset the scale" in capsys.readouterr().out


def test_diff_without_the_repository_diffs_the_stored_entry_points(count_repo, capsys,
                                                                    monkeypatch):
    r = count_repo
    a = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    edit_line(os.path.join(r["repo"], "count.py"), "SCALE_OFFSET = 0.0", "SCALE_OFFSET = 2.0")
    git(r["repo"], "commit", "-q", "-am", "bigger offset")
    b = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    shutil.rmtree(os.path.join(r["repo"], ".git"))  # the repository is gone
    monkeypatch.chdir(r["base"])
    source = _diff_json(capsys, r["store"], a, b)["code"]["source"]
    assert source["how"] == "stored modules" and "--repo" in source["note"]
    assert "--- a/count.py\n+++ b/count.py" in source["unified_diff"]
    assert "-SCALE_OFFSET = 0.0\n+SCALE_OFFSET = 2.0" in source["unified_diff"]


def test_diff_shows_which_data_files_changed(count_repo, capsys):
    r = count_repo
    folder = os.path.dirname(r["data"])
    write_text_data(os.path.join(folder, "e.txt"), "other\n")
    a = run_script(r["repo"], "count.py", ["--data", folder], r["env"])
    write_text_data(os.path.join(folder, "e.txt"), "changed\n")
    b = run_script(r["repo"], "count.py", ["--data", folder], r["env"])
    entry = _diff_json(capsys, r["store"], a, b)["data"]["inputs"]["train"]
    assert entry["status"] == "changed"
    assert entry["files"] == {"added": [], "removed": [], "changed": ["e.txt"]}


def test_runs_same_as_lists_the_runs_with_the_same_fingerprint(count_repo, capsys):
    r = count_repo
    first = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    again = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    other = run_script(r["repo"], "count.py", ["--data", r["data"], "--scale", "3"], r["env"])
    prefix = first.split("-")[1][:7]
    assert main(["runs", "--same-as", prefix, "--store", r["store"], "--json"]) == 0
    listed = [row["id"] for row in json.loads(capsys.readouterr().out)]
    assert listed == [again]
    assert main(["runs", "--same-as", other, "--store", r["store"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_diff_command_line_in_a_real_process(count_repo):
    r = count_repo
    a = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    b = run_script(r["repo"], "count.py", ["--data", r["data"], "--scale", "2"], r["env"])
    proc = subprocess.run([sys.executable, "-m", "mlrepro", "diff", a, b, "--json"],
                          env=r["env"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["params"]["params"]["changed"] == {"scale": {"a": 1.0, "b": 2.0}}
    bad = subprocess.run([sys.executable, "-m", "mlrepro", "diff", a, "nosuchrun"],
                         env=r["env"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no run matches 'nosuchrun'" in bad.stderr
