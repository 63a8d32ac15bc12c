"""Monitors, their runs and alerts on the SQL store.

Several ``keel agent`` processes may run: a due monitor is *claimed* by a
compare-and-swap on its lease (``lease_until``), so exactly one agent evaluates it;
a crashed agent's lease expires and another takes over. Alerts are rows first and
deliveries second: an alert is kept (``pending``) until a delivery succeeds, each
attempt claimed the same way, so none is silently dropped or sent twice at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.exceptions import AlreadyExistsError, NotFoundError, did_you_mean
from keel.store import _governance as gov
from keel.store import schema as t
from keel.store._deploy import check_deployment_name
from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.store.sql import SqlStore

__all__ = ["AlertRecord", "MonitorRecord", "MonitorRunRecord", "SqlMonitors"]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class MonitorRecord:
    """A monitor as stored."""

    name: str
    spec: dict[str, Any]
    enabled: bool
    next_run_at: int
    lease_owner: str | None
    lease_until: int | None
    created_by: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class MonitorRunRecord:
    """One evaluation of a monitor."""

    id: int
    monitor: str
    started_at: int
    finished_at: int | None
    status: str
    agent: str | None
    summary: dict[str, Any]
    report_digest: str | None
    html_digest: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class AlertRecord:
    """An alert and the state of its delivery."""

    id: int
    monitor: str
    dedupe_key: str
    severity: str
    title: str
    payload: dict[str, Any]
    created_at: int
    state: str
    attempts: int
    next_attempt_at: int
    last_error: str | None
    delivered_at: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def _monitor(row: Any) -> MonitorRecord:
    return MonitorRecord(
        name=row.name,
        spec=json.loads(row.spec),
        enabled=bool(row.enabled),
        next_run_at=int(row.next_run_at),
        lease_owner=row.lease_owner,
        lease_until=None if row.lease_until is None else int(row.lease_until),
        created_by=row.created_by,
        created_at=int(row.created_at),
        updated_at=int(row.updated_at),
    )


def _alert(row: Any) -> AlertRecord:
    return AlertRecord(
        id=int(row.id),
        monitor=row.monitor,
        dedupe_key=row.dedupe_key,
        severity=row.severity,
        title=row.title,
        payload=json.loads(row.payload),
        created_at=int(row.created_at),
        state=row.state,
        attempts=int(row.attempts),
        next_attempt_at=int(row.next_attempt_at),
        last_error=row.last_error,
        delivered_at=None if row.delivered_at is None else int(row.delivered_at),
    )


class SqlMonitors:
    """Monitor storage over an :class:`~keel.store.sql.SqlStore` (shares its engine)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    # -- monitors ------------------------------------------------------------------------------
    def _row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(sa.select(t.monitors).where(t.monitors.c.name == name)).one_or_none()
        if row is None:
            names = conn.execute(sa.select(t.monitors.c.name)).scalars().all()
            raise NotFoundError(
                f"Monitor '{name}' not found.{did_you_mean(name, names)} Monitors: "
                f"{', '.join(sorted(names)[:20]) or 'none yet'}. Create one with "
                "keel.monitoring.create_monitor(...) or `keel monitor create`.",
                name=name,
            )
        return row

    def create(
        self, name: str, spec: dict[str, Any], *, actor: str, reason: str | None = None
    ) -> MonitorRecord:
        """Create a monitor, due at once (audited)."""
        check_deployment_name(name)
        now = now_ms()
        with self.store._tx() as conn:
            gov.lock_head(conn)
            exists = conn.execute(
                sa.select(t.monitors.c.id).where(t.monitors.c.name == name)
            ).one_or_none()
            if exists is not None:
                raise AlreadyExistsError(
                    f"Monitor '{name}' already exists; update it or pick another name.", name=name
                )
            conn.execute(
                sa.insert(t.monitors).values(
                    name=name,
                    spec=_dumps(spec),
                    enabled=1,
                    next_run_at=now,
                    created_by=actor,
                    created_at=now,
                    updated_at=now,
                )
            )
            gov.append_event(
                conn, ts=now, actor=actor, action="monitor.create", obj=f"monitor:{name}",
                reason=reason, after=spec,
            )  # fmt: skip
            return _monitor(self._row(conn, name))

    def update(
        self,
        name: str,
        *,
        actor: str,
        spec: dict[str, Any] | None = None,
        enabled: bool | None = None,
        reason: str | None = None,
    ) -> MonitorRecord:
        """Change a monitor's spec or pause/resume it (audited)."""
        now = now_ms()
        with self.store._tx() as conn:
            gov.lock_head(conn)
            row = self._row(conn, name)
            values: dict[str, Any] = {"updated_at": now}
            if spec is not None:
                values["spec"] = _dumps(spec)
            if enabled is not None:
                values["enabled"] = int(enabled)
                if enabled:
                    values["next_run_at"] = now
            conn.execute(sa.update(t.monitors).where(t.monitors.c.id == row.id).values(**values))
            gov.append_event(
                conn, ts=now, actor=actor, action="monitor.update", obj=f"monitor:{name}",
                reason=reason, before=json.loads(row.spec),
                after={"spec": spec, "enabled": enabled},
            )  # fmt: skip
            return _monitor(self._row(conn, name))

    def get(self, name: str) -> MonitorRecord:
        """A monitor."""
        with self.store._tx(write=False) as conn:
            return _monitor(self._row(conn, name))

    def list_all(self) -> list[MonitorRecord]:
        """Every monitor, by name."""
        with self.store._tx(write=False) as conn:
            rows = conn.execute(sa.select(t.monitors).order_by(t.monitors.c.name)).all()
        return [_monitor(r) for r in rows]

    def claim_due(self, agent: str, *, lease_ms: int, now: int | None = None) -> list[str]:
        """Take the lease of every due, enabled, unleased monitor; returns their names."""
        now = now_ms() if now is None else now
        m = t.monitors.c
        due = (
            (m.enabled == 1)
            & (m.next_run_at <= now)
            & (m.lease_until.is_(None) | (m.lease_until < now))
        )
        with self.store._tx(write=False) as conn:
            candidates = conn.execute(sa.select(m.id, m.name).where(due).order_by(m.id)).all()
        claimed: list[str] = []
        for row in candidates:
            with self.store._tx() as conn:
                result = conn.execute(
                    sa.update(t.monitors)
                    .where(m.id == row.id, due)
                    .values(lease_owner=agent, lease_until=now + lease_ms)
                )
                if result.rowcount == 1:
                    claimed.append(row.name)
        return claimed

    def release(self, name: str, agent: str, *, next_run_at: int) -> None:
        """Give the lease back and schedule the next run (only the lease holder can)."""
        m = t.monitors.c
        with self.store._tx() as conn:
            conn.execute(
                sa.update(t.monitors)
                .where(m.name == name, m.lease_owner == agent)
                .values(lease_owner=None, lease_until=None, next_run_at=next_run_at)
            )

    # -- runs ------------------------------------------------------------------------------------
    def add_run(
        self,
        name: str,
        *,
        started_at: int,
        status: str,
        agent: str,
        summary: dict[str, Any],
        report_digest: str | None = None,
        html_digest: str | None = None,
    ) -> MonitorRunRecord:
        """Record one evaluation."""
        now = now_ms()
        with self.store._tx() as conn:
            row = self._row(conn, name)
            run_id = conn.execute(
                sa.insert(t.monitor_runs)
                .values(
                    monitor_id=row.id,
                    started_at=started_at,
                    finished_at=now,
                    status=status,
                    agent=agent,
                    summary=_dumps(summary),
                    report_digest=report_digest,
                    html_digest=html_digest,
                )
                .returning(t.monitor_runs.c.id)
            ).scalar_one()
        return MonitorRunRecord(
            int(run_id), name, started_at, now, status, agent, summary, report_digest, html_digest
        )

    def runs(self, name: str, *, limit: int = 50) -> list[MonitorRunRecord]:
        """The latest evaluations of a monitor, newest first."""
        r = t.monitor_runs.c
        with self.store._tx(write=False) as conn:
            row = self._row(conn, name)
            rows = conn.execute(
                sa.select(t.monitor_runs)
                .where(r.monitor_id == row.id)
                .order_by(r.started_at.desc(), r.id.desc())
                .limit(limit)
            ).all()
        return [
            MonitorRunRecord(
                int(x.id),
                name,
                int(x.started_at),
                None if x.finished_at is None else int(x.finished_at),
                x.status,
                x.agent,
                json.loads(x.summary) if x.summary else {},
                x.report_digest,
                x.html_digest,
            )
            for x in rows
        ]

    # -- alerts ----------------------------------------------------------------------------------
    def raise_alert(
        self,
        monitor: str,
        *,
        dedupe_key: str,
        severity: str,
        title: str,
        payload: dict[str, Any],
        cooldown_ms: int,
    ) -> AlertRecord | None:
        """Record an alert unless one with the same key was raised within the cooldown."""
        now = now_ms()
        a = t.alerts.c
        with self.store._tx() as conn:
            recent = conn.execute(
                sa.select(a.id).where(a.dedupe_key == dedupe_key, a.created_at > now - cooldown_ms)
            ).first()
            if recent is not None:
                return None
            alert_id = conn.execute(
                sa.insert(t.alerts)
                .values(
                    monitor=monitor,
                    dedupe_key=dedupe_key,
                    severity=severity,
                    title=title,
                    payload=_dumps(payload),
                    created_at=now,
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                )
                .returning(a.id)
            ).scalar_one()
            return _alert(conn.execute(sa.select(t.alerts).where(a.id == alert_id)).one())

    def claim_deliveries(self, *, lease_ms: int, limit: int = 50) -> list[AlertRecord]:
        """Pending alerts whose next attempt is due, each claimed by pushing that time forward."""
        now = now_ms()
        a = t.alerts.c
        with self.store._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(t.alerts)
                .where(a.state == "pending", a.next_attempt_at <= now)
                .order_by(a.id)
                .limit(limit)
            ).all()
        claimed = []
        for row in rows:
            with self.store._tx() as conn:
                result = conn.execute(
                    sa.update(t.alerts)
                    .where(
                        a.id == row.id,
                        a.state == "pending",
                        a.next_attempt_at == row.next_attempt_at,
                    )
                    .values(next_attempt_at=now + lease_ms)
                )
            if result.rowcount == 1:
                claimed.append(_alert(row))
        return claimed

    def delivered(self, alert_id: int) -> None:
        """Mark an alert delivered."""
        with self.store._tx() as conn:
            conn.execute(
                sa.update(t.alerts)
                .where(t.alerts.c.id == alert_id)
                .values(
                    state="delivered",
                    delivered_at=now_ms(),
                    attempts=t.alerts.c.attempts + 1,
                    last_error=None,
                )
            )

    def attempt_failed(self, alert_id: int, error: str, *, retry_at: int | None) -> None:
        """Record a failed delivery: retry at ``retry_at``, or give up (state ``failed``)."""
        values: dict[str, Any] = {"attempts": t.alerts.c.attempts + 1, "last_error": error[:2000]}
        if retry_at is None:
            values["state"] = "failed"
        else:
            values["next_attempt_at"] = retry_at
        with self.store._tx() as conn:
            conn.execute(sa.update(t.alerts).where(t.alerts.c.id == alert_id).values(**values))

    def alerts(
        self, *, monitor: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[AlertRecord]:
        """Alerts, newest first."""
        a = t.alerts.c
        query = sa.select(t.alerts).order_by(a.id.desc()).limit(limit)
        if monitor is not None:
            query = query.where(a.monitor == monitor)
        if state is not None:
            query = query.where(a.state == state)
        with self.store._tx(write=False) as conn:
            return [_alert(r) for r in conn.execute(query)]

    # -- audit -------------------------------------------------------------------------------------
    def record_event(
        self, action: str, obj: str, *, actor: str, reason: str | None = None, after: Any = None
    ) -> None:
        """Append an audit event (e.g. a retraining gate's verdict)."""
        with self.store._tx() as conn:
            gov.lock_head(conn)
            gov.append_event(
                conn, ts=now_ms(), actor=actor, action=action, obj=obj, reason=reason, after=after
            )
