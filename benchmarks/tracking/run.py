#!/usr/bin/env python
"""Side-by-side benchmark of keel's experiment tracking against MLflow.

One command runs everything::

    python benchmarks/tracking/run.py

It (1) makes sure MLflow 3.17.2 is installed in its own pinned venv under
``benchmarks/.venvs/`` (created with ``uv`` on first use, reused afterwards),
(2) measures this machine's raw copy speed for the artifact file, (3) runs
every workload for each tool in a fresh worker process and a fresh temporary
directory, both on SQLite without a server, (4) checks that both tools stored
and returned the right data, and (5) prints a table and writes
``benchmarks/tracking/results.json``. keel runs with the interpreter running
this script (the project venv). See ``README.md`` beside this file.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _harness as h  # noqa: E402
from _harness import (  # noqa: E402
    MLFLOW_VERSION,
    ensure_mlflow_venv,
    fmt_number,
    load_average,
    load_note,
    log,
    machine_info,
)
from common import (  # noqa: E402
    SEARCH_FILTER,
    SEARCH_ORDER_BY,
    Config,
    WorkerRequest,
    expected_filtered_names,
    now,
    summarize,
    write_artifact,
)

RESULTS_PATH = HERE / "results.json"
WORKER_TIMEOUT_S = 1_800
RAW_COPY_REPEATS = 5

QUICK = Config(
    one_by_one_points=200,
    batch_points=10_000,
    runs=200,
    search_max_results=20,
    search_repeats=3,
    artifact_bytes=5_000_000,
)

# (tool, workload) pairs, in the order they run.
JOBS: list[tuple[str, str]] = [
    ("mlflow", "log_metric_sync"),
    ("mlflow", "log_metric_async"),
    ("keel", "log_metric"),
    ("mlflow", "log_batch"),
    ("keel", "log_batch"),
    ("mlflow", "runs_and_search"),
    ("keel", "runs_and_search"),
    ("mlflow", "artifact"),
    ("keel", "artifact"),
]


def check_keel() -> str | None:
    """Return an error message if keel cannot be imported by this interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", "import keel"], capture_output=True, text=True, check=False
    )
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


# ---------------------------------------------------------------------- raw disk


def raw_copy_speeds(src: Path, scratch: Path) -> dict[str, Any]:
    """This machine's raw copy speed for ``src``: shutil.copyfile and a read+write loop."""
    size = src.stat().st_size
    dst = scratch / "raw-copy.bin"

    def copyfile() -> None:
        shutil.copyfile(src, dst)

    def read_write_loop() -> None:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            while block := fin.read(1 << 20):
                fout.write(block)

    def copyfile_fsync() -> None:  # informational: what durability costs on this disk
        shutil.copyfile(src, dst)
        with open(dst, "rb+") as fh:
            os.fsync(fh.fileno())

    result: dict[str, Any] = {"bytes": size, "repeats": RAW_COPY_REPEATS}
    measures = (
        ("copyfile", copyfile),
        ("read_write_loop", read_write_loop),
        ("copyfile_fsync", copyfile_fsync),
    )
    for name, fn in measures:
        samples: list[float] = []
        for _ in range(RAW_COPY_REPEATS):
            dst.unlink(missing_ok=True)
            t0 = now()
            fn()
            samples.append(now() - t0)
        dst.unlink(missing_ok=True)
        result[name] = {
            "seconds": summarize(samples),
            "mb_s": size / 1e6 / statistics.median(samples),
        }
    result["best_mb_s"] = max(result["copyfile"]["mb_s"], result["read_write_loop"]["mb_s"])
    return result


# ----------------------------------------------------------------------- workers


def run_worker(
    tool: str, python: Path, workload: str, cfg: Config, artifact_path: Path
) -> dict[str, Any]:
    def argv(workdir: Path) -> str:
        req = WorkerRequest(
            workload=workload,
            workdir=str(workdir),
            config=cfg.to_json(),
            artifact_path=str(artifact_path),
        )
        return req.to_argv()

    return h.run_worker(
        python,
        HERE / f"{tool}_worker.py",
        argv,
        tag=f"[{tool}] {workload}",
        prefix=f"keel-bench-{tool}-{workload}-",
        timeout_s=WORKER_TIMEOUT_S,
        env=lambda workdir: h.worker_env(tool, workdir),
    )


