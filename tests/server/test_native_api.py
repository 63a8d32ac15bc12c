"""The native REST API (/api/v1) in-process: endpoints, error bodies, limits, blobs, metrics."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import keel
from keel.config import load_settings
from keel.objects.base import hash_bytes
from keel.server import create_app

RUN_ID = "0" * 32


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return dict(body["error"])


def _run(http: TestClient, experiment: str = "e", **fields: Any) -> dict[str, Any]:
    exp = http.post("/api/v1/experiments/get-or-create", json={"name": experiment}).json()
    r = http.post("/api/v1/runs", json={"experiment_id": exp["experiment_id"], **fields})
    assert r.status_code == 201, r.text
    return dict(r.json())


# -- experiments -------------------------------------------------------------------------------
def test_experiments(http: TestClient) -> None:
    r = http.post("/api/v1/experiments", json={"name": "churn", "tags": {"team": "ml"}})
    assert r.status_code == 201
    exp = r.json()
    assert exp["name"] == "churn" and exp["tags"] == {"team": "ml"}
    err = _error(http.post("/api/v1/experiments", json={"name": "churn"}), 409, "already_exists")
    assert err["details"] == {"name": "churn"}
    assert http.get(f"/api/v1/experiments/{exp['experiment_id']}").json() == exp
    assert http.get("/api/v1/experiments/by-name", params={"name": "churn"}).json() == exp
    err = _error(http.get("/api/v1/experiments/by-name?name=chrun"), 404, "not_found")
    assert "Did you mean 'churn'?" in err["message"]
    again = http.post("/api/v1/experiments/get-or-create", json={"name": "churn"}).json()
    assert again == exp
    r = http.put(f"/api/v1/experiments/{exp['experiment_id']}/lifecycle", json={"stage": "deleted"})
    assert r.json()["lifecycle_stage"] == "deleted"
    assert http.get("/api/v1/experiments").json() == {"experiments": []}
    deleted = http.get("/api/v1/experiments?view=deleted").json()["experiments"]
    assert [e["name"] for e in deleted] == ["churn"]
    r = http.post("/api/v1/runs", json={"experiment_id": exp["experiment_id"]})
    _error(r, 409, "invalid_state")
    _error(http.get("/api/v1/experiments?view=gone"), 400, "invalid_input")
    _error(http.get("/api/v1/experiments/abc"), 400, "invalid_input")


# -- runs ----------------------------------------------------------------------------------------
def test_run_batch_log_and_nan_round_trip(http: TestClient) -> None:
    run = _run(http, name="r1", tags={"a": "1"})
    run_id = run["run_id"]
    assert run["status"] == "RUNNING" and run["tags"] == {"a": "1"}
    points = [
        ["loss", 0.5, 0, 1_000_000],
        ["loss", 0.25, 1, 2_000_000],
        ["nan", "NaN", 0, 1_000_000],
        ["pinf", "Infinity", 0, 1_000_000],
        ["ninf", "-Infinity", 0, 1_000_000],
        ["slice/eu:auc", 0.7, 0, 1_000_000],
    ]
    body = {"metrics": points, "params": {"lr": "0.1"}, "tags": {"stage": "dev"}}
    r = http.post(f"/api/v1/runs/{run_id}/batch", json=body)
    assert r.status_code == 204, r.text
    assert http.post(f"/api/v1/runs/{run_id}/batch", json=body).status_code == 204  # a retry
    got = http.get(f"/api/v1/runs/{run_id}").json()
    assert got["metrics"] == {
        "loss": 0.25,
        "nan": "NaN",
        "pinf": "Infinity",
        "ninf": "-Infinity",
        "slice/eu:auc": 0.7,
    }
    assert got["params"] == {"lr": "0.1"} and got["tags"] == {"a": "1", "stage": "dev"}
    history = http.get(f"/api/v1/runs/{run_id}/metrics/loss").json()["metrics"]
    assert [(m["step"], m["value"], m["timestamp"]) for m in history] == [
        (0, 0.5, 1000),
        (1, 0.25, 2000),
    ]  # stored once despite the retry
    assert http.get(f"/api/v1/runs/{run_id}/metrics/slice/eu:auc").json()["metrics"][0][
        "value"
    ] == pytest.approx(0.7)
    assert http.get(f"/api/v1/runs/{run_id}/metrics/ninf").json()["metrics"][0]["value"] == (
        "-Infinity"
    )
    err = _error(
        http.post(f"/api/v1/runs/{run_id}/batch", json={"params": {"lr": "0.2"}}),
        409,
        "param_conflict",
    )
    assert err["details"]["old"] == "0.1" and err["details"]["new"] == "0.2"
    assert http.delete(f"/api/v1/runs/{run_id}/tags/stage").status_code == 204
    _error(http.delete(f"/api/v1/runs/{run_id}/tags/stage"), 404, "not_found")

    r = http.put(f"/api/v1/runs/{run_id}/status", json={"status": "FINISHED"})
    assert r.status_code == 204
    assert http.get(f"/api/v1/runs/{run_id}/status").json() == {"status": "FINISHED"}
    _error(http.post(f"/api/v1/runs/{run_id}/batch", json=body), 409, "invalid_state")
    _error(http.put(f"/api/v1/runs/{run_id}/status", json={"status": "DONE"}), 400, "invalid_input")
    r = http.put(f"/api/v1/runs/{run_id}/lifecycle", json={"stage": "deleted"})
    assert r.status_code == 204
    assert http.get(f"/api/v1/runs/{run_id}").json()["lifecycle_stage"] == "deleted"


def test_search_filter_order_and_pages(http: TestClient) -> None:
    for i in range(5):
        run = _run(http, "s", name=f"r{i}")
        batch = {"metrics": [["auc", i / 10, 0, 1]], "params": {"model": "rf" if i % 2 else "gb"}}
        http.post(f"/api/v1/runs/{run['run_id']}/batch", json=batch)
    exp_id = http.get("/api/v1/experiments/by-name?name=s").json()["experiment_id"]
    body: dict[str, Any] = {
        "experiment_ids": [exp_id],
        "filter": "params.model = 'rf'",
        "order_by": ["metrics.auc DESC"],
    }
    page = http.post("/api/v1/runs/search", json=body).json()
    assert [r["name"] for r in page["runs"]] == ["r3", "r1"] and page["next_page_token"] is None
    names, token = [], None
    while True:
        body = {"order_by": ["run_name"], "max_results": 2, "page_token": token}
        page = http.post("/api/v1/runs/search", json=body).json()
        names += [r["name"] for r in page["runs"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert names == [f"r{i}" for i in range(5)]
    err = _error(
        http.post("/api/v1/runs/search", json={"filter": "metrics.auc > 'x'"}), 400, "invalid_input"
    )
    assert "Invalid filter at position" in err["message"] and err["details"]["position"] == 14
    _error(http.post("/api/v1/runs/search", json={"page_token": "nope"}), 400, "invalid_input")
    _error(http.post("/api/v1/runs/search", json={"max_results": 0}), 400, "invalid_input")


def test_heartbeat_and_reap(http: TestClient) -> None:
    run = _run(http, heartbeat=True)
    assert http.post("/api/v1/runs/heartbeat", json={"run_ids": [run["run_id"]]}).status_code == 204
    _error(http.post("/api/v1/runs/heartbeat", json={"run_ids": ["x"]}), 400, "invalid_input")
    assert http.post("/api/v1/runs/reap", json={"timeout": 3600}).json() == {"run_ids": []}
    _error(http.post("/api/v1/runs/reap", json={"timeout": 0}), 400, "invalid_input")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "fragment"),
    [
        ("post", "/api/v1/experiments", {"name": "x", "colour": 1}, 400, "invalid_input", "colour"),
        ("post", "/api/v1/experiments", {"name": ""}, 400, "invalid_input", "non-empty"),
        ("get", f"/api/v1/runs/{'z' * 32}", None, 400, "invalid_input", "run id"),
        ("get", f"/api/v1/runs/{RUN_ID}", None, 404, "not_found", RUN_ID),
        ("get", "/api/v1/nothing-here", None, 404, "http_error", "Not Found"),
        ("patch", f"/api/v1/runs/{RUN_ID}", {}, 405, "http_error", "Method Not Allowed"),
        (
            "post",
            f"/api/v1/runs/{RUN_ID}/batch",
            {"metrics": [["m", "abc", 0, 0]]},
            400,
            "invalid_input",
            "'NaN', 'Infinity', '-Infinity'",
        ),
        (
            "post",
            f"/api/v1/runs/{RUN_ID}/batch",
            {"metrics": [["m", 1.0, 2**64, 0]]},
            400,
            "invalid_input",
            "less than or equal",
        ),
        (
            "post",
            f"/api/v1/runs/{RUN_ID}/batch",
            {"metrics": [["bad key!", 1.0, 0, 0]]},
            400,
            "invalid_input",
            "contains",
        ),
        (
            "post",
            f"/api/v1/runs/{RUN_ID}/batch",
            {"metrics": [[1]]},
            400,
            "invalid_input",
            "metrics",
        ),
        ("put", "/api/v1/blobs/abc", b"x", 400, "invalid_input", "not a blob digest"),
        ("get", "/api/v1/blobs/" + "a" * 64, None, 404, "not_found", "a" * 64),
    ],
)
def test_error_bodies(
    http: TestClient,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
    fragment: str,
) -> None:
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    err = _error(http.request(method.upper(), path, **kwargs), status, code)
    assert fragment in err["message"], err


def test_malformed_json_is_a_400(http: TestClient) -> None:
    r = http.post(
        "/api/v1/experiments", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    _error(r, 400, "invalid_input")


def test_unexpected_errors_have_the_error_body_and_no_trace(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(type(app.state.client.store), "list_experiments", broken)
    r = TestClient(app, raise_server_exceptions=False).get("/api/v1/experiments")
    err = _error(r, 500, "internal_error")
    assert "secret internals" not in r.text and "RuntimeError" in err["message"]


# -- limits, compression, metrics, docs ------------------------------------------------------------
@pytest.fixture
def small_limit_http() -> TestClient:
    return TestClient(create_app(dataclasses.replace(load_settings(), max_request_size=1000)))


def test_request_size_limit(small_limit_http: TestClient) -> None:
    big = {"name": "x" * 2000}
    err = _error(small_limit_http.post("/api/v1/experiments", json=big), 413, "request_too_large")
    assert err["details"] == {"limit": 1000} and "KEEL_MAX_REQUEST_SIZE" in err["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    r = small_limit_http.post(
        "/api/v1/experiments", content=chunked(), headers={"Content-Type": "application/json"}
    )
    _error(r, 413, "request_too_large")
    assert small_limit_http.get("/api/v1/experiments").json() == {"experiments": []}
    blob = b"y" * 5000  # blob uploads are streamed, not limited
    assert (
        small_limit_http.put(f"/api/v1/blobs/{hash_bytes(blob)}", content=blob).status_code == 201
    )


def test_gzip_for_large_answers_not_for_blobs(http: TestClient) -> None:
    for i in range(30):
        _run(http, name=f"run-{i}", tags={"note": "x" * 50})
    r = http.post("/api/v1/runs/search", json={}, headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and len(r.json()["runs"]) == 30
    small = http.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers
    blob = b"compressible " * 1000
    digest = hash_bytes(blob)
    http.put(f"/api/v1/blobs/{digest}", content=blob)
    r = http.get(f"/api/v1/blobs/{digest}", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers and r.content == blob


def test_prometheus_metrics_per_route_template(http: TestClient) -> None:
    http.get(f"/api/v1/runs/{RUN_ID}")
    http.get(f"/api/v1/runs/{'1' * 32}")
    http.get("/api/v1/experiments")
    text = http.get("/metrics").text
    line = 'keel_http_requests_total{method="GET",route="/api/v1/runs/{run_id}",status="404"} 2.0'
    assert line in text
    assert 'keel_http_requests_total{method="GET",route="/api/v1/experiments",status="200"}' in text
    assert "keel_http_request_duration_seconds_bucket{" in text
    assert RUN_ID not in text  # raw paths never become labels


def test_openapi_documents_the_native_api(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    for path in ["/api/v1/runs/search", "/api/v1/runs/{run_id}/batch", "/api/v1/blobs/{digest}"]:
        assert path in spec["paths"], path
    assert http.get("/docs").status_code == 200


# -- blobs --------------------------------------------------------------------------------------
def _stored(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_blob_with_a_wrong_digest_is_refused_and_nothing_is_stored(http: TestClient) -> None:
    content = b"the real content" * 100
    claimed = hash_bytes(b"something else")
    err = _error(http.put(f"/api/v1/blobs/{claimed}", content=content), 422, "integrity_error")
    assert err["details"] == {"digest": claimed, "actual": hash_bytes(content)}
    assert http.head(f"/api/v1/blobs/{claimed}").status_code == 404
    assert http.head(f"/api/v1/blobs/{hash_bytes(content)}").status_code == 404
    assert http.get("/api/v1/blobs").text == ""
    assert _stored(load_settings().home / "objects") == []  # no blob, no temp file


def test_blob_put_head_get_list(http: TestClient) -> None:
    content = bytes(range(256)) * 4096
    digest = hash_bytes(content)
    r = http.put(f"/api/v1/blobs/{digest}", content=content)
    assert r.status_code == 201 and r.json() == {"digest": digest, "size": len(content)}
    assert http.put(f"/api/v1/blobs/{digest}", content=content).status_code == 201  # same again
    head = http.head(f"/api/v1/blobs/{digest}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(content))
    r = http.get(f"/api/v1/blobs/{digest}")
    assert r.content == content and r.headers["etag"] == f'"{digest}"'
    assert http.get("/api/v1/blobs").text == digest + "\n"


def test_artifact_records_need_stored_blobs(http: TestClient) -> None:
    run_id = _run(http)["run_id"]
    content = b"model bytes"
    digest = hash_bytes(content)
    record = {"artifacts": [{"path": "model/m.bin", "digest": digest, "size": len(content)}]}
    _error(http.post(f"/api/v1/runs/{run_id}/artifacts", json=record), 404, "not_found")
    http.put(f"/api/v1/blobs/{digest}", content=content)
    wrong = {"artifacts": [{"path": "model/m.bin", "digest": digest, "size": 3}]}
    _error(http.post(f"/api/v1/runs/{run_id}/artifacts", json=wrong), 422, "integrity_error")
    bad_path = {"artifacts": [{"path": "../m.bin", "digest": digest, "size": len(content)}]}
    _error(http.post(f"/api/v1/runs/{run_id}/artifacts", json=bad_path), 400, "invalid_input")
    assert http.post(f"/api/v1/runs/{run_id}/artifacts", json=record).status_code == 204
    listing = http.get(f"/api/v1/runs/{run_id}/artifacts", params={"prefix": "model"}).json()
    assert listing == {"artifacts": [{"path": "model/m.bin", "digest": digest, "size": 11}]}


# -- registry, lineage, audit -------------------------------------------------------------------
@pytest.fixture
def logged_model() -> str:
    """A model folder logged in-process to the store the app serves; returns its runs:/ URI.

    The registry only reads the spec file and hashes the files, so a hand-written
    folder stands in for a trained model.
    """
    spec = {"flavor": "sklearn", "format": "skops", "unsafe": False}
    with keel.start_run(experiment="reg") as run:
        keel.log_metric("auc", 0.9)
        keel.log_input("dataset:churn@3")
        keel.log_dict(spec, "model/keel-model.json")
        keel.log_text("weights", "model/model.skops")
    return f"runs:/{run.run_id}/model"


def test_registry_over_http(http: TestClient, logged_model: str) -> None:
    alice, ann = {"X-Keel-User": "alice"}, {"X-Keel-User": "ann"}
    r = http.post(
        "/api/v1/models/churn/versions",
        json={"source": logged_model, "manifest_digest": "0" * 64},
        headers=alice,
    )
    _error(r, 422, "integrity_error")  # the files the client saw are not what the server has
    r = http.post("/api/v1/models/churn/versions", json={"source": logged_model}, headers=alice)
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert (v1["version"], v1["created_by"], v1["flavor"]) == (1, "alice", "sklearn")
    assert v1["metrics"] == {"auc": 0.9} and v1["datasets"] == ["dataset:churn@3"]
    body = {"source": logged_model, "manifest_digest": v1["manifest_digest"]}
    assert http.post("/api/v1/models/churn/versions", json=body).json()["version"] == 2
    _error(
        http.post("/api/v1/models/churn/versions", json={"source": "runs:/x"}), 400, "invalid_input"
    )

    model = http.get("/api/v1/models/churn").json()
    assert model["latest_version"] == 2 and model["owner"] == "alice"
    assert [m["name"] for m in http.get("/api/v1/models").json()["models"]] == ["churn"]
    r = http.patch("/api/v1/models/churn", json={"purpose": "retention offers"}, headers=alice)
    assert r.json()["purpose"] == "retention offers" and r.json()["description"] is None
    versions = http.get("/api/v1/models/churn/versions").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert http.get("/api/v1/models/churn/versions/latest").json()["version"] == 2
    _error(http.get("/api/v1/models/churn/versions/9"), 404, "not_found")

    r = http.put("/api/v1/models/churn/aliases/champion", json={"version": 1}, headers=alice)
    assert r.json()["aliases"] == ["champion"]
    assert http.get("/api/v1/models/churn/aliases/champion").json()["version"] == 1
    assert http.delete("/api/v1/models/churn/aliases/champion?reason=oops").status_code == 204
    _error(http.get("/api/v1/models/churn/aliases/champion"), 404, "not_found")
    r = http.put("/api/v1/models/churn/versions/1/stage", json={"stage": "staging"}, headers=alice)
    assert r.json()["stage"] == "Staging"
    assert http.get("/api/v1/models/churn/stages/Staging").json()["version"] == 1

    # approvals: protected Production needs an approver other than the requester
    r = http.put("/api/v1/models/churn/protection", json={"stages": ["Production"]}, headers=alice)
    assert r.json()["protected_stages"] == ["Production"]
    r = http.put("/api/v1/models/churn/versions/2/stage", json={"stage": "Production"})
    _error(r, 403, "permission_denied")
    assert http.post("/api/v1/roles", json={"user": "ann", "role": "approver"}).status_code == 204
    assert http.get("/api/v1/models/churn/approvers").json() == {"users": ["ann"]}
    r = http.post(
        "/api/v1/models/churn/versions/2/requests",
        json={"stage": "Production", "comment": "beats v1"},
        headers=alice,
    )
    request_id = r.json()["id"]
    pending = http.get("/api/v1/requests", params={"model": "churn"}).json()["requests"]
    assert [p["id"] for p in pending] == [request_id]
    _error(
        http.post(f"/api/v1/requests/{request_id}/approve", json={}, headers=alice),
        403,
        "permission_denied",
    )
    r = http.post(f"/api/v1/requests/{request_id}/approve", json={"comment": "ok"}, headers=ann)
    assert r.json()["status"] == "applied"
    assert http.get("/api/v1/models/churn/versions/2").json()["stage"] == "Production"
    assert http.get("/api/v1/requests").json() == {"requests": []}
    assert len(http.get("/api/v1/requests?status=all").json()["requests"]) == 1
    _error(
        http.post(f"/api/v1/requests/{request_id}/reject", json={}, headers=ann),
        409,
        "invalid_state",
    )
    _error(http.get("/api/v1/requests?status=odd"), 400, "invalid_input")

    card = http.get("/api/v1/models/churn/versions/2/card")
    assert card.headers["content-type"].startswith("text/markdown")
    assert "# Model card: churn v2" in card.text and "retention offers" in card.text
    html_card = http.get("/api/v1/models/churn/versions/2/card?format=html")
    assert html_card.text.startswith("<!doctype html>")

    walk = http.get("/api/v1/lineage", params={"node": "models:/churn/1"}).json()
    assert "dataset:churn@3" in walk["nodes"] and walk["direction"] == "up"
    edge = {"src": "dataset:churn@4", "dst": "model_version:churn/2", "relation": "trained_on"}
    assert http.post("/api/v1/lineage/edges", json=edge).status_code == 204
    down = http.get("/api/v1/lineage?node=dataset:churn@4&direction=down").json()
    assert down["nodes"] == ["dataset:churn@4", "model_version:churn/2"]
    bad_edge = {**edge, "relation": "Not A Word"}
    _error(http.post("/api/v1/lineage/edges", json=bad_edge), 400, "invalid_input")

    events, token = [], None
    while True:
        page = http.get("/api/v1/audit/events", params={"max_results": 3, "page_token": token})
        events += page.json()["events"]
        token = page.json()["next_page_token"]
        if token is None:
            break
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {"version.register", "alias.set", "alias.delete", "approval.approve"} <= {
        e["action"] for e in events
    }
    assert events[0]["actor"] == "alice"
    assert http.get("/api/v1/audit/verify").json() == {"checked": len(events), "problem": None}
    only = http.get("/api/v1/audit/events?object_prefix=model:churn@").json()["events"]
    assert {e["action"] for e in only} == {"alias.set", "alias.delete"}
    _error(http.get("/api/v1/audit/events?page_token=bad"), 400, "invalid_input")
    r = http.post("/api/v1/models", json={"name": "m2"}, headers={"X-Keel-User": " "})
    _error(r, 400, "invalid_input")


def test_openapi_documents_json_floats(http: TestClient) -> None:
    schemas = http.get("/openapi.json").json()["components"]["schemas"]
    assert '"enum": ["NaN", "Infinity", "-Infinity"]' in json.dumps(schemas["BatchLog"])
