"""MLflow compatibility: the official MLflow client against a real keel server.

The client (mlflow 3.17.2) cannot live in the project venv: it pins pyarrow<26
while keel tests against the newest pyarrow. So it runs from its own venv
(``benchmarks/.venvs/mlflow-3.17.2``, shared with the benchmarks, created with uv
on first use) in a subprocess: ``mlflow_client_script.py`` drives a keel server
started here with uvicorn and prints what the client saw as JSON. The test checks
that JSON, then reads the same data back through keel's own API. Fast in-process
tests below cover the error translation and the filter rewriting.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from filelock import FileLock
from sklearn.linear_model import LinearRegression

from keel.config import load_settings
from keel.entities import RunStatus
from keel.models import save_model
from keel.registry import Registry
from keel.server import create_app
from keel.server.mlflow._filters import matches, parse, run_filter, run_order
from keel.tracking.client import Client

MLFLOW_VERSION = "3.17.2"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "benchmarks" / ".venvs" / f"mlflow-{MLFLOW_VERSION}"
SCRIPT = Path(__file__).with_name("mlflow_client_script.py")
MODEL = "mlflow-compat-model"
REQUIRE = os.environ.get("KEEL_TEST_REQUIRE_BACKENDS") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"the MLflow client is required (KEEL_TEST_REQUIRE_BACKENDS=1): {reason}")
    pytest.skip(reason)


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _installed(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = "from importlib.metadata import version as v; v('scikit-learn'); print(v('mlflow'))"
    proc = subprocess.run(
        [str(python), "-c", probe],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _uv() -> list[str] | None:
    if uv := shutil.which("uv"):
        return [uv]
    for python in (shutil.which("python3"), sys.executable):
        probe = [python or "", "-m", "uv", "--version"]
        if python and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return [python, "-m", "uv"]
    return None


@pytest.fixture(scope="module")
def mlflow_python() -> Path:
    """The Python of a venv with mlflow==3.17.2 (created with uv if missing)."""
    python = _venv_python()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(VENV) + ".lock"):  # xdist workers may get here together
        if _installed(python) == MLFLOW_VERSION:
            return python
        uv = _uv()
        if uv is None:
            _unavailable("uv is needed to create the MLflow client's venv")
        assert uv is not None
        steps = [
            [*uv, "venv", "--clear", "--python", sys.executable, str(VENV)],
            [*uv, "pip", "install", "--python", str(python), f"mlflow=={MLFLOW_VERSION}"],
        ]
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                _unavailable(f"cannot install mlflow {MLFLOW_VERSION}: {proc.stderr[-2000:]}")
        if _installed(python) != MLFLOW_VERSION:
            _unavailable(f"{VENV} does not hold mlflow {MLFLOW_VERSION}")
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def keel_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A keel server (uvicorn subprocess) with its own KEEL_HOME: (URL, home)."""
    home = tmp_path / "server-home"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(KEEL_HOME=str(home), KEEL_USER="keel-server")
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", "keel.server.app:create_app"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"keel server did not start:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.1)
        yield url, home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run_client(python: Path, url: str, keel_run_id: str, work: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))}
    env.pop("PYTHONPATH", None)  # the client venv must not see keel's sources
    env.update(
        MLFLOW_TRACKING_URI=url,
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",  # a failure shows at once, not after backoffs
    )
    proc = subprocess.run(
        [str(python), str(SCRIPT), keel_run_id, str(work)],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"client failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_official_mlflow_client_against_keel(
    mlflow_python: Path, keel_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, home = keel_server
    keel = Client(load_settings(environ={"KEEL_HOME": str(home), "KEEL_USER": "alice"}))
    try:
        native = keel.create_run("keel-native", name="native-run", tags={"origin": "keel"})
        keel.log_params(native.run_id, {"lr": 0.1})
        keel.log_metric(native.run_id, "acc", 0.75)
        keel.log_text(native.run_id, "hi", "hello.txt")
        X = np.arange(20, dtype=float).reshape(10, 2)
        save_model(LinearRegression().fit(X, X @ [1.0, 2.0]), tmp_path / "keel-model")
        keel.log_artifacts(native.run_id, tmp_path / "keel-model", "model")
        keel.end_run(native.run_id)
        work = tmp_path / "work"
        work.mkdir()

        out = _run_client(mlflow_python, url, native.run_id, work)
        _check_client_view(out, native.run_id)
        _check_keel_view(keel, out)
    finally:
        keel.close()


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-9 for x, y in zip(a, b, strict=True))


