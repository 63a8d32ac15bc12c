#!/usr/bin/env python
"""Monitoring benchmark: keel's drift detection vs Evidently's data drift preset.

One command runs everything::

    python benchmarks/monitoring/run.py [--rows 100000,1000000,5000000,10000000] [--quick]

It (1) generates once, under ``benchmarks/.cache/``, a reference and a current
Parquet table of each size (40 numeric + 10 categorical columns, 10 strong and 6
weak planted drifts, the truth recorded; see ``monitoring_common.py``), (2) makes
sure Evidently 0.7.23 is installed in its own pinned venv under
``benchmarks/.venvs/`` (with uv, on first use), (3) runs every measurement in a
fresh worker process, one at a time, with both files read once beforehand (warm
page cache for every tool): Evidently reads both files with
``pandas.read_parquet`` and runs ``Report([DataDriftPreset()])``; keel builds a
reference from the reference file and checks the current file against it
(``keel.monitoring.reference`` / ``check`` on the Parquet paths), and, where
Evidently runs, also on the same pandas DataFrames (read time included), and
(4) prints a table with wall time, peak RSS, detection accuracy and keel's
advantage, and writes ``benchmarks/monitoring/results.json``.

Evidently runs at 100k and 1M rows by default (1M takes about 10 minutes);
``--evidently-max-rows 5000000`` adds 5M (expect an hour or more). keel runs at
every size. keel runs with the interpreter running this script (the project venv).
"""

from __future__ import annotations

import datetime as dt
import json
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
from _harness import fmt_number, load_average, load_note, log, machine_info, now  # noqa: E402
from monitoring_common import CACHE_DIR, SPEC, accuracy, data_paths, generate  # noqa: E402

EVIDENTLY_VERSION = "0.7.23"
# Evidently 0.7.23 imports pandas internals that pandas 3 removed; pyarrow as in keel's venv.
EVIDENTLY_REQUIREMENTS = [f"evidently=={EVIDENTLY_VERSION}", "pandas>=2.2,<3", "pyarrow==26.0.1"]
EVIDENTLY_VENV = h.VENVS_DIR / f"evidently-{EVIDENTLY_VERSION}"
RESULTS_PATH = HERE / "results.json"
DEFAULT_ROWS = "100000,1000000,5000000,10000000"
TARGET_ROWS = 1_000_000  # where the speed and memory targets apply
SPEED_TARGET = 50.0
MEMORY_TARGET = 4.0
MINUTES_TARGET_S = 600.0  # "10M rows finishes in minutes"
TOOLS = ("evidently", "keel")
#: Evidently's measured peak RSS per million rows in each table (5.06 GB at 1M rows).
EVIDENTLY_MB_PER_M_ROWS = 5_100

KEEL_CHECK = "from keel import monitoring; monitoring.reference; monitoring.check"


# ------------------------------------------------------------------------ setup


def ensure_evidently_venv() -> tuple[Path, dict[str, Any]]:
    """The pinned Evidently venv's python, created with uv on first use."""
    python = h.venv_python(EVIDENTLY_VENV)
    if h.installed_version(python, "evidently") == EVIDENTLY_VERSION:
        log(f"Evidently {EVIDENTLY_VERSION}: reusing {EVIDENTLY_VENV}")
        return python, {"path": str(EVIDENTLY_VENV), "created": False, "setup_seconds": 0.0}
    log(f"Evidently {EVIDENTLY_VERSION}: creating {EVIDENTLY_VENV} ...")
    t0 = now()
    uv = [sys.executable, "-m", "uv"]
    if subprocess.run([*uv, "--version"], capture_output=True, check=False).returncode:
        uv = ["uv"]
    subprocess.run([*uv, "venv", "--clear", "--python", sys.executable, str(EVIDENTLY_VENV)])
    subprocess.run(
        [*uv, "pip", "install", "--python", str(python), *EVIDENTLY_REQUIREMENTS], check=True
    )
    found = h.installed_version(python, "evidently")
    if found != EVIDENTLY_VERSION:
        raise SystemExit(
            f"expected evidently {EVIDENTLY_VERSION} in {EVIDENTLY_VENV}, found {found}"
        )
    return python, {"path": str(EVIDENTLY_VENV), "created": True, "setup_seconds": now() - t0}


