"""``keel data``: version files, folders and tables; move them between machines.

Every command calls :mod:`keel.data`; output goes through the consoles of
:mod:`keel.cli.main` and errors through its single handler. ``keel data status``
reads local state only and imports neither SQLAlchemy nor the stores, so a no-op
status over 20,000 files stays well under half a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keel.cli import _format as fmt

if TYPE_CHECKING:
    from keel.store._data import DatasetVersion

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Version datasets (files, folders, tables), compare, check out, push and pull them.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
RemoteOption = Annotated[
    str | None,
    typer.Option(
        "--remote", help="A folder, file:// or s3://bucket/prefix (default: KEEL_DATA_REMOTE)."
    ),
]
AllVersionsOption = Annotated[
    bool, typer.Option("--all-versions", help="Every version of the dataset, not just one.")
]
NoProgressOption = Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")]


def _cli() -> Any:
    from keel.cli import main as cli

    return cli


def _say(message: str, style: str = "") -> None:
    _cli()._say(message, style)


def _json(data: Any) -> None:
    _cli()._print_json(data)


def _version_dict(v: DatasetVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "uri": v.uri,
        "kind": v.kind,
        "manifest_digest": v.manifest_digest,
        "files": v.file_count,
        "bytes": v.total_bytes,
        "created_at": v.created_at,
        "created_by": v.created_by,
        "run_id": v.run_id,
        "message": v.message,
        "extra": v.extra,
    }


def _progress(no_progress: bool) -> bool | None:
    return False if no_progress else None


@data_app.command("add")
def add_cmd(
    path: Annotated[Path, typer.Argument(help="File or folder to version.", show_default=False)],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Dataset name (default: the base name).")
    ] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="What changed.")] = None,
    link: Annotated[
        bool,
        typer.Option(
            "--link",
            help="Hard-link new files into the local store instead of copying (no copy; the "
            "files become read-only).",
        ),
    ] = False,
    no_pointer: Annotated[
        bool, typer.Option("--no-pointer", help="Do not write PATH.keel beside the path.")
    ] = False,
    json_out: JsonOption = False,
    no_progress: NoProgressOption = False,
) -> None:
    """Version a file or folder by content (unchanged files are not re-hashed)."""
    from keel.data import _api

    v = _api.add(
        path,
        name,
        message,
        link=link,
        pointer=not no_pointer,
        progress=_progress(no_progress),
    )
    if json_out:
        _json(_version_dict(v))
        return
    if v.created:
        _say(
            f"Added {v.uri}: {v.file_count} files, {fmt.format_size(v.total_bytes)} "
            f"(manifest {fmt.short_digest(v.manifest_digest)}).",
            "green",
        )
    else:
        _say(f"Unchanged: {path} is still {v.uri}.")
    if not no_pointer:
        root = Path(path).absolute()
        _say(
            f"Wrote {_api.pointer_path(root).name}; to keep the data out of git, add "
            f"'/{root.name}' to {root.parent / '.gitignore'} and commit the pointer."
        )


@data_app.command("status")
def status_cmd(
    target: Annotated[
        str | None,
        typer.Argument(help="A tracked path or dataset name (default: every tracked path)."),
    ] = None,
    json_out: JsonOption = False,
    no_progress: NoProgressOption = False,
) -> None:
    """Files modified, added and deleted since the version each tree was added or checked out as."""
    _status(target, json_out, no_progress)


def _status(target: str | None, json_out: bool, no_progress: bool) -> None:
    from keel.data import _api

    reports = _api.status(target, progress=_progress(no_progress))
    if json_out:
        _json([r.to_dict() for r in reports])
        return
    if not reports:
        _say("No tracked paths on this machine; version one with `keel data add PATH`.")
        return
    for r in reports:
        base = f"{r.name}@{r.version}" if r.name else "(never added)"
        c = r.changes
        if c.clean:
            _say(f"{r.root}: clean ({base})")
            continue
        _say(
            f"{r.root}: {len(c.modified)} modified, {len(c.added)} added, "
            f"{len(c.deleted)} deleted since {base}",
            "bold",
        )
        for label, paths, style in (
            ("modified", c.modified, "yellow"),
            ("added", c.added, "green"),
            ("deleted", c.deleted, "red"),
        ):
            for p in paths[:50]:
                _say(f"  {label}: {p}", style)
            if len(paths) > 50:
                _say(f"  ... and {len(paths) - 50} more {label}", style)


def fast_path(args: Sequence[str]) -> bool:
    """Run ``keel data status [TARGET] [--json] [--no-progress]`` without Typer's dispatch.

    Typer builds its parameter adapters with pydantic on every invocation (~0.2 s);
    the status of an unchanged tree takes less than that, so this one command skips
    it. Anything else (``--help``, unknown options) returns False and goes to Typer.
    """
    if list(args[:2]) != ["data", "status"]:
        return False
    rest = list(args[2:])
    flags = {"--json", "--no-progress"}
    positional = [a for a in rest if a not in flags]
    if len(positional) > 1 or any(a.startswith("-") for a in positional):
        return False
    cli = _cli()
    try:
        _status(positional[0] if positional else None, "--json" in rest, "--no-progress" in rest)
    except Exception as exc:
        code = cli.exit_code_for(exc)
        if code is None:
            raise
        cli._print_error(str(exc))
        raise SystemExit(code) from None
    return True


@data_app.command("diff")
def diff_cmd(
    a: Annotated[str, typer.Argument(help="NAME@A", show_default=False)],
    b: Annotated[str, typer.Argument(help="NAME@B", show_default=False)],
    json_out: JsonOption = False,
) -> None:
    """Files added, modified and deleted between two versions."""
    from keel.data import _api

    changes = _api.diff(a, b)
    if json_out:
        _json(changes.to_dict())
        return
    if changes.clean:
        _say(f"{a} and {b} have identical content.")
        return
    for label, paths, style in (
        ("modified", changes.modified, "yellow"),
        ("added", changes.added, "green"),
        ("deleted", changes.deleted, "red"),
    ):
        for p in paths:
            _say(f"{label}: {p}", style)


@data_app.command("checkout")
def checkout_cmd(
    ref: Annotated[
        str, typer.Argument(help="NAME@VERSION or a PATH.keel pointer file.", show_default=False)
    ],
    path: Annotated[
        Path | None, typer.Argument(help="Where to restore it (default: the tracked path).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite uncommitted changes.")
    ] = False,
    no_progress: NoProgressOption = False,
) -> None:
    """Restore a version (verified; the tree is swapped in whole, never half-written)."""
    from keel.data import _api

    target = _api.checkout(ref, path, force=force, progress=_progress(no_progress))
    _say(f"Checked out {ref} into {target}.", "green")


def _transfer(report: Any, json_out: bool, verb: str) -> None:
    if json_out:
        _json(report.to_dict())
        return
    _say(
        f"{verb} {', '.join(report.versions)}: {report.copied} blobs "
        f"({fmt.format_size(report.bytes)}) copied, {report.present} already there "
        f"({report.remote}).",
        "green",
    )


@data_app.command("push")
def push_cmd(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.", show_default=False)],
    remote: RemoteOption = None,
    all_versions: AllVersionsOption = False,
    json_out: JsonOption = False,
    no_progress: NoProgressOption = False,
) -> None:
    """Copy a version's blobs to a remote object store."""
    from keel.data import _api

    report = _api.push(ref, remote, all_versions=all_versions, progress=_progress(no_progress))
    _transfer(report, json_out, "Pushed")


