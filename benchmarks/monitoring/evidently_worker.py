"""Evidently side of the monitoring benchmark. Runs in the pinned Evidently venv.

Usage (normally only via ``run.py``)::

    benchmarks/.venvs/evidently-0.7.23/bin/python evidently_worker.py '<request JSON>'

The request names the reference and current Parquet files and the numeric and
categorical columns. In a fresh process: reads both files with
``pandas.read_parquet`` (timed: Evidently needs DataFrames), wraps them in
``Dataset.from_pandas`` with an explicit ``DataDefinition`` (no type inference
surprises), runs ``Report([DataDriftPreset()], include_tests=True)`` (Evidently's
default per-column tests and thresholds; at these sizes the normed Wasserstein
distance >= 0.1 for numeric and the Jensen-Shannon distance >= 0.1 for
categorical columns) and takes the per-column verdicts from the report's
``Value Drift for column ...`` tests. Prints one JSON line: phase times, peak
RSS and the per-column results.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import emit, json_stdout, now

TEST_PREFIX = "Value Drift for column "


def peak_rss_mb() -> float:
    """Peak resident memory of this process and any children it waited for, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Read both tables, run the data drift preset, return times and verdicts."""
    t_import = now()
    import evidently  # type: ignore[import-not-found]  # its own venv
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset  # type: ignore[import-not-found]

    result: dict[str, Any] = {
        "tool": "evidently",
        "version": evidently.__version__,
        "pandas": pd.__version__,
        "import_seconds": now() - t_import,
        "input": "pandas DataFrames from pandas.read_parquet",
    }
    t0, cpu0 = now(), time.process_time()
    reference = pd.read_parquet(request["reference"])
    current = pd.read_parquet(request["current"])
    t_read = now()
    result["rss_after_read_mb"] = peak_rss_mb()
    definition = DataDefinition(
        numerical_columns=request["numeric"], categorical_columns=request["categorical"]
    )
    ref_ds = Dataset.from_pandas(reference, data_definition=definition)
    cur_ds = Dataset.from_pandas(current, data_definition=definition)
    t_dataset = now()
    report = Report([DataDriftPreset()], include_tests=True)
    snapshot = report.run(current_data=cur_ds, reference_data=ref_ds)
    t_run = now()
    found = snapshot.dict()
    t_end = now()
    cpu_seconds = time.process_time() - cpu0

    columns: dict[str, dict[str, Any]] = {}
    share = count = None
    for metric in found["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = {
                "score": metric["value"],
                "method": config.get("method"),
                "threshold": config.get("threshold"),
            }
        elif config["type"].endswith("DriftedColumnsCount"):
            share, count = metric["value"]["share"], metric["value"]["count"]
    for test in found["tests"]:
        name = test["name"]
        if name.startswith(TEST_PREFIX):
            columns[name[len(TEST_PREFIX) :]]["drifted"] = test["status"] == "FAIL"
    flagged = sum(bool(c.get("drifted")) for c in columns.values())
    if count is not None and flagged != int(count):
        raise SystemExit(f"per-column tests flag {flagged} columns, DriftedColumnsCount {count}")

    result.update(
        {
            "rows": [len(reference), len(current)],
            "read_seconds": t_read - t0,
            "dataset_seconds": t_dataset - t_read,
            "run_seconds": t_run - t_dataset,
            "results_seconds": t_end - t_run,
            "total_seconds": t_end - t0,
            "cpu_seconds": cpu_seconds,
            "peak_rss_mb": peak_rss_mb(),
            "share_drifted": share,
            "drifted_count": count,
            "dataset_drifted": share is not None and share >= 0.5,
            "columns": columns,
        }
    )
    return result


def main() -> None:
    """Entry point: one JSON request in argv, one JSON line out."""
    with json_stdout() as out:
        emit(out, run(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
