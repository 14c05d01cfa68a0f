"""The same CIFAR-10 ResNet trained by tf.estimator through a wrapped model_fn (TensorFlow <= 2.15).

    .venv-estimator/bin/python examples/resnet_cifar10/train_estimator.py \\
        --data cifar-binary --data-dir cifar-10-binary.tar.gz

Same flags, data, model and recipe as train.py (hparams.py). The model_fn is
wrapped by `mlrepro.estimator.wrap_model_fn`, so training, per-epoch
evaluation, every checkpoint and the exported SavedModel record into one run;
the data sources' fingerprints are added to it. The input order and
augmentation are those of train.py: the input_fn starts at the epoch and batch
that follow the checkpoint's global step, so a restarted job continues with
exactly the batches the uninterrupted job would have used.

tf.estimator was removed in TensorFlow 2.16: run this with TensorFlow 2.15
(the repository's `.venv-estimator`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hparams  # noqa: E402  (no TensorFlow)
import mlrepro  # noqa: E402
import mlrepro.runtime  # noqa: E402
from train import EXIT_BAD_INPUT, default_data_dir  # noqa: E402

IMAGE_FEATURE = "image"
SAVED_MODEL_DIR = "saved_model"


def resume_point(model_dir: str, steps_per_epoch: int) -> tuple[int, int]:
    """(epoch, batch within it) that follow the latest checkpoint's global step."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(model_dir) if model_dir else None
    if latest is None:
        return 0, 0
    step = int(tf.train.load_variable(latest, "global_step"))
    return divmod(step, steps_per_epoch)


def make_model_fn(boundaries, values):
    """A model_fn for every mode: ResNet logits, the paper's SGD and schedule, BN updates.

    The model's hyperparameters come from `params` (hparams.recorded_params), the
    dict the run records; the schedule in steps depends on the data size too.
    """
    import tensorflow as tf

    import mlrepro.estimator as me
    import model as resnet

    def model_fn(features, labels, mode, params):
        net = resnet.build_resnet(params["depth"], shortcut=params["shortcut"],
                                  weight_decay=params["weight-decay"])
        images = features[IMAGE_FEATURE] if isinstance(features, dict) else features
        training = mode == tf.estimator.ModeKeys.TRAIN
        logits = net(images, training=training)
        update_ops = []
        if training:  # batch normalisation's moving averages
            update_ops = list(net.get_updates_for(None)) + list(net.get_updates_for(images))

        def optimizer():
            step = tf.compat.v1.train.get_global_step()
            rate = tf.compat.v1.train.piecewise_constant(step, boundaries, values)
            me.log_tensor("learning_rate", rate)
            return tf.compat.v1.train.MomentumOptimizer(rate, params["momentum"])

        return me.spec_from_logits(mode, logits, labels, optimizer=optimizer,
                                   extra_loss=list(net.losses) or None, update_ops=update_ops,
                                   var_list=net.trainable_variables)

    return model_fn


@dataclass
class Job:
    """An Estimator set up from the flags, with its input_fns (what `main` runs)."""

    args: Any
    runtime: Any
    train_split: Any
    test_split: Any
    steps_per_epoch: int
    estimator: Any

    def train_input_fn(self):
        """Batches from the epoch and batch after the latest checkpoint to the last epoch."""
        import pipeline

        epoch, batch = resume_point(self.estimator.model_dir, self.steps_per_epoch)
        return pipeline.train_dataset(self.train_split.rebuilt(),
                                      batch_size=self.args.batch_size, seed=self.args.seed,
                                      epochs=self.args.epochs, start_epoch=epoch,
                                      skip_batches=batch, augmentation=self.args.augment)

    def eval_input_fn(self):
        import pipeline

        return pipeline.eval_dataset(self.test_split.rebuilt(),
                                     batch_size=self.args.batch_size)