def _check_client_view(out: dict[str, Any], native_run_id: str) -> None:
    exp = out["experiments"]
    assert exp["artifact_location"] == f"mlflow-artifacts:/{exp['id']}"
    assert exp["by_name"] == exp["id"]
    assert (exp["deleted_stage"], exp["restored_stage"]) == ("deleted", "active")
    assert exp["search"] == exp["search_tags"] == ["scratch-exp"]
    assert exp["default"] == "Default"

    run = out["run"]
    run_id = run["id"]
    assert (run["name"], run["status"]) == ("train", "FINISHED")
    assert run["artifact_uri"] == f"mlflow-artifacts:/{exp['id']}/{run_id}/artifacts"
    assert run["params"] == {"alpha": "0.5", "model": "ridge", "depth": "3"}
    metrics = run["metrics"]
    assert (metrics["auc"], metrics["f1"], metrics["loss"]) == (0.91, 0.8, 0.2)
    assert metrics["test_auc"] == 0.88  # logged after the run ended
    assert metrics["nan_metric"] != metrics["nan_metric"]
    assert run["tags"]["mlflow.runName"] == "train"
    assert (run["tags"]["team"], run["tags"]["stage"]) == ("vision", "dev")
    assert "tmp" not in run["tags"]
    assert not any(k.startswith("keel.") for k in run["tags"])
    assert run["outputs"] == [out["logged"]["model_id"]]
    assert run["child_parent"] == run_id
    assert run["history"] == [[s, 1.0 / (s + 1)] for s in range(5)]
    assert run["artifacts"] == ["config.json", "data", "late", "notes.txt"]  # no "model"
    assert run["data_artifacts"] == [["data/a.csv", False, 8], ["data/sub", True, None]]
    assert run["downloaded"] == ["a.csv", "sub/b.txt"]
    assert run["notes"] == "keel + mlflow"
    assert run["param_conflict"] == "INVALID_PARAMETER_VALUE"

    search = out["search"]
    assert search["filtered"] == [run_id]
    assert search["ordered"] == [run_id, run["child_id"]]
    assert (search["frame_rows"], search["frame_has_auc"]) == (2, True)
    assert search["active_after_delete"] == [run_id]
    assert search["restored"] == "active"
    assert out["final_runs"] == ["child", "train"]  # runs holding standalone models are hidden

    logged = out["logged"]
    model_id = logged["model_id"]
    assert logged["model_uri"] == f"models:/{model_id}"
    assert logged["registered_version"] == "1"
    assert (logged["status"], logged["source_run_id"]) == ("READY", run_id)
    location = f"mlflow-artifacts:/{exp['id']}/models/{model_id}/artifacts"
    assert logged["artifact_location"] == location
    assert logged["tags"] == {"reviewed": "yes"}
    assert logged["params"] == {"alpha": "0.5", "model": "ridge", "depth": "3", "extra": "1"}
    assert logged["model_versions_tag"] == [{"name": MODEL, "version": "1"}]
    assert logged["searched"] == [model_id]
    assert logged["external_status"] == "READY"
    assert logged["external_deleted"] == "RESOURCE_DOES_NOT_EXIST"
    assert logged["standalone_source"] == ""
    assert _close(logged["standalone_pred"], out["load"]["expected"])

    reg = out["registry"]
    assert reg["versions"] == ["1", "2", "3"]
    assert (reg["alias_version"], reg["alias_run_id"]) == ("1", run_id)
    assert reg["alias_source"] == f"models:/{model_id}"
    assert reg["v1"] == {"stage": "Archived", "description": "first", "tags": {"validated": "yes"}}
    assert reg["v2_stage"] == "Staging"  # archive_existing_versions archived v1
    assert reg["model"] == {
        "description": "a linear model",
        "aliases": {"champion": "1"},
        "latest": [["1", "Archived"], ["2", "Staging"]],
    }
    assert reg["search_models"] == [MODEL]
    assert reg["search_versions"] == ["1", "2"]
    assert reg["latest_staging"] == ["2"]
    assert reg["download_uri"] == logged["artifact_location"]
    assert reg["duplicate"] == "RESOURCE_ALREADY_EXISTS"
    assert reg["deleted_v3"] == "RESOURCE_DOES_NOT_EXIST"

    load = out["load"]
    for how in ("alias", "stage", "runs_uri", "sklearn"):
        assert _close(load[how], load["expected"]), how

    keel_run = out["keel_run"]
    assert (keel_run["name"], keel_run["status"]) == ("native-run", "FINISHED")
    assert (keel_run["params"], keel_run["metrics"]) == ({"lr": "0.1"}, {"acc": 0.75})
    assert keel_run["tags"] == {
        "origin": "keel",
        "mlflow.runName": "native-run",
        "mlflow.user": "alice",
    }
    assert keel_run["artifacts"] == ["hello.txt", "model"]
    assert keel_run["registered"] == {"version": "1", "source": f"runs:/{native_run_id}/model"}

    assert out["errors"] == {
        "missing_run": "RESOURCE_DOES_NOT_EXIST",
        "missing_model": "RESOURCE_DOES_NOT_EXIST",
        "missing_experiment": "RESOURCE_DOES_NOT_EXIST",
        "bad_filter": "INVALID_PARAMETER_VALUE",
        "rename_run": "INVALID_PARAMETER_VALUE",
    }
    assert out["server_info"]["multipart_uploads_enabled"] is False


