"""`mlrepro remote add|list|remove`, `push`, `pull`, `sync` and `pull-job`: runs between a local
store, S3 remotes and SageMaker jobs."""

from __future__ import annotations

import sys

from mlrepro import env
from mlrepro.aws.job_output import import_job_output
from mlrepro.aws.remote import (TransferSummary, add_remote, load_remotes, pull, push,
                                remove_remote, resolve_remote, sync)
from mlrepro.cli.args import local_store_of
from mlrepro.errors import MlreproError, StoreError
from mlrepro.store import Store, open_store

_WHY_LOCAL = "push and pull move runs between a local directory and a remote"


def _local(args) -> Store:
    return local_store_of(args, _WHY_LOCAL)


def _remote(args, local: Store) -> Store:
    return open_store(resolve_remote(local, getattr(args, "remote", None)))


def _report(summary: TransferSummary, verb: str, where: str) -> int:
    for run_id, problem in summary.problems:
        print(f"skipped {run_id}: {problem}", file=sys.stderr)
    print(summary.line(verb, where))
    return 1 if summary.problems else 0


def cmd_remote_add(args) -> int:
    data = add_remote(_local(args), args.name, args.uri, default=args.default)
    mark = " (default)" if data["default"] == args.name else ""
    print(f"remote {args.name} -> {data['remotes'][args.name]['uri']}{mark}")
    return 0


def cmd_remote_list(args) -> int:
    data = load_remotes(_local(args))
    if not data["remotes"]:
        print("no remotes: add one with `mlrepro remote add NAME s3://bucket/prefix`")
        return 0
    for name in sorted(data["remotes"]):
        mark = "  (default)" if name == data.get("default") else ""
        print(f"{name}\t{data['remotes'][name]['uri']}{mark}")
    return 0


def cmd_remote_remove(args) -> int:
    remove_remote(_local(args), args.name)
    print(f"removed remote {args.name}")
    return 0


def cmd_remote(args) -> int:
    raise MlreproError("`mlrepro remote` needs a command: add, list or remove (see `mlrepro "
                       "remote --help`)")


def cmd_push(args) -> int:
    local = _local(args)
    remote = _remote(args, local)
    return _report(push(local, remote, args.runs or None), "pushed", f"to {remote.uri}")


def cmd_pull(args) -> int:
    local = _local(args)
    remote = _remote(args, local)
    return _report(pull(local, remote, args.runs or None), "pulled", f"from {remote.uri}")


def cmd_sync(args) -> int:
    local = _local(args)
    remote = _remote(args, local)
    pushed, pulled = sync(local, remote)
    code = _report(pushed, "pushed", f"to {remote.uri}")
    return max(code, _report(pulled, "pulled", f"from {remote.uri}"))


def cmd_pull_job(args) -> int:
    local = _local(args)
    summary, sources = import_job_output(args.source, local)
    if not sources:
        raise StoreError(f"no mlrepro runs found in {args.source}: the job wrote none, or "
                         "its output is elsewhere (give the job's output.tar.gz or model.tar.gz)")
    return _report(summary, "imported", f"from {', '.join(sources)}")


def register(subparsers, common) -> None:
    """Add `remote`, `push`, `pull`, `sync` and `pull-job` to the command line."""
    p = subparsers.add_parser("remote", parents=[common], help="name S3 remotes",
                              description="Name the S3 remotes that push, pull and sync use "
                                          "(kept in the local store).")
    sub = p.add_subparsers(dest="remote_verb", parser_class=type(p), title="commands",
                           metavar="COMMAND")
    p.set_defaults(func=cmd_remote)
    a = sub.add_parser("add", parents=[common], help="name an S3 remote",
                       description="Name an S3 remote: mlrepro remote add team "
                                   "s3://bucket/prefix")
    a.add_argument("name", metavar="NAME", help="the remote's name, e.g. team")
    a.add_argument("uri", metavar="URI",
                   help="s3://bucket/prefix (credentials come from the boto3 chain)")
    a.add_argument("--default", action="store_true", help="make it the default remote")
    a.set_defaults(func=cmd_remote_add)
    a = sub.add_parser("list", parents=[common], help="list remotes",
                       description="List the named remotes and which one is the default.")
    a.set_defaults(func=cmd_remote_list)
    a = sub.add_parser("remove", parents=[common], help="forget a remote",
                       description="Forget a named remote (nothing on S3 is deleted).")
    a.add_argument("name", metavar="NAME", help="the remote's name")
    a.set_defaults(func=cmd_remote_remove)

    def with_remote(parser):
        parser.add_argument("--remote", metavar="NAME|URI",
                            help=f"remote name or s3:// URI (default: ${env.REMOTE.name}, then "
                                 "the default remote)")
        return parser

    p = with_remote(subparsers.add_parser("push", parents=[common],
                                          help="send runs to the remote",
                                          description="Send local runs (and the objects they "
                                                      "name) to an S3 remote. Exit 1 if a run "
                                                      "was skipped."))
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="run ids or prefixes (default: every local run)")
    p.set_defaults(func=cmd_push)
    p = with_remote(subparsers.add_parser("pull", parents=[common],
                                          help="fetch runs from the remote",
                                          description="Fetch runs (and the objects they name) "
                                                      "from an S3 remote into the local store. "
                                                      "Exit 1 if a run was skipped."))
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="run ids or prefixes (default: every remote run)")
    p.set_defaults(func=cmd_pull)
    p = with_remote(subparsers.add_parser("sync", parents=[common],
                                          help="push then pull everything that differs",
                                          description="Push the local runs the remote lacks, "
                                                      "then pull the remote runs the local "
                                                      "store lacks. Exit 1 if a run was "
                                                      "skipped."))
    p.set_defaults(func=cmd_sync)
    p = subparsers.add_parser("pull-job", parents=[common],
                              help="import the runs a SageMaker job wrote to its output",
                              description="Import into the local store the runs a SageMaker "
                                          "training job wrote to its output.")
    p.add_argument("source", metavar="SOURCE",
                   help="s3://.../output/ (or .../output.tar.gz, .../model.tar.gz), a local "
                        "tar.gz or directory, or a training job name")
    p.set_defaults(func=cmd_pull_job)
