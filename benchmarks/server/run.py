#!/usr/bin/env python
"""Side-by-side benchmark of ``keel server`` against ``mlflow server``.

One command runs everything::

    python benchmarks/server/run.py

It (1) reuses (or creates) the pinned MLflow 3.17.2 venv under
``benchmarks/.venvs/`` shared with the tracking benchmark, (2) starts
``mlflow server`` (SQLite backend store, proxied artifacts) and ``keel server``
(``KEEL_HOME`` in a fresh temporary directory), each on a free port of
127.0.0.1, and measures the time until the health endpoint answers and the idle
memory of the whole process tree, (3) drives both servers with the same
workload through the same official ``MlflowClient`` (log_batch, log_metric,
2,000 runs and two searches, a 50 MB artifact up and down), then drives a fresh
``keel server`` with keel's own client, (4) checks every tool stored and returned
the right data, and (5) prints a table and writes ``benchmarks/server/results.json``.
See ``README.md`` beside this file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
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
    now,
)
from server_common import (  # noqa: E402
    PAGE_SIZE,
    QUICK,
    SERVER_CONFIG,
    Config,
    Request,
    expected_filtered_names,
    write_artifact,
)

RESULTS_PATH = HERE / "results.json"
KEEL_BIN = Path(sys.executable).parent / "keel"
START_TIMEOUT_S = 180
IDLE_SETTLE_S = 5.0
WORKER_TIMEOUT_S = 420
QUIET_LIMIT_S = 30.0
STOP_TIMEOUT_S = 15
MIB = 2**20

# Targets from the issue.
KEEL_START_MAX_S = 3.0
KEEL_IDLE_MAX_MIB = 300.0
SEARCH_TARGET = 5.0
LOGGING_TARGET = 3.0


# ----------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def tree_memory(pid: int) -> dict[str, Any]:
    """RSS (and USS where readable) summed over a process and all its descendants."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    rss = uss = 0
    names: list[str] = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            rss += proc.memory_info().rss
            names.append(proc.name())
            with contextlib.suppress(psutil.Error, AttributeError):
                uss += proc.memory_full_info().uss
    return {"rss_mib": rss / MIB, "uss_mib": uss / MIB or None, "processes": len(names)}


