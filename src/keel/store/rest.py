"""The metadata store over a keel server (``KEEL_TRACKING_URI=http://host:5000``).

:class:`RestStore` implements the :class:`~keel.store.base.Store` primitives as
calls to the server's native API (``/api/v1``), and :class:`RestRegistry` the
registry storage the :class:`~keel.registry.Registry` uses, so tracking and
registry code cannot tell a server from an in-process store:

* inputs are validated here first, by the same base class (same errors, no
  round trip), and again by the server;
* error bodies ``{"error": {"code", "message", "details"}}`` become the same
  :class:`~keel.exceptions.KeelError` subclasses, with message and details;
* connection failures and 502/503/504 answers are retried with exponential
  backoff, for idempotent calls only (reads, ``PUT``/``DELETE``-style updates and
  the batch log, whose points the server de-duplicates). A request that never
  reached the server (connection refused) is retried whatever it was;
* non-finite floats travel as the strings ``"NaN"``, ``"Infinity"`` and
  ``"-Infinity"`` (:func:`encode_float`, :func:`decode_float`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from keel.entities import (
    ApprovalRequest,
    ArtifactInfo,
    AuditEvent,
    Experiment,
    Metric,
    ModelVersion,
    RegisteredModel,
    Run,
    RunStatus,
)
from keel.exceptions import (
    AlreadyExistsError,
    AuthenticationError,
    BackendUnavailableError,
    ConfigError,
    IntegrityError,
    InvalidSpecError,
    InvalidStateError,
    KeelError,
    NotFoundError,
    ParamConflictError,
    PermissionDeniedError,
)
from keel.store.base import MetricPoint, Store, ViewType

if TYPE_CHECKING:
    import httpx

    from keel.store._data import DatasetInfo, DatasetVersion
    from keel.store._filter import Node, OrderBy

__all__ = [
    "ERROR_CODES",
    "ApiClient",
    "RestData",
    "RestRegistry",
    "RestStore",
    "decode_float",
    "encode_float",
    "render_filter",
    "render_order_by",
]

#: Error code of the server's error body -> the error raised here (see keel.server.errors).
ERROR_CODES: dict[str, type[KeelError]] = {
    "not_found": NotFoundError,
    "already_exists": AlreadyExistsError,
    "param_conflict": ParamConflictError,
    "invalid_input": InvalidSpecError,
    "invalid_state": InvalidStateError,
    "permission_denied": PermissionDeniedError,
    "unauthenticated": AuthenticationError,
    "integrity_error": IntegrityError,
    "backend_unavailable": BackendUnavailableError,
    "config_error": ConfigError,
    "request_too_large": InvalidSpecError,
    "internal_error": KeelError,
    "error": KeelError,
}
_BY_STATUS: dict[int, type[KeelError]] = {
    400: InvalidSpecError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: InvalidStateError,
    413: InvalidSpecError,
    422: InvalidSpecError,
    502: BackendUnavailableError,
    503: BackendUnavailableError,
    504: BackendUnavailableError,
}
#: Metric points per batch request (about 5 MB of JSON).
POINTS_PER_REQUEST = 100_000
_RETRY_STATUSES = frozenset({502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: Header naming the acting user of registry calls (trusted until the server has auth).
USER_HEADER = "X-Keel-User"

_T = TypeVar("_T")


# -- JSON floats --------------------------------------------------------------------------
def encode_float(value: float) -> float | str:
    """A float for JSON: NaN and +/-inf become ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def decode_float(value: object) -> float:
    """Inverse of :func:`encode_float`; raises InvalidSpecError on anything else."""
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value in _SPECIAL:
        return _SPECIAL[value]
    raise InvalidSpecError(
        f"Expected a number or 'NaN', 'Infinity', '-Infinity', got {value!r}.", value=str(value)
    )


# -- search filters -----------------------------------------------------------------------
_PLURAL = {"metric": "metrics", "param": "params", "tag": "tags"}


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return repr(value)  # ints, and floats including nan / inf / -inf


def _ident(entity: str, key: str) -> str:
    if entity == "attribute":
        return key  # attribute names are plain words
    return f"{_PLURAL[entity]}.`{key.replace('`', '``')}`"


