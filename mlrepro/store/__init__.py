"""Stores: where run records live. A path means the local store; `s3://` the S3 remote.

- `base`: the `Store` contract every store honours, and the write records it takes;
- `query`: which runs a listing keeps and in what order (one rule for every store);
- `local` (+ `index`, `files`): the embedded store, a directory with a SQLite index;
- `points`: a run's metrics summary from its points, for a run whose manifest fell behind;
- `s3`: the same layout under an S3 prefix;
- `transfer`: copying runs between stores, objects first and the manifest last.

`open_store(uri)` picks the implementation by the URI's scheme, in one small registry.
"""

from __future__ import annotations

import os
from typing import Callable

from mlrepro import env
from mlrepro.errors import StoreError
from mlrepro.store.base import (EventsAppend, ManifestWrite, MetricsAppend, ObjectPut, RunFilePut,
                                Store, Write)
from mlrepro.store.query import RunQuery

DEFAULT_STORE = env.STORE.default

__all__ = ["Store", "RunQuery", "open_store", "default_store_uri", "ManifestWrite",
           "MetricsAppend", "EventsAppend", "ObjectPut", "RunFilePut", "Write", "DEFAULT_STORE"]


def _local(uri: str) -> Store:
    from mlrepro.store.local import LocalStore

    return LocalStore(uri[len("file://"):] if uri.startswith("file://") else uri)


def _s3(uri: str) -> Store:
    try:
        from mlrepro.store.s3 import S3Store
    except ImportError as exc:
        raise StoreError(f"the S3 store needs boto3 ({exc}): pip install 'mlrepro[s3]'")
    return S3Store(uri)


# URI scheme -> the store for it; a URI without a scheme is a local directory.
SCHEMES: dict[str, Callable[[str], Store]] = {"file": _local, "s3": _s3}


def default_store_uri(environ=None) -> str:
    """`$MLREPRO_STORE`, else `./mlrepro-runs`."""
    return env.STORE.get(environ)


def open_store(uri: "str | os.PathLike | Store | None" = None) -> Store:
    """The store a URI names: a directory path (local) or `s3://bucket/prefix` (remote)."""
    if isinstance(uri, Store):
        return uri
    uri = default_store_uri() if uri in (None, "") else os.fspath(uri)
    scheme = uri.split("://", 1)[0] if "://" in uri else None
    if scheme is None:
        return _local(uri)
    if scheme not in SCHEMES:
        raise StoreError(f"store URI {uri!r} has an unknown scheme {scheme!r}: "
                         "use a directory path or s3://bucket/prefix")
    return SCHEMES[scheme](uri)
