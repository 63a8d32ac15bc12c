"""MLflow-compatible REST API (``/api/2.0/mlflow``, ``/api/2.0/mlflow-artifacts``, ``/api/3.0``).

The official MLflow client (3.x) pointed at a keel server (``MLFLOW_TRACKING_URI``)
tracks runs, stores artifacts, logs and registers models and loads them back; what
it writes is keel data, visible through keel's own API. See docs/mlflow.md.

Every path under these prefixes and under ``/ajax-api`` (MLflow's web UI API, which
keel does not serve) answers in MLflow's error shape when no route serves it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from keel.server.mlflow import artifacts, registry, tracking
from keel.server.mlflow._common import PATH
from keel.server.mlflow._errors import MlflowError, MlflowRoute

__all__ = ["routers"]

_ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _fallback(hint: str = "see docs/mlflow.md") -> APIRouter:
    """A last route answering MLflow's ENDPOINT_NOT_FOUND for paths no other route serves."""
    router = APIRouter(route_class=MlflowRoute, include_in_schema=False)

    @router.api_route(f"/{{path:{PATH}}}", methods=_ANY)
    def not_found(request: Request) -> None:
        raise MlflowError(
            f"keel does not implement the MLflow endpoint {request.method} "
            f"{request.scope['path']!r} ({hint}).",  # url.path would drop a newline
            "ENDPOINT_NOT_FOUND",
        )

    return router


def _mount(prefix: str, *parts: APIRouter, hint: str = "see docs/mlflow.md") -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["mlflow"])
    for part in parts:
        router.include_router(part)
    router.include_router(_fallback(hint))
    return router


#: Mounted by create_app after the native routers.
routers: list[APIRouter] = [
    _mount("/api/2.0/mlflow", tracking.router, registry.router),
    _mount("/api/2.0/mlflow-artifacts", artifacts.router),
    _mount("/api/3.0/mlflow", artifacts.v3_router),
    _mount(
        "/ajax-api",
        hint="keel serves MLflow's REST API under /api/2.0/mlflow, not MLflow's web UI API "
        "under /ajax-api: use keel's own web UI",
    ),
]
