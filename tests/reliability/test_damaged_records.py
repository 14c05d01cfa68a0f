"""Damaged records and bad arguments end in a warning or a one-line error, never a crash.

Also: a run killed before its manifest caught up shows the metrics its points hold, and
its duration is its last heartbeat minus its start (not the wall clock's).
"""

from __future__ import annotations

import json
import os
import signal
import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlrepro
from mlrepro import record
from mlrepro.cli import main
from mlrepro.compare.svg import line_chart, nice_ticks
from mlrepro.store.local import LocalStore

from conftest import run_py


@pytest.fixture
def two_runs(store_dir):
    ids = []
    for lr in (0.1, 0.01):
        with mlrepro.start_run(project="p", store=store_dir, params={"lr": lr}) as run:
            for step in range(10):
                run.log_metrics({"loss": lr / (step + 1), "acc": step / 10}, step=step)
        ids.append(run.id)
    return ids


def _path(store_dir, run_id, name):
    return os.path.join(LocalStore(store_dir).run_dir(run_id), name)


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in caught
                    if issubclass(w.category, mlrepro.MlreproWarning)]


def test_non_utf8_metric_names_do_not_stop_show_diff_or_report(store_dir, two_runs, tmp_path,
                                                                capsys):
    a, b = two_runs
    with open(_path(store_dir, a, record.METRIC_NAMES_FILE), "r+b") as fh:
        fh.write(b'"l\xe9\xff\xfe"\n')  # the first name, "loss", overwritten by other bytes
    for args in (["show", a, "--metrics"], ["show", a, "--json", "--metrics"], ["diff", a, b],
                 ["report", a, b, "-o", str(tmp_path / "r.html")]):
        assert main([*args, "--store", store_dir]) == 0, args
    # the name keeps its place, its bytes kept as lone surrogates (as os.fsdecode does)
    names = LocalStore(store_dir).read_points(a).names()
    assert names == ["acc", "l\udce9\udcff\udcfe"]


def test_garbage_metrics_are_skipped_with_one_warning_naming_the_file(store_dir, two_runs,
                                                                      tmp_path, capsys):
    a, b = two_runs
    path = _path(store_dir, a, record.METRICS_FILE)
    with open(path, "ab") as fh:
        fh.write(os.urandom(record.POINT.size * 50))
        # a point whose name id has no name, and one with garbage flags
        fh.write(record.POINT.pack(3, 1.0, time.time(), 0, 7, 0, 0))
        fh.write(record.POINT.pack(3, 1.0, time.time(), 0, 0, 0, 9))
    pts, caught = _warnings_of(lambda: LocalStore(store_dir).read_points(a))
    assert len(caught) == 1 and path in caught[0] and "of 72 metric points" in caught[0]
    assert pts.names() == ["acc", "loss"] and len(pts.series["loss"]) == 10
    with pytest.warns(mlrepro.MlreproWarning, match="metrics.bin: skipped 52 of 72"):
        assert main(["show", a, "--metrics", "--store", store_dir]) == 0
    out = capsys.readouterr().out
    assert "#" not in out and "loss (10 points)" in out
    with pytest.warns(mlrepro.MlreproWarning, match="metrics.bin: skipped"):
        assert main(["report", a, b, "-o", str(tmp_path / "r.html"), "--store", store_dir]) == 0


def test_a_metrics_file_of_pure_garbage_reports_without_a_crash(store_dir, two_runs, tmp_path,
                                                                capsys):
    """It was a ZeroDivisionError in the chart code."""
    a, b = two_runs
    with open(_path(store_dir, a, record.METRICS_FILE), "wb") as fh:
        fh.write(os.urandom(2000))
    for args in (["report", a, b, "-o", str(tmp_path / "r.html")], ["show", a, "--metrics"],
                 ["diff", a, b]):
        with pytest.warns(mlrepro.MlreproWarning, match="metrics.bin: skipped"):
            assert main([*args, "--store", store_dir]) == 0, args
    assert "internal error" not in capsys.readouterr().err


def test_events_that_are_json_but_not_events_are_skipped(store_dir, two_runs, capsys):
    a, b = two_runs
    with open(_path(store_dir, a, record.EVENTS_FILE), "ab") as fh:
        fh.write(b'[1, 2]\n7\n"text"\nnull\n\xff\xfe\n{"kind": "warning", "message": "kept"}\n')
    events = LocalStore(store_dir).read_events(a)
    assert all(isinstance(e, dict) for e in events) and events[-1]["message"] == "kept"
    for args in (["show", a], ["diff", a, b]):
        assert main([*args, "--store", store_dir]) == 0, args
    assert "kept" in capsys.readouterr().out


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=1500), names=st.binary(max_size=200))
def test_any_bytes_in_the_metric_files_read_as_valid_points_or_none(tmp_path_factory, blob,
                                                                    names):
    store = LocalStore(str(tmp_path_factory.mktemp("fuzz")))
    os.makedirs(store.run_dir("r"))
    with open(_path(store.root, "r", record.METRICS_FILE), "wb") as fh:
        fh.write(blob)
    with open(_path(store.root, "r", record.METRIC_NAMES_FILE), "wb") as fh:
        fh.write(names)
    pts, _caught = _warnings_of(lambda: store.read_points("r"))
    known = record.decode_names(names)
    for name, series in pts.series.items():
        assert name in known
        assert all(e >= record.NO_EPOCH and w >= 0 for _s, _v, w, e in series)


