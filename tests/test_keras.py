"""mlrepro.keras.ReproCallback with real Keras 3 training (TensorFlow backend, CPU).

One module-scoped `fit` (NumPy input, validation split, class weights, an LR
schedule, deterministic) feeds the record tests; the other tests train their own
tiny models. Subprocess tests (SIGKILL resume, tf_keras lane, MirroredStrategy)
live in test_keras_subprocess.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import mlrepro  # noqa: E402
import mlrepro.keras  # noqa: E402
from mlrepro import MlreproWarning  # noqa: E402
from mlrepro._keras import checkpoint as ckpt  # noqa: E402
from mlrepro._keras import datafp, order, runfile  # noqa: E402
from mlrepro.store.base import Store  # noqa: E402

pytestmark = pytest.mark.tf

EPOCHS = 3
BATCH = 16
DETERMINISM_ENV = ("TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC")


def _data(n=96, seed=0, features=8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = rng.integers(0, 3, size=n)
    return x, y


def _model(optimizer=None, dropout=0.2, features=8):
    model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(dropout), keras.layers.Dense(3)])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _open(store_path):
    store = mlrepro.open_store(store_path)
    ids = store.run_ids()
    return store, ids


@pytest.fixture(autouse=True)
def restore_determinism(monkeypatch):
    """deterministic=True turns TensorFlow op determinism on for the whole process (and sets
    env vars children inherit): switch it back off so other tests see the process as before."""
    from tensorflow.python.framework import config

    before = config.is_op_determinism_enabled()
    for name in DETERMINISM_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    if not before and config.is_op_determinism_enabled():
        config.disable_op_determinism()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Each test in its own working directory (default checkpoints land in it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- one recorded fit, many assertions ---------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Fit once with most features on; returns (store, manifest, points, callback, history)."""
    from tensorflow.python.framework import config

    base = tmp_path_factory.mktemp("recorded")
    determinism_before = config.is_op_determinism_enabled()
    old = {k: os.environ.get(k) for k in ("MLREPRO_SPOOL", "MLREPRO_CACHE", "MLREPRO_STORE",
                                          *DETERMINISM_ENV)}
    os.environ["MLREPRO_SPOOL"] = str(base / "spool")
    os.environ["MLREPRO_CACHE"] = str(base / "cache")
    try:
        x, y = _data()
        keras.backend.clear_session()  # as in a fresh process: no layer named before seeding
        callback = mlrepro.keras.ReproCallback(
            project="record", store=str(base / "store"), params={"width": 8, "note": "demo"},
            tags={"suite": "keras"}, seed=3, deterministic=True, log_every_n_steps=2,
            checkpoint=str(base / "ckpt"))
        schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=4,
                                                               decay_rate=0.5)
        model = _model(keras.optimizers.SGD(schedule, momentum=0.9, clipnorm=1.0))
        history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_split=0.25,
                            class_weight={0: 1.0, 1: 2.0, 2: 1.0}, verbose=0,
                            callbacks=[callback])
        store, ids = _open(str(base / "store"))
        assert ids == [callback.run.id]
        manifest = store.read_manifest(ids[0])
        points = store.read_points(ids[0])
        yield store, manifest, points, callback, history, model
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if not determinism_before and config.is_op_determinism_enabled():
            config.disable_op_determinism()


def test_fit_finishes_the_run_it_started(recorded):
    _store, manifest, _points, callback, _history, _model_ = recorded
    assert manifest["status"] == "finished"
    assert callback.run.status == "finished"
    assert mlrepro.active_run() is None
    assert manifest["params"] == {"width": 8, "note": "demo"}
    assert manifest["tags"] == {"suite": "keras"}


