"""``keel data`` end to end: Typer's CliRunner in-process, and the console script once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from keel.cli import main as cli
from keel.tracking import fluent

runner = CliRunner()
OLD = 1_600_000_000


@pytest.fixture(autouse=True)
def plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=200, color_system=None))
    monkeypatch.setattr(cli, "err_console", Console(width=200, color_system=None, stderr=True))


@pytest.fixture
def env(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("KEEL_STORE_URI", store_url)
    fluent._reset()
    yield store_url


def invoke(*args: str, code: int = 0) -> Any:
    result = runner.invoke(cli.app, list(args))
    assert result.exit_code == code, (
        f"keel {' '.join(args)} exited {result.exit_code}, expected {code}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nexception: {result.exception!r}"
    )
    return result


def _files(root: Path, files: dict[str, bytes], stamp: int) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, (OLD + stamp, OLD + stamp))
    return root


def test_data_commands_end_to_end(env: str, tmp_path: Path) -> None:
    data = _files(tmp_path / "data", {"a.txt": b"one", "b/c.txt": b"two"}, 1)
    out = invoke("data", "add", str(data), "--message", "first").stdout
    assert "Added data@1: 2 files" in out and "data.keel" in out and ".gitignore" in out
    assert "Unchanged" in invoke("data", "add", str(data)).stdout

    status = json.loads(invoke("data", "status", "--json").stdout)
    assert status == [
        {
            "path": str(data),
            "name": "data",
            "version": 1,
            "clean": True,
            "hashed": 0,
            "added": [],
            "modified": [],
            "deleted": [],
        }
    ]
    _files(data, {"a.txt": b"changed", "new.txt": b"n"}, 2)
    (data / "b" / "c.txt").unlink()
    out = invoke("data", "status", "data").stdout
    assert "1 modified, 1 added, 1 deleted since data@1" in out
    assert "modified: a.txt" in out and "added: new.txt" in out and "deleted: b/c.txt" in out

    v2 = json.loads(invoke("data", "add", str(data), "-n", "data", "--json").stdout)
    assert v2["version"] == 2 and v2["files"] == 2
    diff = json.loads(invoke("data", "diff", "data@1", "data@2", "--json").stdout)
    assert diff == {"added": ["new.txt"], "modified": ["a.txt"], "deleted": ["b/c.txt"]}
    assert "modified: a.txt" in invoke("data", "diff", "data@1", "data@2").stdout

    versions = invoke("data", "versions", "data").stdout
    assert "first" in versions and "files" in versions
    listing = json.loads(invoke("data", "list", "--json").stdout)
    assert listing[0]["name"] == "data" and listing[0]["versions"] == 2
    assert "data" in invoke("data", "list").stdout

    invoke("data", "checkout", "data@1")
    assert (data / "a.txt").read_bytes() == b"one" and not (data / "new.txt").exists()
    invoke("data", "checkout", str(tmp_path / "data.keel"))  # the pointer now names v1 too
    assert (data / "b" / "c.txt").read_bytes() == b"two"

    remote = tmp_path / "remote"
    pushed = json.loads(
        invoke("data", "push", "data", "--remote", str(remote), "--all-versions", "--json").stdout
    )
    assert pushed["copied"] > 0 and pushed["versions"] == ["data@1", "data@2"]
    assert (
        "already there" in invoke("data", "push", "data@2", "--remote", f"file://{remote}").stdout
    )
    assert (
        json.loads(invoke("data", "pull", "data", "--remote", str(remote), "--json").stdout)[
            "copied"
        ]
        == 0
    )

    gc = json.loads(invoke("data", "gc", "--dry-run", "--json").stdout)
    assert gc["removed"] == [] and gc["dry_run"] is True
    assert "Removed 0 blobs" in invoke("data", "gc", "--grace", "0").stdout


def test_errors_exit_codes_and_messages(env: str, tmp_path: Path) -> None:
    err = invoke("data", "add", str(tmp_path / "missing"), code=2).stderr
    assert "does not exist" in err and "Traceback" not in err
    assert "not found" in invoke("data", "versions", "nope", code=3).stderr
    assert "not valid" in invoke("data", "checkout", "x@zero", code=2).stderr
    data = _files(tmp_path / "data", {"a.txt": b"one"}, 1)
    invoke("data", "add", str(data))
    assert "No data remote" in invoke("data", "push", "data", code=2).stderr
    _files(data, {"a.txt": b"unsaved"}, 2)
    assert "uncommitted" in invoke("data", "checkout", "data@1", code=1).stderr
    invoke("data", "checkout", "data@1", "--force")
    assert "No tracked path" in invoke("data", "status", "ghost", code=3).stderr


def test_console_script_status_fast_path(env: str, tmp_path: Path) -> None:
    """The real entry point: `keel data status` runs without Typer and still reports errors."""
    data = _files(tmp_path / "data", {f"f{i}.txt": b"x" * i for i in range(50)}, 1)
    invoke("data", "add", str(data))
    environ = {**os.environ}
    run = [sys.executable, "-m", "keel.cli.main", "data", "status"]
    done = subprocess.run(
        [*run, "--json"], capture_output=True, text=True, env=environ, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["clean"] is True
    code = "import sys; from keel.cli.main import main; main(); print(sorted(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code, "data", "status"], capture_output=True, text=True, check=False
    )
    assert "clean (data@1)" in done.stdout
    assert "'sqlalchemy'" not in done.stdout and "'pydantic'" not in done.stdout
    done = subprocess.run([*run, "ghost"], capture_output=True, text=True, check=False)
    assert done.returncode == 3 and "Error: No tracked path" in done.stderr
    done = subprocess.run([*run, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "--json" in done.stdout  # help still goes through Typer
