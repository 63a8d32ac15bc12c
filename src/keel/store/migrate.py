"""Schema migrations (Alembic), applied on first use and by ``keel db upgrade``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

__all__ = ["current_revision", "ensure_schema", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"


def current_revision(conn: Connection) -> str | None:
    """The revision stamped in the database, or None for an empty database."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _alembic_config(conn: Connection) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@contextlib.contextmanager
def _migration_lock(engine: Engine, url: str) -> Iterator[None]:
    """Serialise migrations across processes (file lock / advisory lock)."""
    if engine.dialect.name == "sqlite":
        db = sa.make_url(url).database
        if not db or db == ":memory:":
            yield
            return
        from filelock import FileLock

        with FileLock(f"{db}.migrate.lock", timeout=120):
            yield
    else:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(7210553)"))
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(7210553)"))
                conn.commit()


def upgrade(engine: Engine, url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the schema to ``revision``; returns (before, after)."""
    from alembic import command

    with _migration_lock(engine, url):
        with engine.connect() as conn:
            before = current_revision(conn)
        with engine.connect() as conn:
            cfg = _alembic_config(conn)
            command.upgrade(cfg, revision)  # type: ignore[arg-type]
            conn.commit()
        with engine.connect() as conn:
            after = current_revision(conn)
    return before, after


def ensure_schema(engine: Engine, url: str) -> None:
    """Bring the schema to the newest revision unless it is already there (fast path)."""
    from keel.store.sql import HEAD_REVISION

    with engine.connect() as conn:
        if current_revision(conn) == HEAD_REVISION:
            return
    upgrade(engine, url)
