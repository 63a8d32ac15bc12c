#!/usr/bin/env python
"""Serving benchmark: ``keel serve`` vs ``mlflow models serve`` vs BentoML vs a bare app.

One command runs everything::

    python benchmarks/serving/run.py            # full grid, 10 s per cell
    python benchmarks/serving/run.py --quick    # 4 s per cell, nothing written

It (1) creates or reuses the peers' pinned venvs under ``benchmarks/.venvs/`` (uv),
each with keel's scikit-learn, numpy and pandas, and makes sure ``wrk`` is
installed, (2) trains one HistGradientBoostingClassifier on 20 float features in
keel's venv and hands the same estimator to every server (keel: ``keel.log_model``
and a deployment; MLflow: ``mlflow.sklearn.save_model`` in its venv; BentoML and the
bare Starlette app: the joblib file), (3) starts each server on a free port of
127.0.0.1, checks it returns exactly the local predictions for the benchmark's rows
(a mismatch aborts the run), warms it up, then drives it with ``wrk`` from a
separate process: 1-row and 100-row requests at 1, 8 and 32 connections, each
cell bounded in time, and (4) prints req/s, p50, p99 and the server's CPU per
request (psutil over its process tree), writing ``benchmarks/serving/results.json``.
See ``README.md`` beside this file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata as md
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _harness as h  # noqa: E402
from _harness import fmt_number, load_average, load_note, log, machine_info, now  # noqa: E402
from serving_common import (  # noqa: E402
    BENTOML_VERSION,
    CONCURRENCIES,
    FEATURES,
    MLFLOW_VERSION,
    MODEL_PATH_ENV,
    REPORTED_DISTS,
    ROW_COUNTS,
    SEED,
    THREADS_ENV,
    TRAIN_ROWS,
    VenvSpec,
    ensure_pinned_venv,
    installed_versions,
    records_body,
    venv_specs,
)

RESULTS_PATH = HERE / "results.json"
KEEL_BIN = Path(sys.executable).parent / "keel"
LUA_SCRIPT = HERE / "wrk_post.lua"
RESULT_TAG = "BENCH-RESULT "
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
WRK_TIMEOUT = "30s"  # a request slower than this counts as an error (wrk's default is 2 s)
MAX_CELLS_DEFAULT = 120
QUIET_LIMIT_S = 20.0
MIB = 2**20

# Targets from the issue (keel with prediction logging on, one worker, vs each peer).
MLFLOW_TARGET = 3.0
BENTOML_TARGET = 1.0
BARE_TARGET = 1.0
P99_TARGET_MS = 10.0
P99_TARGET_CELL = (1, 8)  # 1 row at concurrency 8

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


# ------------------------------------------------------------------------ servers


@dataclass(frozen=True)
class ServerDef:
    """One server configuration of the grid."""

    key: str
    label: str
    kind: str  # keel | mlflow | bentoml | bare-uvicorn | bare-granian
    workers: int = 1
    env: tuple[tuple[str, str], ...] = ()
    note: str = ""
    deployment: str = "bench"  # keel only: the deployment served and posted to

    @property
    def body_key(self) -> str:
        return "dataframe_records" if self.kind == "mlflow" else "records"

    @property
    def venv_name(self) -> str | None:
        return {
            "mlflow": f"serving-mlflow-{MLFLOW_VERSION}",
            "bentoml": f"serving-bentoml-{BENTOML_VERSION}",
            "bare-uvicorn": "serving-bare",
            "bare-granian": "serving-bare",
        }.get(self.kind)


SERVERS: tuple[ServerDef, ...] = (
    ServerDef("keel", "keel serve (1 worker)", "keel", note="prediction logging on (default)"),
    ServerDef("keel-2w", "keel serve (2 workers)", "keel", workers=2, note="prediction logging on"),
    ServerDef(
        "keel-nobatch",
        "keel serve (1 worker), max_batch_size=1",
        "keel",
        deployment="bench-nobatch",
        note="micro-batching off: every request predicted alone; prediction logging on",
    ),
    ServerDef(
        "mlflow",
        f"mlflow models serve {MLFLOW_VERSION}",
        "mlflow",
        note="defaults: uvicorn, 1 worker, library thread defaults",
    ),
    ServerDef(
        "mlflow-omp1",
        f"mlflow models serve {MLFLOW_VERSION}, OMP_NUM_THREADS=1",
        "mlflow",
        env=tuple(SINGLE_THREAD_ENV.items()),
        note="as mlflow, with OpenMP/BLAS limited to one thread by environment",
    ),
    ServerDef(
        "bentoml",
        f"BentoML {BENTOML_VERSION}",
        "bentoml",
        note="bentoml serve, default service settings (1 worker)",
    ),
    ServerDef(
        "bare-uvicorn",
        "bare Starlette on uvicorn",
        "bare-uvicorn",
        note="uvloop + httptools, predict on the loop, threadpoolctl 1 thread",
    ),
    ServerDef(
        "bare-granian",
        "bare Starlette on granian",
        "bare-granian",
        note="ASGI interface, predict on the loop, threadpoolctl 1 thread",
    ),
    ServerDef(
        "bare-uvicorn-threads",
        "bare Starlette on uvicorn, default threads",
        "bare-uvicorn",
        env=((THREADS_ENV, "default"),),
        note="as bare-uvicorn without threadpoolctl (OpenMP uses every core per predict)",
    ),
)
SERVER_KEYS = tuple(s.key for s in SERVERS)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One HTTP request to loopback; (status, body); (0, b"") when nothing answered."""
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def tree(pid: int) -> list[Any]:
    """The process and all its descendants (psutil objects)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the live process tree."""
    import psutil

    total = 0.0
    for proc in tree(pid):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def settle(pid: int, limit_s: float = QUIET_LIMIT_S) -> tuple[float, float]:
    """Wait until the server tree uses < 10% of a CPU (0.5 s windows), up to ``limit_s``.

    A server may still work on requests the load generator abandoned at the end of a
    cell, or flush logs; the next cell starts once that is done. Returns the seconds
    waited and the CPU seconds the tree used meanwhile.
    """
    t0, cpu0 = now(), tree_cpu_seconds(pid)
    last = cpu0
    while now() - t0 < limit_s:
        time.sleep(0.5)
        cpu = tree_cpu_seconds(pid)
        if cpu - last < 0.05:
            break
        last = cpu
    return now() - t0, tree_cpu_seconds(pid) - cpu0


