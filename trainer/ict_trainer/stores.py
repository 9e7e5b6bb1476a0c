"""open_store: a location's URI to its Store. Above both implementations, so that neither
storage.py (the Store base and the local folder) nor s3.py (the bucket) imports the other's user."""

from __future__ import annotations

import re

from ict_api.spec import StorageSpec
from ict_trainer.errors import StorageError
from ict_trainer.s3 import S3Store
from ict_trainer.storage import LocalStore, Store, is_s3

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(uri: str, storage: StorageSpec | None = None) -> Store:
    """A LocalStore for a path or file:// URI, an S3Store for s3://bucket/prefix."""
    if is_s3(uri):
        return S3Store(uri, storage)
    scheme = _SCHEME.match(uri)
    if scheme and scheme.group(1).lower() != "file":
        raise StorageError(
            f"unsupported location {uri!r}: use a local path or s3://bucket/prefix "
            "(other S3-compatible stores are reached with s3:// and storage.endpoint)"
        )
    return LocalStore(uri)
