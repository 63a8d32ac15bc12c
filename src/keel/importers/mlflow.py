"""Import an MLflow tracking store into keel, without importing mlflow.

Sources (:func:`open_source`):

* a SQLite database (``mlflow.db``, ``sqlite:///path``) or another SQLAlchemy URL
  MLflow supports (``postgresql://``, ``mysql://`` ...), read with SQLAlchemy Core,
  SQLite read-only. Artifacts are copied from local folders (plain paths and
  ``file://`` roots, also found again under the database's folder after a move);
* a tracking server (``http(s)://host:port``), read through its REST API with
  httpx. Artifacts come through the mlflow-artifacts API for ``mlflow-artifacts:``
  roots, and otherwise through the server's run and logged-model artifact endpoints.

What is copied: experiments (tags, description, lifecycle); runs (name, user,
status, start and end times, params, tags, every metric point with its step and
timestamp, NaN included, parent runs from ``mlflow.parentRunId``, lifecycle,
artifacts); MLflow 3 logged models, as files of their source run; the registry
(models with description and tags, versions with their files, source run, stage,
description and tags, aliases). The mapping is documented in docs/import.md.

Importing is idempotent and resumable: a run carries the MLflow run id in the tag
``keel.import.mlflow_run_id`` (and ``keel.import.pending`` until its copy is
complete) and a model version carries ``keel.import.mlflow_version``;
what is already there is skipped, a run interrupted mid-copy is completed, and a
run that was still RUNNING is brought up to date (points are deduplicated).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sqlite3
import tempfile
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, urlparse

import sqlalchemy as sa

from keel import _validation as v
from keel.entities import STAGES, ArtifactInfo, RunStatus
from keel.exceptions import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigError,
    InvalidSpecError,
    KeelError,
    NotFoundError,
    PermissionDeniedError,
    did_you_mean,
)
from keel.objects import BlobRef, Manifest

if TYPE_CHECKING:
    import httpx

    from keel.entities import Run
    from keel.store import Store
    from keel.store._registry import SqlRegistry
    from keel.tracking.client import Client

__all__ = [
    "DONE_TAG",
    "PENDING_TAG",
    "VERSION_TAG",
    "ImportReport",
    "MlflowSource",
    "Progress",
    "Tally",
    "import_mlflow",
    "open_source",
]

#: Tag of an imported run: the MLflow run id.
DONE_TAG = "keel.import.mlflow_run_id"
#: Tag of a run still being copied (removed when the copy is complete).
PENDING_TAG = "keel.import.pending"
#: Run tag prefix recording where an MLflow 3 logged model's files went in the run.
MODEL_PLACE_TAG = "keel.import.mlflow_model."
#: Tag of an imported model version: ``<name>/<version>@<creation time in ms>``.
VERSION_TAG = "keel.import.mlflow_version"
#: The actor recorded on registry changes made by the import.
ACTOR = "import"

_EXPECTED = (
    "Expected an MLflow tracking store: its SQLite database (mlflow.db or "
    "sqlite:///path/to/mlflow.db), another database URL (postgresql://..., mysql://...) "
    "or a tracking server URL (http://host:5000)."
)
_REQUIRED_TABLES = frozenset({"experiments", "runs", "metrics", "params", "tags"})
_STATUSES = {s.value for s in RunStatus}
_LOGGED_MODEL_URI = re.compile(r"^models:/(m-[0-9a-f]+)/?$")
_RUNS_URI = re.compile(r"^runs:/([0-9a-f]{32})/(.+)$")
_CHUNK = 50_000  # metric points per write
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".cloudpickle", ".statsmodels")
#: MLflow flavors whose saved models are pickles whatever the file names.
_PICKLE_FLAVORS = frozenset({"pytorch", "statsmodels"})

#: A metric point as read from MLflow: (key, value, step, timestamp in ms).
Point = tuple[str, float, int, int]


# -- what a source yields -----------------------------------------------------------------
@dataclass(frozen=True)
class SrcExperiment:
    """An MLflow experiment."""

    experiment_id: str
    name: str
    lifecycle_stage: str
    tags: dict[str, str]


@dataclass(frozen=True)
class SrcRun:
    """An MLflow run with params and tags (metric points are read on demand)."""

    run_id: str
    experiment_id: str
    name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    user: str | None
    artifact_uri: str | None
    params: dict[str, str]
    tags: dict[str, str]
    metric_keys: tuple[str, ...] = ()

    @property
    def parent_id(self) -> str | None:
        """The parent run's MLflow id (tag ``mlflow.parentRunId``)."""
        return self.tags.get("mlflow.parentRunId") or None


@dataclass(frozen=True)
class SrcLoggedModel:
    """An MLflow 3 logged model (its files live outside the run's artifacts)."""

    model_id: str
    name: str
    run_id: str | None
    artifact_location: str | None
    creation_time: int


@dataclass(frozen=True)
class SrcVersion:
    """A registered model version."""

    name: str
    version: int
    source: str | None
    run_id: str | None
    stage: str
    description: str | None
    status: str
    user: str | None
    storage_location: str | None
    creation_time: int | None
    tags: dict[str, str]

    @property
    def marker(self) -> str:
        """The value of :data:`VERSION_TAG` identifying this version."""
        return f"{self.name}/{self.version}@{self.creation_time or 0}"


@dataclass(frozen=True)
class SrcModel:
    """A registered model with its versions and aliases."""

    name: str
    description: str | None
    tags: dict[str, str]
    aliases: dict[str, int]
    versions: list[SrcVersion]


@dataclass(frozen=True)
class SrcFile:
    """One artifact file: its path in the tree and where to read it."""

    path: str
    size: int | None
    where: str
    params: tuple[tuple[str, str], ...] = ()


class UnreachableError(Exception):
    """Artifacts that cannot be read from here (the reason is the message)."""


# -- report and progress --------------------------------------------------------------------
@dataclass
class Tally:
    """Counts for one kind of object."""

    new: int = 0
    updated: int = 0
    present: int = 0
    failed: int = 0


KINDS = (
    "experiments",
    "runs",
    "metric points",
    "params",
    "tags",
    "artifact files",
    "artifact bytes",
    "registered models",
    "model versions",
    "stages",
    "aliases",
)


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    source: str
    dry_run: bool
    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    warnings: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def warn(self, topic: str, detail: str) -> None:
        """Record a warning; warnings are grouped by topic."""
        self.warnings.setdefault(topic, []).append(detail)

    def add(self, kind: str, outcome: str, n: int = 1) -> None:
        """Count ``n`` objects of ``kind`` as new, updated, present or failed."""
        tally = self.tallies[kind]
        setattr(tally, outcome, getattr(tally, outcome) + n)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.errors


class Progress(Protocol):
    """Receives progress: one phase at a time, then steps within it."""

    def phase(self, name: str, total: int) -> None:
        """A new phase of ``total`` steps starts."""

    def advance(self, n: int = 1) -> None:
        """``n`` steps of the current phase are done."""


class _NoProgress:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


