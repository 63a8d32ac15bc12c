"""Content-addressed object storage (local folder, S3 and other fsspec stores)."""

from __future__ import annotations

from keel.exceptions import NoSuchBackendError
from keel.objects.base import BlobRef, Manifest, ObjectStore, hash_bytes, hash_file
from keel.objects.local import LocalObjectStore

__all__ = [
    "BlobRef",
    "LocalObjectStore",
    "Manifest",
    "ObjectStore",
    "hash_bytes",
    "hash_file",
    "open_object_store",
]

_REMOTE = ("s3", "s3a", "gs", "gcs", "az", "abfs", "memory")


def open_object_store(uri: str, *, s3_endpoint_url: str | None = None) -> ObjectStore:
    """Return the object store for ``uri`` (a folder, ``file://``, ``s3://`` ...)."""
    if "://" not in uri:
        return LocalObjectStore(uri)
    scheme, rest = uri.split("://", 1)
    if scheme == "file":
        return LocalObjectStore(rest)
    if scheme in _REMOTE:
        from keel.objects.remote import FsspecObjectStore, storage_options_for

        return FsspecObjectStore(uri, storage_options=storage_options_for(uri, s3_endpoint_url))
    from keel.exceptions import did_you_mean

    raise NoSuchBackendError(
        f"No object store for scheme '{scheme}' (in {uri!r}).{did_you_mean(scheme, _REMOTE)} "
        f"Available: a local path, file://, {', '.join(s + '://' for s in _REMOTE)}.",
        scheme=scheme,
    )
