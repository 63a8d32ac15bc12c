"""``/api/v1/models`` and ``/api/v1/requests``: the model registry.

Models, versions (registered from a ``runs:/`` URI), stages, aliases, approval
requests and model cards. The acting user comes from the ``X-Keel-User``
header (see :data:`keel.server.deps.ActorDep`); every change is audited.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response

from keel.entities import ApprovalRequest, ModelVersion, RegisteredModel
from keel.exceptions import IntegrityError
from keel.registry import Registry
from keel.server.deps import ActorDep, ClientDep, RegistryDep, as_actor
from keel.server.schemas import (
    AliasSet,
    ModelCreate,
    ModelList,
    ModelOut,
    ModelUpdate,
    Protection,
    RequestCreate,
    RequestList,
    RequestOut,
    StageUpdate,
    Users,
    VersionCreate,
    VersionList,
    VersionOut,
    VersionUpdate,
    VoteIn,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["registry"])


def _model(model: RegisteredModel) -> ModelOut:
    return ModelOut.model_validate(model)


def _version(mv: ModelVersion) -> VersionOut:
    return VersionOut.model_validate(mv)


def _request(req: ApprovalRequest) -> RequestOut:
    return RequestOut.model_validate(req)


# -- models -----------------------------------------------------------------------------------
@router.get("/models")
def list_models(reg: RegistryDep) -> ModelList:
    """Every registered model, by name."""
    return ModelList(models=[_model(m) for m in reg.list_models()])


@router.post("/models", status_code=201)
def create_model(body: ModelCreate, reg: RegistryDep, actor: ActorDep) -> ModelOut:
    """Register a model name (registering a version also creates it)."""
    return _model(
        reg.create_model(
            body.name,
            actor=actor,
            description=body.description,
            owner=body.owner,
            tags=body.tags,
        )
    )


@router.get("/models/{name}")
def get_model(name: str, reg: RegistryDep) -> ModelOut:
    """A model with its aliases and newest version number."""
    return _model(reg.get_model(name))


@router.patch("/models/{name}")
def update_model(name: str, body: ModelUpdate, reg: RegistryDep, actor: ActorDep) -> ModelOut:
    """Edit description, owner, purpose (intended use) or limitations; fields left out stay."""
    changes = body.model_dump(exclude_unset=True, exclude={"reason"})
    return _model(reg.update_model(name, actor=actor, reason=body.reason, **changes))


@router.put("/models/{name}/protection")
def set_protection(name: str, body: Protection, reg: RegistryDep, actor: ActorDep) -> ModelOut:
    """Protect stages and aliases behind approvals (needs admin once admins exist)."""
    return _model(
        reg.set_protection(
            name,
            actor=actor,
            stages=body.stages,
            aliases=body.aliases,
            required_approvals=body.required_approvals,
            multiple_production=body.multiple_production,
            reason=body.reason,
        )
    )


@router.get("/models/{name}/approvers")
def approvers(name: str, reg: RegistryDep) -> Users:
    """Users who may approve changes to the model."""
    return Users(users=reg.approvers(name))


# -- versions ---------------------------------------------------------------------------------
@router.get("/models/{name}/versions")
def list_versions(name: str, reg: RegistryDep) -> VersionList:
    """Versions of a model, newest first."""
    return VersionList(versions=[_version(mv) for mv in reg.list_versions(name)])


@router.post("/models/{name}/versions", status_code=201)
def create_version(
    name: str, body: VersionCreate, client: ClientDep, actor: ActorDep
) -> VersionOut:
    """Register the model logged at ``source`` (``runs:/<run_id>/<path>``) as the next version.

    The server resolves the source from its own records (files, spec, the run's
    metrics, datasets); with ``manifest_digest`` it refuses if the files differ.
    """
    registry = Registry(as_actor(client, actor))
    if body.manifest_digest is not None:
        resolved = registry.resolve(body.source)
        if resolved.manifest_digest != body.manifest_digest:
            raise IntegrityError(
                f"{body.source} resolves to manifest {resolved.manifest_digest} on the server, "
                f"not {body.manifest_digest}: the run's files changed. Nothing was registered.",
                source=body.source,
            )
    return _version(
        registry.register_model(body.source, name, description=body.description, tags=body.tags)
    )


@router.get("/models/{name}/versions/{version}")
def get_version(name: str, version: str, reg: RegistryDep) -> VersionOut:
    """One version (``latest`` for the newest)."""
    if version == "latest":
        return _version(reg.latest_version(name))
    return _version(reg.get_version(name, version))


@router.patch("/models/{name}/versions/{version}")
def update_version(
    name: str, version: str, body: VersionUpdate, reg: RegistryDep, actor: ActorDep
) -> VersionOut:
    """Edit a version's description or tags, or attach a signature."""
    return _version(
        reg.update_version(
            name,
            version,
            actor=actor,
            reason=body.reason,
            description=body.description,
            signature_b64=body.signature_b64,
            signed_by=body.signed_by,
            tags=body.tags,
        )
    )


