"""Create realistic MLflow stores for the importer tests (run with MLflow's own python).

``python make_mlflow_store.py build OUT_DIR`` builds the same content twice:

* ``OUT_DIR/local``: logged straight to ``mlflow.db`` there, artifacts in local folders;
* ``OUT_DIR/served``: logged through MLflow's tracking server app (its Flask app on
  werkzeug, in a forked child; artifacts proxied through the mlflow-artifacts API
  into ``served/artifacts``).

``python make_mlflow_store.py serve OUT_DIR/served`` serves that second store again,
prints ``READY <url>`` and stops when stdin is closed. Each store gets:

* experiment ``churn`` (default artifact root, tags, a description): a parent run
  with two nested children, metric histories with explicit steps and timestamps
  (a NaN point, two points sharing step and timestamp), params, tags, artifacts;
  a FAILED run, a deleted run, and two runs logging a scikit-learn model registered
  as versions 1 (skops) and 2 (cloudpickle) of ``churn-model``;
* experiment ``vision`` with an explicit ``file://`` artifact root: a run still
  RUNNING, a SCHEDULED one, a KILLED one with artifacts;
* experiment ``old``, deleted, with one run;
* ``churn-model``: description, tags, version descriptions and tags, version 1 in
  Production, version 2 in Staging, alias ``champion`` on version 1.

Each store's folder gets ``expected.json``: everything read back through
``MlflowClient`` (runs with params, tags and every metric point; artifact files
with size and SHA-256; registered models and versions), which the tests compare
keel's copy against.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from sklearn.linear_model import LogisticRegression

T0 = 1_700_000_000_000  # ms: metric timestamps are explicit so the test can compare them


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(client: MlflowClient, out: Path) -> None:
    """Log the runs, models and registry objects described in the module docstring."""
    churn = client.create_experiment(
        "churn", tags={"team": "growth", "mlflow.note.content": "Customer churn models."}
    )
    ext_root = (out / "ext-artifacts").resolve().as_uri()
    vision = client.create_experiment("vision", artifact_location=ext_root)
    old = client.create_experiment("old")

    scratch = Path(tempfile.mkdtemp())
    (scratch / "report").mkdir()
    (scratch / "report" / "summary.txt").write_text("precision 0.91\nrecall 0.88\n")
    (scratch / "report" / "deep").mkdir()
    (scratch / "report" / "deep" / "data.bin").write_bytes(bytes(range(256)) * 40)

    mlflow.set_experiment(experiment_id=churn)
    with mlflow.start_run(run_name="sweep", description="A small sweep."):
        mlflow.log_params({"sweep": "grid", "n_trials": 2})
        mlflow.set_tags({"stage": "dev", "owner": "ana"})
        mlflow.log_artifact(str(scratch / "report" / "summary.txt"))
        for i, lr in enumerate((0.1, 0.01)):
            with mlflow.start_run(run_name=f"trial-{i}", nested=True) as child:
                mlflow.log_params({"lr": lr, "depth": 3 + i, "optimizer": "adam"})
                metrics = [Metric("loss", 1.0 / (s + 1) + i, T0 + 1000 * s, s) for s in range(6)]
                metrics.append(Metric("loss", float("nan"), T0 + 9000, 6))
                metrics += [Metric("acc", 0.5 + 0.05 * s, T0 + 500 * s, s) for s in range(4)]
                metrics.append(Metric("val/auc", 0.8 + i / 10, T0, 0))
                # two points sharing key, step and timestamp (MLflow keeps both)
                metrics += [Metric("dup", 1.0, T0, 0), Metric("dup", 2.0, T0, 0)]
                client.log_batch(
                    child.info.run_id,
                    metrics=metrics,
                    params=[Param("batch size", "32")],
                    tags=[RunTag("trial", str(i))],
                )
                mlflow.log_artifacts(str(scratch / "report"), artifact_path="report")
                mlflow.log_dict({"lr": lr, "layers": [8, 4]}, "config/params.json")

    with mlflow.start_run(run_name="broken") as broken:
        mlflow.log_param("seed", 7)
        mlflow.log_metric("loss", 3.5, step=0, timestamp=T0)
    client.set_terminated(broken.info.run_id, status="FAILED", end_time=T0 + 60_000)

    with mlflow.start_run(run_name="discarded") as discarded:
        mlflow.log_metric("loss", 9.0, step=0, timestamp=T0)
    client.delete_run(discarded.info.run_id)

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]])
    y = np.array([0, 1, 0, 1, 0, 1])
    for version, fmt in ((1, "skops"), (2, "cloudpickle")):
        with mlflow.start_run(run_name=f"train-v{version}"):
            model = LogisticRegression(C=float(version)).fit(X, y)
            mlflow.log_param("C", float(version))
            mlflow.log_metric("train_acc", float(model.score(X, y)), step=0, timestamp=T0)
            mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format=fmt,
                registered_model_name="churn-model",
                pip_requirements=["scikit-learn"],  # skips slow requirement inference
            )

    client.update_registered_model("churn-model", description="Predicts churn.")
    client.set_registered_model_tag("churn-model", "domain", "retention")
    client.update_model_version("churn-model", "1", description="First model.")
    client.set_model_version_tag("churn-model", "1", "validated", "yes")
    client.transition_model_version_stage("churn-model", "1", "Production")
    client.transition_model_version_stage("churn-model", "2", "Staging")
    client.set_registered_model_alias("churn-model", "champion", "1")

    mlflow.set_experiment(experiment_id=vision)
    running = client.create_run(vision, run_name="still-running", tags={"gpu": "a100"})
    client.log_batch(
        running.info.run_id,
        metrics=[Metric("throughput", 100.0 + s, T0 + s, s) for s in range(50)],
        params=[Param("batch", "64")],
    )
    scheduled = client.create_run(vision, run_name="queued")
    client.update_run(scheduled.info.run_id, status="SCHEDULED")
    with mlflow.start_run(run_name="aborted") as aborted:
        mlflow.log_metric("loss", 0.7, step=3, timestamp=T0 + 3)
        mlflow.log_text("stopped by user\n", "logs/stop.txt")
    client.set_terminated(aborted.info.run_id, status="KILLED", end_time=T0 + 5000)

    mlflow.set_experiment(experiment_id=old)
    with mlflow.start_run(run_name="legacy"):
        mlflow.log_metric("loss", 2.0, step=0, timestamp=T0)
    client.delete_experiment(old)


def list_files(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    """Every artifact file of a run, recursively."""
    found: list[str] = []
    for info in client.list_artifacts(run_id, path):
        found += list_files(client, run_id, info.path) if info.is_dir else [info.path]
    return found


def value(v: float) -> float | str:
    return "NaN" if math.isnan(v) else v


def dump(client: MlflowClient) -> dict[str, Any]:
    """What the store holds, read back through MLflow's own client."""
    data: dict[str, Any] = {"experiments": [], "runs": [], "models": [], "logged_models": []}
    exps = client.search_experiments(view_type=3)
    for exp in exps:
        data["experiments"].append(
            {
                "id": exp.experiment_id,
                "name": exp.name,
                "lifecycle_stage": exp.lifecycle_stage,
                "tags": dict(exp.tags),
            }
        )
    runs = client.search_runs([e.experiment_id for e in exps], run_view_type=3, max_results=1000)
    download = Path(tempfile.mkdtemp())
    for run in runs:
        rid = run.info.run_id
        history = {}
        for key in run.data.metrics:
            points = client.get_metric_history(rid, key)
            history[key] = sorted([p.step, p.timestamp, value(p.value)] for p in points)
        artifacts = {}
        for path in list_files(client, rid):
            local = client.download_artifacts(rid, path, str(download))
            blob = Path(local).read_bytes()
            artifacts[path] = {"size": len(blob), "sha256": sha256(blob)}
        data["runs"].append(
            {
                "run_id": rid,
                "experiment_id": run.info.experiment_id,
                "name": run.info.run_name,
                "status": run.info.status,
                "start_time": run.info.start_time,
                "end_time": run.info.end_time,
                "lifecycle_stage": run.info.lifecycle_stage,
                "user": run.info.user_id,
                "params": dict(run.data.params),
                "tags": dict(run.data.tags),
                "metrics": history,
                "artifacts": artifacts,
            }
        )
    for exp in exps:
        for lm in client.search_logged_models(experiment_ids=[exp.experiment_id]):
            files = {}
            # from its location: a models:/ download would add a registered_model_meta file
            root = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=lm.artifact_location, dst_path=tempfile.mkdtemp()
                )
            )
            for f in sorted(p for p in root.rglob("*") if p.is_file()):
                blob = f.read_bytes()
                files[f.relative_to(root).as_posix()] = {"size": len(blob), "sha256": sha256(blob)}
            data["logged_models"].append(
                {
                    "model_id": lm.model_id,
                    "name": lm.name,
                    "run_id": lm.source_run_id,
                    "files": files,
                }
            )
    for rm in client.search_registered_models():
        versions = []
        for mv in client.search_model_versions(f"name = '{rm.name}'"):
            versions.append(
                {
                    "version": int(mv.version),
                    "run_id": mv.run_id,
                    "source": mv.source,
                    "model_id": getattr(mv, "model_id", None),
                    "stage": mv.current_stage,
                    "description": mv.description,
                    "tags": dict(mv.tags),
                    "aliases": list(mv.aliases),
                }
            )
        data["models"].append(
            {
                "name": rm.name,
                "description": rm.description,
                "tags": dict(rm.tags),
                "aliases": dict(rm.aliases),
                "versions": sorted(versions, key=lambda v: v["version"]),
            }
        )
    return data


