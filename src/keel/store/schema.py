"""SQLAlchemy tables of the metadata store (one Alembic history for all dialects).

Design notes (see docs/architecture.md): metric points live in a narrow table
keyed by integer ids (``run_pk``, ``key_id``) clustered on its primary key —
``WITHOUT ROWID`` on SQLite — so a metric history is one range scan and 100M
points cost about 30 bytes each. ``latest_metrics`` keeps one row per (run,
key), which is what searches filter and sort on. A metric value of NULL
stores NaN (SQLite cannot store NaN; PostgreSQL follows the same convention).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s__%(column_0_N_name)s",
    "uq": "uq_%(table_name)s__%(column_0_N_name)s",
    "ck": "ck_%(table_name)s__%(constraint_name)s",
    "fk": "fk_%(table_name)s__%(column_0_name)s__%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# An id column that is BIGINT on PostgreSQL but INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for Alembic."""

    metadata = MetaData(naming_convention=NAMING)


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(250), unique=True)
    artifact_location: Mapped[str] = mapped_column(Text)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ExperimentTagRow(Base):
    __tablename__ = "experiment_tags"

    experiment_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = {"sqlite_with_rowid": False}


class RunRow(Base):
    __tablename__ = "runs"

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), unique=True)
    experiment_id: Mapped[int] = mapped_column(BigId, ForeignKey("experiments.id"))
    name: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger)
    heartbeat_at: Mapped[int | None] = mapped_column(BigInteger)
    parent_pk: Mapped[int | None] = mapped_column(BigId, ForeignKey("runs.pk"))
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")
    deleted_at: Mapped[int | None] = mapped_column(BigInteger)
    user: Mapped[str | None] = mapped_column(String(250))
    description: Mapped[str | None] = mapped_column(Text)
    failure: Mapped[str | None] = mapped_column(Text)
    environment_digest: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index(None, "experiment_id", "lifecycle_stage", "start_time"),
        Index(None, "status", "heartbeat_at"),
        Index(None, "parent_pk"),
    )


class ParamRow(Base):
    __tablename__ = "params"

    run_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("runs.pk", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index(None, "key", "run_pk"), {"sqlite_with_rowid": False})


class TagRow(Base):
    __tablename__ = "tags"

    run_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("runs.pk", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index(None, "key", "run_pk"), {"sqlite_with_rowid": False})


class MetricKeyRow(Base):
    __tablename__ = "metric_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(250), unique=True)


class MetricRow(Base):
    """One metric point; ``ts`` is microseconds since the epoch, NULL value = NaN."""

    __tablename__ = "metrics"

    run_pk: Mapped[int] = mapped_column(BigId, primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float | None] = mapped_column(Double)

    __table_args__ = {"sqlite_with_rowid": False}


class LatestMetricRow(Base):
    __tablename__ = "latest_metrics"

    run_pk: Mapped[int] = mapped_column(BigId, primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Double)

    __table_args__ = (Index(None, "key_id", "value"), {"sqlite_with_rowid": False})


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    run_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("runs.pk", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = {"sqlite_with_rowid": False}


experiments = cast(Table, ExperimentRow.__table__)
experiment_tags = cast(Table, ExperimentTagRow.__table__)
runs = cast(Table, RunRow.__table__)
params = cast(Table, ParamRow.__table__)
tags = cast(Table, TagRow.__table__)
metric_keys = cast(Table, MetricKeyRow.__table__)
metrics = cast(Table, MetricRow.__table__)
latest_metrics = cast(Table, LatestMetricRow.__table__)
artifacts = cast(Table, ArtifactRow.__table__)
