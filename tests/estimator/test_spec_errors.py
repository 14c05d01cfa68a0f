"""A model_fn returning the wrong thing fails at graph-build time, in one sentence naming the mode."""

from __future__ import annotations

import pytest
import tensorflow as tf

import mlrepro
import mlrepro.estimator as me
from tiny_models import eval_input_fn, logits_fn, train_input_fn

TRAIN, EVAL = tf.estimator.ModeKeys.TRAIN, tf.estimator.ModeKeys.EVAL


def estimator_for(model_fn, tmp_path, **wrap):
    wrapped = me.wrap_model_fn(model_fn, project="demo", **wrap)
    return tf.estimator.Estimator(wrapped, config=me.run_config(str(tmp_path / "md"), seed=1))


def loss_and_train_op(features, labels, mode):
    logits = logits_fn(features, mode)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    train_op = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
    return logits, loss, train_op


def test_a_dict_returned_in_train_names_the_mode_and_the_fix(tmp_path, store, data):
    def model_fn(features, labels, mode):
        _, loss, train_op = loss_and_train_op(features, labels, mode)
        return {"loss": loss, "train_op": train_op}

    with pytest.raises(me.ModelFnError) as info:
        estimator_for(model_fn, tmp_path).train(train_input_fn(*data), steps=1)
    message = str(info.value)
    assert "returned a dict in TRAIN mode" in message
    assert "EstimatorSpec(mode, loss=...)" in message and "\n" not in message
    assert isinstance(info.value, mlrepro.MlreproError) and isinstance(info.value, ValueError)
    assert store.run_ids() == []  # a model_fn that cannot train starts no run


def test_a_spec_without_loss_in_train_names_the_mode(tmp_path, data):
    def model_fn(features, labels, mode):  # always builds its PREDICT spec
        return tf.estimator.EstimatorSpec(tf.estimator.ModeKeys.PREDICT,
                                          predictions=logits_fn(features, mode))

    with pytest.raises(me.ModelFnError, match="without a loss in TRAIN mode.*built for PREDICT"):
        estimator_for(model_fn, tmp_path).train(train_input_fn(*data), steps=1)


@pytest.mark.parametrize("mode, missing, needle", [
    (TRAIN, "loss", "without a loss in TRAIN mode"),
    (TRAIN, "train_op", "without a train_op in TRAIN mode"),
    (EVAL, "loss", "without a loss in EVAL mode"),
])
def test_estimatorspec_refusals_inside_model_fn_are_named_by_mode(tmp_path, data, mode, missing,
                                                                  needle):
    def model_fn(features, labels, mode):
        _, loss, train_op = loss_and_train_op(features, labels, mode)
        fields = {"loss": loss, "train_op": train_op}
        fields[missing] = None
        return tf.estimator.EstimatorSpec(mode, **fields)

    est = estimator_for(model_fn, tmp_path)
    with pytest.raises(me.ModelFnError, match=needle) as info:
        if mode == TRAIN:
            est.train(train_input_fn(*data), steps=1)
        else:
            est.evaluate(eval_input_fn(*data))
    assert "TensorFlow says: Missing" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)  # TensorFlow's own error is kept


def test_none_returned_asks_for_the_missing_return(tmp_path, data):
    def model_fn(features, labels, mode):
        if mode == TRAIN:
            _, loss, train_op = loss_and_train_op(features, labels, mode)
            return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

    est = estimator_for(model_fn, tmp_path)
    est.train(train_input_fn(*data), steps=2)
    with pytest.raises(me.ModelFnError, match="returned None in EVAL mode.*`return` missing"):
        est.evaluate(eval_input_fn(*data))


def test_a_tensor_name_that_does_not_exist_is_named(tmp_path, data):
    def model_fn(features, labels, mode):
        return me.spec_from_logits(mode, logits_fn(features, mode), labels)

    est = estimator_for(model_fn, tmp_path, tensors={"lr": "learning_rate"})
    with pytest.raises(me.ModelFnError, match="no tensor named 'learning_rate:0'"):
        est.train(train_input_fn(*data), steps=1)


def test_model_fn_errors_of_its_own_pass_through_untouched(tmp_path, data):
    def model_fn(features, labels, mode):
        raise ValueError("my own bug")

    with pytest.raises(ValueError, match="^my own bug$") as info:
        estimator_for(model_fn, tmp_path).train(train_input_fn(*data), steps=1)
    assert not isinstance(info.value, mlrepro.MlreproError)


@pytest.mark.parametrize("kwargs, needle", [
    ({"project": ""}, "project ''"),
    ({"project": "p", "every_n_steps": 0}, "every_n_steps 0"),
    ({"project": "p", "checkpoints": "some"}, "checkpoints 'some' must be one of"),
    ({"project": "p", "tensors": 5}, "tensors 5 must map"),
])
def test_bad_wrap_options_name_the_argument(kwargs, needle):
    def model_fn(features, labels, mode):
        return None

    with pytest.raises(mlrepro.MlreproError, match=needle):
        me.wrap_model_fn(model_fn, **kwargs)


def test_export_of_an_unrecorded_model_dir_says_how_to_record_it(tmp_path, data):
    model_fn = me.model_fn_from_logits(logits_fn)
    est = tf.estimator.Estimator(model_fn, config=me.run_config(str(tmp_path / "md"), seed=1))
    est.train(train_input_fn(*data), steps=1)
    with pytest.raises(me.ModelDirError, match="has no mlrepro run.*project="):
        me.export_saved_model(est, str(tmp_path / "export"), lambda: None)
