"""MLflow-compatible REST API (``/api/2.0/mlflow``, ``/api/2.0/mlflow-artifacts``, ``/api/3.0``)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["routers"]

#: Mounted by create_app after the native routers.
routers: list[APIRouter] = []
