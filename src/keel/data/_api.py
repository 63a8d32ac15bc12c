"""Dataset versioning: add, status, diff, checkout, get, push, pull, gc.

A files version is a manifest blob (relative path -> digest, size, mode) in the
content-addressed object store; each file is a blob, so identical content is
stored once across versions and datasets. The order of writes makes interruptions
harmless:

* ``add`` stores every blob, makes them durable with one ``syncfs``, stores the
  manifest, and only then records the version row. A crash before the row leaves
  unreferenced blobs for ``gc``, never a version with missing content.
* ``checkout`` builds the new tree in a temporary folder next to the target,
  verifying every file, then swaps it in with one atomic rename (``renameat2``
  exchange on Linux). A failure leaves the old tree untouched.
* ``gc`` holds an exclusive lock on the local store; ``add``, ``checkout`` and
  ``pull`` hold it shared, so gc never deletes a blob between an add finding it
  present and its version row being committed. Blobs younger than a grace period
  are kept as well.
"""

# Per-file work on 20,000 files uses str paths and os functions (cheaper than pathlib).
# ruff: noqa: PTH101, PTH103, PTH108, PTH112, PTH116, PTH118, PTH120

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel._fs import exchange
from keel.data._tree import (
    RACY_NS,
    DataManifest,
    Snapshot,
    Stat,
    StateDB,
    TreeChanges,
    TreeState,
    default_state_path,
    diff_entries,
    fresh_cache,
    hash_one,
    parallel_map,
    snapshot,
)
from keel.exceptions import (
    BackendUnavailableError,
    IntegrityError,
    InvalidSpecError,
    InvalidStateError,
    NotFoundError,
)

if TYPE_CHECKING:
    from keel.config import Settings
    from keel.objects import LocalObjectStore, ObjectStore
    from keel.store._data import DatasetInfo, DatasetVersion, SqlData
    from keel.tracking.client import Client

__all__ = [
    "GcReport",
    "StatusReport",
    "TransferReport",
    "add",
    "checkout",
    "diff",
    "gc",
    "get",
    "list_datasets",
    "parse_ref",
    "pull",
    "push",
    "read_pointer",
    "status",
    "versions",
]

POINTER_SUFFIX = ".keel"
_WORKERS = 8
_SMALL = 8 * 1024 * 1024  # blobs below this are moved as one in-memory buffer
_FICLONE = 0x40049409  # linux/fs.h: share the extents of another file (reflink)


