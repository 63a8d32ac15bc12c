"""``keel agent``: run due monitors, deliver alerts, fire triggers; several may run at once.

Each pass claims the due monitors (a lease per monitor, compared and swapped in the
store, so exactly one agent evaluates each; a crashed agent's lease expires and
another takes over), evaluates them, schedules their next run, then delivers due
alerts with retries (:mod:`keel.monitoring._alerts`). With ``metrics_port`` it serves
Prometheus metrics of monitors and alerts on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.tracking.client import Client

__all__ = ["Agent"]

_log = logging.getLogger("keel.monitoring")


class Agent:
    """One monitoring agent."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        name: str | None = None,
        poll_interval: float = 5.0,
        lease_seconds: float = 900.0,
    ) -> None:
        if client is None:
            from keel.tracking.fluent import get_client

            client = get_client()
        self.client = client
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.poll_interval = poll_interval
        self.lease_ms = int(lease_seconds * 1000)
        self._server: Any = None

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics (monitors and alerts) on ``host:port``; returns the port."""
        from prometheus_client import start_http_server

        from keel.monitoring import _metrics

        _metrics.render()  # creates the registry
        server, _thread = start_http_server(port, addr=host, registry=_metrics.REGISTRY)
        self._server = server
        return int(server.server_address[1])

    def run_once(self) -> dict[str, Any]:
        """One pass: evaluate every due monitor this agent claims, then deliver alerts."""
        from keel.monitoring._alerts import deliver_due
        from keel.monitoring._metrics import record_alert_states
        from keel.monitoring._monitors import Monitors, MonitorSpec

        monitors = Monitors(self.client)
        store = monitors._store
        evaluated: dict[str, str] = {}
        for name in store.claim_due(self.name, lease_ms=self.lease_ms):
            started = now_ms()
            every = 3600.0
            try:
                spec = MonitorSpec.from_dict(store.get(name).spec)
                every = spec.every_seconds
                run = monitors.evaluate(name, agent=self.name, now=started)
                evaluated[name] = run.status
            except Exception as exc:
                _log.exception("monitor %s failed", name)
                evaluated[name] = "failed"
                error = f"{type(exc).__name__}: {exc}"
                store.add_run(
                    name, started_at=started, status="failed", agent=self.name,
                    summary={"error": error},
                )  # fmt: skip
                store.raise_alert(
                    name, dedupe_key=f"{name}:failure", severity="critical",
                    title=f"Monitor '{name}' failed: {error[:200]}",
                    payload={"kind": "failure", "target": "log", "details": {"error": error}},
                    cooldown_ms=3_600_000,
                )  # fmt: skip
            finally:
                store.release(name, self.name, next_run_at=started + int(every * 1000))
        delivered, failed = deliver_due(store)
        counts: dict[str, int] = {}
        for state in ("pending", "delivered", "failed"):
            counts[state] = len(store.alerts(state=state, limit=100_000))
        record_alert_states(counts)
        return {"evaluated": evaluated, "delivered": delivered, "failed_deliveries": failed}

    def run_forever(
        self, stop: threading.Event | None = None, *, max_passes: int | None = None
    ) -> None:
        """Pass after pass until ``stop`` is set (or ``max_passes`` passes)."""
        stop = stop or threading.Event()
        passes = 0
        while not stop.is_set():
            try:
                result = self.run_once()
                if result["evaluated"] or result["delivered"] or result["failed_deliveries"]:
                    _log.info("agent %s: %s", self.name, result)
            except Exception:
                _log.exception("agent pass failed; retrying")
            passes += 1
            if max_passes is not None and passes >= max_passes:
                break
            stop.wait(self.poll_interval)
        if self._server is not None:
            self._server.shutdown()

    def __repr__(self) -> str:
        return f"<Agent {self.name} every {self.poll_interval:g} s>"