def tree_rss_mib(pid: int) -> tuple[float, int]:
    """RSS summed over the process tree (MiB) and the number of processes."""
    import psutil

    rss, count = 0, 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.Error):
            rss += proc.memory_info().rss
            count += 1
    return rss / MIB, count


@dataclass
class Running:
    """A started server: its process, URLs and scratch folder."""

    sdef: ServerDef
    proc: subprocess.Popen[bytes]
    port: int
    home: Path
    log_path: Path
    predict_path: str
    ready_path: str
    start_s: float | None = None

    @property
    def predict_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.predict_path}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and every process it started, by PID (SIGTERM, then SIGKILL)."""
        import psutil

        procs = tree(self.proc.pid)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT_S)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class Prepared:
    """What the servers are started from: model files, bodies, expected answers."""

    scratch: Path
    model_path: Path
    keel_home: Path | None
    mlflow_model: Path | None
    bodies: dict[tuple[str, int], Path]  # (body key, rows) -> file
    expected: dict[int, list[int]]  # rows -> predictions
    venvs: dict[str, VenvSpec] = field(default_factory=dict)


def server_env(sdef: ServerDef, home: Path, prep: Prepared) -> dict[str, str]:
    env = h.worker_env("keel" if sdef.kind == "keel" else sdef.kind, home)
    # Every peer gets the library defaults unless the configuration says otherwise.
    for name in (*SINGLE_THREAD_ENV, THREADS_ENV):
        env.pop(name, None)
    env[MODEL_PATH_ENV] = str(prep.model_path)
    if sdef.venv_name:
        venv = prep.venvs[sdef.venv_name]
        env["PATH"] = f"{venv.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv.path)
    if sdef.kind == "bentoml":
        env["BENTOML_HOME"] = str(home / "bentoml")
        env["BENTOML_DO_NOT_TRACK"] = "true"
    env.update(dict(sdef.env))
    return env


def server_command(sdef: ServerDef, port: int, home: Path, prep: Prepared) -> list[str]:
    host = ["--host", "127.0.0.1", "--port", str(port)]
    venv = prep.venvs.get(sdef.venv_name or "")
    if sdef.kind == "keel":
        assert prep.keel_home is not None
        shutil.copytree(prep.keel_home, home / ".keel")
        return [
            *(str(KEEL_BIN), "serve", *host, "--workers", str(sdef.workers)),
            *("--deployment", sdef.deployment),
        ]
    assert venv is not None
    if sdef.kind == "mlflow":
        assert prep.mlflow_model is not None
        return [
            *(str(venv.bin / "mlflow"), "models", "serve", "-m", str(prep.mlflow_model)),
            *("--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)),
            *("-w", str(sdef.workers)),
        ]
    if sdef.kind == "bentoml":
        return [
            *(str(venv.bin / "bentoml"), "serve", "bentoml_service:Classifier"),
            *("--working-dir", str(HERE), *host),
        ]
    if sdef.kind == "bare-uvicorn":
        return [
            *(str(venv.bin / "uvicorn"), "bare_app:app", "--app-dir", str(HERE), *host),
            *("--workers", str(sdef.workers), "--no-access-log", "--log-level", "warning"),
        ]
    if sdef.kind == "bare-granian":
        return [
            *(str(venv.bin / "granian"), "--interface", "asgi", "--working-dir", str(HERE)),
            *(*host, "--workers", str(sdef.workers), "--log-level", "warning", "bare_app:app"),
        ]
    raise ValueError(f"unknown server kind {sdef.kind!r}")


def endpoints(sdef: ServerDef) -> tuple[str, str]:
    """(predict path, readiness path) of a server kind."""
    return {
        "keel": (f"/v1/deployments/{sdef.deployment}/predict", "/readyz"),
        "mlflow": ("/invocations", "/ping"),
        "bentoml": ("/predict", "/readyz"),
        "bare-uvicorn": ("/predict", "/readyz"),
        "bare-granian": ("/predict", "/readyz"),
    }[sdef.kind]


def start_server(sdef: ServerDef, prep: Prepared) -> Running:
    """Start a server and wait until its readiness endpoint answers 200."""
    home = Path(tempfile.mkdtemp(prefix=f"keel-bench-serving-{sdef.key}-"))
    port = free_port()
    cmd = server_command(sdef, port, home, prep)
    env = server_env(sdef, home, prep)
    predict_path, ready_path = endpoints(sdef)
    log_path = home / "server.log"
    log(f"[{sdef.key}] starting on 127.0.0.1:{port}: {' '.join(cmd)}")
    with open(log_path, "wb") as log_fh:
        t0 = now()
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    running = Running(sdef, proc, port, home, log_path, predict_path, ready_path)
    while now() - t0 < START_TIMEOUT_S:
        status, _ = http("GET", f"http://127.0.0.1:{port}{ready_path}", timeout=2)
        if status == 200:
            running.start_s = now() - t0
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if running.start_s is None:
        tail = running.log_tail()
        running.stop()
        shutil.rmtree(home, ignore_errors=True)
        raise RuntimeError(f"{sdef.key} did not answer {ready_path} (log tail):\n{tail}")
    log(f"[{sdef.key}] ready in {running.start_s:.2f} s")
    return running


def parse_predictions(kind: str, raw: bytes) -> list[int]:
    """The predicted classes in a server's answer."""
    data = json.loads(raw)
    preds = data if kind == "bentoml" else data["predictions"]
    return [int(p) for p in preds]


