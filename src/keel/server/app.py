"""The ASGI application factory, its middlewares and ``/metrics``.

Middlewares, outermost first: Prometheus instrumentation (count and latency
per route template and status), the request-size limit (413 with the error
body; streamed blob uploads are exempt), and gzip for answers of 1 KiB or more
(blobs are sent as stored).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.config import Settings, load_settings
from keel.exceptions import KeelError
from keel.server.errors import error_body, status_for

__all__ = ["STREAMED_PREFIXES", "create_app"]

#: Paths whose request bodies are streamed to storage, not held in memory: no size limit.
STREAMED_PREFIXES = ("/api/v1/blobs/", "/api/2.0/mlflow-artifacts/")
_GZIP_MIN = 1024


class RequestTooLarge(StarletteHTTPException):
    """A request body over the configured limit (answered with 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"The request body is larger than this server accepts ({limit} bytes; "
            "KEEL_MAX_REQUEST_SIZE). Send the data in smaller batches, or upload files as blobs.",
        )
        self.limit = limit


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes, by Content-Length or as they arrive.

    The refusal is raised where the route reads its body, so each API answers in
    its own error format (keel's error body here, MLflow's on its routes).
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(STREAMED_PREFIXES):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_large = declared.isdigit() and int(declared) > self.limit
        received = 0

        async def limited() -> Message:
            nonlocal received
            if too_large:  # refuse before reading any of it
                raise RequestTooLarge(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # chunked bodies have no Content-Length
                    raise RequestTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


class _Metrics:
    """Prometheus request metrics of one app (all workers' when multiprocess mode is on)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # keel server --workers N sets PROMETHEUS_MULTIPROC_DIR: workers share files there
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = None if self.multiprocess else CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "keel_http_requests",
            "HTTP requests by method, route template and status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "keel_http_request_duration_seconds",
            "Time to answer HTTP requests, by method, route template and status.",
            labels,
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self.registry is not None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class _Instrument:
    """Count requests and time them, labelled by route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            labels = (scope["method"], route, str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the server for one configuration (no module-level app or engine)."""
    from keel import __version__
    from keel.tracking.client import Client

    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.client.close()

    app = FastAPI(
        title="keel",
        version=__version__,
        description="keel tracking server: native API under /api/v1, MLflow-compatible API "
        "under /api/2.0/mlflow.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # The server serves its own stores, even with KEEL_TRACKING_URI in its environment.
    app.state.client = Client(dataclasses.replace(settings, tracking_uri=None))

    @app.exception_handler(KeelError)
    async def _keel_error(_: Request, err: KeelError) -> JSONResponse:
        status, code = status_for(err)
        return JSONResponse(error_body(code, err.message, err.details), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in err.errors()
        ]
        return JSONResponse(
            error_body("invalid_input", "; ".join(problems) or "invalid request"),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        if isinstance(err, RequestTooLarge):
            body = error_body("request_too_large", str(err.detail), {"limit": err.limit})
        else:
            body = error_body("http_error", str(err.detail))
        return JSONResponse(body, status_code=err.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        # The server logs the traceback; the caller gets the one error body, never a trace.
        return JSONResponse(
            error_body(
                "internal_error",
                f"The server failed on this request ({type(err).__name__}); its log has the "
                "details. This is a bug in keel: please report it.",
            ),
            status_code=500,
        )

    from fastapi import Depends

    from keel.server import mlflow, routes, ui
    from keel.server._access import authorize

    guarded = [Depends(authorize)]  # a no-op with auth off
    for router in [*routes.routers, *mlflow.routers]:
        app.include_router(router, dependencies=guarded)
    # the web UI acts as KEEL_USER with auth off; with auth on as the user logged in to it
    for router in ui.routers:
        app.include_router(router, dependencies=[Depends(ui.guard)])

    @app.exception_handler(ui.UiRefusalError)
    async def _ui_refusal(_: Request, err: ui.UiRefusalError) -> Response:
        return err.response

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    metrics = _Metrics()

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus metrics: request counts and latencies per route template and status."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        GZipMiddleware,
        minimum_size=_GZIP_MIN,
        compresslevel=6,
        exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/octet-stream"),
    )
    app.add_middleware(_BodyLimit, limit=settings.max_request_size)
    app.add_middleware(_Instrument, metrics=metrics)
    return app
