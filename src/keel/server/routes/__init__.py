"""keel's native REST API (``/api/v1``): one router module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from keel.server.routes import blobs, data, experiments, governance, models, runs

__all__ = ["routers"]

#: Mounted by create_app in this order.
routers: list[APIRouter] = [
    experiments.router,
    runs.router,
    blobs.router,
    models.router,
    governance.router,
    data.router,
]