def build(argv=None) -> Job:
    """Parse the flags, read the data and build the Estimator (its model_fn wrapped by mlrepro).

    Exits with status 2 and a message naming the other sources when the data
    cannot be read.
    """
    args = hparams.parse(argv, description=__doc__.split("\n")[0])
    runtime = mlrepro.runtime.detect(argv=[sys.argv[0], *(argv if argv is not None
                                                          else sys.argv[1:])])
    import tensorflow as tf

    import data
    import mlrepro.estimator as me

    data_dir = default_data_dir(args, runtime)
    try:
        train_split, test_split = data.load_train_and_test(args, data_dir)
    except data.DataUnavailable as exc:
        print(f"train_estimator.py: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None

    steps = hparams.steps_per_epoch(train_split.size, args.batch_size)
    boundaries, values = hparams.learning_rate_schedule(args, steps)
    model_dir = args.checkpoint_dir or os.path.join(runtime.checkpoint_dir or "checkpoints",
                                                    f"estimator-{args.project}")
    config = me.run_config(model_dir, seed=args.seed, deterministic=args.deterministic,
                           runtime=runtime, save_checkpoints_steps=steps, keep_checkpoint_max=2,
                           save_summary_steps=max(1, args.log_every_n_steps),
                           log_step_count_steps=max(1, args.log_every_n_steps))
    estimator = tf.estimator.Estimator(
        me.wrap_model_fn(make_model_fn(boundaries, values), project=args.project,
                         store=args.store, tags={"example": "resnet_cifar10",
                                                 "data": args.data, "lane": "estimator"},
                         every_n_steps=max(1, args.log_every_n_steps)),
        config=config, params=hparams.recorded_params(args))
    return Job(args, runtime, train_split, test_split, steps, estimator)


def train(argv=None):
    """Train, evaluating the test split after every epoch; returns the finished `mlrepro.Run`."""
    import mlrepro.estimator as me

    job = build(argv)
    args, estimator, steps = job.args, job.estimator, job.steps_per_epoch
    print(f"train_estimator.py: ResNet-{args.depth} (option {args.shortcut}) on "
          f"{job.train_split.size} training / {job.test_split.size} test examples from "
          f"{job.train_split.description}; {args.epochs} epochs of {steps} steps; model_dir "
          f"{estimator.model_dir}", flush=True)
    started = time.perf_counter()
    # One train/evaluate cycle per epoch: a checkpoint at each epoch end, then the test set.
    # (Several workers: use tf.estimator.train_and_evaluate with the same input_fns.)
    recorded = False
    for epoch in range(resume_point(estimator.model_dir, steps)[0], args.epochs):
        estimator.train(job.train_input_fn, max_steps=(epoch + 1) * steps)
        if not recorded:
            record_sources(me.run_for(estimator), job.train_split, job.test_split)
            recorded = True
        results = estimator.evaluate(job.eval_input_fn)
        print(f"train_estimator.py: epoch {epoch + 1}/{args.epochs}: "
              + ", ".join(f"{k} {v:.4f}" for k, v in sorted(results.items())
                          if k != "global_step"), flush=True)
    runtime = job.runtime
    export_base = args.model_dir or (runtime.model_dir if runtime.kind == "sagemaker" else None)
    if export_base and runtime.is_chief:
        path = me.export_saved_model(estimator, os.path.join(export_base, SAVED_MODEL_DIR),
                                     _serving_input_fn)
        print(f"train_estimator.py: exported {path}", flush=True)
    run = me.run_for(estimator)
    if run is not None:
        run.finish()
        print(f"train_estimator.py: run {run.id} {run.status} in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    return run


def main(argv=None) -> int:
    """Train; returns the exit status (2 when the data cannot be read)."""
    try:
        train(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _serving_input_fn():
    """Serving takes normalised float images, like the model (see data.normalise)."""
    import tensorflow as tf

    images = tf.compat.v1.placeholder(tf.float32, [None, 32, 32, 3], name=IMAGE_FEATURE)
    return tf.estimator.export.TensorServingInputReceiver(images, {IMAGE_FEATURE: images})


def record_sources(run, *splits) -> None:
    """Fingerprint the files each split was read from into the run."""
    import data

    if run is None:
        return
    for split in splits:
        try:
            found = data.fingerprint(split)
            found.pop("file_list", None)
            run.log_data("train" if split.split == "train" else "validation", found)
        except Exception as exc:  # noqa: BLE001 - a record problem never stops training
            print(f"train_estimator.py: warning: could not fingerprint the {split.split} "
                  f"source ({exc})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
