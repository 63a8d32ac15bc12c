"""The ``keel`` command: inspect experiments, runs and artifacts from a terminal.

Every command reads the configuration like the Python API does (``KEEL_*``
environment variables, ``keel.toml``, defaults; see ``keel config``). Output goes
through :data:`console` (stdout) and :data:`err_console` (stderr), two module-level
Rich consoles that tests may rebind. Errors raised on purpose by keel
(:class:`~keel.exceptions.KeelError`) are reported in one place,
:meth:`_KeelGroup.invoke`, as ``Error: <message>`` on stderr with the exit codes of
:data:`EXIT_CODES`. Heavy modules (SQLAlchemy, the stores) are imported inside the
commands so ``keel --help`` stays quick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from keel.cli import _format as fmt
from keel.cli._data import data_app
from keel.cli._governance import audit_app, lineage_cmd
from keel.cli._import import import_app
from keel.cli._models import models_app
from keel.cli._monitor import agent_cmd, monitor_app
from keel.cli._serve import build_cmd, deploy_app, predict_cmd, serve_cmd
from keel.cli._users import users_app
from keel.exceptions import InvalidSpecError, KeelError, NotFoundError, PermissionDeniedError

if TYPE_CHECKING:
    from keel.entities import ArtifactInfo, Run
    from keel.store.sql import SqlStore
    from keel.tracking.client import Client

__all__ = ["EXIT_CODES", "app", "console", "err_console", "exit_code_for", "main"]

#: Standard output of every command (rebind in tests, e.g. ``Console(width=100)``).
console = Console()
#: Standard error: error messages and progress notes.
err_console = Console(stderr=True)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
#: A missing role, a protected stage or alias without approvals, or self-approval.
EXIT_PERMISSION_DENIED = 4
#: Exit code per outcome (documented in docs/cli.md). ``keel audit verify`` also exits
#: with 5 when the audit chain is broken (:data:`keel.cli._governance.EXIT_AUDIT_BROKEN`).
EXIT_CODES: dict[str, int] = {
    "ok": EXIT_OK,
    "error": EXIT_ERROR,
    "usage": EXIT_USAGE,
    "not_found": EXIT_NOT_FOUND,
    "permission_denied": EXIT_PERMISSION_DENIED,
}


# -- error handling ---------------------------------------------------------------------------
def exit_code_for(exc: BaseException) -> int | None:
    """The exit code for an error keel raised on purpose, or ``None`` for a bug."""
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, InvalidSpecError):
        return EXIT_USAGE
    if isinstance(exc, PermissionDeniedError):
        return EXIT_PERMISSION_DENIED
    if isinstance(exc, KeelError):
        return EXIT_ERROR
    if isinstance(exc, ValueError) and type(exc).__module__ == "keel.store._filter":
        # FilterSyntaxError / OrderBySyntaxError: a bad --filter or --order-by
        from keel.store._filter import FilterSyntaxError

        if isinstance(exc, FilterSyntaxError):
            return EXIT_USAGE
    return None


def _print_error(message: str) -> None:
    err_console.print(Text(f"Error: {message}", style="red"), soft_wrap=True, highlight=False)


class _KeelGroup(TyperGroup):
    """The root command group; reports keel's errors without a traceback."""

    def invoke(self, ctx: Any) -> Any:  # ctx: the Click context (vendored or not)
        """Run the command; turn a :class:`KeelError` into ``Error: ...`` and an exit code."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            code = exit_code_for(exc)
            if code is None:
                raise
            _print_error(str(exc))
            raise typer.Exit(code) from None


app = typer.Typer(
    name="keel",
    cls=_KeelGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Manage the metadata store schema.", no_args_is_help=True)
experiments_app = typer.Typer(
    help="List, create, delete and restore experiments.", no_args_is_help=True
)
runs_app = typer.Typer(
    help="List, inspect, compare, delete and restore runs.", no_args_is_help=True
)
artifacts_app = typer.Typer(
    help="List and download the files logged to runs.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(experiments_app, name="experiments")
app.add_typer(runs_app, name="runs")
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(models_app, name="models", rich_help_panel="Model registry")
app.command("lineage", rich_help_panel="Model registry")(lineage_cmd)
app.add_typer(audit_app, name="audit", rich_help_panel="Model registry")
app.add_typer(import_app, name="import")
app.add_typer(users_app, name="users", rich_help_panel="Access control")
app.add_typer(data_app, name="data")
app.command("serve", rich_help_panel="Serving")(serve_cmd)
app.add_typer(deploy_app, name="deploy", rich_help_panel="Serving")
app.command("predict", rich_help_panel="Serving")(predict_cmd)
app.command("build", rich_help_panel="Serving")(build_cmd)
app.add_typer(monitor_app, name="monitor", rich_help_panel="Monitoring")
app.command("agent", rich_help_panel="Monitoring")(agent_cmd)


# -- shared helpers ---------------------------------------------------------------------------
@contextlib.contextmanager
def _client() -> Iterator[Client]:
    """A tracking client for the current configuration, closed afterwards."""
    from keel.config import load_settings
    from keel.tracking.client import Client

    client = Client(load_settings())
    try:
        yield client
    finally:
        client.close()


def _say(message: str | Text, style: str = "") -> None:
    """Print a sentence: no markup, no highlighting, long paths and ids never hard-wrapped."""
    text = Text(message) if isinstance(message, str) else message
    console.print(text, style=style, soft_wrap=True, highlight=False)


def _print_json(data: Any) -> None:
    console.out(fmt.to_json(data), highlight=False)


def _view(all_: bool, deleted: bool) -> str:
    if all_ and deleted:
        raise typer.BadParameter("use either --all or --deleted, not both.")
    return "all" if all_ else "deleted" if deleted else "active"


def _table(*headers: str, title: str | None = None) -> Table:
    """A compact table: a rule under the header, no borders, two spaces between columns."""
    return Table(
        *headers,
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        header_style="bold",
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
        min_width=len(title) if title else None,
    )


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


def _experiment_names(client: Client) -> dict[str, str]:
    return {e.experiment_id: e.name for e in client.list_experiments("all")}


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AllOption = Annotated[bool, typer.Option("--all", "-a", help="Include deleted ones.")]
DeletedOption = Annotated[bool, typer.Option("--deleted", help="Only deleted ones.")]
RunIdArg = Annotated[
    str,
    typer.Argument(help="Run id, or a unique prefix of at least 6 characters.", show_default=False),
]


# -- root -------------------------------------------------------------------------------------
def _version_callback(value: bool) -> None:
    if value:
        from keel import __version__

        console.print(f"keel {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_version_callback,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """keel: track experiments, runs, metrics and artifacts.

    The configuration comes from KEEL_* environment variables and keel.toml
    (see `keel config`).
    """


@app.command("config")
def config_cmd(as_json: JsonOption = False) -> None:
    """Show the resolved settings and where each one comes from."""
    from keel.config import load_settings

    settings = load_settings()
    if as_json:
        _print_json(
            {
                f.name: {
                    "value": _plain(getattr(settings, f.name)),
                    "source": settings.sources.get(f.name, "default"),
                }
                for f in dataclasses.fields(settings)
                if f.name != "sources"
            }
        )
        return
    table = _table("Setting", "Value", "Source")
    for name, value, source in settings.describe():
        table.add_row(name, Text(value, overflow="fold"), Text(source, style="dim"))
    console.print(table)


# -- db ---------------------------------------------------------------------------------------
def _sql_store() -> SqlStore:
    from keel.config import load_settings
    from keel.store.sql import SqlStore

    settings = load_settings()
    return SqlStore(settings.store_uri, artifact_location=settings.artifact_uri, migrate=False)


def _safe_url(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


@contextlib.contextmanager
def _db_errors(url: str) -> Iterator[None]:
    """Turn driver errors of a direct database access into keel errors."""
    import sqlalchemy as sa

    from keel.exceptions import BackendUnavailableError, ConfigError

    try:
        yield
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"Invalid store URI {_safe_url(url)!r}: {exc}.") from exc
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise BackendUnavailableError(
            f"The metadata store at {_safe_url(url)} is unavailable: {exc.orig}. "
            "Check that the database is reachable and retry."
        ) from exc


def _current_revision(store: SqlStore) -> str | None:
    import sqlalchemy as sa

    from keel.store.migrate import current_revision

    if store.dialect == "sqlite":
        db = sa.make_url(store.url).database
        if db and db != ":memory:" and not Path(db).exists():
            return None  # do not create an empty database file just to look at it
    with store.engine.connect() as conn:
        return current_revision(conn)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations; prints the revision before and after."""
    from keel.store.migrate import upgrade

    store = _sql_store()
    try:
        with _db_errors(store.url):
            before, after = upgrade(store.engine, store.url)
    finally:
        store.close()
    where = _safe_url(store.url)
    if before == after:
        _say(f"{where}: already at revision {after}; nothing to do.")
    else:
        _say(f"{where}: upgraded {before or '(empty)'} -> {after}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the metadata store."""
    from keel.store.sql import HEAD_REVISION

    store = _sql_store()
    try:
        with _db_errors(store.url):
            revision = _current_revision(store)
    finally:
        store.close()
    if revision is None:
        _say("none (empty database: run `keel db upgrade`)")
    elif revision == HEAD_REVISION:
        _say(f"{revision} (head)")
    else:
        _say(f"{revision} (head is {HEAD_REVISION}: run `keel db upgrade`)")


# -- experiments --------------------------------------------------------------------------------
@experiments_app.command("list")
def experiments_list(
    all_: AllOption = False, deleted: DeletedOption = False, as_json: JsonOption = False
) -> None:
    """List experiments (active ones unless --all or --deleted)."""
    view = _view(all_, deleted)
    with _client() as client:
        experiments = client.list_experiments(view)
    if as_json:
        _print_json([e.to_dict() for e in experiments])
        return
    if not experiments:
        _say("No experiments.", style="dim")
        return
    table = _table("ID", "Name", "Created", "Stage", "Description")
    for exp in experiments:
        stage = Text(exp.lifecycle_stage, style="dim" if exp.lifecycle_stage != "active" else "")
        table.add_row(
            exp.experiment_id,
            Text(exp.name, style="bold"),
            fmt.format_time(exp.created_at),
            stage,
            Text(exp.description or "", overflow="ellipsis", no_wrap=True),
        )
    console.print(table)


@experiments_app.command("create")
def experiments_create(
    name: Annotated[str, typer.Argument(help="A unique name.", show_default=False)],
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="Free text.")
    ] = None,
) -> None:
    """Create an experiment."""
    with _client() as client:
        exp = client.create_experiment(name, description=description)
    _say(Text.assemble("Created experiment ", (exp.name, "bold"), f" (id {exp.experiment_id})."))


