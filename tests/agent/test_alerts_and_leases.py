"""Monitor leases (one agent per run), alert deduplication, delivery with retries, on both
metadata stores; webhooks received on loopback."""

from __future__ import annotations

import threading
import time

import pytest

from keel.monitoring._alerts import deliver_due, slack_body
from keel.store import SqlStore
from tests.agent.receiver import Receiver

SPEC = {"deployment": "churn", "every_seconds": 60}


def test_due_monitor_is_claimed_by_exactly_one_agent(store: SqlStore) -> None:
    monitors = store.monitors
    monitors.create("m1", SPEC, actor="ana", reason="watch churn")
    monitors.create("m2", SPEC, actor="ana")
    claims: dict[str, list[str]] = {}

    def agent(name: str) -> None:
        claims[name] = monitors.claim_due(name, lease_ms=60_000)

    threads = [threading.Thread(target=agent, args=(f"a{i}",)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    taken = sorted(m for names in claims.values() for m in names)
    assert taken == ["m1", "m2"]  # each once, by some agent
    assert monitors.claim_due("late", lease_ms=60_000) == []
    owner = next(a for a, names in claims.items() if "m1" in names)
    monitors.release("m1", "someone-else", next_run_at=0)  # only the holder may release
    assert monitors.get("m1").lease_owner == owner
    monitors.release("m1", owner, next_run_at=int(time.time() * 1000) + 60_000)
    assert monitors.claim_due("late", lease_ms=60_000) == []  # not due yet
    # an agent that died keeps its lease only until it expires
    future = int(time.time() * 1000) + 120_000
    assert monitors.claim_due("rescuer", lease_ms=60_000, now=future) == ["m1", "m2"]
    events = [e.action for e in store.registry.audit_events("monitor:")]
    assert events == ["monitor.create", "monitor.create"]


def test_alerts_are_deduplicated_within_the_cooldown(store: SqlStore) -> None:
    monitors = store.monitors
    monitors.create("m", SPEC, actor="ana")
    first = monitors.raise_alert(
        "m", dedupe_key="m:drift:log", severity="warning", title="drift",
        payload={"target": "log"}, cooldown_ms=60_000,
    )  # fmt: skip
    again = monitors.raise_alert(
        "m", dedupe_key="m:drift:log", severity="warning", title="drift",
        payload={"target": "log"}, cooldown_ms=60_000,
    )  # fmt: skip
    other = monitors.raise_alert(
        "m", dedupe_key="m:performance:log", severity="critical", title="accuracy",
        payload={"target": "log"}, cooldown_ms=60_000,
    )  # fmt: skip
    assert first is not None and again is None and other is not None
    assert [a.title for a in monitors.alerts(monitor="m")] == ["accuracy", "drift"]


def test_webhook_down_then_up_alert_kept_and_delivered(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_ALERT_RETRY_BASE", "0.05")
    monitors = store.monitors
    monitors.create("m", SPEC, actor="ana")
    with Receiver(fail_first=2) as hook:
        alert = monitors.raise_alert(
            "m", dedupe_key=f"m:drift:{hook.url}", severity="warning",
            title="Data drift on deployment 'churn'",
            payload={"target": hook.url, "details": {"share_drifted": 0.4}}, cooldown_ms=1000,
        )  # fmt: skip
        assert alert is not None
        assert deliver_due(monitors) == (0, 1)  # 503: kept, retried later
        pending = monitors.alerts(state="pending")
        assert (
            len(pending) == 1
            and pending[0].attempts == 1
            and "503" in (pending[0].last_error or "")
        )
        assert deliver_due(monitors) == (0, 0)  # not due yet (backoff)
        deadline = time.monotonic() + 5
        delivered = 0
        while time.monotonic() < deadline and not delivered:
            time.sleep(0.05)
            delivered, _ = deliver_due(monitors)
        assert delivered == 1 and hook.attempts == 3
        body = hook.bodies[0]
        assert body["text"].startswith("[WARNING] Data drift on deployment 'churn'")
        assert body["keel"]["details"]["share_drifted"] == 0.4
        [done] = monitors.alerts(state="delivered")
        assert done.attempts == 3 and done.delivered_at is not None


def test_permanent_refusal_is_kept_as_failed(store: SqlStore) -> None:
    monitors = store.monitors
    monitors.create("m", SPEC, actor="ana")
    with Receiver(fail_first=100, fail_status=404) as hook:
        monitors.raise_alert(
            "m", dedupe_key="k", severity="critical", title="t",
            payload={"target": hook.url}, cooldown_ms=1,
        )  # fmt: skip
        assert deliver_due(monitors) == (0, 1)
    [failed] = monitors.alerts(state="failed")
    assert "404" in (failed.last_error or "")


def test_slack_body_shape(store: SqlStore) -> None:
    store.monitors.create("m", SPEC, actor="ana")
    alert = store.monitors.raise_alert(
        "m", dedupe_key="k", severity="critical", title="accuracy fell",
        payload={"target": "log", "details": {"value": 0.61, "nested": {"x": 1}}},
        cooldown_ms=1,
    )  # fmt: skip
    assert alert is not None
    body = slack_body(alert)
    assert body["text"] == "[CRITICAL] accuracy fell"
    fields = body["attachments"][0]["fields"]
    assert fields == [{"title": "value", "value": "0.61", "short": True}]
