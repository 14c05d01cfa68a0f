"""Record N finished runs in a local store of its own, then push them all to an S3 remote.

Usage: push_runs.py REMOTE_URI WORKDIR WRITER N [LIVE_ID]
With LIVE_ID, that run is pushed first as `running`, and pushed again as `finished` last:
a run that changes after its first push.
"""

import os
import sys
import time

from mlrepro import record
from mlrepro.aws.remote import push
from mlrepro.store import EventsAppend, ManifestWrite
from mlrepro.store.local import LocalStore
from mlrepro.store.s3 import S3Store

uri, workdir, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
live_id = sys.argv[5] if len(sys.argv) > 5 else None
local = LocalStore(os.path.join(workdir, f"writer-{writer}"))
remote = S3Store(uri)


def manifest(run_id, status, start):
    m = record.new_manifest(run_id, f"project-{writer}", f"w{writer}", started=start,
                            host="elsewhere", pid=1)
    m.update(status=status, heartbeat=time.time(), params={"writer": writer, "lr": 0.1})
    if status != record.RUNNING:
        m["end_time"] = time.time()
    return m


if live_id:
    local.claim_run_id(live_id)
    local.write_batch([ManifestWrite(live_id, manifest(live_id, record.RUNNING, time.time()))])
    push(local, remote, [live_id])
    print("live pushed", flush=True)
ids = []
for i in range(count):
    run_id = f"{record.new_run_id()[:16]}{writer:02d}{i:08x}"
    assert record.is_run_id(run_id), run_id
    local.claim_run_id(run_id)
    local.write_batch([EventsAppend(run_id, [{"time": time.time(), "kind": "started"}]),
                       ManifestWrite(run_id, manifest(run_id, record.FINISHED, time.time()))])
    ids.append(run_id)
summary = push(local, remote, ids)
assert not summary.problems, summary.problems
if live_id:
    m = local.read_manifest(live_id)
    m.update(status=record.FINISHED, end_time=time.time(), heartbeat=time.time())
    local.write_batch([ManifestWrite(live_id, m)])
    summary = push(local, remote, [live_id])
    assert not summary.problems and summary.copied.runs == [live_id], summary
print("pushed", len(ids), flush=True)
