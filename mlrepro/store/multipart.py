"""Big objects to and from S3 in parts, resumable after an interruption, verified end to end.

Upload: the upload that an interrupted push left open is found again on S3 itself
(ListMultipartUploads for the object's key, then ListParts), so a restart on another
machine resumes it too; a part S3 already holds is kept only when its MD5 (the part's
ETag) matches the local bytes, and every part carries its SHA-256 for S3 to check. The
SHA-256 of the bytes actually sent must equal the digest the object is named by, or the
upload is aborted.

Download: ranged GETs into `.mlrepro-partial-<digest>` beside the target, with the parts
done noted beside it (`.json`), so a rerun fetches only the missing parts; the whole file's
SHA-256 must equal the object's name before it is moved into place.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait, FIRST_COMPLETED
from dataclasses import dataclass

from mlrepro.errors import StoreError

PART_SIZE = 16 << 20                 # S3 wants >= 5 MiB parts (but the last), <= 10,000 parts
MAX_PARTS = 10_000
THREADS = 4                          # parts in flight (each held in memory while it goes up)
PARTIAL_PREFIX = ".mlrepro-partial-"


@dataclass
class PartStats:
    """What one transfer did (the tests and `push` can tell a resume from a fresh start)."""

    parts: int = 0
    sent: int = 0
    reused: int = 0
    resumed: bool = False


def part_size_for(size: int, part_size: int = PART_SIZE) -> int:
    """`part_size`, grown so that `size` fits in S3's 10,000 parts."""
    while (size + part_size - 1) // part_size > MAX_PARTS:
        part_size *= 2
    return part_size


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _open_upload(store, key: str) -> tuple[str | None, dict]:
    """The newest unfinished upload of `key` and its parts {number: (etag, size)}."""
    found = store._call("list uploads", store.client.list_multipart_uploads, Prefix=key)
    uploads = [u for u in found.get("Uploads", []) if u.get("Key") == key]
    if not uploads:
        return None, {}
    upload = max(uploads, key=lambda u: u.get("Initiated") or 0)
    parts: dict = {}
    marker = 0
    while True:
        try:
            page = store._call("list parts", store.client.list_parts, Key=key,
                               UploadId=upload["UploadId"], PartNumberMarker=marker)
        except FileNotFoundError:      # NoSuchUpload: finished or aborted meanwhile
            return None, {}
        for p in page.get("Parts", []):
            parts[p["PartNumber"]] = (p["ETag"].strip('"'), p["Size"])
        if not page.get("IsTruncated"):
            return upload["UploadId"], parts
        marker = page.get("NextPartNumberMarker", 0)