def test_optimizer_loss_metrics_and_schedule_are_recorded(recorded):
    auto = recorded[1]["auto_params"]
    opt = auto["optimizer"]
    assert opt["name"] == "SGD" and opt["class"].endswith("SGD")
    assert opt["momentum"] == 0.9 and opt["clipnorm"] == 1.0
    assert opt["learning_rate_schedule"] == "ExponentialDecay"
    assert opt["config"]["learning_rate"]["config"]["initial_learning_rate"] == 0.05
    assert opt["config"]["learning_rate"]["config"]["decay_rate"] == 0.5
    assert "weight_decay" in opt
    assert auto["loss"]["class_name"] == "SparseCategoricalCrossentropy" or \
        "SparseCategoricalCrossentropy" in json.dumps(auto["loss"])
    assert auto["metrics"] == ["accuracy"]


def test_fit_arguments_are_recorded(recorded):
    fit = recorded[1]["auto_params"]["fit"]
    assert fit["epochs"] == EPOCHS and fit["batch_size"] == BATCH
    assert fit["validation_split"] == 0.25 and fit["validation_data_present"] is True
    assert fit["class_weight_present"] is True and fit["class_weight"]["1"] == 2.0
    assert fit["shuffle"] is True and fit["steps_per_epoch"] is None
    assert fit["steps"] == 5  # 72 training examples at batch 16
    assert fit["initial_epoch"] == 0


def test_model_config_counts_summary_distribution_and_precision_are_recorded(recorded):
    auto = recorded[1]["auto_params"]
    model = auto["model"]
    assert model["params_trainable"] == 8 * 8 + 8 + 8 * 3 + 3
    assert model["layer_types"] == {"Dense": 2, "Dropout": 1} or \
        model["layer_types"].get("Dense") == 2
    assert "Total params" in model["summary"] and "dense" in model["summary"]
    assert model["config"]["layers"][1]["class_name"] == "Dense"
    assert len(model["config_digest"]) == 64
    assert auto["distribution"]["replicas"] == 1
    assert auto["mixed_precision"]["global_policy"] == "float32"
    assert auto["keras"]["flavour"] == "keras3" and auto["keras"]["backend"] == "tensorflow"


def test_batch_and_epoch_metrics_with_learning_rate_time_and_throughput(recorded):
    _store, _manifest, points, _cb, history, _m = recorded
    batch_steps = points.steps("batch/loss")
    assert batch_steps == list(range(2, EPOCHS * 5 + 1, 2))  # every 2nd of 15 global steps
    assert points.steps("loss") == [5, 10, 15]
    assert points.values("loss") == pytest.approx(history.history["loss"], rel=1e-6)
    assert points.values("val_loss") == pytest.approx(history.history["val_loss"], rel=1e-6)
    assert [p[3] for p in points.series["loss"]] == [0, 1, 2]  # epoch index
    lrs = points.values("lr")
    assert lrs[0] == pytest.approx(0.05 * 0.5 ** (5 / 4), rel=1e-5)  # schedule after 5 steps
    assert lrs[0] > lrs[1] > lrs[2]
    assert all(v > 0 for v in points.values("epoch_time_s"))
    assert all(v > 0 for v in points.values("examples_per_s"))


def test_training_and_validation_inputs_are_fingerprinted(recorded):
    data = recorded[1]["data"]
    x, y = _data()
    train = data["train"]
    assert train["method"] == "content" and train["examples"] == 72
    expected = datafp.fingerprint(x[:72], y[:72], role="train")
    assert train["digest"] == expected["digest"]
    assert data["validation"]["method"] == "content"
    assert data["validation"]["digest"] != train["digest"]


