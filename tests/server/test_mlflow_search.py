"""The MLflow API's run search: rows straight to JSON, the same runs as the Run path.

``runs/search`` builds MLflow's ``Run`` messages from :meth:`SqlStore.search_run_rows`
(no ``Run`` objects) and encodes them with orjson; these tests pin that it answers
exactly what :func:`run_json` makes of the same runs, on SQLite and PostgreSQL,
including the awkward values: NaN and infinite metrics, internal tags, logged-model
outputs, parents, descriptions, ended runs and pages.
"""

from __future__ import annotations

import gc
import gzip
import json
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from keel.entities import Metric, RunStatus
from keel.exceptions import InvalidSpecError
from keel.server import create_app
from keel.server.mlflow._common import GZIP_MIN, gc_paused
from keel.server.mlflow.tracking import run_json, runs_json
from keel.store.sql import SqlStore

SEARCH = "/api/2.0/mlflow/runs/search"


@pytest.fixture
def http(store_url: str, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The app on each backend's store."""
    monkeypatch.setenv("KEEL_STORE_URI", store_url)
    return TestClient(create_app())


def _store(http: TestClient) -> SqlStore:
    store = http.app.state.client.store  # type: ignore[attr-defined]
    assert isinstance(store, SqlStore)
    return store


def _normal(run: dict[str, Any]) -> dict[str, Any]:
    """A run message with its repeated fields in key order (SQL returns rows unordered)."""
    data = {k: sorted(v, key=lambda item: item["key"]) for k, v in run["data"].items()}
    return {**json.loads(json.dumps(run)), "data": json.loads(json.dumps(data))}


def _populate(store: SqlStore) -> tuple[str, list[str]]:
    """Runs with every kind of field the MLflow conversion treats specially."""
    exp = store.create_experiment("search").experiment_id
    parent = store.create_run(exp, name="parent", user="ann", description="the parent")
    ids = [parent.run_id]
    for i in range(12):
        run = store.create_run(
            exp,
            name=f"child-{i:02d}",
            parent_run_id=parent.run_id if i % 2 else None,
            user="bob" if i % 3 else None,
            description="notes" if i == 4 else None,
            tags={"team": "x", "i": str(i)},
            start_time=1_000 + i,
        )
        special = [math.nan, math.inf, -math.inf, 0.1 + i]
        store.log_batch(
            run.run_id,
            metrics=[Metric(f"m{j}", v, 0, 5) for j, v in enumerate(special)],
            params={"p": str(i % 4), "lr": "0.1"},
            tags={"keel.mlflow.output.m-abc": "3", "mlflow.user": "override"} if i == 5 else {},
        )
        if i % 4 == 0:
            store.end_run(run.run_id, RunStatus.FAILED, end_time=9_000 + i)
        ids.append(run.run_id)
    return exp, ids


def test_search_json_equals_the_run_path(http: TestClient) -> None:
    store = _store(http)
    exp, ids = _populate(store)
    for flt, order in [
        (None, None),
        ("params.p = '1' and metrics.m3 > 2", ["metrics.m3 DESC"]),
        ("attributes.status = 'FAILED'", ["attributes.start_time"]),
    ]:
        rows, token = store.search_run_rows([exp], filter=flt, order_by=order, max_results=5)
        runs, token2 = store.search_runs([exp], filter=flt, order_by=order, max_results=5)
        assert token == token2
        assert [_normal(r) for r in runs_json(rows)] == [_normal(run_json(r)) for r in runs]
    # through HTTP, following page tokens: every run once, as run_json makes it
    seen: list[dict[str, Any]] = []
    body: dict[str, Any] = {"experiment_ids": [exp], "max_results": 5}
    while True:
        page = http.post(SEARCH, json=body).json()
        seen += page["runs"]
        if "next_page_token" not in page:
            break
        body["page_token"] = page["next_page_token"]
    assert len(seen) == len(ids)
    by_id = {r["info"]["run_id"]: r for r in seen}
    for run_id in ids:
        assert _normal(by_id[run_id]) == _normal(run_json(store.get_run(run_id)))
    child = next(r for r in seen if r["info"]["run_name"] == "child-05")
    assert child["outputs"] == {"model_outputs": [{"model_id": "m-abc", "step": 3}]}
    assert {m["key"]: m["value"] for m in child["data"]["metrics"]} == {
        "m0": "NaN",
        "m1": "Infinity",
        "m2": "-Infinity",
        "m3": 5.1,
    }
    tags = {t["key"]: t["value"] for t in child["data"]["tags"]}
    assert tags["mlflow.parentRunId"] == ids[0] and tags["mlflow.user"] == "override"
    assert not any(k.startswith("keel.mlflow.") for k in tags)


def test_large_pages_are_gzipped_at_the_route(http: TestClient) -> None:
    store = _store(http)
    exp = store.create_experiment("big").experiment_id
    for i in range(150):
        run = store.create_run(exp, name=f"r{i}")
        store.log_batch(run.run_id, params={f"p{j}": "x" * 40 for j in range(10)})
    body = {"experiment_ids": [exp], "max_results": 1000}
    plain = http.post(SEARCH, json=body, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.content) >= GZIP_MIN
    with http.stream("POST", SEARCH, json=body, headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["content-encoding"] == "gzip"
        raw = b"".join(r.iter_raw())
    assert json.loads(gzip.decompress(raw)) == plain.json()
    assert len(plain.json()["runs"]) == 150
    assert gc.isenabled()


def test_bad_search_input_is_refused(http: TestClient) -> None:
    store = _store(http)
    exp = store.create_experiment("e").experiment_id
    with pytest.raises(InvalidSpecError, match="max_results"):
        store.search_run_rows([exp], max_results=0)
    r = http.post(SEARCH, json={"experiment_ids": [exp], "filter": "metrics.m >"})
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    r = http.post(SEARCH, json={"experiment_ids": [exp], "page_token": "not-a-token"})
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert gc.isenabled()


def test_gc_pause_nests_and_keeps_a_disabled_collector_off() -> None:
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
