"""Working trees: scanning, the local state cache, parallel hashing, manifests and diffs.

This module is on the path of ``keel data status`` and stays lean: it imports only
the standard library and blake3 (no SQLAlchemy, no Rich), so a no-op status over
20,000 files costs Python's start-up, one ``lstat`` per file and one SQLite read.

The state cache maps each file of a tracked tree to ``(size, mtime_ns, inode,
digest)``. A file whose three stat fields are unchanged is not re-hashed. Like
git's "racily clean" entries, a file modified less than :data:`RACY_NS` before the
scan started is not cached, since a later write within the same timestamp tick
could leave its stat fields unchanged.

Paths are handled as ``str`` with ``os`` functions here: on 20,000 files a
``pathlib`` object per file is a measurable part of a no-op status.
"""

# ruff: noqa: PTH116, PTH118

from __future__ import annotations

import json
import marshal
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from keel.exceptions import InvalidSpecError

__all__ = [
    "DataManifest",
    "StateDB",
    "TreeChanges",
    "TreeState",
    "diff_entries",
    "hash_one",
    "scan",
    "snapshot",
]

#: ``(digest, size, mode)``: mode is 0o755 for executables, else 0o644.
Entry = tuple[str, int, int]
#: ``(size, mtime_ns, inode, mode)`` from one ``lstat``.
Stat = tuple[int, int, int, int]
#: ``(size, mtime_ns, inode, digest)``.
Cached = tuple[int, int, int, str]

_T = TypeVar("_T")
_R = TypeVar("_R")

RACY_NS = 1_000_000_000  # files modified this close to a scan are re-hashed next time
_MMAP_MIN = 8 * 1024 * 1024
_RETRIES = 3


def _mode(st_mode: int) -> int:
    return 0o755 if st_mode & 0o111 else 0o644


