"""The metadata store (SQLite by default, PostgreSQL for teams)."""

from __future__ import annotations

from keel.store.base import Store
from keel.store.sql import SqlStore

__all__ = ["SqlStore", "Store", "open_store"]


def open_store(url: str, *, artifact_location: str = "") -> Store:
    """Return the store for a SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``)."""
    return SqlStore(url, artifact_location=artifact_location)
