"""The `mlrepro` command line. Exit codes: 0 ok, 1 a failed check, 2 bad input.

Each verb beyond the core ones lives in its own module with a `register(subparsers,
common)` function; modules not present in this build are simply not offered.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback

from mlrepro.errors import MlreproError
from mlrepro.store import STORE_ENV, default_store_uri, open_store

# Verb modules, each registering its own sub-commands.
VERB_MODULES = ("mlrepro.diff", "mlrepro.report", "mlrepro.trace", "mlrepro.reproduce",
                "mlrepro.remote", "mlrepro.launch")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad input
        raise MlreproError(f"{message} (see `{self.prog} --help`)")


def parse_value(text: str):
    """`0.1` -> 0.1, `true` -> True, `[1,2]` -> list, anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(pairs: list[str] | None, what: str = "--param") -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MlreproError(f"{what} {pair!r} is not KEY=VALUE: e.g. {what} lr=0.1")
        out[key] = parse_value(value)
    return out


def _store(args):
    return open_store(args.store)


def cmd_runs(args) -> int:
    from mlrepro.show import runs_table

    store = _store(args)
    fingerprint = None
    if args.same_as:
        ref = store.read_manifest(store.resolve(args.same_as))
        fingerprint = ref.get("fingerprint")
    rows = store.list_runs(project=args.project, status=args.status,
                           params=parse_pairs(args.param), fingerprint=fingerprint,
                           sort_metric=args.sort, descending=args.desc)
    if args.same_as:
        rows = [r for r in rows if r["id"] != ref["id"]]
    if args.limit:
        rows = rows[: args.limit]
    if args.json:
        json.dump(rows, sys.stdout, indent=1, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        print(runs_table(rows, metrics=[args.sort] if args.sort else None))
    return 0


def cmd_show(args) -> int:
    from mlrepro.show import run_text

    store = _store(args)
    run_id = store.resolve(args.run)
    manifest = store.read_manifest(run_id)
    status = store.effective_status(manifest) if hasattr(store, "effective_status") else \
        manifest["status"]
    events = store.read_events(run_id)
    if args.json:
        out = dict(manifest, status=status)
        if args.metrics:
            pts = store.read_points(run_id)
            out["metrics"] = {n: [[s, v] for s, v, _w, _e in pts.series[n]] for n in pts.names()}
        json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)
        sys.stdout.write("\n")
        return 0
    print(run_text(manifest, status, events))
    if args.metrics:
        pts = store.read_points(run_id)
        for name in pts.names():
            series = pts.series[name]
            print(f"\n{name} ({len(series)} points)")
            for step, value, _wall, epoch in series:
                print(f"  step {step:>8}  epoch {epoch if epoch >= 0 else '-':>4}  {value!r}")
    return 0


def cmd_index(args) -> int:
    store = _store(args)
    if not hasattr(store, "rebuild_index"):
        raise MlreproError(f"{store.uri} has no local index to rebuild")
    if not args.rebuild:
        raise MlreproError("nothing to do: use `mlrepro index --rebuild`")
    count, bad = store.rebuild_index()
    for run_id, problem in bad:
        print(f"skipped {run_id}: {problem}", file=sys.stderr)
    print(f"indexed {count} runs" + (f", {len(bad)} unreadable (listed above)" if bad else ""))
    return 0


def cmd_recover(args) -> int:
    from mlrepro.store.local import LocalStore
    from mlrepro.store.transfer import CopyReport, merge_spooled_run
    from mlrepro.writer import spool_dir

    spool = LocalStore(args.source or spool_dir())
    store = _store(args)
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


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS,
                        help=f"store path or s3:// URI (default ${STORE_ENV} or ./mlrepro-runs)")
    parser = _Parser(prog="mlrepro", parents=[common],
                     description="Record, compare, trace and reproduce TensorFlow runs.")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="verb", parser_class=_Parser)

    p = sub.add_parser("runs", parents=[common], help="list runs")
    p.add_argument("--project")
    p.add_argument("--status", choices=("running", "finished", "failed", "killed", "preempted",
                                        "crashed"))
    p.add_argument("--param", action="append", metavar="K=V", help="only runs with this param")
    p.add_argument("--sort", metavar="METRIC", help="sort by a metric's last value (ascending)")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--same-as", metavar="RUN", help="runs with the same fingerprint as RUN")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", parents=[common], help="everything recorded about a run")
    p.add_argument("run", help="run id or unique prefix")
    p.add_argument("--json", action="store_true")
    p.add_argument("--metrics", action="store_true", help="also print every metric point")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("index", parents=[common], help="rebuild the SQLite index")
    p.add_argument("--rebuild", action="store_true")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("recover", parents=[common],
                       help="move runs spooled during a store outage into the store")
    p.add_argument("runs", nargs="*")
    p.add_argument("--from", dest="source", help="spool directory (default: the spool)")
    p.add_argument("--keep", action="store_true", help="leave the runs in the spool")
    p.set_defaults(func=cmd_recover)

    for name in VERB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not hasattr(args, "store"):
            args.store = default_store_uri()
        if args.version:
            from mlrepro import __version__

            print(f"mlrepro {__version__}")
            return 0
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except MlreproError as exc:
        print(f"mlrepro: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"mlrepro: error: {exc.strerror or exc}{where}: check the path and its "
              "permissions and free space", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback on request
        if os.environ.get("MLREPRO_DEBUG"):
            traceback.print_exc()
        print(f"mlrepro: internal error: {exc!r} (set MLREPRO_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
