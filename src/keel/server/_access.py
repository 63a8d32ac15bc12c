"""Access control of the server (``KEEL_AUTH=on``): who calls, and may they do this.

One dependency, :func:`authorize`, guards every API route. With auth off it does
nothing (a local, trusted setup). With auth on it

1. authenticates the caller: ``Authorization: Bearer keel_...``, or Basic auth
   whose password is the token (MLflow clients' ``MLFLOW_TRACKING_USERNAME`` and
   ``MLFLOW_TRACKING_PASSWORD``); anything else is 401, before the request is
   looked at further;
2. derives from the method and path what the request needs: an action (``read``,
   ``write``, ``approve``, ``admin``) on a scope (``experiment:<id>`` for
   experiments, runs and their artifacts, ``model:<name>`` for registry objects,
   ``*`` for listings across everything);
3. checks the caller's roles. A role on ``*`` works everywhere, a scoped role on
   its object only. The global role is checked first and object scopes are
   resolved only after (a run's experiment, a request's model); an object that
   cannot be resolved counts as needing a global role, so a caller without one
   gets the same 403 whether or not the object exists.

The authenticated user is left on ``request.state.user``: the dependencies of
:mod:`keel.server.deps` make it the actor of everything the request does.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from keel.exceptions import AuthenticationError, ConfigError, KeelError, PermissionDeniedError
from keel.store import schema as t
from keel.store._auth import RANKS
from keel.store.sql import SqlStore
from keel.tracking.client import Client

__all__ = ["Need", "authorize", "bearer_token", "identity"]

_NATIVE = "/api/v1"
_MLFLOW = ("/api/2.0/mlflow/", "/api/3.0/mlflow/")
_ARTIFACTS = "/api/2.0/mlflow-artifacts/"
#: MLflow endpoints that only read, although sent with POST.
_MLFLOW_READS = {
    "/runs/search",
    "/experiments/search",
    "/logged-models/search",
    "/registered-models/get-latest-versions",
}


@dataclass(frozen=True)
class Need:
    """One requirement of a request: ``action`` on the scope ``kind``/``key`` resolves to.

    ``kind`` is ``experiment``, ``experiment_name``, ``mlflow_experiment`` (``0`` is
    the default experiment), ``run``, ``logged_model``, ``model``, ``request``,
    ``any`` (a role with the action anywhere) or ``global`` (a role on ``*``).
    """

    action: str
    kind: str = "global"
    key: str = ""


def bearer_token(request: Request) -> str | None:
    """The API token of a request: a Bearer token, or the password of Basic auth."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def identity(request: Request) -> str | None:
    """The authenticated user of a request (None with auth off)."""
    user: str | None = getattr(request.state, "user", None)
    return user


def _text(value: Any) -> str:
    if isinstance(value, list):
        value = value[-1] if value else ""
    return "" if value is None else str(value)


def _items(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(x) for x in value] if isinstance(value, list) else [str(value)]


def _native(method: str, path: str, f: dict[str, Any]) -> list[Need]:
    """Requirements of a native API request (``path`` relative to /api/v1)."""
    act = "read" if method in ("GET", "HEAD") else "write"
    parts = [p for p in path.split("/") if p]
    if not parts:
        return [Need(act)]
    head, rest = parts[0], parts[1:]
    if head == "experiments":
        if not rest:
            return [Need(act)]
        if rest[0] == "get-or-create":
            return [Need(act, "experiment_name", _text(f.get("name")))]
        if rest[0] == "by-name":
            return [Need(act, "experiment_name", _text(f.get("name")))]
        return [Need(act, "experiment", rest[0])]
    if head == "runs":
        if not rest:
            return [Need(act, "experiment", _text(f.get("experiment_id")))]
        if rest[0] == "search":
            ids = _items(f.get("experiment_ids"))
            return [Need("read", "experiment", i) for i in ids] or [Need("read")]
        if rest[0] == "heartbeat":
            ids = _items(f.get("run_ids"))
            return [Need(act, "run", i) for i in ids] or [Need(act)]
        if rest[0] == "reap":
            return [Need(act)]
        return [Need(act, "run", rest[0])]
    if head == "blobs":
        # content-addressed: a digest is known only to who has the content or may list it
        if rest == ["exists"]:  # a batch of HEADs: a read, whatever the method
            return [Need("read", "any")]
        return [Need(act, "any")] if rest else [Need(act)]
    if head == "models":
        if not rest:
            return [Need(act, "model", _text(f.get("name")))] if act == "write" else [Need(act)]
        if rest[1:] == ["protection"] and act == "write":
            return [Need("admin", "model", rest[0])]
        needs = [Need(act, "model", rest[0])]
        source = _text(f.get("source"))
        if len(rest) == 2 and rest[1] == "versions" and source.startswith("runs:/"):
            needs.append(Need("read", "run", source[len("runs:/") :].split("/")[0]))
        return needs
    if head == "requests":
        if len(rest) == 2 and rest[1] in ("approve", "reject"):
            return [Need("approve", "request", rest[0])]
        model = _text(f.get("model"))
        return [Need(act, "model", model)] if model else [Need(act)]
    if head == "roles":
        model = _text(f.get("model"))
        return [Need("admin", "model", model)] if model else [Need("admin")]
    return [Need(act)]  # lineage, audit: across every object