def check_keel() -> str | None:
    """An error message if ``keel.monitoring`` cannot be imported here, else None."""
    proc = subprocess.run(
        [sys.executable, "-c", KEEL_CHECK], capture_output=True, text=True, check=False
    )
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def parse_rows(text: str) -> list[int]:
    """``"100000,1e6,5M"`` -> ``[100000, 1000000, 5000000]``."""
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if not part:
            continue
        mult = {"k": 1_000, "m": 1_000_000}.get(part[-1], 1)
        try:
            value = int(float(part[:-1] if mult > 1 else part) * mult)
        except ValueError:
            raise SystemExit(
                f"--rows: {part!r} is not a row count (use e.g. 100000,1M,5M)"
            ) from None
        if value < 1_000:
            raise SystemExit(f"--rows: {value} rows is too few for a drift benchmark (>= 1000)")
        sizes.append(value)
    if not sizes:
        raise SystemExit("--rows: give at least one size, e.g. --rows 100000")
    return sorted(set(sizes))


def warm_page_cache(*paths: Path) -> None:
    """Read the files once so that no tool pays for disk reads another did not."""
    for path in paths:
        with path.open("rb") as fh:
            while fh.read(64 << 20):
                pass


# ---------------------------------------------------------------------- workers


def evidently_cache(rows: int) -> Path:
    """Where an Evidently measurement is kept for ``--reuse-evidently``."""
    return (
        CACHE_DIR
        / f"{data_paths(rows)[0].name.rsplit('-', 1)[0]}-evidently-{EVIDENTLY_VERSION}.json"
    )


def memory_too_small(rows: int) -> str | None:
    """Why Evidently cannot run at ``rows`` here (not enough free memory), or None."""
    need_mb = EVIDENTLY_MB_PER_M_ROWS * rows / 1e6
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            kb = int(next(ln for ln in fh if ln.startswith("MemAvailable")).split()[1])
    except (OSError, StopIteration, ValueError):
        return None
    if need_mb <= 0.9 * kb / 1024:
        return None
    return (
        f"needs about {need_mb / 1024:.0f} GB (measured {EVIDENTLY_MB_PER_M_ROWS / 1024:.1f} GB "
        f"per 1M rows), {kb / 2**20:.0f} GB available; lower --evidently-max-rows or free memory"
    )


