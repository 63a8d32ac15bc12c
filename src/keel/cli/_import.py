"""``keel import``: bring experiments, runs and models from other tools into keel.

``keel import mlflow --from SOURCE`` copies an MLflow tracking store (see
:mod:`keel.importers.mlflow` and docs/import.md), with progress bars on stderr and
a summary table on stdout. Errors go through the root group's handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from keel.cli import _format as fmt

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from keel.importers import ImportReport

__all__ = ["import_app"]

import_app = typer.Typer(
    help="Import experiments, runs and models from other tools.", no_args_is_help=True
)


class _Bars:
    """Rich progress bars for the importer's phases (one bar per phase)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def phase(self, name: str, total: int) -> None:
        self.task = self.progress.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


def _summary(report: ImportReport) -> None:
    from keel.cli import main as cli

    verb = "Would import" if report.dry_run else "Imported"
    table = cli._table(
        "", "New", "Updated", "Already there", "Failed", title=f"{verb} from {report.source}"
    )
    for column in table.columns[1:]:
        column.justify = "right"
    for kind, tally in report.tallies.items():
        if kind == "artifact bytes":
            cells = [fmt.format_size(tally.new), "", "", ""]
        else:
            cells = [
                str(n) if n else "-"
                for n in (tally.new, tally.updated, tally.present, tally.failed)
            ]
        table.add_row(kind, *cells)
    cli.console.print(table)
    for topic, details in report.warnings.items():
        example = details[0] + (f" (and {len(details) - 1} more)" if len(details) > 1 else "")
        cli._say(Text(f"Note: {topic}: {example}", style="yellow"))
    for error in report.errors:
        cli._print_error(error)
    if report.dry_run:
        cli._say(Text("Dry run: nothing was written.", style="dim"))


@import_app.command("mlflow")
def import_mlflow_cmd(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="MLflow store: mlflow.db, sqlite:///path, a database URL or http://host:5000.",
            show_default=False,
        ),
    ],
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment",
            "-e",
            help="Only this MLflow experiment (name or id) and its models; repeatable.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read everything, report, write nothing.")
    ] = False,
) -> None:
    """Copy MLflow experiments, runs, artifacts and registered models into keel.

    Importing again skips what is already there and completes what an interrupted
    import left unfinished.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from keel.cli import main as cli
    from keel.importers import import_mlflow

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        cli._client() as client,
        Progress(*columns, console=cli.err_console, transient=True) as bar,
    ):
        report = import_mlflow(
            client, source, experiments=experiment, dry_run=dry_run, progress=_Bars(bar)
        )
    _summary(report)
    if not report.ok:
        raise typer.Exit(cli.EXIT_ERROR)
