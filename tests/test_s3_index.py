"""The S3 store's index (moto's server): many writers at once, runs that change, few requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import boto3
import pytest

from mlrepro import record
from mlrepro.cli import main
from mlrepro.store import ManifestWrite, RunFilePut
from mlrepro.store import remote_index
from mlrepro.store.s3 import S3Store

from conftest import child_env
from s3_moto import moto, s3_env  # noqa: F401  (fixtures)

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "s3_scripts")


def _manifest(run_id, status=record.FINISHED, **extra):
    m = record.new_manifest(run_id, "p", None, started=time.time(), host="elsewhere", pid=1)
    m.update(status=status, heartbeat=time.time(), **extra)
    return m


def _counting(store: S3Store) -> list[str]:
    """The operations the store's client sends from now on (botocore's own event hook)."""
    calls: list[str] = []
    store.client.meta.events.register(
        "before-call.s3.*", lambda model, **_kw: calls.append(model.name))
    return calls


def _index_keys(bucket: str, prefix: str) -> list[str]:
    client = boto3.session.Session().client("s3")
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [i["Key"] for i in page.get("Contents", [])]
    return out


@pytest.mark.slow
def test_eight_writers_pushing_at_once_while_another_lists_lose_no_row(s3_env, tmp_path):
    uri = f"s3://{s3_env}/team"
    live = record.new_run_id()[:16] + "ff00000000"
    stop = tmp_path / "stop"
    lister = subprocess.Popen([sys.executable, os.path.join(SCRIPTS, "list_loop.py"), uri,
                               str(stop)], env=child_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, os.path.join(SCRIPTS, "push_runs.py"), uri,
                                 str(tmp_path), str(w), "50"] + ([live] if w == 0 else []),
                                env=child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for w in range(8)]
    for w in writers:
        out, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-3000:]
        assert out.strip().endswith("pushed 50")
    stop.touch()
    out, err = lister.communicate(timeout=120)
    assert lister.returncode == 0, err[-3000:]
    counts = [int(line) for line in out.split()[:-1]]
    assert counts and counts == sorted(counts), counts        # a listing never goes backwards
    assert counts[-1] <= 401

    store = S3Store(uri)                                      # a cold reader after the writers
    calls = _counting(store)
    rows = store.list_runs()
    assert calls[0] == "ListObjectsV2" and len(calls) <= 2 + remote_index.COMPACT_AFTER + 6, calls
    assert len(rows) == 401 and len({r["id"] for r in rows}) == 401
    assert {r["status"] for r in rows} == {"finished"}        # the live run's final status too
    assert store.list_runs(status="running") == []
    by_id = {r["id"]: r for r in rows}
    assert by_id[live]["end_time"] is not None
    for w in range(8):
        assert len(store.list_runs(project=f"project-{w}")) == 50 + (w == 0)
    calls.clear()
    store.list_runs()
    # LIST, head, segment, and the few rows still pending (fewer than a compaction takes)
    assert len(calls) <= 3 + remote_index.COMPACT_AFTER - 1, calls
    # What the index says is what the manifests say.
    for run_id in list(by_id)[::40] + [live]:
        assert store.read_manifest(run_id)["status"] == by_id[run_id]["status"]
    # Compaction kept up: most rows are in segments, few deltas are left pending.
    snap = store.index.read()
    assert snap.generation >= 2 and len(snap.pending) < remote_index.COMPACT_AFTER


def test_a_cold_listing_costs_a_few_requests_and_sees_changes(s3_env):
    store = S3Store(f"s3://{s3_env}/team")
    ids = [f"20260101T0000{i:02d}-{i:010x}" for i in range(40)]
    for run_id in ids:
        store.write_batch([ManifestWrite(run_id, _manifest(run_id, status=record.RUNNING,
                                                           params={"i": ids.index(run_id)}))])
    reader = S3Store(store.uri)
    calls = _counting(reader)
    rows = reader.list_runs()
    assert len(rows) == 40 and {r["status"] for r in rows} == {"running"}
    # The bucket's first listing: no head yet, so it rescans the manifests into the first one
    first = len(calls)
    assert calls.count("GetObject") >= 40 and calls[-3:] == [
        "ListObjectsV2", "GetObject", "GetObject"]
    again = S3Store(store.uri)
    calls = _counting(again)
    assert [r["id"] for r in again.list_runs(params={"i": 7})] == [ids[7]]
    assert calls == ["ListObjectsV2", "GetObject", "GetObject"], calls   # LIST, head, segment
    assert first > 40
    # A run goes running -> finished after it was first indexed: the listing follows.
    m = _manifest(ids[3], status=record.FINISHED, end_time=time.time())
    store.write_batch([ManifestWrite(ids[3], m)])
    status = {r["id"]: r["status"] for r in S3Store(store.uri).list_runs()}
    assert status[ids[3]] == "finished" and list(status.values()).count("running") == 39
    # The writer's superseded row was deleted: one pending delta for that run, not two.
    deltas = [k for k in _index_keys(s3_env, "team/index/delta/") if ids[3] in k]
    assert len(deltas) == 1


def test_same_as_and_a_param_filter_from_the_cli_cost_a_few_requests(s3_env, moto, capsys):
    import json

    store = S3Store(f"s3://{s3_env}/team")
    ids = [f"20260101T0001{i:02d}-{i:010x}" for i in range(20)]
    for i, run_id in enumerate(ids):
        store.write_batch([ManifestWrite(run_id, _manifest(run_id, fingerprint=f"fp{i % 4}",
                                                           params={"lr": i % 2}))])
    store.list_runs()                                        # the first head: every row in it
    reader = S3Store(store.uri)
    calls = _counting(reader)
    assert reader.resolve(ids[5]) == ids[5] and calls == ["HeadObject"]
    assert reader.resolve(ids[5].split("-")[1]) == ids[5]
    for argv, want in ((["--same-as", ids[5]], set(ids[1::4]) - {ids[5]}),
                       (["--param", "lr=1"], set(ids[1::2]))):
        moto.start_recording()
        try:
            assert main(["runs", "--store", store.uri, "--json", *argv]) == 0
        finally:
            moto.stop_recording()
        assert {r["id"] for r in json.loads(capsys.readouterr().out)} == want
        sent = [r for r in moto.requests() if s3_env in r["url"]]   # counted at the server
        assert 1 <= len(sent) <= 5, [(r["method"], r["url"]) for r in sent]


def test_rebuild_repairs_a_lost_row_and_reads_runs_pushed_without_an_index(s3_env, capsys):
    store = S3Store(f"s3://{s3_env}/team")
    client = boto3.session.Session().client("s3")
    old = "20260101T000000-0000000001"
    # a run written by a version without the index: only its manifest
    client.put_object(Bucket=s3_env, Key=f"team/runs/{old}/run.json",
                      Body=record.canonical_json(_manifest(old)).encode())
    assert [r["id"] for r in store.list_runs()] == [old]       # no index yet: built by a rescan
    new = "20260101T000001-0000000002"
    store.write_batch([RunFilePut(new, "run.json", record.canonical_json(
        _manifest(new, status=record.RUNNING)).encode())])
    # a writer died between its manifest and its row: the index is stale until a rebuild
    client.put_object(Bucket=s3_env, Key=f"team/runs/{new}/run.json",
                      Body=record.canonical_json(_manifest(new)).encode())
    assert {r["id"]: r["status"] for r in S3Store(store.uri).list_runs()}[new] == "running"
    assert main(["index", "--rebuild", "--store", store.uri]) == 0
    assert "indexed 2 runs" in capsys.readouterr().out
    assert {r["id"]: r["status"] for r in S3Store(store.uri).list_runs()} == {
        old: "finished", new: "finished"}


def test_two_compactors_at_once_keep_every_row(s3_env):
    store = S3Store(f"s3://{s3_env}/team")
    ids = [f"20260101T0002{i:02d}-{i:010x}" for i in range(30)]
    for run_id in ids[:2]:
        store.write_batch([ManifestWrite(run_id, _manifest(run_id))])
    assert len(store.list_runs()) == 2                # the first listing builds the first head
    for run_id in ids[2:20]:
        store.write_batch([ManifestWrite(run_id, _manifest(run_id))])
    a, b = S3Store(store.uri), S3Store(store.uri)
    snap_a = a.index.read()
    for run_id in ids[20:]:
        store.write_batch([ManifestWrite(run_id, _manifest(run_id))])
    snap_b = b.index.read()
    assert b.index.compact(snap_b) is True
    assert a.index.compact(snap_a) is False            # lost the conditional PUT: gives up
    assert sorted(r["id"] for r in S3Store(store.uri).list_runs()) == ids


def test_a_live_run_written_straight_to_s3_adds_a_row_a_minute_not_a_row_a_heartbeat(s3_env):
    store = S3Store(f"s3://{s3_env}/team")
    run_id = "20260101T000300-00000000aa"
    m = _manifest(run_id, status=record.RUNNING)
    for beat in range(5):                          # heartbeats and new metric values
        m.update(heartbeat=m["heartbeat"] + 10,
                 metrics_summary={"loss": {"last": 1.0 / (beat + 1)}})
        store.write_batch([ManifestWrite(run_id, m)])
    assert len(_index_keys(s3_env, "team/index/delta/")) == 1
    m.update(heartbeat=m["heartbeat"] + remote_index.HEARTBEAT_ROW_SECONDS)
    store.write_batch([ManifestWrite(run_id, m)])     # a minute on: the row moves
    m.update(tags={"note": "changed"})
    store.write_batch([ManifestWrite(run_id, m)])     # anything else: at once
    m.update(status=record.FINISHED, end_time=time.time())
    store.write_batch([ManifestWrite(run_id, m)])
    assert len(_index_keys(s3_env, "team/index/delta/")) == 1   # each superseded one deleted
    (row,) = S3Store(store.uri).list_runs()
    assert row["status"] == "finished" and row["tags"] == {"note": "changed"}
    assert row["metrics_summary"] == {"loss": {"last": 0.2}}


def test_runs_pushed_before_the_index_existed_list_beside_new_ones(s3_env):
    client = boto3.session.Session().client("s3")
    old = "20260101T000400-00000000bb"
    client.put_object(Bucket=s3_env, Key=f"team/runs/{old}/run.json",
                      Body=record.canonical_json(_manifest(old)).encode())
    store = S3Store(f"s3://{s3_env}/team")
    new = [f"20260101T0005{i:02d}-{i:010x}" for i in range(remote_index.COMPACT_AFTER + 2)]
    for run_id in new:                               # finished runs: writers try to compact
        store.write_batch([ManifestWrite(run_id, _manifest(run_id))])
    assert _index_keys(s3_env, "team/index/head/") == []     # writers never make the first head
    assert sorted(r["id"] for r in S3Store(store.uri).list_runs()) == sorted([old] + new)


def test_gc_on_s3_clears_old_segments_and_abandoned_uploads_but_keeps_the_listing(s3_env,
                                                                                 monkeypatch):
    from mlrepro.store import gc

    store = S3Store(f"s3://{s3_env}/team")
    ids = [f"20260101T0006{i:02d}-{i:010x}" for i in range(30)]
    for run_id in ids[:10]:
        store.write_batch([ManifestWrite(run_id, _manifest(run_id))])
    store.list_runs()                                   # head 1
    for run_id in ids[10:]:
        store.write_batch([ManifestWrite(run_id, _manifest(run_id))])   # writers compact
    S3Store(store.uri).list_runs()
    segments = _index_keys(s3_env, "team/index-segments/")
    assert len(segments) >= 2                           # superseded ones are still there
    client = boto3.session.Session().client("s3")
    key = store.object_key("ab" * 32)
    client.create_multipart_upload(Bucket=s3_env, Key=key)     # a push that never came back
    time.sleep(1.1)
    monkeypatch.setattr(gc, "SEGMENT_GRACE", 0.0)   # an hour by default, whatever --grace says
    report = gc.collect(S3Store(store.uri), grace=0)
    assert key in report.other and report.removed == []
    left = _index_keys(s3_env, "team/index-segments/")
    assert 1 <= len(left) < len(segments)
    assert set(left) == S3Store(store.uri).index.live_segments()
    assert client.list_multipart_uploads(Bucket=s3_env).get("Uploads", []) == []
    assert sorted(r["id"] for r in S3Store(store.uri).list_runs()) == ids


def test_a_damaged_index_is_rebuilt_from_the_manifests_with_a_warning(s3_env):
    from mlrepro.errors import MlreproWarning

    store = S3Store(f"s3://{s3_env}/team")
    ids = [f"20260101T0007{i:02d}-{i:010x}" for i in range(5)]
    for run_id in ids[:3]:
        store.write_batch([ManifestWrite(run_id, _manifest(run_id))])
    store.list_runs()
    for run_id in ids[3:]:
        store.write_batch([ManifestWrite(run_id, _manifest(run_id))])
    client = boto3.session.Session().client("s3")
    (head,) = _index_keys(s3_env, "team/index/head/")
    delta = [k for k in _index_keys(s3_env, "team/index/delta/") if ids[4] in k][0]
    for key in (head, delta):
        client.put_object(Bucket=s3_env, Key=key, Body=b"{not json")
    with pytest.warns(MlreproWarning, match="damaged"):
        listed = S3Store(store.uri).list_runs()
    assert sorted(r["id"] for r in listed) == ids
    assert sorted(r["id"] for r in S3Store(store.uri).list_runs()) == ids   # and it stays so
    for key in _index_keys(s3_env, "team/index-segments/"):         # segments deleted by hand
        client.delete_object(Bucket=s3_env, Key=key)
    with pytest.warns(MlreproWarning, match="missing"):
        assert sorted(r["id"] for r in S3Store(store.uri).list_runs()) == ids
