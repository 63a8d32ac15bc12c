"""The metadata-store contract.

:class:`Store` validates every input once, then calls primitives that each
backend implements (``_create_run``, ``_log_batch`` ...). The SQL store
(SQLite, PostgreSQL) is the only backend today; the REST client of the server
implements the same primitives so the tracking API cannot tell them apart.
"""

from __future__ import annotations

import functools
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from keel import _validation as v
from keel.entities import ArtifactInfo, Experiment, Metric, Run, RunStatus
from keel.exceptions import InvalidSpecError

if TYPE_CHECKING:
    from keel.store._filter import Node, OrderBy

__all__ = ["MetricPoint", "Store", "ViewType", "now_ms"]

ViewType = Literal["active", "deleted", "all"]
#: A metric point as the store receives it: (key, value, step, timestamp in µs).
MetricPoint = tuple[str, float, int, int]

MAX_RESULTS_LIMIT = 100_000
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


@functools.lru_cache(maxsize=256)
def _parse(
    filter: str | None, order_by: tuple[str, ...]
) -> tuple[Node | None, tuple[OrderBy, ...]]:
    from keel.store._filter import parse_filter, parse_order_by

    return parse_filter(filter), tuple(parse_order_by(order_by))


def now_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def _view(view: str) -> ViewType:
    if view not in ("active", "deleted", "all"):
        raise InvalidSpecError(f"view must be 'active', 'deleted' or 'all', got {view!r}.")
    return view  # type: ignore[return-value]


