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

import argparse
import datetime as dt
import json
import os
import platform
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

MLFLOW_VERSION = "3.17.2"
VENVS_DIR = HERE.parent / ".venvs"
MLFLOW_VENV = VENVS_DIR / f"mlflow-{MLFLOW_VERSION}"
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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


# ------------------------------------------------------------------ environments


def installed_mlflow_version(python: Path) -> str | None:
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_mlflow_venv() -> tuple[Path, dict[str, Any]]:
    """Return the pinned MLflow venv's python, creating/repairing the venv if needed."""
    python = venv_python(MLFLOW_VENV)
    if installed_mlflow_version(python) == MLFLOW_VERSION:
        log(f"MLflow {MLFLOW_VERSION}: reusing {MLFLOW_VENV}")
        return python, {"path": str(MLFLOW_VENV), "created": False, "setup_seconds": 0.0}

    log(f"MLflow {MLFLOW_VERSION}: creating {MLFLOW_VENV} ...")
    t0 = now()
    VENVS_DIR.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv")
    if uv:
        # Same interpreter as keel's side, so Python and SQLite versions match.
        subprocess.run(
            [uv, "venv", "--clear", "--python", sys.executable, str(MLFLOW_VENV)], check=True
        )
        subprocess.run(
            [uv, "pip", "install", "--python", str(python), f"mlflow=={MLFLOW_VERSION}"],
            check=True,
        )
    else:  # pragma: no cover - uv is the documented way; plain venv + pip as a fallback
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(MLFLOW_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}"], check=True
        )
    found = installed_mlflow_version(python)
    if found != MLFLOW_VERSION:
        raise SystemExit(f"expected mlflow {MLFLOW_VERSION} in {MLFLOW_VENV}, found {found}")
    elapsed = now() - t0
    log(f"MLflow {MLFLOW_VERSION}: ready in {elapsed:.1f} s")
    return python, {"path": str(MLFLOW_VENV), "created": True, "setup_seconds": elapsed}


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


def worker_env(tool: str, workdir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "KEEL_")) and k not in ("VIRTUAL_ENV", "PYTHONHOME")
    }
    # No network during the benchmark and the same for both tools.
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    if tool == "keel":
        env["KEEL_HOME"] = str(workdir / ".keel")
    else:
        env.pop("PYTHONPATH", None)  # keep the project's sources out of MLflow's venv
    return env


def run_worker(
    tool: str, python: Path, workload: str, cfg: Config, artifact_path: Path
) -> dict[str, Any]:
    script = HERE / f"{tool}_worker.py"
    workdir = Path(tempfile.mkdtemp(prefix=f"keel-bench-{tool}-{workload}-"))
    req = WorkerRequest(
        workload=workload,
        workdir=str(workdir),
        config=cfg.to_json(),
        artifact_path=str(artifact_path),
    )
    log(f"[{tool}] {workload} ...")
    t0 = now()
    try:
        proc = subprocess.run(
            [str(python), str(script), req.to_argv()],
            cwd=workdir,
            env=worker_env(tool, workdir),
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        log(f"[{tool}] {workload} timed out after {WORKER_TIMEOUT_S} s")
        return {"error": f"timed out after {WORKER_TIMEOUT_S} s"}
    finally:
        wall = now() - t0
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        log(f"[{tool}] {workload} FAILED (exit {proc.returncode}):\n{tail}")
        return {"error": f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else ''}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_wall_seconds"] = wall
    log(f"[{tool}] {workload} done in {wall:.1f} s")
    return result


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
class Row:
    label: str
    unit: str
    mlflow: float | None
    keel: float | None
    higher_is_better: bool
    target: str
    target_ratio: float | None = None  # keel advantage needed vs MLflow
    mlflow_min: float | None = None
    keel_min: float | None = None
    mlflow_missing: str = "failed"  # shown when the value is None
    keel_missing: str = "failed"
    raw_mb_s: float | None = None  # artifact rows: keel must reach half of this

    @property
    def advantage(self) -> float | None:
        """> 1 means keel is better (throughput keel/MLflow, latency MLflow/keel)."""
        if not self.mlflow or not self.keel:
            return None
        return self.keel / self.mlflow if self.higher_is_better else self.mlflow / self.keel

    @property
    def met(self) -> bool | None:
        if self.raw_mb_s is not None:
            return None if self.keel is None else self.keel >= self.raw_mb_s / 2
        if self.target_ratio is None or self.advantage is None:
            return None
        return self.advantage >= self.target_ratio

    def met_text(self) -> str:
        if self.met is None:
            return "n/a" if self.target != "-" else "-"
        extra = ""
        if self.raw_mb_s is not None and self.keel is not None:
            extra = f" ({self.keel / self.raw_mb_s:.2f}x the limit)"
        return ("yes" if self.met else "NO") + extra


def fmt_value(value: float | None, minimum: float | None = None, missing: str = "failed") -> str:
    if value is None:
        return missing
    text = fmt_number(value)
    if minimum is not None:
        text += f" (min {fmt_number(minimum)})"
    return text


def fmt_number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def _get(res: dict[str, Any] | None, *path: str) -> float | None:
    cur: Any = res
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, int | float) else None