def check_predictions(running: Running, prep: Prepared) -> list[str]:
    """Compare the server's answers for the benchmark's bodies with local predictions."""
    failures: list[str] = []
    for rows, expected in prep.expected.items():
        body = prep.bodies[(running.sdef.body_key, rows)].read_bytes()
        status, raw = http("POST", running.predict_url, body, timeout=60)
        if status != 200:
            failures.append(
                f"{running.sdef.key}: {rows}-row request answered HTTP {status}: {raw[:300]!r}"
            )
            continue
        try:
            got = parse_predictions(running.sdef.kind, raw)
        except (ValueError, KeyError, TypeError) as exc:
            failures.append(f"{running.sdef.key}: unreadable answer {raw[:300]!r} ({exc})")
            continue
        if got != expected:
            diff = sum(a != b for a, b in zip(got, expected, strict=False))
            failures.append(
                f"{running.sdef.key}: {rows}-row predictions differ from the local model's "
                f"({diff} of {len(expected)} differ, {len(got)} returned)"
            )
    return failures


# --------------------------------------------------------------------------- load


def ensure_wrk() -> str:
    """The path of ``wrk``, installing Debian's package when missing and possible."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        log("wrk not found: installing Debian's package (apt-get install -y wrk) ...")
        install = [apt, "install", "-y", "-q", "wrk"]
        if subprocess.run(install, capture_output=True, check=False).returncode != 0:
            subprocess.run([apt, "update", "-q"], capture_output=True, check=False)
            subprocess.run(install, capture_output=True, check=False)
        if found := shutil.which("wrk"):
            return found
    raise SystemExit(
        "wrk (the load generator) is missing: install it (Debian/Ubuntu: apt-get install wrk; "
        "macOS: brew install wrk) and run again."
    )


def children_cpu_seconds() -> float:
    """CPU seconds of this process's terminated, waited-for children (wrk runs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str, url: str, body: Path, connections: int, seconds: float, pid: int
) -> dict[str, Any]:
    """One bounded wrk run (one thread, ``connections`` connections) with CPU accounting."""
    env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_RESULT_TAG": RESULT_TAG}
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    cmd += ["--timeout", WRK_TIMEOUT, "-s", str(LUA_SCRIPT), url]
    load = load_average()
    server_cpu0, wrk_cpu0 = tree_cpu_seconds(pid), children_cpu_seconds()
    t0 = now()
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    wall = now() - t0
    server_cpu = tree_cpu_seconds(pid) - server_cpu0
    wrk_cpu = children_cpu_seconds() - wrk_cpu0
    settle_s, tail_cpu = settle(pid)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)), None)
    if proc.returncode != 0 or line is None:
        said = proc.stderr.strip()[-500:] or proc.stdout[-500:]
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {said}")
    res: dict[str, Any] = json.loads(line[len(RESULT_TAG) :])
    n = res["requests"]
    errors = sum(res["errors"].values())
    duration = res["duration_us"] / 1e6
    # No answer at all within the cell: 0 req/s and no latency sample (wrk reports 0).
    lat = {k: (v if n else None) for k, v in res["latency_us"].items()}
    return {
        "connections": connections,
        "requests": n,
        "non2xx": res["non2xx"],
        "socket_errors": res["errors"],
        "error_count": errors + res["non2xx"],
        "duration_s": duration,
        "wall_s": wall,
        "rps": n / duration if duration else 0.0,
        **{f"{k}_ms": None if v is None else v / 1e3 for k, v in lat.items()},
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_req": server_cpu * 1e3 / n if n else None,
        "server_cpu_share": server_cpu / duration if duration else None,
        "wrk_cpu_s": wrk_cpu,
        "wrk_cpu_ms_per_req": wrk_cpu * 1e3 / n if n else None,
        "after_cell_settle_s": settle_s,
        "after_cell_server_cpu_s": tail_cpu,
        "loadavg_before": load,
    }


