"""The fluent tracking API: ``with keel.start_run(): keel.log_metric(...)``.

One :class:`~keel.tracking.client.Client` per configuration is kept for the
process; the active runs form a stack (``nested=True`` pushes a child run).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from keel import _validation as v
from keel.config import load_settings
from keel.entities import ArtifactInfo, Metric, Run, RunStatus
from keel.exceptions import InvalidSpecError, InvalidStateError
from keel.tracking.client import Client, OutputFormat

__all__ = [
    "ActiveRun",
    "active_run",
    "download_artifact",
    "download_artifacts",
    "end_run",
    "flush",
    "get_client",
    "get_metric_history",
    "get_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "search_runs",
    "set_tag",
    "set_tags",
    "start_run",
]

_ENV_KEYS = (
    "KEEL_HOME",
    "KEEL_STORE_URI",
    "KEEL_ARTIFACT_URI",
    "KEEL_CONFIG",
    "KEEL_S3_ENDPOINT_URL",
    "KEEL_HEARTBEAT_INTERVAL",
    "KEEL_HEARTBEAT_TIMEOUT",
    "KEEL_FLUSH_INTERVAL",
    "KEEL_USER",
    "KEEL_VERIFY_KEYS",
    "KEEL_TRACKING_URI",
)
_clients: dict[tuple[str | None, ...], Client] = {}
_clients_lock = threading.Lock()
_stack: list[ActiveRun] = []
#: Tags added to every run this process starts (e.g. ``keel.seed``).
default_tags: dict[str, str] = {}


def get_client() -> Client:
    """The process-wide client for the current configuration (env vars, keel.toml)."""
    key = (*(os.environ.get(k) for k in _ENV_KEYS), os.getcwd())  # noqa: PTH109 - str, cheap
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = Client(load_settings())
    return client


def _reset() -> None:
    """Forget clients and active runs (tests; after fork in the child)."""
    _stack.clear()
    _clients.clear()


os.register_at_fork(after_in_child=_reset)


class ActiveRun:
    """A run being recorded by this process; a context manager.

    On a clean exit the run ends FINISHED; an exception marks it FAILED with the
    traceback stored; ``KeyboardInterrupt`` marks it KILLED.
    """

    def __init__(self, run: Run, client: Client) -> None:
        self.run_id = run.run_id
        self.info = run
        self.client = client
        self._last_ts: dict[str, int] = {}
        self._ended = False

    @property
    def id(self) -> str:
        """The run id."""
        return self.run_id

    def __repr__(self) -> str:
        return f"<ActiveRun {self.info.name!r} id={self.run_id}>"

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.KILLED, failure="KeyboardInterrupt")
        else:
            self.end(
                RunStatus.FAILED, failure="".join(traceback.format_exception(exc_type, exc, tb))
            )

    def end(self, status: RunStatus | str = RunStatus.FINISHED, failure: str | None = None) -> None:
        """Flush metrics and end the run (idempotent)."""
        if self._ended:
            return
        self._ended = True
        if self in _stack:
            _stack.remove(self)
        self.client.end_run(self.run_id, status, failure=failure)

    def get(self) -> Run:
        """The run as stored now."""
        return self.client.get_run(self.run_id)

    # -- hot path -------------------------------------------------------------------------
    def _point(
        self, key: str, value: Any, step: int | None, timestamp: int | None
    ) -> tuple[str, float, int, int]:
        value = v.check_metric_value(key, value) if type(value) is not float else value
        if step is None:
            step = 0
        elif type(step) is not int or not -(2**63) <= step < 2**63:
            step = v.check_step(key, step)
        if timestamp is None:
            ts = time.time_ns() // 1000
            last = self._last_ts.get(key)
            if last is not None and ts <= last:  # keep points distinct within this process
                ts = last + 1
            self._last_ts[key] = ts
        else:
            ts = int(timestamp) * 1000
        return (key, value, step, ts)

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Queue one metric point; durable after :func:`flush` or the end of the run."""
        if key not in _checked_keys:
            v.check_key("Metric", key)
            _checked_keys.add(key)
        self.client.buffer.add(self.run_id, self._point(key, value, step, timestamp))

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Queue several metric points sharing a step."""
        points = []
        for key, value in metrics.items():
            if key not in _checked_keys:
                v.check_key("Metric", key)
                _checked_keys.add(key)
            points.append(self._point(key, value, step, timestamp))
        self.client.buffer.extend(self.run_id, points)


_checked_keys: set[str] = set()


def _require_active() -> ActiveRun:
    if not _stack:
        raise InvalidStateError(
            "No active run: wrap the code in `with keel.start_run(experiment=...):` first."
        )
    return _stack[-1]


def active_run() -> ActiveRun | None:
    """The innermost active run, or None."""
    return _stack[-1] if _stack else None


def start_run(
    experiment: str | None = None,
    *,
    run_name: str | None = None,
    nested: bool = False,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    run_id: str | None = None,
    log_environment: bool = True,
) -> ActiveRun:
    """Start (or resume, with ``run_id``) a run and make it active.

    Args:
        experiment: experiment name or id; default ``$KEEL_EXPERIMENT`` or ``Default``.
            Created if it does not exist.
        run_name: a name; a memorable one is generated otherwise.
        nested: start a child run of the active run.
        tags: initial tags.
        description: free text.
        run_id: resume this existing run instead of creating one.
        log_environment: capture git, Python, packages and hardware.
    """
    client = get_client()
    if _stack and not nested:
        raise InvalidStateError(
            f"Run {_stack[-1].run_id} is already active. End it first (keel.end_run()), "
            "or pass nested=True to start a child run."
        )
    if run_id is not None:
        run = client.get_run(v.check_run_id(run_id))
        if run.status != RunStatus.RUNNING:
            client.store.end_run(run_id, RunStatus.RUNNING)
            run = client.get_run(run_id)
    else:
        all_tags = {**default_tags, **(tags or {})}
        env_digest = None
        if log_environment:
            from keel.tracking.environment import capture_environment, environment_tags

            env = capture_environment()
            env_digest = _store_environment(client, env)
            all_tags = {**environment_tags(env), **all_tags}
        parent = _stack[-1].run_id if nested and _stack else None
        if experiment is None:
            experiment = (
                _stack[-1].info.experiment_id
                if parent
                else os.environ.get("KEEL_EXPERIMENT") or "Default"
            )
        run = client.create_run(
            v.check_name("Experiment", experiment),
            name=run_name,
            parent_run_id=parent,
            tags=all_tags,
            description=description,
            environment_digest=env_digest,
            heartbeat=True,
        )
    active = ActiveRun(run, client)
    client.buffer.watch(run.run_id)
    _stack.append(active)
    _install_excepthook()
    return active


def _install_excepthook() -> None:
    """Mark runs left active by an uncaught exception FAILED, with the traceback.

    Runs used as context managers handle this themselves; this covers
    ``keel.start_run()`` without ``with`` in a script that crashes.
    """
    previous = sys.excepthook
    if getattr(previous, "_keel", False):
        return

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        status = RunStatus.KILLED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED
        failure = "".join(traceback.format_exception(exc_type, exc, tb))
        for run in list(reversed(_stack)):
            try:
                run.end(status, failure=failure)
            except Exception:
                pass
        previous(exc_type, exc, tb)

    hook._keel = True  # type: ignore[attr-defined]
    sys.excepthook = hook


_env_digests: dict[tuple[int, str], str] = {}


def _store_environment(client: Client, env: dict[str, Any]) -> str:
    import json

    key = (id(client), client.objects.uri)
    digest = _env_digests.get(key)
    if digest is None:
        data = json.dumps(env, sort_keys=True, default=str).encode()
        digest = _env_digests[key] = client.objects.put_bytes(data).digest
    return digest


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the innermost active run."""
    _require_active().end(status)


