#!/usr/bin/env python
"""Side-by-side benchmark of ``keel data`` against DVC on the same files.

One command runs everything::

    .venv/bin/python benchmarks/data/run.py

It (1) makes sure DVC is installed in its own pinned venv under
``benchmarks/.venvs/`` (created with ``uv`` on first use, reused afterwards),
(2) generates once, under ``benchmarks/.cache/``, one 2 GB file and 20,000 files
of 50 KB of seeded random (incompressible) bytes, (3) measures this machine's
limits on them (sequential read; read + BLAKE3, keel's hash; read + MD5, DVC's
hash; and copies), (4) drives each tool through the same workload as a user
would, one CLI command per fresh process, in its own temporary project (DVC:
``git init`` + ``dvc init``, a local cache and a local-folder remote; keel:
``KEEL_HOME`` inside the project and a local-folder remote), after an untimed
warm-up on 20 small files so both start with their bytecode cached, (5) checks
every status, checkout and pull against the content of its version, and (6)
prints a table and writes ``benchmarks/data/results-<date>.json``. The page cache
is never dropped: every figure is warm. See ``README.md`` beside this file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _harness as h  # noqa: E402

DVC_VERSION = "3.67.1"  # the newest DVC 3.x on PyPI when this was written
DVC_VENV = h.VENVS_DIR / f"dvc-{DVC_VERSION}"
CACHE_DIR = HERE.parent / ".cache" / "data-versioning"
PYCACHE_DIR = HERE.parent / ".cache" / "pycache"  # both tools' bytecode (PYTHONPYCACHEPREFIX)
KEEL_BIN = Path(sys.executable).parent / "keel"
SEED = 20_261_125
MB = 1_000_000
READ_BLOCK = 8 * 1024 * 1024
COMMAND_TIMEOUT_S = 1_800
DATASET = "bench"  # keel's dataset name (DVC has none: the .dvc file names the data)


@dataclass(frozen=True)
class Config:
    """Sizes and repeat counts. The defaults are the issue's; ``--quick`` shrinks them."""

    big_bytes: int = 2_000 * MB
    files: int = 20_000
    file_bytes: int = 50_000
    files_per_dir: int = 100
    changed_every: int = 100  # 1% of the files: those with index % 100 == k
    big_change_bytes: int = MB
    repeats: int = 3  # status, re-add, checkout switches, limits
    change_repeats: int = 3  # 20k files: modify a new 1% -> status -> add, this many times
    add_repeats_big: int = 1
    add_repeats_files: int = 2

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


#: The untimed warm-up: the whole workload on 20 files of 1 KB, so that every command's
#: imports are compiled and cached before anything is timed.
WARM_UP = Config(
    big_bytes=MB,
    files=20,
    file_bytes=1_000,
    files_per_dir=10,
    changed_every=10,
    repeats=1,
    change_repeats=1,
    add_repeats_files=1,
)
QUICK = Config(big_bytes=200 * MB, files=2_000, repeats=2, change_repeats=2, add_repeats_files=1)


def log(message: str) -> None:
    h.log(message)


# ------------------------------------------------------------------------ data


def _progress() -> Any:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=_stderr_console(),
        transient=True,
    )


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def big_file(cfg: Config) -> Path:
    """The cached big file, generated once (seeded random bytes, written atomically)."""
    path = CACHE_DIR / f"big-{cfg.big_bytes}.bin"
    if path.exists() and path.stat().st_size == cfg.big_bytes:
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    tmp = path.with_suffix(".tmp")
    with _progress() as bar, tmp.open("wb") as fh:
        task = bar.add_task(f"generating {path.name}", total=cfg.big_bytes)
        left = cfg.big_bytes
        while left:
            n = min(64 * 1024 * 1024, left)
            fh.write(rng.randbytes(n))
            left -= n
            bar.advance(task, n)
    tmp.replace(path)
    return path


def _tree_rel(i: int, cfg: Config) -> str:
    return f"d{i // cfg.files_per_dir:03d}/f{i:05d}.bin"


def file_tree(cfg: Config) -> Path:
    """The cached folder of ``files`` x ``file_bytes``, generated once."""
    root = CACHE_DIR / f"files-{cfg.files}x{cfg.file_bytes}"
    if root.is_dir():
        return root
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = random.Random(SEED + 1)
    with _progress() as bar:
        task = bar.add_task(f"generating {root.name}", total=cfg.files * cfg.file_bytes)
        for i in range(cfg.files):
            p = tmp / _tree_rel(i, cfg)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(rng.randbytes(cfg.file_bytes))
            bar.advance(task, cfg.file_bytes)
    tmp.rename(root)
    return root


