"""`mlrepro report`: one self-contained HTML page (checked in headless Chromium) or a PNG.

Chromium is Debian's `chromium` package (`apt-get install -y chromium`); the page is
rendered for real at a desktop width (1280 px) and a phone width (390 px), its DOM read
back, its layout measured by a probe script run in a copy of the page, and its
screenshots checked for the curves.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from html import escape as html_escape, unescape as html_unescape
from html.parser import HTMLParser

import numpy as np
import pytest

from mlrepro.cli import main
from mlrepro.compare.html import flatten_environment, render_report
from mlrepro.compare.summary import (DETERMINISTIC, DIVERGED, EXACT, UNVERIFIABLE, VERIFIED,
                                     best_indexes, direction_rule, metric_groups,
                                     reproducibility)
from mlrepro.store import open_store

from compare_scripts.workspace import (COUNT, TRAIN_CALLBACK, make_repo, run_env, run_script,
                                       write_regression_data, write_text_data)

RUN_A_BLUE = (0x4E, 0x79, 0xA7)     # the report's first and second series colours
RUN_B_ORANGE = (0xF2, 0x8E, 0x2B)
DESKTOP, PHONE = (1280, 1400), (390, 2400)

# The page at a given width inside an iframe (a headless window is never narrower than 500 px;
# an iframe is), and a script that measures it: how wide its document is, and which elements
# stick out of the viewport other than inside a horizontal-scroll box. The report itself has
# no scripts; only this wrapper does.
PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" width="{width}" height="900" style="border:0" srcdoc="{page}"></iframe>
<script>document.getElementById('f').addEventListener('load', function () {{
var d = this.contentDocument, vw = d.documentElement.clientWidth, bad = [];
d.querySelectorAll('body *').forEach(function (e) {{
  var p = e.parentElement;
  if ((p && p.closest('.scroll')) || e.closest('details:not([open])')) return;
  var r = e.getBoundingClientRect(), c = typeof e.className === 'string' ? e.className : '';
  if (r.width > 0 && r.right > vw + 0.5) bad.push(e.tagName + '.' + c + ' ' + Math.round(r.right));
}});
var o = document.createElement('pre'); o.id = 'probe';
o.textContent = JSON.stringify({{viewport: vw, scroll_width: d.documentElement.scrollWidth,
                                 sticking_out: bad.slice(0, 10)}});
document.body.appendChild(o);
}});</script></body></html>"""


def chromium(tmp: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Debian's headless Chromium, isolated in its own profile, with no network chatter."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("the report test renders the page in Chromium: install Debian's package "
                    "with `apt-get update && apt-get install -y chromium`")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={os.path.join(tmp, 'profile')}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class Tables(HTMLParser):
    """Every table row of a page: the table's id, the row's classes, its cells' text and classes."""

    def __init__(self, html: str):
        super().__init__()
        self.rows: list[dict] = []
        self._table: list[str] = []
        self._row: dict | None = None
        self._cell: list | None = None
        self._head = False
        self._rule = False   # the direction rule under a metric's label is not the label
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table.append(attrs.get("id") or "")
        elif tag == "thead":
            self._head = True
        elif tag == "span" and attrs.get("class") == "rule":
            self._rule = True
        elif tag == "tr" and self._table and not self._head:
            self._row = {"table": self._table[-1], "class": attrs.get("class") or "",
                         "cells": [], "label": ""}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [tag, attrs.get("class") or "", ""]

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table.pop()
        elif tag == "thead":
            self._head = False
        elif tag == "span":
            self._rule = False
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            kind, klass, text = self._cell
            if kind == "th" and not self._row["cells"] and not self._row["label"]:
                self._row["label"] = text.replace("≠", "").strip()
            else:
                self._row["cells"].append({"class": klass, "text": text.replace("★", "").strip()})
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None and not self._rule:
            self._cell[2] += data

    def table(self, ident: str) -> list[dict]:
        return [r for r in self.rows if r["table"] == ident and r["cells"]]