def wait_until_quiet(pid: int, limit_s: float = QUIET_LIMIT_S) -> float:
    """Wait (after the idle measurement) until the server tree uses < 10% of a CPU.

    MLflow's server keeps starting background work for a while after /health
    answers; the workloads start once that has settled, up to ``limit_s``.
    """
    import psutil

    t0 = now()
    while now() - t0 < limit_s:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
            before = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
            time.sleep(1.0)
            after = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        except psutil.Error:
            break
        if after - before < 0.1:
            break
    return now() - t0


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    home: Path
    log_path: Path
    start_s: float | None = None
    idle: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tracking_uri(self) -> str:
        return self.base_url

    def stop(self) -> None:
        """Stop the server and every process it started, by PID (SIGTERM, then SIGKILL)."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT_S)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_TIMEOUT_S)


def start_server(kind: str, mlflow_python: Path | None) -> Server:
    home = Path(tempfile.mkdtemp(prefix=f"keel-bench-server-{kind}-"))
    port = free_port()
    env = h.worker_env(kind, home)
    if kind == "mlflow":
        assert mlflow_python is not None
        cmd = [
            str(mlflow_python.parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{home}/mlflow.db",
            "--artifacts-destination",
            str(home / "art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        health = f"http://127.0.0.1:{port}/health"
    else:
        env["KEEL_HOME"] = str(home)
        cmd = [str(KEEL_BIN), "server", "--host", "127.0.0.1", "--port", str(port)]
        health = f"http://127.0.0.1:{port}/healthz"
    log_path = home / "server.log"
    log(f"[{kind} server] starting on 127.0.0.1:{port} ...")
    with open(log_path, "wb") as log_fh:
        t0 = now()
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    server = Server(kind, proc, port, home, log_path)
    while now() - t0 < START_TIMEOUT_S:
        if answers(health):
            server.start_s = now() - t0
            break
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    if server.start_s is None:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        server.stop()
        raise RuntimeError(f"{kind} server did not answer {health}:\n" + "\n".join(tail))
    time.sleep(IDLE_SETTLE_S)
    server.idle = tree_memory(proc.pid)
    log(
        f"[{kind} server] answered in {server.start_s:.2f} s; idle {server.idle['rss_mib']:.0f} "
        f"MiB RSS in {server.idle['processes']} process(es)"
    )
    return server


# ----------------------------------------------------------------------- workers


def run_client(
    client: str, python: Path, server: Server, cfg: Config, workloads: list[str], artifact: Path
) -> dict[str, Any]:
    uri = server.tracking_uri

    def argv(workdir: Path) -> str:
        req = Request(
            tracking_uri=uri,
            workdir=str(workdir),
            config=cfg.to_json(),
            workloads=workloads,
            artifact_path=str(artifact),
        )
        return req.to_argv()

    def env(workdir: Path) -> dict[str, str]:
        found = h.worker_env(client, workdir)
        if client == "keel":
            found["KEEL_TRACKING_URI"] = uri
        return found

    tag = f"[{client} client -> {server.kind} server]"
    return h.run_worker(
        python,
        HERE / f"{client}_client_worker.py",
        argv,
        tag=tag,
        start=f"{tag} {', '.join(workloads)} ...",
        prefix=f"keel-bench-server-{client}-client-",
        timeout_s=WORKER_TIMEOUT_S,
        env=env,
    )


def run_phase(
    name: str,
    server_kind: str,
    client: str,
    python: Path,
    mlflow_python: Path | None,
    cfg: Config,
    workloads: list[str],
    artifact: Path,
) -> dict[str, Any]:
    try:
        server = start_server(server_kind, mlflow_python)
    except RuntimeError as exc:
        log(str(exc))
        return {"server": server_kind, "client": client, "error": str(exc).splitlines()[0]}
    try:
        quiet_s = wait_until_quiet(server.proc.pid)
        log(f"[{name}] server tree quiet after {quiet_s:.1f} s more")
        result: dict[str, Any] = {}
        for workload in workloads:  # one worker process each, so one failure keeps the rest
            part = run_client(client, python, server, cfg, [workload], artifact)
            if "error" in part:
                result.setdefault("error", f"{workload}: {part['error']}")
            else:
                result[workload] = part[workload]
                result.setdefault("version", part.get("version"))
                result.setdefault("worker_wall_seconds", {})[workload] = part[
                    "process_wall_seconds"
                ]
        after = tree_memory(server.proc.pid)
    finally:
        server.stop()
        shutil.rmtree(server.home, ignore_errors=True)
    log(f"[{name}] server tree after the workload: {after['rss_mib']:.0f} MiB RSS")
    return {
        "server": server_kind,
        "client": client,
        "port": server.port,
        "start_s": server.start_s,
        "idle": server.idle,
        "after_workload": after,
        "client_result": result,
    }


# ---------------------------------------------------------------------- checking


def check_results(phases: dict[str, dict[str, Any]], cfg: Config, artifact_sha: str) -> list[str]:
    failures: list[str] = []
    expected = expected_filtered_names(cfg)
    for name, phase in phases.items():
        res = phase.get("client_result") or {}
        if "error" in phase or "error" in res:
            failures.append(f"{name}: {phase.get('error') or res.get('error')}")
            continue
        if "logging" in res:
            b, s = res["logging"]["batch"], res["logging"]["single"]
            if b["stored_points_b0"] != b["expected_points_b0"]:
                failures.append(
                    f"{name}: {b['stored_points_b0']} points of b0 stored, "
                    f"expected {b['expected_points_b0']}"
                )
            if s["stored_points"] != s["points"]:
                failures.append(
                    f"{name}: {s['stored_points']} single points, expected {s['points']}"
                )
        if "runs_and_search" in res:
            r = res["runs_and_search"]
            if r["filtered_names"] != expected:
                failures.append(f"{name}: the filtered search returned other runs or order")
            if r["all_count"] != cfg.runs or r["all_unique"] != cfg.runs:
                failures.append(
                    f"{name}: paged search returned {r['all_count']} runs "
                    f"({r['all_unique']} distinct), expected {cfg.runs}"
                )
            want = [cfg.params_per_run, cfg.metrics_per_run]
            if r["all_first_counts"] != want:
                failures.append(f"{name}: a run came back with {r['all_first_counts']} != {want}")
        if "artifact" in res and res["artifact"]["roundtrip_sha256"] != artifact_sha:
            failures.append(f"{name}: the downloaded artifact differs from the uploaded one")
    return failures


# ------------------------------------------------------------------------- table


@dataclass
class Row(h.Row):
    keel_max: float | None = None  # absolute target: keel's value must be below this
    mlflow_extra: str = ""
    keel_extra: str = ""

    @property
    def met(self) -> bool | None:
        if self.keel_max is not None:
            return None if self.keel is None else self.keel < self.keel_max
        return super().met


def build_rows(phases: dict[str, dict[str, Any]], cfg: Config) -> list[Row]:
    m, k, kk = (phases.get(p) for p in ("mlflow", "keel", "keel_client"))

    def client_value(phase: dict[str, Any] | None, *path: str, scale: float = 1.0) -> float | None:
        found = h.lookup((phase or {}).get("client_result"), *path)
        return None if found is None else found * scale

    def procs(phase: dict[str, Any] | None, key: str) -> str:
        n = h.lookup(phase, key, "processes")
        return "" if n is None else f" ({int(n)} proc.)"

    rows = [
        Row(
            "1. start until health answers",
            "s",
            h.lookup(m, "start_s"),
            h.lookup(k, "start_s"),
            False,
            f"keel < {KEEL_START_MAX_S:g} s",
            keel_max=KEEL_START_MAX_S,
        ),
        Row(
            f"1. idle memory, process tree RSS ({IDLE_SETTLE_S:g} s after start)",
            "MiB",
            h.lookup(m, "idle", "rss_mib"),
            h.lookup(k, "idle", "rss_mib"),
            False,
            f"keel < {KEEL_IDLE_MAX_MIB:g} MiB",
            keel_max=KEEL_IDLE_MAX_MIB,
            mlflow_extra=procs(m, "idle"),
            keel_extra=procs(k, "idle"),
        ),
        Row(
            "1. memory after the workloads, process tree RSS",
            "MiB",
            h.lookup(m, "after_workload", "rss_mib"),
            h.lookup(k, "after_workload", "rss_mib"),
            False,
            "-",
            mlflow_extra=procs(m, "after_workload"),
            keel_extra=procs(k, "after_workload"),
        ),
    ]
    variants = [("MLflow client", k), ("keel client", kk)]
    for client, phase in variants:
        rows += [
            Row(
                f"2. log_batch {cfg.batch_points:,} points ({cfg.batch_chunk:,}/call), {client}",
                "points/s",
                client_value(m, "logging", "batch", "points_per_s"),
                client_value(phase, "logging", "batch", "points_per_s"),
                True,
                f">= {LOGGING_TARGET:g}x",
                LOGGING_TARGET,
            ),
            Row(
                f"2. log_metric x{cfg.one_by_one_points:,}, {client}",
                "points/s",
                client_value(m, "logging", "single", "points_per_s"),
                client_value(phase, "logging", "single", "points_per_s"),
                True,
                f">= {LOGGING_TARGET:g}x",
                LOGGING_TARGET,
            ),
        ]
    for client, phase in variants:
        rows += [
            Row(
                f"3. create {cfg.runs:,} runs (create_run + log_batch), {client}",
                "runs/s",
                client_value(m, "runs_and_search", "runs_per_s"),
                client_value(phase, "runs_and_search", "runs_per_s"),
                True,
                "-",
            ),
            Row(
                f"3a. search: filtered, top {cfg.search_max_results}, {client}",
                "ms",
                client_value(m, "runs_and_search", "filtered_search_s", "median", scale=1e3),
                client_value(phase, "runs_and_search", "filtered_search_s", "median", scale=1e3),
                False,
                f">= {SEARCH_TARGET:g}x",
                SEARCH_TARGET,
            ),
            Row(
                f"3b. search: all {cfg.runs:,} runs, pages of {PAGE_SIZE:,}, {client}",
                "ms",
                client_value(m, "runs_and_search", "all_search_s", "median", scale=1e3),
                client_value(phase, "runs_and_search", "all_search_s", "median", scale=1e3),
                False,
                f">= {SEARCH_TARGET:g}x",
                SEARCH_TARGET,
            ),
        ]
    mb = cfg.artifact_bytes / 1e6
    rows += [
        Row(
            f"4. artifact {mb:g} MB upload (log_artifact), MLflow cl.",
            "MiB/s",
            client_value(m, "artifact", "upload_mib_s"),
            client_value(k, "artifact", "upload_mib_s"),
            True,
            "-",
        ),
        Row(
            f"4. artifact {mb:g} MB download (download_artifacts), MLflow cl.",
            "MiB/s",
            client_value(m, "artifact", "download_mib_s"),
            client_value(k, "artifact", "download_mib_s"),
            True,
            "-",
        ),
    ]
    return rows


HEADERS = [
    "Workload",
    "Unit",
    f"MLflow {MLFLOW_VERSION} server",
    "keel server",
    "keel adv.",
    "Target",
    "Met",
]


def row_cells(row: Row, phases: dict[str, dict[str, Any]]) -> list[str]:
    def cell(value: float | None, extra: str, phase: str) -> str:
        if value is None:
            return "failed" if phase in phases else "not run"
        return fmt_number(value) + extra

    return [
        row.label,
        row.unit,
        cell(row.mlflow, row.mlflow_extra, "mlflow"),
        cell(row.keel, row.keel_extra, "keel"),
        h.fmt_ratio(row.advantage),
        row.target,
        row.met_text(),
    ]


def cells_for(phases: dict[str, dict[str, Any]]) -> Callable[[Row], list[str]]:
    """``row_cells`` for these phases (a missing value is "failed" or "not run")."""
    return lambda row: row_cells(row, phases)


def notes(phases: dict[str, dict[str, Any]], cfg: Config) -> list[str]:
    uss = {p: h.lookup(phases.get(p), "idle", "uss_mib") for p in ("mlflow", "keel", "keel_client")}
    uss_text = ", ".join(f"{p} {fmt_number(v)} MiB" for p, v in uss.items() if v)
    return [
        "keel adv. > 1 means keel is better: keel/MLflow for throughput, MLflow/keel for "
        "time, latency and memory.",
        "Every row except the 'keel client' ones: the same worker script with "
        f"mlflow.MlflowClient {MLFLOW_VERSION} (pinned venv) against each server, one HTTP "
        "request per call; keel's MLflow-compatible API is at /api/2.0/mlflow (artifacts at "
        "/api/2.0/mlflow-artifacts). 'keel client' rows: keel.Client with KEEL_TRACKING_URI "
        "against a fresh keel server, compared with the MLflow client against mlflow server.",
        "1: from Popen until the health endpoint (mlflow /health, keel /healthz) answers 200, "
        "polled every 20 ms; each server on a fresh, empty store (both create their schema). "
        "Memory: RSS summed over the server process and all its descendants (psutil)"
        + (f"; USS at idle: {uss_text}." if uss_text else "."),
        f"2: one run; {cfg.batch_points // cfg.batch_chunk} log_batch calls of "
        f"{cfg.batch_chunk:,} points ({cfg.batch_keys} keys); then {cfg.one_by_one_points:,} "
        "log_metric calls, one request each (keel.Client.log_metric is synchronous).",
        f"3: {cfg.runs:,} runs, each create_run + one log_batch with {cfg.params_per_run} "
        f"params, {cfg.metrics_per_run} metrics, {cfg.tags_per_run} tags; search latencies "
        f'are the median of {cfg.search_repeats}; 3a = "metrics.m0 > 0.5 and params.p0 = '
        "'v1'\" ordered by metrics.m1 DESC; 3b follows page tokens to the end.",
        f"4: {cfg.artifact_bytes:,} random bytes; MLflow client's log_artifact and "
        "download_artifacts through each server's proxied artifact API "
        "(mlflow server --artifacts-destination); the issue sets no target.",
        "Every phase ran after an untimed warm-up (one run, batch, metric and search).",
    ]


def print_table(
    rows: list[Row], phases: dict[str, dict[str, Any]], cfg: Config, title: str
) -> None:
    h.print_table(title, HEADERS, rows, cells_for(phases), notes(phases, cfg), width=160)


def markdown_table(rows: list[Row], phases: dict[str, dict[str, Any]], cfg: Config) -> str:
    return h.markdown_table(HEADERS, rows, cells_for(phases), notes(phases, cfg))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__, RESULTS_PATH, tools=False)
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else SERVER_CONFIG
    output = args.output or (None if args.quick else RESULTS_PATH)
    if not KEEL_BIN.exists():
        log(f"keel's CLI not found at {KEEL_BIN}: install the project into this venv first.")
        return 2

    started = dt.datetime.now(dt.UTC)
    t_start = now()
    load_start = load_average()
    mlflow_python, venv_info = ensure_mlflow_venv()
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-server-"))
    artifact = scratch / "file.bin"
    try:
        artifact_sha = write_artifact(str(artifact), cfg)
        all_work = ["logging", "runs_and_search", "artifact"]
        plan: list[tuple[str, str, str, Path, list[str]]] = [
            ("mlflow", "mlflow", "mlflow", mlflow_python, all_work),
            ("keel", "keel", "mlflow", mlflow_python, all_work),
            ("keel_client", "keel", "keel", Path(sys.executable), ["logging", "runs_and_search"]),
        ]
        phases: dict[str, dict[str, Any]] = {}
        for name, server_kind, client, python, workloads in plan:
            phases[name] = run_phase(
                name, server_kind, client, python, mlflow_python, cfg, workloads, artifact
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    failures = check_results(phases, cfg, artifact_sha)
    rows = build_rows(phases, cfg)
    total_s = now() - t_start
    keel_version = next(
        (
            p["client_result"].get("version")
            for p in phases.values()
            if p.get("client") == "keel" and "client_result" in p
        ),
        None,
    )
    versions = {"mlflow": MLFLOW_VERSION, "keel": keel_version}
    title = (
        f"Server benchmark: keel server {versions['keel']} vs mlflow server {MLFLOW_VERSION} "
        f"({started:%Y-%m-%d}, {os.cpu_count()} CPUs{', QUICK' if args.quick else ''})"
    )
    print()
    print_table(rows, phases, cfg, title)
    if failures:
        print("\nCorrectness checks FAILED:")
        for failure in failures:
            print(f"  - {failure}")
    else:
        print(
            "\nCorrectness checks passed: every server stored every point, the filtered search "
            f"returned the expected {cfg.search_max_results} runs in order, paging returned all "
            f"{cfg.runs:,} runs once, and the artifact came back byte for byte."
        )
    load_end = load_average()
    print(f"Total wall time: {total_s:.0f} s. {load_note(load_start, load_end)}")

    report = {
        "benchmark": "server",
        "command": "python benchmarks/server/run.py" + (" --quick" if args.quick else ""),
        "date": started.isoformat(timespec="seconds"),
        "total_wall_seconds": total_s,
        "quick": args.quick,
        "config": cfg.to_json(),
        "versions": versions,
        "mlflow_venv": venv_info,
        "machine": {**machine_info(), "loadavg_start": load_start, "loadavg_end": load_end},
        "phases": phases,
        "rows": [r.to_json() for r in rows],
        "correctness_failures": failures,
    }
    h.write_outputs(report, output, args.markdown, markdown_table(rows, phases, cfg))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