def list_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def modify_big(path: Path, k: int, cfg: Config) -> int:
    """Overwrite ``big_change_bytes`` in the middle of the file (change ``k``); bytes changed."""
    rng = random.Random(SEED + 100 + k)
    with path.open("r+b") as fh:
        fh.seek(cfg.big_bytes // 2 + k * cfg.big_change_bytes)
        fh.write(rng.randbytes(cfg.big_change_bytes))
    return 1


def modify_tree(root: Path, k: int, cfg: Config) -> int:
    """Rewrite 1% of the files (index % changed_every == k) with new bytes; files changed."""
    rng = random.Random(SEED + 200 + k)
    changed = 0
    for i in range(k, cfg.files, cfg.changed_every):
        (root / _tree_rel(i, cfg)).write_bytes(rng.randbytes(cfg.file_bytes))
        changed += 1
    return changed


def content_digest(path: Path) -> str:
    """BLAKE3 of a file, or of a folder's sorted (relative path, file digest) pairs."""
    import blake3

    def one(p: Path) -> str:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(p)
        return hasher.hexdigest()

    if path.is_file():
        return one(path)
    files = list_files(path)
    with ThreadPoolExecutor() as pool:
        digests = list(pool.map(one, files))
    outer = blake3.blake3()
    for p, d in zip(files, digests, strict=True):
        outer.update(f"{p.relative_to(path).as_posix()}\0{d}\n".encode())
    return outer.hexdigest()


# ---------------------------------------------------------------------- limits


def _blocks(path: Path) -> Iterator[memoryview]:
    """The file's bytes in blocks of up to READ_BLOCK, read into one reused buffer."""
    with path.open("rb", buffering=0) as fh:
        if os.fstat(fh.fileno()).st_size < READ_BLOCK:
            yield memoryview(fh.read())  # small files: one read, as keel and DVC do
            return
        view = memoryview(bytearray(READ_BLOCK))
        while n := fh.readinto(view):
            yield view[:n]


def _read(path: Path) -> int:
    return sum(len(block) for block in _blocks(path))


def _blake3(path: Path) -> str:
    import blake3

    if path.stat().st_size >= READ_BLOCK:  # as keel: multi-threaded over an mmap
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(path)
        return hasher.hexdigest()
    return blake3.blake3(path.read_bytes()).hexdigest()


def _md5(path: Path) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    for block in _blocks(path):
        md5.update(block)
    return md5.hexdigest()


LIMIT_KINDS: dict[str, Callable[[Path], object]] = {
    "read": _read,
    "read+blake3": _blake3,
    "read+md5": _md5,
}


def _syncfs(folder: Path) -> None:
    """Flush one file system's dirty pages, as keel's object store does after an add."""
    import ctypes

    fd = os.open(folder, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


#: Every limit measured, in table order; the copies go to a folder in the temp directory.
LIMIT_NAMES = (*LIMIT_KINDS, "copy", "copy+syncfs")


def measure_limits(big: Path, tree: Path, repeats: int) -> dict[str, Any]:
    """Read, read + BLAKE3/MD5 and copy (+ syncfs) of the big file and the tree (threads)."""
    files = list_files(tree)
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-data-limits-"))
    out: dict[str, Any] = {"threads_for_tree": min(32, (os.cpu_count() or 1) + 4)}

    def copy(path: Path) -> None:
        shutil.copyfile(path, scratch / f"{path.parent.name}-{path.name}")

    kinds: dict[str, Callable[[Path], object]] = {**LIMIT_KINDS, "copy": copy, "copy+syncfs": copy}
    try:
        for label, paths in (("big", [big]), ("files", files)):
            size = sum(p.stat().st_size for p in paths)
            for kind, fn in kinds.items():
                log(f"[limits] {kind} of {label} ({size / MB:,.0f} MB) x{repeats} ...")
                samples = []
                for _ in range(repeats):
                    for leftover in scratch.iterdir():
                        leftover.unlink()
                    _syncfs(scratch)  # the deletions are not part of the next sample
                    t0 = h.now()
                    with ThreadPoolExecutor() as pool:
                        for _ in pool.map(fn, paths, chunksize=64):
                            pass
                    if kind == "copy+syncfs":
                        _syncfs(scratch)
                    samples.append(h.now() - t0)
                out[f"{label}/{kind}"] = {
                    **h.summarize(samples),
                    "bytes": size,
                    "mb_s": size / MB / statistics.median(samples),
                }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


# ---------------------------------------------------------------------- tools


PY_SPY = Path(sys.executable).parent / "py-spy"


def stack_report(raw: Path, title: str, top: int = 30) -> str:
    """Top functions of a py-spy raw (collapsed-stack) file, inclusive and self.

    Samples are taken from every thread (250 Hz, idle threads excluded), so a
    function's share is of the busy time of all threads together.
    """
    from collections import Counter

    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [title, f"{total} samples (all busy threads, 250 Hz)", "", "inclusive:"]
    out += [f"{100 * n / max(total, 1):6.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out += ["", "self:"]
    out += [f"{100 * n / max(total, 1):6.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(out) + "\n"


class CommandError(RuntimeError):
    """A tool's command exited non-zero or printed something unexpected."""


@dataclass
class Project:
    """One tool's temporary project: a work tree holding the data, and a remote folder."""

    tool: str
    base: Path
    data_name: str

    @property
    def root(self) -> Path:
        return self.base / "project"

    @property
    def data(self) -> Path:
        return self.root / self.data_name

    @property
    def remote(self) -> Path:
        return self.base / "remote"


class Tool(ABC):
    """How one tool is driven: one CLI command per fresh process, timed from the outside."""

    name = ""

    def __init__(self, project: Project, profile_dir: Path | None = None) -> None:
        self.p = project
        self.versions: list[int] = []  # 1-based version numbers, in the order added
        self.profile_dir = profile_dir  # keel only: run each command under py-spy
        self.step = "setup"  # the scenario's current step, names the profile reports

    def env(self) -> dict[str, str]:
        env = h.worker_env(self.name, self.p.root)
        # Start like on a user's machine: with cached bytecode (this machine's environment
        # sets PYTHONDONTWRITEBYTECODE, which makes every command compile its imports),
        # kept outside both venvs and the sources.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_DIR)
        return env

    def run(self, *argv: str | Path, expect: str | None = None) -> tuple[float, str]:
        """Run one command in the project; return (wall seconds, stdout + stderr)."""
        command = [str(a) for a in argv]
        raw = None
        if self.profile_dir and argv[0] == KEEL_BIN:
            raw = self.profile_dir / f"profile_{self.p.data_name}_{self.step}_{argv[2]}.raw"
            spy = [str(PY_SPY), "record", "--nolineno", "-r", "250", "-f", "raw", "-o", str(raw)]
            command = [*spy, "--", *command]
        t0 = h.now()
        proc = subprocess.run(
            command,
            cwd=self.p.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        wall = h.now() - t0
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise CommandError(f"`{' '.join(map(str, argv))}` exited {proc.returncode}:\n{tail}")
        if expect is not None and not re.search(expect, output):
            raise CommandError(
                f"`{' '.join(map(str, argv))}` printed no match for {expect!r}:\n{output[-2000:]}"
            )
        if raw is not None:
            text = stack_report(raw, f"`{' '.join(map(str, argv))}` ({wall:.2f} s with py-spy)")
            raw.with_suffix(".txt").write_text(text, encoding="utf-8")
            raw.unlink()
        return wall, output

    # Every method below runs in the project folder; the timed ones return seconds.
    @abstractmethod
    def init(self) -> None:
        """Create the tool's project (cache, remote) in the project folder."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything except the work tree's data, then init again."""

    @abstractmethod
    def add(self) -> float:
        """Version the work tree's data; seconds."""

    @abstractmethod
    def status(self, *, changed: int) -> float:
        """Status of the work tree, checked to report ``changed`` files; seconds."""

    @abstractmethod
    def checkout(self, version: int) -> float:
        """Restore ``version`` into the work tree; seconds."""

    @abstractmethod
    def push(self, version: int) -> float:
        """Copy ``version`` to the folder remote; seconds."""

    @abstractmethod
    def drop_local(self) -> None:
        """Delete the local cache and the work tree's data, as on a fresh clone."""

    @abstractmethod
    def pull(self, version: int) -> dict[str, float]:
        """Fetch ``version`` from the remote into the empty cache and restore the data."""


class Dvc(Tool):
    """DVC in a git repository (``dvc init``), default cache link type, a local remote."""

    name = "dvc"

    def __init__(self, project: Project, python: Path) -> None:
        super().__init__(project)
        self.dvc = python.parent / "dvc"
        # Earlier versions' .dvc files live outside the repo (like commits would):
        # inside, DVC would see several stages with the same output.
        self.saved = project.base / "dvc-versions"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["DVC_NO_ANALYTICS"] = "1"
        env["DVC_SITE_CACHE_DIR"] = str(self.p.base / "dvc-site-cache")  # fresh per project
        return env

    def init(self) -> None:
        self.run("git", "init", "-q")
        self.run(self.dvc, "init", "-q")
        self.run(self.dvc, "config", "core.analytics", "false")
        self.run(self.dvc, "config", "core.check_update", "false")
        self.run(self.dvc, "remote", "add", "-d", "local", self.p.remote)

    def reset(self) -> None:
        for name in (".git", ".dvc", ".dvcignore", ".gitignore", f"{self.p.data_name}.dvc"):
            _remove(self.p.root / name)
        _remove(self.p.base / "dvc-site-cache")
        _remove(self.saved)
        self.versions.clear()
        self.init()

    @property
    def dvc_file(self) -> Path:
        return self.p.root / f"{self.p.data_name}.dvc"

    def add(self) -> float:
        seconds, _ = self.run(self.dvc, "add", self.p.data_name)
        text = self.dvc_file.read_text()
        known = [v for v in self.versions if (self.saved / f"v{v}.dvc").read_text() == text]
        if not known:
            self.saved.mkdir(parents=True, exist_ok=True)
            self.versions.append(len(self.versions) + 1)
            (self.saved / f"v{self.versions[-1]}.dvc").write_text(text)
        return seconds

    def status(self, *, changed: int) -> float:
        expect = r"modified:" if changed else r"up to date"
        seconds, _ = self.run(self.dvc, "status", expect=expect)
        return seconds

    def checkout(self, version: int) -> float:
        shutil.copyfile(self.saved / f"v{version}.dvc", self.dvc_file)  # ~ `git checkout`
        seconds, _ = self.run(self.dvc, "checkout")
        return seconds

    def push(self, version: int) -> float:
        if self.dvc_file.read_text() != (self.saved / f"v{version}.dvc").read_text():
            raise CommandError(f"the work tree is not at v{version} before pushing")
        seconds, _ = self.run(self.dvc, "push")
        return seconds

    def drop_local(self) -> None:
        for p in (self.p.root / ".dvc" / "cache", self.p.root / ".dvc" / "tmp", self.p.data):
            _remove(p)
        _remove(self.p.base / "dvc-site-cache")

    def pull(self, version: int) -> dict[str, float]:
        seconds, _ = self.run(self.dvc, "pull")
        return {"total": seconds}


class Keel(Tool):
    """``keel data`` with ``KEEL_HOME`` in the project (SQLite + local object store)."""

    name = "keel"

    def init(self) -> None:
        self.run(KEEL_BIN, "data", "list")  # creates the store, as `dvc init` does

    def reset(self) -> None:
        _remove(self.p.root / ".keel")
        _remove(self.p.root / f"{self.p.data_name}.keel")
        self.versions.clear()
        self.init()

    def add(self) -> float:
        seconds, out = self.run(
            KEEL_BIN, "data", "add", self.p.data_name, "--name", DATASET, "--json"
        )
        try:  # the JSON object printed first (py-spy, when profiling, prints after it)
            doc, _ = json.JSONDecoder().raw_decode(out, out.index("{"))
            version = int(doc["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"`keel data add --json` printed no version: {out[-2000:]}") from exc
        if version not in self.versions:
            self.versions.append(version)
        return seconds

    def status(self, *, changed: int) -> float:
        expect = rf"\b{changed} modified" if changed else r": clean"
        seconds, _ = self.run(KEEL_BIN, "data", "status", self.p.data_name, expect=expect)
        return seconds

    def checkout(self, version: int) -> float:
        seconds, _ = self.run(KEEL_BIN, "data", "checkout", f"{DATASET}@{version}", self.p.data)
        return seconds

    def push(self, version: int) -> float:
        seconds, _ = self.run(
            KEEL_BIN, "data", "push", f"{DATASET}@{version}", "--remote", self.p.remote
        )
        return seconds

    def drop_local(self) -> None:
        _remove(self.p.root / ".keel" / "objects")
        _remove(self.p.data)

    def pull(self, version: int) -> dict[str, float]:
        ref = f"{DATASET}@{version}"
        fetch, _ = self.run(KEEL_BIN, "data", "pull", ref, "--remote", self.p.remote)
        restore, _ = self.run(KEEL_BIN, "data", "checkout", ref, self.p.data)
        return {"total": fetch + restore, "pull": fetch, "checkout": restore}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Dataset:
    """One of the two data sets: where it is cached and how it changes."""

    key: str  # "big" or "files"
    source: Path
    add_repeats: int
    change_repeats: int
    modify: Callable[[Path, int, Config], int]
    changed_label: str


def _copy_in(source: Path, dest: Path) -> None:
    if source.is_file():
        shutil.copyfile(source, dest)
    else:
        shutil.copytree(source, dest)


def run_scenario(tool: Tool, ds: Dataset, cfg: Config, expected_v1: str) -> dict[str, Any]:
    """The whole workload for one tool on one data set; every step checked."""
    res: dict[str, Any] = {}
    p = tool.p
    tag = f"[{tool.name}/{ds.key}]"

    def timed(op: str, samples: list[float], **extra: Any) -> None:
        res[op] = {**h.summarize(samples), **extra}
        log(f"{tag} {op}: median {statistics.median(samples):.2f} s")

    def step(name: str) -> None:
        tool.step = name

    p.root.mkdir(parents=True)
    p.remote.mkdir()
    _copy_in(ds.source, p.data)
    tool.init()
    # Untimed set-up I/O is flushed before each timed step, so that its dirty pages do not
    # throttle (or get written back during) the next tool command.
    _syncfs(p.root)

    log(f"{tag} add (fresh) x{ds.add_repeats} ...")
    step("add")
    samples = []
    for i in range(ds.add_repeats):
        if i:
            tool.reset()
            _syncfs(p.root)
        samples.append(tool.add())
    timed("add", samples)
    if tool.versions != [1]:
        raise CommandError(f"expected version 1 after the first add, have {tool.versions}")

    step("status_noop")
    timed("status_noop", [tool.status(changed=0) for _ in range(cfg.repeats)])
    step("readd_noop")
    timed("readd_noop", [tool.add() for _ in range(cfg.repeats)])
    if tool.versions != [1]:
        raise CommandError(f"a no-op re-add made a new version: {tool.versions}")

    status_s: list[float] = []
    add_s: list[float] = []
    digests = {1: expected_v1}
    step("changed")
    for k in range(ds.change_repeats):
        changed = ds.modify(p.data, k, cfg)
        digests[k + 2] = content_digest(p.data)
        _syncfs(p.root)
        status_s.append(tool.status(changed=changed))
        add_s.append(tool.add())
        if tool.versions[-1] != k + 2:
            raise CommandError(f"expected version {k + 2} after change {k + 1}: {tool.versions}")
    timed("status_changed", status_s)
    timed("add_changed", add_s)
    res["version_digests"] = {str(v): d for v, d in digests.items()}

    # Switch between v1 and v2 (one change apart), starting from v2.
    step("checkout_switch")
    if tool.versions[-1] != 2:
        tool.checkout(2)
    switches = [1 if i % 2 == 0 else 2 for i in range(cfg.repeats)]
    samples = []
    for v in switches:
        samples.append(tool.checkout(v))
        if content_digest(p.data) != digests[v]:
            raise CommandError(f"checkout of v{v} restored the wrong content")
    timed("checkout_switch", samples, switches=switches)
    if switches[-1] != 2:
        tool.checkout(2)

    step("push")
    timed("push", [tool.push(2)])
    res["remote_bytes"] = sum(f.stat().st_size for f in p.remote.rglob("*") if f.is_file())
    tool.drop_local()
    _syncfs(p.root)
    step("pull")
    parts = tool.pull(2)
    timed("pull", [parts["total"]], parts=parts)
    if content_digest(p.data) != digests[2]:
        raise CommandError("pull restored the wrong content")
    return res


def run_tool(
    tool: str,
    ds: Dataset,
    cfg: Config,
    dvc_python: Path | None,
    keep: bool,
    profile_dir: Path | None = None,
) -> Any:
    """One tool on one data set in a fresh temporary folder (removed afterwards)."""
    base = Path(tempfile.mkdtemp(prefix=f"keel-bench-data-{tool}-{ds.key}-"))
    project = Project(tool, base, ds.source.name.split("-")[0])
    runner: Tool = (
        Dvc(project, dvc_python) if tool == "dvc" and dvc_python else Keel(project, profile_dir)
    )
    t0 = h.now()
    try:
        result = run_scenario(runner, ds, cfg, content_digest(ds.source))
    except (CommandError, subprocess.TimeoutExpired, OSError) as exc:
        log(f"[{tool}/{ds.key}] FAILED: {exc}")
        result = {"error": str(exc).splitlines()[0], "detail": str(exc)}
    finally:
        if keep:
            log(f"[{tool}/{ds.key}] kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    result["wall_seconds"] = h.now() - t0
    return result


# ----------------------------------------------------------------------- table


@dataclass
class DataRow(h.Row):
    """A table row in seconds (``mlflow`` holds DVC's value): ratio DVC/keel, targets."""

    limit_s: float | None = None  # the machine's read + BLAKE3 time for the same bytes
    limit_factor: float | None = None  # keel must stay within this factor of limit_s
    max_s: float | None = None  # keel must stay under this many seconds
    dvc_missing: str = "failed"
    keel_missing: str = "failed"

    @property
    def met(self) -> bool | None:
        checks: list[bool] = []
        if self.target_ratio is not None and self.advantage is not None:
            checks.append(self.advantage >= self.target_ratio)
        if self.limit_factor and self.limit_s and self.keel is not None:
            checks.append(self.keel <= self.limit_factor * self.limit_s)
        if self.max_s is not None and self.keel is not None:
            checks.append(self.keel < self.max_s)
        return all(checks) if checks else None

    def met_text(self) -> str:
        text = super().met_text()
        if self.limit_s and self.keel is not None:
            text += f" ({self.keel / self.limit_s:.1f}x limit)"
        return text


def _labels(cfg: Config) -> dict[str, str]:
    return {
        "big": f"{cfg.big_bytes / 1e9:g} GB file",
        "files": f"{cfg.files:,} x {cfg.file_bytes / 1000:g} KB",
    }


def build_rows(
    results: dict[str, dict[str, Any]], limits: dict[str, Any], cfg: Config
) -> list[DataRow]:
    rows: list[DataRow] = []
    for key, label in _labels(cfg).items():
        if key not in results:
            continue
        change = (
            "1 MB changed" if key == "big" else f"1% ({cfg.files // cfg.changed_every:,}) changed"
        )
        ops: list[tuple[str, str, str, float | None, float | None]] = [
            ("add", "add (fresh)", ">= 3x, <= 1.5x limit", 3, None),
            ("status_noop", "no-op status", "< 0.5 s" if key == "files" else "-", None, None),
            ("readd_noop", "no-op re-add", ">= 3x", 3, None),
            ("status_changed", f"status, {change}", "-", None, None),
            ("add_changed", f"add, {change}", ">= 3x", 3, None),
            ("checkout_switch", "checkout, switching v1 <-> v2", "-", None, None),
            ("push", "push to a local-folder remote", ">= 3x", 3, None),
            ("pull", "pull into an empty cache + restore", ">= 3x", 3, None),
        ]
        for op, what, target, ratio, _ in ops:
            res = results[key]

            def value(tool: str, op: str = op, res: dict[str, Any] = res) -> float | None:
                return h.lookup(res.get(tool), op, "median")

            def missing(tool: str, res: dict[str, Any] = res) -> str:
                return "failed" if tool in res else "not run"

            rows.append(
                DataRow(
                    f"{label}: {what}",
                    "s",
                    value("dvc"),
                    value("keel"),
                    False,
                    target,
                    ratio,
                    limit_s=h.lookup(limits, f"{key}/read+blake3", "median")
                    if op == "add"
                    else None,
                    limit_factor=1.5 if op == "add" else None,
                    max_s=0.5 if target == "< 0.5 s" else None,
                    dvc_missing=missing("dvc"),
                    keel_missing=missing("keel"),
                )
            )
    return rows


HEADERS = ["Operation", "Unit", f"DVC {DVC_VERSION}", "keel", "DVC/keel", "Target", "Met"]


def row_cells(row: DataRow) -> list[str]:
    def cell(value: float | None, missing: str) -> str:
        return missing if value is None else h.fmt_number(value)

    return [
        row.label,
        row.unit,
        cell(row.mlflow, row.dvc_missing),
        cell(row.keel, row.keel_missing),
        h.fmt_ratio(row.advantage),
        row.target,
        row.met_text(),
    ]


LIMIT_HEADERS = ["Limit (this machine, warm page cache)", "s", "MB/s"]


def limit_cells(limits: dict[str, Any], cfg: Config) -> list[list[str]]:
    rows = []
    for key, label in _labels(cfg).items():
        for kind in LIMIT_NAMES:
            m = limits.get(f"{key}/{kind}")
            if m:
                threads = " (threads)" if key == "files" else ""
                rows.append(
                    [
                        f"{label}: {kind}{threads}",
                        h.fmt_number(m["median"]),
                        h.fmt_number(m["mb_s"]),
                    ]
                )
    return rows


def notes(results: dict[str, dict[str, Any]], env: dict[str, Any], cfg: Config) -> list[str]:
    keel_pull = [
        f"{_labels(cfg)[k]}: pull {h.fmt_number(parts['pull'])} s + checkout "
        f"{h.fmt_number(parts['checkout'])} s"
        for k, r in results.items()
        if (parts := (r.get("keel", {}).get("pull") or {}).get("parts")) and "pull" in parts
    ]
    return [
        "DVC/keel > 1 means keel is faster. Times are medians of wall time per CLI command, each "
        "in a fresh process (start-up included), page cache warm (never dropped), Python "
        "bytecode cached (PYTHONDONTWRITEBYTECODE removed, PYTHONPYCACHEPREFIX under "
        "benchmarks/.cache/, warmed by an untimed run of the whole workload on 20 small files). "
        "The benchmark's own untimed I/O (copying the data in, the changes, deleting the cache) "
        "is flushed with syncfs before the next timed command; the tools' own writes are not.",
        f"Repeats: fresh add {cfg.add_repeats_big}x (2 GB) / {cfg.add_repeats_files}x (files), "
        f"no-op status, no-op re-add and checkout switches {cfg.repeats}x; the 1% change "
        f"{cfg.change_repeats}x (a new 1% each time, so each status/add sees exactly "
        f"{cfg.files // cfg.changed_every:,} modified files); the 2 GB file changes once; "
        "push and pull once each.",
        "limit = this machine's read + BLAKE3 time for the same bytes (the fresh-add target is "
        "keel <= 1.5x it); see the limits table, which also has a plain copy and a copy + "
        "syncfs of the same bytes: a fresh add stores a copy (keel: copy, re-hash the copy, one "
        "syncfs before the version is recorded; DVC: copy, no fsync anywhere in DVC 3.67.1).",
        "DVC: git repo + `dvc init`, cache.type default (reflink,copy; reflink supported here: "
        f"{env['reflink']}, so {'reflink' if env['reflink'] else 'copy'}); `dvc add`, "
        "`dvc status`, `dvc checkout` after swapping in that version's .dvc file, `dvc push` to a "
        "`dvc remote add -d` folder, `dvc pull` after deleting .dvc/cache, .dvc/tmp, the site "
        "cache and the data.",
        "keel: KEEL_HOME in the project (SQLite + local object store, default copy into the "
        "store); `keel data add PATH --name bench`, `keel data status PATH`, `keel data checkout "
        "bench@V PATH`, `keel data push bench@2 --remote DIR`; pull = `keel data pull bench@2 "
        "--remote DIR` + `keel data checkout bench@2 PATH` after deleting the local object store "
        "and the data" + (f" ({'; '.join(keel_pull)})" if keel_pull else "") + ".",
    ]


def print_limits(limits: dict[str, Any], cfg: Config) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Limits: read and hash speed of this machine on the same files")
    for i, header in enumerate(LIMIT_HEADERS):
        table.add_column(header, justify="left" if i == 0 else "right")
    for cells in limit_cells(limits, cfg):
        table.add_row(*cells)
    Console(width=max(100, shutil.get_terminal_size().columns)).print(table)


def markdown(
    rows: list[DataRow], limits: dict[str, Any], results: dict[str, Any], env: Any, cfg: Config
) -> str:
    text = h.markdown_table(HEADERS, rows, row_cells, notes(results, env, cfg))
    lines = ["| " + " | ".join(LIMIT_HEADERS) + " |", "|---|---|---|"]
    lines += ["| " + " | ".join(c) + " |" for c in limit_cells(limits, cfg)]
    return text + "\n" + "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ main


def environment() -> dict[str, Any]:
    """Facts that shape the numbers: reflinks, whether caches can be dropped."""
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-data-probe-"))
    try:
        (scratch / "a").write_bytes(b"x" * 4096)
        reflink = (
            subprocess.run(
                ["cp", "--reflink=always", str(scratch / "a"), str(scratch / "b")],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "reflink": reflink,
        "drop_caches_writable": _drop_caches_writable(),
        "keel_bin": str(KEEL_BIN),
    }


def _drop_caches_writable() -> bool:
    """Whether this process may drop the page cache, probed without dropping anything.

    Writing ``0`` is out of range (EINVAL) when writing is allowed, and EACCES,
    EPERM or EROFS otherwise.
    """
    try:
        fd = os.open("/proc/sys/vm/drop_caches", os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, b"0")
    except OSError as exc:
        return exc.errno == errno.EINVAL
    finally:
        os.close(fd)
    return True


def keel_source() -> dict[str, Any]:
    """Which keel code ran: the commit, the uncommitted files of src/, a digest of src/keel."""
    root = HERE.parent.parent

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    digest = hashlib.sha256()
    for path in sorted((root / "src" / "keel").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": git("status", "--porcelain", "--", "src").splitlines(),
        "src_keel_sha256": digest.hexdigest(),
    }


def keel_version() -> str | None:
    return h.installed_version(Path(sys.executable), "keel")


def check_keel() -> str | None:
    """An error message if ``keel data`` is not usable from this venv."""
    if not KEEL_BIN.exists():
        return f"{KEEL_BIN} not found"
    proc = subprocess.run(
        [str(KEEL_BIN), "data", "--help"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or "checkout" not in proc.stdout:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit code {proc.returncode}"
    return None


def check_results(results: dict[str, dict[str, Any]]) -> list[str]:
    failures: list[str] = []
    for key, by_tool in results.items():
        for tool, res in by_tool.items():
            if "error" in res:
                failures.append(f"{tool}/{key}: {res['error']}")
        digests = [r["version_digests"] for r in by_tool.values() if "version_digests" in r]
        if len(digests) == 2 and digests[0] != digests[1]:
            failures.append(f"{key}: the two tools' versions hold different content")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200 MB file, 2,000 files, 2 repeats")
    parser.add_argument("--tools", default="dvc,keel", help="comma-separated: dvc,keel")
    parser.add_argument("--datasets", default="big,files", help="comma-separated: big,files")
    parser.add_argument("--repeats", type=int, help="repeats of the small operations")
    parser.add_argument("--skip-limits", action="store_true", help="do not measure the limits")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    parser.add_argument("--output", type=Path, help="results JSON (default results-<date>.json)")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown")
    parser.add_argument(
        "--profile",
        nargs="?",
        type=Path,
        const=HERE,
        metavar="DIR",
        help="afterwards, run keel's side once more with every command under py-spy "
        "(.venv/bin/py-spy), writing the top functions to profile_<data>_<step>_<command>.txt "
        "in DIR (default: beside this script); not used for the table; with --tools '' only this",
    )
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else Config()
    if args.repeats:
        cfg = Config(**{**cfg.to_json(), "repeats": args.repeats})
    tools = [t for t in ("dvc", "keel") if t in args.tools.split(",")]
    keys = [k for k in ("big", "files") if k in args.datasets.split(",")]
    if (not tools and not args.profile) or not keys:
        parser.error("no known tool (dvc,keel) or data set (big,files) selected")

    started = dt.datetime.now(dt.UTC)
    t_start = h.now()
    load_start = h.load_average()
    dvc_python: Path | None = None
    dvc_venv: dict[str, Any] = {}
    if "dvc" in tools:
        dvc_python, dvc_venv = h.ensure_venv(DVC_VENV, "dvc", DVC_VERSION, "DVC")
    if "keel" in tools and (error := check_keel()):
        log(f"`keel data` is not usable here ({error}); running without keel.")
        tools.remove("keel")
    env = environment()
    source_at_start = keel_source()

    sources = {"big": big_file(cfg), "files": file_tree(cfg)}
    limits = (
        {} if args.skip_limits else measure_limits(sources["big"], sources["files"], cfg.repeats)
    )
    datasets = {
        "big": Dataset("big", sources["big"], cfg.add_repeats_big, 1, modify_big, "1 MB"),
        "files": Dataset(
            "files", sources["files"], cfg.add_repeats_files, cfg.change_repeats, modify_tree, "1%"
        ),
    }
    warm_up = Dataset("files", file_tree(WARM_UP), 1, 1, modify_tree, "1%")
    for tool in [*tools, *(["keel"] if args.profile and "keel" not in tools else [])]:
        log(f"[{tool}] warm-up (untimed): the whole workload on {WARM_UP.files} small files ...")
        if "error" in (res := run_tool(tool, warm_up, WARM_UP, dvc_python, False)):
            log(f"[{tool}] warm-up failed: {res['error']}")
    results: dict[str, dict[str, Any]] = {}
    for key in keys:
        results[key] = {}
        for tool in tools:
            results[key][tool] = run_tool(tool, datasets[key], cfg, dvc_python, args.keep)

    profile: dict[str, Any] = {}
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        for key in keys:
            log(f"[keel/{key}] once more under py-spy, reports in {args.profile} ...")
            profile[key] = run_tool("keel", datasets[key], cfg, None, False, args.profile)

    failures = check_results(results)
    rows = build_rows(results, limits, cfg)
    total_s = h.now() - t_start
    load_end = h.load_average()
    versions = {
        "dvc": DVC_VERSION if "dvc" in tools else None,
        "keel": keel_version(),
        "keel_source_at_start": source_at_start,
        "keel_source_at_end": keel_source(),
    }
    title = (
        f"Data versioning: keel {versions['keel']} vs DVC {versions['dvc']} "
        f"({started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs{', QUICK' if args.quick else ''})"
    )
    print()
    if limits:
        print_limits(limits, cfg)
    h.print_table(title, HEADERS, rows, row_cells, notes(results, env, cfg))
    h.print_checks(
        failures,
        [
            "Correctness checks passed: every status saw what changed, every checkout and pull "
            "restored the exact content of its version, and both tools stored the same versions."
        ],
    )
    print(f"Total wall time: {total_s:.0f} s. {h.load_note(load_start, load_end)}")

    command = "python benchmarks/data/run.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    report = {
        "benchmark": "data-versioning",
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        "total_wall_seconds": total_s,
        "quick": args.quick,
        "config": cfg.to_json(),
        "versions": versions,
        "dvc_venv": dvc_venv,
        "environment": env,
        "machine": {**h.machine_info(), "loadavg_start": load_start, "loadavg_end": load_end},
        "limits": limits,
        "results": results,
        "profile_run": profile or None,
        "rows": [
            {
                "operation": r.label,
                "dvc_s": r.mlflow,
                "keel_s": r.keel,
                "dvc_over_keel": r.advantage,
                "target": r.target,
                "limit_s": r.limit_s,
                "met": r.met,
            }
            for r in rows
        ],
        "correctness_failures": failures,
    }
    output = args.output or (
        None if args.quick or not tools else HERE / f"results-{started:%Y-%m-%d}.json"
    )
    h.write_outputs(report, output, args.markdown, markdown(rows, limits, results, env, cfg))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
