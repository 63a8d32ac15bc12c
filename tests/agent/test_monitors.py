"""Monitors end to end without a server: prediction-log rows written to the store, the agent
evaluates, alerts, retrains, gates and starts a canary (or refuses to)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import keel
import keel.registry
from keel import serving
from keel.monitoring._agent import Agent
from keel.monitoring._monitors import AlertSpec, Monitors, RetrainSpec, window_frame
from keel.store.base import now_ms
from tests.agent.receiver import Receiver
from tests.serving.conftest import FEATURES, make_data, register_models

RETRAIN_MODULE = "tests.agent.retrain_entry"


def _log_traffic(X: pd.DataFrame, *, version: str = "churn/1", labels: bool = True) -> None:
    """Write one prediction-log row per row of X (as keel serve would), with feedback."""
    from keel.tracking.fluent import get_client

    store = get_client().store.deployments  # type: ignore[attr-defined]
    y = (X["f0"] + X["f1"] > 0).astype(int).to_numpy()
    now = now_ms()
    rows, feedback = [], []
    for i, values in enumerate(X.to_numpy().tolist()):
        rid = f"r{now}-{i}"
        rows.append({
            "request_id": rid, "deployment": "churn", "model_version": version,
            "served_by": version, "role": "primary", "status": "ok", "ts": now, "latency_ms": 1.0,
            "n_rows": 1, "inputs": json.dumps({"fields": FEATURES, "rows": [values]}),
            "outputs": json.dumps([int(y[i])]), "error": None, "disagreement": None,
        })  # fmt: skip
        feedback.append({"request_id": rid, "labels": [int(y[i])]})
    store.log_predictions(rows)
    if labels:
        store.record_feedback(feedback, actor="test")


@pytest.fixture
def deployed(keel_home: Path) -> dict[int, str]:
    uris = register_models()
    serving.create_deployment("churn", uris[1])
    return uris


def test_window_frame_rebuilds_the_logged_inputs() -> None:
    rows = [
        {"request_id": "a", "ts": 1, "status": "ok", "outputs": "[1, 0]",
         "inputs": json.dumps({"fields": ["x", "y"], "rows": [[1.0, 2.0], [3.0, 4.0]]})},
        {"request_id": "b", "ts": 2, "status": "ok", "outputs": "[1]",
         "inputs": json.dumps({"columns": {"x": [5.0], "y": [6.0]}})},
        {"request_id": "c", "ts": 3, "status": "error", "outputs": None, "inputs": "{}"},
    ]  # fmt: skip
    df = window_frame(rows, "prediction")
    assert df[["x", "y", "prediction"]].to_numpy().tolist() == [[1, 2, 1], [3, 4, 0], [5, 6, 1]]
    assert df["__request_id"].tolist() == ["a", "a", "b"]


def test_ok_then_drift_with_alerts_deduplicated(deployed: dict[int, str]) -> None:
    X, _ = make_data(3000, seed=1)
    with Receiver() as hook:
        Monitors().create(
            "churn-drift", deployment="churn", reference=X, every_seconds=0.01,
            window_seconds=600, min_rows=200,
            alert=AlertSpec(targets=("log", hook.url), cooldown_seconds=600),
        )  # fmt: skip
        agent = Agent(name="a1")
        assert agent.run_once()["evaluated"] == {"churn-drift": "insufficient"}  # no traffic yet
        same, _ = make_data(600, seed=2)
        _log_traffic(same)
        time.sleep(0.02)
        assert agent.run_once()["evaluated"] == {"churn-drift": "ok"}
        shifted, _ = make_data(600, seed=3)
        shifted["f3"] = shifted["f3"] * 3 + 2  # a strong drift of one feature
        shifted["f7"] = shifted["f7"] + 1.0
        _log_traffic(shifted)
        time.sleep(0.02)
        result = agent.run_once()
        assert result["evaluated"] == {"churn-drift": "drift"}
        assert result["delivered"] == 2  # the log target and the webhook
        [run, *_] = Monitors().runs("churn-drift")
        assert {"f3", "f7"} <= set(run.summary["drifted_columns"])
        assert "f0" not in run.summary["drifted_columns"]
        assert run.summary["performance"]["accuracy"] == 1.0  # the logged answers are right
        assert run.summary["health"]["requests"] == 1200
        html = Monitors().report("churn-drift", html=True).decode()
        assert html.lstrip().lower().startswith("<!doctype html") and "f3" in html
        [body] = hook.bodies
        assert "Data drift on deployment 'churn'" in body["text"] and "f3" in body["text"]
        time.sleep(0.02)
        again = agent.run_once()  # still drifting: the same alert is not raised again
        assert again["evaluated"] == {"churn-drift": "drift"} and again["delivered"] == 0
        assert len(hook.bodies) == 1


def test_two_agents_never_evaluate_the_same_run(deployed: dict[int, str]) -> None:
    X, _ = make_data(1000, seed=1)
    Monitors().create("m", deployment="churn", reference=X, every_seconds=3600, min_rows=10)
    results: list[dict] = []
    barrier = threading.Barrier(3)

    def agent(i: int) -> None:
        barrier.wait()
        results.append(Agent(name=f"agent-{i}").run_once()["evaluated"])

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(len(r) for r in results) == 1
    assert len(Monitors().runs("m")) == 1


def test_failing_monitor_is_recorded_and_alerted(deployed: dict[int, str]) -> None:
    X, _ = make_data(500, seed=1)
    record = Monitors().create("m", deployment="churn", reference=X, min_rows=10)
    from keel.tracking.fluent import get_client

    client = get_client()
    spec = dict(record.spec, reference_digest="0" * 64)  # a reference that is gone
    client.store.monitors.update("m", actor="t", spec=spec)  # type: ignore[attr-defined]
    result = Agent(name="a").run_once()
    assert result["evaluated"] == {"m": "failed"}
    [run] = Monitors().runs("m")
    assert run.status == "failed" and "error" in run.summary
    alerts = client.store.monitors.alerts(monitor="m")  # type: ignore[attr-defined]
    assert alerts[0].payload["kind"] == "failure" and alerts[0].state == "delivered"


def _retrain_spec(margin: float) -> RetrainSpec:
    return RetrainSpec(
        entry_point=f"{RETRAIN_MODULE}:train", model="churn", gate_dataset="holdout",
        label="label", metric="accuracy", margin=margin, canary_steps=(0.5, 1.0),
        canary_step_seconds=1.0, cooldown_seconds=3600,
    )  # fmt: skip


def _holdout() -> None:
    X, y = make_data(800, seed=9)
    keel.data.log_table(X.assign(label=y), name="holdout")


def test_drift_retrains_gates_and_starts_a_canary(deployed: dict[int, str]) -> None:
    _holdout()
    X, _ = make_data(2000, seed=1)
    Monitors().create(
        "m", deployment="churn", reference=X, every_seconds=0.01, min_rows=100,
        retrain=_retrain_spec(margin=0.0),
    )  # fmt: skip
    shifted, _ = make_data(400, seed=3)
    shifted["f5"] = shifted["f5"] + 3.0
    _log_traffic(shifted)
    assert Agent(name="a").run_once()["evaluated"] == {"m": "drift"}
    [run] = Monitors().runs("m")
    retrain = run.summary["retrain"]
    assert retrain["gate"]["passed"] is True, retrain
    assert retrain["gate"]["candidate"] >= retrain["gate"]["champion"]
    dep = serving.get_deployment("churn")
    assert dep.policy.kind == "canary" and dep.policy.candidate == f"churn/{retrain['version']}"
    lineage = keel.lineage(f"run:{retrain['run_id']}", direction="up")
    assert ("monitor:m", f"run:{retrain['run_id']}", "triggered") in lineage.edges
    assert ("dataset:holdout@1", f"run:{retrain['run_id']}", "evaluated_on") in lineage.edges
    actions = [e.action for e in keel.registry.audit()]
    assert actions.index("retrain.passed") < actions.index("deployment.canary")
    # a second drift within the cooldown does not retrain again
    _log_traffic(shifted)
    time.sleep(0.02)
    Agent(name="a").run_once()
    assert "skipped" in Monitors().runs("m")[0].summary["retrain"]


def test_a_candidate_that_is_not_better_never_reaches_production(
    deployed: dict[int, str],
) -> None:
    _holdout()
    X, _ = make_data(2000, seed=1)
    Monitors().create(
        "m", deployment="churn", reference=X, every_seconds=0.01, min_rows=100,
        retrain=_retrain_spec(margin=0.5),  # an impossible margin
    )  # fmt: skip
    shifted, _ = make_data(400, seed=3)
    shifted["f5"] = shifted["f5"] + 3.0
    _log_traffic(shifted)
    Agent(name="a").run_once()
    retrain = Monitors().runs("m")[0].summary["retrain"]
    assert retrain["gate"]["passed"] is False and "version" not in retrain
    assert serving.get_deployment("churn").policy.kind == "single"
    [event] = [e for e in keel.registry.audit() if e.action == "retrain.rejected"]
    assert "does not beat" in (event.reason or "")
    assert len(keel.registry.list_versions("churn")) == 4  # nothing registered


def test_reference_schema_differences_are_reported(deployed: dict[int, str]) -> None:
    X, _ = make_data(1000, seed=1)
    Monitors().create("m", deployment="churn", reference=X.drop(columns=["f19"]), min_rows=10)
    _log_traffic(make_data(300, seed=2)[0])
    Agent(name="a").run_once()
    issues = json.dumps(Monitors().runs("m")[0].summary["schema_issues"])
    assert "f19" in issues


def test_metrics_published(deployed: dict[int, str]) -> None:
    from keel.monitoring import _metrics

    X, _ = make_data(1000, seed=1)
    Monitors().create("m", deployment="churn", reference=X, min_rows=10)
    _log_traffic(make_data(300, seed=2)[0])
    agent = Agent(name="a")
    port = agent.serve_metrics(0)
    agent.run_once()
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'keel_monitor_status{deployment="churn",monitor="m",status="ok"} 1.0' in text
    assert "keel_monitor_drift_share" in text and "keel_alerts" in text
    assert b'keel_monitor_window_rows{deployment="churn",monitor="m"} 300.0' in _metrics.render()
    agent.run_forever(threading.Event(), max_passes=1)  # shuts the metrics server down
