"""The web UI: server-rendered pages (with htmx and a small chart library vendored in)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["routers"]

#: Mounted by create_app after the API routers.
routers: list[APIRouter] = []
