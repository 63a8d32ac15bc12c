"""Remote use: RestStore / HttpObjectStore against the app and against live ``keel server``s.

Errors map back to the same classes; retries are safe (points stored once) and
limited to idempotent calls; a server restart mid-way is survived; the CLI and
30 MB blobs work through a live server.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import keel
from keel.config import load_settings
from keel.entities import ArtifactInfo, Metric, RunStatus
from keel.exceptions import (
    AlreadyExistsError,
    BackendUnavailableError,
    ConfigError,
    InvalidSpecError,
    InvalidStateError,
    KeelError,
    NotFoundError,
    ParamConflictError,
    PermissionDeniedError,
)
from keel.objects.base import hash_file
from keel.objects.http import HttpObjectStore
from keel.server import create_app
from keel.server.errors import STATUS
from keel.store import SqlStore
from keel.store.rest import ERROR_CODES, RestStore, render_filter, render_order_by
from keel.tracking.client import Client
from tests.server.conftest import LiveServer, forward_to, free_port, server_env

FAST = {"backoff": 0.01, "max_backoff": 0.05}


# -- errors ---------------------------------------------------------------------------------------
def test_every_error_code_maps_back_to_its_class() -> None:
    for cls, _, code in STATUS:
        assert ERROR_CODES[code] is cls, code


def test_remote_errors_are_the_local_ones(rest_store: RestStore) -> None:
    exp = rest_store.create_experiment("e")
    with pytest.raises(AlreadyExistsError, match="already exists"):
        rest_store.create_experiment("e")
    with pytest.raises(NotFoundError) as missing:
        rest_store.get_run("a" * 32)
    assert missing.value.details == {"run_id": "a" * 32} and missing.value.run_id == "a" * 32  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError, match="Did you mean 'e'"):
        rest_store.get_experiment_by_name("ee")
    run = rest_store.create_run(exp.experiment_id)
    rest_store.log_batch(run.run_id, params={"lr": 0.1})
    with pytest.raises(ParamConflictError) as conflict:
        rest_store.log_batch(run.run_id, params={"lr": 0.2})
    assert conflict.value.details["old"] == "0.1"
    with pytest.raises(InvalidSpecError, match="page_token"):  # only the server checks tokens
        rest_store.search_runs([], page_token="bogus")
    rest_store.end_run(run.run_id)
    with pytest.raises(InvalidStateError, match="FINISHED"):
        rest_store.log_batch(run.run_id, metrics=[Metric("m", 1.0)])
    with pytest.raises(InvalidSpecError, match="contains"):  # checked before any request
        rest_store.log_batch(run.run_id, metrics=[Metric("bad key!", 1.0)])
    registry = rest_store.registry
    registry.grant("boss", "admin", actor="boss")
    with pytest.raises(PermissionDeniedError, match="admin"):
        registry.grant("eve", "admin", actor="eve")


def test_store_round_trip_with_non_finite_floats(rest_store: RestStore) -> None:
    exp = rest_store.get_or_create_experiment("floats")
    run = rest_store.create_run(exp.experiment_id, tags={"t": "1"})
    values = {"nan": math.nan, "pinf": math.inf, "ninf": -math.inf, "x": 0.5}
    rest_store.log_batch(run.run_id, metrics=[Metric(k, val, 1, 1000) for k, val in values.items()])
    got = rest_store.get_run(run.run_id).metrics
    assert math.isnan(got["nan"]) and got["pinf"] == math.inf and got["ninf"] == -math.inf
    [point] = rest_store.get_metric_history(run.run_id, "ninf")
    assert point == Metric("ninf", -math.inf, 1, 1000)
    runs, _ = rest_store.search_runs(
        [exp.experiment_id], filter="metrics.pinf > 1e308 and metrics.ninf < -1e308"
    )
    assert [r.run_id for r in runs] == [run.run_id]


def test_filters_render_back_to_the_same_ast() -> None:
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings

    from keel.store._filter import parse_filter, parse_order_by
    from tests.store.test_filter_parser import _nodes, canon

    @settings(max_examples=150, deadline=None, database=None)
    @given(node=_nodes)
    def check(node: object) -> None:
        text = render_filter(node)  # type: ignore[arg-type]
        assert canon(parse_filter(text)) == canon(node), text

    check()
    order = parse_order_by(["metrics.`val auc` DESC", "name", "params.`a``b`", "tags.t ASC"])
    assert parse_order_by(render_order_by(order)) == order


def test_rest_store_pickles_without_its_connections() -> None:
    store = RestStore("http://example.test:5000/", retries=2, timeout=3.0)
    copy = pickle.loads(pickle.dumps(store))
    assert copy.uri == "http://example.test:5000" and copy.api.retries == 2
    assert copy.api.timeout == 3.0 and copy.api._http is None


def test_tracking_uri_setting(tmp_path: Path) -> None:
    settings = load_settings(environ={"KEEL_TRACKING_URI": "http://h:5000/"}, cwd=tmp_path)
    assert settings.tracking_uri == "http://h:5000"
    assert settings.sources["tracking_uri"] == "env:KEEL_TRACKING_URI"
    client = Client(settings)
    assert isinstance(client.store, RestStore) and isinstance(client.objects, HttpObjectStore)
    assert client.objects.uri == "http://h:5000/api/v1/blobs"
    with pytest.raises(ConfigError, match="http:// or https://"):
        load_settings(environ={"KEEL_TRACKING_URI": "localhost:5000"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="whole number"):
        load_settings(environ={"KEEL_MAX_REQUEST_SIZE": "lots"}, cwd=tmp_path)
    # a server never forwards to another one, whatever its environment says
    app = create_app(settings)
    assert isinstance(app.state.client.store, SqlStore)


# -- retries --------------------------------------------------------------------------------------
class Flaky:
    """Answers through the app, but breaks the first ``fail`` matching calls.

    ``mode``: ``lost-answer`` (the server did the work, the answer never
    arrives), ``refused`` (the request never reached the server) or ``503``.
    """

    def __init__(self, http: TestClient, match: str, fail: int, mode: str) -> None:
        self.forward = forward_to(http)
        self.match, self.fail, self.mode = match, fail, mode
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        hit = f"{request.method} {request.url.path}".endswith(self.match)
        if hit:
            self.calls += 1
        if not hit or self.calls > self.fail:
            return self.forward(request)
        if self.mode == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "503":
            body = {"error": {"code": "backend_unavailable", "message": "db down", "details": {}}}
            return httpx.Response(503, json=body)
        self.forward(request)
        raise httpx.ReadError("connection reset by peer", request=request)


def _store(http: TestClient, flaky: Flaky, retries: int = 3) -> RestStore:
    return RestStore(
        "http://keel.test", transport=httpx.MockTransport(flaky), retries=retries, **FAST
    )


def test_lost_answers_to_a_batch_are_retried_and_points_stored_once(http: TestClient) -> None:
    flaky = Flaky(http, "/batch", fail=2, mode="lost-answer")
    store = _store(http, flaky)
    run = store.create_run(store.get_or_create_experiment("e").experiment_id)
    store.log_batch(run.run_id, metrics=[Metric("m", float(i), i, 1000 + i) for i in range(100)])
    assert flaky.calls == 3  # two answers lost, the third attempt answered
    history = store.get_metric_history(run.run_id, "m")
    assert [(m.step, m.value) for m in history] == [(i, float(i)) for i in range(100)]


def test_calls_that_are_not_idempotent_are_not_resent(http: TestClient) -> None:
    flaky = Flaky(http, "POST /api/v1/runs", fail=1, mode="lost-answer")
    store = _store(http, flaky)
    exp = store.get_or_create_experiment("e")
    with pytest.raises(BackendUnavailableError, match="not sent again"):
        store.create_run(exp.experiment_id)
    assert flaky.calls == 1
    assert len(store.search_runs([exp.experiment_id])[0]) == 1  # created once, not twice


def test_requests_that_never_arrived_are_resent_whatever_they_are(http: TestClient) -> None:
    flaky = Flaky(http, "POST /api/v1/runs", fail=2, mode="refused")
    store = _store(http, flaky)
    exp = store.get_or_create_experiment("e")
    store.create_run(exp.experiment_id)
    assert flaky.calls == 3 and len(store.search_runs([exp.experiment_id])[0]) == 1


def test_503_is_retried_then_reported_with_the_servers_message(http: TestClient) -> None:
    flaky = Flaky(http, "/api/v1/experiments", fail=2, mode="503")
    assert _store(http, flaky).list_experiments() == []
    assert flaky.calls == 3
    always = Flaky(http, "/api/v1/experiments", fail=99, mode="503")
    with pytest.raises(BackendUnavailableError, match="db down"):
        _store(http, always, retries=2).list_experiments()
    assert always.calls == 3


def test_an_unreachable_server_is_backend_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = RestStore(url, retries=1, **FAST)
    with pytest.raises(BackendUnavailableError, match="is unreachable after 2 attempts") as err:
        store.get_run("a" * 32)
    assert url in str(err.value) and "keel server" in str(err.value)


def test_a_non_keel_answer_is_a_clear_error() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>nginx</html>")

    store = RestStore("http://keel.test", transport=httpx.MockTransport(proxy))
    with pytest.raises(NotFoundError, match="answered 404 Not Found to GET /api/v1/experiments"):
        store.list_experiments()


def test_blobs_are_not_deleted_through_a_server(http_objects: HttpObjectStore) -> None:
    ref = http_objects.put_bytes(b"shared")
    with pytest.raises(PermissionDeniedError, match="cannot be deleted"):
        http_objects.delete(ref.digest)
    assert list(http_objects.list_digests()) == [ref.digest]


# -- live servers ---------------------------------------------------------------------------------
@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A live server of this test alone (it gets restarted)."""
    server = LiveServer(tmp_path / "server")
    server.start()
    yield server
    server.stop()


