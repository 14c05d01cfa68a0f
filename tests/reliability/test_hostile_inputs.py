"""Hostile inputs: names that try to escape the store, absurd numbers, odd params, unicode."""

from __future__ import annotations

import json
import math
import os
import warnings

import pytest

import mlrepro
from mlrepro.store.local import LocalStore


@pytest.mark.parametrize("name", ["../escape.txt", "../../etc/evil", "/abs/path.txt",
                                  "a/../../b.txt", "nul\x00byte"])
def test_artifact_names_cannot_escape_the_run(store_dir, tmp_path, name):
    f = tmp_path / "payload.txt"
    f.write_text("payload")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mlrepro.start_run(project="p", store=store_dir) as run:
            run.log_artifact(str(f), name)
    assert any("artifact not recorded" in str(w.message) for w in caught)
    assert LocalStore(store_dir).read_manifest(run.id)["artifacts"] == {}
    outside = [p for p in tmp_path.rglob("*") if "payload" not in p.name
               and not str(p).startswith(store_dir) and p.is_file()
               and not str(p).startswith(str(tmp_path / "cache"))
               and not str(p).startswith(str(tmp_path / "spool"))]
    assert outside == []


def test_artifact_names_may_have_folders_and_unicode(store_dir, tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"w")
    with mlrepro.start_run(project="p", store=store_dir) as run:
        run.log_artifact(str(f), "checkpoints/époque-1/ü.bin")
    assert "checkpoints/époque-1/ü.bin" in LocalStore(store_dir).read_manifest(run.id)["artifacts"]


def test_huge_nan_and_infinite_metric_values_round_trip(store_dir):
    values = [1e308, -1e308, float("inf"), float("-inf"), float("nan"), 5e-324, 0.0, -0.0]
    with mlrepro.start_run(project="p", store=store_dir) as run:
        for step, v in enumerate(values):
            run.log_metrics({"x": v}, step=step)
        run.log_metrics({"y": 2 ** 62}, step=0)
    store = LocalStore(store_dir)
    got = store.read_points(run.id).values("x")
    assert got[:4] == values[:4] and math.isnan(got[4]) and got[5:] == values[5:]
    assert math.copysign(1, got[-1]) == -1
    summary = store.read_manifest(run.id)["metrics_summary"]["x"]
    assert summary["max"] == float("inf") and summary["min"] == float("-inf")
    # the index and the CLI cope with non-finite values
    assert store.list_runs(sort_metric="x")[0]["id"] == run.id


def test_params_that_are_not_json_are_recorded_readably(store_dir):
    class Opaque:
        def __repr__(self):
            return "Opaque()"

    recursive: list = []
    recursive.append(recursive)
    params = {"obj": Opaque(), "set": {3, 1}, "bytes": b"\xff\x00", "tuple": (1, "a"),
              "deep": recursive, 7: "int key", "nan": float("nan"), "λ": "ünïcødé ✓"}
    with mlrepro.start_run(project="p", store=store_dir, params=params) as run:
        pass
    m = LocalStore(store_dir).read_manifest(run.id)
    p = m["params"]
    assert p["obj"] == "Opaque()" and p["set"] == [1, 3] and p["tuple"] == [1, "a"]
    assert p["7"] == "int key" and p["λ"] == "ünïcødé ✓" and math.isnan(p["nan"])
    assert isinstance(p["deep"], list)
    json.dumps(m)  # the whole manifest stays JSON


def test_unicode_project_names_and_metric_names(store_dir):
    with mlrepro.start_run(project="visión", store=store_dir, name="試験") as run:
        run.log_metrics({"損失": 0.5, "loss/𝛼": 1.0}, step=0)
    store = LocalStore(store_dir)
    assert store.list_runs(project="visión")[0]["name"] == "試験"
    assert store.read_points(run.id).names() == ["loss/𝛼", "損失"]


def test_a_project_name_with_a_slash_is_refused_before_anything_is_written(store_dir):
    with pytest.raises(mlrepro.MlreproError, match="without '/'"):
        mlrepro.start_run(project="../x", store=store_dir)
    assert not os.path.exists(os.path.join(store_dir, "runs"))


def test_a_huge_param_value_does_not_break_listing(store_dir):
    with mlrepro.start_run(project="p", store=store_dir, params={"blob": "x" * 2_000_000}):
        pass
    assert len(LocalStore(store_dir).list_runs()) == 1
