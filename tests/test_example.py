"""The bundled ResNet / CIFAR-10 example (examples/resnet_cifar10), trained for real on tiny data.

Data is made in the real on-disk formats (the official CIFAR-10 binary archive,
TFRecords written by the example's own prepare_data.py, tensorflow-datasets
through `tfds.testing.mock_data`); nothing is downloaded. Models are ResNet-8
(the 6n+2 family with n=1) on 64 images, one epoch, batch 16.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

from conftest import ROOT, child_env

EXAMPLE = os.path.join(ROOT, "examples", "resnet_cifar10")
sys.path.insert(0, EXAMPLE)

import data  # noqa: E402
import formats  # noqa: E402
import hparams  # noqa: E402
import model as resnet  # noqa: E402
import pipeline  # noqa: E402
import prepare_data  # noqa: E402
import train  # noqa: E402

from mlrepro.capture.data import fingerprint_files  # noqa: E402
from mlrepro.cli import main  # noqa: E402
from mlrepro.store import open_store  # noqa: E402

TINY = ["--depth", "8", "--epochs", "1", "--batch-size", "16", "--verbose", "0",
        "--log-every-n-steps", "2", "--export", "none"]


@pytest.fixture(scope="module")
def cifar_arrays():
    """64 training and 16 test images with labels, as CIFAR-10 holds them (HWC uint8)."""
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(80, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=80)
    return {"train": (images[:64], labels[:64]), "test": (images[64:], labels[64:])}


@pytest.fixture
def binary_archive(tmp_path, cifar_arrays):
    """A `cifar-10-binary.tar.gz`: `cifar-10-batches-bin/data_batch_{1..5}.bin` + `test_batch.bin`.
    """
    return formats.write_binary_archive(str(tmp_path / "cifar-10-binary.tar.gz"), cifar_arrays)


@pytest.fixture
def tfrecord_dir(tmp_path, binary_archive):
    """TFRecords written by the example's prepare_data.py from the archive (2 train shards)."""
    out = str(tmp_path / "tfrecords")
    assert prepare_data.main(["--data", "cifar-binary", "--data-dir", binary_archive,
                              "--output", out, "--shards", "2"]) == 0
    return out


def _manifest(run) -> dict:
    run.flush(10)
    return open_store(run.store.uri).read_manifest(run.id)