# -- references ----------------------------------------------------------------------------
def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name``, ``name@latest`` (newest) or ``name@3`` -> (name, version or None)."""
    from keel.store._data import check_dataset_name

    if not isinstance(ref, str) or not ref:
        raise InvalidSpecError(f"Name a dataset version as NAME or NAME@VERSION, got {ref!r}.")
    name, sep, ver = ref.partition("@")
    check_dataset_name(name)
    if not sep or ver == "latest":
        return name, None
    if not ver.isdigit() or int(ver) < 1:
        raise InvalidSpecError(
            f"Version {ver!r} in {ref!r} is not valid: use a number from 1 or 'latest', "
            f"e.g. {name}@1.",
            ref=ref,
        )
    return name, int(ver)


# -- plumbing --------------------------------------------------------------------------------
def _client(client: Client | None) -> Client:
    if client is not None:
        return client
    from keel.tracking import fluent

    return fluent.get_client()


def _sql(client: Client) -> SqlData:
    data = getattr(client.store, "data", None)
    if data is None:
        raise BackendUnavailableError(
            f"The metadata store {type(client.store).__name__} has no dataset storage; use "
            "a SQL store (KEEL_STORE_URI) or a keel server (KEEL_TRACKING_URI)."
        )
    return data  # type: ignore[no-any-return]


def _state(settings: Settings) -> StateDB:
    return StateDB(default_state_path(settings.home))


@contextlib.contextmanager
def _store_lock(objects: ObjectStore, exclusive: bool) -> Iterator[None]:
    """Shared (writers) or exclusive (gc) lock on a local object store."""
    from keel.objects import LocalObjectStore

    if not isinstance(objects, LocalObjectStore):
        yield
        return
    import fcntl

    objects.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(objects.root / ".gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


class _Bar:
    """A Rich progress bar on stderr, imported only when there is work to show."""

    def __init__(self, show: bool | None) -> None:
        self.show = sys.stderr.isatty() if show is None else show
        self._progress: Any = None

    def __enter__(self) -> _Bar:
        return self

    def task(self, label: str, total: int, *, unit_bytes: bool = True) -> Callable[[int], None]:
        """Start a bar; returns ``advance(amount)``."""
        if not self.show or total <= 0:
            return lambda _n: None
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._columns = {
                True: (DownloadColumn(), TransferSpeedColumn()),
                False: (MofNCompleteColumn(),),
            }
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                *self._columns[True],
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
        task_id = self._progress.add_task(label, total=total)
        progress = self._progress
        return lambda n: progress.advance(task_id, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _hash_progress(bar: _Bar) -> Callable[[int, int], Callable[[int], None] | None]:
    def start(files: int, size: int) -> Callable[[int], None] | None:
        return bar.task(f"hashing {files} files", size)

    return start


def _manifest(objects: ObjectStore, dv: DatasetVersion) -> DataManifest:
    if dv.kind != "files":
        raise InvalidSpecError(
            f"{dv.uri} is a table; read it with keel.data.get_table('{dv.uri}').", ref=dv.uri
        )
    try:
        data = objects.get_bytes(dv.manifest_digest)
    except NotFoundError as exc:
        raise NotFoundError(
            f"The manifest of {dv.uri} ({dv.manifest_digest[:12]}) is not in the local object "
            f"store {objects.uri}. Fetch it with `keel data pull {dv.uri}`.",
            ref=dv.uri,
        ) from exc
    return DataManifest.from_bytes(data)


def _version_digests(objects: ObjectStore, dv: DatasetVersion) -> list[str]:
    """Every blob a version needs, content first and the manifest last."""
    from keel.store._data import _digests_in

    out: list[str] = []
    if dv.kind == "files":
        out += sorted({e[0] for e in _manifest(objects, dv).entries.values()})
    out += _digests_in(dv.extra)
    out.append(dv.manifest_digest)
    return list(dict.fromkeys(out))


# -- pointer files ---------------------------------------------------------------------------
def pointer_path(root: Path) -> Path:
    """``data/`` -> ``data.keel`` beside it."""
    return root.with_name(root.name + POINTER_SUFFIX)


def write_pointer(root: Path, dv: DatasetVersion) -> Path:
    """Write the git-friendly pointer of ``root`` (atomic replace)."""
    doc = {
        "keel": 1,
        "name": dv.name,
        "version": dv.version,
        "kind": dv.kind,
        "manifest": dv.manifest_digest,
        "files": dv.file_count,
        "bytes": dv.total_bytes,
        "path": root.name,
    }
    target = pointer_path(root)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(target)
    return target


def read_pointer(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and validate a ``*.keel`` pointer file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except OSError as exc:
        raise InvalidSpecError(
            f"Cannot read pointer file {p}: {exc.strerror}.", path=str(p)
        ) from exc
    except ValueError as exc:
        raise InvalidSpecError(
            f"{p} is not a keel pointer file (invalid JSON: {exc}). Restore it from git.",
            path=str(p),
        ) from exc
    keys = {"name": str, "version": int, "manifest": str, "path": str}
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k), t) for k, t in keys.items()):
        raise InvalidSpecError(
            f"{p} is not a keel pointer file: it needs name, version, manifest and path. "
            "Restore it from git or re-create it with `keel data add`.",
            path=str(p),
        )
    return doc


# -- add ---------------------------------------------------------------------------------------
def add(
    path: str | os.PathLike[str],
    name: str | None = None,
    message: str | None = None,
    *,
    link: bool = False,
    pointer: bool = True,
    progress: bool | None = None,
    client: Client | None = None,
) -> DatasetVersion:
    """Version a file or folder by content; returns the new (or unchanged latest) version.

    Only files whose size, mtime or inode changed since the last ``add``/``status``
    are re-hashed. Inside an active run the version records the run (lineage
    ``run -> dataset``, relation ``output``).

    Args:
        path: the file or folder.
        name: dataset name (default: the path's base name).
        message: what changed.
        link: hard-link new files into the local object store instead of copying
            them (no copy, but the files become read-only: edit by replacing them).
        pointer: write ``PATH.keel`` beside the path for git.
        progress: show progress bars (default: when stderr is a terminal).
        client: the tracking client (default: the fluent API's).
    """
    from keel.store._data import check_dataset_name
    from keel.tracking import fluent

    root = Path(path).absolute()
    if root.name.endswith(POINTER_SUFFIX) and root.is_file():
        raise InvalidSpecError(f"{root} is a pointer file; add the path it names instead.")
    name = check_dataset_name(name or root.name)
    c = _client(client)
    home = c.settings.home.absolute()
    if home == root or root in home.parents:
        raise InvalidSpecError(
            f"{root} contains keel's own folder {home} (KEEL_HOME): versioning it would "
            "store the store. Add a subfolder, or set KEEL_HOME outside the data.",
            path=str(root),
        )
    sql = _sql(c)
    db = _state(c.settings)
    state = db.load(str(root))
    objects = c.objects
    from keel.objects import BlobRef, LocalObjectStore

    # small files are stored in the hashing pass, from the very buffer that was hashed
    sink = None
    if isinstance(objects, LocalObjectStore) and not link:
        local = objects

        def sink(digest: str, data: bytes) -> None:
            local.ingest_bytes(data, digest)

    with _Bar(progress) as bar, _store_lock(objects, exclusive=False):
        snap = snapshot(root, state, progress=_hash_progress(bar), sink=sink)
        manifest = DataManifest(snap.entries, single=snap.single)
        by_digest: dict[str, tuple[str, int]] = {}
        for rel, (digest, _size, mode) in snap.entries.items():
            by_digest.setdefault(digest, (rel, mode))
        if isinstance(objects, LocalObjectStore):  # a torn blob (crash before sync) is rewritten
            present = objects.intact_many(
                {d: snap.entries[r][1] for d, (r, _) in by_digest.items()}
            )
        else:  # remote stores publish whole objects only
            present = objects.exists_many(by_digest)
        todo = [(d, rel, m) for d, (rel, m) in by_digest.items() if d not in present]
        unchanged = not todo and snap.entries == state.base and state.digest and state.name == name
        advance = bar.task(
            f"storing {len(todo)} files", sum(snap.entries[r][1] for _, r, _ in todo)
        )

        def full(rel: str) -> str:
            return os.fspath(root) if snap.single else os.path.join(root, rel)

        def store(item: tuple[str, str, int]) -> None:
            digest, rel, mode = item
            objects.ingest(full(rel), digest, link=link and mode == 0o644)
            advance(snap.entries[rel][1])

        parallel_map(store, todo, _WORKERS)
        objects.sync()  # every content blob is durable before anything references it
        if unchanged and state.digest and objects.exists(state.digest):
            mref = BlobRef(state.digest, 0)  # the base manifest, already stored
        else:
            mref = objects.put_bytes(manifest.to_bytes())
        run = fluent.active_run()
        version = sql.create_version(
            name,
            kind="files",
            manifest_digest=mref.digest,
            file_count=len(manifest.entries),
            total_bytes=manifest.total_bytes,
            actor=c.settings.user,
            run_id=run.run_id if run else None,
            message=message,
        )
    if run is not None and not version.created:
        sql.add_edge(f"run:{run.run_id}", version.node, "output")
    same_state = (
        (state.name, state.version, state.digest)
        == (name, version.version, version.manifest_digest)
        and snap.entries == state.base
        and snap.cache == state.cache
    )
    if not same_state:  # a no-op re-add leaves the state file as it was
        db.save(
            TreeState(
                str(root),
                name,
                version.version,
                version.manifest_digest,
                dict(snap.entries),
                snap.cache,
            )
        )
    if pointer:
        write_pointer(root, version)
    return version


# -- status and diff -----------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusReport:
    """A working tree compared with the version it was last added or checked out as."""

    root: str
    name: str | None
    version: int | None
    changes: TreeChanges
    hashed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.root,
            "name": self.name,
            "version": self.version,
            "clean": self.changes.clean,
            "hashed": self.hashed,
            **self.changes.to_dict(),
        }


def status(
    target: str | os.PathLike[str] | None = None,
    *,
    progress: bool | None = None,
    settings: Settings | None = None,
) -> list[StatusReport]:
    """Modified, added and deleted files of tracked trees (all, a path, or a dataset name).

    Reads only local state (no metadata store): one ``lstat`` per file, and hashes
    only files whose size, mtime or inode changed (then remembers them).
    """
    if settings is None:
        from keel.config import load_settings

        settings = load_settings()
    db = _state(settings)
    roots: list[str]
    if target is None:
        roots = [r for r, _, _ in db.all()]
    else:
        p = Path(target)
        if p.exists() or os.sep in str(target) or str(target) in (".", ".."):
            roots = [str(p.absolute())]
        else:
            roots = db.find(str(target))
            if not roots:
                raise NotFoundError(
                    f"No tracked path is a version of dataset '{target}' on this machine, and "
                    f"there is no file or folder '{target}'. Check it out with "
                    f"`keel data checkout {target}` or add it with `keel data add PATH`.",
                    name=str(target),
                )
    reports = []
    with _Bar(progress) as bar:
        for root in roots:
            state = db.load(root)
            if state.name is not None and not os.path.lexists(root):  # the tree was removed
                changes = diff_entries(state.base, {})
                reports.append(StatusReport(root, state.name, state.version, changes, 0))
                continue
            snap = snapshot(Path(root), state, progress=_hash_progress(bar))
            if snap.hashed or snap.cache.keys() != state.cache.keys():
                state.cache = snap.cache
                db.save(state)
            changes = diff_entries(state.base, snap.entries)
            reports.append(StatusReport(root, state.name, state.version, changes, snap.hashed))
    return reports


def diff(a: str, b: str, *, client: Client | None = None) -> TreeChanges:
    """Files added, modified and deleted from version ``a`` to version ``b``."""
    c = _client(client)
    sql = _sql(c)
    va, vb = (sql.get_version(*parse_ref(r)) for r in (a, b))
    if va.kind == "table" or vb.kind == "table":
        same = va.manifest_digest == vb.manifest_digest
        return TreeChanges([], [] if same else ["<table>"], [])
    return diff_entries(_manifest(c.objects, va).entries, _manifest(c.objects, vb).entries)


# -- materialising -------------------------------------------------------------------------------
class _Placer:
    """Puts verified blobs at paths: reflink, else hard link, else copy."""

    def __init__(self, objects: ObjectStore) -> None:
        from keel.objects import LocalObjectStore

        self.objects = objects
        self.local = objects if isinstance(objects, LocalObjectStore) else None
        self.reflink = True
        self.stamp_ns = time.time_ns() - 2 * RACY_NS
        # A hard link shares the read-only blob's inode; only permissions keep a write
        # to the checked-out file from corrupting the store, and root ignores them.
        self.hardlink = hasattr(os, "geteuid") and os.geteuid() != 0

    def place(self, digest: str, size: int, mode: int, dest: str) -> os.stat_result:
        """Put the verified blob at ``dest`` (a new path); returns the ``stat`` of ``dest``."""
        if self.local is None:
            self.objects.get_file(digest, dest)  # verified, atomic
            Path(dest).chmod(mode)
            return os.stat(dest)
        blob = os.fspath(self.local.blob_path(digest))
        how = "copy"
        if self.reflink and self._reflink(blob, dest):
            how = "reflink"
        elif self.hardlink and mode == 0o644:
            try:
                os.link(blob, dest)  # read-only: it shares the blob's inode
                how = "link"
            except FileNotFoundError:
                raise
            except OSError:
                self.hardlink = False
        if how == "copy" and size < _SMALL:  # one read, hashed in memory, one write
            return self._copy_small(blob, digest, dest, mode)
        if how == "copy":
            shutil.copyfile(blob, dest)
        self._check(digest, hash_one(dest, size))
        if how != "link":
            os.chmod(dest, mode)
            # Dated just before the checkout began: any later write moves mtime to
            # "now", so the state cache can trust these files at once (they are not
            # "racily clean") and the first status after a checkout hashes nothing.
            os.utime(dest, ns=(self.stamp_ns, self.stamp_ns))
        return os.stat(dest)

    def _check(self, digest: str, actual: str) -> None:
        if actual != digest:
            raise IntegrityError(
                f"Blob {digest} in {self.objects.uri} is corrupted: its content hashes to "
                f"{actual}. Delete it and restore it with `keel data pull`, or re-add the data.",
                digest=digest,
                actual=actual,
            )

    def _copy_small(self, blob: str, digest: str, dest: str, mode: int) -> os.stat_result:
        """One read, verified in memory, then exactly those bytes written (fd calls only)."""
        import blake3

        with open(blob, "rb") as fh:
            data = fh.read()
        self._check(digest, blake3.blake3(data).hexdigest())
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)  # whatever the umask
            os.utime(fd, ns=(self.stamp_ns, self.stamp_ns))  # see place()
            return os.fstat(fd)
        finally:
            os.close(fd)

    def _reflink(self, src: str, dest: str) -> bool:
        import fcntl

        try:
            with open(src, "rb") as s, open(dest, "wb") as d:
                fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
            return True
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(dest)
            if exc.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                self.reflink = False
                return False
            raise


def _ensure_local(c: Client, digests: Sequence[str], bar: _Bar) -> None:
    """Fetch blobs missing from the local store from the data remote, if one is set."""
    objects = c.objects
    have = objects.exists_many(digests)
    missing = [d for d in digests if d not in have]
    if not missing:
        return
    if not c.settings.data_remote:
        raise NotFoundError(
            f"{len(missing)} blob(s) of this version are not in the local object store "
            f"{objects.uri} (e.g. {missing[0][:12]}). Pull them with `keel data pull NAME@V "
            "--remote URI` or set KEEL_DATA_REMOTE.",
            digest=missing[0],
        )
    _transfer(_remote(c, None), objects, missing, bar, "pulling")


def _reusable(current: Snapshot | None, manifest: DataManifest) -> dict[str, tuple[str, Stat]]:
    """Files of the current tree whose content the target version keeps: rel -> (path, stat).

    A file qualifies when its fresh state-cache row (size, mtime, inode -> digest, so
    not "racily clean") proves it holds exactly the target entry (digest, size and
    mode).
    """
    if current is None or current.single or manifest.single:
        return {}
    root = os.fspath(current.root)
    return {
        rel: (os.path.join(root, rel), current.stats[rel])
        for rel, entry in manifest.entries.items()
        if current.entries.get(rel) == entry and rel in current.cache and rel in current.stats
    }


def _build(
    c: Client,
    manifest: DataManifest,
    parent: Path,
    label: str,
    bar: _Bar,
    reuse: dict[str, tuple[str, Stat]] | None = None,
) -> tuple[Path, Path, dict[str, Any]]:
    """Materialise a manifest in a fresh temp folder under ``parent``.

    Files in ``reuse`` (unchanged files of the tree being replaced) are hard-linked
    into the new tree instead of placed from the store: once the trees are swapped
    the old one is deleted, so those files simply move. Linking never writes to them,
    so an interrupted build leaves the old tree as it was. A file whose ``stat``
    differs from the one its hash was proved for, or a failed link (another
    filesystem, no hard links), falls back to placing the blob.

    Returns (temp folder, the path to swap in, stat cache of the new files).
    """

    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{label}.keel-tmp-", dir=parent))
    placer = _Placer(c.objects)
    started = time.time_ns()
    reuse = reuse or {}
    can_link = [bool(reuse)]
    try:
        items = sorted(manifest.entries.items())
        base = os.fspath(tmp)
        for rel in {os.path.dirname(r) for r, _ in items} - {""}:
            os.makedirs(os.path.join(base, rel), exist_ok=True)
        advance = bar.task(f"checking out {len(items)} files", manifest.total_bytes)

        def relink(rel: str, dest: str) -> os.stat_result | None:
            src, was = reuse[rel]
            try:
                os.link(src, dest)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    can_link[0] = False
                return None
            st = os.lstat(dest)  # a symlink in the tree is linked as a link: never reused
            if stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns, st.st_ino) == was[:3]:
                return st
            os.unlink(dest)  # changed since it was scanned, or a symlink: place the blob
            return None

        def one(item: tuple[str, tuple[str, int, int]]) -> tuple[str, tuple[int, int, int, int]]:
            rel, (digest, size, mode) = item
            dest = os.path.join(base, rel)
            st = relink(rel, dest) if can_link[0] and rel in reuse else None
            if st is None:
                if rel in reuse and not c.objects.exists(digest):  # not fetched up front
                    _ensure_local(c, [digest], bar)
                st = placer.place(digest, size, mode, dest)
            advance(size)
            return rel, (st.st_size, st.st_mtime_ns, st.st_ino, mode)

        stats = dict(parallel_map(one, items, _WORKERS))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    cache = fresh_cache(stats, manifest.entries, started)
    if manifest.single:
        (rel,) = manifest.entries
        return tmp, tmp / rel, cache
    return tmp, tmp, cache


def _swap_in(new: Path, target: Path, tmp: Path) -> None:
    """Replace ``target`` with ``new`` so that a reader sees the old or the new tree."""
    try:
        if not os.path.lexists(target):
            new.rename(target)
        elif new.is_dir() != target.is_dir():
            kinds = ("a folder", "a file") if target.is_dir() else ("a file", "a folder")
            raise InvalidStateError(
                f"{target} is {kinds[0]} but the version is {kinds[1]}; move it away first.",
                path=str(target),
            )
        elif not new.is_dir():
            new.replace(target)
        elif not exchange(new, target):  # `new` now holds the old tree, removed below
            old = tmp.with_name(tmp.name + "-old")
            target.rename(old)
            new.rename(target)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkout(
    ref: str,
    path: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    progress: bool | None = None,
    client: Client | None = None,
) -> Path:
    """Restore ``NAME@VERSION`` (or what a ``PATH.keel`` pointer names) into a path.

    The target defaults to the pointer's path, else the tree tracked for that
    dataset on this machine, else ``./NAME``. A target with uncommitted changes (or
    an untracked one) is refused unless ``force``. Returns the target path.
    """
    c = _client(client)
    sql = _sql(c)
    db = _state(c.settings)
    pointer = None
    if ref.endswith(POINTER_SUFFIX) and (Path(ref).is_file() or os.sep in ref):
        pointer = read_pointer(ref)
        name, number = pointer["name"], pointer["version"]
        default_target = Path(ref).absolute().with_name(pointer["path"])
    else:
        name, number = parse_ref(ref)
        known = db.find(name)
        default_target = Path(known[0]) if len(known) == 1 else Path.cwd() / name
    target = Path(path).absolute() if path is not None else default_target.absolute()
    dv = sql.get_version(name, number)
    if pointer is not None and pointer["manifest"] != dv.manifest_digest:
        raise IntegrityError(
            f"{ref} names {dv.uri} with manifest {pointer['manifest'][:12]}, but the store "
            f"records {dv.manifest_digest[:12]}: the pointer or the metadata store was altered.",
            ref=ref,
        )
    state = db.load(str(target))
    current: Snapshot | None = None
    if os.path.lexists(target) and not force:
        if state.name is None:
            raise InvalidStateError(
                f"{target} exists and is not a checked-out dataset; checking out would replace "
                "it. Move it away, or pass --force to overwrite it.",
                path=str(target),
            )
        current = snapshot(target, state)
        changes = diff_entries(state.base, current.entries)
        if not changes.clean:
            n = len(changes.added) + len(changes.modified) + len(changes.deleted)
            raise InvalidStateError(
                f"{target} has {n} uncommitted change(s) since {state.name}@{state.version} "
                "(see `keel data status`); checking out would lose them. Add them first with "
                "`keel data add`, or pass --force to discard them.",
                path=str(target),
            )
    elif state.name is not None and os.path.isdir(target):
        with contextlib.suppress(InvalidSpecError):  # --force on an odd tree: rebuild it all
            current = snapshot(target, state)
    with _Bar(progress) as bar, _store_lock(c.objects, exclusive=False):
        manifest = _manifest(c.objects, dv) if c.objects.exists(dv.manifest_digest) else None
        if manifest is None:
            _ensure_local(c, [dv.manifest_digest], bar)
            manifest = _manifest(c.objects, dv)
        reuse = _reusable(current, manifest)
        wanted = {e[0] for rel, e in manifest.entries.items() if rel not in reuse}
        _ensure_local(c, sorted(wanted), bar)
        tmp, new, cache = _build(c, manifest, target.parent, target.name, bar, reuse)
        _swap_in(new, target, tmp)
    db.save(
        TreeState(
            str(target), dv.name, dv.version, dv.manifest_digest, dict(manifest.entries), cache
        )
    )
    if pointer is None and pointer_path(target).is_file():
        write_pointer(target, dv)
    return target


def get(ref: str, *, progress: bool | None = None, client: Client | None = None) -> Path:
    """Materialise a files version (verified) in the local cache and return its path.

    ``ref`` is ``name``, ``name@latest`` or ``name@3``. The cache folder is keyed by
    the manifest digest; cached files are re-hashed on every call. Inside an active
    run, records the lineage edge ``dataset:name@v -> run`` (relation ``input``).
    """
    from keel.tracking import fluent

    c = _client(client)
    sql = _sql(c)
    dv = sql.get_version(*parse_ref(ref))
    cache_root = c.settings.home / "data-cache"
    final = cache_root / dv.manifest_digest
    with _Bar(progress) as bar, _store_lock(c.objects, exclusive=False):
        if not c.objects.exists(dv.manifest_digest):
            _ensure_local(c, [dv.manifest_digest], bar)
        manifest = _manifest(c.objects, dv)
        if final.is_dir() and not _cache_ok(final, manifest):
            shutil.rmtree(final, ignore_errors=True)
        if not final.is_dir():
            _ensure_local(c, sorted({e[0] for e in manifest.entries.values()}), bar)
            tmp = Path(tempfile.mkdtemp(prefix=".get-", dir=_mkdir(cache_root)))
            try:
                _, new, _ = _build(c, DataManifest(manifest.entries), tmp, "tree", bar)
                try:
                    new.rename(final)
                except OSError:  # another process finished first
                    if not final.is_dir():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    run = fluent.active_run()
    if run is not None:
        sql.add_edge(dv.node, f"run:{run.run_id}", "input")
    if manifest.single:
        (rel,) = manifest.entries
        return final / rel
    return final


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _cache_ok(folder: Path, manifest: DataManifest) -> bool:
    try:
        found = {
            str(Path(dp, f).relative_to(folder).as_posix())
            for dp, _, files in os.walk(folder)
            for f in files
        }
        if found != set(manifest.entries):
            return False
        return all(
            hash_one(os.path.join(folder, rel), size) == digest
            for rel, (digest, size, _) in manifest.entries.items()
        )
    except OSError:
        return False


# -- listing -------------------------------------------------------------------------------------
def list_datasets(*, client: Client | None = None) -> list[DatasetInfo]:
    """Every dataset with its version count and newest version."""
    return _sql(_client(client)).list_datasets()


def versions(name: str, *, client: Client | None = None) -> list[DatasetVersion]:
    """Every version of a dataset, oldest first."""
    return _sql(_client(client)).versions(name)


def get_version(ref: str, *, client: Client | None = None) -> DatasetVersion:
    """The version ``ref`` names (``name``, ``name@latest``, ``name@3``)."""
    return _sql(_client(client)).get_version(*parse_ref(ref))


# -- push / pull -----------------------------------------------------------------------------------
@dataclass
class TransferReport:
    """Blobs copied to or from a remote."""

    remote: str
    copied: int = 0
    present: int = 0
    bytes: int = 0
    versions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def _remote(c: Client, remote: str | None) -> ObjectStore:
    from keel.objects import open_object_store

    uri = remote or c.settings.data_remote
    if not uri:
        raise InvalidSpecError(
            "No data remote: pass --remote URI (a folder, file:// or s3://bucket/prefix) or "
            "set KEEL_DATA_REMOTE."
        )
    return open_object_store(uri, s3_endpoint_url=c.settings.s3_endpoint_url)


def _transfer(
    src: ObjectStore, dst: ObjectStore, digests: Sequence[str], bar: _Bar, label: str
) -> tuple[int, int, int]:
    """Copy blobs ``src`` -> ``dst`` (verified, in order groups: content before manifests).

    Returns (copied, already present, bytes copied).
    """
    from keel.objects import LocalObjectStore, hash_bytes

    present = dst.exists_many(digests)
    todo = [d for d in digests if d not in present]
    if not todo:
        return 0, len(present), 0
    if isinstance(src, LocalObjectStore) and isinstance(dst, LocalObjectStore):
        copied, size = _transfer_local(src, dst, todo, bar, label)
        return copied, len(present), size
    sizes = dict(zip(todo, _sizes(src, todo), strict=True))
    advance = bar.task(f"{label} {len(todo)} blobs", sum(sizes.values()))
    spool = dst.root / ".tmp" if isinstance(dst, LocalObjectStore) else None
    if spool is not None:
        spool.mkdir(parents=True, exist_ok=True)

    def one(digest: str) -> None:
        if isinstance(src, LocalObjectStore) and isinstance(dst, LocalObjectStore):
            if sizes[digest] < _SMALL:  # one read, verified, one write
                data = src.blob_path(digest).read_bytes()
                src._verify(digest, hash_bytes(data))
                dst.ingest_bytes(data, digest)
            else:
                dst.ingest(src.blob_path(digest), digest)  # copy_file_range, re-hashed
        elif isinstance(src, LocalObjectStore):
            dst.ingest(src.blob_path(digest), digest)
        else:
            with tempfile.TemporaryDirectory(dir=spool) as tmpdir:
                tmp = src.get_file(digest, Path(tmpdir) / digest)  # verified
                dst.ingest(tmp, digest, link=True)
        advance(sizes[digest])

    # the last digest of a version is its manifest: stored once its content is durable
    content, last = todo[:-1], todo[-1:]
    parallel_map(one, content, _WORKERS)
    dst.sync()
    for d in last:
        one(d)
    dst.sync()
    return len(todo), len(present), sum(sizes.values())


def _transfer_local(
    src: LocalObjectStore, dst: LocalObjectStore, todo: Sequence[str], bar: _Bar, label: str
) -> tuple[int, int]:
    """Folder to folder: each blob read once, verified, written once; one sync per group.

    Returns (copied, bytes copied).
    """
    dst.prepare_shards(todo)
    total = 0
    if bar.show:  # a stat each, only to size the bar
        total = sum(os.stat(src.blob_path(d)).st_size for d in todo)
    advance = bar.task(f"{label} {len(todo)} blobs", total)

    def one(digest: str) -> int:
        size = dst.copy_from(src, digest)
        advance(size)
        return size

    # the last digest of a version is its manifest: stored once its content is durable
    sizes = parallel_map(one, todo[:-1], _WORKERS)
    dst.sync()
    sizes.append(one(todo[-1]))
    dst.sync()
    return len(todo), sum(sizes)


def _sizes(objects: ObjectStore, digests: Sequence[str]) -> list[int]:
    from keel.objects import LocalObjectStore

    if isinstance(objects, LocalObjectStore):  # a stat each: no pool needed
        return [objects.blob_path(d).stat().st_size for d in digests]
    return parallel_map(objects.size, digests, _WORKERS)


def _selected(sql: SqlData, ref: str, all_versions: bool) -> list[DatasetVersion]:
    name, number = parse_ref(ref)
    if all_versions:
        return sql.versions(name)
    return [sql.get_version(name, number)]


def push(
    ref: str,
    remote: str | None = None,
    *,
    all_versions: bool = False,
    progress: bool | None = None,
    client: Client | None = None,
) -> TransferReport:
    """Copy a version's blobs (``name`` = latest, or every version) to a remote store."""
    c = _client(client)
    sql = _sql(c)
    dst = _remote(c, remote)
    report = TransferReport(dst.uri)
    with _Bar(progress) as bar:
        for dv in _selected(sql, ref, all_versions):
            copied, present, size = _transfer(
                c.objects, dst, _version_digests(c.objects, dv), bar, "pushing"
            )
            report.copied += copied
            report.present += present
            report.bytes += size
            report.versions.append(dv.uri)
    return report


def pull(
    ref: str,
    remote: str | None = None,
    *,
    all_versions: bool = False,
    progress: bool | None = None,
    client: Client | None = None,
) -> TransferReport:
    """Fetch a version's blobs from a remote store into the local object store."""
    c = _client(client)
    sql = _sql(c)
    src = _remote(c, remote)
    report = TransferReport(src.uri)
    with _Bar(progress) as bar, _store_lock(c.objects, exclusive=False):
        for dv in _selected(sql, ref, all_versions):
            if not c.objects.exists(dv.manifest_digest):
                if not src.exists(dv.manifest_digest):
                    raise NotFoundError(
                        f"{dv.uri} is neither in the local object store nor on {src.uri}; "
                        "push it from the machine that added it.",
                        ref=dv.uri,
                    )
                copied, _, size = _transfer(src, c.objects, [dv.manifest_digest], bar, "pulling")
                report.copied += copied
                report.bytes += size
            copied, present, size = _transfer(
                src, c.objects, _version_digests(c.objects, dv)[:-1], bar, "pulling"
            )
            report.copied += copied
            report.present += present
            report.bytes += size
            report.versions.append(dv.uri)
    return report


# -- garbage collection -------------------------------------------------------------------------
@dataclass
class GcReport:
    """What ``gc`` removed (or would remove, with ``dry_run``)."""

    removed: list[str]
    bytes: int
    kept_young: int
    referenced: int
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def gc(
    *,
    dry_run: bool = False,
    grace_seconds: float = 3600.0,
    client: Client | None = None,
) -> GcReport:
    """Remove local blobs that no metadata row references.

    Referenced: every dataset version's manifest, files and extra blobs, every run
    artifact and environment, every model version's manifest and files. Blobs
    modified within ``grace_seconds`` are kept (a writer outside keel's lock may be
    about to reference them). A dataset manifest missing locally makes gc refuse,
    since its files could not be told apart from garbage.
    """

    from keel.objects import LocalObjectStore

    c = _client(client)
    sql = _sql(c)
    if c.settings.tracking_uri:  # through a server: its own gc, on its own stores
        sql.referenced_blobs()  # raises the clear "run keel data gc on the server" error
    objects = c.objects
    if not isinstance(objects, LocalObjectStore):
        raise InvalidSpecError(
            f"gc cleans the local object store only; {objects.uri} is remote. Remove remote "
            "blobs with the storage provider's lifecycle rules."
        )
    with _store_lock(objects, exclusive=True):
        refs = sql.referenced_blobs()
        missing = []
        for dv in sql.all_versions():
            if dv.kind != "files":
                continue
            if not objects.exists(dv.manifest_digest):
                missing.append(dv.uri)
                continue
            refs |= {e[0] for e in _manifest(objects, dv).entries.values()}
        if missing:
            raise InvalidStateError(
                f"The manifests of {', '.join(missing[:5])} are missing from {objects.uri}, so "
                "their files cannot be told apart from garbage; nothing was removed. Run "
                "`keel data pull` for them first.",
                versions=missing,
            )
        from keel.objects.base import Manifest

        for digest in sql.model_manifests():
            with contextlib.suppress(Exception):  # the manifest's files are run artifacts too
                refs |= {
                    r.digest
                    for r in Manifest.from_bytes(objects.get_bytes(digest)).entries.values()
                }
        cutoff = time.time() - grace_seconds
        removed, size, young = [], 0, 0
        for digest in objects.list_digests():
            if digest in refs:
                continue
            path = objects.blob_path(digest)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if st.st_mtime > cutoff:
                young += 1
                continue
            removed.append(digest)
            size += st.st_size
            if not dry_run:
                objects.delete(digest)
        tmpdir = objects.root / ".tmp"
        if not dry_run:  # temp files of interrupted writes
            for part in objects.root.glob("??/.*.part"):
                with contextlib.suppress(OSError):
                    if part.stat().st_mtime < cutoff:
                        part.unlink()
        if not dry_run and tmpdir.is_dir():
            for part in tmpdir.iterdir():
                with contextlib.suppress(OSError):
                    if part.stat().st_mtime < cutoff:
                        if part.is_dir():
                            shutil.rmtree(part)
                        else:
                            part.unlink()
    return GcReport(removed, size, young, len(refs), dry_run)
