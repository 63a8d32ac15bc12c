#!/usr/bin/env python
"""Side-by-side benchmark of keel's model registry against MLflow's.

One command runs everything::

    python benchmarks/registry/run.py

It (1) makes sure MLflow 3.17.2 is installed in its own pinned venv under
``benchmarks/.venvs/`` (shared with the tracking benchmark; created with ``uv``
on first use, reused afterwards), (2) runs each tool's workload in a fresh
worker process and a fresh temporary directory, both on SQLite without a
server: log one small scikit-learn model in one run, register it 1,000 times,
set an alias and resolve it 200 times, load the model through the alias 50
times and predict, (3) checks that both tools stored and returned the right
data, and (4) prints a table and writes ``benchmarks/registry/results.json``.
keel runs with the interpreter running this script (the project venv). See
``README.md`` beside this file.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
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
from registry_common import ALIAS, MODEL, Config, Request, now  # noqa: E402

RESULTS_PATH = HERE / "results.json"
PROFILE_DIR = HERE / "profiles"
WORKER_TIMEOUT_S = 900

QUICK = Config(versions=50, alias_version=25, resolves=20, loads=5)

KEEL_CHECK = "import keel, keel.registry; from keel.models import save_model, load_model"


def check_keel() -> str | None:
    """Return an error message if keel's registry and models cannot be imported here."""
    proc = subprocess.run(
        [sys.executable, "-c", KEEL_CHECK], capture_output=True, text=True, check=False
    )
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


# ----------------------------------------------------------------------- workers


def run_worker(
    tool: str, python: Path, cfg: Config, profile_dir: Path | None = None
) -> dict[str, Any]:
    def argv(workdir: Path) -> str:
        req = Request(
            workdir=str(workdir),
            config=cfg.to_json(),
            profile_dir=str(profile_dir) if profile_dir else None,
        )
        return req.to_argv()

    what = " (profiled with pyinstrument)" if profile_dir else ""
    return h.run_worker(
        python,
        HERE / f"{tool}_worker.py",
        argv,
        tag=f"[{tool}]",
        start=f"[{tool}] register {cfg.versions:,} versions, resolve, load{what} ...",
        prefix=f"keel-bench-registry-{tool}-",
        timeout_s=WORKER_TIMEOUT_S,
        env=lambda workdir: h.worker_env(tool, workdir),
    )


# ---------------------------------------------------------------------- checking


def check_results(results: dict[str, dict[str, Any]], cfg: Config) -> list[str]:
    failures: list[str] = []
    expected: dict[str, Any] = {}
    for tool, res in results.items():
        if "error" in res:
            failures.append(f"{tool}: {res['error']}")
            continue
        for key in ("register", "register_client"):
            reg = res.get(key)
            if reg and (reg["stored_versions"] != cfg.versions or not reg["version_numbers_ok"]):
                failures.append(
                    f"{tool}: {reg['api']} stored {reg['stored_versions']} versions, "
                    f"expected 1..{cfg.versions}"
                )
        if res["alias"]["resolved_versions"] != [cfg.alias_version]:
            failures.append(
                f"{tool}: @{ALIAS} resolved to {res['alias']['resolved_versions']}, "
                f"expected [{cfg.alias_version}]"
            )
        for key in ("load", "load_native"):
            if key in res and not res[key]["predictions_match"]:
                failures.append(f"{tool}: {res[key]['api']} predicted differently")
        expected[tool] = res["expected_predictions"]
    if len(expected) == 2 and expected["keel"] != expected["mlflow"]:
        failures.append("the two tools' models predict differently (same data and seed)")
    return failures


# ------------------------------------------------------------------------- table


@dataclass
class Row(h.Row):
    mlflow_p99: float | None = None
    keel_p99: float | None = None
    mlflow_missing: str = "failed"  # shown when the value is None
    keel_missing: str = "failed"

    def json_extra(self) -> dict[str, Any]:
        return {"mlflow_p99": self.mlflow_p99, "keel_p99": self.keel_p99}


def fmt_value(value: float | None, p99: float | None, missing: str) -> str:
    if value is None:
        return missing
    text: str = fmt_number(value)
    if p99 is not None:
        text += f" (p99 {fmt_number(p99)})"
    return text


