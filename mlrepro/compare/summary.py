"""What a report says first: which metrics are worth a chart, who won each, and how far each
run's reproducibility is established, all from the record alone.

Metrics fall in three groups: learning curves (the informative ones), timings (they measure
the machine, not the model: `epoch_time_s`, `examples_per_s`, `*_ms`), and series that are
flat within every run (a constant `lr`). The winner of a metric is the run with its best
value, by a direction rule named for the reader (lower is better unless the name reads as
accuracy-like). Pure: series and manifests in, plain values out.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from mlrepro.compare.curves import (DEFAULT_IGNORED, higher_is_better, is_ignored, loss_like,
                                    summarize_series)
from mlrepro.compare.listing import KEY_METRICS
from mlrepro.compare.naming import short_id
from mlrepro.compare.sections import same_value

MAX_KEY_METRICS = 4

# Reproducibility, as the record states it (strongest first).
VERIFIED = "verified"          # `mlrepro reproduce` re-ran it and the curves matched
DIVERGED = "diverged"          # a reproduction was tried and did not match
EXACT = "exact"                # the Keras callback claims (and checked) bit-exact resume
DETERMINISTIC = "deterministic"  # seeded with op determinism on: not verified yet
UNVERIFIABLE = "unverifiable"  # no seed, determinism off, or resume not exact


def is_timing(name: str) -> bool:
    """Metrics that say how fast a run went; a reproduction never matches them either."""
    return is_ignored(name, DEFAULT_IGNORED)


def is_constant(series_by_run: Sequence[Mapping], name: str) -> bool:
    """True when the metric has two or more points in some run and never changes within any run
    (a fixed learning rate: one flat line per run says nothing a table cannot)."""
    longest = 0
    for series in series_by_run:
        values = [float(p[1]) for p in series.get(name) or []]
        longest = max(longest, len(values))
        if any(not same_value(values[0], v) for v in values[1:]):
            return False
    return longest >= 2


def metric_groups(series_by_run: Sequence[Mapping], names: Sequence[str]) -> dict[str, list]:
    """`{"curves": [...], "timing": [...], "constant": [...]}`, each in the order of `names`."""
    out: dict[str, list] = {"curves": [], "timing": [], "constant": []}
    for name in names:
        group = "timing" if is_timing(name) else \
            "constant" if is_constant(series_by_run, name) else "curves"
        out[group].append(name)
    return out


def direction_rule(name: str) -> str:
    """Which way is better for `name`, and why, in the words the report prints."""
    if higher_is_better(name):
        return "higher is better (accuracy-like name)"
    if loss_like(name):
        return "lower is better (loss-like name)"
    return "lower is better (the default: the name is not accuracy-like)"


def best_indexes(values: Sequence, name: str) -> list[int]:
    """The positions holding the best value of `values` for metric `name` (all of them on a tie;
    none when fewer than two runs have a finite value, or every run has the same one)."""
    finite = [(i, float(v)) for i, v in enumerate(values)
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(finite) < 2 or all(v == finite[0][1] for _, v in finite):
        return []
    pick = max if higher_is_better(name) else min
    best = pick(v for _, v in finite)
    return [i for i, v in finite if v == best]


def key_metrics(names: Sequence[str]) -> list[str]:
    """The metrics a reader asks "who won" about: loss/val_loss/val_accuracy/accuracy where
    recorded, else the first curves that are not per-batch."""
    chosen = [n for n in KEY_METRICS if n in names]
    if not chosen:
        chosen = [n for n in names if not n.startswith("batch/")] or list(names)
    return chosen[:MAX_KEY_METRICS]


def winners(series_by_run: Sequence[Mapping], names: Sequence[str]) -> list[dict]:
    """For each key metric: the rule, every run's best value, and the winning positions."""
    out = []
    for name in key_metrics(names):
        best = [summarize_series(name, s.get(name, []))["best"] for s in series_by_run]
        out.append({"metric": name, "rule": direction_rule(name), "best": best,
                    "winners": best_indexes(best, name)})
    return out


def reproducibility(m: Mapping) -> tuple[str, str]:
    """(status, why) for one run, from what its record says and nothing more."""
    repro = m.get("reproduction") if isinstance(m.get("reproduction"), Mapping) else {}
    verdict = repro.get("verdict")
    if verdict in ("bit-identical", "within-tolerance"):
        return VERIFIED, f"{verdict} reproduction of run {short_id(repro.get('of'))}"
    if verdict == "diverged":
        return DIVERGED, f"a reproduction of run {short_id(repro.get('of'))} diverged"
    if verdict:
        return UNVERIFIABLE, f"{verdict} reproduction of run {short_id(repro.get('of'))}"
    det = m.get("determinism") if isinstance(m.get("determinism"), Mapping) else {}
    resume = m.get("resume") if isinstance(m.get("resume"), Mapping) else {}
    if m.get("seed") is None:
        return UNVERIFIABLE, "no seed recorded"
    if not det.get("deterministic"):
        return UNVERIFIABLE, "op determinism was off"
    if resume.get("exact") is False:
        reasons = resume.get("reasons") or ["the callback found it not exact"]
        return UNVERIFIABLE, f"resume not exact: {reasons[0]}"
    if resume.get("exact") is True:
        return EXACT, f"seed {m.get('seed')}, deterministic, bit-exact resume; not re-run " \
                      "yet (mlrepro reproduce checks it)"
    return DETERMINISTIC, f"seed {m.get('seed')}, deterministic; not re-run yet " \
                          "(mlrepro reproduce checks it)"
