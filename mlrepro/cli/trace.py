"""`mlrepro trace PATH`: the run that produced a model file, export or archive."""

from __future__ import annotations

from mlrepro.analysis.trace import trace_path, trace_text
from mlrepro.cli.args import print_json, store_of
from mlrepro.errors import CheckFailed


def cmd_trace(args) -> int:
    store = store_of(args)
    result = trace_path(store, args.path)
    if args.json:
        print_json(result)
    if not result["runs"]:
        if not args.json:
            print(trace_text(result))
        what = f"sha256 {result['digest'][:16]}" if result["digest"] else "its files"
        raise CheckFailed(f"no run in {store.uri} logged {args.path} ({what}): log it with "
                          "run.log_artifact (or ReproCallback), or pass the --store that holds "
                          "its run")
    if not args.json:
        print(trace_text(result))
    return 0


def register(subparsers, common) -> None:
    """Add `mlrepro trace` to the command line."""
    p = subparsers.add_parser("trace", parents=[common], help="find the run that produced a file",
                              description="Find the run that produced a model file, export "
                                          "directory, SageMaker model.tar.gz or any artifact, "
                                          "and print its lineage: code, data, params, parents.")
    p.add_argument("path", metavar="PATH", help="a file, directory, .keras file or model.tar.gz")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_trace)