class Store(ABC):
    """Experiments, runs, params, metrics, tags and artifact records."""

    # -- experiments ----------------------------------------------------------------------
    def create_experiment(
        self,
        name: str,
        *,
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> Experiment:
        """Create an experiment; raises AlreadyExistsError if the name is taken."""
        v.check_name("Experiment", name)
        clean_tags = self._check_tags(tags or {})
        return self._create_experiment(name, artifact_location, clean_tags, description)

    def get_or_create_experiment(self, name: str) -> Experiment:
        """Return the experiment called ``name``, creating it if needed."""
        v.check_name("Experiment", name)
        return self._get_or_create_experiment(name)

    @abstractmethod
    def _create_experiment(
        self,
        name: str,
        artifact_location: str | None,
        tags: dict[str, str],
        description: str | None,
    ) -> Experiment: ...

    @abstractmethod
    def _get_or_create_experiment(self, name: str) -> Experiment: ...

    @abstractmethod
    def get_experiment(self, experiment_id: str) -> Experiment:
        """Experiment by id; raises NotFoundError."""

    @abstractmethod
    def get_experiment_by_name(self, name: str) -> Experiment:
        """Experiment by name; raises NotFoundError suggesting close names."""

    def list_experiments(self, view: str = "active") -> list[Experiment]:
        """Experiments, oldest first."""
        return self._list_experiments(_view(view))

    @abstractmethod
    def _list_experiments(self, view: ViewType) -> list[Experiment]: ...

    @abstractmethod
    def set_experiment_lifecycle(self, experiment_id: str, stage: str) -> None:
        """Soft-delete (``deleted``) or restore (``active``) an experiment."""

    # -- runs ------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        user: str | None = None,
        start_time: int | None = None,
        environment_digest: str | None = None,
        heartbeat: bool = False,
    ) -> Run:
        """Create a RUNNING run. With ``heartbeat`` it is reaped if heartbeats stop."""
        if name is not None:
            v.check_name("Run", name)
        if parent_run_id is not None:
            v.check_run_id(parent_run_id)
        if description is not None and len(description) > v.MAX_DESCRIPTION:
            raise InvalidSpecError(f"Run description is longer than {v.MAX_DESCRIPTION} chars.")
        return self._create_run(
            experiment_id,
            name,
            parent_run_id,
            self._check_tags(tags or {}),
            description,
            user,
            start_time if start_time is not None else now_ms(),
            environment_digest,
            heartbeat,
        )

    @abstractmethod
    def _create_run(
        self,
        experiment_id: str,
        name: str | None,
        parent_run_id: str | None,
        tags: dict[str, str],
        description: str | None,
        user: str | None,
        start_time: int,
        environment_digest: str | None,
        heartbeat: bool,
    ) -> Run: ...

    def get_run(self, run_id: str) -> Run:
        """A run with params, latest metrics and tags; raises NotFoundError."""
        return self._get_run(v.check_run_id(run_id))

    @abstractmethod
    def _get_run(self, run_id: str) -> Run: ...

    def run_status(self, run_id: str) -> RunStatus:
        """The status of a run (cheaper than :meth:`get_run`)."""
        return self._run_status(v.check_run_id(run_id))

    @abstractmethod
    def _run_status(self, run_id: str) -> RunStatus: ...

    def end_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        *,
        end_time: int | None = None,
        failure: str | None = None,
    ) -> None:
        """Set a terminal status (FINISHED, FAILED, KILLED) on a run."""
        try:
            st = RunStatus(str(status).upper())
        except ValueError:
            raise InvalidSpecError(
                f"Unknown run status {status!r}; use one of "
                f"{', '.join(s.value for s in RunStatus)}."
            ) from None
        self._set_status(v.check_run_id(run_id), st, end_time or now_ms(), failure)

    @abstractmethod
    def _set_status(
        self, run_id: str, status: RunStatus, end_time: int | None, failure: str | None
    ) -> None: ...

    def set_run_lifecycle(self, run_id: str, stage: str) -> None:
        """Soft-delete (``deleted``) or restore (``active``) a run."""
        if stage not in ("active", "deleted"):
            raise InvalidSpecError(f"lifecycle stage must be 'active' or 'deleted', got {stage!r}.")
        self._set_run_lifecycle(v.check_run_id(run_id), stage)

    @abstractmethod
    def _set_run_lifecycle(self, run_id: str, stage: str) -> None: ...

    @abstractmethod
    def heartbeat(self, run_ids: Sequence[str]) -> None:
        """Record that the processes owning these runs are alive."""

    @abstractmethod
    def reap_dead_runs(self, timeout: float) -> list[str]:
        """Mark RUNNING runs whose heartbeat is older than ``timeout`` s as FAILED."""

    # -- params, metrics, tags -------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, object] | None = None,
    ) -> None:
        """Log metrics, params and tags in one transaction: all or nothing.

        A metric point is identified by (run, key, step, timestamp); logging the
        same point twice stores it once, so retries are safe.
        """
        now_us = time.time_ns() // 1000
        points: list[MetricPoint] = []
        seen: set[tuple[str, int, int]] = set()
        keys: set[str] = set()
        for m in metrics:
            key = m.key
            if key not in keys:
                keys.add(v.check_key("Metric", key))
            value = m.value if type(m.value) is float else v.check_metric_value(key, m.value)
            step = (
                m.step
                if type(m.step) is int and _I64_MIN <= m.step <= _I64_MAX
                else v.check_step(key, m.step)
            )
            ts = now_us if m.timestamp is None else int(m.timestamp) * 1000
            while (key, step, ts) in seen:  # distinct points sharing a timestamp
                ts += 1
            seen.add((key, step, ts))
            points.append((key, value, step, ts))
        self.log_points(
            run_id,
            points,
            params=self._check_params(params or {}),
            tags=self._check_tags(tags or {}),
        )

    def log_points(
        self,
        run_id: str,
        points: Sequence[MetricPoint],
        *,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Low-level, pre-validated form of :meth:`log_batch` (µs timestamps)."""
        self._log_batch(v.check_run_id(run_id), points, dict(params or {}), dict(tags or {}))

    @abstractmethod
    def _log_batch(
        self,
        run_id: str,
        points: Sequence[MetricPoint],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None: ...

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a tag from a run; raises NotFoundError if it is not set."""
        self._delete_tag(v.check_run_id(run_id), v.check_key("Tag", key))

    @abstractmethod
    def _delete_tag(self, run_id: str, key: str) -> None: ...

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of one metric, ordered by step then time."""
        return self._get_metric_history(v.check_run_id(run_id), v.check_key("Metric", key))

    @abstractmethod
    def _get_metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    # -- search ----------------------------------------------------------------------------
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view: str = "active",
    ) -> tuple[list[Run], str | None]:
        """Runs matching a filter (see docs/search.md); returns (runs, next page token)."""
        if not isinstance(max_results, int) or not 0 < max_results <= MAX_RESULTS_LIMIT:
            raise InvalidSpecError(
                f"max_results must be an integer between 1 and {MAX_RESULTS_LIMIT}, "
                f"got {max_results!r}; page through more with page_token."
            )
        node, order = _parse(filter, tuple(order_by or ()))
        return self._search_runs(
            list(experiment_ids), node, list(order), max_results, page_token, _view(view)
        )

    @abstractmethod
    def _search_runs(
        self,
        experiment_ids: list[str],
        node: Node | None,
        order: list[OrderBy],
        max_results: int,
        page_token: str | None,
        view: ViewType,
    ) -> tuple[list[Run], str | None]: ...

    # -- artifacts -------------------------------------------------------------------------
    def record_artifacts(self, run_id: str, entries: Sequence[ArtifactInfo]) -> None:
        """Attach stored blobs to a run under their artifact paths (replacing same paths)."""
        clean = [ArtifactInfo(v.check_artifact_path(e.path), e.digest, e.size) for e in entries]
        self._record_artifacts(v.check_run_id(run_id), clean)

    @abstractmethod
    def _record_artifacts(self, run_id: str, entries: list[ArtifactInfo]) -> None: ...

    def list_artifacts(self, run_id: str, prefix: str = "") -> list[ArtifactInfo]:
        """Files logged to a run under ``prefix`` (a folder or file path)."""
        return self._list_artifacts(
            v.check_run_id(run_id), v.check_artifact_path(prefix, allow_empty=True)
        )

    @abstractmethod
    def _list_artifacts(self, run_id: str, prefix: str) -> list[ArtifactInfo]: ...

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- shared validation ----------------------------------------------------------------
    @staticmethod
    def _check_params(params: Mapping[str, object]) -> dict[str, str]:
        out = {}
        for key, value in params.items():
            v.check_key("Param", key)
            if isinstance(value, float) and not math.isfinite(value):
                value = repr(value)
            out[key] = v.check_value("Param", key, v.jsonable(value), v.MAX_PARAM_VALUE)
        return out

    @staticmethod
    def _check_tags(tags: Mapping[str, object]) -> dict[str, str]:
        return {
            v.check_key("Tag", key): v.check_value("Tag", key, v.jsonable(value), v.MAX_TAG_VALUE)
            for key, value in tags.items()
        }