def _sha256(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


# -- the model ------------------------------------------------------------------------------------

def test_resnet20_has_the_papers_parameter_count():
    counts = {d: resnet.trainable_parameters(resnet.build_resnet(d)) for d in resnet.DEPTHS}
    assert counts[20] == 269_722  # option A: the paper's "0.27M"
    for depth, count in counts.items():
        paper = resnet.PAPER_PARAMETERS[depth]
        assert f"{count / 1e6:.{len(paper) - 3}f}M" == paper, (depth, count, paper)
    option_b = resnet.build_resnet(20, shortcut="B")
    assert resnet.trainable_parameters(option_b) == 272_474  # two 1x1 projections + BN
    assert resnet.build_resnet(20).output_shape == (None, 10)


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    import tensorflow as tf

    x = tf.reshape(tf.range(2 * 4 * 4 * 2, dtype=tf.float32), (2, 4, 4, 2))
    y = resnet.ZeroPadShortcut(6, 2)(x).numpy()
    assert y.shape == (2, 2, 2, 6)
    np.testing.assert_array_equal(y[..., 2:4], x.numpy()[:, ::2, ::2, :])
    assert not y[..., :2].any() and not y[..., 4:].any()


def test_depth_that_is_not_6n_plus_2_is_refused_with_the_allowed_values(capsys):
    with pytest.raises(SystemExit):
        hparams.parse(["--depth", "21"])
    assert "6n+2" in capsys.readouterr().err


# -- flags = SageMaker hyperparameters ------------------------------------------------------------

def test_defaults_are_the_papers_recipe():
    args = hparams.parse([])
    assert (args.depth, args.batch_size, args.learning_rate, args.momentum, args.weight_decay,
            args.epochs, args.shortcut, args.augment) == (20, 128, 0.1, 0.9, 1e-4, 164, "A", True)
    boundaries, values = hparams.learning_rate_schedule(args, hparams.steps_per_epoch(50_000, 128))
    assert boundaries == [82 * 391, 123 * 391]          # 32k and 48k iterations
    assert args.epochs * 391 == 64_124                   # stop at 64k
    assert values == pytest.approx([0.1, 0.01, 0.001])
    deep = hparams.parse(["--depth", "110"])
    boundaries, values = hparams.learning_rate_schedule(deep, 391)
    assert boundaries[0] == 391 and values[:2] == pytest.approx([0.01, 0.1])  # 110's warm-up


def test_flags_accept_the_forms_sagemaker_passes_hyperparameters_in():
    args = hparams.parse(["--batch_size", "64", "--augment", "False", "--deterministic", "true",
                          "--lr-boundaries", "[91, 136]", "--weight_decay", "0.0005"])
    assert (args.batch_size, args.augment, args.deterministic, args.lr_boundaries,
            args.weight_decay) == (64, False, True, (91.0, 136.0), 5e-4)


def test_a_spot_job_checkpoints_every_ten_minutes_unless_told_otherwise(tmp_path, monkeypatch):
    from mlrepro.runtime import detect
    from test_runtime import make_sagemaker_tree

    monkeypatch.delenv("MLREPRO_CHECKPOINT_EVERY", raising=False)
    auto = hparams.parse([])
    assert hparams.checkpoint_every(auto, spot=True) == "10min"
    assert hparams.checkpoint_every(auto, spot=False) == "epoch"
    monkeypatch.setenv("MLREPRO_CHECKPOINT_EVERY", "500 steps")   # launch --checkpoint-every
    assert hparams.checkpoint_every(auto, spot=False) == "500 steps"
    monkeypatch.delenv("MLREPRO_CHECKPOINT_EVERY")
    told = hparams.parse(["--checkpoint-every", "500 steps"])
    assert hparams.checkpoint_every(told, spot=True) == "500 steps"
    assert train._checkpoint_every(hparams.parse(["--checkpoint_every", "2"]), True) == 2
    # how often to save is not part of the experiment: a restart may change it
    assert hparams.recorded_params(told) == hparams.recorded_params(auto)
    # what makes a job a spot job: SageMaker's own job config
    base = make_sagemaker_tree(tmp_path / "spot", job_config={
        "TrainingJobName": "j", "EnableManagedSpotTraining": True})
    assert detect(environ={}, base_dir=base, argv=["x"]).spot is True
    assert detect(environ={}, base_dir=make_sagemaker_tree(tmp_path / "on-demand"),
                  argv=["x"]).spot is False


# -- data sources and formats ----------------------------------------------------------------------

def test_binary_archive_and_folder_read_back_the_written_examples(tmp_path, binary_archive,
                                                                  cifar_arrays):
    from_archive = data.load_split("cifar-binary", "train", binary_archive)
    images, labels = data.arrays(from_archive)
    np.testing.assert_array_equal(images, cifar_arrays["train"][0])
    np.testing.assert_array_equal(labels, cifar_arrays["train"][1])
    folder = formats.write_binary_dir(str(tmp_path / "bin"), cifar_arrays)
    from_folder = data.load_split("cifar-binary", "test", os.path.dirname(folder[0]))
    np.testing.assert_array_equal(data.arrays(from_folder)[0], cifar_arrays["test"][0])
    # one record is a label byte then the R, G and B planes
    raw = open(folder[0], "rb").read(formats.RECORD_BYTES)
    assert raw[0] == cifar_arrays["train"][1][0]
    assert raw[1:1025] == cifar_arrays["train"][0][0, :, :, 0].tobytes()
    with open(folder[0], "ab") as fh:
        fh.write(b"x")
    with pytest.raises(data.DataUnavailable, match="not a CIFAR-10 binary batch"):
        data.load_split("cifar-binary", "train", os.path.dirname(folder[0]))


def test_prepare_data_writes_tfrecords_holding_the_same_examples(tfrecord_dir, binary_archive,
                                                                 cifar_arrays):
    files = formats.find_tfrecords(tfrecord_dir, "train")
    assert [os.path.basename(f) for f in files] == ["train-00000-of-00002.tfrecord",
                                                    "train-00001-of-00002.tfrecord"]
    split = data.load_split("tfrecord", "train", tfrecord_dir)
    np.testing.assert_array_equal(data.arrays(split)[0], cifar_arrays["train"][0])
    np.testing.assert_array_equal(data.arrays(split)[1], cifar_arrays["train"][1])
    manifest = json.load(open(os.path.join(tfrecord_dir, prepare_data.MANIFEST)))
    assert manifest["splits"]["train"]["files"] == {os.path.basename(f): _sha256(f)
                                                    for f in files}
    assert manifest["splits"]["train"]["from"]["archive_sha256"] == _sha256(binary_archive)


def test_missing_files_name_the_fix():
    with pytest.raises(data.DataUnavailable, match="prepare_data.py"):
        data.load_split("tfrecord", "train", ROOT)
    with pytest.raises(data.DataUnavailable, match="needs --data-dir"):
        data.load_split("cifar-binary", "train", None)


# -- the input pipeline ----------------------------------------------------------------------------

def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_input_order_and_augmentation_are_a_pure_function_of_seed_and_epoch(binary_archive):
    from mlrepro._keras import order

    split = data.load_split("cifar-binary", "train", binary_archive)
    whole = _batches(pipeline.train_dataset(split, batch_size=16, seed=3, epochs=3))
    assert len(whole) == 12
    # a pipeline started at epoch 2, batch 1 (a restarted job) sees the same batches
    resumed = _batches(pipeline.train_dataset(split, batch_size=16, seed=3, epochs=3,
                                              start_epoch=2, skip_batches=1))
    for (x1, y1), (x2, y2) in zip(whole[9:], resumed, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    # the Keras pipeline, with its epoch set as ReproCallback sets it, gives the same epoch
    keras_ds = pipeline.keras_train_dataset(split, batch_size=16, seed=3)
    order.set_epoch(1)
    for (x1, y1), (x2, y2) in zip(whole[4:8], _batches(keras_ds), strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    # epochs differ in order, and every epoch covers every example once
    labels = [np.concatenate([y for _, y in whole[e * 4:(e + 1) * 4]]) for e in range(3)]
    assert not np.array_equal(labels[0], labels[1])
    assert all(sorted(ls) == sorted(labels[0]) for ls in labels)
    other_seed = _batches(pipeline.train_dataset(split, batch_size=16, seed=4, epochs=1))
    assert not np.array_equal(other_seed[0][1], whole[0][1])


def test_augmentation_is_a_padded_crop_and_flip_of_each_image():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 32, 32, 3), dtype=np.uint8)
    out = pipeline.augment(tf.constant(images), 5, 0, 0).numpy()
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, [(0, 0), (4, 4), (4, 4), (0, 0)])
    flipped = 0
    for i in range(len(images)):
        found = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
                 if np.array_equal(out[i], (padded[i, dy:dy + 32, dx:dx + 32, :][:, ::-1]
                                            if f else padded[i, dy:dy + 32, dx:dx + 32, :]))]
        assert found, i
        flipped += found[0][2]
    assert 4 <= flipped <= 28  # about half are flipped
    np.testing.assert_array_equal(out, pipeline.augment(tf.constant(images), 5, 0, 0).numpy())


