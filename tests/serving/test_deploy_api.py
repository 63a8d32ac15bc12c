"""The deployments API without a server: policies, errors, history, audit, lineage, rollback
semantics, the canary controller (``tick``) and A/B status.

The canary controller is driven deterministically: prediction rows and feedback are
written straight into the store (``log_predictions`` / ``record_feedback``), exactly as
the server's logger would, so each guard sees the figures the test chose.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

import keel
from keel import serving
from keel.exceptions import AlreadyExistsError, InvalidSpecError, InvalidStateError, NotFoundError
from keel.registry import Registry
from keel.serving import Deployment, Deployments, Guards
from keel.store.base import now_ms
from tests.serving.conftest import make_data


@pytest.fixture
def models(keel_home: Path) -> dict[int, str]:
    """Four cheap versions of ``churn`` (Threshold, Inverted, Threshold, Inverted): no
    scikit-learn fit, so these policy tests stay fast. {version: uri}."""
    from keel.models import ColumnSpec, Signature, infer_signature
    from tests.serving.models import Inverted, Threshold

    X, _ = make_data(5)
    signature = Signature(infer_signature(X).inputs, (ColumnSpec("prediction", "int64", False),))
    out: dict[int, str] = {}
    for model in (Threshold(), Inverted(), Threshold(), Inverted()):
        with keel.start_run(log_environment=False):
            info = keel.log_model(
                model, "model", signature=signature, registered_model_name="churn"
            )
        assert info.version is not None
        out[info.version.version] = f"models:/churn/{info.version.version}"
    assert sorted(out) == [1, 2, 3, 4]
    return out


def _store() -> Any:
    return Deployments()._store


def _log(
    name: str,
    version: str,
    role: str,
    n: int,
    *,
    status: str = "ok",
    latency_ms: float = 2.0,
    output: int = 1,
) -> list[str]:
    """Write ``n`` one-row prediction rows as the server's logger would; returns request ids."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    now = now_ms()
    _store().log_predictions(
        [
            {
                "request_id": rid,
                "deployment": name,
                "model_version": version,
                "served_by": version,
                "role": role,
                "status": status,
                "ts": now,
                "latency_ms": latency_ms,
                "n_rows": 1,
                "inputs": None,
                "outputs": None if status == "error" else json.dumps([output]),
                "error": "RuntimeError: boom" if status == "error" else None,
                "disagreement": None,
            }
            for rid in ids
        ]
    )
    return ids


def _fresh_client() -> None:
    """Close the cached clients so the next one reads the changed environment."""
    from keel.tracking import fluent

    for client in list(fluent._clients.values()):
        client.close()
    fluent._reset()


def _actions(name: str) -> list[str]:
    return [r.action for r in serving.history(name)]


# -- create, pin, errors ---------------------------------------------------------------------------
def test_create_pins_an_alias_to_its_version(models: dict[int, str]) -> None:
    Registry(keel.get_client()).set_alias("churn", "champion", 2, reason="best so far")
    dep = serving.create_deployment("churn", "models:/churn@champion", description="prod")
    assert dep.policy.kind == "single" and dep.policy.primary == "churn/2"
    assert dep.revision == 1 and dep.description == "prod"
    # moving the alias later does not change what is served
    Registry(keel.get_client()).set_alias("churn", "champion", 3)
    assert serving.get_deployment("churn").policy.primary == "churn/2"
    assert [d.name for d in serving.list_deployments()] == ["churn"]
    latest = serving.create_deployment("latest", "models:/churn/latest")
    assert latest.policy.primary == "churn/4"


def test_creation_errors_are_specific(models: dict[int, str]) -> None:
    with keel.start_run(log_environment=False) as run:
        pass
    with pytest.raises(InvalidSpecError, match=r"registered model version.*runs:/"):
        serving.create_deployment("churn", f"runs:/{run.run_id}/model")
    with pytest.raises(NotFoundError):
        serving.create_deployment("churn", "models:/nope/1")
    with pytest.raises(NotFoundError):
        serving.create_deployment("churn", "models:/churn/99")
    for bad in ("", "has space", "../x", "-lead", "a/b", "x" * 251):
        with pytest.raises(InvalidSpecError, match="not valid"):
            serving.create_deployment(bad, models[1])
    assert serving.list_deployments() == []  # nothing half-created
    serving.create_deployment("churn", models[1])
    with pytest.raises(AlreadyExistsError, match="already exists"):
        serving.create_deployment("churn", models[2])
    with pytest.raises(NotFoundError, match=r"Deployment 'chrn' not found.*churn"):
        serving.get_deployment("chrn")
    with pytest.raises(InvalidSpecError, match="max_batch_size"):
        serving.create_deployment("big", models[1], max_batch_size=0)
    assert [d.name for d in serving.list_deployments()] == ["churn"]


