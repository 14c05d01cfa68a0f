"""run_config: model_dir, seed and distribution from mlrepro.runtime; one script on SageMaker too."""

from __future__ import annotations

import json
import os
import socket
from types import SimpleNamespace

import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

import mlrepro
import mlrepro.estimator as me
from mlrepro._estimator.config import choose_distribution
from tiny_models import logits_fn, serving_input_fn, train_input_fn


def test_seed_and_runconfig_settings_reach_the_runconfig(tmp_path):
    config = me.run_config(str(tmp_path / "md"), seed=42, save_checkpoints_steps=7,
                           keep_checkpoint_max=2)
    assert isinstance(config, tf.estimator.RunConfig)
    assert config.tf_random_seed == 42 and config.model_dir == str(tmp_path / "md")
    assert config.save_checkpoints_steps == 7 and config.keep_checkpoint_max == 2
    assert config.train_distribute is None  # one CPU: no strategy


def test_local_defaults_come_from_the_runtime(tmp_path):
    config = me.run_config(seed=1)
    assert config.model_dir == "checkpoints"  # mlrepro.runtime's local checkpoint_dir
    fake = SimpleNamespace(checkpoint_dir=str(tmp_path / "ck"), model_dir=str(tmp_path / "m"),
                           hosts=["h"], world_size=1, num_gpus=0)
    assert me.run_config(runtime=fake).model_dir == str(tmp_path / "ck")


def test_deterministic_turns_op_determinism_on_and_picks_a_recorded_seed(tmp_path, store, data):
    try:
        config = me.run_config(str(tmp_path / "md"), deterministic=True)
        assert tf_config.is_op_determinism_enabled()
        assert isinstance(config.tf_random_seed, int)
        est = tf.estimator.Estimator(me.wrap_model_fn(me.model_fn_from_logits(logits_fn),
                                                      project="demo"), config=config)
        est.train(train_input_fn(*data), steps=2)
        m = store.read_manifest(me.run_for(est).id)
        assert m["seed"] == config.tf_random_seed
        assert m["determinism"]["deterministic"] is True
        assert "tf.config.experimental.enable_op_determinism" in m["determinism"]["applied"]
    finally:
        tf_config.disable_op_determinism()


@pytest.mark.parametrize("requested, workers, gpus, chosen", [
    ("auto", 1, 0, "none"), ("auto", 1, 1, "none"), ("auto", 1, 4, "mirrored"),
    ("auto", 3, 1, "multi_worker_mirrored"), ("none", 3, 4, "none"),
    ("mirrored", 1, 0, "mirrored"),
])
def test_distribution_is_chosen_from_workers_and_gpus(requested, workers, gpus, chosen):
    assert choose_distribution(requested, workers=workers, gpus=gpus) == chosen


def test_parameter_server_clusters_and_evaluators_get_no_strategy():
    assert choose_distribution("auto", workers=3, gpus=2, parameter_servers=True) == "none"
    assert choose_distribution("auto", workers=3, gpus=0, task_type="evaluator") == "none"


def test_bad_distribution_settings_are_refused_clearly(monkeypatch):
    with pytest.raises(mlrepro.MlreproError, match="distribution 'horovod' must be one of"):
        me.run_config(distribution="horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    two_hosts = SimpleNamespace(checkpoint_dir=None, model_dir="m", hosts=["a", "b"],
                                world_size=2, num_gpus=0, write_env=lambda: {})
    with pytest.raises(mlrepro.MlreproError, match="needs TF_CONFIG"):
        me.run_config(runtime=two_hosts)


def test_mirrored_training_is_recorded_with_its_strategy(tmp_path, store, data):
    config = me.run_config(str(tmp_path / "md"), seed=5, distribution="mirrored")
    assert type(config.train_distribute).__name__ == "MirroredStrategy"
    est = tf.estimator.Estimator(
        me.wrap_model_fn(me.model_fn_from_logits(logits_fn), project="demo", every_n_steps=2),
        config=config)
    est.train(train_input_fn(*data), steps=6)
    run = me.run_for(est)
    m = store.read_manifest(run.id)
    assert m["auto_params"]["run_config.train_distribute"] == "MirroredStrategy"
    assert m["auto_params"]["run_config.train_distribute.replicas"] == 1
    assert store.read_points(run.id).steps("loss") == [0, 2, 4]
    assert "checkpoints/model.ckpt-6" in m["artifacts"]


@pytest.fixture
def sagemaker_job(tmp_path, monkeypatch):
    """A SageMaker training container's tree and variables, on this machine."""
    base = tmp_path / "opt_ml"
    config_dir = base / "input" / "config"
    config_dir.mkdir(parents=True)
    host = socket.gethostname()
    (config_dir / "resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "hosts": [host], "current_instance_type": "ml.m5.large"}))
    (config_dir / "hyperparameters.json").write_text(json.dumps({"learning_rate": "0.05"}))
    (config_dir / "checkpointconfig.json").write_text(json.dumps(
        {"LocalPath": str(base / "checkpoints")}))
    for sub in ("checkpoints", "model", "output/data"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("MLREPRO_SAGEMAKER_BASE_DIR", str(base))
    monkeypatch.setenv("TRAINING_JOB_NAME", "estimator-job-1")
    monkeypatch.setenv("SM_MODEL_DIR", str(base / "model"))
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(base / "output" / "data"))
    monkeypatch.delenv("MLREPRO_STORE")  # the store is chosen by the runtime
    return base


def test_the_same_script_on_sagemaker_uses_the_job_directories(sagemaker_job, data):
    base = sagemaker_job
    config = me.run_config(seed=3)
    assert config.model_dir == str(base / "checkpoints")  # synced to S3, kept on spot restarts
    est = tf.estimator.Estimator(me.wrap_model_fn(me.model_fn_from_logits(logits_fn),
                                                  project="demo"), config=config)
    est.train(train_input_fn(*data), steps=3)
    export = me.export_saved_model(est, serving_input_receiver_fn=serving_input_fn)
    assert os.path.dirname(export) == str(base / "model")  # what SageMaker uploads
    run = me.run_for(est)
    run.finish()

    job_store = mlrepro.open_store(str(base / "checkpoints" / "mlrepro-runs"))
    m = job_store.read_manifest(run.id)
    assert m["runtime"]["kind"] == "sagemaker" and m["runtime"]["job_name"] == "estimator-job-1"
    assert "saved_model" in m["artifacts"] and "checkpoints/model.ckpt-3" in m["artifacts"]
    with open(os.path.join(export, "assets", me.RUN_FILE)) as fh:
        assert json.load(fh)["store"] == job_store.uri
    # the finished run is also copied into the job's output (output.tar.gz)
    assert run.id in mlrepro.open_store(str(base / "output" / "data" / "mlrepro-runs")).run_ids()
