"""``keel lineage`` and ``keel audit``: where objects came from, and who changed what.

``keel audit verify`` exits with :data:`EXIT_AUDIT_BROKEN` (5) when the hash chain
of the audit log is broken, naming the first broken event.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from keel.cli import _format as fmt
from keel.cli._models import console, open_registry, plural, print_json, say, stage_text, table

if TYPE_CHECKING:
    from keel.entities import AuditEvent
    from keel.registry import Lineage, Registry

__all__ = ["EXIT_AUDIT_BROKEN", "audit_app", "lineage_cmd"]

#: Exit code of ``keel audit verify`` when the chain is broken (documented in docs/cli.md).
EXIT_AUDIT_BROKEN = 5

audit_app = typer.Typer(
    help="Verify, read and export the tamper-evident audit log.", no_args_is_help=True
)

_KIND_STYLES = {
    "run": "cyan",
    "model_version": "bold green",
    "dataset": "bold yellow",
    "model": "green",
}


# -- lineage ------------------------------------------------------------------------------------
def _start_node(reg: Registry, text: str) -> str:
    """The lineage node a command-line OBJECT names (checked to exist where keel can tell)."""
    from keel.cli._resolve import resolve_run_id

    given = text.strip()
    if given.startswith("models:/"):
        mv = reg.resolve(given).version
        assert mv is not None  # models:/ URIs always resolve to a registered version
        return f"model_version:{mv.name}/{mv.version}"
    if given.startswith("runs:/"):
        given = given[len("runs:/") :].split("/", 1)[0]
    elif ":" in given:
        kind, _, ident = given.partition(":")
        if kind == "run":
            given = ident
        elif kind == "model_version":
            name, _, version = ident.rpartition("/")
            mv = reg.get_version(name, version)
            return f"model_version:{mv.name}/{mv.version}"
        else:
            return given
    run_id = resolve_run_id(reg.client.store, given)
    reg.client.get_run(run_id)  # NotFoundError (exit 3) for an unknown full id
    return f"run:{run_id}"


def _label(reg: Registry, node: str) -> Text:
    """A node id with what keel knows about it (run name and status, version stage)."""
    from keel.exceptions import KeelError

    kind, _, ident = node.partition(":")
    text = Text(node, style=_KIND_STYLES.get(kind, ""))
    try:
        if kind == "run":
            run = reg.client.get_run(ident)
            text.append(f"  {run.name} · ", style="dim")
            text.append_text(fmt.status_text(run.status, run.lifecycle_stage))
        elif kind == "model_version":
            name, _, version = ident.rpartition("/")
            mv = reg.get_version(name, version)
            text.append("  ")
            text.append_text(stage_text(mv.stage))
            if mv.aliases:
                text.append(f" @{', @'.join(mv.aliases)}", style="magenta")
    except KeelError:
        text.append("  (not found)", style="dim red")
    return text


def _tree(lineage: Lineage, labels: dict[str, Text]) -> Tree:
    up = lineage.direction == "up"
    children: dict[str, list[tuple[str, str]]] = {}
    for src, dst, relation in lineage.edges:
        parent, child = (dst, src) if up else (src, dst)
        children.setdefault(parent, []).append((child, relation))
    tree = Tree(labels[lineage.start], guide_style="dim")
    expanded = {lineage.start}

    def grow(branch: Tree, node: str) -> None:
        for child, relation in children.get(node, []):
            arrow = Text(f"─{relation}→", style="italic magenta")
            label = (
                Text.assemble(labels[child], " ", arrow)
                if up
                else Text.assemble(arrow, " ", labels[child])
            )
            repeat = child in expanded and bool(children.get(child))
            if repeat:
                label.append(" (see above)", style="dim")
            sub = branch.add(label)
            if child not in expanded:
                expanded.add(child)
                grow(sub, child)

    grow(tree, lineage.start)
    return tree


def lineage_cmd(
    obj: Annotated[
        str,
        typer.Argument(
            help="A run id (or unique prefix), models:/NAME/VERSION (or @ALIAS, /STAGE, "
            "/latest), or kind:id such as dataset:churn@3.",
            show_default=False,
            metavar="OBJECT",
        ),
    ],
    down: Annotated[
        bool,
        typer.Option("--down", help="Walk to what was derived from OBJECT (default: its sources)."),
    ] = False,
    depth: Annotated[
        int, typer.Option("--depth", "-d", min=1, max=1000, help="At most N edges away.")
    ] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the nodes and edges as JSON.")
    ] = False,
) -> None:
    """Show where an object came from, or with --down what was derived from it."""
    with open_registry() as reg:
        start = _start_node(reg, obj)
        lineage = reg.lineage(start, "down" if down else "up", depth)
        labels = {} if as_json else {n: _label(reg, n) for n in lineage.nodes}
    if as_json:
        print_json(
            {
                "start": lineage.start,
                "direction": lineage.direction,
                "depth": depth,
                "nodes": lineage.nodes,
                "edges": [{"src": s, "dst": d, "relation": r} for s, d, r in lineage.edges],
            }
        )
        return
    console().print(_tree(lineage, labels))
    others = lineage.nodes[1:]
    where = "downstream" if down else "upstream"
    if not others:
        say(f"No lineage recorded {where} of {start}.", style="dim")
        return
    kinds = Counter(n.partition(":")[0] for n in others)
    summary = ", ".join(plural(n, kind) for kind, n in sorted(kinds.items()))
    say(f"{plural(len(others), 'node')} {where}: {summary}.", style="dim")


# -- audit --------------------------------------------------------------------------------------
def _describe(event: AuditEvent) -> str:
    when = fmt.format_time(event.ts, full=True)
    return f"{event.action} on {event.object} by {event.actor} at {when}"


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exit 5 naming the first broken event."""
    from keel.cli.main import _print_error

    with open_registry() as reg:
        count, why = reg.verify_audit()
        broken = None if why is None else next((e for e in reg.audit() if e.seq == count), None)
    if why is None:
        say(f"{plural(count, 'event')}, chain intact.")
        return
    found = f" ({_describe(broken)})" if broken is not None else ""
    intact = f" Events 1-{count - 1} are intact." if count > 1 else ""
    _print_error(f"The audit log is broken at event {count}{found}: {why}.{intact}")
    raise typer.Exit(EXIT_AUDIT_BROKEN)


