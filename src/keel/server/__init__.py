"""The keel tracking server: ``keel server`` or ``create_app(settings)`` under any ASGI server.

Routers (each in its own module) are mounted by :func:`create_app`:

* ``/api/v1/...`` — keel's native REST API (every domain object; OpenAPI at /docs);
* ``/api/2.0/mlflow/...`` and ``/api/2.0/mlflow-artifacts/...`` — MLflow-compatible API;
* ``/healthz`` and ``/metrics`` (Prometheus).
"""

from __future__ import annotations

from keel.server.app import create_app

__all__ = ["create_app"]