def test_checkpoints_exports_and_run_id_are_in_the_store(recorded, tmp_path):
    store, manifest, _p, callback, _h, model = recorded
    arts = manifest["artifacts"]
    assert {f"checkpoints/epoch-{e:05d}" for e in (1, 2, 3)} <= set(arts)
    state = arts["checkpoints/epoch-00003"]["files"]["state.json"]["digest"]
    meta = json.loads(store.read_object(state))
    assert meta["epoch"] == 2 and meta["global_step"] == 15 and meta["run_id"] == manifest["id"]
    assert meta["weights_digest"] == ckpt.weights_digest(model)
    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(store.read_object(arts["model.keras"]["digest"]))
    with zipfile.ZipFile(keras_file) as zf:
        embedded = json.loads(zf.read("mlrepro_run.json"))
    assert embedded["run_id"] == manifest["id"] and embedded["project"] == "record"
    loaded = keras.models.load_model(keras_file)
    x, _ = _data()
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0),
                               rtol=1e-6)
    saved = arts["saved_model"]["files"]
    assert "saved_model.pb" in saved
    run_file = json.loads(store.read_object(saved["assets/mlrepro_run.json"]["digest"]))
    assert run_file["run_id"] == manifest["id"]
    export_dir = tmp_path / "sm"
    for rel, entry in saved.items():
        target = export_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_object(entry["digest"]))
    served = tf.saved_model.load(str(export_dir))
    out = served.serve(tf.constant(x[:4]))
    np.testing.assert_allclose(out.numpy(), model.predict(x[:4], verbose=0), rtol=1e-5)


def test_tensorboard_loader_reads_scalars_and_hparams(recorded):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store, manifest, points, *_ = recorded
    acc = EventAccumulator(os.path.join(store.run_dir(manifest["id"]), "tensorboard"))
    acc.Reload()
    tags = acc.Tags()
    assert {"loss", "val_loss", "lr", "batch/loss"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("loss")] == points.steps("loss")
    assert [e.value for e in acc.Scalars("loss")] == pytest.approx(points.values("loss"))
    assert "_hparams_/session_start_info" in tags["tensors"]
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["width"].number_value == 8
    assert info.hparams["optimizer"].string_value == "SGD"


def test_deterministic_records_seeds_and_op_determinism(recorded):
    manifest = recorded[1]
    det = manifest["determinism"]
    assert manifest["seed"] == 3 and det["seed"] == 3 and det["deterministic"] is True
    assert det["op_determinism"] is True
    assert "tf.config.experimental.enable_op_determinism" in det["applied"]
    assert det["applied_by"] == "ReproCallback.__init__"
    assert det["model_built_before_seed"] is False
    assert len(det["initial_weights_digest"]) == 64


def test_resume_section_says_numpy_input_resumes_exactly(recorded):
    resume = recorded[1]["resume"]
    assert resume["exact"] is True and resume["reasons"] == []
    assert "global seed" in resume["input_order"]
    assert resume["restored"] is None and resume["attempt"] == 0
    assert any("epoch-end checkpoint" in n for n in resume["notes"])


def test_run_file_beside_checkpoints_is_marked_finished(recorded):
    callback = recorded[3]
    info = runfile.read(callback._ckpt_dir)
    assert info["run_id"] == callback.run.id and info["status"] == "finished"
    assert info["latest"] == "ckpt-epoch-00003"
    assert len(ckpt.completed(callback._ckpt_dir)) == 2  # keep_checkpoints=2


# -- tf.data fingerprints ------------------------------------------------------------------------

def _write_tfrecords(directory, files=3, records=64, size=20_000):
    directory.mkdir()
    paths = []
    rng = np.random.default_rng(1)
    for i in range(files):
        path = str(directory / f"part-{i}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(records):
                feats = rng.normal(size=8).astype("float32")
                example = tf.train.Example(features=tf.train.Features(feature={
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=feats)),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3])),
                    "pad": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[rng.bytes(size)])),
                }))
                writer.write(example.SerializeToString())
        paths.append(path)
    return paths


def _record_pipeline(pattern):
    spec = {"x": tf.io.FixedLenFeature([8], tf.float32), "y": tf.io.FixedLenFeature([], tf.int64),
            "pad": tf.io.FixedLenFeature([], tf.string)}

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        return ex["x"], ex["y"]

    files = tf.data.Dataset.list_files(pattern, shuffle=False)
    return files.interleave(tf.data.TFRecordDataset).map(parse).batch(BATCH)