def flush() -> None:
    """Block until every metric logged so far is durably stored."""
    for client in list(_clients.values()):
        client.flush()


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    """Log a metric point to the active run (buffered; see :func:`flush`).

    Args:
        key: metric name.
        value: a number; NaN and +/-inf are stored and returned exactly.
        step: integer step (default 0).
        timestamp: milliseconds since the epoch (default now).
    """
    _require_active().log_metric(key, value, step, timestamp)


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
) -> None:
    """Log several metrics at one step to the active run."""
    _require_active().log_metrics(metrics, step, timestamp)


def log_param(key: str, value: object) -> None:
    """Log a param; params are immutable (a different value later is an error)."""
    run = _require_active()
    run.client.log_params(run.run_id, {key: value})


def log_params(params: Mapping[str, object]) -> None:
    """Log several params in one transaction."""
    run = _require_active()
    run.client.log_params(run.run_id, params)


def set_tag(key: str, value: object) -> None:
    """Set a tag on the active run."""
    run = _require_active()
    run.client.set_tags(run.run_id, {key: value})


def set_tags(tags: Mapping[str, object]) -> None:
    """Set several tags on the active run."""
    run = _require_active()
    run.client.set_tags(run.run_id, tags)


def log_artifact(
    local_path: str | os.PathLike[str], artifact_path: str | None = None
) -> ArtifactInfo:
    """Store a file in the active run under ``<artifact_path>/<file name>``."""
    run = _require_active()
    return run.client.log_artifact(run.run_id, local_path, artifact_path)