@audit_app.command("log")
def audit_log(
    object_prefix: Annotated[
        str | None,
        typer.Option(
            "--object",
            help="Only objects starting with this, e.g. model:churn, model_version:churn/3, "
            "user:bob.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Only events of this model, its aliases and versions."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="Only the newest N events (0: all).")
    ] = 100,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the events (with hashes) as JSON.")
    ] = False,
) -> None:
    """Show the audit log, oldest first: who did what to which object, and why."""
    from keel.exceptions import InvalidSpecError

    if object_prefix is not None and model is not None:
        raise InvalidSpecError("Give either --object or --model, not both.")
    with open_registry() as reg:
        if model is not None:
            reg.get_model(model)
            own = [
                e
                for e in reg.audit(f"model:{model}")
                if e.object == f"model:{model}" or e.object.startswith(f"model:{model}@")
            ]
            events = sorted([*own, *reg.audit(f"model_version:{model}/")], key=lambda e: e.seq)
        else:
            events = reg.audit(object_prefix)
    total = len(events)
    if limit:
        events = events[-limit:]
    if as_json:
        print_json([e.to_dict() for e in events])
        return
    if not events:
        say("No audit events" + (" match." if object_prefix or model else "."), style="dim")
        return
    out = _audit_table(events)
    console().print(out)
    if len(events) < total:
        say(f"The newest {len(events)} of {total} events; see all with --limit 0.", style="dim")
    else:
        say(plural(total, "event") + ".", style="dim")


def _audit_table(events: list[AuditEvent]) -> Table:
    out = table("Seq", "Time", "Actor", "Action", "Object", "Reason")
    for column in out.columns[:4]:
        column.no_wrap = True
    for e in events:
        out.add_row(
            str(e.seq),
            fmt.format_time(e.ts, full=True),
            e.actor,
            Text(e.action, style="bold"),
            Text(e.object, overflow="fold"),
            Text(e.reason or "", overflow="fold"),
        )
    return out


@audit_app.command("export")
def audit_export(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON Lines file to write (replaced).",
            show_default=False,
            dir_okay=False,
            metavar="FILE",
        ),
    ],
) -> None:
    """Write the whole audit log, hashes included, as JSON Lines; prints the count."""
    from keel.exceptions import InvalidSpecError

    if not file.parent.is_dir():
        raise InvalidSpecError(f"Folder {file.parent} does not exist.", path=str(file))
    with open_registry() as reg:
        n = reg.export_audit(file)
    say(f"Exported {plural(n, 'event')} to {file.resolve()}.")
