"""The content-addressed object store contract.

A blob's key is the BLAKE3 hash of its bytes (64 hex digits). Implementations
provide a handful of primitives; the base class does hashing, verification,
parallel transfers and manifests once for all of them:

* writes are atomic: a blob becomes visible only once all its bytes are stored
  (temp file + rename, or a completed multipart upload);
* identical content is stored once;
* every read is verified against the hash, and a mismatch raises
  :class:`~keel.exceptions.IntegrityError` naming the object.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import blake3

from keel.exceptions import IntegrityError, InvalidSpecError, NotFoundError

__all__ = ["CHUNK", "BlobRef", "Manifest", "ObjectStore", "hash_bytes", "hash_file"]

CHUNK = 4 * 1024 * 1024
_MMAP_MIN = 8 * 1024 * 1024  # above this, hash with blake3's multi-threaded mmap
DIGEST_LEN = 64


def hash_bytes(data: bytes | memoryview) -> str:
    """BLAKE3 hex digest of ``data``."""
    return blake3.blake3(data).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """BLAKE3 hex digest of a file, multi-threaded for large files."""
    size = Path(path).stat().st_size
    if size >= _MMAP_MIN:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(os.fspath(path))
        return hasher.hexdigest()
    hasher = blake3.blake3()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def check_digest(digest: str) -> str:
    """Validate the shape of a digest before it is used to build a path or key."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        shown = repr(digest) if len(repr(digest)) <= 80 else repr(digest)[:77] + "..."
        raise InvalidSpecError(f"{shown} is not a blob digest (64 lowercase hex digits).")
    return digest


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A stored blob: its digest and size in bytes."""

    digest: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A directory as a mapping of relative POSIX path to blob."""

    entries: Mapping[str, BlobRef]

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted, compact) so equal trees hash equally."""
        body = {p: [r.digest, r.size] for p, r in sorted(self.entries.items())}
        return json.dumps({"version": 1, "entries": body}, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse the canonical JSON form."""
        body = json.loads(data)
        return cls({p: BlobRef(d, s) for p, (d, s) in body["entries"].items()})

    @property
    def total_size(self) -> int:
        """Sum of the sizes of all entries."""
        return sum(r.size for r in self.entries.values())


