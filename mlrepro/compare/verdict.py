"""The verdict on a reproduction: bit-identical, identical within a tolerance, or diverged.

Metrics decide how close the runs are; artifacts can only be equal or not (their
bytes are compared, not their numbers), so a differing artifact stops a
verdict of bit-identical but cannot on its own say by how much the runs differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mlrepro.compare.artifacts import (ADDED, DIFFERS, IDENTICAL, IDENTICAL_EXCEPT_VOLATILE,
                                       MISSING)
from mlrepro.compare.curves import CurveComparison

BIT_IDENTICAL = "bit-identical"
WITHIN_TOLERANCE = "within-tolerance"
DIVERGED = "diverged"
INCONCLUSIVE = "inconclusive"
EXIT_CODES = {BIT_IDENTICAL: 0, WITHIN_TOLERANCE: 0, DIVERGED: 1, INCONCLUSIVE: 1}


@dataclass
class Verdict:
    """What a reproduction showed, in one sentence plus the details behind it."""

    kind: str
    message: str
    details: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]

    def to_json(self) -> dict:
        return dict(asdict(self), exit_code=self.exit_code)


def judge(curves: CurveComparison, artifacts: list[dict]) -> Verdict:
    """Turn a curve comparison and artifact comparisons into a verdict.

    Example:
        >>> from mlrepro.compare.curves import compare_curves
        >>> judge(compare_curves({"loss": [(0, 1.0)]}, {"loss": [(0, 1.0)]}), []).kind
        'bit-identical'
    """
    details = []
    same = [a for a in artifacts if a["status"] in (IDENTICAL, IDENTICAL_EXCEPT_VOLATILE)]
    differ = [a for a in artifacts if a["status"] == DIFFERS]
    for a in artifacts:
        if a["status"] == IDENTICAL_EXCEPT_VOLATILE:
            details.append(f"artifact {a['name']}: identical apart from save metadata "
                           f"({', '.join(a['volatile'])})"
                           + (f"; {a['note']}" if a.get("note") else ""))
        elif a["status"] == IDENTICAL:
            details.append(f"artifact {a['name']}: identical")
        elif a["status"] == DIFFERS:
            members = a.get("members") or []
            details.append(f"artifact {a['name']}: differs"
                           + (f" ({', '.join(members[:5])})" if members else ""))
        elif a["status"] == MISSING:
            details.append(f"artifact {a['name']}: not logged by the new run")
        elif a["status"] == ADDED:
            details.append(f"artifact {a['name']}: only in the new run")
    if curves.ignored:
        details.append(f"not compared (timings): {', '.join(curves.ignored)}")
    if curves.extra:
        details.append(f"metrics only in the new run: {', '.join(curves.extra)}")
    if curves.missing:
        return Verdict(DIVERGED, f"diverged: metric {curves.missing[0]} is missing from the new "
                                 f"run", details)
    if not curves.metrics and not same and not differ:
        return Verdict(INCONCLUSIVE, "inconclusive: the run recorded no metrics or artifacts "
                                     "to compare", details)
    if not curves.within:
        first = curves.first_divergence
        return Verdict(DIVERGED, f"diverged at step {first.step} on {first.metric}: "
                                 f"{first.describe()} (tolerance rtol={curves.rtol:g}, "
                                 f"atol={curves.atol:g})", details)
    what = f"{_count(curves.points, 'point')} of {_count(len(curves.metrics), 'metric')}"
    if curves.identical and not differ:
        volatile = sum(1 for a in same if a["status"] == IDENTICAL_EXCEPT_VOLATILE)
        arts = ""
        if same:
            arts = f"; {_count(len(same), 'artifact')} identical" + (
                f" ({volatile} apart from save metadata)" if volatile else "")
        return Verdict(BIT_IDENTICAL, f"bit-identical: {what} equal to the last bit{arts}",
                       details)
    if curves.identical:
        largest = "metrics bit-identical"
    else:
        largest = f"largest deviation {curves.largest.describe()}"
    names = ", ".join(a["name"] for a in differ)
    tail = f"; artifact {names} differs in content" if differ else ""
    return Verdict(WITHIN_TOLERANCE, f"identical within tolerance (rtol={curves.rtol:g}, "
                                     f"atol={curves.atol:g}) on {what}: {largest}{tail}",
                   details)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
