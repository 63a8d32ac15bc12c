"""Deployments, the prediction log and feedback on both metadata stores, and a live server
on PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from keel.exceptions import AlreadyExistsError, NotFoundError
from keel.store import SqlStore
from keel.store._deploy import RevisionConflictError
from keel.tracking import fluent
from tests.serving.conftest import ServeProcess, make_data, records, register_models

POLICY = {"kind": "single", "primary": "churn/1"}


def _row(rid: str, version: str, *, ts: int, status: str = "ok", role: str = "primary") -> dict:
    return {
        "request_id": rid,
        "deployment": "churn",
        "model_version": version,
        "served_by": version,
        "role": role,
        "status": status,
        "ts": ts,
        "latency_ms": 1.5,
        "n_rows": 1,
        "inputs": None,
        "outputs": "[1]",
        "error": None,
        "disagreement": None,
    }


def test_revisions_audit_lineage_and_compare_and_swap(store: SqlStore) -> None:
    deps = store.deployments
    rec = deps.create("churn", POLICY, actor="ana", reason="first", models=["churn/1"])
    assert rec.revision == 1 and rec.policy == POLICY
    with pytest.raises(AlreadyExistsError, match="already exists"):
        deps.create("churn", POLICY, actor="ana")
    canary = {**POLICY, "kind": "canary", "candidate": "churn/2"}
    rec2 = deps.update(
        "churn", canary, action="canary", actor="bo", reason="try 2", expected_revision=1,
        models=["churn/1", "churn/2"],
    )  # fmt: skip
    assert rec2.revision == 2 and deps.revisions_by_name() == {"churn": 2}
    with pytest.raises(RevisionConflictError, match="revision 2, not 1"):
        deps.update("churn", POLICY, action="rollback", actor="x", expected_revision=1)
    history = deps.history("churn")
    assert [(h.revision, h.action, h.actor, h.reason) for h in history] == [
        (1, "create", "ana", "first"),
        (2, "canary", "bo", "try 2"),
    ]
    events = [
        e for e in store.registry.audit_events("deployment:churn") if e.object == "deployment:churn"
    ]
    assert [e.action for e in events] == ["deployment.create", "deployment.canary"]
    assert events[1].actor == "bo" and events[1].after["policy"]["candidate"] == "churn/2"
    assert store.registry.verify_audit()[1] is None
    _nodes, edges = store.registry.lineage("model_version:churn/2", "down", 3)
    assert ("model_version:churn/2", "deployment:churn@2", "deployed") in edges
    with pytest.raises(NotFoundError, match="Deployment 'chrun' not found"):
        deps.get("chrun")


def test_concurrent_updates_one_wins(store: SqlStore) -> None:
    deps = store.deployments
    deps.create("churn", POLICY, actor="a")
    results: list[str] = []

    def attempt(i: int) -> None:
        try:
            deps.update("churn", POLICY, action="tick", actor=f"w{i}", expected_revision=1)
            results.append("won")
        except RevisionConflictError:
            results.append("lost")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == ["lost", "lost", "lost", "won"]
    assert deps.get("churn").revision == 2


def test_prediction_log_feedback_and_arm_stats(store: SqlStore) -> None:
    deps = store.deployments
    rows = [_row(f"r{i}", "churn/1" if i % 2 else "churn/2", ts=1000 + i) for i in range(10)]
    rows.append(_row("s0", "churn/2", ts=1005, role="shadow"))
    deps.log_predictions(rows)
    got = deps.predictions("churn", since=1004, until=1008)
    assert [r["request_id"] for r in got] == ["r4", "r5", "s0", "r6", "r7"]  # by ts, then id
    assert [r["request_id"] for r in deps.predictions("churn", roles=["shadow"])] == ["s0"]
    matched = deps.record_feedback(
        [{"request_id": f"r{i}", "value": float(i % 3 == 0)} for i in range(10)]
        + [{"request_id": "nobody", "value": 1.0}],
        actor="ops",
    )
    assert matched == 10
    # the latest feedback for a request wins
    deps.record_feedback([{"request_id": "r1", "value": 5.0, "labels": [0]}], actor="ops")
    fb = deps.feedback(["r1", "r2", "missing"])
    assert fb["r1"] == {"value": 5.0, "labels": [0]} and "missing" not in fb
    stats = deps.arm_stats("churn", since=0)
    # churn/1 got the odd ids: values r1=5, r3=1, r5=0, r7=0, r9=1
    assert stats["churn/1"] == (5, 7.0, 27.0)
    assert stats["churn/2"][0] == 5  # the shadow row is not an arm


@pytest.mark.postgres
def test_live_server_on_postgres(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, serve: Callable[..., ServeProcess]
) -> None:
    from keel import serving

    monkeypatch.setenv("KEEL_STORE_URI", postgres_url)
    fluent._reset()
    uris = register_models()
    serving.create_deployment("churn", uris[1])
    server = serve(KEEL_STORE_URI=postgres_url)
    X, _ = make_data(20, seed=3)
    ids = []
    for rec in records(X):
        r = httpx.post(f"{server.url}/v1/deployments/churn/predict", json={"records": [rec]})
        assert r.status_code == 200, r.text
        ids.append(r.json()["request_id"])
    serving.bluegreen("churn", uris[2])
    serving.switch("churn", reason="move to 2")
    deadline = time.monotonic() + 10
    version = None
    while time.monotonic() < deadline:
        body = httpx.post(
            f"{server.url}/v1/deployments/churn/predict", json={"records": records(X.head(1))}
        ).json()
        version = body["model_version"]
        if version == "churn/2":
            break
        time.sleep(0.1)
    assert version == "churn/2"
    deadline = time.monotonic() + 10
    logged: list[dict] = []
    while time.monotonic() < deadline and len(logged) < 20:
        logged = SqlStore(postgres_url).deployments.predictions("churn", roles=["primary"])
        time.sleep(0.2)
    assert {r["request_id"] for r in logged} >= set(ids)
    assert json.loads(logged[0]["inputs"])["fields"][:2] == ["f0", "f1"]
