"""Shared plumbing of the UI: templates, static files, navigation, formatting, errors."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from keel.exceptions import KeelError

if TYPE_CHECKING:
    from keel.registry import Registry
    from keel.tracking.client import Client

__all__ = [
    "NAV",
    "NavItem",
    "client_of",
    "error_page",
    "html_errors",
    "is_htmx",
    "registry_of",
    "render",
    "router",
    "same_origin",
    "url",
]

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

#: Pages load scripts, styles and images from this server only (inline styles are
#: allowed for the chart library; inline scripts are not).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


@dataclass(frozen=True)
class NavItem:
    """One entry of the top navigation: ``key`` marks the active section."""

    key: str
    label: str
    href: str


#: The top navigation. Later sections (Deployments, Monitoring) append their entry.
NAV: list[NavItem] = [
    NavItem("experiments", "Experiments", "/ui/experiments"),
    NavItem("models", "Models", "/ui/models"),
    NavItem("approvals", "Approvals", "/ui/approvals"),
    NavItem("lineage", "Lineage", "/ui/lineage"),
    NavItem("audit", "Audit", "/ui/audit"),
]

router = APIRouter(include_in_schema=False)


# -- formatting -------------------------------------------------------------------------------
def fmt_when(ms: int | None) -> str:
    """Milliseconds since the epoch as ``2025-01-31 14:05:09`` (UTC)."""
    if ms is None:
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_ago(ms: int | None) -> str:
    """How long ago, e.g. ``5 min ago``."""
    if ms is None:
        return "—"
    secs = max(0.0, time.time() - ms / 1000)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if secs >= size:
            return f"{int(secs // size)} {unit} ago"
    return "just now"


def fmt_duration(seconds: float | None) -> str:
    """Seconds as ``850 ms``, ``12.3 s``, ``4 min 05 s`` or ``2 h 07 min``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_num(value: Any) -> str:
    """A metric value: 6 significant digits; NaN and infinities spelled out."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def fmt_size(n: int | None) -> str:
    """Bytes as ``1.2 MB``."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def url(path: str, params: Mapping[str, Any] | None = None) -> str:
    """``path`` with a query string; ``None`` and empty values are left out, lists repeat."""
    clean: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        values = value if isinstance(value, list | tuple) else [value]
        clean += [(key, str(v)) for v in values if v is not None and v != ""]
    return f"{path}?{urlencode(clean)}" if clean else path


def node_href(node: str) -> str:
    """The page of a lineage node: runs and model versions have their own pages."""
    kind, _, ident = node.partition(":")
    if kind == "run" and ident:
        return f"/ui/runs/{quote(ident, safe='')}"
    if kind == "model_version" and "/" in ident:
        name, _, version = ident.rpartition("/")
        return model_href(name, version)
    return url("/ui/lineage", {"node": node})


def object_href(obj: str) -> str | None:
    """The page of an audit event's object, if it has one."""
    kind, _, ident = obj.partition(":")
    if kind == "model" and ident:
        return model_href(ident.split("@", 1)[0])
    if kind in ("run", "model_version"):
        return node_href(obj)
    return None


def model_href(name: str, version: int | str | None = None) -> str:
    """The page of a model or of one of its versions."""
    base = f"/ui/models/{quote(name, safe='')}"
    return base if version is None else f"{base}/versions/{version}"


@functools.cache
def _static_version(rel: str) -> str:
    path = STATIC / rel
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=6).hexdigest()
    except OSError:
        return "0"


def static_url(rel: str) -> str:
    """URL of a static file, with a content hash so it can be cached forever."""
    return f"/ui/static/{rel}?v={_static_version(rel)}"


@functools.cache
def environment() -> jinja2.Environment:
    """The template environment (autoescaping on for every template)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=fmt_when,
        ago=fmt_ago,
        duration=fmt_duration,
        num=fmt_num,
        size=fmt_size,
        node_href=node_href,
        object_href=object_href,
    )
    env.globals.update(
        nav=NAV, url=url, static=static_url, model_href=model_href, node_href=node_href
    )
    return env


# -- requests -----------------------------------------------------------------------------------
def client_of(request: Request) -> Client:
    """The server's tracking client, acting as the logged-in user (auth on) or KEEL_USER."""
    client: Client = request.app.state.client
    user: str | None = getattr(request.state, "user", None)
    if user is None:
        return client
    from keel.server.deps import as_actor

    return as_actor(client, user)


def registry_of(request: Request) -> Registry:
    """The registry of :func:`client_of` (acting as the same user)."""
    from keel.registry import Registry

    return Registry(client_of(request))


def is_htmx(request: Request) -> bool:
    """True for a partial-page request made by htmx (not a history restore)."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    section: str = "",
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a template into an HTML response (with the page's security headers)."""
    settings = getattr(request.app.state, "settings", None)
    user = getattr(request.state, "user", None) or getattr(settings, "user", "")
    body = (
        environment()
        .get_template(template)
        .render(
            request=request,
            section=section,
            user=user,
            auth=bool(getattr(settings, "auth", False)),
            logged_in=getattr(request.state, "user", None) is not None,
            csrf=getattr(request.state, "csrf", ""),
            **context,
        )
    )
    response = HTMLResponse(body, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Vary"] = "HX-Request"
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """An HTML error page (or fragment, for htmx requests)."""
    template = "error_fragment.html" if is_htmx(request) else "error.html"
    return render(
        request, template, {"status": status, "title": title, "message": message}, status=status
    )


def same_origin(request: Request) -> bool:
    """False for a cross-site request (by ``Sec-Fetch-Site`` or an ``Origin`` of another host)."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("Host", "")


P = ParamSpec("P")


def html_errors(fn: Callable[P, Response]) -> Callable[P, Response]:
    """Report keel's errors as an HTML page instead of the API's JSON error body."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return fn(*args, **kwargs)
        except KeelError as err:
            from keel.server.errors import status_for

            request = kwargs.get("request")
            if not isinstance(request, Request):
                raise
            status, code = status_for(err)
            return error_page(request, status, code.replace("_", " ").capitalize(), err.message)

    return wrapper


# -- routes ------------------------------------------------------------------------------------
@router.get("/")
def root() -> RedirectResponse:
    """The server's front page is the UI."""
    return RedirectResponse("/ui/experiments", status_code=307)


@router.get("/ui")
@router.get("/ui/")
def ui_root() -> RedirectResponse:
    """The UI starts at the experiments list."""
    return RedirectResponse("/ui/experiments", status_code=307)


@router.get("/ui/static/{rel:path}")
def static(rel: str) -> Response:
    """A file of ``ui/static`` (cached for a year: URLs carry a content hash)."""
    root = STATIC.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    media = None
    if path.suffix == ".js":
        media = "text/javascript; charset=utf-8"
    elif path.suffix == ".css":
        media = "text/css; charset=utf-8"
    return FileResponse(
        path,
        media_type=media,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )
