"""``keel models``: the model registry from a terminal.

Versions, stages, aliases, approvals, roles, model cards and signatures, all through
:class:`keel.registry.Registry` acting as the configured user (``KEEL_USER``). Output
goes through the consoles of :mod:`keel.cli.main` (looked up at call time, so tests
can rebind them), and errors through its single handler. Heavy modules are imported
inside the commands.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from keel.cli import _format as fmt

if TYPE_CHECKING:
    from keel.entities import ApprovalRequest, ModelVersion, RegisteredModel
    from keel.registry import Registry

__all__ = ["STAGE_STYLES", "models_app"]

models_app = typer.Typer(
    help="Register, stage, alias, approve, sign and document model versions.",
    no_args_is_help=True,
)

#: Colour of each stage in tables.
STAGE_STYLES: dict[str, str] = {
    "Production": "bold green",
    "Staging": "yellow",
    "Shadow": "cyan",
    "Archived": "dim",
    "None": "dim",
}


# -- shared helpers (also used by keel.cli._governance) -----------------------------------------
def console() -> Console:
    """The standard-output console of :mod:`keel.cli.main` (tests may rebind it)."""
    from keel.cli import main as cli

    return cli.console


def say(message: str | Text, style: str = "") -> None:
    """Print a sentence without markup or hard wrapping."""
    from keel.cli import main as cli

    cli._say(message, style)


def print_json(data: Any) -> None:
    """Print strict JSON on stdout."""
    from keel.cli import main as cli

    cli._print_json(data)


def table(*headers: str, title: str | None = None) -> Table:
    """A compact table in the style of the other commands."""
    from keel.cli import main as cli

    return cli._table(*headers, title=title)


def plural(n: int, word: str) -> str:
    """``1 event``, ``3 events``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


@contextlib.contextmanager
def open_registry() -> Iterator[Registry]:
    """The registry of the current configuration, acting as the configured user."""
    from keel.cli.main import _client
    from keel.registry import Registry

    with _client() as client:
        yield Registry(client)


def stage_text(stage: str) -> Text:
    """A coloured stage name."""
    return Text(stage, style=STAGE_STYLES.get(stage, ""))


def _version_label(name: str, version: int | str) -> Text:
    return Text.assemble((name, "bold"), f" v{version}")


def _dash(value: str | None) -> Text:
    return Text(value) if value else Text("-", style="dim")


def _aliases_of(model: RegisteredModel) -> str:
    return ", ".join(f"{a}=v{v}" for a, v in sorted(model.aliases.items())) or "-"


def _target(req: ApprovalRequest) -> str:
    return f"{req.target_kind} {req.target}"


def _approvals(req: ApprovalRequest) -> int:
    return sum(1 for vote in req.votes if vote.get("decision") == "approve")


def _versions_table(versions: Sequence[ModelVersion], title: str | None = None) -> Table:
    out = table(
        "Version", "Stage", "Aliases", "Flavor", "Signed", "Run", "Registered", "By", title=title
    )
    for mv in versions:
        flavor = Text(mv.flavor)
        if mv.unsafe:
            flavor.append(" unsafe", style="bold red")
        signed = (
            Text(f"yes ({mv.signed_by})", style="green")
            if mv.signature_b64
            else Text("no", style="dim")
        )
        out.add_row(
            Text(f"v{mv.version}", style="bold"),
            stage_text(mv.stage),
            _dash(", ".join(mv.aliases)),
            flavor,
            signed,
            Text(fmt.short_id(mv.run_id), style="cyan" if mv.run_id else "dim"),
            fmt.format_time(mv.created_at, compact=True),
            _dash(mv.created_by),
        )
    return out


def _unsafe_note(versions: Sequence[ModelVersion]) -> None:
    if any(mv.unsafe for mv in versions):
        say(
            Text(
                "unsafe: stored with pickle; loading it runs code from the artifact.",
                style="dim red",
            )
        )