def _server_env(out: Path) -> None:
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = f"sqlite:///{out / 'mlflow.db'}"
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = "mlflow-artifacts:/"
    os.environ["_MLFLOW_SERVER_ARTIFACT_DESTINATION"] = str(out / "artifacts")
    os.environ["_MLFLOW_SERVER_SERVE_ARTIFACTS"] = "true"


def fork_server(out: Path) -> tuple[str, int]:
    """Serve MLflow's tracking server app over ``out/mlflow.db`` from a forked child.

    A child process, because the server's handlers set the process-wide tracking URI
    to the database, which would send this process's client around the server. The
    child imports the server while this process builds the local store.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # the server: stops when the parent is gone
        _server_env(out)
        from mlflow.server import app
        from werkzeug.serving import make_server

        parent = os.getppid()

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)

        threading.Thread(target=watch, daemon=True).start()
        make_server("127.0.0.1", port, app, threaded=True, fd=sock.fileno()).serve_forever()
        os._exit(0)
    sock.close()
    return f"http://127.0.0.1:{port}", pid


def build_all(out: Path) -> None:
    """Build both stores and their expected.json files."""
    local, served = out / "local", out / "served"
    for folder in (local, served):
        folder.mkdir(parents=True, exist_ok=True)
    url, child = fork_server(served)
    try:
        os.chdir(local)  # a sqlite store puts its default artifact root (./mlruns) here
        for uri, folder in ((f"sqlite:///{local / 'mlflow.db'}", local), (url, served)):
            mlflow.set_tracking_uri(uri)
            client = MlflowClient(uri)
            build(client, folder)
            expected = json.dumps(dump(client), indent=1, sort_keys=True)
            (folder / "expected.json").write_text(expected)
    finally:
        os.kill(child, signal.SIGTERM)
        os.waitpid(child, 0)


def serve(out: Path) -> None:
    """Serve a built store until stdin is closed."""
    _server_env(out)
    from mlflow.server import app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"READY http://127.0.0.1:{server.server_port}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2]).resolve()
    if mode == "build":
        build_all(folder)
    else:
        serve(folder)