def _mlflow(method: str, path: str, f: dict[str, Any]) -> list[Need]:
    """Requirements of an MLflow API request (``path`` relative to /api/2.0/mlflow)."""
    read = method in ("GET", "HEAD") or path in _MLFLOW_READS
    act = "read" if read else "write"
    if path in ("/experiments/create", "/experiments/search", "/server-info"):
        return [] if path == "/server-info" else [Need(act)]
    if path == "/experiments/get-by-name":
        return [Need(act, "experiment_name", _text(f.get("experiment_name")))]
    if path == "/runs/search":
        ids = _items(f.get("experiment_ids"))
        return [Need("read", "mlflow_experiment", i) for i in ids] or [Need("read")]
    if path.startswith(("/registered-models/", "/model-versions/")):
        if path.endswith("/search"):
            return [Need("read")]
        needs = [Need(act, "model", _text(f.get("name")))]
        if path == "/model-versions/create" and _text(f.get("run_id")):
            needs.append(Need("read", "run", _text(f.get("run_id"))))
        return needs
    if path.startswith("/logged-models"):
        model_id = path.split("/")[2] if path.count("/") >= 2 else ""
        if model_id and model_id != "search":
            return [Need(act, "logged_model", model_id)]
        ids = _items(f.get("experiment_ids")) or _items(f.get("experiment_id"))
        return [Need(act, "mlflow_experiment", i) for i in ids] or [Need(act)]
    run = _text(f.get("run_id")) or _text(f.get("run_uuid"))
    if run:
        return [Need(act, "run", run)]
    exp = _text(f.get("experiment_id"))
    if exp:
        return [Need(act, "mlflow_experiment", exp)]
    return [Need(act)]


def _artifacts(method: str, path: str, f: dict[str, Any]) -> list[Need]:
    """Requirements of an mlflow-artifacts request: the experiment leading its path."""
    act = "read" if method in ("GET", "HEAD") else "write"
    target = path[len("/artifacts") :] if path.startswith("/artifacts") else ""
    target = target.lstrip("/") or _text(f.get("path"))
    exp = target.strip("/").split("/")[0]
    return [Need(act, "experiment", exp)] if exp.isdigit() else [Need(act)]