# -- training: one epoch on each real format, recorded ---------------------------------------------

def test_one_epoch_on_a_binary_archive_records_the_files_fingerprint(tmp_path, binary_archive):
    run = train.train(["--data", "cifar-binary", "--data-dir", binary_archive,
                       "--checkpoint-dir", str(tmp_path / "ckpt"), *TINY])
    assert run.status == "finished"
    m = _manifest(run)
    bins = data.load_split("cifar-binary", "train", binary_archive).files
    assert [os.path.basename(f) for f in bins] == list(formats.BINARY_FILES["train"])
    expected = fingerprint_files(bins)["digest"]
    assert m["data"]["train"]["method"] == "files"
    assert m["data"]["train"]["files_digest"] == expected
    assert m["data"]["source/train"]["digest"] == expected
    assert m["data"]["source/train"]["archive_sha256"] == _sha256(binary_archive)
    assert m["data"]["validation"]["files_digest"] == fingerprint_files(
        data.load_split("cifar-binary", "test", binary_archive).files)["digest"]
    assert m["params"]["depth"] == 8 and m["params"]["data"] == "cifar-binary"
    assert "data-dir" not in m["params"] and "checkpoint-dir" not in m["params"]  # paths
    assert m["seed"] == 1 and m["determinism"]["op_determinism"] is True
    assert {"loss", "accuracy", "val_accuracy", "lr"} <= set(m["metrics_summary"])
    assert m["metrics_summary"]["loss"]["step"] == 4  # 64 examples / batch 16


