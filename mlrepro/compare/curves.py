"""Comparing metric curves point by point: bit-equal, within a tolerance, or where they part.

Points of a metric are matched by step (and by order among points logged at the
same step). A point one run has and the other lacks counts as a divergence at
that step. Pure functions over `{name: [(step, value), ...]}` mappings.
"""

from __future__ import annotations

import fnmatch
import math
import re
import struct
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

# Metrics that measure the machine, not the model: a reproduction never matches them.
DEFAULT_IGNORED = ("*time*", "*seconds*", "*_per_s", "*_per_sec", "*_per_second", "*/sec",
                   "*throughput*", "system/*", "*_ms")
# Metric names for which a larger value is better (everything else: smaller is better).
_HIGHER_IS_BETTER = re.compile(r"(acc|auc|precision|recall|f1|iou|\bmap\b|score|r2|top_?\d*k?)",
                               re.IGNORECASE)
_LOWER_ANYWAY = re.compile(r"(loss|error|err\b|mse|mae|perplexity)", re.IGNORECASE)

Series = Sequence[tuple]  # (step, value, ...) tuples, as in `record.Points.series`


@dataclass
class Deviation:
    """How far one point of a metric is from its counterpart (`None`: the point is missing)."""

    metric: str
    step: int
    a: float | None
    b: float | None
    abs: float
    rel: float

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.a is None:
            return f"{self.metric} at step {self.step}: only in the new run ({self.b!r})"
        if self.b is None:
            return f"{self.metric} at step {self.step}: missing from the new run (was {self.a!r})"
        return (f"{self.metric} at step {self.step}: {self.a!r} vs {self.b!r} "
                f"(abs {self.abs:.3g}, rel {self.rel:.3g})")


@dataclass
class CurveComparison:
    """The outcome of comparing every metric two runs share."""

    rtol: float
    atol: float
    metrics: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    points: int = 0
    identical: bool = True
    within: bool = True
    largest: Deviation | None = None
    first_divergence: Deviation | None = None
    per_metric: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = asdict(self)
        for key in ("largest", "first_divergence"):
            value = getattr(self, key)
            out[key] = value.to_json() if value else None
        return out


def bits_equal(x: float, y: float) -> bool:
    """Equal to the last bit (so NaN equals the same NaN and -0.0 differs from 0.0)."""
    return struct.pack("<d", float(x)) == struct.pack("<d", float(y))


