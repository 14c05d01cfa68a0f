"""What every command shares: one-line argument errors, KEY=VALUE pairs, the store, JSON out."""

from __future__ import annotations

import argparse
import json
import sys

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


def store_of(args) -> Store:
    """The store `--store` names (default `$MLREPRO_STORE`, then ./mlrepro-runs)."""
    return open_store(args.store)


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
