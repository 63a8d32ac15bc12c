"""MLflow-compatible REST API (``/api/2.0/mlflow``, ``/api/2.0/mlflow-artifacts``, ``/api/3.0``).

The official MLflow client (3.x) pointed at a keel server (``MLFLOW_TRACKING_URI``)
tracks runs, stores artifacts, logs and registers models and loads them back; what
it writes is keel data, visible through keel's own API. See docs/mlflow.md.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from keel.server.mlflow import artifacts, registry, tracking
from keel.server.mlflow._errors import MlflowError, MlflowRoute

__all__ = ["routers"]

_ANY = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _fallback() -> APIRouter:
    """A last route answering MLflow's ENDPOINT_NOT_FOUND for paths no other route serves."""
    router = APIRouter(route_class=MlflowRoute, include_in_schema=False)

    @router.api_route("/{path:path}", methods=_ANY)
    def not_found(request: Request) -> None:
        raise MlflowError(
            f"keel does not implement the MLflow endpoint {request.method} {request.url.path} "
            "(see docs/mlflow.md).",
            "ENDPOINT_NOT_FOUND",
        )

    return router


def _mount(prefix: str, *parts: APIRouter) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["mlflow"])
    for part in parts:
        router.include_router(part)
    router.include_router(_fallback())
    return router


#: Mounted by create_app after the native routers.
routers: list[APIRouter] = [
    _mount("/api/2.0/mlflow", tracking.router, registry.router),
    _mount("/api/2.0/mlflow-artifacts", artifacts.router),
    _mount("/api/3.0/mlflow", artifacts.v3_router),
]