def _pending_table(requests: Sequence[ApprovalRequest], required: dict[str, int]) -> Table:
    out = table(
        "ID", "Model", "Version", "Target", "Requested by", "Approvals", "Created", "Comment"
    )
    for req in requests:
        out.add_row(
            Text(str(req.id), style="bold"),
            req.name,
            f"v{req.version}",
            _target(req),
            req.requested_by,
            f"{_approvals(req)}/{required.get(req.name, 1)}",
            fmt.format_time(req.created_at, compact=True),
            Text(req.comment or "", overflow="ellipsis", no_wrap=True),
        )
    return out


def _protection_grid(model: RegisteredModel) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("Protected stages", ", ".join(model.protected_stages) or "none")
    grid.add_row("Protected aliases", ", ".join(model.protected_aliases) or "none")
    grid.add_row("Approvals needed", str(model.required_approvals))
    grid.add_row(
        "Production",
        "several versions allowed"
        if model.multiple_production
        else "one version (promoting another archives it)",
    )
    return grid


def _production(versions: Sequence[ModelVersion]) -> list[int]:
    return [mv.version for mv in versions if mv.stage == "Production"]


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NameArg = Annotated[
    str, typer.Argument(help="Registered model name.", show_default=False, metavar="NAME")
]
VersionArg = Annotated[
    str, typer.Argument(help="Version number (3 or v3).", show_default=False, metavar="VERSION")
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", "-r", help="Why; recorded in the audit log.")
]
CommentOption = Annotated[
    str | None, typer.Option("--comment", "-m", help="Recorded with the vote and in the audit log.")
]


# -- reading ------------------------------------------------------------------------------------
@models_app.command("list")
def models_list(as_json: JsonOption = False) -> None:
    """List registered models: latest version, aliases, Production version, owner."""
    with open_registry() as reg:
        models = reg.list_models()
        production = {m.name: _production(reg.list_versions(m.name)) for m in models}
    if as_json:
        print_json([{**m.to_dict(), "production_versions": production[m.name]} for m in models])
        return
    if not models:
        say(
            "No registered models. Register one with keel.log_model(..., "
            "registered_model_name=NAME) or `keel models register`.",
            style="dim",
        )
        return
    out = table("Name", "Latest", "Aliases", "Production", "Owner", "Updated")
    for m in models:
        out.add_row(
            Text(m.name, style="bold"),
            _dash(f"v{m.latest_version}" if m.latest_version else None),
            _dash(_aliases_of(m) if m.aliases else None),
            Text(", ".join(f"v{v}" for v in production[m.name]) or "-", style="bold green"),
            _dash(m.owner),
            fmt.format_time(m.updated_at),
        )
    console().print(out)
    say(plural(len(models), "model") + ".", style="dim")


@models_app.command("show")
def models_show(name: NameArg, as_json: JsonOption = False) -> None:
    """Show a model: info, protection, aliases, versions and pending approval requests."""
    with open_registry() as reg:
        model = reg.get_model(name)
        versions = reg.list_versions(name)
        pending = reg.pending(name)
    if as_json:
        print_json(
            {
                **model.to_dict(),
                "versions": [mv.to_dict() for mv in versions],
                "pending_requests": [r.to_dict() for r in pending],
            }
        )
        return
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold", no_wrap=True)
    info.add_column(overflow="fold")
    info.add_row("Description", _dash(model.description))
    info.add_row("Owner", _dash(model.owner))
    info.add_row("Purpose", _dash(model.purpose))
    info.add_row("Limitations", _dash(model.limitations))
    if model.tags:
        info.add_row("Tags", ", ".join(f"{k}={v}" for k, v in sorted(model.tags.items())))
    info.add_row("Aliases", _aliases_of(model))
    info.add_row("Created", fmt.format_time(model.created_at, full=True))
    info.add_row("Updated", fmt.format_time(model.updated_at, full=True))
    c = console()
    c.print(
        Panel(
            info, title=Text(f"Model {model.name}", style="bold"), title_align="left", expand=False
        )
    )
    c.print()
    c.print(
        Panel(
            _protection_grid(model),
            title=Text("Protection", style="bold"),
            title_align="left",
            expand=False,
        )
    )
    c.print()
    if versions:
        c.print(_versions_table(versions, title="Versions"))
        _unsafe_note(versions)
    else:
        say("No versions yet.", style="dim")
    c.print()
    if pending:
        c.print(_pending_table(pending, {model.name: model.required_approvals}))
        say(
            Text(
                "Approve with `keel models approve ID`, reject with `keel models reject ID`.",
                style="dim",
            )
        )
    else:
        say("No pending approval requests.", style="dim")


