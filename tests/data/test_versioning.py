"""Dataset versioning end to end on real stores: SQLite and PostgreSQL metadata,
local-folder and S3 (moto) object stores."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import keel
from keel.data import _api, _tree
from keel.exceptions import IntegrityError, InvalidSpecError, InvalidStateError, NotFoundError
from keel.objects import LocalObjectStore, ObjectStore
from keel.objects.base import hash_bytes
from keel.store import schema as t
from keel.store.sql import SqlStore
from keel.tracking import fluent
from keel.tracking.client import Client

OLD = 1_600_000_000  # an mtime well in the past: not "racily clean"
_TICK = itertools.count(1)


@pytest.fixture
def client(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """The fluent API's client on each metadata backend, local objects under KEEL_HOME."""
    monkeypatch.setenv("KEEL_STORE_URI", store_url)
    fluent._reset()
    yield fluent.get_client()


def _write(root: Path, files: dict[str, bytes], *, old: bool = True) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if old:  # a distinct past mtime per write, as a real edit would have
            stamp = OLD + next(_TICK)
            os.utime(p, (stamp, stamp))
    return root


def _tree_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _blobs(client: Client) -> set[str]:
    return set(client.objects.list_digests())


FILES = {"a.csv": b"x,y\n1,2\n", "sub/b.bin": b"\x00" * 1000, "sub/deep/c.txt": b"hello"}


