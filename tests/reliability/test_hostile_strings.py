"""Any string a user can hand the recorder is stored losslessly and never breaks a listing.

Run names come from `os.fsdecode` of non-UTF-8 bytes (lone surrogates), params from
parsed files (control characters, NUL), metric names from anything. Each must come back
the same from `run.json`, the index, metrics.names and the CLI, and the other runs of
the store must still list.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlrepro
from mlrepro import record
from mlrepro.cli import main
from mlrepro.store.local import LocalStore

# Every code point, lone surrogates (category Cs) and control characters included, plus
# the ones that broke stores in the wild, so each example is likely to hold one.
HOSTILE = ["\udce9", "\ud800", "\udfff", "\x00", "\x1b[31m", "\n", "\r", "\t", "\u202e", "\u2028",
           "\ufeff", "'", '"', "\\", "%s", "caf\u00e9", "\U0001f600"]
any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())


def _no_split_pair(text: str) -> bool:
    """JSON (RFC 8259) reads the escapes of a high surrogate followed by a low one as the one
    character they encode: such a string is not *lone* surrogates, and reads back as that
    character (see test_a_split_surrogate_pair_reads_back_as_its_character)."""
    return not any("\ud800" <= a <= "\udbff" and "\udc00" <= b <= "\udfff"
                   for a, b in zip(text, text[1:]))


hostile_text = st.lists(st.sampled_from(HOSTILE) | st.text(any_char, max_size=4),
                        min_size=1, max_size=4).map("".join).filter(_no_split_pair)


@contextlib.contextmanager
def quiet_run(store_dir, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mlrepro.start_run(project="p", store=store_dir, **kwargs) as run:
            yield run
    problems = [str(w.message) for w in caught if issubclass(w.category, mlrepro.MlreproWarning)]
    assert problems == []  # nothing was spooled or dropped


def test_a_non_utf8_run_name_is_stored_and_the_store_still_lists(store_dir, capsys):
    with mlrepro.start_run(project="p", store=store_dir, name="ok") as ok:
        ok.log_metrics({"loss": 1.0}, step=0)
    name = os.fsdecode(b"caf\xe9")  # 'caf\udce9', as a non-UTF-8 file name decodes
    with quiet_run(store_dir, name=name) as run:
        run.log_metrics({"loss": 0.5}, step=0)
    store = LocalStore(store_dir)
    assert {r["name"] for r in store.list_runs()} == {"ok", name}
    assert store.read_manifest(run.id)["name"] == name
    assert main(["runs", "--store", store_dir]) == 0
    out = capsys.readouterr().out
    assert ok.id in out and run.id in out and "caf\\udce9" in out
    assert main(["index", "--rebuild", "--store", store_dir]) == 0
    assert "indexed 2 runs" in capsys.readouterr().out
    assert main(["runs", "--json", "--store", store_dir]) == 0
    assert {r["name"] for r in json.loads(capsys.readouterr().out)} == {"ok", name}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=hostile_text, key=hostile_text, value=hostile_text, tag=hostile_text,
       metric=hostile_text)
def test_any_unicode_in_names_params_tags_and_metric_names_round_trips(
        tmp_path_factory, capsys, name, key, value, tag, metric):
    store_dir = str(tmp_path_factory.mktemp("hostile"))
    with mlrepro.start_run(project="p", store=store_dir, name="plain") as plain:
        plain.log_metrics({"loss": 1.0}, step=0)
    with quiet_run(store_dir, name=name, params={key: value}, tags={tag: value}) as run:
        run.log_metrics({metric: 0.25}, step=3)
    store = LocalStore(store_dir)
    name = name or run.id  # a run without a name is called by its id
    m = store.read_manifest(run.id)
    assert (m["name"], m["params"][key], m["tags"][tag]) == (name, value, value)
    series = store.read_points(run.id).series
    assert list(series) == [metric] and [(s, v) for s, v, _w, _e in series[metric]] == [(3, 0.25)]
    rows = {r["id"]: r for r in store.list_runs()}
    assert set(rows) == {plain.id, run.id}
    row = rows[run.id]
    assert (row["name"], row["params"], row["tags"]) == (name, {key: value}, {tag: value})
    assert row["metrics_summary"][metric]["last"] == 0.25
    # the index filters and sorts by such strings too (in SQL or, where SQLite cannot
    # take them, by the same rule in Python)
    assert [r["id"] for r in store.list_runs(params={key: value})] == [run.id]
    assert store.list_runs(sort_metric=metric)[0]["id"] == run.id
    # a fresh index from the manifests holds both runs
    store.close()
    count, bad = LocalStore(store_dir).rebuild_index()
    assert (count, bad) == (2, [])
    # every CLI view of it exits 0; the table keeps one line per run
    capsys.readouterr()
    assert main(["runs", "--wide", "--store", store_dir]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["show", run.id, "--metrics", "--store", store_dir]) == 0
    assert main(["diff", plain.id, run.id, "--store", store_dir]) == 0
    shutil.rmtree(store_dir)


def test_a_split_surrogate_pair_reads_back_as_its_character(store_dir):
    with quiet_run(store_dir, name="\ud800\udce9", params={"k": "x\ud800\udce9"}) as run:
        pass
    row = LocalStore(store_dir).list_runs()[0]
    assert row["name"] == "\U000100e9" and row["params"] == {"k": "x\U000100e9"}
    assert LocalStore(store_dir).read_manifest(run.id)["name"] == "\U000100e9"


def test_the_table_escapes_control_characters_so_columns_hold(store_dir, capsys):
    with quiet_run(store_dir, name="a\nb\x1b[2Jc"):
        pass
    assert main(["runs", "--wide", "--store", store_dir]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "a\\nb\\x1b[2Jc" in lines[1] and "\x1b" not in lines[1]


def _edit_manifest(store, run_id, **changes):
    path = os.path.join(store.run_dir(run_id), record.MANIFEST_FILE)
    with open(path) as fh:
        m = json.load(fh)
    m.update(changes)
    with open(path, "w") as fh:
        json.dump(m, fh)


@pytest.mark.parametrize("changes", [{"name": {"a": 1}}, {"start_time": "yesterday"},
                                     {"heartbeat": [1]}, {"params": ["not", "a", "dict"]},
                                     {"parent": "x"}, {"project": 7}, {"environment": []}])
def test_a_manifest_field_of_the_wrong_type_is_one_unreadable_run(store_dir, capsys, changes):
    """Like a torn run.json: `index --rebuild` and `show` name the run, the field and the fix
    (exit 2), and every other run still lists."""
    with quiet_run(store_dir, name="good") as good:
        good.log_metrics({"loss": 1.0}, step=0)
    with quiet_run(store_dir, name="odd") as odd:
        pass
    store = LocalStore(store_dir)
    _edit_manifest(store, odd.id, **changes)
    store.close()
    assert main(["index", "--rebuild", "--store", store_dir]) == 0
    out, err = capsys.readouterr()
    assert "indexed 1 runs, 1 unreadable" in out
    (field,) = changes
    assert f"skipped {odd.id}" in err and repr(field) in err and "restore it" in err
    assert main(["runs", "--json", "--store", store_dir]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [good.id]
    assert main(["show", odd.id, "--store", store_dir]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_odd_but_valid_manifest_values_list_beside_the_others(store_dir, capsys):
    """A pid beyond 64 bits, a host that is a number, a NaN end time, a summary entry that
    is text: the run lists and shows, and sorting by a metric still works."""
    with quiet_run(store_dir, name="good") as good:
        good.log_metrics({"loss": 1.0}, step=0)
    with quiet_run(store_dir, name="odd") as odd:
        pass
    store = LocalStore(store_dir)
    _edit_manifest(store, odd.id, end_time=float("nan"), writer={"host": 7, "pid": 2 ** 70},
                   metrics_summary={"loss": "high"}, error=["not", "text"])
    store.close()
    assert main(["index", "--rebuild", "--store", store_dir]) == 0
    assert "indexed 2 runs" in capsys.readouterr().out
    assert main(["runs", "--store", store_dir]) == 0
    out = capsys.readouterr().out
    assert good.id in out and odd.id in out
    assert main(["show", odd.id, "--store", store_dir]) == 0
    assert "name        odd" in capsys.readouterr().out
    assert main(["runs", "--sort", "loss", "--json", "--store", store_dir]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == good.id


def test_a_run_missing_from_the_index_is_listed(store_dir, capsys):
    """A run whose index write failed (or that was copied in by hand) still lists."""
    with quiet_run(store_dir, name="a") as a:
        pass
    with quiet_run(store_dir, name="b") as b:
        pass
    LocalStore(store_dir).close()
    conn = sqlite3.connect(os.path.join(store_dir, record.INDEX_FILE))
    conn.execute("DELETE FROM runs WHERE id = ?", (b.id,))
    conn.commit()
    conn.close()
    assert {r["id"] for r in LocalStore(store_dir).list_runs()} == {a.id, b.id}
    assert main(["runs", "--json", "--store", store_dir]) == 0
    assert {r["id"] for r in json.loads(capsys.readouterr().out)} == {a.id, b.id}


@pytest.mark.parametrize("suffix", [".html", ".png"])
def test_reports_draw_names_with_lone_surrogates(store_dir, tmp_path, suffix):
    if suffix == ".png":
        pytest.importorskip("matplotlib")
    with quiet_run(store_dir, name=os.fsdecode(b"caf\xe9")) as run:
        for step in range(3):
            run.log_metrics({os.fsdecode(b"l\xe9"): 1.0 / (step + 1)}, step=step)
    out = tmp_path / f"report{suffix}"
    assert main(["report", run.id, "-o", str(out), "--store", store_dir]) == 0
    data = out.read_bytes()
    assert data
    if suffix == ".html":
        assert "l\\udce9" in data.decode("utf-8")  # valid UTF-8, the odd byte visible