def _render(node: Node, min_prec: int) -> str:
    from keel.store._filter import And, Compare, InList, IsNull, Like, Not, Or

    if isinstance(node, Or):
        text, prec = " or ".join(_render(i, 2) for i in node.items), 1
    elif isinstance(node, And):
        text, prec = " and ".join(_render(i, 3) for i in node.items), 2
    elif isinstance(node, Not):
        text, prec = f"not {_render(node.item, 3)}", 3
    else:
        ident, prec = _ident(node.entity, node.key), 4
        neg = "not " if getattr(node, "negated", False) else ""
        if isinstance(node, Compare):
            text = f"{ident} {node.op} {_literal(node.value)}"
        elif isinstance(node, InList):
            text = f"{ident} {neg}in ({', '.join(_literal(v) for v in node.values)})"
        elif isinstance(node, Like):
            op = "ilike" if node.case_insensitive else "like"
            text = f"{ident} {neg}{op} {_literal(node.pattern)}"
        else:
            assert isinstance(node, IsNull)
            text = f"{ident} is {neg}null"
    return f"({text})" if prec < min_prec else text


def render_filter(node: Node | None) -> str | None:
    """Filter text that parses back to ``node`` (the server parses what the client did)."""
    return None if node is None else _render(node, 0)


def render_order_by(order: Sequence[OrderBy]) -> list[str]:
    """``order_by`` items that parse back to ``order``."""
    return [f"{_ident(o.entity, o.key)} {'DESC' if o.descending else 'ASC'}" for o in order]