@router.delete("/models/{name}/versions/{version}", status_code=204)
def delete_version(
    name: str, version: str, reg: RegistryDep, actor: ActorDep, reason: str | None = None
) -> None:
    """Soft-delete a version (its aliases go with it)."""
    reg.delete_version(name, version, actor=actor, reason=reason)


@router.put("/models/{name}/versions/{version}/stage")
def set_stage(
    name: str, version: str, body: StageUpdate, reg: RegistryDep, actor: ActorDep
) -> VersionOut:
    """Move a version to None, Staging, Production, Shadow or Archived."""
    return _version(
        reg.set_stage(
            name,
            version,
            body.stage,
            actor=actor,
            reason=body.reason,
            archive_existing=body.archive_existing,
        )
    )


@router.get("/models/{name}/stages/{stage}")
def latest_in_stage(name: str, stage: str, reg: RegistryDep) -> VersionOut:
    """The newest version in a stage (``models:/name/Production``)."""
    return _version(reg.latest_in_stage(name, stage))


@router.get("/models/{name}/versions/{version}/card")
def model_card(
    name: str,
    version: str,
    client: ClientDep,
    format: Literal["md", "html"] = Query("md", description="md (Markdown) or html"),
) -> Response:
    """The model card of a version, as Markdown or self-contained HTML."""
    text = Registry(client).card(name, version, format)
    media = "text/markdown" if format == "md" else "text/html"
    return Response(text, media_type=f"{media}; charset=utf-8")


# -- aliases ----------------------------------------------------------------------------------
@router.get("/models/{name}/aliases/{alias}")
def resolve_alias(name: str, alias: str, reg: RegistryDep) -> VersionOut:
    """The version an alias points to."""
    return _version(reg.resolve_alias(name, alias))


@router.put("/models/{name}/aliases/{alias}")
def set_alias(
    name: str, alias: str, body: AliasSet, reg: RegistryDep, actor: ActorDep
) -> VersionOut:
    """Point an alias at a version (moves it atomically if it exists)."""
    return _version(reg.set_alias(name, alias, body.version, actor=actor, reason=body.reason))


@router.delete("/models/{name}/aliases/{alias}", status_code=204)
def delete_alias(
    name: str, alias: str, reg: RegistryDep, actor: ActorDep, reason: str | None = None
) -> None:
    """Remove an alias."""
    reg.delete_alias(name, alias, actor=actor, reason=reason)


# -- approval requests ------------------------------------------------------------------------
@router.post("/models/{name}/versions/{version}/requests", status_code=201)
def create_request(
    name: str, version: str, body: RequestCreate, reg: RegistryDep, actor: ActorDep
) -> RequestOut:
    """Ask approvers to move a version to a (protected) stage or alias."""
    return _request(
        reg.request(
            name, version, actor=actor, stage=body.stage, alias=body.alias, comment=body.comment
        )
    )


@router.get("/requests")
def list_requests(
    reg: RegistryDep,
    model: str | None = Query(None, description="only this model's requests"),
    status: Literal["pending", "applied", "rejected", "cancelled", "all"] = "pending",
) -> RequestList:
    """Approval requests, oldest first."""
    found = reg.list_requests(model, None if status == "all" else status)
    return RequestList(requests=[_request(r) for r in found])


@router.post("/requests/{request_id}/approve")
def approve(request_id: int, body: VoteIn, reg: RegistryDep, actor: ActorDep) -> RequestOut:
    """Approve a request; the last required approval applies it."""
    return _request(reg.vote(request_id, "approve", actor=actor, comment=body.comment))


@router.post("/requests/{request_id}/reject")
def reject(request_id: int, body: VoteIn, reg: RegistryDep, actor: ActorDep) -> RequestOut:
    """Reject a request."""
    return _request(reg.vote(request_id, "reject", actor=actor, comment=body.comment))