def close(x: float, y: float, rtol: float, atol: float) -> bool:
    """`|x - y| <= atol + rtol * |x|`, with NaN close to NaN and infinities to themselves."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= atol + rtol * abs(x)


def deviation(metric: str, step: int, x: float | None, y: float | None) -> Deviation:
    if x is None or y is None:
        return Deviation(metric, step, x, y, math.inf, math.inf)
    if math.isnan(x) or math.isnan(y) or math.isinf(x) or math.isinf(y):
        d = 0.0 if (bits_equal(x, y) or x == y or (math.isnan(x) and math.isnan(y))) \
            else math.inf
        return Deviation(metric, step, x, y, d, d)
    d = abs(x - y)
    rel = d / abs(x) if x != 0 else (0.0 if d == 0 else math.inf)
    return Deviation(metric, step, x, y, d, rel)


def _keyed(series: Series) -> dict[tuple[int, int], float]:
    out: dict[tuple[int, int], float] = {}
    seen: dict[int, int] = {}
    for point in sorted(series, key=lambda p: p[0]):
        step = int(point[0])
        k = seen.get(step, 0)
        seen[step] = k + 1
        out[(step, k)] = float(point[1])
    return out


def is_ignored(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in patterns)


def compare_curves(a: Mapping[str, Series], b: Mapping[str, Series], *, rtol: float = 0.0,
                   atol: float = 0.0, ignore: Iterable[str] = DEFAULT_IGNORED
                   ) -> CurveComparison:
    """Compare every metric of `a` (the reference) with the same metric of `b`.

    Args:
        a: the reference run's series, `{name: [(step, value, ...), ...]}`.
        b: the other run's series.
        rtol: relative tolerance, as in `numpy.isclose` (measured against `a`).
        atol: absolute tolerance.
        ignore: glob patterns of metric names not to compare (timings by default).

    Example:
        >>> c = compare_curves({"loss": [(0, 1.0), (1, 0.5)]}, {"loss": [(0, 1.0), (1, 0.5)]})
        >>> c.identical, c.points
        (True, 2)
    """
    ignore = tuple(ignore)
    out = CurveComparison(rtol=float(rtol), atol=float(atol))
    names_a = {n for n in a if not is_ignored(n, ignore)}
    names_b = {n for n in b if not is_ignored(n, ignore)}
    out.ignored = sorted((set(a) | set(b)) - names_a - names_b)
    out.missing = sorted(names_a - names_b)
    out.extra = sorted(names_b - names_a)
    out.metrics = sorted(names_a & names_b)
    if out.missing:
        out.identical = out.within = False
    for name in out.metrics:
        ka, kb = _keyed(a[name]), _keyed(b[name])
        first_diff: Deviation | None = None
        largest: Deviation | None = None
        for key in sorted(set(ka) | set(kb)):
            x, y = ka.get(key), kb.get(key)
            out.points += 1
            if x is not None and y is not None and bits_equal(x, y):
                continue
            dev = deviation(name, key[0], x, y)
            out.identical = False
            if first_diff is None:
                first_diff = dev
            if x is not None and y is not None and (largest is None or
                                                     (dev.rel, dev.abs) >
                                                     (largest.rel, largest.abs)):
                largest = dev
            if x is None or y is None or not close(x, y, rtol, atol):
                out.within = False
                first = out.first_divergence
                if first is None or (dev.step, dev.metric) < (first.step, first.metric):
                    out.first_divergence = dev
        if largest is not None and (out.largest is None or (largest.rel, largest.abs) >
                                    (out.largest.rel, out.largest.abs)):
            out.largest = largest
        out.per_metric[name] = {
            "points_a": len(ka), "points_b": len(kb),
            "first_difference": first_diff.to_json() if first_diff else None,
            "largest": largest.to_json() if largest else None,
        }
    return out


def higher_is_better(name: str) -> bool:
    """Whether the best value of a metric is its maximum (accuracy) or minimum (loss)."""
    last = name.rsplit("/", 1)[-1]
    return bool(_HIGHER_IS_BETTER.search(last)) and not _LOWER_ANYWAY.search(last)


def loss_like(name: str) -> bool:
    """Whether the name reads as a loss or an error (lower is better by name, not by default)."""
    return bool(_LOWER_ANYWAY.search(name.rsplit("/", 1)[-1]))


def summarize_series(name: str, series: Series) -> dict:
    """Final and best value of one metric, with the steps they were logged at."""
    points = [(int(p[0]), float(p[1])) for p in series]
    if not points:
        return {"points": 0, "final": None, "final_step": None, "best": None,
                "best_step": None, "mode": None}
    final_step, final = max(points, key=lambda p: p[0])
    finite = [p for p in points if not math.isnan(p[1])]
    mode = "max" if higher_is_better(name) else "min"
    if finite:
        pick = max if mode == "max" else min
        best_step, best = pick(finite, key=lambda p: (p[1], -p[0]) if mode == "max"
                               else (p[1], p[0]))
    else:
        best_step, best = None, None
    return {"points": len(points), "final": final, "final_step": final_step, "best": best,
            "best_step": best_step, "mode": mode}


def diff_metrics(a: Mapping[str, Series], b: Mapping[str, Series]) -> dict:
    """Final and best values of every metric of two runs, and the first step their curves differ."""
    exact = compare_curves(a, b, ignore=())
    out = {}
    for name in sorted(set(a) | set(b)):
        entry = {"a": summarize_series(name, a.get(name, [])),
                 "b": summarize_series(name, b.get(name, []))}
        if name in exact.per_metric:
            first = exact.per_metric[name]["first_difference"]
            entry["same_curve"] = first is None
            entry["first_difference"] = first
        else:
            entry["same_curve"] = False
            entry["first_difference"] = None
        out[name] = entry
    return {"same": all(e["same_curve"] for e in out.values()), "metrics": out}
