"""wrap_model_fn defaults like the rest of the API: no `project=` needed, as for start_run and ReproCallback."""

from __future__ import annotations

import inspect

import tensorflow as tf

import mlrepro
import mlrepro.estimator as me
from mlrepro.keras import ReproCallback
from tiny_models import logits_fn, train_input_fn


def test_wrap_model_fn_without_a_project_records_into_the_default_project(tmp_path, store, data):
    x, y = data
    est = tf.estimator.Estimator(me.wrap_model_fn(me.model_fn_from_logits(logits_fn)),
                                 params={"learning_rate": 0.05},
                                 config=me.run_config(str(tmp_path / "md"), seed=3))
    est.train(train_input_fn(x, y), steps=3)
    run = me.run_for(est)
    run.finish()
    manifest = store.read_manifest(run.id)
    assert manifest["project"] == "default" and manifest["status"] == "finished"
    defaults = {inspect.signature(f).parameters["project"].default
                for f in (me.wrap_model_fn, mlrepro.start_run, ReproCallback)}
    assert defaults == {"default"}
