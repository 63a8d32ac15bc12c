"""``/api/v1/blobs/{digest}``: content-addressed blobs, streamed both ways.

``PUT`` streams the request body into the object store and hashes it on the
way; if the content does not hash to the digest in the URL, the store's write
is aborted before it commits (nothing is stored) and the answer is 422.
``GET`` streams the stored bytes, verified as they are read; clients verify
again on their side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.from_thread
import anyio.to_thread
import blake3
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from keel.exceptions import IntegrityError
from keel.objects.base import check_digest
from keel.server.deps import ObjectsDep
from keel.server.schemas import BlobOut, BlobsExist, BlobsPresent

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/blobs", tags=["blobs"])


class _VerifyingBody:
    """A blocking ``read()`` over the request body, for the object store's worker thread.

    At the end of the body it raises IntegrityError, instead of reporting the
    end, unless the content hashed to ``digest``; object stores abort the
    write when ``read`` raises, so a mismatching upload leaves nothing behind.
    """

    def __init__(self, chunks: AsyncIterator[bytes], digest: str) -> None:
        self._chunks = chunks
        self._digest = digest
        self._buffer = bytearray()
        self._hasher = blake3.blake3()
        self._size = 0
        self._eof = False

    async def _next(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buffer) < n):
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                self._eof = True
            else:
                self._buffer += chunk
        end = len(self._buffer) if n < 0 else min(n, len(self._buffer))
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        self._hasher.update(data)
        self._size += len(data)
        if not data and self._eof:
            actual = self._hasher.hexdigest()
            if actual != self._digest:
                raise IntegrityError(
                    f"The uploaded content ({self._size} bytes) hashes to {actual}, not to "
                    f"{self._digest} named in the URL; nothing was stored. Hash the bytes with "
                    "BLAKE3 and upload them under that digest.",
                    digest=self._digest,
                    actual=actual,
                )
        return data


@router.post("/exists")
def blobs_exist(body: BlobsExist, objects: ObjectsDep) -> BlobsPresent:
    """Which of up to 10,000 digests are stored: one request instead of one HEAD each."""
    for digest in body.digests:
        check_digest(digest)
    return BlobsPresent(present=sorted(objects.exists_many(body.digests)))


@router.head("/{digest}")
def head_blob(digest: str, objects: ObjectsDep) -> Response:
    """200 with the size as Content-Length if the blob is stored, else 404."""
    size = objects.size(digest)
    return Response(headers={"Content-Length": str(size), "ETag": f'"{digest}"'})


@router.get(
    "/{digest}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_blob(digest: str, objects: ObjectsDep) -> StreamingResponse:
    """The blob's bytes, streamed (verified against the digest as they are read)."""
    size = objects.size(digest)
    return StreamingResponse(
        objects.iter_verified(digest),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "ETag": f'"{digest}"',
            "Cache-Control": "public, max-age=31536000, immutable",  # content-addressed
        },
    )


@router.put("/{digest}", status_code=201)
async def put_blob(digest: str, request: Request, objects: ObjectsDep) -> BlobOut:
    """Store the request body (streamed, any size) under its BLAKE3 digest."""
    check_digest(digest)
    body = _VerifyingBody(request.stream(), digest)
    ref = await anyio.to_thread.run_sync(objects.put_stream, body)  # type: ignore[arg-type]
    return BlobOut(digest=ref.digest, size=ref.size)


@router.get("", response_class=StreamingResponse, responses={200: {"content": {"text/plain": {}}}})
def list_blobs(objects: ObjectsDep) -> StreamingResponse:
    """Every stored digest, one per line (streamed)."""

    def lines() -> Iterator[str]:
        for digest in objects.list_digests():
            yield digest + "\n"

    return StreamingResponse(lines(), media_type="text/plain")
