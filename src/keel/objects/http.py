"""Object store of a keel server, over its blob endpoints (``/api/v1/blobs/{digest}``).

Uploads stream from the file (never read whole into memory) after the file is
hashed, so the digest is known for the URL; the server hashes again while it
stores and refuses the upload if the content does not match, leaving nothing
behind. Downloads stream to the temp file the base class provides and are
verified there, exactly as for local and S3 stores.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import blake3

from keel.exceptions import (
    BackendUnavailableError,
    IntegrityError,
    InvalidSpecError,
    NotFoundError,
    PermissionDeniedError,
)
from keel.objects.base import CHUNK, BlobRef, ObjectStore, check_digest, hash_file

__all__ = ["HttpObjectStore"]

_SPOOL_MAX = 8 * 1024 * 1024  # put_bytes / put_stream spool in memory up to this size
_EXISTS_BATCH = 10_000  # digests per POST /blobs/exists (the server's limit)


class HttpObjectStore(ObjectStore):
    """Blobs stored by a keel server.

    Args:
        uri: the server, e.g. ``http://127.0.0.1:5000`` (``KEEL_TRACKING_URI``).
        **options: :class:`~keel.store.rest.ApiClient` options (timeouts, retries, transport).
    """

    def __init__(self, uri: str, **options: Any) -> None:
        from keel.store.rest import ApiClient

        self.server = uri.rstrip("/")
        self.api = ApiClient(self.server, **options)

    @property
    def uri(self) -> str:
        return f"{self.server}/api/v1/blobs"

    def close(self) -> None:
        """Close pooled connections."""
        self.api.close()

    def _head(self, digest: str) -> int | None:
        try:
            response = self.api.send("HEAD", f"/blobs/{digest}")
        except NotFoundError:
            return None
        return int(response.headers["content-length"])

    def _exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def exists_many(self, digests: Iterable[str]) -> set[str]:
        """The stored subset of ``digests``: one request per 10,000, not one HEAD each."""
        wanted = sorted({check_digest(d) for d in digests})
        present: set[str] = set()
        for start in range(0, len(wanted), _EXISTS_BATCH):
            batch = wanted[start : start + _EXISTS_BATCH]
            answer = self.api.call("POST", "/blobs/exists", {"digests": batch}, idempotent=True)
            present.update(answer["present"])
        return present & set(wanted)

    def ingest(self, path: str | os.PathLike[str], digest: str, *, link: bool = False) -> bool:
        """Upload a file the caller hashed to ``digest`` (after :meth:`exists_many`).

        No HEAD and no second hash on this side: the server hashes the upload and
        stores nothing unless it matches ``digest``, so a file that changed since it
        was hashed raises :class:`InvalidSpecError`. ``link`` does not apply over HTTP.
        """
        p = Path(path)
        check_digest(digest)
        with p.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            self._upload(digest, size, fh, str(p))
        return True

    def _size(self, digest: str) -> int:
        size = self._head(digest)
        if size is None:
            raise NotFoundError(f"Blob {digest} is not in the object store at {self.uri}.")
        return size

    def _upload(self, digest: str, size: int, source: IO[bytes], label: str) -> BlobRef:
        start = source.tell()

        def body() -> Iterator[bytes]:
            source.seek(start)  # each attempt sends the whole content again
            while chunk := source.read(CHUNK):
                yield chunk

        try:
            data = self.api.send(
                "PUT",
                f"/blobs/{digest}",
                content=body,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                },
            ).json()
        except IntegrityError as exc:
            raise InvalidSpecError(
                f"{label} changed while it was being uploaded; nothing was stored. "
                "Retry once the file is no longer being written.",
                path=label,
            ) from exc
        return BlobRef(data["digest"], int(data["size"]))

    def _store_file(self, path: Path) -> BlobRef:
        digest = hash_file(path)
        size = path.stat().st_size
        if self._exists(digest):  # content-addressed: already stored, nothing to send
            return BlobRef(digest, size)
        with path.open("rb") as fh:
            return self._upload(digest, size, fh, str(path))

    def _store_stream(self, reader: IO[bytes]) -> BlobRef:
        # The URL names the digest, known only at the end: spool (in memory while small).
        hasher = blake3.blake3()
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX) as spool:
            while chunk := reader.read(CHUNK):
                hasher.update(chunk)
                spool.write(chunk)
                size += len(chunk)
            digest = hasher.hexdigest()
            if self._exists(digest):
                return BlobRef(digest, size)
            spool.seek(0)
            return self._upload(digest, size, spool, "the stream")

    def _fetch_to(self, digest: str, dest: Path) -> str:
        hasher = blake3.blake3()
        with dest.open("wb") as out:
            for chunk in self._iter_raw(digest):
                hasher.update(chunk)
                out.write(chunk)
        return hasher.hexdigest()

    def _iter_raw(self, digest: str) -> Iterator[bytes]:
        import httpx

        # identity: blobs are sent as stored, never re-compressed on the way
        response = self.api.send(
            "GET", f"/blobs/{digest}", headers={"Accept-Encoding": "identity"}, stream=True
        )
        try:
            yield from response.iter_bytes()  # as received: no re-chunking copies
        except httpx.TransportError as exc:
            raise BackendUnavailableError(
                f"The download of blob {digest} from {self.uri} broke off ({exc}); retry.",
                digest=digest,
            ) from exc
        finally:
            response.close()

    def _delete(self, digest: str) -> None:
        raise PermissionDeniedError(
            f"Blobs cannot be deleted through the keel server at {self.server}: a blob may be "
            "shared by many runs and versions. Delete unreferenced blobs on the server's own "
            "object store instead.",
            digest=digest,
        )

    def _list(self) -> Iterator[str]:
        import httpx

        response = self.api.send("GET", "/blobs", stream=True)
        try:
            for line in response.iter_lines():
                if line:
                    yield line
        except httpx.TransportError as exc:
            raise BackendUnavailableError(
                f"Listing the blobs of {self.uri} broke off ({exc}); retry."
            ) from exc
        finally:
            response.close()
