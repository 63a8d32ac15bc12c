"""Deployments, their revisions, the prediction log and feedback on the SQL store.

A policy change is one transaction: the deployment row (revision + 1, compared
and swapped so two controllers cannot both advance a canary), the revision row,
its audit event and its lineage edges. Prediction rows are appended in batches
by the server's logger; feedback is upserted by request id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.exceptions import AlreadyExistsError, InvalidSpecError, NotFoundError, did_you_mean
from keel.store import _governance as gov
from keel.store import schema as t
from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.store.sql import SqlStore

__all__ = [
    "DeploymentRecord",
    "RevisionConflictError",
    "RevisionRecord",
    "SqlDeployments",
    "check_deployment_name",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,249}$")
#: Columns of the prediction log, in the order the logger fills them.
PREDICTION_COLUMNS = (
    "request_id",
    "deployment",
    "model_version",
    "served_by",
    "role",
    "status",
    "ts",
    "latency_ms",
    "n_rows",
    "inputs",
    "outputs",
    "error",
    "disagreement",
)


class RevisionConflictError(InvalidSpecError):
    """The deployment changed since it was read (another writer got there first)."""


def check_deployment_name(name: object) -> str:
    """Validate a deployment name: letters, digits, '_', '.', '-' (a URL path segment)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidSpecError(
            f"Deployment name {name!r} is not valid: use letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit, at most 250 characters), e.g. 'churn'.",
            name=str(name),
        )
    return name


@dataclass(frozen=True)
class DeploymentRecord:
    """A deployment as stored: its current revision and policy (JSON-ready dict)."""

    name: str
    revision: int
    policy: dict[str, Any]
    description: str | None
    created_by: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class RevisionRecord:
    """One past or current policy of a deployment."""

    name: str
    revision: int
    action: str
    policy: dict[str, Any]
    actor: str
    reason: str | None
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "revision": self.revision,
            "action": self.action,
            "policy": self.policy,
            "actor": self.actor,
            "reason": self.reason,
            "created_at": self.created_at,
        }


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _record(row: Any) -> DeploymentRecord:
    return DeploymentRecord(
        name=row.name,
        revision=int(row.revision),
        policy=json.loads(row.policy),
        description=row.description,
        created_by=row.created_by,
        created_at=int(row.created_at),
        updated_at=int(row.updated_at),
    )


