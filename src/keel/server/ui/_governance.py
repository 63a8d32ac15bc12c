"""Registry pages: models, versions with their cards, approvals, lineage and the audit log."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from keel.entities import AuditEvent
from keel.exceptions import (
    InvalidSpecError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
)
from keel.server.ui import _charts
from keel.server.ui._render import (
    client_of,
    error_page,
    html_errors,
    node_href,
    registry_of,
    render,
    same_origin,
    url,
)
from keel.server.ui._session import may_read

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

AUDIT_PAGE = 100
MAX_LINEAGE_DEPTH = 10
_VERSION_PATH = re.compile(r"^(?P<name>.+)/versions/(?P<version>\d+)$")
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)


# -- models --------------------------------------------------------------------------------------
@router.get("/ui/models")
@html_errors
def models(request: Request) -> Response:
    """Every registered model."""
    reg = registry_of(request)
    rows = sorted(reg.list_models(), key=lambda m: -m.updated_at)
    return render(request, "models.html", {"models": rows}, section="models")


def _model_page(request: Request, name: str) -> Response:
    reg = registry_of(request)
    model = reg.get_model(name)
    ctx = {
        "model": model,
        "versions": reg.list_versions(name),
        "pending": reg.pending(name),
        "approvers": reg.approvers(name),
    }
    return render(request, "model.html", ctx, section="models")


def _version_page(request: Request, name: str, version: int) -> Response:
    reg = registry_of(request)
    model = reg.get_model(name)
    mv = reg.get_version(name, version)
    card = reg.card(name, version, "html")
    match = _BODY.search(card)
    # render_card escapes every value it writes: its body is safe to embed as it is
    body = Markup(match.group(1) if match else "")
    pending = [p for p in reg.pending(name) if p.version == mv.version]
    ctx = {"model": model, "mv": mv, "card": body, "pending": pending}
    return render(request, "version.html", ctx, section="models")


@router.get("/ui/models/{rest:path}")
@html_errors
def model_or_version(request: Request, rest: str) -> Response:
    """``/ui/models/<name>`` or ``/ui/models/<name>/versions/<n>`` (names may hold slashes)."""
    m = _VERSION_PATH.match(rest)
    if m is not None:
        try:
            return _version_page(request, m.group("name"), int(m.group("version")))
        except NotFoundError:
            if not _exists(request, rest):
                raise
    return _model_page(request, rest.rstrip("/"))


def _exists(request: Request, name: str) -> bool:
    try:
        registry_of(request).get_model(name)
    except NotFoundError:
        return False
    return True


# -- approvals -----------------------------------------------------------------------------------
_DONE = {"approve": "approved", "reject": "rejected"}


def _approvals(request: Request, *, error: str = "", status: int = 200) -> Response:
    reg = registry_of(request)
    pending = [p for p in reg.pending() if may_read(request, f"model:{p.name}")]
    stages: dict[tuple[str, int], str] = {}
    for p in pending:
        key = (p.name, p.version)
        if key not in stages:
            try:
                stages[key] = reg.get_version(p.name, p.version).stage
            except NotFoundError:
                stages[key] = "?"
    notice = ""
    done = request.query_params.get("done", "")
    req = request.query_params.get("req", "")
    if done in _DONE and req.isdigit():
        notice = f"Request {req} {_DONE[done]} by {reg.actor}."
        applied = request.query_params.get("applied") == "1"
        if applied:
            notice += " The change is applied."
    ctx = {"pending": pending, "stages": stages, "error": error, "notice": notice}
    return render(request, "approvals.html", ctx, section="approvals", status=status)


@router.get("/ui/approvals")
@html_errors
def approvals(request: Request) -> Response:
    """Pending approval requests, with Approve and Reject buttons."""
    return _approvals(request)


@router.post("/ui/approvals/{req_id}/{decision}")
@html_errors
def vote(request: Request, req_id: int, decision: str, comment: str = Form(default="")) -> Response:
    """Approve or reject a request as the logged-in user (auth on) or KEEL_USER."""
    if decision not in _DONE:
        return error_page(request, 404, "Not found", f"Unknown decision {decision!r}.")
    if not same_origin(request):
        return error_page(request, 403, "Forbidden", "Cross-site form posts are refused.")
    reg = registry_of(request)
    try:
        if decision == "approve":
            result = reg.approve(req_id, comment=comment.strip() or None)
        else:
            result = reg.reject(req_id, comment=comment.strip() or None)
    except PermissionDeniedError as err:
        return _approvals(request, error=err.message, status=403)
    except (InvalidStateError, InvalidSpecError, NotFoundError) as err:
        return _approvals(request, error=err.message, status=409)
    params = {"done": decision, "req": req_id, "applied": "1" if result.status == "applied" else ""}
    return RedirectResponse(url("/ui/approvals", params), status_code=303)


# -- lineage -------------------------------------------------------------------------------------
@router.get("/ui/lineage")
@html_errors
def lineage(request: Request, node: str = "", depth: int = 4) -> Response:
    """The lineage graph around a node: its sources (left) and what derives from it (right)."""
    reg = registry_of(request)
    depth = max(1, min(MAX_LINEAGE_DEPTH, depth))
    ctx: dict[str, Any] = {"node": node, "depth": depth, "svg": Markup(""), "error": ""}
    if node.strip():
        from keel.registry import node_id

        try:
            start = node_id(node.strip())
        except InvalidSpecError as err:
            ctx["error"] = err.message
        else:
            up = reg.lineage(start, "up", depth)
            down = reg.lineage(start, "down", depth)
            nodes = list(dict.fromkeys([*reversed(up.nodes), *down.nodes[1:]]))
            edges = [*up.edges, *down.edges]
            labels = _run_names(request, nodes)
            ctx.update(
                start=start,
                nodes=nodes,
                edges=sorted(set(edges)),
                svg=_charts.lineage_svg(start, nodes, edges, node_href, labels),
            )
    else:
        starts = []
        for model in reg.list_models()[:50]:
            starts += [
                f"model_version:{model.name}/{v.version}" for v in reg.list_versions(model.name)[:5]
            ]
        ctx["starts"] = starts
    return render(request, "lineage.html", ctx, section="lineage")


def _run_names(request: Request, nodes: list[str], limit: int = 200) -> dict[str, str]:
    """Run nodes labelled by the run's name (ids stay in the tooltip)."""
    client = client_of(request)
    names = {}
    for n in [n for n in nodes if n.startswith("run:")][:limit]:
        try:
            names[n] = client.get_run(n[4:]).name
        except (NotFoundError, InvalidSpecError):
            continue
    return names


