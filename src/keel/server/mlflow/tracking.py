"""MLflow tracking API (``/api/2.0/mlflow``): experiments, runs, metrics, logged models.

MLflow names map onto keel's model of a run: ``run_name`` (tag ``mlflow.runName``)
is the keel run name, ``user_id`` (tag ``mlflow.user``) the run's user, tag
``mlflow.parentRunId`` its parent; experiment "0" is keel's experiment "Default".
Writes to a finished run are accepted, as MLflow does (see
:func:`~keel.server.mlflow._common.write_to_run`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from keel.entities import Experiment, Metric, Run, RunStatus
from keel.server.mlflow import _logged
from keel.server.mlflow._common import (
    DEFAULT_EXPERIMENT,
    INTERNAL,
    Fields,
    artifact_root,
    default_experiment,
    experiment_id,
    fields,
    gc_paused,
    get_client,
    json_response,
    num,
    page,
    pairs,
    run_id_of,
    sql_store,
    write_to_run,
)
from keel.server.mlflow._errors import MlflowError, MlflowRoute
from keel.server.mlflow._filters import matches, parse, run_filter, run_order, sort
from keel.store.sql import RunRows
from keel.tracking.client import Client

__all__ = ["experiment_json", "router", "run_json", "runs_json"]

router = APIRouter(route_class=MlflowRoute)

_VIEWS = {
    "ACTIVE_ONLY": "active",
    "DELETED_ONLY": "deleted",
    "ALL": "all",
    "1": "active",
    "2": "deleted",
    "3": "all",
}
_NAME_TAG, _USER_TAG, _PARENT_TAG, _NOTE_TAG = (
    "mlflow.runName",
    "mlflow.user",
    "mlflow.parentRunId",
    "mlflow.note.content",
)
F = Depends(fields)
C = Depends(get_client)


# -- conversions ------------------------------------------------------------------------------
def experiment_json(exp: Experiment) -> dict[str, Any]:
    """The ``Experiment`` message; artifacts go through the mlflow-artifacts routes."""
    tags = dict(exp.tags)
    if exp.description and _NOTE_TAG not in tags:
        tags[_NOTE_TAG] = exp.description
    return {
        "experiment_id": exp.experiment_id,
        "name": exp.name,
        "artifact_location": f"mlflow-artifacts:/{exp.experiment_id}",
        "lifecycle_stage": exp.lifecycle_stage,
        "creation_time": exp.created_at,
        "last_update_time": exp.created_at,
        "tags": pairs(tags),
    }


def _run_info(run: Run) -> dict[str, Any]:
    return _info(
        run.run_id,
        run.experiment_id,
        run.name,
        str(run.status),
        run.start_time,
        run.end_time,
        run.lifecycle_stage,
        run.user,
    )


def _info(
    run_id: str,
    exp_id: str,
    name: str,
    status: str,
    start: int,
    end: int | None,
    stage: str,
    user: str | None,
) -> dict[str, Any]:
    """The ``RunInfo`` message (fields without a value left out, as proto3 JSON does)."""
    info = {
        "run_id": run_id,
        "run_uuid": run_id,
        "run_name": name,
        "experiment_id": exp_id,
        "user_id": user or "",
        "status": status,
        "start_time": start,
        "artifact_uri": artifact_root(exp_id, run_id),
        "lifecycle_stage": stage,
    }
    if end is not None:
        info["end_time"] = end
    return info


def _metric(key: str, value: float | None) -> dict[str, Any]:
    """A latest value as MLflow's ``Metric`` (None is NaN, as stored).

    Step and timestamp are left out: keel keeps neither for the latest values, and
    the proto default (0) is what MLflow clients read for an absent field. A
    third fewer fields makes a search of thousands of runs parse faster.
    """
    if value is None:
        return {"key": key, "value": "NaN"}
    # value - value is 0.0 for finite floats, NaN for NaN and the infinities
    return {"key": key, "value": value if value - value == 0 else num(value)}


def _run_message(
    info: dict[str, Any],
    metrics: list[dict[str, Any]],
    params: list[dict[str, str]],
    tags: dict[str, str],
    name: str,
    user: str | None,
    parent: str | None,
    description: str | None,
) -> dict[str, Any]:
    """The ``Run`` message: keel's name, user, parent and description as MLflow's tags."""
    merged = {_NAME_TAG: name}
    if user:
        merged[_USER_TAG] = user
    if parent:
        merged[_PARENT_TAG] = parent
    if description:
        merged[_NOTE_TAG] = description
    merged.update(tags)
    return {
        "info": info,
        "data": {"metrics": metrics, "params": params, "tags": pairs(merged)},
        "inputs": {},
        "outputs": {"model_outputs": _logged.outputs_of(tags)},
    }


def run_json(run: Run) -> dict[str, Any]:
    """The ``Run`` message of a keel run."""
    return _run_message(
        _run_info(run),
        [_metric(k, val) for k, val in run.metrics.items()],
        pairs(run.params),
        run.tags,
        run.name,
        run.user,
        run.parent_run_id,
        run.description,
    )


def runs_json(rows: RunRows) -> list[dict[str, Any]]:
    """``Run`` messages straight from a search's rows: the same JSON as :func:`run_json`.

    Skipping the ``Run`` objects roughly halves the server's work for a page of
    1,000 runs (see benchmarks/server/profile_search_all.txt).
    """
    params: dict[int, list[dict[str, str]]] = {row[0]: [] for row in rows.runs}
    metrics: dict[int, list[dict[str, Any]]] = {row[0]: [] for row in rows.runs}
    tags: dict[int, dict[str, str]] = {row[0]: {} for row in rows.runs}
    for pk, key, value in rows.params:
        if not key.startswith(INTERNAL):
            params[pk].append({"key": key, "value": value})
    for pk, key, number in rows.metrics:
        metrics[pk].append(_metric(key, number))
    for pk, key, value in rows.tags:
        tags[pk][key] = value
    out = []
    for pk, run_id, exp_id, name, status, start, end, stage, user, desc, _, _, parent in rows.runs:
        info = _info(run_id, str(exp_id), name, status, start, end, stage, user)
        out.append(_run_message(info, metrics[pk], params[pk], tags[pk], name, user, parent, desc))
    return out


def _number(value: Any, what: str) -> float:
    try:
        return float(value)  # also "NaN", "Infinity", "-Infinity" (proto3 JSON)
    except (TypeError, ValueError):
        raise MlflowError(f"{what} must be a number, got {value!r}.") from None


def _check_tags(client: Client, run_id: str, tags: dict[str, str]) -> dict[str, str]:
    """Tags an MLflow client may set: not keel's own; the run name cannot change."""
    for key in tags:
        if key.startswith(INTERNAL):
            raise MlflowError(f"Tag keys starting with '{INTERNAL}' are reserved for keel.")
    if _NAME_TAG in tags:
        name = client.store.get_run(run_id).name
        if tags[_NAME_TAG] != name:
            raise MlflowError(
                f"Run '{run_id}' is named '{name}': keel sets a run's name when the run is "
                "created and does not rename runs."
            )
        tags = {k: val for k, val in tags.items() if k != _NAME_TAG}
    return tags


