"""Tracking pages: experiments, the runs table, a run, artifacts and the compare view."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from keel.exceptions import InvalidSpecError, KeelError, NotFoundError
from keel.server.ui import _charts, _preview
from keel.server.ui._render import (
    client_of,
    error_page,
    html_errors,
    is_htmx,
    registry_of,
    render,
    url,
)
from keel.server.ui._session import may_read

if TYPE_CHECKING:
    from keel.entities import Run
    from keel.tracking.client import Client

__all__ = ["PAGE_SIZE", "router"]

router = APIRouter(include_in_schema=False)

#: Runs per page of the runs table (``size`` in the URL overrides it, up to MAX_PAGE_SIZE).
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: Columns shown when the URL chooses none: this many metrics, then params, of the page's runs.
DEFAULT_METRICS, DEFAULT_PARAMS = 4, 3
MAX_CHARTS = 30
MAX_ARTIFACTS = 2000
MAX_COMPARE = 10
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-./:]*$")
_PREFIXES = {"metrics": "metric", "params": "param", "tags": "tag"}
_FIRST_PAGE = "-"


# -- experiments --------------------------------------------------------------------------------
def _experiment_stats(client: Client) -> dict[str, tuple[int, int | None]]:
    """Active runs and the newest start/end time per experiment, in one grouped query."""
    from keel.store.sql import SqlStore

    store = client.store
    if not isinstance(store, SqlStore):
        return {}
    import sqlalchemy as sa

    from keel.store import schema as t

    r = t.runs.c
    q = (
        sa.select(
            r.experiment_id, sa.func.count(), sa.func.max(r.start_time), sa.func.max(r.end_time)
        )
        .where(r.lifecycle_stage == "active")
        .group_by(r.experiment_id)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return {
        str(exp): (int(n), max((v for v in (start, end) if v is not None), default=None))
        for exp, n, start, end in rows
    }


@router.get("/ui/experiments")
@html_errors
def experiments(request: Request) -> Response:
    """Every active experiment with its run count and last activity."""
    client = client_of(request)
    stats = _experiment_stats(client)
    rows = []
    for exp in client.list_experiments():
        if not may_read(request, f"experiment:{exp.experiment_id}"):
            continue
        count, last = stats.get(exp.experiment_id, (0, None))
        rows.append((last or exp.created_at, {"exp": exp, "runs": count, "last": last}))
    rows.sort(key=lambda row: -row[0])
    ctx = {"rows": [{**row, "last": when} for when, row in rows]}
    return render(request, "experiments.html", ctx, section="experiments")


# -- the runs table -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """A metric, param or tag column of the runs table (``metrics.auc`` in the URL)."""

    kind: str  # metrics | params | tags
    key: str

    @property
    def id(self) -> str:
        """How the URL names the column."""
        return f"{self.kind}.{self.key}"

    @property
    def order_name(self) -> str:
        """The column as an order_by name (backquoted when needed)."""
        key = self.key if _PLAIN_KEY.match(self.key) else "`" + self.key.replace("`", "``") + "`"
        return f"{self.kind}.{key}"

    def value(self, run: Run) -> Any:
        """This column's value in ``run``."""
        return getattr(run, self.kind).get(self.key)

    @classmethod
    def parse(cls, text: str) -> Column | None:
        """``metrics.auc`` -> Column; None for anything else."""
        kind, _, key = text.partition(".")
        return cls(kind, key) if kind in _PREFIXES and key else None


#: Sortable built-in columns: (label, order_by name, first direction).
BUILTIN_SORTS = {
    "name": ("run_name", "ASC"),
    "status": ("status", "ASC"),
    "start": ("start_time", "DESC"),
    "user": ("user", "ASC"),
}


def _split_order(order: str) -> tuple[str, str]:
    parts = order.strip().rsplit(None, 1)
    if len(parts) == 2 and parts[1].upper() in ("ASC", "DESC"):
        return parts[0], parts[1].upper()
    return order.strip(), "ASC"