def test_client_survives_a_server_restart_and_stores_points_once(own_server: LiveServer) -> None:
    # the fluent API's path (buffer -> RestStore), with a retry budget that outlasts a
    # restart on a loaded test machine
    store = RestStore(own_server.url, retries=40, backoff=0.1, max_backoff=1.0)
    client = Client(load_settings(), store=store)
    run = client.create_run("restart")
    client.buffer.extend(run.run_id, [("loss", 1.0 / (s + 1), s, 1000 + s) for s in range(50)])
    client.flush()
    own_server.stop()
    client.buffer.extend(run.run_id, [("loss", 1.0 / (s + 1), s, 1000 + s) for s in range(100)])
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            client.flush()  # retries with backoff until the server is back
        except BaseException as exc:
            errors.append(exc)

    flusher = threading.Thread(target=flush)
    flusher.start()
    own_server.start()
    flusher.join(timeout=120)
    assert not flusher.is_alive() and errors == []
    client.log_param(run.run_id, "after", "restart")
    client.end_run(run.run_id)
    got = client.get_run(run.run_id)
    assert got.status is RunStatus.FINISHED and got.params == {"after": "restart"}
    history = client.get_metric_history(run.run_id, "loss")
    assert [m.step for m in history] == list(range(100))  # the re-sent 50 stored once
    client.close()


