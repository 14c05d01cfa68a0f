"""`mlrepro trace PATH`: from a model on disk back to the run that produced it, and its lineage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

import mlrepro
from mlrepro.cli import main

from compare_scripts.workspace import (TRAIN_CALLBACK, TRAIN_TINY, fetch_artifact, make_repo,
                                       run_env, run_script, write_regression_data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One real Keras run that saved a weights file, a .keras file and a SavedModel."""
    base = str(tmp_path_factory.mktemp("trace-keras"))
    repo = make_repo(base, TRAIN_TINY, "train.py")
    data = write_regression_data(os.path.join(base, "data", "train.npz"))
    env = run_env(base)
    out = os.path.join(base, "out")
    run_id = run_script(repo, "train.py", ["--data", data, "--lr", "0.03", "--export",
                                           "--out", out], env)
    return {"store": env["MLREPRO_STORE"], "run": run_id, "out": out, "base": base,
            "env": env, "data": data}


def _trace(capsys, store, path):
    code = main(["trace", str(path), "--store", store, "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


@pytest.mark.tf
@pytest.mark.slow
def test_trace_finds_the_run_from_its_exported_saved_model(exported, capsys):
    code, result, _ = _trace(capsys, exported["store"], os.path.join(exported["out"],
                                                                     "saved_model"))
    assert code == 0
    top = result["runs"][0]
    assert top["id"] == exported["run"] and len(result["runs"]) == 1
    hows = {m["how"] for m in top["matches"]}
    assert hows == {"exact", "embedded"}   # tree digest and the embedded mlrepro_run.json
    lineage = top["lineage"]
    assert lineage["params"] == {"lr": 0.03, "epochs": 2}
    assert lineage["code"]["commit"] and lineage["code"]["entry_point"] == "train.py"
    assert lineage["data"]["train"]["digest"]
    assert lineage["seed"] == 1 and lineage["deterministic"]


@pytest.mark.tf
@pytest.mark.slow
def test_trace_finds_the_run_from_a_bare_weights_file_renamed_elsewhere(exported, capsys,
                                                                         tmp_path):
    copy = tmp_path / "deployed" / "final-weights.h5"
    copy.parent.mkdir()
    shutil.copy(os.path.join(exported["out"], "model.weights.h5"), copy)
    assert main(["trace", str(copy), "--store", exported["store"]]) == 0
    text = capsys.readouterr().out
    assert f"produced by run {exported['run']}" in text
    assert "matched exact: the file is artifact 'model.weights.h5'" in text
    assert "params   epochs=2, lr=0.03" in text and "code     commit " in text


@pytest.mark.tf
@pytest.mark.slow
def test_trace_finds_the_run_from_a_sagemaker_model_tar_gz(exported, capsys, tmp_path):
    archive = tmp_path / "model.tar.gz"   # SageMaker packs the model dir's contents
    with tarfile.open(archive, "w:gz") as tf:
        saved = os.path.join(exported["out"], "saved_model")
        for name in sorted(os.listdir(saved)):
            tf.add(os.path.join(saved, name), arcname=name)
    code, result, _ = _trace(capsys, exported["store"], archive)
    assert code == 0 and result["runs"][0]["id"] == exported["run"]
    assert "exact" in {m["how"] for m in result["runs"][0]["matches"]}


@pytest.mark.tf
@pytest.mark.slow
def test_trace_finds_a_re_saved_export_by_its_embedded_run_id(exported, capsys, tmp_path):
    # A copy whose bytes no longer match (a file dropped, another added) still names its run.
    copy = tmp_path / "saved_model"
    shutil.copytree(os.path.join(exported["out"], "saved_model"), copy)
    os.unlink(copy / "fingerprint.pb")
    (copy / "README").write_text("deployed copy\n")
    code, result, _ = _trace(capsys, exported["store"], copy)
    assert code == 0
    matches = result["runs"][0]["matches"]
    assert result["runs"][0]["id"] == exported["run"]
    assert {m["how"] for m in matches} == {"embedded", "member"}  # its variables still match
    assert any("variables/variables.index" in m["detail"] for m in matches)


@pytest.mark.tf
@pytest.mark.slow
def test_trace_finds_repro_callback_exports_fetched_from_the_store(tmp_path, capsys):
    base = str(tmp_path)
    repo = make_repo(base, TRAIN_CALLBACK, "train.py")
    data = write_regression_data(os.path.join(base, "data", "train.npz"))
    env = run_env(base)
    run_id = run_script(repo, "train.py", ["--data", data, "--checkpoints",
                                           os.path.join(base, "ckpt")], env)
    store = mlrepro.open_store(env["MLREPRO_STORE"])
    manifest = store.read_manifest(run_id)
    keras_file = fetch_artifact(store, manifest, "model.keras", str(tmp_path / "dl" / "m.keras"))
    saved = fetch_artifact(store, manifest, "saved_model", str(tmp_path / "dl" / "sm"))
    for path in (keras_file, saved):
        code, result, _ = _trace(capsys, env["MLREPRO_STORE"], path)
        assert code == 0 and result["runs"][0]["id"] == run_id
        assert {m["how"] for m in result["runs"][0]["matches"]} == {"exact", "embedded"}
    # A checkpoint file the callback wrote, found by content.
    ckpt = fetch_artifact(store, manifest, "checkpoints/epoch-00002", str(tmp_path / "ck"))
    code, result, _ = _trace(capsys, env["MLREPRO_STORE"], os.path.join(ckpt, "state.npz"))
    assert code == 0 and result["runs"][0]["id"] == run_id


def test_trace_prints_parent_runs_and_reproductions(tmp_path, capsys):
    store = str(tmp_path / "store")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"\x00weights of the resumed run\x01")
    with mlrepro.start_run(project="p", params={"lr": 0.1}, store=store) as first:
        pass
    with mlrepro.start_run(project="p", params={"lr": 0.1}, store=store,
                           parent={"kind": "resumed-from", "run": first.id}) as second:
        second.log_artifact(str(weights), wait=True)
    with mlrepro.start_run(project="p", store=store,
                           parent={"kind": "reproduction-of", "run": second.id}):
        pass
    code, result, _ = _trace(capsys, store, weights)
    assert code == 0
    lineage = result["runs"][0]["lineage"]
    assert [(p["kind"], p["run"]) for p in lineage["parents"]] == [("resumed-from", first.id)]
    assert [c["kind"] for c in lineage["children"]] == ["reproduction-of"]
    assert main(["trace", str(weights), "--store", store]) == 0
    text = capsys.readouterr().out
    assert f"parent   resumed-from {first.id}" in text and "child    reproduction-of" in text


def test_trace_of_an_unknown_file_exits_1_naming_the_digest(tmp_path, capsys):
    stray = tmp_path / "stray.h5"
    stray.write_bytes(b"not produced by any run")
    with mlrepro.start_run(project="p", store=str(tmp_path / "store")):
        pass
    code = main(["trace", str(stray), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 1
    assert "no run in" in err and "logged" in err and "sha256 " in err and "--store" in err
    assert main(["trace", str(tmp_path / "missing.h5"), "--store", str(tmp_path / "store")]) == 2


def test_trace_follows_an_embedded_run_id_into_the_store_it_names(tmp_path):
    other = str(tmp_path / "team-store")
    with mlrepro.start_run(project="p", params={"units": 4}, store=other) as run:
        pass
    export = tmp_path / "export"
    (export / "assets").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"graph")
    (export / "assets" / "mlrepro_run.json").write_text(json.dumps(
        {"run_id": run.id, "project": "p", "store": other}))
    proc = subprocess.run([sys.executable, "-m", "mlrepro", "trace", str(export), "--json",
                           "--store", str(tmp_path / "my-store")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["runs"][0]["id"] == run.id
    assert "found in its own store" in result["runs"][0]["matches"][0]["detail"]
