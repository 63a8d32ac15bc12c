"""``keel serve`` end to end over HTTP: request shapes, errors, KServe V2, readiness, metrics,
micro-batching, the prediction log (SQL and Parquet), feedback, live policy changes,
shadow, sticky A/B assignment, fallback and two workers.

Each test starts one real server and makes many checks against it (a start costs seconds).
Expected answers always come from the same model loaded in this process.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keel import serving
from keel.models import load
from keel.serving import Deployments
from keel.serving._log import read_predictions
from keel.serving._policy import route_share
from tests.server.conftest import server_env
from tests.serving.conftest import FEATURES, ROOT, ServeProcess, make_data, records


# -- helpers --------------------------------------------------------------------------------
def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def metric(text: str, sample: str, **labels: str) -> float:
    """Sum of the Prometheus samples named ``sample`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def predictions_logged(name: str, n: int) -> list[dict[str, Any]] | None:
    rows = Deployments()._store.predictions(name)
    return rows if len(rows) >= n else None


def start_unready(home: Path, **env: str) -> ServeProcess:
    """A ``keel serve`` that is up (``/healthz``) but may not be ready."""
    proc = ServeProcess(home, **env)
    cmd = [sys.executable, "-m", "keel", "serve", "--port", str(proc.port)]
    full_env = server_env(home, KEEL_FLUSH_INTERVAL="0.2", **env)
    full_env["PYTHONPATH"] = str(ROOT)
    with proc.log.open("ab") as log:
        proc.proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        assert proc.proc is not None and proc.proc.poll() is None, proc.log.read_text()[-4000:]
        try:
            return httpx.get(f"{proc.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=90, what="/healthz")
    except BaseException:
        proc.stop()
        raise
    return proc


# -- the HTTP contract ------------------------------------------------------------------------
def test_http_contract(registered: dict[int, str], keel_home: Path) -> None:
    server = start_unready(keel_home, KEEL_MAX_REQUEST_SIZE="200000")
    try:
        _check_contract(server)
    finally:
        server.stop()


def _check_contract(server: ServeProcess) -> None:
    url = server.url
    client = httpx.Client(base_url=url, timeout=30)
    # not ready with no deployment at all (documented), ready once one is created
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["ready"] is False
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/health/live").json() == {"live": True}
    serving.create_deployment("churn", "models:/churn/1")
    # (the first model load imports scikit-learn in the server: slow on a busy machine)
    wait_until(lambda: client.get("/readyz").status_code == 200, timeout=120, what="ready")
    assert client.get("/readyz").json()["deployments"] == {"churn": 1}

    model = load("models:/churn/1")
    X, y = make_data(30, seed=5)
    expected = np.asarray(model.predict(X)).tolist()
    assert 0 < sum(expected) < 30  # both classes: a wrong answer cannot match by accident
    ok = 0  # successful predictions of deployment churn, checked against /metrics

    # every accepted body shape gives the in-process answer
    rows = X.to_numpy().tolist()
    recs = records(X)
    shapes: dict[str, Any] = {
        "records": {"records": recs},
        "bare list": recs,
        "columns": {"columns": {c: X[c].tolist() for c in FEATURES}},
        "fields+rows": {"fields": FEATURES, "rows": rows},
        "rows, reordered fields": {
            "fields": FEATURES[::-1],
            "rows": X[FEATURES[::-1]].to_numpy().tolist(),
        },
        "dataframe_split": {"dataframe_split": {"columns": FEATURES, "data": rows}},
        "dataframe_records": {"dataframe_records": recs},
        "instances": {"instances": recs},
        "inputs (columns)": {"inputs": {c: X[c].tolist() for c in FEATURES}},
    }
    expected_proba = np.asarray(model.predict_proba(X))
    for label, body in shapes.items():
        r = client.post("/v1/deployments/churn/predict", json=body)
        assert r.status_code == 200, (label, r.text)
        assert r.json()["predictions"] == expected, label
        # probabilities differ row by row: any column or row mix-up shows
        r = client.post("/v1/deployments/churn/predict_proba", json=body)
        assert r.status_code == 200, (label, r.text)
        np.testing.assert_allclose(r.json()["predictions"], expected_proba, rtol=1e-9)
        ok += 2

    # predict_proba, the response fields and the request id echo
    r = client.post(
        "/v1/deployments/churn/predict_proba",
        json={"records": recs[:5]},
        headers={"X-Request-Id": "my-request-1"},
    )
    assert r.status_code == 200, r.text
    ok += 1
    body = r.json()
    assert set(body) == {"predictions", "model_version", "request_id", "deployment"}
    assert body["request_id"] == "my-request-1" and r.headers["x-request-id"] == "my-request-1"
    assert body["model_version"] == "churn/1" and r.headers["x-keel-model-version"] == "churn/1"
    assert body["deployment"] == "churn"
    np.testing.assert_allclose(body["predictions"], model.predict_proba(X.head(5)), rtol=1e-9)
    r = client.post("/v1/deployments/churn/predict", json={"records": recs[:1]})
    ok += 1
    generated = r.json()["request_id"]
    assert len(generated) == 32 and r.headers["x-request-id"] == generated

    # 422 names each bad field (missing, unknown, wrong type with its row)
    bad = [dict(rec) for rec in recs[:3]]
    del bad[1]["f3"]
    bad[0]["zz"] = 1.0
    bad[2]["f5"] = "x"
    r = client.post("/v1/deployments/churn/predict", json={"records": bad})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_input"
    problems = {p["field"]: p for p in err["details"]["problems"]}
    assert set(problems) == {"f3", "zz", "f5"}
    assert problems["f3"]["row"] == 1 and "missing" in problems["f3"]["problem"]
    assert "unknown column" in problems["zz"]["problem"]
    assert problems["f5"]["row"] == 2 and "expected double, got str" in problems["f5"]["problem"]
    cols = {c: X[c].tolist()[:2] for c in FEATURES if c != "f7"}
    r = client.post("/v1/deployments/churn/predict", json={"columns": cols})
    assert r.status_code == 422
    assert r.json()["error"]["details"]["problems"] == [
        {"field": "f7", "problem": "missing column"}
    ]
    r = client.post("/v1/deployments/churn/predict", json={"fields": FEATURES, "rows": [[1.0]]})
    assert r.status_code == 422 and "row has 1 values, expected 20" in r.text

    # 400, 413, 404, 405
    r = client.post(
        "/v1/deployments/churn/predict",
        content=b'{"records": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    r = client.post("/v1/deployments/churn/predict", json={"nothing": 1})
    assert r.status_code == 400 and "No inputs" in r.json()["error"]["message"]
    big = records(make_data(600, seed=9)[0])
    r = client.post("/v1/deployments/churn/predict", json={"records": big})
    assert r.status_code == 413, r.status_code
    assert r.json()["error"]["details"] == {"limit": 200000}
    assert "KEEL_MAX_REQUEST_SIZE" in r.json()["error"]["message"]
    r = client.post("/v1/deployments/nope/predict", json={"records": recs[:1]})
    assert r.status_code == 404 and "'nope'" in r.json()["error"]["message"]
    assert "churn" in r.json()["error"]["message"]  # names what exists
    assert client.get("/v1/nothing/here").status_code == 404
    r = client.get("/v1/deployments/churn/predict")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert client.post("/v1/deployments").status_code == 405
    assert client.get("/healthz").json() == {"status": "ok"}
    listing = client.get("/v1/deployments").json()["deployments"]
    assert [(d["name"], d["revision"], d["loaded"]) for d in listing] == [("churn", 1, ["churn/1"])]
    assert client.get("/v1/deployments/churn").json()["policy"]["primary"] == "churn/1"

    # KServe V2 (Open Inference Protocol)
    meta = client.get("/v2").json()
    assert meta["name"] == "keel" and meta["version"]
    assert client.get("/v2/health/ready").json() == {"ready": True}
    md = client.get("/v2/models/churn").json()
    assert md["name"] == "churn" and md["versions"] == ["1"]
    assert [(i["name"], i["datatype"]) for i in md["inputs"]] == [(c, "FP64") for c in FEATURES]
    assert client.get("/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
    assert client.get("/v2/models/nope").status_code == 404
    tensor = {
        "id": "v2-matrix",
        "inputs": [{"name": "input", "shape": [30, 20], "datatype": "FP64", "data": rows}],
    }
    for path in ("/v2/models/churn/infer", "/v2/models/churn/versions/1/infer"):
        r = client.post(path, json=tensor)
        assert r.status_code == 200, r.text
        ok += 1
        out = r.json()
        assert out["model_name"] == "churn" and out["model_version"] == "1"
        assert out["id"] == "v2-matrix" and r.headers["x-request-id"] == "v2-matrix"
        assert out["outputs"][0]["shape"] == [30] and out["outputs"][0]["datatype"] == "INT64"
        assert out["outputs"][0]["data"] == expected
    per_column = {
        "inputs": [
            {"name": c, "shape": [30], "datatype": "FP64", "data": X[c].tolist()} for c in FEATURES
        ]
    }
    r = client.post("/v2/models/churn/infer", json=per_column)
    assert r.status_code == 200, r.text
    ok += 1
    assert r.json()["outputs"][0]["data"] == expected
    flat = {"inputs": [{"name": "x", "shape": [30, 20], "datatype": "FP64", "data": [1.0] * 7}]}
    r = client.post("/v2/models/churn/infer", json=flat)
    assert r.status_code == 400 and "does not fill shape" in r.text
    assert client.get("/v2/models/churn/infer").status_code == 405

    # concurrent single-row requests: micro-batched, and each caller gets its own rows
    Xc, _ = make_data(64, seed=11)
    want = np.asarray(model.predict_proba(Xc))
    recs_c = records(Xc)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as ac:
            return await asyncio.gather(
                *(ac.post("/v1/deployments/churn/predict_proba", json=[rec]) for rec in recs_c)
            )

    labels = {"deployment": "churn", "model_version": "churn/1"}
    before = client.get("/metrics").text
    responses = asyncio.run(burst())
    for i, resp in enumerate(responses):
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose(resp.json()["predictions"], want[i : i + 1], rtol=1e-9)
    ok += len(responses)

    text = client.get("/metrics").text
    assert metric(text, "keel_serving_requests_total", status="ok", **labels) == ok
    assert metric(text, "keel_serving_request_duration_seconds_count", **labels) == ok
    rows_sent = 30 * (2 * len(shapes) + 3) + 5 + 1 + 64
    assert metric(text, "keel_serving_batch_rows_sum", **labels) == rows_sent

    def delta(sample: str, **extra: str) -> float:
        return metric(text, sample, **labels, **extra) - metric(before, sample, **labels, **extra)

    # the 64 one-row requests sent at once went through in fewer, larger model calls
    batches = delta("keel_serving_batch_rows_count")
    assert delta("keel_serving_batch_rows_sum") == 64
    assert batches < 64, batches
    assert delta("keel_serving_batch_rows_bucket", le="1.0") < batches, "no multi-row batch"
    assert metric(text, "keel_serving_policy_revision", deployment="churn") == 1

    # the prediction log (SQL): every request with its inputs, outputs, latency and id
    logged = wait_until(lambda: predictions_logged("churn", ok), what="prediction rows")
    assert len(logged) == ok
    mine = next(row for row in logged if row["request_id"] == "my-request-1")
    assert (mine["model_version"], mine["served_by"], mine["role"], mine["status"]) == (
        "churn/1",
        "churn/1",
        "primary",
        "ok",
    )
    assert mine["n_rows"] == 5 and mine["latency_ms"] > 0 and mine["error"] is None
    logged_in = json.loads(mine["inputs"])
    assert logged_in["fields"] == FEATURES
    np.testing.assert_allclose(logged_in["rows"], X.head(5).to_numpy())
    np.testing.assert_allclose(json.loads(mine["outputs"]), model.predict_proba(X.head(5)))

    # feedback: single and list forms joined by request id; bad items are a 422
    labelled: list[tuple[str, list[int]]] = []
    for start in range(0, 30, 10):
        rid = f"fb-{start}"
        chunk = recs[start : start + 10]
        r = client.post("/v1/deployments/churn/predict", json=chunk, headers={"X-Request-Id": rid})
        assert r.status_code == 200
        labelled.append((rid, y.iloc[start : start + 10].tolist()))
    ok += 3
    wait_until(lambda: predictions_logged("churn", ok), what="labelled prediction rows")
    r = client.post("/v1/feedback", json={"request_id": labelled[0][0], "labels": labelled[0][1]})
    assert r.status_code == 200 and r.json() == {"recorded": 1, "matched": 1}
    many = [{"request_id": rid, "labels": labels} for rid, labels in labelled[1:]]
    many.append({"request_id": "never-predicted", "value": 1})
    r = client.post("/v1/feedback", json={"feedback": many})
    assert r.status_code == 200 and r.json() == {"recorded": 3, "matched": 2}
    r = client.post(
        "/v1/feedback",
        json=[{"labels": [1]}, {"request_id": "a", "value": "high"}, {"request_id": "b"}],
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"]["problems"] == [
        {"index": 0, "problem": "needs a string request_id"},
        {"index": 1, "problem": "value must be a number"},
        {"index": 2, "problem": "needs a value or labels"},
    ]
    assert client.post("/v1/feedback", json=[]).status_code == 400
    status = serving.status("churn")
    (v1,) = status["versions"]
    right = sum(int(p == t) for p, t in zip(expected, y.tolist(), strict=True))
    assert v1["labelled_rows"] == 30
    assert v1["accuracy"] == pytest.approx(right / 30)
    assert v1["requests"] == ok and v1["errors"] == 0
    client.close()


# -- live policy changes, shadow, A/B, fallback ------------------------------------------------
def test_policies_on_a_live_server(
    registered: dict[int, str], serve: Callable[..., ServeProcess]
) -> None:
    alerts: list[dict[str, Any]] = []
    hook = _webhook(alerts)
    try:
        _check_policies(registered, serve, f"http://127.0.0.1:{hook.server_address[1]}/", alerts)
    finally:
        hook.shutdown()
        hook.server_close()


def _webhook(received: list[dict[str, Any]]) -> HTTPServer:
    """A Slack-like webhook on 127.0.0.1 collecting the JSON bodies it is sent."""

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _check_policies(
    registered: dict[int, str],
    serve: Callable[..., ServeProcess],
    hook_url: str,
    alerts: list[dict[str, Any]],
) -> None:
    serving.create_deployment("cn", registered[2], alert_webhook=hook_url)
    serving.create_deployment("bg", registered[1])
    serving.create_deployment("sh", registered[2])
    serving.create_deployment("ab", registered[1])
    serving.create_deployment("fb", registered[3], fallback=registered[2])
    serving.create_deployment("nofb", registered[3])
    server = serve()
    client = httpx.Client(base_url=server.url, timeout=30)
    X, y = make_data(200, seed=3)
    truth = y.tolist()
    one = {"records": records(X.head(1))}

    def loaded(name: str, revision: int) -> bool:
        return bool(client.get(f"/v1/deployments/{name}").json()["revision"] == revision)

    # blue-green: stage v2 (loaded, idle), switch, time until answers come from v2
    serving.bluegreen("bg", registered[2])
    wait_until(lambda: loaded("bg", 2), what="the staged colour")
    assert client.post("/v1/deployments/bg/predict", json=one).json()["model_version"] == "churn/1"
    served: list[str] = []
    start = time.monotonic()
    serving.switch("bg", reason="go green")
    while time.monotonic() - start < 10:
        r = client.post("/v1/deployments/bg/predict", json=one)
        assert r.status_code == 200, r.text  # no failed request during the switch
        served.append(r.json()["model_version"])
        if served[-1] == "churn/2":
            break
    elapsed = time.monotonic() - start
    # refreshes every 0.5 s; on a loaded test machine allow scheduling slack
    assert served[-1] == "churn/2" and elapsed < 2.5, (elapsed, served[-3:])
    assert set(served) <= {"churn/1", "churn/2"}

    # shadow: users get the primary's answers; the shadow's rows show full disagreement
    serving.shadow("sh", registered[4])
    wait_until(lambda: loaded("sh", 2), what="the shadow policy")
    for i in range(0, 40, 2):
        r = client.post(
            "/v1/deployments/sh/predict",
            json={"records": records(X.iloc[i : i + 2])},
            headers={"X-Request-Id": f"sh-{i}"},
        )
        assert r.status_code == 200 and r.json()["model_version"] == "churn/2"
        assert r.json()["predictions"] == truth[i : i + 2]  # Threshold is the truth

    def shadow_rows() -> list[dict[str, Any]] | None:
        rows = Deployments()._store.predictions("sh", roles=["shadow"])
        return rows if len(rows) == 20 else None

    rows = wait_until(shadow_rows, what="20 shadow rows")
    assert {(r["model_version"], r["status"], r["disagreement"]) for r in rows} == {
        ("churn/4", "ok", 1.0)
    }
    assert {r["request_id"] for r in rows} == {f"sh-{i}" for i in range(0, 40, 2)}
    shadow_stats = {
        v["role"]: v for v in serving.status("sh")["versions"] if v["version"] == "churn/4"
    }
    assert shadow_stats["shadow"]["disagreement"] == 1.0
    text = client.get("/metrics").text
    assert (
        metric(
            text,
            "keel_serving_shadow_requests_total",
            deployment="sh",
            model_version="churn/4",
            outcome="disagree",
        )
        == 20
    )

    # A/B: the same key always gets the same version; the split follows the weight
    dep = serving.ab("ab", registered[2], split=0.3, key="user_id")
    wait_until(lambda: loaded("ab", 2), what="the A/B policy")
    keys = [f"user-{i}" for i in range(200)]

    async def assign() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as ac:
            sem = asyncio.Semaphore(16)

            async def post(i: int) -> httpx.Response:
                key = keys[i % len(keys)]
                async with sem:
                    if i < len(keys):  # by header
                        return await ac.post(
                            "/v1/deployments/ab/predict", json=one, headers={"X-Keel-Key": key}
                        )
                    return await ac.post(  # by the body's key field
                        "/v1/deployments/ab/predict", json={**one, "user_id": key}
                    )

            return await asyncio.gather(*(post(i) for i in range(2 * len(keys))))

    got = [r.json()["model_version"] for r in asyncio.run(assign())]
    first, second = got[: len(keys)], got[len(keys) :]
    assert first == second  # sticky, and the header and the body field agree
    assert first == [dep.policy.route(k)[0] for k in keys]
    share = first.count("churn/2") / len(keys)
    expected_share = sum(route_share(k) < 0.3 for k in keys) / len(keys)
    assert share == expected_share and 0.2 < share < 0.4, share

    # fallback: the Faulty primary raises on some requests; every one is still answered
    faulty = [
        bool(np.any((np.abs(X["f2"].iloc[i] * 1000).astype(np.int64) % 10) < 3)) for i in range(60)
    ]
    assert 5 <= sum(faulty) <= 40
    for i in range(60):
        r = client.post(
            "/v1/deployments/fb/predict",
            json={"records": records(X.iloc[i : i + 1])},
            headers={"X-Request-Id": f"fb-{i}"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == truth[i : i + 1]
        assert r.json()["model_version"] == ("churn/2" if faulty[i] else "churn/3")
    text = client.get("/metrics").text
    fb_labels = {"deployment": "fb", "model_version": "churn/3"}
    assert metric(text, "keel_serving_fallbacks_total", **fb_labels) == sum(faulty)
    assert metric(text, "keel_serving_requests_total", status="fallback", **fb_labels) == sum(
        faulty
    )

    def fb_rows() -> list[dict[str, Any]] | None:
        rows = Deployments()._store.predictions("fb")
        return rows if len(rows) == 60 else None

    rows = wait_until(fb_rows, what="fallback rows")
    fell = {r["request_id"] for r in rows if r["status"] == "fallback"}
    assert fell == {f"fb-{i}" for i in range(60) if faulty[i]}
    assert all(
        r["served_by"] == "churn/2" and "simulated failure" in r["error"]
        for r in rows
        if r["status"] == "fallback"
    )
    (st,) = [v for v in serving.status("fb")["versions"] if v["version"] == "churn/3"]
    assert st["fallbacks"] == sum(faulty) and st["errors"] == 0

    # a faulty canary: users see no error; the server's controller rolls it back and alerts
    serving.canary(
        "cn", registered[3], steps=(0.5, 1.0), step_seconds=60,
        guards=serving.Guards(max_error_rate=0.05, min_requests=20),
    )  # fmt: skip
    wait_until(lambda: loaded("cn", 2), what="the canary policy")
    sent = 0
    while serving.get_deployment("cn").policy.kind == "canary" and sent < 400:
        i = sent % len(X)
        r = client.post("/v1/deployments/cn/predict", json={"records": records(X.iloc[i : i + 1])})
        assert r.status_code == 200 and r.json()["predictions"] == truth[i : i + 1], r.text
        sent += 1
    dep = serving.get_deployment("cn")
    assert (dep.policy.kind, dep.policy.primary, dep.policy.candidate) == (
        "single",
        "churn/2",
        None,
    ), sent
    last = serving.history("cn")[-1]
    assert last.action == "rollback" and last.actor == "keel-server"
    assert last.reason is not None and last.reason.startswith("automatic rollback: error rate")
    alert = wait_until(lambda: alerts[0] if alerts else None, what="the rollback alert")
    assert alert["keel"]["event"] == "deployment.rollback" and alert["keel"]["deployment"] == "cn"
    assert alert["keel"]["candidate"] == "churn/3" and "churn/3" in alert["text"]
    assert len(alerts) == 1

    # without a fallback the same failures are a 500 model_error (and logged as errors)
    assert 0 < sum(faulty[:20]) < 20
    for i in range(20):
        r = client.post(
            "/v1/deployments/nofb/predict",
            json={"records": records(X.iloc[i : i + 1])},
            headers={"X-Request-Id": f"nofb-{i}"},
        )
        if faulty[i]:
            assert r.status_code == 500, r.text
            err = r.json()["error"]
            assert err["code"] == "model_error" and "no fallback" in err["message"]
            assert err["details"] == {"model_version": "churn/3"}
        else:
            assert r.status_code == 200 and r.json()["predictions"] == truth[i : i + 1]
    text = client.get("/metrics").text
    nofb = {"deployment": "nofb", "model_version": "churn/3"}
    assert metric(text, "keel_serving_requests_total", status="error", **nofb) == sum(faulty[:20])
    assert metric(text, "keel_serving_requests_total", status="ok", **nofb) == 20 - sum(faulty[:20])
    errors = wait_until(
        lambda: (
            [r for r in Deployments()._store.predictions("nofb") if r["status"] == "error"]
            if len(Deployments()._store.predictions("nofb")) == 20
            else None
        ),
        what="nofb rows",
    )
    assert {r["request_id"] for r in errors} == {f"nofb-{i}" for i in range(20) if faulty[i]}
    assert all(r["outputs"] is None and "simulated failure" in r["error"] for r in errors)
    client.close()


# -- two workers, Parquet prediction log -------------------------------------------------------
def test_two_workers_and_the_parquet_log(
    registered: dict[int, str],
    serve: Callable[..., ServeProcess],
    keel_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow.parquet as pq

    from keel.config import load_settings

    monkeypatch.setenv("KEEL_PREDICTION_LOG", "parquet")  # this process reads the same sink
    fresh_client()
    serving.create_deployment("churn", registered[2])
    server = serve("--workers", "2", KEEL_PREDICTION_LOG="parquet")
    X, y = make_data(80, seed=21)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as ac:
            return await asyncio.gather(
                *(
                    ac.post(
                        "/v1/deployments/churn/predict",
                        json={"records": records(X.iloc[i : i + 2])},
                        headers={"X-Request-Id": f"pq-{i}"},
                    )
                    for i in range(0, 80, 2)
                )
            )

    for r in asyncio.run(burst()):
        assert r.status_code == 200, r.text
        i = int(r.json()["request_id"].split("-")[1])
        assert r.json()["predictions"] == y.iloc[i : i + 2].tolist()

    # /metrics (whichever worker answers) counts both workers' requests
    for _ in range(4):
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        counted = metric(
            text,
            "keel_serving_requests_total",
            deployment="churn",
            model_version="churn/2",
            status="ok",
        )
        assert counted == 40
        assert metric(text, "keel_serving_batch_rows_sum", deployment="churn") == 80

    # Parquet files appear (written by the workers' flushes) and read back
    folder = keel_home / "predictions" / "deployment=churn"

    def parquet_rows() -> int:
        files = [p for p in folder.rglob("*.parquet") if not p.name.startswith(".")]
        return sum(pq.read_table(p).num_rows for p in files)

    wait_until(lambda: parquet_rows() == 40, what="40 rows in Parquet")
    files = sorted(folder.rglob("*.parquet"))
    assert all(p.parent.name.startswith("date=") for p in files)
    table = pq.read_table(files[0])
    assert table.schema.field("latency_ms").type == "double"
    assert table.schema.field("ts").type == "int64"

    settings = load_settings()
    assert settings.prediction_log == "parquet"
    store = Deployments()._store
    rows = read_predictions(settings, store, "churn")
    assert sorted(r["request_id"] for r in rows) == sorted(f"pq-{i}" for i in range(0, 80, 2))
    assert {(r["model_version"], r["role"], r["status"], r["n_rows"]) for r in rows} == {
        ("churn/2", "primary", "ok", 2)
    }
    assert store.predictions("churn") == []  # nothing in the SQL table
    frame = pd.DataFrame(rows)
    assert (frame["latency_ms"] > 0).all()
    (st,) = serving.status("churn")["versions"]
    assert st["requests"] == 40 and st["rows"] == 80


def fresh_client() -> None:
    """Close the cached clients so the next call reads the changed environment."""
    from keel.tracking import fluent

    for client in list(fluent._clients.values()):
        client.close()
    fluent._reset()


# -- in-process (cheap models, no subprocess) ---------------------------------------------
def _in_process(
    requests: list[tuple[str, str, Any]], deployments: dict[str, str] | None = None
) -> list[httpx.Response]:
    """Run a ServingApp in this process (lifespan driven by hand) and send ``requests``
    (method, path, JSON body or None); ``deployments`` {name: model uri} are created first."""
    from keel.serving._app import ServingApp

    for name, uri in (deployments or {}).items():
        serving.create_deployment(name, uri)

    async def go() -> list[httpx.Response]:
        app = ServingApp()
        await app.startup()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://keel") as ac:
                return [
                    await ac.request(method, path, json=body) for method, path, body in requests
                ]
        finally:
            await app.shutdown()

    return asyncio.run(go())


@pytest.fixture
def threshold(keel_home: Path) -> str:
    """``churn/1`` = Threshold, a model that loads in milliseconds."""
    import keel
    from keel.models import ColumnSpec, Signature, infer_signature
    from tests.serving.models import Threshold

    X, _ = make_data(5)
    signature = Signature(infer_signature(X).inputs, (ColumnSpec("prediction", "int64", False),))
    with keel.start_run(log_environment=False):
        info = keel.log_model(
            Threshold(), "model", signature=signature, registered_model_name="churn"
        )
    assert info.version is not None and info.version.version == 1
    return "models:/churn/1"


def test_feedback_problems_are_structured(keel_home: Path) -> None:
    body = [{"labels": [1]}, {"request_id": "a", "value": "high"}]
    (r,) = _in_process([("POST", "/v1/feedback", body)])
    assert r.status_code == 422
    assert r.json()["error"]["details"]["problems"] == [
        {"index": 0, "problem": "needs a string request_id"},
        {"index": 1, "problem": "value must be a number"},
    ]


def test_metrics_has_one_prometheus_content_type(keel_home: Path) -> None:
    (r,) = _in_process([("GET", "/metrics", None)])
    assert r.status_code == 200
    assert [v.split(";")[0] for v in r.headers.get_list("content-type")] == ["text/plain"]


def test_kserve_unknown_version_is_not_found(threshold: str) -> None:
    X, _ = make_data(2)
    tensor = {"inputs": [{"name": "x", "shape": [2, 20], "datatype": "FP64",
                          "data": X.to_numpy().tolist()}]}  # fmt: skip
    known, meta, infer = _in_process(
        [
            ("GET", "/v2/models/churn/versions/1", None),
            ("GET", "/v2/models/churn/versions/99", None),
            ("POST", "/v2/models/churn/versions/99/infer", tensor),
        ],
        {"churn": threshold},
    )
    assert known.status_code == 200 and known.json()["versions"] == ["1"]
    assert meta.status_code == 404
    assert infer.status_code == 404
