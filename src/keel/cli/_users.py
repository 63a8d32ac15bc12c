"""``keel users``: users, API tokens and roles of a server's store (access control).

These commands work on the metadata store itself (``KEEL_HOME`` or
``KEEL_STORE_URI``), as the server's operator, never through a server: that is
how the first admin and the first tokens are made. Tokens are printed once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from keel.cli import _format as fmt
from keel.cli._models import console, print_json, say, table
from keel.exceptions import ConfigError

if TYPE_CHECKING:
    from keel.store.sql import SqlStore

__all__ = ["users_app"]

users_app = typer.Typer(
    help="Users, API tokens and roles for a server with access control (KEEL_AUTH=on).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextlib.contextmanager
def _store() -> Iterator[tuple[SqlStore, str]]:
    """The configured SQL store and the acting user (KEEL_USER)."""
    from keel.cli.main import _client
    from keel.store.sql import SqlStore

    with _client() as client:
        if client.settings.tracking_uri:
            raise ConfigError(
                "keel users works on the server's own store: unset KEEL_TRACKING_URI and point "
                "KEEL_HOME or KEEL_STORE_URI at the store the server uses."
            )
        store = client.store
        if not isinstance(store, SqlStore):  # pragma: no cover - local stores are SQL stores
            raise ConfigError("keel users needs a SQL metadata store.")
        yield store, client.settings.user


@users_app.command("create")
def create_user(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Add a user."""
    with _store() as (store, actor):
        store.auth.create_user(name, actor=actor)
    say(f"Created user {name}. Give it a token (keel users token {name}) and a role.")


@users_app.command("list")
def list_users(as_json: JsonOption = False) -> None:
    """Every enabled user."""
    with _store() as (store, _):
        names = store.auth.users()
    if as_json:
        print_json(names)
        return
    for name in names:
        say(name)


@users_app.command("token")
def create_token(
    name: Annotated[str, typer.Argument(help="The user the token authenticates.")],
    label: Annotated[str | None, typer.Option("--label", help="What the token is for.")] = None,
    ttl_days: Annotated[
        float, typer.Option("--ttl-days", help="Days until it expires (0: never).", min=0)
    ] = 90,
) -> None:
    """Issue an API token; it is printed once and only its hash is stored."""
    with _store() as (store, actor):
        token = store.auth.create_token(name, actor=actor, label=label, ttl_days=ttl_days or None)
    expires = fmt.format_time(token.expires_at) if token.expires_at else "never"
    # the note on stderr, the token alone on stdout: TOKEN=$(keel users token NAME) works
    typer.echo(
        f"Token {token.id} for {name} (expires {expires}); shown once, store it now:", err=True
    )
    typer.echo(token.token)


@users_app.command("tokens")
def list_tokens(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Token metadata (never the tokens)."""
    with _store() as (store, _):
        tokens = store.auth.tokens(name)
    rows = [
        {
            "id": tk.id,
            "user": tk.user,
            "label": tk.label,
            "created_at": tk.created_at,
            "expires_at": tk.expires_at,
            "revoked_at": tk.revoked_at,
        }
        for tk in tokens
    ]
    if as_json:
        print_json(rows)
        return
    out = table("ID", "USER", "LABEL", "CREATED", "EXPIRES", "REVOKED")
    for tk in tokens:
        out.add_row(
            str(tk.id),
            tk.user,
            tk.label or "",
            fmt.format_time(tk.created_at),
            fmt.format_time(tk.expires_at) if tk.expires_at else "never",
            fmt.format_time(tk.revoked_at) if tk.revoked_at else "",
        )
    console().print(out)


@users_app.command("revoke")
def revoke_token(token_id: Annotated[int, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token: it stops working at once."""
    with _store() as (store, actor):
        store.auth.revoke_token(token_id, actor=actor)
    say(f"Revoked token {token_id}.")


_ModelOpt = Annotated[str | None, typer.Option("--model", help="Only on this model.")]
_ExpOpt = Annotated[str | None, typer.Option("--experiment", help="Only on this experiment id.")]


@users_app.command("grant")
def grant(
    name: Annotated[str, typer.Argument(help="The user.")],
    role: Annotated[str, typer.Argument(help="reader, writer, approver or admin.")],
    model: _ModelOpt = None,
    experiment: _ExpOpt = None,
) -> None:
    """Give a user a role, everywhere or on one model or experiment."""
    with _store() as (store, actor):
        store.registry.grant(name, role, actor=actor, model=model, experiment=experiment)
    where = f"model {model}" if model else f"experiment {experiment}" if experiment else "*"
    say(f"Granted {role} on {where} to {name}.")


@users_app.command("ungrant")
def ungrant(
    name: Annotated[str, typer.Argument(help="The user.")],
    role: Annotated[str, typer.Argument(help="reader, writer, approver or admin.")],
    model: _ModelOpt = None,
    experiment: _ExpOpt = None,
) -> None:
    """Take a role away."""
    with _store() as (store, actor):
        store.registry.revoke(name, role, actor=actor, model=model, experiment=experiment)
    say(f"Took {role} away from {name}.")