def test_one_epoch_on_tfrecords_records_their_fingerprint(tmp_path, tfrecord_dir):
    run = train.train(["--data", "tfrecord", "--data-dir", tfrecord_dir,
                       "--checkpoint-dir", "none", *TINY])
    m = _manifest(run)
    shards = formats.find_tfrecords(tfrecord_dir, "train")
    assert m["status"] == "finished"
    assert m["data"]["train"]["method"] == "files"
    assert m["data"]["train"]["files"] == 2
    assert m["data"]["train"]["files_digest"] == fingerprint_files(shards)["digest"]
    assert m["data"]["source/train"]["format"] == "tfrecord"


def test_tfds_source_trains_through_tfds_load(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=8):
        run = train.train(["--data", "tfds", "--data-dir", str(tmp_path / "tfds"),
                           "--checkpoint-dir", "none", *TINY[:4], "--batch-size", "4",
                           "--verbose", "0", "--export", "none"])
    m = _manifest(run)
    assert m["status"] == "finished"
    assert m["data"]["source/train"]["tfds_version"] == "3.0.2"
    assert m["data"]["source/train"]["examples"] == 8


def test_offline_tfds_download_fails_at_once_naming_the_other_sources(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "DOWNLOAD_URL", "https://cifar10.invalid/cifar-10-binary.tar.gz")
    started = time.perf_counter()
    status = train.main(["--data-dir", str(tmp_path / "empty-tfds"), *TINY])
    err = capsys.readouterr().err
    assert status == 2
    assert time.perf_counter() - started < 60  # not minutes of download retries
    assert "cifar10.invalid" in err and "Traceback" not in err
    for source in ("--data cifar-binary", "--data tfrecord", "--data synthetic"):
        assert source in err


