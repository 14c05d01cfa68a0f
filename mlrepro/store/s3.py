"""The S3 remote: the local store's layout under `s3://bucket/prefix`, for a team to share.

```
s3://bucket/prefix/objects/ab/cdef...       sha256-addressed blobs, uploaded once
s3://bucket/prefix/runs/<id>/run.json       the manifest: written last, so a run is
                                            visible only once everything it names is there
s3://bucket/prefix/runs/<id>/metrics.bin    (and metrics.names, events.jsonl)
s3://bucket/prefix/index/...                the listing index (`remote_index`): one LIST and a
s3://bucket/prefix/index-segments/...       few GETs list every run, however many there are
```

Objects are immutable and named by their digest, so pushes from several machines
never conflict: the same key always holds the same bytes, and each run has one
writer. Credentials come from the usual boto3 chain (environment, profile,
instance role); a URI carrying credentials is refused, so none can reach a record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from mlrepro import env, record
from mlrepro.errors import CorruptRecord, RunNotFound, StoreError, warn
from mlrepro.record import encode_points
from mlrepro.store import multipart
from mlrepro.store.base import (EventsAppend, ManifestWrite, MetricsAppend, ObjectPut, RunFilePut,
                                Store, Write, resolve_among)
from mlrepro.store.query import RunQuery, as_query
from mlrepro.store.remote_index import RemoteIndex, listed

SCHEME = "s3://"
PUSH_SECTION = "push"               # manifest section a live push writes: {"remote", "interval"}
CLAIM_FILE = ".claim"               # hidden marker that reserves a run id (conditional PUT)
SINGLE_PUT_LIMIT = 64 << 20         # larger objects go up and down in parts (`multipart`)
SPOOL_LIMIT = 64 << 20              # objects read back larger than this spill to a temp file
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60
TOUCH_AFTER = 6 * 3600              # a reused object older than this is refreshed for gc
_CHUNK = 1 << 20
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_NOT_FOUND = ("404", "NoSuchKey", "NotFound", "NoSuchUpload")
_CONFLICT = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"); refuse credentials in the URI.

    Example:
        >>> parse_s3_uri("s3://team-bucket/mlrepro/")
        ('team-bucket', 'mlrepro')
    """
    if not isinstance(uri, str) or not uri.startswith(SCHEME):
        raise StoreError(f"{uri!r} is not an S3 URI: write it as s3://bucket/prefix")
    rest = uri[len(SCHEME):]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket or "?" in uri or "#" in uri:
        raise StoreError("the S3 URI carries credentials or a query: give only s3://bucket/prefix "
                         "and let boto3 find credentials (AWS_PROFILE, environment, instance role)")
    if not _BUCKET_RE.match(bucket):
        raise StoreError(f"{bucket!r} is not a valid S3 bucket name in {uri!r}: use "
                         "s3://bucket/prefix with a lower-case bucket name")
    prefix = "/".join(p for p in prefix.split("/") if p)
    if any(p in (".", "..") for p in prefix.split("/")):
        raise StoreError(f"the prefix of {uri!r} has '.' or '..' parts: use a plain path")
    return bucket, prefix


