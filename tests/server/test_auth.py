"""Access control (KEEL_AUTH=on) against a real ``keel server`` process.

Users, tokens and roles are made through the store API on the server's own
KEEL_HOME before it starts; every request then goes over HTTP with a token.
"""

from __future__ import annotations

import base64
import http.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import keel
from keel.config import load_settings
from keel.exceptions import ConfigError, KeelError
from keel.objects.base import hash_bytes
from keel.store.sql import SqlStore
from keel.tracking.client import Client
from tests.server.conftest import auth_server_process
from tests.ui._authworld import seed


@dataclass
class World:
    url: str
    home: Path
    tokens: dict[str, str]
    token_ids: dict[str, int]
    exp_a: str
    exp_b: str
    run_a: str
    run_b: str

    def call(self, method: str, path: str, user: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def raw(self, method: str, path: str, user: str) -> int:
        """Status of a request sent with its path exactly as written (no normalisation)."""
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request(method, path, headers={"Authorization": f"Bearer {self.tokens[user]}"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def store(self) -> SqlStore:
        settings = load_settings(environ={"KEEL_HOME": str(self.home), "KEEL_USER": "admin"})
        store = Client(settings).store
        assert isinstance(store, SqlStore)
        return store


def _seed(home: Path) -> tuple[dict[str, str], dict[str, int], list[str]]:
    """The web UI tests' world (tests/ui/_authworld.py), with churn's Production stage and
    champion alias protected."""
    world = seed(home)
    store = world.store()
    store.registry.set_protection(
        "churn", actor="admin", stages=["Production"], aliases=["champion"]
    )
    store.close()
    return world.tokens, world.ids, [world.exp_a, world.exp_b, world.run_a, world.run_b]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("auth-server")
    tokens, ids, (exp_a, exp_b, run_a, run_b) = _seed(home)
    with auth_server_process(home) as url:
        yield World(url, home, tokens, ids, exp_a, exp_b, run_a, run_b)


def test_requests_without_a_valid_token_get_401(world: World) -> None:
    assert world.call("GET", "/healthz").status_code == 200
    assert world.call("GET", "/metrics").status_code == 200
    for headers in ({}, {"Authorization": "Bearer keel_not-a-token"}, {"Authorization": "Basic !"}):
        answer = world.call("GET", "/api/v1/experiments", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthenticated"
        # nothing about what exists, even for a missing object
        missing = world.call("GET", f"/api/v1/runs/{'f' * 32}", headers=headers)
        assert missing.status_code == 401
        mlflow = world.call("GET", "/api/2.0/mlflow/runs/get", params={"run_id": world.run_a})
        assert mlflow.status_code == 401 and mlflow.json()["error_code"] == "UNAUTHENTICATED"
    assert world.call("GET", "/ui/experiments").headers["location"].startswith("/ui/login")


def test_basic_auth_with_the_token_as_password_works_for_mlflow_clients(world: World) -> None:
    basic = base64.b64encode(f"reader:{world.tokens['reader']}".encode()).decode()
    answer = world.call(
        "GET",
        "/api/2.0/mlflow/runs/get",
        params={"run_id": world.run_a},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert answer.status_code == 200
    assert answer.json()["run"]["info"]["run_id"] == world.run_a


def test_a_reader_can_read_but_not_write_or_promote(world: World) -> None:
    assert world.call("GET", "/api/v1/experiments", "reader").status_code == 200
    assert world.call("GET", f"/api/v1/runs/{world.run_a}", "reader").status_code == 200
    assert world.call("GET", "/api/v1/models/churn", "reader").status_code == 200
    refused = [
        world.call("POST", "/api/v1/runs", "reader", json={"experiment_id": world.exp_a}),
        world.call(
            "POST",
            f"/api/v1/runs/{world.run_a}/batch",
            "reader",
            json={"metrics": [["auc", 0.5, 0, 1]]},
        ),
        world.call(
            "PUT", "/api/v1/models/churn/versions/1/stage", "reader", json={"stage": "Staging"}
        ),
        world.call("PUT", "/api/v1/models/churn/aliases/dev", "reader", json={"version": "1"}),
        world.call(
            "POST",
            "/api/v1/models/churn/versions/1/requests",
            "reader",
            json={"stage": "Production"},
        ),
        world.call(
            "POST",
            "/api/2.0/mlflow/runs/log-metric",
            "reader",
            json={"run_id": world.run_a, "key": "auc", "value": 0.5, "timestamp": 1},
        ),
        world.call(
            "POST",
            "/api/2.0/mlflow/model-versions/transition-stage",
            "reader",
            json={"name": "churn", "version": "1", "stage": "Staging"},
        ),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert refused[0].json()["error"]["code"] == "permission_denied"
    assert refused[-1].json()["error_code"] == "PERMISSION_DENIED"
    run = world.call("GET", f"/api/v1/runs/{world.run_a}", "reader").json()
    assert "auc" not in run["metrics"]


def test_a_writer_cannot_approve_its_own_promotion_and_an_approver_can(world: World) -> None:
    made = world.call(
        "POST",
        "/api/v1/models/churn/versions/1/requests",
        "writer",
        json={"stage": "Production", "comment": "ship it"},
        headers={"X-Keel-User": "approver"},  # ignored: the token says who calls
    )
    assert made.status_code == 201, made.text
    req = made.json()
    assert req["requested_by"] == "writer"
    # the writer may not approve (its own request), even claiming another name
    own = world.call(
        "POST",
        f"/api/v1/requests/{req['id']}/approve",
        "writer",
        json={},
        headers={"X-Keel-User": "approver"},
    )
    assert own.status_code == 403
    direct = world.call(
        "PUT", "/api/v1/models/churn/versions/1/stage", "writer", json={"stage": "Production"}
    )
    assert direct.status_code == 403  # protected: only through an approved request
    approved = world.call("POST", f"/api/v1/requests/{req['id']}/approve", "approver", json={})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "applied"
    version = world.call("GET", "/api/v1/models/churn/versions/1", "reader").json()
    assert version["stage"] == "Production"
    events = world.call(
        "GET", "/api/v1/audit/events", "admin", params={"object_prefix": "model_version:churn"}
    ).json()["events"]
    actors = {e["action"]: e["actor"] for e in events}
    assert actors["approval.request"] == "writer"
    assert actors["approval.approve"] == "approver"


def test_a_revoked_token_stops_working_at_once(world: World) -> None:
    assert world.call("GET", "/api/v1/experiments", "temp").status_code == 200
    store = world.store()
    store.auth.revoke_token(world.token_ids["temp"], actor="admin")
    store.close()
    assert world.call("GET", "/api/v1/experiments", "temp").status_code == 401


def test_a_scoped_reader_learns_nothing_outside_its_experiment(world: World) -> None:
    missing_run, missing_exp = "f" * 32, "987654"
    assert world.call("GET", f"/api/v1/runs/{world.run_a}", "scoped").status_code == 200
    assert world.call("GET", f"/api/v1/experiments/{world.exp_a}", "scoped").status_code == 200
    other = world.call("GET", f"/api/v1/runs/{world.run_b}", "scoped")
    ghost = world.call("GET", f"/api/v1/runs/{missing_run}", "scoped")
    assert other.status_code == ghost.status_code == 403
    assert other.json() == ghost.json()  # the same answer: nothing learnt
    assert world.call("GET", f"/api/v1/experiments/{world.exp_b}", "scoped").status_code == 403
    assert world.call("GET", f"/api/v1/experiments/{missing_exp}", "scoped").status_code == 403
    assert world.call("GET", "/api/v1/experiments", "scoped").status_code == 403
    for run_id in (world.run_b, missing_run):
        answer = world.call("GET", "/api/2.0/mlflow/runs/get", "scoped", params={"run_id": run_id})
        assert answer.status_code == 403
    # the global reader sees the real 404
    assert world.call("GET", f"/api/v1/runs/{missing_run}", "reader").status_code == 404
    searched = world.call(
        "POST", "/api/v1/runs/search", "scoped", json={"experiment_ids": [world.exp_b]}
    )
    assert searched.status_code == 403
    mine = world.call(
        "POST", "/api/v1/runs/search", "scoped", json={"experiment_ids": [world.exp_a]}
    )
    assert mine.status_code == 200 and [r["run_id"] for r in mine.json()["runs"]] == [world.run_a]


TRAVERSALS = ["../x", "/etc/passwd", "%2e%2e/x", "a/%2F..%2Fb", "a/../../x", "%2E%2E%2Fx"]


def test_artifact_paths_that_escape_are_rejected(world: World) -> None:
    base = f"/api/2.0/mlflow-artifacts/artifacts/{world.exp_a}/{world.run_a}/artifacts"
    put = world.call("PUT", f"{base}/ok.txt", "writer", content=b"fine")
    assert put.status_code == 200, put.text
    assert world.raw("GET", f"{base}/ok.txt", "writer") == 200
    for bad in TRAVERSALS:
        assert world.raw("GET", f"{base}/{bad}", "writer") in (400, 403, 404), bad
        assert world.raw("PUT", f"{base}/{bad}", "writer") in (400, 403, 404), bad
        listing = (
            f"/api/2.0/mlflow-artifacts/artifacts?path={world.exp_a}/{world.run_a}/artifacts/{bad}"
        )
        assert world.raw("GET", listing, "writer") in (400, 403, 404), bad
        native = f"/api/v1/runs/{world.run_a}/artifacts?prefix={bad}"
        assert world.raw("GET", native, "writer") in (400, 403, 404), bad
    digest = hash_bytes(b"fine")
    blob = world.call("PUT", f"/api/v1/blobs/{digest}", "writer", content=b"fine")
    assert blob.status_code in (200, 201), blob.text
    for bad in ("../x", "/etc/passwd", "a/../../x", "%2e%2e/x"):
        recorded = world.call(
            "POST",
            f"/api/v1/runs/{world.run_a}/artifacts",
            "writer",
            json={"artifacts": [{"path": bad, "digest": digest, "size": 4}]},
        )
        assert recorded.status_code in (400, 403, 404, 422), bad
    listed = world.call("GET", f"/api/v1/runs/{world.run_a}/artifacts", "writer").json()
    assert [a["path"] for a in listed["artifacts"]] == ["ok.txt"]


def test_the_keel_client_works_with_a_tracking_token(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "local"))
    monkeypatch.setenv("KEEL_TRACKING_URI", world.url)
    monkeypatch.setenv("KEEL_TRACKING_TOKEN", world.tokens["writer"])
    with keel.start_run(experiment="remote-auth") as run:
        keel.log_metric("auc", 0.93)
        keel.log_text("hello", "notes/a.txt")
    got = world.call("GET", f"/api/v1/runs/{run.run_id}", "reader").json()
    assert got["metrics"]["auc"] == 0.93 and got["user"] == "writer"
    files = world.call("GET", f"/api/v1/runs/{run.run_id}/artifacts", "reader").json()
    assert [a["path"] for a in files["artifacts"]] == ["notes/a.txt"]
    monkeypatch.setenv("KEEL_TRACKING_TOKEN", world.tokens["reader"])
    client = Client(load_settings())
    with pytest.raises(KeelError):
        client.store.create_run(got["experiment_id"])
    client.close()


def test_auth_and_token_settings(tmp_path: Path) -> None:
    base = {"KEEL_HOME": str(tmp_path)}
    assert load_settings(environ=base).auth is False
    on = load_settings(environ={**base, "KEEL_AUTH": "on", "KEEL_TRACKING_TOKEN": "keel_secret"})
    assert on.auth is True and on.tracking_token == "keel_secret"
    shown = {name: value for name, value, _ in on.describe()}
    assert shown["tracking_token"] == "<set>" and "keel_secret" not in repr(on)
    assert load_settings(environ={**base, "KEEL_AUTH": "off"}).auth is False
    with pytest.raises(ConfigError, match="'on' or 'off'"):
        load_settings(environ={**base, "KEEL_AUTH": "maybe"})