def _runs_context(
    request: Request,
    exp_id: str,
    filter_: str,
    order: str,
    cols: list[str],
    chosen: bool,
    size: int,
    page: str,
    hist: list[str],
) -> dict[str, Any]:
    client = client_of(request)
    exp = client.get_experiment(exp_id)
    size = max(1, min(MAX_PAGE_SIZE, size))
    token = None if page in ("", _FIRST_PAGE) else page
    error = ""
    runs: list[Run] = []
    next_token: str | None = None
    try:
        found = client.search_runs(
            [exp.experiment_id],
            filter=filter_ or None,
            order_by=[order] if order.strip() else None,
            max_results=size,
            page_token=token,
        )
        runs, next_token = list(found), found.next_page_token
    except InvalidSpecError as err:  # FilterSyntaxError, OrderBySyntaxError, bad page token
        error = err.message
    columns = [c for c in (Column.parse(x) for x in cols) if c is not None]
    available: dict[str, set[str]] = {k: set() for k in _PREFIXES}
    for run in runs:
        for kind in _PREFIXES:
            available[kind].update(getattr(run, kind))
    if not columns and not chosen:
        columns = [Column("metrics", k) for k in sorted(available["metrics"])[:DEFAULT_METRICS]]
        columns += [Column("params", k) for k in sorted(available["params"])[:DEFAULT_PARAMS]]
    for c in columns:
        available[c.kind].add(c.key)
    order_name, order_dir = _split_order(order) if order.strip() else ("", "")
    base = {
        "filter": filter_,
        "order": order,
        "col": [c.id for c in columns],
        "chosen": "1" if chosen else None,
        "size": size if size != PAGE_SIZE else None,
    }
    page_no = len(hist) + 1

    def sort_href(name: str, first: str) -> str:
        direction = first
        if name == order_name:
            direction = "ASC" if order_dir == "DESC" else "DESC"
        return url(f"/ui/experiments/{exp.experiment_id}", {**base, "order": f"{name} {direction}"})

    prev_href = next_href = None
    if hist:
        prev_href = url(
            f"/ui/experiments/{exp.experiment_id}", {**base, "page": hist[-1], "hist": hist[:-1]}
        )
    if next_token:
        next_href = url(
            f"/ui/experiments/{exp.experiment_id}",
            {**base, "page": next_token, "hist": [*hist, page or _FIRST_PAGE]},
        )
    return {
        "exp": exp,
        "runs": runs,
        "error": error,
        "filter": filter_,
        "order": order,
        "order_name": order_name,
        "order_dir": order_dir,
        "columns": columns,
        "column_ids": {c.id for c in columns},
        "available": {k: sorted(v) for k, v in available.items()},
        "size": size,
        "page_no": page_no,
        "first_index": (page_no - 1) * size + 1,
        "prev_href": prev_href,
        "next_href": next_href,
        "sort_href": sort_href,
        "builtin_sorts": BUILTIN_SORTS,
        "self_href": url(
            f"/ui/experiments/{exp.experiment_id}", {**base, "page": page, "hist": hist}
        ),
    }


@router.get("/ui/experiments/{exp_id}")
@html_errors
def runs_table(
    request: Request,
    exp_id: str,
    filter: str = "",
    order: str = "",
    col: list[str] = Query(default=[]),
    chosen: str = "",
    size: int = PAGE_SIZE,
    page: str = "",
    hist: list[str] = Query(default=[]),
) -> Response:
    """The runs of an experiment: one page of one search (htmx swaps just the table view)."""
    ctx = _runs_context(request, exp_id, filter, order, col, bool(chosen), size, page, hist)
    if is_htmx(request):
        return render(request, "runs_view.html", ctx, section="experiments")
    return render(request, "runs.html", ctx, section="experiments")


# -- one run -------------------------------------------------------------------------------------
def _environment(client: Client, run: Run) -> tuple[dict[str, Any] | None, str]:
    if not run.environment_digest:
        return None, ""
    try:
        data = json.loads(client.objects.get_bytes(run.environment_digest))
    except (KeelError, ValueError) as err:
        return None, f"Cannot read the environment snapshot: {err}"
    return (data if isinstance(data, dict) else None), ""


def _lineage(request: Request, run: Run) -> dict[str, list[tuple[str, str]]]:
    """Direct and indirect sources and products of the run, with the edge relation."""
    reg = registry_of(request)
    out: dict[str, list[tuple[str, str]]] = {}
    for direction in ("up", "down"):
        try:
            walk = reg.lineage(run, direction, depth=3)
        except (KeelError, AttributeError):  # a store without a registry
            out[direction] = []
            continue
        relation: dict[str, str] = {}
        for src, dst, rel in walk.edges:
            relation.setdefault(src if direction == "up" else dst, rel)
        out[direction] = [(n, relation.get(n, "")) for n in walk.nodes[1:]]
    return out


def _run_page_context(request: Request, run_id: str, artifact: str | None) -> dict[str, Any]:
    client = client_of(request)
    run = client.get_run(run_id)
    exp = client.get_experiment(run.experiment_id)
    parent = None
    if run.parent_run_id:
        try:
            parent = client.get_run(run.parent_run_id)
        except NotFoundError:
            parent = None
    children = list(
        client.search_runs(
            [run.experiment_id],
            filter=f"parent_run_id = '{run.run_id}'",
            max_results=100,
            view="all",
        )
    )
    charts = []
    for key in sorted(run.metrics)[:MAX_CHARTS]:
        charts.append(_charts.single_chart(key, client.get_metric_history(run.run_id, key)))
    artifacts = client.list_artifacts(run.run_id)
    env, env_error = _environment(client, run)
    selected = _artifact_preview(client, run.run_id, artifact) if artifact else None
    user_tags = {k: v for k, v in run.tags.items() if not k.startswith("keel.")}
    keel_tags = {k: v for k, v in run.tags.items() if k.startswith("keel.")}
    return {
        "run": run,
        "exp": exp,
        "parent": parent,
        "children": children,
        "charts": charts,
        "uncharted": sorted(run.metrics)[MAX_CHARTS:],
        "artifacts": artifacts[:MAX_ARTIFACTS],
        "more_artifacts": max(0, len(artifacts) - MAX_ARTIFACTS),
        "env": env,
        "env_error": env_error,
        "user_tags": dict(sorted(user_tags.items())),
        "keel_tags": dict(sorted(keel_tags.items())),
        "lineage": _lineage(request, run),
        "selected": selected,
    }