def measure_server(
    sdef: ServerDef, prep: Prepared, wrk: str, seconds: float, warm_s: float
) -> dict[str, Any]:
    """Start, check, warm up, measure every cell, stop. Raises on a wrong prediction."""
    try:
        running = start_server(sdef, prep)
    except RuntimeError as exc:
        log(str(exc))
        return {"error": str(exc).splitlines()[0], "log_tail": str(exc)}
    result: dict[str, Any] = {"start_s": running.start_s, "port": running.port, "cells": {}}
    try:
        failures = check_predictions(running, prep)
        if failures:
            raise PredictionMismatchError(failures, running.log_tail())
        log(f"[{sdef.key}] predictions match the local model; warming up {2 * warm_s:g} s ...")
        for rows in ROW_COUNTS:
            body = prep.bodies[(sdef.body_key, rows)]
            warm = run_wrk(wrk, running.predict_url, body, 8, warm_s, running.proc.pid)
            if warm["error_count"]:
                raise RuntimeError(f"{warm['error_count']} failed requests during the warm-up")
        result["rss_after_warmup_mib"], result["processes"] = tree_rss_mib(running.proc.pid)
        for rows in ROW_COUNTS:
            body = prep.bodies[(sdef.body_key, rows)]
            for conc in CONCURRENCIES:
                cell = run_wrk(wrk, running.predict_url, body, conc, seconds, running.proc.pid)
                result["cells"][f"{rows}x{conc}"] = cell
                log(
                    f"[{sdef.key}] {rows:>3} row(s) c={conc:<2}: {cell['rps']:8.1f} req/s  "
                    f"p50 {cell['p50_ms'] or 0:7.2f} ms  p99 {cell['p99_ms'] or 0:7.2f} ms  "
                    f"server CPU {cell['server_cpu_ms_per_req'] or 0:.2f} ms/req"
                    + (f"  ERRORS {cell['error_count']}" if cell["error_count"] else "")
                    + ("  NO ANSWER in the cell" if not cell["requests"] else "")
                )
        result["rss_after_mib"], _ = tree_rss_mib(running.proc.pid)
        # Errors logged by the server go into results.json for the reader.
        result["log_tail"] = running.log_tail(8)
    except RuntimeError as exc:
        log(f"[{sdef.key}] FAILED: {exc}\n{running.log_tail()}")
        result["error"] = str(exc)
    finally:
        running.stop()
        shutil.rmtree(running.home, ignore_errors=True)
    return result