def build_rows(results: dict[str, dict[str, Any]], cfg: Config) -> list[Row]:
    def missing(tool: str) -> str:
        return "failed" if tool in results else "not run"

    def row(
        label: str,
        unit: str,
        path: tuple[str, ...],
        target: str,
        target_ratio: float | None = None,
        *,
        latency: bool = False,
        mlflow_path: tuple[str, ...] | None = None,
    ) -> Row:
        scale = 1000.0 if latency else 1.0

        def value(tool: str, p: tuple[str, ...], stat: str | None = None) -> float | None:
            found = h.lookup(results.get(tool), *p, *([stat] if stat else []))
            return None if found is None else found * scale

        m_path = mlflow_path or path
        return Row(
            label,
            unit,
            value("mlflow", m_path, "median" if latency else None),
            value("keel", path, "median" if latency else None),
            not latency,
            target,
            target_ratio,
            mlflow_p99=value("mlflow", m_path, "p99") if latency else None,
            keel_p99=value("keel", path, "p99") if latency else None,
            mlflow_missing=missing("mlflow"),
            keel_missing=missing("keel"),
        )

    uri = f"models:/{MODEL}@{ALIAS}"
    return [
        row(
            f"1. register {cfg.versions:,} versions, vs mlflow.register_model",
            "versions/s",
            ("register", "versions_per_s"),
            ">= 10x",
            10,
        ),
        row(
            f"1. register {cfg.versions:,} versions, vs MlflowClient.create_model_version",
            "versions/s",
            ("register", "versions_per_s"),
            ">= 10x",
            10,
            mlflow_path=("register_client", "versions_per_s"),
        ),
        row(
            f"2. resolve {uri} x{cfg.resolves}",
            "ms",
            ("alias", "resolve_s"),
            ">= 10x",
            10,
            latency=True,
        ),
        row(
            f"3. load via alias + predict x{cfg.loads}, vs MLflow pyfunc",
            "ms",
            ("load", "load_predict_s"),
            "-",
            latency=True,
        ),
        row(
            f"3. load via alias + predict x{cfg.loads}, vs mlflow.sklearn",
            "ms",
            ("load", "load_predict_s"),
            "-",
            latency=True,
            mlflow_path=("load_native", "load_predict_s"),
        ),
    ]


HEADERS = ["Workload", "Unit", f"MLflow {MLFLOW_VERSION}", "keel", "keel adv.", "Target", "Met"]


def row_cells(row: Row) -> list[str]:
    return [
        row.label,
        row.unit,
        fmt_value(row.mlflow, row.mlflow_p99, row.mlflow_missing),
        fmt_value(row.keel, row.keel_p99, row.keel_missing),
        h.fmt_ratio(row.advantage),
        row.target,
        row.met_text(),
    ]


def _ms(res: dict[str, Any] | None, *path: str) -> str:
    found = h.lookup(res, *path)
    return "n/a" if found is None else f"{fmt_number(found * 1000)} ms"


def _files(res: dict[str, Any] | None) -> str:
    load = (res or {}).get("load", {})
    if "model_files" not in load:
        return "n/a"
    return f"{load['model_files']} files, {load['model_bytes'] / 1000:.1f} kB"


def _fmt(res: dict[str, Any] | None) -> str:
    return str((res or {}).get("serialization_format") or "n/a")


def _tenths(res: dict[str, Any] | None, key: str) -> str:
    cur = (res or {}).get(key, {}).get("per_call_s", {}).get("mean_by_tenth")
    if not cur:
        return "n/a"
    return f"{fmt_number(cur[0] * 1000)}/{fmt_number(cur[-1] * 1000)}"


def notes(results: dict[str, dict[str, Any]], cfg: Config) -> list[str]:
    m, k = results.get("mlflow"), results.get("keel")
    return [
        "keel adv. > 1 means keel is better: keel/MLflow for throughput, MLflow/keel for latency.",
        "Latency cells: median (p99, nearest rank) in ms; the ratio and target use the median.",
        f"1: one model logged once in one run, then registered {cfg.versions:,} times from "
        "runs:/<run_id>/model with keel.registry.register_model / mlflow.register_model (one "
        "untimed warm-up registration to another model first); MLflow also "
        f"{cfg.versions:,} times into a second model with MlflowClient().create_model_version"
        "(name, source, run_id). mlflow.register_model also lists the run's artifacts, looks up "
        "the logged model and first tries create_registered_model, which on an existing name "
        "loads the model with all its versions to build the error (mean ms per call, first/last "
        f"tenth: mlflow.register_model {_tenths(m, 'register')}, create_model_version "
        f"{_tenths(m, 'register_client')}, keel {_tenths(k, 'register')}).",
        f"2: alias {ALIAS!r} set on version {cfg.alias_version}; MLflow: one "
        "MlflowClient().get_model_version_by_alias(name, alias) per call (one client made "
        "beforehand); keel: keel.registry.resolve(uri); one untimed warm-up call first.",
        f"3: load(models:/{MODEL}@{ALIAS}) then predict on {cfg.predict_rows} rows, timed "
        f"together; one untimed first load before the {cfg.loads} timed ones (first load + "
        f"predict: MLflow pyfunc {_ms(m, 'load', 'first_load_predict_s')}, mlflow.sklearn "
        f"{_ms(m, 'load_native', 'first_load_predict_s')}, keel "
        f"{_ms(k, 'load', 'first_load_predict_s')}). keel.registry.load returns a "
        "signature-checking wrapper like mlflow.pyfunc; the first load copies its files "
        f"({_files(k)}) into a local cache, and every load re-hashes every "
        "cached file (BLAKE3) against the registry's manifest before deserialising "
        f"(Registry.materialize, median {_ms(k, 'load', 'verify_cached_files_s', 'median')} of "
        "each load). MLflow copies the artifacts out of its store on every load and checks "
        f"no hashes. Model format: MLflow {_fmt(m)}, keel {_fmt(k)}.",
    ]


