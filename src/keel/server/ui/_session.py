"""Logging in to the web UI when access control is on (``KEEL_AUTH=on``).

Users have no passwords: they log in with their user name and one of their API
tokens, checked by the same code as the API's bearer tokens. A login issues a
fresh token labelled ``ui-session`` (stored hashed, expiring after
``KEEL_UI_SESSION_TTL`` seconds) that the session cookie carries, so revoking
it, expiry or disabling the user ends the session on the next request.

:func:`guard` runs before every UI route: it authenticates the cookie, checks
the CSRF token and Origin of state-changing requests, and checks the caller's
roles for the page with the API's checker (permission first, lookup after, so a
forbidden object and a missing one get the same 403). With auth off it does nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import deque
from typing import TYPE_CHECKING
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from keel.exceptions import AuthenticationError, PermissionDeniedError
from keel.server._access import Need, _Checker
from keel.server.ui._render import error_page, is_htmx, render, same_origin

if TYPE_CHECKING:
    from keel.store.sql import SqlStore

__all__ = ["COOKIE", "SESSION_LABEL", "UiRefusalError", "csrf_token", "guard", "may_read", "router"]

router = APIRouter(include_in_schema=False)

#: Name of the session cookie (its value is the session's API token).
COOKIE = "keel_session"
#: Label of the API tokens issued by logins.
SESSION_LABEL = "ui-session"
#: Failed logins allowed per client address within FAIL_WINDOW seconds.
MAX_FAILURES, FAIL_WINDOW = 10, 60.0
INVALID = "Invalid user name or token."
_PUBLIC = {"/", "/ui", "/ui/", "/ui/login"}
_VERSION_PATH = re.compile(r"^/ui/models/(?P<name>.+)/versions/\d+$")


class UiRefusalError(Exception):
    """A UI request refused before its route runs; ``response`` is the answer to send."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def csrf_token(session: str) -> str:
    """The CSRF token of a session (derived from its secret token, so never stored)."""
    return hmac.new(session.encode(), b"keel-ui-csrf", hashlib.sha256).hexdigest()


def _store(request: Request) -> SqlStore:
    from keel.store.sql import SqlStore

    store = request.app.state.client.store
    assert isinstance(store, SqlStore)  # create_app always serves a SQL store
    return store


def _needs(method: str, path: str, request: Request) -> list[Need]:
    """What a UI page or action needs, in the API's terms (see :mod:`keel.server._access`)."""
    parts = [p for p in path.split("/") if p][1:]  # without the leading "ui"
    head, rest = (parts[0], parts[1:]) if parts else ("", [])
    if head == "logout":
        return []
    if head == "experiments":
        return [Need("read", "experiment", rest[0])] if rest else [Need("read", "any")]
    if head == "runs" and rest:
        return [Need("read", "run", rest[0])]
    if head == "compare":
        runs = request.query_params.getlist("run")
        return [Need("read", "run", r) for r in runs] or [Need("read", "any")]
    if head == "models" and rest:
        m = _VERSION_PATH.match(path)
        name = m.group("name") if m else "/".join(rest)
        return [Need("read", "model", name)]
    if head == "approvals":
        if method == "POST" and len(rest) == 2:
            return [Need("approve", "request", rest[0])]
        return [Need("read", "any")]
    return [Need("read" if method in ("GET", "HEAD") else "write")]


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method not in ("GET", "HEAD"):
        target = "/ui/experiments"
    login = f"/ui/login?next={quote(target, safe='')}"
    if is_htmx(request) or request.headers.get("HX-Request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": login})
    return RedirectResponse(login, status_code=303)


async def guard(request: Request) -> None:
    """FastAPI dependency of every UI route: a logged-in user allowed to see this (auth on)."""
    if not request.app.state.settings.auth:
        return
    path = request.url.path
    if path in _PUBLIC or path.startswith("/ui/static/"):
        return
    store = _store(request)
    session = request.cookies.get(COOKIE)
    try:
        user = await run_in_threadpool(store.auth.authenticate, session)
    except AuthenticationError:
        raise UiRefusalError(_to_login(request)) from None
    assert session is not None
    request.state.user = user
    request.state.csrf = csrf_token(session)
    if request.method not in ("GET", "HEAD"):
        sent = request.headers.get("X-CSRF-Token")
        if sent is None:
            form = await request.form()
            field = form.get("csrf")
            sent = field if isinstance(field, str) else ""
        if not same_origin(request) or not hmac.compare_digest(sent, request.state.csrf):
            raise UiRefusalError(
                error_page(
                    request,
                    403,
                    "Forbidden",
                    "This form is stale or was sent from another site (its CSRF token or "
                    "origin does not match your session): reload the page and try again.",
                )
            )
    checker = await run_in_threadpool(_Checker, request.app.state.client, store, user)
    request.state.checker = checker
    try:
        await run_in_threadpool(checker.check, _needs(request.method, path, request))
    except PermissionDeniedError as err:
        raise UiRefusalError(error_page(request, 403, "Forbidden", err.message)) from None


