"""The run record format: ids, metric encoding, supersession on resume, safe names."""

from __future__ import annotations

import math

import pytest

from mlrepro import record


def test_run_ids_sort_by_start_time_and_do_not_collide():
    early = record.new_run_id(now=1_700_000_000)
    late = record.new_run_id(now=1_700_000_100)
    assert early < late
    ids = {record.new_run_id(now=1_700_000_000) for _ in range(2000)}
    assert len(ids) == 2000
    assert all(record.is_run_id(i) for i in ids)


def test_prefix_matches_the_id_or_its_random_tail():
    run_id = "20261128T121847-3f9a1c2b7d"
    assert record.matches_prefix(run_id, "20261128T12")
    assert record.matches_prefix(run_id, "3f9a")
    assert not record.matches_prefix(run_id, "3f9b")


def test_points_round_trip_and_a_torn_tail_is_ignored():
    pts = [(i, i / 10, 1000.0 + i, 0, 0, 0) for i in range(5)]
    blob = record.encode_points(pts)
    decoded = record.decode_points(blob + b"\x01\x02\x03", ["loss"])
    assert decoded.steps("loss") == [0, 1, 2, 3, 4]
    assert decoded.values("loss") == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_a_resumed_attempt_supersedes_points_from_its_first_step_on():
    # attempt 0 logged steps 0..9 then died; attempt 1 restored step 6 and logged 6..11
    first = [(s, float(s), 0.0, -1, 0, 0) for s in range(10)]
    second = [(s, 100.0 + s, 0.0, -1, 0, 1) for s in range(6, 12)]
    decoded = record.decode_points(record.encode_points(first + second), ["loss"])
    assert decoded.steps("loss") == list(range(12))
    assert decoded.values("loss")[:6] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert decoded.values("loss")[6:] == [106.0, 107.0, 108.0, 109.0, 110.0, 111.0]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "", "a\x00b"])
def test_names_that_escape_the_run_are_refused(bad):
    with pytest.raises(ValueError, match="relative|empty"):
        record.ensure_safe_name(bad)


def test_jsonable_never_raises_on_hostile_params():
    class Boom:
        def __repr__(self):
            raise RuntimeError("no")

    out = record.jsonable({"a": Boom(), "b": {1, 2}, "c": math.nan, 3: (1, 2)})
    assert out["a"].startswith("<unrepresentable")
    assert out["b"] == [1, 2] and math.isnan(out["c"]) and out["3"] == [1, 2]


def test_running_record_with_dead_writer_reads_as_crashed():
    m = record.new_manifest("x", "p", None, started=1000.0, host="h", pid=123)
    assert record.effective_status(m, now=1001.0, this_host="h",
                                   pid_alive=lambda pid: False) == record.CRASHED
    assert record.effective_status(m, now=1001.0, this_host="h",
                                   pid_alive=lambda pid: True) == record.RUNNING
    # on another host only the heartbeat can tell
    assert record.effective_status(m, now=1001.0, this_host="other",
                                   pid_alive=lambda pid: False) == record.RUNNING
    assert record.effective_status(m, now=5000.0, this_host="other") == record.CRASHED
    m["status"] = record.FINISHED
    assert record.effective_status(m, now=5000.0) == record.FINISHED


def test_manifest_validation_names_the_problem():
    with pytest.raises(ValueError, match="status"):
        record.validate_manifest({"id": "x", "project": "p", "status": "weird",
                                  "start_time": 1})
    with pytest.raises(ValueError, match="upgrade mlrepro"):
        record.validate_manifest({"id": "x", "project": "p", "status": "running",
                                  "start_time": 1, "schema_version": 99})
