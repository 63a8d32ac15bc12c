"""``/api/v1/lineage``, ``/api/v1/audit`` and ``/api/v1/roles``."""

from __future__ import annotations

import base64
import json
from typing import Literal

from fastapi import APIRouter, Query

from keel.exceptions import InvalidSpecError
from keel.registry import Registry
from keel.server.deps import ActorDep, ClientDep, RegistryDep
from keel.server.schemas import (
    AuditEventOut,
    AuditPage,
    AuditVerification,
    EdgeCreate,
    LineageOut,
    RoleGrant,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["governance"])

MAX_EVENTS = 10_000


# -- lineage ----------------------------------------------------------------------------------
@router.get("/lineage")
def lineage(
    client: ClientDep,
    node: str = Query(description="run id, models:/name/<version> or kind:id"),
    direction: Literal["up", "down"] = "up",
    depth: int = Query(10, ge=1, le=100),
) -> LineageOut:
    """Walk the lineage graph from a node (``up`` = towards its sources)."""
    walk = Registry(client).lineage(node, direction, depth)
    return LineageOut(
        start=walk.start, direction=walk.direction, nodes=walk.nodes, edges=walk.edges
    )


@router.post("/lineage/edges", status_code=204)
def add_edge(body: EdgeCreate, client: ClientDep) -> None:
    """Record that ``dst`` derives from ``src`` (idempotent)."""
    Registry(client).add_lineage(body.src, body.dst, body.relation)


# -- audit ------------------------------------------------------------------------------------
def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError
    except Exception:
        raise InvalidSpecError(
            f"Invalid page_token {token!r}: pass back the next_page_token of the previous page."
        ) from None
    return offset


@router.get("/audit/events")
def audit_events(
    reg: RegistryDep,
    object_prefix: str | None = Query(None, description="e.g. model:churn or model_version:"),
    max_results: int = Query(1000, ge=1, le=MAX_EVENTS),
    page_token: str | None = None,
) -> AuditPage:
    """Audit events in chain order, one page at a time."""
    offset = _decode_token(page_token)
    events = reg.audit_events(object_prefix, offset + max_results + 1)[offset:]
    more = len(events) > max_results
    return AuditPage(
        events=[AuditEventOut.model_validate(e) for e in events[:max_results]],
        next_page_token=_encode_token(offset + max_results) if more else None,
    )


@router.get("/audit/verify")
def verify_audit(reg: RegistryDep) -> AuditVerification:
    """Re-hash the whole audit chain: events checked, or the first broken one and why."""
    checked, problem = reg.verify_audit()
    return AuditVerification(checked=checked, problem=problem)


# -- roles ------------------------------------------------------------------------------------
@router.post("/roles", status_code=204)
def grant(body: RoleGrant, reg: RegistryDep, actor: ActorDep) -> None:
    """Give a user a role (reader, writer, approver, admin) on a model or everywhere."""
    reg.grant(body.user, body.role, actor=actor, model=body.model)


@router.delete("/roles", status_code=204)
def revoke(
    reg: RegistryDep,
    actor: ActorDep,
    user: str = Query(),
    role: str = Query(),
    model: str | None = None,
) -> None:
    """Take a role away."""
    reg.revoke(user, role, actor=actor, model=model)