def _set_experiment_stage(name_or_id: str, stage: Literal["active", "deleted"]) -> None:
    with _client() as client:
        exp = client.get_experiment(name_or_id)
        label = Text.assemble("experiment ", (exp.name, "bold"), f" (id {exp.experiment_id})")
        if exp.lifecycle_stage == stage:
            _say(Text.assemble("The ", label, f" is already {stage}."))
            return
        client.store.set_experiment_lifecycle(exp.experiment_id, stage)
    if stage == "deleted":
        _say(
            Text.assemble(
                "Deleted ",
                label,
                f"; restore it with `keel experiments restore {exp.experiment_id}`.",
            )
        )
    else:
        _say(Text.assemble("Restored ", label, "."))


@experiments_app.command("delete")
def experiments_delete(
    experiment: Annotated[str, typer.Argument(help="Experiment name or id.", show_default=False)],
) -> None:
    """Soft-delete an experiment (restorable; its runs are kept)."""
    _set_experiment_stage(experiment, "deleted")


@experiments_app.command("restore")
def experiments_restore(
    experiment: Annotated[str, typer.Argument(help="Experiment name or id.", show_default=False)],
) -> None:
    """Restore a deleted experiment."""
    _set_experiment_stage(experiment, "active")


# -- runs -----------------------------------------------------------------------------------------
_SHORT = {"metric": "m", "param": "p", "tag": "t"}


