"""Running ``keel`` in-process in tests: plain consoles and an exit-code-checking invoke."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from keel.cli import main as cli

runner = CliRunner()


def plain_consoles(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """Deterministic output: no colours, a fixed width (the consoles write to the runner)."""
    monkeypatch.setattr(cli, "console", Console(width=width, color_system=None))
    monkeypatch.setattr(cli, "err_console", Console(width=200, color_system=None, stderr=True))


def invoke(*args: str, code: int = 0) -> Any:
    """Run ``keel ARGS`` in-process and check its exit code."""
    result = runner.invoke(cli.app, list(args))
    assert result.exit_code == code, (
        f"keel {' '.join(args)} exited {result.exit_code}, expected {code}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nexception: {result.exception!r}"
    )
    if code == 0:
        assert result.exception is None
    return result
