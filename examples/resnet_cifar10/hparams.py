"""The example's hyperparameters: flags that SageMaker hyperparameters map onto one to one.

SageMaker runs the entry point as `train.py --<name> <value> ...` for each
hyperparameter, so every flag here is also a hyperparameter name: launch with
`hyperparameters={"depth": 56, "batch-size": 128}` (the underscore spelling,
`batch_size`, is accepted too). Booleans take a value (`--augment false`)
because that is how SageMaker passes them. The defaults are the paper's recipe:
ResNet-20, batch 128, SGD with momentum 0.9, weight decay 1e-4, learning rate
0.1 divided by 10 at epochs 82 and 123 (32k and 48k iterations at 391 per
epoch), 164 epochs (64k iterations), pad-4 crop and flip augmentation.

Importing this module imports neither TensorFlow nor mlrepro.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Sequence

from formats import SOURCES

PROJECT = "cifar10-resnet"
TRAINING_CHANNEL = "training"   # the SageMaker channel (SM_CHANNEL_TRAINING) that holds the data

AUTO = "auto"
SPOT_CHECKPOINT_EVERY = "10min"  # --checkpoint-every auto on a spot job
PAPER_EPOCHS = 164
PAPER_BOUNDARIES = (82, 123)
PAPER_BATCH = 128


def _bool(text) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (use true or false)")


def _epochs_list(text) -> tuple:
    try:
        # "82,123", or the JSON list a launcher may send: "[82, 123]"
        values = tuple(float(v) for v in str(text).strip("[]() ").replace(" ", "").split(",")
                       if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of epochs "
                                         "(e.g. 82,123)") from None
    if list(values) != sorted(values) or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: epochs must be positive and increasing")
    return values


def _flag(parser, name: str, **kwargs) -> None:
    spellings = [f"--{name}"]
    if "-" in name:
        spellings.append(f"--{name.replace('-', '_')}")
    parser.add_argument(*spellings, **kwargs)


def parser(description: str = "Train a CIFAR-10 ResNet (He et al. 2016), recorded by mlrepro.",
           ) -> argparse.ArgumentParser:
    """The flags shared by train.py and train_estimator.py."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    _flag(g, "data", choices=SOURCES, default="tfds",
          help="tfds: tensorflow-datasets cifar10 (downloads once); cifar-binary: the official "
               "cifar-10-binary.tar.gz or a folder of data_batch_*.bin; tfrecord: files from "
               "prepare_data.py (what a SageMaker channel holds); synthetic: generated data")
    _flag(g, "data-dir", default=None,
          help="where the data is (tfds: its data_dir). Default: the SageMaker 'training' "
               "channel when there is one, else tfds' own default directory")
    _flag(g, "train-examples", type=int, default=0,
          help="use only the first N training examples (0: all)")
    _flag(g, "test-examples", type=int, default=0,
          help="use only the first N test examples (0: all)")
    _flag(g, "synthetic-examples", type=int, default=2048,
          help="training examples of --data synthetic (the test split gets a fifth)")
    _flag(g, "augment", type=_bool, default=True, help="pad 4, random crop, random flip")

    g = p.add_argument_group("model")
    _flag(g, "depth", type=int, default=20, help="6n+2: 20, 32, 44, 56 or 110 (8 for tests)")
    _flag(g, "shortcut", choices=("A", "B"), default="A",
          help="A: identity + zero padding (the paper's CIFAR choice); B: 1x1 projection")

    g = p.add_argument_group("optimisation")
    _flag(g, "epochs", type=int, default=PAPER_EPOCHS, help="epochs to train")
    _flag(g, "batch-size", type=int, default=PAPER_BATCH, help="global batch size")
    _flag(g, "learning-rate", type=float, default=0.1, help="initial learning rate")
    _flag(g, "lr-boundaries", type=_epochs_list, default=PAPER_BOUNDARIES,
          help="epochs after which the learning rate is multiplied by --lr-decay")
    _flag(g, "lr-decay", type=float, default=0.1, help="factor at each boundary")
    _flag(g, "warmup-epochs", type=float, default=None,
          help="train at learning-rate/10 first (the paper does for ResNet-110: default 1 "
               "epoch for depth 110, else 0)")
    _flag(g, "momentum", type=float, default=0.9)
    _flag(g, "weight-decay", type=float, default=1e-4,
          help="L2 weight decay on kernels (gradient weight_decay * w)")

    g = p.add_argument_group("reproducibility and recording")
    _flag(g, "seed", type=int, default=1, help="seeds weights, data order and augmentation")
    _flag(g, "deterministic", type=_bool, default=True, help="TensorFlow op determinism")
    _flag(g, "project", default=PROJECT, help="mlrepro project name")
    _flag(g, "store", default=None,
          help="mlrepro store (path or s3://); default $MLREPRO_STORE or ./mlrepro-runs")
    _flag(g, "checkpoint-dir", default=None,
          help="checkpoints and resume (default: the runtime's checkpoint dir; 'none': off)")
    _flag(g, "checkpoint-every", default=AUTO,
          help="how often to checkpoint: 'epoch', N (epochs), 'N steps' or a duration "
               f"('30s', '10min'); auto: {SPOT_CHECKPOINT_EVERY!r} on a spot job (an "
               "interruption then loses at most that much), else 'epoch'")
    _flag(g, "model-dir", default=None,
          help="also save the final model here (default: SM_MODEL_DIR on SageMaker)")
    _flag(g, "export", default="keras",
          help="formats mlrepro stores at the end: keras, saved_model, both (comma) or none")
    _flag(g, "log-every-n-steps", type=int, default=50, help="batch metrics every N steps")
    _flag(g, "verbose", type=int, default=2, help="Keras fit verbosity (0, 1 or 2)")
    return p