def test_cli_works_against_a_live_server(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEEL_TRACKING_URI", live_server.url)
    with keel.start_run(experiment="cli", run_name="remote-run") as run:
        keel.log_metric("auc", 0.91)
        keel.log_text("hello", "notes/a.txt")
    env = {**server_env(tmp_path / "elsewhere"), "KEEL_TRACKING_URI": live_server.url}

    def keel_cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "keel", *args], env=env, capture_output=True, timeout=180
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    [listed] = json.loads(keel_cli("runs", "list", "--json"))
    assert listed["run_id"] == run.run_id and listed["name"] == "remote-run"
    assert listed["metrics"] == {"auc": 0.91}
    assert "notes/a.txt" in keel_cli("artifacts", "ls", run.run_id[:8])
    done = subprocess.run(
        [sys.executable, "-m", "keel", "runs", "show", "f" * 32],
        env=env,
        capture_output=True,
        timeout=180,
    )
    assert done.returncode == 3 and "not found" in done.stderr.decode()
    assert not (tmp_path / "elsewhere").exists()  # nothing was written locally


def test_30_mb_blob_streams_both_ways(live_server: LiveServer, tmp_path: Path) -> None:
    size = 30 * 1024 * 1024
    src = tmp_path / "big.bin"
    with src.open("wb") as fh:
        for _ in range(size // (1024 * 1024)):
            fh.write(os.urandom(1024 * 1024))
    objects = HttpObjectStore(live_server.url)
    objects.put_bytes(b"warm up the server's blob path")
    server_peak = _peak_rss(live_server)
    tracemalloc.start()
    try:
        ref = objects.put_file(src)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dest = objects.get_file(ref.digest, tmp_path / "back.bin")
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (ref.digest, ref.size) == (hash_file(src), size)
    assert hash_file(dest) == ref.digest
    # the client holds a few chunks at a time, never the whole 30 MB
    assert upload_peak < 16 * 1024 * 1024 and download_peak < 16 * 1024 * 1024
    assert _peak_rss(live_server) - server_peak < 24 * 1024 * 1024  # and so does the server
    objects.close()


def _peak_rss(server: LiveServer) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kb) * 1024


