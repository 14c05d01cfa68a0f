"""The one results table: a row per measured figure, printed as text and as markdown.

Example:
    >>> print(render([Row("log 1,000 points", "1.2 us/point", "", "<= 3 us", True)]))
"""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = ("benchmark", "median", "ratio", "target", "ok")


@dataclass
class Row:
    """One figure: what was measured, its median, a ratio to its reference, and its target."""

    name: str
    value: str
    ratio: str = ""
    target: str = "-"
    ok: bool | None = None  # None: no target

    def cells(self) -> tuple[str, ...]:
        ok = "-" if self.ok is None else "yes" if self.ok else "NO"
        return (self.name, self.value, self.ratio or "-", self.target or "-", ok)


def render(rows: list[Row]) -> str:
    """A fixed-width text table."""
    cells = [COLUMNS] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join([c[0].ljust(widths[0])] + [c[i].rjust(widths[i])
                                                         for i in range(1, len(c))]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    """A GitHub markdown table."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|---|---:|---:|---:|:---:|"]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r.cells()) + " |")
    return "\n".join(out)


def script_main(run, add_arguments, doc: str, quick_help: str, argv=None) -> int:
    """The `main` of a benchmark script: parse, run, print the table and details, save JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", help="write the raw measurements here")
    add_arguments(parser)
    args = parser.parse_args(argv)
    found, text, raw = run(args)
    print(render(found))
    print()
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(raw, fh, indent=1)
    return 0