class PredictionMismatchError(Exception):
    """A server answered other predictions than the local model: the benchmark stops."""

    def __init__(self, failures: list[str], log_tail: str) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures
        self.log_tail = log_tail


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's result over rounds: per cell the round with the most req/s.

    A cell with failed requests in any round stays failed (it is never hidden by a
    better round); every round is kept under ``rounds``.
    """
    if len(runs) == 1:
        return runs[0]
    cells: dict[str, Any] = {}
    for run in runs:
        for key, cell in (run.get("cells") or {}).items():
            old = cells.get(key)
            if old is None or (
                not old["error_count"] and (cell["error_count"] or cell["rps"] > old["rps"])
            ):
                cells[key] = {**cell, "round": runs.index(run) + 1}
    merged: dict[str, Any] = {"cells": cells, "rounds": runs}
    errors = [r["error"] for r in runs if r.get("error")]
    if errors:
        merged["error"] = errors[0]
    starts = [r["start_s"] for r in runs if r.get("start_s") is not None]
    if starts:
        merged["start_s"] = min(starts)
    return merged


# --------------------------------------------------------------------------- setup


def train(scratch: Path) -> tuple[Any, Any, Any]:
    """Train the benchmark's model; return it, the request rows and the example rows."""
    import joblib
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = make_classification(
        n_samples=TRAIN_ROWS + 1_000,
        n_features=len(FEATURES),
        n_informative=12,
        n_redundant=4,
        random_state=SEED,
    )
    frame = pd.DataFrame(x, columns=FEATURES)
    t0 = now()
    model = HistGradientBoostingClassifier(random_state=SEED)
    model.fit(frame.iloc[:TRAIN_ROWS], y[:TRAIN_ROWS])
    log(f"trained HistGradientBoostingClassifier on {TRAIN_ROWS:,} rows in {now() - t0:.1f} s")
    joblib.dump(model, scratch / "model.joblib")
    held_out = frame.iloc[TRAIN_ROWS:].reset_index(drop=True)
    return model, held_out, frame.iloc[:5]


def predict_timings(model: Any, rows: Any, quick: bool) -> dict[str, Any]:
    """``predict`` alone, in this process: median ms for 1 and 100 rows, 1 thread and default."""
    from threadpoolctl import threadpool_limits

    out: dict[str, Any] = {}
    for label, limit in (("one_thread", 1), ("default_threads", None)):
        for n in ROW_COUNTS:
            batch = rows.iloc[:n]
            calls = 50 if quick else 300
            with threadpool_limits(limit):
                model.predict(batch)
                samples = []
                for _ in range(calls):
                    t0 = now()
                    model.predict(batch)
                    samples.append(now() - t0)
            out[f"{label}_{n}"] = {
                "median_ms": statistics.median(samples) * 1e3,
                "p99_ms": h.percentile(samples, 99) * 1e3,
                "calls": calls,
            }
    return out


def run_in(python: Path, args: Sequence[str], env: dict[str, str], cwd: Path, what: str) -> str:
    """Run a setup script in a venv; its stdout, or SystemExit with the stderr tail."""
    proc = subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def prepare(
    scratch: Path, kinds: set[str], venvs: dict[str, VenvSpec], quick: bool
) -> tuple[Prepared, dict[str, Any]]:
    """Train, write bodies and model files, register keel's model, save MLflow's."""
    model, held_out, example = train(scratch)
    info: dict[str, Any] = {"predict": predict_timings(model, held_out, quick)}
    example_path = scratch / "example.json"
    example_path.write_text(json.dumps(example.to_dict(orient="records")))
    bodies: dict[tuple[str, int], Path] = {}
    expected: dict[int, list[int]] = {}
    for n in ROW_COUNTS:
        batch = held_out.iloc[:n]
        expected[n] = [int(v) for v in model.predict(batch)]
        values = [[float(v) for v in row] for row in batch.to_numpy()]
        for key in ("records", "dataframe_records"):
            path = scratch / f"body_{key}_{n}.json"
            path.write_bytes(records_body(key, values))
            bodies[(key, n)] = path
    info["body_bytes"] = {f"{k}_{n}": p.stat().st_size for (k, n), p in bodies.items()}
    info["expected_positive_share_100"] = sum(expected[100]) / 100
    prep = Prepared(scratch, scratch / "model.joblib", None, None, bodies, expected, venvs)

    if "keel" in kinds:
        home = scratch / "keel-home"
        env = h.worker_env("keel", scratch)
        env["KEEL_HOME"] = str(home)
        try:
            out = run_in(
                Path(sys.executable),
                [str(HERE / "keel_prepare.py"), str(prep.model_path), str(example_path)],
                env,
                scratch,
                "keel_prepare.py (log_model + create_deployment)",
            )
            info["keel_prepare"] = json.loads(out.strip().splitlines()[-1])
            prep.keel_home = home
        except RuntimeError as exc:
            log(str(exc))
            info["keel_prepare_error"] = str(exc)
    if "mlflow" in kinds:
        venv = venvs[f"serving-mlflow-{MLFLOW_VERSION}"]
        out_dir = scratch / "mlflow-model"
        env = h.worker_env("mlflow", scratch)
        run_in(
            venv.python,
            [
                str(HERE / "mlflow_prepare.py"),
                str(prep.model_path),
                str(example_path),
                str(out_dir),
            ],
            env,
            scratch,
            "mlflow_prepare.py (mlflow.sklearn.save_model)",
        )
        prep.mlflow_model = out_dir
    return prep, info


