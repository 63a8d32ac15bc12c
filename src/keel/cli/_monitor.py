"""``keel monitor ...`` and ``keel agent``: drift reports, monitors, alerts, the agent."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keel.cli import _format as fmt

if TYPE_CHECKING:
    from keel.monitoring._monitors import Monitors

__all__ = ["agent_cmd", "monitor_app"]

monitor_app = typer.Typer(
    help="Drift and quality reports, monitors of deployments, their runs and alerts.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NameArg = Annotated[str, typer.Argument(help="Monitor name.")]


def _cli() -> Any:
    from keel.cli import main as cli

    return cli


def _monitors() -> Monitors:
    from keel.monitoring._monitors import Monitors

    return Monitors()


@monitor_app.command("report")
def monitor_report(
    name: Annotated[str | None, typer.Argument(help="A monitor: its latest stored report.")] = None,
    reference: Annotated[
        str | None, typer.Option(help="Reference data: NAME@V, a Parquet or CSV file.")
    ] = None,
    current: Annotated[
        str | None, typer.Option(help="Current data: NAME@V, a Parquet or CSV file.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here (.html or .json).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """A drift and data-quality report: a monitor's latest, or --reference vs --current."""
    import json

    from keel.exceptions import InvalidSpecError

    cli = _cli()
    if name is not None:
        html = output is not None and output.suffix.lower() in (".html", ".htm")
        body = _monitors().report(name, html=html)
        if output is not None:
            output.write_bytes(body)
            cli._say(f"wrote {output}", "green")
            return
        data = json.loads(body)
        if as_json:
            cli._print_json(data)
            return
        _print_report(data)
        return
    if reference is None or current is None:
        raise InvalidSpecError(
            "Give a monitor name, or both --reference and --current (NAME@V, .parquet or .csv)."
        )
    from keel import monitoring

    report = monitoring.check(monitoring.reference(_load(reference)), _load(current))
    if output is not None:
        if output.suffix.lower() in (".html", ".htm"):
            report.to_html(output)
        else:
            output.write_text(report.to_json())
        cli._say(f"wrote {output}", "green")
    if as_json:
        cli._print_json(report.to_dict())
    elif output is None:
        _print_report(report.to_dict())