# -- sources ----------------------------------------------------------------------------------
class MlflowSource(ABC):
    """An MLflow tracking store, read only."""

    #: How the source is shown in messages (no credentials).
    label: str

    def __init__(self) -> None:
        self.notes: list[tuple[str, str]] = []

    @abstractmethod
    def experiments(self) -> list[SrcExperiment]:
        """Every experiment, deleted ones included."""

    @abstractmethod
    def runs(self, experiment_ids: Sequence[str]) -> list[SrcRun]:
        """Every run (deleted ones included) of these experiments."""

    @abstractmethod
    def metric_points(self, run: SrcRun) -> list[Point]:
        """Every metric point of a run."""

    @abstractmethod
    def logged_models(self, experiment_ids: Sequence[str]) -> list[SrcLoggedModel]:
        """MLflow 3 logged models of these experiments (none for older stores)."""

    @abstractmethod
    def registered_models(self) -> list[SrcModel]:
        """Registered models with versions (prompts excluded)."""

    @abstractmethod
    def run_files(self, run: SrcRun) -> list[SrcFile]:
        """The artifact files of a run; raises :class:`UnreachableError`."""

    @abstractmethod
    def logged_model_files(self, model: SrcLoggedModel) -> list[SrcFile]:
        """The files of a logged model; raises :class:`UnreachableError`."""

    @abstractmethod
    def version_files(self, version: SrcVersion) -> list[SrcFile]:
        """The files at a model version's storage location; raises :class:`UnreachableError`."""

    @abstractmethod
    @contextlib.contextmanager
    def local_copies(self, files: Sequence[SrcFile]) -> Iterator[list[Path]]:
        """Local paths holding these files, valid inside the ``with`` block."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def open_source(uri: str) -> MlflowSource:
    """Open an MLflow store: a database file or URL, or a tracking server URL."""
    text = str(uri).strip()
    if re.match(r"^https?://", text, re.IGNORECASE):
        return RestSource(text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "sqlite" or text.startswith("sqlite:"):
        try:
            database = sa.make_url(text).database
        except sa.exc.ArgumentError as exc:
            raise InvalidSpecError(
                f"{text!r} is not a valid SQLite URL ({exc}). {_EXPECTED}"
            ) from exc
        if not database or database == ":memory:":
            raise InvalidSpecError(f"{text!r} names no database file. {_EXPECTED}")
        return SqlSource.sqlite(Path(database))
    if scheme in ("postgresql", "postgres", "mysql", "mssql") or scheme.startswith(
        ("postgresql+", "mysql+", "mssql+")
    ):
        return SqlSource(text)
    if scheme == "file":
        text = unquote(urlparse(text).path)
    elif scheme:
        raise InvalidSpecError(
            f"Cannot import from {text!r}: keel reads MLflow stores from SQLite files, "
            f"database URLs and tracking servers, not '{scheme}://'. {_EXPECTED}"
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise NotFoundError(f"No MLflow store at {path}: there is no such file. {_EXPECTED}")
    if path.is_dir():
        if (path / "mlflow.db").is_file():
            return SqlSource.sqlite(path / "mlflow.db")
        if any(path.glob("*/meta.yaml")):
            raise InvalidSpecError(
                f"{path} is an MLflow file store (an mlruns folder); keel imports from "
                "databases and servers. Serve it with `mlflow server --backend-store-uri "
                f"{path}` and import from the server's URL. {_EXPECTED}"
            )
        raise InvalidSpecError(f"{path} is a folder, not an MLflow store. {_EXPECTED}")
    return SqlSource.sqlite(path)


def _local_files(root: Path) -> list[SrcFile]:
    if root.is_file():
        return [SrcFile(root.name, root.stat().st_size, str(root))]
    if not root.is_dir():
        return []
    return [
        SrcFile(p.relative_to(root).as_posix(), p.stat().st_size, str(p))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


class SqlSource(MlflowSource):
    """An MLflow database read with SQLAlchemy Core (MLflow 1.x to 3.x schemas).

    Args:
        url: a SQLAlchemy URL (``postgresql://``, ``mysql://`` ...).
        engine: an engine to use instead (see :meth:`sqlite`).
        label: how to name the store in messages.
        base_dir: where relative artifact paths (and moved ``mlruns`` folders) are found.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: sa.Engine | None = None,
        label: str | None = None,
        base_dir: Path | None = None,
    ) -> None:
        super().__init__()
        from keel.store.sql import normalize_url

        if engine is None:
            assert url is not None
            try:
                engine = sa.create_engine(normalize_url(url))
            except (sa.exc.ArgumentError, ImportError) as exc:
                raise ConfigError(f"Cannot open the MLflow database {url!r}: {exc}.") from exc
            label = label or sa.make_url(url).render_as_string(hide_password=True)
        self.engine = engine
        self.label = label or str(url)
        self.base_dir = base_dir
        try:
            with engine.connect() as conn:
                names = set(sa.inspect(conn).get_table_names())
                missing = _REQUIRED_TABLES - names
                if missing:
                    raise InvalidSpecError(
                        f"{self.label} is a database but not an MLflow tracking store: it has "
                        f"no {', '.join(sorted(missing))} table. {_EXPECTED}"
                    )
                meta = sa.MetaData()
                self.t = {
                    n: sa.Table(n, meta, autoload_with=conn)
                    for n in sorted(names)
                    if n in _REQUIRED_TABLES
                    or n
                    in (
                        "experiment_tags",
                        "logged_models",
                        "registered_models",
                        "registered_model_tags",
                        "registered_model_aliases",
                        "model_versions",
                        "model_version_tags",
                    )
                }
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            engine.dispose()
            raise BackendUnavailableError(
                f"Cannot read the MLflow database {self.label}: {exc.orig}."
            ) from exc
        except sa.exc.DatabaseError as exc:
            engine.dispose()
            raise InvalidSpecError(
                f"{self.label} is not an MLflow store: it cannot be read as a database "
                f"({exc.orig}). {_EXPECTED}"
            ) from exc

    @classmethod
    def sqlite(cls, path: Path) -> SqlSource:
        """Open a SQLite database read-only (a missing file is an error, never created)."""
        from sqlalchemy.pool import NullPool

        path = path.expanduser().resolve()
        if not path.is_file():
            raise NotFoundError(f"No MLflow store at {path}: there is no such file. {_EXPECTED}")
        uri = f"file:{quote(str(path))}?mode=ro"
        engine = sa.create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
            poolclass=NullPool,
        )
        return cls(engine=engine, label=str(path), base_dir=path.parent)

    def close(self) -> None:
        """Dispose of the engine."""
        self.engine.dispose()

    # -- helpers ---------------------------------------------------------------------------
    def _rows(self, query: Any) -> Sequence[sa.RowMapping]:
        with self.engine.connect() as conn:
            return conn.execute(query).mappings().all()

    def _default_ws(self, table: sa.Table) -> list[Any]:
        """Only the default workspace (MLflow 3 workspaces; keel has none)."""
        return [table.c.workspace == "default"] if "workspace" in table.c else []

    def _local_root(self, uri: str | None) -> Path:
        if not uri:
            raise UnreachableError("no artifact location is recorded")
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
        elif len(parsed.scheme) > 1:  # one letter: a Windows drive
            hint = (
                "; they are stored by an MLflow server: import from the server's URL to copy them"
                if parsed.scheme == "mlflow-artifacts"
                else ""
            )
            raise UnreachableError(f"artifacts at {uri} are not on this machine{hint}")
        else:
            path = Path(uri)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        candidates = [path]
        if self.base_dir is not None and "mlruns" in path.parts:  # the store was moved
            at = len(path.parts) - 1 - path.parts[::-1].index("mlruns")
            candidates.append(self.base_dir.joinpath(*path.parts[at:]))
        for candidate in candidates:
            # a run without artifacts may have no folder, while the folders above it exist
            if candidate.exists() or any(p.is_dir() for p in list(candidate.parents)[:3]):
                return candidate
        raise UnreachableError(f"{path} does not exist")

    # -- reading -----------------------------------------------------------------------------
    def experiments(self) -> list[SrcExperiment]:
        """Every experiment of the default workspace."""
        e = self.t["experiments"]
        rows = self._rows(sa.select(e).order_by(e.c.experiment_id))
        others = [r for r in rows if r.get("workspace", "default") != "default"]
        if others:
            self.notes.append(
                (
                    "experiments of other MLflow workspaces are not imported",
                    ", ".join(f"{r['workspace']}/{r['name']}" for r in others[:5]),
                )
            )
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        if "experiment_tags" in self.t:
            et = self.t["experiment_tags"]
            for r in self._rows(sa.select(et.c.experiment_id, et.c.key, et.c.value)):
                tags[str(r["experiment_id"])][r["key"]] = r["value"] or ""
        return [
            SrcExperiment(
                experiment_id=str(r["experiment_id"]),
                name=r["name"],
                lifecycle_stage=r["lifecycle_stage"] or "active",
                tags=tags[str(r["experiment_id"])],
            )
            for r in rows
            if r.get("workspace", "default") == "default"
        ]

    def runs(self, experiment_ids: Sequence[str]) -> list[SrcRun]:
        """Runs with params and tags, oldest first."""
        r, p, tg = self.t["runs"], self.t["params"], self.t["tags"]
        ids = [int(i) for i in experiment_ids]
        if not ids:
            return []
        run_ids = sa.select(r.c.run_uuid).where(r.c.experiment_id.in_(ids))
        params: dict[str, dict[str, str]] = defaultdict(dict)
        for row in self._rows(
            sa.select(p.c.run_uuid, p.c.key, p.c.value).where(p.c.run_uuid.in_(run_ids))
        ):
            params[row["run_uuid"]][row["key"]] = row["value"]
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        for row in self._rows(
            sa.select(tg.c.run_uuid, tg.c.key, tg.c.value).where(tg.c.run_uuid.in_(run_ids))
        ):
            tags[row["run_uuid"]][row["key"]] = row["value"] or ""
        rows = self._rows(
            sa.select(r).where(r.c.experiment_id.in_(ids)).order_by(r.c.start_time, r.c.run_uuid)
        )
        return [
            SrcRun(
                run_id=row["run_uuid"],
                experiment_id=str(row["experiment_id"]),
                name=row.get("name") or tags[row["run_uuid"]].get("mlflow.runName") or None,
                status=row["status"] or "FINISHED",
                start_time=_int(row["start_time"]),
                end_time=_int(row["end_time"]),
                lifecycle_stage=row["lifecycle_stage"] or "active",
                user=_text(row["user_id"]),
                artifact_uri=_text(row["artifact_uri"]),
                params=params[row["run_uuid"]],
                tags=tags[row["run_uuid"]],
            )
            for row in rows
        ]

    def metric_points(self, run: SrcRun) -> list[Point]:
        """Every point of every metric of the run (``is_nan`` rows become NaN)."""
        m = self.t["metrics"]
        nan = m.c.is_nan if "is_nan" in m.c else sa.literal(False)
        query = sa.select(m.c.key, m.c.value, m.c.step, m.c.timestamp, nan.label("nan")).where(
            m.c.run_uuid == run.run_id
        )
        return [
            (
                row["key"],
                math.nan if row["nan"] else float(row["value"]),
                int(row["step"] or 0),
                int(row["timestamp"]),
            )
            for row in self._rows(query)
        ]

    def logged_models(self, experiment_ids: Sequence[str]) -> list[SrcLoggedModel]:
        """MLflow 3 logged models of these experiments."""
        if "logged_models" not in self.t or not experiment_ids:
            return []
        lm = self.t["logged_models"]
        rows = self._rows(
            sa.select(lm).where(lm.c.experiment_id.in_([int(i) for i in experiment_ids]))
        )
        return [
            SrcLoggedModel(
                model_id=row["model_id"],
                name=row["name"],
                run_id=row["source_run_id"],
                artifact_location=row["artifact_location"],
                creation_time=int(row["creation_timestamp_ms"] or 0),
            )
            for row in rows
        ]

    def registered_models(self) -> list[SrcModel]:
        """Registered models of the default workspace, without prompts."""
        if "registered_models" not in self.t:
            return []
        rm = self.t["registered_models"]
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        if "registered_model_tags" in self.t:
            t = self.t["registered_model_tags"]
            for row in self._rows(sa.select(t).where(*self._default_ws(t))):
                tags[row["name"]][row["key"]] = row["value"] or ""
        aliases: dict[str, dict[str, int]] = defaultdict(dict)
        if "registered_model_aliases" in self.t:
            a = self.t["registered_model_aliases"]
            for row in self._rows(sa.select(a).where(*self._default_ws(a))):
                aliases[row["name"]][row["alias"]] = int(row["version"])
        vtags: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
        if "model_version_tags" in self.t:
            t = self.t["model_version_tags"]
            for row in self._rows(sa.select(t).where(*self._default_ws(t))):
                vtags[(row["name"], int(row["version"]))][row["key"]] = row["value"] or ""
        versions: dict[str, list[SrcVersion]] = defaultdict(list)
        if "model_versions" in self.t:
            mv = self.t["model_versions"]
            for row in self._rows(sa.select(mv).where(*self._default_ws(mv))):
                versions[row["name"]].append(
                    SrcVersion(
                        name=row["name"],
                        version=int(row["version"]),
                        source=_text(row["source"]),
                        run_id=_text(row["run_id"]),
                        stage=row["current_stage"] or "None",
                        description=_text(row["description"]),
                        status=row["status"] or "READY",
                        user=_text(row["user_id"]),
                        storage_location=_text(row.get("storage_location")),
                        creation_time=_int(row["creation_time"]),
                        tags=vtags[(row["name"], int(row["version"]))],
                    )
                )
        out = []
        prompts = []
        for row in self._rows(sa.select(rm).where(*self._default_ws(rm)).order_by(rm.c.name)):
            name = row["name"]
            if tags[name].get("mlflow.prompt.is_prompt") == "true":
                prompts.append(name)
                continue
            out.append(
                SrcModel(
                    name=name,
                    description=_text(row["description"]),
                    tags=tags[name],
                    aliases=aliases[name],
                    versions=sorted(versions[name], key=lambda x: x.version),
                )
            )
        if prompts:
            self.notes.append(
                ("MLflow prompts are not models and are not imported", ", ".join(prompts[:5]))
            )
        return out

    # -- files -------------------------------------------------------------------------------
    def run_files(self, run: SrcRun) -> list[SrcFile]:
        """Files under the run's local artifact folder."""
        return _local_files(self._local_root(run.artifact_uri))

    def logged_model_files(self, model: SrcLoggedModel) -> list[SrcFile]:
        """Files under the logged model's local folder."""
        return _local_files(self._local_root(model.artifact_location))

    def version_files(self, version: SrcVersion) -> list[SrcFile]:
        """Files at the version's storage location (or its source path)."""
        where = version.storage_location or version.source
        if where and where.startswith(("models:/", "runs:/")):
            raise UnreachableError(f"{where} names no location of its own")
        return _local_files(self._local_root(where))

    @contextlib.contextmanager
    def local_copies(self, files: Sequence[SrcFile]) -> Iterator[list[Path]]:
        """The files are local already."""
        yield [Path(f.where) for f in files]


