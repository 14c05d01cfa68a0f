"""`mlrepro get RUN [ARTIFACT] [-o PATH]`: copy artifacts out of a store."""

from __future__ import annotations

from mlrepro.analysis.get import copy_artifacts
from mlrepro.cli.args import print_json, store_of


def cmd_get(args) -> int:
    written = copy_artifacts(store_of(args), args.run, args.artifact, args.output,
                             force=args.force)
    if args.json:
        print_json(written)
        return 0
    for w in written:
        size = f"{w['files']} files, " if w["kind"] == "dir" else ""
        print(f"{w['name']} -> {w['path']} ({size}{w['bytes']} bytes)")
    return 0


def register(subparsers, common) -> None:
    """Add `mlrepro get` to the command line."""
    p = subparsers.add_parser(
        "get", parents=[common], help="copy a run's artifacts out of the store",
        description="Copy one artifact of a run (a file or a directory) out of the store, "
                    "local or s3://, or all of them. Every object is checked against its "
                    "digest as it is written.")
    p.add_argument("run", metavar="RUN", help="run id or unique prefix")
    p.add_argument("artifact", nargs="?", metavar="ARTIFACT",
                   help="artifact name, as `mlrepro show` lists it (default: every artifact)")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="where to write it (default: ./<artifact base name>, or ./<run id>/ "
                        "for every artifact)")
    p.add_argument("--force", action="store_true", help="replace files that exist")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=cmd_get)