def _view(value: str) -> str:
    view = _VIEWS.get(value or "ACTIVE_ONLY")
    if view is None:
        raise MlflowError(f"Unknown view type {value!r}: use ACTIVE_ONLY, DELETED_ONLY or ALL.")
    return view


# -- experiments ------------------------------------------------------------------------------
@router.get("/experiments/get-by-name")
def get_experiment_by_name(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Experiment by name ("Default" is created on first use)."""
    name = f.text("experiment_name", required=True)
    if name == DEFAULT_EXPERIMENT:
        exp = default_experiment(c, create=True)
        assert exp is not None
    else:
        exp = c.store.get_experiment_by_name(name)
    return {"experiment": experiment_json(exp)}


@router.post("/experiments/create")
def create_experiment(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Create an experiment (its artifacts live in keel's object store, whatever location)."""
    tags = f.pairs("tags")
    description = tags.pop(_NOTE_TAG, None)
    exp = c.store.create_experiment(
        f.text("name", required=True), tags=tags, description=description
    )
    return {"experiment_id": exp.experiment_id}


@router.get("/experiments/get")
def get_experiment(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Experiment by id ("0" is "Default")."""
    exp_id = experiment_id(c, f.text("experiment_id", required=True))
    return {"experiment": experiment_json(c.store.get_experiment(exp_id))}


def _experiment_lookup(exp: Experiment, kind: str, key: str) -> Any:
    if kind == "tags":
        return exp.tags.get(key)
    return {
        "name": exp.name,
        "experiment_id": int(exp.experiment_id),
        "creation_time": exp.created_at,
        "last_update_time": exp.created_at,
        "lifecycle_stage": exp.lifecycle_stage,
    }.get(key)


# GET and POST twins, each with its own OpenAPI operation id.
@router.get("/experiments/search", name="search_experiments_get")
@router.post("/experiments/search", name="search_experiments")
def search_experiments(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Experiments matching MLflow's experiment filter, newest first by default."""
    conditions = parse(f.text("filter"))
    found = [
        e
        for e in c.store.list_experiments(_view(f.text("view_type")))
        if matches(conditions, partial(_experiment_lookup, e))
    ]
    order = [str(o) for o in f.items("order_by")] or ["creation_time DESC", "experiment_id ASC"]
    found = sort(found, order, _experiment_lookup)
    chunk, token = page(found, f.text("page_token"), f.integer("max_results", 1000) or 1000)
    out: dict[str, Any] = {"experiments": [experiment_json(e) for e in chunk]}
    if token:
        out["next_page_token"] = token
    return out


@router.post("/experiments/delete")
def delete_experiment(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Soft-delete an experiment."""
    c.store.set_experiment_lifecycle(experiment_id(c, f.text("experiment_id")), "deleted")
    return {}


@router.post("/experiments/restore")
def restore_experiment(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Restore a soft-deleted experiment."""
    c.store.set_experiment_lifecycle(experiment_id(c, f.text("experiment_id")), "active")
    return {}


# -- runs ---------------------------------------------------------------------------------------
def _run_id(f: Fields) -> str:
    return run_id_of(f.text("run_id") or f.text("run_uuid", required=True))


@router.post("/runs/create")
def create_run(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Start a run; MLflow's name, user and parent tags become keel's run fields."""
    exp_id = experiment_id(c, f.text("experiment_id") or "0")
    tags = f.pairs("tags")
    name = f.text("run_name") or tags.get(_NAME_TAG) or None
    user = f.text("user_id") or tags.get(_USER_TAG) or None
    if c.settings.auth:  # the authenticated caller, not what the request claims
        user = c.settings.user
    parent = tags.get(_PARENT_TAG) or None
    for key in (_NAME_TAG, _USER_TAG, _PARENT_TAG):
        tags.pop(key, None)
    if any(k.startswith(INTERNAL) for k in tags):
        raise MlflowError(f"Tag keys starting with '{INTERNAL}' are reserved for keel.")
    run = c.store.create_run(
        exp_id,
        name=name,
        parent_run_id=parent,
        tags=tags,
        user=user,
        start_time=f.integer("start_time"),
    )
    return {"run": run_json(run)}


@router.post("/runs/update")
def update_run(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Set a run's status (ending it, or resuming it with RUNNING)."""
    run_id = _run_id(f)
    run = c.store.get_run(run_id)
    name = f.text("run_name")
    if name:
        _check_tags(c, run_id, {_NAME_TAG: name})
    status = f.text("status")
    if status:
        try:
            new = RunStatus(status)
        except ValueError:
            raise MlflowError(f"Unknown run status {status!r}.") from None
        if new != run.status or new.is_terminal:
            c.store.end_run(run_id, new, end_time=f.integer("end_time"))
        run = c.store.get_run(run_id)
    return {"run_info": _run_info(run)}


@router.post("/runs/delete")
def delete_run(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Soft-delete a run."""
    c.store.set_run_lifecycle(_run_id(f), "deleted")
    return {}


@router.post("/runs/restore")
def restore_run(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Restore a soft-deleted run."""
    c.store.set_run_lifecycle(_run_id(f), "active")
    return {}


@router.get("/runs/get")
def get_run(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """A run with params, latest metrics, tags and model outputs."""
    return {"run": run_json(c.store.get_run(_run_id(f)))}


@router.post("/runs/search", response_model=None)
def search_runs(request: Request, f: Fields = F, c: Client = C) -> dict[str, Any] | Response:
    """Search runs with keel's store (MLflow's filter is translated, see _filters)."""
    ids: list[str] = []
    for value in f.items("experiment_ids"):
        if str(value) == "0":
            exp = default_experiment(c, create=False)
            if exp is not None:
                ids.append(exp.experiment_id)
        else:
            ids.append(experiment_id(c, str(value)))
    if f.items("experiment_ids") and not ids:
        return {}
    hide = f"tags.`{_logged.CARRIER}` is null"  # runs created only to hold a logged model
    flt = run_filter(f.text("filter"))
    with gc_paused():
        rows, token = sql_store(c).search_run_rows(
            ids,
            filter=f"({flt}) and {hide}" if flt else hide,
            order_by=run_order([str(o) for o in f.items("order_by")]),
            max_results=f.integer("max_results", 1000) or 1000,
            page_token=f.text("page_token") or None,
            view=_view(f.text("run_view_type")),
        )
        out: dict[str, Any] = {"runs": runs_json(rows)}
        if token:
            out["next_page_token"] = token
        return json_response(request, out)


@router.post("/runs/log-metric")
def log_metric(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Log one metric point (timestamp in ms)."""
    run_id = _run_id(f)
    metric = Metric(
        f.text("key", required=True),
        _number(f.get("value"), "Metric value"),
        f.integer("step", 0) or 0,
        f.integer("timestamp"),
    )
    write_to_run(c, run_id, lambda: c.store.log_batch(run_id, metrics=[metric]))
    return {}


@router.post("/runs/log-parameter")
def log_param(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Log one param (immutable, as in MLflow)."""
    run_id = _run_id(f)
    params = {f.text("key", required=True): f.text("value")}
    write_to_run(c, run_id, lambda: c.store.log_batch(run_id, params=params))
    return {}


@router.post("/runs/set-tag")
def set_tag(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Set a tag."""
    run_id = _run_id(f)
    tags = _check_tags(c, run_id, {f.text("key", required=True): f.text("value")})
    c.store.log_batch(run_id, tags=tags)
    return {}


@router.post("/runs/delete-tag")
def delete_tag(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Remove a tag."""
    c.store.delete_tag(_run_id(f), f.text("key", required=True))
    return {}


@router.post("/runs/log-batch")
def log_batch(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Log metrics, params and tags in one transaction."""
    run_id = _run_id(f)
    metrics = []
    for m in f.items("metrics"):
        if not isinstance(m, dict) or "key" not in m:
            raise MlflowError("Each metric needs a 'key' and a 'value'.")
        step, ts = m.get("step"), m.get("timestamp")
        metrics.append(
            Metric(
                str(m["key"]),
                _number(m.get("value"), f"Metric '{m['key']}'"),
                int(step) if step is not None else 0,
                int(ts) if ts is not None else None,
            )
        )
    params = f.pairs("params")
    tags = _check_tags(c, run_id, f.pairs("tags"))
    write_to_run(
        c, run_id, lambda: c.store.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    )
    return {}


@router.post("/runs/outputs")
def log_outputs(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Record logged models as outputs of a run (``run.outputs.model_outputs``)."""
    run_id = _run_id(f)
    tags = {}
    for m in f.items("models"):
        model_id = str(m.get("model_id", "")) if isinstance(m, dict) else ""
        _logged.get(c, model_id)
        tags[_logged.OUTPUT + model_id] = str(int(m.get("step") or 0))
    c.store.log_batch(run_id, tags=tags)
    return {}


@router.get("/metrics/get-history")
def get_metric_history(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Every point of one metric, by step then time."""
    run_id = _run_id(f)
    history = c.store.get_metric_history(run_id, f.text("metric_key", required=True))
    points = [
        {"key": m.key, "value": num(m.value), "timestamp": m.timestamp, "step": m.step}
        for m in history
    ]
    size = f.integer("max_results")
    chunk, token = page(points, f.text("page_token"), size or len(points) or 1)
    out: dict[str, Any] = {"metrics": [{**p, "run_id": run_id} for p in chunk]}
    if token:
        out["next_page_token"] = token
    return out


# -- logged models (MLflow 3) ---------------------------------------------------------------------
def _status(value: Any) -> str:
    text = str(value or "")
    by_number = {"1": "PENDING", "2": "READY", "3": "UPLOAD_FAILED"}
    return by_number.get(text, text.removeprefix("LOGGED_MODEL_"))


@router.post("/logged-models")
def create_logged_model(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Create a PENDING logged model hosted by its source run."""
    source = f.text("source_run_id")
    if source:
        run_id_of(source)
    lm = _logged.create(
        c,
        experiment_id(c, f.text("experiment_id") or "0"),
        f.text("name"),
        source,
        f.text("model_type"),
        f.pairs("params"),
        f.pairs("tags"),
    )
    return {"model": lm.to_json()}


@router.post("/logged-models/search")
def search_logged_models(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Logged models of experiments matching MLflow's filter."""
    ids = [experiment_id(c, str(e), create_default=False) for e in f.items("experiment_ids")]
    conditions = parse(f.text("filter"))
    found = [lm for lm in _logged.search(c, ids) if matches(conditions, lm.lookup)]
    order = []
    for o in f.items("order_by"):
        if isinstance(o, dict) and o.get("field_name"):
            asc = o.get("ascending", True) not in (False, "false", "False")
            order.append(f"{o['field_name']} {'ASC' if asc else 'DESC'}")
    found = sort(found, order or ["creation_timestamp DESC"], lambda m, k, key: m.lookup(k, key))
    chunk, token = page(found, f.text("page_token"), f.integer("max_results", 50) or 50)
    out: dict[str, Any] = {"models": [lm.to_json() for lm in chunk]}
    if token:
        out["next_page_token"] = token
    return out


@router.get("/logged-models/{model_id}")
def get_logged_model(model_id: str, f: Fields = F, c: Client = C) -> dict[str, Any]:
    """A logged model by id."""
    lm = _logged.get(c, model_id, allow_deleted=f.flag("allow_deleted"))
    return {"model": lm.to_json()}


@router.patch("/logged-models/{model_id}")
def finalize_logged_model(model_id: str, f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Set a logged model's final status (READY or UPLOAD_FAILED)."""
    lm = _logged.update(c, model_id, status=_status(f.get("status")))
    return {"model": lm.to_json()}


@router.delete("/logged-models/{model_id}")
def delete_logged_model(model_id: str, c: Client = C) -> dict[str, Any]:
    """Delete a logged model (its files stay in the host run, as keel never deletes them)."""
    _logged.update(c, model_id, deleted=True)
    return {}


@router.patch("/logged-models/{model_id}/tags")
def set_logged_model_tags(model_id: str, f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Set tags on a logged model."""
    lm = _logged.update(c, model_id, tags=f.pairs("tags"))
    return {"model": lm.to_json()}


@router.delete("/logged-models/{model_id}/tags/{tag_key:path}")
def delete_logged_model_tag(model_id: str, tag_key: str, c: Client = C) -> dict[str, Any]:
    """Remove a tag from a logged model."""
    _logged.update(c, model_id, untag=tag_key)
    return {}


@router.post("/logged-models/{model_id}/params")
def log_logged_model_params(model_id: str, f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Add params to a logged model."""
    _logged.update(c, model_id, params=f.pairs("params"))
    return {}