@dataclass(frozen=True)
class DataManifest:
    """A dataset version's content: relative POSIX path -> (digest, size, mode).

    ``single`` marks a version made from one file (its only entry is the file name).
    """

    entries: Mapping[str, Entry]
    single: bool = False

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted, compact): equal content has an equal digest."""
        body = {p: list(e) for p, e in sorted(self.entries.items())}
        doc = {"keel_data_manifest": 1, "single": self.single, "entries": body}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DataManifest:
        """Parse :meth:`to_bytes` output."""
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("keel_data_manifest") != 1:
            raise InvalidSpecError("This blob is not a keel dataset manifest.")
        return cls(
            {p: (d, int(s), int(m)) for p, (d, s, m) in doc["entries"].items()}, doc["single"]
        )

    @property
    def total_bytes(self) -> int:
        """Sum of the file sizes."""
        return sum(e[1] for e in self.entries.values())


# -- scanning ---------------------------------------------------------------------------------
def scan(root: Path) -> dict[str, Stat]:
    """Every regular file under ``root`` (or ``root`` itself) with one ``lstat`` each.

    Symlinks are followed; a link to one of its own ancestors (a loop), a dangling
    link or an unreadable folder raises :class:`InvalidSpecError` naming the path.
    """
    try:
        st = os.stat(root)
    except OSError as exc:
        raise _path_error(root, exc) from exc
    if stat.S_ISREG(st.st_mode):
        return {root.name: (st.st_size, st.st_mtime_ns, st.st_ino, _mode(st.st_mode))}
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidSpecError(
            f"{root} is neither a file nor a folder; only regular files can be versioned.",
            path=str(root),
        )
    found: dict[str, Stat] = {}
    _walk(os.fspath(root), "", found, {(st.st_dev, st.st_ino)})
    return found


def _walk(
    folder: str, prefix: str, found: dict[str, Stat], ancestors: set[tuple[int, int]]
) -> None:
    try:
        it = os.scandir(folder)
    except OSError as exc:
        raise _path_error(Path(folder), exc) from exc
    with it:
        for entry in it:
            rel = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    st = os.stat(entry.path)  # follow the link (ELOOP on a self-loop)
            except OSError as exc:
                raise _path_error(Path(entry.path), exc) from exc
            mode = st.st_mode
            if stat.S_ISREG(mode):
                found[rel] = (st.st_size, st.st_mtime_ns, st.st_ino, _mode(mode))
            elif stat.S_ISDIR(mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    raise InvalidSpecError(
                        f"Symlink loop at {entry.path}: it points back to one of its own parent "
                        "folders. Remove the link or replace it with a copy.",
                        path=entry.path,
                    )
                _walk(entry.path, rel + "/", found, ancestors | {key})
            else:
                raise InvalidSpecError(
                    f"{entry.path} is not a regular file or folder (a socket, device or "
                    "FIFO); move it out of the dataset.",
                    path=entry.path,
                )


def _path_error(path: Path, exc: OSError) -> InvalidSpecError:
    import errno

    if exc.errno == errno.ELOOP:
        what = "is a symlink loop (the link resolves to itself)"
    elif exc.errno == errno.ENOENT:
        what = "does not exist (or is a dangling symlink)"
    elif exc.errno == errno.EACCES:
        what = "cannot be read: permission denied"
    else:
        what = f"cannot be read: {exc.strerror}"
    return InvalidSpecError(f"{path} {what}.", path=str(path))


# -- hashing ----------------------------------------------------------------------------------
def hash_one(path: str, size: int) -> str:
    """BLAKE3 of a file: whole-buffer for small files, multi-threaded mmap for large ones."""
    import blake3

    if size >= _MMAP_MIN:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(path)
        return hasher.hexdigest()
    with open(path, "rb") as fh:
        return blake3.blake3(fh.read()).hexdigest()


def read_and_hash(path: str, size: int) -> tuple[str, bytes | None]:
    """Hash a file; small files are read whole and their bytes returned for storing."""
    if size >= _MMAP_MIN:
        return hash_one(path, size), None
    import blake3

    with open(path, "rb") as fh:
        data = fh.read()
    return blake3.blake3(data).hexdigest(), data


#: Receives (digest, bytes) of each small file hashed, e.g. to store it in the same pass.
Sink = Callable[[str, bytes], object]


def _hash_stable(path: str, before: Stat, sink: Sink | None) -> tuple[str, Stat]:
    """Hash a file and re-stat it; retry while it keeps changing underneath."""
    for _ in range(_RETRIES):
        try:
            digest, data = read_and_hash(path, before[0])
            st = os.stat(path)
        except OSError as exc:
            raise _path_error(Path(path), exc) from exc
        after = (st.st_size, st.st_mtime_ns, st.st_ino, _mode(st.st_mode))
        if after == before and (data is None or len(data) == after[0]):
            if sink is not None and data is not None:
                sink(digest, data)  # exactly the bytes that were hashed
            return digest, after
        before = after
    raise InvalidSpecError(
        f"{path} kept changing while it was being hashed ({_RETRIES} attempts); nothing was "
        "recorded. Retry once the file is no longer being written.",
        path=path,
    )


def parallel_map(
    fn: Callable[[_T], _R], items: Sequence[_T], workers: int | None = None
) -> list[_R]:
    """``[fn(x) for x in items]`` on a thread pool, in order, a chunk of items per task.

    One future per item costs tens of microseconds, as much as the work on a small
    file; chunks keep the pool's overhead out of 20,000-file operations.
    """
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    if len(items) < 2 or workers < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    size = max(1, min(256, len(items) // (workers * 4)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(lambda chunk: [fn(x) for x in chunk], chunks)
        return [r for part in done for r in part]


def hash_many(
    root: Path,
    todo: Mapping[str, Stat],
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    sink: Sink | None = None,
) -> dict[str, tuple[str, Stat]]:
    """Hash files in parallel (blake3 releases the GIL); returns rel -> (digest, stat)."""
    if not todo:
        return {}
    single = root.is_file()

    def full(rel: str) -> str:
        return os.fspath(root) if single else os.path.join(root, rel)

    out: dict[str, tuple[str, Stat]] = {}
    items = list(todo.items())
    if len(items) == 1 or sum(s[0] for _, s in items) >= _MMAP_MIN * len(items):
        # one or a few big files: blake3's own threads are faster than ours
        for rel, st in items:
            out[rel] = _hash_stable(full(rel), st, sink)
            if progress:
                progress(st[0])
        return out

    def one(item: tuple[str, Stat]) -> tuple[str, tuple[str, Stat]]:
        res = _hash_stable(full(item[0]), item[1], sink)
        if progress:
            progress(res[1][0])
        return item[0], res

    return dict(parallel_map(one, items, workers))


# -- state ------------------------------------------------------------------------------------
@dataclass
class TreeState:
    """What the local state knows about one working tree.

    Attributes:
        root: absolute path of the tree (a folder or a file).
        name, version, digest: the dataset version the tree was last added or
            checked out as (its base), if any.
        base: that version's entries.
        cache: rel -> (size, mtime_ns, inode, digest) of files hashed before.
    """

    root: str
    name: str | None = None
    version: int | None = None
    digest: str | None = None
    base: dict[str, Entry] = field(default_factory=dict)
    cache: dict[str, Cached] = field(default_factory=dict)


class StateDB:
    """The local state file (``$KEEL_HOME/data-state.sqlite``): one row per tree.

    Each row holds its cache and base manifest as one packed blob, so loading
    20,000 entries is a single read. It is local to this machine by design: working
    paths and inodes mean nothing elsewhere.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS trees (root TEXT PRIMARY KEY, name TEXT, "
            "version INTEGER, digest TEXT, base BLOB, cache BLOB)"
        )
        return conn

    def load(self, root: str) -> TreeState:
        """The state of ``root`` (empty when unknown or unreadable)."""
        if not self.path.exists():
            return TreeState(root)
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT name, version, digest, base, cache FROM trees WHERE root = ?", (root,)
            ).fetchone()
        finally:
            conn.close()
        if row is None:
            return TreeState(root)
        try:
            base, cache = marshal.loads(row[3]), marshal.loads(row[4])
        except (EOFError, ValueError, TypeError):  # another Python's format: rebuild
            return TreeState(root, row[0], row[1], row[2])
        return TreeState(root, row[0], row[1], row[2], base, cache)

    def save(self, state: TreeState) -> None:
        """Replace the row of ``state.root`` (one transaction)."""
        conn = self._connect()
        try:
            with conn:
                conn.execute(
                    "INSERT OR REPLACE INTO trees VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        state.root,
                        state.name,
                        state.version,
                        state.digest,
                        marshal.dumps(state.base),
                        marshal.dumps(state.cache),
                    ),
                )
        finally:
            conn.close()

    def find(self, name: str) -> list[str]:
        """Roots of the trees based on dataset ``name``."""
        if not self.path.exists():
            return []
        conn = self._connect()
        try:
            return [r[0] for r in conn.execute("SELECT root FROM trees WHERE name = ?", (name,))]
        finally:
            conn.close()

    def all(self) -> list[tuple[str, str | None, int | None]]:
        """(root, name, version) of every known tree."""
        if not self.path.exists():
            return []
        conn = self._connect()
        try:
            return list(conn.execute("SELECT root, name, version FROM trees ORDER BY root"))
        finally:
            conn.close()


