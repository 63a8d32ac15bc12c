"""Plain value objects returned by the store and the tracking API."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["ArtifactInfo", "Experiment", "Metric", "Run", "RunStatus"]


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
