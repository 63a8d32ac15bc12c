"""Object store on a local (or mounted) folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import blake3

from keel.objects.base import CHUNK, BlobRef, ObjectStore, hash_file

__all__ = ["LocalObjectStore"]

_OVERLAP_MIN = 4 * 1024 * 1024


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalObjectStore(ObjectStore):
    """Blobs as read-only files ``<root>/<d[:2]>/<d[2:]>``.

    A write goes to ``<root>/.tmp`` first, is hashed there (so what is stored is
    exactly what was hashed, even if the source changes meanwhile), fsync'd, and
    renamed into place; a crash leaves at worst an orphan temp file, never a
    visible partial blob.

    Args:
        root: folder of the store; created on first write.
        fsync: flush each new blob to disk before it becomes visible.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync

    def __getstate__(self) -> dict[str, object]:
        return {"root": self.root, "fsync": self.fsync}

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def _tmpdir(self) -> Path:
        tmp = self.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def _exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def _size(self, digest: str) -> int:
        return self._path(digest).stat().st_size

    def _commit(self, tmp: Path, digest: str) -> None:
        final = self._path(digest)
        if final.exists():  # identical content is already stored
            tmp.unlink(missing_ok=True)
            return
        final.parent.mkdir(exist_ok=True)
        tmp.chmod(0o444)
        tmp.replace(final)
        if self.fsync:
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _store_file(self, path: Path) -> BlobRef:
        fd, name = tempfile.mkstemp(dir=self._tmpdir(), suffix=".part")
        os.close(fd)
        tmp = Path(name)
        try:
            shutil.copyfile(path, tmp)  # kernel-side copy (copy_file_range / sendfile)
            if self.fsync and tmp.stat().st_size >= _OVERLAP_MIN:
                # fsync waits on the disk while hashing works the CPUs: do both at once
                with ThreadPoolExecutor(max_workers=1) as pool:
                    synced = pool.submit(_fsync_path, tmp)
                    digest = hash_file(tmp)
                    synced.result()
            else:
                if self.fsync:
                    _fsync_path(tmp)
                digest = hash_file(tmp)
            size = tmp.stat().st_size
            self._commit(tmp, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return BlobRef(digest, size)

    def _store_stream(self, reader: IO[bytes]) -> BlobRef:
        hasher = blake3.blake3()
        size = 0
        fd, name = tempfile.mkstemp(dir=self._tmpdir(), suffix=".part")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := reader.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            digest = hasher.hexdigest()
            self._commit(tmp, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return BlobRef(digest, size)

    def _fetch_to(self, digest: str, dest: Path) -> str:
        shutil.copyfile(self._path(digest), dest)
        return hash_file(dest)

    def _iter_raw(self, digest: str) -> Iterator[bytes]:
        with open(self._path(digest), "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def _delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(digest).unlink()

    def _list(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for blob in sorted(sub.iterdir()):
                if not blob.name.endswith(".part"):
                    yield sub.name + blob.name
