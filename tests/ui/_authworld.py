"""A live ``keel server`` with KEEL_AUTH=on, seeded through the store API, for UI login tests.

Users: ``admin`` (admin everywhere), ``reader`` and ``approver`` (global roles),
``writer`` (requests promotions), ``scoped`` (reader of experiment ``team-a``
only) and ``temp`` (reader, for revocation). Model ``churn`` v1 comes from a run
of ``team-a`` and has pending approval requests made by ``writer``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from keel.config import load_settings
from keel.store.sql import SqlStore
from keel.tracking.client import Client
from tests.server.conftest import auth_server_process

USERS = ("admin", "reader", "writer", "approver", "scoped", "temp")
SPEC = {"flavor": "sklearn", "format": "skops", "unsafe": False}


@dataclass
class AuthWorld:
    url: str
    home: Path
    tokens: dict[str, str]
    exp_a: str
    exp_b: str
    run_a: str
    run_b: str
    ids: dict[str, int] = field(default_factory=dict)  # API token id of each user
    requests: list[int] = field(default_factory=list)

    def store(self) -> SqlStore:
        """The server's own metadata store, opened directly (as admin)."""
        settings = load_settings(environ={"KEEL_HOME": str(self.home), "KEEL_USER": "admin"})
        store = Client(settings).store
        assert isinstance(store, SqlStore)
        return store

    def new_request(self) -> int:
        """A fresh pending request (by ``writer``) to move churn v1 to Staging."""
        req = self.store().registry.request("churn", 1, actor="writer", stage="Staging")
        return req.id


def seed(home: Path) -> AuthWorld:
    """Users (one API token each), roles, two experiments with a run each, model churn v1."""
    settings = load_settings(environ={"KEEL_HOME": str(home), "KEEL_USER": "admin"})
    client = Client(settings)
    store = client.store
    assert isinstance(store, SqlStore)
    tokens: dict[str, str] = {}
    ids: dict[str, int] = {}
    for user in USERS:
        store.auth.create_user(user, actor="admin")
        made = store.auth.create_token(user, actor="admin", label="test")
        assert made.token is not None
        tokens[user], ids[user] = made.token, made.id
    reg = store.registry
    reg.grant("admin", "admin", actor="admin")
    for user, role in (("reader", "reader"), ("writer", "writer"), ("approver", "approver")):
        reg.grant(user, role, actor="admin")
    reg.grant("temp", "reader", actor="admin")
    exp_a = store.create_experiment("team-a").experiment_id
    exp_b = store.create_experiment("team-b").experiment_id
    reg.grant("scoped", "reader", actor="admin", experiment=exp_a)
    run_a = store.create_run(exp_a, name="a").run_id
    run_b = store.create_run(exp_b, name="b").run_id
    reg.create_version(
        "churn",
        actor="admin",
        source=f"runs:/{run_a}/model",
        run_id=None,
        manifest_digest="d" * 64,
        spec=SPEC,
        metrics={},
        datasets=[],
    )
    client.close()
    return AuthWorld("", home, tokens, exp_a, exp_b, run_a, run_b, ids)


@contextmanager
def auth_server(home: Path) -> Iterator[AuthWorld]:
    """Seed ``home`` and run ``keel server`` on it with KEEL_AUTH=on."""
    world = seed(home)
    with auth_server_process(home) as url:
        world.url = url
        yield world
