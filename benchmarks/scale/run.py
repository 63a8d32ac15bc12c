"""Scale benchmark: search and history latency on a store with 100k runs / 100M points.

    python benchmarks/scale/run.py --runs 100000 --points-per-run 1000

Builds the store through keel's own store API (batched ``log_points``, one
transaction per run), then times the queries the UI and users issue, and
prints the store's size on disk. Defaults give 100k runs x 1,000 points = 100M
metric points; pass smaller numbers for a quick look. Keep the generated store
with ``--keep DIR`` and re-run only the queries with ``--reuse DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from keel.store import SqlStore

console = Console()
N_METRICS = 10


def build(store: SqlStore, runs: int, points_per_run: int) -> float:
    rng = random.Random(0)
    exp = store.create_experiment("scale").experiment_id
    steps = max(1, points_per_run // N_METRICS)
    t0 = time.perf_counter()
    base_us = 1_700_000_000_000_000
    with Progress(
        TextColumn("[bold]building"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} runs"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("runs", total=runs)
        for i in range(runs):
            run = store.create_run(exp, name=f"run-{i}", start_time=1_700_000_000_000 + i)
            auc = rng.random()
            points = [
                (f"m{k}", auc if k == 0 else rng.random(), s, base_us + s)
                for k in range(N_METRICS)
                for s in range(steps)
            ]
            # the last step of m0 is the run's "auc"
            store.log_points(
                run.run_id,
                points,
                params={f"p{k}": f"v{rng.randrange(10)}" for k in range(10)},
                tags={f"t{k}": f"x{rng.randrange(5)}" for k in range(5)},
            )
            if i % 2 == 0:
                store.end_run(run.run_id)
            bar.advance(task)
    return time.perf_counter() - t0


def timed(fn, repeat: int = 5) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--points-per-run", type=int, default=1000)
    ap.add_argument("--url", help="store URL (default: a fresh SQLite file)")
    ap.add_argument("--keep", help="build the SQLite store in this folder and keep it")
    ap.add_argument("--reuse", help="only query an existing store built with --keep")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()

    folder = Path(args.reuse or args.keep or tempfile.mkdtemp(prefix="keel-scale-"))
    url = args.url or f"sqlite:///{folder / 'keel.db'}"
    store = SqlStore(url)
    build_s = None
    if not args.reuse:
        build_s = build(store, args.runs, args.points_per_run)
    exp = store.get_experiment_by_name("scale").experiment_id
    some_run = store.search_runs([exp], max_results=1, order_by=["run_name"])[0][0].run_id

    queries = {
        "top 100 by metric, filtered": lambda: store.search_runs(
            [exp],
            filter="metrics.m0 > 0.5 and params.p0 = 'v1'",
            order_by=["metrics.m0 DESC"],
            max_results=100,
        ),
        "first page (100), default order": lambda: store.search_runs([exp], max_results=100),
        "or / in / like filter, 100": lambda: store.search_runs(
            [exp],
            filter="(params.p1 in ('v1', 'v2') or tags.t0 = 'x3') and run_name like 'run-1%'",
            max_results=100,
        ),
        "status + metric range, all matches": lambda: store.search_runs(
            [exp],
            filter="status = 'FINISHED' and metrics.m1 >= 0.25 and metrics.m1 < 0.26",
            max_results=10_000,
        ),
        "page 50 (offset 4,900)": lambda: store.search_runs(
            [exp], max_results=100, page_token=_token(4900), order_by=["metrics.m2 DESC"]
        ),
        "get_run": lambda: store.get_run(some_run),
        "metric history (1 key)": lambda: store.get_metric_history(some_run, "m3"),
    }
    table = Table(title=f"keel store at scale ({url.split(':')[0]})")
    table.add_column("query")
    table.add_column("median", justify="right")
    table.add_column("min", justify="right")
    table.add_column("rows", justify="right")
    results: dict[str, object] = {}
    for name, fn in queries.items():
        out = fn()
        rows = len(out[0]) if isinstance(out, tuple) else (len(out) if isinstance(out, list) else 1)
        med, best = timed(fn)
        results[name] = {"median_s": med, "min_s": best, "rows": rows}
        table.add_row(name, f"{med * 1000:.1f} ms", f"{best * 1000:.1f} ms", f"{rows:,}")
    console.print(table)
    size = None
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///") :])
        size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    total_points = args.runs * max(1, args.points_per_run // N_METRICS) * N_METRICS
    summary = {
        "runs": args.runs,
        "metric_points": total_points,
        "build_seconds": build_s,
        "points_per_second_build": total_points / build_s if build_s else None,
        "store_bytes": size,
        "bytes_per_point": size / total_points if size else None,
        "queries": results,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    console.print_json(json.dumps({k: v for k, v in summary.items() if k != "queries"}))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    store.close()
    if not (args.keep or args.reuse or args.url):
        shutil.rmtree(folder, ignore_errors=True)


def _token(offset: int) -> str:
    from keel.store.sql import _encode_token

    return _encode_token(offset)


if __name__ == "__main__":
    main()