@models_app.command("versions")
def models_versions(name: NameArg, as_json: JsonOption = False) -> None:
    """List the versions of a model, newest first."""
    with open_registry() as reg:
        versions = reg.list_versions(name)
    if as_json:
        print_json([mv.to_dict() for mv in versions])
        return
    if not versions:
        say(f"Model {name} has no versions.", style="dim")
        return
    console().print(_versions_table(versions))
    _unsafe_note(versions)


# -- editing models -----------------------------------------------------------------------------
@models_app.command("create")
def models_create(
    name: Annotated[
        str, typer.Argument(help="A unique model name.", show_default=False, metavar="NAME")
    ],
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="Free text.")
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Owning user or team (default: you).")
    ] = None,
) -> None:
    """Create a registered model (registering a version also creates it)."""
    with open_registry() as reg:
        model = reg.create_model(name, description=description, owner=owner)
    say(
        Text.assemble("Created registered model ", (model.name, "bold"), f" (owner {model.owner}).")
    )


@models_app.command("edit")
def models_edit(
    name: NameArg,
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="Free text.")
    ] = None,
    purpose: Annotated[
        str | None, typer.Option("--purpose", help="Intended use (shown on the model card).")
    ] = None,
    limitations: Annotated[
        str | None, typer.Option("--limitations", help="Known limitations (model card).")
    ] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Owning user or team.")] = None,
    reason: ReasonOption = None,
) -> None:
    """Edit a model's description, purpose, limitations or owner (audited with before/after)."""
    from keel.exceptions import InvalidSpecError

    changes = {
        k: v
        for k, v in {
            "description": description,
            "purpose": purpose,
            "limitations": limitations,
            "owner": owner,
        }.items()
        if v is not None
    }
    if not changes:
        raise InvalidSpecError(
            "Nothing to change: give --description, --purpose, --limitations or --owner."
        )
    with open_registry() as reg:
        model = reg.update_model(name, reason=reason, **changes)
    say(Text.assemble("Updated model ", (model.name, "bold"), f": {', '.join(changes)}."))


@models_app.command("protect")
def models_protect(
    name: NameArg,
    stages: Annotated[
        list[str] | None,
        typer.Option(
            "--stage", help="A stage that needs approvals; repeat for several (replaces the list)."
        ),
    ] = None,
    aliases: Annotated[
        list[str] | None,
        typer.Option(
            "--alias", help="An alias that needs approvals; repeat for several (replaces the list)."
        ),
    ] = None,
    approvals: Annotated[
        int | None,
        typer.Option("--approvals", min=1, max=20, help="Approvals a request needs (1-20)."),
    ] = None,
    multiple_production: Annotated[
        bool | None,
        typer.Option(
            "--multiple-production/--single-production",
            help="Allow several Production versions, or one (promoting archives the previous).",
            show_default=False,
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Unprotect every stage and alias first.")
    ] = False,
    reason: ReasonOption = None,
) -> None:
    """Protect stages and aliases behind approvals; without options, show the settings."""
    settings: dict[str, Any] = {}
    if clear:
        settings["stages"], settings["aliases"] = [], []
    if stages:
        settings["stages"] = list(stages)
    if aliases:
        settings["aliases"] = list(aliases)
    if approvals is not None:
        settings["required_approvals"] = approvals
    if multiple_production is not None:
        settings["multiple_production"] = multiple_production
    with open_registry() as reg:
        if settings:
            model = reg.set_protection(name, reason=reason, **settings)
        else:
            model = reg.get_model(name)
    if settings:
        say(Text.assemble("Updated the protection of ", (model.name, "bold"), ":"))
    console().print(_protection_grid(model))


@models_app.command("register")
def models_register(
    runs_uri: Annotated[
        str,
        typer.Argument(
            help="Where the model was logged: runs:/RUN_ID/PATH (full run id).",
            show_default=False,
            metavar="RUNS_URI",
        ),
    ],
    name: NameArg,
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="Description of the version.")
    ] = None,
) -> None:
    """Register a model logged to a run as the next version of NAME."""
    with open_registry() as reg:
        mv = reg.register_model(runs_uri, name, description=description)
    say(
        Text.assemble(
            "Registered ", runs_uri, " as ", _version_label(mv.name, mv.version), f" ({mv.uri})."
        )
    )