class _Checker:
    """Evaluates needs against one user's roles (resolving scopes only when required)."""

    def __init__(self, client: Client, store: SqlStore, user: str) -> None:
        self.client = client
        self.store = store
        self.user = user
        with store._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(t.roles.c.role, t.roles.c.scope).where(t.roles.c.user == user)
            ).all()
        self.roles = [(str(r.role), str(r.scope)) for r in rows]

    def can(self, action: str, scope: str) -> bool:
        return any(
            sc in ("*", scope) and action in RANKS.get(role, frozenset()) for role, sc in self.roles
        )

    def scope(self, need: Need) -> str | None:
        """The scope a need names, or None if it names nothing that exists."""
        store, key = self.store, need.key
        if not key:
            return None
        try:
            if need.kind == "experiment":
                return f"experiment:{key}" if key.isdigit() else None
            if need.kind == "model":
                return f"model:{key}"
            if need.kind == "experiment_name":
                return f"experiment:{store.get_experiment_by_name(key).experiment_id}"
            if need.kind == "mlflow_experiment":
                if key == "0":
                    return f"experiment:{store.get_experiment_by_name('Default').experiment_id}"
                return f"experiment:{key}" if key.isdigit() else None
            if need.kind == "run":
                return f"experiment:{store.get_run(key).experiment_id}"
            if need.kind == "request":
                return self._request_model(int(key))
            if need.kind == "logged_model":
                return self._logged_model(key)
        except (KeelError, ValueError):
            return None
        except Exception as e:  # MlflowError of an unknown logged model
            if type(e).__name__ == "MlflowError":
                return None
            raise
        return None

    def _request_model(self, req_id: int) -> str | None:
        ar, mv, m = t.approval_requests.c, t.model_versions.c, t.registered_models.c
        with self.store._tx(write=False) as conn:
            name = conn.execute(
                sa.select(m.name)
                .join(t.model_versions, mv.model_id == m.id)
                .join(t.approval_requests, ar.version_id == mv.id)
                .where(ar.id == req_id)
            ).scalar_one_or_none()
        return None if name is None else f"model:{name}"

    def _logged_model(self, model_id: str) -> str | None:
        from keel.server.mlflow import _logged

        return f"experiment:{_logged.get(self.client, model_id).experiment_id}"

    def check(self, needs: list[Need]) -> None:
        for need in needs:
            if self.can(need.action, "*"):
                continue
            if need.kind == "any":
                if any(need.action in RANKS.get(role, frozenset()) for role, _ in self.roles):
                    continue
            elif need.kind != "global":
                scope = self.scope(need)
                if scope is not None and self.can(need.action, scope):
                    continue
            raise PermissionDeniedError(
                f"{self.user} may not do this: it needs the {need.action} permission on "
                "this object or globally (ask an admin for a role).",
                user=self.user,
            )


async def _fields(request: Request, streamed: bool) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        data[key] = values if len(values) > 1 else values[0]
    if streamed or request.method in ("GET", "HEAD"):
        return data
    body = await request.body()  # cached: the route reads the same bytes again
    try:
        parsed = json.loads(body) if body.strip() else {}
    except ValueError:
        parsed = {}
    if isinstance(parsed, dict):
        data.update(parsed)
    return data


async def authorize(request: Request) -> None:
    """FastAPI dependency: authenticate and authorize the request (auth on only)."""
    if not request.app.state.settings.auth:
        return
    path, method = request.url.path, request.method
    mlflow = path.startswith((*_MLFLOW, _ARTIFACTS))
    client: Client = request.app.state.client
    store = client.store
    if not isinstance(store, SqlStore):  # pragma: no cover - create_app always builds one
        raise ConfigError("Access control needs the server's SQL metadata store.")
    try:
        user = await run_in_threadpool(store.auth.authenticate, bearer_token(request))
        streamed = path.startswith(("/api/v1/blobs/", _ARTIFACTS))
        f = await _fields(request, streamed)
        if path.startswith(_NATIVE + "/"):
            needs = _native(method, path[len(_NATIVE) :], f)
        elif path.startswith(_ARTIFACTS):
            needs = _artifacts(method, path[len(_ARTIFACTS) - 1 :], f)
        elif path.startswith(_MLFLOW):
            needs = _mlflow(method, "/" + path.split("/", 4)[4], f)
        else:
            needs = [Need("read" if method in ("GET", "HEAD") else "write")]
        await run_in_threadpool(_Checker(client, store, user).check, needs)
    except (AuthenticationError, PermissionDeniedError) as e:
        if not mlflow:
            raise
        from keel.server.mlflow._errors import MlflowError

        if isinstance(e, AuthenticationError):
            raise MlflowError(e.message, "UNAUTHENTICATED", 401) from None
        raise MlflowError(e.message, "PERMISSION_DENIED", 403) from None
    request.state.user = user