def test_tf_data_fingerprint_digests_the_files_and_is_cached(env):
    paths = _write_tfrecords(env / "records")
    ds = _record_pipeline(str(env / "records" / "*.tfrecord"))
    callback = mlrepro.keras.ReproCallback(project="files", log_every_n_steps=0,
                                           checkpoint=False, export=False)
    _model().fit(ds, epochs=1, verbose=0, callbacks=[callback])
    fp = callback.run.manifest["data"]["train"]
    assert fp["method"] == "files" and fp["files"] == 3
    assert fp["cardinality"] == -2 and "TensorSpec" in fp["element_spec"]
    assert fp["size"] == sum(os.path.getsize(p) for p in paths)
    # unchanged files: a stat per file, well under 50 ms for the whole fingerprint
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        again = datafp.fingerprint(ds, role="train")
        timings.append(time.perf_counter() - start)
    assert again["digest"] == fp["digest"] and again["cached_files"] == 3
    assert min(timings) < 0.050, timings
    with open(paths[1], "ab") as fh:
        fh.write(b"\0")
    changed = datafp.fingerprint(ds, role="train")
    assert changed["digest"] != fp["digest"] and changed["cached_files"] == 2


def test_in_memory_pipeline_is_digested_by_its_first_batches(env):
    x, y = _data()
    plain = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    fp1 = datafp.fingerprint(plain, role="train")
    fp2 = datafp.fingerprint(tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH),
                             role="train")
    other = datafp.fingerprint(tf.data.Dataset.from_tensor_slices((x + 1, y)).batch(BATCH),
                               role="train")
    assert fp1["method"] == "first_batches" and fp1["batches"] == datafp.DIGEST_BATCHES
    assert "first 4 batches" in fp1["note"]
    assert fp1["digest"] == fp2["digest"] != other["digest"]
    reshuffled = datafp.fingerprint(tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96)
                                    .batch(BATCH), role="train")
    assert reshuffled["method"] == "structure" and "reshuffles" in reshuffled["note"]


def test_reshuffling_pipeline_is_recorded_as_not_exactly_resumable(env):
    x, y = _data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=1).batch(BATCH)
    callback = mlrepro.keras.ReproCallback(project="reshuffle", seed=1, deterministic=True,
                                           log_every_n_steps=0, export=False)
    _model().fit(ds, epochs=1, verbose=0, callbacks=[callback])
    resume = callback.run.manifest["resume"]
    assert resume["exact"] is False
    assert any("reshuffles each iteration" in r and "58925" in r for r in resume["reasons"])


def test_deterministic_dataset_order_depends_only_on_seed_and_epoch():
    x = np.arange(20, dtype="float32").reshape(20, 1)
    ds = mlrepro.keras.deterministic_dataset(x, x[:, 0], batch_size=6, seed=5)

    def order_for(epoch):
        order.set_epoch(epoch)
        return [int(v) for batch in ds for v in batch[1].numpy()]

    e0, e1, e0_again = order_for(0), order_for(1), order_for(0)
    assert sorted(e0) == list(range(20)) and sorted(e1) == list(range(20))
    assert e0 == e0_again and e0 != e1
    same_seed = mlrepro.keras.deterministic_dataset(x, x[:, 0], batch_size=6, seed=5)
    order.set_epoch(1)
    assert [int(v) for b in same_seed for v in b[1].numpy()] == e1
    unshuffled = mlrepro.keras.deterministic_dataset(x, batch_size=7, shuffle=False)
    assert [int(v) for b in unshuffled for v in b[:, 0].numpy()] == list(range(20))


# -- never failing fit ---------------------------------------------------------------------------

class BrokenStore(Store):
    """A store that refuses every write."""

    uri = "broken://"

    def write_batch(self, writes):
        raise OSError("disk on fire")

    def run_ids(self):
        return []

    def read_manifest(self, run_id):
        raise OSError("disk on fire")

    def read_points(self, run_id):
        raise OSError("disk on fire")

    def read_events(self, run_id):
        return []

    def list_runs(self, **kw):
        return []

    def has_object(self, digest):
        return False

    def open_object(self, digest):
        raise OSError("disk on fire")


