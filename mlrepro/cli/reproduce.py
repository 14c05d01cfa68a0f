"""`mlrepro reproduce RUN`: re-run a recorded run and say whether the numbers match."""

from __future__ import annotations

from mlrepro.analysis.reproduce import (DEFAULT_ATOL, DEFAULT_RTOL, ReproduceOptions,
                                        reproduce_run)
from mlrepro.analysis.workdir import DEFAULT_LIMIT_MB
from mlrepro.cli.args import print_json, store_of
from mlrepro.compare.curves import DEFAULT_IGNORED


def cmd_reproduce(args) -> int:
    options = ReproduceOptions(
        repo=args.repo, check_only=args.check_only, strict=args.strict,
        allow_data_drift=args.allow_data_drift, rtol=args.rtol, atol=args.atol,
        ignore=tuple(DEFAULT_IGNORED) + tuple(args.ignore_metric or ()), python=args.python,
        stored_source=args.stored_source, keep=args.keep, timeout=args.timeout,
        copy_limit_mb=args.copy_limit)
    say = (lambda *_a, **_k: None) if args.json else print
    result = reproduce_run(store_of(args), args.run, options, say=say,
                           child_stdout=2 if args.json else None)  # keep stdout pure JSON
    if args.json:
        print_json(result.to_json())
    if result.verdict is None:
        return 0
    return int(result.verdict["exit_code"])


def register(subparsers, common) -> None:
    """Add `mlrepro reproduce` to the command line."""
    p = subparsers.add_parser(
        "reproduce", parents=[common], help="re-run a recorded run and compare the results",
        description="Rebuild a run's code in a scratch tree, check the environment and data "
                    "against the record, re-run the recorded command, and say whether the new "
                    "run is bit-identical, identical within a tolerance, or diverged. "
                    "Exit 0 identical (or within tolerance), 1 diverged, inconclusive or the "
                    "re-run failed, 2 refused.")
    p.add_argument("run", metavar="RUN", help="run id or unique prefix")
    p.add_argument("--check-only", action="store_true",
                   help="rebuild the code and check environment and data, but do not re-run")
    p.add_argument("--strict", action="store_true",
                   help="refuse when the environment differs from the recorded one")
    p.add_argument("--allow-data-drift", action="store_true",
                   help="re-run even when the recorded data changed")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help=f"relative tolerance for metric values (default {DEFAULT_RTOL:g})")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help=f"absolute tolerance for metric values (default {DEFAULT_ATOL:g})")
    p.add_argument("--ignore-metric", action="append", metavar="GLOB",
                   help="metrics not to compare (timings are never compared)")
    p.add_argument("--repo", metavar="PATH",
                   help="git repository holding the run's commit (default: the current one, "
                        "then the recorded one)")
    p.add_argument("--stored-source", action="store_true",
                   help="if the commit cannot be found, re-run the stored entry point alone")
    p.add_argument("--python", metavar="PATH",
                   help="interpreter for the re-run (default: this one)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="give up on the re-run after this many seconds")
    p.add_argument("--copy-limit", type=float, default=DEFAULT_LIMIT_MB, metavar="MB",
                   help="refuse to copy more than this many MB of the recorded working "
                        f"directory into the re-run's (default {DEFAULT_LIMIT_MB:g})")
    p.add_argument("--keep", action="store_true", help="keep the scratch tree")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_reproduce)