def may_read(request: Request, scope: str) -> bool:
    """True if the UI's user may read ``scope`` (``experiment:<id>``, ``model:<name>``).

    Always true with auth off (the UI acts as the server's KEEL_USER).
    """
    checker: _Checker | None = getattr(request.state, "checker", None)
    return checker is None or checker.can("read", "*") or checker.can("read", scope)


# -- failed-login throttle --------------------------------------------------------------------
class _Throttle:
    """Failed logins per client address in a sliding window (in memory, per process)."""

    def __init__(self) -> None:
        self.failures: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self.failures.setdefault(key, deque())
        while times and times[0] <= now - FAIL_WINDOW:
            times.popleft()
        return times

    def blocked(self, key: str) -> bool:
        with self.lock:
            return len(self._recent(key, time.monotonic())) >= MAX_FAILURES

    def fail(self, key: str) -> None:
        with self.lock:
            now = time.monotonic()
            self._recent(key, now).append(now)
            if len(self.failures) > 10_000:  # forget idle addresses
                for k in [k for k, v in self.failures.items() if not v]:
                    del self.failures[k]


def _throttle(request: Request) -> _Throttle:
    state = request.app.state
    if not hasattr(state, "ui_login_throttle"):
        state.ui_login_throttle = _Throttle()
    throttle: _Throttle = state.ui_login_throttle
    return throttle


def _safe_next(target: str) -> str:
    """Only pages of this UI: never another site (``//host``) or the API."""
    ok = target.startswith("/ui/") and not target.startswith("/ui/login")
    return target if ok and "\\" not in target else "/ui/experiments"


def _login_page(
    request: Request, *, target: str, name: str = "", error: str = "", status: int = 200
) -> Response:
    ctx = {"next": target, "name": name, "error": error}
    return render(request, "login.html", ctx, status=status)


@router.get("/ui/login")
def login_form(request: Request, next: str = "/ui/experiments") -> Response:
    """The login form (straight to the UI with auth off, or when already logged in)."""
    target = _safe_next(next)
    if not request.app.state.settings.auth:
        return RedirectResponse(target, status_code=303)
    try:
        _store(request).auth.authenticate(request.cookies.get(COOKIE))
    except AuthenticationError:
        return _login_page(request, target=target)
    return RedirectResponse(target, status_code=303)


def _check_login(store: SqlStore, name: str, token: str) -> bool:
    try:
        owner = store.auth.authenticate(token.strip())
    except AuthenticationError:
        owner = "\0"  # still compare: the same work whichever part was wrong
    return hmac.compare_digest(owner.encode(), name.strip().encode())


@router.post("/ui/login")
def login(
    request: Request,
    user: str = Form(default=""),
    token: str = Form(default=""),
    next: str = Form(default="/ui/experiments"),
) -> Response:
    """Check a user name and API token; on success start a session (a fresh, short-lived token)."""
    target = _safe_next(next)
    if not request.app.state.settings.auth:
        return RedirectResponse(target, status_code=303)
    if not same_origin(request):
        return error_page(request, 403, "Forbidden", "Cross-site login forms are refused.")
    throttle = _throttle(request)
    address = request.client.host if request.client else "?"
    if throttle.blocked(address):
        return _login_page(
            request,
            target=target,
            name=user,
            error=f"Too many failed logins from your address: wait {FAIL_WINDOW:.0f} seconds "
            "and try again.",
            status=429,
        )
    store = _store(request)
    if not user.strip() or not _check_login(store, user, token):
        throttle.fail(address)
        return _login_page(request, target=target, name=user, error=INVALID, status=401)
    name = user.strip()
    ttl = float(request.app.state.settings.ui_session_ttl)
    made = store.auth.create_token(name, actor=name, label=SESSION_LABEL, ttl_days=ttl / 86_400)
    assert made.token is not None
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        made.token,
        max_age=int(ttl),
        path="/ui",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/ui/logout")
def logout(request: Request) -> Response:
    """End the session: its token is revoked and the cookie cleared."""
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    session = request.cookies.get(COOKIE)
    user = getattr(request.state, "user", None)
    if not session or user is None:  # auth off: there is no session to end
        return response
    from keel.store import schema as t
    from keel.store._auth import _hash

    store = _store(request)
    with store._tx(write=False) as conn:
        token_id = conn.execute(
            sa.select(t.api_tokens.c.id).where(t.api_tokens.c.token_hash == _hash(session))
        ).scalar_one_or_none()
    if token_id is not None:
        store.auth.revoke_token(int(token_id), actor=user)
    return response