def upload(store, key: str, path: str, digest: str, size: int,
           part_size: int = PART_SIZE) -> PartStats:
    """Upload the file at `path` (whose sha256 is `digest`) to `key` in parts."""
    part_size = part_size_for(size, part_size)
    stats = PartStats(parts=(size + part_size - 1) // part_size)
    upload_id, have = _open_upload(store, key)
    stats.resumed = upload_id is not None
    if upload_id is None:
        upload_id = store._call("start an upload", store.client.create_multipart_upload,
                                Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
    done: dict[int, dict] = {}
    whole = hashlib.sha256()

    def send(number: int, data: bytes, checksum: str) -> None:
        answer = store._call("upload a part", store.client.upload_part, Key=key,
                             UploadId=upload_id, PartNumber=number, Body=data,
                             ChecksumSHA256=checksum)
        done[number] = {"PartNumber": number, "ETag": answer["ETag"],
                        "ChecksumSHA256": checksum}

    with open(path, "rb") as fh, ThreadPoolExecutor(max_workers=THREADS) as pool:
        flying: set = set()
        for number in range(1, stats.parts + 1):
            data = fh.read(part_size)
            whole.update(data)
            checksum = _b64(hashlib.sha256(data).digest())
            old = have.get(number)
            if old and old[1] == len(data) and \
                    old[0] == hashlib.md5(data, usedforsecurity=False).hexdigest():
                done[number] = {"PartNumber": number, "ETag": f'"{old[0]}"',
                                "ChecksumSHA256": checksum}
                stats.reused += 1
                continue
            while len(flying) >= THREADS:
                finished, flying = wait(flying, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()
            flying.add(pool.submit(send, number, data, checksum))
            stats.sent += 1
        for f in flying:
            f.result()                  # a failed part raises; the upload stays open to resume
    if whole.hexdigest() != digest:
        store._call("abort an upload", store.client.abort_multipart_upload, Key=key,
                    UploadId=upload_id)
        raise StoreError(f"{path} changed while it was uploaded (its sha256 is no longer "
                         f"{digest[:12]}): log the artifact again once it is written")
    parts = [done[n] for n in sorted(done)]
    store._call("finish an upload", store.client.complete_multipart_upload, Key=key,
                UploadId=upload_id, MultipartUpload={"Parts": parts})
    return stats


def download(store, key: str, path: str, digest: str, size: int,
             part_size: int = PART_SIZE) -> PartStats:
    """Download `key` (size bytes, sha256 `digest`) to `path` in ranged parts, resumably."""
    part_size = part_size_for(size, part_size)
    stats = PartStats(parts=max((size + part_size - 1) // part_size, 1))
    # Named by the digest beside the target, so a rerun with another temporary target
    # (a pull) finds the parts already fetched.
    partial = os.path.join(os.path.dirname(os.path.abspath(path)), PARTIAL_PREFIX + digest)
    state_path = partial + ".json"
    lock_fd = os.open(partial + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)       # one downloader per partial file
        want = {"digest": digest, "size": size, "part_size": part_size}
        done: set[int] = set()
        try:
            with open(state_path, encoding="utf-8") as fh:
                state = json.load(fh)
            if {k: state.get(k) for k in want} == want and os.path.exists(partial):
                done = set(state.get("done", []))
        except (OSError, ValueError):
            pass
        stats.resumed = bool(done)
        stats.reused = len(done)
        if not done:
            with open(partial, "wb") as fh:
                fh.truncate(size)
        lock = threading.Lock()
        fd = os.open(partial, os.O_WRONLY)

        def fetch(number: int) -> None:
            start = (number - 1) * part_size
            end = min(start + part_size, size) - 1
            body = store._call("read", store.client.get_object, Key=key,
                               Range=f"bytes={start}-{end}")["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            if len(data) != end - start + 1:
                raise StoreError(f"S3 sent {len(data)} bytes for part {number} of {key}, not "
                                 f"{end - start + 1}: run the command again")
            os.pwrite(fd, data, start)
            with lock:
                done.add(number)
                tmp = state_path + ".tmp"
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(dict(want, done=sorted(done)), fh)
                os.replace(tmp, state_path)

        try:
            todo = [n for n in range(1, stats.parts + 1) if n not in done]
            stats.sent = len(todo)
            if size:
                with ThreadPoolExecutor(max_workers=THREADS) as pool:
                    for f in [pool.submit(fetch, n) for n in todo]:
                        f.result()
            os.fsync(fd)
        finally:
            os.close(fd)
        hasher = hashlib.sha256()
        with open(partial, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                hasher.update(chunk)
        if hasher.hexdigest() != digest:
            for p in (partial, state_path):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
            raise StoreError(f"object {digest[:12]} in {store.uri} does not hash to its name "
                             "(corrupt): push the run that names it again from a store that "
                             "has it")
        os.replace(partial, path)
        try:
            os.unlink(state_path)
        except FileNotFoundError:
            pass
    finally:
        try:
            os.unlink(partial + ".lock")
        except FileNotFoundError:
            pass
        os.close(lock_fd)
    return stats


__all__ = ["upload", "download", "PartStats", "PART_SIZE", "part_size_for"]
