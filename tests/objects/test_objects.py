"""Object-store conformance: local folder and a real S3 API server (moto)."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import pytest

from keel.exceptions import IntegrityError, NoSuchBackendError, NotFoundError
from keel.objects import LocalObjectStore, Manifest, ObjectStore, hash_bytes, open_object_store
from keel.objects.remote import FsspecObjectStore


def test_put_get_roundtrip_and_dedup(objects: ObjectStore, tmp_path: Path) -> None:
    ref = objects.put_bytes(b"hello")
    assert ref.digest == hash_bytes(b"hello") and ref.size == 5
    assert objects.exists(ref.digest)
    assert objects.get_bytes(ref.digest) == b"hello"
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello")
    assert objects.put_file(src) == ref  # same content, same blob
    assert list(objects.list_digests()) == [ref.digest]
    out = objects.get_file(ref.digest, tmp_path / "out" / "a.txt")
    assert out.read_bytes() == b"hello"
    assert objects.size(ref.digest) == 5


def test_empty_blob(objects: ObjectStore, tmp_path: Path) -> None:
    ref = objects.put_bytes(b"")
    assert objects.get_bytes(ref.digest) == b""
    assert objects.get_file(ref.digest, tmp_path / "e").read_bytes() == b""


def test_missing_blob_is_not_found(objects: ObjectStore) -> None:
    with pytest.raises(NotFoundError, match="not in the object store"):
        objects.get_bytes("0" * 64)


def _corrupt(objects: ObjectStore, digest: str) -> None:
    if isinstance(objects, LocalObjectStore):
        path = objects.root / digest[:2] / digest[2:]
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        assert isinstance(objects, FsspecObjectStore)
        key = f"{objects.uri}/{digest[:2]}/{digest[2:]}"
        data = bytearray(objects.fs.cat_file(key))
        data[len(data) // 2] ^= 0x01
        objects.fs.pipe_file(key, bytes(data))


def test_flipped_byte_is_detected_on_every_read(objects: ObjectStore, tmp_path: Path) -> None:
    ref = objects.put_bytes(os.urandom(100_000))
    _corrupt(objects, ref.digest)
    with pytest.raises(IntegrityError, match=ref.digest) as info:
        objects.get_bytes(ref.digest)
    assert info.value.digest == ref.digest  # type: ignore[attr-defined]
    dest = tmp_path / "dest.bin"
    with pytest.raises(IntegrityError):
        objects.get_file(ref.digest, dest)
    assert not dest.exists()  # an unverified file never appears
    assert list(dest.parent.glob(".dest.bin.*")) == []
    with pytest.raises(IntegrityError):
        objects.verify(ref.digest)


class _Exploding(io.RawIOBase):
    """A reader that fails after yielding ``limit`` bytes (a dying upload)."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionError("network went away")
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return b"x" * n


def test_interrupted_upload_leaves_no_visible_object(objects: ObjectStore) -> None:
    with pytest.raises(ConnectionError):
        objects.put_stream(_Exploding(12 * 1024 * 1024))  # beyond one multipart part
    assert list(objects.list_digests()) == []
    if isinstance(objects, LocalObjectStore):
        assert list((objects.root / ".tmp").iterdir()) == []


def test_large_file_streams_without_loading_into_memory(
    objects: ObjectStore, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    size = 80 * 1024 * 1024  # streaming keeps the peak flat (~30 MiB with s3fs parts)
    with src.open("wb") as fh:
        for _ in range(size // (1024 * 1024)):
            fh.write(os.urandom(1024 * 1024))
    warm = objects.put_bytes(b"warm-up")  # first use loads client libraries
    objects.get_file(warm.digest, tmp_path / "warm")
    tracemalloc.start()
    try:
        ref = objects.put_file(src)
        objects.get_file(ref.digest, tmp_path / "back.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 2, f"peak Python memory {peak} for a {size}-byte file"
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_parallel_transfers(objects: ObjectStore, tmp_path: Path) -> None:
    files = []
    for i in range(20):
        p = tmp_path / "in" / f"f{i}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(os.urandom(1000) + bytes([i]))
        files.append(p)
    refs = objects.put_files(files)
    assert len({r.digest for r in refs}) == 20
    outs = objects.get_files((r.digest, tmp_path / "out" / f"f{i}.bin") for i, r in enumerate(refs))
    assert [o.read_bytes() for o in outs] == [f.read_bytes() for f in files]


def test_manifest_roundtrip(objects: ObjectStore) -> None:
    a = objects.put_bytes(b"a")
    b = objects.put_bytes(b"bb")
    m = Manifest({"dir/b.txt": b, "a.txt": a})
    ref = objects.put_manifest(m)
    assert objects.get_manifest(ref.digest) == m
    assert m.total_size == 3
    # canonical: the same tree in another order hashes the same
    assert objects.put_manifest(Manifest({"a.txt": a, "dir/b.txt": b})) == ref


def test_open_object_store_by_uri(tmp_path: Path) -> None:
    assert isinstance(open_object_store(str(tmp_path)), LocalObjectStore)
    assert isinstance(open_object_store(f"file://{tmp_path}"), LocalObjectStore)
    assert isinstance(open_object_store("s3://bucket/x"), FsspecObjectStore)
    with pytest.raises(NoSuchBackendError, match="Did you mean 's3'"):
        open_object_store("s4://bucket")


def test_bad_digest_is_rejected(objects: ObjectStore) -> None:
    from keel.exceptions import InvalidSpecError

    with pytest.raises(InvalidSpecError, match="not a blob digest"):
        objects.exists("../../etc/passwd")
