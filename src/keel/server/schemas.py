"""Request and response bodies of the native API (``/api/v1``).

Requests reject unknown fields. Floats that may be NaN or infinite travel as
the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` both ways
(:data:`JsonFloat`; responses encode every float that way).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, WithJsonSchema

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _decode_float(value: object) -> object:
    if isinstance(value, str):
        if value in _SPECIAL:
            return _SPECIAL[value]
        raise ValueError(f"expected a number or 'NaN', 'Infinity', '-Infinity', got {value!r}")
    return value


#: A float, or one of the strings "NaN", "Infinity", "-Infinity".
JsonFloat = Annotated[
    float,
    Strict(),
    BeforeValidator(_decode_float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]},
            ]
        }
    ),
]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
View = Literal["active", "deleted", "all"]
Lifecycle = Literal["active", "deleted"]


class Body(BaseModel):
    """A request body: unknown fields are an error (they are usually typos)."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """A response body: built from keel's dataclasses; non-finite floats as strings."""

    model_config = ConfigDict(from_attributes=True, ser_json_inf_nan="strings")


# -- experiments ------------------------------------------------------------------------------
class ExperimentCreate(Body):
    name: str
    artifact_location: str | None = None
    tags: dict[str, str] = {}
    description: str | None = None


class ExperimentName(Body):
    name: str


class LifecycleUpdate(Body):
    stage: Lifecycle


class ExperimentOut(Out):
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    created_at: int
    description: str | None = None
    tags: dict[str, str] = {}


class ExperimentList(Out):
    experiments: list[ExperimentOut]


# -- runs -------------------------------------------------------------------------------------
class RunCreate(Body):
    experiment_id: str
    name: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] = {}
    description: str | None = None
    user: str | None = None
    start_time: Int64 | None = Field(None, description="ms since the epoch; default now")
    environment_digest: str | None = None
    heartbeat: bool = False


class RunOut(Out):
    run_id: str
    experiment_id: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    parent_run_id: str | None
    lifecycle_stage: str
    user: str | None
    description: str | None = None
    failure: str | None = None
    environment_digest: str | None = None
    params: dict[str, str] = {}
    metrics: dict[str, JsonFloat] = {}
    tags: dict[str, str] = {}


class RunStatusOut(Out):
    status: str


class StatusUpdate(Body):
    status: str = Field(description="RUNNING, FINISHED, FAILED or KILLED")
    end_time: Int64 | None = Field(None, description="ms since the epoch; default now")
    failure: str | None = None


class BatchLog(Body):
    metrics: list[tuple[str, JsonFloat, Int64, Int64]] = Field(
        [], description="points as [key, value, step, timestamp in µs]"
    )
    params: dict[str, str] = {}
    tags: dict[str, str] = {}


class MetricOut(Out):
    key: str
    value: JsonFloat
    step: int
    timestamp: int | None = Field(None, description="ms since the epoch")


class MetricHistory(Out):
    metrics: list[MetricOut]


class RunSearch(Body):
    experiment_ids: list[str] = []
    filter: str | None = None
    order_by: list[str] = []
    max_results: int = 1000
    page_token: str | None = None
    view: View = "active"


class RunPage(Out):
    runs: list[RunOut]
    next_page_token: str | None = None


class Heartbeat(Body):
    run_ids: list[str]


class Reap(Body):
    timeout: float = Field(gt=0, description="seconds without heartbeat")


class RunIds(Out):
    run_ids: list[str]


class ArtifactIn(Body):
    path: str
    digest: str
    size: int = Field(ge=0)


class ArtifactRecord(Body):
    artifacts: list[ArtifactIn]


class ArtifactOut(Out):
    path: str
    digest: str
    size: int


class ArtifactList(Out):
    artifacts: list[ArtifactOut]


class BlobOut(Out):
    digest: str
    size: int


#: Digests per ``POST /api/v1/blobs/exists`` (the client sends larger sets in batches).
MAX_EXISTS = 10_000


class BlobsExist(Body):
    digests: list[str] = Field(max_length=MAX_EXISTS)


class BlobsPresent(Out):
    present: list[str]


# -- registry ---------------------------------------------------------------------------------
class ModelCreate(Body):
    name: str
    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] = {}


class ModelUpdate(Body):
    description: str | None = None
    owner: str | None = None
    purpose: str | None = None
    limitations: str | None = None
    reason: str | None = None


class Protection(Body):
    stages: list[str] | None = None
    aliases: list[str] | None = None
    required_approvals: int | None = None
    multiple_production: bool | None = None
    reason: str | None = None