def measure(tool: str, python: Path, rows: int, *, input_kind: str = "parquet") -> dict[str, Any]:
    """Run one worker on the ``rows``-row tables and return its result (or ``{"error"}``)."""
    ref, cur = data_paths(rows)
    request = {
        "reference": str(ref),
        "current": str(cur),
        "numeric": SPEC.numeric_names,
        "categorical": SPEC.categorical_names,
        "input": input_kind,
    }
    warm_page_cache(ref, cur)
    what = "Evidently DataDriftPreset" if tool == "evidently" else f"keel from {input_kind}"
    timeout = (900 + rows * 0.004) if tool == "evidently" else (600 + rows * 2e-4)
    load = load_average()
    result = h.run_worker(
        python,
        HERE / f"{tool}_worker.py",
        lambda _workdir: json.dumps(request),
        tag=f"[{tool} {rows:,}]",
        start=f"[{tool} {rows:,}] {what} ...",
        prefix=f"keel-bench-monitoring-{tool}-",
        timeout_s=timeout,
        env=lambda workdir: h.worker_env(tool, workdir),
    )
    result["loadavg_start"] = load
    result["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result["loadavg_end"] = load_average()
    if "columns" in result:
        flags = {name: bool(c.get("drifted")) for name, c in result["columns"].items()}
        result["accuracy"] = accuracy(flags)
    return result


def best(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest successful repeat (least disturbed by other load), else the first."""
    ok = [s for s in samples if "error" not in s]
    if not ok:
        return samples[0]
    chosen = dict(min(ok, key=lambda s: float(s["total_seconds"])))
    chosen["repeats_total_seconds"] = [s.get("total_seconds") for s in samples]
    return chosen


# ------------------------------------------------------------------------ table


@dataclass
class Row(h.Row):
    """A table row; ``mlflow`` holds Evidently's value (the harness's name for the rival)."""

    text_evidently: str | None = None
    text_keel: str | None = None
    verdict: bool | None = None  # for rows whose target is not a ratio
    ratio: bool = True

    @property
    def advantage(self) -> float | None:
        """Evidently/keel for time and memory; none for accuracy rows."""
        return super().advantage if self.ratio else None

    @property
    def met(self) -> bool | None:
        """The ratio target, or the verdict of a non-ratio target."""
        return self.verdict if self.verdict is not None else super().met

    def json_extra(self) -> dict[str, Any]:
        """Accuracy rows carry their text cells."""
        return {"evidently_text": self.text_evidently, "keel_text": self.text_keel}


def fmt_cell(value: float | None, text: str | None, missing: str) -> str:
    if text is not None:
        return text
    return missing if value is None else fmt_number(value)


def size_label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows // 1_000}k"


def build_rows(sizes: list[int], results: dict[str, dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for n in sizes:
        res = results[str(n)]
        ev, kp, kd = res.get("evidently"), res.get("keel"), res.get("keel_pandas")
        lbl = size_label(n)
        at_target = n == TARGET_ROWS

        def missing(r: dict[str, Any] | None) -> str:
            if r is None:
                return "not run"
            return "skipped" if "skipped" in r else "failed" if "error" in r else "n/a"

        def row(label: str, unit: str, e: float | None, k: float | None, **kw: Any) -> Row:
            return Row(label, unit, e, k, False, kw.pop("target", "-"), **kw)

        ev_total, k_total = h.lookup(ev, "total_seconds"), h.lookup(kp, "total_seconds")
        rows.append(
            row(
                f"{lbl}: wall time, Parquet files -> drift report",
                "s",
                ev_total,
                k_total,
                target=f">= {SPEED_TARGET:g}x" if at_target else "-",
                target_ratio=SPEED_TARGET if at_target else None,
                text_evidently=None if ev_total else missing(ev),
                text_keel=None if k_total else missing(kp),
            )
        )
        if n >= 10_000_000 and k_total is not None:
            rows[-1].target = f"keel < {MINUTES_TARGET_S / 60:g} min"
            rows[-1].verdict = k_total < MINUTES_TARGET_S
        ev_cpu, k_cpu = h.lookup(ev, "cpu_seconds"), h.lookup(kp, "cpu_seconds")
        rows.append(
            row(
                f"{lbl}: CPU time (user + sys, all threads) of the same section",
                "s",
                ev_cpu,
                k_cpu,
                text_evidently=None if ev_cpu else missing(ev),
                text_keel=None if k_cpu else missing(kp),
            )
        )
        if kd is not None:
            kd_total = h.lookup(kd, "total_seconds")
            rows.append(
                row(
                    f"{lbl}: wall time, keel on the same pandas frames (read included)",
                    "s",
                    ev_total,
                    kd_total,
                    text_evidently=None if ev_total else missing(ev),
                    text_keel=None if kd_total else missing(kd),
                )
            )
        k_ref, k_chk = h.lookup(kp, "reference_seconds"), h.lookup(kp, "check_seconds")
        rows.append(
            row(
                f"{lbl}: keel reference / check alone",
                "s",
                None,
                None,
                ratio=False,
                text_evidently="-",
                text_keel=(
                    f"{fmt_number(k_ref)} / {fmt_number(k_chk)}"
                    if k_ref is not None and k_chk is not None
                    else missing(kp)
                ),
            )
        )
        ev_mem, k_mem = h.lookup(ev, "peak_rss_mb"), h.lookup(kp, "peak_rss_mb")
        rows.append(
            row(
                f"{lbl}: peak RSS (Parquet files)",
                "MB",
                ev_mem,
                k_mem,
                target=f">= {MEMORY_TARGET:g}x" if at_target else "-",
                target_ratio=MEMORY_TARGET if at_target else None,
                text_evidently=None if ev_mem else missing(ev),
                text_keel=None if k_mem else missing(kp),
            )
        )
        rows.extend(accuracy_rows(lbl, ev, kp, missing))
    return rows


def accuracy_rows(
    lbl: str, ev: dict[str, Any] | None, kp: dict[str, Any] | None, missing: Any
) -> list[Row]:
    """Strong found, weak found and false alarms, with the issue's targets."""
    ea, ka = (ev or {}).get("accuracy"), (kp or {}).get("accuracy")
    out: list[Row] = []
    for key, total, label, target in (
        ("strong_found", "strong_total", "strong drifts found", "all"),
        ("weak_found", "weak_total", "weak drifts found", "more than Evidently"),
        ("false_alarms", "undrifted_total", "false alarms (undrifted columns)", "<= Evidently"),
    ):
        e = None if ea is None else ea[key]
        k = None if ka is None else ka[key]
        verdict: bool | None = None
        if k is not None and ka is not None:
            if key == "strong_found":
                verdict = k == ka[total]
            elif e is not None:
                verdict = k > e if key == "weak_found" else k <= e
        out.append(
            Row(
                f"{lbl}: {label}",
                "columns",
                None if e is None else float(e),
                None if k is None else float(k),
                False,
                target,
                ratio=False,
                verdict=verdict,
                text_evidently=missing(ev) if ea is None else f"{e}/{ea[total]}",
                text_keel=missing(kp) if ka is None else f"{k}/{ka[total]}",
            )
        )
    return out


EVIDENTLY = f"Evidently {EVIDENTLY_VERSION}"
HEADERS = ["Workload", "Unit", EVIDENTLY, "keel", "keel adv.", "Target", "Met"]


def row_cells(row: Row) -> list[str]:
    return [
        row.label,
        row.unit,
        fmt_cell(row.mlflow, row.text_evidently, "n/a"),
        fmt_cell(row.keel, row.text_keel, "n/a"),
        h.fmt_ratio(row.advantage) if row.ratio else "-",
        row.target,
        row.met_text(),
    ]


def names(res: dict[str, Any] | None, key: str) -> str:
    found = ((res or {}).get("accuracy") or {}).get(key)
    return ", ".join(found) if found else "none"


def notes(sizes: list[int], results: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "keel adv. = Evidently / keel (time, memory); > 1 means keel is better.",
        "Data: reference and current table of N rows each, 40 numeric + 10 categorical "
        "columns; strong drifts (10): mean shift 0.5-1 sd on 6 numeric columns, 1.5x spread on "
        "1, clearly changed category mix on 3; weak (6): mean shift 0.05-0.08 sd on 3, 1.1x "
        "spread on 1, category mix moved by 2-3 points on 2; 34 columns undrifted.",
        "Wall time: inside a fresh worker process, from the Parquet files to per-column "
        "verdicts, imports excluded. Evidently: pandas.read_parquet of both files + "
        "Dataset.from_pandas + Report([DataDriftPreset()]).run + snapshot.dict(); keel: "
        "monitoring.reference(path) + monitoring.check(ref, path), which read the files "
        "themselves; the pandas row gives keel the DataFrames Evidently gets, read included.",
        "Peak RSS: ru_maxrss of the worker process (its whole life, imports included).",
    ]
    for n in sizes:
        res = results[str(n)]
        ev, kp = res.get("evidently"), res.get("keel")
        parts = []
        if ev and "skipped" in ev:
            parts.append(f"Evidently skipped: {ev['skipped']}")
        elif ev and "error" not in ev:
            if "reused_from" in ev:
                parts.append(
                    f"Evidently's figures reused from the run of {ev.get('measured_at', '?')} "
                    f"(--reuse-evidently; load average then {ev.get('loadavg_start')})"
                )
            parts.append(
                f"Evidently read {ev['read_seconds']:.1f} s + run {ev['run_seconds']:.1f} s "
                f"(import {ev['import_seconds']:.1f} s), share drifted "
                f"{ev['share_drifted']:.2f}, weak found: {names(ev, 'weak_found_names')}"
            )
        if kp and "error" not in kp:
            parts.append(
                f"keel share drifted {kp['share_drifted']:.2f} (dataset drift "
                f"{kp['dataset_drifted']}), weak found: {names(kp, 'weak_found_names')}, "
                f"false alarms: {names(kp, 'false_alarm_names')}"
            )
        if parts:
            out.append(f"{size_label(n)}: " + "; ".join(parts) + ".")
    return out


# ------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__, RESULTS_PATH, tools=False)
    parser.add_argument(
        "--rows",
        default=DEFAULT_ROWS,
        help=f"comma-separated table sizes (rows in each table; default {DEFAULT_ROWS}; "
        "--quick: 100000)",
    )
    parser.add_argument(
        "--tools", default="evidently,keel", help="comma-separated subset of evidently,keel"
    )
    parser.add_argument(
        "--evidently-max-rows",
        type=int,
        default=TARGET_ROWS,
        help="largest size Evidently runs at (default 1000000; 5000000 takes an hour or more)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="keel runs per size; the fastest counts (default 1)"
    )
    parser.add_argument(
        "--reuse-evidently",
        action="store_true",
        help="take Evidently's figures from an earlier run on the same data (kept under "
        "benchmarks/.cache/) instead of re-running it",
    )
    args = parser.parse_args(argv)
    sizes = [100_000] if args.quick else parse_rows(args.rows)
    tools = {s.strip() for s in args.tools.split(",") if s.strip()}
    if not tools or tools - set(TOOLS):
        parser.error(f"--tools: unknown or no tool(s) in {args.tools!r} (use evidently,keel)")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    output = args.output or (None if args.quick else RESULTS_PATH)

    started = dt.datetime.now(dt.UTC)
    t_start = now()
    load_start = load_average()
    venv_info: dict[str, Any] = {}
    ev_python: Path | None = None
    if "evidently" in tools:
        ev_python, venv_info = ensure_evidently_venv()
    if "keel" in tools and (error := check_keel()):
        log(f"keel.monitoring is not importable with {sys.executable}: {error}")
        log("Install the project into this venv first (or run with --tools evidently).")
        return 2

    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for n in sizes:
        ref, cur = data_paths(n)
        t0 = now()
        generate(n, log=log)
        res: dict[str, Any] = {
            "rows": n,
            "files": [str(ref), str(cur)],
            "file_mb": [round(p.stat().st_size / 1e6, 1) for p in (ref, cur)],
            "generate_seconds": now() - t0,
        }
        results[str(n)] = res
        run_ev = ev_python is not None and n <= args.evidently_max_rows
        if run_ev:
            assert ev_python is not None
            cache = evidently_cache(n)
            if args.reuse_evidently and cache.exists():
                res["evidently"] = {**json.loads(cache.read_text()), "reused_from": str(cache)}
                log(f"[evidently {n:,}] reusing {cache}")
            elif reason := memory_too_small(n):
                res["evidently"] = {"skipped": reason}
                log(f"[evidently {n:,}] skipped: {reason}")
            else:
                res["evidently"] = measure("evidently", ev_python, n)
                if "error" not in res["evidently"]:
                    cache.write_text(json.dumps(res["evidently"]) + "\n", encoding="utf-8")
        if "keel" in tools:
            py = Path(sys.executable)
            res["keel"] = best([measure("keel", py, n) for _ in range(args.repeat)])
            ev_ran = "evidently" in res and "skipped" not in res["evidently"]
            if ev_ran or ("evidently" not in tools and n <= args.evidently_max_rows):
                res["keel_pandas"] = best(
                    [measure("keel", py, n, input_kind="pandas") for _ in range(args.repeat)]
                )
        for key in ("evidently", "keel", "keel_pandas"):
            found = res.get(key)
            if found is None or "skipped" in found:
                continue
            if "error" in found:
                failures.append(f"{key} at {n:,} rows: {found['error']}")
            elif found["accuracy"]["columns_without_result"]:
                failures.append(
                    f"{key} at {n:,} rows: no verdict for "
                    f"{found['accuracy']['columns_without_result']}"
                )

    rows = build_rows(sizes, results)
    total_s = now() - t_start
    load_end = load_average()
    keel_version = next(
        (r["keel"]["version"] for r in results.values() if "version" in r.get("keel", {})), None
    )
    title = (
        f"Monitoring benchmark: keel {keel_version} vs Evidently {EVIDENTLY_VERSION} "
        f"({started:%Y-%m-%d}, {os.cpu_count()} CPUs{', QUICK' if args.quick else ''})"
    )
    note_lines = notes(sizes, results)
    print()
    h.print_table(title, HEADERS, rows, row_cells, note_lines)
    h.print_checks(
        failures,
        ["Every worker ran and gave a verdict for each of the 50 columns."],
    )
    note = load_note(load_start, load_end)
    print(f"Total wall time: {total_s:.0f} s. {note}")

    report = {
        "benchmark": "monitoring",
        "command": "python benchmarks/monitoring/run.py " + " ".join(argv or sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "total_wall_seconds": total_s,
        "quick": args.quick,
        "versions": {"evidently": EVIDENTLY_VERSION, "keel": keel_version},
        "evidently_venv": venv_info,
        "machine": {**machine_info(), "loadavg_start": load_start, "loadavg_end": load_end},
        "spec": SPEC.to_json(),
        "truth": SPEC.truth(),
        "results": results,
        "rows": [r.to_json() for r in rows],
        "correctness_failures": failures,
        "load_note": note,
    }
    md = h.markdown_table(HEADERS, rows, row_cells, [*note_lines, note] if note else note_lines)
    h.write_outputs(report, output, args.markdown, md)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
