"""`mlrepro report`: one self-contained HTML page (checked in headless Chromium) or a PNG.

Chromium is Debian's `chromium` package (`apt-get install -y chromium`); the page is
rendered for real, its DOM read back, and its screenshot checked for the curves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from mlrepro.cli import main
from mlrepro.compare.html import flatten_environment, render_report
from mlrepro.store import open_store

from compare_scripts.workspace import (COUNT, TRAIN_TINY, make_repo, run_env, run_script,
                                       write_regression_data, write_text_data)

RUN_A_BLUE = (0x4E, 0x79, 0xA7)     # the report's first and second series colours
RUN_B_ORANGE = (0xF2, 0x8E, 0x2B)


def chromium(tmp: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Debian's headless Chromium, isolated in its own profile, with no network chatter."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("the report test renders the page in Chromium: install Debian's package "
                    "with `apt-get update && apt-get install -y chromium`")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           "--disable-dev-shm-usage", f"--user-data-dir={os.path.join(tmp, 'profile')}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def differing_rows(html: str) -> list[str]:
    """Labels of the table rows the page highlights as differing between runs."""
    return [label.strip() for label in re.findall(r'<tr class="differs"><th>([^<]*)', html)]


def pixels_near(image: np.ndarray, rgb: tuple, tol: int = 12) -> int:
    """How many pixels of an RGB(A) image are within `tol` of a colour."""
    img = image[..., :3]
    if img.dtype != np.uint8:
        img = np.round(img * 255).astype(np.int16)
    diff = np.abs(img.astype(np.int16) - np.array(rgb, dtype=np.int16))
    return int(np.all(diff <= tol, axis=-1).sum())


@pytest.fixture(scope="module")
def keras_runs(tmp_path_factory):
    """Two real Keras runs that differ in the learning rate."""
    base = str(tmp_path_factory.mktemp("report-keras"))
    repo = make_repo(base, TRAIN_TINY, "train.py")
    data = write_regression_data(os.path.join(base, "data", "train.npz"))
    env = run_env(base)
    ids = [run_script(repo, "train.py", ["--data", data, "--lr", lr, "--epochs", "3",
                                         "--out", os.path.join(base, f"out-{lr}")], env)
           for lr in ("0.02", "0.1")]
    return {"store": env["MLREPRO_STORE"], "ids": ids, "base": base}


@pytest.mark.tf
@pytest.mark.slow
def test_report_renders_in_chromium_with_overlaid_curves_and_highlighted_params(
        keras_runs, tmp_path, capsys):
    page = str(tmp_path / "report.html")
    a, b = keras_runs["ids"]
    assert main(["report", a, b, "-o", page, "--store", keras_runs["store"]]) == 0
    assert f"wrote {page} (2 runs)" in capsys.readouterr().out

    dom = chromium(str(tmp_path), "--dump-dom", f"file://{page}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert a in html and b in html
    for metric in ("loss", "mae", "batch/loss"):
        figure = re.search(rf'<figure data-metric="{re.escape(metric)}">(.*?)</figure>', html,
                           re.S)
        assert figure, f"no chart for {metric}"
        assert len(re.findall(r'<g class="series"', figure.group(1))) == 2  # both runs overlaid
    rows = differing_rows(html)
    assert "lr" in rows and "epochs" not in rows and "seed" not in rows
    store = open_store(keras_runs["store"])
    envs = [flatten_environment(store.read_manifest(i)["environment"]) for i in (a, b)]
    if envs[0] == envs[1]:
        assert 'id="environment-same"' in html   # same machine and packages: nothing to list
    else:  # something was installed between the two runs: exactly that is listed
        table = re.search(r'<table id="environment-differences">(.*?)</table>', html, re.S)
        assert set(differing_rows(table.group(1))) == {
            k for k in set(envs[0]) | set(envs[1]) if envs[0].get(k) != envs[1].get(k)}

    shot = str(tmp_path / "report.png")
    proc = chromium(str(tmp_path), f"--screenshot={shot}", "--window-size=1200,1600",
                    "--hide-scrollbars", f"file://{page}")
    assert proc.returncode == 0 and os.path.getsize(shot) > 20_000, proc.stderr[-2000:]
    from matplotlib.image import imread

    image = imread(shot)
    assert image.shape[:2] == (1600, 1200)
    assert image[..., :3].std() > 0.05                     # not a blank page
    assert pixels_near(image, RUN_A_BLUE) > 200            # the first run's curves
    assert pixels_near(image, RUN_B_ORANGE) > 200          # and the second's, overlaid


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


def test_report_lists_environment_differences_and_highlights_them():
    base = {"id": "20260101T000000-aaaaaaaaaa", "project": "p", "status": "finished",
            "params": {"lr": 0.1}, "start_time": 1.0,
            "environment": {"python": "3.11.7", "accelerators": ["cpu"],
                            "frameworks": {"tensorflow": "2.21.0"},
                            "packages": {"numpy": "2.4.6", "keras": "3.15.1"}}}
    other = dict(base, id="20260101T000001-bbbbbbbbbb",
                 environment={"python": "3.11.7", "accelerators": ["NVIDIA H100"],
                              "frameworks": {"tensorflow": "2.20.0"},
                              "packages": {"numpy": "2.4.6", "keras": "3.15.1",
                                           "nvidia-cudnn-cu12": "9.3"}})
    html = render_report([base, other], [{"loss": [(0, 1.0)]}, {"loss": [(0, 2.0)]}])
    table = re.search(r'<table id="environment-differences">(.*?)</table>', html, re.S).group(1)
    assert differing_rows(table) == ["accelerators", "framework tensorflow",
                                     "package nvidia-cudnn-cu12"]
    assert "numpy" not in table and "lr" not in differing_rows(html)


def test_report_refuses_an_unknown_output_format(tmp_path, capsys):
    base = str(tmp_path)
    repo = make_repo(base, COUNT, "count.py")
    data = write_text_data(os.path.join(base, "data", "d.txt"))
    env = run_env(base)
    run_id = run_script(repo, "count.py", ["--data", data], env)
    code = main(["report", run_id, "-o", str(tmp_path / "r.pdf"), "--store", env["MLREPRO_STORE"]])
    assert code == 2
    assert "must end in .html or .png" in capsys.readouterr().err