@dataclasses.dataclass(frozen=True)
class _Column:
    """An extra column of ``keel runs list``: a metric, param or tag."""

    kind: Literal["metric", "param", "tag"]
    key: str

    @property
    def header(self) -> str:
        return f"{_SHORT[self.kind]}.{self.key}"

    def cell(self, run: Run) -> Text:
        if self.kind == "metric":
            value = run.metrics.get(self.key)
            return Text(fmt.format_number(value), style="dim" if value is None else "")
        source = run.params if self.kind == "param" else run.tags
        text = source.get(self.key)
        return Text("-", style="dim") if text is None else Text(text)


def _parse_columns(spec: str) -> list[_Column]:
    out: list[_Column] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        prefix, dot, key = item.partition(".")
        from keel.store._filter import ENTITY_PREFIXES

        kind = ENTITY_PREFIXES.get(prefix.lower())
        if not dot or not key or kind not in ("metric", "param", "tag"):
            raise InvalidSpecError(
                f"Unknown column '{item}': name columns metrics.KEY, params.KEY or tags.KEY, "
                "e.g. --columns metrics.auc,params.model.",
                column=item,
            )
        out.append(_Column(kind, key))
    return out


def _mentioned_keys(filter_: str | None, order_by: Sequence[str]) -> list[tuple[str, str]]:
    """(entity, key) pairs the filter and order-by mention, in order of appearance."""
    from keel.store._filter import parse_filter, parse_order_by

    found: list[tuple[str, str]] = []

    def walk(node: object) -> None:
        entity, key = getattr(node, "entity", None), getattr(node, "key", None)
        if isinstance(entity, str) and isinstance(key, str):
            found.append((entity, key))
        for child in getattr(node, "items", ()):
            walk(child)
        if (inner := getattr(node, "item", None)) is not None:
            walk(inner)

    try:
        walk(parse_filter(filter_))
        found += [(ob.entity, ob.key) for ob in parse_order_by(list(order_by))]
    except Exception:  # already validated by the search; columns are best effort
        pass
    return found


