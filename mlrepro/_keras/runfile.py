"""The run id kept beside the checkpoints, so a restarted job continues the same run.

`<checkpoint dir>/mlrepro_run.json` names the run, its project and store, and
whether it finished. A restart that finds an unfinished run there resumes it (a
new attempt of the same run); a finished one means the next start is a new run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from mlrepro.record import EMBEDDED_RUN_FILE
from mlrepro.store.files import atomic_write_json, make_own_dir
from mlrepro.store.local import pid_alive

RUN_FILE = EMBEDDED_RUN_FILE  # beside the checkpoints; the same name as in exports
RUNNING = "running"
FINISHED = "finished"


def path(directory: str) -> str:
    return os.path.join(directory, RUN_FILE)


def read(directory: str) -> dict | None:
    """The run file's contents, or None if absent or unreadable."""
    try:
        with open(path(directory), encoding="utf-8") as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("run_id"), str) else None


def write(directory: str, **fields: Any) -> dict:
    """Replace the run file atomically with `fields` plus who wrote it and when."""
    make_own_dir(directory)
    value = {**fields, "host": socket.gethostname(), "pid": os.getpid(), "updated": time.time()}
    atomic_write_json(path(directory), value)
    return value


def resumable(info: dict | None, project: str) -> bool:
    """An unfinished run of this project: the previous process stopped before the end."""
    return bool(info) and info.get("status") != FINISHED and info.get("project") == project


def held_by_live_process(info: dict | None) -> bool:
    """Another process on this host is training into the same checkpoint dir right now."""
    if not info or info.get("status") == FINISHED:
        return False
    if info.get("host") != socket.gethostname():
        return False
    pid = info.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    return pid_alive(pid)
