"""MLflow's official client against a tracking server. Runs inside the pinned MLflow venv.

Usage (normally only via ``run.py``)::

    python mlflow_client_worker.py '<Request JSON>'

The same script drives ``mlflow server`` and ``keel server`` (whose
MLflow-compatible API is at ``/api/2.0/mlflow``): only ``Request.tracking_uri``
differs. Every call is one HTTP request made by ``mlflow.MlflowClient``; the
worker prints one JSON object to stdout.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from server_common import (
    ARTIFACT_NAME,
    PAGE_SIZE,
    SEARCH_FILTER,
    SEARCH_ORDER_BY,
    Config,
    Request,
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


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    return str(exp.experiment_id if exp else client.create_experiment(name))


def _warm_up(client: Any, prefix: str) -> None:
    """One untimed run with a param, tag, metric and search: connections and lazy imports."""
    from mlflow.entities import Metric, Param, RunTag

    exp_id = _experiment(client, f"{prefix}-warm-up")
    run = client.create_run(exp_id, run_name="warm-up")
    client.log_batch(
        run.info.run_id,
        metrics=[Metric("w", 1.0, 0, 0)],
        params=[Param("w", "1")],
        tags=[RunTag("w", "1")],
    )
    client.log_metric(run.info.run_id, "w", 2.0, step=1)
    client.search_runs([exp_id], max_results=1)


def logging(client: Any, cfg: Config, prefix: str) -> dict[str, Any]:
    from mlflow.entities import Metric

    exp_id = _experiment(client, f"{prefix}-logging")
    metrics = [Metric(k, v, ts, step) for k, v, step, ts in batch_points(cfg)]
    batches = list(chunks(metrics, cfg.batch_chunk))
    run_id = client.create_run(exp_id, run_name="batch").info.run_id
    t0 = now()
    for batch in batches:
        client.log_batch(run_id, metrics=batch)
    batch_s = now() - t0
    stored_b0 = len(client.get_metric_history(run_id, "b0"))

    values = one_by_one_values(cfg)
    single_id = client.create_run(exp_id, run_name="one-by-one").info.run_id
    base = int(time.time() * 1000)
    t0 = now()
    for step, value in enumerate(values):
        client.log_metric(single_id, "loss", value, timestamp=base + step, step=step)
    single_s = now() - t0
    stored_single = len(client.get_metric_history(single_id, "loss"))
    return {
        "batch": {
            "points": len(metrics),
            "calls": len(batches),
            "seconds": batch_s,
            "points_per_s": len(metrics) / batch_s,
            "stored_points_b0": stored_b0,
            "expected_points_b0": len(metrics) // cfg.batch_keys,
        },
        "single": {
            "points": len(values),
            "seconds": single_s,
            "points_per_s": len(values) / single_s,
            "stored_points": stored_single,
        },
    }


def runs_and_search(client: Any, cfg: Config, prefix: str) -> dict[str, Any]:
    from mlflow.entities import Metric, Param, RunTag

    exp_id = _experiment(client, f"{prefix}-runs")
    specs = run_specs(cfg)
    base = int(time.time() * 1000)
    t0 = now()
    for spec in specs:
        run_id = client.create_run(exp_id, run_name=spec.name).info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, base, 0) for k, v in spec.metrics.items()],
            params=[Param(k, v) for k, v in spec.params.items()],
            tags=[RunTag(k, v) for k, v in spec.tags.items()],
        )
    create_s = now() - t0

    def filtered() -> list[Any]:
        return list(
            client.search_runs(
                [exp_id],
                filter_string=SEARCH_FILTER,
                order_by=SEARCH_ORDER_BY,
                max_results=cfg.search_max_results,
            )
        )

    def search_all() -> list[Any]:
        found: list[Any] = []
        token: str | None = None
        while True:
            page = client.search_runs([exp_id], max_results=PAGE_SIZE, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    filtered_samples, filtered_runs = repeat(filtered, cfg.search_repeats)
    all_samples, all_runs = repeat(search_all, cfg.search_repeats)
    first = all_runs[0].data if all_runs else None
    return {
        "runs": len(specs),
        "create_seconds": create_s,
        "runs_per_s": len(specs) / create_s,
        "filtered_search_s": summarize(filtered_samples),
        "filtered_names": [r.info.run_name for r in filtered_runs],
        "all_search_s": summarize(all_samples),
        "all_count": len(all_runs),
        "all_unique": len({r.info.run_id for r in all_runs}),
        "all_first_counts": [len(first.params), len(first.metrics)] if first else None,
    }


def artifact(client: Any, cfg: Config, prefix: str, workdir: Path, src: str) -> dict[str, Any]:
    exp_id = _experiment(client, f"{prefix}-artifact")
    size = os.path.getsize(src)
    run_id = client.create_run(exp_id, run_name="artifact").info.run_id
    t0 = now()
    client.log_artifact(run_id, src)
    upload_s = now() - t0
    dst = workdir / "download"
    dst.mkdir()
    t0 = now()
    local = client.download_artifacts(run_id, ARTIFACT_NAME, str(dst))
    download_s = now() - t0
    mib = size / 2**20
    return {
        "bytes": size,
        "upload_seconds": upload_s,
        "download_seconds": download_s,
        "upload_mib_s": mib / upload_s,
        "download_mib_s": mib / download_s,
        "roundtrip_sha256": sha256_file(local),
        "artifact_uri": client.get_run(run_id).info.artifact_uri,
    }


def main() -> None:
    with json_stdout() as out:
        req = Request.from_argv(sys.argv[1])
        cfg = Config.from_json(req.config)
        import mlflow

        client = _client(req.tracking_uri)
        _warm_up(client, req.experiment_prefix)
        result: dict[str, Any] = {"client": "mlflow", "version": mlflow.__version__}
        for workload in req.workloads:
            if workload == "logging":
                result[workload] = logging(client, cfg, req.experiment_prefix)
            elif workload == "runs_and_search":
                result[workload] = runs_and_search(client, cfg, req.experiment_prefix)
            elif workload == "artifact":
                assert req.artifact_path is not None
                result[workload] = artifact(
                    client, cfg, req.experiment_prefix, Path(req.workdir), req.artifact_path
                )
            else:
                raise SystemExit(f"unknown workload {workload!r}")
        result["python"] = sys.version.split()[0]
        emit(out, result)


if __name__ == "__main__":
    main()
