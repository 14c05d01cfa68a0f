"""The pure text rules behind `runs`, `diff` and `show`: exact values, differing params, cutting."""

from __future__ import annotations

import math
import struct

import pytest

from mlrepro.compare.listing import differing, key_metrics, runs_table
from mlrepro.compare.text import exact, fit_lines


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


@pytest.mark.parametrize("value,text", [
    (f32(0.01), "0.01"),                    # a float32 learning rate, as Keras records it
    (f32(0.9), "0.9"),
    (f32(1e-7), "1e-07"),
    (f32(123456.7), "123456.7"),
    (0.01, "0.01"),                         # a float64 stays as Python prints it
    (0.30000000000000004, "0.30000000000000004"),   # not a float32: every digit kept
    (math.nextafter(f32(0.01), 1), repr(math.nextafter(f32(0.01), 1))),  # one ulp off: in full
    (3.0, "3.0"), (1e300, "1e+300"), (float("nan"), "nan"), (7, "7"), (True, "true"),
])
def test_a_value_is_exact_and_float32_only_where_it_is_one(value, text):
    assert exact(value) == text
    if isinstance(value, float) and text != "nan":
        assert float(text) == value or f32(float(text)) == value


def test_only_params_that_differ_are_columns_and_missing_counts_as_different():
    assert differing([{"lr": 0.1, "bs": 32, "aug": True}, {"lr": 0.01, "bs": 32.0}]) == \
        ["aug", "lr"]
    assert differing([{"a": {"b": 1}}, {"a": {"b": 1}}]) == []


def test_key_metrics_put_the_sorted_one_first_and_never_pick_timing_ones():
    rows = [{"metrics_summary": {"acc": {}, "epoch_time_s": {}, "examples_per_s": {}}}]
    assert key_metrics(rows) == ["acc"]
    rows[0]["metrics_summary"].update(val_loss={}, loss={})
    assert key_metrics(rows, sort="acc") == ["acc", "loss", "val_loss"]


def test_a_narrow_table_keeps_id_and_status_and_says_what_it_hid():
    rows = [{"id": f"2026-{i}", "status": "finished", "params": {"lr": i, "bs": 8},
             "metrics_summary": {"loss": {"last": 0.5}}} for i in range(2)]
    text = runs_table(rows, width=30)
    assert text.splitlines()[0].split()[:2] == ["ID", "STATUS"]
    assert "bs" not in text.splitlines()[0] and text.splitlines()[-1].endswith(
        "--wide shows all)")
    assert "hidden" not in runs_table(rows, width=30, wide=True)


def test_cut_lines_are_escaped_and_marked():
    lines, cut = fit_lines(["ok", "a\x1b[2Jb" + "x" * 50], 20)
    assert lines[0] == "ok" and len(lines[1]) == 20 and lines[1].endswith("…")
    assert "\x1b" not in lines[1] and cut
    assert fit_lines(["short"], 20) == (["short"], False)
