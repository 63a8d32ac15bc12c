"""Alert delivery: Slack-compatible webhooks, email and the log, retried until delivered.

An alert is a row before it is a message (:meth:`keel.store._monitor.SqlMonitors.raise_alert`):
one row per target, deduplicated by key within a cooldown. :func:`deliver_due` sends
the due ones; a failed attempt is retried with exponential backoff (``KEEL_ALERT_RETRY_BASE``
seconds, doubling, at most an hour apart) and the alert stays ``pending`` meanwhile, so
it is never silently dropped. Only a refusal that retrying cannot fix (HTTP 4xx other
than 408/429) marks it ``failed`` — kept, listed by ``keel monitor alerts`` and logged.
"""

from __future__ import annotations

import logging
import os
import smtplib
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.store._monitor import AlertRecord, SqlMonitors

__all__ = ["DeliveryError", "deliver_due", "slack_body"]

_log = logging.getLogger("keel.monitoring")
_COLOURS = {"info": "#439FE0", "warning": "#f2c744", "critical": "#d00000"}


class DeliveryError(Exception):
    """A delivery attempt failed; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def slack_body(alert: AlertRecord) -> dict[str, Any]:
    """Slack-compatible JSON (``text`` + an attachment); other tools read ``keel``."""
    details = alert.payload.get("details", {})
    fields = [
        {"title": str(k), "value": str(v), "short": True}
        for k, v in list(details.items())[:10]
        if not isinstance(v, dict | list)
    ]
    return {
        "text": f"[{alert.severity.upper()}] {alert.title}",
        "attachments": [
            {
                "color": _COLOURS.get(alert.severity, "#808080"),
                "fields": fields,
                "footer": f"keel monitor {alert.monitor}",
                "ts": alert.created_at // 1000,
            }
        ],
        "keel": {"alert_id": alert.id, "monitor": alert.monitor, **alert.payload},
    }


def _webhook(url: str, alert: AlertRecord) -> None:
    import httpx

    try:
        response = httpx.post(url, json=slack_body(alert), timeout=10.0)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise DeliveryError(
            f"{url} answered HTTP {response.status_code}: {response.text[:200]}",
            permanent=permanent,
        )


def _email(target: str, alert: AlertRecord) -> None:
    """``target`` is ``mailto:ADDRESS?smtp=HOST:PORT`` (default the local MTA on port 25)."""
    address, _, query = target.removeprefix("mailto:").partition("?")
    server = "localhost:25"
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "smtp" and value:
            server = value
    host, _, port = server.partition(":")
    msg = EmailMessage()
    msg["Subject"] = f"[keel {alert.severity}] {alert.title}"
    msg["From"] = os.environ.get("KEEL_ALERT_FROM", "keel@localhost")
    msg["To"] = address
    lines = [alert.title, ""] + [f"{k}: {v}" for k, v in alert.payload.get("details", {}).items()]
    msg.set_content("\n".join(lines))
    try:
        with smtplib.SMTP(host, int(port or 25), timeout=10) as smtp:
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"email to {address} via {server}: {exc}") from exc


def send(alert: AlertRecord) -> None:
    """Deliver one alert to its target (``payload["target"]``)."""
    target = str(alert.payload.get("target", "log"))
    if target == "log":
        _log.warning("ALERT [%s] %s %s", alert.severity, alert.title, alert.payload.get("details"))
    elif target.startswith(("http://", "https://")):
        _webhook(target, alert)
    elif target.startswith("mailto:"):
        _email(target, alert)
    else:
        raise DeliveryError(f"unknown alert target {target!r}", permanent=True)


def retry_delay_ms(attempts: int) -> int:
    """Backoff before attempt ``attempts + 1``: base * 2**attempts, at most an hour."""
    base = float(os.environ.get("KEEL_ALERT_RETRY_BASE", "5"))
    return int(min(base * 2**attempts, 3600.0) * 1000)


def deliver_due(monitors: SqlMonitors, *, limit: int = 50) -> tuple[int, int]:
    """Send every due alert once; returns (delivered, failed attempts)."""
    delivered = failed = 0
    for alert in monitors.claim_deliveries(lease_ms=60_000, limit=limit):
        try:
            send(alert)
        except DeliveryError as exc:
            failed += 1
            retry = None if exc.permanent else now_ms() + retry_delay_ms(alert.attempts)
            monitors.attempt_failed(alert.id, str(exc), retry_at=retry)
            level = logging.ERROR if exc.permanent else logging.WARNING
            _log.log(
                level, "alert %s not delivered (attempt %s): %s", alert.id, alert.attempts + 1, exc
            )
            continue
        monitors.delivered(alert.id)
        delivered += 1
    return delivered, failed
