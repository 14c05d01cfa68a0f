"""`mlrepro runs` (list, filter, sort) and `mlrepro show RUN` (everything recorded about one)."""

from __future__ import annotations

import shutil

from mlrepro import record
from mlrepro.cli.args import count, parse_pairs, print_json, store_of
from mlrepro.compare.listing import runs_table
from mlrepro.compare.text import printable, run_text
from mlrepro.errors import MlreproError
from mlrepro.store import RunQuery
from mlrepro.store.points import current_summary

# Auto-captured params are in the manifests, not the index: read (from a local store) for at
# most this many rows.
AUTO_PARAM_ROWS = 200


def terminal_width() -> int:
    """The terminal's width ($COLUMNS first; 80 when output is not a terminal)."""
    return shutil.get_terminal_size((80, 24)).columns


def cmd_runs(args) -> int:
    store = store_of(args, existing=True)
    fingerprint = ref = None
    if args.same_as:
        ref = store.read_manifest(store.resolve(args.same_as))
        fingerprint = ref.get("fingerprint")
    rows = store.list_runs(RunQuery(project=args.project, status=args.status,
                                    params=parse_pairs(args.param), fingerprint=fingerprint,
                                    sort_metric=args.sort, descending=args.desc))
    if ref is not None:
        rows = [r for r in rows if r["id"] != ref["id"]]
    caught_up = False
    for row in rows:
        if row["status"] != record.FINISHED:  # a crashed run's manifest may lag its points
            summary = current_summary(store, row, row["status"])
            caught_up = caught_up or summary != row.get("metrics_summary")
            row["metrics_summary"] = summary
    if args.sort and rows:
        names = {n for r in rows for n in r.get("metrics_summary") or {}}
        if args.sort not in names:
            known = ", ".join(sorted(names)[:12]) or "no metrics"
            raise MlreproError(f"--sort {args.sort!r} is not a metric of the runs listed (they "
                               f"recorded {known}): give one of those names")
        if caught_up:
            rows = RunQuery(sort_metric=args.sort, descending=args.desc).sort(rows)
    if args.limit:
        rows = rows[: args.limit]
    if args.json:
        print_json(rows)
    else:
        columns = [c for c in args.columns.split(",") if c.strip()] if args.columns else None
        auto = {}  # a remote listing stays a few requests: its index holds no auto params
        ids = [r["id"] for r in rows[:AUTO_PARAM_ROWS]] if store.root is not None else []
        for manifest in store.read_manifests(ids):
            auto[manifest["id"]] = manifest.get("auto_params")
        print(runs_table(rows, width=terminal_width(), sort=args.sort, auto_params=auto,
                         columns=columns, wide=args.wide))
    return 0


def cmd_show(args) -> int:
    store = store_of(args, existing=True)
    run_id = store.resolve(args.run)
    manifest = store.read_manifest(run_id)
    status = store.effective_status(manifest)
    manifest["metrics_summary"] = current_summary(store, manifest, status)
    events = store.read_events(run_id)
    if args.json:
        out = dict(manifest, status=status)
        if args.metrics:
            pts = store.read_points(run_id)
            out["metrics"] = {n: [[s, v] for s, v, _w, _e in pts.series[n]] for n in pts.names()}
        print_json(out)
        return 0
    print(run_text(manifest, status, events, width=terminal_width()))
    if args.metrics:
        pts = store.read_points(run_id)
        for name in pts.names():
            series = pts.series[name]
            print(f"\n{printable(name)} ({len(series)} points)")
            for step, value, _wall, epoch in series:
                print(f"  step {step:>8}  epoch {epoch if epoch >= 0 else '-':>4}  {value!r}")
    return 0


def register(subparsers, common) -> None:
    """Add `runs` and `show` to the command line."""
    p = subparsers.add_parser("runs", parents=[common], help="list runs",
                              description="List the store's runs, newest first: id, status, "
                                          "the params that differ among them and key metrics, "
                                          "fitted to the terminal (--wide: every column); "
                                          "filter, sort and limit them, or find the runs like "
                                          "another.")
    p.add_argument("--project", metavar="NAME", help="only runs of this project")
    p.add_argument("--status", choices=record.STATUSES, help="only runs with this status")
    p.add_argument("--param", action="append", metavar="K=V", help="only runs with this param")
    p.add_argument("--sort", metavar="METRIC", help="sort by a metric's last value (ascending)")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--limit", type=count, default=0, metavar="N",
                   help="at most N runs (default 0: all)")
    p.add_argument("--same-as", metavar="RUN", help="runs with the same fingerprint as RUN")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.add_argument("--wide", action="store_true",
                   help="every chosen column, however wide the table gets")
    p.add_argument("--columns", metavar="A,B,...",
                   help="exactly these columns after the id: run fields (project, name, status, "
                        "started, time), param keys (dotted for nested ones) or metric names")
    p.set_defaults(func=cmd_runs)

    p = subparsers.add_parser("show", parents=[common], help="everything recorded about a run",
                              description="Print everything recorded about one run, grouped "
                                          "for reading: params, code, data, environment, "
                                          "metrics, artifacts and events.")
    p.add_argument("run", metavar="RUN", help="run id or unique prefix")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.add_argument("--metrics", action="store_true", help="also print every metric point")
    p.set_defaults(func=cmd_show)