@data_app.command("pull")
def pull_cmd(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.", show_default=False)],
    remote: RemoteOption = None,
    all_versions: AllVersionsOption = False,
    json_out: JsonOption = False,
    no_progress: NoProgressOption = False,
) -> None:
    """Fetch a version's blobs from a remote object store (verified)."""
    from keel.data import _api

    report = _api.pull(ref, remote, all_versions=all_versions, progress=_progress(no_progress))
    _transfer(report, json_out, "Pulled")


@data_app.command("list")
def list_cmd(json_out: JsonOption = False) -> None:
    """Every dataset with its newest version."""
    from keel.data import _api

    infos = _api.list_datasets()
    if json_out:
        _json(
            [
                {
                    "name": i.name,
                    "versions": i.version_count,
                    "latest": _version_dict(i.latest) if i.latest else None,
                }
                for i in infos
            ]
        )
        return
    if not infos:
        _say("No datasets yet; version one with `keel data add PATH`.")
        return
    table = _cli()._table("name", "versions", "latest", "kind", "files", "size", "created")
    for i in infos:
        v = i.latest
        table.add_row(
            i.name,
            str(i.version_count),
            str(v.version) if v else "-",
            v.kind if v else "-",
            str(v.file_count) if v else "-",
            fmt.format_size(v.total_bytes) if v else "-",
            fmt.format_time(v.created_at) if v else "-",
        )
    _cli().console.print(table)


