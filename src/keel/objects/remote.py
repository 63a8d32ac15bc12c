"""Object store on any fsspec filesystem (S3 and S3-compatible servers, GCS, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import blake3

from keel.exceptions import BackendUnavailableError, InvalidSpecError
from keel.objects.base import CHUNK, BlobRef, ObjectStore, hash_file

__all__ = ["FsspecObjectStore"]


class FsspecObjectStore(ObjectStore):
    """Blobs as objects ``<root>/<d[:2]>/<d[2:]>`` in an fsspec filesystem.

    Object stores have no rename, so atomicity comes from the protocol: a
    single PUT or a completed multipart upload is all-or-nothing, and an upload
    that fails midway is aborted (``discard``) so no partial object is visible.
    The source is hashed first (to know the key) and again while it streams; if
    the two differ, the file changed during the upload and the object is removed.

    Args:
        uri: e.g. ``s3://bucket/prefix``.
        storage_options: passed to ``fsspec.filesystem`` (endpoint, credentials ...).
    """

    def __init__(self, uri: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self._uri = uri.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self._fs: Any = None

    def __getstate__(self) -> dict[str, object]:
        return {"_uri": self._uri, "storage_options": self.storage_options, "_fs": None}

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def fs(self) -> Any:
        """The fsspec filesystem, created on first use."""
        if self._fs is None:
            import fsspec

            protocol = self._uri.split("://", 1)[0]
            try:
                self._fs = fsspec.filesystem(protocol, **self.storage_options)
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"The '{protocol}' object store needs an extra: pip install 'keel[s3]' "
                    f"({exc}).",
                ) from exc
        return self._fs

    def _key(self, digest: str) -> str:
        return f"{self._uri}/{digest[:2]}/{digest[2:]}"

    def _exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._key(digest)))

    def _size(self, digest: str) -> int:
        return int(self.fs.size(self._key(digest)))

    def _upload(self, key: str, reader: IO[bytes]) -> tuple[str, int]:
        hasher = blake3.blake3()
        size = 0
        out = self.fs.open(key, "wb", block_size=max(CHUNK, 5 * 1024 * 1024))
        try:
            while chunk := reader.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
        except BaseException:
            discard = getattr(out, "discard", None)
            if discard is not None:
                discard()  # abort the multipart upload: nothing becomes visible
            raise
        out.close()
        return hasher.hexdigest(), size

    def _store_file(self, path: Path) -> BlobRef:
        digest = hash_file(path)
        size = path.stat().st_size
        if self._exists(digest):
            return BlobRef(digest, size)
        key = self._key(digest)
        with path.open("rb") as fh:
            actual, size = self._upload(key, fh)
        if actual != digest:
            self.fs.rm(key)
            raise InvalidSpecError(
                f"{path} changed while it was being uploaded; nothing was stored. "
                "Retry once the file is no longer being written.",
                path=str(path),
            )
        return BlobRef(digest, size)

    def _store_stream(self, reader: IO[bytes]) -> BlobRef:
        # The key is the hash, known only at the end: spool to a local temp file first.
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".part") as tmp:
            while chunk := reader.read(CHUNK):
                tmp.write(chunk)
            tmp.flush()
            return self._store_file(Path(tmp.name))

    def _fetch_to(self, digest: str, dest: Path) -> str:
        hasher = blake3.blake3()
        with self.fs.open(self._key(digest), "rb", block_size=CHUNK) as src, dest.open("wb") as out:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
        return hasher.hexdigest()

    def _iter_raw(self, digest: str) -> Iterator[bytes]:
        with self.fs.open(self._key(digest), "rb", block_size=CHUNK) as src:
            while chunk := src.read(CHUNK):
                yield chunk

    def _delete(self, digest: str) -> None:
        key = self._key(digest)
        if self.fs.exists(key):
            self.fs.rm(key)

    def _list(self) -> Iterator[str]:
        root = self._uri.split("://", 1)[1]
        try:
            found = self.fs.find(self._uri)
        except FileNotFoundError:
            return
        for key in sorted(found):
            rel = key[len(root) :].strip("/")
            parts = rel.split("/")
            if len(parts) == 2 and len(parts[0]) == 2:
                yield parts[0] + parts[1]


def storage_options_for(uri: str, endpoint_url: str | None) -> dict[str, Any]:
    """fsspec options for a URI given keel's settings."""
    if uri.startswith("s3://") and endpoint_url:
        return {"endpoint_url": endpoint_url}
    # Credentials come from the standard AWS variables and files.
    return {}
