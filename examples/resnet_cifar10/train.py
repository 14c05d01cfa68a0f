"""Train a CIFAR-10 ResNet with Keras `fit`, recorded by mlrepro; locally and on SageMaker alike.

    python examples/resnet_cifar10/train.py        # the paper's recipe, CIFAR-10 through tfds
    python examples/resnet_cifar10/train.py --data cifar-binary --data-dir cifar-10-binary.tar.gz
    python examples/resnet_cifar10/train.py --data synthetic --epochs 1   # no data needed

Every flag is a SageMaker hyperparameter of the same name (see hparams.py).
Inside a SageMaker job the data comes from the `training` channel, the run is
recorded into the job's checkpoint directory (so a spot restart continues it)
and exported into the job output, and the final model goes to SM_MODEL_DIR.
On a spot job it checkpoints every 10 minutes (`--checkpoint-every`) and at the
interruption's SIGTERM; the restarted job resumes the same run at that step.
On several hosts the script trains with MultiWorkerMirroredStrategy through
tf_keras (it sets TF_USE_LEGACY_KERAS=1 itself, before TensorFlow loads).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hparams  # noqa: E402  (no TensorFlow)
import mlrepro  # noqa: E402  (no TensorFlow)
import mlrepro.env  # noqa: E402
import mlrepro.runtime  # noqa: E402

EXIT_BAD_INPUT = 2


def default_data_dir(args, runtime) -> str | None:
    """--data-dir, else the SageMaker `training` channel (or the job's only channel)."""
    if args.data_dir:
        return args.data_dir
    channels = dict(runtime.channels or {})
    if hparams.TRAINING_CHANNEL in channels:
        return channels[hparams.TRAINING_CHANNEL]
    if len(channels) == 1:
        return next(iter(channels.values()))
    return None


def _prepare_process(runtime) -> None:
    """Before TensorFlow loads: several workers train with tf_keras (Keras 3 cannot, under MWMS)."""
    if runtime.world_size > 1:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def train(argv=None, *, callbacks=()):
    """Train with the flags in `argv` (default sys.argv); returns the finished `mlrepro.Run`.

    `callbacks` are more Keras callbacks for `fit`, after mlrepro's.

    Exits with status 2 and a one-paragraph message (no traceback) when the data
    cannot be read, naming the other sources.
    """
    args = hparams.parse(argv)
    runtime = mlrepro.runtime.detect(argv=[sys.argv[0], *(argv if argv is not None
                                                          else sys.argv[1:])])
    _prepare_process(runtime)

    import tensorflow as tf

    import data
    import model as resnet
    import pipeline

    keras = tf.keras
    # First, before any TensorFlow op runs: MultiWorkerMirroredStrategy configures the
    # collective ops of the whole process and must come before anything else.
    strategy = mlrepro.distribute.strategy(runtime)
    data_dir = default_data_dir(args, runtime)
    try:
        train_split, test_split = data.load_train_and_test(args, data_dir)
    except data.DataUnavailable as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None

    checkpoint = args.checkpoint_dir
    if checkpoint is not None and checkpoint.strip().lower() in ("none", "false", "off"):
        checkpoint = False
    # Made before the model: it seeds Python, NumPy, TensorFlow and Keras, so the
    # initial weights are part of the reproducible recipe.
    # On a spot job: step/duration checkpoints, and a checkpoint at the interruption's SIGTERM.
    spot = runtime.spot or mlrepro.env.SPOT.get()
    repro = mlrepro.keras.ReproCallback(
        project=args.project, store=args.store, params=hparams.recorded_params(args),
        seed=args.seed, deterministic=args.deterministic,
        log_every_n_steps=max(0, args.log_every_n_steps), checkpoint=checkpoint,
        checkpoint_every=_checkpoint_every(args, spot), export=hparams.export_formats(args),
        tags={"example": "resnet_cifar10", "data": args.data})

    steps = hparams.steps_per_epoch(train_split.size, args.batch_size)
    boundaries, values = hparams.learning_rate_schedule(args, steps)
    with strategy.scope():
        net = resnet.build_resnet(args.depth, shortcut=args.shortcut,
                                  weight_decay=args.weight_decay)
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
        net.compile(optimizer=keras.optimizers.SGD(schedule, momentum=args.momentum),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])

    train_ds = pipeline.keras_train_dataset(train_split, batch_size=args.batch_size,
                                            seed=args.seed, augmentation=args.augment)
    test_ds = pipeline.eval_dataset(test_split, batch_size=args.batch_size)
    sources = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: _record_sources(repro.run, train_split, test_split))
    print(f"train.py: ResNet-{args.depth} (option {args.shortcut}, "
          f"{resnet.trainable_parameters(net):,} trainable parameters) on "
          f"{train_split.size} training / {test_split.size} test examples from "
          f"{train_split.description}; {args.epochs} epochs of {steps} steps", flush=True)
    started = time.perf_counter()
    # shuffle=False: the order is the pipeline's own, a function of (seed, epoch).
    net.fit(train_ds, epochs=args.epochs, validation_data=test_ds, shuffle=False,
            callbacks=[repro, sources, *callbacks], verbose=args.verbose)
    seconds = time.perf_counter() - started
    run = repro.run
    _save_model(net, args, runtime, run)
    print(f"train.py: run {run.id} {run.status} in {seconds:.1f} s "
          f"(store {getattr(run.store, 'uri', None) or 'not written on this worker'})",
          flush=True)
    return run


