"""Shared fixtures: isolated KEEL_HOME, real PostgreSQL, a real S3 server (moto).

Backends are chosen by environment variables that ``make test`` sets:
``KEEL_TEST_POSTGRES_URL`` (a server URL; each xdist worker gets its own fresh
database) and ``KEEL_TEST_S3=1`` (start moto in server mode on loopback).
Without them a backend's tests skip with a reason; with ``KEEL_TEST_REQUIRE_BACKENDS=1``
(set by ``make test``) a missing backend fails instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.config import load_settings
from keel.objects import LocalObjectStore, ObjectStore
from keel.objects.remote import FsspecObjectStore
from keel.store import SqlStore
from keel.tracking import fluent

REQUIRE = os.environ.get("KEEL_TEST_REQUIRE_BACKENDS") == "1"


def _missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"backend required by KEEL_TEST_REQUIRE_BACKENDS=1 is missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def keel_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own KEEL_HOME and no stray KEEL_* settings."""
    for var in list(os.environ):
        if var.startswith("KEEL_") and not var.startswith("KEEL_TEST_"):
            monkeypatch.delenv(var)
    home = tmp_path / ".keel"
    monkeypatch.setenv("KEEL_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    fluent._reset()
    yield home
    for run in list(fluent._stack):
        run.end()
    for client in list(fluent._clients.values()):
        client.close()
    fluent._reset()


# -- PostgreSQL ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh database on the test PostgreSQL server, dropped at the end."""
    base = os.environ.get("KEEL_TEST_POSTGRES_URL")
    if not base:
        _missing("set KEEL_TEST_POSTGRES_URL to run PostgreSQL tests")
    import sqlalchemy as sa

    from keel.store.sql import normalize_url

    admin_url = normalize_url(base)
    name = f"keel_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # server down
        _missing(f"PostgreSQL at {base} unavailable: {exc}")
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n "
                "AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    import sqlalchemy as sa

    from keel.store.schema import metadata

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        if sa.inspect(conn).has_table("runs"):
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            if sa.inspect(conn).has_table("audit_head"):  # the chain's genesis row
                conn.execute(
                    sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"),
                    {"h": "0" * 64},
                )
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """The PostgreSQL test database, emptied before the test."""
    _truncate_postgres(postgres_server_url)
    return postgres_server_url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A metadata-store URL for each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'keel.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """A migrated, empty SqlStore on each backend."""
    s = SqlStore(store_url)
    yield s
    s.close()


# -- S3 (moto in server mode) -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback, one per test process."""
    if os.environ.get("KEEL_TEST_S3") != "1" and not REQUIRE:
        pytest.skip("set KEEL_TEST_S3=1 to run S3 tests against a moto server")
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        _missing("moto server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; returns its s3:// URI with a prefix."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"keel-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}/objects"


@pytest.fixture(params=["local", "s3"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """An empty object store on each backend."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    uri = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    fs_store = FsspecObjectStore(uri, storage_options={"endpoint_url": endpoint})
    fs_store.fs.invalidate_cache()
    return fs_store


# -- backend_env: each metadata-store backend, in-process and through a live keel server --------
#: Modules whose backend_env tests use it as a store URL (SqlStore(...), child processes).
_LOCAL_ONLY_MODULES = ("tests.tracking.test_reliability",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "local_only: run backend_env tests in-process only (they poke local files)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run backend_env tests twice per backend: in-process and remote (a live keel server)."""
    if "backend_env" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("local_only") or metafunc.module.__name__.endswith(
        _LOCAL_ONLY_MODULES
    ):
        return
    metafunc.parametrize("backend_mode", ["local", "remote"])


@pytest.fixture
def backend_mode() -> str:
    """``local`` (in-process stores) unless parametrised with ``remote``."""
    return "local"


@pytest.fixture(scope="session")
def live_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Real ``keel server`` processes, one per metadata-store backend, started on first use."""
    from tests.server.conftest import LiveServers

    servers = LiveServers(tmp_path_factory.mktemp("keel-servers"))
    yield servers
    servers.close()


@pytest.fixture
def backend_env(
    store_url: str,
    backend_mode: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> str:
    """Point the fluent API at each metadata-store backend.

    With ``backend_mode == "remote"`` it goes through a live ``keel server`` on
    that backend instead (``KEEL_TRACKING_URI``); returns the store URL or the
    server's URL.
    """
    if backend_mode == "remote":
        backend = "postgres" if store_url.startswith("postgresql") else "sqlite"
        server = request.getfixturevalue("live_servers").get(backend)
        server.reset()
        monkeypatch.setenv("KEEL_TRACKING_URI", server.url)
        fluent._reset()
        assert load_settings().tracking_uri == server.url
        return str(server.url)
    monkeypatch.setenv("KEEL_STORE_URI", store_url)
    fluent._reset()
    assert load_settings().store_uri == store_url
    return store_url
