"""A run's metrics summary as its points show it, for runs whose manifest fell behind.

The writer folds a summary (last, min, max, count per metric) into `run.json` at each
heartbeat and at the end. A run that crashed (SIGKILL, a dead machine) before its manifest
caught up has points in metrics.bin that its summary does not count; readers take the
summary from the points then, so `show` and `runs` never say "no metrics" of a run that
has them.
"""

from __future__ import annotations

from mlrepro import record
from mlrepro.record import MetricSummary, Points


def summarize(points: Points) -> dict:
    """The `metrics_summary` section for these points (same shape the writer records)."""
    out = {}
    for name, series in points.series.items():
        summary = MetricSummary()
        for step, value, _wall, _epoch in series:
            summary.add(value, step)
        out[name] = summary.to_json()
    return out


def current_summary(store, manifest: dict, status: str) -> dict:
    """The manifest's metrics summary, or, for a run that did not finish and whose points
    outnumber what the summary counted, the summary of its points."""
    recorded = manifest.get("metrics_summary")
    recorded = recorded if isinstance(recorded, dict) else {}
    if status == record.FINISHED:
        return recorded
    try:
        points = store.read_points(manifest["id"])
    except (OSError, NotImplementedError):
        return recorded
    counted = sum(s.get("count") or 0 for s in recorded.values() if isinstance(s, dict))
    if sum(len(s) for s in points.series.values()) <= counted:
        return recorded
    return {**recorded, **summarize(points)}