# ---------------------------------------------------------------------- checking


def check_results(results: dict[str, dict[str, Any]], cfg: Config, artifact_sha: str) -> list[str]:
    """Correctness checks on what each tool stored/returned. Returns the failures."""
    expected_names = expected_filtered_names(cfg)
    failures: list[str] = []
    for key, res in results.items():
        if "error" in res:
            failures.append(f"{key}: {res['error']}")
            continue
        stored = res.get("stored_points")
        if "points" in res and stored is not None and stored != res["points"]:
            failures.append(f"{key}: stored {stored} of {res['points']} points")
        if "filtered_names" in res and res["filtered_names"] != expected_names:
            failures.append(f"{key}: filtered search returned the wrong runs or order")
        if "all_count" in res and res["all_count"] != cfg.runs:
            failures.append(f"{key}: search all returned {res['all_count']} of {cfg.runs} runs")
        if "all_first_param_count" in res and (
            res["all_first_param_count"] != cfg.params_per_run
            or res["all_first_metric_count"] != cfg.metrics_per_run
        ):
            failures.append(f"{key}: searched runs lack params or metrics")
        if "roundtrip_sha256" in res and res["roundtrip_sha256"] != artifact_sha:
            failures.append(f"{key}: downloaded artifact differs from the uploaded file")
    return failures


# ------------------------------------------------------------------------- table


@dataclass
class Row(h.Row):
    mlflow_min: float | None = None
    keel_min: float | None = None
    mlflow_missing: str = "failed"  # shown when the value is None
    keel_missing: str = "failed"
    raw_mb_s: float | None = None  # artifact rows: keel must reach half of this

    @property
    def met(self) -> bool | None:
        if self.raw_mb_s is not None:
            return None if self.keel is None else self.keel >= self.raw_mb_s / 2
        return super().met

    def met_text(self) -> str:
        text = super().met_text()
        if self.met is not None and self.raw_mb_s is not None and self.keel is not None:
            text += f" ({self.keel / self.raw_mb_s:.2f}x the limit)"
        return text

    def json_extra(self) -> dict[str, Any]:
        return {"mlflow_min": self.mlflow_min, "keel_min": self.keel_min}


def fmt_value(value: float | None, minimum: float | None = None, missing: str = "failed") -> str:
    if value is None:
        return missing
    text = fmt_number(value)
    if minimum is not None:
        text += f" (min {fmt_number(minimum)})"
    return text


