"""Every path under MLflow's prefixes that no route serves answers in MLflow's error shape.

MLflow clients read ``{"error_code", "message"}``; keel's native ``{"error": ...}``
body would surface as an opaque failure. Paths with an encoded newline used to
slip past the catch-all route (Starlette's ``path`` convertor stops at a newline).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

ART = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/2.0/mlflow/no-such-endpoint", 404, "ENDPOINT_NOT_FOUND"),
        ("GET", "/api/2.0/mlflow/a%0Ab", 404, "ENDPOINT_NOT_FOUND"),
        ("POST", "/api/2.0/mlflow/runs/get", 404, "ENDPOINT_NOT_FOUND"),  # GET only
        ("HEAD", "/api/2.0/mlflow/experiments/search", 404, "ENDPOINT_NOT_FOUND"),
        ("OPTIONS", "/api/2.0/mlflow/runs/search", 404, "ENDPOINT_NOT_FOUND"),
        ("GET", "/api/2.0/mlflow", 404, "ENDPOINT_NOT_FOUND"),
        ("GET", f"{ART}/1/{'a' * 32}/artifacts/x%0Ay", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("PUT", f"{ART}/x%0A%0Ay", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", f"{ART}/..%2F..%2Fetc%2Fpasswd", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", f"{ART}/a%00b", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("DELETE", "/api/2.0/mlflow-artifacts/nothing%0Ahere", 404, "ENDPOINT_NOT_FOUND"),
        ("GET", "/api/3.0/mlflow/nope%0A%0A", 404, "ENDPOINT_NOT_FOUND"),
        ("GET", "/ajax-api/2.0/mlflow/runs/search", 404, "ENDPOINT_NOT_FOUND"),
        ("POST", "/ajax-api/2.0/mlflow-artifacts/x%0Ay", 404, "ENDPOINT_NOT_FOUND"),
        ("GET", "/ajax-api", 404, "ENDPOINT_NOT_FOUND"),
    ],
)
def test_unserved_mlflow_paths_answer_in_mlflow_shape(
    http: TestClient, method: str, path: str, status: int, code: str
) -> None:
    r = http.request(method, path)  # "/api/2.0/mlflow" redirects to "./mlflow/"
    assert r.status_code == status
    if method == "HEAD":
        return  # no body; the status is the answer
    body = r.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == code
    assert body["message"]


def test_messages_say_what_and_where(http: TestClient) -> None:
    body = http.get("/api/2.0/mlflow/a%0Ab").json()
    assert "GET '/api/2.0/mlflow/a\\nb'" in body["message"]
    assert "docs/mlflow.md" in body["message"]
    body = http.get("/ajax-api/2.0/mlflow/runs/search").json()
    assert "/api/2.0/mlflow" in body["message"] and "web UI" in body["message"]
    body = http.get(f"{ART}/x%0Ay").json()
    assert "'x\ny' is not an artifact path" in body["message"]


def test_other_paths_keep_the_native_error_body(http: TestClient) -> None:
    for path in ("/nope", "/api/v1/nope%0A", "/api/2.0/mlflowx", "/ajax-apix"):
        r = http.get(path)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "http_error"
