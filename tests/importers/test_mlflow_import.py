"""``keel import mlflow`` against stores written by MLflow 3.17.2 itself.

``make_mlflow_store.py`` runs in MLflow's pinned venv (created with uv if missing,
as the benchmarks do) and writes two stores, once per session: one logged straight
to SQLite with local artifact folders, and one logged through MLflow's tracking
server app with proxied artifacts (served again for the REST import). Each also writes
``expected.json``, the store read back through ``MlflowClient``; the tests compare
keel's copy with it field by field: experiments, runs (params, tags, every metric
point with step and timestamp, status, times, parent, lifecycle), artifact bytes,
and the registry (models, versions with their files, stages, aliases).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from rich.console import Console
from typer.testing import CliRunner

from keel.cli import main as cli
from keel.exceptions import BackendUnavailableError, InvalidSpecError, NotFoundError
from keel.importers import ImportReport, import_mlflow
from keel.importers.mlflow import DONE_TAG, PENDING_TAG, VERSION_TAG, mlmodel_spec
from keel.tracking.client import Client

MLFLOW_VERSION = "3.17.2"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "benchmarks" / ".venvs" / f"mlflow-{MLFLOW_VERSION}"
HELPER = Path(__file__).with_name("make_mlflow_store.py")
BUILD_TIMEOUT = 600  # s; building both stores takes ~25 s on an idle machine


# -- the MLflow side ----------------------------------------------------------------------------
def _mlflow_python() -> Path:
    """MLflow's pinned venv (created with uv on first use, shared with the benchmarks)."""
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(VENV) + ".lock"):
        probe = (
            subprocess.run(
                [str(python), "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
                capture_output=True,
                text=True,
                check=False,
            )
            if python.exists()
            else None
        )
        if probe is None or probe.stdout.strip() != MLFLOW_VERSION:
            uv = [shutil.which("python3") or sys.executable, "-m", "uv"]
            subprocess.run(
                [*uv, "venv", "--clear", "--python", sys.executable, str(VENV)], check=True
            )
            subprocess.run(
                [*uv, "pip", "install", "--python", str(python), f"mlflow=={MLFLOW_VERSION}"],
                check=True,
            )
    return python


@dataclass
class Store:
    """A store made by the helper: how to import it and what it holds."""

    uri: str
    folder: Path
    expected: dict[str, Any]

    @classmethod
    def at(cls, uri: str, folder: Path) -> Store:
        return cls(uri, folder, json.loads((folder / "expected.json").read_text()))


def _helper_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KEEL_"))}
    env.pop("PYTHONPATH", None)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    return env


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both stores, built once per test session (shared by xdist workers)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    out = shared / "mlflow-stores"
    with FileLock(str(out) + ".lock"):
        if not (out / "served" / "expected.json").is_file():
            python = _mlflow_python()
            done = subprocess.run(
                [str(python), str(HELPER), "build", str(out)],
                capture_output=True,
                text=True,
                env=_helper_env(),
                timeout=BUILD_TIMEOUT,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"make_mlflow_store.py build failed:\n{done.stderr[-3000:]}")
    return out


@pytest.fixture
def sqlite_store(stores: Path) -> Store:
    """The store logged straight to SQLite (its URI is a sqlite:/// URL)."""
    folder = stores / "local"
    return Store.at(f"sqlite:///{folder / 'mlflow.db'}", folder)


@pytest.fixture
def http_store(stores: Path) -> Iterator[Store]:
    """The store logged through MLflow's server, served again for the test."""
    folder = stores / "served"
    proc = subprocess.Popen(
        [str(VENV / "bin" / "python"), str(HELPER), "serve", str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_helper_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), f"the MLflow server did not start: {line!r}"
        yield Store.at(line.split(" ", 1)[1].strip(), folder)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def client(keel_home: Path) -> Iterator[Client]:
    """A keel client on the test's own KEEL_HOME."""
    c = Client()
    yield c
    c.close()


# -- checks ---------------------------------------------------------------------------------------
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _point(value: float) -> float | str:
    return "NaN" if math.isnan(value) else value


def _imported_runs(client: Client) -> dict[str, Any]:
    runs = client.search_runs(filter=f"tags.{DONE_TAG} is not null", view="all", max_results=1000)
    return {r.tags[DONE_TAG]: r for r in runs}


def check_copy(client: Client, expected: dict[str, Any]) -> None:
    """Everything in ``expected`` (MLflow's view of its store) is in keel, exactly."""
    exp_names = {e["id"]: e["name"] for e in expected["experiments"]}
    keel_exps = {e.name: e for e in client.list_experiments("all")}
    for exp in expected["experiments"]:
        if exp["name"] == "Default":  # empty: not imported
            assert "Default" not in keel_exps
            continue
        got = keel_exps[exp["name"]]
        assert got.lifecycle_stage == exp["lifecycle_stage"]
        assert got.tags.items() >= exp["tags"].items()
        assert got.description == exp["tags"].get("mlflow.note.content")

    runs = _imported_runs(client)
    assert set(runs) == {r["run_id"] for r in expected["runs"]}
    assert len(client.search_runs(view="all", max_results=1000)) == len(expected["runs"])
    logged = {m["run_id"]: m for m in expected["logged_models"]}
    for want in expected["runs"]:
        run = runs[want["run_id"]]
        where = f"run {want['name']}"
        assert keel_exps[exp_names[want["experiment_id"]]].experiment_id == run.experiment_id
        assert run.name == want["name"], where
        assert run.status == want["status"], where
        assert run.start_time == want["start_time"], where
        assert run.end_time == want["end_time"], where
        assert run.lifecycle_stage == want["lifecycle_stage"], where
        assert run.user == want["user"], where
        assert run.params == want["params"], where
        assert {k: x for k, x in run.tags.items() if not k.startswith("keel.")} == want["tags"]
        assert run.description == want["tags"].get("mlflow.note.content"), where
        parent = want["tags"].get("mlflow.parentRunId")
        assert run.parent_run_id == (runs[parent].run_id if parent else None), where
        assert set(run.metrics) == set(want["metrics"]), where
        for key, points in want["metrics"].items():
            history = client.get_metric_history(run.run_id, key)
            got_points = sorted([p.step, p.timestamp, _point(p.value)] for p in history)
            assert got_points == points, f"{where}, metric {key}"
        files = {
            a.path: {"size": a.size, "sha256": _sha(client.read_artifact(run.run_id, a.path))}
            for a in client.list_artifacts(run.run_id)
        }
        want_files = dict(want["artifacts"])
        if want["run_id"] in logged:  # the MLflow 3 logged model, under <run>/model/
            want_files |= {f"model/{p}": f for p, f in logged[want["run_id"]]["files"].items()}
        assert files == want_files, where

    reg = client.store.registry  # type: ignore[attr-defined]
    for model in expected["models"]:
        got = reg.get_model(model["name"])
        assert got.description == (model["description"] or None)
        assert got.tags.items() >= model["tags"].items()
        assert got.aliases == {a: int(n) for a, n in model["aliases"].items()}
        versions = {mv.version: mv for mv in reg.list_versions(model["name"])}
        assert set(versions) == {x["version"] for x in model["versions"]}
        for want_v in model["versions"]:
            mv = versions[want_v["version"]]
            run = runs[want_v["run_id"]]
            assert mv.run_id == run.run_id
            assert mv.source == f"runs:/{run.run_id}/model"
            assert mv.stage == want_v["stage"]
            assert mv.description == (want_v["description"] or None)  # REST gives ""
            assert mv.tags.items() >= want_v["tags"].items()
            assert mv.tags[VERSION_TAG].startswith(f"{model['name']}/{want_v['version']}@")
            assert mv.flavor == "mlflow"
            assert mv.format == "mlflow-model"
            assert set(mv.spec["mlflow_flavors"]) == {"python_function", "sklearn"}
            assert mv.spec["mlflow_source"] == want_v["source"]
            manifest = client.objects.get_manifest(mv.manifest_digest)
            content = {
                p: {"size": ref.size, "sha256": _sha(client.objects.get_bytes(ref.digest))}
                for p, ref in manifest.entries.items()
            }
            assert content == logged[want_v["run_id"]]["files"]
            pickled = "model.pkl" in content
            assert mv.unsafe is pickled  # version 2 is cloudpickle, version 1 skops


def _news(report: ImportReport) -> dict[str, int]:
    return {kind: t.new for kind, t in report.tallies.items()}


def _snapshot(client: Client) -> tuple[Any, ...]:
    """Counts that a repeated import must leave alone."""
    runs = client.search_runs(view="all", max_results=1000)
    points = sum(len(client.get_metric_history(r.run_id, k)) for r in runs for k in r.metrics)
    artifacts = sum(len(client.list_artifacts(r.run_id)) for r in runs)
    reg = client.store.registry  # type: ignore[attr-defined]
    return len(runs), points, artifacts, len(reg.list_models()), len(reg.audit_events())


# -- tests ----------------------------------------------------------------------------------------
def test_import_from_sqlite(sqlite_store: Store, client: Client, keel_home: Path) -> None:
    db = sqlite_store.folder / "mlflow.db"

    planned = import_mlflow(client, str(db), dry_run=True)
    assert planned.ok, planned.errors
    assert not keel_home.exists()  # a dry run into an empty home creates nothing

    report = import_mlflow(client, f"sqlite:///{db}")
    assert report.ok, report.errors
    assert not report.warnings, report.warnings
    assert _news(report) == _news(planned)  # the dry run predicted the import exactly
    expected = sqlite_store.expected
    assert report.tallies["runs"].new == len(expected["runs"])
    assert report.tallies["metric points"].new == sum(
        len(p) for r in expected["runs"] for p in r["metrics"].values()
    )
    assert report.tallies["model versions"].new == 2
    check_copy(client, expected)

    before = _snapshot(client)
    again = import_mlflow(client, db)
    assert again.ok, again.errors
    assert not any(_news(again).values()), _news(again)
    assert again.tallies["runs"].present == len(expected["runs"])
    assert again.tallies["model versions"].present == 2
    assert _snapshot(client) == before
    check_copy(client, expected)

    after_dry = import_mlflow(client, db, dry_run=True)
    assert not any(_news(after_dry).values())


def test_import_from_server(http_store: Store, client: Client) -> None:
    # churn's artifacts go through the mlflow-artifacts API, vision's (a file:// root)
    # through the server's run artifact endpoints
    report = import_mlflow(client, http_store.uri)
    assert report.ok, report.errors
    assert not report.warnings, report.warnings
    check_copy(client, http_store.expected)

    before = _snapshot(client)
    again = import_mlflow(client, http_store.uri)
    assert not any(_news(again).values()), _news(again)
    assert _snapshot(client) == before


def test_interrupted_import_is_completed(sqlite_store: Store, client: Client) -> None:
    """A run left half-copied (still tagged pending) is completed, not duplicated."""
    db = sqlite_store.folder / "mlflow.db"
    import_mlflow(client, db, experiments=["vision"])
    runs = _imported_runs(client)
    killed = next(r for r in runs.values() if r.name == "aborted")
    # make it look like the first import stopped right after creating the run
    client.store.log_batch(killed.run_id, tags={PENDING_TAG: "true"})
    client.store.end_run(killed.run_id, "RUNNING")

    report = import_mlflow(client, db, experiments=["vision"])
    assert report.ok, report.errors
    assert report.tallies["runs"].new == 1
    run = client.get_run(killed.run_id)
    assert run.status == "KILLED"
    assert PENDING_TAG not in run.tags
    assert len(client.search_runs("vision", view="all")) == 3
    assert [a.path for a in client.list_artifacts(run.run_id)] == ["logs/stop.txt"]


def _copy_db(store: Store, folder: Path) -> Path:
    """A copy of the store's database (its artifact locations still point at the store)."""
    db = folder / "mlflow.db"
    with (
        contextlib.closing(sqlite3.connect(store.folder / "mlflow.db")) as src,
        contextlib.closing(sqlite3.connect(db)) as dst,
    ):
        src.backup(dst)
    return db


def test_version_numbers_survive_deleted_versions(
    sqlite_store: Store, client: Client, tmp_path: Path
) -> None:
    db = _copy_db(sqlite_store, tmp_path)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:  # version 1 deleted in MLflow
        for table in ("model_version_tags", "registered_model_aliases", "model_versions"):
            conn.execute(f"DELETE FROM {table} WHERE version = 1")
    report = import_mlflow(client, db)
    assert report.ok, report.errors
    reg = client.store.registry  # type: ignore[attr-defined]
    assert [mv.version for mv in reg.list_versions("churn-model")] == [2]
    assert reg.get_model("churn-model").aliases == {}
    with pytest.raises(NotFoundError):
        reg.get_version("churn-model", 1)
    assert not any(_news(import_mlflow(client, db)).values())


def test_reimport_brings_running_runs_up_to_date(
    sqlite_store: Store, client: Client, tmp_path: Path
) -> None:
    """A run RUNNING at the first import gets its later points and final status."""
    db = _copy_db(sqlite_store, tmp_path)
    first = import_mlflow(client, db, experiments=["vision"])
    assert first.ok, first.errors
    live = next(r for r in sqlite_store.expected["runs"] if r["name"] == "still-running")
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:  # MLflow logs on, then ends
        conn.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES ('throughput', ?, ?, ?, ?, 0)",
            [(200.0 + s, 1_700_000_100_000 + s, live["run_id"], 50 + s) for s in range(10)],
        )
        conn.execute(
            "UPDATE runs SET status = 'FINISHED', end_time = 1700000200000 WHERE run_uuid = ?",
            (live["run_id"],),
        )

    again = import_mlflow(client, db, experiments=["vision"])
    assert again.ok, again.errors
    assert again.tallies["runs"].updated == 1
    assert again.tallies["runs"].present == 2  # the KILLED run and the SCHEDULED one
    assert again.tallies["metric points"].new == 10
    run = _imported_runs(client)[live["run_id"]]
    assert run.status == "FINISHED" and run.end_time == 1_700_000_200_000
    history = client.get_metric_history(run.run_id, "throughput")
    assert len(history) == 60 and history[-1].value == 209.0
    assert not any(_news(import_mlflow(client, db, experiments=["vision"])).values())


def test_cli_import_one_experiment(
    sqlite_store: Store, keel_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "console", Console(width=120, color_system=None))
    monkeypatch.setattr(cli, "err_console", Console(width=300, color_system=None, stderr=True))
    runner = CliRunner()
    db = str(sqlite_store.folder / "mlflow.db")

    dry = runner.invoke(cli.app, ["import", "mlflow", "--from", db, "-e", "churn", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Would import from" in dry.stdout and "Dry run: nothing was written." in dry.stdout
    assert not keel_home.exists()

    result = runner.invoke(cli.app, ["import", "mlflow", "--from", db, "--experiment", "churn"])
    assert result.exit_code == 0, result.output
    lines = {ln.split()[0]: ln.split()[1:] for ln in result.stdout.splitlines() if ln.strip()}
    assert lines["runs"][0] == "7"  # sweep, 2 trials, broken, discarded, train-v1, train-v2
    assert lines["experiments"][0] == "1"
    c = Client()
    try:
        assert [e.name for e in c.list_experiments("all")] == ["churn"]
        reg = c.store.registry  # type: ignore[attr-defined]
        assert [mv.version for mv in reg.list_versions("churn-model")] == [2, 1]
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["missing", "text", "other-db", "folder", "file-store"])
def test_not_an_mlflow_store(kind: str, tmp_path: Path, client: Client, keel_home: Path) -> None:
    path = tmp_path / "source"
    error: type[Exception] = InvalidSpecError
    if kind == "missing":
        error = NotFoundError
    elif kind == "text":
        path.write_text("just some text\n" * 100)
    elif kind == "other-db":
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE runs (id INTEGER)")
    elif kind == "folder":
        path.mkdir()
    else:
        (path / "0").mkdir(parents=True)
        (path / "0" / "meta.yaml").write_text("name: Default\n")
    with pytest.raises(error) as info:
        import_mlflow(client, path)
    message = str(info.value)
    assert "mlflow.db" in message and "http://host:5000" in message  # says what was expected
    assert str(path) in message
    if kind == "file-store":
        assert "file store" in message and "mlflow server" in message
    assert not keel_home.exists()


def test_unreachable_server_and_cli_errors(client: Client, keel_home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendUnavailableError, match="Cannot reach the MLflow server"):
        import_mlflow(client, f"http://127.0.0.1:{port}")
    result = CliRunner().invoke(cli.app, ["import", "mlflow", "--from", "no/such/mlflow.db"])
    assert result.exit_code == cli.EXIT_NOT_FOUND
    assert "Error: No MLflow store at" in result.stderr
    with pytest.raises(InvalidSpecError, match="s3://"):
        import_mlflow(client, "s3://bucket/mlruns")
    assert not keel_home.exists()


def test_mlmodel_spec_flags_pickle() -> None:
    skops = (
        "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n"
    )
    assert mlmodel_spec(skops, ["MLmodel", "model.skops"])["unsafe"] is False
    assert mlmodel_spec(skops.replace("skops\n", "cloudpickle\n"), ["MLmodel"])["unsafe"] is True
    torch = (
        "flavors:\n  pytorch:\n    model_data: data\n"
        "  python_function:\n    loader_module: mlflow.pytorch\n"
    )
    spec = mlmodel_spec(torch, ["MLmodel", "data/model.safetensors"])
    assert spec["unsafe"] is True and spec["mlflow_flavors"] == ["pytorch", "python_function"]
    custom = "flavors:\n  python_function:\n    loader_module: my_loader\n"
    assert mlmodel_spec(custom, ["MLmodel"])["unsafe"] is True
