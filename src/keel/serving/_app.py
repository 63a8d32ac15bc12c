"""The model server: a small ASGI app routing requests to micro-batched, verified models.

One process (a worker) holds, per deployment, its current policy and the models it
needs, loaded once and verified against the registry's hashes. A background task
polls the deployments' revisions (one cheap query every ``refresh_interval``); a
changed policy has its models loaded off the event loop first and is then swapped in
atomically, so a change reaches every worker within about a second with no restart
and no failed request. Another task judges running canaries (see
:meth:`~keel.serving.Deployments.tick`).

Predictions run in one thread per worker with BLAS/OpenMP limited to
``KEEL_SERVE_THREADS`` (default 1) threads: a predict call never fights the other
workers for cores. Requests queue per model version and are predicted together
(adaptive micro-batching: while the model is busy, arrivals join the next batch, up
to ``max_batch_size`` rows). Logging happens off the request path (:mod:`._log`).

The app is plain ASGI (no framework routing) because at ~1 ms per request every
10 µs of overhead is a percent of throughput; it answers JSON with orjson.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from keel.config import Settings, load_settings
from keel.exceptions import InvalidSpecError
from keel.serving._inputs import InputError, Prepared, concat, prepare
from keel.serving._policy import CANDIDATE, SHADOW, Policy

if TYPE_CHECKING:
    from keel.models import LoadedModel
    from keel.serving._deploy import Deployments
    from keel.serving._log import PredictionLogger

__all__ = ["ServingApp", "create_app"]

_log = logging.getLogger("keel.serving")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_JSON = [(b"content-type", b"application/json")]
_OPT = orjson.OPT_SERIALIZE_NUMPY


class HttpError(Exception):
    """An answer other than 200, with keel's error body."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"code": self.code, "message": self.message, "details": self.details}}
        )