@pytest.mark.parametrize("store_kind", ["path_is_a_file", "store_refuses_writes"])
def test_a_failing_store_never_fails_fit(env, store_kind, monkeypatch):
    monkeypatch.setenv("MLREPRO_SPOOL", str(env / "spool"))
    if store_kind == "path_is_a_file":
        (env / "not-a-dir").write_text("x")
        store = str(env / "not-a-dir")
    else:
        store = BrokenStore()
    x, y = _data(48)
    callback = mlrepro.keras.ReproCallback(project="broken", store=store, log_every_n_steps=1,
                                           checkpoint=str(env / "ckpt"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _model().fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 2
    assert any(issubclass(w.category, MlreproWarning) for w in caught)
    assert callback.run.status == "finished"
    # the record was not lost: it went to the spool
    spool = mlrepro.open_store(str(env / "spool"))
    assert callback.run.id in spool.run_ids()
    assert "loss" in spool.read_points(callback.run.id).names()


def test_an_error_inside_a_hook_becomes_a_warning(env, monkeypatch):
    from mlrepro._keras import params

    def explode(*a, **k):
        raise RuntimeError("params capture broke")

    monkeypatch.setattr(params, "collect", explode)
    monkeypatch.setattr(ckpt, "save", explode)
    x, y = _data(48)
    callback = mlrepro.keras.ReproCallback(project="hooks", log_every_n_steps=1, export=False)
    with pytest.warns(MlreproWarning, match="params capture broke"):
        history = _model().fit(x, y, batch_size=BATCH, epochs=2, verbose=0,
                               callbacks=[callback])
    assert len(history.history["loss"]) == 2
    store, _ = _open(os.environ["MLREPRO_STORE"])
    manifest = store.read_manifest(callback.run.id)
    assert manifest["status"] == "finished" and manifest["warnings"] >= 3
    assert manifest["data"]["train"]["method"] == "content"  # later stages still ran
    messages = [e["message"] for e in store.read_events(callback.run.id)
                if e["kind"] == "warning"]
    assert any("on_epoch_end (checkpoint)" in m for m in messages)


class Boom(Exception):
    pass


def test_fit_raising_marks_the_run_failed(env):
    class FailAtEpoch1(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Boom("exploded in epoch 1")

    x, y = _data(48)
    callback = mlrepro.keras.ReproCallback(project="fails", log_every_n_steps=1, export=False)
    caught = False
    try:
        _model().fit(x, y, batch_size=BATCH, epochs=3, verbose=0,
                     callbacks=[callback, FailAtEpoch1()])
    except Boom:
        caught = True
    assert caught
    assert callback.run.status == "failed"
    store, _ = _open(os.environ["MLREPRO_STORE"])
    manifest = store.read_manifest(callback.run.id)
    assert manifest["status"] == "failed" and "model.fit raised" in manifest["error"]
    assert store.read_points(callback.run.id).steps("loss") == [3, 6]
    assert mlrepro.active_run() is None
    # the run file stays "running": a restart of this job continues the run
    assert runfile.read(callback._ckpt_dir)["status"] == "running"


def test_an_active_run_is_used_and_left_open(env):
    x, y = _data(48)
    with mlrepro.start_run(project="outer", params={"lr": 0.01}) as run:
        callback = mlrepro.keras.ReproCallback(project="outer", params={"extra": 1},
                                               checkpoint=False, export=False)
        _model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
        assert callback.run is run and run.status == "running"
    manifest = mlrepro.open_store(os.environ["MLREPRO_STORE"]).read_manifest(run.id)
    assert manifest["status"] == "finished"
    assert manifest["params"] == {"lr": 0.01, "extra": 1}
    assert manifest["auto_params"]["fit"]["epochs"] == 1


def test_a_non_chief_worker_writes_nothing(env, monkeypatch):
    monkeypatch.setenv("MLREPRO_WORKERS_TIMEOUT", "1")  # no other worker will ever report
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 1}}))
    x, y = _data(48)
    callback = mlrepro.keras.ReproCallback(project="workers", log_every_n_steps=1,
                                           checkpoint=str(env / "ckpt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlreproWarning)  # the worker check finds no chief
        history = _model().fit(x, y, batch_size=BATCH, epochs=2, verbose=0,
                               callbacks=[callback])
    assert len(history.history["loss"]) == 2
    assert callback.run.writes is False
    assert not os.path.exists(os.environ["MLREPRO_STORE"]) or \
        mlrepro.open_store(os.environ["MLREPRO_STORE"]).run_ids() == []
    assert not os.path.exists(env / "ckpt") or os.listdir(env / "ckpt") == []
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))
    chief = mlrepro.keras.ReproCallback(project="workers", checkpoint=str(env / "ckpt"),
                                        export=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlreproWarning)
        _model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[chief])
    assert mlrepro.open_store(os.environ["MLREPRO_STORE"]).run_ids() == [chief.run.id]


