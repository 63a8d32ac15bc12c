"""Dataset versions on the SQL store: immutable rows pointing at content-addressed blobs.

A version row is written only after every blob it references is durable (the
caller's job, see :mod:`keel.data`), in one transaction with its audit event and
lineage edge. Version numbers count up per dataset; the audit chain's lock (taken
first in every write transaction) serialises concurrent writers on both dialects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.exceptions import InvalidSpecError, NotFoundError, did_you_mean
from keel.store import _governance as gov
from keel.store import schema as t
from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.store.sql import SqlStore

__all__ = ["KINDS", "DatasetInfo", "DatasetVersion", "SqlData", "check_dataset_name"]

KINDS = ("files", "table")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,249}$")


def check_dataset_name(name: object) -> str:
    """Validate a dataset name: letters, digits, '_', '.', '-' (no '@' or '/')."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidSpecError(
            f"Dataset name {name!r} is not valid: use letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit, at most 250 characters), e.g. 'churn-2024'.",
            name=str(name),
        )
    return name


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset.

    Attributes:
        name: the dataset.
        version: 1, 2, ... per dataset.
        kind: ``files`` (a manifest of files) or ``table`` (one Parquet blob).
        manifest_digest: the blob naming the content (manifest, or Parquet for tables).
        file_count: files in the version (1 for a table).
        total_bytes: sum of the file sizes.
        created_at: milliseconds since the epoch.
        created_by: the user who created it.
        run_id: the run that produced it, if any.
        message: what changed.
        extra: kind-specific metadata (e.g. schema and profile blob digests).
        created: False when ``add`` found the content identical to the latest version.
    """

    name: str
    version: int
    kind: str
    manifest_digest: str
    file_count: int
    total_bytes: int
    created_at: int
    created_by: str | None = None
    run_id: str | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    created: bool = field(default=True, compare=False)

    @property
    def uri(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def node(self) -> str:
        """The lineage node, ``dataset:name@version``."""
        return f"dataset:{self.uri}"


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset and its newest version."""

    name: str
    description: str | None
    created_at: int
    version_count: int
    latest: DatasetVersion | None


def _version(name: str, row: Any) -> DatasetVersion:
    return DatasetVersion(
        name=name,
        version=int(row.version),
        kind=row.kind,
        manifest_digest=row.manifest_digest,
        file_count=int(row.file_count),
        total_bytes=int(row.total_bytes),
        created_at=int(row.created_at),
        created_by=row.created_by,
        run_id=row.run_id,
        message=row.message,
        extra=json.loads(row.extra) if row.extra else {},
    )


