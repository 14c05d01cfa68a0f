"""What `mlrepro runs`, `diff` and `show` print, compared with golden files at 80 and 120 columns.

The store is built here with fixed ids, times and environments, so the output is the same on
every machine. After a deliberate change to the output, regenerate the files with
`UPDATE_GOLDEN=1 python -m pytest tests/test_cli_output.py` and review `git diff tests/golden`.
"""

from __future__ import annotations

import os
import struct
import time

import pytest

from mlrepro.cli import main
from mlrepro.record import new_manifest
from mlrepro.store.base import ManifestWrite, MetricsAppend
from mlrepro.store.local import LocalStore
from mlrepro.store.points import summarize

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
START = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
IDS = ("20260528T202640-a1a1a1a1a1", "20260528T203640-b2b2b2b2b2", "20260528T204640-c3c3c3c3c3")
LONG_KEY = "k" * 5000


def f32(x: float) -> float:
    """`x` as Keras records a float32 hyperparameter (0.01 -> 0.009999999776482582)."""
    return struct.unpack("f", struct.pack("f", x))[0]


ENV = {"python": "3.11.7", "platform": "Linux-6.1-x86_64", "cpu": {"model": "Xeon", "cores": 8},
       "memory_bytes": 16 << 30, "accelerators": ["cpu"],
       "frameworks": {"keras": "3.15.1", "numpy": "2.4.6", "tensorflow": "2.21.0"},
       "packages": {"numpy": "2.4.6", "tensorflow": "2.21.0"}, "variables": {}}


def _run(store, i, *, lr, batch_size, losses, name, note="plain"):
    run_id = IDS[i]
    start = START + 600 * i
    m = new_manifest(run_id, "cifar", name, started=start, host="h", pid=1)
    m.update(status="finished", end_time=start + 95.5, heartbeat=start + 95.5, seed=7,
             determinism={"deterministic": True}, fingerprint=f"{i}" * 64,
             params={"lr": lr, "batch_size": batch_size, "epochs": 3, "note": note,
                     LONG_KEY: 1},
             auto_params={"optimizer": {"class": "Adam", "learning_rate": f32(lr),
                                        "beta_1": f32(0.9), "clipnorm": None},
                          "model": {"layers": 3, "units": 64}},
             code={"git": True, "commit": "6d72efb19c6f" + "0" * 28, "branch": "main",
                   "dirty": False, "entry_point": "train.py", "argv": ["train.py", "--lr",
                                                                       str(lr)]},
             data={"train": {"kind": "files", "source": "/data/cifar", "digest": "f4d385" * 10,
                             "size": 1024, "files": 10}},
             artifacts={"arrays": {"kind": "arrays", "digest": "ab" * 32, "size": 4096},
                        "model.keras": {"kind": "file", "digest": "cd" * 32, "size": 81920}},
             runtime={"kind": "local", "rank": 0, "world_size": 1}, environment=ENV)
    if i == 0:
        m["params"]["note"] = "line one\nline two \x1b[31mred\x1b[0m"
    points = []
    for step, loss in enumerate(losses):
        wall = start + step
        points += [(step, loss, wall, step, "loss", 0), (step, loss + 0.1, wall, step, "val_loss", 0),
                   (step, 1 - loss, wall, step, "val_accuracy", 0),
                   (step, 1.5 + i + step, wall, step, "epoch_time_s", 0)]
    assert store.claim_run_id(run_id)
    store.write_batch([MetricsAppend(run_id, points)])
    m["metrics_summary"] = summarize(store.read_points(run_id))
    store.write_batch([ManifestWrite(run_id, m)])


