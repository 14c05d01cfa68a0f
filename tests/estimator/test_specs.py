"""Spec helpers: from logits, correct TRAIN, EVAL and PREDICT specs and serving signatures."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import mlrepro
import mlrepro.estimator as me
from mlrepro._estimator import specs as specs_mod
from tiny_models import (N_FEATURES, eval_input_fn, logits_fn, serving_input_fn,
                         train_input_fn)

MODES = tf.estimator.ModeKeys


def test_multiclass_model_fn_trains_evaluates_and_serves(tmp_path, store, data):
    x, y = data
    model_fn = me.wrap_model_fn(me.model_fn_from_logits(logits_fn), project="demo")
    est = tf.estimator.Estimator(model_fn, params={"learning_rate": 0.05},
                                 config=me.run_config(str(tmp_path / "md"), seed=2))
    est.train(train_input_fn(x, y), steps=40)
    results = est.evaluate(eval_input_fn(x, y))
    assert set(results) == {"accuracy", "loss", "global_step"}
    assert results["accuracy"] > 0.5  # it learned something in 40 steps

    raw = me.export_saved_model(est, str(tmp_path / "export"), serving_input_fn)
    loaded = tf.saved_model.load(raw)
    assert set(loaded.signatures) == {"serving_default", "predict"}
    out = loaded.signatures["serving_default"](x=tf.constant(x[:5]))
    assert set(out) == {"logits", "probabilities", "class_ids"}
    assert out["probabilities"].shape == (5, 3)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    predicted = [p["class_ids"] for p in est.predict(
        lambda: tf.data.Dataset.from_tensor_slices({"x": x[:5]}).batch(5))]
    assert list(out["class_ids"].numpy()) == predicted  # served == predicted

    parsing = tf.estimator.export.build_parsing_serving_input_receiver_fn(
        {"x": tf.io.FixedLenFeature([N_FEATURES], tf.float32)})
    examples = me.export_saved_model(est, str(tmp_path / "export"), parsing)
    assert "classification" in tf.saved_model.load(examples).signatures
    assert store.read_manifest(me.run_for(est).id)["artifacts"]["saved_model"][
        "export_dir"] == examples  # the latest export is the run's saved_model


@pytest.mark.parametrize("task, n_out, labels, prediction_keys, metric_keys, signatures", [
    ("binary", 1, [[0], [1], [1], [0]],
     {"logits", "logistic", "probabilities", "class_ids"}, {"accuracy", "auc"},
     {"serving_default", "predict", "classification"}),
    ("regression", 1, [[0.5], [1.0], [-1.0], [2.0]], {"predictions"},
     {"mean_absolute_error", "root_mean_squared_error"},
     {"serving_default", "predict", "regression"}),
    ("multiclass", 3, [0, 2, 1, 1], {"logits", "probabilities", "class_ids"}, {"accuracy"},
     {"serving_default", "predict", "classification"}),
])
def test_each_task_builds_a_spec_for_every_mode(task, n_out, labels, prediction_keys,
                                                metric_keys, signatures):
    with tf.Graph().as_default():
        tf.compat.v1.train.create_global_step()
        features = tf.constant(np.ones((4, N_FEATURES), "float32"))
        logits = tf.keras.layers.Dense(n_out)(features)
        train = me.spec_from_logits(MODES.TRAIN, logits, tf.constant(labels), task=task)
        evaluation = me.spec_from_logits(MODES.EVAL, logits, tf.constant(labels), task=task)
        predict = me.spec_from_logits(MODES.PREDICT, logits, task=task)
        assert train.loss.shape.rank == 0 and train.train_op is not None
        assert set(evaluation.eval_metric_ops) == metric_keys
        assert set(predict.predictions) == prediction_keys
        assert set(predict.export_outputs) == signatures
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(train.train_op)
            assert sess.run(tf.compat.v1.train.get_global_step()) == 1  # train_op steps


def test_keras_model_fn_runs_batch_norm_updates_and_predicts(tmp_path, data):
    x, y = data

    def build(params):
        return tf.keras.Sequential([
            tf.keras.layers.Dense(8, activation="relu", input_shape=(N_FEATURES,)),
            tf.keras.layers.BatchNormalization(),
            tf.keras.layers.Dropout(0.1),
            tf.keras.layers.Dense(3, kernel_regularizer=tf.keras.regularizers.l2(1e-3))])

    model_fn = me.wrap_model_fn(me.model_fn_from_keras(build, feature_key="x"), project="demo")
    est = tf.estimator.Estimator(model_fn, params={"learning_rate": 0.05},
                                 config=me.run_config(str(tmp_path / "md"), seed=4))
    est.train(train_input_fn(x, y), steps=10)
    ckpt = tf.train.latest_checkpoint(str(tmp_path / "md"))
    moving_mean = [n for n, _ in tf.train.list_variables(ckpt) if n.endswith("moving_mean")]
    assert moving_mean and np.any(tf.train.load_variable(ckpt, moving_mean[0]) != 0)
    assert est.evaluate(eval_input_fn(x, y))["global_step"] == 10
    preds = list(est.predict(lambda: tf.data.Dataset.from_tensor_slices({"x": x[:3]}).batch(3)))
    assert [set(p) for p in preds] == [{"logits", "probabilities", "class_ids"}] * 3


def test_learning_rate_is_taken_from_params(monkeypatch):
    seen = []
    real = specs_mod.make_optimizer
    monkeypatch.setattr(specs_mod, "make_optimizer",
                        lambda opt, lr: seen.append((opt, lr)) or real(opt, lr))
    with tf.Graph().as_default():
        tf.compat.v1.train.create_global_step()
        model_fn = me.model_fn_from_logits(lambda features: tf.keras.layers.Dense(3)(
            features["x"]), optimizer="sgd")
        features = {"x": tf.constant(np.ones((2, N_FEATURES), "float32"))}
        model_fn(features, tf.constant([0, 1]), MODES.TRAIN, {"learning_rate": 0.3}, None)
        model_fn(features, tf.constant([0, 1]), MODES.TRAIN, {}, None)
    assert seen == [("sgd", 0.3), ("sgd", 0.001)]


def test_optimizers_by_name_instance_or_factory_and_a_clear_refusal():
    assert isinstance(specs_mod.make_optimizer("rmsprop", 0.1),
                      tf.compat.v1.train.RMSPropOptimizer)
    sgd = tf.compat.v1.train.GradientDescentOptimizer(0.1)
    assert specs_mod.make_optimizer(sgd, 0.5) is sgd
    assert specs_mod.make_optimizer(lambda: sgd, 0.5) is sgd
    with pytest.raises(mlrepro.MlreproError, match="not a tf.compat.v1.train.Optimizer"):
        specs_mod.make_optimizer(tf.keras.optimizers.Adam(), 0.1)
    with pytest.raises(mlrepro.MlreproError, match="optimizer 'lbfgs' must be one of"):
        specs_mod.make_optimizer("lbfgs", 0.1)
    with pytest.raises(mlrepro.MlreproError, match="task 'ranking' must be one of"):
        me.model_fn_from_logits(logits_fn, task="ranking")
