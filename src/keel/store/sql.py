"""The SQL metadata store: SQLite (default) and PostgreSQL, one code path.

Queries are SQLAlchemy Core (no ORM objects on hot paths). Writes on SQLite
take the write lock up front (``BEGIN IMMEDIATE``) so concurrent writers queue
on the busy timeout instead of failing on a lock upgrade; WAL mode lets
readers run alongside one writer, and ``synchronous=FULL`` makes every commit
durable before it returns.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from keel.entities import ArtifactInfo, Experiment, Metric, Run, RunStatus
from keel.exceptions import (
    AlreadyExistsError,
    BackendUnavailableError,
    InvalidSpecError,
    InvalidStateError,
    NotFoundError,
    ParamConflictError,
    did_you_mean,
)
from keel.store import schema as t
from keel.store._filter import Node, OrderBy

if TYPE_CHECKING:
    from keel.store._auth import SqlAuth
    from keel.store._data import SqlData
    from keel.store._deploy import SqlDeployments
    from keel.store._monitor import SqlMonitors
    from keel.store._registry import SqlRegistry
from keel.store.base import (
    MAX_RESULTS_LIMIT,
    MetricPoint,
    Store,
    ViewType,
    _parse,
    _view,
    now_ms,
)

__all__ = ["HEAD_REVISION", "RunRows", "SqlStore", "normalize_url"]

#: The newest Alembic revision; tests check it matches the migration scripts.
HEAD_REVISION = "0006"

_CHUNK = 5000  # rows per IN (...) / executemany chunk
_LOAD_RUNS = (
    "SELECT r.pk, r.run_id, r.experiment_id, r.name, r.status, r.start_time, r.end_time, "
    'r.lifecycle_stage, r."user", r.description, r.failure, r.environment_digest, p.run_id '
    "FROM runs r LEFT OUTER JOIN runs p ON p.pk = r.parent_pk WHERE r.pk IN ({marks})"
)
_LOAD_PARAMS = "SELECT run_pk, key, value FROM params WHERE run_pk IN ({marks})"
_LOAD_TAGS = "SELECT run_pk, key, value FROM tags WHERE run_pk IN ({marks})"
_LOAD_LATEST = "SELECT run_pk, key_id, value FROM latest_metrics WHERE run_pk IN ({marks})"
_LOAD_LATEST_NAMED = (
    "SELECT l.run_pk, k.name, l.value FROM latest_metrics l "
    "JOIN metric_keys k ON k.id = l.key_id WHERE l.run_pk IN ({marks})"
)
_COLS = "(run_pk, key_id, step, ts, value)"
_INSERT_POINTS = {
    "sqlite": f"INSERT OR IGNORE INTO metrics {_COLS} VALUES (?, ?, ?, ?, ?)",
    "postgresql": f"INSERT INTO metrics {_COLS} VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
}


class RunRows(NamedTuple):
    """Runs as rows of their tables, for serialising thousands of runs without Run objects.

    Returned by :meth:`SqlStore.search_run_rows`. ``runs`` holds one tuple per run,
    in search order: ``(pk, run_id, experiment_id, name, status, start_time, end_time,
    lifecycle_stage, user, description, failure, environment_digest, parent_run_id)``;
    the other lists hold ``(pk, key, value)`` rows in no particular order. A NaN
    metric value is ``None``.
    """

    runs: list[tuple[Any, ...]]
    params: list[tuple[int, str, str]]
    tags: list[tuple[int, str, str]]
    metrics: list[tuple[int, str, float | None]]


def normalize_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _nan_to_null(value: float) -> float | None:
    return None if math.isnan(value) else value


def _null_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


_ADJ = [
    "bold",
    "brave",
    "calm",
    "eager",
    "fair",
    "fast",
    "gentle",
    "keen",
    "lucky",
    "merry",
    "nimble",
    "proud",
    "quick",
    "sharp",
    "swift",
    "wise",
]
_NOUN = [
    "badger",
    "crane",
    "eagle",
    "falcon",
    "fox",
    "hawk",
    "heron",
    "lark",
    "lynx",
    "otter",
    "owl",
    "panda",
    "raven",
    "seal",
    "tiger",
    "wolf",
]


def _run_name() -> str:
    return f"{random.choice(_ADJ)}-{random.choice(_NOUN)}-{random.randint(1, 999)}"


class SqlStore(Store):
    """Metadata store over SQLAlchemy.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///.keel/keel.db`` or
            ``postgresql+psycopg://user@host/db``.
        artifact_location: default artifact location recorded on new experiments.
        migrate: apply pending migrations on first use.
    """

    def __init__(self, url: str, *, artifact_location: str = "", migrate: bool = True) -> None:
        self.url = normalize_url(url)
        self.artifact_location = artifact_location
        self.migrate = migrate
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._key_ids: dict[str, int] = {}
        self._key_names: dict[int, str] = {}
        self._last_reap = 0.0
        self._queries: dict[tuple[Any, ...], sa.Select[Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "artifact_location": self.artifact_location,
            "migrate": self.migrate,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        SqlStore.__init__(
            self,
            state["url"],
            artifact_location=state["artifact_location"],
            migrate=state["migrate"],
        )

    @property
    def auth(self) -> SqlAuth:
        """Users, API tokens and role checks sharing this store's engine."""
        from keel.store._auth import SqlAuth

        return SqlAuth(self)

    @property
    def data(self) -> SqlData:
        """Dataset versions sharing this store's engine."""
        from keel.store._data import SqlData

        return SqlData(self)

    @property
    def deployments(self) -> SqlDeployments:
        """Deployments, the prediction log and feedback sharing this store's engine."""
        from keel.store._deploy import SqlDeployments

        return SqlDeployments(self)

    @property
    def monitors(self) -> SqlMonitors:
        """Monitors, their runs and alerts sharing this store's engine."""
        from keel.store._monitor import SqlMonitors

        return SqlMonitors(self)

    @property
    def registry(self) -> SqlRegistry:
        """Registry, roles, lineage and audit storage sharing this store's engine."""
        from keel.store._registry import SqlRegistry

        return SqlRegistry(self)

    # -- engine --------------------------------------------------------------------------
    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.url.split(":", 1)[0].split("+", 1)[0]

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created (and the schema migrated) on first use."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = self._create_engine()
                    if self.migrate:
                        from keel.store.migrate import ensure_schema

                        ensure_schema(engine, self.url)
                    self._engine = engine
        return self._engine

    def _create_engine(self) -> Engine:
        if self.dialect == "sqlite":
            return _sqlite_engine(self.url)
        if self.dialect == "postgresql":
            try:
                return sa.create_engine(self.url, pool_pre_ping=True, pool_size=10)
            except ModuleNotFoundError as e:
                raise BackendUnavailableError(
                    f"PostgreSQL needs the psycopg driver: pip install 'keel[postgres]' ({e})."
                ) from e
        from keel.exceptions import NoSuchBackendError

        raise NoSuchBackendError(
            f"No metadata store for '{self.url.split(':', 1)[0]}'. "
            "Use sqlite:///path/keel.db or postgresql+psycopg://user@host/db.",
            url=self.url,
        )

    def close(self) -> None:
        """Dispose of pooled connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(keel_write=True)
                with conn.begin():
                    yield conn
        except exc.OperationalError as e:
            raise BackendUnavailableError(
                f"The metadata store at {self._safe_url()} is unavailable: {e.orig}. "
                "Check that the database is reachable and retry.",
            ) from e

    def _safe_url(self) -> str:
        return sa.make_url(self.url).render_as_string(hide_password=True)

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    # -- experiments -----------------------------------------------------------------------
    def _experiment(self, conn: Connection, row: Any) -> Experiment:
        tag_rows = conn.execute(
            sa.select(t.experiment_tags.c.key, t.experiment_tags.c.value).where(
                t.experiment_tags.c.experiment_id == row.id
            )
        )
        return Experiment(
            experiment_id=str(row.id),
            name=row.name,
            artifact_location=row.artifact_location,
            lifecycle_stage=row.lifecycle_stage,
            created_at=row.created_at,
            description=row.description,
            tags=dict(tag_rows.all()),
        )

    def _create_experiment(
        self,
        name: str,
        artifact_location: str | None,
        tags: dict[str, str],
        description: str | None,
    ) -> Experiment:
        now = now_ms()
        try:
            with self._tx() as conn:
                exp_id = conn.execute(
                    sa.insert(t.experiments)
                    .values(
                        name=name,
                        artifact_location=artifact_location or self.artifact_location,
                        lifecycle_stage="active",
                        description=description,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(t.experiments.c.id)
                ).scalar_one()
                if tags:
                    conn.execute(
                        sa.insert(t.experiment_tags),
                        [{"experiment_id": exp_id, "key": k, "value": v} for k, v in tags.items()],
                    )
                row = conn.execute(
                    sa.select(t.experiments).where(t.experiments.c.id == exp_id)
                ).one()
                return self._experiment(conn, row)
        except exc.IntegrityError as e:
            raise AlreadyExistsError(
                f"An experiment named '{name}' already exists (it may be deleted: "
                "see `keel experiments list --all`).",
                name=name,
            ) from e

    def _get_or_create_experiment(self, name: str) -> Experiment:
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(t.experiments).where(t.experiments.c.name == name)
            ).one_or_none()
            if row is not None:
                return self._experiment(conn, row)
        try:
            return self._create_experiment(name, None, {}, None)
        except AlreadyExistsError:  # created concurrently by another process
            return self.get_experiment_by_name(name)

    def get_experiment(self, experiment_id: str) -> Experiment:
        """Experiment by id; raises NotFoundError."""
        exp_pk = self._exp_pk(experiment_id)
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(t.experiments).where(t.experiments.c.id == exp_pk)
            ).one_or_none()
            if row is None:
                raise NotFoundError(
                    f"Experiment id {experiment_id} not found; see `keel experiments list`.",
                    experiment_id=str(experiment_id),
                )
            return self._experiment(conn, row)

    def get_experiment_by_name(self, name: str) -> Experiment:
        """Experiment by name; raises NotFoundError suggesting close names."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(t.experiments).where(t.experiments.c.name == name)
            ).one_or_none()
            if row is None:
                names = conn.execute(sa.select(t.experiments.c.name)).scalars().all()
                raise NotFoundError(
                    f"Experiment '{name}' not found.{did_you_mean(name, names)} "
                    "See `keel experiments list`.",
                    name=name,
                )
            return self._experiment(conn, row)

    def _list_experiments(self, view: ViewType) -> list[Experiment]:
        q = sa.select(t.experiments).order_by(t.experiments.c.id)
        if view != "all":
            q = q.where(t.experiments.c.lifecycle_stage == view)
        with self._tx(write=False) as conn:
            return [self._experiment(conn, row) for row in conn.execute(q).all()]

    def set_experiment_lifecycle(self, experiment_id: str, stage: str) -> None:
        """Soft-delete (``deleted``) or restore (``active``) an experiment."""
        if stage not in ("active", "deleted"):
            raise InvalidSpecError(f"lifecycle stage must be 'active' or 'deleted', got {stage!r}.")
        with self._tx() as conn:
            n = conn.execute(
                sa.update(t.experiments)
                .where(t.experiments.c.id == self._exp_pk(experiment_id))
                .values(lifecycle_stage=stage, updated_at=now_ms())
            ).rowcount
        if n == 0:
            raise NotFoundError(
                f"Experiment id {experiment_id} not found.", experiment_id=experiment_id
            )

    @staticmethod
    def _exp_pk(experiment_id: str | int) -> int:
        try:
            return int(experiment_id)
        except (TypeError, ValueError):
            raise InvalidSpecError(
                f"{experiment_id!r} is not an experiment id (ids are integers); "
                "to use a name, call get_experiment_by_name().",
                experiment_id=str(experiment_id),
            ) from None

    # -- runs -------------------------------------------------------------------------------
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
    ) -> Run:
        import uuid

        run_id = uuid.uuid4().hex
        exp_pk = self._exp_pk(experiment_id)
        run_name = name or _run_name()
        with self._tx() as conn:
            exp = conn.execute(
                sa.select(t.experiments.c.lifecycle_stage).where(t.experiments.c.id == exp_pk)
            ).one_or_none()
            if exp is None:
                raise NotFoundError(
                    f"Experiment id {experiment_id} not found; see `keel experiments list`.",
                    experiment_id=str(experiment_id),
                )
            if exp.lifecycle_stage != "active":
                raise InvalidStateError(
                    f"Experiment {experiment_id} is deleted; restore it with "
                    f"`keel experiments restore {experiment_id}` before adding runs.",
                    experiment_id=str(experiment_id),
                )
            parent_pk = None
            if parent_run_id is not None:
                parent_pk = self._run_row(conn, parent_run_id).pk
            pk = conn.execute(
                sa.insert(t.runs)
                .values(
                    run_id=run_id,
                    experiment_id=exp_pk,
                    name=run_name,
                    status=RunStatus.RUNNING.value,
                    start_time=start_time,
                    heartbeat_at=now_ms() if heartbeat else None,
                    parent_pk=parent_pk,
                    lifecycle_stage="active",
                    user=user,
                    description=description,
                    environment_digest=environment_digest,
                )
                .returning(t.runs.c.pk)
            ).scalar_one()
            if tags:
                conn.execute(
                    sa.insert(t.tags),
                    [{"run_pk": pk, "key": k, "value": v} for k, v in tags.items()],
                )
        return Run(
            run_id=run_id,
            experiment_id=str(exp_pk),
            name=run_name,
            status=RunStatus.RUNNING,
            start_time=start_time,
            end_time=None,
            parent_run_id=parent_run_id,
            lifecycle_stage="active",
            user=user,
            description=description,
            environment_digest=environment_digest,
            tags=dict(tags),
        )

    def _run_row(self, conn: Connection, run_id: str) -> Any:
        row = conn.execute(
            sa.select(t.runs.c.pk, t.runs.c.status, t.runs.c.lifecycle_stage).where(
                t.runs.c.run_id == run_id
            )
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"Run '{run_id}' not found; see `keel runs list`.", run_id=run_id)
        return row

    def _get_run(self, run_id: str) -> Run:
        self._maybe_reap()
        with self._tx(write=False) as conn:
            pk = self._run_row(conn, run_id).pk
            runs = self._load_runs(conn, [pk])
        return runs[0]

    def _run_status(self, run_id: str) -> RunStatus:
        with self._tx(write=False) as conn:
            return RunStatus(self._run_row(conn, run_id).status)

    def _load_runs(self, conn: Connection, pks: Sequence[int]) -> list[Run]:
        """Materialise runs (in ``pks`` order) with params, latest metrics and tags.

        Four set-based queries per chunk of runs, sent as plain SQL and fetched
        with ``fetchall``: loading thousands of runs is dominated by row count,
        and per-row result processing would cost more than the queries.
        """
        if not pks:
            return []
        base: dict[int, Any] = {}
        params: dict[int, dict[str, str]] = {pk: {} for pk in pks}
        tags: dict[int, dict[str, str]] = {pk: {} for pk in pks}
        metrics: dict[int, dict[str, float]] = {pk: {} for pk in pks}
        for row in self._fetch_by_pks(conn, _LOAD_RUNS, pks):
            base[row[0]] = row
        for pk, key, value in self._fetch_by_pks(conn, _LOAD_PARAMS, pks):
            params[pk][key] = value
        for pk, key, value in self._fetch_by_pks(conn, _LOAD_TAGS, pks):
            tags[pk][key] = value
        latest = self._fetch_by_pks(conn, _LOAD_LATEST, pks)
        names = self._metric_names(conn, {row[1] for row in latest})
        for pk, key_id, value in latest:
            metrics[pk][names[key_id]] = math.nan if value is None else value
        out = []
        for pk in pks:
            (
                _,
                run_id,
                exp_id,
                name,
                status,
                start,
                end,
                stage,
                user,
                desc,
                failure,
                env,
                parent,
            ) = base[pk]
            out.append(
                Run(
                    run_id=run_id,
                    experiment_id=str(exp_id),
                    name=name,
                    status=RunStatus(status),
                    start_time=start,
                    end_time=end,
                    parent_run_id=parent,
                    lifecycle_stage=stage,
                    user=user,
                    description=desc,
                    failure=failure,
                    environment_digest=env,
                    params=params[pk],
                    metrics=metrics[pk],
                    tags=tags[pk],
                )
            )
        return out

    def _fetch_by_pks(self, conn: Connection, sql: str, pks: Sequence[int]) -> list[Any]:
        """Rows of ``sql`` (with ``IN ({marks})``) for ``pks``, in chunks, as plain tuples."""
        mark = "?" if self.dialect == "sqlite" else "%s"
        cursor = conn.connection.cursor()  # the DBAPI cursor, inside our transaction
        rows: list[Any] = []
        for i in range(0, len(pks), _CHUNK):
            chunk = tuple(pks[i : i + _CHUNK])
            cursor.execute(sql.format(marks=", ".join([mark] * len(chunk))), chunk)
            rows += cursor.fetchall()
        return rows

    def _set_status(
        self, run_id: str, status: RunStatus, end_time: int | None, failure: str | None
    ) -> None:
        values: dict[str, Any] = {"status": status.value}
        if status.is_terminal:
            values["end_time"] = end_time
        if failure is not None:
            values["failure"] = failure
        with self._tx() as conn:
            self._run_row(conn, run_id)
            conn.execute(sa.update(t.runs).where(t.runs.c.run_id == run_id).values(**values))

    def _set_run_lifecycle(self, run_id: str, stage: str) -> None:
        with self._tx() as conn:
            self._run_row(conn, run_id)
            conn.execute(
                sa.update(t.runs)
                .where(t.runs.c.run_id == run_id)
                .values(lifecycle_stage=stage, deleted_at=now_ms() if stage == "deleted" else None)
            )

    def heartbeat(self, run_ids: Sequence[str]) -> None:
        """Record that the processes owning these runs are alive."""
        if not run_ids:
            return
        with self._tx() as conn:
            conn.execute(
                sa.update(t.runs)
                .where(t.runs.c.run_id.in_(list(run_ids)), t.runs.c.status == "RUNNING")
                .values(heartbeat_at=now_ms())
            )

    def reap_dead_runs(self, timeout: float) -> list[str]:
        """Mark RUNNING runs whose heartbeat is older than ``timeout`` s as FAILED."""
        if not timeout > 0:  # NaN too
            raise InvalidSpecError(f"timeout must be a positive number of seconds, got {timeout}.")
        now = now_ms()
        cutoff = now - int(min(timeout * 1000, now))  # inf or huge: no heartbeat is that old
        r = t.runs.c
        with self._tx() as conn:
            dead = conn.execute(
                sa.select(r.run_id, r.heartbeat_at).where(
                    r.status == "RUNNING", r.heartbeat_at.is_not(None), r.heartbeat_at < cutoff
                )
            ).all()
            for run_id, last in dead:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(last / 1000))
                conn.execute(
                    sa.update(t.runs)
                    .where(r.run_id == run_id, r.status == "RUNNING")
                    .values(
                        status=RunStatus.FAILED.value,
                        end_time=last,
                        failure=(
                            f"The process running this run stopped sending heartbeats "
                            f"(last at {when} UTC, "
                            f"timeout {timeout:g} s): it crashed or was killed."
                        ),
                    )
                )
        return [run_id for run_id, _ in dead]

    def _maybe_reap(self) -> None:
        from keel.config import load_settings

        now = time.monotonic()
        if now - self._last_reap < 10:
            return
        self._last_reap = now
        with contextlib.suppress(Exception):
            self.reap_dead_runs(load_settings().heartbeat_timeout)

    # -- params, metrics, tags ---------------------------------------------------------------
    def _metric_names(
        self, conn: Connection, need: Iterable[int] = (), *, reload: bool = False
    ) -> dict[int, str]:
        """Map metric key ids to names, reloading the (small) key table when needed."""
        if reload or any(i not in self._key_names for i in need):
            for key_id, name in conn.execute(sa.select(t.metric_keys.c.id, t.metric_keys.c.name)):
                self._key_ids[name] = key_id
                self._key_names[key_id] = name
        return self._key_names

    def _ensure_key_ids(self, conn: Connection, keys: set[str]) -> dict[str, int]:
        missing = [k for k in keys if k not in self._key_ids]
        if missing:
            conn.execute(
                self._insert(t.metric_keys).on_conflict_do_nothing(index_elements=["name"]),
                [{"name": k} for k in missing],
            )
            for key_id, name in conn.execute(
                sa.select(t.metric_keys.c.id, t.metric_keys.c.name).where(
                    t.metric_keys.c.name.in_(missing)
                )
            ):
                self._key_ids[name] = key_id
                self._key_names[key_id] = name
        return {k: self._key_ids[k] for k in keys}

    def _log_batch(
        self,
        run_id: str,
        points: Sequence[MetricPoint],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        if not (points or params or tags):
            return
        with self._tx() as conn:
            row = self._run_row(conn, run_id)
            if (points or params) and row.status != RunStatus.RUNNING.value:
                raise InvalidStateError(
                    f"Run '{run_id}' is {row.status}: metrics and params can only be logged "
                    "while a run is RUNNING (tags can still be set). Start a new run instead.",
                    run_id=run_id,
                    status=row.status,
                )
            pk = row.pk
            if params:
                self._write_params(conn, pk, run_id, params)
            if tags:
                stmt = self._insert(t.tags)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["run_pk", "key"], set_={"value": stmt.excluded.value}
                    ),
                    [{"run_pk": pk, "key": k, "value": v} for k, v in tags.items()],
                )
            if points:
                self._write_points(conn, pk, points)

    def _write_params(self, conn: Connection, pk: int, run_id: str, params: dict[str, str]) -> None:
        existing: dict[str, str] = dict(
            conn.execute(
                sa.select(t.params.c.key, t.params.c.value).where(
                    t.params.c.run_pk == pk, t.params.c.key.in_(list(params))
                )
            ).all()
        )
        for key, old in existing.items():
            if old != params[key]:
                raise ParamConflictError(
                    f"Param '{key}' of run '{run_id}' is already '{old}'; params are immutable, "
                    f"so it cannot become '{params[key]}'. Log it under another key or start "
                    "a new run.",
                    run_id=run_id,
                    key=key,
                    old=old,
                    new=params[key],
                )
        new = [{"run_pk": pk, "key": k, "value": v} for k, v in params.items() if k not in existing]
        if new:
            conn.execute(sa.insert(t.params), new)

    def _write_points(self, conn: Connection, pk: int, points: Sequence[MetricPoint]) -> None:
        ids = self._ensure_key_ids(conn, {p[0] for p in points})
        latest: dict[str, MetricPoint] = {}
        for p in points:
            cur = latest.get(p[0])
            if cur is None or (p[2], p[3]) >= (cur[2], cur[3]):
                latest[p[0]] = p
        # The hottest statement in keel: plain tuples straight to the driver's
        # executemany (SQLAlchemy's per-row parameter processing cost 3x the insert).
        rows = [
            (pk, ids[key], step, ts, None if value != value else value)
            for key, value, step, ts in points
        ]
        sql = _INSERT_POINTS[self.dialect]
        for i in range(0, len(rows), _CHUNK * 4):
            conn.exec_driver_sql(sql, rows[i : i + _CHUNK * 4])
        stmt = self._insert(t.latest_metrics)
        ex = stmt.excluded
        lm = t.latest_metrics.c
        upsert = stmt.on_conflict_do_update(
            index_elements=["run_pk", "key_id"],
            set_={"step": ex.step, "ts": ex.ts, "value": ex.value},
            where=sa.or_(ex.step > lm.step, sa.and_(ex.step == lm.step, ex.ts >= lm.ts)),
        )
        conn.execute(
            upsert,
            [
                {"run_pk": pk, "key_id": ids[k], "step": s, "ts": ts, "value": _nan_to_null(val)}
                for k, val, s, ts in latest.values()
            ],
        )

    def _delete_tag(self, run_id: str, key: str) -> None:
        with self._tx() as conn:
            pk = self._run_row(conn, run_id).pk
            n = conn.execute(
                sa.delete(t.tags).where(t.tags.c.run_pk == pk, t.tags.c.key == key)
            ).rowcount
        if n == 0:
            raise NotFoundError(f"Run '{run_id}' has no tag '{key}'.", run_id=run_id, key=key)

    def _get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        m = t.metrics.c
        with self._tx(write=False) as conn:
            pk = self._run_row(conn, run_id).pk
            key_id = conn.execute(
                sa.select(t.metric_keys.c.id).where(t.metric_keys.c.name == key)
            ).scalar_one_or_none()
            if key_id is None:
                return []
            rows = conn.execute(
                sa.select(m.step, m.ts, m.value)
                .where(m.run_pk == pk, m.key_id == key_id)
                .order_by(m.step, m.ts)
            ).all()
        return [Metric(key, _null_to_nan(val), step, ts // 1000) for step, ts, val in rows]

    # -- search -------------------------------------------------------------------------------
    def _search_runs(
        self,
        experiment_ids: list[str],
        node: Node | None,
        order: list[OrderBy],
        max_results: int,
        page_token: str | None,
        view: ViewType,
    ) -> tuple[list[Run], str | None]:
        self._maybe_reap()
        with self._tx(write=False) as conn:
            pks, token = self._search_pks(
                conn, experiment_ids, node, order, max_results, page_token, view
            )
            runs = self._load_runs(conn, pks)
        return runs, token

    def _search_pks(
        self,
        conn: Connection,
        experiment_ids: list[str],
        node: Node | None,
        order: list[OrderBy],
        max_results: int,
        page_token: str | None,
        view: ViewType,
    ) -> tuple[list[int], str | None]:
        """The pks of one page of matching runs, in order, and the next page's token."""
        from keel.store._search_sql import compile_search

        offset = _decode_token(page_token)
        exp_pks = [self._exp_pk(e) for e in experiment_ids]
        wanted = _metric_keys_of(node, order)
        if not wanted <= self._key_ids.keys():  # a key created since we last looked
            self._metric_names(conn, reload=True)
        ids = tuple((k, self._key_ids.get(k)) for k in sorted(wanted))
        cache_key = (tuple(exp_pks), node, tuple(order), view, ids)
        query = self._queries.get(cache_key)
        if query is None:  # statement construction is ~10% of a small search
            if len(self._queries) > 256:
                self._queries.clear()
            query = self._queries[cache_key] = compile_search(
                exp_pks, node, order, view, dict(self._key_ids)
            )
        pks = [int(row[0]) for row in conn.execute(query.limit(max_results + 1).offset(offset))]
        more = len(pks) > max_results
        token = _encode_token(offset + max_results) if more else None
        return pks[:max_results], token

    def search_run_rows(
        self,
        experiment_ids: Sequence[str],
        *,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view: str = "active",
    ) -> tuple[RunRows, str | None]:
        """:meth:`search_runs`, with the runs as :class:`RunRows` instead of ``Run`` objects.

        Same filter, order, paging and errors; for servers that turn thousands of
        runs straight into JSON (the MLflow API's search), where building a ``Run``
        per row and then a dict from it would double the work.
        """
        if not isinstance(max_results, int) or not 0 < max_results <= MAX_RESULTS_LIMIT:
            raise InvalidSpecError(
                f"max_results must be an integer between 1 and {MAX_RESULTS_LIMIT}, "
                f"got {max_results!r}; page through more with page_token."
            )
        node, order = _parse(filter, tuple(order_by or ()))
        self._maybe_reap()
        with self._tx(write=False) as conn:
            pks, token = self._search_pks(
                conn, list(experiment_ids), node, list(order), max_results, page_token, _view(view)
            )
            by_pk = {row[0]: row for row in self._fetch_by_pks(conn, _LOAD_RUNS, pks)}
            rows = RunRows(
                [by_pk[pk] for pk in pks],
                self._fetch_by_pks(conn, _LOAD_PARAMS, pks),
                self._fetch_by_pks(conn, _LOAD_TAGS, pks),
                self._fetch_by_pks(conn, _LOAD_LATEST_NAMED, pks),
            )
        return rows, token

    # -- artifacts ------------------------------------------------------------------------------
    def _record_artifacts(self, run_id: str, entries: list[ArtifactInfo]) -> None:
        if not entries:
            return
        now = now_ms()
        with self._tx() as conn:
            row = self._run_row(conn, run_id)
            if row.status != RunStatus.RUNNING.value:
                raise InvalidStateError(
                    f"Run '{run_id}' is {row.status}: artifacts can only be logged while it is "
                    "RUNNING. Start a new run instead.",
                    run_id=run_id,
                    status=row.status,
                )
            stmt = self._insert(t.artifacts)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["run_pk", "path"],
                    set_={"digest": stmt.excluded.digest, "size": stmt.excluded.size},
                ),
                [
                    {
                        "run_pk": row.pk,
                        "path": e.path,
                        "digest": e.digest,
                        "size": e.size,
                        "created_at": now,
                    }
                    for e in entries
                ],
            )

    def _list_artifacts(self, run_id: str, prefix: str) -> list[ArtifactInfo]:
        a = t.artifacts.c
        with self._tx(write=False) as conn:
            pk = self._run_row(conn, run_id).pk
            q = sa.select(a.path, a.digest, a.size).where(a.run_pk == pk).order_by(a.path)
            if prefix:
                q = q.where(
                    sa.or_(a.path == prefix, a.path.startswith(prefix + "/", autoescape=True))
                )
            return [ArtifactInfo(p, d, s) for p, d, s in conn.execute(q)]

    def referenced_digests(self) -> set[str]:
        """Every blob digest a run references (for garbage collection)."""
        with self._tx(write=False) as conn:
            found = set(conn.execute(sa.select(t.artifacts.c.digest).distinct()).scalars())
            found |= set(
                conn.execute(
                    sa.select(t.runs.c.environment_digest)
                    .where(t.runs.c.environment_digest.is_not(None))
                    .distinct()
                ).scalars()
            )
        return found


def _metric_keys_of(node: Node | None, order: list[OrderBy]) -> set[str]:
    """Metric keys a filter and ordering mention."""
    from keel.store._filter import And, Not, Or

    keys = {o.key for o in order if o.entity == "metric"}
    stack = [node] if node is not None else []
    while stack:
        n = stack.pop()
        if isinstance(n, And | Or):
            stack.extend(n.items)
        elif isinstance(n, Not):
            stack.append(n.item)
        elif n.entity == "metric":
            keys.add(n.key)
    return keys


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError
        return offset
    except Exception:
        raise InvalidSpecError(
            f"Invalid page_token {token!r}: pass back the token a previous search returned.",
        ) from None


def _sqlite_engine(url: str) -> Engine:
    db = sa.make_url(url).database
    memory = not db or db == ":memory:"
    if not memory:
        assert db is not None
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60, "check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = sa.pool.StaticPool
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA case_sensitive_like=ON")
        cur.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
        cur.execute("PRAGMA temp_store=MEMORY")
        if not memory:
            cur.execute("PRAGMA mmap_size=1073741824")  # read pages without copying
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("keel_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