@pytest.fixture
def fixed_store(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    root = str(tmp_path / "store")
    store = LocalStore(root)
    _run(store, 0, lr=0.01, batch_size=32, losses=[0.9, 0.6, 0.4], name="baseline")
    _run(store, 1, lr=0.001, batch_size=32, losses=[0.9, 0.7, 0.5], name="small-lr")
    _run(store, 2, lr=0.01, batch_size=128, losses=[0.9, 0.65, 0.45], name="big-batch")
    store.close()
    yield root
    monkeypatch.delenv("TZ")
    time.tzset()


def _check(capsys, name: str, text: str) -> None:
    path = os.path.join(GOLDEN, name)
    if os.environ.get("UPDATE_GOLDEN"):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    with open(path, encoding="utf-8") as fh:
        assert text == fh.read(), f"{name} changed: UPDATE_GOLDEN=1 regenerates it"


def _out(capsys, monkeypatch, width: int, argv: list[str]) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("width", [80, 120])
def test_runs_output(fixed_store, capsys, monkeypatch, width):
    text = _out(capsys, monkeypatch, width, ["runs", "--store", fixed_store])
    _check(capsys, f"runs_{width}.txt", text)
    assert all(len(line) <= width for line in text.splitlines())
    header = text.splitlines()[0].split()
    # The params that differ (user and auto-captured, dotted), then key metrics; not epochs.
    assert "lr" in header and "epochs" not in header and "loss" in header
    assert "epoch_time_s" not in header
    if width == 80:
        assert "--wide shows all" in text.splitlines()[-1]
    else:
        assert "optimizer.learning_rate" in header and "0.01" in text


def test_runs_wide_and_columns(fixed_store, capsys, monkeypatch):
    wide = _out(capsys, monkeypatch, 80, ["runs", "--store", fixed_store, "--wide"])
    _check(capsys, "runs_wide.txt", wide)
    assert "hidden" not in wide and "optimizer.learning_rate" in wide.splitlines()[0]
    chosen = _out(capsys, monkeypatch, 80, ["runs", "--store", fixed_store, "--columns",
                                            "lr,optimizer.learning_rate,val_loss"])
    assert chosen.splitlines()[0].split() == ["ID", "lr", "optimizer.learning_rate", "val_loss"]
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["runs", "--store", fixed_store, "--columns", "lr,nosuch"]) == 2
    assert "--columns 'nosuch' is not a column" in capsys.readouterr().err


@pytest.mark.parametrize("width", [80, 120])
def test_diff_output(fixed_store, capsys, monkeypatch, width):
    text = _out(capsys, monkeypatch, width, ["diff", IDS[0], IDS[1], "--store", fixed_store])
    _check(capsys, f"diff_{width}.txt", text)
    assert "optimizer.learning_rate: 0.01 -> 0.001" in text      # float32, key by key
    # each run named by the params that differ (escaped, cut), then its id for `show`
    head = text.splitlines()[:2]
    assert head[0].startswith("A  lr=0.01 note=line one\\nlin…  " + IDS[0])
    assert head[1].startswith("B  lr=0.001 note=plain          " + IDS[1])
    assert "changed  lr: 0.01 -> 0.001" in text and "epoch_time_s" not in text
    assert all(len(line) <= width for line in text.splitlines())
    assert "8 identical params, 1 timing metric not shown; --all shows them" in text
    every = _out(capsys, monkeypatch, width, ["diff", IDS[0], IDS[1], "--all",
                                              "--store", fixed_store])
    assert "same     optimizer.beta_1: 0.9" in every and "epoch_time_s: " in every
    assert "not shown" not in every


@pytest.mark.parametrize("width", [80, 120])
def test_show_output(fixed_store, capsys, monkeypatch, width):
    text = _out(capsys, monkeypatch, width, ["show", IDS[0], "--store", fixed_store])
    _check(capsys, f"show_{width}.txt", text)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    assert "\x1b" not in text and "line one\\nline two \\x1b[31mred" in text
    assert "fingerprint 0000" in text and "run         " + IDS[0] in text
    assert "  arrays  abababab" in text and "arrays arrays" not in text
    assert lines[-1] == "(long values cut to fit; --json prints them whole)"
