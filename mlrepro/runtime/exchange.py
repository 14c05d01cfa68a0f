"""Every worker's fingerprints to the chief and back, over plain TCP, bounded by a timeout.

Why not a tf.distribute collective: a collective that one worker never joins
(it crashed, runs other code, or has mlrepro disabled) blocks every other
worker forever, and MultiWorkerMirroredStrategy numbers its collectives per
process, so one that only some workers run shifts every later all-reduce onto
the wrong partner. This exchange runs beside TensorFlow and costs it nothing:

- the chief listens on every interface, one port above the highest port of the
  TF_CONFIG cluster (TensorFlow's own servers use the ports in the cluster),
  retrying while something else holds that port, until the timeout;
- each other worker connects to the chief's address on that port (retrying while
  the chief is not there yet), sends its row as one JSON line, and waits for
  the chief's reply: one JSON line holding every row the chief collected;
- the chief waits until every worker reported or `timeout` seconds passed, then
  answers the workers that are connected. A worker waits at most `timeout` to
  reach the chief and `timeout` more for the answer.

Nothing here raises: each side returns the rows it has and the problems it met.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Mapping, Sequence

from mlrepro.runtime import tfconfig as _tfconfig

RETRY_SECONDS = 0.2          # between attempts to reach a chief that is not listening yet
MAX_LINE = 1 << 16           # a row is ~300 bytes; anything longer is not a worker


def chief_address(config: Mapping | None) -> tuple[str, int] | None:
    """(host, port) where the chief of this TF_CONFIG cluster listens for the exchange.

    Example:
        >>> chief_address({"cluster": {"worker": ["algo-1:2222", "algo-2:2222"]},
        ...                "task": {"type": "worker", "index": 1}})
        ('algo-1', 2223)
    """
    if not config:
        return None
    members = [str(a) for kind in _tfconfig.TRAINING_TASKS
               for a in (config.get("cluster") or {}).get(kind) or []]
    ports = []
    for address in members:
        try:
            ports.append(int(address.rsplit(":", 1)[1]))
        except (IndexError, ValueError):
            return None
    if not members:
        return None
    return members[0].rsplit(":", 1)[0].strip("[]"), max(ports) + 1


def member_names(config: Mapping | None, hosts: Sequence[str], world_size: int) -> list[str]:
    """A name for each rank: the host list when it has one host per rank, else the addresses."""
    if len(hosts) == world_size:
        return list(hosts)
    if config:
        return [str(a) for kind in _tfconfig.TRAINING_TASKS
                for a in (config.get("cluster") or {}).get(kind) or []]
    return []


def _listener(port: int) -> socket.socket:
    if socket.has_dualstack_ipv6():
        return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True,
                                    reuse_port=False)
    return socket.create_server(("", port))


def _read_line(conn: socket.socket, deadline: float) -> bytes | None:
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or len(data) > MAX_LINE:
            return None
        conn.settimeout(left)
        try:
            chunk = conn.recv(4096)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data.split(b"\n", 1)[0]


def _send(conn: socket.socket, value, deadline: float) -> bool:
    try:
        conn.settimeout(max(0.1, deadline - time.monotonic()))
        conn.sendall(json.dumps(value, sort_keys=True).encode("utf-8") + b"\n")
        return True
    except OSError:
        return False


def serve(mine: dict, world_size: int, port: int, timeout: float) -> tuple[list[dict], list[str]]:
    """The chief's side: collect up to `world_size - 1` rows, answer every worker with all rows.

    Returns (rows including `mine`, problems). A worker that does not report in
    time is simply absent from the rows; the caller names it.
    """
    rows, problems, waiting = [mine], [], []
    deadline = time.monotonic() + timeout
    server = None
    while server is None:   # a short-lived connection may hold the port a moment
        try:
            server = _listener(port)
        except OSError as exc:
            if time.monotonic() + RETRY_SECONDS >= deadline:
                return rows, [f"the chief cannot listen on port {port} for the other "
                              f"workers ({exc})"]
            time.sleep(RETRY_SECONDS)
    try:
        ranks = {mine.get("rank")}
        while len(ranks) < world_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            server.settimeout(left)
            try:
                conn, _ = server.accept()
            except OSError:   # socket.timeout included
                break
            line = _read_line(conn, min(deadline, time.monotonic() + 5.0))
            try:
                row = json.loads(line) if line else None
            except ValueError:
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("rank"), int):
                conn.close()   # not one of our workers
                continue
            if row["rank"] in ranks:
                problems.append(f"two workers report rank {row['rank']}")
            ranks.add(row["rank"])
            rows.append(row)
            waiting.append(conn)
        for conn in waiting:
            _send(conn, {"workers": rows}, time.monotonic() + 5.0)
    finally:
        for conn in waiting:
            conn.close()
        server.close()
    return rows, problems


def report(mine: dict, host: str, port: int, timeout: float) -> tuple[list[dict] | None, str | None]:
    """A worker's side: send `mine` to the chief; (every row the chief collected, None) or
    (None, the problem) when the chief cannot be reached or does not answer in time."""
    deadline = time.monotonic() + timeout
    last = None
    conn = None
    while conn is None:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, (f"the chief at {host}:{port} could not be reached within "
                          f"{timeout:g} s ({last or 'no answer'})")
        try:
            conn = socket.create_connection((host, port), timeout=min(left, 2.0))
            if conn.getsockname()[:2] == conn.getpeername()[:2]:
                conn.close()   # TCP's self-connect: our own ephemeral port was the chief's
                conn = None
                raise ConnectionRefusedError(111, "connected to itself")
        except OSError as exc:
            last = exc.strerror or type(exc).__name__
            time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
    try:
        answer_by = time.monotonic() + timeout
        if not _send(conn, mine, answer_by):
            return None, f"the chief at {host}:{port} closed the connection"
        line = _read_line(conn, answer_by)
    finally:
        conn.close()
    try:
        rows = json.loads(line)["workers"] if line else None
    except (ValueError, KeyError, TypeError):
        rows = None
    if not isinstance(rows, list):
        return None, f"the chief at {host}:{port} did not answer within {timeout:g} s"
    return rows, None
