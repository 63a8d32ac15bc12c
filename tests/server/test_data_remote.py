"""keel.data through a keel server: the same flow in-process and against live servers.

``backend_env`` runs the end-to-end test on SQLite and PostgreSQL, in-process
and through a real ``keel server`` (``KEEL_TRACKING_URI``, blobs over HTTP). The
other tests drive the ``/api/v1/datasets`` endpoints of a live server directly:
refused digests, paging, errors, and access control with ``KEEL_AUTH=on``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import keel
from keel.config import load_settings
from keel.data._tree import DataManifest
from keel.exceptions import (
    IntegrityError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
)
from keel.objects.base import hash_bytes
from keel.objects.http import HttpObjectStore
from keel.registry import Registry
from keel.store.rest import RestStore
from keel.store.sql import SqlStore
from keel.tracking import fluent
from keel.tracking.client import Client
from tests.server.conftest import LiveServer, auth_server_process

OLD = 1_600_000_000


def _write(root: Path, files: dict[str, bytes], stamp: int) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, (OLD + stamp, OLD + stamp))
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- end to end: in-process and through live servers, on SQLite and PostgreSQL -------------------
def test_keel_data_end_to_end(backend_env: str, backend_mode: str, tmp_path: Path) -> None:
    client = fluent.get_client()
    assert (backend_mode == "remote") == isinstance(client.store, RestStore)
    if backend_mode == "remote":
        assert isinstance(client.objects, HttpObjectStore)
    user = load_settings().user
    first = {"a.csv": b"x,y\n1,2\n", "sub/b.bin": b"\x00" * 5000, "sub/c.txt": b"hello"}
    root = _write(tmp_path / "work" / "ds", first, 1)

    v1 = keel.data.add(root, message="first", progress=False)
    assert (v1.uri, v1.kind, v1.file_count, v1.created) == ("ds@1", "files", 3, True)
    assert v1.created_by == user and v1.message == "first" and v1.total_bytes == 5013
    (report,) = keel.data.status(root, progress=False)
    assert report.changes.clean and report.version == 1

    _write(root, {"a.csv": b"x,y\n1,2\n3,4\n", "new.txt": b"new"}, 2)
    (report,) = keel.data.status(root, progress=False)
    assert (report.changes.modified, report.changes.added) == (["a.csv"], ["new.txt"])
    v2 = keel.data.add(root, message="second", progress=False)
    assert (v2.version, v2.created, v2.file_count) == (2, True, 4)
    again = keel.data.add(root, progress=False)
    assert (again.version, again.created) == (2, False)

    changes = keel.data.diff("ds@1", "ds@2")
    assert (changes.added, changes.modified, changes.deleted) == (["new.txt"], ["a.csv"], [])
    assert keel.data.get_version("ds@latest") == v2
    assert [v.version for v in keel.data.versions("ds")] == [1, 2]
    (info,) = keel.data.list_datasets()
    assert (info.name, info.version_count, info.latest) == ("ds", 2, v2)

    assert _tree(keel.data.get("ds@1", progress=False)) == first
    target = keel.data.checkout("ds@1", tmp_path / "restored", progress=False)
    assert _tree(target) == first
    keel.data.checkout("ds@1", root, force=True, progress=False)
    assert _tree(root) == first

    with pytest.raises(NotFoundError, match="no version 7"):
        keel.data.get_version("ds@7")
    with pytest.raises(NotFoundError, match="Did you mean"):
        keel.data.versions("dss")

    # push to a mirror and pull back: 3 + 2 distinct files, a manifest per version
    mirror = str(tmp_path / "mirror")
    pushed = keel.data.push("ds", mirror, all_versions=True, progress=False)
    assert (pushed.versions, pushed.copied) == (["ds@1", "ds@2"], 7)
    assert keel.data.pull("ds@1", mirror, progress=False).copied == 0  # all here already
    if backend_mode == "remote":
        with pytest.raises(InvalidStateError, match="run `keel data gc` on the server"):
            keel.data.gc()
        with pytest.raises(InvalidStateError, match="run `keel data gc` on the server"):
            client.store.data.referenced_blobs()  # type: ignore[attr-defined]

    # tables, profiles and lineage from runs
    table = pa.table({"id": [1, 2, 3], "score": [0.5, 0.25, 0.75], "city": ["a", "b", "a"]})
    with keel.start_run(experiment="data") as producer:
        t1 = keel.data.log_table(table, "scores", "from a run")
    assert (t1.kind, t1.run_id, t1.extra["rows"]) == ("table", producer.run_id, 3)
    with keel.start_run(experiment="data") as consumer:
        assert keel.data.get_table("scores@1").equals(table)
    assert keel.data.get_profile("scores").rows == 3
    walk = Registry(client).lineage(t1.node, "down", 2)
    assert (t1.node, f"run:{consumer.run_id}", "input") in walk.edges
    walk = Registry(client).lineage(t1.node, "up", 2)
    assert (f"run:{producer.run_id}", t1.node, "output") in walk.edges

    # the CLI, with the same settings (KEEL_TRACKING_URI when remote)
    schema = tmp_path / "schema.yaml"
    schema.write_text(keel.data.get_schema("scores@1").to_yaml())
    runner = CliRunner()
    from keel.cli import main as cli

    ok = runner.invoke(cli.app, ["data", "validate", "scores@1", "--schema", str(schema)])
    assert ok.exit_code == 0, ok.output
    text = schema.read_text()
    assert "categories: [a, b]" in text
    schema.write_text(text.replace("categories: [a, b]", "categories: [a]"))  # 'b' now fails
    failed = runner.invoke(
        cli.app, ["data", "validate", "scores@1", "--schema", str(schema), "--json"]
    )
    assert failed.exit_code == 1, failed.output
    assert '"ok": false' in failed.output


# -- the endpoints of a live server (auth off) ----------------------------------------------------
@pytest.fixture
def remote(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """The fluent client on the session's live SQLite server."""
    monkeypatch.setenv("KEEL_TRACKING_URI", live_server.url)
    fluent._reset()
    yield fluent.get_client()


