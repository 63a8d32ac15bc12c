"""MLflow side of the tracking benchmark. Runs inside the pinned MLflow venv.

Usage (normally only via ``run.py``)::

    python mlflow_worker.py '<WorkerRequest JSON>'

Runs one workload in a fresh process against a SQLite store in the given
temporary directory (no tracking server) and prints one JSON object to stdout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from common import (
    ARTIFACT_NAME,
    EXPERIMENT,
    SEARCH_FILTER,
    SEARCH_ORDER_BY,
    WARM_UP_EXPERIMENT,
    Config,
    WorkerRequest,
    batch_points,
    chunks,
    emit,
    json_stdout,
    now,
    one_by_one_values,
    repeat,
    run_specs,
    sha256_file,
    summarize,
)


def _setup(workdir: Path) -> str:
    """Point MLflow at ``<workdir>/mlflow.db``; create the experiment. Not timed.

    Creating the first experiment runs MLflow's schema migrations (seconds); a
    warm-up run in its own experiment then loads everything lazily imported,
    exactly as keel's worker does, so no timing pays one-off start-up costs.
    """
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    artifacts = workdir / "mlartifacts"
    artifacts.mkdir()
    warm_up = mlflow.create_experiment(
        WARM_UP_EXPERIMENT, artifact_location=(artifacts / "warm-up").as_uri()
    )
    with mlflow.start_run(experiment_id=warm_up, run_name="warm-up"):
        mlflow.log_param("w", "1")
        mlflow.set_tags({"w": "1"})
        mlflow.log_metric("w", 1.0, step=0)
    bench = mlflow.create_experiment(EXPERIMENT, artifact_location=(artifacts / "bench").as_uri())
    return str(bench)


def log_metric(cfg: Config, workdir: Path, synchronous: bool) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient

    experiment_id = _setup(workdir)
    values = one_by_one_values(cfg)
    with mlflow.start_run(experiment_id=experiment_id, run_name="one-by-one") as run:
        t0 = now()
        if synchronous:
            for step, value in enumerate(values):
                mlflow.log_metric("loss", value, step=step)
        else:
            for step, value in enumerate(values):
                mlflow.log_metric("loss", value, step=step, synchronous=False)
            # Blocks until every queued metric is written to the store.
            mlflow.flush_async_logging()
        elapsed = now() - t0
        run_id = run.info.run_id
    stored = len(MlflowClient().get_metric_history(run_id, "loss"))
    return {
        "points": len(values),
        "seconds": elapsed,
        "points_per_s": len(values) / elapsed,
        "stored_points": stored,
        "mode": "sync" if synchronous else "async (synchronous=False + flush_async_logging)",
    }


def log_batch(cfg: Config, workdir: Path) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    experiment_id = _setup(workdir)
    client = MlflowClient()
    metrics = [
        Metric(key=k, value=v, timestamp=ts, step=step) for k, v, step, ts in batch_points(cfg)
    ]
    batches = list(chunks(metrics, cfg.batch_chunk))
    with mlflow.start_run(experiment_id=experiment_id, run_name="batch") as run:
        run_id = run.info.run_id
        client.get_run(run_id)  # open the client's store connection before timing
        t0 = now()
        for batch in batches:
            client.log_batch(run_id, metrics=batch)
        elapsed = now() - t0
    keys = sorted({m.key for m in metrics})
    stored = sum(len(client.get_metric_history(run_id, k)) for k in keys)
    return {
        "points": len(metrics),
        "calls": len(batches),
        "seconds": elapsed,
        "points_per_s": len(metrics) / elapsed,
        "stored_points": stored,
    }


def runs_and_search(cfg: Config, workdir: Path) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient

    experiment_id = _setup(workdir)
    specs = run_specs(cfg)
    t0 = now()
    for spec in specs:
        with mlflow.start_run(experiment_id=experiment_id, run_name=spec.name):
            mlflow.log_params(spec.params)
            mlflow.log_metrics(spec.metrics, step=0)
            mlflow.set_tags(spec.tags)
    create_s = now() - t0

    client = MlflowClient()

    def filtered() -> list[Any]:
        return list(
            client.search_runs(
                [experiment_id],
                filter_string=SEARCH_FILTER,
                order_by=SEARCH_ORDER_BY,
                max_results=cfg.search_max_results,
            )
        )

    def search_all() -> list[Any]:
        # One page of Run objects holds all runs (MLflow's limit is 50,000).
        page = client.search_runs([experiment_id], max_results=cfg.runs)
        runs = list(page)
        while page.token:
            page = client.search_runs([experiment_id], max_results=cfg.runs, page_token=page.token)
            runs.extend(page)
        return runs

    filtered_samples, filtered_runs = repeat(filtered, cfg.search_repeats)
    all_samples, all_runs = repeat(search_all, cfg.search_repeats)
    return {
        "runs": len(specs),
        "create_seconds": create_s,
        "runs_per_s": len(specs) / create_s,
        "filtered_search_s": summarize(filtered_samples),
        "filtered_names": [r.info.run_name for r in filtered_runs],
        "all_search_s": summarize(all_samples),
        "all_count": len(all_runs),
        # Sanity: the runs came back complete (params/metrics/tags populated).
        "all_first_param_count": len(all_runs[0].data.params) if all_runs else 0,
        "all_first_metric_count": len(all_runs[0].data.metrics) if all_runs else 0,
    }


def artifact(cfg: Config, workdir: Path, src: str) -> dict[str, Any]:
    import mlflow
    from mlflow.artifacts import download_artifacts

    experiment_id = _setup(workdir)
    size = os.path.getsize(src)
    dst_dir = workdir / "download"
    dst_dir.mkdir()
    with mlflow.start_run(experiment_id=experiment_id, run_name="artifact") as run:
        t0 = now()
        mlflow.log_artifact(src)
        upload_s = now() - t0
        run_id = run.info.run_id
    t0 = now()
    local = download_artifacts(run_id=run_id, artifact_path=ARTIFACT_NAME, dst_path=str(dst_dir))
    download_s = now() - t0
    return {
        "bytes": size,
        "upload_seconds": upload_s,
        "download_seconds": download_s,
        "upload_mb_s": size / 1e6 / upload_s,
        "download_mb_s": size / 1e6 / download_s,
        "roundtrip_sha256": sha256_file(local),
    }


def main() -> None:
    with json_stdout() as out:
        req = WorkerRequest.from_argv(sys.argv[1])
        cfg = Config.from_json(req.config)
        workdir = Path(req.workdir)
        import sqlite3

        import mlflow

        if req.workload == "log_metric_sync":
            result = log_metric(cfg, workdir, synchronous=True)
        elif req.workload == "log_metric_async":
            result = log_metric(cfg, workdir, synchronous=False)
        elif req.workload == "log_batch":
            result = log_batch(cfg, workdir)
        elif req.workload == "runs_and_search":
            result = runs_and_search(cfg, workdir)
        elif req.workload == "artifact":
            assert req.artifact_path is not None
            result = artifact(cfg, workdir, req.artifact_path)
        else:
            raise SystemExit(f"unknown workload {req.workload!r}")
        result["tool"] = "mlflow"
        result["version"] = mlflow.__version__
        result["sqlite_version"] = sqlite3.sqlite_version
        result["python"] = sys.version.split()[0]
        emit(out, result)


if __name__ == "__main__":
    main()
