"""``keel serve``, ``keel deploy ...``, ``keel predict`` and ``keel build``.

Every command calls :mod:`keel.serving`; output goes through the consoles of
:mod:`keel.cli.main` and errors through its single handler.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keel.cli import _format as fmt

if TYPE_CHECKING:
    from keel.serving import Deployment, Deployments

__all__ = ["build_cmd", "deploy_app", "predict_cmd", "serve_cmd"]

deploy_app = typer.Typer(
    help="Deployments: create, canary, shadow, A/B, blue-green, promote, roll back, history.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", "-m", help="Why: recorded in the audit log.")
]
NameArg = Annotated[str, typer.Argument(help="Deployment name.")]
ModelArg = Annotated[
    str, typer.Argument(help="Registered model: models:/NAME/VERSION or models:/NAME@ALIAS.")
]


def _cli() -> Any:
    from keel.cli import main as cli

    return cli


def _deployments() -> Deployments:
    from keel.serving import Deployments

    return Deployments()


def _share(value: float) -> float:
    """Accept 0..1 or a percentage (5, 25, 50, 100)."""
    share = value / 100.0 if value > 1 else value
    if not 0 <= share <= 1:
        raise typer.BadParameter(f"a share must be 0..1 or a percentage 0..100, got {value}.")
    return share


def _show(dep: Deployment, as_json: bool = False) -> None:
    cli = _cli()
    if as_json:
        cli._print_json(dep.to_dict())
        return
    p = dep.policy
    rows = [
        ("policy", p.kind),
        ("revision", str(dep.revision)),
        ("primary", p.primary),
    ]
    if p.candidate:
        share = {"shadow": "mirror", "bluegreen": "idle"}.get(p.kind, f"{p.weight:.0%}")
        rows.append(("candidate", f"{p.candidate} ({share})"))
    if p.kind == "canary":
        steps = ", ".join(f"{s:.0%}" for s in p.steps)
        rows.append(("steps", f"{steps} — step {p.step + 1}, every {p.step_seconds:g} s"))
    if p.fallback:
        rows.append(("fallback", p.fallback))
    rows.append(("batching", f"≤ {p.max_batch_size} rows, wait ≤ {p.max_wait_ms:g} ms"))
    table = cli._table("Setting", "Value", title=f"deployment {dep.name}")
    for key, value in rows:
        table.add_row(key, value)
    cli.console.print(table)


# -- keel serve ---------------------------------------------------------------------------------
def serve_cmd(
    deployment: Annotated[
        list[str] | None,
        typer.Option("--deployment", "-d", help="Serve only these deployments (repeatable)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes (one core each).", min=1)] = 1,
    threads: Annotated[
        int, typer.Option(help="BLAS/OpenMP threads per worker's predict call.", min=1)
    ] = 1,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info, debug.")] = (
        "warning"
    ),
) -> None:
    """Serve deployments over HTTP (predict, feedback, KServe V2, health, metrics).

    Endpoints: /v1/deployments/NAME/predict, /v1/feedback, /v2/..., /healthz, /readyz
    and /metrics. Policy changes apply within a second, with no restart.
    """
    import tempfile

    from keel.exceptions import KeelError

    levels = ("critical", "error", "warning", "info", "debug")
    if log_level.lower() not in levels:
        raise typer.BadParameter(f"use one of {', '.join(levels)}.", param_hint="--log-level")
    try:
        import uvicorn
    except ImportError as exc:
        raise KeelError("keel serve needs the serving extra: pip install 'keel[serving]'.") from exc
    os.environ["KEEL_SERVE_THREADS"] = str(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))  # libraries loaded later start limited
    if deployment:
        os.environ["KEEL_SERVE_DEPLOYMENTS"] = ",".join(deployment)
    with contextlib.ExitStack() as stack:
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="keel-metrics-"))
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run(
            "keel.serving._app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level.lower(),
            access_log=False,
            proxy_headers=False,  # a direct server: no X-Forwarded-* rewriting per request
            lifespan="on",
        )


# -- keel deploy ----------------------------------------------------------------------------------
@deploy_app.command("list")
def deploy_list(as_json: JsonOption = False) -> None:
    """Every deployment and what it serves."""
    cli = _cli()
    deps = _deployments().list_deployments()
    if as_json:
        cli._print_json([d.to_dict() for d in deps])
        return
    table = cli._table("Name", "Policy", "Primary", "Candidate", "Revision", "Updated")
    for d in deps:
        p = d.policy
        cand = f"{p.candidate} ({p.weight:.0%})" if p.candidate else "-"
        table.add_row(
            d.name, p.kind, p.primary, cand, str(d.revision), fmt.format_time(d.updated_at)
        )
    cli.console.print(table)


@deploy_app.command("create")
def deploy_create(
    name: NameArg,
    model: ModelArg,
    fallback: Annotated[
        str | None, typer.Option(help="A model version answering when the primary fails.")
    ] = None,
    max_batch_size: Annotated[int, typer.Option(help="Most rows per model call.")] = 1024,
    max_wait_ms: Annotated[float, typer.Option(help="Wait for a batch to fill (ms).")] = 0.0,
    no_log_inputs: Annotated[
        bool, typer.Option("--no-log-inputs", help="Do not log request inputs.")
    ] = False,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a deployment serving one model version (an alias is pinned now)."""
    dep = _deployments().create(
        name,
        model,
        fallback=fallback,
        reason=reason,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        log_inputs=not no_log_inputs,
    )
    _show(dep, as_json)


