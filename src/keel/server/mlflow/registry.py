"""MLflow model registry API (``/api/2.0/mlflow/registered-models``, ``model-versions``).

Versions are keel registry versions: aliases, stages, protection and the audit log
apply to MLflow clients as they do to keel's own API. A version's files are the
run folder its source names (``runs:/``, ``mlflow-artifacts:/``, ``models:/m-<id>``
for a logged model, ``models:/<name>/<version>``), registered by content hash.
MLflow-format models are kept as opaque files (flavor ``mlflow``); a folder
holding a ``keel-model.json`` registers as a keel model.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, Depends

from keel.entities import STAGES, ModelVersion, RegisteredModel
from keel.exceptions import NotFoundError
from keel.objects import BlobRef, Manifest
from keel.registry import SPEC_FILE, Registry
from keel.server.mlflow import _logged
from keel.server.mlflow._common import (
    INTERNAL,
    Fields,
    artifact_root,
    fields,
    get_client,
    page,
    pairs,
    run_id_of,
    sql_registry,
)
from keel.server.mlflow._errors import MlflowError, MlflowRoute
from keel.server.mlflow._filters import Condition, matches, parse, sort
from keel.server.mlflow.artifacts import resolve
from keel.store._registry import check_stage
from keel.tracking.client import Client

__all__ = ["model_json", "router", "version_json"]

router = APIRouter(route_class=MlflowRoute)

#: Version tags keeping what MLflow clients sent: the source URI and the logged model id.
SOURCE = INTERNAL + "source"
MODEL_ID = INTERNAL + "model_id"
#: Files whose loading runs pickle: such a version is marked unsafe, as keel's own are.
_PICKLES = (".pkl", ".pickle", ".cloudpickle", ".joblib")
_LOGGED_MODEL_URI = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")
F = Depends(fields)
C = Depends(get_client)


# -- conversions ------------------------------------------------------------------------------
def version_json(mv: ModelVersion) -> dict[str, Any]:
    """The ``ModelVersion`` message (always READY: keel registers synchronously)."""
    out = {
        "name": mv.name,
        "version": str(mv.version),
        "creation_timestamp": mv.created_at,
        "last_updated_timestamp": mv.updated_at,
        "user_id": mv.created_by or "",
        "current_stage": mv.stage,
        "description": mv.description or "",
        "source": mv.tags.get(SOURCE, mv.source),
        "run_id": mv.run_id or "",
        "status": "READY",
        "tags": pairs(mv.tags),
        "aliases": list(mv.aliases),
    }
    if MODEL_ID in mv.tags:
        out["model_id"] = mv.tags[MODEL_ID]
    return out


def _latest_per_stage(versions: list[ModelVersion]) -> list[ModelVersion]:
    latest: dict[str, ModelVersion] = {}
    for mv in versions:  # newest first
        latest.setdefault(mv.stage, mv)
    return [latest[s] for s in STAGES if s in latest]


def model_json(model: RegisteredModel, versions: list[ModelVersion]) -> dict[str, Any]:
    """The ``RegisteredModel`` message; ``latest_versions`` is the newest version per stage."""
    return {
        "name": model.name,
        "creation_timestamp": model.created_at,
        "last_updated_timestamp": model.updated_at,
        "user_id": model.owner or "",
        "description": model.description or "",
        "latest_versions": [version_json(mv) for mv in _latest_per_stage(versions)],
        "tags": pairs(model.tags),
        "aliases": [{"alias": a, "version": str(n)} for a, n in sorted(model.aliases.items())],
    }


def _version(f: Fields) -> str:
    return f.text("version", required=True)


# -- registered models --------------------------------------------------------------------------
@router.post("/registered-models/create")
def create_registered_model(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Register a model name."""
    model = Registry(c).create_model(
        f.text("name", required=True),
        description=f.text("description") or None,
        tags=_user_tags(f.pairs("tags")),
    )
    return {"registered_model": model_json(model, [])}