def pixels_near(image: np.ndarray, rgb: tuple, tol: int = 12) -> int:
    """How many pixels of an RGB(A) image are within `tol` of a colour."""
    img = image[..., :3]
    if img.dtype != np.uint8:
        img = np.round(img * 255).astype(np.int16)
    diff = np.abs(img.astype(np.int16) - np.array(rgb, dtype=np.int16))
    return int(np.all(diff <= tol, axis=-1).sum())


@pytest.fixture(scope="module")
def keras_runs(tmp_path_factory):
    """Two real Keras runs recorded by ReproCallback alone that differ in the learning rate:
    timing metrics, a flat `lr` series, the model config and the optimizer auto-captured."""
    base = str(tmp_path_factory.mktemp("report-keras"))
    repo = make_repo(base, TRAIN_CALLBACK, "train.py")
    data = write_regression_data(os.path.join(base, "data", "train.npz"))
    env = run_env(base)
    ids = [run_script(repo, "train.py", ["--data", data, "--lr", lr, "--epochs", "3",
                                         "--checkpoints", os.path.join(base, f"ck-{lr}")], env)
           for lr in ("0.1", "0.01")]
    return {"store": env["MLREPRO_STORE"], "ids": ids, "base": base}


def _shot(tmp: str, page: str, size: tuple, name: str):
    from matplotlib.image import imread

    shot = os.path.join(tmp, name)
    proc = chromium(tmp, f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}",
                    f"file://{page}")
    assert proc.returncode == 0 and os.path.exists(shot), proc.stderr[-2000:]
    image = imread(shot)
    assert image.shape[:2] == (size[1], size[0])
    return image


