"""The one filter rule: the local index's SQL and the Python rule other stores use agree."""

from __future__ import annotations

import itertools
import json
import sqlite3

import pytest

from mlrepro.store.query import RunQuery, param_matches, param_sql

VALUES = [0, 1, 1.0, 0.1, 2, -3.5, True, False, None, "", "0.1", "1", "adam", "true",
          [1, 2], [2, 1], [], {"a": 1}, {"a": 1, "b": [2]}, {}]


def _sql_matches(conn, have: dict, key: str, want) -> bool:
    condition, args = param_sql("params", key, want)
    conn.execute("DELETE FROM t")
    conn.execute("INSERT INTO t (params) VALUES (?)", [json.dumps(have, sort_keys=True)])
    row = conn.execute(f"SELECT 1 FROM t WHERE {condition}", args).fetchone()
    return row is not None


@pytest.fixture
def conn():
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE t (params TEXT)")
    yield c
    c.close()


def test_sql_and_python_rules_agree_on_every_pair_of_values(conn):
    disagreements = []
    for got, want in itertools.product(VALUES, VALUES):
        have = {"lr": got}
        if _sql_matches(conn, have, "lr", want) != param_matches(have, "lr", want):
            disagreements.append((got, want))
    for want in VALUES:  # a param the run does not have never matches
        assert not param_matches({}, "lr", want) and not _sql_matches(conn, {}, "lr", want)
    assert disagreements == []


def test_keys_with_dots_are_one_key(conn):
    have = {"we.ird": 3, "we": {"ird": 4}}
    assert param_matches(have, "we.ird", 3) and _sql_matches(conn, have, "we.ird", 3)
    assert not _sql_matches(conn, have, "we.ird", 4)


def test_a_key_sqlite_cannot_name_is_filtered_by_the_same_rule(tmp_path):
    from mlrepro.record import new_manifest
    from mlrepro.store import ManifestWrite
    from mlrepro.store.local import LocalStore

    store = LocalStore(str(tmp_path / "s"))
    writes = []
    for i, value in enumerate([3, "3", 4]):
        m = new_manifest(f"20260101T00000{i}-{i}aaaaaaaaa", "p", None, started=1000.0 + i,
                         host="h", pid=1)
        m.update(status="finished", params={'we"ird': value, "i": i})
        writes.append(ManifestWrite(m["id"], m))
    store.write_batch(writes)
    assert [m["params"]["i"] for m in store.list_runs(params={'we"ird': 3})] == [0]
    assert [m["params"]["i"] for m in store.list_runs(params={'we"ird': "3", "i": 1})] == [1]


def test_a_value_holding_a_nul_is_found(tmp_path):
    """SQLite's json_extract cuts text at an escaped NUL: such a value is matched in Python
    (found by the hostile-strings property test: key "'", value "\\x00")."""
    from mlrepro.record import new_manifest
    from mlrepro.store import ManifestWrite
    from mlrepro.store.local import LocalStore

    store = LocalStore(str(tmp_path / "s"))
    writes = []
    for i, value in enumerate(["\x00", "", "a\x00b", "a"]):
        m = new_manifest(f"20260101T00000{i}-{i}aaaaaaaaa", "p", None, started=1000.0 + i,
                         host="h", pid=1)
        m.update(status="finished", params={"'": value, "i": i})
        writes.append(ManifestWrite(m["id"], m))
    store.write_batch(writes)
    for i, value in enumerate(["\x00", "", "a\x00b", "a"]):
        assert [m["params"]["i"] for m in store.list_runs(params={"'": value})] == [i]


def test_a_query_sorts_runs_without_the_metric_last():
    runs = [{"id": "a", "start_time": 1, "metrics_summary": {"loss": {"last": 0.5}}},
            {"id": "b", "start_time": 2, "metrics_summary": {}},
            {"id": "c", "start_time": 3, "metrics_summary": {"loss": {"last": 0.2}}}]
    assert [r["id"] for r in RunQuery(sort_metric="loss").sort(runs)] == ["c", "a", "b"]
    assert [r["id"] for r in RunQuery(sort_metric="loss", descending=True).sort(runs)] == [
        "a", "c", "b"]
    assert [r["id"] for r in RunQuery().sort(runs)] == ["c", "b", "a"]


def test_list_runs_takes_a_query_or_filters_not_both(tmp_path):
    from mlrepro.store.local import LocalStore

    store = LocalStore(str(tmp_path / "s"))
    with pytest.raises(TypeError, match="not both"):
        store.list_runs(RunQuery(project="p"), project="q")