def test_restarted_training_resumes_bit_exactly(tmp_path, binary_archive):
    import tensorflow as tf

    flags = ["--data", "cifar-binary", "--data-dir", binary_archive, "--depth", "8",
             "--epochs", "2", "--batch-size", "16", "--verbose", "0", "--export", "keras"]
    straight = train.train(flags + ["--checkpoint-dir", str(tmp_path / "a")])

    class Preempted(Exception):
        pass

    class PreemptAtSecondEpoch(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise Preempted()

    ckpt = str(tmp_path / "b")
    with pytest.raises(Preempted):
        train.train(flags + ["--checkpoint-dir", ckpt], callbacks=[PreemptAtSecondEpoch()])
    resumed = train.train(flags + ["--checkpoint-dir", ckpt])
    a, b = _manifest(straight), _manifest(resumed)
    assert b["resume"]["restored"]["epoch"] == 0 and resumed.attempt == 1
    assert b["resume"]["exact"] is True, b["resume"]["reasons"]
    assert a["artifacts"]["model.keras"]["weights_digest"] == \
        b["artifacts"]["model.keras"]["weights_digest"]
    # other checkpoint folders, same experiment: same params and data fingerprints
    assert a["fingerprints"]["params"] == b["fingerprints"]["params"]
    assert a["fingerprints"]["data"] == b["fingerprints"]["data"]


def test_sagemaker_job_reads_the_training_channel_and_writes_the_model(tmp_path, tfrecord_dir,
                                                                       monkeypatch, capsys):
    base = tmp_path / "opt_ml"
    (base / "output" / "data").mkdir(parents=True)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    monkeypatch.setenv("TRAINING_JOB_NAME", "resnet-cifar10-test")
    monkeypatch.setenv("SM_CHANNEL_TRAINING", tfrecord_dir)
    monkeypatch.setenv("SM_MODEL_DIR", str(base / "model"))
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(base / "output" / "data"))
    monkeypatch.chdir(tmp_path)
    run = train.train(["--data", "tfrecord", *TINY, "--export", "keras"])  # the channel
    m = _manifest(run)
    assert m["runtime"]["kind"] == "sagemaker" and m["runtime"]["job_name"] == "resnet-cifar10-test"
    assert m["data"]["train"]["files_digest"] == fingerprint_files(
        formats.find_tfrecords(tfrecord_dir, "train"))["digest"]
    assert os.path.isfile(base / "model" / "resnet8.keras")
    exported = base / "output" / "data" / "mlrepro-runs" / "runs" / run.id / "run.json"
    assert exported.is_file()
    # The shipped model is the recorded export: trace names the run from the file and
    # from the model.tar.gz SageMaker packs the model dir into.
    capsys.readouterr()
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(base / "model" / "resnet8.keras", arcname="resnet8.keras")
    for path in (base / "model" / "resnet8.keras", archive):
        assert main(["trace", str(path), "--store", run.store.uri, "--json"]) == 0
        [found] = json.loads(capsys.readouterr().out)["runs"]
        assert found["id"] == run.id
        hows = {x["how"] for x in found["matches"]}
        assert "embedded" in hows and ("exact" in hows or path == archive), hows


def test_launcher_sends_train_flags_as_hyperparameters_of_the_same_name(capsys, monkeypatch,
                                                                        tmp_path):
    import launch_sagemaker

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    status = launch_sagemaker.main([
        "--dry-run", "--training", "s3://bucket-1/cifar10/", "--role",
        "arn:aws:iam::123456789012:role/sm", "--bucket", "bucket-1", "--region", "us-east-1",
        "--framework-version", "2.19", "--instance-type", "ml.g5.xlarge", "--spot",
        "--", "--depth", "56", "--batch-size", "64", "--augment", "false",
        "--lr-boundaries", "91,136"])
    out = capsys.readouterr().out
    assert status == 0
    request = json.loads(out)
    hps = {k: v for k, v in request["HyperParameters"].items() if not k.startswith("sagemaker_")}
    assert hps == {"data": "tfrecord", "depth": "56", "batch-size": "64", "augment": "false",
                   "lr-boundaries": "91,136"}
    # what the job's train.py receives parses back to the same values
    argv = [part for k, v in hps.items() for part in (f"--{k}", v)]
    args = hparams.parse(argv)
    assert (args.depth, args.batch_size, args.augment, args.lr_boundaries) == (56, 64, False,
                                                                               (91.0, 136.0))
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert channels["training"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://bucket-1/cifar10/"
    assert request["EnableManagedSpotTraining"] is True


@pytest.mark.slow
def test_demo_trains_then_prints_the_run_list_and_the_run(tmp_path, monkeypatch):
    env = child_env(MLREPRO_STORE=str(tmp_path / "store"))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLE, "demo.py"), "--depth", "8",
                           "--synthetic-examples", "256", "--epochs", "1"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "$ mlrepro runs" in out and "$ mlrepro show" in out
    run_id = out.split("$ mlrepro show ")[1].split()[0]
    assert out.count(run_id) >= 3 and "cifar10-resnet-demo" in out
    assert "finished" in out and "val_accuracy" in out
    assert seconds < 240
    for noise in ("absl::InitializeLog", "cudart_stub", "cuInit", "oneDNN"):  # TF's start-up
        assert noise not in proc.stderr and noise not in out, proc.stderr[-3000:]
    assert out.splitlines()[0].startswith("TensorFlow ") and "start-up log is in" in out
    # it ends with three commands to try, each of which works on the store it just wrote
    head, *commands = out.rstrip().split("\nNext, try")[1].splitlines()
    script = os.path.join(os.path.dirname(sys.executable), "mlrepro")
    prefix = "mlrepro " if os.path.exists(script) else f"{sys.executable} -m mlrepro "
    assert len(commands) == 3 and all(c.startswith("  " + prefix) for c in commands), commands
    on_path = shutil.which("mlrepro")
    if os.path.exists(script) and not (on_path and os.path.samefile(on_path, script)):
        assert f"after `source {os.path.dirname(script)}/activate`, or type {script}" in head
    argvs = [shlex.split(c.split("#")[0].strip()[len(prefix):]) for c in commands]
    assert argvs[2] == ["reproduce", run_id]
    monkeypatch.chdir(tmp_path)
    for argv in argvs[:2]:
        assert main([*argv, "--store", str(tmp_path / "store")]) == 0, argv
    assert (tmp_path / "report.html").stat().st_size > 1000