# -- decoding -----------------------------------------------------------------------------
def _build(cls: type[_T], data: Mapping[str, Any], **overrides: Any) -> _T:
    """A dataclass from a JSON object, ignoring fields this client does not know."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names}, **overrides)


def _floats(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: decode_float(v) for k, v in values.items()}


def _experiment(data: Mapping[str, Any]) -> Experiment:
    return _build(Experiment, data)


def _run(data: Mapping[str, Any]) -> Run:
    return _build(
        Run,
        {k: v for k, v in data.items() if k not in ("status", "metrics")},
        status=RunStatus(data["status"]),
        metrics=_floats(data.get("metrics") or {}),
    )


def _metric(data: Mapping[str, Any]) -> Metric:
    return Metric(data["key"], decode_float(data["value"]), data["step"], data.get("timestamp"))


def _artifact(data: Mapping[str, Any]) -> ArtifactInfo:
    return ArtifactInfo(data["path"], data["digest"], data["size"])


def _model(data: Mapping[str, Any]) -> RegisteredModel:
    return _build(RegisteredModel, data)


def _version(data: Mapping[str, Any]) -> ModelVersion:
    return _build(
        ModelVersion,
        {k: v for k, v in data.items() if k != "metrics"},
        metrics=_floats(data.get("metrics") or {}),
    )


def _request(data: Mapping[str, Any]) -> ApprovalRequest:
    return _build(ApprovalRequest, data)


def _event(data: Mapping[str, Any]) -> AuditEvent:
    return _build(AuditEvent, data)


def _seg(value: object) -> str:
    """One URL path segment (everything escaped, '/' included)."""
    return quote(str(value), safe="")


# -- HTTP ---------------------------------------------------------------------------------
class ApiClient:
    """A pooled HTTP client for one keel server: timeouts, retries, error mapping.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:5000``.
        timeout: seconds to wait for each read or write on the connection.
        connect_timeout: seconds to wait for a connection.
        retries: retries of a failed idempotent request (connection errors, 502/503/504).
        backoff: first retry delay in seconds; it doubles each time (with jitter).
        max_backoff: longest delay between two attempts.
        transport: an ``httpx`` transport to use instead of the network (tests).
        token: an API token, sent as ``Authorization: Bearer <token>`` (servers with auth on).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        retries: int = 6,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.transport = transport
        self._http: httpx.Client | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state["transport"] = None  # connections do not cross processes
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ApiClient.__init__(self, **state)

    @property
    def http(self) -> httpx.Client:
        """The connection pool (created on first use, and again after a fork)."""
        pid = os.getpid()
        if self._http is None or self._pid != pid:
            with self._lock:
                if self._http is None or self._pid != pid:
                    import httpx

                    from keel import __version__

                    self._http = httpx.Client(
                        base_url=self.base_url,
                        timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                        headers=self._headers(__version__),
                        transport=self.transport,
                    )
                    self._pid = pid
        return self._http

    def _headers(self, version: str) -> dict[str, str]:
        headers = {"User-Agent": f"keel/{version}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def close(self) -> None:
        """Close pooled connections (the client reopens them if used again)."""
        with self._lock:
            if self._http is not None and self._pid == os.getpid():
                self._http.close()
            self._http = None

    # -- requests ------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send a JSON request to ``/api/v1<path>``; return the decoded JSON answer (or None)."""
        content = None
        all_headers = dict(headers or {})
        if body is not None:
            try:
                content = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
            except ValueError as exc:  # a NaN or infinity outside the fields that encode it
                raise InvalidSpecError(f"Cannot send {method} {path}: {exc}.") from exc
            all_headers["Content-Type"] = "application/json"
        response = self.send(
            method,
            path,
            content=content,
            params=params,
            headers=all_headers,
            idempotent=idempotent,
        )
        try:
            return response.json() if response.content else None
        except ValueError as exc:
            raise KeelError(
                f"The keel server at {self.base_url} sent an unreadable answer to "
                f"{method} {path}: {response.text[:200]!r}. Is KEEL_TRACKING_URI a keel server?"
            ) from exc

    def send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | Callable[[], Iterable[bytes]] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send a request with retries; return a 2xx response or raise the mapped KeelError.

        ``content`` may be a callable returning a fresh byte iterator per attempt
        (streamed uploads). With ``stream=True`` the body is left unread: close the
        response when done.
        """
        import httpx

        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        url = "/api/v1" + path
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            body = content() if callable(content) else content
            try:
                request = self.http.build_request(
                    method, url, content=body, params=clean_params, headers=headers
                )
                response = self.http.send(request, stream=True)
                if not (stream and response.is_success):
                    try:
                        response.read()
                    finally:
                        response.close()
            except httpx.UnsupportedProtocol as exc:
                raise ConfigError(
                    f"{self.base_url} is not an http:// or https:// URL of a keel server ({exc})."
                ) from exc
            except httpx.TransportError as exc:
                never_sent = isinstance(
                    exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                )
                if (idempotent or never_sent) and attempt < self.retries:
                    self._pause(attempt)
                    attempt += 1
                    continue
                resent = idempotent or never_sent
                raise self._unreachable(exc, method, url, attempt + 1, never_sent, resent) from exc
            if response.is_success:
                return response
            if response.status_code in _RETRY_STATUSES and idempotent and attempt < self.retries:
                self._pause(attempt)
                attempt += 1
                continue
            raise self.error_for(response, method, url)

    def _unreachable(
        self, exc: Exception, method: str, url: str, attempts: int, never_sent: bool, resent: bool
    ) -> BackendUnavailableError:
        what = f"{type(exc).__name__}: {exc or 'no answer'}"
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        if never_sent:
            return BackendUnavailableError(
                f"The keel server at {self.base_url} is unreachable{tried} ({what}) during "
                f"{method} {url}. Check that `keel server` is running there and that "
                "KEEL_TRACKING_URI is right.",
                url=self.base_url,
            )
        if resent:
            return BackendUnavailableError(
                f"The connection to the keel server at {self.base_url} broke{tried} during "
                f"{method} {url} ({what}). Check that the server is healthy, then retry.",
                url=self.base_url,
            )
        return BackendUnavailableError(
            f"The connection to the keel server at {self.base_url} broke during {method} {url} "
            f"({what}). The server may have applied the request; it was not sent again "
            "because repeating it is not safe. Check its state, then retry.",
            url=self.base_url,
        )

    def _pause(self, attempt: int) -> None:
        delay = min(self.max_backoff, self.backoff * 2**attempt)
        time.sleep(delay * (0.5 + random.random() / 2))

    def error_for(self, response: httpx.Response, method: str, url: str) -> KeelError:
        """The KeelError an error answer stands for (by its error code, else its status)."""
        status = response.status_code
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
            details = dict(error.get("details") or {})
        except (ValueError, KeyError, TypeError):
            code, details = "", {}
            snippet = response.text.strip()[:200]
            message = (
                f"The keel server at {self.base_url} answered {status} "
                f"{response.reason_phrase} to {method} {url}"
                + (f": {snippet}" if snippet else "")
                + "."
            )
        cls = ERROR_CODES.get(code) or _BY_STATUS.get(status, KeelError)
        err = cls.__new__(cls)
        details.pop("message", None)
        KeelError.__init__(err, message, **details)
        return err


# -- the store ----------------------------------------------------------------------------
class RestStore(Store):
    """The metadata store of a keel server, over its REST API.

    Args:
        uri: the server, e.g. ``http://127.0.0.1:5000`` (``KEEL_TRACKING_URI``).
        **options: :class:`ApiClient` options (timeouts, retries, transport).
    """

    def __init__(self, uri: str, **options: Any) -> None:
        self.uri = uri.rstrip("/")
        self.api = ApiClient(self.uri, **options)

    @property
    def registry(self) -> RestRegistry:
        """Registry, roles, lineage and audit storage of the server."""
        return RestRegistry(self.api)

    @property
    def data(self) -> RestData:
        """Dataset-version storage of the server (what :mod:`keel.data` uses)."""
        return RestData(self.api)

    def close(self) -> None:
        """Close pooled connections."""
        self.api.close()

    # -- experiments ---------------------------------------------------------------------
    def _create_experiment(
        self,
        name: str,
        artifact_location: str | None,
        tags: dict[str, str],
        description: str | None,
    ) -> Experiment:
        body = {
            "name": name,
            "artifact_location": artifact_location,
            "tags": tags,
            "description": description,
        }
        return _experiment(self.api.call("POST", "/experiments", body))

    def _get_or_create_experiment(self, name: str) -> Experiment:
        data = self.api.call("POST", "/experiments/get-or-create", {"name": name}, idempotent=True)
        return _experiment(data)

    def get_experiment(self, experiment_id: str) -> Experiment:
        """Experiment by id; raises NotFoundError."""
        return _experiment(self.api.call("GET", f"/experiments/{_seg(experiment_id)}"))

    def get_experiment_by_name(self, name: str) -> Experiment:
        """Experiment by name; raises NotFoundError suggesting close names."""
        return _experiment(self.api.call("GET", "/experiments/by-name", params={"name": name}))

    def _list_experiments(self, view: ViewType) -> list[Experiment]:
        data = self.api.call("GET", "/experiments", params={"view": view})
        return [_experiment(e) for e in data["experiments"]]

    def set_experiment_lifecycle(self, experiment_id: str, stage: str) -> None:
        """Soft-delete (``deleted``) or restore (``active``) an experiment."""
        self.api.call("PUT", f"/experiments/{_seg(experiment_id)}/lifecycle", {"stage": stage})

    # -- runs ----------------------------------------------------------------------------
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
        body = {
            "experiment_id": str(experiment_id),
            "name": name,
            "parent_run_id": parent_run_id,
            "tags": tags,
            "description": description,
            "user": user,
            "start_time": start_time,
            "environment_digest": environment_digest,
            "heartbeat": heartbeat,
        }
        return _run(self.api.call("POST", "/runs", body))

    def _get_run(self, run_id: str) -> Run:
        return _run(self.api.call("GET", f"/runs/{run_id}"))

    def _run_status(self, run_id: str) -> RunStatus:
        return RunStatus(self.api.call("GET", f"/runs/{run_id}/status")["status"])

    def _set_status(
        self, run_id: str, status: RunStatus, end_time: int | None, failure: str | None
    ) -> None:
        body = {"status": str(status), "end_time": end_time, "failure": failure}
        self.api.call("PUT", f"/runs/{run_id}/status", body)

    def _set_run_lifecycle(self, run_id: str, stage: str) -> None:
        self.api.call("PUT", f"/runs/{run_id}/lifecycle", {"stage": stage})

    def heartbeat(self, run_ids: Sequence[str]) -> None:
        """Record that the processes owning these runs are alive."""
        if run_ids:
            self.api.call("POST", "/runs/heartbeat", {"run_ids": list(run_ids)}, idempotent=True)

    def reap_dead_runs(self, timeout: float) -> list[str]:
        """Mark RUNNING runs whose heartbeat is older than ``timeout`` s as FAILED."""
        return list(self.api.call("POST", "/runs/reap", {"timeout": timeout})["run_ids"])

    # -- params, metrics, tags -----------------------------------------------------------
    def _log_batch(
        self,
        run_id: str,
        points: Sequence[MetricPoint],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        """Send a batch; very large ones go as several requests, each all-or-nothing.

        Splitting keeps every request far below the server's body limit; a
        re-sent chunk is harmless, the server stores a point (run, key, step, µs) once.
        """
        if not (points or params or tags):
            return
        chunks = [
            points[i : i + POINTS_PER_REQUEST] for i in range(0, len(points), POINTS_PER_REQUEST)
        ]
        for i, chunk in enumerate(chunks or [()]):
            body = {
                "metrics": [[k, encode_float(val), step, ts] for k, val, step, ts in chunk],
                "params": params if i == 0 else {},
                "tags": tags if i == 0 else {},
            }
            self.api.call("POST", f"/runs/{run_id}/batch", body, idempotent=True)

    def _delete_tag(self, run_id: str, key: str) -> None:
        self.api.call("DELETE", f"/runs/{run_id}/tags/{quote(key)}", idempotent=False)

    def _get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        data = self.api.call("GET", f"/runs/{run_id}/metrics/{quote(key)}")
        return [_metric(m) for m in data["metrics"]]

    # -- search --------------------------------------------------------------------------
    def _search_runs(
        self,
        experiment_ids: list[str],
        node: Node | None,
        order: list[OrderBy],
        max_results: int,
        page_token: str | None,
        view: ViewType,
    ) -> tuple[list[Run], str | None]:
        body = {
            "experiment_ids": [str(e) for e in experiment_ids],
            "filter": render_filter(node),
            "order_by": render_order_by(order),
            "max_results": max_results,
            "page_token": page_token,
            "view": view,
        }
        data = self.api.call("POST", "/runs/search", body, idempotent=True)
        return [_run(r) for r in data["runs"]], data.get("next_page_token")

    # -- artifacts -----------------------------------------------------------------------
    def _record_artifacts(self, run_id: str, entries: list[ArtifactInfo]) -> None:
        if not entries:
            return
        body = {"artifacts": [dataclasses.asdict(e) for e in entries]}
        self.api.call("POST", f"/runs/{run_id}/artifacts", body, idempotent=True)

    def _list_artifacts(self, run_id: str, prefix: str) -> list[ArtifactInfo]:
        data = self.api.call("GET", f"/runs/{run_id}/artifacts", params={"prefix": prefix})
        return [_artifact(a) for a in data["artifacts"]]


# -- the registry -------------------------------------------------------------------------
def _model_path(name: str) -> str:
    if not isinstance(name, str) or "/" in name:
        raise InvalidSpecError(
            f"Model name {name!r} cannot be addressed through a keel server: names may not "
            "contain '/' (models:/ URIs cannot name them either). Choose another name.",
            name=str(name),
        )
    return f"/models/{_seg(name)}"


class RestRegistry:
    """Registry, roles, lineage and audit storage of a keel server.

    The methods and their contracts are those of
    :class:`keel.store._registry.SqlRegistry` that :class:`keel.registry.Registry`
    calls; the acting user travels in the ``X-Keel-User`` header.
    """

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    @staticmethod
    def _as(actor: str) -> dict[str, str]:
        return {USER_HEADER: actor}

    # -- models --------------------------------------------------------------------------
    def create_model(
        self,
        name: str,
        *,
        actor: str,
        description: str | None = None,
        owner: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel:
        """Register a model name; raises AlreadyExistsError if taken."""
        _model_path(name)
        body = {"name": name, "description": description, "owner": owner, "tags": dict(tags or {})}
        return _model(self.api.call("POST", "/models", body, headers=self._as(actor)))

    def get_model(self, name: str) -> RegisteredModel:
        """A registered model with its aliases and newest version number."""
        return _model(self.api.call("GET", _model_path(name)))

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        return [_model(m) for m in self.api.call("GET", "/models")["models"]]

    def update_model(
        self, name: str, *, actor: str, reason: str | None = None, **changes: Any
    ) -> RegisteredModel:
        """Edit description, owner, purpose or limitations (audited with before/after)."""
        body = {**changes, "reason": reason}
        data = self.api.call(
            "PATCH", _model_path(name), body, headers=self._as(actor), idempotent=False
        )
        return _model(data)

    def set_protection(
        self,
        name: str,
        *,
        actor: str,
        stages: Sequence[str] | None = None,
        aliases: Sequence[str] | None = None,
        required_approvals: int | None = None,
        multiple_production: bool | None = None,
        reason: str | None = None,
    ) -> RegisteredModel:
        """Configure which stages/aliases need approvals, and how many."""
        body = {
            "stages": None if stages is None else list(stages),
            "aliases": None if aliases is None else list(aliases),
            "required_approvals": required_approvals,
            "multiple_production": multiple_production,
            "reason": reason,
        }
        data = self.api.call(
            "PUT",
            f"{_model_path(name)}/protection",
            body,
            headers=self._as(actor),
            idempotent=False,
        )
        return _model(data)

    # -- versions ------------------------------------------------------------------------
    def create_version(
        self,
        name: str,
        *,
        actor: str,
        source: str,
        run_id: str | None,
        manifest_digest: str,
        spec: dict[str, Any],
        metrics: Mapping[str, float],
        datasets: Sequence[str],
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Add the next version of ``name`` from ``source`` (a ``runs:/`` URI).

        The server resolves the source itself (manifest, spec, run metrics, datasets)
        and refuses if its manifest differs from ``manifest_digest``, what this
        client resolved; ``spec``, ``metrics`` and ``datasets`` are not sent.
        """
        del run_id, spec, metrics, datasets  # recomputed by the server from its own records
        body = {
            "source": source,
            "manifest_digest": manifest_digest,
            "description": description,
            "tags": dict(tags or {}),
        }
        data = self.api.call("POST", f"{_model_path(name)}/versions", body, headers=self._as(actor))
        return _version(data)

    def get_version(self, name: str, version: int | str) -> ModelVersion:
        """One version; raises NotFoundError listing the versions that exist."""
        return _version(self.api.call("GET", f"{_model_path(name)}/versions/{_seg(version)}"))

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every (not deleted) version of a model, newest first."""
        data = self.api.call("GET", f"{_model_path(name)}/versions")
        return [_version(v) for v in data["versions"]]

    def resolve_alias(self, name: str, alias: str) -> ModelVersion:
        """The version an alias points to; raises NotFoundError listing the aliases."""
        return _version(self.api.call("GET", f"{_model_path(name)}/aliases/{_seg(alias)}"))

    def latest_in_stage(self, name: str, stage: str) -> ModelVersion:
        """The newest version in a stage (``models:/name/Production``)."""
        return _version(self.api.call("GET", f"{_model_path(name)}/stages/{_seg(stage)}"))

    def latest_version(self, name: str) -> ModelVersion:
        """The newest version (``models:/name/latest``)."""
        return _version(self.api.call("GET", f"{_model_path(name)}/versions/latest"))

    def set_stage(
        self,
        name: str,
        version: int | str,
        stage: str,
        *,
        actor: str,
        reason: str | None = None,
        archive_existing: bool = True,
    ) -> ModelVersion:
        """Move a version to a stage (protected stages need an approved request)."""
        body = {"stage": stage, "reason": reason, "archive_existing": archive_existing}
        data = self.api.call(
            "PUT",
            f"{_model_path(name)}/versions/{_seg(version)}/stage",
            body,
            headers=self._as(actor),
            idempotent=False,  # each call appends an audit event
        )
        return _version(data)

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int | str,
        *,
        actor: str,
        reason: str | None = None,
    ) -> ModelVersion:
        """Point an alias at a version, atomically (one version per alias)."""
        data = self.api.call(
            "PUT",
            f"{_model_path(name)}/aliases/{_seg(alias)}",
            {"version": str(version), "reason": reason},
            headers=self._as(actor),
            idempotent=False,
        )
        return _version(data)

    def delete_alias(self, name: str, alias: str, *, actor: str, reason: str | None = None) -> None:
        """Remove an alias."""
        self.api.call(
            "DELETE",
            f"{_model_path(name)}/aliases/{_seg(alias)}",
            params={"reason": reason},
            headers=self._as(actor),
            idempotent=False,
        )

    def update_version(
        self,
        name: str,
        version: int | str,
        *,
        actor: str,
        reason: str | None = None,
        description: str | None = None,
        signature_b64: str | None = None,
        signed_by: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Edit a version's description or tags, or attach a signature (audited)."""
        body = {
            "reason": reason,
            "description": description,
            "signature_b64": signature_b64,
            "signed_by": signed_by,
            "tags": None if tags is None else dict(tags),
        }
        data = self.api.call(
            "PATCH",
            f"{_model_path(name)}/versions/{_seg(version)}",
            body,
            headers=self._as(actor),
            idempotent=False,
        )
        return _version(data)

    def delete_version(
        self, name: str, version: int | str, *, actor: str, reason: str | None = None
    ) -> None:
        """Soft-delete a version; aliases pointing at it are removed (all audited)."""
        self.api.call(
            "DELETE",
            f"{_model_path(name)}/versions/{_seg(version)}",
            params={"reason": reason},
            headers=self._as(actor),
            idempotent=False,
        )

    # -- roles and approvals -------------------------------------------------------------
    def grant(self, user: str, role: str, *, actor: str, model: str | None = None) -> None:
        """Give ``user`` a role, on one model or everywhere (audited)."""
        body = {"user": user, "role": role, "model": model}
        self.api.call("POST", "/roles", body, headers=self._as(actor))

    def revoke(self, user: str, role: str, *, actor: str, model: str | None = None) -> None:
        """Take a role away (audited)."""
        self.api.call(
            "DELETE",
            "/roles",
            params={"user": user, "role": role, "model": model},
            headers=self._as(actor),
            idempotent=False,
        )

    def approvers(self, name: str) -> list[str]:
        """Users who may approve changes to a model (approver or admin role)."""
        return list(self.api.call("GET", f"{_model_path(name)}/approvers")["users"])

    def request(
        self,
        name: str,
        version: int | str,
        *,
        actor: str,
        stage: str | None = None,
        alias: str | None = None,
        comment: str | None = None,
    ) -> ApprovalRequest:
        """Ask approvers to move a version to a stage or alias."""
        body = {"stage": stage, "alias": alias, "comment": comment}
        data = self.api.call(
            "POST",
            f"{_model_path(name)}/versions/{_seg(version)}/requests",
            body,
            headers=self._as(actor),
        )
        return _request(data)

    def list_requests(
        self, name: str | None = None, status: str | None = "pending"
    ) -> list[ApprovalRequest]:
        """Approval requests, oldest first (pending only by default; ``None`` for all)."""
        if name is not None:
            _model_path(name)
        params = {"model": name, "status": status or "all"}
        return [_request(r) for r in self.api.call("GET", "/requests", params=params)["requests"]]

    def vote(
        self, req_id: int, decision: str, *, actor: str, comment: str | None = None
    ) -> ApprovalRequest:
        """Approve or reject a pending request; enough approvals apply it at once."""
        if decision not in ("approve", "reject"):
            raise InvalidSpecError("decision must be 'approve' or 'reject'.")
        data = self.api.call(
            "POST",
            f"/requests/{int(req_id)}/{decision}",
            {"comment": comment},
            headers=self._as(actor),
        )
        return _request(data)

    # -- lineage and audit ---------------------------------------------------------------
    def add_edge(self, src: str, dst: str, relation: str) -> None:
        """Record a lineage edge ``src -> dst`` (idempotent)."""
        body = {"src": src, "dst": dst, "relation": relation}
        self.api.call("POST", "/lineage/edges", body, idempotent=True)

    def lineage(
        self, start: str, direction: str, depth: int
    ) -> tuple[list[str], list[tuple[str, str, str]]]:
        """Walk the lineage graph from ``start``."""
        data = self.api.call(
            "GET", "/lineage", params={"node": start, "direction": direction, "depth": depth}
        )
        return list(data["nodes"]), [(s, d, r) for s, d, r in data["edges"]]

    def audit_events(
        self, obj_prefix: str | None = None, limit: int | None = None
    ) -> list[AuditEvent]:
        """Audit events in order (fetched page by page)."""
        events: list[AuditEvent] = []
        token: str | None = None
        while limit is None or len(events) < limit:
            page = 1000 if limit is None else min(1000, limit - len(events))
            params = {"object_prefix": obj_prefix, "max_results": page, "page_token": token}
            data = self.api.call("GET", "/audit/events", params=params)
            events.extend(_event(e) for e in data["events"])
            token = data.get("next_page_token")
            if not token:
                break
        return events

    def verify_audit(self) -> tuple[int, str | None]:
        """Verify the audit chain: (events checked, None) or (first broken seq, why)."""
        data = self.api.call("GET", "/audit/verify")
        return int(data["checked"]), data.get("problem")


# -- dataset versions ---------------------------------------------------------------------
def _dataset_path(name: str) -> str:
    from keel.store._data import check_dataset_name

    return f"/datasets/{_seg(check_dataset_name(name))}"


def _dataset_version(data: Mapping[str, Any]) -> DatasetVersion:
    from keel.store._data import DatasetVersion

    return _build(DatasetVersion, data)


def _dataset_info(data: Mapping[str, Any]) -> DatasetInfo:
    from keel.store._data import DatasetInfo

    latest = data.get("latest")
    return _build(
        DatasetInfo,
        {k: v for k, v in data.items() if k != "latest"},
        latest=None if latest is None else _dataset_version(latest),
    )


class RestData:
    """Dataset-version storage of a keel server (what :mod:`keel.data` calls).

    The methods and their contracts are those of :class:`keel.store._data.SqlData`;
    the acting user travels in the ``X-Keel-User`` header (with auth on the server
    records the authenticated user instead). The server refuses a version whose
    blobs it does not hold, so upload them first. Garbage collection needs the
    server's own stores: its methods raise :class:`InvalidStateError` here.
    """

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def _pages(self, path: str, key: str) -> list[Any]:
        items: list[Any] = []
        token: str | None = None
        while True:
            data = self.api.call("GET", path, params={"max_results": 1000, "page_token": token})
            items.extend(data[key])
            token = data.get("next_page_token")
            if not token:
                return items

    # -- writes ----------------------------------------------------------------------------
    def create_version(
        self,
        name: str,
        *,
        kind: str,
        manifest_digest: str,
        file_count: int,
        total_bytes: int,
        actor: str,
        run_id: str | None = None,
        message: str | None = None,
        extra: dict[str, Any] | None = None,
        reuse_identical: bool = True,
    ) -> DatasetVersion:
        """Record a new version (or return the identical latest one, ``created=False``)."""
        from keel.store._data import KINDS

        path = _dataset_path(name)
        if kind not in KINDS:
            raise InvalidSpecError(f"Dataset kind must be one of {KINDS}, got {kind!r}.")
        body = {
            "kind": kind,
            "manifest_digest": manifest_digest,
            "file_count": file_count,
            "total_bytes": total_bytes,
            "run_id": run_id,
            "message": message,
            "extra": extra or {},
            "reuse_identical": reuse_identical,
        }
        data = self.api.call(
            "POST", f"{path}/versions", body, headers=RestRegistry._as(actor), idempotent=False
        )
        return _dataset_version(data)

    def delete_version(self, name: str, version: int, *, actor: str, reason: str | None) -> None:
        """Delete one version (its blobs stay until ``keel data gc`` on the server)."""
        self.api.call(
            "DELETE",
            f"{_dataset_path(name)}/versions/{int(version)}",
            params={"reason": reason},
            headers=RestRegistry._as(actor),
            idempotent=False,
        )

    def add_edge(self, src: str, dst: str, relation: str) -> None:
        """Record a lineage edge (idempotent)."""
        RestRegistry(self.api).add_edge(src, dst, relation)

    # -- reads -----------------------------------------------------------------------------
    def get_version(self, name: str, version: int | None = None) -> DatasetVersion:
        """One version; ``None`` means the latest."""
        number = "latest" if version is None else str(int(version))
        return _dataset_version(self.api.call("GET", f"{_dataset_path(name)}/versions/{number}"))

    def versions(self, name: str) -> list[DatasetVersion]:
        """Every version of a dataset, oldest first."""
        found = self._pages(f"{_dataset_path(name)}/versions", "versions")
        return [_dataset_version(v) for v in found]

    def list_datasets(self) -> list[DatasetInfo]:
        """Every dataset with its version count and newest version, by name."""
        return [_dataset_info(d) for d in self._pages("/datasets", "datasets")]

    # -- garbage collection: on the server only --------------------------------------------
    def _gc_only(self) -> InvalidStateError:
        return InvalidStateError(
            f"Garbage collection needs the server's own stores, not the keel server at "
            f"{self.api.base_url}: run `keel data gc` on the server (with its KEEL_STORE_URI "
            "and KEEL_ARTIFACT_URI).",
            url=self.api.base_url,
        )

    def all_versions(self) -> list[DatasetVersion]:
        """Not available remotely: run ``keel data gc`` on the server."""
        raise self._gc_only()

    def referenced_blobs(self) -> set[str]:
        """Not available remotely: run ``keel data gc`` on the server."""
        raise self._gc_only()

    def model_manifests(self) -> Sequence[str]:
        """Not available remotely: run ``keel data gc`` on the server."""
        raise self._gc_only()