@data_app.command("versions")
def versions_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name.", show_default=False)],
    json_out: JsonOption = False,
) -> None:
    """Every version of a dataset."""
    from keel.data import _api

    found = _api.versions(name)
    if json_out:
        _json([_version_dict(v) for v in found])
        return
    table = _cli()._table(
        "version", "kind", "files", "size", "manifest", "run", "created", "by", "message"
    )
    for v in found:
        table.add_row(
            str(v.version),
            v.kind,
            str(v.file_count),
            fmt.format_size(v.total_bytes),
            fmt.short_digest(v.manifest_digest),
            fmt.short_id(v.run_id) if v.run_id else "-",
            fmt.format_time(v.created_at),
            v.created_by or "-",
            v.message or "",
        )
    _cli().console.print(table)


@data_app.command("gc")
def gc_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be removed.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option("--grace", help="Keep unreferenced blobs younger than this many seconds."),
    ] = 3600.0,
    json_out: JsonOption = False,
) -> None:
    """Remove local blobs that no dataset, run or model version references."""
    from keel.data import _api

    report = _api.gc(dry_run=dry_run, grace_seconds=grace)
    if json_out:
        _json(report.to_dict())
        return
    verb = "Would remove" if dry_run else "Removed"
    _say(
        f"{verb} {len(report.removed)} blobs ({fmt.format_size(report.bytes)}); kept "
        f"{report.referenced} referenced and {report.kept_young} younger than {grace:g} s.",
        "green",
    )


@data_app.command("validate")
def validate_cmd(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION of a table.", show_default=False)],
    schema: Annotated[Path, typer.Option("--schema", "-s", help="Schema YAML (see infer-schema).")],
    json_out: JsonOption = False,
) -> None:
    """Validate a table version against a schema; exit code 1 when an error rule fails."""
    from keel.data._tables import table_path
    from keel.data._validate import Schema, validate
    from keel.exceptions import InvalidSpecError

    try:
        text = schema.read_text()
    except OSError as exc:
        raise InvalidSpecError(
            f"Cannot read schema {schema}: {exc.strerror}.", path=str(schema)
        ) from exc
    parsed = Schema.from_yaml(text)  # a bad schema fails before any data is fetched
    report = validate(table_path(ref), parsed, show_progress=_cli().console.is_terminal)
    if json_out:
        _json(report.to_dict())
    elif report.violations:
        _cli().console.print(report)  # a Rich table of the violations
    else:
        _say(report.summary(), "green")
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("infer-schema")
def infer_schema_cmd(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION of a table.", show_default=False)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the YAML here (default: stdout).")
    ] = None,
) -> None:
    """Infer a schema (types, nullability, ranges, categories) from a table version."""
    from keel.data._tables import get_profile
    from keel.data._validate import infer_schema

    text = infer_schema(get_profile(ref)).to_yaml()  # from the stored profile: no data read
    if output is None:
        _cli().console.out(text, highlight=False)
        return
    output.write_text(text)
    _say(f"Wrote the schema of {ref} to {output}.", "green")