class RestSource(MlflowSource):
    """An MLflow tracking server, read through its REST API.

    Credentials come from the variables MLflow's client reads:
    ``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD``; ``MLFLOW_TRACKING_INSECURE_TLS=true`` skips TLS checks.
    """

    _PAGE = 1000

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - httpx ships with keel[server]
            raise ConfigError(
                "Importing from an MLflow server needs httpx: pip install 'keel[server]'."
            ) from exc
        parsed = urlparse(url)
        self.base = url.rstrip("/")
        netloc = (parsed.hostname or "") + (f":{parsed.port}" if parsed.port else "")
        self.label = parsed._replace(netloc=netloc, query="", fragment="").geturl().rstrip("/")
        headers: dict[str, str] = {}
        auth: tuple[str, str] | None = None
        if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
            headers["Authorization"] = f"Bearer {token}"
        elif user := os.environ.get("MLFLOW_TRACKING_USERNAME"):
            auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
        self.http = httpx.Client(
            base_url=self.base,
            headers=headers,
            auth=auth,
            verify=not insecure,
            timeout=httpx.Timeout(60.0, connect=10.0),
            follow_redirects=True,
        )
        try:
            self._get("/api/2.0/mlflow/experiments/search", {"max_results": 1}, probe=True)
        except BaseException:
            self.http.close()
            raise

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()

    # -- HTTP -----------------------------------------------------------------------------------
    def _send(
        self, method: str, path: str, *, params: Any = None, body: Any = None, probe: bool = False
    ) -> httpx.Response:
        import httpx

        try:
            return self.http.request(method, path, params=params, json=body)
        except httpx.HTTPError as exc:
            what = "Cannot reach" if probe else "Lost the connection to"
            raise BackendUnavailableError(
                f"{what} the MLflow server at {self.label}: {exc}."
                + (f" {_EXPECTED}" if probe else " Retry: the import resumes where it stopped."),
                url=self.label,
            ) from exc

    def _json(self, resp: httpx.Response, what: str, probe: bool = False) -> dict[str, Any]:
        if resp.status_code in (401, 403):
            raise AuthenticationError(
                f"The MLflow server at {self.label} refused {what} (HTTP {resp.status_code}): "
                "set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD.",
                url=self.label,
            )
        try:
            data = resp.json()
        except ValueError:
            data = None
        if probe and (resp.status_code == 404 or not isinstance(data, dict)):
            raise InvalidSpecError(
                f"{self.label} does not answer like an MLflow tracking server "
                f"(GET {what} gave HTTP {resp.status_code}). {_EXPECTED}",
                url=self.label,
            )
        if resp.status_code >= 400 or not isinstance(data, dict):
            message = data.get("message") if isinstance(data, dict) else resp.text[:200]
            raise BackendUnavailableError(
                f"The MLflow server at {self.label} failed {what} (HTTP {resp.status_code}): "
                f"{message}",
                url=self.label,
            )
        return data

    def _get(self, path: str, params: Any = None, probe: bool = False) -> dict[str, Any]:
        return self._json(self._send("GET", path, params=params, probe=probe), path, probe)

    def _post(self, path: str, body: Any) -> dict[str, Any]:
        return self._json(self._send("POST", path, body=body), path)

    def _pages(self, method: str, path: str, key: str, args: dict[str, Any]) -> Iterator[Any]:
        token = None
        while True:
            page = dict(args, page_token=token) if token else dict(args)
            data = self._post(path, page) if method == "POST" else self._get(path, page)
            yield from data.get(key, [])
            token = data.get("next_page_token")
            if not token:
                return

    # -- reading -------------------------------------------------------------------------------
    def experiments(self) -> list[SrcExperiment]:
        """Every experiment the server lists (active and deleted)."""
        args = {"max_results": self._PAGE, "view_type": "ALL"}
        return [
            SrcExperiment(
                experiment_id=str(e["experiment_id"]),
                name=e["name"],
                lifecycle_stage=e.get("lifecycle_stage", "active"),
                tags={t["key"]: t.get("value", "") for t in e.get("tags", [])},
            )
            for e in self._pages("POST", "/api/2.0/mlflow/experiments/search", "experiments", args)
        ]

    def runs(self, experiment_ids: Sequence[str]) -> list[SrcRun]:
        """Runs of these experiments (searched in groups of 50 experiments)."""
        out = []
        ids = list(experiment_ids)
        for i in range(0, len(ids), 50):
            args = {
                "experiment_ids": ids[i : i + 50],
                "run_view_type": "ALL",
                "max_results": self._PAGE,
            }
            for run in self._pages("POST", "/api/2.0/mlflow/runs/search", "runs", args):
                info, data = run["info"], run.get("data", {})
                tags = {t["key"]: t.get("value", "") for t in data.get("tags", [])}
                out.append(
                    SrcRun(
                        run_id=info.get("run_id") or info["run_uuid"],
                        experiment_id=str(info["experiment_id"]),
                        name=info.get("run_name") or tags.get("mlflow.runName") or None,
                        status=info.get("status", "FINISHED"),
                        start_time=_int(info.get("start_time")),
                        end_time=_int(info.get("end_time")),
                        lifecycle_stage=info.get("lifecycle_stage", "active"),
                        user=_text(info.get("user_id")),
                        artifact_uri=_text(info.get("artifact_uri")),
                        params={p["key"]: p.get("value", "") for p in data.get("params", [])},
                        tags=tags,
                        metric_keys=tuple(sorted({m["key"] for m in data.get("metrics", [])})),
                    )
                )
        return sorted(out, key=lambda r: (r.start_time or 0, r.run_id))

    def metric_points(self, run: SrcRun) -> list[Point]:
        """Every point of every metric (one paged history call per metric)."""
        points: list[Point] = []
        for key in run.metric_keys:
            args = {"run_id": run.run_id, "metric_key": key, "max_results": 25_000}
            for m in self._pages("GET", "/api/2.0/mlflow/metrics/get-history", "metrics", args):
                points.append(
                    (key, float(m.get("value", 0.0)), int(m.get("step", 0)), int(m["timestamp"]))
                )
        return points

    def logged_models(self, experiment_ids: Sequence[str]) -> list[SrcLoggedModel]:
        """MLflow 3 logged models (a server before MLflow 3 has none)."""
        path = "/api/2.0/mlflow/logged-models/search"
        out: list[SrcLoggedModel] = []
        token = None
        while experiment_ids:
            body: dict[str, Any] = {"experiment_ids": list(experiment_ids), "max_results": 100}
            if token:
                body["page_token"] = token
            resp = self._send("POST", path, body=body)
            if resp.status_code == 404 and token is None:
                return []
            data = self._json(resp, path)
            for m in data.get("models", []):
                info = m["info"]
                out.append(
                    SrcLoggedModel(
                        model_id=info["model_id"],
                        name=info.get("name") or "model",
                        run_id=_text(info.get("source_run_id")),
                        artifact_location=_text(info.get("artifact_uri")),
                        creation_time=int(info.get("creation_timestamp_ms", 0)),
                    )
                )
            token = data.get("next_page_token")
            if not token:
                break
        return out

    def registered_models(self) -> list[SrcModel]:
        """Registered models and their versions, without prompts."""
        out, prompts = [], []
        args = {"max_results": self._PAGE}
        for rm in self._pages(
            "GET", "/api/2.0/mlflow/registered-models/search", "registered_models", args
        ):
            name = rm["name"]
            tags = {t["key"]: t.get("value", "") for t in rm.get("tags", [])}
            if tags.get("mlflow.prompt.is_prompt") == "true":
                prompts.append(name)
                continue
            quoted = name.replace("\\", "\\\\").replace("'", "\\'")
            vargs = {"filter": f"name = '{quoted}'", "max_results": 10_000}
            versions = [
                SrcVersion(
                    name=name,
                    version=int(mv["version"]),
                    source=_text(mv.get("source")),
                    run_id=_text(mv.get("run_id")),
                    stage=mv.get("current_stage") or "None",
                    description=_text(mv.get("description")),
                    status=mv.get("status") or "READY",
                    user=_text(mv.get("user_id")),
                    storage_location=_text(mv.get("storage_location")),
                    creation_time=_int(mv.get("creation_timestamp")),
                    tags={t["key"]: t.get("value", "") for t in mv.get("tags", [])},
                )
                for mv in self._pages(
                    "GET", "/api/2.0/mlflow/model-versions/search", "model_versions", vargs
                )
            ]
            out.append(
                SrcModel(
                    name=name,
                    description=_text(rm.get("description")),
                    tags=tags,
                    aliases={a["alias"]: int(a["version"]) for a in rm.get("aliases", [])},
                    versions=sorted(versions, key=lambda x: x.version),
                )
            )
        if prompts:
            self.notes.append(
                ("MLflow prompts are not models and are not imported", ", ".join(prompts[:5]))
            )
        return sorted(out, key=lambda m: m.name)

    # -- files ---------------------------------------------------------------------------------
    @staticmethod
    def _proxied(uri: str | None) -> str | None:
        """The path of an mlflow-artifacts location inside the server's artifact store."""
        if not uri:
            return None
        parsed = urlparse(uri)
        anchor = "/api/2.0/mlflow-artifacts/artifacts"
        if parsed.scheme == "mlflow-artifacts":
            return unquote(parsed.path).strip("/")
        if parsed.scheme in ("http", "https") and anchor in parsed.path:
            return unquote(parsed.path.split(anchor, 1)[1]).strip("/")
        return None

    def _walk_proxied(self, root: str) -> list[SrcFile]:
        out: list[SrcFile] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            full = f"{root}/{rel}".strip("/")
            resp = self._send("GET", "/api/2.0/mlflow-artifacts/artifacts", params={"path": full})
            if resp.status_code >= 400:
                raise UnreachableError(
                    f"the server cannot list mlflow-artifacts:/{full} (HTTP {resp.status_code})"
                )
            for f in resp.json().get("files", []):
                child = f"{rel}/{f['path'].rsplit('/', 1)[-1]}".strip("/")
                if f.get("is_dir"):
                    stack.append(child)
                else:
                    where = (
                        f"/api/2.0/mlflow-artifacts/artifacts/{quote(f'{root}/{child}'.strip('/'))}"
                    )
                    out.append(SrcFile(child, _int(f.get("file_size")), where))
        return sorted(out, key=lambda f: f.path)

    def _walk_scoped(
        self, list_path: str, get_path: str, base: dict[str, str], list_arg: str, get_arg: str
    ) -> list[SrcFile]:
        """Walk with the run (or logged-model) artifact endpoints of the server."""
        out: list[SrcFile] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            args = dict(base, **({list_arg: rel} if rel else {}))
            resp = self._send("GET", list_path, params=args)
            if resp.status_code >= 400:
                raise UnreachableError(f"the server cannot list them (HTTP {resp.status_code})")
            for f in resp.json().get("files", []):
                if f.get("is_dir"):
                    stack.append(f["path"])
                else:
                    params = (*base.items(), (get_arg, f["path"]))
                    out.append(SrcFile(f["path"], _int(f.get("file_size")), get_path, params))
        return sorted(out, key=lambda f: f.path)

    def run_files(self, run: SrcRun) -> list[SrcFile]:
        """Through mlflow-artifacts for proxied roots, else the run artifact endpoints."""
        root = self._proxied(run.artifact_uri)
        if root is not None:
            return self._walk_proxied(root)
        return self._walk_scoped(
            "/api/2.0/mlflow/artifacts/list",
            "/get-artifact",
            {"run_id": run.run_id},
            "path",
            "path",
        )

    def logged_model_files(self, model: SrcLoggedModel) -> list[SrcFile]:
        """Through mlflow-artifacts for proxied roots, else the logged-model endpoints."""
        root = self._proxied(model.artifact_location)
        if root is not None:
            return self._walk_proxied(root)
        base = f"mlflow/logged-models/{quote(model.model_id)}/artifacts"
        return self._walk_scoped(
            f"/api/2.0/{base}/directories",
            f"/ajax-api/2.0/{base}/files",
            {},
            "artifact_directory_path",
            "artifact_file_path",
        )

    def version_files(self, version: SrcVersion) -> list[SrcFile]:
        """Files at the version's download location, when the server proxies it."""
        where = version.storage_location
        if not where:
            data = self._get(
                "/api/2.0/mlflow/model-versions/get-download-uri",
                {"name": version.name, "version": str(version.version)},
            )
            where = data.get("artifact_uri")
        root = self._proxied(where)
        if root is None:
            raise UnreachableError(f"the server does not serve {where} through mlflow-artifacts")
        return self._walk_proxied(root)

    @contextlib.contextmanager
    def local_copies(self, files: Sequence[SrcFile]) -> Iterator[list[Path]]:
        """Download the files into a temporary folder."""
        import httpx

        with tempfile.TemporaryDirectory(prefix="keel-import-") as tmp:
            paths = []
            for i, f in enumerate(files):
                dest = Path(tmp) / str(i)
                try:
                    with self.http.stream("GET", f.where, params=list(f.params)) as resp:
                        if resp.status_code != 200:
                            raise UnreachableError(
                                f"downloading {f.path} gave HTTP {resp.status_code}"
                            )
                        with open(dest, "wb") as fh:
                            for chunk in resp.iter_bytes(1 << 20):
                                fh.write(chunk)
                except httpx.HTTPError as exc:
                    raise BackendUnavailableError(
                        f"Lost the connection to the MLflow server at {self.label} while "
                        f"downloading {f.path}: {exc}. Retry: the import resumes where it stopped.",
                        url=self.label,
                    ) from exc
                paths.append(dest)
            yield paths