class HashCounter:
    """Counts files hashed by the working-tree code."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = _tree.read_and_hash

        def counting(path: str, size: int) -> tuple[str, bytes | None]:
            self.calls.append(path)
            return real(path, size)

        monkeypatch.setattr(_tree, "read_and_hash", counting)


# -- add, dedup, state cache ------------------------------------------------------------------
def test_add_versions_and_dedups_across_versions_and_datasets(
    client: Client, tmp_path: Path
) -> None:
    data = _write(tmp_path / "data", FILES)
    v1 = keel.data.add(data, message="first")
    assert (v1.name, v1.version, v1.kind, v1.file_count) == ("data", 1, "files", 3)
    assert v1.total_bytes == sum(len(b) for b in FILES.values())
    blobs_v1 = _blobs(client)
    assert len(blobs_v1) == 4  # three files + the manifest

    again = keel.data.add(data)  # unchanged content: no new version
    assert again.version == 1 and not again.created

    _write(data, {"a.csv": b"x,y\n1,3\n"})
    v2 = keel.data.add(data)
    assert v2.version == 2 and v2.manifest_digest != v1.manifest_digest
    assert len(_blobs(client)) == len(blobs_v1) + 2  # only the changed file and a new manifest

    copy = _write(tmp_path / "copy", FILES)  # same content, another dataset
    before = _blobs(client)
    v_other = keel.data.add(copy, name="other")
    assert v_other.manifest_digest == v1.manifest_digest
    assert _blobs(client) == before  # nothing stored twice

    assert [v.version for v in keel.data.versions("data")] == [1, 2]
    listing = {i.name: i for i in keel.data.list_datasets()}
    assert listing["data"].version_count == 2 and listing["data"].latest is not None
    assert listing["data"].latest.version == 2
    assert keel.data.get_version("data").version == 2
    assert keel.data.get_version("data@1").message == "first"


def test_single_file_dataset(client: Client, tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights" * 100)
    v = keel.data.add(f)
    assert (v.name, v.file_count) == ("model.bin", 1)
    f.write_bytes(b"other")
    with pytest.raises(InvalidStateError, match="uncommitted"):
        keel.data.checkout("model.bin@1")
    target = keel.data.checkout("model.bin@1", force=True)
    assert target == f and f.read_bytes() == b"weights" * 100
    got = keel.data.get("model.bin@1")
    assert got.read_bytes() == b"weights" * 100 and got.name == "model.bin"


def test_state_cache_rehashes_only_changed_files(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _write(tmp_path / "data", {f"f{i:03d}.txt": f"file {i}".encode() for i in range(200)})
    counter = HashCounter(monkeypatch)
    keel.data.add(data)
    assert len(counter.calls) == 200

    counter.calls.clear()
    (report,) = keel.data.status(data)
    assert report.changes.clean and report.hashed == 0 and counter.calls == []
    saves: list[str] = []
    real_save = _tree.StateDB.save

    def counting_save(self: _tree.StateDB, st: _tree.TreeState) -> None:
        saves.append(st.root)
        real_save(self, st)

    monkeypatch.setattr(_tree.StateDB, "save", counting_save)
    assert keel.data.add(data).version == 1 and counter.calls == []  # a no-op add hashes nothing
    assert saves == []  # ... and leaves the state file alone

    _write(data, {"f007.txt": b"changed!", "f100.txt": b"changed too"})
    os.utime(data / "f100.txt", (OLD + 5, OLD + 5))
    (report,) = keel.data.status(data)
    assert sorted(Path(p).name for p in counter.calls) == ["f007.txt", "f100.txt"]
    assert report.changes.modified == ["f007.txt", "f100.txt"]

    counter.calls.clear()
    keel.data.status(data)  # status remembered what it hashed
    assert counter.calls == []
    saves.clear()
    assert keel.data.add(data).version == 2 and saves == [str(data)]  # a real add saves


def test_racily_clean_files_are_not_cached(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", {"new.txt": b"just written"}, old=False)
    keel.data.add(data)
    state = _api._state(client.settings).load(str(data))
    assert "new.txt" in state.base and "new.txt" not in state.cache


def test_status_modified_added_deleted(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    keel.data.add(data)
    _write(data, {"a.csv": b"changed", "new/file.txt": b"new"})
    (data / "sub" / "deep" / "c.txt").unlink()
    (data / "sub" / "b.bin").chmod(0o755)  # a mode change is a modification
    (report,) = keel.data.status("data")  # by dataset name
    assert report.changes.to_dict() == {
        "added": ["new/file.txt"],
        "modified": ["a.csv", "sub/b.bin"],
        "deleted": ["sub/deep/c.txt"],
    }
    assert report.name == "data" and report.version == 1
    assert [r.changes for r in keel.data.status()] == [report.changes]  # every tracked tree
    with pytest.raises(NotFoundError, match="No tracked path"):
        keel.data.status("never-added")


def test_diff_between_versions(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    keel.data.add(data)
    _write(data, {"a.csv": b"changed", "z.txt": b"z"})
    (data / "sub" / "b.bin").unlink()
    keel.data.add(data)
    changes = keel.data.diff("data@1", "data@2")
    assert changes.to_dict() == {
        "added": ["z.txt"],
        "modified": ["a.csv"],
        "deleted": ["sub/b.bin"],
    }
    assert keel.data.diff("data@2", "data@latest").clean
    with pytest.raises(NotFoundError, match="no version 7"):
        keel.data.diff("data@1", "data@7")
    with pytest.raises(InvalidSpecError, match="not valid"):
        keel.data.diff("data@x", "data@1")


# -- checkout and get -------------------------------------------------------------------------
def test_checkout_switches_versions_and_status_is_clean(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    keel.data.add(data)
    _write(data, {"a.csv": b"v2", "extra.txt": b"more"})
    keel.data.add(data)

    assert keel.data.checkout("data@1") == data
    assert _tree_of(data) == FILES
    (report,) = keel.data.status(data)
    assert report.changes.clean and report.version == 1
    assert report.hashed == 0  # checked-out files are trusted by the state cache at once

    keel.data.checkout("data@2")
    assert _tree_of(data)["extra.txt"] == b"more" and _tree_of(data)["a.csv"] == b"v2"
    other = keel.data.checkout("data@1", tmp_path / "elsewhere")
    assert _tree_of(other) == FILES
    assert not [p for p in tmp_path.iterdir() if "keel-tmp" in p.name]


def test_checkout_refuses_to_lose_changes(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    keel.data.add(data)
    _write(data, {"a.csv": b"unsaved work"})
    with pytest.raises(InvalidStateError, match="uncommitted change"):
        keel.data.checkout("data@1")
    assert (data / "a.csv").read_bytes() == b"unsaved work"
    keel.data.checkout("data@1", force=True)
    assert (data / "a.csv").read_bytes() == FILES["a.csv"]

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("mine")
    with pytest.raises(InvalidStateError, match="not a checked-out dataset"):
        keel.data.checkout("data@1", stranger)
    assert (stranger / "keep.txt").read_text() == "mine"


def test_interrupted_checkout_leaves_the_tree_intact(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _write(tmp_path / "data", {f"f{i}.txt": f"v1 {i}".encode() for i in range(20)})
    keel.data.add(data)
    _write(data, {f"f{i}.txt": f"v2 {i}".encode() for i in range(20)})
    keel.data.add(data)
    before = _tree_of(data)

    real = _api._Placer.place
    placed: list[str] = []

    def failing(self: _api._Placer, digest: str, size: int, mode: int, dest: str) -> os.stat_result:
        if len(placed) >= 5:
            raise OSError(28, "No space left on device")
        placed.append(dest)
        return real(self, digest, size, mode, dest)

    monkeypatch.setattr(_api._Placer, "place", failing)
    with pytest.raises(OSError, match="No space left"):
        keel.data.checkout("data@1")
    assert _tree_of(data) == before  # still version 2, whole
    assert [p.name for p in tmp_path.iterdir() if "keel-tmp" in p.name] == []
    (report,) = keel.data.status(data)
    assert report.version == 2 and report.changes.clean


def test_checkout_switch_moves_unchanged_files_and_places_only_changed_ones(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1_files = {f"d{i % 3}/f{i}.txt": f"v1 {i}".encode() for i in range(30)}
    data = _write(tmp_path / "data", v1_files)
    keel.data.add(data)
    changed = {"d0/f0.txt": b"v2 changed", "d1/f1.txt": b"v2 changed too", "new.txt": b"n"}
    _write(data, changed)
    (data / "d2/f2.txt").unlink()
    keel.data.add(data)
    v2_tree = _tree_of(data)
    inodes = {rel: (data / rel).stat().st_ino for rel in v2_tree}

    placed: list[str] = []
    real = _api._Placer.place

    def counting(
        self: _api._Placer, digest: str, size: int, mode: int, dest: str
    ) -> os.stat_result:
        placed.append(Path(dest).name)
        return real(self, digest, size, mode, dest)

    monkeypatch.setattr(_api._Placer, "place", counting)
    keel.data.checkout("data@1")
    assert _tree_of(data) == v1_files  # byte for byte
    assert sorted(placed) == ["f0.txt", "f1.txt", "f2.txt"]  # only what differs was placed
    kept = [rel for rel in v1_files if rel not in changed and rel != "d2/f2.txt"]
    assert all((data / rel).stat().st_ino == inodes[rel] for rel in kept)  # moved, not copied
    (report,) = keel.data.status(data)
    assert report.changes.clean and report.version == 1 and report.hashed == 0

    placed.clear()
    keel.data.checkout("data@2")  # and back: the files of v1 were never written to
    assert _tree_of(data) == v2_tree and sorted(placed) == ["f0.txt", "f1.txt", "new.txt"]
    objects = client.objects
    for digest in objects.list_digests():
        objects.verify(digest)

    # with --force, an edited file (new size and mtime) is not reused but restored
    (data / "d0/f3.txt").write_bytes(b"edited")
    placed.clear()
    keel.data.checkout("data@1", force=True)
    assert _tree_of(data) == v1_files and "f3.txt" in placed


def test_interrupted_switch_leaves_the_old_tree_and_its_files_intact(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _write(tmp_path / "data", {f"f{i}.txt": f"v1 {i}".encode() for i in range(20)})
    keel.data.add(data)
    _write(data, {"f0.txt": b"v2 0", "f1.txt": b"v2 1"})
    keel.data.add(data)
    before = _tree_of(data)
    inodes = {rel: (data / rel).stat().st_ino for rel in before}

    def failing(self: _api._Placer, digest: str, size: int, mode: int, dest: str) -> os.stat_result:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_api._Placer, "place", failing)
    with pytest.raises(OSError, match="No space left"):
        keel.data.checkout("data@1")
    assert _tree_of(data) == before
    assert {rel: (data / rel).stat().st_ino for rel in before} == inodes
    assert all((data / rel).stat().st_nlink == 1 for rel in before)  # temp links are gone
    assert [p.name for p in tmp_path.iterdir() if "keel-tmp" in p.name] == []
    (report,) = keel.data.status(data)
    assert report.version == 2 and report.changes.clean and report.hashed == 0


def test_checkout_switch_never_reuses_symlinks_or_racy_files(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"linked in")
    os.utime(outside, (OLD, OLD))
    data = _write(tmp_path / "data", {"a.txt": b"a1", "b.txt": b"b"})
    (data / "link.txt").symlink_to(outside)
    keel.data.add(data)
    _write(data, {"a.txt": b"a2"})
    keel.data.add(data)
    _write(data, {"b.txt": b"B"})
    keel.data.add(data)
    _write(data, {"b.txt": b"b"}, old=False)  # v2's content again, but racily clean

    placed: list[str] = []
    real = _api._Placer.place

    def counting(
        self: _api._Placer, digest: str, size: int, mode: int, dest: str
    ) -> os.stat_result:
        placed.append(Path(dest).name)
        return real(self, digest, size, mode, dest)

    monkeypatch.setattr(_api._Placer, "place", counting)
    keel.data.checkout("data@2", force=True)
    link = data / "link.txt"
    assert not link.is_symlink() and link.read_bytes() == b"linked in"
    assert outside.stat().st_nlink == 1  # the outside file was not linked into the tree
    assert _tree_of(data) == {"a.txt": b"a2", "b.txt": b"b", "link.txt": b"linked in"}
    assert sorted(placed) == ["b.txt", "link.txt"]  # a.txt moved; the others placed


def test_checkout_switch_falls_back_to_placing_when_links_fail(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    v1_files = {f"f{i}.txt": f"v1 {i}".encode() for i in range(10)}
    data = _write(tmp_path / "data", v1_files)
    keel.data.add(data)
    _write(data, {"f0.txt": b"v2"})
    keel.data.add(data)

    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    keel.data.checkout("data@1")
    assert _tree_of(data) == v1_files
    (report,) = keel.data.status(data)
    assert report.changes.clean and report.hashed == 0


def test_tampered_blob_is_refused(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    keel.data.add(data)
    _write(data, {"a.csv": b"v2"})
    keel.data.add(data)
    objects = client.objects
    assert isinstance(objects, LocalObjectStore)
    # a.csv differs between the versions, so the switch must place it from its blob
    digest = _api._manifest(objects, keel.data.get_version("data@1")).entries["a.csv"][0]
    blob = objects.blob_path(digest)
    blob.chmod(0o644)
    blob.write_bytes(b"x,y\n9,9\n")  # same size, different bytes
    before = _tree_of(data)
    with pytest.raises(IntegrityError, match="corrupted"):
        keel.data.checkout("data@1")
    assert _tree_of(data) == before
    with pytest.raises(IntegrityError):
        keel.data.get("data@1")


def test_get_materialises_a_verified_cache_and_repairs_it(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    v1 = keel.data.add(data)
    path = keel.data.get("data")
    assert path.name == v1.manifest_digest and _tree_of(path) == FILES
    assert keel.data.get("data@latest") == path == keel.data.get("data@1")
    # a cached copy edited by hand is detected and rebuilt
    victim = path / "sub" / "deep" / "c.txt"
    victim.unlink()
    victim.write_bytes(b"tampered")
    assert _tree_of(keel.data.get("data@1")) == FILES
    with pytest.raises(NotFoundError, match="not found"):
        keel.data.get("nope")


# -- pointer files ----------------------------------------------------------------------------
def test_pointer_files_pin_a_version(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    v1 = keel.data.add(data)
    pointer = tmp_path / "data.keel"
    doc = json.loads(pointer.read_text())
    assert doc == {
        "keel": 1,
        "name": "data",
        "version": 1,
        "kind": "files",
        "manifest": v1.manifest_digest,
        "files": 3,
        "bytes": v1.total_bytes,
        "path": "data",
    }
    pinned = pointer.read_text()
    _write(data, {"a.csv": b"v2"})
    keel.data.add(data)
    assert json.loads(pointer.read_text())["version"] == 2

    pointer.write_text(pinned)  # e.g. `git checkout` of an older commit
    keel.data.checkout(str(pointer))
    assert _tree_of(data) == FILES
    assert json.loads(pointer.read_text())["version"] == 1

    keel.data.add(data, pointer=False, name="nopointer")
    pointer.write_text("{not json")
    with pytest.raises(InvalidSpecError, match="not a keel pointer file"):
        keel.data.checkout(str(pointer))
    forged = {**json.loads(pinned), "manifest": "0" * 64}
    pointer.write_text(json.dumps(forged))
    with pytest.raises(IntegrityError, match="altered"):
        keel.data.checkout(str(pointer))


# -- bad input --------------------------------------------------------------------------------
def test_bad_paths_get_clear_errors(client: Client, tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError, match="does not exist"):
        keel.data.add(tmp_path / "missing")
    loop = _write(tmp_path / "loop", {"ok.txt": b"ok"})
    (loop / "again").symlink_to(loop, target_is_directory=True)
    with pytest.raises(InvalidSpecError, match="Symlink loop"):
        keel.data.add(loop)
    selfloop = _write(tmp_path / "selfloop", {"ok.txt": b"ok"})
    (selfloop / "me").symlink_to(selfloop / "me")
    with pytest.raises(InvalidSpecError, match="symlink loop"):
        keel.data.add(selfloop)
    dangling = _write(tmp_path / "dangling", {"ok.txt": b"ok"})
    (dangling / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidSpecError, match="dangling"):
        keel.data.add(dangling)
    with pytest.raises(InvalidSpecError, match="keel's own folder"):
        keel.data.add(tmp_path)  # KEEL_HOME is tmp_path/.keel
    with pytest.raises(InvalidSpecError, match="Dataset name"):
        keel.data.add(_write(tmp_path / "ok", FILES), name="bad@name")
    assert keel.data.list_datasets() == []  # nothing was recorded
    linked = _write(tmp_path / "linked", FILES)
    (linked / "alias.csv").symlink_to(linked / "a.csv")  # a plain symlink is followed
    assert keel.data.add(linked).file_count == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_reported(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    (data / "a.csv").chmod(0)
    with pytest.raises(InvalidSpecError, match="permission denied"):
        keel.data.add(data)


def test_file_changing_while_hashed(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _write(tmp_path / "data", FILES)
    real = _tree.read_and_hash
    changed: list[str] = []

    def racing(path: str, size: int) -> tuple[str, bytes | None]:
        result = real(path, size)
        if path.endswith("a.csv") and not changed:
            changed.append(path)
            Path(path).write_bytes(b"rewritten meanwhile")  # after it was read
        return result

    monkeypatch.setattr(_tree, "read_and_hash", racing)
    v = keel.data.add(data)  # detected by the re-stat, hashed again
    got = keel.data.get(v.uri)
    assert (got / "a.csv").read_bytes() == b"rewritten meanwhile"

    def always(path: str, size: int) -> tuple[str, bytes | None]:
        result = real(path, size)
        if path.endswith("c.txt"):
            with open(path, "ab") as fh:  # a log file being appended to
                fh.write(b"more")
        return result

    monkeypatch.setattr(_tree, "read_and_hash", always)
    _write(data, {"sub/deep/c.txt": b"edited"})
    with pytest.raises(InvalidSpecError, match="kept changing"):
        keel.data.add(data)
    assert [v.version for v in keel.data.versions("data")] == [1]


def test_interrupted_add_records_nothing(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _write(tmp_path / "data", FILES)
    keel.data.add(data)
    _write(data, {"a.csv": b"v2 " * 1000})

    def crash(self: ObjectStore) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(LocalObjectStore, "sync", crash)
        keel.data.add(data)
    assert [v.version for v in keel.data.versions("data")] == [1]
    assert json.loads((tmp_path / "data.keel").read_text())["version"] == 1
    (report,) = keel.data.status(data)
    assert report.version == 1 and report.changes.modified == ["a.csv"]


# -- lineage and audit ------------------------------------------------------------------------
def _edges(client: Client) -> set[tuple[str, str, str]]:
    store = client.store
    assert isinstance(store, SqlStore)
    e = t.lineage_edges.c
    with store.engine.connect() as conn:
        return {
            (r.src, r.dst, r.relation) for r in conn.execute(sa.select(e.src, e.dst, e.relation))
        }


def test_runs_record_dataset_lineage(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    with keel.start_run(experiment="lineage") as run:
        v = keel.data.add(data)
        keel.data.get("data@1")
    assert v.run_id == run.run_id
    edges = _edges(client)
    assert (f"run:{run.run_id}", "dataset:data@1", "output") in edges
    with keel.start_run(experiment="lineage") as reader:
        keel.data.get("data")
        keel.data.add(data)  # unchanged: the run is still recorded as producing it
    edges = _edges(client)
    assert ("dataset:data@1", f"run:{reader.run_id}", "input") in edges
    assert (f"run:{reader.run_id}", "dataset:data@1", "output") in edges
    graph = keel.lineage(f"run:{reader.run_id}", direction="up")
    assert graph.of_kind("dataset") == ["dataset:data@1"]


def test_version_creation_and_deletion_are_audited(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    keel.data.add(data, message="why")
    store = client.store
    assert isinstance(store, SqlStore)
    store.data.delete_version("data", 1, actor="alice", reason="GDPR request")
    events = [(e.action, e.object, e.reason) for e in store.registry.audit_events()]
    assert ("dataset_version.create", "dataset:data@1", "why") in events
    assert ("dataset_version.delete", "dataset:data@1", "GDPR request") in events
    from keel.store import _governance as gov

    with store.engine.connect() as conn:
        assert gov.verify_chain(conn)[1] is None
    with pytest.raises(NotFoundError, match="no versions"):
        keel.data.get("data")


# -- push, pull, gc ---------------------------------------------------------------------------
def _remote_uri(objects: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> str:
    if isinstance(objects, LocalObjectStore):
        return str(objects.root)
    endpoint = objects.storage_options["endpoint_url"]  # type: ignore[attr-defined]
    monkeypatch.setenv("KEEL_S3_ENDPOINT_URL", endpoint)
    return objects.uri


def test_push_pull_between_machines(
    client: Client,
    objects: ObjectStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote = _remote_uri(objects, monkeypatch)
    fluent._reset()
    data = _write(tmp_path / "data", FILES)
    keel.data.add(data)
    _write(data, {"a.csv": b"v2"})
    v2 = keel.data.add(data)
    report = keel.data.push("data", remote=remote, all_versions=True)
    assert report.copied == 6 and report.versions == ["data@1", "data@2"]
    assert keel.data.push("data@2", remote=remote).copied == 0  # already there

    # another machine: its own KEEL_HOME (empty local store), the same metadata store
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "machine2"))
    monkeypatch.setenv("KEEL_DATA_REMOTE", remote)
    fluent._reset()
    other = fluent.get_client()
    assert set(other.objects.list_digests()) == set()
    pulled = keel.data.pull("data@2")
    assert pulled.copied == 4 and pulled.bytes > 0
    target = keel.data.checkout("data@2", tmp_path / "clone")
    assert _tree_of(target)["a.csv"] == b"v2"
    # checkout of a version not pulled yet fetches from KEEL_DATA_REMOTE itself
    assert _tree_of(keel.data.checkout("data@1", tmp_path / "clone1")) == FILES
    assert keel.data.get_version("data").manifest_digest == v2.manifest_digest


def test_push_to_a_folder_refuses_a_corrupted_blob(client: Client, tmp_path: Path) -> None:
    big = os.urandom(5 * 1024 * 1024)  # above the in-memory size: copied kernel-side
    data = _write(tmp_path / "data", {**FILES, "big.bin": big})
    v = keel.data.add(data)
    objects = client.objects
    assert isinstance(objects, LocalObjectStore)
    entries = _api._manifest(objects, v).entries
    for rel, payload in (("sub/b.bin", b"\x01" * 1000), ("big.bin", big[:-1] + b"!")):
        remote = tmp_path / f"remote-{rel.replace('/', '-')}"
        digest = entries[rel][0]
        blob = objects.blob_path(digest)
        blob.chmod(0o644)
        original = blob.read_bytes()
        blob.write_bytes(payload)  # same size, different bytes
        with pytest.raises(IntegrityError, match="corrupted"):
            keel.data.push("data", remote=str(remote))
        pushed = LocalObjectStore(remote)
        assert digest not in set(pushed.list_digests())
        assert v.manifest_digest not in set(pushed.list_digests())  # no version half-pushed
        assert not list(remote.glob("??/.*.part"))
        blob.write_bytes(original)
    report = keel.data.push("data", remote=str(remote))
    assert report.copied + report.present == len(FILES) + 2
    pushed = LocalObjectStore(remote)
    for digest in pushed.list_digests():
        pushed.verify(digest)
    assert set(pushed.list_digests()) == {e[0] for e in entries.values()} | {v.manifest_digest}


def test_pull_without_remote_or_blobs_is_a_clear_error(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keel.data.add(_write(tmp_path / "data", FILES))
    with pytest.raises(InvalidSpecError, match="No data remote"):
        keel.data.push("data")
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "machine2"))
    fluent._reset()
    with pytest.raises(NotFoundError, match="keel data pull"):
        keel.data.checkout("data@1", tmp_path / "clone")
    with pytest.raises(NotFoundError, match="push it from the machine"):
        keel.data.pull("data", remote=str(tmp_path / "empty-remote"))
    assert not (tmp_path / "clone").exists()


def test_gc_removes_only_unreferenced_blobs(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    v1 = keel.data.add(data)
    _write(data, {"a.csv": b"only in v2"})
    keel.data.add(data)
    objects = client.objects
    assert isinstance(objects, LocalObjectStore)
    with keel.start_run(experiment="gc") as run:
        keel.log_text("an artifact", "notes.txt")
    art = client.list_artifacts(run.run_id)[0].digest
    orphan = objects.put_bytes(b"nobody references me").digest
    old = (OLD, OLD)
    for d in objects.list_digests():
        os.utime(objects.blob_path(d), old)

    assert keel.data.gc(grace_seconds=0, dry_run=True).removed == [orphan]
    assert orphan in set(objects.list_digests())
    young = objects.put_bytes(b"written a moment ago").digest
    report = keel.data.gc(grace_seconds=60)
    assert report.removed == [orphan] and report.kept_young == 1
    assert young in set(objects.list_digests()) and art in set(objects.list_digests())

    store = client.store
    assert isinstance(store, SqlStore)
    v1_only = _api._manifest(objects, v1).entries["a.csv"][0]
    store.data.delete_version("data", 1, actor="me", reason=None)
    removed = set(keel.data.gc(grace_seconds=0).removed)
    assert removed == {v1_only, v1.manifest_digest, young}
    assert _tree_of(keel.data.checkout("data@2", tmp_path / "after-gc"))["a.csv"] == b"only in v2"

    objects.delete(_api._manifest(objects, keel.data.get_version("data")).entries["sub/b.bin"][0])
    objects.delete(keel.data.get_version("data").manifest_digest)
    before = set(objects.list_digests())
    with pytest.raises(InvalidStateError, match="missing"):
        keel.data.gc(grace_seconds=0)
    assert set(objects.list_digests()) == before


def test_link_mode_stores_without_copying(client: Client, tmp_path: Path) -> None:
    data = _write(tmp_path / "data", FILES)
    v = keel.data.add(data, link=True)
    objects = client.objects
    assert isinstance(objects, LocalObjectStore)
    digest = _api._manifest(objects, v).entries["a.csv"][0]
    assert objects.blob_path(digest).stat().st_ino == (data / "a.csv").stat().st_ino
    assert not os.access(data / "a.csv", os.W_OK) or os.geteuid() == 0
    (report,) = keel.data.status(data)
    assert report.changes.clean


# -- object-store additions used by keel.data --------------------------------------------
def test_ingest_verifies_and_publishes_atomically(objects: ObjectStore, tmp_path: Path) -> None:
    from keel.objects import hash_bytes

    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    digest = hash_bytes(src.read_bytes())
    assert objects.ingest(src, digest) is True
    assert objects.ingest(src, digest) is False  # stored once
    objects.sync()
    assert objects.get_bytes(digest) == src.read_bytes()
    wrong = hash_bytes(b"what it was when hashed")
    with pytest.raises(InvalidSpecError, match="changed after it was hashed"):
        objects.ingest(src, wrong)
    assert not objects.exists(wrong) and set(objects.list_digests()) == {digest}
    many = [hash_bytes(str(i).encode()) for i in range(600)]
    assert objects.exists_many([*many, digest]) == {digest}


def test_local_ingest_bytes_and_bulk_exists(tmp_path: Path) -> None:
    from keel.objects import hash_bytes

    store = LocalObjectStore(tmp_path / "objects")
    blobs = {hash_bytes(str(i).encode()): str(i).encode() for i in range(700)}
    for d, b in blobs.items():
        assert store.ingest_bytes(b, d) is True
    store.sync()
    assert store.ingest_bytes(b"0", hash_bytes(b"0")) is False
    absent = hash_bytes(b"absent")
    assert store.exists_many([*blobs, absent]) == set(blobs)  # the per-shard listing path
    assert store.exists_many([absent, next(iter(blobs))]) == {next(iter(blobs))}
    assert set(store.list_digests()) == set(blobs)
    assert not list((tmp_path / "objects").glob("??/.*.part"))
    with pytest.raises(InvalidSpecError, match="not a blob digest"):
        store.ingest_bytes(b"x", "../../etc/passwd")


def test_status_of_a_removed_tree_and_stale_temp_files(client: Client, tmp_path: Path) -> None:
    import shutil

    data = _write(tmp_path / "data", FILES)
    keel.data.add(data)
    shutil.rmtree(data)
    (report,) = keel.data.status()
    assert report.changes.deleted == sorted(FILES) and not report.changes.added
    objects = client.objects
    assert isinstance(objects, LocalObjectStore)
    stale = objects.root / "ab" / ".crashed-write.part"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half")
    os.utime(stale, (OLD, OLD))
    keel.data.gc(grace_seconds=60)
    assert not stale.exists()


@pytest.mark.parametrize("euid", [0, 1000])
def test_checkout_links_blobs_only_when_permissions_protect_them(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, euid: int
) -> None:
    data = _write(tmp_path / "data", FILES)
    v = keel.data.add(data)
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    target = keel.data.checkout(v.uri, tmp_path / "out")
    objects = client.objects
    assert isinstance(objects, LocalObjectStore)
    blob = objects.blob_path(_api._manifest(objects, v).entries["a.csv"][0])
    shared = (target / "a.csv").stat().st_ino == blob.stat().st_ino
    assert shared is (euid != 0)  # root could write through a link into the store
    assert _tree_of(target) == FILES
    (target / "a.csv").unlink()  # replacing a linked file never touches the blob
    (target / "a.csv").write_bytes(b"new content")
    objects.verify(blob.parent.name + blob.name)


def test_torn_blobs_left_by_a_crash_are_rewritten_not_deduplicated(
    client: Client, tmp_path: Path
) -> None:
    """A crash before add's syncfs can leave renamed blobs whose data never reached
    the disk (short on-disk size); a later add must rewrite them, not reference them."""
    big = bytes(range(256)) * (9 * 1024 * 1024 // 256)  # above the small-file path
    root = _write(tmp_path / "data", {**FILES, "big.bin": big})
    objects = client.objects
    assert isinstance(objects, LocalObjectStore)
    for data, torn in ((FILES["a.csv"], b""), (big, big[: len(big) // 2])):
        blob = objects.blob_path(hash_bytes(data))
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(torn)  # what the crash left
    v = keel.data.add(root, name="torn", progress=False)
    for data in (FILES["a.csv"], big):
        assert objects.get_bytes(hash_bytes(data)) == data  # verified: rewritten whole
    assert _tree_of(keel.data.get(v.uri, progress=False)) == _tree_of(root)
