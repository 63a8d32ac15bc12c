"""The UI without a browser (TestClient): scale, escaping, headers, refusals, drawings."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from keel.server import create_app
from keel.server.ui import _charts, _preview
from keel.tracking.client import Client

BIG = 20_000


@pytest.fixture
def app() -> Any:
    return create_app()


@pytest.fixture
def http(app: Any) -> TestClient:
    return TestClient(app)


def _bulk_runs(client: Client, experiment: str, n: int) -> str:
    """``n`` finished runs with a param and a latest ``auc``, inserted in one transaction."""
    import sqlalchemy as sa

    from keel.store import schema as t

    exp = client.create_experiment(experiment)
    store = client.store
    now = int(time.time() * 1000)
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        key_id = conn.execute(
            sa.insert(t.metric_keys).values(name="auc").returning(t.metric_keys.c.id)
        ).scalar_one()
        first = conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.runs.c.pk), 0))).scalar_one()
        conn.execute(
            sa.insert(t.runs),
            [
                {
                    "pk": first + i + 1,
                    "run_id": uuid.uuid4().hex,
                    "experiment_id": int(exp.experiment_id),
                    "name": f"bulk-{i:05d}",
                    "status": "FINISHED",
                    "start_time": now - (n - i) * 1000,
                    "end_time": now - (n - i) * 1000 + 500,
                    "lifecycle_stage": "active",
                    "user": "bench",
                }
                for i in range(n)
            ],
        )
        conn.execute(
            sa.insert(t.params),
            [{"run_pk": first + i + 1, "key": "model", "value": "rf"} for i in range(n)],
        )
        conn.execute(
            sa.insert(t.latest_metrics),
            [
                {
                    "run_pk": first + i + 1,
                    "key_id": key_id,
                    "step": 0,
                    "ts": now * 1000,
                    "value": (i * 7919 % n) / n,
                }
                for i in range(n)
            ],
        )
    return exp.experiment_id


def test_runs_page_loads_one_page_of_one_search(app: Any, http: TestClient) -> None:
    client: Client = app.state.client
    exp_id = _bulk_runs(client, "big", BIG)
    calls: list[dict[str, Any]] = []
    search = client.search_runs

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return search(*args, **kwargs)

    client.search_runs = spy  # type: ignore[method-assign]
    path = f"/ui/experiments/{exp_id}?filter=metrics.auc+>+0.1&order=metrics.auc+DESC"
    http.get(path)  # warm the statement cache
    calls.clear()
    started = time.perf_counter()
    r = http.get(path)
    elapsed = time.perf_counter() - started
    assert r.status_code == 200
    assert [c["max_results"] for c in calls] == [50]  # one search, one page, no count
    assert r.text.count('class="runlink"') == 50
    assert "Runs 1-50 · page 1" in r.text
    print(f"runs page: {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0, f"runs page took {elapsed:.2f} s with {BIG} runs"
    token = re.search(r'href="([^"]*page=[^"]+)"', r.text)
    assert token is not None
    r2 = http.get(token.group(1).replace("&amp;", "&"))
    assert "Runs 51-100 · page 2" in r2.text
    started = time.perf_counter()
    assert f">{BIG}</td>" in http.get("/ui/experiments").text
    assert time.perf_counter() - started < 1.0


def test_user_content_is_escaped(http: TestClient, app: Any) -> None:
    client: Client = app.state.client
    evil = "<script>alert(1)</script>"
    run = client.create_run("exp <b>bold</b>", name=evil, tags={"note": "<img src=x onerror=1>"})
    client.log_params(run.run_id, {"p": evil})
    client.log_text(run.run_id, evil, "x.html")
    client.log_metric(run.run_id, "m", 1.0)
    client.end_run(run.run_id)
    other = client.create_run("exp <b>bold</b>", name="plain")
    client.log_metric(other.run_id, "m", 2.0)
    client.end_run(other.run_id)
    pages = [
        "/ui/experiments",
        "/ui/experiments/1?col=tags.note&col=params.p",
        f"/ui/runs/{run.run_id}",
        f"/ui/runs/{run.run_id}?artifact=x.html",
        f"/ui/compare?run={run.run_id}&run={other.run_id}",
    ]
    for path in pages:
        r = http.get(path)
        assert r.status_code == 200, path
        assert "<script>alert" not in r.text and "<img src=x" not in r.text, path
        assert "&lt;script&gt;" in r.text or "&lt;b&gt;" in r.text, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
    raw = http.get(f"/ui/runs/{run.run_id}/raw", params={"path": "x.html"})
    assert raw.headers["content-disposition"].startswith("attachment")  # never rendered inline
    assert "sandbox" in raw.headers["content-security-policy"]
    assert raw.content == evil.encode()


def test_errors_are_html_pages(http: TestClient) -> None:
    r = http.get(f"/ui/runs/{'0' * 32}")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "not found" in r.text
    fragment = http.get(f"/ui/runs/{'0' * 32}", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text
    assert http.get("/ui/models/nope").status_code == 404
    assert http.get("/ui/compare?run=a").status_code == 400


def test_htmx_gets_the_table_only_and_filter_errors_inline(http: TestClient, app: Any) -> None:
    client: Client = app.state.client
    run = client.create_run("e1", name="only")
    client.end_run(run.run_id)
    r = http.get("/ui/experiments/1", params={"filter": "stauts = 'x'"},
                 headers={"HX-Request": "true"})  # fmt: skip
    assert r.status_code == 200 and "<html" not in r.text and 'id="runs-table"' in r.text
    assert "Did you mean &#39;status&#39;?" in r.text and "^" in r.text
    bad_order = http.get("/ui/experiments/1", params={"order": "metrics.auc sideways"})
    assert "Invalid order_by" in bad_order.text or "Invalid" in bad_order.text
    assert http.get("/ui/experiments/1", params={"page": "garbage"}).status_code == 200


def test_static_files(http: TestClient) -> None:
    js = http.get("/ui/static/vendor/htmx.min.js")
    assert js.status_code == 200 and "immutable" in js.headers["cache-control"]
    assert http.get("/ui/static/../_render.py").status_code == 404
    assert http.get("/ui/static/%2e%2e/_render.py").status_code == 404
    assert http.get("/", follow_redirects=False).headers["location"] == "/ui/experiments"


def test_cross_site_votes_are_refused(http: TestClient) -> None:
    r = http.post(
        "/ui/approvals/1/approve",
        data={"comment": "x"},
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403 and "Cross-site" in r.text


def test_drawings_escape_labels() -> None:
    svg = _charts.lineage_svg(
        "run:1",
        ["dataset:<x>", "run:1", "model_version:m/1"],
        [
            ("dataset:<x>", "run:1", "input"),
            ("run:1", "model_version:m/1", "output"),
            ("dataset:<x>", "model_version:m/1", "trained_on"),
        ],
        lambda n: f"/n?{n}",
    )
    assert "<x>" not in svg and "&lt;x&gt;" in svg and svg.count('<path class="edge"') == 3
    pc = _charts.parallel_coordinates(
        [("<r1>", "#000"), ("r2", "#111")], [("params.<p>", ["a", "<b>"]), ("m", [1.0, None])]
    )
    assert "<r1>" not in pc and "&lt;b&gt;" in pc and pc.count("pc-line") == 2


def test_preview_kinds() -> None:
    assert _preview.preview("a.csv", 9, lambda: b"x,y\n1,2\n").kind == "table"
    assert _preview.preview("a.json", 7, lambda: b'{"a":1}').text == '{\n  "a": 1\n}'
    assert _preview.preview("a.bin", 3, lambda: b"\0\1\2").kind == "none"
    assert _preview.preview("a.png", 3, lambda: b"").kind == "image"
    assert _preview.preview("a.parquet", 3, lambda: b"nope").kind == "error"
    big = _preview.preview("a.txt", 10**9, lambda: b"")
    assert big.kind == "none" and "Too large" in big.note


def test_keel_ui_serves_the_local_store_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from keel.cli.main import app as cli

    started: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    monkeypatch.setenv("KEEL_TRACKING_URI", "http://elsewhere.example:5000")
    result = CliRunner().invoke(cli, ["ui", "--port", "5123"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:5123/ui/" in result.output
    assert started["host"] == "127.0.0.1" and started["port"] == 5123
    assert started["app"].state.client.settings.tracking_uri is None


def test_reject_then_the_request_is_gone(app: Any, http: TestClient) -> None:
    client: Client = app.state.client
    reg = client.store.registry  # type: ignore[attr-defined]
    me = client.settings.user
    reg.create_version(
        "m", actor="dev", source="runs:/x/model", run_id=None, manifest_digest="0" * 64,
        spec={}, metrics={}, datasets=[],
    )  # fmt: skip
    reg.grant(me, "approver", actor=me)
    reg.set_protection("m", actor=me, stages=["Production"])
    req = reg.request("m", 1, actor="dev", stage="Production")
    page = http.get("/ui/approvals")
    assert f'action="/ui/approvals/{req.id}/approve"' in page.text
    r = http.post(f"/ui/approvals/{req.id}/reject", data={"comment": "not yet"})
    assert r.status_code == 200 and f"Request {req.id} rejected by {me}." in r.text
    assert "No pending requests." in r.text
    again = http.post(f"/ui/approvals/{req.id}/approve", data={})
    assert again.status_code == 409 and "already rejected" in again.text
    assert reg.get_version("m", 1).stage == "None"
