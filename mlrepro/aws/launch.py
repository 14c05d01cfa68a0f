"""`mlrepro launch`: a SageMaker training job for a script, or again for a recorded run.

The job is built with the SageMaker SDK v3 (`sagemaker.train.ModelTrainer`) on the
AWS Deep Learning Container for TensorFlow training. The image is the SDK's own
choice for (region, TensorFlow version, CPU/GPU instance) — `image_uris.retrieve` —
with the TensorFlow version taken from this machine (or from the recorded run);
`--image-uri` overrides it. v3 has no TensorFlow distribution option and nothing
in it writes `TF_CONFIG`: with several instances the script calls
`mlrepro.distribute.strategy()`, which builds it in the container from the hosts.

The uploaded code is the script's directory plus a copy of this mlrepro package
(next to the entry point) so `import mlrepro` works in the stock image. With more
than one instance it also ships `tf_keras` pinned to the image's TensorFlow
version in `requirements.txt` (installed before the script runs): Keras 3 cannot
train under MultiWorkerMirroredStrategy, and whether an image has tf_keras is
otherwise left to luck. `--dry-run` says what is shipped.

Example:
    $ mlrepro launch train.py --instance-type ml.g5.xlarge --instance-count 2 --spot \\
          --hp epochs=30 --channel training=s3://bucket/cifar10/ --dry-run
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from mlrepro import env
from mlrepro._keras.cadence import from_text, parse_every
from mlrepro.aws.calls import AwsCallLog
from mlrepro.capture.code import capture_code
from mlrepro.errors import MlreproError
from mlrepro.store.base import ObjectPut
from mlrepro.store.s3 import parse_s3_uri

VALIDATE_ROLE_ENV = "SAGEMAKER_VALIDATE_ROLE"  # the SDK's switch for its IAM role check
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
SPOT_CHECKPOINT_EVERY = "10min"   # a spot job's default cadence: an interruption loses at most this
DEFAULT_BASE_JOB_NAME = "mlrepro"
DEFAULT_MAX_RUN = 24 * 3600
DEFAULT_VOLUME_GB = 30
ENV_VALUE_LIMIT = 512                        # SageMaker's limit on one environment value
FRAMEWORK = "tensorflow"
IGNORE = (".git", "__pycache__", "*.pyc", ".venv", ".venv-*", "mlrepro-runs", ".pytest_cache",
          ".ipynb_checkpoints", ".DS_Store", ".env", ".cache")
REQUIREMENTS = "requirements.txt"           # installed in the job before the entry point
TF_KERAS = "tf_keras"
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # mlrepro/
_TELEMETRY_OFF = {"SchemaVersion": "1.0",
                  "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


@dataclass
class JobSpec:
    """Everything a training job is made of; `launch()` turns it into a CreateTrainingJob.

    Args:
        entry_point: the script, relative to `source_dir`.
        source_dir: the local directory uploaded as the job's code.
        instance_type, instance_count: the machines (e.g. "ml.g5.xlarge", 2).
        spot: managed spot training (checkpoints synced to S3, restarts resume).
        hyperparameters: passed to the script as `--name value`.
        channels: input channel name -> S3 URI.
        image_uri: the training image; default the TensorFlow DLC for `framework_version`.
        framework_version: TensorFlow version of the DLC (default: this machine's).
        region, role, bucket: where and as whom the job runs, and its S3 bucket.
        remote: an `s3://` store the job pushes its run to (MLREPRO_REMOTE).
        environment: extra variables for the job.
        checkpoint_s3_uri: where checkpoints go (spot default: the SDK's per-job prefix).
        max_run_seconds, max_wait_seconds: stopping condition (spot waits twice as long).
        parent: the recorded run this job reproduces, if any.
        bundle_mlrepro: ship this mlrepro package with the code.
        code: what the code is (commit, patch object), recorded in the job for `--from`.

    Example:
        >>> spec = JobSpec("train.py", ".", "ml.g5.xlarge", instance_count=2, spot=True)
        >>> spec.job_environment()["MLREPRO_SPOT"]
        '1'
    """

    entry_point: str
    source_dir: str
    instance_type: str
    instance_count: int = 1
    spot: bool = False
    hyperparameters: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    image_uri: str | None = None
    framework_version: str | None = None
    region: str | None = None
    role: str | None = None
    bucket: str | None = None
    remote: str | None = None
    environment: dict = field(default_factory=dict)
    checkpoint_s3_uri: str | None = None
    checkpoint_every: str | None = None
    max_run_seconds: int = DEFAULT_MAX_RUN
    max_wait_seconds: int | None = None
    volume_gb: int = DEFAULT_VOLUME_GB
    base_job_name: str = DEFAULT_BASE_JOB_NAME
    parent: dict | None = None
    bundle_mlrepro: bool = True
    code: dict | None = None

    def validate(self) -> None:
        script = os.path.join(self.source_dir, self.entry_point)
        if not os.path.isfile(script):
            raise MlreproError(f"entry point {script} does not exist: give the training script's "
                               "path (and --source-dir if it lives elsewhere)")
        if not self.entry_point.endswith((".py", ".sh")):
            raise MlreproError(f"entry point {self.entry_point!r} must be a .py or .sh script")
        if not (self.instance_type or "").startswith("ml."):
            raise MlreproError(f"instance type {self.instance_type!r} is not a SageMaker "
                               "instance type: e.g. --instance-type ml.g5.xlarge")
        if not isinstance(self.instance_count, int) or self.instance_count < 1:
            raise MlreproError(f"instance count {self.instance_count!r} must be 1 or more")
        for name, uri in self.channels.items():
            if not str(uri).startswith("s3://"):
                raise MlreproError(f"channel {name}={uri!r} is not an S3 URI: upload the data "
                                   "and give --channel NAME=s3://bucket/path/")
        if self.max_wait_seconds is not None and self.max_wait_seconds < self.max_run_seconds:
            raise MlreproError(f"--max-wait {self.max_wait_seconds} is shorter than --max-run "
                               f"{self.max_run_seconds}: SageMaker needs max-wait >= max-run")
        if self.remote:
            parse_s3_uri(self.remote)
        if self.checkpoint_every is not None:
            try:
                parse_every(from_text(self.checkpoint_every))
            except MlreproError as exc:
                raise MlreproError(f"--checkpoint-every: {exc}") from None

    def checkpoint_cadence(self) -> str | None:
        """What the job's ReproCallback checkpoints by when the script leaves it to the
        default: the one asked for, or on spot SPOT_CHECKPOINT_EVERY."""
        if self.checkpoint_every is not None:
            return str(self.checkpoint_every)
        return SPOT_CHECKPOINT_EVERY if self.spot else None

    def launch_record(self) -> dict:
        """What the job carries in MLREPRO_LAUNCH so `launch --from` can rebuild it."""
        return {"instance_type": self.instance_type, "instance_count": self.instance_count,
                "spot": self.spot, "image_uri": self.image_uri, "channels": dict(self.channels),
                "code": self.code}

    def job_environment(self) -> dict[str, str]:
        out = {str(k): str(v) for k, v in self.environment.items()}
        if self.remote:
            out[env.REMOTE.name] = self.remote
        if self.spot:
            out[env.SPOT.name] = "1"          # a spot job: the script may checkpoint more often
        cadence = self.checkpoint_cadence()
        if cadence is not None and env.CHECKPOINT_EVERY.name not in out:
            out[env.CHECKPOINT_EVERY.name] = cadence
        if self.parent:
            out[env.PARENT.name] = json.dumps(self.parent, sort_keys=True, separators=(",", ":"))
        out[env.LAUNCH.name] = _fit(self.launch_record())
        return out


def _fit(record: dict) -> str:
    """Compact JSON under SageMaker's 512-character limit (dropping the least needed parts)."""
    record = dict(record)
    for drop in (None, "channels", "code"):
        if drop:
            record.pop(drop, None)
        text = json.dumps(record, sort_keys=True, separators=(",", ":"))
        if len(text) <= ENV_VALUE_LIMIT:
            return text
    return json.dumps({k: record[k] for k in ("instance_type", "instance_count", "spot")},
                      sort_keys=True, separators=(",", ":"))


@dataclass
class LaunchResult:
    """A launched (or, for a dry run, described) training job."""

    job_name: str
    request: dict
    uploads: list[str]
    dry_run: bool
    spec: JobSpec
    bucket: str = ""
    shipped: list[str] = field(default_factory=list)   # what launch added to the code

    def to_json(self) -> str:
        return json.dumps(self.request, indent=2, sort_keys=True, default=str)


# -- the image --------------------------------------------------------------------------------

def local_framework_version() -> str | None:
    """TensorFlow's version on this machine (major.minor), read without importing it."""
    from importlib import metadata

    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos"):
        try:
            return ".".join(metadata.version(dist).split(".")[:2])
        except metadata.PackageNotFoundError:
            continue
    return None


def image_uri_for(framework_version: str, region: str, instance_type: str) -> str:
    """The SageMaker TensorFlow training DLC for a TF version, region and instance (CPU/GPU)."""
    from sagemaker.core import image_uris

    try:
        py_versions = image_uris.list_py_versions(FRAMEWORK, framework_version, "training")
    except ValueError:
        known = [v for v in image_uris.list_versions(FRAMEWORK, "training") if v.count(".") == 1]
        raise MlreproError(f"there is no SageMaker TensorFlow training image for TensorFlow "
                           f"{framework_version}: pass --framework-version (one of "
                           f"{', '.join(known[-6:])}) or --image-uri") from None
    try:
        return image_uris.retrieve(FRAMEWORK, region=region, version=framework_version,
                                   py_version=py_versions[-1], instance_type=instance_type,
                                   image_scope="training")
    except ValueError as exc:
        raise MlreproError(f"no TensorFlow {framework_version} training image for {instance_type} "
                           f"in {region} ({exc}): pass --image-uri") from None


# -- code staging -----------------------------------------------------------------------------

def tf_keras_requirement(framework_version: str) -> str:
    """The tf_keras line for a TensorFlow version: tf_keras releases follow TF's (2.19 -> 2.19.*).

    Example:
        >>> tf_keras_requirement("2.19")
        'tf_keras==2.19.*'
    """
    parts = str(framework_version).split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise MlreproError(f"framework version {framework_version!r} is not major.minor: pass "
                           "--framework-version, e.g. 2.19")
    return f"{TF_KERAS}=={parts[0]}.{parts[1]}.*"


def _names_tf_keras(text: str) -> bool:
    for line in text.splitlines():
        name = line.split("#", 1)[0].strip().lower().replace("-", "_")
        rest = name[len(TF_KERAS):][:1]
        if name.startswith(TF_KERAS) and not (rest.isalnum() or rest == "_"):
            return True
    return False


def stage_code(spec: JobSpec, into: str) -> tuple[str, list[str]]:
    """Copy the source dir (minus IGNORE) and what the job needs besides it.

    Beside the entry point: this mlrepro package (unless `bundle_mlrepro` is off).
    With several instances: `tf_keras` pinned to `spec.framework_version`, added
    to the source dir's `requirements.txt` (or a new one) unless it names tf_keras.
    Returns (the staged directory, one line per thing added, for `--dry-run`).
    """
    staged = os.path.join(into, "code")
    shutil.copytree(spec.source_dir, staged, ignore=shutil.ignore_patterns(*IGNORE))
    shipped = []
    if spec.bundle_mlrepro:
        here = PACKAGE_DIR
        where = os.path.dirname(spec.entry_point)
        target = os.path.join(staged, where, "mlrepro")
        if not os.path.exists(target):
            shutil.copytree(here, target, ignore=shutil.ignore_patterns(*IGNORE))
            shipped.append(f"mlrepro (this package, {os.path.join(where, 'mlrepro/')} beside "
                           f"{spec.entry_point})")
    if spec.instance_count > 1:
        version = spec.framework_version or local_framework_version()
        if not version:
            raise MlreproError("a job on several instances trains with tf_keras pinned to the "
                               "image's TensorFlow version: pass --framework-version (e.g. 2.19)")
        line = tf_keras_requirement(version)
        path = os.path.join(staged, REQUIREMENTS)
        text = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        if _names_tf_keras(text):
            shipped.append(f"{REQUIREMENTS} already names {TF_KERAS}: kept as written "
                           f"(several instances need it; {line} fits TensorFlow {version})")
        else:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text + ("" if not text or text.endswith("\n") else "\n")
                         + f"{line}  # added by mlrepro launch: Keras 3 cannot train on "
                           "several instances\n")
            shipped.append(f"{REQUIREMENTS} with {line} (Keras 3 cannot train on "
                           f"{spec.instance_count} instances; the script uses tf_keras)")
    return staged, shipped


def describe_code(spec: JobSpec, stores=()) -> dict | None:
    """The launching checkout's commit and uncommitted patch, for `launch --from` later.

    The patch is stored as an object in each of `stores` (the local store and the
    remote) so that a colleague who pulls the job's run can rebuild the same code.
    """
    snap = capture_code(argv=[os.path.join(spec.source_dir, spec.entry_point)])
    info = snap.info
    if not info.get("commit") or not info.get("entry_point"):
        return None
    repo_entry = info["entry_point"].replace(os.sep, "/")
    source = os.path.normpath(os.path.join(os.path.dirname(repo_entry),
                                           *[".."] * spec.entry_point.count("/")))
    code = {"commit": info["commit"], "entry": repo_entry,
            "source": "" if source == "." else source.replace(os.sep, "/")}
    if snap.patch:
        code["patch"] = hashlib.sha256(snap.patch).hexdigest()
        for store in stores:
            store.write_batch([ObjectPut(data=snap.patch)])
    return code


# -- launching --------------------------------------------------------------------------------

def _boto_session(region: str | None, offline: bool):
    import boto3

    if offline:  # never signed nor sent: placeholder keys keep botocore from looking for any
        return boto3.session.Session(region_name=region or "us-east-1",
                                     aws_access_key_id="dry-run", aws_secret_access_key="dry-run")
    return boto3.session.Session(region_name=region) if region else boto3.session.Session()


def launch(spec: JobSpec, *, dry_run: bool = False, wait: bool = False,
           boto_session: Any = None) -> LaunchResult:
    """Create the training job (or, with `dry_run`, build its exact request and send nothing).

    Example:
        >>> spec = JobSpec("train.py", "examples/resnet_cifar10", "ml.g5.xlarge")  # doctest: +SKIP
        >>> print(launch(spec, dry_run=True).to_json())                              # doctest: +SKIP
    """
    spec.validate()
    session = boto_session or _boto_session(spec.region, dry_run)
    region = spec.region or session.region_name
    if not region:
        raise MlreproError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    role = spec.role or env.SAGEMAKER_ROLE.get()
    if not role:
        raise MlreproError("no SageMaker execution role: pass --role ARN or set "
                           f"{env.SAGEMAKER_ROLE.name}")
    bucket = spec.bucket or env.SAGEMAKER_BUCKET.get() or _remote_bucket(spec.remote)
    if not bucket:
        raise MlreproError(f"no S3 bucket for the job's code and output: pass --bucket or set "
                           f"{env.SAGEMAKER_BUCKET.name} (or configure a remote)")
    if not spec.image_uri:
        version = spec.framework_version or local_framework_version()
        if not version:
            raise MlreproError("TensorFlow is not installed here to choose the image by: pass "
                               "--framework-version (e.g. 2.19) or --image-uri")
        spec.framework_version = version
        spec.image_uri = image_uri_for(version, region, spec.instance_type)
    log = AwsCallLog(session, offline=dry_run, bucket=bucket).attach()

    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import (CheckpointConfig, Compute, InputData,
                                                 SourceCode, StoppingCondition)
    from sagemaker.train import ModelTrainer

    work = tempfile.mkdtemp(prefix="mlrepro-launch-")
    saved_validate = os.environ.get(VALIDATE_ROLE_ENV)
    if dry_run:  # validating the role asks IAM; a dry run asks nothing
        os.environ[VALIDATE_ROLE_ENV] = "false"
    try:
        staged, shipped = stage_code(spec, work)
        requirements = REQUIREMENTS if os.path.isfile(os.path.join(staged, REQUIREMENTS)) \
            else None
        sm_session = Session(boto_session=session, default_bucket=bucket,
                             sagemaker_config=_TELEMETRY_OFF if dry_run else None)
        max_wait = spec.max_wait_seconds or (2 * spec.max_run_seconds if spec.spot else None)
        checkpoint = None
        if spec.spot or spec.checkpoint_s3_uri:
            checkpoint = CheckpointConfig(s3_uri=spec.checkpoint_s3_uri,
                                          local_path=CHECKPOINT_LOCAL_PATH)
        trainer = ModelTrainer(
            training_image=spec.image_uri,
            source_code=SourceCode(source_dir=staged, entry_script=spec.entry_point,
                                   requirements=requirements, ignore_patterns=list(IGNORE)),
            compute=Compute(instance_type=spec.instance_type, instance_count=spec.instance_count,
                            volume_size_in_gb=spec.volume_gb,
                            enable_managed_spot_training=spec.spot),
            stopping_condition=StoppingCondition(max_runtime_in_seconds=spec.max_run_seconds,
                                                 max_wait_time_in_seconds=max_wait),
            checkpoint_config=checkpoint,
            hyperparameters=dict(spec.hyperparameters),
            environment=spec.job_environment(),
            role=role, sagemaker_session=sm_session, base_job_name=spec.base_job_name)
        channels = [InputData(channel_name=n, data_source=u) for n, u in spec.channels.items()]
        try:
            trainer.train(input_data_config=channels or None, wait=wait, logs=wait)
        except MlreproError:
            raise
        except Exception as exc:  # noqa: BLE001 - SDK and AWS errors become one line
            raise MlreproError(f"SageMaker did not create the job ({exc}): check the role, "
                               "bucket, region and credentials") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if dry_run:
            if saved_validate is None:
                os.environ.pop(VALIDATE_ROLE_ENV, None)
            else:
                os.environ[VALIDATE_ROLE_ENV] = saved_validate
    request = log.request("CreateTrainingJob") or {}
    return LaunchResult(job_name=request.get("TrainingJobName", ""), request=request,
                        uploads=log.uploads(), dry_run=dry_run, spec=spec, bucket=bucket,
                        shipped=shipped)


def interruption_plan(request: dict) -> list[str]:
    """What happens when a spot job built from `request` is interrupted, in a few lines.

    Empty for an on-demand job. Read from the request itself (its checkpoint location
    and wait time), so `--dry-run` says what the job would really do.

    Example:
        >>> interruption_plan({"EnableManagedSpotTraining": True,
        ...                    "CheckpointConfig": {"S3Uri": "s3://b/ck", "LocalPath": "/opt/ml/checkpoints"},
        ...                    "StoppingCondition": {"MaxWaitTimeInSeconds": 7200}})[0][:46]
        'SageMaker sends SIGTERM, then starts the job a'
    """
    if not request.get("EnableManagedSpotTraining"):
        return []
    checkpoint = request.get("CheckpointConfig") or {}
    local = checkpoint.get("LocalPath") or CHECKPOINT_LOCAL_PATH
    wait = (request.get("StoppingCondition") or {}).get("MaxWaitTimeInSeconds")
    within = f" (the job may take {wait} s in all, waiting included)" if wait else ""
    every = (request.get("Environment") or {}).get(env.CHECKPOINT_EVERY.name)
    return [
        "SageMaker sends SIGTERM, then starts the job again when capacity returns, with "
        f"{local} restored from {checkpoint.get('S3Uri') or 'the job checkpoint prefix'}"
        + within,
        f"the run lives in {local}/mlrepro-runs beside the script's checkpoints; at the "
        "signal ReproCallback writes a checkpoint at the next step (within "
        f"${env.PREEMPTION_TIMEOUT.name}, default 30 s; SageMaker allows 120 s) and ends the "
        "attempt as `preempted`",
        "the restarted job continues the same run from that step as its next attempt; if the "
        "signal never reaches the script it continues from the last periodic checkpoint: "
        + (f"every {every} (${env.CHECKPOINT_EVERY.name}, for a ReproCallback the script "
           "creates without checkpoint_every)" if every else
           "at epoch ends unless the script's ReproCallback says checkpoint_every"),
    ]


def _remote_bucket(remote: str | None) -> str | None:
    if not remote:
        return None
    return parse_s3_uri(remote)[0]


def spec_for_script(script: str, *, source_dir: str | None = None, **fields) -> JobSpec:
    """A JobSpec for a local script; its directory is the source dir unless one is given."""
    script = os.path.abspath(script)
    source_dir = os.path.abspath(source_dir) if source_dir else os.path.dirname(script)
    entry = os.path.relpath(script, source_dir)
    if entry.startswith(".."):
        raise MlreproError(f"{script} is not inside --source-dir {source_dir}: give a source "
                           "directory that contains the script")
    return JobSpec(entry_point=entry.replace(os.sep, "/"), source_dir=source_dir, **fields)


__all__ = ["JobSpec", "LaunchResult", "launch", "spec_for_script", "image_uri_for",
           "local_framework_version", "stage_code"]