# -- metrics ------------------------------------------------------------------------------------
class _Metrics:
    """Prometheus metrics per deployment and model version (summed over workers)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        reg = None if self.multiprocess else CollectorRegistry()
        dv = ["deployment", "model_version"]
        self.requests = Counter(
            "keel_serving_requests",
            "Prediction requests by deployment, model version (routed to) and status.",
            [*dv, "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "keel_serving_request_duration_seconds",
            "Time from receiving a prediction request to answering it.",
            dv,
            registry=reg,
            buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 1, 4),
        )
        self.batch_rows = Histogram(
            "keel_serving_batch_rows",
            "Rows per model call (micro-batches of requests).",
            dv,
            registry=reg,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096),
        )
        self.fallbacks = Counter(
            "keel_serving_fallbacks",
            "Requests answered by the fallback version because the routed one raised.",
            dv,
            registry=reg,
        )
        self.shadow = Counter(
            "keel_serving_shadow_requests",
            "Mirrored requests by deployment, shadow version and outcome (agree/disagree/error).",
            [*dv, "outcome"],
            registry=reg,
        )
        self.revision = Gauge(
            "keel_serving_policy_revision",
            "The deployment revision this worker routes by.",
            ["deployment"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.dropped = Counter(
            "keel_serving_log_dropped",
            "Prediction log rows dropped because the log could not be written for too long.",
            registry=reg,
        )
        self.registry = reg

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self.registry is not None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


# -- one loaded model version with its batcher ---------------------------------------------------
@dataclasses.dataclass
class _Pending:
    prepared: Prepared
    method: str
    future: asyncio.Future[Any]


class ModelSlot:
    """A loaded, verified model version and its request queue (micro-batching)."""

    def __init__(
        self,
        ref: str,
        model: LoadedModel,
        executor: ThreadPoolExecutor,
        metrics: _Metrics,
    ) -> None:
        self.ref = ref
        self.model = model
        self.signature = model.signature
        self.executor = executor
        self.metrics = metrics
        self.max_batch_size = 64
        self.max_wait = 0.0
        self._queue: list[_Pending] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._index: Any = None  # pd.Index of the input names, built once
        self._index_names: list[str] = []
        self._batch_hist: dict[str, Any] = {}

    def prepare(self, body: Any) -> Prepared:
        """The request's inputs checked against this version's signature."""
        return prepare(body, self.signature)

    def _call(self, prepared: Prepared, method: str) -> Any:
        predictor = self.model.predictor
        fn = predictor.predict if method == "predict" else predictor.predict_proba
        if fn is None:
            raise InvalidSpecError(f"Model {self.ref} has no {method}.")
        if self.signature is not None and self.signature.is_tensor:
            return fn(prepared.matrix)
        if self._index is None or self._index_names != prepared.names:
            import pandas as pd

            self._index, self._index_names = pd.Index(prepared.names), prepared.names
        return fn(prepared.frame(self._index))

    async def submit(self, prepared: Prepared, method: str, deployment: str) -> Any:
        """Predict ``prepared`` (with whatever else is queued); returns this request's rows."""
        loop = asyncio.get_running_loop()
        if not self._draining and not self._queue and self.max_wait == 0 and _alone(loop):
            # nothing else is running or waiting on this worker: predict here, without the
            # hop to the predict thread (with concurrent requests, the queue batches them)
            out = self._call(prepared, method)
            self._observe(deployment, prepared.n)
            return out
        pending = _Pending(prepared, method, loop.create_future())
        self._queue.append(pending)
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain(deployment))
        return await pending.future

    def _observe(self, deployment: str, rows: int) -> None:
        hist = self._batch_hist.get(deployment)
        if hist is None:
            hist = self._batch_hist[deployment] = self.metrics.batch_rows.labels(
                deployment, self.ref
            )
        hist.observe(rows)

    def _take(self) -> list[_Pending]:
        queue, rows = self._queue, 0
        batch: list[_Pending] = []
        method = queue[0].method
        i = 0
        while i < len(queue):
            item = queue[i]
            if item.method == method and (
                not batch or rows + item.prepared.n <= self.max_batch_size
            ):
                batch.append(item)
                rows += item.prepared.n
                queue.pop(i)
                if rows >= self.max_batch_size:
                    break
            else:
                i += 1
        return batch

    async def _drain(self, deployment: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                queued = sum(p.prepared.n for p in self._queue)
                if self.max_wait > 0 and queued < self.max_batch_size:
                    await asyncio.sleep(self.max_wait)  # let a batch form
                await self._run(self._take(), deployment, loop)
        finally:
            self._draining = False
            if self._queue:  # arrivals after the last take (or a cancelled drain)
                self._draining = True
                self._task = loop.create_task(self._drain(deployment))

    async def _run(
        self, batch: list[_Pending], deployment: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Predict one batch and settle every request's future (never raises)."""
        try:
            merged = batch[0].prepared if len(batch) == 1 else concat([p.prepared for p in batch])
            out = await loop.run_in_executor(self.executor, self._call, merged, batch[0].method)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, error=exc)
                return
            # one request may have made the whole batch fail: predict each alone
            for item in batch:
                try:
                    res = await loop.run_in_executor(
                        self.executor, self._call, item.prepared, item.method
                    )
                    _settle(item.future, result=res)
                except Exception as single:
                    _settle(item.future, error=single)
            return
        self._observe(deployment, merged.n)
        if len(batch) == 1:
            _settle(batch[0].future, result=out)
            return
        try:
            if len(out) != merged.n:
                raise ValueError(f"the model returned {len(out)} rows for {merged.n} inputs")
            start = 0
            for item in batch:
                end = start + item.prepared.n
                _settle(item.future, result=_rows(out, start, end))
                start = end
        except Exception as exc:
            for item in batch:
                _settle(item.future, error=exc)


_fewest_tasks: list[int] = []


def _alone(loop: asyncio.AbstractEventLoop) -> bool:
    """Is the calling request the only one in flight on this loop?

    A request is a task; the fewest tasks ever seen while serving one is the server's
    own tasks plus that request, so a count above it means other requests are in flight
    (or a shadow, or a drain) and the request should join the batching queue instead.
    """
    count = len(asyncio.all_tasks(loop))
    if not _fewest_tasks or count < _fewest_tasks[0]:
        _fewest_tasks[:] = [count]
    return count == _fewest_tasks[0]


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: Exception | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _rows(out: Any, start: int, end: int) -> Any:
    if hasattr(out, "iloc"):
        return out.iloc[start:end]
    return out[start:end]


def _jsonable(out: Any) -> Any:
    if hasattr(out, "to_dict") and hasattr(out, "columns"):  # a DataFrame
        return out.to_dict(orient="records")
    if hasattr(out, "tolist"):
        return out.tolist()
    if isinstance(out, list | tuple):
        return [_jsonable(x) for x in out]
    return out


def _disagreement(a: Any, b: Any) -> float:
    if len(a) != len(b) or not a:
        return 1.0
    differ = 0
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) or isinstance(y, float):
            try:
                differ += abs(float(x) - float(y)) > 1e-9 * max(1.0, abs(float(x)))
            except (TypeError, ValueError):
                differ += 1
        else:
            differ += x != y
    return differ / len(a)


