"""Data validation benchmark: keel vs pandera on the same table and the same checks.

    python benchmarks/data/validation.py [--rows 10000000] [--repeat 1] [--skip-pandera]

1. Generates once a Parquet file of ``--rows`` x 50 columns (an ``id`` column, 30
   float, 10 integer and 9 string columns; 1M-row row groups) under
   ``benchmarks/.cache/`` and reuses it afterwards.
2. Creates (first run only) ``benchmarks/.venvs/pandera-<version>`` with
   ``python3 -m uv venv`` and installs the pinned pandera there, with the same
   pandas / pyarrow / numpy versions as the project venv.
3. Runs every measurement in a fresh subprocess (keel in the project venv, pandera
   in its venv) so wall time and peak RSS (``ru_maxrss``) belong to that one task:
   * ``file``: validate the Parquet file (keel streams it; pandera must load it
     with ``pandas.read_parquet`` first, which is included).
   * ``memory``: validate a pandas DataFrame already in memory (keel's time
     includes converting it to Arrow); only the validation call is timed.
   * ``profile``: keel's table profile of the file.
4. Prints a table with the ratios and writes ``benchmarks/data/results-<rows>.json``.

Both sides check exactly the same things: the dtype of every column, no nulls in
the 45 non-nullable columns, value ranges of the 41 numeric columns, allowed
categories of the 9 string columns and uniqueness of ``id``. pandera sees NaN as a
null and its ``in_range`` refuses ±inf; keel keeps them as separate rules, so its
schema turns on ``allow_nan: false`` for the 25 non-nullable float columns and
``allow_inf: false`` for all 30 (a NaN or inf fails both tools). Before every
``file`` run the file is read once, so both tools start from a warm page cache.
This file is also the worker (``--worker``); its top level imports only the
standard library, because it runs in both venvs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PANDERA_VERSION = "0.35.0"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = HERE.parent / ".cache"
VENV = HERE.parent / ".venvs" / f"pandera-{PANDERA_VERSION}"
CATEGORIES = ["north", "south", "east", "west", "centre", "other"]
N_FLOAT, N_INT, N_STR = 30, 10, 9
NULLABLE = {f"f{i:02d}" for i in range(5)}  # five float columns hold ~1% nulls
ROW_GROUP = 1_000_000


def spec() -> dict[str, dict[str, Any]]:
    """The checks, shared by both workers: name -> type, nullable, range, categories."""
    cols: dict[str, dict[str, Any]] = {
        "id": {"type": "int64", "nullable": False, "unique": True, "min": 0, "max": None}
    }
    for i in range(N_FLOAT):
        name = f"f{i:02d}"
        cols[name] = {"type": "float64", "nullable": name in NULLABLE, "min": -10.0, "max": 10.0}
    for i in range(N_INT):
        cols[f"i{i:02d}"] = {"type": "int64", "nullable": False, "min": 0, "max": 999}
    for i in range(N_STR):
        cols[f"c{i:02d}"] = {"type": "string", "nullable": False, "categories": CATEGORIES}
    return cols


def generate(path: Path, rows: int) -> None:
    """Write the benchmark table (seeded; ~1M rows in memory at a time)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(20_241_125)
    tmp = path.with_suffix(".tmp")
    writer = None
    cats = pa.array(CATEGORIES)
    for start in range(0, rows, ROW_GROUP):
        n = min(ROW_GROUP, rows - start)
        data: dict[str, Any] = {"id": rng.permutation(n).astype(np.int64) + start}
        for i in range(N_FLOAT):
            values = rng.normal(0.0, 2.0, n)
            mask = (rng.random(n) < 0.01) if f"f{i:02d}" in NULLABLE else None
            data[f"f{i:02d}"] = pa.array(np.clip(values, -9.9, 9.9), mask=mask)
        for i in range(N_INT):
            data[f"i{i:02d}"] = rng.integers(0, 1000, n, dtype=np.int64)
        for i in range(N_STR):
            data[f"c{i:02d}"] = cats.take(pa.array(rng.integers(0, len(CATEGORIES), n)))
        table = pa.table(data)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
    assert writer is not None
    writer.close()
    tmp.replace(path)


# -- workers ------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def keel_schema() -> Any:
    from keel.data._validate import ColumnSchema, Schema

    columns = []
    for name, c in spec().items():
        columns.append(
            ColumnSchema(
                name=name,
                type=c["type"],
                nullable=c["nullable"],
                min=c.get("min"),
                max=c.get("max"),
                categories=c.get("categories"),
                unique=c.get("unique", False),
                # pandera reads NaN as a null (refused unless nullable) and its in_range
                # refuses ±inf; keel keeps NaN and inf as separate rules: turn them on.
                allow_nan=c["nullable"] or c["type"] != "float64",
                allow_inf=c["type"] != "float64",
            )
        )
    return Schema(columns=columns)


def pandera_schema() -> Any:
    import pandera.pandas as pa  # type: ignore[import-not-found]  # its own venv

    columns = {}
    for name, c in spec().items():
        checks = []
        if "categories" in c:
            checks.append(pa.Check.isin(c["categories"]))
        elif c["max"] is None:
            checks.append(pa.Check.ge(c["min"]))
        else:
            checks.append(pa.Check.in_range(c["min"], c["max"]))
        dtype = "str" if c["type"] == "string" else c["type"]
        columns[name] = pa.Column(
            dtype, checks=checks, nullable=c["nullable"], unique=c.get("unique", False)
        )
    return pa.DataFrameSchema(columns, strict=True)