# --------------------------------------------------------------------------- table


@dataclass
class Cell(h.Row):
    """One line: a server in one cell of the grid, with keel's advantage over it.

    ``mlflow`` holds this server's req/s (the peer's value) and ``keel`` keel's
    (one worker) in the same cell, so the harness's ratio is keel / peer.
    """

    server: str = ""
    server_label: str = ""
    rows: int = 0
    conc: int = 0
    res: dict[str, Any] | None = None
    error: str | None = None
    p99_max_ms: float | None = None  # keel's own row: the latency target

    @property
    def met(self) -> bool | None:
        if self.p99_max_ms is not None:
            p99 = h.lookup(self.res, "p99_ms")
            return None if p99 is None else p99 < self.p99_max_ms
        return super().met

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "rows": self.rows,
            "concurrency": self.conc,
            "rps": h.lookup(self.res, "rps"),
            "p50_ms": h.lookup(self.res, "p50_ms"),
            "p99_ms": h.lookup(self.res, "p99_ms"),
            "server_cpu_ms_per_req": h.lookup(self.res, "server_cpu_ms_per_req"),
            "keel_rps": self.keel,
            "keel_advantage": None if self.server.startswith("keel") else self.advantage,
            "target": self.target,
            "met": self.met,
            "error": self.error,
        }


def target_for(key: str, rows: int, conc: int) -> tuple[str, float | None, float | None]:
    """(target text, keel/peer ratio needed, keel p99 bound in ms) for a row."""
    if key == "keel":
        if (rows, conc) == P99_TARGET_CELL:
            return f"p99 < {P99_TARGET_MS:g} ms", None, P99_TARGET_MS
        return "-", None, None
    ratios = {"mlflow": MLFLOW_TARGET, "bentoml": BENTOML_TARGET, "bare-uvicorn": BARE_TARGET}
    if key in ratios:
        return f"keel >= {ratios[key]:g}x req/s", ratios[key], None
    return "-", None, None


def build_rows(results: dict[str, dict[str, Any]], order: Sequence[str]) -> list[Cell]:
    labels = {s.key: s.label for s in SERVERS}
    rows: list[Cell] = []
    for n in ROW_COUNTS:
        for conc in CONCURRENCIES:
            cell_key = f"{n}x{conc}"
            keel_rps = h.lookup(results.get("keel"), "cells", cell_key, "rps")
            for key in order:
                res = results.get(key, {})
                cell = (res.get("cells") or {}).get(cell_key)
                text, ratio, p99_max = target_for(key, n, conc)
                error = None
                if cell is None:
                    error = res.get("error") or "not run"
                elif cell["error_count"]:
                    error = f"{cell['error_count']} failed requests"
                rps = None if cell is None or error else cell["rps"]
                rows.append(
                    Cell(
                        label=f"{n} row{'s' if n > 1 else ''}, c={conc}",
                        unit="req/s",
                        mlflow=None if key == "keel" else rps,
                        keel=keel_rps,
                        higher_is_better=True,
                        target=text,
                        target_ratio=ratio,
                        server=key,
                        server_label=labels[key],
                        rows=n,
                        conc=conc,
                        res=None if error else cell,
                        error=error,
                        p99_max_ms=p99_max,
                    )
                )
    return rows


HEADERS = [
    "Request",
    "Server",
    "req/s",
    "p50 ms",
    "p99 ms",
    "CPU ms/req",
    "keel adv.",
    "Target",
    "Met",
]


def _num(value: float | None) -> str:
    """A number cell; ``n/a`` when a cell had no answer to measure."""
    return "n/a" if value is None else fmt_number(value)


def row_cells(row: Cell) -> list[str]:
    if row.error or row.res is None:
        fail = "FAILED" if row.error != "not run" else "not run"
        return [row.label, row.server_label, fail, "", "", "", "", row.target, row.met_text()]
    adv = "" if row.server.startswith("keel") else h.fmt_ratio(row.advantage)
    return [
        row.label,
        row.server_label,
        fmt_number(row.res["rps"]),
        _num(row.res.get("p50_ms")),
        _num(row.res.get("p99_ms")),
        _num(row.res.get("server_cpu_ms_per_req")),
        adv,
        row.target,
        row.met_text(),
    ]


