"""TF_CONFIG: parsing the one a launcher set, and building one from a host list.

Pure functions. `MultiWorkerMirroredStrategy` reads `TF_CONFIG` when it is
constructed; SageMaker SDK v3 and the 5.x training toolkit never set it, so a
multi-host TensorFlow job builds it from the host list (see `mlrepro.runtime`).
The shape matches what the SageMaker TensorFlow container writes for MWMS: every
host a `worker`, no `chief` task, worker 0 acting as chief.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

from mlrepro import env

TF_CONFIG_ENV = "TF_CONFIG"
ADDRESSES_ENV = env.HOST_ADDRESSES.name   # host=addr:port,... : several "hosts" on one machine
DEFAULT_PORT = env.TF_PORT.default
TRAINING_TASKS = ("chief", "worker")      # the tasks that train; ps/evaluator do not


def parse(text: str | None) -> dict | None:
    """A TF_CONFIG value as a dict, None when unset; ValueError naming the problem when malformed."""
    if text is None or not text.strip():
        return None
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"TF_CONFIG is not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError("TF_CONFIG is not a JSON object")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError("TF_CONFIG has no 'cluster'")
    if not isinstance(task, dict) or "type" not in task:
        raise ValueError("TF_CONFIG has no 'task' with a 'type'")
    members = cluster.get(task["type"])
    index = task.get("index", 0)
    if not isinstance(members, list) or not isinstance(index, int) \
            or not 0 <= index < len(members):
        raise ValueError(f"TF_CONFIG task {task['type']}:{index} is not in its cluster")
    return config


def placement(config: Mapping) -> tuple[int | None, int, bool]:
    """(rank, world size, is chief) of this task: chief first, then workers in index order.

    The chief is the `chief` task, or `worker` 0 when the cluster has no chief.
    Tasks that do not train (`ps`, `evaluator`) have rank None and are not chief.
    """
    cluster, task = config["cluster"], config["task"]
    chiefs = len(cluster.get("chief") or [])
    world = chiefs + len(cluster.get("worker") or [])
    kind, index = task["type"], int(task.get("index", 0))
    if kind == "chief":
        return index, world, index == 0
    if kind == "worker":
        rank = chiefs + index
        return rank, world, rank == 0
    return None, world, False


def hosts_of(config: Mapping) -> list[str]:
    """Host names of the training tasks, in rank order (ports dropped, duplicates kept once)."""
    out: list[str] = []
    for kind in TRAINING_TASKS:
        for address in config["cluster"].get(kind) or []:
            host = str(address).rsplit(":", 1)[0]
            if host not in out:
                out.append(host)
    return out


def parse_addresses(text: str | None) -> dict[str, str]:
    """`algo-1=127.0.0.1:23456,algo-2=127.0.0.1:23457` (or a JSON object) as a dict."""
    if not text or not text.strip():
        return {}
    text = text.strip()
    if text.startswith("{"):
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"{ADDRESSES_ENV} is not a JSON object")
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for item in text.split(","):
        host, sep, address = item.strip().partition("=")
        if not sep or not host or not address:
            raise ValueError(f"{ADDRESSES_ENV} item {item!r} is not host=address:port")
        out[host] = address
    return out


def build(hosts: Sequence[str], current_host: str, *, port: int = DEFAULT_PORT,
          addresses: Mapping[str, str] | None = None, processes_per_host: int = 1,
          local_rank: int = 0) -> dict:
    """TF_CONFIG for MultiWorkerMirroredStrategy: every host (sorted) a worker.

    Args:
        hosts: every host of the job; sorted here, so each host builds the same list.
        current_host: this process's host; must be one of `hosts`.
        port: the port each worker listens on (per host; local ranks add 0, 1, ...).
        addresses: host -> "addr:port" overrides (several hosts simulated on one machine).
        processes_per_host: workers per host (MPI-style launches with one process per GPU).
        local_rank: this process's index on its host.

    Example:
        >>> build(["algo-2", "algo-1"], "algo-2")["task"]
        {'type': 'worker', 'index': 1}
    """
    ordered = sorted(hosts)
    if current_host not in ordered:
        raise ValueError(f"current host {current_host!r} is not in the host list {ordered}")
    if not 0 <= local_rank < processes_per_host:
        raise ValueError(f"local rank {local_rank} is outside 0..{processes_per_host - 1}")
    addresses = dict(addresses or {})
    workers = []
    for host in ordered:
        base = addresses.get(host) or f"{host}:{port}"
        addr, _, host_port = base.rpartition(":")
        for local in range(processes_per_host):
            workers.append(f"{addr}:{int(host_port) + local}")
    index = ordered.index(current_host) * processes_per_host + local_rank
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}


def dumps(config: Mapping) -> str:
    """TF_CONFIG's text form (compact, key order kept)."""
    return json.dumps(config, separators=(",", ":"))
