"""Drive the official MLflow client against a keel server; print what it saw as JSON.

Run by tests/server/test_mlflow_compat.py with the Python of a venv holding
mlflow (not keel): ``python mlflow_client_script.py <keel run id> <work dir>``,
with ``MLFLOW_TRACKING_URI`` pointing at the server. The last stdout line is a
JSON object; the test asserts on it and on keel's own API afterwards.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils.rest_utils import MlflowHostCreds
from mlflow.utils.server_info import fetch_server_info
from sklearn.linear_model import LinearRegression

warnings.filterwarnings("ignore")  # MLflow's FutureWarnings (stages ...) are not under test

MODEL = "mlflow-compat-model"
out: dict[str, Any] = {}


def error_code(call: Any) -> str | None:
    """The MLflow error code a call fails with (None if it succeeds)."""
    try:
        call()
    except MlflowException as e:
        return str(e.error_code)
    return None


def main(keel_run_id: str, work: Path) -> None:
    client = MlflowClient()
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = X @ np.array([1.5, -2.0]) + 0.5
    model = LinearRegression().fit(X, y)
    expected = model.predict(X[:3]).tolist()

    # -- experiments -------------------------------------------------------------------------
    exp_id = mlflow.set_experiment("mlflow-compat").experiment_id  # get-by-name 404, create
    exp = client.get_experiment(exp_id)
    scratch = client.create_experiment("scratch-exp", tags={"team": "x"})
    client.delete_experiment(scratch)
    deleted_stage = client.get_experiment(scratch).lifecycle_stage
    client.restore_experiment(scratch)
    out["experiments"] = {
        "id": exp_id,
        "artifact_location": exp.artifact_location,
        "by_name": client.get_experiment_by_name("mlflow-compat").experiment_id,
        "deleted_stage": deleted_stage,
        "restored_stage": client.get_experiment(scratch).lifecycle_stage,
        "search": [e.name for e in mlflow.search_experiments(filter_string="name LIKE 'scratch%'")],
        "search_tags": [e.name for e in client.search_experiments(filter_string="tags.team = 'x'")],
        "default": client.get_experiment("0").name,
    }

    # -- a run: params, metrics, tags, artifacts, a model --------------------------------------
    (work / "notes.txt").write_text("keel + mlflow")
    (work / "data").mkdir()
    (work / "data" / "a.csv").write_text("x,y\n1,2\n")
    (work / "data" / "sub").mkdir()
    (work / "data" / "sub" / "b.txt").write_text("b")
    with mlflow.start_run(run_name="train") as run:
        run_id = run.info.run_id
        mlflow.log_param("alpha", 0.5)
        mlflow.log_params({"model": "ridge", "depth": 3})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"auc": 0.91, "f1": 0.8})
        mlflow.log_metric("nan_metric", float("nan"))
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"stage": "dev", "tmp": "x"})
        client.delete_tag(run_id, "tmp")
        mlflow.log_artifact(str(work / "notes.txt"))
        mlflow.log_artifacts(str(work / "data"), artifact_path="data")
        mlflow.log_dict({"lr": 0.1}, "config.json")
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL)
        with mlflow.start_run(run_name="child", nested=True) as child:
            child_id = child.info.run_id
            mlflow.log_metric("auc", 0.5)
    param_conflict = error_code(lambda: client.log_param(run_id, "alpha", 0.7))
    client.log_metric(run_id, "test_auc", 0.88)  # after the run ended: MLflow allows it
    client.log_artifact(run_id, str(work / "notes.txt"), artifact_path="late")
    got = mlflow.get_run(run_id)
    downloaded = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="data", dst_path=str(work / "dl")
        )
    )
    out["run"] = {
        "id": run_id,
        "child_id": child_id,
        "name": got.info.run_name,
        "status": got.info.status,
        "artifact_uri": got.info.artifact_uri,
        "params": got.data.params,
        "metrics": got.data.metrics,
        "tags": {k: v for k, v in got.data.tags.items() if not k.startswith("mlflow.source")},
        "outputs": [o.model_id for o in (got.outputs.model_outputs if got.outputs else [])],
        "child_parent": mlflow.get_run(child_id).data.tags.get("mlflow.parentRunId"),
        "history": [[m.step, m.value] for m in client.get_metric_history(run_id, "loss")],
        "artifacts": sorted(a.path for a in client.list_artifacts(run_id)),
        "data_artifacts": sorted(
            (a.path, a.is_dir, a.file_size) for a in client.list_artifacts(run_id, "data")
        ),
        "downloaded": sorted(
            str(p.relative_to(downloaded)) for p in downloaded.rglob("*") if p.is_file()
        ),
        "notes": Path(client.download_artifacts(run_id, "late/notes.txt", str(work))).read_text(),
        "param_conflict": param_conflict,
    }

    # -- search ---------------------------------------------------------------------------------
    flt = "metrics.auc > 0.9 and params.model = 'ridge' and tags.mlflow.runName = 'train'"
    found = mlflow.search_runs([exp_id], filter_string=flt, output_format="list")
    ordered = mlflow.search_runs([exp_id], order_by=["metrics.auc DESC"], output_format="list")
    frame = mlflow.search_runs([exp_id], filter_string="attributes.status = 'FINISHED'")
    client.delete_run(child_id)
    active = [r.info.run_id for r in client.search_runs([exp_id])]
    client.restore_run(child_id)
    out["search"] = {
        "filtered": [r.info.run_id for r in found],
        "ordered": [r.info.run_id for r in ordered],
        "frame_rows": len(frame),
        "frame_has_auc": "metrics.auc" in frame.columns,
        "active_after_delete": active,
        "restored": client.get_run(child_id).info.lifecycle_stage,
    }

    # -- logged models ----------------------------------------------------------------------------
    model_id = info.model_id
    client.set_logged_model_tags(model_id, {"reviewed": "yes", "tmp": "1"})
    client.delete_logged_model_tag(model_id, "tmp")
    client.log_model_params(model_id, {"extra": "1"})
    lm = client.get_logged_model(model_id)
    searched = client.search_logged_models([exp_id], filter_string="name = 'model'")
    external = mlflow.create_external_model(name="external", model_type="agent")
    client.delete_logged_model(external.model_id)
    standalone = mlflow.sklearn.log_model(  # outside any run; no requirements inference
        model, name="standalone", pip_requirements=["scikit-learn"]
    )
    out["logged"] = {
        "model_id": model_id,
        "model_uri": info.model_uri,
        "registered_version": info.registered_model_version,
        "status": str(lm.status),
        "source_run_id": lm.source_run_id,
        "artifact_location": lm.artifact_location,
        "tags": {k: v for k, v in lm.tags.items() if not k.startswith("mlflow.")},
        "params": lm.params,
        "model_versions_tag": json.loads(lm.tags.get("mlflow.modelVersions", "[]")),
        "searched": [m.model_id for m in searched],
        "external_status": str(external.status),
        "external_deleted": error_code(lambda: client.get_logged_model(external.model_id)),
        "standalone_id": standalone.model_id,
        "standalone_source": client.get_logged_model(standalone.model_id).source_run_id,
        "standalone_pred": mlflow.pyfunc.load_model(standalone.model_uri).predict(X[:3]).tolist(),
    }

    # -- registry ---------------------------------------------------------------------------
    v1 = str(info.registered_model_version)
    client.set_registered_model_alias(MODEL, "champion", v1)
    client.set_registered_model_alias(MODEL, "challenger", v1)
    client.delete_registered_model_alias(MODEL, "challenger")
    client.transition_model_version_stage(MODEL, v1, "Staging")
    client.update_model_version(MODEL, v1, description="first")
    client.set_model_version_tag(MODEL, v1, "validated", "yes")
    client.update_registered_model(MODEL, description="a linear model")
    v2 = mlflow.register_model(f"runs:/{run_id}/model", MODEL).version  # via logged-model search
    client.transition_model_version_stage(MODEL, v2, "Staging", archive_existing_versions=True)
    v3 = client.create_model_version(MODEL, f"models:/{model_id}", model_id=model_id).version
    client.transition_model_version_stage(MODEL, v3, "Production")
    client.delete_model_version(MODEL, v3)
    by_alias = client.get_model_version_by_alias(MODEL, "champion")
    rm = client.get_registered_model(MODEL)
    out["registry"] = {
        "versions": [v1, v2, v3],
        "alias_version": by_alias.version,
        "alias_source": by_alias.source,
        "alias_run_id": by_alias.run_id,
        "v1": {
            "stage": client.get_model_version(MODEL, v1).current_stage,
            "description": client.get_model_version(MODEL, v1).description,
            "tags": client.get_model_version(MODEL, v1).tags,
        },
        "v2_stage": client.get_model_version(MODEL, v2).current_stage,
        "model": {
            "description": rm.description,
            "aliases": rm.aliases,
            "latest": sorted((v.version, v.current_stage) for v in rm.latest_versions),
        },
        "search_models": [
            m.name for m in client.search_registered_models(filter_string="name LIKE 'mlflow-%'")
        ],
        "search_versions": sorted(
            v.version for v in client.search_model_versions(f"name = '{MODEL}'")
        ),
        "latest_staging": [v.version for v in client.get_latest_versions(MODEL, ["Staging"])],
        "download_uri": client.get_model_version_download_uri(MODEL, v1),
        "duplicate": error_code(lambda: client.create_registered_model(MODEL)),
        "deleted_v3": error_code(lambda: client.get_model_version(MODEL, v3)),
    }

    # -- loading models back -----------------------------------------------------------------------
    out["load"] = {
        "expected": expected,
        "alias": mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(X[:3]).tolist(),
        "stage": mlflow.pyfunc.load_model(f"models:/{MODEL}/Staging").predict(X[:3]).tolist(),
        "runs_uri": mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(X[:3]).tolist(),
        "sklearn": mlflow.sklearn.load_model(f"models:/{model_id}").predict(X[:3]).tolist(),
    }

    # -- a keel run, read through MLflow; errors; server info -------------------------------
    keel_run = mlflow.get_run(keel_run_id)
    host = mlflow.get_tracking_uri()
    client.create_registered_model("keel-native-model")
    native = client.create_model_version(
        "keel-native-model", f"runs:/{keel_run_id}/model", run_id=keel_run_id
    )
    out["keel_run"] = {
        "id": keel_run_id,
        "registered": {"version": native.version, "source": native.source},
        "name": keel_run.info.run_name,
        "status": keel_run.info.status,
        "params": keel_run.data.params,
        "metrics": keel_run.data.metrics,
        "tags": keel_run.data.tags,
        "artifacts": sorted(a.path for a in client.list_artifacts(keel_run_id)),
    }
    out["errors"] = {
        "missing_run": error_code(lambda: client.get_run("0" * 32)),
        "missing_model": error_code(lambda: client.get_registered_model("nope")),
        "missing_experiment": error_code(lambda: client.get_experiment("999999")),
        "bad_filter": error_code(lambda: client.search_runs([exp_id], "metrics.auc >")),
        "rename_run": error_code(lambda: client.set_tag(run_id, "mlflow.runName", "other")),
    }
    out["server_info"] = fetch_server_info(MlflowHostCreds(host)).data
    out["final_runs"] = sorted(r.info.run_name for r in client.search_runs([exp_id]))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
    print(json.dumps(out, default=str))