def test_a_version_naming_blobs_the_server_lacks_is_refused(
    remote: Client, live_server: LiveServer
) -> None:
    data = remote.store.data  # type: ignore[attr-defined]
    content = remote.objects.put_bytes(b"present")
    absent = hash_bytes(b"never uploaded")
    common: dict[str, Any] = {"file_count": 1, "total_bytes": 7, "actor": "me"}
    with pytest.raises(IntegrityError, match="not in the server's object store"):
        data.create_version("d", kind="table", manifest_digest=absent, **common)
    with pytest.raises(IntegrityError, match=r"1 blobs .* not in the server's object store"):
        data.create_version(
            "d",
            kind="table",
            manifest_digest=content.digest,
            extra={"profile_digest": absent},
            **common,
        )
    manifest = DataManifest(
        {"a": (content.digest, 7, 0o644), "b": (absent, 14, 0o644)}, single=False
    )
    mref = remote.objects.put_bytes(manifest.to_bytes())
    with pytest.raises(IntegrityError, match=absent):
        data.create_version("d", kind="files", manifest_digest=mref.digest, **common)
    with pytest.raises(IntegrityError, match="not a keel dataset manifest"):
        data.create_version("d", kind="files", manifest_digest=content.digest, **common)
    answer = httpx.post(
        f"{live_server.url}/api/v1/datasets/d/versions",
        json={"kind": "table", "manifest_digest": "nope", "file_count": 1, "total_bytes": 1},
        timeout=30,
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_input"
    # nothing was recorded by the refused calls
    assert httpx.get(f"{live_server.url}/api/v1/datasets", timeout=30).json()["datasets"] == []

    ok = data.create_version("d", kind="table", manifest_digest=content.digest, **common)
    assert (ok.uri, ok.created_by) == ("d@1", "me")


def test_endpoints_page_and_report_errors(remote: Client, live_server: LiveServer) -> None:
    data = remote.store.data  # type: ignore[attr-defined]
    blobs = [remote.objects.put_bytes(f"v{i}".encode()) for i in range(3)]
    for i, ref in enumerate(blobs):
        data.create_version(
            "paged", kind="table", manifest_digest=ref.digest, file_count=1, total_bytes=2,
            actor="me", message=f"m{i}",
        )  # fmt: skip
    url = f"{live_server.url}/api/v1/datasets/paged/versions"
    page = httpx.get(url, params={"max_results": 2}, timeout=30).json()
    assert [v["version"] for v in page["versions"]] == [1, 2] and page["next_page_token"]
    rest = httpx.get(
        url, params={"max_results": 2, "page_token": page["next_page_token"]}, timeout=30
    ).json()
    assert [v["version"] for v in rest["versions"]] == [3] and rest["next_page_token"] is None
    assert [v.message for v in data.versions("paged")] == ["m0", "m1", "m2"]

    for path, status, code in [
        ("/api/v1/datasets/paged/versions/abc", 400, "invalid_input"),
        ("/api/v1/datasets/paged/versions/9", 404, "not_found"),
        ("/api/v1/datasets/nope/versions", 404, "not_found"),
        ("/api/v1/datasets/bad@name/versions/latest", 400, "invalid_input"),
        ("/api/v1/datasets?page_token=xyz", 400, "invalid_input"),
    ]:
        answer = httpx.get(live_server.url + path, timeout=30)
        assert answer.status_code == status, (path, answer.text)
        assert answer.json()["error"]["code"] == code and answer.json()["error"]["message"]

    data.delete_version("paged", 2, actor="me", reason="bad export")
    assert [v.version for v in data.versions("paged")] == [1, 3]
    with pytest.raises(NotFoundError, match="Versions: 1, 3"):
        data.get_version("paged", 2)
    events = Registry(remote).audit("dataset:paged@2")
    assert [(e.action, e.actor, e.reason) for e in events][-1] == (
        "dataset_version.delete",
        "me",
        "bad export",
    )
    for gc_only in (data.all_versions, data.referenced_blobs, data.model_manifests):
        with pytest.raises(InvalidStateError, match="run `keel data gc` on the server"):
            gc_only()


# -- access control -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A live server with KEEL_AUTH=on and a global reader and writer (and their tokens)."""
    home = tmp_path_factory.mktemp("data-auth")
    settings = load_settings(environ={"KEEL_HOME": str(home), "KEEL_USER": "admin"})
    seed = Client(settings)
    store = seed.store
    assert isinstance(store, SqlStore)
    tokens: dict[str, str] = {}
    for user in ("admin", "reader", "writer"):
        store.auth.create_user(user, actor="admin")
        made = store.auth.create_token(user, actor="admin", label="test")
        assert made.token is not None
        tokens[user] = made.token
        store.registry.grant(user, user, actor="admin")
    seed.close()
    with auth_server_process(home) as url:
        yield url, tokens


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Keel-User": "mallory"}


def test_writers_create_versions_as_themselves_and_readers_only_read(
    auth_server: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, tokens = auth_server
    monkeypatch.setenv("KEEL_TRACKING_URI", url)
    monkeypatch.setenv("KEEL_USER", "mallory")  # a client-side name is never recorded
    monkeypatch.setenv("KEEL_TRACKING_TOKEN", tokens["writer"])
    fluent._reset()
    root = _write(tmp_path / "shared", {"a.txt": b"alpha", "b.txt": b"beta"}, 1)
    v1 = keel.data.add(root, progress=False)
    assert (v1.uri, v1.created_by) == ("shared@1", "writer")
    events = Registry(fluent.get_client()).audit("dataset:shared@1")
    assert [(e.action, e.actor) for e in events] == [("dataset_version.create", "writer")]

    body = {
        "kind": "files",
        "manifest_digest": v1.manifest_digest,
        "file_count": 2,
        "total_bytes": 9,
        "reuse_identical": False,
    }
    versions = f"{url}/api/v1/datasets/shared/versions"
    denied = httpx.post(versions, json=body, headers=_as(tokens["reader"]), timeout=30)
    assert denied.status_code == 403, denied.text
    assert denied.json()["error"]["code"] == "permission_denied"
    assert httpx.post(versions, json=body, timeout=30).status_code == 401
    made = httpx.post(versions, json=body, headers=_as(tokens["writer"]), timeout=30)
    assert made.status_code == 201 and made.json()["created_by"] == "writer"
    gone = httpx.delete(f"{versions}/2", headers=_as(tokens["reader"]), timeout=30)
    assert gone.status_code == 403

    monkeypatch.setenv("KEEL_TRACKING_TOKEN", tokens["reader"])
    fluent._reset()
    assert [v.version for v in keel.data.versions("shared")] == [1, 2]
    assert _tree(keel.data.get("shared@1", progress=False)) == {"a.txt": b"alpha", "b.txt": b"beta"}
    with pytest.raises(PermissionDeniedError):
        keel.data.add(_write(tmp_path / "other", {"c.txt": b"gamma"}, 2), progress=False)
    listed = httpx.get(f"{url}/api/v1/datasets", headers=_as(tokens["reader"]), timeout=30)
    assert [d["name"] for d in listed.json()["datasets"]] == ["shared"]


def test_an_oversized_manifest_is_refused_without_reading_it(
    http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.server.routes import data as routes

    monkeypatch.setattr(routes, "MAX_MANIFEST_BYTES", 64)
    blob = b"{" + b" " * 100 + b"}"
    digest = hash_bytes(blob)
    assert http.put(f"/api/v1/blobs/{digest}", content=blob).status_code == 201
    body = {"kind": "files", "manifest_digest": digest, "file_count": 1, "total_bytes": 1}
    answer = http.post("/api/v1/datasets/big/versions", json=body)
    assert answer.status_code == 422, answer.text
    assert "too large to be a keel dataset manifest" in answer.json()["error"]["message"]
    assert http.get("/api/v1/datasets").json() == {"datasets": [], "next_page_token": None}
