"""keel's own client against ``keel server``. Runs inside the project venv.

Usage (normally only via ``run.py``)::

    KEEL_TRACKING_URI=http://127.0.0.1:<port> python keel_client_worker.py '<Request JSON>'

Uses ``keel.Client`` (``RestStore`` over HTTP) with the same calls, call for
call, as the MLflow worker: ``Client.log_batch`` with 1,000 points,
``Client.log_metric`` (synchronous, one request each; the fluent
``keel.log_metric`` would buffer), ``create_run`` + one ``log_batch`` per run,
and ``search_runs`` paged 1,000 at a time. Prints one JSON object to stdout.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from server_common import (
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
    summarize,
)


def _warm_up(client: Any, prefix: str) -> None:
    import keel

    exp = f"{prefix}-warm-up"
    run = client.create_run(exp, name="warm-up")
    client.log_batch(
        run.run_id, metrics=[keel.Metric("w", 1.0, 0, 0)], params={"w": "1"}, tags={"w": "1"}
    )
    client.log_metric(run.run_id, "w", 2.0, step=1)
    client.search_runs([exp], max_results=1)


def logging(client: Any, cfg: Config, prefix: str) -> dict[str, Any]:
    import keel

    exp = f"{prefix}-logging"
    metrics = [
        keel.Metric(key=k, value=v, step=step, timestamp=ts) for k, v, step, ts in batch_points(cfg)
    ]
    batches = list(chunks(metrics, cfg.batch_chunk))
    run_id = client.create_run(exp, name="batch").run_id
    t0 = now()
    for batch in batches:
        client.log_batch(run_id, metrics=batch)
    batch_s = now() - t0
    stored_b0 = len(client.get_metric_history(run_id, "b0"))

    values = one_by_one_values(cfg)
    single_id = client.create_run(exp, name="one-by-one").run_id
    base = int(time.time() * 1000)
    t0 = now()
    for step, value in enumerate(values):
        client.log_metric(single_id, "loss", value, step=step, timestamp=base + step)
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
    import keel

    exp = f"{prefix}-runs"
    specs = run_specs(cfg)
    base = int(time.time() * 1000)
    t0 = now()
    for spec in specs:
        run_id = client.create_run(exp, name=spec.name).run_id
        client.log_batch(
            run_id,
            metrics=[keel.Metric(k, v, 0, base) for k, v in spec.metrics.items()],
            params=spec.params,
            tags=spec.tags,
        )
    create_s = now() - t0

    def filtered() -> list[Any]:
        return list(
            client.search_runs(
                [exp],
                filter=SEARCH_FILTER,
                order_by=SEARCH_ORDER_BY,
                max_results=cfg.search_max_results,
            )
        )

    def search_all() -> list[Any]:
        found: list[Any] = []
        token: str | None = None
        while True:
            page = client.search_runs([exp], max_results=PAGE_SIZE, page_token=token)
            found.extend(page)
            token = page.next_page_token
            if not token:
                return found

    filtered_samples, filtered_runs = repeat(filtered, cfg.search_repeats)
    all_samples, all_runs = repeat(search_all, cfg.search_repeats)
    first = all_runs[0] if all_runs else None
    return {
        "runs": len(specs),
        "create_seconds": create_s,
        "runs_per_s": len(specs) / create_s,
        "filtered_search_s": summarize(filtered_samples),
        "filtered_names": [str(r.name) for r in filtered_runs],
        "all_search_s": summarize(all_samples),
        "all_count": len(all_runs),
        "all_unique": len({r.run_id for r in all_runs}),
        "all_first_counts": [len(first.params), len(first.metrics)] if first else None,
    }


def main() -> None:
    with json_stdout() as out:
        req = Request.from_argv(sys.argv[1])
        cfg = Config.from_json(req.config)
        if os.environ.get("KEEL_TRACKING_URI") != req.tracking_uri:
            raise SystemExit("KEEL_TRACKING_URI must be the server under test")
        from importlib.metadata import version

        import keel

        client = keel.Client()
        _warm_up(client, req.experiment_prefix)
        result: dict[str, Any] = {
            "client": "keel",
            "version": getattr(keel, "__version__", None) or version("keel"),
            "store": type(client.store).__name__,
        }
        for workload in req.workloads:
            if workload == "logging":
                result[workload] = logging(client, cfg, req.experiment_prefix)
            elif workload == "runs_and_search":
                result[workload] = runs_and_search(client, cfg, req.experiment_prefix)
            else:
                raise SystemExit(f"unknown workload {workload!r}")
        result["python"] = sys.version.split()[0]
        emit(out, result)


if __name__ == "__main__":
    main()