def _load(source: str) -> Any:
    path = Path(source)
    if path.suffix.lower() == ".csv":
        import pandas as pd

        return pd.read_csv(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return str(path)
    return source  # a dataset version: NAME@V or dataset:NAME@V


def _print_report(data: dict[str, Any]) -> None:
    cli = _cli()
    cols = data.get("columns", {})
    items = cols.items() if isinstance(cols, dict) else ((c.get("name"), c) for c in cols)
    table = cli._table("Column", "Kind", "Test", "Statistic", "p-value", "Drifted")
    for col, r in items:
        table.add_row(
            str(col),
            str(r.get("family", "")),
            str(r.get("test", "")),
            fmt.format_number(r.get("statistic")) if r.get("statistic") is not None else "-",
            fmt.format_number(r.get("p_value")) if r.get("p_value") is not None else "-",
            "[red]yes[/]" if r.get("drifted") else "no",
        )
    cli.console.print(table)
    verdict = "DRIFT" if data.get("drifted") else "no drift"
    if data.get("insufficient"):
        verdict = "insufficient data"
    cli.console.print(f"{verdict}: share drifted {data.get('share_drifted', 0):.0%}")


@monitor_app.command("create")
def monitor_create(
    name: NameArg,
    deployment: Annotated[str | None, typer.Option(help="The deployment to watch.")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Or a dataset: each new version is checked.")
    ] = None,
    reference: Annotated[
        str, typer.Option(help="Reference: NAME@V (a table version), run:ID or a Parquet file.")
    ] = "",
    every: Annotated[float, typer.Option(help="Seconds between runs.")] = 3600.0,
    window: Annotated[float, typer.Option(help="Seconds of prediction log per run.")] = 3600.0,
    min_rows: Annotated[int, typer.Option(help="Fewer rows: insufficient data.")] = 200,
    alert: Annotated[
        list[str] | None, typer.Option("--alert", help="log, a webhook URL or mailto:ADDR.")
    ] = None,
    cooldown: Annotated[float, typer.Option(help="Seconds before the same alert again.")] = 3600.0,
    performance_metric: Annotated[str | None, typer.Option(help="e.g. accuracy.")] = None,
    performance_min: Annotated[float | None, typer.Option(help="Alert below this.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a monitor of a deployment (or a dataset) against a reference (profiled once)."""
    from keel.exceptions import InvalidSpecError
    from keel.monitoring._monitors import AlertSpec

    if not reference:
        raise InvalidSpecError("--reference is required (NAME@V, run:ID or a Parquet file).")
    record = _monitors().create(
        name,
        deployment=deployment,
        dataset=dataset,
        reference=reference,
        every_seconds=every,
        window_seconds=window,
        min_rows=min_rows,
        alert=AlertSpec(targets=tuple(alert or ["log"]), cooldown_seconds=cooldown),
        performance_metric=performance_metric,
        performance_min=performance_min,
    )
    cli = _cli()
    if as_json:
        cli._print_json(record.spec)
    else:
        cli._say(f"monitor {name} watches {deployment or dataset} every {every:g} s", "green")


@monitor_app.command("list")
def monitor_list(as_json: JsonOption = False) -> None:
    """Every monitor, its target and schedule."""
    cli = _cli()
    records = _monitors().list_monitors()
    if as_json:
        cli._print_json([{"name": r.name, "enabled": r.enabled, **r.spec} for r in records])
        return
    table = cli._table("Name", "Watches", "Every", "Window", "Enabled", "Next run")
    for r in records:
        table.add_row(
            r.name, r.spec.get("deployment") or f"dataset {r.spec.get('dataset')}",
            f"{r.spec['every_seconds']:g} s",
            f"{r.spec['window_seconds']:g} s", "yes" if r.enabled else "no",
            fmt.format_time(r.next_run_at),
        )  # fmt: skip
    cli.console.print(table)


@monitor_app.command("runs")
def monitor_runs(name: NameArg, limit: int = 20, as_json: JsonOption = False) -> None:
    """The latest runs of a monitor: status, drifted columns, performance, health."""
    cli = _cli()
    runs = _monitors().runs(name, limit=limit)
    if as_json:
        cli._print_json([r.to_dict() for r in runs])
        return
    table = cli._table("Run", "When", "Status", "Rows", "Drifted", "Perf.", "p99 ms", "Agent")
    for r in runs:
        s = r.summary
        perf = s.get("performance") or {}
        health = s.get("health") or {}
        table.add_row(
            str(r.id), fmt.format_time(r.started_at), r.status, str(s.get("rows", "-")),
            ", ".join(s.get("drifted_columns", [])[:4]) or "-",
            "-" if perf.get("accuracy") is None else f"acc {perf['accuracy']:.3f}",
            "-" if health.get("p99_ms") is None else f"{health['p99_ms']:.1f}",
            r.agent or "-",
        )  # fmt: skip
    cli.console.print(table)


@monitor_app.command("run")
def monitor_run(name: NameArg, as_json: JsonOption = False) -> None:
    """Evaluate a monitor once, now (what the agent does when it is due)."""
    run = _monitors().evaluate(name)
    cli = _cli()
    if as_json:
        cli._print_json(run.to_dict())
    else:
        cli._say(f"{name}: {run.status} (run {run.id})")


@monitor_app.command("pause")
def monitor_pause(name: NameArg) -> None:
    """Stop running a monitor."""
    _monitors().pause(name)
    _cli()._say(f"monitor {name} paused")


@monitor_app.command("resume")
def monitor_resume(name: NameArg) -> None:
    """Run a paused monitor again."""
    _monitors().resume(name)
    _cli()._say(f"monitor {name} resumed")


@monitor_app.command("alerts")
def monitor_alerts(
    name: Annotated[str | None, typer.Argument(help="Only this monitor's.")] = None,
    state: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Alerts and their delivery state (pending ones are being retried)."""
    cli = _cli()
    alerts = _monitors()._store.alerts(monitor=name, state=state)
    if as_json:
        cli._print_json([a.to_dict() for a in alerts])
        return
    table = cli._table("Id", "When", "Monitor", "Severity", "Target", "State", "Tries", "Title")
    for a in alerts:
        table.add_row(
            str(a.id), fmt.format_time(a.created_at), a.monitor, a.severity,
            str(a.payload.get("target", "")), a.state, str(a.attempts), a.title,
        )  # fmt: skip
    cli.console.print(table)


def agent_cmd(
    poll: Annotated[float, typer.Option(help="Seconds between passes.")] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="This agent's name (default host:pid).")] = None,
) -> None:
    """Run due monitors, deliver alerts (retried until delivered) and fire retraining.

    Several agents may run: each monitor run is taken by one of them.
    """
    import logging

    from keel.monitoring._agent import Agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    agent = Agent(name=name, poll_interval=poll)
    if metrics_port is not None:
        port = agent.serve_metrics(metrics_port)
        _cli().err_console.print(f"metrics on http://127.0.0.1:{port}/metrics")
    if once:
        result = agent.run_once()
        _cli()._print_json(result)
        return
    try:
        agent.run_forever()
    except KeyboardInterrupt:
        pass