def notes(report: dict[str, Any], seconds: float) -> list[str]:
    pred = report["setup"].get("predict", {})

    def ms(key: str) -> str:
        found = h.lookup(pred, key, "median_ms")
        return "n/a" if found is None else f"{found:.2f} ms"

    servers = {s.key: s for s in SERVERS}
    run_keys = [k for k in report["servers"] if k in servers]
    found = [
        "keel adv. = keel serve (1 worker, prediction logging on) req/s / this server's req/s "
        "in the same cell; > 1 means keel is faster.",
        f"Load: wrk 4.1 (one thread, separate process) with 1 or 100 JSON records per POST, "
        f"c = open connections, {seconds:g} s per cell after a warm-up; latency percentiles are "
        "wrk's. CPU ms/req: user+system CPU of the server's whole process tree (psutil) "
        "during the cell / requests answered.",
        f"predict() alone (in-process, keel's venv, median): 1 row {ms('one_thread_1')}, "
        f"100 rows {ms('one_thread_100')} with one thread; with the default threads "
        f"{ms('default_threads_1')} / {ms('default_threads_100')}.",
        "Every server checked before timing: its predictions for the 1- and 100-row bodies "
        "equal the local model's.",
    ]
    found += [f"{servers[k].label}: {servers[k].note}." for k in run_keys if servers[k].note]
    return found


