"""Users, API tokens and role checks, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest

from keel.exceptions import AlreadyExistsError, AuthenticationError, NotFoundError
from keel.store import SqlStore


def test_tokens_authenticate_until_revoked_or_expired(store: SqlStore) -> None:
    auth = store.auth
    auth.create_user("ann", actor="admin")
    with pytest.raises(AlreadyExistsError):
        auth.create_user("ann", actor="admin")
    with pytest.raises(NotFoundError, match="keel users create"):
        auth.create_token("nobody", actor="admin")
    tok = auth.create_token("ann", actor="admin", label="laptop")
    assert tok.token and tok.token.startswith("keel_")
    assert auth.authenticate(tok.token) == "ann"
    # only a hash is stored
    assert all(tok.token not in str(t) for t in auth.tokens("ann"))
    for bad in [None, "", "keel_wrong", tok.token + "x", "Bearer " + tok.token]:
        with pytest.raises(AuthenticationError):
            auth.authenticate(bad)
    auth.revoke_token(tok.id, actor="admin")
    with pytest.raises(AuthenticationError):  # stops working at once
        auth.authenticate(tok.token)
    short = auth.create_token("ann", actor="admin", ttl_days=0.1 / 86_400)  # 0.1 s
    assert auth.authenticate(short.token) == "ann"
    time.sleep(0.2)
    with pytest.raises(AuthenticationError):
        auth.authenticate(short.token)
    actions = [e.action for e in store.registry.audit_events()]
    assert actions.count("token.create") == 2 and "token.revoke" in actions


def test_role_checks_by_scope(store: SqlStore) -> None:
    reg, auth = store.registry, store.auth
    reg.create_model("churn", actor="admin")
    reg.grant("rita", "reader", actor="admin")
    reg.grant("will", "writer", actor="admin", model="churn")
    reg.grant("ann", "approver", actor="admin", model="churn")
    assert auth.allowed("rita", "read", ["model:churn"])
    assert not auth.allowed("rita", "write", ["model:churn"])
    assert auth.allowed("will", "write", ["model:churn"])
    assert not auth.allowed("will", "write", ["model:other"])
    assert auth.allowed("ann", "approve", ["model:churn"]) and not auth.allowed(
        "ann", "write", ["model:churn"]
    )
    assert not auth.allowed("mallory", "read", ["*"])
    reg.grant("boss", "admin", actor="boss")
    assert auth.allowed("boss", "admin", ["experiment:1"])