# -- the import -------------------------------------------------------------------------------
def _status(status: str) -> RunStatus:
    return RunStatus(status) if status in _STATUSES else RunStatus.FINISHED


def _topological(runs: Sequence[SrcRun]) -> list[SrcRun]:
    """Parents before children (then by start time)."""
    by_id = {r.run_id: r for r in runs}
    depth: dict[str, int] = {}

    def depth_of(run: SrcRun) -> int:
        seen: list[str] = []
        cur: SrcRun | None = run
        while cur is not None and cur.run_id not in depth and cur.run_id not in seen:
            seen.append(cur.run_id)
            cur = by_id.get(cur.parent_id) if cur.parent_id else None
        base = depth.get(cur.run_id, 0) + 1 if cur is not None and cur.run_id in depth else 0
        for i, rid in enumerate(reversed(seen)):
            depth[rid] = base + i
        return depth[run.run_id]

    return sorted(runs, key=lambda r: (depth_of(r), r.start_time or 0, r.run_id))


def mlmodel_spec(text: str, files: Sequence[str]) -> dict[str, Any]:
    """The registry spec of an MLmodel-format model (flavors, pickle use, versions).

    ``unsafe`` (loading runs code from the files) when a flavor is serialised with
    pickle or cloudpickle, a file has a pickle-type suffix (.pkl, .pt ...), the
    flavor always pickles (pytorch, statsmodels), or the model brings its own code
    (``code:`` paths, a loader module outside mlflow).
    """
    flavors: list[str] = []
    block = re.search(r"^flavors:[ \t]*\n((?:[ \t]+.*\n?|[ \t]*\n)*)", text, re.MULTILINE)
    if block:
        lines = [ln for ln in block.group(1).splitlines() if ln.strip()]
        indent = min((len(ln) - len(ln.lstrip()) for ln in lines), default=0)
        for ln in lines:
            m = re.match(r"^([A-Za-z0-9_.\-]+):", ln[indent:])
            if m and len(ln) - len(ln.lstrip()) == indent:
                flavors.append(m.group(1))
    loader = re.search(r"^\s+loader_module:\s*(\S+)", text, re.MULTILINE)
    version = re.search(r"^mlflow_version:\s*(\S+)", text, re.MULTILINE)
    unsafe = (
        re.search(r"serialization_format:\s*['\"]?(cloud)?pickle\b", text) is not None
        or any(f.lower().endswith(_PICKLE_SUFFIXES) for f in files)
        or bool(_PICKLE_FLAVORS.intersection(flavors))
        or re.search(r"^\s+code:\s*(?!null\b|~|\[\]|''|$)\S", text, re.MULTILINE) is not None
        or (loader is not None and not loader.group(1).startswith("mlflow."))
    )
    return {
        "flavor": "mlflow",
        "format": "mlflow-model",
        "unsafe": unsafe,
        "mlflow_flavors": flavors,
        "loader_module": loader.group(1) if loader else None,
        "mlflow_version": version.group(1).strip("'\"") if version else None,
    }


