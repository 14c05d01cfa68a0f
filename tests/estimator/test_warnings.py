"""A warning from mlrepro's estimator hooks names the user's `estimator.train(...)` line."""

from __future__ import annotations

import inspect
import warnings

import tensorflow as tf

import mlrepro
import mlrepro.estimator as me
from tiny_models import logits_fn, train_input_fn


def test_a_hook_warning_names_the_users_train_line(tmp_path, data):
    x, y = data

    def logits_with_text(features, mode):
        tf.constant("not a number", name="label_text")
        return logits_fn(features, mode)

    model_fn = me.wrap_model_fn(me.model_fn_from_logits(logits_with_text), project="w",
                                every_n_steps=2, tensors={"text": "label_text"})
    est = tf.estimator.Estimator(model_fn, params={"learning_rate": 0.05},
                                 config=me.run_config(str(tmp_path / "md"), seed=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_line = inspect.currentframe().f_lineno + 1
        est.train(train_input_fn(x, y), steps=4)
    ours = [w for w in caught if issubclass(w.category, mlrepro.MlreproWarning)]
    assert ours and "step 0" in str(ours[0].message)
    assert {(w.filename, w.lineno) for w in ours} == {(__file__, train_line)}
