"""Model cards: Markdown and one self-contained HTML page from registry metadata."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from keel.entities import AuditEvent, ModelVersion, RegisteredModel, Run

__all__ = ["render_card"]


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _sections(
    model: RegisteredModel,
    version: ModelVersion,
    run: Run | None,
    history: list[AuditEvent],
) -> list[tuple[str, list[list[str]] | str]]:
    """The card's content, format-neutral: (heading, paragraph text or table rows)."""
    signature = version.spec.get("signature") or {}
    inputs = signature.get("inputs") or []
    outputs = signature.get("outputs") or []
    overall = {k: val for k, val in version.metrics.items() if not k.startswith("slice/")}
    slices = {k: val for k, val in version.metrics.items() if k.startswith("slice/")}
    out: list[tuple[str, list[list[str]] | str]] = [
        (
            "Overview",
            [
                ["field", "value"],
                ["model", model.name],
                ["version", str(version.version)],
                ["stage", version.stage],
                ["aliases", ", ".join(version.aliases) or "-"],
                ["owner", model.owner or "-"],
                ["flavor / format", f"{version.flavor} / {version.format}"],
                ["registered", f"{_when(version.created_at)} by {version.created_by or '-'}"],
                ["source", version.source],
                ["content hash", version.manifest_digest],
                ["signed", f"yes, by {version.signed_by}" if version.signature_b64 else "no"],
            ],
        ),
        ("Description", version.description or model.description or "Not provided."),
        ("Intended use", model.purpose or "Not provided by the owner."),
    ]
    if version.unsafe:
        out.append(
            (
                "Warning",
                "This version is stored in a pickle-based format: loading it executes code. "
                "Load it only if you trust its source (allow_unsafe=True).",
            )
        )
    out.append(
        (
            "Training data",
            [["dataset version"]] + [[d] for d in version.datasets]
            if version.datasets
            else "No dataset versions were recorded for the training run.",
        )
    )
    if run is not None:
        out.append(
            (
                "Training run",
                [
                    ["field", "value"],
                    ["run", f"{run.name} ({run.run_id})"],
                    ["status", str(run.status)],
                ]
                + [[f"param {k}", val] for k, val in sorted(run.params.items())],
            )
        )
    out.append(
        (
            "Metrics",
            [["metric", "value"]] + [[k, _fmt(val)] for k, val in sorted(overall.items())]
            if overall
            else "No metrics were recorded.",
        )
    )
    if slices:
        rows = [["slice", "metric", "value"]]
        for key, val in sorted(slices.items()):
            parts = key.split("/")  # slice/<slice name...>/<metric>
            rows.append(["/".join(parts[1:-1]), parts[-1], _fmt(val)])
        out.append(("Evaluation slices", rows))
    out.append(
        (
            "Signature",
            [["direction", "column", "type", "nullable"]]
            + [
                ["input", c.get("name", ""), c.get("dtype", ""), str(c.get("nullable", ""))]
                for c in inputs
            ]
            + [
                ["output", c.get("name", ""), c.get("dtype", ""), str(c.get("nullable", ""))]
                for c in outputs
            ]
            if inputs or outputs
            else "No signature recorded.",
        )
    )
    out.append(("Limitations", model.limitations or "Not provided by the owner."))
    out.append(
        (
            "Approval and stage history",
            [["when", "who", "what", "reason"]]
            + [[_when(e.ts), e.actor, _describe(e), e.reason or ""] for e in history]
            if history
            else "No approvals or stage changes yet.",
        )
    )
    return out


def _describe(event: AuditEvent) -> str:
    after = event.after if isinstance(event.after, dict) else {}
    before = event.before if isinstance(event.before, dict) else {}
    if event.action == "version.stage":
        return f"stage {before.get('stage')} -> {after.get('stage')}"
    if event.action.startswith("approval."):
        target = after.get("stage") or after.get("alias")
        return f"{event.action.split('.')[1]} (request {after.get('request')}, {target})"
    return event.action


def render_card(
    model: RegisteredModel,
    version: ModelVersion,
    run: Run | None,
    history: list[AuditEvent],
    fmt: str = "md",
) -> str:
    """The model card as Markdown (``md``) or a self-contained HTML page (``html``)."""
    sections = _sections(model, version, run, history)
    title = f"Model card: {model.name} v{version.version}"
    if fmt == "md":
        lines = [f"# {title}", ""]
        for heading, body in sections:
            lines += [f"## {heading}", ""]
            if isinstance(body, str):
                lines += [body, ""]
            else:
                esc = [
                    [cell.replace("|", "\\|").replace("\n", " ") for cell in row] for row in body
                ]
                lines.append("| " + " | ".join(esc[0]) + " |")
                lines.append("|" + "---|" * len(esc[0]))
                lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
                lines.append("")
        return "\n".join(lines)
    if fmt == "html":
        parts = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title><style>",
            "body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;",
            "color:#1b1f24}h1{font-size:1.6em}",
            "h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}",
            "table{border-collapse:collapse;width:100%}",
            "td,th{border:1px solid #ddd;padding:4px 8px;",
            "text-align:left;vertical-align:top}th{background:#f4f6f8}code{font-size:.9em}",
            ".warn{background:#fff4e5;border-left:4px solid #f0a020;padding:8px}",
            "</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
        ]
        for heading, body in sections:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
            if isinstance(body, str):
                cls = " class='warn'" if heading == "Warning" else ""
                parts.append(f"<p{cls}>{html.escape(body)}</p>")
            else:
                parts.append(
                    "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in body[0]) + "</tr>"
                )
                for row in body[1:]:
                    parts.append(
                        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                    )
                parts.append("</table>")
        parts.append("</body></html>")
        return "\n".join(parts)
    from keel.exceptions import InvalidSpecError

    raise InvalidSpecError(f"Model cards render as 'md' or 'html', not {fmt!r}.")