def print_table(
    rows: list[Row], results: dict[str, dict[str, Any]], cfg: Config, title: str
) -> None:
    h.print_table(title, HEADERS, rows, row_cells, notes(results, cfg))


def markdown_table(rows: list[Row], results: dict[str, dict[str, Any]], cfg: Config) -> str:
    return h.markdown_table(HEADERS, rows, row_cells, notes(results, cfg))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__, RESULTS_PATH)
    parser.add_argument(
        "--profile",
        nargs="?",
        const=PROFILE_DIR,
        type=Path,
        metavar="DIR",
        help="afterwards, run keel's worker once more under pyinstrument and write one "
        f"report per timed section to DIR (default {PROFILE_DIR}); not used for the table",
    )
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else Config()
    tools = [t for t in ("mlflow", "keel") if t in {s.strip() for s in args.tools.split(",")}]
    unknown = {s.strip() for s in args.tools.split(",") if s.strip()} - {"mlflow", "keel"}
    if unknown or not tools:
        parser.error(f"unknown or no tool(s): {args.tools!r} (use mlflow,keel)")
    output = args.output or (None if args.quick else RESULTS_PATH)

    started = dt.datetime.now(dt.UTC)
    t_start = now()
    load_start = load_average()
    pythons: dict[str, Path] = {"keel": Path(sys.executable)}
    venv_info: dict[str, Any] = {}
    if "mlflow" in tools:
        pythons["mlflow"], venv_info = ensure_mlflow_venv()
    if ("keel" in tools or args.profile) and (error := check_keel()):
        log(f"keel's registry is not importable with {sys.executable}: {error}")
        log("Install the project into this venv first (or run with --tools mlflow).")
        return 2

    results: dict[str, dict[str, Any]] = {}
    for tool in tools:
        results[tool] = run_worker(tool, pythons[tool], cfg)
    profile: dict[str, Any] | None = None
    if args.profile:
        profile = run_worker("keel", pythons["keel"], cfg, profile_dir=args.profile.resolve())
        log(f"pyinstrument reports in {args.profile}")

    failures = check_results(results, cfg)
    rows = build_rows(results, cfg)
    total_s = now() - t_start
    versions = {
        "mlflow": results.get("mlflow", {}).get("version")
        or (MLFLOW_VERSION if "mlflow" in tools else None),
        "keel": results.get("keel", {}).get("version"),
        "scikit-learn": sorted(
            {r["sklearn_version"] for r in results.values() if "sklearn_version" in r}
        ),
        "sqlite": sorted({r["sqlite_version"] for r in results.values() if "sqlite_version" in r}),
    }
    title = (
        f"Registry benchmark: keel {versions['keel']} vs MLflow {versions['mlflow']} "
        f"({started:%Y-%m-%d}, {os.cpu_count()} CPUs{', QUICK' if args.quick else ''})"
    )
    print()
    print_table(rows, results, cfg, title)
    if failures:
        print("\nCorrectness checks FAILED:")
        for failure in failures:
            print(f"  - {failure}")
    else:
        print(
            f"\nCorrectness checks passed: each tool stored versions 1..{cfg.versions:,}, "
            f"@{ALIAS} resolved to version {cfg.alias_version} every time,"
        )
        print("and every loaded model predicted the same labels as the in-memory model.")
    load_end = load_average()
    print(f"Total wall time: {total_s:.0f} s. {load_note(load_start, load_end)}")

    report = {
        "benchmark": "registry",
        "command": "python benchmarks/registry/run.py" + (" --quick" if args.quick else ""),
        "date": started.isoformat(timespec="seconds"),
        "total_wall_seconds": total_s,
        "quick": args.quick,
        "config": cfg.to_json(),
        "versions": versions,
        "mlflow_venv": venv_info,
        "machine": {**machine_info(), "loadavg_start": load_start, "loadavg_end": load_end},
        "results": results,
        "profile_run": profile,
        "rows": [r.to_json() for r in rows],
        "correctness_failures": failures,
    }
    h.write_outputs(report, output, args.markdown, markdown_table(rows, results, cfg))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
