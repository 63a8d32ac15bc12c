"""Object store on a local (or mounted) folder."""

# copy_from works on str paths with os functions (cheaper than pathlib per blob)
# ruff: noqa: PTH101, PTH105

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import blake3

from keel.exceptions import InvalidSpecError
from keel.objects.base import CHUNK, BlobRef, ObjectStore, check_digest, hash_file

__all__ = ["LocalObjectStore"]

_OVERLAP_MIN = 4 * 1024 * 1024


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (Linux ``syncfs``; ``sync`` elsewhere)."""
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    syncfs = getattr(ctypes.CDLL(libc_name, use_errno=True), "syncfs", None) if libc_name else None
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(path))
    finally:
        os.close(fd)


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

    def exists_many(self, digests: Iterable[str]) -> set[str]:
        """The stored subset of ``digests``: one ``listdir`` per shard for large queries."""
        wanted = {check_digest(d) for d in digests}
        if len(wanted) < 512:
            return {d for d in wanted if self._exists(d)}
        found: set[str] = set()
        root = os.fspath(self.root)
        for shard in {d[:2] for d in wanted}:
            try:
                names = os.listdir(os.path.join(root, shard))  # noqa: PTH118, PTH208
            except FileNotFoundError:
                continue
            found.update(shard + n for n in names if len(n) == 62)
        return wanted & found

    @staticmethod
    def _intact(final: Path, size: int) -> bool:
        """True if the blob exists with the expected size (one stat, as ``exists``).

        Blobs written without their own fsync (:meth:`ingest`, :meth:`ingest_bytes`)
        are durable only after :meth:`sync`. After a crash before it, ext4's ordered
        mode can leave a renamed blob whose data never reached the disk, and its
        on-disk size is then short; such a blob is rewritten here, never deduplicated
        against, so no later version can reference it.
        """
        try:
            return os.stat(final).st_size == size  # noqa: PTH116 - one syscall, no Path objects
        except FileNotFoundError:
            return False

    def intact_many(self, sizes: Mapping[str, int]) -> set[str]:
        """The digests of ``sizes`` stored with exactly that size (see :meth:`_intact`)."""
        present = self.exists_many(sizes)  # one listdir per shard: most are usually absent
        root = os.fspath(self.root)
        stat = os.stat
        return {d for d in present if stat(f"{root}/{d[:2]}/{d[2:]}").st_size == sizes[d]}

    def blob_path(self, digest: str) -> Path:
        """Where a blob's (read-only) file lives, for callers that link instead of copy."""
        return self._path(check_digest(digest))

    def ingest(self, path: str | os.PathLike[str], digest: str, *, link: bool = False) -> bool:
        """Store a file already hashed to ``digest``, without a per-file fsync.

        The copy (kernel-side ``copy_file_range``) is re-hashed before it is renamed
        into place, so a source that changed since it was hashed raises and nothing
        is stored. With ``link`` the file is hard-linked instead (same filesystem
        only, else copied) and made read-only: the blob *is* the user's file, so
        writing to it in place would corrupt the version (reads still verify). Call
        :meth:`sync` before recording anything that references the blobs.
        """
        final = self._path(check_digest(digest))
        src = Path(path)
        if self._intact(final, src.stat().st_size):
            return False
        tmp = self._shard_tmp(digest)
        try:
            linked = False
            if link:
                try:
                    os.link(src, tmp)
                    linked = True
                except OSError:  # another filesystem or no hard links: copy
                    linked = False
            if not linked:
                shutil.copyfile(src, tmp)
                actual = hash_file(tmp)
                if actual != digest:
                    raise InvalidSpecError(
                        f"{src} changed after it was hashed; nothing was stored. Retry once the "
                        "file is no longer being written.",
                        path=str(src),
                    )
            tmp.chmod(0o444)
            tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def ingest_bytes(self, data: bytes | memoryview, digest: str) -> bool:
        """Store bytes the caller has just hashed to ``digest``, without a per-file fsync.

        The caller must pass the BLAKE3 of exactly ``data`` (keel.data hashes the
        buffer it read, then hands over that same buffer). Written to a temp name in
        the blob's own shard folder and renamed (a same-folder rename is the cheapest
        atomic publish on ext4). Call :meth:`sync` before referencing the blob.
        """
        final = self._path(check_digest(digest))
        if self._intact(final, len(data)):
            return False
        tmp = self._shard_tmp(digest)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def copy_from(self, src: LocalObjectStore, digest: str) -> int:
        """Copy one blob from another local store (a folder remote); returns its size.

        The fast path of push and pull between folders: no existence check (the
        caller listed the destination once with :meth:`exists_many`) and no per-file
        fsync (call :meth:`sync` once afterwards). Small blobs are read once, hashed,
        and exactly those bytes are written; larger ones are copied kernel-side and
        the copy re-hashed. Either way a corrupted source raises
        :class:`~keel.exceptions.IntegrityError` and nothing is published. Call
        :meth:`prepare_shards` first for the digests of the batch.
        """
        check_digest(digest)
        source = os.fspath(src._path(digest))
        fd = os.open(source, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size >= _OVERLAP_MIN:
                data = None
            else:
                chunks = []
                while chunk := os.read(fd, max(size, 1 << 16)):
                    chunks.append(chunk)
                data = b"".join(chunks)
        finally:
            os.close(fd)
        final = os.fspath(self._path(digest))
        tmp = f"{final[:-62]}.{digest[2:]}.{os.getpid()}.{threading.get_ident()}.part"
        try:
            if data is None:
                shutil.copyfile(source, tmp)
                actual = hash_file(tmp)
            else:
                actual = blake3.blake3(data).hexdigest()
                if actual == digest:
                    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(out, view) :]
                    finally:
                        os.close(out)
            if actual != digest:
                src._verify(digest, actual)  # raises IntegrityError naming src
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # noqa: PTH108
            raise
        return size if data is None else len(data)

    def prepare_shards(self, digests: Iterable[str]) -> None:
        """Create the shard folders of ``digests`` once, ahead of a batch of writes."""
        for shard in {d[:2] for d in digests}:
            (self.root / shard).mkdir(parents=True, exist_ok=True)

    def _shard_tmp(self, digest: str) -> Path:
        shard = self.root / digest[:2]
        if not shard.is_dir():
            shard.mkdir(parents=True, exist_ok=True)
        return shard / f".{digest[2:]}.{os.getpid()}.{threading.get_ident()}.part"

    def sync(self) -> None:
        """One ``syncfs`` for every blob ingested since the last call."""
        if self.root.is_dir():
            _syncfs(self.root)

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
                if not blob.name.endswith(".part") and not blob.name.startswith("."):
                    yield sub.name + blob.name