# -- stages, aliases, deletion ------------------------------------------------------------------
@models_app.command("stage")
def models_stage(
    name: NameArg,
    version: VersionArg,
    stage: Annotated[
        str,
        typer.Argument(
            help="None, Staging, Production, Shadow or Archived (any case).",
            show_default=False,
            metavar="STAGE",
        ),
    ],
    reason: ReasonOption = None,
    keep_existing: Annotated[
        bool,
        typer.Option(
            "--keep-existing",
            help="Do not archive the current Production version (needs --multiple-production).",
        ),
    ] = False,
) -> None:
    """Move a version to a stage; promoting to Production archives the previous one."""
    from keel.exceptions import InvalidStateError
    from keel.store._registry import check_stage

    target = check_stage(stage)
    with open_registry() as reg:
        model = reg.get_model(name)
        before = reg.get_version(name, version)
        previous = (
            [v for v in _production(reg.list_versions(name)) if v != before.version]
            if target == "Production"
            else []
        )
        if previous and keep_existing and not model.multiple_production:
            raise InvalidStateError(
                f"Model '{name}' already has version {previous[0]} in Production and allows one "
                f"Production version: drop --keep-existing to archive it, or allow several with "
                f"`keel models protect {name} --multiple-production`.",
                name=name,
            )
        mv = reg.set_stage(name, version, target, reason=reason, archive_existing=not keep_existing)
        archived = [v for v in previous if reg.get_version(name, v).stage == "Archived"]
    say(
        Text.assemble(
            _version_label(mv.name, mv.version),
            ": ",
            stage_text(before.stage),
            " -> ",
            stage_text(mv.stage),
            ".",
        )
    )
    for v in archived:
        say(Text.assemble("Archived ", _version_label(mv.name, v), " (was Production)."))