class ModelOut(Out):
    name: str
    description: str | None
    owner: str | None
    purpose: str | None
    limitations: str | None
    protected_stages: list[str]
    protected_aliases: list[str]
    required_approvals: int
    multiple_production: bool
    created_at: int
    updated_at: int
    tags: dict[str, str] = {}
    aliases: dict[str, int] = {}
    latest_version: int | None = None


class ModelList(Out):
    models: list[ModelOut]


class VersionCreate(Body):
    source: str = Field(description="runs:/<run_id>/<path> of a logged model")
    manifest_digest: str | None = Field(
        None, description="refuse unless the source resolves to this manifest"
    )
    description: str | None = None
    tags: dict[str, str] = {}


class VersionUpdate(Body):
    description: str | None = None
    tags: dict[str, str] | None = None
    signature_b64: str | None = None
    signed_by: str | None = None
    reason: str | None = None


class StageUpdate(Body):
    stage: str
    reason: str | None = None
    archive_existing: bool = True


class AliasSet(Body):
    version: int | str
    reason: str | None = None


class VersionOut(Out):
    name: str
    version: int
    source: str
    run_id: str | None
    manifest_digest: str
    flavor: str
    format: str
    spec: dict[str, Any]
    unsafe: bool
    metrics: dict[str, JsonFloat]
    datasets: list[str]
    stage: str
    description: str | None
    signature_b64: str | None
    signed_by: str | None
    created_by: str | None
    created_at: int
    updated_at: int
    aliases: list[str] = []
    tags: dict[str, str] = {}


class VersionList(Out):
    versions: list[VersionOut]


class RequestCreate(Body):
    stage: str | None = None
    alias: str | None = None
    comment: str | None = None


class VoteIn(Body):
    comment: str | None = None


class RequestOut(Out):
    id: int
    name: str
    version: int
    target_kind: str
    target: str
    requested_by: str
    comment: str | None
    status: str
    created_at: int
    resolved_at: int | None
    votes: list[dict[str, Any]] = []


class RequestList(Out):
    requests: list[RequestOut]


class RoleGrant(Body):
    user: str
    role: str
    model: str | None = None


class Users(Out):
    users: list[str]


# -- lineage and audit ------------------------------------------------------------------------
class EdgeCreate(Body):
    src: str = Field(description="kind:id, e.g. dataset:churn@3")
    dst: str
    relation: str


class LineageOut(Out):
    start: str
    direction: str
    nodes: list[str]
    edges: list[tuple[str, str, str]]


class AuditEventOut(Out):
    seq: int
    ts: int
    actor: str
    action: str
    object: str
    reason: str | None
    before: Any
    after: Any
    prev_hash: str
    hash: str


class AuditPage(Out):
    events: list[AuditEventOut]
    next_page_token: str | None = None


class AuditVerification(Out):
    checked: int = Field(description="events checked, or the first broken one")
    problem: str | None = Field(None, description="what is wrong; null when intact")


# -- datasets ---------------------------------------------------------------------------------
class DatasetVersionCreate(Body):
    kind: Literal["files", "table"]
    manifest_digest: str = Field(
        description="BLAKE3 digest of the manifest (files) or Parquet blob (table); stored here"
    )
    file_count: int = Field(ge=0, le=2**63 - 1)
    total_bytes: int = Field(ge=0, le=2**63 - 1)
    run_id: str | None = Field(
        None, pattern=r"^[0-9a-f]{32}$", description="the run that produced it (lineage)"
    )
    message: str | None = Field(None, max_length=65_536, pattern=r"^[^\x00]*$")
    extra: dict[str, Any] = Field(
        {}, description="kind-specific metadata; values of keys ending in _digest name blobs"
    )
    reuse_identical: bool = Field(
        True, description="return the latest version instead of a duplicate of it"
    )


class DatasetVersionOut(Out):
    name: str
    version: int
    kind: str
    manifest_digest: str
    file_count: int
    total_bytes: int
    created_at: int
    created_by: str | None
    run_id: str | None
    message: str | None
    extra: dict[str, Any] = {}
    created: bool = Field(True, description="False when the latest version was returned")


class DatasetVersionList(Out):
    versions: list[DatasetVersionOut]
    next_page_token: str | None = None


class DatasetOut(Out):
    name: str
    description: str | None
    created_at: int
    version_count: int
    latest: DatasetVersionOut | None


class DatasetList(Out):
    datasets: list[DatasetOut]
    next_page_token: str | None = None
