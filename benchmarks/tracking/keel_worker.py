"""keel side of the tracking benchmark. Runs inside the project venv.

Usage (normally only via ``run.py``)::

    KEEL_HOME=<tmp>/.keel python keel_worker.py '<WorkerRequest JSON>'

Runs one workload in a fresh process against keel's default embedded SQLite
store under ``$KEEL_HOME`` (no server) and prints one JSON object to stdout.
Every timed section that logs metrics ends with ``keel.flush()``, so the
numbers are for durable data, not for filling an in-memory buffer.
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


def _stored_points(run_id: str, keys: list[str]) -> int | None:
    """Count the stored points of ``keys`` (outside any timing), if keel can tell."""
    import keel

    client = keel.Client()
    history = getattr(client, "get_metric_history", None)
    if history is None:
        return None
    return sum(len(history(run_id, key)) for key in keys)


def _warm_up() -> None:
    """Create the store and warm lazy imports before any timing (MLflow's side does too).

    Uses its own experiment so the benchmark experiment holds only benchmark runs.
    """
    import keel

    with keel.start_run(experiment=WARM_UP_EXPERIMENT, run_name="warm-up"):
        keel.log_params({"w": "1"})
        keel.set_tags({"w": "1"})
        keel.log_metric("w", 1.0, step=0)
        keel.flush()


def log_metric(cfg: Config) -> dict[str, Any]:
    import keel

    _warm_up()
    values = one_by_one_values(cfg)
    with keel.start_run(experiment=EXPERIMENT, run_name="one-by-one") as run:
        t0 = now()
        for step, value in enumerate(values):
            keel.log_metric("loss", value, step=step)
        keel.flush()
        elapsed = now() - t0
        run_id = run.run_id
    return {
        "points": len(values),
        "seconds": elapsed,
        "points_per_s": len(values) / elapsed,
        "stored_points": _stored_points(run_id, ["loss"]),
        "mode": "log_metric + flush",
    }


def log_batch(cfg: Config) -> dict[str, Any]:
    import keel

    _warm_up()
    client = keel.Client()
    metrics = [
        keel.Metric(key=k, value=v, step=step, timestamp=ts) for k, v, step, ts in batch_points(cfg)
    ]
    batches = list(chunks(metrics, cfg.batch_chunk))
    with keel.start_run(experiment=EXPERIMENT, run_name="batch") as run:
        run_id = run.run_id
        client.get_run(run_id)  # open the client's store connection before timing
        t0 = now()
        for batch in batches:
            client.log_batch(run_id, metrics=batch)
        keel.flush()
        elapsed = now() - t0
    keys = sorted({m.key for m in metrics})
    return {
        "points": len(metrics),
        "calls": len(batches),
        "seconds": elapsed,
        "points_per_s": len(metrics) / elapsed,
        "stored_points": _stored_points(run_id, keys),
    }


def _run_name(run: Any) -> str:
    return str(run.name)


def runs_and_search(cfg: Config) -> dict[str, Any]:
    import keel

    _warm_up()
    specs = run_specs(cfg)
    t0 = now()
    for spec in specs:
        with keel.start_run(experiment=EXPERIMENT, run_name=spec.name):
            keel.log_params(spec.params)
            keel.log_metrics(spec.metrics, step=0)
            keel.set_tags(spec.tags)
    keel.flush()
    create_s = now() - t0

    def filtered() -> list[Any]:
        return list(
            keel.search_runs(
                experiments=[EXPERIMENT],
                filter=SEARCH_FILTER,
                order_by=SEARCH_ORDER_BY,
                max_results=cfg.search_max_results,
            )
        )

    def search_all() -> list[Any]:
        return list(keel.search_runs(experiments=[EXPERIMENT], max_results=cfg.runs))

    filtered_samples, filtered_runs = repeat(filtered, cfg.search_repeats)
    all_samples, all_runs = repeat(search_all, cfg.search_repeats)
    return {
        "runs": len(specs),
        "create_seconds": create_s,
        "runs_per_s": len(specs) / create_s,
        "filtered_search_s": summarize(filtered_samples),
        "filtered_names": [_run_name(r) for r in filtered_runs],
        "all_search_s": summarize(all_samples),
        "all_count": len(all_runs),
        "all_first_param_count": len(all_runs[0].params) if all_runs else 0,
        "all_first_metric_count": len(all_runs[0].metrics) if all_runs else 0,
    }


def artifact(cfg: Config, workdir: Path, src: str) -> dict[str, Any]:
    import keel

    _warm_up()
    size = os.path.getsize(src)
    dst_dir = workdir / "download"
    dst_dir.mkdir()
    with keel.start_run(experiment=EXPERIMENT, run_name="artifact") as run:
        t0 = now()
        keel.log_artifact(src)
        upload_s = now() - t0
        run_id = run.run_id
    t0 = now()
    local = keel.download_artifact(run_id, ARTIFACT_NAME, str(dst_dir / ARTIFACT_NAME))
    download_s = now() - t0
    return {
        "bytes": size,
        "upload_seconds": upload_s,
        "download_seconds": download_s,
        "upload_mb_s": size / 1e6 / upload_s,
        "download_mb_s": size / 1e6 / download_s,
        "roundtrip_sha256": sha256_file(str(local)),
    }


def _keel_version() -> str:
    import keel

    version = getattr(keel, "__version__", None)
    if version:
        return str(version)
    from importlib.metadata import version as dist_version

    return dist_version("keel")


def main() -> None:
    with json_stdout() as out:
        req = WorkerRequest.from_argv(sys.argv[1])
        cfg = Config.from_json(req.config)
        workdir = Path(req.workdir)
        import sqlite3

        if not os.environ.get("KEEL_HOME", "").startswith(str(workdir)):
            raise SystemExit("KEEL_HOME must point into the worker's temporary directory")
        if req.workload == "log_metric":
            result = log_metric(cfg)
        elif req.workload == "log_batch":
            result = log_batch(cfg)
        elif req.workload == "runs_and_search":
            result = runs_and_search(cfg)
        elif req.workload == "artifact":
            assert req.artifact_path is not None
            result = artifact(cfg, workdir, req.artifact_path)
        else:
            raise SystemExit(f"unknown workload {req.workload!r}")
        result["tool"] = "keel"
        result["version"] = _keel_version()
        result["sqlite_version"] = sqlite3.sqlite_version
        result["python"] = sys.version.split()[0]
        emit(out, result)


if __name__ == "__main__":
    main()
