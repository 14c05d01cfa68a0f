"""Run train.py as a SageMaker job, unchanged: the TFRecords come in the `training` channel.

    python examples/resnet_cifar10/prepare_data.py --data cifar-binary \\
        --data-dir cifar-10-binary.tar.gz --output cifar10-tfrecords
    aws s3 sync cifar10-tfrecords s3://my-bucket/cifar10/
    python examples/resnet_cifar10/launch_sagemaker.py --training s3://my-bucket/cifar10/ \\
        --instance-type ml.g5.xlarge --spot -- --depth 56 --epochs 164

Everything after `--` is train.py's own flags; each becomes the SageMaker
hyperparameter of the same name (only those that differ from train.py's
defaults are sent, plus `--data tfrecord`). In the job, train.py reads the
channel's path from `mlrepro.runtime`, records its run into the checkpoint
directory (synced to S3, so a spot restart continues the same run) and into the
job output, and saves the model into SM_MODEL_DIR. With `--spot` it checkpoints every
10 minutes and at the interruption's SIGTERM, so a restart loses at most the step in
flight (or 10 minutes when the signal never reaches it). `--dry-run` prints the exact
CreateTrainingJob request and sends nothing. A thin script over
`mlrepro.aws.launch` (the `mlrepro launch` command does the same for any script).
"""

from __future__ import annotations

import argparse
import os
import sys

import hparams

HERE = os.path.dirname(os.path.abspath(__file__))
ENTRY_POINT = "train.py"
DEFAULT_INSTANCE = "ml.g5.xlarge"
EXIT_BAD_INPUT = 2
NOT_HYPERPARAMETERS = ("data_dir", "store", "model_dir", "checkpoint_dir")  # the job's own paths


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        usage="%(prog)s --training S3URI [options] [-- train.py flags]",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--training", "--data-uri", dest="training", metavar="S3URI",
                   help="S3 prefix holding the TFRecords (prepare_data.py's output): the "
                        "'training' channel. Without it, train with --data synthetic after --")
    p.add_argument("--instance-type", default=DEFAULT_INSTANCE)
    p.add_argument("--instance-count", type=int, default=1,
                   help="hosts; more than one trains with MultiWorkerMirroredStrategy")
    p.add_argument("--spot", action="store_true",
                   help="managed spot training: train.py checkpoints every "
                        f"{hparams.SPOT_CHECKPOINT_EVERY} and at the interruption's SIGTERM "
                        "(--checkpoint-every after -- to change it); the restarted job resumes "
                        "the run at that step")
    p.add_argument("--region")
    p.add_argument("--role", help="execution role ARN (default $MLREPRO_SAGEMAKER_ROLE)")
    p.add_argument("--bucket", help="bucket for code and output (default "
                                    "$MLREPRO_SAGEMAKER_BUCKET)")
    p.add_argument("--remote", help="s3:// store the job pushes its run to while it trains")
    p.add_argument("--framework-version", help="TensorFlow version of the training image "
                                               "(default: this machine's)")
    p.add_argument("--image-uri", help="training image (default: the TensorFlow DLC)")
    p.add_argument("--max-run", type=int, default=24 * 3600, help="seconds")
    p.add_argument("--dry-run", action="store_true",
                   help="print the CreateTrainingJob request; send nothing")
    p.add_argument("--wait", action="store_true", help="wait for the job and stream its logs")
    return p


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(launcher flags, train.py flags): the latter follow `--`."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def hyperparameters(train_argv: list[str], *, channel: bool) -> dict[str, str]:
    """train.py's flags as SageMaker hyperparameters: the ones that differ from the defaults.

    Values are sent as the strings train.py parses (lists as `82,123`), so the
    job's command line is exactly `train.py --name value ...`.
    """
    defaults = vars(hparams.parse([]))
    given = vars(hparams.parse(train_argv))
    if channel and "--data" not in train_argv:
        given["data"] = "tfrecord"
    out = {}
    for name, value in sorted(given.items()):
        if name in NOT_HYPERPARAMETERS or value is None or value == defaults.get(name):
            continue
        if isinstance(value, (tuple, list)):
            value = ",".join(f"{v:g}" for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out[name.replace("_", "-")] = str(value)
    return out


def main(argv=None) -> int:
    """Build the job from the flags and launch it (or print it with --dry-run)."""
    launcher_argv, train_argv = split_argv(list(sys.argv[1:] if argv is None else argv))
    args = parser().parse_args(launcher_argv)
    from mlrepro.aws import launch
    from mlrepro.errors import MlreproError

    hps = hyperparameters(train_argv, channel=bool(args.training))
    if not args.training and hps.get("data", "tfds") not in ("synthetic", "tfds"):
        parser().error(f"--data {hps.get('data')} needs the data in the job: pass --training "
                       "s3://bucket/prefix/ (TFRecords written by prepare_data.py)")
    channels = {hparams.TRAINING_CHANNEL: args.training} if args.training else {}
    try:
        spec = launch.spec_for_script(
            os.path.join(HERE, ENTRY_POINT), hyperparameters=hps, channels=channels,
            instance_type=args.instance_type, instance_count=args.instance_count,
            spot=args.spot, region=args.region, role=args.role, bucket=args.bucket,
            remote=args.remote, framework_version=args.framework_version,
            image_uri=args.image_uri, max_run_seconds=args.max_run,
            base_job_name="resnet-cifar10")
        result = launch.launch(spec, dry_run=args.dry_run, wait=args.wait)
    except MlreproError as exc:
        print(f"launch_sagemaker.py: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.dry_run:
        print(result.to_json())
        print(f"dry run: nothing was sent; hyperparameters {hps}", file=sys.stderr)
        for line in launch.interruption_plan(result.request):
            print(f"dry run: on a spot interruption, {line}", file=sys.stderr)
    else:
        print(f"launched {result.job_name} ({args.instance_count} x {args.instance_type}"
              f"{', spot' if args.spot else ''}); hyperparameters {hps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
