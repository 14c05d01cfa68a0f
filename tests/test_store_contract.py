"""One contract, two stores: the local store and the S3 remote (moto's server) answer alike."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

import mlrepro
from mlrepro.errors import AmbiguousRunId, RunNotFound, StoreError
from mlrepro.record import new_manifest
from mlrepro.store.base import (EventsAppend, ManifestWrite, MetricsAppend, ObjectPut,
                                RunFilePut)
from mlrepro.store.local import LocalStore
from mlrepro.store.transfer import copy_run

from s3_moto import moto, s3_env  # noqa: F401  (fixtures)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        s = LocalStore(str(tmp_path / "contract-store"))
    else:
        from mlrepro.store.s3 import S3Store

        bucket = request.getfixturevalue("s3_env")
        # Objects above 6 MiB go in 5 MiB parts here, so the contract covers multipart too.
        s = S3Store(f"s3://{bucket}/team/store", part_size=5 << 20, multipart_above=6 << 20)
    yield s
    s.close()


def _manifest(run_id, project="p", status="finished", start=1000.0, **extra):
    m = new_manifest(run_id, project, None, started=start, host="h", pid=1)
    m.update(status=status, end_time=start + 1, heartbeat=start + 1, **extra)
    return m


def _ids(n):
    return [f"20260101T00000{i}-{i:x}{'a' * 9}" for i in range(n)]


def test_objects_are_content_addressed_and_read_back_exactly(store, tmp_path):
    data = os.urandom(300_000)
    put = ObjectPut(data=data)
    store.write_batch([put])
    assert put.digest == hashlib.sha256(data).hexdigest() and put.size == len(data)
    again = ObjectPut(data=data)
    store.write_batch([again])
    assert again.digest == put.digest
    path = tmp_path / "file.bin"
    path.write_bytes(b"from a file" * 1000)
    from_file = ObjectPut(path=str(path))
    store.write_batch([from_file])
    assert from_file.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert store.has_object(put.digest) and store.has_object(from_file.digest)
    assert not store.has_object("0" * 64)
    assert store.read_object(put.digest) == data
    with store.open_object(from_file.digest) as fh:
        assert fh.read() == path.read_bytes()
    assert sorted(store.iter_objects()) == sorted({put.digest, from_file.digest})


def test_missing_object_is_a_store_error(store):
    with pytest.raises(StoreError, match="missing"):
        store.open_object("f" * 64)


def test_manifest_metrics_and_events_round_trip_across_store_instances(store):
    run_id = _ids(1)[0]
    assert store.claim_run_id(run_id)     # a run is claimed before anything is appended to it
    store.write_batch([
        MetricsAppend(run_id, [(0, 1.0, 10.0, 0, "loss", 0), (0, 0.5, 10.0, 0, "acc", 0)]),
        EventsAppend(run_id, [{"time": 1.0, "kind": "started"}]),
        ManifestWrite(run_id, _manifest(run_id, status="running")),
    ])
    reopened = type(store)(store.uri if not isinstance(store, LocalStore) else store.root)
    reopened.write_batch([
        MetricsAppend(run_id, [(1, 0.25, 11.0, 1, "loss", 0), (1, 0.9, 11.0, 1, "val_loss", 0)]),
        EventsAppend(run_id, [{"time": 2.0, "kind": "status", "status": "finished"}]),
        ManifestWrite(run_id, _manifest(run_id)),
    ])
    for s in (store, reopened):
        assert run_id in s.run_ids()
        assert s.read_manifest(run_id)["status"] == "finished"
        pts = s.read_points(run_id)
        assert pts.names() == ["acc", "loss", "val_loss"]
        assert pts.series["loss"] == [(0, 1.0, 10.0, 0), (1, 0.25, 11.0, 1)]
        assert pts.values("val_loss") == [0.9]
        assert [e["kind"] for e in s.read_events(run_id)] == ["started", "status"]
        assert {"run.json", "metrics.bin", "metrics.names", "events.jsonl"} <= set(
            s.list_run_files(run_id))


def test_run_files_are_replaced_whole(store):
    run_id = _ids(1)[0]
    store.write_batch([RunFilePut(run_id, "notes/a.txt", b"one"),
                       RunFilePut(run_id, "notes/a.txt", b"two"),
                       RunFilePut(run_id, "run.json", json.dumps(_manifest(run_id)).encode())])
    assert store.read_run_file(run_id, "notes/a.txt") == b"two"
    assert "notes/a.txt" in store.list_run_files(run_id)
    with pytest.raises(ValueError, match="climbs out"):
        store.write_batch([RunFilePut(run_id, "../escape", b"x")])


def test_unknown_runs_and_prefixes(store):
    a, b = "20260101T000000-abc0000001", "20260101T000000-abc0000002"
    store.write_batch([ManifestWrite(a, _manifest(a)), ManifestWrite(b, _manifest(b))])
    with pytest.raises(RunNotFound):
        store.read_manifest("20990101T000000-ffffffffff")
    with pytest.raises(RunNotFound):
        store.resolve("zzz")
    with pytest.raises(AmbiguousRunId):
        store.resolve("abc")
    assert store.resolve("abc0000002") == b
    assert store.resolve(a) == a


def test_list_filters_and_sorts_the_same_way(store):
    ids = _ids(4)
    specs = [("cnn", "finished", {"lr": 0.1}, 0.5), ("cnn", "failed", {"lr": 0.01}, 0.2),
             ("rnn", "finished", {"lr": 0.1}, 0.9), ("cnn", "finished", {"lr": 0.1}, None)]
    writes = []
    for i, (run_id, (project, status, params, loss)) in enumerate(zip(ids, specs)):
        m = _manifest(run_id, project=project, status=status, start=1000.0 + i, params=params,
                      fingerprint=f"fp{i % 2}")
        if loss is not None:
            m["metrics_summary"] = {"loss": {"last": loss, "step": 1, "min": loss, "max": loss,
                                             "count": 1}}
        writes.append(ManifestWrite(run_id, m))
    store.write_batch(writes)
    assert [m["id"] for m in store.list_runs()] == ids[::-1]          # newest first
    assert [m["id"] for m in store.list_runs(project="cnn")] == [ids[3], ids[1], ids[0]]
    assert [m["id"] for m in store.list_runs(status="failed")] == [ids[1]]
    assert [m["id"] for m in store.list_runs(params={"lr": 0.1}, project="cnn")] == [
        ids[3], ids[0]]
    assert [m["id"] for m in store.list_runs(fingerprint="fp1")] == [ids[3], ids[1]]
    assert [m["id"] for m in store.list_runs(sort_metric="loss")][:3] == [ids[1], ids[0], ids[2]]
    assert [m["id"] for m in store.list_runs(sort_metric="loss", descending=True)][:3] == [
        ids[2], ids[0], ids[1]]


def test_claiming_a_run_id_twice_fails(store):
    run_id = _ids(1)[0]
    assert store.claim_run_id(run_id) is True
    assert store.claim_run_id(run_id) is False


def test_a_live_run_records_into_the_store(store, tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(50_000))
    with mlrepro.start_run(project="contract", store=store, params={"lr": 0.1}) as run:
        for step in range(5):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        run.log_artifact(str(weights), "weights.bin", wait=True)
    manifest = store.read_manifest(run.id)
    assert manifest["status"] == "finished" and manifest["params"] == {"lr": 0.1}
    assert store.read_points(run.id).steps("loss") == [0, 1, 2, 3, 4]
    digest = manifest["artifacts"]["weights.bin"]["digest"]
    assert store.read_object(digest) == weights.read_bytes()
    kinds = [e["kind"] for e in store.read_events(run.id)]
    assert kinds[0] == "started" and "status" in kinds


def test_copying_a_run_in_and_out_preserves_every_byte(store, tmp_path):
    source = LocalStore(str(tmp_path / "source"))
    with mlrepro.start_run(project="copy", store=source) as run:
        run.log_metrics({"loss": 0.5}, step=0)
        blob = tmp_path / "model.keras"
        blob.write_bytes(os.urandom(20_000))
        run.log_artifact(str(blob), wait=True)
    copy_run(source, store, run.id)
    back = LocalStore(str(tmp_path / "back"))
    copy_run(store, back, run.id)
    for name in source.list_run_files(run.id):
        assert back.read_run_file(run.id, name) == source.read_run_file(run.id, name), name
    assert sorted(back.iter_objects()) == sorted(source.iter_objects())
    for digest in source.iter_objects():
        assert back.read_object(digest) == source.read_object(digest)


def test_param_filters_follow_one_rule_in_every_store(store):
    recorded = {"num": 0.1, "text": "0.1", "one": 1, "true": True, "null": None, "list": [1, 2],
                "dict": {"b": 1, "a": 2}, "missing": "<none>"}
    ids = _ids(len(recorded))
    writes = []
    for i, (run_id, (label, value)) in enumerate(zip(ids, recorded.items())):
        params = {"label": label} if value == "<none>" else {"label": label, "lr": value}
        writes.append(ManifestWrite(run_id, _manifest(run_id, start=1000.0 + i, params=params)))
    store.write_batch(writes)

    def listed(want):
        return {m["params"]["label"] for m in store.list_runs(params={"lr": want})}

    assert listed(0.1) == {"num"}                     # a number never matches its text
    assert listed("0.1") == {"text"}
    assert listed(1) == {"one", "true"} == listed(1.0)  # a bool counts as 0/1
    assert listed(True) == {"one", "true"}
    assert listed(None) == {"null"}                   # null, not a missing param
    assert listed([1, 2]) == {"list"} and listed([2, 1]) == set()
    assert listed({"a": 2, "b": 1}) == {"dict"}
    assert listed("nope") == set()


def test_optional_operations_are_part_of_the_contract(store, tmp_path, capsys):
    from mlrepro.cli import main

    data = os.urandom(10_000)
    put = ObjectPut(data=data)
    store.write_batch([put])
    out = tmp_path / "object.bin"
    store.download_object(put.digest, str(out))
    assert out.read_bytes() == data
    run_id = _ids(1)[0]
    store.write_batch([ManifestWrite(run_id, _manifest(run_id))])
    if isinstance(store, LocalStore):
        assert store.root is not None and store.run_dir(run_id).startswith(store.root)
        with open(store.local_object_path(put.digest), "rb") as fh:
            assert fh.read() == data
        assert store.local_object_path("0" * 64) is None
    else:  # a remote has no directory here: it says so, it is not probed
        assert store.root is None and store.run_dir(run_id) is None
        assert store.local_object_path(put.digest) is None
    assert store.rebuild_index() == (1, [])       # both stores rebuild their index
    assert main(["index", "--rebuild", "--store", store.uri]) == 0
    assert "indexed 1 runs" in capsys.readouterr().out


def test_gc_removes_only_what_no_run_names_and_never_a_live_runs_objects(store, monkeypatch,
                                                                         capsys):
    import socket
    import time

    from mlrepro.cli import main
    from mlrepro.store import gc

    monkeypatch.setattr(gc, "CLOCK_SLACK", 1.0)   # the default allows 5 minutes of clock skew
    orphan = ObjectPut(data=b"named by a run deleted long ago")
    store.write_batch([orphan])
    time.sleep(2.1)                               # S3 keeps whole seconds
    named, live_named, live_pending = (ObjectPut(data=b"a finished run's model"),
                                       ObjectPut(data=b"the live run's first checkpoint"),
                                       ObjectPut(data=b"uploaded, not yet in its manifest"))
    done, live = _ids(2)
    started = time.time()                          # the live run starts, uploads, then names
    store.write_batch([named, live_named, live_pending])        # objects go first
    store.write_batch([ManifestWrite(done, _manifest(
        done, artifacts={"model": {"digest": named.digest, "size": 22}}))])
    running = new_manifest(live, "p", None, started=started, host=socket.gethostname(),
                           pid=os.getpid())
    running["artifacts"] = {"ckpt-1": {"digest": live_named.digest, "size": 31}}
    store.write_batch([ManifestWrite(live, running)])

    report = gc.collect(store, grace=0, dry_run=True)
    assert report.removed == [orphan.digest] and report.live_runs == [live]
    assert store.has_object(orphan.digest)                     # a dry run removes nothing
    assert main(["gc", "--store", store.uri, "--grace", "0", "--dry-run"]) == 0
    assert "would remove 1 objects" in capsys.readouterr().out
    assert main(["gc", "--store", store.uri, "--grace", "0"]) == 0
    assert "removed 1 objects" in capsys.readouterr().out
    assert sorted(store.iter_objects()) == sorted([named.digest, live_named.digest,
                                                   live_pending.digest])
    assert store.read_object(named.digest) == b"a finished run's model"
    # With a long grace nothing recent goes, live run or not.
    running.update(status="finished", end_time=time.time())
    store.write_batch([ManifestWrite(live, running)])
    assert gc.collect(store).removed == []
    # Once the run has ended without naming it, the pending upload is garbage too.
    assert gc.collect(store, grace=0).removed == [live_pending.digest]
    assert sorted(store.iter_objects()) == sorted([named.digest, live_named.digest])
    assert [m["id"] for m in store.list_runs()] == [live, done] or \
        sorted(m["id"] for m in store.list_runs()) == sorted([live, done])
    assert main(["gc", "--store", store.uri, "--grace", "-1"]) == 2


def test_a_big_object_round_trips_byte_for_byte(store, tmp_path):
    data = os.urandom(13 << 20)                  # S3: three parts up, three ranged GETs down
    path = tmp_path / "checkpoint.bin"
    path.write_bytes(data)
    put = ObjectPut(path=str(path))
    store.write_batch([put])
    assert put.digest == hashlib.sha256(data).hexdigest() and put.size == len(data)
    out = tmp_path / "back.bin"
    store.download_object(put.digest, str(out))
    assert out.read_bytes() == data
    with store.open_object(put.digest) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == put.digest
    if not isinstance(store, LocalStore):
        assert store.last_transfer.parts == 3 and store.last_transfer.sent == 3


def test_a_run_that_changes_after_it_is_listed_lists_its_last_state(store):
    ids = _ids(3)
    store.write_batch([ManifestWrite(i, _manifest(i, status="running", start=1000.0 + n))
                       for n, i in enumerate(ids)])
    assert {m["id"]: m["status"] for m in store.list_runs()} == dict.fromkeys(ids, "crashed")
    m = _manifest(ids[1], status="finished", start=1001.0, tags={"best": True})
    m["attempts"] = [{"attempt": 0}]
    store.write_batch([ManifestWrite(ids[1], m)])
    listed = {r["id"]: r for r in type(store)(store.uri if not isinstance(store, LocalStore)
                                              else store.root).list_runs()}
    assert listed[ids[1]]["status"] == "finished" and listed[ids[1]]["tags"] == {"best": True}
    assert [listed[i]["status"] for i in (ids[0], ids[2])] == ["crashed", "crashed"]
    assert [r["id"] for r in store.list_runs(status="finished")] == [ids[1]]
