"""Prometheus metrics of monitors and alerts (served by ``keel agent --metrics-port``).

The Grafana dashboard in ``deploy/grafana/keel-dashboard.json`` is built on these
and on ``keel serve``'s ``keel_serving_*`` metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["REGISTRY", "record_alert_states", "record_run", "render"]

_lock = threading.Lock()
_metrics: dict[str, Any] = {}
REGISTRY: Any = None
STATUSES = ("ok", "drift", "degraded", "insufficient", "unchanged", "failed")


def _get() -> dict[str, Any]:
    global REGISTRY
    with _lock:
        if not _metrics:
            from prometheus_client import CollectorRegistry, Counter, Gauge

            REGISTRY = CollectorRegistry()
            m = ["monitor", "deployment"]
            _metrics.update(
                share=Gauge(
                    "keel_monitor_drift_share",
                    "Share of compared columns that drifted in the monitor's last run.",
                    m,
                    registry=REGISTRY,
                ),
                column=Gauge(
                    "keel_monitor_column_drift_score",
                    "Drift score of each column in the last run (the test's statistic).",
                    [*m, "column", "test"],
                    registry=REGISTRY,
                ),
                drifted=Gauge(
                    "keel_monitor_column_drifted",
                    "1 when the column drifted in the last run, else 0.",
                    [*m, "column"],
                    registry=REGISTRY,
                ),
                status=Gauge(
                    "keel_monitor_status",
                    "1 for the status of the monitor's last run (ok, drift, degraded, "
                    "insufficient, failed), 0 for the others.",
                    [*m, "status"],
                    registry=REGISTRY,
                ),
                runs=Counter(
                    "keel_monitor_runs",
                    "Monitor runs by outcome.",
                    [*m, "status"],
                    registry=REGISTRY,
                ),
                performance=Gauge(
                    "keel_monitor_performance",
                    "Performance over labelled predictions in the last window, by metric.",
                    [*m, "metric"],
                    registry=REGISTRY,
                ),
                rows=Gauge(
                    "keel_monitor_window_rows",
                    "Rows in the last window checked.",
                    m,
                    registry=REGISTRY,
                ),
                last=Gauge(
                    "keel_monitor_last_run_timestamp_seconds",
                    "When the monitor last ran.",
                    m,
                    registry=REGISTRY,
                ),
                alerts=Gauge(
                    "keel_alerts",
                    "Alerts by delivery state (pending ones are being retried).",
                    ["state"],
                    registry=REGISTRY,
                ),
            )
        return _metrics


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def record_run(
    monitor: str, deployment: str, status: str, summary: Mapping[str, Any], report: Any
) -> None:
    """Publish one run's outcome."""
    import time

    m = _get()
    labels = (monitor, deployment)
    m["share"].labels(*labels).set(float(summary.get("share_drifted") or 0.0))
    m["rows"].labels(*labels).set(float(summary.get("rows") or 0))
    m["last"].labels(*labels).set(time.time())
    m["runs"].labels(*labels, status).inc()
    for s in STATUSES:
        m["status"].labels(*labels, s).set(1.0 if s == status else 0.0)
    cols = _attr(report, "columns", {}) or {}
    items = cols.items() if isinstance(cols, Mapping) else ((_attr(c, "name"), c) for c in cols)
    for name, col in items:
        m["drifted"].labels(*labels, str(name)).set(1.0 if _attr(col, "drifted") else 0.0)
        score = _attr(col, "statistic", _attr(col, "score"))
        if isinstance(score, int | float):
            m["column"].labels(*labels, str(name), str(_attr(col, "test", ""))).set(float(score))
    for key, value in (summary.get("performance") or {}).items():
        if isinstance(value, int | float) and key not in ("labelled", "value"):
            m["performance"].labels(*labels, key).set(float(value))


def record_alert_states(counts: Mapping[str, int]) -> None:
    """Publish how many alerts are pending, delivered and failed."""
    m = _get()
    for state in ("pending", "delivered", "failed"):
        m["alerts"].labels(state).set(float(counts.get(state, 0)))


def render() -> bytes:
    """The metrics in Prometheus' text format."""
    from prometheus_client import generate_latest

    _get()
    return generate_latest(REGISTRY)