def _code(exc) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3Store(Store):
    """A store under an S3 prefix, with the same contract as the local store.

    Writing a run straight to S3 works (appends are rewritten whole, one writer per
    run), but the usual way is a local store plus `mlrepro push` or `MLREPRO_REMOTE`.

    Args:
        uri: `s3://bucket/prefix`.
        client: a boto3 S3 client to use (default: one from the usual boto3 chain;
            `AWS_ENDPOINT_URL` points it at an S3-compatible server).
        part_size: bytes per part of a multipart transfer (S3's minimum is 5 MiB).
        multipart_above: objects larger than this go up and come down in parts.

    Example:
        >>> store = S3Store("s3://team-bucket/mlrepro")          # doctest: +SKIP
        >>> store.list_runs(project="cifar10")[:1]                 # doctest: +SKIP
    """

    def __init__(self, uri: str, *, client=None, part_size: int = multipart.PART_SIZE,
                 multipart_above: int = SINGLE_PUT_LIMIT):
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.part_size = part_size
        self.multipart_above = multipart_above
        self.index = RemoteIndex(self)
        self.last_transfer: multipart.PartStats | None = None
        self.uri = SCHEME + self.bucket + ("/" + self.prefix if self.prefix else "")
        self._client = client
        self._client_lock = threading.Lock()
        self._present: set[str] = set()          # digests known to be in the bucket
        self._written: dict[str, float] = {}     # their LastModified, when a HEAD told us
        self._appends: dict[tuple[str, str], bytes] = {}   # append-only files as last written
        self._append_lock = threading.RLock()

    # -- plumbing -------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = _make_client()
        return self._client

    def _key(self, *parts: str) -> str:
        return "/".join(([self.prefix] if self.prefix else []) + list(parts))

    def object_key(self, digest: str) -> str:
        return self._key(record.OBJECTS_DIR, digest[:2], digest[2:])

    def run_key(self, run_id: str, name: str = "") -> str:
        return self._key(record.RUNS_DIR, run_id, name) if name else \
            self._key(record.RUNS_DIR, run_id) + "/"

    def _fail(self, exc: Exception, doing: str) -> StoreError:
        code = _code(exc)
        if code == "NoSuchBucket":
            return StoreError(f"the bucket of {self.uri} does not exist: create it "
                              f"(aws s3 mb s3://{self.bucket}) or fix the remote's URI")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                    "ExpiredToken"):
            return StoreError(f"S3 refused to let us {doing} in {self.uri} ({code}): check the "
                              "AWS credentials boto3 finds (AWS_PROFILE, environment, role) "
                              "and the bucket policy")
        name = type(exc).__name__
        if name == "NoCredentialsError":
            return StoreError(f"no AWS credentials found to {doing} in {self.uri}: configure "
                              "them the usual boto3 way (aws configure, AWS_PROFILE, a role)")
        return StoreError(f"cannot {doing} in {self.uri} ({exc}): check the network and "
                          "the remote's URI, then run the command again")

    def _call(self, doing: str, fn, **kwargs):
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except Exception as exc:  # noqa: BLE001 - botocore errors become one-line StoreErrors
            if _code(exc) in _NOT_FOUND:
                raise FileNotFoundError(kwargs.get("Key", "")) from exc
            raise self._fail(exc, doing) from exc

    def _get(self, key: str) -> bytes:
        body = self._call("read", self.client.get_object, Key=key)["Body"]
        try:
            return body.read()
        finally:
            body.close()

    def _put(self, key: str, data: bytes, **extra) -> None:
        self._call("write", self.client.put_object, Key=key, Body=data, **extra)

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key in the bucket under `prefix` (a full key prefix, not relative to the store)."""
        for item in self.list_entries(prefix):
            yield item["Key"]

    def list_entries(self, prefix: str) -> Iterator[dict]:
        """LIST's entries (Key, Size, LastModified, ...) under a full key prefix, in key order."""
        token = None
        while True:
            kwargs = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self._call("list", self.client.list_objects_v2, **kwargs)
            except FileNotFoundError:
                return
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """PUT with If-None-Match: *; False when the key exists (someone else wrote it first)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
            return True
        except Exception as exc:  # noqa: BLE001
            code = _code(exc)
            if code in _CONFLICT:
                return False
            if code in ("NotImplemented", "501"):  # an S3 look-alike without conditional PUTs
                try:
                    self.client.head_object(Bucket=self.bucket, Key=key)
                    return False
                except Exception:  # noqa: BLE001 - absent: write it
                    self._put(key, data)
                    return True
            raise self._fail(exc, "write") from exc

    def delete_keys(self, keys: list[str], *, quiet: bool = False) -> None:
        """Delete keys, 1,000 a request; with `quiet`, a failure is ignored (a cleanup)."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            try:
                answer = self._call("delete", self.client.delete_objects,
                                    Delete={"Objects": batch, "Quiet": True})
            except (StoreError, FileNotFoundError):
                if not quiet:
                    raise
                continue
            errors = answer.get("Errors") or []
            if errors and not quiet:
                first = errors[0]
                raise StoreError(f"S3 would not delete {len(errors)} keys in {self.uri} (e.g. "
                                 f"{first.get('Key')}: {first.get('Code')}): check that the "
                                 "credentials may s3:DeleteObject, then run the command again")

    # -- writing --------------------------------------------------------------------
    def claim_run_id(self, run_id: str) -> bool:
        """Reserve a run id with a conditional PUT (If-None-Match); False if it is taken."""
        key = self.run_key(run_id, CLAIM_FILE)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"", IfNoneMatch="*")
            return True
        except Exception as exc:  # noqa: BLE001
            code = _code(exc)
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            if code in ("NotImplemented", "501"):  # an S3 look-alike without conditional PUTs
                if any(True for _ in self.list_keys(self.run_key(run_id))):
                    return False
                self._put(key, b"")
                return True
            raise self._fail(exc, "create a run") from exc

    def write_batch(self, writes: list[Write]) -> None:
        for w in writes:
            if isinstance(w, ObjectPut):
                self.put_object(w)
            elif isinstance(w, MetricsAppend):
                if w.points:
                    self._append_points(w.run_id, w.points)
            elif isinstance(w, EventsAppend):
                lines = "".join(json.dumps(e, sort_keys=True, default=str) + "\n"
                                for e in w.events).encode("utf-8")
                self._append_files(w.run_id, {record.EVENTS_FILE: lines})
            elif isinstance(w, RunFilePut):
                name = record.ensure_safe_name(w.name, "run file name")
                manifest = None
                if name == record.MANIFEST_FILE:
                    manifest = record.validate_manifest(json.loads(w.data))
                self._put(self.run_key(w.run_id, name), w.data)
                with self._append_lock:
                    self._appends.pop((w.run_id, name), None)
                if manifest is not None:
                    self.index.record(manifest)          # after the manifest, never before
            elif isinstance(w, ManifestWrite):
                text = json.dumps(w.manifest, sort_keys=True, indent=1, default=str,
                                  allow_nan=True) + "\n"
                self._put(self.run_key(w.run_id, record.MANIFEST_FILE), text.encode("utf-8"),
                          ContentType="application/json")
                self.index.record(w.manifest)
            else:
                raise TypeError(f"unknown write {type(w).__name__}")

    def _current(self, run_id: str, name: str) -> bytes:
        """This process's copy of an append-only run file (S3 has no append); lock held."""
        data = self._appends.get((run_id, name))
        if data is None:
            try:
                data = self._get(self.run_key(run_id, name))
            except FileNotFoundError:
                data = b""
            self._appends[(run_id, name)] = data
        return data

    def _append_files(self, run_id: str, additions: dict[str, bytes]) -> None:
        """Rewrite each file with its addition at the end; the copy changes only once S3 has it.

        A failed write leaves nothing half-applied, so the writer's retry appends once.
        metrics.names goes first: a reader never sees a point whose name is missing.
        """
        with self._append_lock:
            for name in sorted(additions, key=lambda n: n != record.METRIC_NAMES_FILE):
                if not additions[name]:
                    continue
                data = self._current(run_id, name) + additions[name]
                self._put(self.run_key(run_id, name), data)
                self._appends[(run_id, name)] = data

    def _append_points(self, run_id: str, points: list) -> None:
        with self._append_lock:
            names = record.decode_names(self._current(run_id, record.METRIC_NAMES_FILE))
            ids = {name: i for i, name in enumerate(names)}
            encoded, new = record.number_names(points, ids)
            self._append_files(run_id, {
                record.METRIC_NAMES_FILE: "".join(json.dumps(n) + "\n" for n in new).encode(),
                record.METRICS_FILE: encode_points(encoded)})

    def put_object(self, put: ObjectPut) -> str:
        """Upload bytes once under their sha256 (S3 checks that digest on arrival)."""
        if put.data is not None:
            digest = hashlib.sha256(put.data).digest()
            put.digest, put.size = digest.hex(), len(put.data)
            if not self.has_object(put.digest):
                self._put(self.object_key(put.digest), put.data,
                          ChecksumSHA256=base64.b64encode(digest).decode("ascii"))
                self._present.add(put.digest)
            return put.digest
        hasher = hashlib.sha256()
        size = 0
        with open(put.path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                hasher.update(chunk)
                size += len(chunk)
        put.digest, put.size = hasher.hexdigest(), size
        if self.has_object(put.digest):
            self.touch_object(put.digest)
            return put.digest
        key = self.object_key(put.digest)
        if size <= self.multipart_above:
            with open(put.path, "rb") as fh:
                self._call("write", self.client.put_object, Key=key, Body=fh, ContentLength=size,
                           ChecksumSHA256=base64.b64encode(hasher.digest()).decode("ascii"))
        else:
            self.last_transfer = multipart.upload(self, key, put.path, put.digest, size,
                                                  self.part_size)
        self._present.add(put.digest)
        return put.digest

    # -- reading --------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        """Runs whose manifest is in the bucket (a run mid-push is not one yet)."""
        base = self._key(record.RUNS_DIR) + "/"
        out = []
        for key in self.list_keys(base):
            parts = key[len(base):].split("/")
            if len(parts) == 2 and parts[1] == record.MANIFEST_FILE:
                out.append(parts[0])
        return out

    def read_manifest(self, run_id: str) -> dict:
        try:
            raw = self._get(self.run_key(run_id, record.MANIFEST_FILE))
        except FileNotFoundError:
            raise RunNotFound(f"no run {run_id!r} in {self.uri}: list its runs with "
                              f"`mlrepro runs --store {self.uri}`") from None
        try:
            return record.validate_manifest(json.loads(raw.decode("utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptRecord(f"{self.uri}/runs/{run_id}/{record.MANIFEST_FILE} is corrupt "
                                f"({exc}): push the run again from a store that has it")

    def list_run_files(self, run_id: str) -> list[str]:
        base = self.run_key(run_id)
        names = [k[len(base):] for k in self.list_keys(base)]
        return sorted(n for n in names if n and not n.rsplit("/", 1)[-1].startswith("."))

    def read_run_file(self, run_id: str, name: str) -> bytes:
        name = record.ensure_safe_name(name, "run file name")
        return self._get(self.run_key(run_id, name))

    def scan_manifests(self) -> tuple[list[dict], list[tuple[str, str]]]:
        """Every run's manifest, read in parallel (one GET each): (manifests, [(id, problem)])."""
        def read(run_id):
            try:
                return self.read_manifest(run_id), None
            except (RunNotFound, CorruptRecord) as exc:
                return None, (run_id, str(exc))

        with ThreadPoolExecutor(max_workers=16) as pool:
            found = list(pool.map(read, sorted(self.run_ids())))
        return [m for m, _ in found if m is not None], [p for _, p in found if p is not None]

    def rebuild_index(self) -> tuple[int, list[tuple[str, str]]]:
        """Rescan every manifest into a new index head (the repair: `index --rebuild`)."""
        return self.index.rebuild()

    def index_rows(self) -> list[dict]:
        """Every run's index row: the index read (built first from a rescan if it never was)."""
        damaged = False
        try:
            rows = self.index.rows()
        except (ValueError, KeyError, TypeError, IndexError, OSError) as exc:  # edited by hand?
            warn(f"the index of {self.uri} is damaged ({exc!r}); rebuilt it from the "
                 "manifests (what `mlrepro index --rebuild` does)")
            rows, damaged = None, True
        if rows is None:
            try:
                self.index.rebuild(unless_built=not damaged)
            except StoreError:      # read-only credentials: list from the manifests instead
                good, _bad = self.scan_manifests()
                from mlrepro.store.remote_index import row_of

                return [row_of(m) for m in good]
            rows = self.index.rows() or []
        return rows

    def list_runs(self, query: RunQuery | None = None, **filters) -> list[dict]:
        """The index answers (one LIST and a few GETs): rows are partial manifests."""
        query = as_query(query, **filters)
        return query.select([listed(r) for r in self.index_rows()], self.effective_status)

    def resolve(self, prefix: str) -> str:
        """A full run id costs one HEAD; a prefix is matched against the index's ids."""
        prefix = prefix.strip()
        if record.is_run_id(prefix):
            try:
                self._call("read", self.client.head_object,
                           Key=self.run_key(prefix, record.MANIFEST_FILE))
                return prefix
            except FileNotFoundError:
                pass
        ids = {r["id"] for r in self.index_rows()}
        return resolve_among(self.uri, prefix, ids)

    def effective_status(self, manifest: dict) -> str:
        """A `running` run reads as crashed once its copy here is older than its pushes allow.

        A live run's copy is only as fresh as its last push (`MLREPRO_PUSH_SECONDS`),
        so the usual heartbeat limit is stretched to two push intervals.
        """
        interval = (manifest.get(PUSH_SECTION) or {}).get("interval")
        stale = 120.0
        if isinstance(interval, (int, float)):
            stale = max(stale, 2 * float(interval) + 60)
        return record.effective_status(manifest, stale_after=stale)

    def read_manifests(self, run_ids) -> list[dict]:
        """Manifests read in parallel (one GET each); unreadable ones are left out."""
        def read(run_id):
            try:
                return self.read_manifest(run_id)
            except (RunNotFound, CorruptRecord):
                return None

        with ThreadPoolExecutor(max_workers=8) as pool:
            return [m for m in pool.map(read, list(run_ids)) if m is not None]

    def has_object(self, digest: str) -> bool:
        if digest in self._present:
            return True
        try:
            head = self._call("check an object", self.client.head_object,
                              Key=self.object_key(digest))
        except FileNotFoundError:
            return False
        self._present.add(digest)
        self._written[digest] = head["LastModified"].timestamp()
        return True

    def touch_object(self, digest: str) -> None:
        """Copy an old object onto itself (new LastModified) so gc's grace covers its reuse."""
        written = self._written.get(digest)
        if written is None or time.time() - written < TOUCH_AFTER:
            return
        key = self.object_key(digest)
        try:
            self.client.copy_object(Bucket=self.bucket, Key=key, MetadataDirective="REPLACE",
                                    CopySource={"Bucket": self.bucket, "Key": key},
                                    Metadata={"mlrepro-reused": str(int(time.time()))})
            self._written[digest] = time.time()
        except Exception:  # noqa: BLE001 - read-only credentials, > 5 GB: gc's live rule remains
            pass

    def open_object(self, digest: str):
        """A seekable file with the object's bytes (large objects spill to a temp file)."""
        try:
            body = self._call("read", self.client.get_object, Key=self.object_key(digest))["Body"]
        except FileNotFoundError:
            raise StoreError(f"object {digest[:12]} is missing from {self.uri}: push the run "
                             "that names it again from a store that has it") from None
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)
        hasher = hashlib.sha256()
        try:
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                hasher.update(chunk)
                out.write(chunk)
        finally:
            body.close()
        if hasher.hexdigest() != digest:
            out.close()
            raise StoreError(f"object {digest[:12]} in {self.uri} does not hash to its name "
                             "(corrupt): push the run that names it again from a store that "
                             "has it")
        out.seek(0)
        return out

    def download_object(self, digest: str, path: str) -> None:
        """Big objects come down in ranged parts, resumable; every byte is checked by sha256."""
        try:
            head = self._call("read", self.client.head_object, Key=self.object_key(digest))
        except FileNotFoundError:
            raise StoreError(f"object {digest[:12]} is missing from {self.uri}: push the run "
                             "that names it again from a store that has it") from None
        size = int(head["ContentLength"])
        if size <= self.multipart_above:
            return super().download_object(digest, path)
        self.last_transfer = multipart.download(self, self.object_key(digest), path, digest,
                                                size, self.part_size)
        return None

    def download_key(self, key: str, path: str) -> None:
        """Download any key of the bucket to a file (FileNotFoundError if it is absent)."""
        try:
            self.client.download_file(self.bucket, key, path)
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in _NOT_FOUND or "Not Found" in str(exc):
                raise FileNotFoundError(f"s3://{self.bucket}/{key}") from exc
            raise self._fail(exc, "download") from exc

    def iter_objects(self) -> Iterator[str]:
        for digest, _size, _mtime in self.object_info():
            yield digest

    def object_info(self) -> Iterator[tuple[str, int, float]]:
        base = self._key(record.OBJECTS_DIR) + "/"
        for item in self.list_entries(base):
            parts = item["Key"][len(base):].split("/")
            if len(parts) == 2 and len(parts[0]) == 2:
                yield parts[0] + parts[1], int(item.get("Size", 0)), \
                    item["LastModified"].timestamp()

    def delete_objects(self, digests: list[str]) -> None:
        self.delete_keys([self.object_key(d) for d in digests])
        self._present.difference_update(digests)

    def garbage(self, older_than: float) -> list[tuple[str, int]]:
        """Index segments no head names and unfinished uploads, older than `older_than`."""
        live = self.index.live_segments()
        out = []
        for item in self.list_entries(self._key("index-segments") + "/"):
            if item["Key"] not in live and item["LastModified"].timestamp() < older_than:
                out.append((item["Key"], int(item.get("Size", 0))))
        return out

    def stale_uploads(self, older_than: float) -> list[tuple[str, str]]:
        """(key, upload id) of multipart uploads under objects/ begun before `older_than`."""
        found = self._call("list uploads", self.client.list_multipart_uploads,
                           Prefix=self._key(record.OBJECTS_DIR) + "/")
        return [(u["Key"], u["UploadId"]) for u in found.get("Uploads", [])
                if u["Initiated"].timestamp() < older_than]

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self._call("abort an upload", self.client.abort_multipart_upload, Key=key,
                       UploadId=upload_id)
        except FileNotFoundError:
            pass


def _make_client():
    """An S3 client from the usual boto3 chain, with bounded timeouts and retries."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency of the s3 extra
        raise StoreError(f"the S3 remote needs boto3 ({exc}): pip install 'mlrepro[s3]'")
    attempts = env.S3_RETRIES.get()
    config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                    retries={"max_attempts": attempts, "mode": "standard"},
                    max_pool_connections=16)
    return boto3.session.Session().client("s3", config=config)


__all__ = ["S3Store", "parse_s3_uri", "SCHEME"]