def _candidate_columns(
    runs: Sequence[Run], filter_: str | None, order_by: Sequence[str]
) -> list[_Column]:
    """Metric and param columns by priority: those the query mentions, then metrics, then params."""
    metrics = sorted({k for r in runs for k in r.metrics})
    params = sorted({k for r in runs for k in r.params})
    first: list[_Column] = []
    for entity, key in _mentioned_keys(filter_, order_by):
        if entity == "metric" and key in metrics:
            first.append(_Column("metric", key))
        elif entity == "param" and key in params:
            first.append(_Column("param", key))
    rest = [_Column("metric", k) for k in metrics] + [_Column("param", k) for k in params]
    return list(dict.fromkeys([*first, *rest]))


def _natural_width(table: Table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def _fit_columns(
    runs: Sequence[Run],
    experiments: dict[str, str] | None,
    candidates: Sequence[_Column],
    width: int,
) -> list[_Column]:
    """The leading candidates (at most 6) that fit in ``width`` once names are squeezed."""
    chosen: list[_Column] = []
    for col in candidates[:6]:
        table = _runs_table(runs, experiments, [*chosen, col], name_width=_MIN_NAME)
        if _natural_width(table) > width:
            break
        chosen.append(col)
    return chosen


def _fit_name_width(
    runs: Sequence[Run], experiments: dict[str, str] | None, columns: Sequence[_Column], width: int
) -> int:
    """The widest name columns (24 down to 6) with which the table fits in ``width``."""
    for name_width in range(24, 6, -2):
        if _natural_width(_runs_table(runs, experiments, columns, name_width=name_width)) <= width:
            return name_width
    return 6


_MIN_NAME = 10


def _runs_table(
    runs: Sequence[Run],
    experiments: dict[str, str] | None,
    columns: Sequence[_Column],
    *,
    name_width: int = 24,
) -> Table:
    """Runs, one per row; names shrink first when space runs out.

    ``experiments`` maps ids to names for an Experiment column (``None``: no column).
    """
    table = _table()
    table.add_column("ID", style="cyan", no_wrap=True, min_width=8)
    table.add_column("Name", no_wrap=True, overflow="ellipsis", max_width=name_width)
    if experiments is not None:
        table.add_column("Experiment", no_wrap=True, overflow="ellipsis", max_width=name_width)
    table.add_column("Status", no_wrap=True)
    table.add_column("Start", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    for col in columns:
        table.add_column(
            col.header,
            justify="right" if col.kind == "metric" else "left",
            no_wrap=True,
            overflow="ellipsis",
            max_width=16,
            header_style="bold cyan" if col.kind == "metric" else "bold magenta",
        )
    now_ms = time.time_ns() // 1_000_000
    for run in runs:
        if run.duration is None:
            duration = Text(fmt.format_duration((now_ms - run.start_time) / 1000), style="dim")
        else:
            duration = Text(fmt.format_duration(run.duration))
        cells: list[Text | str] = [fmt.short_id(run.run_id), Text(run.name)]
        if experiments is not None:
            cells.append(Text(experiments.get(run.experiment_id, run.experiment_id)))
        cells += [
            fmt.status_text(run.status, run.lifecycle_stage),
            fmt.format_time(run.start_time, compact=True),
            duration,
            *(col.cell(run) for col in columns),
        ]
        table.add_row(*cells)
    return table


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@runs_app.command("list")
def runs_list(
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment", "-e", help="Experiment name or id; repeat for several (default: all)."
        ),
    ] = None,
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            "-f",
            help="Search filter, e.g. \"metrics.auc > 0.9 and params.model = 'rf'\".",
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by",
            "-o",
            help="Sort key such as 'metrics.auc DESC'; repeat for ties (default: newest first).",
        ),
    ] = None,
    max_results: Annotated[
        int, typer.Option("--max", "-n", min=1, help="Show at most N runs.")
    ] = 100,
    all_: AllOption = False,
    deleted: DeletedOption = False,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            "-c",
            help="Comma-separated extra columns: metrics.KEY, params.KEY, tags.KEY.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of runs (full ids, every field).")
    ] = False,
) -> None:
    """List runs, newest first; filter and sort them like keel.search_runs (docs/search.md)."""
    view = _view(all_, deleted)
    chosen = _parse_columns(columns) if columns is not None else None
    order = list(order_by or [])
    with _client() as client:
        runs = client.search_runs(
            experiment or None,
            filter=filter_,
            order_by=order or None,
            max_results=max_results,
            view=view,
        )
        names = {} if as_json else _experiment_names(client)
    if as_json:
        _print_json([r.to_dict() for r in runs])
        return
    if not runs:
        _say("No runs found.", style="dim")
        return
    spanned = {r.experiment_id for r in runs}
    experiments = names if len(spanned) > 1 else None  # one experiment: say so below instead
    hidden = 0
    if chosen is None:
        candidates = _candidate_columns(runs, filter_, order)
        chosen = _fit_columns(runs, experiments, candidates, console.width)
        hidden = len(candidates) - len(chosen)
    name_width = _fit_name_width(runs, experiments, chosen, console.width)
    console.print(_runs_table(runs, experiments, chosen, name_width=name_width))
    summary = _plural(len(runs), "run")
    if experiments is None:
        only = next(iter(spanned))
        summary += f" in experiment {names.get(only, only)}"
    notes = [summary]
    if runs.next_page_token:
        notes.append(f"more match: raise --max (now {max_results})")
    if hidden:
        notes.append(f"{_plural(hidden, 'more metric/param column')}: choose with --columns")
    _say(Text("; ".join(notes) + ".", style="dim"))