def build_rows(results: dict[str, dict[str, Any]], raw: dict[str, Any], cfg: Config) -> list[Row]:
    def value(key: str, *path: str, scale: float = 1.0) -> float | None:
        found = _get(results.get(key), *path)
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
        fmt_ratio(row.advantage),
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
    note = "\n".join(notes(raw, cfg))
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(row_cells(r)[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row_cells(r), widths, strict=True)))
        print(note)
        return
    table = Table(title=title, caption=note, show_lines=False)
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i in (0, 1, 5) else "right", overflow="fold")
    for r in rows:
        cells = row_cells(r)
        if r.met is False:
            cells[-1] = f"[bold red]{cells[-1]}[/]"
        elif r.met:
            cells[-1] = f"[green]{cells[-1]}[/]"
        table.add_row(*cells)
    Console(width=max(140, shutil.get_terminal_size().columns)).print(table)


def markdown_table(rows: list[Row], raw: dict[str, Any], cfg: Config) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    lines += ["", *(f"- {n}" for n in notes(raw, cfg))]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ machine


def _version(results: dict[str, dict[str, Any]], tool: str) -> str | None:
    for key, res in results.items():
        if key.startswith(f"{tool}/") and "version" in res:
            return str(res["version"])
    return None


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def load_note(start: list[float] | None, end: list[float] | None) -> str:
    if start is None or end is None:
        return ""
    text = f"Load average (1 min) at start {start[0]:.2f}, at end {end[0]:.2f}"
    cpus = os.cpu_count() or 1
    # The benchmark itself keeps about one CPU busy, which the end figure includes.
    if start[0] > cpus / 2 or end[0] > cpus / 2 + 1:
        text += f" on {cpus} CPUs: other work was running, numbers are noisier than usual"
    return text + "."


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            models = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        info["cpu_model"] = models[0] if models else None
        with open("/proc/meminfo", encoding="utf-8") as fh:
            total_kb = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(total_kb / 2**20, 1)
        tmp = os.path.realpath(tempfile.gettempdir())
        with open("/proc/mounts", encoding="utf-8") as fh:
            mounts = [ln.split()[:3] for ln in fh]
        best = max(
            (mt for mt in mounts if tmp == mt[1] or tmp.startswith(mt[1].rstrip("/") + "/")),
            key=lambda mt: len(mt[1]),
        )
        info["tmp_dir"] = tmp
        info["tmp_filesystem"] = f"{best[2]} ({best[0]} on {best[1]})"
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return info


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny workloads for a smoke test (numbers meaningless; results.json not written)",
    )
    parser.add_argument(
        "--tools",
        default="mlflow,keel",
        help="comma-separated subset of mlflow,keel to run (default: both)",
    )
    parser.add_argument("--output", type=Path, help=f"results file (default {RESULTS_PATH})")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
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
        "rows": [
            {
                "workload": r.label,
                "unit": r.unit,
                "mlflow": r.mlflow,
                "keel": r.keel,
                "mlflow_min": r.mlflow_min,
                "keel_min": r.keel_min,
                "keel_advantage": r.advantage,
                "target": r.target,
                "met": r.met,
            }
            for r in rows
        ],
        "correctness_failures": failures,
    }
    if output:
        output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {output}")
    if args.markdown:
        args.markdown.write_text(markdown_table(rows, raw, cfg), encoding="utf-8")
        log(f"wrote {args.markdown}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
