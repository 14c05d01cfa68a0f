"""`mlrepro launch`: a SageMaker training job for a script, or again for a recorded run."""

from __future__ import annotations

import shutil
import sys
import tempfile
from typing import Any

from mlrepro import env
from mlrepro.aws.launch import (DEFAULT_BASE_JOB_NAME, DEFAULT_MAX_RUN, DEFAULT_VOLUME_GB,
                                JobSpec, describe_code, interruption_plan, launch,
                                spec_for_script)
from mlrepro.aws.relaunch import spec_from_run
from mlrepro.aws.remote import resolve_remote
from mlrepro.cli.args import parse_pairs, store_of
from mlrepro.errors import MlreproError
from mlrepro.store import open_store

def _overrides(args) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("instance_type", "instance_count", "image_uri", "framework_version", "region",
                 "role", "bucket", "checkpoint_s3_uri", "checkpoint_every", "max_wait_seconds"):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    if args.max_run is not None:
        out["max_run_seconds"] = args.max_run
    if args.volume_gb is not None:
        out["volume_gb"] = args.volume_gb
    if args.job_name:
        out["base_job_name"] = args.job_name
    if args.spot:
        out["spot"] = True
    if args.no_bundle:
        out["bundle_mlrepro"] = False
    if args.env:
        out["environment"] = {k: str(v) for k, v in parse_pairs(args.env, "--env").items()}
    if args.channel:
        out["channels"] = {k: str(v) for k, v in parse_pairs(args.channel, "--channel").items()}
    return out


def cmd_launch(args) -> int:
    local = store_of(args)
    remote = None
    if not args.no_remote:
        try:
            remote = resolve_remote(local, args.remote)
        except MlreproError:
            if args.remote:
                raise
    hps = parse_pairs(args.hp, "--hp")
    overrides = _overrides(args)
    if args.from_run:
        if args.script:
            raise MlreproError("give either a script or --from RUN, not both")
        work = tempfile.mkdtemp(prefix="mlrepro-relaunch-")
        try:
            spec = spec_from_run(local, args.from_run, workdir=work, repo=args.repo,
                                 remote_uri=remote, hyperparameters=hps, **overrides)
            spec.remote = remote
            return _launch_and_say(spec, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if not args.script:
        raise MlreproError("nothing to launch: give a script (mlrepro launch train.py ...) or "
                           "--from RUN")
    if "instance_type" not in overrides:
        raise MlreproError("no instance type: pass --instance-type, e.g. ml.g5.xlarge")
    spec = spec_for_script(args.script, source_dir=args.source_dir, hyperparameters=hps,
                           remote=remote, **overrides)
    stores = []
    if not args.dry_run:       # a dry run writes nothing anywhere, not even the patch object
        stores = [local] + ([open_store(remote)] if remote else [])
    spec.code = describe_code(spec, stores)
    return _launch_and_say(spec, args)


def _launch_and_say(spec: JobSpec, args) -> int:
    result = launch(spec, dry_run=args.dry_run, wait=args.wait)
    if args.dry_run:
        print(result.to_json())
        print(f"dry run: nothing was sent to AWS; the job would upload {len(result.uploads)} "
              f"files (code and SDK drivers) under s3://{result.bucket}/", file=sys.stderr)
        for line in result.shipped:
            print(f"dry run: the code ships {line}", file=sys.stderr)
        for line in interruption_plan(result.request):
            print(f"dry run: on a spot interruption, {line}", file=sys.stderr)
        return 0
    where = (f"its run is pushed to {spec.remote} while it trains" if spec.remote else
             f"when it ends, import its run with `mlrepro pull-job {result.job_name}`")
    print(f"launched {result.job_name}: {spec.instance_count} x {spec.instance_type}"
          f"{' (spot)' if spec.spot else ''} on {spec.image_uri}; {where}")
    return 0


def register(subparsers, common) -> None:
    """Add `launch` to the command line."""
    p = subparsers.add_parser("launch", parents=[common],
                              help="run a script (or a recorded run again) as a SageMaker job",
                              description="Start a SageMaker training job for a script, or "
                                          "for a recorded run again (--from RUN: its code, "
                                          "params and machines). --dry-run prints the request "
                                          "and sends nothing.")
    p.add_argument("script", nargs="?", metavar="SCRIPT", help="the training script")
    p.add_argument("--from", dest="from_run", metavar="RUN",
                   help="launch a recorded run again: its code, params and machines")
    p.add_argument("--source-dir", metavar="PATH",
                   help="directory uploaded as the code (default: the script's)")
    p.add_argument("--instance-type", help="e.g. ml.g5.xlarge")
    p.add_argument("--instance-count", type=int, metavar="N",
                   help="number of instances (default 1, or the run's)")
    p.add_argument("--spot", action="store_true", help="managed spot training")
    p.add_argument("--hp", action="append", metavar="K=V", help="a hyperparameter")
    p.add_argument("--channel", action="append", metavar="NAME=S3URI", help="an input channel")
    p.add_argument("--env", action="append", metavar="K=V", help="a variable for the job")
    p.add_argument("--image-uri", help="training image (default: the TensorFlow DLC)")
    p.add_argument("--framework-version", help="TensorFlow version of the DLC "
                                               "(default: this machine's or the run's)")
    p.add_argument("--region",
                   help="AWS region (default: boto3's, from AWS_REGION or ~/.aws/config)")
    p.add_argument("--role", help=f"execution role ARN (default ${env.SAGEMAKER_ROLE.name})")
    p.add_argument("--bucket", help="bucket for code and output (default "
                                    f"${env.SAGEMAKER_BUCKET.name}, "
                                    "then the remote's bucket)")
    p.add_argument("--remote", help="remote (name or s3:// URI) the job pushes its run to")
    p.add_argument("--no-remote", action="store_true",
                   help="the job writes its run to its output only")
    p.add_argument("--checkpoint-s3-uri", help="checkpoint location (spot default: per job)")
    p.add_argument("--checkpoint-every", metavar="EVERY",
                   help="how often ReproCallback checkpoints in the job when the script does "
                        "not say: \"10min\", \"500 steps\", \"epoch\" (spot default: 10min; "
                        f"sets ${env.CHECKPOINT_EVERY.name})")
    p.add_argument("--max-run", type=int, help=f"seconds (default {DEFAULT_MAX_RUN})")
    p.add_argument("--max-wait", dest="max_wait_seconds", type=int,
                   help="seconds to wait for spot capacity + run (default 2 x max-run)")
    p.add_argument("--volume-gb", type=int, metavar="GB",
                   help=f"each instance's storage volume (default {DEFAULT_VOLUME_GB})")
    p.add_argument("--job-name", help=f"base job name (default {DEFAULT_BASE_JOB_NAME})")
    p.add_argument("--repo", metavar="PATH",
                   help="git checkout holding a recorded run's commit (for --from)")
    p.add_argument("--no-bundle", action="store_true",
                   help="do not ship mlrepro with the code (the image has it)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the exact CreateTrainingJob request; send nothing")
    p.add_argument("--wait", action="store_true", help="wait for the job and stream its logs")
    p.set_defaults(func=cmd_launch)