@router.get("/ui/runs/{run_id}")
@html_errors
def run_page(request: Request, run_id: str, artifact: str | None = None) -> Response:
    """A run: info, params, tags, metric charts, artifacts, environment, lineage."""
    ctx = _run_page_context(request, run_id, artifact)
    return render(request, "run.html", ctx, section="experiments")


def _artifact_preview(client: Client, run_id: str, path: str) -> dict[str, Any]:
    infos = [a for a in client.list_artifacts(run_id, path) if a.path == path]
    if not infos:
        raise NotFoundError(f"Run '{run_id}' has no artifact file '{path}'.", run_id=run_id)
    info = infos[0]
    shown = _preview.preview(info.path, info.size, lambda: client.objects.get_bytes(info.digest))
    return {"info": info, "preview": shown, "run_id": run_id}


@router.get("/ui/runs/{run_id}/artifact")
@html_errors
def artifact_preview(request: Request, run_id: str, path: str) -> Response:
    """The preview pane of one artifact (a fragment for htmx, else the run page)."""
    if not is_htmx(request):
        return RedirectResponse(url(f"/ui/runs/{run_id}", {"artifact": path}), status_code=303)
    ctx = _artifact_preview(client_of(request), run_id, path)
    return render(request, "artifact_preview.html", ctx, section="experiments")


@router.get("/ui/runs/{run_id}/raw")
@html_errors
def artifact_raw(request: Request, run_id: str, path: str, download: bool = False) -> Response:
    """An artifact's bytes: images inline, everything else as a download."""
    client = client_of(request)
    infos = [a for a in client.list_artifacts(run_id, path) if a.path == path]
    if not infos:
        raise NotFoundError(f"Run '{run_id}' has no artifact file '{path}'.", run_id=run_id)
    info = infos[0]
    name = path.rsplit("/", 1)[-1]
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    media = _preview.IMAGE_TYPES.get(suffix)
    from urllib.parse import quote

    headers = {
        "X-Content-Type-Options": "nosniff",
        # user content: no scripts, no plugins, even when opened directly
        "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; "
        "style-src 'unsafe-inline'; sandbox",
        "Cache-Control": "private, max-age=3600",
        "Content-Length": str(info.size),
    }
    if media is None or download:
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    return StreamingResponse(
        client.objects.iter_verified(info.digest),
        media_type=media or "application/octet-stream",
        headers=headers,
    )


# -- compare ------------------------------------------------------------------------------------
def _differs(values: Sequence[Any]) -> bool:
    norm = {"NaN" if isinstance(v, float) and v != v else v for v in values}
    return len(norm) > 1


@router.get("/ui/compare")
@html_errors
def compare(request: Request, run: list[str] = Query(default=[])) -> Response:
    """Runs side by side: overlaid metric charts, parallel coordinates and a diff table."""
    ids = list(dict.fromkeys(r.strip() for r in run if r.strip()))
    if len(ids) < 2:
        return error_page(
            request, 400, "Pick runs to compare", "Select at least two runs in the runs table."
        )
    if len(ids) > MAX_COMPARE:
        return error_page(
            request, 400, "Too many runs", f"Compare at most {MAX_COMPARE} runs at a time."
        )
    client = client_of(request)
    runs = [client.get_run(r) for r in ids]
    labels = [f"{r.name} ({r.run_id[:7]})" for r in runs]
    param_keys = sorted({k for r in runs for k in r.params})
    metric_keys = sorted({k for r in runs for k in r.metrics})
    params: list[dict[str, Any]] = [
        {"key": k, "values": [r.params.get(k) for r in runs]} for k in param_keys
    ]
    metrics: list[dict[str, Any]] = [
        {"key": k, "values": [r.metrics.get(k) for r in runs]} for k in metric_keys
    ]
    for row in params + metrics:
        row["differs"] = _differs(row["values"])
    charts = []
    for key in metric_keys[:MAX_CHARTS]:
        histories = [
            (label, client.get_metric_history(r.run_id, key))
            for label, r in zip(labels, runs, strict=True)
        ]
        charts.append(_charts.overlay_chart(key, histories))
    differing_params = [row for row in params if row["differs"]]
    axes: list[tuple[str, list[Any]]] = [
        (f"params.{row['key']}", row["values"]) for row in differing_params[:8]
    ]
    axes += [(f"metrics.{row['key']}", row["values"]) for row in metrics[:8]]
    lines = [(label, _charts.PALETTE[i % len(_charts.PALETTE)]) for i, label in enumerate(labels)]
    ctx = {
        "runs": runs,
        "labels": labels,
        "colors": [c for _, c in lines],
        "params": params,
        "metrics": metrics,
        "charts": charts,
        "parcoords": _charts.parallel_coordinates(lines, axes),
        "exp_ids": sorted({r.experiment_id for r in runs}),
    }
    return render(request, "compare.html", ctx, section="experiments")
