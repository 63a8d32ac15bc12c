"""The ASGI application factory."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.config import Settings, load_settings
from keel.exceptions import KeelError
from keel.server.errors import error_body, status_for

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the server for one configuration (no module-level app or engine)."""
    from keel import __version__
    from keel.tracking.client import Client

    settings = settings or load_settings()
    app = FastAPI(
        title="keel",
        version=__version__,
        description="keel tracking server: native API under /api/v1, MLflow-compatible API "
        "under /api/2.0/mlflow.",
    )
    app.state.settings = settings
    app.state.client = Client(settings)

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
        return JSONResponse(error_body("http_error", str(err.detail)), status_code=err.status_code)

    from keel.server import mlflow, routes, ui

    for router in [*routes.routers, *mlflow.routers, *ui.routers]:
        app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    return app
