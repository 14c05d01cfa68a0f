"""`Runtime`: where this process runs — on this machine, a Deep Learning AMI, or SageMaker.

One script runs unchanged everywhere because the same fields name the model,
output and checkpoint directories, the input channels, the hyperparameters, the
hosts, this process's rank, and whether it is the chief (the only process that
writes the run). `detect(environ, base_dir, argv)` is a pure function of its
inputs and the files they point at: it writes nothing and imports no framework;
`write_env()` is the one call that changes the process (it sets `TF_CONFIG`).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from mlrepro import env
from mlrepro.runtime import cluster as _cluster
from mlrepro.runtime import machine as _machine
from mlrepro.runtime import sagemaker as sm
from mlrepro.runtime import tfconfig as _tfconfig

LOCAL = "local"
DLAMI = "dlami"
SAGEMAKER = "sagemaker"
KINDS = (LOCAL, DLAMI, SAGEMAKER)

RUNS_DIR = "mlrepro-runs"        # the store's directory inside a checkpoint dir / job output
LOCAL_MODEL_DIR = "model"        # relative to the working directory, like ./mlrepro-runs
LOCAL_OUTPUT_DIR = "output"
LOCAL_CHECKPOINT_DIR = "checkpoints"

__all__ = ["Runtime", "detect", "detect_or_none", "default_store", "export_dir", "parse_argv",
           "KINDS", "LOCAL", "DLAMI", "SAGEMAKER", "RUNS_DIR"]


@dataclass
class Runtime:
    """Where this process runs and its place in the job; see `detect()`.

    Args:
        kind: "local", "dlami" or "sagemaker".
        model_dir: where the final model goes (SageMaker uploads it as model.tar.gz).
        output_dir: where other outputs go (SageMaker: output/data, uploaded as output.tar.gz).
        checkpoint_dir: where checkpoints go; on SageMaker only when the job configures
            checkpoints (synced with S3 and restored on a spot restart), else None.
        channels: input channel name -> local directory.
        hyperparameters: name -> value, parsed back to int/float/bool/JSON.
        hosts: every host of the job, sorted; current_host: this one.
        rank: this process's rank (0 is the chief); world_size: processes in the job.
        num_gpus: GPUs this process may use; instance_type, job_name: when known.
        is_chief: the one process that writes the run.
        launcher: what placed this process: "tf_config", "mpi", "sagemaker" or "single".
        tf_config: the TF_CONFIG in force, or the one `write_env()` sets.
        spot: a SageMaker managed spot job (`trainingjobconfig.json`), which may be restarted.

    Example:
        >>> import mlrepro
        >>> rt = mlrepro.runtime.detect(environ={}, argv=["train.py", "--epochs", "3"])
        >>> rt.kind, rt.hyperparameters["epochs"], rt.is_chief
        ('local', 3, True)
    """

    kind: str
    model_dir: str
    output_dir: str
    checkpoint_dir: str | None
    channels: dict[str, str]
    hyperparameters: dict[str, Any]
    hosts: list[str]
    current_host: str
    rank: int | None
    world_size: int
    num_gpus: int
    instance_type: str | None
    job_name: str | None
    is_chief: bool
    launcher: str = _cluster.SINGLE
    local_rank: int = 0
    master_addr: str | None = None
    tf_config: dict | None = None
    tf_config_built: bool = False
    base_dir: str | None = None
    dlami_version: str | None = None
    spot: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def is_distributed(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    def to_record(self) -> dict:
        """What the run record keeps (manifest["runtime"]): no paths, no values of variables."""
        out = {
            "kind": self.kind, "instance_type": self.instance_type, "hosts": list(self.hosts),
            "current_host": self.current_host, "rank": self.rank, "world_size": self.world_size,
            "local_rank": self.local_rank, "is_chief": self.is_chief, "launcher": self.launcher,
            "job_name": self.job_name, "num_gpus": self.num_gpus,
            "channels": sorted(self.channels),
            "tf_config_built_by_mlrepro": self.tf_config_built,
        }
        if self.dlami_version:
            out["dlami_version"] = self.dlami_version
        if self.spot:
            out["spot"] = True
        if self.problems:
            out["problems"] = list(self.problems)
        return out

    def to_env(self) -> dict[str, str]:
        """The variables this runtime needs set: TF_CONFIG when mlrepro built it."""
        if self.tf_config is not None and self.tf_config_built:
            return {_tfconfig.TF_CONFIG_ENV: _tfconfig.dumps(self.tf_config),
                    env.TF_CONFIG_SOURCE.name: self.launcher}
        return {}

    def write_env(self, environ: "dict[str, str] | None" = None) -> dict[str, str]:
        """Set `to_env()` in `environ` (default os.environ), never replacing a value already set.

        Returns the variables it set. Call it before building a
        MultiWorkerMirroredStrategy (`mlrepro.distribute.strategy()` does).
        """
        target = os.environ if environ is None else environ
        wanted = self.to_env()
        if target.get(_tfconfig.TF_CONFIG_ENV):  # a TF_CONFIG set by someone else stays theirs
            return {}
        for name, value in wanted.items():
            target[name] = value
        return wanted

    def as_dict(self) -> dict:
        """Every field, paths included (for printing; the run record uses `to_record`)."""
        return asdict(self)


# -- hyperparameters from the command line ------------------------------------------------

def parse_argv(argv: Sequence[str]) -> dict[str, Any]:
    """`--epochs 3 --lr=0.1 --shuffle` -> {"epochs": 3, "lr": 0.1, "shuffle": True}.

    The form SageMaker passes hyperparameters to a script, read the same way
    locally. Dashes in names become underscores (as argparse does); values are
    parsed like SageMaker's (JSON, then True/False, else the string); words that
    do not follow an option are ignored.
    """
    out: dict[str, Any] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--") or _is_number(arg):
            continue
        name, sep, value = arg.lstrip("-").partition("=")
        name = name.replace("-", "_")
        if not name:
            continue
        if sep:
            out[name] = sm.parse_value(value)
        elif i < len(args) and (not args[i].startswith("-") or _is_number(args[i])):
            out[name] = sm.parse_value(args[i])
            i += 1
        else:
            out[name] = True
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# -- detection --------------------------------------------------------------------------------

def detect(environ: Mapping[str, str] | None = None, base_dir: str | None = None,
           argv: Sequence[str] | None = None, *, root: str = "/",
           hostname: str | None = None) -> Runtime:
    """Describe where this process runs; a pure function of its inputs.

    Args:
        environ: the variables to read (default: os.environ).
        base_dir: the SageMaker tree (default: $MLREPRO_SAGEMAKER_BASE_DIR,
            $SAGEMAKER_BASE_DIR, then /opt/ml).
        argv: the command line whose `--name value` pairs are the local hyperparameters
            (default: sys.argv).
        root: the file system root under which machine marks (DLAMI, DMI, /dev) are read.
        hostname: this machine's name (default: socket.gethostname()).

    Example:
        >>> rt = detect(environ={"SM_HPS": '{"epochs": 3}', "TRAINING_JOB_NAME": "j1",
        ...                      "SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2"},
        ...             base_dir="/nonexistent")
        >>> rt.kind, rt.job_name, rt.rank, rt.is_chief, rt.hyperparameters
        ('sagemaker', 'j1', 1, False, {'epochs': 3})
    """
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    hostname = hostname or socket.gethostname()
    problems: list[str] = []
    base = sm.base_dir(environ, base_dir)
    resource = sm.read_config(base, sm.RESOURCE_CONFIG_FILE, problems)
    if resource is not None or any(environ.get(v) for v in sm.DETECTION_VARIABLES):
        return _sagemaker(environ, base, resource, root, hostname, problems)
    return _local(environ, argv, root, hostname, problems)


def detect_or_none(**kwargs) -> Runtime | None:
    """`detect(**kwargs)`, or None when it fails: callers that only describe where they run
    (the run record, default directories) go on without it."""
    try:
        return detect(**kwargs)
    except Exception:  # noqa: BLE001 - runtime detection is descriptive only
        return None


def _local(environ, argv, root, hostname, problems) -> Runtime:
    marks = _machine.dlami_marks(root, environ)
    placement = _cluster.place(environ)
    problems.extend(placement.problems)
    hosts = (_tfconfig.hosts_of(placement.tf_config) if placement.tf_config else [hostname])
    channels = _channel_variables(environ)
    return Runtime(
        kind=DLAMI if marks else LOCAL,
        model_dir=environ.get(sm.SM_MODEL_DIR) or LOCAL_MODEL_DIR,
        output_dir=environ.get(sm.SM_OUTPUT_DATA_DIR) or LOCAL_OUTPUT_DIR,
        checkpoint_dir=LOCAL_CHECKPOINT_DIR,
        channels=channels,
        hyperparameters=parse_argv(argv[1:]),
        hosts=hosts,
        current_host=hostname,
        rank=placement.rank, world_size=placement.world_size,
        local_rank=placement.local_rank,
        num_gpus=_machine.gpu_count(root, environ),
        instance_type=_machine.ec2_instance_type(root),
        job_name=None,
        is_chief=placement.is_chief,
        launcher=placement.launcher,
        master_addr=hosts[0] if hosts else None,
        tf_config=placement.tf_config, tf_config_built=placement.tf_config_built,
        dlami_version=_machine.dlami_version(root, environ) if marks else None,
        problems=problems,
    )


def _sagemaker(environ, base, resource, root, hostname, problems) -> Runtime:
    resource = resource or {}
    training_env = sm.env_json(environ, sm.SM_TRAINING_ENV, problems)
    training_env = training_env if isinstance(training_env, dict) else {}

    hosts = resource.get(sm.RC_HOSTS) or sm.env_json(environ, sm.SM_HOSTS, problems) \
        or training_env.get(sm.TE_HOSTS) or []
    hosts = sorted(str(h) for h in hosts)
    current = (resource.get(sm.RC_CURRENT_HOST) or environ.get(sm.SM_CURRENT_HOST)
               or training_env.get(sm.TE_CURRENT_HOST) or (hosts[0] if len(hosts) == 1
                                                           else hostname))
    if not hosts:
        hosts = [current]
    placement = _cluster.place(environ, hosts, current)
    problems.extend(placement.problems)

    hyperparameters = _sagemaker_hyperparameters(environ, base, training_env, problems)
    job_config = sm.read_config(base, sm.TRAINING_JOB_CONFIG_FILE, problems) or {}
    job_name = (environ.get(sm.TRAINING_JOB_NAME) or training_env.get(sm.TE_JOB_NAME)
                or _raw_job_name(base, job_config, problems))
    return Runtime(
        kind=SAGEMAKER,
        model_dir=environ.get(sm.SM_MODEL_DIR) or training_env.get(sm.TE_MODEL_DIR)
        or os.path.join(base, sm.MODEL_DIR),
        output_dir=environ.get(sm.SM_OUTPUT_DATA_DIR) or training_env.get(sm.TE_OUTPUT_DATA_DIR)
        or os.path.join(base, sm.OUTPUT_DATA_DIR),
        checkpoint_dir=_checkpoint_dir(base, problems),
        channels=_sagemaker_channels(environ, base, training_env, problems),
        hyperparameters=hyperparameters,
        hosts=hosts,
        current_host=current,
        rank=placement.rank, world_size=placement.world_size,
        local_rank=placement.local_rank,
        num_gpus=_sagemaker_gpus(environ, training_env, root),
        instance_type=_instance_type(resource, environ, training_env, current),
        job_name=job_name or None,
        is_chief=placement.is_chief,
        launcher=placement.launcher,
        master_addr=environ.get(sm.SM_MASTER_ADDR) or hosts[0],
        tf_config=placement.tf_config, tf_config_built=placement.tf_config_built,
        base_dir=base,
        spot=bool(job_config.get(sm.JOB_CONFIG_SPOT)),
        problems=problems,
    )


def _sagemaker_hyperparameters(environ, base, training_env, problems) -> dict:
    hps = sm.env_json(environ, sm.SM_HPS, problems)
    if isinstance(hps, dict):  # already decoded by the toolkit: only drop reserved names
        return {k: v for k, v in sorted(hps.items()) if not sm.is_reserved(k)}
    raw = sm.read_config(base, sm.HYPERPARAMETERS_FILE, problems)
    if raw is not None:
        return sm.user_hyperparameters(raw)
    hps = training_env.get(sm.TE_HYPERPARAMETERS)
    return {k: v for k, v in sorted(hps.items()) if not sm.is_reserved(k)} \
        if isinstance(hps, dict) else {}


def _raw_job_name(base, job_config, problems) -> str | None:
    raw = sm.read_config(base, sm.HYPERPARAMETERS_FILE, problems) or {}
    if sm.JOB_NAME_HP in raw:
        return str(sm.parse_value(raw[sm.JOB_NAME_HP]))
    return job_config.get(sm.JOB_CONFIG_NAME)


def _channel_variables(environ) -> dict[str, str]:
    prefix = sm.SM_CHANNEL_PREFIX
    return {k[len(prefix):].lower(): v for k, v in sorted(environ.items())
            if k.startswith(prefix) and v}


def _sagemaker_channels(environ, base, training_env, problems) -> dict[str, str]:
    names = list((sm.read_config(base, sm.INPUT_DATA_CONFIG_FILE, problems) or {}).keys())
    listed = sm.env_json(environ, sm.SM_CHANNELS, problems)
    names += [n for n in (listed or []) if n not in names]
    channels = {n: os.path.join(base, sm.INPUT_DATA_DIR, n) for n in names}
    te_dirs = training_env.get(sm.TE_CHANNEL_DIRS)
    if isinstance(te_dirs, dict):
        channels.update({str(k): str(v) for k, v in te_dirs.items()})
    variables = _channel_variables(environ)
    for name in list(channels):  # SM_CHANNEL_<NAME> is upper case: map it back by name
        if name.lower() in variables:
            channels[name] = variables.pop(name.lower())
    channels.update(variables)
    return dict(sorted(channels.items()))


def _checkpoint_dir(base, problems) -> str | None:
    config = sm.read_config(base, sm.CHECKPOINT_CONFIG_FILE, problems)
    if config and config.get(sm.CHECKPOINT_LOCAL_PATH):
        return sm.map_path(str(config[sm.CHECKPOINT_LOCAL_PATH]), base)
    if config is not None:
        return os.path.join(base, sm.CHECKPOINTS_DIR)
    default = os.path.join(base, sm.CHECKPOINTS_DIR)
    return default if os.path.isdir(default) else None


def _sagemaker_gpus(environ, training_env, root) -> int:
    for value in (environ.get(sm.SM_NUM_GPUS), training_env.get(sm.TE_NUM_GPUS)):
        try:
            if value not in (None, ""):
                return int(value)
        except (TypeError, ValueError):
            continue
    return _machine.gpu_count(root, environ)


def _instance_type(resource, environ, training_env, current) -> str | None:
    found = (resource.get(sm.RC_INSTANCE_TYPE) or environ.get(sm.SM_CURRENT_INSTANCE_TYPE)
             or training_env.get(sm.TE_INSTANCE_TYPE))
    if found:
        return str(found)
    for group in resource.get(sm.RC_INSTANCE_GROUPS) or []:
        if current in (group.get(sm.RC_GROUP_HOSTS) or []):
            return group.get(sm.RC_GROUP_INSTANCE_TYPE)
    return None


# -- the run on SageMaker: where it is stored and where a copy goes ------------------------------

def default_store(rt: Any, environ: Mapping[str, str] | None = None) -> str | None:
    """The store a run should use on this runtime, or None for the usual default.

    On SageMaker with checkpoints configured the run lives in
    `<checkpoint_dir>/mlrepro-runs`, which SageMaker syncs to S3 and restores
    on a spot restart, so the restarted job finds and continues its run.
    `$MLREPRO_STORE` (or an explicit `store=`) always wins.
    """
    if env.STORE.is_set(environ):
        return None
    if getattr(rt, "kind", None) == SAGEMAKER and getattr(rt, "checkpoint_dir", None):
        return os.path.join(rt.checkpoint_dir, RUNS_DIR)
    return None


def export_dir(rt: Any) -> str | None:
    """Where a finished run's copy goes so that it leaves the machine with the job, or None.

    On SageMaker: `<output_dir>/mlrepro-runs`, which SageMaker uploads as
    output.tar.gz (`mlrepro pull-job` imports it). Elsewhere the store is enough.
    """
    if getattr(rt, "kind", None) != SAGEMAKER or not getattr(rt, "output_dir", None):
        return None
    return os.path.join(rt.output_dir, RUNS_DIR)