def _check_keel_view(keel: Client, out: dict[str, Any]) -> None:
    run_id, model_id = out["run"]["id"], out["logged"]["model_id"]
    run = keel.get_run(run_id)
    assert (run.name, run.status) == ("train", RunStatus.FINISHED)
    assert run.user == out["run"]["tags"]["mlflow.user"]  # the MLflow client's user
    assert run.params == {"alpha": "0.5", "model": "ridge", "depth": "3"}
    assert run.metrics["test_auc"] == 0.88 and run.end_time is not None
    assert run.tags["team"] == "vision"
    paths = [a.path for a in keel.list_artifacts(run_id)]
    assert {"notes.txt", "config.json", "data/a.csv", "data/sub/b.txt", "late/notes.txt"} <= set(
        paths
    )
    assert "model/MLmodel" in paths  # the logged model's files, in the run like keel.log_model
    assert keel.read_artifact(run_id, "late/notes.txt") == b"keel + mlflow"
    found = keel.search_runs("mlflow-compat", filter="metrics.auc > 0.9 and params.model = 'ridge'")
    assert [r.run_id for r in found] == [run_id]
    assert keel.get_run(out["run"]["child_id"]).parent_run_id == run_id

    reg = Registry(keel)
    versions = {mv.version: mv for mv in reg.list_versions(MODEL)}
    assert sorted(versions) == [1, 2]  # v3 was deleted
    v1 = versions[1]
    assert (v1.flavor, v1.run_id, v1.source) == ("mlflow", run_id, f"runs:/{run_id}/model")
    assert (v1.stage, v1.aliases, v1.description) == ("Archived", ["champion"], "first")
    assert v1.tags["validated"] == "yes" and v1.metrics["auc"] == 0.91
    assert reg.get_model(MODEL).description == "a linear model"
    resolved = reg.resolve(f"models:/{MODEL}@champion")
    files = keel.objects.get_manifest(resolved.manifest_digest).entries
    assert "MLmodel" in files
    actions = [e.action for e in reg.audit(f"model:{MODEL}@champion")]
    assert actions == ["alias.set"]
    assert reg.lineage(f"models:/{MODEL}/1").of_kind("run") == [f"run:{run_id}"]

    native = reg.get_version("keel-native-model", 1)  # a keel model, registered by MLflow
    assert (native.flavor, native.run_id) == ("sklearn", out["keel_run"]["id"])
    X = np.arange(6, dtype=float).reshape(3, 2)
    assert _close(reg.load("models:/keel-native-model/1").predict(X).tolist(), [2.0, 8.0, 14.0])

    standalone = keel.search_runs(None, filter="run_name = 'standalone'")
    assert len(standalone) == 1 and standalone[0].status == RunStatus.FINISHED
    assert "standalone/MLmodel" in [a.path for a in keel.list_artifacts(standalone[0].run_id)]
    assert f"keel.mlflow.logged_model.{model_id}" in run.tags