def _checkpoint_every(args, spot: bool):
    """--checkpoint-every as ReproCallback takes it (a bare number is a count of epochs)."""
    value = hparams.checkpoint_every(args, spot)
    return int(value) if value.isdigit() else value


def main(argv=None) -> int:
    """Train; returns the exit status (2 when the data cannot be read)."""
    try:
        train(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _record_sources(run, *splits) -> None:
    """Name each split's source files in the run (ReproCallback fingerprints what fit reads)."""
    import data

    for split in splits:
        try:
            found = data.fingerprint(split)
            found.pop("file_list", None)
            run.log_data(f"source/{split.split}", found)
        except Exception as exc:  # noqa: BLE001 - a record problem never stops training
            print(f"train.py: warning: could not fingerprint the {split.split} source ({exc})",
                  file=sys.stderr)


def _save_model(net, args, runtime, run) -> None:
    """The final model in --model-dir (SM_MODEL_DIR on SageMaker).

    The file shipped is the run's recorded `model.keras` export, copied out of the
    store: it names its run (`mlrepro trace` finds it, also inside the job's
    model.tar.gz) and is byte for byte what the run logged. Without that export
    (`--export` left it out, or the store could not be read) it is a plain
    `model.save`. Under several workers every worker saves (saving reads
    distributed variables together); only the chief's copy is kept.
    """
    import tempfile

    model_dir = args.model_dir or (runtime.model_dir if runtime.kind == "sagemaker" else None)
    if not model_dir:
        return
    if not runtime.is_chief:
        with tempfile.TemporaryDirectory() as scratch:
            net.save(os.path.join(scratch, "worker.keras"))
        return
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, f"resnet{args.depth}.keras")
    if _copy_recorded_export(run, path):
        print(f"train.py: saved {path} (the export of run {run.id})", flush=True)
        return
    net.save(path)
    print(f"train.py: saved {path}", flush=True)


def _copy_recorded_export(run, path) -> bool:
    """Copy the run's `model.keras` artifact to `path`; False when there is none."""
    from mlrepro.analysis.get import copy_artifact

    store = getattr(run, "store", None)
    try:
        manifest = store.read_manifest(run.id)
        if "model.keras" not in (manifest.get("artifacts") or {}):
            return False
        copy_artifact(store, manifest, "model.keras", path, force=True)
        return True
    except Exception as exc:  # noqa: BLE001 - the model is saved all the same
        print(f"train.py: warning: the recorded export could not be copied ({exc}); "
              "saving the model directly", file=sys.stderr)
        return False


if __name__ == "__main__":
    sys.exit(main())