def _keel_store_exists(client: Client) -> bool:
    """False when the configured store is a SQLite file that does not exist yet."""
    if getattr(client.settings, "tracking_uri", None):  # a keel server
        return True
    try:
        url = sa.make_url(client.settings.store_uri)
    except sa.exc.ArgumentError:
        return True
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return True
    return Path(url.database).exists()


@dataclass
class _Payload:
    """A run as read from MLflow, ready to write."""

    run: SrcRun
    params: dict[str, str]
    tags: dict[str, str]
    points: list[tuple[str, float, int, int]]
    files: list[tuple[str, SrcFile]]
    places: dict[str, str]
    delta: int


class _Importer:
    """One import run: reads the source, compares with keel, writes what is missing."""

    def __init__(
        self, client: Client, src: MlflowSource, report: ImportReport, progress: Progress
    ) -> None:
        self.client = client
        self.src = src
        self.report = report
        self.progress = progress
        self.dry = report.dry_run
        self.keel_exists = not self.dry or _keel_store_exists(client)
        self.run_map: dict[str, str] = {}  # MLflow run id -> keel run id
        self.done: dict[str, Run] = {}
        self.pending: dict[str, Run] = {}
        self.model_place: dict[str, tuple[str, str]] = {}  # logged model -> (keel run, path)
        self.exp_map: dict[str, str | None] = {}  # MLflow experiment id -> keel id
        self.redelete: set[str] = set()
        self.src_runs: dict[str, SrcRun] = {}

    @property
    def store(self) -> Store:
        return self.client.store

    # -- sanitising ---------------------------------------------------------------------------
    def _key(self, kind: str, key: str) -> str | None:
        try:
            return v.check_key(kind, key)
        except InvalidSpecError:
            fixed = re.sub(r"[^A-Za-z0-9_\-. /:]", "_", key)[: v.MAX_KEY].lstrip("/")
            fixed = "/".join("_" if part == ".." else part for part in fixed.split("/"))
            try:
                v.check_key(kind, fixed)
            except InvalidSpecError:
                self.report.warn(f"{kind} keys keel cannot store were skipped", repr(key))
                return None
            self.report.warn(
                f"{kind} keys with characters keel does not allow were renamed",
                f"{key!r} -> {fixed!r}",
            )
            return fixed

    def _value(self, kind: str, key: str, value: str | None, limit: int) -> str:
        text = value or ""
        if len(text) > limit:
            self.report.warn(
                f"{kind} values longer than keel's limit were truncated",
                f"{key} ({len(text)} > {limit} characters)",
            )
            return text[:limit]
        return text

    def _pairs(self, kind: str, data: Mapping[str, str], limit: int) -> dict[str, str]:
        out = {}
        for key, value in data.items():
            clean = self._key(kind, key)
            if clean is not None:
                out[clean] = self._value(kind, key, value, limit)
        return out

    def _name(self, kind: str, name: str | None) -> str | None:
        if name is None:
            return None
        clean = "".join(ch if ch.isprintable() else " " for ch in name).strip()[: v.MAX_NAME]
        if clean != name:
            self.report.warn(f"{kind} names were shortened or cleaned", f"{name[:60]!r}")
        return clean or None

    # -- the whole import ----------------------------------------------------------------------
    def run(self, only: Sequence[str] | None) -> None:
        experiments = self._select(self.src.experiments(), only)
        runs = self.src.runs([e.experiment_id for e in experiments])
        with_runs = {r.experiment_id for r in runs}
        experiments = [
            e
            for e in experiments
            if only or e.experiment_id in with_runs or e.name != "Default" or e.tags
        ]
        self.src_runs = {r.run_id: r for r in runs}
        self._load_keel_runs()
        self._experiments(experiments)
        models = self.src.logged_models([e.experiment_id for e in experiments])
        self._runs(runs, models)
        self._finish_experiments(experiments)
        self._registry(set(self.src_runs) if only else None, models)
        for topic, detail in self.src.notes:
            self.report.warn(topic, detail)

    def _select(
        self, experiments: list[SrcExperiment], only: Sequence[str] | None
    ) -> list[SrcExperiment]:
        if not only:
            return experiments
        by_name = {e.name: e for e in experiments}
        by_id = {e.experiment_id: e for e in experiments}
        chosen = []
        for want in only:
            exp = by_name.get(want) or by_id.get(want)
            if exp is None:
                listing = ", ".join(sorted(by_name)[:20]) or "none"
                raise NotFoundError(
                    f"The MLflow store {self.src.label} has no experiment '{want}'."
                    f"{did_you_mean(want, by_name)} Experiments: {listing}.",
                    experiment=want,
                )
            if exp not in chosen:
                chosen.append(exp)
        return chosen

    def _load_keel_runs(self) -> None:
        if not self.keel_exists:
            return
        token = None
        while True:
            runs, token = self.store.search_runs(
                [],
                filter=f"tags.{DONE_TAG} is not null",
                view="all",
                max_results=10_000,
                page_token=token,
            )
            for run in runs:
                target = self.pending if PENDING_TAG in run.tags else self.done
                target[run.tags[DONE_TAG]] = run
            if not token:
                break
        for mlflow_id, run in {**self.pending, **self.done}.items():
            self.run_map[mlflow_id] = run.run_id
            for key, path in run.tags.items():
                if key.startswith(MODEL_PLACE_TAG):
                    self.model_place[key[len(MODEL_PLACE_TAG) :]] = (run.run_id, path)

    # -- experiments ---------------------------------------------------------------------------
    def _experiments(self, experiments: Sequence[SrcExperiment]) -> None:
        self.progress.phase("Experiments", len(experiments))
        keel = {e.name: e for e in self.client.list_experiments("all")} if self.keel_exists else {}
        for exp in experiments:
            self.progress.advance()
            name = self._name("Experiment", exp.name)
            existing = keel.get(name) if name else None
            if existing is not None:
                self.exp_map[exp.experiment_id] = existing.experiment_id
                self.report.add("experiments", "present")
                if "keel.import.mlflow_experiment_id" not in existing.tags:
                    self.report.warn(
                        "runs went into keel experiments of the same name", existing.name
                    )
                continue
            if name is None:
                self.report.errors.append(f"experiment {exp.experiment_id} has an empty name")
                self.report.add("experiments", "failed")
                self.exp_map[exp.experiment_id] = None
                continue
            self.report.add("experiments", "new")
            if self.dry:
                self.exp_map[exp.experiment_id] = None
                continue
            tags = self._pairs("Tag", exp.tags, v.MAX_TAG_VALUE)
            tags["keel.import.mlflow_experiment_id"] = exp.experiment_id
            description = exp.tags.get("mlflow.note.content") or None
            created = self.client.create_experiment(
                name,
                tags=tags,
                description=description[: v.MAX_DESCRIPTION] if description else None,
            )
            self.exp_map[exp.experiment_id] = created.experiment_id

    def _active_experiment(self, mlflow_id: str) -> str:
        """The keel experiment of an MLflow one, restored for the import if deleted."""
        keel_id = self.exp_map[mlflow_id]
        assert keel_id is not None
        if (
            keel_id not in self.redelete
            and self.client.store.get_experiment(keel_id).lifecycle_stage != "active"
        ):
            self.client.store.set_experiment_lifecycle(keel_id, "active")
            self.redelete.add(keel_id)
        return keel_id

    def _finish_experiments(self, experiments: Sequence[SrcExperiment]) -> None:
        if self.dry:
            return
        for exp in experiments:
            keel_id = self.exp_map.get(exp.experiment_id)
            if keel_id is None:
                continue
            deleted = exp.lifecycle_stage == "deleted" or keel_id in self.redelete
            if deleted and self.client.store.get_experiment(keel_id).lifecycle_stage != "deleted":
                self.client.store.set_experiment_lifecycle(keel_id, "deleted")

    # -- runs ------------------------------------------------------------------------------------
    def _runs(self, runs: Sequence[SrcRun], models: Sequence[SrcLoggedModel]) -> None:
        by_run: dict[str, list[SrcLoggedModel]] = defaultdict(list)
        for lm in sorted(models, key=lambda m: (m.creation_time, m.model_id)):
            if lm.run_id:
                by_run[lm.run_id].append(lm)
        self.progress.phase("Runs", len(runs))
        for run in _topological(runs):
            try:
                self._run(run, by_run[run.run_id])
            except (KeelError, UnreachableError) as exc:
                self.report.errors.append(f"run {run.run_id} ({run.name}): {exc}")
                self.report.add("runs", "failed")
            self.progress.advance()

    def _run(self, run: SrcRun, models: Sequence[SrcLoggedModel]) -> None:
        status = _status(run.status)
        done, pending = self.done.get(run.run_id), self.pending.get(run.run_id)
        if self.exp_map.get(run.experiment_id) is None and not self.dry:
            raise InvalidSpecError("its experiment could not be imported")
        if done is not None:
            changed = done.status != status or done.lifecycle_stage != run.lifecycle_stage
            # not ended at the last import: look for new data (the copy is deduplicated)
            live = done.status in (RunStatus.RUNNING, RunStatus.SCHEDULED)
            payload = self._collect(run, models, known=done) if live else None
            if not (changed or (payload and payload.delta)):
                self.report.add("runs", "present")
                return
            self.report.add("runs", "updated")
            if self.dry:
                return
            keel_status = done.status
            if payload and payload.delta:
                self._active_experiment(run.experiment_id)
                if keel_status == RunStatus.SCHEDULED:  # only RUNNING runs take data
                    self.store.end_run(done.run_id, RunStatus.RUNNING)
                    keel_status = RunStatus.RUNNING
                self._write(payload, done.run_id)
            self._finish(run, done.run_id, keel_status, done.lifecycle_stage, mark=False)
            return
        self.report.add("runs", "new")
        payload = self._collect(run, models)
        if self.dry:
            return
        if pending is not None:  # an earlier import stopped while copying this run
            keel_id, keel_status, stage = pending.run_id, pending.status, pending.lifecycle_stage
            if keel_status == RunStatus.RUNNING:
                self._active_experiment(run.experiment_id)
                self._write(payload, keel_id)
        else:
            keel_id = self._create(run)
            keel_status, stage = RunStatus.RUNNING, "active"
            self._write(payload, keel_id)
        self._finish(run, keel_id, keel_status, stage, mark=True)

    def _create(self, run: SrcRun) -> str:
        parent = None
        if run.parent_id:
            parent = self.run_map.get(run.parent_id)
            if parent is None:
                self.report.warn(
                    "parent runs that are not imported (the tag mlflow.parentRunId is kept)",
                    f"{run.run_id} -> {run.parent_id}",
                )
        note = run.tags.get("mlflow.note.content") or None
        created = self.store.create_run(
            self._active_experiment(run.experiment_id),
            name=self._name("Run", run.name),
            parent_run_id=parent,
            tags={DONE_TAG: run.run_id, PENDING_TAG: "true"},
            description=note[: v.MAX_DESCRIPTION] if note else None,
            user=run.user,
            start_time=run.start_time,
        )
        self.run_map[run.run_id] = created.run_id
        return str(created.run_id)

    def _collect(
        self, run: SrcRun, models: Sequence[SrcLoggedModel], known: Run | None = None
    ) -> _Payload:
        """Read what a run holds in MLflow; count it all, or what ``known`` lacks."""
        params = self._pairs("Param", run.params, v.MAX_PARAM_VALUE)
        tags = self._pairs("Tag", run.tags, v.MAX_TAG_VALUE)
        points = self._points(run)
        files, places = self._files(run, models)
        new_points: int = len(points)
        new_files = files
        if known is not None:
            params_new = [k for k in params if k not in known.params]
            tags_new = [k for k, x in tags.items() if known.tags.get(k) != x]
            per_key: dict[str, int] = defaultdict(int)
            for p in points:
                per_key[p[0]] += 1
            new_points = sum(
                max(0, n - len(self.store.get_metric_history(known.run_id, key)))
                for key, n in per_key.items()
            )
            stored = {a.path for a in self.store.list_artifacts(known.run_id)}
            new_files = [(path, f) for path, f in files if path not in stored]
        else:
            params_new, tags_new = list(params), list(tags)
        self.report.add("params", "new", len(params_new))
        self.report.add("tags", "new", len(tags_new))
        self.report.add("metric points", "new", new_points)
        self.report.add("artifact files", "new", len(new_files))
        self.report.add("artifact bytes", "new", sum(f.size or 0 for _, f in new_files))
        delta = len(params_new) + len(tags_new) + new_points + len(new_files)
        return _Payload(run, params, tags, points, files, places, delta)

    def _write(self, payload: _Payload, keel_id: str) -> None:
        """Copy a collected run into a RUNNING keel run (every write is idempotent)."""
        points = payload.points
        for i in range(0, max(len(points), 1), _CHUNK):
            first = i == 0
            self.store.log_points(
                keel_id,
                points[i : i + _CHUNK],
                params=payload.params if first else None,
                tags=payload.tags if first else None,
            )
        if payload.files:
            try:
                with self.src.local_copies([f for _, f in payload.files]) as local:
                    refs = self.client.objects.put_files(local)
            except UnreachableError as exc:
                self.report.warn(
                    "artifacts that could not be read were skipped",
                    f"run {payload.run.run_id}: {exc}",
                )
            else:
                infos = [
                    ArtifactInfo(path, ref.digest, ref.size)
                    for (path, _), ref in zip(payload.files, refs, strict=True)
                ]
                self.store.record_artifacts(keel_id, infos)
        if payload.places:
            tags = {MODEL_PLACE_TAG + k: p for k, p in payload.places.items()}
            self.store.log_points(keel_id, [], tags=tags)
            for model_id, place in payload.places.items():
                self.model_place[model_id] = (keel_id, place)

    def _points(self, run: SrcRun) -> list[tuple[str, float, int, int]]:
        """Source points as keel's (key, value, step, µs); equal (key, step, ms) get distinct µs."""
        keys: dict[str, str | None] = {}
        out = []
        seen: dict[tuple[str, int, int], int] = {}
        raw = sorted(
            self.src.metric_points(run),
            key=lambda p: (p[0], p[2], p[3], math.isnan(p[1]), 0.0 if math.isnan(p[1]) else p[1]),
        )
        for key, value, step, ts in raw:
            if key not in keys:
                keys[key] = self._key("Metric", key)
            clean = keys[key]
            if clean is None:
                continue
            n = seen.get((clean, step, ts), 0)
            seen[(clean, step, ts)] = n + 1
            out.append((clean, value, step, ts * 1000 + n))
        return out

    def _files(
        self, run: SrcRun, models: Sequence[SrcLoggedModel]
    ) -> tuple[list[tuple[str, SrcFile]], dict[str, str]]:
        """The run's artifact files (keel path, file) and where its logged models go."""
        try:
            files = self.src.run_files(run)
        except UnreachableError as exc:
            self.report.warn(
                "artifacts that could not be read were skipped", f"run {run.run_id}: {exc}"
            )
            files = []
        taken = {f.path.split("/", 1)[0] for f in files}
        trees: list[tuple[str, list[SrcFile]]] = [("", files)]
        places: dict[str, str] = {}
        for lm in models:  # an MLflow 3 model goes where MLflow 2 put it: <run>/<name>/
            simple = re.fullmatch(r"[A-Za-z0-9_.\-]+", lm.name) and lm.name not in (".", "..")
            place = lm.name if simple and lm.name not in taken else f"models/{lm.model_id}"
            try:
                trees.append((place, self.src.logged_model_files(lm)))
            except UnreachableError as exc:
                self.report.warn(
                    "artifacts that could not be read were skipped",
                    f"logged model {lm.model_id}: {exc}",
                )
                continue
            taken.add(place.split("/", 1)[0])
            places[lm.model_id] = place
        chosen = []
        for prefix, tree in trees:
            for f in tree:
                try:
                    path = v.check_artifact_path(f"{prefix}/{f.path}" if prefix else f.path)
                except InvalidSpecError:
                    self.report.warn(
                        "artifact files with paths keel cannot store were skipped", f.path
                    )
                    continue
                chosen.append((path, f))
        return chosen, places

    def _finish(
        self, run: SrcRun, keel_id: str, keel_status: RunStatus, stage: str, *, mark: bool
    ) -> None:
        status = _status(run.status)
        if status != keel_status and keel_status in (RunStatus.RUNNING, RunStatus.SCHEDULED):
            end = run.end_time or run.start_time if status.is_terminal else None
            self.store.end_run(keel_id, status, end_time=end)
        elif status != keel_status:
            self.report.warn(
                "runs whose status changed in MLflow after keel ended them keep keel's status",
                f"{run.run_id}: {keel_status} in keel, {status} in MLflow",
            )
        if run.lifecycle_stage in ("active", "deleted") and stage != run.lifecycle_stage:
            self.store.set_run_lifecycle(keel_id, run.lifecycle_stage)
        if mark:
            self.store.delete_tag(keel_id, PENDING_TAG)

    # -- registry ----------------------------------------------------------------------------------
    def _registry(self, runs: set[str] | None, logged: Sequence[SrcLoggedModel]) -> None:
        models = self.src.registered_models()
        if runs is not None:  # --experiment: only versions of the chosen experiments' runs
            models = [
                SrcModel(
                    m.name,
                    m.description,
                    m.tags,
                    m.aliases,
                    [x for x in m.versions if x.run_id in runs],
                )
                for m in models
            ]
            models = [m for m in models if m.versions]
        if not models:
            return
        reg = getattr(self.store, "registry", None)
        if reg is None:
            self.report.warn(
                "the registry was not imported", "the keel store has no model registry"
            )
            return
        self.progress.phase("Model versions", sum(len(m.versions) for m in models))
        lms = {lm.model_id: lm for lm in logged}
        for model in models:
            try:
                self._model(reg, model, lms)
            except (KeelError, UnreachableError) as exc:
                self.report.errors.append(f"registered model {model.name}: {exc}")
                self.report.add("registered models", "failed")

    def _model(self, reg: SqlRegistry, model: SrcModel, lms: Mapping[str, SrcLoggedModel]) -> None:
        name = model.name
        existing = None
        if self.keel_exists:
            with contextlib.suppress(NotFoundError):
                existing = reg.get_model(name)
        if existing is None:
            self.report.add("registered models", "new")
            if not self.dry:
                existing = reg.create_model(
                    name,
                    actor=ACTOR,
                    description=(model.description or None),
                    tags=self._pairs("Tag", model.tags, v.MAX_TAG_VALUE),
                )
        else:
            self.report.add("registered models", "present")
        keel_versions = reg.list_versions(name) if existing is not None else []
        by_marker = {
            mv.tags[VERSION_TAG]: mv.version for mv in keel_versions if VERSION_TAG in mv.tags
        }
        numbers = {mv.version for mv in keel_versions}
        vmap: dict[int, int] = {}
        for ver in model.versions:
            self.progress.advance()
            if ver.status not in ("READY", ""):
                self.report.warn(
                    "model versions that are not READY were skipped",
                    f"{name} v{ver.version}: {ver.status}",
                )
                continue
            if ver.marker in by_marker:
                vmap[ver.version] = by_marker[ver.marker]
                self.report.add("model versions", "present")
                continue
            if self.dry:
                vmap[ver.version] = ver.version
                self.report.add("model versions", "new")
                continue
            try:
                vmap[ver.version] = self._version(reg, ver, numbers, lms)
                self.report.add("model versions", "new")
            except (KeelError, UnreachableError) as exc:
                self.report.errors.append(f"model version {name} v{ver.version}: {exc}")
                self.report.add("model versions", "failed")
        self._stages(reg, model, vmap, existing.multiple_production if existing else False)
        self._aliases(reg, model, vmap)

    def _version(
        self,
        reg: SqlRegistry,
        ver: SrcVersion,
        numbers: set[int],
        lms: Mapping[str, SrcLoggedModel],
    ) -> int:
        source, run_id, manifest = self._version_content(ver, lms)
        ref = self.client.objects.put_manifest(manifest)
        spec = {"flavor": "mlflow", "format": "mlflow-model", "unsafe": True}
        if "MLmodel" in manifest.entries:
            text = self.client.objects.get_bytes(manifest.entries["MLmodel"].digest).decode(
                "utf-8", "replace"
            )
            spec = mlmodel_spec(text, list(manifest.entries))
        else:
            self.report.warn(
                "model versions without an MLmodel file (recorded as unsafe)",
                f"{ver.name} v{ver.version}",
            )
        spec["mlflow_source"] = ver.source
        spec["mlflow_run_id"] = ver.run_id
        next_number = max(numbers, default=0) + 1
        while next_number < ver.version:  # versions deleted in MLflow: keep the numbers aligned
            self._placeholder(reg, ver.name, next_number)
            numbers.add(next_number)
            next_number += 1
        metrics: dict[str, float] = {}
        if run_id is not None:
            metrics = {k: x for k, x in self.client.get_run(run_id).metrics.items() if x == x}
        tags = self._pairs("Tag", ver.tags, v.MAX_TAG_VALUE)
        tags[VERSION_TAG] = ver.marker
        if ver.user:
            tags["keel.import.mlflow_user"] = ver.user[: v.MAX_TAG_VALUE]
        mv = reg.create_version(
            ver.name,
            actor=ACTOR,
            source=source,
            run_id=run_id,
            manifest_digest=ref.digest,
            spec=spec,
            metrics=metrics,
            datasets=[],
            description=ver.description,
            tags=tags,
        )
        numbers.add(mv.version)
        if mv.version != ver.version:
            self.report.warn(
                "model versions that got another number (the keel model already had versions)",
                f"{ver.name}: MLflow v{ver.version} is keel v{mv.version}",
            )
        return mv.version

    def _placeholder(self, reg: SqlRegistry, name: str, number: int) -> None:
        empty = self.client.objects.put_manifest(Manifest({}))
        reg.create_version(
            name,
            actor=ACTOR,
            source="mlflow:deleted-version",
            run_id=None,
            manifest_digest=empty.digest,
            spec={"flavor": "mlflow", "format": "placeholder", "unsafe": False},
            metrics={},
            datasets=[],
        )
        reg.delete_version(
            name, number, actor=ACTOR, reason=f"version {number} no longer exists in MLflow"
        )

    def _version_content(
        self, ver: SrcVersion, lms: Mapping[str, SrcLoggedModel]
    ) -> tuple[str, str | None, Manifest]:
        """(source, keel run, manifest): the files already copied into a run, else copied now."""
        keel_run = self.run_map.get(ver.run_id) if ver.run_id else None
        place: tuple[str, str] | None = None
        lm_match = _LOGGED_MODEL_URI.match(ver.source or "")
        runs_match = _RUNS_URI.match(ver.source or "")
        if lm_match and lm_match.group(1) in self.model_place:
            place = self.model_place[lm_match.group(1)]
        elif runs_match and runs_match.group(1) in self.run_map:
            place = (self.run_map[runs_match.group(1)], runs_match.group(2).strip("/"))
        elif ver.run_id in self.src_runs and keel_run is not None:
            root = (self.src_runs[ver.run_id].artifact_uri or "").rstrip("/") + "/"
            for where in (ver.source, ver.storage_location):
                if where and root != "/" and where.startswith(root):
                    place = (keel_run, where[len(root) :].strip("/"))
                    break
        if place is not None:
            run_id, path = place
            infos = self.client.list_artifacts(run_id, path)
            entries = {
                i.path[len(path) + 1 :]: BlobRef(i.digest, i.size)
                for i in infos
                if i.path.startswith(path + "/")
            }
            if entries:
                return f"runs:/{run_id}/{path}", run_id, Manifest(entries)
        lm = lms.get(lm_match.group(1)) if lm_match else None
        files = self.src.logged_model_files(lm) if lm is not None else self.src.version_files(ver)
        if not files:
            raise UnreachableError("its files were not found")
        with self.src.local_copies(files) as local:
            refs = self.client.objects.put_files(local)
        entries = {f.path: BlobRef(r.digest, r.size) for f, r in zip(files, refs, strict=True)}
        return ver.source or ver.storage_location or "mlflow", keel_run, Manifest(entries)

    def _stages(
        self, reg: SqlRegistry, model: SrcModel, vmap: Mapping[int, int], multiple: bool
    ) -> None:
        wanted: dict[int, str] = {}
        for ver in model.versions:
            if ver.version not in vmap:
                continue
            stage = next((s for s in STAGES if s.lower() == ver.stage.lower()), None)
            if stage is None:
                self.report.warn(
                    "unknown stages were ignored", f"{model.name} v{ver.version}: {ver.stage}"
                )
                continue
            wanted[vmap[ver.version]] = stage
        production = sorted(k for k, s in wanted.items() if s == "Production")
        if len(production) > 1 and not multiple:
            self.report.warn(
                "models with several Production versions keep the newest there (others Archived)",
                f"{model.name}: {', '.join(map(str, production))}",
            )
            for k in production[:-1]:
                wanted[k] = "Archived"
        current: dict[int, str] = {}
        if self.keel_exists:
            with contextlib.suppress(NotFoundError):
                current = {mv.version: mv.stage for mv in reg.list_versions(model.name)}
        for number, stage in sorted(wanted.items(), key=lambda kv: (kv[1] == "Production", kv[0])):
            if current.get(number, "None") == stage:
                if stage != "None":
                    self.report.add("stages", "present")
                continue
            self.report.add("stages", "new")
            if self.dry:
                continue
            try:
                reg.set_stage(model.name, number, stage, actor=ACTOR, reason="imported from MLflow")
            except PermissionDeniedError as exc:
                self.report.warn("protected stages were not set (request them in keel)", str(exc))

    def _aliases(self, reg: SqlRegistry, model: SrcModel, vmap: Mapping[int, int]) -> None:
        from keel.store._registry import check_alias

        current: dict[str, int] = {}
        if self.keel_exists:
            with contextlib.suppress(NotFoundError):
                current = reg.get_model(model.name).aliases
        for alias, version in sorted(model.aliases.items()):
            number = vmap.get(version)
            if number is None:
                self.report.warn(
                    "aliases of versions that were not imported were skipped",
                    f"{model.name}@{alias}",
                )
                continue
            try:
                check_alias(alias)
            except InvalidSpecError as exc:
                self.report.warn(
                    "aliases keel cannot represent were skipped", f"{model.name}@{alias}: {exc}"
                )
                continue
            if current.get(alias) == number:
                self.report.add("aliases", "present")
                continue
            self.report.add("aliases", "new")
            if self.dry:
                continue
            try:
                reg.set_alias(model.name, alias, number, actor=ACTOR, reason="imported from MLflow")
            except PermissionDeniedError as exc:
                self.report.warn("protected aliases were not set (request them in keel)", str(exc))


def import_mlflow(
    client: Client,
    source: str | os.PathLike[str] | MlflowSource,
    *,
    experiments: Sequence[str] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Copy an MLflow tracking store into keel (see the module docstring).

    Args:
        client: the keel client to import into.
        source: an MLflow database path or URL, a tracking server URL, or an open source.
        experiments: only these experiments (names or MLflow ids), and the model
            versions logged by their runs.
        dry_run: read everything and report what would be imported; write nothing.
        progress: receives progress (phases and steps).

    Raises NotFoundError or InvalidSpecError when the source is not an MLflow store
    (nothing is written then). Failures of single runs or versions do not stop the
    import: they are listed in ``report.errors``.
    """
    src = source if isinstance(source, MlflowSource) else open_source(os.fspath(source))
    report = ImportReport(src.label, dry_run)
    try:
        _Importer(client, src, report, progress or _NoProgress()).run(experiments)
    finally:
        if src is not source:
            src.close()
    return report