def _kv_table(title: str, rows: Sequence[tuple[str, Text]], value_header: str = "Value") -> Table:
    table = _table("Key", value_header, title=title)
    table.columns[1].overflow = "fold"
    for key, value in rows:
        table.add_row(Text(key), value)
    return table


def _artifacts_table(artifacts: Sequence[ArtifactInfo], title: str | None = None) -> Table:
    table = _table(title=title)
    table.add_column("Path", overflow="fold")
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Digest", style="dim", no_wrap=True)
    for info in artifacts:
        table.add_row(Text(info.path), fmt.format_size(info.size), fmt.short_digest(info.digest))
    return table


@runs_app.command("show")
def runs_show(
    run_id: RunIdArg,
    all_tags: Annotated[bool, typer.Option("--all-tags", help="Also show keel.* tags.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run (every tag, artifacts) as JSON.")
    ] = False,
) -> None:
    """Show a run: info, params, metrics (latest values), tags, failure, artifacts."""
    from keel.cli._resolve import resolve_run_id

    with _client() as client:
        run = client.get_run(resolve_run_id(client.store, run_id))
        artifacts = client.list_artifacts(run.run_id)
        try:
            experiment = client.store.get_experiment(run.experiment_id).name
        except NotFoundError:  # pragma: no cover - runs always have an experiment
            experiment = run.experiment_id
    if as_json:
        data = run.to_dict()
        data["experiment_name"] = experiment
        data["artifacts"] = [dataclasses.asdict(a) for a in artifacts]
        _print_json(data)
        return

    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold", no_wrap=True)
    info.add_column(overflow="fold")
    info.add_row("ID", run.run_id)
    info.add_row("Experiment", Text(f"{experiment} (id {run.experiment_id})"))
    info.add_row("Status", fmt.status_text(run.status, run.lifecycle_stage))
    info.add_row("User", Text(run.user or "-"))
    info.add_row("Start", fmt.format_time(run.start_time, full=True))
    info.add_row("End", fmt.format_time(run.end_time, full=True))
    info.add_row("Duration", fmt.format_duration(run.duration))
    if run.parent_run_id:
        info.add_row("Parent", run.parent_run_id)
    if run.description:
        info.add_row("Description", Text(run.description))
    if run.environment_digest:
        info.add_row("Environment", fmt.short_digest(run.environment_digest))
    console.print(
        Panel(info, title=Text(f"Run {run.name}", style="bold"), title_align="left", expand=False)
    )

    blocks: list[Any] = []
    if run.params:
        blocks.append(_kv_table("Params", [(k, Text(v)) for k, v in sorted(run.params.items())]))
    else:
        blocks.append(Text("No params.", style="dim"))
    if run.metrics:
        rows = [(k, Text(fmt.format_number(v, 10))) for k, v in sorted(run.metrics.items())]
        blocks.append(_kv_table("Metrics (latest values)", rows))
    else:
        blocks.append(Text("No metrics.", style="dim"))
    tags = {k: v for k, v in run.tags.items() if all_tags or not k.startswith("keel.")}
    hidden = len(run.tags) - len(tags)
    if tags:
        blocks.append(_kv_table("Tags", [(k, Text(v)) for k, v in sorted(tags.items())]))
    if hidden:
        blocks.append(Text(f"{hidden} keel.* tags hidden; show them with --all-tags.", style="dim"))
    if run.failure:
        blocks.append(
            Panel(
                Text(run.failure.rstrip()),
                title=Text("Failure", style="bold red"),
                title_align="left",
                border_style="red",
            )
        )
    if artifacts:
        blocks.append(_artifacts_table(artifacts, title="Artifacts"))
    else:
        blocks.append(Text("No artifacts.", style="dim"))
    for block in blocks:
        console.print()
        console.print(block)


