"""Corrupted and truncated records: every reader degrades to a clear error or the good part.

Includes property-based fuzzing of the record readers with hypothesis.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlrepro
from mlrepro import record
from mlrepro.cli import main
from mlrepro.errors import CorruptRecord
from mlrepro.store.local import LocalStore


@pytest.fixture
def finished_run(store_dir):
    with mlrepro.start_run(project="p", store=store_dir, params={"lr": 0.1}) as run:
        for step in range(100):
            run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 100}, step=step)
    return LocalStore(store_dir), run.id


def test_truncated_metrics_keep_every_whole_point(finished_run):
    store, run_id = finished_run
    path = os.path.join(store.run_dir(run_id), record.METRICS_FILE)
    size = os.path.getsize(path)
    os.truncate(path, size - record.POINT.size * 3 - 7)  # 3 whole points and a torn one gone
    pts = store.read_points(run_id)
    assert len(pts.series["loss"]) + len(pts.series["acc"]) == 200 - 4


def test_a_torn_events_line_is_skipped(finished_run):
    store, run_id = finished_run
    path = os.path.join(store.run_dir(run_id), record.EVENTS_FILE)
    with open(path, "ab") as fh:
        fh.write(b'{"kind": "heartb')
    events = store.read_events(run_id)
    assert events and all("kind" in e for e in events)


def test_missing_metric_names_do_not_lose_points(finished_run):
    store, run_id = finished_run
    os.remove(os.path.join(store.run_dir(run_id), record.METRIC_NAMES_FILE))
    assert store.read_points(run_id).series == {}  # no names: nothing to attach points to
    # the manifest (and its metrics summary) still reads
    assert store.read_manifest(run_id)["metrics_summary"]["loss"]["count"] == 100


def test_a_run_directory_without_manifest_is_reported_not_fatal(store_dir, finished_run, capsys):
    store, run_id = finished_run
    os.makedirs(store.run_dir("20200101T000000-0000000000"))
    assert main(["index", "--rebuild", "--store", store_dir]) == 0
    err = capsys.readouterr().err
    assert "20200101T000000-0000000000" in err and "no run.json" in err
    assert [r["id"] for r in store.list_runs()] == [run_id]


def test_a_deleted_index_and_a_garbage_index_are_rebuilt(store_dir, finished_run, capsys):
    store, run_id = finished_run
    store.close()
    for f in os.listdir(store_dir):
        if f.startswith(record.INDEX_FILE):
            os.remove(os.path.join(store_dir, f))
    with open(os.path.join(store_dir, record.INDEX_FILE), "wb") as fh:
        fh.write(b"this is not a database" * 100)
    with pytest.warns(mlrepro.MlreproWarning, match="index .* was unreadable"):
        assert main(["runs", "--json", "--store", store_dir]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [run_id]
    with open(os.path.join(store_dir, record.INDEX_FILE), "wb") as fh:
        fh.write(b"garbage again" * 100)
    assert main(["index", "--rebuild", "--store", store_dir]) == 0
    assert "indexed 1 runs" in capsys.readouterr().out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_fuzzed_manifest_bytes_read_as_a_record_or_a_clear_error(tmp_path_factory, blob):
    root = tmp_path_factory.mktemp("fuzz")
    store = LocalStore(str(root))
    os.makedirs(store.run_dir("r"))
    with open(os.path.join(store.run_dir("r"), record.MANIFEST_FILE), "wb") as fh:
        fh.write(blob)
    try:
        m = store.read_manifest("r")
    except CorruptRecord as exc:
        assert "is corrupt" in str(exc)
    else:
        assert isinstance(m, dict) and m["status"] in record.STATUSES
    shutil.rmtree(root)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() |
                           st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(
                               st.text(max_size=8), c, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "project", "status", "start_time",
                                        "schema_version", "writer", "attempts", "params",
                                        "metrics_summary", "heartbeat"]), json_values))
def test_fuzzed_manifest_structures_validate_or_raise_valueerror(data):
    try:
        record.validate_manifest(data)
    except ValueError:
        return
    record.effective_status(data, this_host="h", pid_alive=lambda pid: False)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.text(max_size=10), max_size=5))
def test_fuzzed_metric_bytes_decode_without_crashing(blob, names):
    pts = record.decode_points(blob, names)
    assert sum(len(s) for s in pts.series.values()) == len(blob) // record.POINT.size
