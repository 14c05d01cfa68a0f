"""The `mlrepro` command line. Exit codes: 0 ok, 1 a failed check, 2 bad input.

argparse only: one module per noun registers its sub-commands and turns the
parsed arguments into plain values for the library functions it calls. Only
`main` maps `MlreproError`s to exit codes and one-line messages.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from mlrepro import env
from mlrepro.cli import diff, get, launch, remote, report, reproduce, runs, store, trace
from mlrepro.cli.args import STORE_HELP, Parser, parse_pairs, parse_value
from mlrepro.errors import MlreproError
from mlrepro.store import default_store_uri

# The nouns, in the order `mlrepro --help` lists their verbs.
NOUNS = (runs, store, get, diff, report, trace, reproduce, remote, launch)

__all__ = ["main", "build_parser", "parse_pairs", "parse_value"]

EXIT_CODES = f"""exit codes:
  0    success (reproduce: the re-run matched, bit for bit or within tolerance)
  1    a check failed: reproduce diverged, was inconclusive or its re-run failed, trace
       found no run that made the file, push/pull/sync/recover skipped a run; or a
       file-system or internal error ({env.DEBUG.name}=1 adds a traceback)
  2    bad input or a refusal: a bad argument, no run or several runs match a prefix, no
       store there, reproduce refused (environment or data differ); one line names the
       problem and the fix
  130  interrupted (Ctrl-C)

`mlrepro COMMAND --help` describes a command; RUN is a run id or any unique prefix of it."""


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, help=STORE_HELP)
    parser = Parser(prog="mlrepro", parents=[common],
                    description="Record, compare, trace and reproduce TensorFlow runs.",
                    epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="verb", parser_class=Parser, title="commands",
                                metavar="COMMAND")
    for noun in NOUNS:
        noun.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for stream in (sys.stdout, sys.stderr):  # a name with lone surrogates prints as \udce9
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
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
        if env.DEBUG.get():
            traceback.print_exc()
        print(f"mlrepro: internal error: {exc!r} (set {env.DEBUG.name}=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
