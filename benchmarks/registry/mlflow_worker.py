"""MLflow side of the registry benchmark. Runs inside the pinned MLflow venv.

Usage (normally only via ``run.py``)::

    python mlflow_worker.py '<Request JSON>'

In a fresh process, against a SQLite tracking + registry store in the given
temporary directory (no server): logs one scikit-learn model in one run,
registers it ``versions`` times with ``mlflow.register_model`` (and as many
times again, into a second model, with ``MlflowClient().create_model_version``),
sets an alias on the first model, resolves it ``resolves`` times and loads the
model through the alias ``loads`` times. Prints one JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from registry_common import (
    ALIAS,
    EXPERIMENT,
    MODEL,
    MODEL_CLIENT,
    WARM_UP_MODEL,
    Config,
    Request,
    emit,
    json_stdout,
    latency,
    now,
    registration_profile,
    training_data,
)


def _setup(workdir: Path) -> str:
    """Point MLflow at ``<workdir>/mlflow.db`` and create the experiment. Not timed.

    Creating the first experiment runs MLflow's schema migrations (seconds).
    """
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    artifacts = workdir / "mlartifacts"
    artifacts.mkdir()
    return str(mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri()))


def run(cfg: Config, workdir: Path) -> dict[str, Any]:
    import mlflow
    import mlflow.models
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    experiment_id = _setup(workdir)
    X_list, y_list, X_pred_list = training_data(cfg)
    X, y, X_pred = np.array(X_list), np.array(y_list), np.array(X_pred_list)
    model = LogisticRegression(max_iter=1_000).fit(X, y)
    expected = model.predict(X_pred).tolist()

    # -- one run, one logged model (not timed) -------------------------------------------
    with mlflow.start_run(experiment_id=experiment_id, run_name="train") as active:
        mlflow.log_metric("accuracy", float(model.score(X, y)))
        mlflow.sklearn.log_model(model, name="model", input_example=X[:5])
        run_id = active.info.run_id
    source = f"runs:/{run_id}/model"
    flavor = mlflow.models.get_model_info(source).flavors["sklearn"]
    client = MlflowClient()
    # Warm-up (not timed): the first registration creates the registry tables' rows
    # and loads lazily imported code; it goes to a separate model.
    mlflow.register_model(source, WARM_UP_MODEL)

    # -- 1. register `versions` versions ---------------------------------------------------
    per_call: list[float] = []
    t0 = now()
    for _ in range(cfg.versions):
        t1 = now()
        mlflow.register_model(source, MODEL)
        per_call.append(now() - t1)
    register_s = now() - t0
    numbers = _version_numbers(client, MODEL, cfg)

    # -- 1b. the same through the client API: MlflowClient().create_model_version -----------
    # mlflow.register_model first tries create_registered_model; when the name exists,
    # MLflow's SQL store builds its error by loading the model with all its versions,
    # so each call costs more as versions accumulate. create_model_version skips that.
    # Same source and run as the versions above (MLflow 3 resolved runs:/ to the
    # logged model, models:/m-<id>); a separate model, created untimed.
    first = client.get_model_version(MODEL, "1")
    client.create_registered_model(MODEL_CLIENT)
    client_per_call: list[float] = []
    t0 = now()
    for _ in range(cfg.versions):
        t1 = now()
        client.create_model_version(MODEL_CLIENT, first.source, run_id=run_id)
        client_per_call.append(now() - t1)
    client_register_s = now() - t0
    client_numbers = _version_numbers(client, MODEL_CLIENT, cfg)

    # -- 2. alias + resolve ------------------------------------------------------------------
    t0 = now()
    client.set_registered_model_alias(MODEL, ALIAS, str(cfg.alias_version))
    set_alias_s = now() - t0
    client.get_model_version_by_alias(MODEL, ALIAS)  # warm-up, not timed
    resolve_samples: list[float] = []
    resolved: set[int] = set()
    for _ in range(cfg.resolves):
        t1 = now()
        mv = client.get_model_version_by_alias(MODEL, ALIAS)
        resolve_samples.append(now() - t1)
        resolved.add(int(mv.version))

    # -- 3. load through the alias + predict --------------------------------------------------
    uri = f"models:/{MODEL}@{ALIAS}"

    def load_loop(loader: Any) -> dict[str, Any]:
        t1 = now()
        first = loader(uri)
        first_preds = first.predict(X_pred).tolist()
        first_s = now() - t1
        load_s: list[float] = []
        total_s: list[float] = []
        predictions: list[list[int]] = [first_preds]
        for _ in range(cfg.loads):
            t1 = now()
            loaded = loader(uri)
            t2 = now()
            predictions.append(loaded.predict(X_pred).tolist())
            t3 = now()
            load_s.append(t2 - t1)
            total_s.append(t3 - t1)
        return {
            "first_load_predict_s": first_s,
            "load_s": latency(load_s),
            "load_predict_s": latency(total_s),
            "predictions_match": all(p == expected for p in predictions),
        }

    pyfunc = load_loop(mlflow.pyfunc.load_model)
    sklearn_native = load_loop(mlflow.sklearn.load_model)

    return {
        "register": {
            "versions": cfg.versions,
            "seconds": register_s,
            "versions_per_s": cfg.versions / register_s,
            "per_call_s": registration_profile(per_call),
            "stored_versions": len(numbers),
            "version_numbers_ok": numbers == list(range(1, cfg.versions + 1)),
            "api": "mlflow.register_model('runs:/<run_id>/model', name)",
        },
        "register_client": {
            "versions": cfg.versions,
            "seconds": client_register_s,
            "versions_per_s": cfg.versions / client_register_s,
            "per_call_s": registration_profile(client_per_call),
            "stored_versions": len(client_numbers),
            "version_numbers_ok": client_numbers == list(range(1, cfg.versions + 1)),
            "source": first.source,
            "api": "MlflowClient().create_model_version(name, source, run_id)",
        },
        "alias": {
            "set_alias_s": set_alias_s,
            "resolve_s": latency(resolve_samples),
            "resolved_versions": sorted(resolved),
            "api": "MlflowClient().get_model_version_by_alias(name, alias)",
        },
        "load": {**pyfunc, "api": "mlflow.pyfunc.load_model(uri).predict(X)"},
        "load_native": {**sklearn_native, "api": "mlflow.sklearn.load_model(uri).predict(X)"},
        "serialization_format": flavor.get("serialization_format"),
        "expected_predictions": expected,
        "sklearn_version": _dist_version("scikit-learn"),
    }


def _version_numbers(client: Any, name: str, cfg: Config) -> list[int]:
    """The stored version numbers of ``name``, sorted (read back after the timing)."""
    found = client.search_model_versions(f"name = '{name}'", max_results=cfg.versions + 100)
    return sorted(int(mv.version) for mv in found)


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main() -> None:
    with json_stdout() as out:
        req = Request.from_argv(sys.argv[1])
        cfg = Config.from_json(req.config)
        import sqlite3

        import mlflow

        result = run(cfg, Path(req.workdir))
        result["tool"] = "mlflow"
        result["version"] = mlflow.__version__
        result["sqlite_version"] = sqlite3.sqlite_version
        result["python"] = sys.version.split()[0]
        emit(out, result)


if __name__ == "__main__":
    main()