def test_state_errors_name_the_way_out(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    with pytest.raises(InvalidStateError, match="only a canary or an A/B test"):
        serving.set_traffic("churn", 0.5)
    with pytest.raises(InvalidStateError, match="no candidate to promote"):
        serving.promote("churn")
    with pytest.raises(InvalidStateError, match="nothing to roll back to"):
        serving.rollback("churn")
    with pytest.raises(InvalidStateError, match="no idle colour"):
        serving.switch("churn")
    with pytest.raises(InvalidSpecError, match="already the primary"):
        serving.canary("churn", models[1])
    with pytest.raises(InvalidSpecError, match=r"last canary step must be 1\.0"):
        serving.canary("churn", models[2], steps=(0.1, 0.5))
    with pytest.raises(InvalidSpecError, match="strictly between 0 and 1"):
        serving.ab("churn", models[2], split=1.0)
    serving.canary("churn", models[2])
    with pytest.raises(InvalidStateError, match="running a canary of churn/2"):
        serving.canary("churn", models[3])
    with pytest.raises(InvalidStateError, match="running a canary"):
        serving.shadow("churn", models[3])
    with pytest.raises(InvalidSpecError, match="between 0 and 1"):
        serving.set_traffic("churn", 1.5)
    # the failed calls wrote nothing
    assert _actions("churn") == ["create", "canary"]


# -- history, audit, lineage ----------------------------------------------------------------------
def test_history_audit_and_lineage(models: dict[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_USER", "alice")
    _fresh_client()  # the next client reads KEEL_USER
    serving.create_deployment("churn", models[1], reason="first model")
    serving.canary("churn", models[2], reason="try v2")
    serving.set_traffic("churn", 0.5, reason="looks fine")
    serving.promote("churn", reason="v2 wins")
    history = serving.history("churn")
    assert [(r.revision, r.action, r.actor, r.reason) for r in history] == [
        (1, "create", "alice", "first model"),
        (2, "canary", "alice", "try v2"),
        (3, "set_traffic", "alice", "looks fine"),
        (4, "promote", "alice", "v2 wins"),
    ]
    assert history[2].policy["weight"] == 0.5 and history[2].policy["candidate"] == "churn/2"
    assert history[3].policy["primary"] == "churn/2" and history[3].policy["fallback"] == "churn/1"

    registry = Registry(keel.get_client())
    events = registry.audit("deployment:churn")
    assert [(e.action, e.actor, e.reason) for e in events] == [
        ("deployment.create", "alice", "first model"),
        ("deployment.canary", "alice", "try v2"),
        ("deployment.set_traffic", "alice", "looks fine"),
        ("deployment.promote", "alice", "v2 wins"),
    ]
    assert events[-1].after["revision"] == 4
    assert events[-1].after["policy"]["primary"] == "churn/2"
    assert registry.verify_audit()[1] is None

    down = registry.lineage("models:/churn/1", direction="down")
    assert ("model_version:churn/1", "deployment:churn@1", "deployed") in down.edges
    # revision 2 (the canary) serves both versions; revision 4 serves v2 with v1 as fallback
    up = registry.lineage("deployment:churn@2", direction="up")
    assert {e[0] for e in up.edges if e[2] == "deployed"} == {
        "model_version:churn/1",
        "model_version:churn/2",
    }
    v2 = registry.lineage("models:/churn/2", direction="down")
    assert "deployment:churn@1" not in v2.nodes and "deployment:churn@4" in v2.nodes


# -- rollback semantics ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["canary", "shadow", "ab"])
def test_rollback_drops_the_candidate(models: dict[int, str], kind: str) -> None:
    serving.create_deployment("churn", models[1])
    getattr(serving, kind)("churn", models[2])
    assert serving.get_deployment("churn").policy.candidate == "churn/2"
    dep = serving.rollback("churn", reason="not now")
    assert dep.policy.kind == "single" and dep.policy.primary == "churn/1"
    assert dep.policy.candidate is None and dep.policy.weight == 0.0
    assert _actions("churn") == ["create", kind, "rollback"]
    assert serving.history("churn")[-1].reason == "not now"


def test_rollback_of_a_single_version_returns_to_the_previous_one(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    serving.canary("churn", models[2])
    serving.promote("churn")
    serving.canary("churn", models[3])
    serving.promote("churn")
    assert serving.get_deployment("churn").policy.primary == "churn/3"
    dep = serving.rollback("churn")
    assert dep.policy.kind == "single"
    assert (dep.policy.primary, dep.policy.fallback) == ("churn/2", "churn/3")


def test_bluegreen_switch_and_switch_back(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    staged = serving.bluegreen("churn", models[2])
    assert (staged.policy.primary, staged.policy.candidate) == ("churn/1", "churn/2")
    assert staged.policy.route("any")[0] == "churn/1"  # the idle colour takes no traffic
    switched = serving.switch("churn")
    assert (switched.policy.primary, switched.policy.candidate) == ("churn/2", "churn/1")
    assert switched.policy.fallback == "churn/1"
    assert all(switched.policy.route(str(k))[0] == "churn/2" for k in range(200))
    back = serving.rollback("churn")
    assert (back.policy.primary, back.policy.candidate) == ("churn/1", "churn/2")
    assert _actions("churn") == ["create", "bluegreen", "switch", "rollback"]


def test_rollback_of_a_staged_bluegreen_keeps_the_live_colour(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    serving.bluegreen("churn", models[2])
    dep = serving.rollback("churn", reason="changed my mind")
    # "undo the last change": the staging is undone, churn/1 keeps every request
    assert dep.policy.route("any")[0] == "churn/1"


def test_promote_after_a_switch_keeps_the_live_colour(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    serving.bluegreen("churn", models[2])
    serving.switch("churn")  # churn/2 is live, churn/1 idle
    dep = serving.promote("churn", reason="green is good: finish")
    assert (dep.policy.kind, dep.policy.primary) == ("single", "churn/2")


# -- policy routing -------------------------------------------------------------------------
def test_routing_is_sticky_and_matches_the_weight(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    dep = serving.ab("churn", models[2], split=0.3, key="user_id")
    p = dep.policy
    keys = [f"user-{i}" for i in range(4000)]
    first = [p.route(k)[0] for k in keys]
    assert first == [p.route(k)[0] for k in keys]  # sticky
    share = first.count("churn/2") / len(keys)
    assert 0.27 < share < 0.33, share
    # a canary's growing share keeps every key already on the candidate there
    serving.rollback("churn")
    serving.canary("churn", models[2], steps=(0.1, 0.5, 1.0))
    small = serving.get_deployment("churn").policy
    big = small.replace(step=1, weight=0.5)
    on_small = {k for k in keys if small.route(k)[0] == "churn/2"}
    on_big = {k for k in keys if big.route(k)[0] == "churn/2"}
    assert on_small < on_big and 0.07 < len(on_small) / len(keys) < 0.13


# -- the canary controller ----------------------------------------------------------------------
def test_tick_advances_only_after_step_seconds_and_min_requests(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    assert serving.tick("churn") is None  # nothing to judge
    serving.canary(
        "churn", models[2], steps=(0.1, 0.5, 1.0), step_seconds=1.0, guards=Guards(min_requests=10)
    )
    _log("churn", "churn/2", "candidate", 12)
    _log("churn", "churn/1", "primary", 50)
    assert serving.tick("churn") is None  # enough requests, too early
    time.sleep(1.05)
    assert serving.tick("churn") == "advanced to 50%"
    dep = serving.get_deployment("churn")
    assert (dep.policy.kind, dep.policy.step, dep.policy.weight) == ("canary", 1, 0.5)
    time.sleep(1.05)
    _log("churn", "churn/2", "candidate", 9)
    assert serving.tick("churn") is None  # long enough, too few requests in this step
    _log("churn", "churn/2", "candidate", 1)
    assert serving.tick("churn") == "advanced to 100%"
    time.sleep(1.05)
    _log("churn", "churn/2", "candidate", 10)
    assert serving.tick("churn") == "promoted"
    dep = serving.get_deployment("churn")
    assert (dep.policy.kind, dep.policy.primary, dep.policy.fallback) == (
        "single",
        "churn/2",
        "churn/1",
    )
    assert _actions("churn") == ["create", "canary", "canary_step", "canary_step", "promote"]
    assert serving.tick("churn") is None


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local Slack-like webhook: (url, received JSON bodies)."""
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
    thread.join(5)


def _wait_for(received: list[dict[str, Any]], timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not received and time.monotonic() < deadline:
        time.sleep(0.02)
    assert received, "no alert was posted"
    return received[0]


def test_tick_rolls_back_on_error_rate_and_alerts(
    models: dict[int, str], webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    serving.create_deployment("churn", models[1], alert_webhook=url)
    serving.canary("churn", models[2], guards=Guards(max_error_rate=0.1, min_requests=20))
    _log("churn", "churn/2", "candidate", 18)
    _log("churn", "churn/2", "candidate", 2, status="error")
    assert serving.tick("churn") is None  # 10% errors: within the budget, step not over
    _log("churn", "churn/2", "candidate", 1, status="fallback")
    done = serving.tick("churn")
    assert done is not None and done.startswith("rolled back: error rate 14.3% of churn/2")
    dep = serving.get_deployment("churn")
    assert (dep.policy.kind, dep.policy.primary, dep.policy.candidate) == (
        "single",
        "churn/1",
        None,
    )
    last = serving.history("churn")[-1]
    assert last.action == "rollback" and last.reason is not None
    assert last.reason.startswith("automatic rollback: error rate")
    alert = _wait_for(received)
    assert "churn/2" in alert["text"] and "rolled back" in alert["text"]
    assert alert["keel"]["event"] == "deployment.rollback"
    assert alert["keel"]["candidate"] == "churn/2" and alert["keel"]["primary"] == "churn/1"
    assert alert["keel"]["revision"] == dep.revision


def test_tick_rolls_back_at_once_when_failures_exceed_the_budget(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    serving.canary("churn", models[2], guards=Guards(max_error_rate=0.05, min_requests=100))
    _log("churn", "churn/2", "candidate", 5, status="error")  # 5% of 100: still possible
    assert serving.tick("churn") is None
    _log("churn", "churn/2", "candidate", 1, status="error")  # 6 > 5% of 100, after 6
    done = serving.tick("churn")
    assert done is not None and done.startswith("rolled back")
    assert serving.get_deployment("churn").policy.kind == "single"


def test_tick_rolls_back_on_p99(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    serving.canary("churn", models[2], guards=Guards(max_p99_ms=50, min_requests=20))
    _log("churn", "churn/2", "candidate", 19, latency_ms=80.0)
    assert serving.tick("churn") is None  # judged only from min_requests latencies on
    _log("churn", "churn/1", "primary", 100, latency_ms=200.0)  # the primary's do not count
    assert serving.tick("churn") is None
    _log("churn", "churn/2", "candidate", 1, latency_ms=80.0)
    done = serving.tick("churn")
    assert done == "rolled back: p99 latency 80.0 ms of churn/2 exceeds 50 ms"
    assert serving.get_deployment("churn").policy.kind == "single"


def test_tick_rolls_back_on_accuracy_drop(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    guards = Guards(max_quality_drop=0.2, min_requests=1000, min_feedback=20)
    serving.canary("churn", models[2], guards=guards)
    prim = _log("churn", "churn/1", "primary", 30, output=1)
    cand = _log("churn", "churn/2", "candidate", 30, output=1)
    store = _store()
    # primary right on every row; candidate right on 25 of 30 (drop 0.167 < 0.2)
    store.record_feedback([{"request_id": r, "labels": [1]} for r in prim], actor="t")
    store.record_feedback(
        [{"request_id": r, "labels": [1 if i < 25 else 0]} for i, r in enumerate(cand)], actor="t"
    )
    assert serving.tick("churn") is None
    status = {v["role"]: v for v in serving.status("churn")["versions"]}
    assert status["primary"]["accuracy"] == 1.0
    assert status["candidate"]["accuracy"] == pytest.approx(25 / 30)
    # now candidate right on 20 of 30: drop 0.333 > 0.2
    store.record_feedback(
        [{"request_id": r, "labels": [1 if i < 20 else 0]} for i, r in enumerate(cand)], actor="t"
    )
    done = serving.tick("churn")
    assert done is not None and done.startswith("rolled back: accuracy 0.667 of churn/2")
    assert serving.get_deployment("churn").policy.kind == "single"


def test_quality_guard_needs_a_significant_drop(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    guards = Guards(max_quality_drop=0.2, min_requests=1000, min_feedback=4)
    serving.canary("churn", models[2], guards=guards)
    prim = _log("churn", "churn/1", "primary", 40)
    cand = _log("churn", "churn/2", "candidate", 4)
    store = _store()
    store.record_feedback([{"request_id": r, "labels": [1]} for r in prim], actor="t")
    # 3 of 4 right: a drop of 0.25 > 0.2, but 4 labels cannot show it is real
    store.record_feedback(
        [{"request_id": r, "labels": [1 if i < 3 else 0]} for i, r in enumerate(cand)], actor="t"
    )
    assert serving.tick("churn") is None
    # the same 75 % over 40 labels is significant
    more = _log("churn", "churn/2", "candidate", 36)
    store.record_feedback(
        [{"request_id": r, "labels": [1 if i < 27 else 0]} for i, r in enumerate(more)], actor="t"
    )
    done = serving.tick("churn")
    assert done is not None and done.startswith("rolled back: accuracy 0.750 of churn/2")


def test_a_bluegreen_standby_may_be_replaced_by_a_canary(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    serving.bluegreen("churn", models[2])
    serving.switch("churn")  # churn/2 live, churn/1 the warm standby
    dep = serving.canary("churn", models[3])
    assert (dep.policy.kind, dep.policy.primary, dep.policy.candidate) == (
        "canary",
        "churn/2",
        "churn/3",
    )
    back = serving.rollback("churn")
    assert (back.policy.kind, back.policy.primary, back.policy.fallback) == (
        "single",
        "churn/2",
        "churn/1",
    )


def test_concurrent_ticks_act_once(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    serving.canary(
        "churn", models[2], steps=(0.5, 1.0), step_seconds=0.2, guards=Guards(min_requests=5)
    )
    _log("churn", "churn/2", "candidate", 10)
    time.sleep(0.25)
    barrier = threading.Barrier(2, timeout=10)

    class Racing(Deployments):
        """Both controllers read the same revision before either writes."""

        def get(self, name: str) -> Deployment:
            dep = super().get(name)
            barrier.wait()
            return dep

    results: list[str | None] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(Racing().tick("churn"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(results, key=str) == [None, "advanced to 100%"]
    assert _actions("churn") == ["create", "canary", "canary_step"]
    assert serving.get_deployment("churn").revision == 3


# -- A/B status ----------------------------------------------------------------------------------
def _ab_feedback(name: str, version: str, role: str, n: int, rate: float) -> None:
    ids = _log(name, version, role, n)
    ones = round(n * rate)
    _store().record_feedback(
        [{"request_id": r, "value": 1.0 if i < ones else 0.0} for i, r in enumerate(ids)],
        actor="t",
    )


def test_ab_status_decides_on_a_strong_effect_only(models: dict[int, str]) -> None:
    serving.create_deployment("churn", models[1])
    with pytest.raises(InvalidStateError, match="not running an A/B test"):
        serving.ab_status("churn")
    serving.ab("churn", models[2], split=0.5)
    _ab_feedback("churn", "churn/1", "primary", 20, 0.1)
    _ab_feedback("churn", "churn/2", "candidate", 20, 0.5)
    small = serving.ab_status("churn")
    assert small.decision == "insufficient data"
    _ab_feedback("churn", "churn/1", "primary", 1500, 0.1)
    _ab_feedback("churn", "churn/2", "candidate", 1500, 0.3)
    report = serving.ab_status("churn")
    assert report.decision == "treatment better"
    assert (report.control.n, report.treatment.n) == (1520, 1520)
    assert report.lift is not None and report.lift > 0.15
    assert report.treatment_mean == pytest.approx((10 + 450) / 1520)
    assert report.control_mean == pytest.approx((2 + 150) / 1520)