def build_rows(results: dict[str, dict[str, Any]], raw: dict[str, Any], cfg: Config) -> list[Row]:
    def value(key: str, *path: str, scale: float = 1.0) -> float | None:
        found = h.lookup(results.get(key), *path)
        return None if found is None else found * scale

    def missing(key: str) -> str:
        return "failed" if key in results else "not run"

    def row(
        label: str,
        unit: str,
        mlflow_key: str,
        keel_key: str,
        path: tuple[str, ...],
        target: str,
        target_ratio: float | None = None,
        higher_is_better: bool = True,
        scale: float = 1.0,
        raw_mb_s: float | None = None,
    ) -> Row:
        latency = not higher_is_better
        return Row(
            label,
            unit,
            value(mlflow_key, *path, scale=scale),
            value(keel_key, *path, scale=scale),
            higher_is_better,
            target,
            target_ratio,
            mlflow_min=value(mlflow_key, *path[:-1], "min", scale=scale) if latency else None,
            keel_min=value(keel_key, *path[:-1], "min", scale=scale) if latency else None,
            raw_mb_s=raw_mb_s,
            mlflow_missing=missing(mlflow_key),
            keel_missing=missing(keel_key),
        )

    best_raw = float(raw["best_mb_s"])
    # keel fsyncs every new blob before the run records it (a committed artifact
    # survives power loss); MLflow's local store does not. The durable limit is
    # copy + fsync, measured on the same file.
    durable = float(raw["copyfile_fsync"]["mb_s"])
    mb = f"{cfg.artifact_bytes / 1e6:g} MB"
    n_metric = f"{cfg.one_by_one_points:,}"
    search = "mlflow/runs_and_search", "keel/runs_and_search"
    return [
        row(
            f"1. log_metric x{n_metric}, vs MLflow sync",
            "points/s",
            "mlflow/log_metric_sync",
            "keel/log_metric",
            ("points_per_s",),
            ">= 500x",
            500,
        ),
        row(
            f"1. log_metric x{n_metric}, vs MLflow async",
            "points/s",
            "mlflow/log_metric_async",
            "keel/log_metric",
            ("points_per_s",),
            ">= 500x",
            500,
        ),
        row(
            f"2. log_batch {cfg.batch_points:,} points",
            "points/s",
            "mlflow/log_batch",
            "keel/log_batch",
            ("points_per_s",),
            ">= 20x",
            20,
        ),
        row(f"3. create {cfg.runs:,} runs", "runs/s", *search, ("runs_per_s",), "-"),
        row(
            f"3a. search: filtered, top {cfg.search_max_results}",
            "ms",
            *search,
            ("filtered_search_s", "median"),
            ">= 20x",
            20,
            higher_is_better=False,
            scale=1000,
        ),
        row(
            f"3b. search: all {cfg.runs:,} runs",
            "ms",
            *search,
            ("all_search_s", "median"),
            ">= 20x",
            20,
            higher_is_better=False,
            scale=1000,
        ),
        row(
            f"4. artifact {mb} upload",
            "MB/s",
            "mlflow/artifact",
            "keel/artifact",
            ("upload_mb_s",),
            f">= raw/2 ({fmt_number(best_raw / 2)})",
            raw_mb_s=best_raw,
        ),
        row(
            f"4. artifact {mb} upload, vs durable copy",
            "MB/s",
            "mlflow/artifact",
            "keel/artifact",
            ("upload_mb_s",),
            f">= (copy+fsync)/2 ({fmt_number(durable / 2)})",
            raw_mb_s=durable,
        ),
        row(
            f"4. artifact {mb} download",
            "MB/s",
            "mlflow/artifact",
            "keel/artifact",
            ("download_mb_s",),
            f">= raw/2 ({fmt_number(best_raw / 2)})",
            raw_mb_s=best_raw,
        ),
    ]


HEADERS = ["Workload", "Unit", f"MLflow {MLFLOW_VERSION}", "keel", "keel adv.", "Target", "Met"]


def row_cells(row: Row) -> list[str]:
    return [
        row.label,
        row.unit,
        fmt_value(row.mlflow, row.mlflow_min, row.mlflow_missing),
        fmt_value(row.keel, row.keel_min, row.keel_missing),
        h.fmt_ratio(row.advantage),
        row.target,
        row.met_text(),
    ]


def notes(raw: dict[str, Any], cfg: Config) -> list[str]:
    return [
        "keel adv. > 1 means keel is better: keel/MLflow for throughput, MLflow/keel for latency.",
        "1: each point is its own call; keel's time includes keel.flush(); MLflow async = "
        "log_metric(synchronous=False) + mlflow.flush_async_logging().",
        f"2: chunks of {cfg.batch_chunk:,} points per log_batch call (keel: + keel.flush()).",
        f"3a/3b: median (min) of {cfg.search_repeats}; 3a = {SEARCH_FILTER!r}, "
        f"order by {SEARCH_ORDER_BY[0]!r}.",
        f"4: raw = the faster of shutil.copyfile {fmt_number(raw['copyfile']['mb_s'])} MB/s and "
        f"a 1 MiB read+write loop {fmt_number(raw['read_write_loop']['mb_s'])} MB/s "
        f"(same file, median of {raw['repeats']}, no fsync); for reference, copyfile + fsync: "
        f"{fmt_number(raw['copyfile_fsync']['mb_s'])} MB/s.",
    ]


def print_table(rows: list[Row], raw: dict[str, Any], cfg: Config, title: str) -> None:
    h.print_table(title, HEADERS, rows, row_cells, notes(raw, cfg))


