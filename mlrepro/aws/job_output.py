"""Importing the runs a SageMaker job left in its output (`mlrepro pull-job`).

Without `MLREPRO_REMOTE`, a job's chief copies its run into `output/data/mlrepro-runs`,
which SageMaker uploads as `output.tar.gz` (see `mlrepro.runtime`). This module finds
every store inside whatever the user points at — the job's S3 output prefix, the
`output.tar.gz` / `model.tar.gz` there or on disk, a directory, an S3 store (the
job's checkpoint prefix), or the training job's name — and copies their runs in.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile

from mlrepro import record
from mlrepro.aws.remote import TransferSummary, transfer
from mlrepro.errors import MlreproError, StoreError
from mlrepro.store import Store
from mlrepro.store.local import LocalStore
from mlrepro.store.s3 import S3Store, parse_s3_uri

ARCHIVES = ("output.tar.gz", "model.tar.gz")   # what SageMaker uploads at the end of a job
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
MAX_ARCHIVES = 4
_JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def find_store_roots(top: str) -> list[str]:
    """Directories under `top` laid out as a store (a `runs/<id>/run.json` inside)."""
    roots = []
    for here, dirs, _files in os.walk(top):
        runs = os.path.join(here, record.RUNS_DIR)
        if record.RUNS_DIR in dirs and any(
                os.path.isfile(os.path.join(runs, d, record.MANIFEST_FILE))
                for d in os.listdir(runs)):
            roots.append(here)
            dirs[:] = []          # a store's own directories hold no further stores
        else:
            dirs.sort()
    return roots


def extract_archive(path: str, into: str) -> str:
    """Unpack a tar(.gz) safely: no absolute paths, no `..`, no links out, no devices."""
    os.makedirs(into, exist_ok=True)
    try:
        with tarfile.open(path, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, filter="data")
            else:  # Python < 3.11.4: check each member ourselves
                for member in tar.getmembers():
                    name = member.name
                    if name.startswith("/") or ".." in name.split("/") or not (
                            member.isfile() or member.isdir()):
                        continue
                    tar.extract(member, into)
    except (tarfile.TarError, OSError) as exc:
        raise MlreproError(f"cannot unpack {path} ({exc}): give the job's output.tar.gz or "
                           "model.tar.gz as SageMaker wrote it")
    return into


def _s3_sources(uri: str, work: str) -> tuple[list[tuple[str, str]], list[Store]]:
    """Archives under `uri`, downloaded into `work` as (S3 URI, path), and S3 stores found there."""
    bucket, key = parse_s3_uri(uri)
    bucket_store = S3Store(f"s3://{bucket}")
    keys, stores = [], set()
    if key.endswith(TAR_SUFFIXES):
        keys = [key]
    else:
        base = key + "/" if key else ""
        for k in bucket_store.list_keys(base):
            rest = k[len(base):]
            if rest.rsplit("/", 1)[-1] in ARCHIVES:
                keys.append(k)
            parts = rest.split("/")
            if len(parts) >= 3 and parts[-3] == record.RUNS_DIR and \
                    parts[-1] == record.MANIFEST_FILE:
                stores.add("/".join(p for p in [key] + parts[:-3] if p))
        if len(keys) > MAX_ARCHIVES:
            raise MlreproError(f"{uri} holds {len(keys)} job archives: give one job's output "
                               "prefix (s3://.../<job-name>/output/) or its output.tar.gz")
    archives = []
    for i, k in enumerate(keys):
        path = os.path.join(work, f"archive-{i}.tar.gz")
        try:
            bucket_store.download_key(k, path)
        except FileNotFoundError:
            raise MlreproError(f"s3://{bucket}/{k} does not exist: check the job's output "
                               "path (describe the training job)") from None
        archives.append((f"s3://{bucket}/{k}", path))
    return archives, [S3Store(f"s3://{bucket}/{s}") for s in sorted(stores)]


def job_output_uri(job_name: str) -> str:
    """The S3 prefix where a training job's archives are (asks SageMaker)."""
    import boto3

    try:
        job = boto3.session.Session().client("sagemaker").describe_training_job(
            TrainingJobName=job_name)
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"cannot describe training job {job_name!r} ({exc}): give its output "
                         "URI (s3://.../<job-name>/output/) instead")
    model = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if model:
        return model.rsplit("/", 1)[0]
    output = (job.get("OutputDataConfig") or {}).get("S3OutputPath", "").rstrip("/")
    return f"{output}/{job_name}/output"


def import_job_output(source: str, local: Store) -> tuple[TransferSummary, list[str]]:
    """Copy every run found in `source` into `local`; returns (TransferSummary, sources).

    Example:
        >>> import_job_output("s3://bucket/jobs/train-2026-01-01/output/", store)  # doctest: +SKIP
    """
    summary = TransferSummary()
    work = tempfile.mkdtemp(prefix="mlrepro-pull-job-")
    found: list[tuple[str, Store]] = []
    try:
        archives: list[tuple[str, str]] = []
        if source.startswith("s3://"):
            archives, stores = _s3_sources(source, work)
            found += [(s.uri, s) for s in stores]
        elif os.path.isdir(source):
            found += [(r, LocalStore(r)) for r in find_store_roots(source)]
        elif os.path.isfile(source):
            archives = [(source, source)]
        elif _JOB_NAME_RE.match(source):
            archives, stores = _s3_sources(job_output_uri(source) + "/", work)
            found += [(s.uri, s) for s in stores]
        else:
            raise MlreproError(f"{source!r} is neither an S3 URI, a file, a directory nor a "
                               "training job name: give the job's output URI or tar.gz")
        for i, (label, path) in enumerate(archives):
            try:
                into = extract_archive(path, os.path.join(work, f"x{i}"))
            except MlreproError as exc:
                if len(archives) == 1:
                    raise
                summary.problems.append((label, str(exc)))   # the other archive may hold runs
                continue
            found += [(label, LocalStore(r)) for r in find_store_roots(into)]
        for _label, store in found:
            try:
                transfer(store, local, None, summary)
            finally:
                store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary, sorted({label for label, _store in found})
