"""`mlrepro reproduce RUN`: rebuild the code, check environment and data, re-run, judge.

Real runs of real scripts in git repositories made by the tests; the Keras run is
deterministic on CPU and its code came from an uncommitted patch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from mlrepro.cli import main
from mlrepro.compare import compare_artifacts, compare_curves, judge
from mlrepro.store import ManifestWrite, open_store

from compare_scripts.workspace import (COUNT, TRAIN_CALLBACK, TRAIN_TINY, edit_line, git,
                                       make_repo, run_env, run_script, write_regression_data,
                                       write_text_data)


# -- the verdict, on plain data --------------------------------------------------------------

def test_verdict_is_bit_identical_only_when_every_point_and_artifact_matches():
    a = {"loss": [(0, 1.0), (1, 0.5)]}
    arts = {"w.h5": {"kind": "file", "digest": "d1"}}
    v = judge(compare_curves(a, {"loss": [(0, 1.0), (1, 0.5)]}),
              compare_artifacts(arts, {"w.h5": {"kind": "file", "digest": "d1"}}))
    assert (v.kind, v.exit_code) == ("bit-identical", 0)
    assert "2 points of 1 metric equal to the last bit; 1 artifact identical" in v.message
    v = judge(compare_curves(a, {"loss": [(0, 1.0), (1, 0.5)]}),
              compare_artifacts(arts, {"w.h5": {"kind": "file", "digest": "d2"}}))
    assert v.kind == "within-tolerance" and "artifact w.h5 differs" in v.message


def test_verdict_within_tolerance_names_the_largest_deviation():
    v = judge(compare_curves({"loss": [(0, 1.0), (1, 0.5)], "acc": [(1, 0.9)]},
                             {"loss": [(0, 1.0 + 1e-9), (1, 0.5 + 4e-8)], "acc": [(1, 0.9)]},
                             rtol=1e-6), [])
    assert (v.kind, v.exit_code) == ("within-tolerance", 0)
    assert "largest deviation loss at step 1" in v.message


def test_verdict_diverged_names_the_first_step_and_metric():
    v = judge(compare_curves({"loss": [(0, 1.0), (1, 0.5), (2, 0.2)], "acc": [(2, 0.5)]},
                             {"loss": [(0, 1.0), (1, 0.5), (2, 0.3)], "acc": [(2, 0.6)]},
                             rtol=1e-3), [])
    assert (v.kind, v.exit_code) == ("diverged", 1)
    assert v.message.startswith("diverged at step 2 on acc")
    v = judge(compare_curves({"loss": [(0, 1.0), (1, 0.5)]}, {"loss": [(0, 1.0)]}), [])
    assert v.kind == "diverged" and "missing from the new run" in v.message


def test_volatile_members_of_exports_do_not_make_artifacts_differ():
    saved = {"kind": "dir", "tree": "t1", "files": {
        "saved_model.pb": {"digest": "g"}, "fingerprint.pb": {"digest": "f1"},
        "assets/mlrepro_run.json": {"digest": "r1"}, "variables/variables.index": {"digest": "v"}}}
    again = {"kind": "dir", "tree": "t2", "files": dict(saved["files"], **{
        "fingerprint.pb": {"digest": "f2"}, "assets/mlrepro_run.json": {"digest": "r2"}})}
    keras_a = {"kind": "file", "digest": "k1"}
    keras_b = {"kind": "file", "digest": "k2"}
    content = {"model.keras": ({"metadata.json": "m", "model.weights.h5": "w"},
                               {"metadata.json": "m", "model.weights.h5": "w"})}
    raw = {"model.keras": ({"metadata.json": "m1", "model.weights.h5": "w"},
                           {"metadata.json": "m2", "model.weights.h5": "w"})}
    out = compare_artifacts({"saved_model": saved, "model.keras": keras_a},
                            {"saved_model": again, "model.keras": keras_b}, content, raw)
    assert [(a["name"], a["status"], a["volatile"]) for a in out] == [
        ("model.keras", "identical-except-volatile", ["metadata.json"]),
        ("saved_model", "identical-except-volatile",
         ["assets/mlrepro_run.json", "fingerprint.pb"])]
    weights_b = {"kind": "file", "digest": "k3"}
    content = {"model.keras": ({"model.weights.h5": "w"}, {"model.weights.h5": "w2"})}
    [out] = compare_artifacts({"model.keras": keras_a}, {"model.keras": weights_b}, content)
    assert (out["status"], out["members"]) == ("differs", ["model.weights.h5"])


def test_saved_files_are_compared_by_content_not_save_metadata():
    import io
    import time
    import zipfile

    from mlrepro.compare.artifacts import member_digest

    one = json.dumps({"layers": [{"shared_object_id": 140277025994128, "units": 6}]}).encode()
    two = json.dumps({"layers": [{"units": 6, "shared_object_id": 140351129173136}]}).encode()
    other = json.dumps({"layers": [{"units": 8, "shared_object_id": 1}]}).encode()
    assert member_digest("config.json", one) == member_digest("config.json", two)
    assert member_digest("config.json", one) != member_digest("config.json", other)
    assert member_digest("model.weights.h5", one) != member_digest("model.weights.h5", two)

    def npz(stamp, payload):       # zip members stamped with the save time, as np.savez does
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(zipfile.ZipInfo("v0.npy", time.localtime(stamp)[:6]), payload)
        return buf.getvalue()

    first, later = npz(1_000_000_000, b"w"), npz(1_700_000_000, b"w")
    assert first != later
    assert member_digest("state.npz", first) == member_digest("state.npz", later)
    assert member_digest("state.npz", first) != member_digest("state.npz", npz(1_000_000_000, b"x"))


def test_recorded_command_keeps_its_arguments_but_refuses_redacted_secrets(tmp_path):
    from mlrepro.errors import MlreproError
    from mlrepro.analysis.rebuild import Rebuilt
    from mlrepro.analysis.reproduce import command_for

    data = write_text_data(str(tmp_path / "data" / "d.txt"))
    rebuilt = Rebuilt(root=str(tmp_path / "src"), entry=str(tmp_path / "src" / "t.py"),
                      cwd=str(tmp_path / "src"), how="test")
    manifest = {"id": "r1", "code": {"argv": ["t.py", "--data", "../data/d.txt", "--out=../o"],
                                     "cwd": str(tmp_path / "repo")},
                "data": {"train": {"kind": "files", "paths": [data]}}}
    notes = []
    cmd = command_for(manifest, rebuilt, "python", notes)
    assert cmd == ["python", rebuilt.entry, "--data", data, "--out=../o"]  # outputs stay put
    assert "resolved against the recorded working directory" in notes[0]
    manifest["code"]["argv"] += ["--api-key=***"]
    with pytest.raises(MlreproError, match="argument 4 .* was redacted as a secret"):
        command_for(manifest, rebuilt, "python", [])


def test_data_recheck_says_missing_changed_or_unverifiable(tmp_path):
    from mlrepro.capture.data import fingerprint_array, fingerprint_files
    from mlrepro.analysis.recheck import recheck_data

    a = write_text_data(str(tmp_path / "a.txt"), "one\n")
    b = write_text_data(str(tmp_path / "b.txt"), "two\n")
    import numpy as np

    recorded = {"a": fingerprint_files([a]), "b": fingerprint_files([b]),
                "arr": fingerprint_array(np.arange(3))}
    os.unlink(a)
    write_text_data(b, "three\n")
    checks = {c.name: c for c in recheck_data(recorded)}
    assert checks["a"].status == "missing" and "no longer exists" in checks["a"].detail
    assert checks["b"].status == "changed" and "changed files: b.txt" in checks["b"].detail
    assert checks["arr"].status == "unverifiable"


# -- a deterministic Keras run whose code came from an uncommitted patch ----------------------

@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("reproduce-keras"))
    repo = make_repo(base, TRAIN_TINY, "train.py")
    write_regression_data(os.path.join(base, "data", "train.npz"))
    env = run_env(base)
    script = os.path.join(repo, "train.py")
    edit_line(script, "HIDDEN = 8", "HIDDEN = 6")      # the run's code is commit + this patch
    run_id = run_script(repo, "train.py", ["--data", "../data/train.npz", "--out", "../out"], env)
    git(repo, "checkout", "--", "train.py")            # the patch now lives only in the store
    return {"base": base, "repo": repo, "env": env, "run": run_id,
            "store": env["MLREPRO_STORE"], "data": os.path.join(base, "data", "train.npz")}


@pytest.fixture(scope="module")
def reproduced(keras_run):
    """`mlrepro reproduce RUN` in a real process, from a directory outside the repository."""
    proc = subprocess.run([sys.executable, "-m", "mlrepro", "reproduce", keras_run["run"]],
                          cwd=keras_run["base"], env=keras_run["env"], capture_output=True,
                          text=True, timeout=600)
    store = open_store(keras_run["store"])
    old = store.read_manifest(keras_run["run"])
    new = [store.read_manifest(i) for i in store.run_ids() if i != keras_run["run"]]
    return {"proc": proc, "old": old, "new": new}


@pytest.mark.tf
@pytest.mark.slow
def test_reproduce_of_a_deterministic_cpu_run_says_bit_identical(reproduced):
    proc = reproduced["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict      bit-identical: " in proc.stdout
    assert "artifact model.weights.h5: identical" in proc.stdout
    assert "artifact model.keras: identical apart from save metadata (config.json, " \
        "metadata.json)" in proc.stdout
    [new] = reproduced["new"]
    assert new["parent"] == {"kind": "reproduction-of", "run": reproduced["old"]["id"]}
    assert new["reproduction"]["verdict"] == "bit-identical"
    assert new["fingerprint"] == reproduced["old"]["fingerprint"]  # the same experiment
    assert new["artifacts"]["model.weights.h5"]["digest"] == \
        reproduced["old"]["artifacts"]["model.weights.h5"]["digest"]


@pytest.mark.tf
@pytest.mark.slow
def test_reproduce_rebuilds_the_run_from_its_uncommitted_patch(reproduced, keras_run):
    old, [new] = reproduced["old"], reproduced["new"]
    assert old["code"]["patch"], "the original run should have recorded a patch"
    with open(os.path.join(keras_run["repo"], "train.py")) as fh:
        assert "HIDDEN = 8" in fh.read()      # the working tree no longer has the change...
    assert f"+ uncommitted patch {old['code']['patch'][:12]}" in reproduced["proc"].stdout
    # ...yet the new run ran exactly the patched code (and got the same numbers).
    for key in ("commit", "patch", "entry_point_object"):
        assert new["code"][key] == old["code"][key], key
    assert new["params"] == old["params"] and new["seed"] == old["seed"] == 1
    assert "code         same commit, patch and entry point as recorded" in \
        reproduced["proc"].stdout
    assert "data argument '../data/train.npz' resolved against the recorded working directory" \
        in reproduced["proc"].stdout


@pytest.mark.tf
@pytest.mark.slow
def test_reproduce_refuses_when_the_data_file_changed(keras_run, capsys):
    with open(keras_run["data"], "rb") as fh:
        original = fh.read()
    store = open_store(keras_run["store"])
    before = set(store.run_ids())
    try:
        write_regression_data(keras_run["data"], seed=99)
        code = main(["reproduce", keras_run["run"], "--store", keras_run["store"]])
    finally:
        with open(keras_run["data"], "wb") as fh:
            fh.write(original)
    err = capsys.readouterr().err
    assert code == 2
    assert f"data 'train' changed since run {keras_run['run']} was recorded" in err
    assert "changed files: train.npz" in err and "--allow-data-drift" in err
    assert set(store.run_ids()) == before          # nothing was re-run


@pytest.mark.tf
@pytest.mark.slow
def test_reproduce_check_only_checks_everything_without_running(keras_run, capsys):
    store = open_store(keras_run["store"])
    before = set(store.run_ids())
    assert main(["reproduce", keras_run["run"], "--check-only", "--store",
                 keras_run["store"]]) == 0
    out = capsys.readouterr().out
    assert re.search(r"environment  (same as recorded|\d+ differences? from the record)", out)
    assert "data         train: same" in out and "check only   every check passed" in out
    assert set(store.run_ids()) == before


@pytest.mark.tf
@pytest.mark.slow
def test_reproduce_of_a_repro_callback_run_is_bit_identical(tmp_path, capsys):
    base = str(tmp_path)
    repo = make_repo(base, TRAIN_CALLBACK, "train.py")
    data = write_regression_data(os.path.join(base, "data", "train.npz"))
    env = run_env(base)
    run_id = run_script(repo, "train.py", ["--data", data, "--checkpoints",
                                           os.path.join(base, "ckpt")], env)
    assert main(["reproduce", run_id, "--store", env["MLREPRO_STORE"]]) == 0
    out = capsys.readouterr().out
    assert "verdict      bit-identical: " in out
    # Checkpoints, .keras and SavedModel exports hold the same content, saved at another
    # time by another run; the SavedModel is compared by its variables' values.
    assert "artifact checkpoints/epoch-00002: identical apart from save metadata" in out
    assert "artifact model.keras: identical apart from save metadata" in out
    assert "artifact saved_model: " in out and "differs" not in out
    assert "data         train: unverifiable" in out    # arrays: checked after the re-run
    assert "the new run read different data" not in out


# -- fast runs without TensorFlow ------------------------------------------------------------

@pytest.fixture
def count_repo(tmp_path):
    base = str(tmp_path)
    repo = make_repo(base, COUNT, "count.py")
    data = write_text_data(os.path.join(base, "data", "d.txt"))
    return {"base": base, "repo": repo, "data": data, "env": run_env(base),
            "store": os.path.join(base, "store")}


def test_reproduce_of_a_noisy_run_diverges_naming_the_first_step_and_metric(count_repo, capsys):
    r = count_repo
    run_id = run_script(r["repo"], "count.py", ["--data", r["data"], "--noise", "1.0"], r["env"])
    assert main(["reproduce", run_id, "--store", r["store"]]) == 1
    out = capsys.readouterr().out
    assert "verdict      diverged at step 0 on loss" in out
    assert "not compared (timings): step_time_seconds" in out


def test_reproduce_within_tolerance_names_the_largest_deviation(count_repo, capsys):
    r = count_repo
    run_id = run_script(r["repo"], "count.py", ["--data", r["data"], "--noise", "1e-9"], r["env"])
    assert main(["reproduce", run_id, "--store", r["store"], "--rtol", "1e-6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"]["kind"] == "within-tolerance"
    assert "largest deviation loss at step" in result["verdict"]["message"]
    assert main(["reproduce", run_id, "--store", r["store"], "--rtol", "0", "--atol", "0"]) == 1


def test_reproduce_lists_environment_drift_and_strict_refuses(count_repo, capsys):
    r = count_repo
    run_id = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    store = open_store(r["store"])
    manifest = store.read_manifest(run_id)
    manifest["environment"]["packages"]["numpy"] = "1.0.0"   # as if recorded elsewhere
    store.write_batch([ManifestWrite(run_id, manifest)])
    assert main(["reproduce", run_id, "--store", r["store"], "--strict"]) == 2
    err = capsys.readouterr().err
    assert "the environment differs from run" in err and "package numpy upgraded: 1.0.0 ->" in err
    assert "drop --strict" in err
    assert main(["reproduce", run_id, "--store", r["store"]]) == 0
    out = capsys.readouterr().out
    assert "environment  1 difference from the record:" in out and "verdict      bit-identical" \
        in out


def test_reproduce_reports_variables_the_new_run_saw_differently(count_repo, capsys,
                                                                  monkeypatch):
    r = count_repo
    run_id = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=2")
    assert main(["reproduce", run_id, "--store", r["store"]]) == 0
    out = capsys.readouterr().out
    assert "environment  same as recorded" in out   # before the run: software and hardware
    assert "the new run recorded 1 more difference: variable TF_XLA_FLAGS set: " \
        "--tf_xla_auto_jit=2" in out


def test_reproduce_reuses_a_seed_that_mlrepro_generated(count_repo, capsys):
    r = count_repo
    run_id = run_script(r["repo"], "count.py", ["--data", r["data"], "--generated-seed"],
                        r["env"])
    store = open_store(r["store"])
    assert store.read_manifest(run_id)["determinism"]["seed_generated"]
    assert main(["reproduce", run_id, "--store", r["store"], "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"]["kind"] == "bit-identical"
    assert "draw" in result["verdict"]["curves"]["metrics"]   # the seeded random draws match
    assert store.read_manifest(result["new_run"])["seed"] == store.read_manifest(run_id)["seed"]


def test_reproduce_of_a_run_outside_git_uses_the_stored_script(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(COUNT, plain / "count.py")
    data = write_text_data(str(tmp_path / "d.txt"))
    env = run_env(str(tmp_path))
    run_id = run_script(str(plain), "count.py", ["--data", data], env)
    (plain / "count.py").write_text("raise SystemExit('the script on disk changed')\n")
    assert main(["reproduce", run_id, "--store", env["MLREPRO_STORE"]]) == 0
    out = capsys.readouterr().out
    assert "code         stored sources of 1 module(s)" in out and "bit-identical" in out


def test_reproduce_needs_the_commit_and_says_how_to_point_at_it(count_repo, capsys, monkeypatch):
    r = count_repo
    run_id = run_script(r["repo"], "count.py", ["--data", r["data"]], r["env"])
    moved = os.path.join(r["base"], "moved-repo")
    shutil.move(r["repo"], moved)
    monkeypatch.chdir(r["base"])
    assert main(["reproduce", run_id, "--store", r["store"]]) == 2
    assert "pass --repo PATH" in capsys.readouterr().err
    assert main(["reproduce", run_id, "--store", r["store"], "--repo", moved]) == 0
    assert "bit-identical" in capsys.readouterr().out
