"""The application factory: health, one error body for every failure."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from keel.server import create_app


@pytest.fixture
def http() -> TestClient:
    return TestClient(create_app())


def test_healthz(http: TestClient) -> None:
    body = http.get("/healthz").json()
    assert body["status"] == "ok" and body["version"]


def test_unknown_route_has_the_error_body(http: TestClient) -> None:
    r = http.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "http_error"