# -- in-process checks: error bodies, filters, late writes -------------------------------------
@pytest.fixture
def http() -> TestClient:
    return TestClient(create_app())


def test_unknown_mlflow_endpoint_has_mlflow_error_body(http: TestClient) -> None:
    r = http.post("/api/2.0/mlflow/experiments/set-experiment-tag", json={})
    assert r.status_code == 404
    assert r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert http.get("/nope").json()["error"]["code"] == "http_error"  # native body elsewhere


def test_domain_errors_translate_to_mlflow_codes(http: TestClient) -> None:
    r = http.get("/api/2.0/mlflow/runs/get", params={"run_id": "f" * 32})
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    r = http.post("/api/2.0/mlflow/experiments/create", json={"name": "e"})
    exp_id = r.json()["experiment_id"]
    r = http.post("/api/2.0/mlflow/experiments/create", json={"name": "e"})
    assert (r.status_code, r.json()["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")
    r = http.post(
        "/api/2.0/mlflow/runs/create", content=b"{not json", headers={"content-type": "x"}
    )
    assert (r.status_code, r.json()["error_code"]) == (400, "BAD_REQUEST")
    http.post("/api/2.0/mlflow/experiments/delete", json={"experiment_id": exp_id})
    r = http.post("/api/2.0/mlflow/runs/create", json={"experiment_id": exp_id})
    assert (r.status_code, r.json()["error_code"]) == (409, "INVALID_STATE")
    r = http.post("/api/2.0/mlflow/runs/create", json={"tags": [{"key": "keel.mlflow.x"}]})
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_writes_to_a_finished_run_keep_its_status_and_end_time(http: TestClient) -> None:
    run = http.post("/api/2.0/mlflow/runs/create", json={"run_name": "r"}).json()["run"]["info"]
    run_id = run["run_id"]
    http.post("/api/2.0/mlflow/runs/update", json={"run_id": run_id, "status": "KILLED"})
    ended = http.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    body = {"run_id": run_id, "metrics": [{"key": "m", "value": "NaN", "timestamp": 5}]}
    assert http.post("/api/2.0/mlflow/runs/log-batch", json=body).status_code == 200
    path = f"{ended['info']['artifact_uri'].removeprefix('mlflow-artifacts:/')}/a/b.txt"
    url = f"/api/2.0/mlflow-artifacts/artifacts/{path}"
    assert http.put(url, content=b"late").status_code == 200
    after = http.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    assert after["info"]["status"] == "KILLED"
    assert after["info"]["end_time"] == ended["info"]["end_time"]
    assert after["data"]["metrics"] == [{"key": "m", "value": "NaN"}]  # step 0, time 0: defaults
    assert http.get(url).content == b"late"


def test_run_filters_are_rewritten_for_keel() -> None:
    text = (
        "metrics.auc > 0.9 and tags.mlflow.runName = 'tags.mlflow.user' and "
        "attributes.user_id = 'u' and tags.`mlflow.parentRunId` = 'p' and attribute.created > 5"
    )
    assert run_filter(text) == (
        "metrics.auc > 0.9 and attributes.run_name = 'tags.mlflow.user' and "
        "attributes.user = 'u' and attributes.parent_run_id = 'p' and attributes.start_time > 5"
    )
    assert run_filter("  ") is None
    assert run_order(["tags.mlflow.runName DESC", "metrics.auc"]) == [
        "attributes.run_name DESC",
        "metrics.auc",
    ]


def test_entity_filters() -> None:
    conditions = parse(
        "name LIKE 'churn%' AND tags.`team name` = 'a' AND metrics.acc >= 0.5 "
        "AND status IN ('READY', 'PENDING') AND tag.`mlflow.prompt.is_prompt` != 'true'"
    )
    values = {
        ("attributes", "name"): "churn-v2",
        ("tags", "team name"): "a",
        ("metrics", "acc"): 0.7,
        ("attributes", "status"): "READY",
    }
    assert matches(conditions, lambda kind, key: values.get((kind, key)))
    values[("metrics", "acc")] = 0.2
    assert not matches(conditions, lambda kind, key: values.get((kind, key)))
    with pytest.raises(Exception, match="Invalid filter"):
        parse("name = ")
