"""`mlrepro index --rebuild`, `mlrepro recover` and `mlrepro gc`: repairing a store's index,
runs spooled while the store could not be written, and objects no run names any more."""

from __future__ import annotations

import os
import sys

from mlrepro.cli.args import store_of
from mlrepro.core.writer import spool_dir
from mlrepro.errors import MlreproError
from mlrepro.store.local import LocalStore
from mlrepro.store.transfer import CopyReport, merge_spooled_run


def cmd_index(args) -> int:
    store = store_of(args, existing=True)
    if not args.rebuild:
        raise MlreproError("nothing to do: use `mlrepro index --rebuild`")
    try:
        count, bad = store.rebuild_index()
    except NotImplementedError:
        raise MlreproError(f"{store.uri} has no index to rebuild") from None
    for run_id, problem in bad:
        print(f"skipped {run_id}: {problem}", file=sys.stderr)
    print(f"indexed {count} runs" + (f", {len(bad)} unreadable (listed above)" if bad else ""))
    return 0


def cmd_recover(args) -> int:
    if args.source and not os.path.isdir(args.source):
        raise MlreproError(f"--from {args.source} is not a directory: give the spool directory "
                           "a warning named (default: the spool)")
    spool = LocalStore(args.source or spool_dir())
    store = store_of(args)
    ids = [spool.resolve(r) for r in args.runs] if args.runs else sorted(spool.run_ids())
    report = CopyReport()
    for run_id in ids:
        try:
            merge_spooled_run(spool, store, run_id, report)
        except (MlreproError, OSError) as exc:
            report.skipped.append((run_id, str(exc)))
            continue
        if not args.keep:
            spool.delete_run(run_id)
    for run_id, problem in report.skipped:
        print(f"skipped {run_id}: {problem}", file=sys.stderr)
    print(f"recovered {len(report.runs)} runs into {store.uri} "
          f"({report.objects_copied} objects copied)")
    return 0 if not report.skipped else 1


def cmd_gc(args) -> int:
    from mlrepro.store.gc import collect

    store = store_of(args)
    report = collect(store, grace=args.grace, dry_run=args.dry_run)
    for digest in report.removed if args.verbose else []:
        print(digest)
    print(report.line(store.uri))
    return 0


def register(subparsers, common) -> None:
    """Add `index`, `recover` and `gc` to the command line."""
    from mlrepro.store.gc import DEFAULT_GRACE

    p = subparsers.add_parser("index", parents=[common],
                              help="rebuild the store's index from every manifest",
                              description="Rebuild the store's index (local SQLite, or the S3 "
                                          "index) from the run manifests, reporting the "
                                          "unreadable ones.")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the index from the manifests (required: the only action)")
    p.set_defaults(func=cmd_index)

    p = subparsers.add_parser("recover", parents=[common],
                              help="move runs spooled during a store outage into the store",
                              description="Merge runs that were spooled while the store could "
                                          "not be written back into the store. Exit 1 if a "
                                          "run was skipped.")
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="spooled run ids or prefixes (default: every spooled run)")
    p.add_argument("--from", dest="source", metavar="PATH",
                   help="spool directory (default: the spool)")
    p.add_argument("--keep", action="store_true", help="leave the runs in the spool")
    p.set_defaults(func=cmd_recover)

    p = subparsers.add_parser("gc", parents=[common],
                              help="remove objects no run names (never a live run's)",
                              description="Remove the store's objects that no run names any "
                                          "more, never one a live run may still name.")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--grace", type=float, default=DEFAULT_GRACE, metavar="SECONDS",
                   help="keep unnamed objects written this recently (default "
                   f"{DEFAULT_GRACE:g}; 0 only for a store nobody is pushing to)")
    p.add_argument("--verbose", action="store_true", help="print each object removed")
    p.set_defaults(func=cmd_gc)
