"""`mlrepro diff A B`: what differs between two runs."""

from __future__ import annotations

from mlrepro.analysis.diff import diff_text, run_diff
from mlrepro.cli.args import print_json, store_of
from mlrepro.cli.runs import terminal_width


def cmd_diff(args) -> int:
    result = run_diff(store_of(args), args.run_a, args.run_b, repo=args.repo)
    if args.json:
        print_json(result)
    else:
        print(diff_text(result, show_all=args.all, width=terminal_width()))
    return 0


def register(subparsers, common) -> None:
    """Add `mlrepro diff` to the command line."""
    p = subparsers.add_parser("diff", parents=[common], help="what differs between two runs",
                              description="Compare two runs: params, code, data, environment, "
                                          "determinism settings and metrics.")
    p.add_argument("run_a", metavar="RUN_A", help="the reference run (id or unique prefix)")
    p.add_argument("run_b", metavar="RUN_B", help="the run to compare with it")
    p.add_argument("--repo", metavar="PATH",
                   help="git repository holding the runs' commits (default: the current one, "
                        "then the recorded one)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--all", action="store_true",
                   help="also print identical params, inputs and curves, and timing metrics")
    p.set_defaults(func=cmd_diff)
