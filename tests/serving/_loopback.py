"""Loopback helpers for serving reliability tests: a webhook receiver and a load generator.

Both talk only to 127.0.0.1 and are bounded in time; both run in a background thread
so the test's own thread stays free to change policies or kill the server.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx


# -- webhook receiver -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    content_type: str | None
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording every POST (answers 200 ``ok``).

    Use as a context manager; ``url`` is where to point ``KEEL_ALERT_WEBHOOK``.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._cond:
                    receiver.received.append(
                        Received(self.path, self.headers.get("content-type"), body)
                    )
                    receiver._cond.notify_all()
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/keel"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        """Wait until ``count`` requests arrived (or ``timeout`` s passed); returns them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.received)


# -- load generator -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """One request of the load: when it was sent and answered (monotonic s), and how."""

    index: int
    request_id: str
    sent: float
    answered: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    model_version: str | None
    error: str | None


class Load:
    """``clients`` concurrent asyncio+httpx clients POSTing to ``url`` until stopped.

    ``body(i)`` gives request ``i``'s JSON body; each request carries ``X-Request-Id:
    {prefix}-{i}``. Runs in its own thread and event loop; ``stop()`` returns every answer.
    At most ``max_requests`` are sent and no request runs past ``max_seconds``.
    """

    def __init__(
        self,
        url: str,
        body: Callable[[int], Any],
        *,
        clients: int = 8,
        prefix: str = "load",
        max_requests: int = 100_000,
        max_seconds: float = 60.0,
        timeout: float = 15.0,
    ) -> None:
        self.url = url
        self.body = body
        self.clients = clients
        self.prefix = prefix
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.answers: list[Answer] = []
        self._next = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="load", daemon=True)

    def start(self) -> Load:
        """Start sending in the background."""
        self._thread.start()
        return self

    def stop(self) -> list[Answer]:
        """Stop sending, wait for the requests in flight; every answer, in sending order."""
        self._stop.set()
        self._thread.join(self.timeout + 10)
        if self._thread.is_alive():
            raise RuntimeError("the load generator did not stop in time")
        return sorted(self.answers, key=lambda a: a.index)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        deadline = time.monotonic() + self.max_seconds
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits) as client:
            await asyncio.gather(*(self._client(client, deadline) for _ in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient, deadline: float) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            i = self._next
            if i >= self.max_requests:
                return
            self._next += 1
            rid = f"{self.prefix}-{i}"
            sent = time.monotonic()
            try:
                r = await client.post(self.url, json=self.body(i), headers={"x-request-id": rid})
            except httpx.HTTPError as exc:
                self.answers.append(
                    Answer(i, rid, sent, time.monotonic(), None, None, f"{type(exc).__name__}")
                )
                continue
            version = None
            error = None
            if r.status_code == 200:
                version = r.json().get("model_version")
            else:
                error = r.text[:500]
            self.answers.append(
                Answer(i, rid, sent, time.monotonic(), r.status_code, version, error)
            )
