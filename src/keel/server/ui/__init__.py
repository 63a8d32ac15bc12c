"""The web UI: server-rendered pages under ``/ui`` (Jinja2, htmx and uPlot vendored in).

Pages call the Python APIs (:class:`~keel.tracking.client.Client`,
:class:`~keel.registry.Registry`) of the server's client directly. Each module
contributes one router; :func:`keel.server.create_app` mounts :data:`routers`.
With access control on, :func:`guard` makes every page and action need a
logged-in user with the right role (see :mod:`keel.server.ui._session`).
Later sections add a router here and an entry to :data:`keel.server.ui._render.NAV`.
"""

from __future__ import annotations

from fastapi import APIRouter

from keel.server.ui import _governance, _render, _session, _tracking
from keel.server.ui._session import UiRefusalError, guard

__all__ = ["UiRefusalError", "guard", "routers"]

#: Mounted by create_app after the API routers, each guarded by :func:`guard`.
routers: list[APIRouter] = [_render.router, _session.router, _tracking.router, _governance.router]