def test_epoch_only_logging_leaves_keras_batch_hooks_untouched(env):
    from keras.src import utils

    callback = mlrepro.keras.ReproCallback(project="quiet", log_every_n_steps=0,
                                           checkpoint=False, export=False)
    assert utils.is_default(callback.on_train_batch_end)
    assert not callback._implements_train_batch_hooks()
    x, y = _data(48)
    _model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    names = mlrepro.open_store(os.environ["MLREPRO_STORE"]).read_points(callback.run.id).names()
    assert "loss" in names and not [n for n in names if n.startswith("batch/")]


def test_a_finished_run_beside_the_checkpoints_means_a_new_run(env):
    x, y = _data(48)
    ids = []
    for _ in range(2):
        callback = mlrepro.keras.ReproCallback(project="again", checkpoint=str(env / "ck"),
                                               export=False)
        _model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
        ids.append(callback.run.id)
        assert callback.run.manifest["resume"]["restored"] is None
    assert ids[0] != ids[1]
    assert runfile.read(str(env / "ck"))["run_id"] == ids[1]


def test_an_unfinished_run_file_resumes_that_run_from_its_checkpoint(env):
    x, y = _data(48)
    first = mlrepro.keras.ReproCallback(project="cont", checkpoint=str(env / "ck"), export=False)
    model = _model()
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[first])
    info = runfile.read(str(env / "ck"))
    runfile.write(str(env / "ck"), **{**info, "status": "running"})  # as if it had died
    second = mlrepro.keras.ReproCallback(project="cont", checkpoint=str(env / "ck"),
                                         export=False, resume="force")  # 2 -> 3 epochs
    fresh = _model()
    history = fresh.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=[second])
    assert second.run.id == first.run.id and second.run.attempt == 1
    attempt = second.run.manifest["attempts"][1]
    assert attempt["resume"] == "force" and attempt["changed"] == ["fit.epochs 2 -> 3"]
    assert history.epoch == [2]  # epochs 0 and 1 were restored, not re-run
    restored = second.run.manifest["resume"]["restored"]
    assert restored["epoch"] == 1 and restored["global_step"] == 6
    assert getattr(fresh, "_initial_epoch", None) is None  # a later fit starts at 0 again
    manifest = mlrepro.open_store(os.environ["MLREPRO_STORE"]).read_manifest(first.run.id)
    assert manifest["status"] == "finished" and len(manifest["attempts"]) == 2


def test_a_restart_after_the_last_epoch_still_exports(env):
    x, y = _data(48)
    first = mlrepro.keras.ReproCallback(project="late", checkpoint=str(env / "ck"), export=False)
    _model().fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[first])
    info = runfile.read(str(env / "ck"))
    runfile.write(str(env / "ck"), **{**info, "status": "running"})  # died while exporting
    second = mlrepro.keras.ReproCallback(project="late", checkpoint=str(env / "ck"),
                                         export=("keras",))
    history = _model().fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[second])
    assert history.epoch == [] and second.run.id == first.run.id
    manifest = mlrepro.open_store(os.environ["MLREPRO_STORE"]).read_manifest(first.run.id)
    assert manifest["artifacts"]["model.keras"]["epoch"] == 1
    assert manifest["status"] == "finished"