def log_artifacts(
    local_dir: str | os.PathLike[str], artifact_path: str | None = None
) -> list[ArtifactInfo]:
    """Store a directory tree in the active run."""
    run = _require_active()
    return run.client.log_artifacts(run.run_id, local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> ArtifactInfo:
    """Store text as an artifact file of the active run."""
    run = _require_active()
    return run.client.log_text(run.run_id, text, artifact_file)


def log_dict(data: Mapping[str, Any], artifact_file: str) -> ArtifactInfo:
    """Store a dict as JSON (or YAML) in the active run."""
    run = _require_active()
    return run.client.log_dict(run.run_id, data, artifact_file)


def log_figure(figure: Any, artifact_file: str) -> ArtifactInfo:
    """Store a matplotlib figure in the active run."""
    run = _require_active()
    return run.client.log_figure(run.run_id, figure, artifact_file)


def log_table(data: Any, artifact_file: str) -> ArtifactInfo:
    """Store a DataFrame or Arrow table as Parquet in the active run."""
    run = _require_active()
    return run.client.log_table(run.run_id, data, artifact_file)


def get_run(run_id: str) -> Run:
    """A run with its params, latest metrics, tags, status and parent."""
    return get_client().get_run(run_id)


def get_metric_history(run_id: str, key: str) -> list[Metric]:
    """Every point of a metric with step and timestamp (flushes buffered points first)."""
    client = get_client()
    client.flush()
    return client.get_metric_history(run_id, key)


def search_runs(
    experiments: Sequence[str] | str | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
    page_token: str | None = None,
    view: str = "active",
    output: OutputFormat = "list",
) -> Any:
    """Search runs; see :meth:`keel.Client.search_runs` and docs/search.md."""
    return get_client().search_runs(
        experiments, filter, order_by, max_results, page_token, view, output
    )


def download_artifacts(
    run_id: str, path: str = "", dst_path: str | os.PathLike[str] | None = None
) -> Path:
    """Download a run's file or folder, verified against its hash."""
    return get_client().download_artifacts(run_id, path, dst_path)


def download_artifact(
    run_id: str, path: str, dst_path: str | os.PathLike[str] | None = None
) -> Path:
    """Download one artifact file (alias of :func:`download_artifacts`)."""
    if not path:
        raise InvalidSpecError(
            "download_artifact needs the path of a file; use download_artifacts for all."
        )
    return download_artifacts(run_id, path, dst_path)


@atexit.register
def _at_exit() -> None:
    for run in list(reversed(_stack)):
        try:
            run.end()
        except Exception:
            pass
    for client in list(_clients.values()):
        try:
            client.close()
        except Exception:
            pass