@deploy_app.command("status")
def deploy_status(name: NameArg, as_json: JsonOption = False) -> None:
    """The policy and, per version, requests, errors, fallbacks, latency and accuracy."""
    cli = _cli()
    d = _deployments()
    status = d.status(name)
    if as_json:
        cli._print_json(status)
        return
    _show(d.get(name))
    table = cli._table(
        "Version",
        "Role",
        "Requests",
        "Error rate",
        "Fallbacks",
        "p50 ms",
        "p99 ms",
        "Accuracy",
        "Disagreement",
        title="since the policy started",
    )

    def num(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for v in status["versions"]:
        table.add_row(
            v["version"], v["role"], str(v["requests"]), num(v["error_rate"], ".2%"),
            str(v["fallbacks"]), num(v["p50_ms"], ".2f"), num(v["p99_ms"], ".2f"),
            num(v["accuracy"], ".3f"), num(v["disagreement"], ".2%"),
        )  # fmt: skip
    cli.console.print(table)


@deploy_app.command("canary")
def deploy_canary(
    name: NameArg,
    model: ModelArg,
    steps: Annotated[str, typer.Option(help="Traffic shares, in percent.")] = "5,25,50,100",
    step_seconds: Annotated[float, typer.Option(help="Least time per step.")] = 60.0,
    max_error_rate: Annotated[float, typer.Option(help="Guard: error share (0..1).")] = 0.05,
    max_p99_ms: Annotated[float | None, typer.Option(help="Guard: p99 latency (ms).")] = None,
    max_quality_drop: Annotated[
        float | None, typer.Option(help="Guard: accuracy drop vs the primary (0..1).")
    ] = None,
    min_requests: Annotated[int, typer.Option(help="Requests per step before judging.")] = 20,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a canary: the new version gets a growing share; a guard breach rolls it back."""
    from keel.serving import Guards

    try:
        shares = tuple(_share(float(s)) for s in steps.split(",") if s.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"steps must be numbers like 5,25,50,100 ({exc}).") from exc
    guards = Guards(
        max_error_rate=max_error_rate,
        max_p99_ms=max_p99_ms,
        max_quality_drop=max_quality_drop,
        min_requests=min_requests,
    )
    dep = _deployments().canary(
        name, model, steps=shares, step_seconds=step_seconds, guards=guards, reason=reason
    )
    _show(dep, as_json)


@deploy_app.command("shadow")
def deploy_shadow(
    name: NameArg, model: ModelArg, reason: ReasonOption = None, as_json: JsonOption = False
) -> None:
    """Mirror all traffic to a new version; users only see the primary's answers."""
    _show(_deployments().shadow(name, model, reason=reason), as_json)


@deploy_app.command("ab")
def deploy_ab(
    name: NameArg,
    model: ModelArg,
    split: Annotated[float, typer.Option(help="Challenger's share (0..1 or percent).")] = 50.0,
    key: Annotated[
        str | None, typer.Option(help="Body field (or X-Keel-Key header) for sticky assignment.")
    ] = None,
    metric: Annotated[str, typer.Option(help="binary or continuous outcomes.")] = "binary",
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start an A/B test of a challenger against the current version."""
    dep = _deployments().ab(name, model, split=_share(split), key=key, metric=metric, reason=reason)
    _show(dep, as_json)


@deploy_app.command("bluegreen")
def deploy_bluegreen(
    name: NameArg, model: ModelArg, reason: ReasonOption = None, as_json: JsonOption = False
) -> None:
    """Load a new version as the idle colour; `keel deploy switch` moves all traffic at once."""
    _show(_deployments().bluegreen(name, model, reason=reason), as_json)


@deploy_app.command("switch")
def deploy_switch(name: NameArg, reason: ReasonOption = None, as_json: JsonOption = False) -> None:
    """Blue-green: send all traffic to the idle colour (the old one stays loaded)."""
    _show(_deployments().switch(name, reason=reason), as_json)


@deploy_app.command("set-traffic")
def deploy_set_traffic(
    name: NameArg,
    share: Annotated[float, typer.Argument(help="Candidate's share: 0..1 or a percentage.")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set the candidate's share of traffic by hand (canary or A/B)."""
    _show(_deployments().set_traffic(name, _share(share), reason=reason), as_json)


@deploy_app.command("promote")
def deploy_promote(name: NameArg, reason: ReasonOption = None, as_json: JsonOption = False) -> None:
    """Make the candidate the only version (the old one stays loaded as fallback)."""
    _show(_deployments().promote(name, reason=reason), as_json)


@deploy_app.command("rollback")
def deploy_rollback(
    name: NameArg, reason: ReasonOption = None, as_json: JsonOption = False
) -> None:
    """Undo: drop the candidate, switch back, or return to the previous version."""
    _show(_deployments().rollback(name, reason=reason), as_json)


@deploy_app.command("history")
def deploy_history(name: NameArg, as_json: JsonOption = False) -> None:
    """Every revision: what changed, who, why, when."""
    cli = _cli()
    revisions = _deployments().history(name)
    if as_json:
        cli._print_json([r.to_dict() for r in revisions])
        return
    table = cli._table("Rev", "When", "Action", "Who", "Policy", "Why", title=f"history of {name}")
    for r in revisions:
        p = r.policy
        serving = p["primary"] + (
            f" + {p['candidate']} ({p['kind']})" if p.get("candidate") else ""
        )
        table.add_row(
            str(r.revision), fmt.format_time(r.created_at), r.action, r.actor, serving,
            r.reason or "",
        )  # fmt: skip
    cli.console.print(table)


@deploy_app.command("ab-status")
def deploy_ab_status(
    name: NameArg,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    as_json: JsonOption = False,
) -> None:
    """Lift, confidence intervals and the sequential test's decision of an A/B test."""
    cli = _cli()
    report = _deployments().ab_status(name, alpha=alpha)
    if as_json:
        cli._print_json(report.to_dict())
        return
    cli.console.print(report.summary())
    data = report.to_dict()
    table = cli._table("Measure", "Value", title=f"A/B test of {name}")
    for key, value in data.items():
        if isinstance(value, dict | list):
            continue
        table.add_row(key, "-" if value is None else str(value))
    cli.console.print(table)


@deploy_app.command("sample-size")
def deploy_sample_size(
    baseline: Annotated[float, typer.Argument(help="Control's mean (a rate for binary).")],
    mde: Annotated[float, typer.Argument(help="Smallest effect worth detecting.")],
    relative: Annotated[bool, typer.Option(help="mde is relative (0.1 = +10%).")] = False,
    metric: Annotated[str, typer.Option(help="binary or continuous.")] = "binary",
    std: Annotated[float | None, typer.Option(help="Outcome std (continuous).")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Power.")] = 0.8,
    split: Annotated[float, typer.Option(help="Challenger's share (0..1 or percent).")] = 50.0,
    as_json: JsonOption = False,
) -> None:
    """Plan an A/B test: outcomes needed per arm to detect MDE (fixed horizon).

    The sequential test `ab-status` uses typically needs up to about twice this to
    decide (docs/ab-testing.md).
    """
    from keel.serving import sample_size

    share = _share(split)
    if not 0 < share < 1:
        raise typer.BadParameter("the split must be strictly between 0 and 1.")
    if metric not in ("binary", "continuous"):
        raise typer.BadParameter("use binary or continuous.", param_hint="--metric")
    size = sample_size(
        baseline, mde, std=std, alpha=alpha, power=power, relative=relative,
        ratio=share / (1 - share), metric="continuous" if metric == "continuous" else "binary",
    )  # fmt: skip
    cli = _cli()
    if as_json:
        cli._print_json(size.to_dict())
        return
    cli.console.print(
        f"control {size.control:,} + challenger {size.treatment:,} = {size.total:,} outcomes "
        f"to detect {size.effect:+.4g} (alpha {alpha}, power {power}); the sequential test "
        "may need up to about twice that."
    )


@deploy_app.command("tick")
def deploy_tick(name: NameArg) -> None:
    """Judge a running canary once (servers do it every second)."""
    done = _deployments().tick(name)
    _cli()._say(done or "nothing to do")


# -- keel predict (batch scoring) -----------------------------------------------------------------
def predict_cmd(
    model: Annotated[str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/V or runs:/...")],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Parquet or CSV input.")],
    output_path: Annotated[Path, typer.Option("--output", "-o", help="Parquet output.")],
    batch_rows: Annotated[int, typer.Option(help="Rows per chunk.", min=1)] = 65_536,
    method: Annotated[str, typer.Option(help="predict or predict_proba.")] = "predict",
    keep: Annotated[
        list[str] | None, typer.Option("--keep", help="Input columns to copy to the output.")
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = (
        False
    ),
) -> None:
    """Score a file with a registered model, streaming in chunks (verified model, any size)."""
    from keel.serving._batch import predict_file

    rows = predict_file(
        model,
        input_path,
        output_path,
        batch_rows=batch_rows,
        method=method,
        keep=keep or [],
        progress=not no_progress,
    )
    _cli()._say(f"wrote {rows:,} predictions to {output_path}", "green")


# -- keel build ----------------------------------------------------------------------------------
def build_cmd(
    name: NameArg,
    output: Annotated[
        Path, typer.Option("--output", "--out", "-o", help="Folder to write.")
    ] = Path("build"),
    image: Annotated[str | None, typer.Option(help="Image name:tag.")] = None,
    workers: Annotated[int, typer.Option(help="Workers per pod.", min=1)] = 2,
    replicas: Annotated[int, typer.Option(help="Pods.", min=1)] = 2,
    max_replicas: Annotated[int, typer.Option(help="Autoscaling ceiling.", min=1)] = 10,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
) -> None:
    """Write a Dockerfile, pinned requirements and Kubernetes manifests for a deployment."""
    from keel import __version__
    from keel.registry import Registry
    from keel.serving._build import BuildModel, BuildSpec, write_bundle

    d = _deployments()
    dep = d.get(name)
    registry = Registry(d.client)
    models = []
    for ref in dep.policy.versions:
        resolved = registry.resolve(f"models:/{ref}")
        models.append(BuildModel(f"models:/{ref}", dict(resolved.spec.get("requirements", {}))))
    spec = BuildSpec(
        deployment=name,
        models=tuple(models),
        keel_version=__version__,
        image=image,
        workers=workers,
        replicas=replicas,
        min_replicas=min(replicas, max_replicas),
        max_replicas=max_replicas,
    )
    files = write_bundle(spec, output, overwrite=overwrite)
    for path in files:
        _cli().console.print(str(path))
    _cli()._say(f"wrote {len(files)} files to {output}; see docs/build.md", "green")