class SqlData:
    """Dataset storage over an :class:`~keel.store.sql.SqlStore` (shares its engine)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    # -- helpers -------------------------------------------------------------------------------
    def _dataset_row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(
            sa.select(t.datasets).where(t.datasets.c.name == check_dataset_name(name))
        ).one_or_none()
        if row is None:
            names = conn.execute(sa.select(t.datasets.c.name)).scalars().all()
            listing = ", ".join(sorted(names)[:20]) or "none yet"
            raise NotFoundError(
                f"Dataset '{name}' not found.{did_you_mean(name, names)} Datasets: {listing}. "
                "Create one with `keel data add PATH --name NAME`.",
                name=name,
            )
        return row

    def _latest_row(self, conn: Connection, dataset_id: int) -> Any:
        dv = t.dataset_versions.c
        return conn.execute(
            sa.select(t.dataset_versions)
            .where(dv.dataset_id == dataset_id)
            .order_by(dv.version.desc())
            .limit(1)
        ).one_or_none()

    # -- writes --------------------------------------------------------------------------------
    def create_version(
        self,
        name: str,
        *,
        kind: str,
        manifest_digest: str,
        file_count: int,
        total_bytes: int,
        actor: str,
        run_id: str | None = None,
        message: str | None = None,
        extra: dict[str, Any] | None = None,
        reuse_identical: bool = True,
    ) -> DatasetVersion:
        """Record a new version (the dataset is created on first use).

        With ``reuse_identical``, content equal to the latest version's returns that
        version (``created=False``) instead of a duplicate. A run id records a
        ``run:<id> -> dataset:<name>@<v>`` lineage edge (relation ``output``).
        """
        check_dataset_name(name)
        if kind not in KINDS:
            raise InvalidSpecError(f"Dataset kind must be one of {KINDS}, got {kind!r}.")
        now = now_ms()
        extra_json = json.dumps(extra or {}, sort_keys=True, separators=(",", ":"))
        with self.store._tx() as conn:
            gov.lock_head(conn)
            ds = conn.execute(
                sa.select(t.datasets.c.id).where(t.datasets.c.name == name)
            ).one_or_none()
            if ds is None:
                dataset_id = conn.execute(
                    sa.insert(t.datasets)
                    .values(name=name, created_by=actor, created_at=now)
                    .returning(t.datasets.c.id)
                ).scalar_one()
                latest = None
            else:
                dataset_id = ds.id
                latest = self._latest_row(conn, dataset_id)
            if (
                reuse_identical
                and latest is not None
                and latest.kind == kind
                and latest.manifest_digest == manifest_digest
                and latest.extra == extra_json
            ):
                found = _version(name, latest)
                return DatasetVersion(**{**found.__dict__, "created": False})
            number = 1 if latest is None else int(latest.version) + 1
            values = {
                "dataset_id": dataset_id,
                "version": number,
                "kind": kind,
                "manifest_digest": manifest_digest,
                "file_count": file_count,
                "total_bytes": total_bytes,
                "run_id": run_id,
                "message": message,
                "extra": extra_json,
                "created_by": actor,
                "created_at": now,
            }
            conn.execute(sa.insert(t.dataset_versions).values(**values))
            version = DatasetVersion(
                name=name,
                version=number,
                kind=kind,
                manifest_digest=manifest_digest,
                file_count=file_count,
                total_bytes=total_bytes,
                created_at=now,
                created_by=actor,
                run_id=run_id,
                message=message,
                extra=extra or {},
            )
            gov.append_event(
                conn,
                ts=now,
                actor=actor,
                action="dataset_version.create",
                obj=version.node,
                reason=message,
                after={"kind": kind, "manifest_digest": manifest_digest, "files": file_count},
            )
            if run_id:
                gov.add_edge(conn, f"run:{run_id}", version.node, "output", now)
        return version

    def delete_version(self, name: str, version: int, *, actor: str, reason: str | None) -> None:
        """Delete one version (its blobs become garbage unless something else uses them)."""
        with self.store._tx() as conn:
            gov.lock_head(conn)
            found = self._get(conn, name, version)
            dv = t.dataset_versions.c
            ds = self._dataset_row(conn, name)
            conn.execute(
                sa.delete(t.dataset_versions).where(
                    dv.dataset_id == ds.id, dv.version == found.version
                )
            )
            gov.append_event(
                conn,
                ts=now_ms(),
                actor=actor,
                action="dataset_version.delete",
                obj=found.node,
                reason=reason,
                before={"kind": found.kind, "manifest_digest": found.manifest_digest},
            )

    def add_edge(self, src: str, dst: str, relation: str) -> None:
        """Record a lineage edge (idempotent)."""
        with self.store._tx() as conn:
            gov.add_edge(conn, src, dst, relation, now_ms())

    # -- reads ---------------------------------------------------------------------------------
    def _get(self, conn: Connection, name: str, version: int | None) -> DatasetVersion:
        ds = self._dataset_row(conn, name)
        if version is None:
            row = self._latest_row(conn, ds.id)
            if row is None:
                raise NotFoundError(f"Dataset '{name}' has no versions.", name=name)
            return _version(name, row)
        dv = t.dataset_versions.c
        row = conn.execute(
            sa.select(t.dataset_versions).where(dv.dataset_id == ds.id, dv.version == version)
        ).one_or_none()
        if row is None:
            numbers = conn.execute(
                sa.select(dv.version).where(dv.dataset_id == ds.id).order_by(dv.version)
            ).scalars()
            listing = ", ".join(str(n) for n in numbers) or "none"
            raise NotFoundError(
                f"Dataset '{name}' has no version {version}. Versions: {listing}.",
                name=name,
                version=version,
            )
        return _version(name, row)

    def get_version(self, name: str, version: int | None = None) -> DatasetVersion:
        """One version; ``None`` means the latest."""
        with self.store._tx(write=False) as conn:
            return self._get(conn, name, version)

    def versions(self, name: str) -> list[DatasetVersion]:
        """Every version of a dataset, oldest first."""
        dv = t.dataset_versions.c
        with self.store._tx(write=False) as conn:
            ds = self._dataset_row(conn, name)
            rows = conn.execute(
                sa.select(t.dataset_versions).where(dv.dataset_id == ds.id).order_by(dv.version)
            ).all()
        return [_version(name, r) for r in rows]

    def list_datasets(self) -> list[DatasetInfo]:
        """Every dataset with its version count and newest version, by name."""
        dv = t.dataset_versions.c
        with self.store._tx(write=False) as conn:
            datasets = conn.execute(sa.select(t.datasets).order_by(t.datasets.c.name)).all()
            counts: dict[int, int] = dict(
                conn.execute(
                    sa.select(dv.dataset_id, sa.func.count()).group_by(dv.dataset_id)
                ).all()
            )
            newest = sa.select(dv.dataset_id, sa.func.max(dv.version).label("v")).group_by(
                dv.dataset_id
            )
            sub = newest.subquery()
            latest_rows = conn.execute(
                sa.select(t.dataset_versions).join(
                    sub, sa.and_(dv.dataset_id == sub.c.dataset_id, dv.version == sub.c.v)
                )
            ).all()
        by_id = {r.dataset_id: r for r in latest_rows}
        return [
            DatasetInfo(
                name=d.name,
                description=d.description,
                created_at=int(d.created_at),
                version_count=int(counts.get(d.id, 0)),
                latest=_version(d.name, by_id[d.id]) if d.id in by_id else None,
            )
            for d in datasets
        ]

    def all_versions(self) -> list[DatasetVersion]:
        """Every version of every dataset (for garbage collection and push)."""
        dv = t.dataset_versions.c
        with self.store._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(t.datasets.c.name, t.dataset_versions).join(
                    t.datasets, t.datasets.c.id == dv.dataset_id
                )
            ).all()
        return [_version(r.name, r) for r in rows]

    def referenced_blobs(self) -> set[str]:
        """Digests named directly by metadata rows: datasets, runs, model versions, and
        monitors' references and reports.

        Blobs named only *inside* a manifest are added by the caller, which can read
        manifests from the object store.
        """
        found = self.store.referenced_digests()
        with self.store._tx(write=False) as conn:
            found |= set(
                conn.execute(sa.select(t.model_versions.c.manifest_digest).distinct()).scalars()
            )
            for digest, extra in conn.execute(
                sa.select(t.dataset_versions.c.manifest_digest, t.dataset_versions.c.extra)
            ):
                found.add(digest)
                found |= set(_digests_in(json.loads(extra) if extra else {}))
            for spec in conn.execute(sa.select(t.monitors.c.spec)).scalars():
                found |= set(_digests_in(json.loads(spec)))
            r = t.monitor_runs.c
            for report, html in conn.execute(sa.select(r.report_digest, r.html_digest)):
                found |= {d for d in (report, html) if d}
        return found

    def model_manifests(self) -> Sequence[str]:
        """Manifest digests of every model version (their entries are referenced too)."""
        with self.store._tx(write=False) as conn:
            return list(
                conn.execute(sa.select(t.model_versions.c.manifest_digest).distinct()).scalars()
            )


def _digests_in(extra: dict[str, Any]) -> list[str]:
    """Values of ``extra`` that name blobs (keys ending in ``_digest``)."""
    return [str(v) for k, v in extra.items() if k.endswith("_digest") and isinstance(v, str)]
