"""Worker consistency: every worker's code and environment fingerprints against the chief's.

Pure: one worker's fingerprints as a JSON row (`mlrepro.runtime.exchange`
carries the rows to the chief and back, without a shared file system), and
comparing the gathered rows. A worker that runs other code, or other packages,
silently breaks reproducibility; the comparison names which worker and which part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

COMPARED = ("code", "environment")   # the parts every worker must share with the chief


@dataclass(frozen=True)
class WorkerPrint:
    """One worker's identity and the fingerprints that must match the chief's."""

    rank: int
    host: str
    code: str            # hex sha256
    environment: str     # hex sha256
    run_id: str = ""


def as_row(worker: WorkerPrint) -> dict:
    """The worker as the JSON object the exchange carries."""
    return asdict(worker)


def from_row(row: dict) -> WorkerPrint:
    """The inverse of `as_row`; ValueError when `row` is not a worker's row."""
    try:
        return WorkerPrint(rank=int(row["rank"]), host=str(row.get("host") or ""),
                           run_id=str(row.get("run_id") or ""),
                           **{part: str(row[part]) for part in COMPARED})
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a worker row ({exc!r})") from None


def compare(workers: list[WorkerPrint], world_size: int, chief_rank: int = 0,
            names: list[str] | tuple[str, ...] = ()) -> dict:
    """The `workers` section of a run: each worker's fingerprints and whether all match the chief.

    Several rows of one worker (one per local replica) count once. When fewer
    workers reported than `world_size`, the result says so, names the missing ones
    under `missing` (with `names[rank]` as their host when given), and is not `checked`.

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
        missing = [{"rank": r, "host": names[r] if r < len(names) else None}
                   for r in range(world_size) if r not in by_rank]
        result.update(checked=False, consistent=None, missing=missing,
                      reason=f"{len(ranks)} of {world_size} workers reported"
                      + ("" if chief is not None else ", not the chief")
                      + ("; missing: " + ", ".join(_named(m) for m in missing) if missing else ""))
        return result
    for rank in ranks:
        worker = by_rank[rank]
        parts = [p for p in COMPARED if getattr(worker, p) != getattr(chief, p)]
        if parts:
            result["mismatches"].append({"rank": rank, "host": worker.host, "parts": parts})
    result.update(checked=True, consistent=not result["mismatches"], run_id=chief.run_id)
    return result


def _named(member: dict) -> str:
    return f"worker {member['rank']}" + (f" ({member['host']})" if member.get("host") else "")


def describe(result: dict) -> str:
    """One sentence naming the workers that differ from the chief, for a warning."""
    items = [f"worker {m['rank']} ({m['host']}) differs in {' and '.join(m['parts'])}"
             for m in result.get("mismatches") or []]
    return ("; ".join(items) + " from the chief: the workers do not run the same "
            "experiment, so this run cannot be reproduced as recorded")