@models_app.command("alias")
def models_alias(
    name: NameArg,
    alias: Annotated[
        str, typer.Argument(help="Alias, e.g. champion.", show_default=False, metavar="ALIAS")
    ],
    version: Annotated[
        str | None,
        typer.Argument(
            help="Version to point it at (not with --delete).",
            show_default=False,
            metavar="VERSION",
        ),
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    reason: ReasonOption = None,
) -> None:
    """Point an alias at a version (moves it if it exists), or remove it with --delete."""
    from keel.exceptions import InvalidSpecError

    if delete and version is not None:
        raise InvalidSpecError("Give either VERSION or --delete, not both.")
    if not delete and version is None:
        raise InvalidSpecError(f"Give the VERSION to point '{alias}' at, or --delete to remove it.")
    with open_registry() as reg:
        previous = reg.get_model(name).aliases.get(alias)
        if delete:
            reg.delete_alias(name, alias, reason=reason)
        else:
            assert version is not None
            mv = reg.set_alias(name, alias, version, reason=reason)
    label = Text.assemble((f"{name}@{alias}", "bold"))
    if delete:
        say(Text.assemble("Deleted alias ", label, f" (was v{previous})."))
        return
    was = f"was v{previous}" if previous is not None else "new alias"
    say(Text.assemble(label, f" -> v{mv.version} ({was})."))


@models_app.command("archive")
def models_archive(name: NameArg, version: VersionArg, reason: ReasonOption = None) -> None:
    """Move a version to the Archived stage."""
    with open_registry() as reg:
        before = reg.get_version(name, version)
        mv = reg.archive(name, version, reason=reason)
    say(
        Text.assemble(
            _version_label(mv.name, mv.version),
            ": ",
            stage_text(before.stage),
            " -> ",
            stage_text(mv.stage),
            ".",
        )
    )


@models_app.command("delete")
def models_delete(name: NameArg, version: VersionArg, reason: ReasonOption = None) -> None:
    """Delete a version (its aliases are removed; the audit log keeps the record)."""
    with open_registry() as reg:
        mv = reg.get_version(name, version)
        reg.delete_version(name, version, reason=reason)
    removed = f"; removed aliases: {', '.join(mv.aliases)}" if mv.aliases else ""
    say(
        Text.assemble(
            "Deleted ", _version_label(mv.name, mv.version), f" (stage {mv.stage}{removed})."
        )
    )


# -- approvals and roles ------------------------------------------------------------------------
@models_app.command("request")
def models_request(
    name: NameArg,
    version: VersionArg,
    stage: Annotated[str | None, typer.Option("--stage", help="Target stage.")] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Target alias.")] = None,
    comment: Annotated[
        str | None, typer.Option("--comment", "-m", help="Why; shown to the approvers.")
    ] = None,
) -> None:
    """Ask approvers to move a version to a protected stage or alias (give one)."""
    from keel.exceptions import InvalidSpecError

    if (stage is None) == (alias is None):
        raise InvalidSpecError("Give exactly one of --stage or --alias.")
    with open_registry() as reg:
        req = reg.request(name, version, stage=stage, alias=alias, comment=comment)
        required = reg.get_model(name).required_approvals
    say(
        Text.assemble(
            f"Request {req.id}: ",
            _version_label(req.name, req.version),
            f" -> {_target(req)}, by {req.requested_by}; needs {plural(required, 'approval')} "
            f"from approvers other than {req.requested_by}.",
        )
    )
    say(
        Text(
            f"Approve with `keel models approve {req.id}`, "
            f"reject with `keel models reject {req.id}`.",
            style="dim",
        )
    )


def _vote(request_id: int, decision: str, comment: str | None) -> None:
    with open_registry() as reg:
        if decision == "approve":
            req = reg.approve(request_id, comment=comment)
        else:
            req = reg.reject(request_id, comment=comment)
        required = reg.get_model(req.name).required_approvals
    what = Text.assemble(_version_label(req.name, req.version), f" -> {_target(req)}")
    if req.status == "rejected":
        say(Text.assemble(f"Rejected request {req.id} (", what, ")."))
    elif req.status == "applied":
        done = (
            f"is now in stage {req.target}"
            if req.target_kind == "stage"
            else f"is now {req.name}@{req.target}"
        )
        say(
            Text.assemble(
                f"Approved request {req.id}: ", _version_label(req.name, req.version), f" {done}."
            )
        )
    else:
        have = _approvals(req)
        say(
            Text.assemble(
                f"Approved request {req.id} (",
                what,
                f"): {have} of {required} approvals; "
                f"pending until {plural(required - have, 'more approver')} "
                f"{'agrees' if required - have == 1 else 'agree'}.",
            )
        )


RequestIdArg = Annotated[
    int,
    typer.Argument(
        help="Request id (see `keel models pending`).", show_default=False, metavar="REQUEST_ID"
    ),
]


@models_app.command("approve")
def models_approve(request_id: RequestIdArg, comment: CommentOption = None) -> None:
    """Approve a request; the last approval needed applies it."""
    _vote(request_id, "approve", comment)


@models_app.command("reject")
def models_reject(request_id: RequestIdArg, comment: CommentOption = None) -> None:
    """Reject a request."""
    _vote(request_id, "reject", comment)


@models_app.command("pending")
def models_pending(
    name: Annotated[
        str | None,
        typer.Argument(help="Only this model's requests.", show_default=False, metavar="NAME"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List pending approval requests, oldest first."""
    with open_registry() as reg:
        requests = reg.pending(name)
        required = {n: reg.get_model(n).required_approvals for n in {r.name for r in requests}}
    if as_json:
        print_json([{**r.to_dict(), "required_approvals": required[r.name]} for r in requests])
        return
    if not requests:
        say("No pending approval requests.", style="dim")
        return
    console().print(_pending_table(requests, required))


RoleArg = Annotated[
    str,
    typer.Argument(help="reader, writer, approver or admin.", show_default=False, metavar="ROLE"),
]
UserArg = Annotated[
    str, typer.Argument(help="User name (as in KEEL_USER).", show_default=False, metavar="USER")
]
ScopeOption = Annotated[
    str | None, typer.Option("--model", help="Only on this model (default: every model).")
]


def _scope(model: str | None) -> str:
    return f"model {model}" if model else "every model"


@models_app.command("grant")
def models_grant(user: UserArg, role: RoleArg, model: ScopeOption = None) -> None:
    """Give a user a role on one model or on every model."""
    with open_registry() as reg:
        if model is not None:
            reg.get_model(model)  # an unknown model is an error, not a dormant grant
        reg.grant(user, role, model=model)
    say(f"Granted {role} to {user} on {_scope(model)}.")


@models_app.command("revoke")
def models_revoke(user: UserArg, role: RoleArg, model: ScopeOption = None) -> None:
    """Take a role away from a user."""
    with open_registry() as reg:
        reg.revoke(user, role, model=model)
    say(f"Revoked {role} from {user} on {_scope(model)}.")


# -- cards and signatures -----------------------------------------------------------------------
class CardFormat(StrEnum):
    """Output format of ``keel models card``."""

    md = "md"
    html = "html"


@models_app.command("card")
def models_card(
    name: NameArg,
    version: VersionArg,
    format_: Annotated[
        CardFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="md or html (default: html for an --output ending in .html, else md).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the card to this file and print its path."),
    ] = None,
) -> None:
    """Print a version's model card as Markdown, or write it (Markdown or HTML) to a file."""
    if format_ is not None:
        kind = format_.value
    elif output is not None and output.suffix.lower() in (".html", ".htm"):
        kind = "html"
    else:
        kind = "md"
    with open_registry() as reg:
        text = reg.card(name, version, kind)
    if output is None:
        console().out(text, highlight=False, end="" if text.endswith("\n") else "\n")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    console().out(str(output.resolve()), highlight=False)


@models_app.command("sign")
def models_sign(
    name: NameArg,
    version: VersionArg,
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            "-k",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Ed25519 private key (PEM), e.g. from `keel models keygen`.",
            show_default=False,
        ),
    ],
) -> None:
    """Sign a version's content hash; loaders with KEEL_VERIFY_KEYS then check it."""
    with open_registry() as reg:
        mv = reg.sign(name, version, key)
    say(
        Text.assemble(
            "Signed ",
            _version_label(mv.name, mv.version),
            f" (content hash {fmt.short_digest(mv.manifest_digest)}) as {mv.signed_by}.",
        )
    )


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if force else os.O_EXCL)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # also when --force replaced a file with other permissions
        os.write(fd, data)
    finally:
        os.close(fd)


@models_app.command("keygen")
def models_keygen(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            file_okay=False,
            help="Folder for signing-key.pem and signing-key.pub.pem (created if missing).",
            show_default=False,
        ),
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
) -> None:
    """Create an Ed25519 key pair for `keel models sign`."""
    from keel.exceptions import AlreadyExistsError
    from keel.models import generate_signing_key, key_fingerprint

    private_path, public_path = out / "signing-key.pem", out / "signing-key.pub.pem"
    if not force:
        for path in (private_path, public_path):
            if path.exists():
                raise AlreadyExistsError(
                    f"{path} already exists; pass --force to replace the key pair (versions "
                    "signed with the old key then only verify against the old public key).",
                    path=str(path),
                )
    private_pem, public_pem = generate_signing_key()
    out.mkdir(parents=True, exist_ok=True)
    _write_new(private_path, private_pem, 0o600, force)
    _write_new(public_path, public_pem, 0o644, force)
    say(f"Private key: {private_path.resolve()} (mode 600; keep it secret)")
    say(f"Public key:  {public_path.resolve()} (fingerprint {key_fingerprint(public_pem)})")
    say(
        Text(
            f"Sign with `keel models sign NAME VERSION --key {private_path}`; require signatures "
            f"when loading with KEEL_VERIFY_KEYS={public_path.resolve()}.",
            style="dim",
        )
    )
