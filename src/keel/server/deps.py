"""Dependencies of the route handlers, as ``Annotated`` aliases (``StoreDep`` ...).

Everything comes from the :class:`~keel.tracking.client.Client` that
:func:`~keel.server.app.create_app` puts on ``app.state.client``. The functions
are ``async`` because they do no I/O: FastAPI then calls them on the event loop
instead of hopping to a worker thread for each.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Header, Request

from keel import _validation as v
from keel.objects import ObjectStore
from keel.server._access import identity
from keel.store._registry import SqlRegistry
from keel.store.base import Store
from keel.store.sql import SqlStore
from keel.tracking.client import Client

__all__ = [
    "ActorDep",
    "ClientDep",
    "IdentityDep",
    "ObjectsDep",
    "RegistryDep",
    "StoreDep",
    "as_actor",
]


async def get_identity(request: Request) -> str | None:
    """The authenticated caller (set by :func:`~keel.server._access.authorize`), or None."""
    return identity(request)


IdentityDep = Annotated[str | None, Depends(get_identity)]


async def get_client(request: Request, user: IdentityDep) -> Client:
    """The server's tracking client (acting as the authenticated caller, with auth on)."""
    client: Client = request.app.state.client
    return client if user is None else as_actor(client, user)


ClientDep = Annotated[Client, Depends(get_client)]


async def get_store(client: ClientDep) -> Store:
    """The server's metadata store."""
    return client.store


StoreDep = Annotated[Store, Depends(get_store)]


async def get_objects(client: ClientDep) -> ObjectStore:
    """The server's object store."""
    return client.objects


ObjectsDep = Annotated[ObjectStore, Depends(get_objects)]


async def get_registry(client: ClientDep) -> SqlRegistry:
    """Registry, roles, lineage and audit storage of the server's metadata store."""
    store = client.store
    if not isinstance(store, SqlStore):  # pragma: no cover - create_app always builds one
        from keel.exceptions import ConfigError

        raise ConfigError("The server's registry needs a SQL metadata store.")
    return store.registry


RegistryDep = Annotated[SqlRegistry, Depends(get_registry)]


async def get_actor(
    request: Request,
    caller: IdentityDep,
    x_keel_user: Annotated[str | None, Header(description="acting user")] = None,
) -> str:
    """Who acts: the authenticated caller with auth on; else the ``X-Keel-User`` header,
    else the server's configured user (with auth off the header is trusted as given).
    """
    if caller is not None:
        return caller
    if x_keel_user is None:
        user: str = request.app.state.client.settings.user
        return user
    return v.check_name("User", x_keel_user)


ActorDep = Annotated[str, Depends(get_actor)]


def as_actor(client: Client, actor: str) -> Client:
    """A client sharing the server's stores whose actions are recorded as ``actor``."""
    return Client(
        dataclasses.replace(client.settings, user=actor), store=client.store, objects=client.objects
    )