@router.get("/registered-models/get")
def get_registered_model(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """A registered model with its aliases and newest version per stage."""
    reg = Registry(c)
    name = f.text("name", required=True)
    return {"registered_model": model_json(reg.get_model(name), reg.list_versions(name))}


@router.patch("/registered-models/update")
def update_registered_model(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Change a registered model's description."""
    reg = Registry(c)
    name = f.text("name", required=True)
    model = reg.update_model(name, description=f.text("description"))
    return {"registered_model": model_json(model, reg.list_versions(name))}


def _model_lookup(model: RegisteredModel, kind: str, key: str) -> Any:
    if kind == "tags":
        return model.tags.get(key)
    return {
        "name": model.name,
        "creation_timestamp": model.created_at,
        "last_updated_timestamp": model.updated_at,
        "timestamp": model.updated_at,
        "description": model.description,
    }.get(key)


@router.get("/registered-models/search")
def search_registered_models(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Registered models matching MLflow's filter (``name LIKE 'churn%'`` ...)."""
    reg = Registry(c)
    conditions = parse(f.text("filter"))
    found = [m for m in reg.list_models() if matches(conditions, partial(_model_lookup, m))]
    found = sort(found, [str(o) for o in f.items("order_by")] or ["name ASC"], _model_lookup)
    chunk, token = page(found, f.text("page_token"), f.integer("max_results", 100) or 100)
    out: dict[str, Any] = {
        "registered_models": [model_json(m, reg.list_versions(m.name)) for m in chunk]
    }
    if token:
        out["next_page_token"] = token
    return out


# GET and POST twins, each with its own OpenAPI operation id.
@router.get("/registered-models/get-latest-versions", name="get_latest_versions_get")
@router.post("/registered-models/get-latest-versions", name="get_latest_versions")
def get_latest_versions(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """The newest version in each requested stage (every stage when none is given)."""
    versions = _latest_per_stage(Registry(c).list_versions(f.text("name", required=True)))
    stages = {check_stage(str(s)) for s in f.items("stages")}
    wanted = [mv for mv in versions if not stages or mv.stage in stages]
    return {"model_versions": [version_json(mv) for mv in wanted]}


@router.post("/registered-models/alias")
def set_alias(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Point an alias at a version (protected aliases need approvals, as in keel)."""
    Registry(c).set_alias(
        f.text("name", required=True), f.text("alias", required=True), _version(f)
    )
    return {}


@router.delete("/registered-models/alias")
def delete_alias(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Remove an alias."""
    Registry(c).delete_alias(f.text("name", required=True), f.text("alias", required=True))
    return {}


@router.get("/registered-models/alias")
def get_version_by_alias(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """The version an alias points to."""
    mv = sql_registry(c).resolve_alias(
        f.text("name", required=True), f.text("alias", required=True)
    )
    return {"model_version": version_json(mv)}


# -- model versions -------------------------------------------------------------------------------
def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    if any(k.startswith(INTERNAL) for k in tags):
        raise MlflowError(f"Tag keys starting with '{INTERNAL}' are reserved for keel.")
    return tags


def _source(c: Client, source: str) -> tuple[str, str, _logged.LoggedModel | None]:
    """(run id, folder, logged model) of a version source URI."""
    lm: _logged.LoggedModel | None
    m = _LOGGED_MODEL_URI.match(source)
    if m:
        lm = _logged.get(c, m.group(1))
        return lm.run.run_id, lm.path, lm
    scheme = urlparse(source).scheme
    if scheme == "models":
        mv = Registry(c).resolve(source).version
        assert mv is not None
        run_id, path, _ = _source(c, mv.source)
        lm = _logged.get(c, mv.tags[MODEL_ID]) if MODEL_ID in mv.tags else None
        return run_id, path, lm
    if scheme == "runs":
        run_part, _, path = source[len("runs:/") :].partition("/")
        run = c.store.get_run(run_id_of(run_part))
        path = path.strip("/") or "model"
        lm = next((x for x in _logged.on_run(run) if x.path == path), None)
        return run.run_id, path, lm
    if scheme == "mlflow-artifacts":
        target = resolve(c, urlparse(source).path)
        lm = next((x for x in _logged.on_run(target.run) if x.path == target.path), None)
        return target.run.run_id, target.path, lm
    raise MlflowError(
        f"Cannot register {source!r}: keel registers models stored on this server "
        "(runs:/<run id>/<path>, models:/<model id>, models:/<name>/<version> or "
        "mlflow-artifacts:/ URIs)."
    )


@router.post("/model-versions/create")
def create_model_version(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Register the files a source URI names as the model's next version."""
    name, source = f.text("name", required=True), f.text("source", required=True)
    tags = _user_tags(f.pairs("tags"))
    description = f.text("description") or None
    run_id, path, lm = _source(c, source)
    if lm is None and f.text("model_id"):
        lm = _logged.get(c, f.text("model_id"))
    prefix = path + "/"
    entries = {
        i.path[len(prefix) :]: BlobRef(i.digest, i.size)
        for i in c.store.list_artifacts(run_id, path)
        if i.path.startswith(prefix)
    }
    if not entries:
        raise MlflowError(f"Cannot register {source!r}: run {run_id} has no files under '{path}'.")
    if SPEC_FILE in entries and lm is None:  # a keel model: keel's own registration
        mv = Registry(c).register_model(
            f"runs:/{run_id}/{path}", name, description=description, tags=tags
        )
        return {"model_version": version_json(mv)}
    internal = {SOURCE: source}
    if lm is not None:
        internal[MODEL_ID] = lm.model_id
    registry = sql_registry(c)
    run = c.store.get_run(run_id)
    lineage, _ = registry.lineage(f"run:{run_id}", "up", 1)
    mv = registry.create_version(
        name,
        actor=c.settings.user,
        source=f"runs:/{run_id}/{path}",
        run_id=run_id,
        manifest_digest=c.objects.put_manifest(Manifest(entries)).digest,
        spec={
            "flavor": "mlflow",
            "format": "mlflow",
            "files": sorted(entries),
            "unsafe": any(p.endswith(_PICKLES) for p in entries),
        },
        metrics={k: val for k, val in run.metrics.items() if val == val},  # NaN is not JSON
        datasets=[n for n in lineage[1:] if n.startswith("dataset:")],
        description=description,
        tags={**tags, **internal},
    )
    return {"model_version": version_json(mv)}


@router.get("/model-versions/get")
def get_model_version(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """One version."""
    mv = sql_registry(c).get_version(f.text("name", required=True), _version(f))
    return {"model_version": version_json(mv)}


@router.patch("/model-versions/update")
def update_model_version(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Change a version's description."""
    mv = sql_registry(c).update_version(
        f.text("name", required=True),
        _version(f),
        actor=c.settings.user,
        description=f.text("description"),
    )
    return {"model_version": version_json(mv)}


@router.post("/model-versions/set-tag")
def set_model_version_tag(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Set a tag on a version."""
    tags = _user_tags({f.text("key", required=True): f.text("value")})
    sql_registry(c).update_version(
        f.text("name", required=True), _version(f), actor=c.settings.user, tags=tags
    )
    return {}


@router.post("/model-versions/transition-stage")
def transition_stage(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Move a version to a stage; ``archive_existing_versions`` archives the stage's others.

    keel allows one Production version per model unless the model allows several
    (``set_protection(multiple_production=True)``): promoting another without
    ``archive_existing_versions`` is refused (INVALID_STATE).
    """
    reg = Registry(c)
    name, version = f.text("name", required=True), _version(f)
    stage = check_stage(f.text("stage", required=True))
    archive = f.flag("archive_existing_versions")
    mv = reg.set_stage(name, version, stage, archive_existing=archive)
    if archive and stage == "Staging":  # keel archives Production itself
        for other in reg.list_versions(name):
            if other.stage == stage and other.version != mv.version:
                reg.set_stage(name, other.version, "Archived", reason=f"v{mv.version} promoted")
        mv = reg.get_version(name, mv.version)
    return {"model_version": version_json(mv)}


@router.delete("/model-versions/delete")
def delete_model_version(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Soft-delete a version (its aliases go with it)."""
    Registry(c).delete_version(f.text("name", required=True), _version(f))
    return {}


def _version_lookup(mv: ModelVersion, kind: str, key: str) -> Any:
    if kind == "tags":
        return mv.tags.get(key)
    return {
        "name": mv.name,
        "version_number": mv.version,
        "version": mv.version,
        "run_id": mv.run_id,
        "source": mv.tags.get(SOURCE, mv.source),
        "source_path": mv.tags.get(SOURCE, mv.source),
        "current_stage": mv.stage,
        "model_id": mv.tags.get(MODEL_ID),
        "creation_timestamp": mv.created_at,
        "last_updated_timestamp": mv.updated_at,
    }.get(key)


def _candidates(c: Client, conditions: list[Condition]) -> list[ModelVersion]:
    reg = Registry(c)
    names = [
        str(x.value)
        for x in conditions
        if x.kind == "attributes" and x.key == "name" and x.op == "="
    ]
    models = names[:1] if names else [m.name for m in reg.list_models()]
    out: list[ModelVersion] = []
    for name in models:
        try:
            out.extend(reg.list_versions(name))
        except NotFoundError:  # no such model: no versions
            continue
    return out


@router.get("/model-versions/search")
def search_model_versions(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Versions matching MLflow's filter (``name = 'churn'``, ``run_id = '...'`` ...)."""
    conditions = parse(f.text("filter"))
    found = [
        mv for mv in _candidates(c, conditions) if matches(conditions, partial(_version_lookup, mv))
    ]
    order = [str(o) for o in f.items("order_by")] or ["name ASC", "version_number DESC"]
    found = sort(found, order, _version_lookup)
    chunk, token = page(found, f.text("page_token"), f.integer("max_results", 10000) or 10000)
    out: dict[str, Any] = {"model_versions": [version_json(mv) for mv in chunk]}
    if token:
        out["next_page_token"] = token
    return out


@router.get("/model-versions/get-download-uri")
def get_download_uri(f: Fields = F, c: Client = C) -> dict[str, Any]:
    """Where MLflow clients download a version's files (an mlflow-artifacts URI)."""
    mv = sql_registry(c).get_version(f.text("name", required=True), _version(f))
    if MODEL_ID in mv.tags:
        lm = _logged.get(c, mv.tags[MODEL_ID], allow_deleted=True)
        return {"artifact_uri": lm.artifact_uri}
    run_id, path, _ = _source(c, mv.source)
    run = c.store.get_run(run_id)
    return {"artifact_uri": f"{artifact_root(run.experiment_id, run_id)}/{path}"}