def markdown_table(rows: list[Row], raw: dict[str, Any], cfg: Config) -> str:
    return h.markdown_table(HEADERS, rows, row_cells, notes(raw, cfg))


# ------------------------------------------------------------------------ machine


def _version(results: dict[str, dict[str, Any]], tool: str) -> str | None:
    for key, res in results.items():
        if key.startswith(f"{tool}/") and "version" in res:
            return str(res["version"])
    return None


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__, RESULTS_PATH)
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else Config()
    tools = {t.strip() for t in args.tools.split(",") if t.strip()}
    if not tools <= {"mlflow", "keel"}:
        parser.error(f"unknown tool(s): {', '.join(sorted(tools - {'mlflow', 'keel'}))}")
    output = args.output or (None if args.quick else RESULTS_PATH)

    started = dt.datetime.now(dt.UTC)
    t_start = now()
    load_start = load_average()
    pythons: dict[str, Path] = {"keel": Path(sys.executable)}
    venv_info: dict[str, Any] = {}
    if "mlflow" in tools:
        pythons["mlflow"], venv_info = ensure_mlflow_venv()
    if "keel" in tools and (error := check_keel()):
        log(f"keel is not importable with {sys.executable}: {error}")
        log("Install the project into this venv first (or run with --tools mlflow).")
        return 2

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="keel-bench-artifact-") as scratch_dir:
        scratch = Path(scratch_dir)
        artifact = scratch / "file.bin"
        log(f"writing the {cfg.artifact_bytes / 1e6:g} MB artifact ...")
        artifact_sha = write_artifact(str(artifact), cfg)
        raw = raw_copy_speeds(artifact, scratch)
        log(
            f"raw copy: copyfile {raw['copyfile']['mb_s']:.0f} MB/s, "
            f"read+write {raw['read_write_loop']['mb_s']:.0f} MB/s, "
            f"copyfile+fsync {raw['copyfile_fsync']['mb_s']:.0f} MB/s"
        )
        for tool, workload in JOBS:
            if tool in tools:
                results[f"{tool}/{workload}"] = run_worker(
                    tool, pythons[tool], workload, cfg, artifact
                )

    failures = check_results(results, cfg, artifact_sha)
    rows = build_rows(results, raw, cfg)
    total_s = now() - t_start
    versions = {
        "mlflow": _version(results, "mlflow") or (MLFLOW_VERSION if "mlflow" in tools else None),
        "keel": _version(results, "keel"),
        "sqlite": sorted({r["sqlite_version"] for r in results.values() if "sqlite_version" in r}),
    }
    title = (
        f"Tracking benchmark: keel {versions['keel']} vs MLflow {versions['mlflow']} "
        f"({started:%Y-%m-%d}, {os.cpu_count()} CPUs{', QUICK' if args.quick else ''})"
    )
    print()
    print_table(rows, raw, cfg, title)
    if failures:
        print("\nCorrectness checks FAILED:")
        for failure in failures:
            print(f"  - {failure}")
    else:
        print("\nCorrectness checks passed: every tool stored all points, both searches returned")
        print("the expected runs in the expected order, and artifacts round-tripped byte for byte.")
    load_end = load_average()
    print(f"Total wall time: {total_s:.0f} s. {load_note(load_start, load_end)}")

    report = {
        "benchmark": "tracking",
        "command": "python benchmarks/tracking/run.py" + (" --quick" if args.quick else ""),
        "date": started.isoformat(timespec="seconds"),
        "total_wall_seconds": total_s,
        "quick": args.quick,
        "config": cfg.to_json(),
        "search": {"filter": SEARCH_FILTER, "order_by": SEARCH_ORDER_BY},
        "versions": versions,
        "mlflow_venv": venv_info,
        "machine": {**machine_info(), "loadavg_start": load_start, "loadavg_end": load_end},
        "raw_copy": raw,
        "results": results,
        "rows": [r.to_json() for r in rows],
        "correctness_failures": failures,
    }
    h.write_outputs(report, output, args.markdown, markdown_table(rows, raw, cfg))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
