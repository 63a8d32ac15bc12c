"""Server fixtures: the app in-process (TestClient), clients wired to it, live ``keel server``s.

:class:`LiveServer` runs the real command (``python -m keel server``) on a free
loopback port with its own KEEL_HOME (and, for PostgreSQL, its own database).
``tests/conftest.py`` keeps one per backend for the whole session
(``live_servers``) so ``backend_env``'s ``remote`` variant can run the tracking
and registry end-to-end tests through it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from keel.objects.http import HttpObjectStore
from keel.server import create_app
from keel.store.rest import RestStore

Handler = Callable[[httpx.Request], httpx.Response]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a server process: no KEEL_* of the calling test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "PYTEST"))}
    env.update(KEEL_HOME=str(home), KEEL_USER="keel-server", **extra)
    return env


@contextlib.contextmanager
def auth_server_process(home: Path) -> Iterator[str]:
    """``keel server`` with access control on (KEEL_AUTH=on) over ``home``; yields its URL.

    Started on a free port, waited for until /healthz answers, stopped (SIGTERM, then
    SIGKILL) on exit. Seed users, tokens and roles in ``home`` before entering.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "keel", "server", "--host", "127.0.0.1", "--port", str(port)]
    with (home / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [*cmd, "--log-level", "warning"],
            env=server_env(home, KEEL_AUTH="on"),  # KEEL_USER=keel-server
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "keel server did not answer"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


class LiveServer:
    """A real ``keel server`` process on 127.0.0.1.

    Args:
        home: its KEEL_HOME (objects, and the SQLite store unless ``store_uri`` is given).
        store_uri: a metadata store for it (PostgreSQL).
    """

    def __init__(self, home: Path, store_uri: str | None = None) -> None:
        self.home = home
        self.store_uri = store_uri or f"sqlite:///{home / 'keel.db'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "server.log"

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until /healthz answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        extra = {"KEEL_STORE_URI": self.store_uri}
        cmd = [sys.executable, "-m", "keel", "server", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--log-level", "warning"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=server_env(self.home, **extra), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keel server exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    # the first store access creates the schema
                    httpx.get(f"{self.url}/api/v1/experiments", timeout=30).raise_for_status()
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"keel server did not answer:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self.proc = None

    def reset(self) -> None:
        """Empty the server's metadata store between tests while it keeps running.

        ``metric_keys`` stays: the server caches key ids, and keys are append-only
        in production too.
        """
        import sqlalchemy as sa

        from keel.store.schema import metadata
        from keel.store.sql import normalize_url

        engine = sa.create_engine(normalize_url(self.store_uri))
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                if table.name != "metric_keys":
                    conn.execute(table.delete())
            conn.execute(
                sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64}
            )
        engine.dispose()


class LiveServers:
    """Live servers by metadata-store backend (``sqlite``, ``postgres``), started on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: dict[str, LiveServer] = {}
        self._drop: list[Callable[[], None]] = []

    def get(self, backend: str) -> LiveServer:
        """The running server of a backend."""
        if backend not in self.servers:
            store_uri = self._postgres_database() if backend == "postgres" else None
            server = LiveServer(self.root / backend, store_uri)
            server.start()
            self.servers[backend] = server
        return self.servers[backend]

    def _postgres_database(self) -> str:
        import sqlalchemy as sa

        from keel.store.sql import normalize_url

        base = os.environ.get("KEEL_TEST_POSTGRES_URL")
        if not base:
            pytest.skip("set KEEL_TEST_POSTGRES_URL to run PostgreSQL tests")
        admin_url = normalize_url(base)
        name = f"keel_server_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            admin.dispose()

        self._drop.append(drop)
        return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        """Stop every server and drop their databases."""
        for server in self.servers.values():
            server.stop()
        for drop in self._drop:
            drop()


# -- in-process -------------------------------------------------------------------------------
@pytest.fixture
def app() -> FastAPI:
    """The app for this test's configuration (its own KEEL_HOME)."""
    return create_app()


@pytest.fixture
def http(app: FastAPI) -> TestClient:
    """A TestClient on the app."""
    return TestClient(app)


def forward_to(http: TestClient) -> Handler:
    """An httpx handler that answers through the in-process app (for MockTransport)."""

    def handler(request: httpx.Request) -> httpx.Response:
        skip = ("host", "accept-encoding")  # TestClient decodes gzip itself
        answer = http.request(
            request.method,
            str(request.url.copy_with(scheme="http", host="testserver", port=None)),
            headers={k: v for k, v in request.headers.items() if k.lower() not in skip},
            content=request.read(),
        )
        headers = answer.headers.multi_items()
        if "content-encoding" in answer.headers:  # .content is decoded already
            drop = ("content-encoding", "content-length")
            headers = [(k, v) for k, v in headers if k.lower() not in drop]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)

    return handler


@pytest.fixture
def rest_store(http: TestClient) -> Iterator[RestStore]:
    """A RestStore answered by the in-process app."""
    store = RestStore("http://keel.test", transport=httpx.MockTransport(forward_to(http)))
    yield store
    store.close()


@pytest.fixture
def http_objects(http: TestClient) -> Iterator[HttpObjectStore]:
    """An HttpObjectStore answered by the in-process app."""
    objects = HttpObjectStore("http://keel.test", transport=httpx.MockTransport(forward_to(http)))
    yield objects
    objects.close()


@pytest.fixture
def live_server(live_servers: Any) -> LiveServer:
    """The session's live server on SQLite, emptied for this test."""
    server: LiveServer = live_servers.get("sqlite")
    server.reset()
    return server
