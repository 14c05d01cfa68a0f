"""The local store: layout, dedup, index, concurrent writers, corrupt records."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

import mlrepro
from mlrepro.errors import AmbiguousRunId, CorruptRecord, RunNotFound, StoreError
from mlrepro.store import open_store
from mlrepro.store.local import LocalStore

from conftest import child_env

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(store, **params):
    with mlrepro.start_run(project=params.pop("project", "p"), store=store,
                           params=params) as run:
        for step in range(10):
            run.log_metrics({"loss": 1.0 / (step + 1) + params.get("lr", 0)}, step=step)
    return run


def test_open_store_chooses_by_uri(tmp_path):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    with pytest.raises(StoreError, match="unknown scheme 'gs'"):
        open_store("gs://bucket/x")


def test_same_bytes_are_stored_once_across_runs(store_dir, tmp_path):
    blob = tmp_path / "weights.bin"
    blob.write_bytes(os.urandom(100_000))
    for _ in range(3):
        with mlrepro.start_run(project="p", store=store_dir) as run:
            run.log_artifact(str(blob), "weights.bin")
    store = LocalStore(store_dir)
    digests = {store.read_manifest(i)["artifacts"]["weights.bin"]["digest"]
               for i in store.run_ids()}
    assert len(digests) == 1
    digest = digests.pop()
    objects = [o for o in store.iter_objects() if store.read_object(o) == blob.read_bytes()]
    assert objects == [digest]
    assert store.read_object(digest) == blob.read_bytes()


def test_directory_artifacts_keep_every_file(store_dir, tmp_path):
    d = tmp_path / "saved"
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"pb")
    (d / "variables" / "v.data").write_bytes(b"vars")
    with mlrepro.start_run(project="p", store=store_dir) as run:
        run.log_artifact(str(d), "saved_model")
    store = LocalStore(store_dir)
    art = store.read_manifest(run.id)["artifacts"]["saved_model"]
    assert art["kind"] == "dir" and set(art["files"]) == {"saved_model.pb", "variables/v.data"}
    assert store.read_object(art["files"]["variables/v.data"]["digest"]) == b"vars"


def test_list_filters_by_project_status_and_params_and_sorts_by_metric(store_dir):
    a = _run(store_dir, lr=0.1, project="a")
    b = _run(store_dir, lr=0.01, project="a")
    c = _run(store_dir, lr=0.1, project="b", opt="sgd")
    store = LocalStore(store_dir)
    assert {r["id"] for r in store.list_runs(project="a")} == {a.id, b.id}
    assert [r["id"] for r in store.list_runs(params={"lr": 0.1, "opt": "sgd"})] == [c.id]
    assert [r["id"] for r in store.list_runs(project="a", sort_metric="loss")] == [b.id, a.id]
    assert [r["id"] for r in store.list_runs(project="a", sort_metric="loss",
                                             descending=True)] == [a.id, b.id]
    assert store.list_runs(status="running") == []
    assert len(store.list_runs(status="finished")) == 3


def test_ids_resolve_by_unique_prefix_and_refuse_ambiguity(store_dir):
    runs = [_run(store_dir) for _ in range(2)]
    store = LocalStore(store_dir)
    tail = runs[0].id.split("-")[1]
    assert store.resolve(tail[:6]) == runs[0].id
    assert store.resolve(runs[1].id) == runs[1].id
    with pytest.raises(AmbiguousRunId, match="matches 2 runs"):
        store.resolve(runs[0].id[:8])
    with pytest.raises(RunNotFound, match="no run matches"):
        store.resolve("ffffffffff")


def test_index_rebuilds_from_manifests_and_reports_corrupt_runs(store_dir):
    good = _run(store_dir, lr=0.5)
    bad = _run(store_dir, lr=0.6)
    store = LocalStore(store_dir)
    path = os.path.join(store.run_dir(bad.id), "run.json")
    with open(path, "w") as fh:
        fh.write('{"id": "trunc')
    os.remove(os.path.join(store_dir, "index.sqlite"))
    count, problems = store.rebuild_index()
    assert count == 1 and problems[0][0] == bad.id
    assert [r["id"] for r in LocalStore(store_dir).list_runs()] == [good.id]
    with pytest.raises(CorruptRecord, match="is corrupt"):
        store.read_manifest(bad.id)


def test_index_is_rebuilt_on_demand_when_missing(store_dir):
    run = _run(store_dir)
    for f in os.listdir(store_dir):
        if f.startswith("index.sqlite"):
            os.remove(os.path.join(store_dir, f))
    assert [r["id"] for r in LocalStore(store_dir).list_runs()] == [run.id]


def test_index_uses_wal_mode(store_dir):
    _run(store_dir)
    conn = sqlite3.connect(os.path.join(store_dir, "index.sqlite"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.slow
def test_concurrent_writer_processes_lose_and_corrupt_nothing(store_dir):
    os.makedirs(store_dir, exist_ok=True)
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "scripts",
                                                            "concurrent_writer.py"),
                               store_dir, str(w), "3", "300"], env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(6)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        ids += out.split()
    store = LocalStore(store_dir)
    assert sorted(ids) == sorted(store.run_ids()) and len(ids) == 18
    listed = store.list_runs(project="concurrent")
    assert len(listed) == 18 and all(r["status"] == "finished" for r in listed)
    ckpt_digests = set()
    for run_id in ids:
        manifest = store.read_manifest(run_id)
        pts = store.read_points(run_id)
        assert pts.steps("loss") == list(range(300))
        worker = manifest["params"]["worker"]
        assert pts.values("loss")[0] == worker
        ckpt_digests.add(manifest["artifacts"]["ckpt.bin"]["digest"])
    assert len(ckpt_digests) == 1 and len(list(store.iter_objects())) >= 1
    count, problems = store.rebuild_index()
    assert count == 18 and problems == []


def test_manifest_on_disk_is_plain_sorted_json(store_dir):
    run = _run(store_dir, lr=0.3)
    text = open(os.path.join(LocalStore(store_dir).run_dir(run.id), "run.json")).read()
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["schema_version"] == mlrepro.SCHEMA_VERSION and data["params"] == {"lr": 0.3}


def test_objects_of_names_stored_modules_and_file_lists_but_not_data_fingerprints():
    """Copies, pushes and gc keep what a run's code and data records point at, nothing else."""
    from mlrepro.store.base import objects_of

    d = [c * 64 for c in "abcdef"]
    manifest = {"code": {"patch": d[0], "modules": {"train.py": d[1], "model.py": d[2]}},
                "data": {"train": {"digest": d[3], "file_list_object": d[4]}},
                "artifacts": {"model.keras": {"digest": d[5]}}}
    assert sorted(objects_of(manifest)) == sorted([d[0], d[1], d[2], d[4], d[5]])
