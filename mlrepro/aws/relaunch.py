"""`mlrepro launch --from RUN`: the job spec of a recorded run, to run it again on SageMaker.

The code is rebuilt from the record (`mlrepro.analysis.rebuild`): the run's commit and patch,
or — for a run recorded inside a job launched by mlrepro, where there is no git
checkout — the commit and patch the launch recorded in `MLREPRO_LAUNCH`, or at
least the stored entry point. Hyperparameters come from the job's `SM_HPS`, else
the recorded command line, else the run's params; machines and channels from
`MLREPRO_LAUNCH`; the TensorFlow version from the recorded environment. Anything
given on the command line wins.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from mlrepro import env
from mlrepro.analysis.rebuild import rebuild_code
from mlrepro.aws.launch import JobSpec
from mlrepro.capture.redact import REDACTED
from mlrepro.errors import MlreproError, RunNotFound
from mlrepro.runtime.sagemaker import SM_HPS as HPS_ENV
from mlrepro.store import ObjectPut, open_store


def recorded_hyperparameters(manifest: dict) -> tuple[dict, str]:
    """The hyperparameters the run was given, and where they were found."""
    variables = (manifest.get("environment") or {}).get("variables") or {}
    hps = variables.get(HPS_ENV)
    if isinstance(hps, dict):
        return dict(hps), "the job's SM_HPS"
    argv = list((manifest.get("code") or {}).get("argv") or [])[1:]
    parsed = parse_option_pairs(argv)
    if parsed is not None:
        return parsed, "the recorded command line"
    return dict(manifest.get("params") or {}), "the run's params"


def parse_option_pairs(argv: list[str]) -> dict | None:
    """`--epochs 3 --lr=0.1` -> {"epochs": 3, "lr": 0.1}, names kept as written; None otherwise."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = str(argv[i])
        if not arg.startswith("--") or len(arg) < 3:
            return None
        name, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(argv) or str(argv[i + 1]).startswith("--"):
                return None
            value = str(argv[i + 1])
            i += 1
        i += 1
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


def framework_version_of(manifest: dict) -> str | None:
    """TensorFlow's major.minor in the recorded environment."""
    environment = manifest.get("environment") or {}
    version = (environment.get("frameworks") or {}).get("tensorflow")
    packages = environment.get("packages") or {}
    for name in ("tensorflow", "tensorflow-cpu", "tensorflow-gpu"):
        version = version or packages.get(name)
    if not version:
        return None
    return ".".join(str(version).split(" ")[0].split(".")[:2])


def _launch_record(manifest: dict) -> dict:
    value = ((manifest.get("environment") or {}).get("variables") or {}).get(env.LAUNCH.name)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    return value if isinstance(value, dict) else {}


def _code_for_rebuild(manifest: dict, launch: dict) -> tuple[dict, str | None]:
    """The code section to rebuild from, and the source dir inside the repository (if known)."""
    code = dict(manifest.get("code") or {})
    launched = launch.get("code") or {}
    if not code.get("commit") and launched.get("commit"):
        code.update(commit=launched["commit"], patch=launched.get("patch"),
                    entry_point=launched.get("entry") or code.get("entry_point"))
        code.pop("cwd", None)
        code.pop("cwd_in_repo", None)
        return code, launched.get("source")
    return code, None


def _ensure_object(local, remote_uri: str | None, digest: str | None) -> None:
    """Copy an object the rebuild needs (the patch) from the remote when it is not local."""
    if not digest or local.has_object(digest) or not remote_uri:
        return
    remote = open_store(remote_uri)
    if remote.has_object(digest):
        local.write_batch([ObjectPut(data=remote.read_object(digest))])


def spec_from_run(local, ref: str, *, workdir: str, repo: str | None = None,
                  remote_uri: str | None = None, hyperparameters: dict | None = None,
                  **overrides):
    """A `JobSpec` that runs the recorded run `ref` again (overrides win over the record).

    Example:
        >>> spec = spec_from_run(store, "a1b2c3", workdir="/tmp/x", instance_count=4)  # doctest: +SKIP
    """
    try:
        run_id = local.resolve(ref)
    except RunNotFound:
        raise MlreproError(f"no run matches {ref!r} in {local.uri}: fetch it first with "
                           f"`mlrepro pull {ref}`") from None
    manifest = local.read_manifest(run_id)
    launch = _launch_record(manifest)
    code, source_in_repo = _code_for_rebuild(manifest, launch)
    _ensure_object(local, remote_uri, code.get("patch"))
    rebuilt = rebuild_code({**copy.deepcopy(manifest), "code": code}, local,
                           os.path.join(workdir, "code"), repo=repo, stored_source=True)
    entry = os.path.relpath(rebuilt.entry, rebuilt.root).replace(os.sep, "/")
    source_dir = rebuilt.root
    if source_in_repo is not None:
        source_dir = os.path.join(rebuilt.root, source_in_repo)
    elif "/" in entry:
        source_dir = os.path.join(rebuilt.root, os.path.dirname(entry))
    entry = os.path.relpath(rebuilt.entry, source_dir).replace(os.sep, "/")
    hps, where = recorded_hyperparameters(manifest)
    hps.update(hyperparameters or {})
    secret = [k for k, v in hps.items() if REDACTED in json.dumps(v)]
    if secret:
        raise MlreproError(f"hyperparameter {secret[0]!r} of run {run_id} was redacted as a "
                           f"secret in {where}: give it again with --hp {secret[0]}=VALUE")
    runtime = manifest.get("runtime") or {}
    fields: dict[str, Any] = {
        "instance_type": launch.get("instance_type") or runtime.get("instance_type"),
        "instance_count": launch.get("instance_count") or (
            len(runtime.get("hosts") or []) if runtime.get("kind") == "sagemaker" else 1) or 1,
        "spot": bool(launch.get("spot")),
        "channels": dict(launch.get("channels") or {}),
        "image_uri": launch.get("image_uri"),
        "framework_version": framework_version_of(manifest),
        "code": launch.get("code") or ({"commit": code.get("commit"),
                                        "entry": code.get("entry_point"),
                                        "patch": code.get("patch")}
                                       if code.get("commit") else None),
    }
    environment = dict(overrides.pop("environment", None) or {})
    determinism = manifest.get("determinism") or {}
    if determinism.get("seed_generated") and manifest.get("seed") is not None:
        environment.setdefault(env.SEED.name, str(manifest["seed"]))   # the same generated seed
    if determinism.get("python_hash_seed") is not None:
        environment.setdefault("PYTHONHASHSEED", str(determinism["python_hash_seed"]))
    fields["environment"] = environment
    if "framework_version" in overrides or "image_uri" in overrides:
        fields["image_uri"] = None
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if not fields.get("instance_type"):
        raise MlreproError(f"run {run_id} did not record its instance type: pass "
                           "--instance-type (e.g. ml.g5.xlarge)")
    return JobSpec(entry_point=entry, source_dir=source_dir, hyperparameters=hps,
                   parent={"kind": "reproduction-of", "run": run_id}, **fields)