@pytest.mark.parametrize("values, steps", [
    ([5e-324, 1e-323], [0, 1]),                 # a span that underflows
    ([0.0, 2.5e-323], [0, 1]),                  # a tick step below the smallest float
    ([-1.7e308, 1.7e308], [0, 1]),              # a span that overflows
    ([1.0, 1.0], [-2 ** 63, 2 ** 63 - 1]),      # steps that span the whole int64 range
    ([1e-320, 1e-320 * 1.5, 2e-320], [5, 5, 5]),
])
def test_charts_draw_any_span_of_values(values, steps):
    svg = line_chart("x", [("run", list(zip(steps, values)))])
    assert svg.startswith("<svg") and "nan" not in svg and "inf" not in svg
    assert nice_ticks(min(values), max(values))


@pytest.mark.parametrize("args, message", [
    (["runs", "--store", "{missing}"], "there is no store at"),
    (["show", "x", "--store", "{missing}"], "there is no store at"),
    (["index", "--rebuild", "--store", "{missing}"], "there is no store at"),
    (["runs", "--store", "{file}"], "is a file, not a store directory"),
    (["show", "x", "--store", "{file}"], "is a file, not a store directory"),
    (["recover", "--store", "{file}"], "is a file, not a store directory"),
    (["recover", "--from", "{file}", "--store", "{store}"], "is not a directory"),
    (["runs", "--limit", "-1", "--store", "{store}"], "-1 is negative"),
    (["runs", "--limit", "x", "--store", "{store}"], "is not a whole number"),
    (["runs", "--sort", "nosuch", "--store", "{store}"], "--sort 'nosuch' is not a metric"),
    (["report", "{a}", "--metric", "nomatch*", "-o", "{out}", "--store", "{store}"],
     "--metric 'nomatch*' matches no metric"),
])
def test_bad_paths_and_arguments_are_one_line_errors(store_dir, two_runs, tmp_path, capsys,
                                                     args, message):
    afile = tmp_path / "a-file"
    afile.write_text("not a store")
    values = {"missing": str(tmp_path / "no-such-store"), "file": str(afile),
              "store": store_dir, "a": two_runs[0], "out": str(tmp_path / "r.html")}
    assert main([a.format(**values) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not os.path.exists(values["missing"]) and not os.path.exists(values["out"])


def test_good_limits_sorts_and_patterns_still_work(store_dir, two_runs, tmp_path, capsys):
    a, b = two_runs
    assert main(["runs", "--limit", "1", "--json", "--store", store_dir]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [b]
    assert main(["runs", "--limit", "0", "--sort", "loss", "--json", "--store", store_dir]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [b, a]
    assert main(["report", a, "--metric", "lo*", "-o", str(tmp_path / "r.html"),
                 "--store", store_dir]) == 0
    assert main(["runs", "--status", "failed", "--sort", "nosuch", "--store", store_dir]) == 0
    assert capsys.readouterr().out.strip().endswith("no runs")  # nothing listed to check


KILLED_RUN = """
import os, signal, sys, time
import mlrepro
run = mlrepro.start_run(project="p", store=sys.argv[1], name="killed")
time.sleep(1.0)           # the first manifest write is done
for step in range(27):
    run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
time.sleep(1.0)           # the points are flushed; the manifest waits for its heartbeat
print(run.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_shows_its_metrics_and_a_duration_that_stops(store_dir, capsys):
    proc = run_py(["-c", KILLED_RUN, store_dir])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_id = proc.stdout.split()[-1]
    store = LocalStore(store_dir)
    manifest = store.read_manifest(run_id)
    assert manifest["metrics_summary"] == {}  # the case: the record's summary lags its points
    assert main(["show", run_id, "--json", "--store", store_dir]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "crashed" and shown["metrics_summary"]["loss"]["count"] == 27
    assert main(["runs", "--json", "--store", store_dir]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["metrics_summary"]["loss"]["last"] == pytest.approx(1 / 27)
    texts = []
    for _ in range(2):
        assert main(["show", run_id, "--store", store_dir]) == 0
        show = capsys.readouterr().out
        assert main(["runs", "--wide", "--store", store_dir]) == 0
        texts.append((show, capsys.readouterr().out))
        time.sleep(1.1)
    assert texts[0] == texts[1]  # the duration does not grow with the wall clock
    show, table = texts[0]
    assert "metrics:\n  (none)" not in show and "loss" in show
    seconds = manifest["heartbeat"] - manifest["start_time"]
    assert f"duration    {seconds:.1f}s" in show
    assert f"{seconds:.1f}s" in table and "0.037" in table
