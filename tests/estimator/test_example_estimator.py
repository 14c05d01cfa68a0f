"""The ResNet / CIFAR-10 example's Estimator variant (train_estimator.py), TensorFlow 2.15 lane.

Real Estimator training of ResNet-8 on 64 images in the real on-disk formats
(the CIFAR-10 binary archive and TFRecords written by prepare_data.py),
recorded through `mlrepro.estimator.wrap_model_fn`.
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "resnet_cifar10")
sys.path.insert(0, EXAMPLE)

import data as cifar_data  # noqa: E402
import formats  # noqa: E402
import prepare_data  # noqa: E402
import train_estimator  # noqa: E402

from mlrepro.capture.data import fingerprint_files  # noqa: E402
from mlrepro.store import open_store  # noqa: E402

TINY = ["--depth", "8", "--batch-size", "16", "--log-every-n-steps", "2"]


@pytest.fixture
def binary_archive(tmp_path):
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, size=(80, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=80)
    return formats.write_binary_archive(str(tmp_path / "cifar-10-binary.tar.gz"),
                                        {"train": (images[:64], labels[:64]),
                                         "test": (images[64:], labels[64:])})


@pytest.fixture
def tfrecord_dir(tmp_path, binary_archive):
    out = str(tmp_path / "tfrecords")
    assert prepare_data.main(["--data", "cifar-binary", "--data-dir", binary_archive,
                              "--output", out, "--shards", "2"]) == 0
    return out


def _manifest(run) -> dict:
    run.flush(10)
    return open_store(run.store.uri).read_manifest(run.id)


def test_estimator_variant_trains_an_epoch_on_tfrecords_and_records_their_fingerprint(
        tmp_path, tfrecord_dir):
    run = train_estimator.train(["--data", "tfrecord", "--data-dir", tfrecord_dir,
                                 "--epochs", "1", "--checkpoint-dir", str(tmp_path / "est"),
                                 "--model-dir", str(tmp_path / "model"), *TINY])
    m = _manifest(run)
    assert m["status"] == "finished"
    shards = formats.find_tfrecords(tfrecord_dir, "train")
    assert m["data"]["train"]["digest"] == fingerprint_files(shards)["digest"]
    assert m["data"]["train"]["format"] == "tfrecord" and m["data"]["train"]["examples"] == 64
    assert m["params"]["depth"] == 8 and m["seed"] == 1
    summary = m["metrics_summary"]
    assert summary["eval/accuracy"]["step"] == 4  # 64 examples / batch 16, evaluated after it
    assert summary["loss"]["count"] >= 2 and summary["learning_rate"]["last"] == pytest.approx(0.1)
    assert any(name.startswith("checkpoints/model.ckpt-4") for name in m["artifacts"])
    assert "saved_model" in m["artifacts"]
    assert os.path.isdir(tmp_path / "model" / "saved_model")


def test_estimator_variant_reads_the_binary_archive_and_names_it(tmp_path, binary_archive):
    run = train_estimator.train(["--data", "cifar-binary", "--data-dir", binary_archive,
                                 "--epochs", "1", "--checkpoint-dir", str(tmp_path / "est"),
                                 *TINY])
    m = _manifest(run)
    with open(binary_archive, "rb") as fh:
        assert m["data"]["train"]["archive_sha256"] == hashlib.sha256(fh.read()).hexdigest()
    assert m["data"]["validation"]["examples"] == 16


def _weights(model_dir: str) -> dict:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_a_restart_mid_epoch_continues_with_the_same_batches(tmp_path, binary_archive):
    flags = ["--data", "cifar-binary", "--data-dir", binary_archive, "--epochs", "2", *TINY]
    straight = train_estimator.build(flags + ["--checkpoint-dir", str(tmp_path / "a")])
    straight.estimator.train(straight.train_input_fn, max_steps=8)

    first = train_estimator.build(flags + ["--checkpoint-dir", str(tmp_path / "b")])
    first.estimator.train(first.train_input_fn, max_steps=6)  # stops after batch 2 of epoch 2
    assert train_estimator.resume_point(str(tmp_path / "b"), 4) == (1, 2)
    again = train_estimator.build(flags + ["--checkpoint-dir", str(tmp_path / "b")])
    again.estimator.train(again.train_input_fn, max_steps=8)

    a, b = _weights(str(tmp_path / "a")), _weights(str(tmp_path / "b"))
    assert int(a["global_step"]) == int(b["global_step"]) == 8
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_unreadable_data_exits_2_with_the_fix(tmp_path, capsys):
    assert train_estimator.main(["--data", "tfrecord", "--data-dir", str(tmp_path), *TINY]) == 2
    assert "prepare_data.py" in capsys.readouterr().err
    assert cifar_data.SOURCES == formats.SOURCES
