"""`mlrepro report RUN... -o FILE`: learning curves and differences of runs, as HTML or PNG."""

from __future__ import annotations

import os

from mlrepro.analysis.report import FORMATS, load_runs, write_html, write_png
from mlrepro.cli.args import check_metric_patterns, store_of
from mlrepro.errors import MlreproError


def cmd_report(args) -> int:
    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in FORMATS:
        raise MlreproError(f"-o {args.output!r} must end in .html or .png: e.g. -o report.html")
    store = store_of(args)
    manifests, series = load_runs(store, args.runs)
    check_metric_patterns(args.metric, (n for s in series for n in s))
    parent = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(parent):
        raise MlreproError(f"the directory of -o {args.output!r} does not exist: create it first")
    if suffix == ".png":
        write_png(args.output, manifests, series, args.metric)
    else:
        write_html(args.output, manifests, series, args.metric, show_all=args.all)
    print(f"wrote {args.output} ({len(manifests)} runs)")
    return 0


def register(subparsers, common) -> None:
    """Add `mlrepro report` to the command line."""
    p = subparsers.add_parser("report", parents=[common], help="HTML or PNG report of runs",
                              description="A one-screen summary (what differs among the runs, "
                                          "who won each key metric, each run's reproducibility), "
                                          "then the learning curves overlaid (timings and flat "
                                          "series folded), final and best values with the best "
                                          "run marked, the params that differ and the "
                                          "environment differences, as one self-contained HTML "
                                          "page (or the curves as PNG). Runs are named by the "
                                          "params that differ among them (lr=0.01).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids or unique prefixes")
    p.add_argument("-o", "--output", default="report.html", metavar="PATH",
                   help="report.html (self-contained page) or curves.png (default report.html)")
    p.add_argument("--metric", action="append", metavar="GLOB",
                   help="only these metrics (glob, repeatable), e.g. --metric 'val_*'")
    p.add_argument("--all", action="store_true",
                   help="list every param in the Params table, not only those that differ")
    p.set_defaults(func=cmd_report)