def _probe(tmp: str, page: str, width: int) -> dict:
    """Layout facts of `page` rendered `width` CSS pixels wide (see PROBE)."""
    with open(page, encoding="utf-8") as fh:
        wrapped = PROBE.format(width=width, page=html_escape(fh.read(), quote=True))
    probed = os.path.join(tmp, f"probe{width}.html")
    with open(probed, "w", encoding="utf-8") as fh:
        fh.write(wrapped)
    dom = chromium(tmp, "--window-size=1400,1000", "--dump-dom", f"file://{probed}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, "the probe script did not run"
    return json.loads(html_unescape(found.group(1)))


@pytest.mark.tf
@pytest.mark.slow
def test_report_in_chromium_reads_summary_first_with_winners_marked_and_timings_folded(
        keras_runs, tmp_path, capsys):
    tmp = str(tmp_path)
    page = str(tmp_path / "report.html")
    a, b = keras_runs["ids"]
    assert main(["report", a, b, "-o", page, "--store", keras_runs["store"]]) == 0
    assert f"wrote {page} (2 runs)" in capsys.readouterr().out
    store = open_store(keras_runs["store"])
    manifests = [store.read_manifest(i) for i in (a, b)]
    series = [store.read_points(i).series for i in (a, b)]

    dom = chromium(tmp, "--window-size=1280,900", "--dump-dom", f"file://{page}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    tables = Tables(html)

    # The summary comes first: before any chart, the first section of the page.
    assert re.findall(r"<h2>([^<]*)</h2>", html)[0] == "Summary"
    assert html.index('id="summary"') < html.index("<figure")
    summary = tables.table("summary-runs")
    assert [r["cells"][0]["text"] for r in summary] == [f"lr=0.1{a.split('-')[-1]}",
                                                         f"lr=0.01{b.split('-')[-1]}"]
    for row, m in zip(summary, manifests):          # as the record says (exact resume, here)
        expected = EXACT if m["resume"]["exact"] else UNVERIFIABLE
        assert row["cells"][2]["text"].startswith(expected + " ")
    differs = tables.table("summary-differs")       # what differs, key by key, at float32
    assert [r["label"] for r in differs] == ["lr", "auto: optimizer.config.learning_rate",
                                             "auto: optimizer.learning_rate"]
    assert all([c["text"] for c in r["cells"]] == ["0.1", "0.01"] for r in differs)
    assert "0.009999999776482582" not in html and "0.10000000149011612" not in html

    # Who won: the run with the lower loss, by the rule printed beside it.
    best_loss = [min(p[1] for p in s["loss"]) for s in series]
    winner = "lr=0.1" if best_loss[0] < best_loss[1] else "lr=0.01"
    won = {r["label"]: r["cells"] for r in tables.table("winners")}
    assert won["loss"][0]["text"] == winner
    assert won["loss"][2]["text"] == "lower is better (loss-like name)"

    # The legend and the curves name the runs by what differs, the ids stay as titles.
    legend = re.search(r'<div class="legend">(.*?)</div>', html, re.S).group(1)
    assert re.findall(r"</span>([^<]+)</span>", legend) == ["lr=0.1", "lr=0.01"]
    assert f'title="{a}"' in legend and f'title="{b}"' in legend
    curves = html[:html.index('<details class="more"')]
    for metric in ("loss", "batch/loss"):
        figure = re.search(rf'<figure data-metric="{re.escape(metric)}">(.*?)</figure>', curves,
                           re.S)
        assert figure, f"no chart for {metric}"
        assert re.findall(r'<g class="series" data-run="([^"]*)"', figure.group(1)) == \
            ["lr=0.1", "lr=0.01"]
    # Timings and the flat lr are folded away below the curves, closed.
    for ident, metrics in (("timing-charts", {"epoch_time_s", "examples_per_s", "steps_per_s",
                                              "train_time_s"}), ("constant-charts", {"lr"})):
        fold = re.search(rf'<details class="more" id="{ident}">(.*?)</details>', html, re.S)
        assert fold, ident
        assert set(re.findall(r'<figure data-metric="([^"]*)"', fold.group(1))) == metrics
        for metric in metrics:
            assert f'<figure data-metric="{metric}">' not in curves
    assert not re.search(r"<details[^>]* open", html)

    # Final and best values: the best run marked per metric; only real differences highlighted.
    values = {r["label"]: r for r in tables.table("metric-summary")}
    assert set(values) == {"loss final", "loss min", "batch/loss final", "batch/loss min"}
    column = 0 if best_loss[0] < best_loss[1] else 1
    assert [("best" in c["class"]) for c in values["loss min"]["cells"]] == \
        [column == 0, column == 1]
    assert "lower is better (loss-like name)" in html
    for row in tables.rows:
        texts = [c["text"] for c in row["cells"]]
        if row["table"] in ("summary-runs", "winners", "runs") or not row["label"]:
            continue
        assert ("differs" in row["class"]) == (len(set(texts)) > 1), (row["table"], row)
    code = {r["label"]: r for r in tables.table("code-data")}
    assert "differs" not in code["commit"]["class"] and "differs" in code["arguments"]["class"]
    # Params: only what differs by default, the rest counted; no raw config dump anywhere.
    assert [r["label"] for r in tables.table("params")] == [r["label"] for r in differs]
    hidden = int(re.search(r'id="params-hidden">(\d+) identical', html).group(1))
    assert hidden > 40                                # the model config, key by key
    envs = [flatten_environment(m["environment"]) for m in manifests]
    if envs[0] == envs[1]:
        assert 'id="environment-same"' in html   # same machine and packages: nothing to list
    else:  # something was installed between the two runs: exactly that is listed
        assert {r["label"] for r in tables.table("environment-differences")} == {
            k for k in set(envs[0]) | set(envs[1]) if envs[0].get(k) != envs[1].get(k)}

    # Rendered: not blank, both runs' curves drawn, at a desktop and at a phone width.
    for size, name in ((DESKTOP, "desktop.png"), (PHONE, "phone.png")):
        image = _shot(tmp, page, size, name)
        assert image[..., :3].std() > 0.05, name                 # not a blank page
        assert pixels_near(image, RUN_A_BLUE) > 200, name        # the first run's curves
        assert pixels_near(image, RUN_B_ORANGE) > 200, name      # and the second's
    # At a phone width nothing is wider than the screen: wide tables scroll in their box.
    # (The same probe on the previous report found its Runs table 649 px wide at 390.)
    for width in (PHONE[0], DESKTOP[0]):
        probe = _probe(tmp, page, width)
        assert probe["viewport"] == width
        assert probe["scroll_width"] <= width and not probe["sticking_out"], probe


@pytest.mark.tf
@pytest.mark.slow
def test_report_all_lists_every_param_with_long_values_folded(keras_runs, tmp_path):
    page = str(tmp_path / "all.html")
    assert main(["report", *keras_runs["ids"], "--all", "-o", page,
                 "--store", keras_runs["store"]]) == 0
    with open(page, encoding="utf-8") as fh:
        html = fh.read()
    params = Tables(html).table("params")
    labels = [r["label"] for r in params]
    assert "epochs" in labels and "auto: model.config.layers" in labels and \
        "auto: fit.batch_size" in labels and 'id="params-hidden"' not in html
    assert [r["label"] for r in params if "differs" in r["class"]] == [
        "lr", "auto: optimizer.config.learning_rate", "auto: optimizer.learning_rate"]
    for row in re.findall(r"<tr[^>]*><th>auto: model.<wbr>(?:config.<wbr>layers|summary)"
                          r"</th>(.*?)</tr>", html, re.S):
        assert row.count('<details class="fold">') == 2   # folded in both runs, closed
    for cell in re.findall(r"<td[^>]*>(.*?)</td>", html, re.S):
        visible = re.sub(r"<details.*?</details>", "", cell, flags=re.S)
        assert len(re.sub(r"<[^>]+>", "", visible)) <= 100  # never a 40-line raw JSON cell


@pytest.mark.tf
@pytest.mark.slow
def test_report_page_is_self_contained(keras_runs, tmp_path):
    page = str(tmp_path / "r.html")
    assert main(["report", *keras_runs["ids"], "-o", page, "--store", keras_runs["store"]]) == 0
    with open(page, encoding="utf-8") as fh:
        html = fh.read()
    assert "<script" not in html and "<link" not in html and "src=" not in html
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    assert oct(os.stat(page).st_mode & 0o777) != oct(0o600)  # shareable, not a private temp file


@pytest.mark.tf
@pytest.mark.slow
def test_report_png_overlays_the_runs_curves(keras_runs, tmp_path):
    png = str(tmp_path / "curves.png")
    assert main(["report", *keras_runs["ids"], "-o", png, "--metric", "loss",
                 "--store", keras_runs["store"]]) == 0
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    image = imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 500
    assert pixels_near(image, RUN_A_BLUE) > 50 and pixels_near(image, RUN_B_ORANGE) > 50


def _manifest(tail: str, **fields) -> dict:
    m = {"id": f"20260101T00000{tail[0]}-{tail * 10}"[:26], "project": "p",
         "status": "finished", "params": {"lr": 0.1}, "start_time": 1.0, "seed": 7,
         "determinism": {"deterministic": True}}
    m.update(fields)
    return m


def test_report_lists_environment_differences_and_highlights_them():
    base = _manifest("a", environment={"python": "3.11.7", "accelerators": ["cpu"],
                                       "frameworks": {"tensorflow": "2.21.0"},
                                       "packages": {"numpy": "2.4.6", "keras": "3.15.1"}})
    other = _manifest("b", environment={"python": "3.11.7", "accelerators": ["NVIDIA H100"],
                                        "frameworks": {"tensorflow": "2.20.0"},
                                        "packages": {"numpy": "2.4.6", "keras": "3.15.1",
                                                     "nvidia-cudnn-cu12": "9.3"}})
    html = render_report([base, other], [{"loss": [(0, 1.0)]}, {"loss": [(0, 2.0)]}])
    rows = Tables(html).table("environment-differences")
    assert [r["label"] for r in rows] == ["accelerators", "framework tensorflow",
                                          "package nvidia-cudnn-cu12"]
    assert all("differs" in r["class"] for r in rows)
    assert "Environment: 3 differences" in html
    assert not Tables(html).table("params")            # lr is the same: nothing to show


def test_report_marks_the_best_run_by_the_metric_direction_and_says_the_rule():
    runs = [_manifest("a", params={"lr": 0.1}), _manifest("b", params={"lr": 0.01}),
            _manifest("c", params={"lr": 0.001})]
    series = [{"val_loss": [(0, 1.0), (1, 0.5)], "val_accuracy": [(0, 0.5), (1, 0.7)]},
              {"val_loss": [(0, 1.0), (1, 0.3)], "val_accuracy": [(0, 0.5), (1, 0.9)]},
              {"val_loss": [(0, 1.0), (1, 0.3)], "val_accuracy": [(0, 0.5), (1, 0.6)]}]
    html = render_report(runs, series)
    tables = Tables(html)
    values = {r["label"]: [("best" in c["class"]) for c in r["cells"]]
              for r in tables.table("metric-summary")}
    assert values["val_loss min"] == [False, True, True]        # lower is better; a tie
    assert values["val_accuracy max"] == [False, True, False]   # higher is better
    assert values["val_accuracy final"] == [False, True, False]
    won = {r["label"]: [c["text"] for c in r["cells"]] for r in tables.table("winners")}
    assert won["val_loss"][:2] == ["lr=0.01, lr=0.001", "0.3"]
    assert won["val_accuracy"] == ["lr=0.01", "0.9", "higher is better (accuracy-like name)"]
    first_steps = {r["label"]: r["class"] for r in tables.table("metric-summary")}
    assert all("differs" in c for c in first_steps.values())


def test_identical_rows_are_not_highlighted_and_close_values_stay_distinct():
    runs = [_manifest("a", params={"lr": 0.1, "epochs": 3}),
            _manifest("b", params={"lr": 0.1 + 1e-9, "epochs": 3})]
    series = [{"loss": [(0, 1.0), (1, 0.5)]}, {"loss": [(0, 1.0), (1, 0.5)]}]
    html = render_report(runs, series, show_all=True)
    rows = {r["label"]: r for r in Tables(html).rows if r["cells"] and r["label"]}
    assert "differs" not in rows["loss final"]["class"] and "differs" not in rows["seed"]["class"]
    assert not any("best" in c["class"] for c in rows["loss min"]["cells"])   # nobody won
    assert "differs" in rows["lr"]["class"]
    texts = [c["text"] for c in rows["lr"]["cells"]]
    assert texts[0] != texts[1]                        # not both "0.1"
    assert "tie: no run is better" in html
    one_sided = render_report(runs, [{"loss": [(0, 1.0)]}, {"acc": [(0, 0.5)]}])
    assert "only one run recorded it" in one_sided and 'class="star"' not in one_sided


def test_report_escapes_hostile_names_params_and_metrics():
    evil = '<script>alert(1)</script>"\x1b[31m'
    runs = [_manifest("a", name=evil, params={"note": evil, evil: 1}),
            _manifest("b", params={"note": "plain", evil: 2})]
    series = [{evil: [(0, 1.0), (1, 2.0)]}, {evil: [(0, 1.5), (1, 2.5)]}]
    html = render_report(runs, series, title=evil)
    assert "<script>" not in html and "\x1b" not in html
    assert "&lt;script&gt;" in html


def test_one_run_report_has_nothing_to_compare_and_marks_no_winner():
    html = render_report([_manifest("a")], [{"loss": [(0, 1.0), (1, 0.5)]}])
    assert "One run: nothing to compare it with." in html and "★" not in html
    assert Tables(html).table("params")        # every param is shown: there is no other run


def test_metric_groups_fold_timings_and_series_flat_within_every_run():
    series = [{"loss": [(0, 1.0), (1, 0.5)], "lr": [(0, 0.1), (1, 0.1)],
               "epoch_time_s": [(0, 1.2), (1, 1.1)], "step_time_ms": [(0, 3.0)],
               "test_accuracy": [(1, 0.8)]},
              {"loss": [(0, 1.0), (1, 0.4)], "lr": [(0, 0.01), (1, 0.01)],
               "epoch_time_s": [(0, 1.3), (1, 1.0)], "test_accuracy": [(1, 0.8)]}]
    names = sorted({n for s in series for n in s})
    assert metric_groups(series, names) == {
        "curves": ["loss", "test_accuracy"],          # one point is a value, not a flat line
        "timing": ["epoch_time_s", "step_time_ms"], "constant": ["lr"]}
    decaying = [{"lr": [(0, 0.1), (1, 0.05)]}, {"lr": [(0, 0.1), (1, 0.1)]}]
    assert metric_groups(decaying, ["lr"])["curves"] == ["lr"]   # a schedule is informative


def test_best_indexes_and_direction_rules():
    assert best_indexes([0.5, 0.3, 0.3], "val_loss") == [1, 2]
    assert best_indexes([0.5, 0.9, 0.6], "val_accuracy") == [1]
    assert best_indexes([0.5, float("nan"), 0.6], "mae") == [0]
    assert best_indexes([0.5, 0.5], "loss") == [] and best_indexes([0.5], "loss") == []
    assert best_indexes([None, 0.5], "loss") == []
    assert direction_rule("top_5_accuracy").startswith("higher is better")
    assert direction_rule("val_loss") == "lower is better (loss-like name)"
    assert direction_rule("perplexity") == "lower is better (loss-like name)"
    assert direction_rule("kl").startswith("lower is better (the default")
    assert not math.isnan(best_indexes([1.0, 2.0], "auc")[0])


def test_reproducibility_says_what_the_record_states_and_never_more():
    """claim <=> truth: each status appears exactly when the record supports it."""
    seeded = {"seed": 1, "determinism": {"deterministic": True}}
    cases = [
        (dict(seeded, reproduction={"of": "20260101T000000-abcd", "verdict": "bit-identical"}),
         VERIFIED, "bit-identical reproduction of run abcd"),
        (dict(seeded, reproduction={"of": "x-ab", "verdict": "within-tolerance"}), VERIFIED, ""),
        (dict(seeded, reproduction={"of": "x-ab", "verdict": "diverged"}), DIVERGED, ""),
        (dict(seeded, reproduction={"of": "x-ab", "verdict": "inconclusive"}), UNVERIFIABLE,
         "inconclusive reproduction of run ab"),
        (dict(seeded, resume={"exact": True}), EXACT, "bit-exact resume; not re-run yet"),
        (dict(seeded, resume={"exact": False, "reasons": ["checkpoints are off"]}),
         UNVERIFIABLE, "resume not exact: checkpoints are off"),
        (seeded, DETERMINISTIC, "not re-run yet"),
        ({"seed": None, "determinism": {"deterministic": True}, "resume": {"exact": True}},
         UNVERIFIABLE, "no seed recorded"),
        ({"seed": 3, "determinism": {"deterministic": False}}, UNVERIFIABLE,
         "op determinism was off"),
        ({"seed": 3}, UNVERIFIABLE, "op determinism was off"),
    ]
    for manifest, status, why in cases:
        got = reproducibility(manifest)
        assert got[0] == status and why in got[1], (manifest, got)


def test_report_refuses_an_unknown_output_format(tmp_path, capsys):
    base = str(tmp_path)
    repo = make_repo(base, COUNT, "count.py")
    data = write_text_data(os.path.join(base, "data", "d.txt"))
    env = run_env(base)
    run_id = run_script(repo, "count.py", ["--data", data], env)
    code = main(["report", run_id, "-o", str(tmp_path / "r.pdf"), "--store", env["MLREPRO_STORE"]])
    assert code == 2
    assert "must end in .html or .png" in capsys.readouterr().err