def parse(argv: Sequence[str] | None = None, description: str | None = None):
    """Parse and check the flags; argparse exits with a message on bad values."""
    p = parser(description) if description else parser()
    args = p.parse_args(argv)
    if args.depth < 8 or (args.depth - 2) % 6:
        p.error(f"--depth {args.depth} is not 6n+2 (20, 32, 44, 56, 110; 8 for tests)")
    for name in ("epochs", "batch_size", "synthetic_examples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup_epochs is None:
        args.warmup_epochs = 1.0 if args.depth >= 110 else 0.0
    return args


def steps_per_epoch(examples: int, batch_size: int) -> int:
    return max(1, math.ceil(examples / batch_size))


def learning_rate_schedule(args, steps_per_epoch: int) -> tuple[list, list]:
    """(boundaries in steps, values): the paper's step schedule in optimizer iterations.

    With warm-up the first value is learning_rate/10 until `warmup_epochs`.
    """
    boundaries = [int(round(e * steps_per_epoch)) for e in args.lr_boundaries]
    values = [args.learning_rate * args.lr_decay ** i for i in range(len(boundaries) + 1)]
    if args.warmup_epochs:
        warm = max(1, int(round(args.warmup_epochs * steps_per_epoch)))
        boundaries = [warm] + [b for b in boundaries if b > warm]
        values = [args.learning_rate / 10.0] + values[len(values) - len(boundaries):]
    return boundaries, values


def checkpoint_every(args, spot: bool) -> str:
    """--checkpoint-every; `auto` is what the job asks for (`MLREPRO_CHECKPOINT_EVERY`, set by
    `mlrepro launch --spot` / `--checkpoint-every`), else SPOT_CHECKPOINT_EVERY on a spot job,
    else "epoch".

    A spot interruption loses the work since the last checkpoint when its signal
    never reaches the script, and an epoch of a real data set can be an hour.
    """
    value = str(args.checkpoint_every).strip()
    if value.lower() != AUTO:
        return value
    asked = os.environ.get("MLREPRO_CHECKPOINT_EVERY", "").strip()
    return asked or (SPOT_CHECKPOINT_EVERY if spot else "epoch")


def export_formats(args) -> tuple:
    text = str(args.export).strip().lower()
    if text in ("", "none", "false", "0"):
        return ()
    if text == "both":
        return ("keras", "saved_model")
    return tuple(f.strip() for f in text.split(",") if f.strip())


# Flags that say where things are or how chatty to be, not what is computed: left out of
# the recorded params so that the same experiment run from another folder or machine has
# the same params fingerprint (the data's own fingerprint is recorded separately).
NOT_RECORDED = ("data_dir", "checkpoint_dir", "checkpoint_every", "model_dir", "store",
                "project", "verbose")


def recorded_params(args) -> dict:
    """The hyperparameters as the run records them (flag names, JSON values)."""
    out = {}
    for key, value in sorted(vars(args).items()):
        if key in NOT_RECORDED:
            continue
        out[key.replace("_", "-")] = list(value) if isinstance(value, tuple) else value
    return out
