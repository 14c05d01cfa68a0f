"""The Quick tour pattern on a keras-io style image folder: no `params=`, > 100 image files.

Two runs that differ only in the optimizer's learning rate (read from the
environment, so neither the code nor the command line changes) are different
experiments; two with the same learning rate are the same one. A changed 150th
image is named by `mlrepro diff`, and frameworks imported after the run started
are recorded as if imported before.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import pytest

from mlrepro.cli import main
from mlrepro.store.local import LocalStore

from conftest import ROOT

SCRIPT = """\
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import mlrepro.keras

LR = float(os.environ["TOUR_LR"])
ds = keras.utils.image_dataset_from_directory("images", image_size=(8, 8), batch_size=40,
                                              shuffle=False)
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                          keras.layers.Flatten(), keras.layers.Dense(2)])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR, momentum=0.9),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
callback = mlrepro.keras.ReproCallback(project="tour", checkpoint=False, tensorboard=False)
model.fit(ds, epochs=1, verbose=0, callbacks=[callback])
print("run_id=" + callback.run.id)
"""
CLASSES = ("cats", "dogs")
PER_CLASS = 80


def _png(path: str, value: int) -> None:
    """An 8x8 grayscale PNG (no imaging library needed)."""
    raw = b"".join(b"\0" + bytes([(value + x + y) % 256 for x in range(8)]) for y in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
                 + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _images(proj: str) -> list[str]:
    paths = []
    for c, name in enumerate(CLASSES):
        os.makedirs(os.path.join(proj, "images", name))
        for i in range(PER_CLASS):
            path = os.path.join(proj, "images", name, f"img_{i:03d}.png")
            _png(path, c * 100 + i)
            paths.append(path)
    return paths


def _run(proj: str, store: str, lr: str) -> str:
    env = dict(os.environ, TOUR_LR=lr, MLREPRO_STORE=store)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "train.py"], cwd=proj, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [ln.split("=", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("run_id=")][-1]


def test_quick_tour_runs_tell_lr_apart_and_diff_names_the_changed_150th_image(tmp_path, capsys):
    proj = str(tmp_path / "proj")
    os.makedirs(proj)
    with open(os.path.join(proj, "train.py"), "w") as fh:
        fh.write(SCRIPT)
    images = _images(proj)
    store_dir = str(tmp_path / "store")
    slow, fast, again = (_run(proj, store_dir, lr) for lr in ("0.001", "0.01", "0.001"))
    store = LocalStore(store_dir)
    ms, mf, ma = (store.read_manifest(r) for r in (slow, fast, again))
    assert ms["params"] == {} and ms["auto_params"]["optimizer"]["learning_rate"] == \
        pytest.approx(0.001)
    assert ms["fingerprint"] != mf["fingerprint"]
    assert {k for k in ms["fingerprints"] if ms["fingerprints"][k] != mf["fingerprints"][k]} \
        == {"config", "run"}
    assert ms["fingerprint"] == ma["fingerprint"]          # the same experiment, twice

    assert main(["--store", store_dir, "runs", "--same-as", slow]) == 0
    listed = capsys.readouterr().out
    assert again in listed and fast not in listed          # (the reference is not listed)
    assert main(["--store", store_dir, "diff", slow, fast]) == 0
    out = capsys.readouterr().out
    assert "same fingerprint" not in out
    assert "changed  optimizer.learning_rate: 0.001 -> 0.01" in out

    # the environment names TensorFlow (imported after `import mlrepro`), with its build
    frameworks = ms["environment"]["frameworks"]
    assert frameworks["tensorflow"] and "tf_built_with_cuda" in frameworks
    assert frameworks.get("keras_backend") == "tensorflow"

    # every one of the 160 files is listed (as an object past the first 100), with its root
    train = ms["data"]["train"]
    assert train["method"] == "files" and train["files"] == 2 * PER_CLASS
    assert train["root"] == os.path.realpath(os.path.join(proj, "images")) or \
        train["root"] == os.path.join(proj, "images")
    assert train["file_list_entries"] == 2 * PER_CLASS and len(train["file_list"]) == 100

    changed = images[149]                                   # the 150th image: dogs/img_069.png
    _png(changed, 7)
    later = _run(proj, store_dir, "0.001")
    ml = store.read_manifest(later)
    assert {k for k in ms["fingerprints"] if ms["fingerprints"][k] != ml["fingerprints"][k]} \
        == {"data", "run"}
    assert main(["--store", store_dir, "diff", slow, later]) == 0
    out = capsys.readouterr().out
    assert "train: changed" in out
    assert "files changed: dogs/img_069.png" in out