# -- audit ---------------------------------------------------------------------------------------
def _events_newest_first(
    request: Request, prefix: str, before: int | None, limit: int
) -> list[AuditEvent]:
    """One page of audit events, newest first (a single indexed query on a SQL store)."""
    from keel.store.sql import SqlStore

    store = client_of(request).store
    if not isinstance(store, SqlStore):
        events = registry_of(request).audit(prefix or None)
        events = [e for e in events if before is None or e.seq < before]
        return list(reversed(events))[:limit]
    import sqlalchemy as sa

    from keel.store import schema as t
    from keel.store._governance import _event

    a = t.audit_events.c
    q = sa.select(t.audit_events).order_by(a.seq.desc()).limit(limit)
    if prefix:
        q = q.where(a.object.startswith(prefix, autoescape=True))
    if before is not None:
        q = q.where(a.seq < before)
    with store.engine.connect() as conn:
        return [_event(row) for row in conn.execute(q)]


@router.get("/ui/audit")
@html_errors
def audit(request: Request, prefix: str = "", before: int | None = None) -> Response:
    """The audit log, newest first, with the hash chain's verification status."""
    reg = registry_of(request)
    checked, broken = reg.verify_audit()
    events = _events_newest_first(request, prefix.strip(), before, AUDIT_PAGE + 1)
    older = None
    if len(events) > AUDIT_PAGE:
        events = events[:AUDIT_PAGE]
        older = url("/ui/audit", {"prefix": prefix, "before": events[-1].seq})
    ctx = {
        "events": events,
        "prefix": prefix,
        "checked": checked,
        "broken": broken,
        "older": older,
        "newest": url("/ui/audit", {"prefix": prefix}) if before is not None else None,
    }
    return render(request, "audit.html", ctx, section="audit")