# -- snapshots and diffs ----------------------------------------------------------------------
@dataclass(frozen=True)
class TreeChanges:
    """Differences between two sets of entries (sorted relative paths)."""

    added: list[str]
    modified: list[str]
    deleted: list[str]

    @property
    def clean(self) -> bool:
        """True when nothing differs."""
        return not (self.added or self.modified or self.deleted)

    def to_dict(self) -> dict[str, list[str]]:
        """JSON-ready form."""
        return {"added": self.added, "modified": self.modified, "deleted": self.deleted}


def diff_entries(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> TreeChanges:
    """What changed from ``old`` to ``new`` (content or mode)."""
    added = sorted(p for p in new if p not in old)
    deleted = sorted(p for p in old if p not in new)
    modified = sorted(p for p, e in new.items() if p in old and old[p] != e)
    return TreeChanges(added, modified, deleted)


@dataclass
class Snapshot:
    """A scanned and hashed working tree."""

    root: Path
    entries: dict[str, Entry]
    cache: dict[str, Cached]
    hashed: int  # files hashed this time (0 on a no-op)
    stats: dict[str, Stat]

    @property
    def single(self) -> bool:
        """True when the tree is one file."""
        return self.root.is_file()


def snapshot(
    root: Path,
    state: TreeState,
    *,
    progress: Callable[[int, int], Callable[[int], None] | None] | None = None,
    sink: Sink | None = None,
) -> Snapshot:
    """Scan ``root`` and hash only the files whose (size, mtime_ns, inode) changed.

    ``progress(files, bytes)`` is called once with the amount to hash and may return
    a per-file callback taking the bytes just hashed. ``sink`` receives the bytes of
    each small file hashed, so ``add`` stores them without reading them twice.
    """
    started = time.time_ns()
    stats = scan(root)
    cache = state.cache
    entries: dict[str, Entry] = {}
    todo: dict[str, Stat] = {}
    for rel, st in stats.items():
        hit = cache.get(rel)
        if hit is not None and hit[0] == st[0] and hit[1] == st[1] and hit[2] == st[2]:
            entries[rel] = (hit[3], st[0], st[3])
        else:
            todo[rel] = st
    tick = progress(len(todo), sum(s[0] for s in todo.values())) if progress and todo else None
    hashed = hash_many(root, todo, tick, sink=sink)
    for rel, (digest, st) in hashed.items():
        entries[rel] = (digest, st[0], st[3])
        stats[rel] = st
    new_cache = fresh_cache(stats, entries, started)
    return Snapshot(root, entries, new_cache, len(hashed), stats)


def fresh_cache(
    stats: Mapping[str, Stat], entries: Mapping[str, Entry], started_ns: int
) -> dict[str, Cached]:
    """Cache rows for ``entries``, leaving out racily-clean files."""
    limit = started_ns - RACY_NS
    return {
        rel: (st[0], st[1], st[2], entries[rel][0])
        for rel, st in stats.items()
        if st[1] < limit and rel in entries
    }


def default_state_path(home: Path) -> Path:
    """Where the state cache of a keel home lives."""
    return home / "data-state.sqlite"