# -- deployment state ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Live:
    """What a worker routes one deployment by (replaced whole, never mutated)."""

    name: str
    revision: int
    policy: Policy
    slots: dict[str, ModelSlot]


class ServingApp:
    """The ASGI application of ``keel serve``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        deployments: list[str] | None = None,
        refresh_interval: float = 0.5,
        tick_interval: float = 1.0,
        threads: int | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.only = list(deployments) if deployments else None
        self.refresh_interval = refresh_interval
        self.tick_interval = tick_interval
        self.threads = (
            threads if threads is not None else int(os.environ.get("KEEL_SERVE_THREADS", "1"))
        )
        self.metrics = _Metrics()
        self.live: dict[str, _Live] = {}
        self.slots: dict[str, ModelSlot] = {}
        self.load_errors: dict[str, str] = {}
        self._failed: dict[str, tuple[int, float]] = {}
        self._wanted: list[str] = []
        self.max_body = self.settings.max_request_size
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-predict")
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-load")
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._deployments: Deployments | None = None
        self.logger: PredictionLogger | None = None
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------------------
    def _start_sync(self) -> None:
        from keel.serving._deploy import Deployments
        from keel.serving._log import PredictionLogger
        from keel.tracking.client import Client

        self._client = Client(dataclasses.replace(self.settings, tracking_uri=None))
        self._deployments = Deployments(self._client)
        self.logger = PredictionLogger.for_settings(
            self.settings, self._deployments._store, on_dropped=self.metrics.dropped.inc
        )
        self.logger.start()
        self._limit_threads()
        self.refresh()
        # objects alive after start-up (libraries, the first models) are not garbage: keep the
        # cyclic collector from scanning them again and again (its pauses were the tail
        # latency). Models loaded later are scanned as usual, so replaced ones are freed.
        gc.collect()
        gc.freeze()

    def _limit_threads(self) -> None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - the serving extra has it
            return
        threadpool_limits(limits=self.threads)

    async def startup(self) -> None:
        """Open the stores, load every deployment's models, start the background tasks."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._loader, self._start_sync)
        self._tasks = [
            loop.create_task(self._every(self.refresh_interval, self.refresh)),
            loop.create_task(self._every(self.tick_interval, self._tick_canaries)),
        ]

    async def shutdown(self) -> None:
        """Stop the background tasks, flush the prediction log, close the stores."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        if self.logger is not None:
            self.logger.close()
        self.executor.shutdown(wait=True)
        self._loader.shutdown(wait=True)
        if self._client is not None:
            self._client.close()

    async def _every(self, interval: float, fn: Callable[[], Any]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(self._loader, fn)
            except Exception:
                _log.exception("background task %s failed; retrying", getattr(fn, "__name__", fn))

    # -- policies and models ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Pick up new, changed and removed deployments (runs in the loader thread)."""
        assert self._deployments is not None
        store = self._deployments._store
        revisions = store.revisions_by_name()
        wanted = [n for n in revisions if self.only is None or n in self.only]
        self._wanted = wanted
        for name in wanted:
            live = self.live.get(name)
            if live is not None and live.revision == revisions[name]:
                continue
            failed = self._failed.get(name)
            if failed and failed[0] == revisions[name] and time.monotonic() < failed[1]:
                continue  # the same revision failed to load just now: retry in a while
            try:
                dep = self._deployments.get(name)
                slots = {ref: self._slot(ref) for ref in dep.policy.versions}
            except Exception as exc:
                self.load_errors[name] = f"{type(exc).__name__}: {exc}"
                self._failed[name] = (revisions[name], time.monotonic() + 10.0)
                _log.error(
                    "deployment %s revision %s not loaded (still serving revision %s; retry "
                    "in 10 s): %s",
                    name,
                    revisions[name],
                    live.revision if live else None,
                    exc,
                )
                continue
            self._failed.pop(name, None)
            for slot in slots.values():
                slot.max_batch_size = dep.policy.max_batch_size
                slot.max_wait = dep.policy.max_wait_ms / 1000.0
            self.load_errors.pop(name, None)
            self.live[name] = _Live(name, dep.revision, dep.policy, slots)  # atomic swap
            self.metrics.revision.labels(name).set(dep.revision)
            _log.info("deployment %s now at revision %s (%s)", name, dep.revision, dep.policy.kind)
        for name in [n for n in self.live if n not in wanted]:
            del self.live[name]
        in_use = {ref for live in self.live.values() for ref in live.slots}
        for ref in [r for r in self.slots if r not in in_use]:
            del self.slots[ref]  # in-flight requests keep their reference until done

    def _slot(self, ref: str) -> ModelSlot:
        slot = self.slots.get(ref)
        if slot is None:
            from keel.registry import Registry

            model = Registry(self._client).load(f"models:/{ref}")  # hashes (and signature) checked
            slot = self.slots[ref] = ModelSlot(ref, model, self.executor, self.metrics)
            self._limit_threads()  # a model may have loaded a new BLAS/OpenMP library
        return slot

    def _tick_canaries(self) -> None:
        assert self._deployments is not None
        for live in list(self.live.values()):
            if live.policy.kind == "canary":
                done = self._deployments.tick(live.name)
                if done:
                    _log.warning("deployment %s: %s", live.name, done)
                    self.refresh()

    @property
    def ready(self) -> bool:
        """Every served deployment has a loaded, verified revision (and at least one exists).

        A revision that fails to load is reported (``/readyz`` ``errors``) and retried
        while the previous one keeps serving."""
        if self._deployments is None:
            return False
        if self.only is not None and any(n not in self.live for n in self.only):
            return False
        # a bad new revision does not make a serving worker unready: it keeps the old one
        return bool(self.live) and all(n in self.live for n in self._wanted)

    # -- ASGI -------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, body, headers = await self._handle(scope, receive)
        except HttpError as err:
            status, body, headers = err.status, err.body(), []
        except Exception:
            _log.exception("unexpected error serving %s", scope.get("path"))
            status, body, headers = 500, _INTERNAL.body(), []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": _JSON if not headers else _with_type(headers),
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    _log.exception("keel serve failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise _too_large(limit)
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    async def _json(self, scope: Scope, receive: Receive) -> Any:
        raw = await self._body(scope, receive)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, "malformed_json", f"The body is not valid JSON: {exc}.") from exc

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]] | None]:
        path: str = scope["path"]
        method: str = scope["method"]
        parts = path.strip("/").split("/")
        if (
            parts[0] == "v1"
            and len(parts) == 4
            and parts[1] == "deployments"
            and parts[3] in ("predict", "predict_proba")
        ):
            _allow(method, "POST")
            return await self._predict(parts[2], parts[3], scope, receive)
        if path == "/v1/feedback":
            _allow(method, "POST")
            return await self._feedback(scope, receive)
        if parts[0] == "v2":
            return await self._kserve(parts[1:], method, scope, receive)
        if path == "/healthz":
            return 200, orjson.dumps({"status": "ok"}), None
        if path == "/readyz":
            return self._readyz()
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            return (
                200,
                self.metrics.render(),
                [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            )
        if path in ("/v1/deployments", "/v1/deployments/"):
            _allow(method, "GET")
            return (
                200,
                orjson.dumps({"deployments": [self._describe(x) for x in self.live.values()]}),
                None,
            )
        if parts[0] == "v1" and len(parts) == 3 and parts[1] == "deployments":
            _allow(method, "GET")
            return 200, orjson.dumps(self._describe(self._live(parts[2]))), None
        raise HttpError(404, "not_found", f"No endpoint {method} {path}. See docs/serving.md.")

    def _readyz(self) -> tuple[int, bytes, None]:
        body = {
            "ready": self.ready,
            "deployments": {n: x.revision for n, x in self.live.items()},
            "errors": self.load_errors,
        }
        return (200 if self.ready else 503), orjson.dumps(body), None

    def _describe(self, live: _Live) -> dict[str, Any]:
        return {
            "name": live.name,
            "revision": live.revision,
            "policy": live.policy.to_dict(),
            "loaded": sorted(live.slots),
        }

    def _live(self, name: str) -> _Live:
        live = self.live.get(name)
        if live is None:
            if name in self.load_errors:
                raise HttpError(
                    503,
                    "not_ready",
                    f"Deployment '{name}' is not loaded: {self.load_errors[name]}",
                )
            raise HttpError(
                404,
                "not_found",
                f"No deployment '{name}' on this server. Deployments: "
                f"{', '.join(sorted(self.live)) or 'none'}.",
            )
        return live

    # -- predict ----------------------------------------------------------------------------------
    async def _predict(
        self, name: str, fn: str, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        live = self._live(name)
        body = await self._json(scope, receive)
        request_id: str | None = None
        key: str | None = None
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                request_id = _request_id(v.decode("latin-1"), "X-Request-Id")
            elif k == b"x-keel-key":
                key = v.decode("latin-1")
        rid = request_id or uuid.uuid4().hex
        policy = live.policy
        if key is None and policy.ab_key and isinstance(body, dict) and policy.ab_key in body:
            key = str(body.pop(policy.ab_key))
        result = await self.predict(live, body, fn, rid, key or rid)
        payload = {
            "predictions": result["outputs"],
            "model_version": result["served_by"],
            "request_id": rid,
            "deployment": name,
        }
        headers = [
            (b"x-request-id", rid.encode()),
            (b"x-keel-model-version", result["served_by"].encode()),
        ]
        return 200, orjson.dumps(payload, option=_OPT), headers

    async def predict(
        self, live: _Live, body: Any, fn: str, request_id: str, key: str
    ) -> dict[str, Any]:
        """Route, validate, predict (with fallback), log; returns outputs and who served."""
        start = time.perf_counter()
        policy = live.policy
        ref, role = policy.route(key)
        slot = live.slots[ref]
        try:
            prepared = slot.prepare(body)
        except InputError as exc:
            raise HttpError(422, "invalid_input", exc.message, {"problems": exc.problems}) from exc
        except InvalidSpecError as exc:
            raise HttpError(400, "invalid_input", exc.message) from exc
        status, served_by, error = "ok", ref, None
        try:
            out = await slot.submit(prepared, fn, live.name)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            fallback = policy.primary if role == CANDIDATE else policy.fallback
            fb_slot = live.slots.get(fallback) if fallback else None
            if fb_slot is None:
                self._unanswered(live, request_id, ref, role, start, prepared, error)
                raise HttpError(
                    500,
                    "model_error",
                    f"Model {ref} failed on this request ({type(exc).__name__}) and deployment "
                    f"'{live.name}' has no fallback version.",
                    {"model_version": ref},
                ) from exc
            try:
                fb_prepared = (
                    prepared if fb_slot.signature == slot.signature else fb_slot.prepare(body)
                )
                out = await fb_slot.submit(fb_prepared, fn, live.name)
            except Exception as exc2:
                self._unanswered(live, request_id, ref, role, start, prepared, error)
                raise HttpError(
                    500,
                    "model_error",
                    f"Model {ref} failed on this request and so did its fallback {fallback} "
                    f"({type(exc2).__name__}).",
                    {"model_version": ref, "fallback": fallback},
                ) from exc2
            status, served_by = "fallback", fb_slot.ref
            self.metrics.fallbacks.labels(live.name, ref).inc()
        outputs = _jsonable(out)
        self._count(live.name, ref, status)
        lat = self._latency.get((live.name, ref))
        if lat is None:
            lat = self._latency[(live.name, ref)] = self.metrics.latency.labels(live.name, ref)
        lat.observe(time.perf_counter() - start)
        self._log_row(
            live, request_id, ref, served_by, role, status, start, prepared, outputs, error
        )
        if policy.shadow is not None and policy.shadow in live.slots:
            task = asyncio.get_running_loop().create_task(
                self._shadow(live, policy.shadow, body, fn, request_id, outputs)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return {"outputs": outputs, "served_by": served_by, "role": role}

    def _unanswered(
        self,
        live: _Live,
        request_id: str,
        ref: str,
        role: str,
        start: float,
        prepared: Prepared,
        error: str,
    ) -> None:
        """Count and log a request nobody could answer."""
        self._count(live.name, ref, "error")
        self._log_row(live, request_id, ref, ref, role, "error", start, prepared, None, error)

    def _count(self, deployment: str, ref: str, status: str) -> None:
        key = (deployment, ref, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.requests.labels(*key)
        counter.inc()

    def _log_row(
        self,
        live: _Live,
        request_id: str,
        ref: str,
        served_by: str,
        role: str,
        status: str,
        start: float,
        prepared: Prepared | None,
        outputs: Any,
        error: str | None,
        disagreement: float | None = None,
    ) -> None:
        logger = self.logger
        if logger is None or not logger.enabled:
            return
        inputs = None
        if prepared is not None and live.policy.log_inputs:
            inputs = orjson.dumps(prepared.to_json_ready(), option=_OPT).decode()
        logger.log(
            {
                "request_id": request_id,
                "deployment": live.name,
                "model_version": ref,
                "served_by": served_by,
                "role": role,
                "status": status,
                "ts": int(time.time() * 1000),
                "latency_ms": (time.perf_counter() - start) * 1000.0,
                "n_rows": prepared.n if prepared is not None else 0,
                "inputs": inputs,
                "outputs": None if outputs is None else orjson.dumps(outputs, option=_OPT).decode(),
                "error": error,
                "disagreement": disagreement,
            }
        )

    async def _shadow(
        self, live: _Live, ref: str, body: Any, fn: str, request_id: str, primary_out: Any
    ) -> None:
        """Predict with the shadow version off the user's path; record how it compares."""
        start = time.perf_counter()
        slot = live.slots[ref]
        prepared = None
        try:
            prepared = slot.prepare(body)
            out = _jsonable(await slot.submit(prepared, fn, live.name))
        except Exception as exc:
            self.metrics.shadow.labels(live.name, ref, "error").inc()
            self._log_row(
                live,
                request_id,
                ref,
                ref,
                SHADOW,
                "error",
                start,
                prepared,
                None,
                f"{type(exc).__name__}: {exc}"[:2000],
            )
            return
        share = _disagreement(out, primary_out) if isinstance(out, list) else 1.0
        self.metrics.shadow.labels(live.name, ref, "disagree" if share else "agree").inc()
        self._log_row(live, request_id, ref, ref, SHADOW, "ok", start, prepared, out, None, share)

    # -- feedback ---------------------------------------------------------------------------------
    async def _feedback(self, scope: Scope, receive: Receive) -> tuple[int, bytes, None]:
        body = await self._json(scope, receive)
        items = body.get("feedback", [body]) if isinstance(body, dict) else body
        if not isinstance(items, list) or not items:
            raise HttpError(
                400,
                "invalid_input",
                'Send {"request_id": "...", "value": 1} or {"request_id": "...", "labels": [..]}, '
                'or {"feedback": [ ... ]} for several.',
            )
        rows, problems = [], []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("request_id"), str):
                problems.append({"index": i, "problem": "needs a string request_id"})
                continue
            if not _REQUEST_ID.fullmatch(item["request_id"]):
                problems.append(
                    {"index": i, "problem": "request_id must be 1-64 printable ASCII characters"}
                )
                continue
            value, labels = item.get("value"), item.get("labels", item.get("label"))
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                if isinstance(value, bool):
                    value = float(value)
                else:
                    problems.append({"index": i, "problem": "value must be a number"})
                    continue
            if labels is not None and not isinstance(labels, list):
                labels = [labels]
            if value is None and labels is None:
                problems.append({"index": i, "problem": "needs a value or labels"})
                continue
            rows.append({"request_id": item["request_id"], "value": value, "labels": labels})
        if problems:
            raise HttpError(
                422, "invalid_input", "Some feedback is not valid.", {"problems": problems[:20]}
            )
        assert self._deployments is not None
        store = self._deployments._store
        loop = asyncio.get_running_loop()
        known = await loop.run_in_executor(
            None, lambda: store.record_feedback(rows, actor=self.settings.user)
        )
        return 200, orjson.dumps({"recorded": len(rows), "matched": known}), None

    # -- KServe V2 (Open Inference Protocol) ------------------------------------------------------
    async def _kserve(
        self, parts: list[str], method: str, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]] | None]:
        from keel import __version__

        if not parts or parts == [""]:
            return (
                200,
                orjson.dumps({"name": "keel", "version": __version__, "extensions": []}),
                None,
            )
        if parts[0] == "health" and len(parts) == 2:
            if parts[1] == "live":
                return 200, orjson.dumps({"live": True}), None
            if parts[1] == "ready":
                return (200 if self.ready else 503), orjson.dumps({"ready": self.ready}), None
        if parts[0] == "models" and len(parts) >= 2:
            live = self._live(parts[1])
            rest = parts[2:]
            if rest[:1] == ["versions"] and len(rest) >= 2:
                served = {ref.rsplit("/", 1)[1] for ref in live.policy.versions}
                if rest[1] not in served:
                    raise HttpError(
                        404,
                        "not_found",
                        f"Deployment '{live.name}' does not serve version {rest[1]} "
                        f"(it serves {', '.join(sorted(served))}).",
                    )
                rest = rest[2:]
            if not rest:
                return 200, orjson.dumps(self._kserve_metadata(live)), None
            if rest == ["ready"]:
                return 200, orjson.dumps({"name": live.name, "ready": True}), None
            if rest == ["infer"]:
                _allow(method, "POST")
                return await self._kserve_infer(live, scope, receive)
        raise HttpError(
            404, "not_found", f"No Open Inference Protocol endpoint /v2/{'/'.join(parts)}."
        )

    def _kserve_metadata(self, live: _Live) -> dict[str, Any]:
        slot = live.slots[live.policy.primary]
        sig = slot.signature
        inputs = [
            {"name": c.name, "datatype": _V2_TYPES.get(c.dtype, "BYTES"), "shape": [-1]}
            for c in (sig.inputs if sig else ())
        ]
        outputs = [
            {"name": c.name, "datatype": _V2_TYPES.get(c.dtype, "BYTES"), "shape": [-1]}
            for c in (sig.outputs if sig else ())
        ]
        return {
            "name": live.name,
            "versions": [live.policy.primary.rsplit("/", 1)[1]],
            "platform": f"keel-{slot.model.flavor}",
            "inputs": inputs,
            "outputs": outputs,
        }

    async def _kserve_infer(
        self, live: _Live, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        body = await self._json(scope, receive)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise HttpError(400, "invalid_input", 'An inference request needs "inputs": [tensors].')
        columns: dict[str, Any] = {}
        rows_body: dict[str, Any] | None = None
        for i, tensor in enumerate(body["inputs"]):
            if not isinstance(tensor, dict) or "name" not in tensor or "data" not in tensor:
                raise HttpError(
                    400, "invalid_input", f"inputs[{i}] needs name, shape, datatype, data."
                )
            shape, data = tensor.get("shape") or [], tensor["data"]
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
            ):
                raise HttpError(
                    400,
                    "invalid_input",
                    f"inputs[{i}].shape must be a list of non-negative integers, "
                    f"got {shape!r:.80}.",
                )
            if len(shape) == 2 and shape[1] != 1 and len(body["inputs"]) == 1:
                flat = _flatten(data)
                width = int(shape[1])
                if width <= 0 or len(flat) != int(shape[0]) * width:
                    raise HttpError(
                        400, "invalid_input", f"inputs[{i}]: data does not fill shape {shape}."
                    )
                rows_body = {
                    "rows": [flat[r * width : (r + 1) * width] for r in range(int(shape[0]))]
                }
            else:
                columns[str(tensor["name"])] = _flatten(data)
        request_id = _request_id(body.get("id"), "id") or uuid.uuid4().hex
        result = await self.predict(
            live, rows_body or {"columns": columns}, "predict", request_id, request_id
        )
        outputs = result["outputs"]
        flat = outputs if isinstance(outputs, list) else [outputs]
        first = next((v for v in flat if v is not None), 0)
        datatype = (
            "BOOL"
            if isinstance(first, bool)
            else "INT64"
            if isinstance(first, int)
            else ("FP64" if isinstance(first, float) else "BYTES")
        )
        shape = [len(flat)] + ([len(flat[0])] if flat and isinstance(flat[0], list) else [])
        payload = {
            "model_name": live.name,
            "model_version": result["served_by"].rsplit("/", 1)[1],
            "id": request_id,
            "outputs": [
                {"name": "predict", "shape": shape, "datatype": datatype, "data": _flatten(flat)}
            ],
        }
        return 200, orjson.dumps(payload, option=_OPT), [(b"x-request-id", request_id.encode())]


_V2_TYPES = {
    "double": "FP64",
    "float": "FP32",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
    "string": "BYTES",
}


_INTERNAL = HttpError(
    500, "internal_error", "The server failed on this request; its log has the details."
)


_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,64}")


