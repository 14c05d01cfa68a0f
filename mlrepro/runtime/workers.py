"""Worker consistency: every worker's code and environment fingerprints against the chief's.

Pure: packing one worker's fingerprints into a row of small integers (so a
tf.distribute collective can gather them without a shared file system), and
comparing the gathered rows. A worker that runs other code, or other packages,
silently breaks reproducibility; the comparison names which worker and which part.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPARED = ("code", "environment")   # the parts every worker must share with the chief
DIGEST_BYTES = 32                     # sha256
TEXT_BYTES = 64                       # run id and host name, utf-8, zero padded
ROW_LENGTH = 1 + len(COMPARED) * DIGEST_BYTES + 2 * TEXT_BYTES


@dataclass(frozen=True)
class WorkerPrint:
    """One worker's identity and the fingerprints that must match the chief's."""

    rank: int
    host: str
    code: str            # hex sha256
    environment: str     # hex sha256
    run_id: str = ""


def _text(value: str) -> list[int]:
    data = value.encode("utf-8")[:TEXT_BYTES]
    return list(data) + [0] * (TEXT_BYTES - len(data))


def _untext(values) -> str:
    return bytes(v for v in values if v).decode("utf-8", "replace")


def encode(worker: WorkerPrint) -> list[int]:
    """The worker as `ROW_LENGTH` integers in 0..255 (rank first)."""
    row = [int(worker.rank)]
    for part in COMPARED:
        row += list(bytes.fromhex(getattr(worker, part)))
    return row + _text(worker.run_id) + _text(worker.host)


def decode(row) -> WorkerPrint:
    """The inverse of `encode`."""
    row = [int(round(float(v))) for v in row]
    if len(row) != ROW_LENGTH:
        raise ValueError(f"a worker row has {len(row)} values, not {ROW_LENGTH}")
    at, parts = 1, {}
    for part in COMPARED:
        parts[part] = bytes(row[at:at + DIGEST_BYTES]).hex()
        at += DIGEST_BYTES
    run_id = _untext(row[at:at + TEXT_BYTES])
    host = _untext(row[at + TEXT_BYTES:at + 2 * TEXT_BYTES])
    return WorkerPrint(rank=row[0], host=host, run_id=run_id, **parts)


def compare(workers: list[WorkerPrint], world_size: int, chief_rank: int = 0) -> dict:
    """The `workers` section of a run: each worker's fingerprints and whether all match the chief.

    Several rows of one worker (one per local replica) count once. When fewer
    workers reported than `world_size`, the result says so and is not `checked`.

    Example:
        >>> a = WorkerPrint(0, "algo-1", "aa" * 32, "bb" * 32)
        >>> b = WorkerPrint(1, "algo-2", "cc" * 32, "bb" * 32)
        >>> compare([a, b], 2)["mismatches"]
        [{'rank': 1, 'host': 'algo-2', 'parts': ['code']}]
    """
    by_rank: dict[int, WorkerPrint] = {}
    for worker in workers:
        by_rank.setdefault(worker.rank, worker)
    ranks = sorted(by_rank)
    chief = by_rank.get(chief_rank)
    result: dict = {
        "world_size": world_size, "reported": len(ranks), "chief_rank": chief_rank,
        "compared": list(COMPARED),
        "workers": [{"rank": r, "host": by_rank[r].host,
                     **{p: getattr(by_rank[r], p) for p in COMPARED}} for r in ranks],
        "mismatches": [],
    }
    if chief is None or len(ranks) < world_size:
        result.update(checked=False, consistent=None,
                      reason=f"{len(ranks)} of {world_size} workers reported"
                      + ("" if chief is not None else ", not the chief"))
        return result
    for rank in ranks:
        worker = by_rank[rank]
        parts = [p for p in COMPARED if getattr(worker, p) != getattr(chief, p)]
        if parts:
            result["mismatches"].append({"rank": rank, "host": worker.host, "parts": parts})
    result.update(checked=True, consistent=not result["mismatches"], run_id=chief.run_id)
    return result


def describe(result: dict) -> str:
    """One sentence naming the workers that differ from the chief, for a warning."""
    items = [f"worker {m['rank']} ({m['host']}) differs in {' and '.join(m['parts'])}"
             for m in result.get("mismatches") or []]
    return ("; ".join(items) + " from the chief: the workers do not run the same "
            "experiment, so this run cannot be reproduced as recorded")