def _free_ports(n: int) -> list[int]:
    from test_distribute import _free_ports as free   # the worker exchange's port free too

    return free(n)


@pytest.mark.slow
def test_two_workers_train_together_with_tf_keras_into_one_run(tmp_path, binary_archive):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for rank in range(2):
        env = child_env(TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": rank}}),
                        MLREPRO_STORE=str(tmp_path / f"store{rank}"))
        env.pop("TF_USE_LEGACY_KERAS", None)  # train.py sets it itself for several workers
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(EXAMPLE, "train.py"), "--data", "cifar-binary",
             "--data-dir", binary_archive, "--checkpoint-dir", "none", *TINY],
            cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outs = [proc.communicate(timeout=300)[0] for proc in procs]
    for rank, (proc, out) in enumerate(zip(procs, outs)):
        assert proc.returncode == 0, f"worker {rank}:\n{out[-2500:]}\n\nother worker:\n" \
                                     f"{outs[1 - rank][-2500:]}"
    ids = [out.split("train.py: run ")[1].split()[0] for out in outs]
    assert ids[0] == ids[1]  # the worker adopts the chief's run; only the chief writes it
    assert "not written on this worker" in outs[1]
    m = open_store(str(tmp_path / "store0")).read_manifest(ids[0])
    assert m["status"] == "finished" and m["runtime"]["world_size"] == 2
    assert m["auto_params"]["keras"]["flavour"] == "tf_keras"
    assert m["workers"]["consistent"] is True and m["workers"]["replicas"] == 2
    assert not os.path.exists(tmp_path / "store1" / "runs" / ids[0])


@pytest.mark.slow
def test_spot_demo_interrupts_twice_and_the_run_continues_at_each_step(tmp_path):
    """What docs/s3-sagemaker.md shows: one run, three attempts, resumed mid-epoch twice."""
    from mlrepro.store.local import LocalStore

    store = tmp_path / "runs"
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLE, "spot_demo.py"), "--store",
                           str(store)], env=child_env(), capture_output=True, text=True,
                          timeout=900, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_id,) = LocalStore(str(store)).run_ids()
    m = LocalStore(str(store)).read_manifest(run_id)
    attempts = m["attempts"]
    assert [a["status"] for a in attempts] == ["preempted", "preempted", "finished"]
    saved = [a["preemption"]["step"] for a in attempts[:2]]
    assert [a.get("restored_step") for a in attempts[1:]] == saved
    assert all(step % 12 for step in saved)            # mid-epoch, not at a boundary
    assert [a.get("lost_steps") for a in attempts[1:]] == [0, 0]
    steps = LocalStore(str(store)).read_points(run_id).steps("batch/loss")
    assert steps == list(range(1, 37))                 # every step once
    assert f"run         {run_id}" in proc.stdout and "attempts    3" in proc.stdout
    assert "  1  preempted  resumed at step" in proc.stdout