def test_a_live_process_training_into_the_same_directory_is_detected(env):
    directory = str(env / "ck")
    runfile.write(directory, run_id="r1", project="p", status="running")
    assert not runfile.held_by_live_process(runfile.read(directory))  # that is us
    info = {**runfile.read(directory), "pid": os.getppid()}
    assert runfile.held_by_live_process(info)
    assert not runfile.held_by_live_process({**info, "status": "finished"})
    assert not runfile.held_by_live_process({**info, "host": "elsewhere"})
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not runfile.held_by_live_process({**info, "pid": dead.pid})
    with open(os.path.join(directory, runfile.RUN_FILE), "w") as fh:
        json.dump(info, fh)  # pytest's parent process is "training" there
    x, y = _data(48)
    callback = mlrepro.keras.ReproCallback(project="p", checkpoint=directory, export=False)
    with pytest.warns(MlreproWarning, match="another process"):
        _model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    assert callback.run.id != "r1" and ckpt.completed(directory) == []


def test_a_checkpoint_of_another_architecture_is_not_restored(env):
    x, y = _data(48)
    first = mlrepro.keras.ReproCallback(project="arch", checkpoint=str(env / "ck"), export=False)
    _model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[first])
    info = runfile.read(str(env / "ck"))
    runfile.write(str(env / "ck"), **{**info, "status": "running"})
    wider = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(3)])
    wider.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    second = mlrepro.keras.ReproCallback(project="arch", checkpoint=str(env / "ck"),
                                         export=False, resume="force")  # past the sameness test
    with pytest.warns(MlreproWarning, match="does not fit this model"):
        history = wider.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[second])
    assert history.epoch == [0, 1]


def test_a_tf_keras_model_is_recorded_without_the_legacy_switch(env):
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(3)])
    model.compile(optimizer=tf_keras.optimizers.legacy.SGD(0.1, momentum=0.5),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _data(48)
    callback = mlrepro.keras.ReproCallback(project="tfk", log_every_n_steps=1,
                                           checkpoint=str(env / "ck"), export=("saved_model",))
    history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[callback])
    store = mlrepro.open_store(os.environ["MLREPRO_STORE"])
    manifest = store.read_manifest(callback.run.id)
    assert manifest["status"] == "finished"
    assert manifest["auto_params"]["keras"]["flavour"] == "tf_keras"
    assert manifest["auto_params"]["optimizer"]["momentum"] == 0.5
    points = store.read_points(callback.run.id)
    assert points.steps("batch/loss") == [1, 2, 3, 4, 5, 6]
    assert points.values("loss") == pytest.approx(history.history["loss"])
    saved = manifest["artifacts"]["saved_model"]["files"]
    assert "saved_model.pb" in saved and "assets/mlrepro_run.json" in saved
    meta = json.loads(store.read_object(
        manifest["artifacts"]["checkpoints/epoch-00002"]["files"]["state.json"]["digest"]))
    assert {v["group"] for v in meta["variables"]} == {"model", "optimizer"}


@pytest.mark.parametrize("kwargs, fragment", [
    ({"project": "a/b"}, "project"),
    ({"log_every_n_steps": -1}, "log_every_n_steps"),
    ({"checkpoint_every": 0}, "checkpoint_every"),
    ({"checkpoint": 3}, "checkpoint"),
    ({"export": ["onnx"]}, "export"),
    ({"keep_checkpoints": 0}, "keep_checkpoints"),
    ({"seed": "1"}, "seed"),
])
def test_bad_arguments_name_the_argument(kwargs, fragment):
    with pytest.raises(mlrepro.MlreproError, match=fragment):
        mlrepro.keras.ReproCallback(**kwargs)