def worker(tool: str, task: str, path: str) -> dict[str, Any]:
    result: dict[str, Any] = {"tool": tool, "task": task}
    if tool == "keel":
        import pandas  # noqa: F401 - pyarrow imports it on first use; pandera's side has it too

        from keel.data._profile import profile_table
        from keel.data._validate import validate

        schema = keel_schema()
        if task == "profile":
            t0 = time.perf_counter()
            profile = profile_table(path)
            result["seconds"] = time.perf_counter() - t0
            result["columns"] = len(profile.columns)
        elif task == "file":
            t0 = time.perf_counter()
            report = validate(path, schema)
            result["seconds"] = time.perf_counter() - t0
            result["ok"] = report.ok
            result["violations"] = len(report.violations)
        else:
            import pandas as pd

            df = pd.read_parquet(path)
            t0 = time.perf_counter()
            report = validate(df, schema)
            result["seconds"] = time.perf_counter() - t0
            result["ok"] = report.ok
            result["violations"] = len(report.violations)
    else:
        import pandas as pd
        import pandera

        schema = pandera_schema()
        result["version"] = pandera.__version__
        if task == "file":
            t0 = time.perf_counter()
            df = pd.read_parquet(path)
            schema.validate(df, lazy=True)
            result["seconds"] = time.perf_counter() - t0
        else:
            df = pd.read_parquet(path)
            t0 = time.perf_counter()
            schema.validate(df, lazy=True)
            result["seconds"] = time.perf_counter() - t0
        result["ok"] = True  # validate(lazy=True) raises SchemaErrors on any failure
    result["peak_rss_mb"] = peak_rss_mb()
    return result


# -- orchestrator -------------------------------------------------------------------------
def ensure_pandera_venv() -> Path:
    """The pinned pandera venv's python (created on first use with uv)."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import pandera; print(pandera.__version__)"]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == PANDERA_VERSION:
            return python
    import numpy
    import pandas
    import pyarrow

    uv = ["python3", "-m", "uv"]
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([*uv, "venv", "--clear", "--python", py, str(VENV)], check=True)
    subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "--python",
            str(python),
            f"pandera=={PANDERA_VERSION}",
            f"pandas=={pandas.__version__}",
            f"pyarrow=={pyarrow.__version__}",
            f"numpy=={numpy.__version__}",
        ],
        check=True,
    )
    return python


def warm_page_cache(path: Path) -> None:
    """Read ``path`` once so that no tool pays for disk reads the other did not."""
    with path.open("rb") as f:
        while f.read(64 << 20):
            pass


def run_worker(python: Path, tool: str, task: str, path: Path) -> dict[str, Any]:
    env = dict(os.environ)
    if tool == "pandera":
        env.pop("PYTHONPATH", None)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", tool, "--task", task]
    cmd += ["--data", str(path)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{tool} {task} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--skip-pandera", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    parser.add_argument("--worker", choices=["keel", "pandera"])
    parser.add_argument("--task", choices=["file", "memory", "profile"])
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.task, args.data)))
        return

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"validation-{args.rows}x50.parquet"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        t0 = time.perf_counter()
        generate(path, args.rows)
        print(f"  done in {time.perf_counter() - t0:.1f}s ({path.stat().st_size / 1e6:.0f} MB)")
    keel_python = Path(sys.executable)
    pandera_python = None if args.skip_pandera else ensure_pandera_venv()
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    plan = [("keel", "file"), ("pandera", "file"), ("keel", "memory"), ("pandera", "memory")]
    plan.append(("keel", "profile"))
    for attempt in range(args.repeat):
        # keel and pandera alternate, so a busy moment on a shared machine hits both.
        for tool, task in plan:
            if tool == "pandera" and pandera_python is None:
                continue
            python = pandera_python if tool == "pandera" else keel_python
            assert python is not None
            if task == "file":
                warm_page_cache(path)
            result = run_worker(python, tool, task, path)
            result["attempt"] = attempt
            results.append(result)
            print(f"{tool:8s}{task:8s}{result['seconds']:8.2f}s", flush=True)

    from rich.console import Console
    from rich.table import Table

    by: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:  # the best of the repeats (least disturbed by other load)
        key = (r["tool"], r["task"])
        if key not in by or r["seconds"] < by[key]["seconds"]:
            by[key] = r
    title = f"Validation of {args.rows:,} rows x 50 columns (same checks, best of {args.repeat})"
    table = Table(title=title)
    for name in (
        "task",
        "keel s",
        "pandera s",
        "speed-up",
        "keel peak RSS MB",
        "pandera peak RSS MB",
        "RSS ratio",
    ):
        table.add_column(name, justify="right")
    for task in ("file", "memory", "profile"):
        k, p = by.get(("keel", task)), by.get(("pandera", task))
        assert k is not None
        table.add_row(
            task,
            f"{k['seconds']:.2f}",
            f"{p['seconds']:.2f}" if p else "-",
            f"{p['seconds'] / k['seconds']:.1f}x" if p else "-",
            f"{k['peak_rss_mb']:.0f}",
            f"{p['peak_rss_mb']:.0f}" if p else "-",
            f"{p['peak_rss_mb'] / k['peak_rss_mb']:.1f}x" if p else "-",
        )
    Console().print(table)
    out = HERE / f"results-{args.rows}.json"
    out.write_text(
        json.dumps(
            {
                "rows": args.rows,
                "columns": 50,
                "pandera_version": PANDERA_VERSION,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                },
                "best": {f"{tool}/{task}": r for (tool, task), r in by.items()},
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
