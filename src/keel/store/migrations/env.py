"""Alembic environment: keel passes an open connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from keel.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - keel always passes a connection
    raise RuntimeError("keel migrations run through keel.store.migrate(); use `keel db upgrade`.")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