def test_remote_artifacts_and_registry_use_the_servers_stores(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_TRACKING_URI", live_server.url)
    with keel.start_run(experiment="remote") as run:
        info = keel.log_text("x", "a.txt")
    client = keel.get_client()
    assert client.list_artifacts(run.run_id) == [ArtifactInfo("a.txt", info.digest, 1)]
    assert (live_server.home / "objects" / info.digest[:2] / info.digest[2:]).read_bytes() == b"x"
    with pytest.raises(KeelError, match="cannot be addressed"):
        client.store.registry.get_model("a/b")  # type: ignore[attr-defined]


def test_blob_store_over_http(http_objects: HttpObjectStore, tmp_path: Path) -> None:
    data = b"payload " * 10_000
    ref = http_objects.put_bytes(data)
    assert http_objects.exists(ref.digest) and http_objects.size(ref.digest) == len(data)
    assert http_objects.get_bytes(ref.digest) == data
    assert b"".join(http_objects.iter_verified(ref.digest)) == data
    assert http_objects.put_bytes(data) == ref  # already stored: nothing is sent again
    src = tmp_path / "f.bin"
    src.write_bytes(data + b"!")
    refs = http_objects.put_files([src, src])
    assert (
        refs[0] == refs[1]
        and http_objects.get_file(refs[0].digest, tmp_path / "o").read_bytes() == data + b"!"
    )
    with pytest.raises(NotFoundError, match="not in the object store"):
        http_objects.get_bytes("b" * 64)
    with pytest.raises(InvalidSpecError, match="not a blob digest"):
        http_objects.exists("nope")


def test_large_batches_are_sent_in_several_requests(
    http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keel.store.rest

    monkeypatch.setattr(keel.store.rest, "POINTS_PER_REQUEST", 10)
    counting = Flaky(http, "/batch", fail=0, mode="lost-answer")
    store = _store(http, counting)
    run = store.create_run(store.get_or_create_experiment("e").experiment_id)
    points = [Metric("m", float(i), i, 1000) for i in range(25)]
    store.log_batch(run.run_id, metrics=points, params={"p": "1"}, tags={"t": "2"})
    assert counting.calls == 3
    got = store.get_run(run.run_id)
    assert got.params == {"p": "1"} and got.tags == {"t": "2"} and got.metrics == {"m": 24.0}
    assert len(store.get_metric_history(run.run_id, "m")) == 25


def test_batched_exists_and_ingest_over_http(
    http_objects: HttpObjectStore, http: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keel.objects.http as http_module

    stored = [http_objects.put_bytes(f"blob {i}".encode()).digest for i in range(5)]
    absent = ["a" * 64, "b" * 64]
    requests: list[str] = []
    send = http_objects.api.send

    def counting(method: str, path: str, **kw: Any) -> Any:
        requests.append(f"{method} {path}")
        return send(method, path, **kw)

    monkeypatch.setattr(http_objects.api, "send", counting)
    monkeypatch.setattr(http_module, "_EXISTS_BATCH", 3)  # 7 digests: 3 requests
    assert http_objects.exists_many([*stored, *absent, stored[0]]) == set(stored)
    assert requests == ["POST /blobs/exists"] * 3

    # ingest: one PUT, no HEAD; the server re-hashes, so a changed file stores nothing
    src = tmp_path / "f.bin"
    src.write_bytes(b"fresh content")
    digest = hash_file(src)
    requests.clear()
    assert http_objects.ingest(src, digest)
    assert requests == [f"PUT /blobs/{digest}"] and http_objects.exists(digest)
    src.write_bytes(b"changed after hashing")
    with pytest.raises(InvalidSpecError, match="changed while it was being uploaded"):
        http_objects.ingest(src, "c" * 64)
    assert not http_objects.exists("c" * 64)

    # the endpoint itself: malformed digests and oversized batches are 4xx, never 5xx
    bad = http.post("/api/v1/blobs/exists", json={"digests": ["nope"]})
    assert bad.status_code == 400 and bad.json()["error"]["code"]
    huge = http.post("/api/v1/blobs/exists", json={"digests": ["a" * 64] * 10_001})
    assert 400 <= huge.status_code < 500