class _HashingReader:
    """Wraps a binary file, hashing and counting what is read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hasher = blake3.blake3()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hasher.update(data)
        self.size += len(data)
        return data


class ObjectStore(ABC):
    """Content-addressed blob storage; subclasses implement the primitives.

    Implementers provide ``_exists``, ``_size``, ``_store_file`` (atomically
    store a local file under a digest it was verified to have), ``_store_stream``,
    ``_fetch_to`` (copy a blob to a local temp path), ``_iter_raw``,
    ``_delete`` and ``_list``. Constructors store configuration only.
    """

    #: Threads used by :meth:`put_files` and :meth:`get_files`.
    workers: int = 8

    # -- primitives -------------------------------------------------------------------
    @property
    @abstractmethod
    def uri(self) -> str:
        """Where the blobs live."""

    @abstractmethod
    def _exists(self, digest: str) -> bool: ...

    @abstractmethod
    def _size(self, digest: str) -> int: ...

    @abstractmethod
    def _store_file(self, path: Path) -> BlobRef:
        """Store a local file, hashing exactly the bytes stored; return its ref."""

    @abstractmethod
    def _store_stream(self, reader: IO[bytes]) -> BlobRef:
        """Store what ``reader`` yields, hashing exactly the bytes stored."""

    @abstractmethod
    def _fetch_to(self, digest: str, dest: Path) -> str:
        """Write the blob to ``dest`` (a fresh temp file); return the hash of what was written."""

    @abstractmethod
    def _iter_raw(self, digest: str) -> Iterator[bytes]: ...

    @abstractmethod
    def _delete(self, digest: str) -> None: ...

    @abstractmethod
    def _list(self) -> Iterator[str]: ...

    # -- public API ---------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        """True when a blob with this digest is stored."""
        return self._exists(check_digest(digest))

    def size(self, digest: str) -> int:
        """Size in bytes of a stored blob."""
        self._require(digest)
        return self._size(digest)

    def put_file(self, path: str | os.PathLike[str]) -> BlobRef:
        """Store a local file (streamed, never read whole into memory)."""
        p = Path(path)
        if not p.is_file():
            raise InvalidSpecError(f"Cannot store {p}: not a readable file.", path=str(p))
        return self._store_file(p)

    def put_bytes(self, data: bytes) -> BlobRef:
        """Store bytes held in memory (nothing is written if the blob already exists)."""
        import io

        digest = hash_bytes(data)
        if self._exists(digest):  # the hash is known up front: skip the write and fsync
            return BlobRef(digest, len(data))
        return self._store_stream(io.BytesIO(data))

    def put_stream(self, reader: IO[bytes]) -> BlobRef:
        """Store everything a binary file-like object yields."""
        return self._store_stream(reader)

    def put_files(self, paths: Sequence[str | os.PathLike[str]]) -> list[BlobRef]:
        """Store many files in parallel; results are in input order."""
        if len(paths) <= 1:
            return [self.put_file(p) for p in paths]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self.put_file, paths))

    def ingest(self, path: str | os.PathLike[str], digest: str, *, link: bool = False) -> bool:
        """Store a file whose digest the caller computed; True if it was not stored yet.

        What is stored is re-hashed, so a file that changed since it was hashed raises
        :class:`InvalidSpecError` and nothing is stored. Durability may be deferred to
        :meth:`sync` (one flush for a whole batch). ``link`` lets stores on the same
        filesystem hard-link the file instead of copying it.
        """
        if self._exists(check_digest(digest)):
            return False
        # hashed before storing: a blob stored under its real digest must never be
        # deleted here (it may be another version's)
        if hash_file(path) != digest or self.put_file(path).digest != digest:
            raise InvalidSpecError(
                f"{path} changed after it was hashed; nothing was stored. Retry once the file "
                "is no longer being written.",
                path=str(path),
            )
        return True

    def sync(self) -> None:  # noqa: B027 - a no-op by default, not abstract
        """Make every blob stored so far durable (a no-op where writes already are)."""

    def exists_many(self, digests: Iterable[str]) -> set[str]:
        """The subset of ``digests`` that is stored (checked in parallel)."""
        wanted = sorted({check_digest(d) for d in digests})
        if len(wanted) <= 1:
            return {d for d in wanted if self._exists(d)}
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            flags = list(pool.map(self._exists, wanted))
        return {d for d, ok in zip(wanted, flags, strict=True) if ok}

    def get_bytes(self, digest: str) -> bytes:
        """Read a whole blob into memory, verified."""
        self._require(digest)
        data = b"".join(self._iter_raw(digest))
        self._verify(digest, hash_bytes(data))
        return data

    def iter_verified(self, digest: str) -> Iterator[bytes]:
        """Stream a blob's chunks; raises IntegrityError after the last chunk on mismatch.

        Consumers that must not act on unverified bytes should use
        :meth:`get_file` or :meth:`get_bytes` instead.
        """
        self._require(digest)
        hasher = blake3.blake3()
        for chunk in self._iter_raw(digest):
            hasher.update(chunk)
            yield chunk
        self._verify(digest, hasher.hexdigest())

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        """Write a blob to ``dest`` atomically; the file appears only if verified."""
        self._require(digest)
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            actual = self._fetch_to(digest, tmp)
            self._verify(digest, actual)
            tmp.chmod(0o644)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def get_files(self, items: Iterable[tuple[str, str | os.PathLike[str]]]) -> list[Path]:
        """Fetch many (digest, dest) pairs in parallel, each verified and atomic."""
        pairs = list(items)
        if len(pairs) <= 1:
            return [self.get_file(d, p) for d, p in pairs]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda pair: self.get_file(*pair), pairs))

    def delete(self, digest: str) -> None:
        """Remove a blob (no error if absent)."""
        self._delete(check_digest(digest))

    def list_digests(self) -> Iterator[str]:
        """Every stored digest."""
        return self._list()

    def put_manifest(self, manifest: Manifest) -> BlobRef:
        """Store a manifest as a blob of its own."""
        return self.put_bytes(manifest.to_bytes())

    def get_manifest(self, digest: str) -> Manifest:
        """Load a manifest stored with :meth:`put_manifest`."""
        return Manifest.from_bytes(self.get_bytes(digest))

    def verify(self, digest: str) -> None:
        """Re-hash a stored blob; raise IntegrityError if it was altered."""
        for _ in self.iter_verified(digest):
            pass

    # -- helpers ------------------------------------------------------------------------
    def _require(self, digest: str) -> None:
        if not self._exists(check_digest(digest)):
            raise NotFoundError(
                f"Blob {digest} is not in the object store at {self.uri}.", digest=digest
            )

    def _verify(self, digest: str, actual: str) -> None:
        if actual != digest:
            raise IntegrityError(
                f"Blob {digest} in {self.uri} is corrupted: its content hashes to {actual}. "
                "The stored bytes were altered; restore the object from a backup or re-log it.",
                digest=digest,
                actual=actual,
            )