class SqlDeployments:
    """Deployment storage over an :class:`~keel.store.sql.SqlStore` (shares its engine)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    # -- deployments -------------------------------------------------------------------------
    def _row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(
            sa.select(t.deployments).where(t.deployments.c.name == check_deployment_name(name))
        ).one_or_none()
        if row is None:
            names = conn.execute(sa.select(t.deployments.c.name)).scalars().all()
            listing = ", ".join(sorted(names)[:20]) or "none yet"
            raise NotFoundError(
                f"Deployment '{name}' not found.{did_you_mean(name, names)} Deployments: "
                f"{listing}. Create one with `keel deploy create NAME models:/MODEL/VERSION`.",
                name=name,
            )
        return row

    def create(
        self,
        name: str,
        policy: Mapping[str, Any],
        *,
        actor: str,
        reason: str | None = None,
        description: str | None = None,
        models: Iterable[str] = (),
    ) -> DeploymentRecord:
        """Create a deployment at revision 1 (audited; ``models`` linked in lineage)."""
        check_deployment_name(name)
        now = now_ms()
        body = _dumps(dict(policy))
        with self.store._tx() as conn:
            gov.lock_head(conn)
            exists = conn.execute(
                sa.select(t.deployments.c.id).where(t.deployments.c.name == name)
            ).one_or_none()
            if exists is not None:
                raise AlreadyExistsError(
                    f"Deployment '{name}' already exists. Change its traffic with `keel deploy "
                    "set-traffic`/`canary`/`promote`, or pick another name.",
                    name=name,
                )
            dep_id = conn.execute(
                sa.insert(t.deployments)
                .values(
                    name=name,
                    description=description,
                    revision=1,
                    policy=body,
                    created_by=actor,
                    created_at=now,
                    updated_at=now,
                )
                .returning(t.deployments.c.id)
            ).scalar_one()
            self._write_revision(conn, dep_id, name, 1, "create", body, actor, reason, now, models)
            row = self._row(conn, name)
        return _record(row)

    def update(
        self,
        name: str,
        policy: Mapping[str, Any],
        *,
        action: str,
        actor: str,
        reason: str | None = None,
        expected_revision: int | None = None,
        models: Iterable[str] = (),
    ) -> DeploymentRecord:
        """Write a new revision; with ``expected_revision`` only if nobody changed it since."""
        now = now_ms()
        body = _dumps(dict(policy))
        with self.store._tx() as conn:
            gov.lock_head(conn)
            row = self._row(conn, name)
            if expected_revision is not None and int(row.revision) != expected_revision:
                raise RevisionConflictError(
                    f"Deployment '{name}' is at revision {row.revision}, not "
                    f"{expected_revision}: it changed meanwhile. Read it again and retry.",
                    name=name,
                )
            revision = int(row.revision) + 1
            conn.execute(
                sa.update(t.deployments)
                .where(t.deployments.c.id == row.id)
                .values(revision=revision, policy=body, updated_at=now)
            )
            self._write_revision(
                conn, row.id, name, revision, action, body, actor, reason, now, models
            )
            row = self._row(conn, name)
        return _record(row)

    def _write_revision(
        self,
        conn: Connection,
        dep_id: int,
        name: str,
        revision: int,
        action: str,
        body: str,
        actor: str,
        reason: str | None,
        now: int,
        models: Iterable[str],
    ) -> None:
        conn.execute(
            sa.insert(t.deployment_revisions).values(
                deployment_id=dep_id,
                revision=revision,
                action=action,
                policy=body,
                actor=actor,
                reason=reason,
                created_at=now,
            )
        )
        gov.append_event(
            conn,
            ts=now,
            actor=actor,
            action=f"deployment.{action}",
            obj=f"deployment:{name}",
            reason=reason,
            after={"revision": revision, "policy": json.loads(body)},
        )
        node = f"deployment:{name}@{revision}"
        gov.add_edge(conn, f"deployment:{name}", node, "revision", now)
        for ref in models:  # lineage: which model versions this revision serves
            gov.add_edge(conn, f"model_version:{ref}", node, "deployed", now)

    def get(self, name: str) -> DeploymentRecord:
        """The deployment and its current policy."""
        with self.store._tx(write=False) as conn:
            return _record(self._row(conn, name))

    def list_all(self) -> list[DeploymentRecord]:
        """Every deployment, by name."""
        with self.store._tx(write=False) as conn:
            rows = conn.execute(sa.select(t.deployments).order_by(t.deployments.c.name)).all()
        return [_record(r) for r in rows]

    def revisions_by_name(self) -> dict[str, int]:
        """``{name: revision}`` of every deployment: the servers' cheap change check."""
        d = t.deployments.c
        with self.store._tx(write=False) as conn:
            return {r.name: int(r.revision) for r in conn.execute(sa.select(d.name, d.revision))}

    def history(self, name: str) -> list[RevisionRecord]:
        """Every revision of a deployment, oldest first."""
        r = t.deployment_revisions.c
        with self.store._tx(write=False) as conn:
            row = self._row(conn, name)
            rows = conn.execute(
                sa.select(t.deployment_revisions)
                .where(r.deployment_id == row.id)
                .order_by(r.revision)
            ).all()
        return [
            RevisionRecord(
                name=name,
                revision=int(x.revision),
                action=x.action,
                policy=json.loads(x.policy),
                actor=x.actor,
                reason=x.reason,
                created_at=int(x.created_at),
            )
            for x in rows
        ]

    # -- prediction log and feedback ---------------------------------------------------------
    def log_predictions(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append prediction rows (dicts with :data:`PREDICTION_COLUMNS`) in one transaction."""
        if not rows:
            return
        with self.store._tx() as conn:
            # the driver's executemany directly: a flush of thousands of rows is on the
            # server's hot path (it holds the GIL), and Core's per-row processing tripled it
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            sql = (
                f"INSERT INTO predictions ({', '.join(PREDICTION_COLUMNS)}) "
                f"VALUES ({', '.join([mark] * len(PREDICTION_COLUMNS))})"
            )
            conn.exec_driver_sql(sql, [tuple(r.get(c) for c in PREDICTION_COLUMNS) for r in rows])

    def predictions(
        self,
        deployment: str,
        *,
        since: int = 0,
        until: int | None = None,
        roles: Sequence[str] | None = None,
        columns: Sequence[str] = PREDICTION_COLUMNS,
    ) -> list[dict[str, Any]]:
        """Prediction rows of a deployment in ``[since, until)`` (ms), oldest first."""
        p = t.predictions.c
        query = sa.select(*(p[c] for c in columns)).where(p.deployment == deployment, p.ts >= since)
        if until is not None:
            query = query.where(p.ts < until)
        if roles is not None:
            query = query.where(p.role.in_(list(roles)))
        with self.store._tx(write=False) as conn:
            rows = conn.execute(query.order_by(p.ts, p.id)).all()
        return [dict(r._mapping) for r in rows]

    def record_feedback(self, rows: Sequence[Mapping[str, Any]], *, actor: str) -> int:
        """Upsert feedback by request id; returns how many of the ids were predicted here.

        Each row: ``request_id`` and ``value`` (a number) and/or ``labels`` (a list).
        """
        if not rows:
            return 0
        now = now_ms()
        values = [
            {
                "request_id": str(r["request_id"]),
                "ts": now,
                "value": None if r.get("value") is None else float(r["value"]),
                "labels": None if r.get("labels") is None else _dumps(r["labels"]),
                "actor": actor,
            }
            for r in rows
        ]
        # one row per request id (the last wins): an upsert may not touch a row twice
        values = list({v["request_id"]: v for v in values}.values())
        ids = [v["request_id"] for v in values]
        with self.store._tx() as conn:
            insert = self.store._insert(t.feedback)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["request_id"],
                    set_={
                        "ts": insert.excluded.ts,
                        "value": insert.excluded.value,
                        "labels": insert.excluded.labels,
                        "actor": insert.excluded.actor,
                    },
                ),
                values,
            )
            known = conn.execute(
                sa.select(sa.func.count(sa.distinct(t.predictions.c.request_id))).where(
                    t.predictions.c.request_id.in_(ids)
                )
            ).scalar_one()
        return int(known)

    def feedback(self, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Feedback of the given requests: ``{request_id: {"value": ..., "labels": [...]}}``."""
        out: dict[str, dict[str, Any]] = {}
        f = t.feedback.c
        ids = list(dict.fromkeys(request_ids))
        with self.store._tx(write=False) as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for r in conn.execute(
                    sa.select(f.request_id, f.value, f.labels).where(f.request_id.in_(chunk))
                ):
                    out[r.request_id] = {
                        "value": r.value,
                        "labels": None if r.labels is None else json.loads(r.labels),
                    }
        return out

    def arm_stats(self, deployment: str, *, since: int) -> dict[str, tuple[int, float, float]]:
        """Per model version: (n, sum, sum of squares) of the numeric feedback ``value`` of
        requests routed to it since ``since`` (the A/B test's sufficient statistics)."""
        p, f = t.predictions.c, t.feedback.c
        query = (
            sa.select(
                p.model_version,
                sa.func.count(f.value),
                sa.func.coalesce(sa.func.sum(f.value), 0.0),
                sa.func.coalesce(sa.func.sum(f.value * f.value), 0.0),
            )
            .select_from(t.predictions.join(t.feedback, f.request_id == p.request_id))
            .where(
                p.deployment == deployment,
                p.ts >= since,
                p.role.in_(["primary", "candidate"]),
                f.value.is_not(None),
            )
            .group_by(p.model_version)
        )
        with self.store._tx(write=False) as conn:
            return {r[0]: (int(r[1]), float(r[2]), float(r[3])) for r in conn.execute(query)}
