"""Capture of the code, software and hardware a run executes on.

The snapshot is stored once as a JSON blob in the object store (identical
environments share one blob) and referenced by the run; the most useful
fields are also set as ``keel.*`` tags so they can be searched. It is taken
once per process, at the first run: packages, hardware and the git state
do not change while a training script runs.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["capture_environment", "environment_tags", "git_info"]

MAX_DIFF = 1_000_000  # characters of `git diff` kept


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info(cwd: Path | None = None) -> dict[str, Any] | None:
    """Commit, branch, dirty flag, diff against HEAD and remote of the repo at ``cwd``."""
    where = cwd or Path.cwd()
    if shutil.which("git") is None:
        return None
    root = _git(["rev-parse", "--show-toplevel"], where)
    if root is None:
        return None
    commit = (_git(["rev-parse", "HEAD"], where) or "").strip() or None
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], where) or "").strip() or None
    status = _git(["status", "--porcelain", "--untracked-files=no"], where) or ""
    diff = _git(["diff", "HEAD"], where) if commit else None
    remote = (_git(["config", "--get", "remote.origin.url"], where) or "").strip() or None
    truncated = diff is not None and len(diff) > MAX_DIFF
    return {
        "root": root.strip(),
        "commit": commit,
        "branch": branch,
        "dirty": bool(status.strip()),
        "diff": diff[:MAX_DIFF] if diff else "",
        "diff_truncated": truncated,
        "remote": remote,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _gpus() -> list[dict[str, str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


@functools.cache
def _packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name] = dist.version
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


@functools.cache
def _static() -> dict[str, Any]:
    import psutil

    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "system": {
            "os": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "hostname": socket.gethostname(),
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total,
            "gpus": _gpus(),
        },
        "packages": _packages(),
    }


@functools.cache
def _process() -> dict[str, Any]:
    return {
        "command": [sys.executable, *sys.argv],
        "cwd": str(Path.cwd()),
        "git": git_info(),
    }


def capture_environment() -> dict[str, Any]:
    """The environment snapshot of this process (computed once, then cached)."""
    return {**_static(), **_process()}


def environment_tags(env: dict[str, Any]) -> dict[str, str]:
    """Searchable ``keel.*`` tags derived from a snapshot."""
    tags = {
        "keel.python": env["python"]["version"],
        "keel.host": env["system"]["hostname"],
        "keel.source": " ".join(env["command"][1:2]) or env["command"][0],
    }
    git = env.get("git")
    if git:
        if git.get("commit"):
            tags["keel.git.commit"] = git["commit"]
        if git.get("branch"):
            tags["keel.git.branch"] = git["branch"]
        tags["keel.git.dirty"] = str(git["dirty"]).lower()
    return {k: v[:8000] for k, v in tags.items()}
