"""Stores: where run records live. A path means the local store; `s3://` the S3 remote."""

from __future__ import annotations

import os

from mlrepro.errors import StoreError
from mlrepro.store.base import (EventsAppend, ManifestWrite, MetricsAppend, ObjectPut, RunFilePut,
                                Store, Write)

DEFAULT_STORE = "./mlrepro-runs"
STORE_ENV = "MLREPRO_STORE"

__all__ = ["Store", "open_store", "default_store_uri", "ManifestWrite", "MetricsAppend",
           "EventsAppend", "ObjectPut", "RunFilePut", "Write", "DEFAULT_STORE", "STORE_ENV"]


def default_store_uri(environ=None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(STORE_ENV) or DEFAULT_STORE


def open_store(uri: "str | Store | None" = None) -> Store:
    """The store a URI names: a directory path (local) or `s3://bucket/prefix` (remote)."""
    if isinstance(uri, Store):
        return uri
    uri = default_store_uri() if uri in (None, "") else os.fspath(uri)
    if uri.startswith("s3://"):
        try:
            from mlrepro.store.s3 import S3Store
        except ImportError as exc:
            raise StoreError(f"the S3 store needs boto3 ({exc}): pip install 'mlrepro[s3]'")
        return S3Store(uri)
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise StoreError(f"store URI {uri!r} has an unknown scheme {scheme!r}: "
                         "use a directory path or s3://bucket/prefix")
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    from mlrepro.store.local import LocalStore

    return LocalStore(uri)
