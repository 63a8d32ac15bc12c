"""A real server over a populated KEEL_HOME, and a headless Chromium driven by Playwright.

The server runs in its own process (``uvicorn --factory keel.server.app:create_app``)
as user "ann"; the data is written beforehand by ``_populate.py`` as user "dev".
Chromium is Debian's (``make services`` installs it): Playwright's own browser
download is not used. Screenshots go to ``$KEEL_UI_SCREENSHOTS`` when set
(``docs/screenshots`` to refresh the docs), else to a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("KEEL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE = os.environ.get("KEEL_TEST_REQUIRE_BACKENDS") == "1"


def _missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"required by KEEL_TEST_REQUIRE_BACKENDS=1 but missing: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(home: Path, user: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(KEEL_HOME=str(home), KEEL_USER=user, PYTHONPATH=str(ROOT))
    return env


@pytest.fixture(scope="session")
def ui_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a keel server over the populated test data."""
    base = tmp_path_factory.mktemp("ui")
    home = base / ".keel"
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_populate.py"))],
        env=_clean_env(home, "dev"),
        cwd=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    port = _free_port()
    log = (base / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "keel.server.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=_clean_env(home, "ann"),
        cwd=base,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            raise RuntimeError("keel server did not start:\n" + (base / "server.log").read_text())
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium under Playwright (one per test process)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install 'keel[test]')")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        _missing(f"no Chromium at {CHROMIUM}: run `make services` (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, ui_url: str) -> Iterator[Any]:
    """A fresh page (own cookies and cache) that fails the test on any script error."""
    context = browser.new_context(base_url=ui_url, viewport={"width": 1360, "height": 900})
    # generous: CI shares 2 cores between the server, Chromium and another xdist worker
    context.set_default_timeout(30_000)
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))

    def check_console(msg: Any) -> None:
        # a 4xx page (e.g. a refused approval) is logged as "Failed to load resource"
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)

    pg.on("console", check_console)
    outside: list[str] = []

    def check_request(request: Any) -> None:
        if not request.url.startswith((ui_url, "data:", "about:")):
            outside.append(request.url)

    pg.on("request", check_request)
    yield pg
    context.close()
    assert not errors, f"browser errors: {errors}"
    assert not outside, f"requests left the server: {outside}"


@pytest.fixture(scope="session")
def shots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go (a relative $KEEL_UI_SCREENSHOTS is from where pytest started)."""
    target = os.environ.get("KEEL_UI_SCREENSHOTS")
    start = request.config.invocation_params.dir
    folder = start / target if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
