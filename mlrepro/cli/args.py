"""What every command shares: one-line argument errors, KEY=VALUE pairs, the store, JSON out."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from typing import Iterable

from mlrepro import env
from mlrepro.errors import MlreproError
from mlrepro.store import Store, open_store

STORE_HELP = f"store path or s3:// URI (default ${env.STORE.name} or {env.STORE.default})"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2, like every other bad input."""

    def error(self, message):
        raise MlreproError(f"{message} (see `{self.prog} --help`)")


def parse_value(text: str):
    """`0.1` -> 0.1, `true` -> True, `[1,2]` -> list, anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(pairs: list[str] | None, what: str = "--param") -> dict:
    """`["lr=0.1", "opt=adam"]` -> {"lr": 0.1, "opt": "adam"}; a pair without `=` is refused."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MlreproError(f"{what} {pair!r} is not KEY=VALUE: e.g. {what} lr=0.1")
        out[key] = parse_value(value)
    return out


def store_of(args, *, existing: bool = False) -> Store:
    """The store `--store` names (default `$MLREPRO_STORE`, then ./mlrepro-runs).

    A local path that is a file is refused; with `existing`, so is one that does not
    exist (a command that only reads a store has nothing to read there).
    """
    store = open_store(args.store)
    root = store.root
    if root is not None:
        if os.path.exists(root) and not os.path.isdir(root):
            raise MlreproError(f"--store {root} is a file, not a store directory: give --store "
                               "the directory that holds the runs (or a new one)")
        if existing and not os.path.isdir(root):
            raise MlreproError(f"there is no store at {root}: check --store (or "
                               f"${env.STORE.name}); a store is made by the first run written "
                               "to it")
    return store


def count(text: str) -> int:
    """An argparse type: a whole number >= 0 (`--limit -1` would silently drop a run)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: e.g. 10") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: give 0 (no limit) or a count")
    return value


def check_metric_patterns(patterns: Iterable[str] | None, names: Iterable[str],
                          what: str = "--metric") -> None:
    """Refuse a glob that matches none of the recorded metric `names`, listing them."""
    names = sorted(set(names))
    for pattern in patterns or []:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            known = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            raise MlreproError(f"{what} {pattern!r} matches no metric of these runs: they "
                               f"recorded {known or 'no metrics'}")


def local_store_of(args, why: str) -> Store:
    """The `--store`, which must be a local directory (`why` says what needs one)."""
    store = store_of(args)
    if store.root is None:
        raise MlreproError(f"--store {store.uri} is not a local store: {why}; give --store a "
                           "directory")
    return store


def print_json(value) -> None:
    json.dump(value, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")