def pivot_markdown(results: dict[str, dict[str, Any]], order: Sequence[str]) -> str:
    """Compact tables: req/s (p99 ms) and server CPU ms/request per server and cell."""
    labels = {s.key: s.label for s in SERVERS}
    cells = [(n, c) for n in ROW_COUNTS for c in CONCURRENCIES]
    head = " | ".join(f"{n} row{'s' if n > 1 else ''}, c={c}" for n, c in cells)
    out: list[str] = []
    for title, fmt in (
        ("req/s (p99 ms)", lambda r: f"{fmt_number(r['rps'])} ({_num(r['p99_ms'])})"),
        ("server CPU ms per request", lambda r: _num(r["server_cpu_ms_per_req"])),
    ):
        out += [f"| {title} | {head} |", "|---|" + "---:|" * len(cells)]
        for key in order:
            res = (results.get(key) or {}).get("cells") or {}
            values = []
            for n, c in cells:
                cell = res.get(f"{n}x{c}")
                ok = cell is not None and not cell["error_count"]
                values.append(fmt(cell) if ok else "failed" if key in results else "not run")
            out.append(f"| {labels[key]} | " + " | ".join(values) + " |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__, RESULTS_PATH, tools=False)
    parser.add_argument(
        "--servers",
        default=",".join(SERVER_KEYS),
        help=f"comma-separated subset of {','.join(SERVER_KEYS)} (default: all)",
    )
    parser.add_argument(
        "--seconds", type=float, help="seconds per measured cell (default 10, --quick 4)"
    )
    parser.add_argument(
        "--max-cells",
        type=int,
        default=MAX_CELLS_DEFAULT,
        help=f"refuse to run more measured cells than this (default {MAX_CELLS_DEFAULT})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every server this many times, one after the other, and report each "
        "cell's best round (least interference on a shared machine; default 1)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")

    chosen = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in SERVER_KEYS]
    if unknown or not chosen:
        parser.error(f"--servers: unknown {unknown or 'empty list'}; choose from {SERVER_KEYS}")
    order = [k for k in SERVER_KEYS if k in chosen]
    if "keel" not in order and any(k.startswith("keel") for k in order):
        log("note: keel adv. needs the 'keel' server in --servers; it will read n/a")
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    if seconds <= 0 or seconds > 120:
        parser.error(f"--seconds must be in (0, 120], got {seconds:g}")
    warm_s = 1.0 if args.quick else 2.0
    cells = args.rounds * len(order) * len(ROW_COUNTS) * len(CONCURRENCIES)
    if cells > args.max_cells:
        parser.error(
            f"{cells} cells planned ({args.rounds} round(s) x {len(order)} servers x "
            f"{len(ROW_COUNTS)} sizes x {len(CONCURRENCIES)} concurrencies) > --max-cells "
            f"{args.max_cells}: choose fewer --servers or --rounds, or raise --max-cells"
        )
    output = args.output or (None if args.quick else RESULTS_PATH)
    defs = [s for s in SERVERS if s.key in order]
    kinds = {s.kind for s in defs}
    if "keel" in kinds and not KEEL_BIN.exists():
        log(f"keel's CLI not found at {KEEL_BIN}: install the project into this venv first.")
        return 2

    started = dt.datetime.now(dt.UTC)
    t_start = now()
    load_start = load_average()
    wrk = ensure_wrk()
    specs = {
        s.name: s
        for s in venv_specs(md.version("scikit-learn"), md.version("numpy"), md.version("pandas"))
    }
    needed = {s.venv_name for s in defs if s.venv_name}
    venv_info = {name: ensure_pinned_venv(specs[name], log) for name in sorted(needed)}
    for name in venv_info:
        venv_info[name]["versions"] = installed_versions(specs[name].python, REPORTED_DISTS)
    keel_versions = {d: v for d in REPORTED_DISTS if (v := _version(d))}
    keel_versions["keel"] = _version("keel") or "?"

    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-serving-"))
    results: dict[str, dict[str, Any]] = {}
    mismatch: PredictionMismatchError | None = None
    try:
        prep, setup = prepare(scratch, kinds, specs, args.quick)
        est = cells * (seconds + 0.3) + len(defs) * (2 * warm_s + 8)
        log(f"{cells} cells of {seconds:g} s: about {est / 60:.0f} min from here")
        rounds: dict[str, list[dict[str, Any]]] = {s.key: [] for s in defs}
        for number in range(1, args.rounds + 1):
            if args.rounds > 1:
                log(f"--- round {number} of {args.rounds}")
            for sdef in defs:
                if sdef.kind == "keel" and prep.keel_home is None:
                    rounds[sdef.key].append({"error": "keel_prepare.py failed (see setup)"})
                    continue
                try:
                    rounds[sdef.key].append(measure_server(sdef, prep, wrk, seconds, warm_s))
                except PredictionMismatchError as exc:
                    rounds[sdef.key].append({"error": str(exc), "log_tail": exc.log_tail})
                    mismatch = exc
                    break
            if mismatch is not None:
                break
        results = {key: best_of(runs) for key, runs in rounds.items() if runs}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    total_s = now() - t_start
    load_end = load_average()
    report: dict[str, Any] = {
        "benchmark": "serving",
        "command": " ".join(["python benchmarks/serving/run.py", *(argv or sys.argv[1:])]),
        "date": started.isoformat(timespec="seconds"),
        "total_wall_seconds": total_s,
        "quick": args.quick,
        "config": {
            "seconds_per_cell": seconds,
            "rounds": args.rounds,
            "warmup_seconds_per_size": warm_s,
            "row_counts": ROW_COUNTS,
            "concurrencies": CONCURRENCIES,
            "train_rows": TRAIN_ROWS,
            "features": len(FEATURES),
            "seed": SEED,
            "load_generator": subprocess.run(
                [wrk, "--version"], capture_output=True, text=True, check=False
            ).stdout.splitlines()[0:1],
        },
        "versions": {"keel_venv": keel_versions, "venvs": venv_info},
        "machine": {**machine_info(), "loadavg_start": load_start, "loadavg_end": load_end},
        "setup": setup,
        "servers": results,
    }
    if mismatch is not None:
        print("\nPrediction check FAILED, benchmark aborted:")
        for failure in mismatch.failures:
            print(f"  - {failure}")
        h.write_outputs(report, output, None, "")
        return 1

    rows = build_rows(results, order)
    report["rows"] = [r.to_json() for r in rows]
    title = (
        f"Serving benchmark: keel {keel_versions['keel']} vs mlflow models serve "
        f"{MLFLOW_VERSION} vs BentoML {BENTOML_VERSION} vs a bare app ({started:%Y-%m-%d}, "
        f"{os.cpu_count()} CPUs{', QUICK' if args.quick else ''})"
    )
    note_lines = [*notes(report, seconds), load_note(load_start, load_end)]
    print()
    h.print_table(title, HEADERS, rows, row_cells, note_lines, width=150)
    failures = [f"{key}: {res['error']}" for key, res in results.items() if res.get("error")] + [
        f"{r.server} {r.label}: {r.error}" for r in rows if r.error and r.error != "not run"
    ]
    failures = sorted(set(failures))
    h.print_checks(
        failures,
        [
            "Checks passed: every server returned the local model's predictions and "
            "answered every timed request with 2xx."
        ],
    )
    print(f"Total wall time: {total_s:.0f} s. {load_note(load_start, load_end)}")
    report["failures"] = failures
    pivot = pivot_markdown(results, order)
    print("\n" + pivot)
    targets = [r for r in rows if r.target != "-"]
    markdown = "\n".join(
        [
            pivot,
            "Targets:\n",
            h.markdown_table(HEADERS, targets, row_cells, []).rstrip() + "\n",
            "Every cell:\n",
            h.markdown_table(HEADERS, rows, row_cells, note_lines),
        ]
    )
    h.write_outputs(report, output, args.markdown, markdown)
    return 1 if failures else 0


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
