"""Users, API tokens and role checks (access control for the server).

Tokens are random 256-bit strings shown once at creation; only their SHA-256
is stored, so a leaked database does not leak credentials (a slow password
hash is unnecessary for high-entropy tokens). Revocation and expiry are
checked on every authentication, so a revoked token stops working at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import exc

from keel import _validation as v
from keel.exceptions import (
    AlreadyExistsError,
    AuthenticationError,
    InvalidSpecError,
    NotFoundError,
)
from keel.store import _governance as gov
from keel.store import schema as t
from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.store.sql import SqlStore

__all__ = ["RANKS", "TOKEN_PREFIX", "ApiToken", "SqlAuth"]

TOKEN_PREFIX = "keel_"
#: What each role may do. Approver adds approving to reading; admin may do anything.
RANKS: dict[str, frozenset[str]] = {
    "reader": frozenset({"read"}),
    "writer": frozenset({"read", "write"}),
    "approver": frozenset({"read", "approve"}),
    "admin": frozenset({"read", "write", "approve", "admin"}),
}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A token's metadata (never the token itself, except right after creation)."""

    id: int
    user: str
    label: str | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None
    token: str | None = None  # only set by create_token


class SqlAuth:
    """Access-control storage sharing an :class:`~keel.store.sql.SqlStore`'s engine."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def create_user(self, name: str, *, actor: str) -> None:
        """Add a user (audited)."""
        v.check_name("User", name)
        try:
            with self.store._tx() as conn:
                gov.lock_head(conn)
                conn.execute(sa.insert(t.users).values(name=name, created_at=now_ms(), disabled=0))
                gov.append_event(
                    conn, ts=now_ms(), actor=actor, action="user.create", obj=f"user:{name}"
                )
        except exc.IntegrityError as e:
            raise AlreadyExistsError(f"User '{name}' already exists.", user=name) from e

    def users(self) -> list[str]:
        """Every enabled user."""
        with self.store._tx(write=False) as conn:
            return list(
                conn.execute(
                    sa.select(t.users.c.name)
                    .where(t.users.c.disabled == 0)
                    .order_by(t.users.c.name)
                ).scalars()
            )

    def create_token(
        self, user: str, *, actor: str, label: str | None = None, ttl_days: float | None = 90
    ) -> ApiToken:
        """Issue a token for ``user``; the returned object carries the token, once."""
        if ttl_days is not None and ttl_days <= 0:
            raise InvalidSpecError("ttl_days must be positive (or None for no expiry).")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = now_ms()
        expires = None if ttl_days is None else now + int(ttl_days * 86_400_000)
        with self.store._tx() as conn:
            exists = conn.execute(
                sa.select(t.users.c.name).where(t.users.c.name == user, t.users.c.disabled == 0)
            ).scalar_one_or_none()
            if exists is None:
                raise NotFoundError(
                    f"User '{user}' does not exist; create it with `keel users create {user}`.",
                    user=user,
                )
            gov.lock_head(conn)
            token_id = conn.execute(
                sa.insert(t.api_tokens)
                .values(
                    token_hash=_hash(token),
                    user=user,
                    label=label,
                    created_at=now,
                    expires_at=expires,
                )
                .returning(t.api_tokens.c.id)
            ).scalar_one()
            gov.append_event(
                conn,
                ts=now,
                actor=actor,
                action="token.create",
                obj=f"user:{user}",
                after={"token": token_id, "label": label, "expires_at": expires},
            )
        return ApiToken(token_id, user, label, now, expires, None, None, token)

    def revoke_token(self, token_id: int, *, actor: str) -> None:
        """Revoke a token; it stops working immediately."""
        now = now_ms()
        with self.store._tx() as conn:
            gov.lock_head(conn)
            row = conn.execute(
                sa.select(t.api_tokens.c.user, t.api_tokens.c.revoked_at).where(
                    t.api_tokens.c.id == token_id
                )
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"Token {token_id} not found.", token=token_id)
            conn.execute(
                sa.update(t.api_tokens).where(t.api_tokens.c.id == token_id).values(revoked_at=now)
            )
            gov.append_event(
                conn,
                ts=now,
                actor=actor,
                action="token.revoke",
                obj=f"user:{row.user}",
                before={"token": token_id},
            )

    def tokens(self, user: str | None = None) -> list[ApiToken]:
        """Token metadata (not the tokens)."""
        q = sa.select(t.api_tokens).order_by(t.api_tokens.c.id)
        if user:
            q = q.where(t.api_tokens.c.user == user)
        with self.store._tx(write=False) as conn:
            return [
                ApiToken(
                    r.id, r.user, r.label, r.created_at, r.expires_at, r.revoked_at, r.last_used_at
                )
                for r in conn.execute(q)
            ]

    def authenticate(self, token: str | None) -> str:
        """The user a token belongs to; AuthenticationError (one message for every cause)."""
        fail = AuthenticationError(
            "Authentication required: send 'Authorization: Bearer <token>' with a valid, "
            "unexpired, unrevoked API token (create one with `keel users token USER`)."
        )
        if not token or not token.startswith(TOKEN_PREFIX):
            raise fail
        now = now_ms()
        with self.store._tx(write=False) as conn:
            row = conn.execute(
                sa.select(
                    t.api_tokens.c.id,
                    t.api_tokens.c.user,
                    t.api_tokens.c.expires_at,
                    t.api_tokens.c.revoked_at,
                    t.users.c.disabled,
                )
                .join(t.users, t.users.c.name == t.api_tokens.c.user)
                .where(t.api_tokens.c.token_hash == _hash(token))
            ).one_or_none()
        if (
            row is None
            or row.revoked_at is not None
            or row.disabled
            or (row.expires_at is not None and row.expires_at <= now)
        ):
            raise fail
        return str(row.user)

    def allowed(self, user: str, action: str, scopes: Iterable[str]) -> bool:
        """True if one of ``user``'s roles on ``*`` or one of ``scopes`` permits ``action``."""
        wanted = {"*", *scopes}
        with self.store._tx(write=False) as conn:
            roles = conn.execute(
                sa.select(t.roles.c.role).where(t.roles.c.user == user, t.roles.c.scope.in_(wanted))
            ).scalars()
            return any(action in RANKS.get(role, frozenset()) for role in roles)
