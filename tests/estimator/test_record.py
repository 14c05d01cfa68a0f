"""wrap_model_fn: train + evaluate + export of one model_dir land in one complete run record."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import tensorflow as tf

import mlrepro
import mlrepro.estimator as me
from mlrepro._estimator import hooks as hooks_mod
from tiny_models import (eval_input_fn, fetch_dir_artifact, logits_fn, serving_input_fn,
                         train_input_fn)


def logits_fn_with_tensors(features, mode):
    logits = logits_fn(features, mode)
    tf.identity(tf.constant(0.05), name="lr_value")
    me.log_tensor("mean_logit", tf.reduce_mean(logits))
    return logits


def make_estimator(model_dir, *, every_n_steps=5, params=None, tensors=None, project="demo",
                   checkpoints="all", logits=logits_fn, **config):
    config.setdefault("save_checkpoints_steps", 10)
    model_fn = me.wrap_model_fn(me.model_fn_from_logits(logits), project=project,
                                every_n_steps=every_n_steps, tensors=tensors,
                                checkpoints=checkpoints)
    return tf.estimator.Estimator(model_fn, params=params or {"learning_rate": 0.05},
                                  config=me.run_config(str(model_dir), seed=3, **config))


def test_train_evaluate_export_records_every_item_in_one_run(tmp_path, store, data):
    x, y = data
    est = make_estimator(tmp_path / "md", params={"learning_rate": 0.05, "hidden": 8},
                         tensors={"lr": "lr_value"}, logits=logits_fn_with_tensors)
    est.train(train_input_fn(x, y), steps=30)
    results = est.evaluate(eval_input_fn(x, y))
    export_path = me.export_saved_model(est, str(tmp_path / "export"), serving_input_fn)
    run = me.run_for(est)
    run.finish()

    assert store.run_ids() == [run.id]  # train, evaluate and export: one run
    m = store.read_manifest(run.id)
    assert m["status"] == "finished" and m["project"] == "demo"
    # params: the params dict, and the RunConfig (seed, checkpoint cadence, distribution)
    assert m["params"] == {"learning_rate": 0.05, "hidden": 8}
    assert m["seed"] == 3
    assert m["auto_params"]["run_config.tf_random_seed"] == 3
    assert m["auto_params"]["run_config.save_checkpoints_steps"] == 10
    assert m["auto_params"]["run_config.keep_checkpoint_max"] == 5
    assert m["auto_params"]["run_config.train_distribute"] is None
    # loss and chosen tensors every 5 steps, at the global step
    points = store.read_points(run.id)
    assert points.steps("loss") == [0, 5, 10, 15, 20, 25]
    assert all(v > 0 for v in points.values("loss"))
    assert points.steps("lr") == points.steps("loss")
    assert points.values("lr") == [pytest.approx(0.05)] * 6
    assert points.steps("mean_logit") == points.steps("loss")
    # eval metrics, at the evaluated global step
    assert points.steps("eval/accuracy") == [30] and points.steps("eval/loss") == [30]
    assert points.values("eval/accuracy")[0] == pytest.approx(float(results["accuracy"]))
    assert points.values("eval/loss")[0] == pytest.approx(float(results["loss"]))
    # global step
    assert m["estimator"]["global_step"] == 30 == results["global_step"]
    assert m["estimator"]["model_dir"] == str(tmp_path / "md")
    # every checkpoint the Estimator wrote, restorable from the store
    assert sorted(n for n in m["artifacts"] if n.startswith("checkpoints/")) == [
        "checkpoints/model.ckpt-0", "checkpoints/model.ckpt-10", "checkpoints/model.ckpt-20",
        "checkpoints/model.ckpt-30"]
    assert m["artifacts"]["checkpoints/model.ckpt-30"]["step"] == 30
    restored = fetch_dir_artifact(store, m, "checkpoints/model.ckpt-30", tmp_path / "restored")
    assert tf.train.load_variable(tf.train.latest_checkpoint(restored), "global_step") == 30
    assert m["estimator"]["latest_checkpoint"] == "checkpoints/model.ckpt-30"
    # the exported SavedModel: an artifact that names its run
    saved = m["artifacts"]["saved_model"]
    assert saved["step"] == 30 and saved["export_dir"] == export_path
    assert "saved_model.pb" in saved["files"] and "assets/mlrepro_run.json" in saved["files"]
    pointer = json.loads(store.read_object(saved["files"]["assets/mlrepro_run.json"]["digest"]))
    assert pointer["run_id"] == run.id and pointer["project"] == "demo"
    assert pointer["store"] == store.uri
    with open(os.path.join(export_path, "assets", me.RUN_FILE)) as fh:
        assert json.load(fh)["run_id"] == run.id
    # the model_dir names its run, so later processes continue it
    with open(tmp_path / "md" / me.RUN_FILE) as fh:
        assert json.load(fh)["run_id"] == run.id
    kinds = [e["kind"] for e in store.read_events(run.id)]
    for kind in ("train_begin", "checkpoint", "train_end", "evaluation", "export"):
        assert kind in kinds


def test_record_is_complete_when_train_returns(tmp_path, store, data):
    x, y = data
    est = make_estimator(tmp_path / "md")
    est.train(train_input_fn(x, y), steps=12)
    run = me.run_for(est)
    m = store.read_manifest(run.id)  # read while the run is still open
    assert m["status"] == "running"
    assert store.read_points(run.id).steps("loss") == [0, 5, 10]
    assert "checkpoints/model.ckpt-12" in m["artifacts"]


class CountingHook(tf.compat.v1.train.SessionRunHook):
    def __init__(self):
        self.calls = {"begin": 0, "after_run": 0, "end": 0}

    def begin(self):
        self.calls["begin"] += 1

    def after_run(self, run_context, run_values):
        self.calls["after_run"] += 1

    def end(self, session):
        self.calls["end"] += 1


def test_user_hooks_and_spec_fields_are_kept(tmp_path, store, data):
    x, y = data
    train_hook, chief_hook, eval_hook = CountingHook(), CountingHook(), CountingHook()
    seen = {}

    def model_fn(features, labels, mode, params):
        spec = me.spec_from_logits(mode, logits_fn(features, mode), labels)
        spec = spec._replace(training_hooks=[train_hook], training_chief_hooks=[chief_hook],
                             evaluation_hooks=[eval_hook])
        seen[mode] = spec
        return spec

    wrapped = me.wrap_model_fn(model_fn, project="demo", every_n_steps=5)
    est = tf.estimator.Estimator(wrapped, config=me.run_config(str(tmp_path / "md"), seed=1))
    est.train(train_input_fn(x, y), steps=7)
    est.evaluate(eval_input_fn(x, y))
    assert train_hook.calls == {"begin": 1, "after_run": 7, "end": 1}
    assert chief_hook.calls == {"begin": 1, "after_run": 7, "end": 1}
    assert eval_hook.calls["begin"] == 1 and eval_hook.calls["end"] == 1
    assert store.read_points(me.run_for(est).id).steps("loss") == [0, 5]

    # called directly: every field but the hook lists is the user's, and theirs come first
    with tf.Graph().as_default():
        tf.compat.v1.train.create_global_step()
        features = {"x": tf.constant(x)}
        spec = wrapped(features, tf.constant(y), "train", {}, est.config)
        user = seen["train"]
        for field in ("mode", "loss", "train_op", "predictions", "export_outputs", "scaffold",
                      "eval_metric_ops", "evaluation_hooks", "prediction_hooks"):
            assert getattr(spec, field) is getattr(user, field) or \
                getattr(spec, field) == getattr(user, field), field
        assert list(spec.training_hooks) == [train_hook]
        assert spec.training_chief_hooks[0] is chief_hook
        assert [type(h).__name__ for h in spec.training_chief_hooks[1:]] == ["TrainRecorder"]


def test_restarted_training_continues_the_same_run_as_a_new_attempt(tmp_path, store, data):
    x, y = data
    est = make_estimator(tmp_path / "md")
    est.train(train_input_fn(x, y), steps=20)
    first = me.run_for(est)
    first.finish()  # what the end of the first process does

    est2 = make_estimator(tmp_path / "md", params={"learning_rate": 0.02})  # a new job
    with pytest.warns(mlrepro.MlreproWarning, match="params learning_rate differ"):
        est2.train(train_input_fn(x, y), steps=20)
    second = me.run_for(est2)
    second.finish()
    assert second.id == first.id and store.run_ids() == [first.id]
    m = store.read_manifest(first.id)
    assert [a["attempt"] for a in m["attempts"]] == [0, 1]
    assert m["status"] == "finished" and m["estimator"]["global_step"] == 40
    assert m["params"] == {"learning_rate": 0.02}
    assert store.read_points(first.id).steps("loss") == [0, 5, 10, 15, 20, 25, 30, 35]
    assert "checkpoints/model.ckpt-40" in m["artifacts"]


def test_model_dir_of_another_project_is_refused(tmp_path, data):
    x, y = data
    make_estimator(tmp_path / "md", project="alpha").train(train_input_fn(x, y), steps=2)
    with pytest.raises(me.ModelDirError, match="project 'alpha'.*fresh model_dir"):
        make_estimator(tmp_path / "md", project="beta").train(train_input_fn(x, y), steps=2)


def test_named_evaluations_are_recorded_apart(tmp_path, store, data):
    x, y = data
    est = make_estimator(tmp_path / "md")
    est.train(train_input_fn(x, y), steps=5)
    est.evaluate(eval_input_fn(x, y))
    test_results = est.evaluate(eval_input_fn(x[:32], y[:32]), name="test")
    points = store.read_points(me.run_for(est).id)
    assert points.steps("eval/accuracy") == [5]
    assert points.values("eval_test/accuracy") == [pytest.approx(float(
        test_results["accuracy"]))]


def test_loss_is_fetched_only_on_every_nth_step(tmp_path, store, data, monkeypatch):
    x, y = data
    fetched_on = []
    original = hooks_mod.TrainRecorder.before_run

    def counting_before_run(self, run_context):
        args = original(self, run_context)
        fetched_on.append(args is not None)
        return args

    monkeypatch.setattr(hooks_mod.TrainRecorder, "before_run", counting_before_run)
    est = make_estimator(tmp_path / "md", every_n_steps=5)
    est.train(train_input_fn(x, y), steps=23)
    assert len(fetched_on) == 23
    assert [i for i, fetched in enumerate(fetched_on) if fetched] == [0, 5, 10, 15, 20]
    assert store.read_points(me.run_for(est).id).steps("loss") == [0, 5, 10, 15, 20]


def test_checkpoints_final_records_only_the_last_one(tmp_path, store, data):
    x, y = data
    est = make_estimator(tmp_path / "md", checkpoints="final", save_checkpoints_steps=5)
    est.train(train_input_fn(x, y), steps=15)
    m = store.read_manifest(me.run_for(est).id)
    assert [n for n in m["artifacts"] if n.startswith("checkpoints/")] == [
        "checkpoints/model.ckpt-15"]


def test_a_tensor_that_cannot_be_recorded_warns_and_training_goes_on(tmp_path, store, data):
    x, y = data

    def logits_with_text(features, mode):
        tf.constant("not a number", name="label_text")
        return logits_fn(features, mode)

    est = make_estimator(tmp_path / "md", logits=logits_with_text,
                         tensors={"text": "label_text"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.train(train_input_fn(x, y), steps=6)
    assert any(issubclass(w.category, mlrepro.MlreproWarning) and "step 0" in str(w.message)
               for w in caught)
    run = me.run_for(est)
    assert store.read_manifest(run.id)["estimator"]["global_step"] == 6
    assert store.read_manifest(run.id)["warnings"] >= 1


def test_train_and_evaluate_with_a_recorded_exporter(tmp_path, store, data):
    x, y = data
    est = make_estimator(tmp_path / "md", save_checkpoints_steps=8)
    exporter = me.recorded_exporter(tf.estimator.LatestExporter("serving", serving_input_fn))
    tf.estimator.train_and_evaluate(
        est, tf.estimator.TrainSpec(train_input_fn(x, y), max_steps=16),
        tf.estimator.EvalSpec(eval_input_fn(x, y), steps=None, exporters=[exporter],
                              throttle_secs=0, start_delay_secs=0))
    run = me.run_for(est)
    m = store.read_manifest(run.id)
    points = store.read_points(run.id)
    assert points.steps("loss") == [0, 5, 10, 15]
    assert points.steps("eval/accuracy")[-1] == 16
    export_dir = m["artifacts"]["saved_model"]["export_dir"]
    assert export_dir.startswith(str(tmp_path / "md" / "export" / "serving"))
    with open(os.path.join(export_dir, "assets", me.RUN_FILE)) as fh:
        assert json.load(fh)["run_id"] == run.id


def test_a_separate_evaluator_task_records_its_own_run_linked_to_training(tmp_path, store, data,
                                                                          monkeypatch):
    x, y = data
    trainer = make_estimator(tmp_path / "md")
    trainer.train(train_input_fn(x, y), steps=5)
    training_run = me.run_for(trainer)

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["localhost:2222"]},
                                                "task": {"type": "evaluator", "index": 0}}))
    config = tf.estimator.RunConfig(model_dir=str(tmp_path / "md"), tf_random_seed=3)
    assert config.task_type == "evaluator" and not config.is_chief
    evaluator = tf.estimator.Estimator(
        me.wrap_model_fn(me.model_fn_from_logits(logits_fn), project="demo"),
        params={"learning_rate": 0.05}, config=config)
    evaluator.evaluate(eval_input_fn(x, y))
    runs = store.run_ids()
    assert len(runs) == 2
    eval_run = next(r for r in runs if r != training_run.id)
    m = store.read_manifest(eval_run)
    assert m["parent"] == {"kind": "evaluation-of", "run": training_run.id}
    assert m["estimator"]["role"] == "evaluator"
    assert store.read_points(eval_run).steps("eval/accuracy") == [5]
    assert "eval/accuracy" not in store.read_points(training_run.id).names()


def test_two_estimators_with_the_same_seed_in_one_process_train_identically(tmp_path, store,
                                                                            data):
    x, y = data
    histories = []
    for name in ("first", "second"):  # e.g. two runs of a sweep in one notebook
        model_fn = me.wrap_model_fn(me.model_fn_from_logits(logits_fn), project="demo",
                                    every_n_steps=1)
        config = tf.estimator.RunConfig(str(tmp_path / name), tf_random_seed=3)  # plain config
        est = tf.estimator.Estimator(model_fn, params={"learning_rate": 0.05}, config=config)
        est.train(train_input_fn(x, y), steps=8)
        histories.append(store.read_points(me.run_for(est).id).values("loss"))
    assert len(histories[0]) == 8 and histories[0] == histories[1]
