"""``/api/v1/runs``: create, get, status, lifecycle, batch log, history, search, artifacts.

The endpoints mirror the :class:`~keel.store.base.Store` primitives, so the
REST client (:class:`~keel.store.rest.RestStore`) is a thin layer. Everything
is validated again here: the server never trusts a client's checks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Query

from keel import _validation as v
from keel.entities import ArtifactInfo, Run
from keel.exceptions import IntegrityError, NotFoundError
from keel.objects import ObjectStore
from keel.objects.base import check_digest
from keel.server.deps import IdentityDep, ObjectsDep, StoreDep
from keel.server.schemas import (
    ArtifactList,
    ArtifactOut,
    ArtifactRecord,
    BatchLog,
    Heartbeat,
    LifecycleUpdate,
    MetricHistory,
    MetricOut,
    Reap,
    RunCreate,
    RunIds,
    RunOut,
    RunPage,
    RunSearch,
    RunStatusOut,
    StatusUpdate,
)
from keel.store.base import MetricPoint, Store

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])


def _out(run: Run) -> RunOut:
    return RunOut.model_validate(run)


@router.post("", status_code=201)
def create_run(body: RunCreate, store: StoreDep, caller: IdentityDep) -> RunOut:
    """Start a RUNNING run; with ``heartbeat`` it is reaped when heartbeats stop.

    With access control on, the run's user is the authenticated caller.
    """
    return _out(
        store.create_run(
            body.experiment_id,
            name=body.name,
            parent_run_id=body.parent_run_id,
            tags=body.tags,
            description=body.description,
            user=caller or body.user,
            start_time=body.start_time,
            environment_digest=body.environment_digest,
            heartbeat=body.heartbeat,
        )
    )


@router.post("/search")
def search_runs(body: RunSearch, store: StoreDep) -> RunPage:
    """Runs matching a filter (grammar: docs/search.md), one page at a time."""
    runs, token = store.search_runs(
        body.experiment_ids,
        filter=body.filter,
        order_by=body.order_by,
        max_results=body.max_results,
        page_token=body.page_token,
        view=body.view,
    )
    return RunPage(runs=[_out(r) for r in runs], next_page_token=token)


@router.post("/heartbeat", status_code=204)
def heartbeat(body: Heartbeat, store: StoreDep) -> None:
    """Record that the processes owning these runs are alive."""
    store.heartbeat([v.check_run_id(r) for r in body.run_ids])


@router.post("/reap")
def reap_dead_runs(body: Reap, store: StoreDep) -> RunIds:
    """Mark RUNNING runs without a heartbeat for ``timeout`` seconds FAILED."""
    return RunIds(run_ids=store.reap_dead_runs(body.timeout))


@router.get("/{run_id}")
def get_run(run_id: str, store: StoreDep) -> RunOut:
    """A run with its params, latest metrics and tags."""
    return _out(store.get_run(run_id))


@router.get("/{run_id}/status")
def get_run_status(run_id: str, store: StoreDep) -> RunStatusOut:
    """Only the status of a run (cheaper than the whole run)."""
    return RunStatusOut(status=str(store.run_status(run_id)))


@router.put("/{run_id}/status", status_code=204)
def set_run_status(run_id: str, body: StatusUpdate, store: StoreDep) -> None:
    """End a run (FINISHED, FAILED, KILLED) or resume it (RUNNING)."""
    store.end_run(run_id, body.status, end_time=body.end_time, failure=body.failure)


@router.put("/{run_id}/lifecycle", status_code=204)
def set_run_lifecycle(run_id: str, body: LifecycleUpdate, store: StoreDep) -> None:
    """Soft-delete (``deleted``) or restore (``active``) a run."""
    store.set_run_lifecycle(run_id, body.stage)


def _check_points(points: list[tuple[str, float, int, int]]) -> list[MetricPoint]:
    keys: set[str] = set()
    for key, _, _, _ in points:
        if key not in keys:
            keys.add(v.check_key("Metric", key))
    return points


@router.post("/{run_id}/batch", status_code=204)
def log_batch(run_id: str, body: BatchLog, store: StoreDep) -> None:
    """Log metric points, params and tags in one transaction (all or nothing).

    Points are ``[key, value, step, timestamp µs]``; a point already stored is
    stored once, so a retried batch is harmless.
    """
    store.log_points(
        run_id,
        _check_points(body.metrics),
        # the base class's checks, exactly as for an in-process call
        params=Store._check_params(body.params),
        tags=Store._check_tags(body.tags),
    )


@router.delete("/{run_id}/tags/{key:path}", status_code=204)
def delete_tag(run_id: str, key: str, store: StoreDep) -> None:
    """Remove a tag; 404 if it is not set."""
    store.delete_tag(run_id, key)


@router.get("/{run_id}/metrics/{key:path}")
def get_metric_history(run_id: str, key: str, store: StoreDep) -> MetricHistory:
    """Every point of one metric, by step then time."""
    return MetricHistory(
        metrics=[MetricOut.model_validate(m) for m in store.get_metric_history(run_id, key)]
    )


def _check_blobs(objects: ObjectStore, entries: list[ArtifactInfo]) -> None:
    """Refuse records of blobs the object store does not hold (or holds with another size)."""

    def check(entry: ArtifactInfo) -> None:
        check_digest(entry.digest)
        try:
            size = objects.size(entry.digest)
        except NotFoundError:
            raise NotFoundError(
                f"Artifact '{entry.path}' names blob {entry.digest}, which is not stored; "
                "upload it first (PUT /api/v1/blobs/{digest}).",
                path=entry.path,
                digest=entry.digest,
            ) from None
        if size != entry.size:
            raise IntegrityError(
                f"Artifact '{entry.path}' says blob {entry.digest} has {entry.size} bytes; "
                f"the stored blob has {size}.",
                path=entry.path,
                digest=entry.digest,
            )

    if len(entries) <= 1:
        for entry in entries:
            check(entry)
        return
    with ThreadPoolExecutor(max_workers=min(objects.workers, len(entries))) as pool:
        list(pool.map(check, entries))


@router.post("/{run_id}/artifacts", status_code=204)
def record_artifacts(
    run_id: str, body: ArtifactRecord, store: StoreDep, objects: ObjectsDep
) -> None:
    """Attach stored blobs to a run under artifact paths (same paths are replaced)."""
    v.check_run_id(run_id)
    entries = [ArtifactInfo(a.path, a.digest, a.size) for a in body.artifacts]
    _check_blobs(objects, entries)
    store.record_artifacts(run_id, entries)


@router.get("/{run_id}/artifacts")
def list_artifacts(
    run_id: str,
    store: StoreDep,
    prefix: str = Query("", description="a folder or file path; empty for all"),
) -> ArtifactList:
    """Files logged to a run under ``prefix``."""
    return ArtifactList(
        artifacts=[ArtifactOut.model_validate(a) for a in store.list_artifacts(run_id, prefix)]
    )