def _request_id(value: Any, where: str) -> str | None:
    """A caller's request id: 1-64 printable ASCII characters (it is echoed in a header)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise HttpError(
            400,
            "invalid_input",
            f"{where} must be 1 to 64 printable ASCII characters without spaces, "
            f"got {str(value)[:80]!r}.",
        )
    return value


def _with_type(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with a JSON content type unless they set one."""
    if any(k == b"content-type" for k, _ in headers):
        return headers
    return [*_JSON, *headers]


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if data and isinstance(data[0], list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item))
        return out
    return data


def _allow(method: str, expected: str) -> None:
    if method != expected:
        raise HttpError(405, "method_not_allowed", f"Use {expected} here, not {method}.")


def _too_large(limit: int) -> HttpError:
    return HttpError(
        413,
        "request_too_large",
        f"The request body is larger than this server accepts ({limit} bytes; "
        "KEEL_MAX_REQUEST_SIZE). Send fewer rows per request.",
        {"limit": limit},
    )


def create_app() -> ServingApp:
    """The app ``keel serve`` runs in each worker (configured from the environment)."""
    only = os.environ.get("KEEL_SERVE_DEPLOYMENTS")
    deployments = [d for d in only.split(",") if d] if only else None
    refresh = float(os.environ.get("KEEL_SERVE_REFRESH", "0.5"))
    return ServingApp(deployments=deployments, refresh_interval=refresh)