@runs_app.command("compare")
def runs_compare(
    run_ids: Annotated[
        list[str],
        typer.Argument(
            help="Two or more run ids or unique prefixes.", show_default=False, metavar="RUN_ID"
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Compare runs side by side: params (differences highlighted), then metrics."""
    from keel.cli._resolve import resolve_run_ids

    if len(run_ids) < 2:
        raise typer.BadParameter("give at least two runs to compare.", param_hint="RUN_ID")
    with _client() as client:
        data = client.compare_runs(resolve_run_ids(client.store, run_ids))
    if as_json:
        _print_json(data)
        return
    differing = set(data["differing_params"])
    table = _table()
    table.add_column("", no_wrap=True)
    for run_id, name in zip(data["runs"], data["names"], strict=True):
        header = Text.assemble((name, "bold"), "\n", (fmt.short_id(run_id), "cyan"))
        table.add_column(header, justify="right", overflow="fold")
    width = len(data["runs"])
    if data["params"]:
        table.add_row(Text("params", style="bold magenta"), *[""] * width)
        for key, values in data["params"].items():
            diff = key in differing
            table.add_row(
                Text(f"  {key}" + (" *" if diff else "")),
                *(Text("-", style="dim") if v is None else Text(v) for v in values),
                style="bold yellow" if diff else None,
            )
    if data["metrics"]:
        if data["params"]:
            table.add_section()
        table.add_row(Text("metrics", style="bold cyan"), *[""] * width)
        for key, values in data["metrics"].items():
            table.add_row(
                Text(f"  {key}"),
                *(Text(fmt.format_number(v, 6), style="dim" if v is None else "") for v in values),
            )
    if not data["params"] and not data["metrics"]:
        _say("These runs have no params or metrics.", style="dim")
        return
    console.print(table)
    if differing:
        _say(Text("* params whose values differ between the runs", style="dim yellow"))


def _set_runs_stage(run_ids: Sequence[str], stage: Literal["active", "deleted"]) -> None:
    from keel.cli._resolve import resolve_run_ids

    with _client() as client:
        runs = [client.get_run(r) for r in resolve_run_ids(client.store, run_ids)]
        for run in runs:
            if stage == "deleted":
                client.delete_run(run.run_id)
            else:
                client.restore_run(run.run_id)
    verb = "Deleted" if stage == "deleted" else "Restored"
    for run in runs:
        _say(Text.assemble(f"{verb} run ", (run.run_id, "cyan"), " (", (run.name, "bold"), ")."))
    if stage == "deleted":
        _say(Text("Restore with `keel runs restore RUN_ID`.", style="dim"))


@runs_app.command("delete")
def runs_delete(
    run_ids: Annotated[
        list[str],
        typer.Argument(help="Run ids or unique prefixes.", show_default=False, metavar="RUN_ID"),
    ],
) -> None:
    """Soft-delete runs (hidden from searches, restorable)."""
    _set_runs_stage(run_ids, "deleted")


@runs_app.command("restore")
def runs_restore(
    run_ids: Annotated[
        list[str],
        typer.Argument(help="Run ids or unique prefixes.", show_default=False, metavar="RUN_ID"),
    ],
) -> None:
    """Restore soft-deleted runs."""
    _set_runs_stage(run_ids, "active")


@runs_app.command("reap")
def runs_reap(
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.001,
            help="Seconds without heartbeat before a run is dead (default: heartbeat_timeout).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reaped runs as JSON.")] = False,
) -> None:
    """Mark RUNNING runs whose process stopped sending heartbeats as FAILED."""
    with _client() as client:
        limit = timeout if timeout is not None else client.settings.heartbeat_timeout
        reaped = [client.get_run(r) for r in client.store.reap_dead_runs(limit)]
        experiments = _experiment_names(client) if reaped and not as_json else {}
    if as_json:
        _print_json([r.to_dict() for r in reaped])
        return
    if not reaped:
        _say(f"No RUNNING run has missed heartbeats for {limit:g} s.")
        return
    _say(f"Marked {_plural(len(reaped), 'run')} FAILED (no heartbeat for {limit:g} s):")
    console.print(_runs_table(reaped, experiments, []))


# -- artifacts --------------------------------------------------------------------------------
PathArg = Annotated[
    str,
    typer.Argument(
        help="A file or folder inside the run (default: everything).", show_default=False
    ),
]


@artifacts_app.command("ls")
def artifacts_ls(run_id: RunIdArg, path: PathArg = "", as_json: JsonOption = False) -> None:
    """List the files logged to a run, under PATH if given."""
    from keel.cli._resolve import resolve_run_id
    from keel.exceptions import did_you_mean

    with _client() as client:
        full_id = resolve_run_id(client.store, run_id)
        artifacts = client.list_artifacts(full_id, path)
        if path and not artifacts:
            listing = [a.path for a in client.list_artifacts(full_id)]
            raise NotFoundError(
                f"Run '{full_id}' has no artifact '{path}'.{did_you_mean(path, listing)} "
                f"See `keel artifacts ls {fmt.short_id(full_id)}`.",
                run_id=full_id,
                path=path,
            )
    if as_json:
        _print_json([dataclasses.asdict(a) for a in artifacts])
        return
    if not artifacts:
        _say("No artifacts.", style="dim")
        return
    console.print(_artifacts_table(artifacts))
    total = sum(a.size for a in artifacts)
    n = len(artifacts)
    _say(f"{_plural(n, 'file')}, {fmt.format_size(total)}.", style="dim")


@artifacts_app.command("get")
def artifacts_get(
    run_id: RunIdArg,
    path: PathArg = "",
    dest: Annotated[
        Path | None,
        typer.Option(
            "--dest", "-d", help="Folder to download into (created if missing; default: .)."
        ),
    ] = None,
) -> None:
    """Download a file or folder of a run, verified against its digests; prints the local path."""
    from keel.cli._resolve import resolve_run_id

    if dest is not None:
        if dest.exists() and not dest.is_dir():
            raise InvalidSpecError(f"--dest {dest} is a file; give a folder.", path=str(dest))
        dest.mkdir(parents=True, exist_ok=True)
    with _client() as client:
        full_id = resolve_run_id(client.store, run_id)
        artifacts = client.list_artifacts(full_id, path)
        local = client.download_artifacts(full_id, path, dest)
    size = fmt.format_size(sum(a.size for a in artifacts))
    err_console.print(
        Text(f"Downloaded {_plural(len(artifacts), 'file')} ({size}), verified.", style="dim"),
        soft_wrap=True,
        highlight=False,
    )
    console.out(str(local.resolve()), highlight=False)


# -- server ---------------------------------------------------------------------------------
@app.command("server", rich_help_panel="Server")
def server_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 5000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
    log_level: Annotated[
        str, typer.Option(help="critical, error, warning, info, debug or trace.")
    ] = "info",
) -> None:
    """Serve the metadata and object stores of this configuration over HTTP.

    Clients point KEEL_TRACKING_URI at it (http://HOST:PORT); the native API is
    under /api/v1 (OpenAPI at /docs), the MLflow-compatible API under
    /api/2.0/mlflow, Prometheus metrics at /metrics. See docs/server.md.
    """
    import os
    import tempfile

    levels = ("critical", "error", "warning", "info", "debug", "trace")
    if log_level.lower() not in levels:
        raise typer.BadParameter(f"use one of {', '.join(levels)}.", param_hint="--log-level")
    try:
        import uvicorn
    except ImportError as exc:
        raise KeelError("keel server needs the server extra: pip install 'keel[server]'.") from exc

    with contextlib.ExitStack() as stack:
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # workers count requests in files here, so /metrics adds all of them up
            metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="keel-metrics-"))
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run(
            "keel.server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level.lower(),
        )


@app.command("ui", rich_help_panel="Server")
def ui_cmd(
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 5000,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Also open the UI in a web browser.")
    ] = False,
) -> None:
    """Browse the local store in a web browser, on http://127.0.0.1:PORT/ui (docs/ui.md).

    Serves this configuration's own stores (KEEL_TRACKING_URI is ignored) on the
    loopback interface only; approvals made in the UI are recorded as KEEL_USER.
    """
    from keel.config import load_settings

    try:
        import uvicorn

        from keel.server import create_app
    except ImportError as exc:
        raise KeelError("keel ui needs the server extra: pip install 'keel[server]'.") from exc
    settings = dataclasses.replace(load_settings(), tracking_uri=None)
    url = f"http://127.0.0.1:{port}/ui/"
    _say(f"keel UI: {url}  (store {_safe_url(settings.store_uri)}; Ctrl+C to stop)")
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


# -- entry point ------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``keel`` command line (the console script); exits with the command's code.

    Errors are reported by the root group (:meth:`_KeelGroup.invoke`), so the app
    behaves the same under ``typer.testing.CliRunner``.
    """
    import sys

    from keel.cli._data import fast_path

    if fast_path(sys.argv[1:] if argv is None else argv):  # keel data status: no Typer
        return
    app(args=list(argv) if argv is not None else None, prog_name="keel")


if __name__ == "__main__":
    main()
