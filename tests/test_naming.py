"""Runs named by what differs among them (`lr=0.01`), as the report and `mlrepro diff` show them."""

from __future__ import annotations

import struct

from mlrepro.compare.naming import LABEL_WIDTH, run_labels, short_id


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def run(tail: str, params=None, auto=None, name=None) -> dict:
    run_id = f"20260101T000000-{tail}"
    return {"id": run_id, "name": name or run_id, "params": params or {},
            "auto_params": auto or {}}


def test_runs_are_named_by_the_one_param_that_differs():
    runs = [run("aaaa", {"lr": 0.1, "epochs": 3}), run("bbbb", {"lr": 0.01, "epochs": 3})]
    assert run_labels(runs) == ["lr=0.1", "lr=0.01"]


def test_several_differences_are_all_named_in_key_order():
    runs = [run("aaaa", {"lr": 0.1, "batch": 64, "epochs": 3}),
            run("bbbb", {"lr": 0.01, "batch": 32, "epochs": 3})]
    assert run_labels(runs) == ["batch=64 lr=0.1", "batch=32 lr=0.01"]


def test_float32_values_read_as_typed_and_auto_params_by_their_last_key():
    """No user param differs: the auto-captured learning rate names the runs, at float32
    precision, once although Keras records it twice (optimizer.learning_rate and
    optimizer.config.learning_rate)."""
    def auto(lr):
        return {"optimizer": {"learning_rate": f32(lr), "config": {"learning_rate": f32(lr)}},
                "model": {"layers": 3}}
    runs = [run("aaaa", {"epochs": 3}, auto(0.01)), run("bbbb", {"epochs": 3}, auto(0.001))]
    assert run_labels(runs) == ["learning_rate=0.01", "learning_rate=0.001"]


def test_user_params_win_over_auto_params():
    runs = [run("aaaa", {"lr": 0.1}, {"optimizer": {"learning_rate": f32(0.1)}}),
            run("bbbb", {"lr": 0.2}, {"optimizer": {"learning_rate": f32(0.2)}})]
    assert run_labels(runs) == ["lr=0.1", "lr=0.2"]


def test_nothing_differs_falls_back_to_the_name_then_the_short_id():
    same = {"lr": 0.1}
    assert run_labels([run("aaaa", same, name="baseline"), run("bbbb", same, name="again")]) \
        == ["baseline", "again"]
    assert run_labels([run("aaaa", same), run("bbbb", same)]) == ["aaaa", "bbbb"]
    assert run_labels([run("aaaa", same, name="x"), run("bbbb", same, name="x")]) == \
        ["aaaa", "bbbb"]                         # names collide too: the ids tell them apart
    assert run_labels([run("cccc", same, name="solo")]) == ["solo"]
    assert short_id("20260101T000000-cccc") == "cccc"


def test_colliding_labels_get_the_name_or_short_id_and_the_rest_stay_short():
    runs = [run("aaaa", {"lr": 0.1, "seed": 1}), run("bbbb", {"lr": 0.01, "seed": 1}),
            run("cccc", {"lr": 0.1, "seed": 1})]
    # seed is the same everywhere, so lr names the runs; two runs share lr=0.1
    assert run_labels(runs) == ["lr=0.1 · aaaa", "lr=0.01", "lr=0.1 · cccc"]
    named = [dict(runs[0], name="first"), runs[1], dict(runs[2], name="again")]
    assert run_labels(named) == ["lr=0.1 · first", "lr=0.01", "lr=0.1 · again"]


def test_a_differing_seed_names_the_runs_like_a_param():
    runs = [dict(run("aaaa", {"lr": 0.1}), seed=1), dict(run("bbbb", {"lr": 0.1}), seed=2),
            dict(run("cccc", {"lr": 0.1}), seed=None)]
    assert run_labels(runs) == ["seed=1", "seed=2", "seed=-"]
    same_seed = [dict(r, seed=1) for r in runs[:2]]
    assert run_labels(same_seed) == ["aaaa", "bbbb"]


def test_a_param_set_in_only_one_run_differs_and_reads_as_unset_elsewhere():
    runs = [run("aaaa", {"lr": 0.1}), run("bbbb", {"lr": 0.1, "warmup": 5})]
    assert run_labels(runs) == ["warmup=-", "warmup=5"]


def test_many_differences_are_cut_to_the_width_with_an_ellipsis():
    a = {f"p{i}": i for i in range(20)}
    b = {f"p{i}": i + 100 for i in range(20)}
    labels = run_labels([run("aaaa", a), run("bbbb", b)])
    assert all(len(label) <= LABEL_WIDTH for label in labels)
    assert labels[0].startswith("p0=0 p1=1 ") and labels[0].endswith(" …")
    assert labels[1].startswith("p0=100 p1=101 ") and labels[0] != labels[1]


def test_hostile_strings_are_escaped_and_cut_never_raw():
    evil = "\x1b[31m<script>alert(1)</script>\nline2" + "x" * 500
    runs = [run("aaaa", {"note": evil, "k" * 300: 1}), run("bbbb", {"note": "plain", "k" * 300: 2})]
    labels = run_labels(runs)
    for label in labels:
        assert "\x1b" not in label and "\n" not in label and len(label) <= LABEL_WIDTH
        assert label.isprintable()
    assert labels == ["kkkkkkkkkkkkkkk…=1 …", "kkkkkkkkkkkkkkk…=2 note=plain"]
    only_note = run_labels([run("aaaa", {"note": evil}), run("bbbb", {"note": "plain"})])
    assert only_note == ["note=\\x1b[31m<scri…", "note=plain"]
    # labels are plain text: HTML escaping is the page's job (checked in test_report.py)
    assert "<" in run_labels([run("aaaa", {"n": "<b>"}), run("bbbb", {"n": "&"})])[0]


def test_garbage_records_still_get_names():
    runs = [{"id": "20260101T000000-aaaa", "params": "not a dict"},
            {"id": "20260101T000000-bbbb", "params": None, "auto_params": [1, 2]}]
    assert run_labels(runs) == ["aaaa", "bbbb"]
