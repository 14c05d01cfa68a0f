"""The SageMaker training container contract: every path, file and variable, named once.

SageMaker mounts a tree at `/opt/ml` (the training toolkit honours
`SAGEMAKER_BASE_DIR` instead) and sets `SM_*` variables for the entry point.
This module names all of it and reads it into plain values. Unlike the
toolkit's own `environment` module it has no side effects on import: it never
creates directories or sets variables.

Sources: the `sagemaker-training` toolkit 5.x (`environment.py`, `params.py`),
the SageMaker SDK v3 container driver (`container_drivers/scripts/environment.py`)
and the checkpoint contract (`input/config/checkpointconfig.json`, key `LocalPath`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from mlrepro import env

# -- the tree ---------------------------------------------------------------------------
DEFAULT_BASE_DIR = "/opt/ml"
BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"              # the training toolkit's own override

MODEL_DIR = "model"
CODE_DIR = "code"
CHECKPOINTS_DIR = "checkpoints"                  # the default CheckpointConfig.LocalPath
INPUT_CONFIG_DIR = os.path.join("input", "config")
INPUT_DATA_DIR = os.path.join("input", "data")
OUTPUT_DIR = "output"
OUTPUT_DATA_DIR = os.path.join("output", "data")  # tarred into output.tar.gz at job end

HYPERPARAMETERS_FILE = "hyperparameters.json"    # {"name": "<JSON-encoded value>"}
RESOURCE_CONFIG_FILE = "resourceconfig.json"     # hosts, current_host, instance type
INPUT_DATA_CONFIG_FILE = "inputdataconfig.json"  # {"<channel>": {...}}
CHECKPOINT_CONFIG_FILE = "checkpointconfig.json"  # present when CheckpointConfig is set
TRAINING_JOB_CONFIG_FILE = "trainingjobconfig.json"  # the CreateTrainingJob request

# resourceconfig.json keys
RC_CURRENT_HOST = "current_host"
RC_HOSTS = "hosts"
RC_INSTANCE_TYPE = "current_instance_type"
RC_INSTANCE_GROUPS = "instance_groups"
RC_GROUP_INSTANCE_TYPE = "instance_type"
RC_GROUP_HOSTS = "hosts"
# checkpointconfig.json / trainingjobconfig.json keys
CHECKPOINT_LOCAL_PATH = "LocalPath"
CHECKPOINT_S3_URI = "S3Uri"
JOB_CONFIG_NAME = "TrainingJobName"
JOB_CONFIG_SPOT = "EnableManagedSpotTraining"

# -- variables --------------------------------------------------------------------------
TRAINING_JOB_NAME = "TRAINING_JOB_NAME"          # set by the platform in every job
SM_TRAINING_ENV = "SM_TRAINING_ENV"              # JSON: the whole training environment
SM_MODEL_DIR = "SM_MODEL_DIR"
SM_OUTPUT_DATA_DIR = "SM_OUTPUT_DATA_DIR"
SM_CHANNELS = "SM_CHANNELS"                      # JSON list of channel names
SM_CHANNEL_PREFIX = "SM_CHANNEL_"                # SM_CHANNEL_<NAME>=<dir>
SM_HPS = "SM_HPS"                                # JSON object of user hyperparameters
SM_HOSTS = "SM_HOSTS"                            # JSON list, sorted
SM_CURRENT_HOST = "SM_CURRENT_HOST"
SM_CURRENT_INSTANCE_TYPE = "SM_CURRENT_INSTANCE_TYPE"
SM_NUM_GPUS = "SM_NUM_GPUS"
SM_MASTER_ADDR = "SM_MASTER_ADDR"
DETECTION_VARIABLES = (TRAINING_JOB_NAME, SM_TRAINING_ENV)  # either one means "in a job"

# SM_TRAINING_ENV keys
TE_JOB_NAME = "job_name"
TE_HOSTS = "hosts"
TE_CURRENT_HOST = "current_host"
TE_INSTANCE_TYPE = "current_instance_type"
TE_NUM_GPUS = "num_gpus"
TE_CHANNEL_DIRS = "channel_input_dirs"
TE_HYPERPARAMETERS = "hyperparameters"
TE_MODEL_DIR = "model_dir"
TE_OUTPUT_DATA_DIR = "output_data_dir"

# -- hyperparameters the toolkit reserves for itself ---------------------------------------
SAGEMAKER_HP_PREFIX = "sagemaker_"
JOB_NAME_HP = "sagemaker_job_name"
PROGRAM_HP = "sagemaker_program"                 # the entry point, e.g. "\"train.py\""
SUBMIT_DIR_HP = "sagemaker_submit_directory"     # s3:// tarball or a local directory
RESERVED_HPS = ("_tuning_objective_metric",)


def base_dir(environ: Mapping[str, str], override: str | None = None) -> str:
    """The SageMaker tree's root: `override`, `$MLREPRO_SAGEMAKER_BASE_DIR`, `$SAGEMAKER_BASE_DIR`, /opt/ml."""
    return (override or env.SAGEMAKER_BASE_DIR.get(environ) or environ.get(BASE_DIR_ENV)
            or DEFAULT_BASE_DIR)


def config_path(base: str, name: str) -> str:
    """The path of one `input/config/<name>` file under `base`."""
    return os.path.join(base, INPUT_CONFIG_DIR, name)


def read_config(base: str, name: str, problems: list[str]) -> dict | None:
    """One config file as a dict; None when absent; a malformed one is noted in `problems`."""
    path = config_path(base, name)
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problems.append(f"{path} cannot be read ({exc})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path} is not a JSON object")
        return None
    return value


def env_json(environ: Mapping[str, str], name: str, problems: list[str]) -> Any:
    """A JSON-valued variable (`SM_HOSTS`, `SM_HPS`...) decoded; None when unset or malformed."""
    text = environ.get(name)
    if text in (None, ""):
        return None
    try:
        return json.loads(text)
    except ValueError:
        problems.append(f"${name} is not JSON")
        return None


def parse_value(text: Any) -> Any:
    """A hyperparameter as the user wrote it: JSON first, then True/False, else the string.

    SageMaker stores every hyperparameter as a string (the SDKs JSON-encode
    non-strings; v3 leaves plain strings bare), so `"3"` -> 3, `"0.1"` -> 0.1,
    `"true"` -> True, `"[1, 2]"` -> [1, 2], `"\\"adam\\""` and `"adam"` -> "adam".
    """
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text in ("True", "False"):
        return text == "True"
    return text


def is_reserved(name: str) -> bool:
    """True for the toolkit's own hyperparameters (`sagemaker_*`), which are not the user's."""
    return name.startswith(SAGEMAKER_HP_PREFIX) or name in RESERVED_HPS


def user_hyperparameters(raw: Mapping[str, Any]) -> dict:
    """`hyperparameters.json` (or `SM_HPS`) decoded, without the toolkit's reserved names."""
    return {k: parse_value(v) for k, v in sorted(raw.items()) if not is_reserved(k)}


def map_path(path: str | None, base: str) -> str | None:
    """A path the platform wrote as /opt/ml/..., moved under `base` when the tree lives elsewhere."""
    if not path or base == DEFAULT_BASE_DIR:
        return path
    prefix = DEFAULT_BASE_DIR + "/"
    if path == DEFAULT_BASE_DIR:
        return base
    if path.startswith(prefix):
        return os.path.join(base, path[len(prefix):])
    return path
