"""Plain value objects returned by the store and the tracking API."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "STAGES",
    "ApprovalRequest",
    "ArtifactInfo",
    "AuditEvent",
    "Experiment",
    "Metric",
    "ModelVersion",
    "RegisteredModel",
    "Run",
    "RunStatus",
]


class RunStatus(StrEnum):
    """Lifecycle status of a run."""

    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminal(self) -> bool:
        """True once the run has ended."""
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric point. ``timestamp`` is milliseconds since the epoch."""

    key: str
    value: float
    step: int = 0
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Experiment:
    """A named group of runs."""

    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    created_at: int
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Run:
    """A run with its params, latest metric values and tags.

    Times are milliseconds since the epoch; ``metrics`` holds the latest value of
    each metric (highest step, then latest timestamp).
    """

    run_id: str
    experiment_id: str
    name: str
    status: RunStatus
    start_time: int
    end_time: int | None
    parent_run_id: str | None
    lifecycle_stage: str
    user: str | None
    description: str | None = None
    failure: str | None = None
    environment_digest: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds between start and end, or ``None`` while running."""
        return None if self.end_time is None else (self.end_time - self.start_time) / 1000

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (NaN/inf metrics stay floats)."""
        data = asdict(self)
        data["status"] = str(self.status)
        data["start"] = _iso(self.start_time)
        data["end"] = _iso(self.end_time)
        return data


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """One file logged to a run: its path, content hash and size."""

    path: str
    digest: str
    size: int


STAGES = ("None", "Staging", "Production", "Shadow", "Archived")


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model with its versions' aliases and governance settings."""

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
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    source: str
    run_id: str | None
    manifest_digest: str
    flavor: str
    format: str
    spec: dict[str, Any]
    unsafe: bool
    metrics: dict[str, float]
    datasets: list[str]
    stage: str
    description: str | None
    signature_b64: str | None
    signed_by: str | None
    created_by: str | None
    created_at: int
    updated_at: int
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """``models:/<name>/<version>``."""
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A request to move a version to a protected stage or alias."""

    id: int
    name: str
    version: int
    target_kind: str  # "stage" | "alias"
    target: str
    requested_by: str
    comment: str | None
    status: str  # pending | applied | rejected | cancelled
    created_at: int
    resolved_at: int | None
    votes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the hash-chained audit log."""

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return asdict(self)
