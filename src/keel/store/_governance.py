"""Lineage edges and the hash-chained audit log, written inside callers' transactions.

The audit log is append-only. Every event's hash is BLAKE3 over its sequence
number, content and the previous event's hash, and a one-row head table holds
the newest (seq, hash). Appenders lock the head row first (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite's write lock already serialises), so concurrent
writers chain correctly and read consistent "before" states. Editing,
deleting (anywhere, including the newest rows) or reordering rows breaks a
link that :func:`verify_chain` names.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from typing import Any

import blake3
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.entities import AuditEvent
from keel.store import schema as t

__all__ = [
    "GENESIS",
    "add_edge",
    "append_event",
    "iter_events",
    "lock_head",
    "verify_chain",
    "walk",
]

GENESIS = "0" * 64


def _dumps(value: Any) -> str | None:
    return (
        None
        if value is None
        else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    )


def _event_hash(
    seq: int,
    ts: int,
    actor: str,
    action: str,
    obj: str,
    reason: str | None,
    before: str | None,
    after: str | None,
    prev_hash: str,
) -> str:
    body = json.dumps(
        [seq, ts, actor, action, obj, reason, before, after, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return blake3.blake3(body.encode()).hexdigest()


def lock_head(conn: Connection) -> None:
    """Take the audit chain's lock for the rest of the transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(t.audit_head.c.seq).where(t.audit_head.c.id == 1).with_for_update())


def append_event(
    conn: Connection,
    *,
    ts: int,
    actor: str,
    action: str,
    obj: str,
    reason: str | None = None,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """Append one event to the chain (call :func:`lock_head` first in the transaction)."""
    head = conn.execute(
        sa.select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)
    ).one()
    seq, prev = int(head.seq) + 1, str(head.hash)
    before_s, after_s = _dumps(before), _dumps(after)
    digest = _event_hash(seq, ts, actor, action, obj, reason, before_s, after_s, prev)
    conn.execute(
        sa.insert(t.audit_events).values(
            seq=seq,
            ts=ts,
            actor=actor,
            action=action,
            object=obj,
            reason=reason,
            before=before_s,
            after=after_s,
            prev_hash=prev,
            hash=digest,
        )
    )
    conn.execute(sa.update(t.audit_head).where(t.audit_head.c.id == 1).values(seq=seq, hash=digest))
    return AuditEvent(seq, ts, actor, action, obj, reason, before, after, prev, digest)


def _event(row: Any) -> AuditEvent:
    return AuditEvent(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        object=row.object,
        reason=row.reason,
        before=None if row.before is None else json.loads(row.before),
        after=None if row.after is None else json.loads(row.after),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def iter_events(
    conn: Connection, *, obj_prefix: str | None = None, limit: int | None = None
) -> Iterator[AuditEvent]:
    """Events in chain order, optionally for objects starting with ``obj_prefix``."""
    q = sa.select(t.audit_events).order_by(t.audit_events.c.seq)
    if obj_prefix:
        q = q.where(t.audit_events.c.object.startswith(obj_prefix, autoescape=True))
    if limit:
        q = q.limit(limit)
    for row in conn.execute(q):
        yield _event(row)


def verify_chain(conn: Connection) -> tuple[int, str | None]:
    """Check the whole chain; returns (events checked, None) or (seq, what is wrong)."""
    prev, expected_seq, count = GENESIS, 1, 0
    for row in conn.execute(sa.select(t.audit_events).order_by(t.audit_events.c.seq)):
        if row.seq != expected_seq:
            return row.seq, (
                f"event {expected_seq} is missing (found {row.seq} next): a row was deleted"
            )
        if row.prev_hash != prev:
            return row.seq, (
                f"event {row.seq} does not follow event {row.seq - 1}: rows were reordered "
                "or the previous event was altered"
            )
        actual = _event_hash(
            row.seq,
            row.ts,
            row.actor,
            row.action,
            row.object,
            row.reason,
            row.before,
            row.after,
            row.prev_hash,
        )
        if actual != row.hash:
            return row.seq, f"event {row.seq} was edited: its content no longer matches its hash"
        prev, expected_seq, count = row.hash, expected_seq + 1, count + 1
    head = conn.execute(
        sa.select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)
    ).one()
    if head.seq != count or head.hash != prev:
        return count + 1, (
            f"the log ends at event {count} but its head records event {head.seq}: "
            "the newest events were deleted or the head was altered"
        )
    return count, None


def add_edge(conn: Connection, src: str, dst: str, relation: str, ts: int) -> None:
    """Record that ``dst`` derives from ``src`` (idempotent)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    conn.execute(
        insert(t.lineage_edges)
        .values(src=src, dst=dst, relation=relation, created_at=ts)
        .on_conflict_do_nothing()
    )


def walk(
    conn: Connection, start: str, direction: str, depth: int
) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Breadth-first walk up (towards sources) or down (towards derived objects).

    Returns (nodes in visit order, edges as (src, dst, relation)).
    """
    e = t.lineage_edges.c
    nodes, edges = [start], []
    seen = {start}
    frontier: deque[tuple[str, int]] = deque([(start, 0)])
    while frontier:
        node, level = frontier.popleft()
        if level >= depth:
            continue
        if direction == "up":
            rows = conn.execute(sa.select(e.src, e.dst, e.relation).where(e.dst == node)).all()
            nexts = [(r.src, (r.src, r.dst, r.relation)) for r in rows]
        else:
            rows = conn.execute(sa.select(e.src, e.dst, e.relation).where(e.src == node)).all()
            nexts = [(r.dst, (r.src, r.dst, r.relation)) for r in rows]
        for other, edge in sorted(nexts):
            edges.append(edge)
            if other not in seen:
                seen.add(other)
                nodes.append(other)
                frontier.append((other, level + 1))
    return nodes, edges
