"""keel side of the monitoring benchmark. Runs inside the project venv.

Usage (normally only via ``run.py``)::

    KEEL_HOME=<tmp>/.keel python keel_worker.py '<request JSON>'

In a fresh process: builds a reference from the reference table with
``keel.monitoring.reference`` and checks the current table against it with
``keel.monitoring.check`` (each timed; keel's default tests and thresholds). With
``"input": "parquet"`` both get the Parquet paths and read the files themselves;
with ``"input": "pandas"`` both files are first read with ``pandas.read_parquet``
(timed, as on Evidently's side) and keel gets the DataFrames. Prints one JSON
line: phase times, peak RSS and the per-column verdicts.
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


def peak_rss_mb() -> float:
    """Peak resident memory of this process and any children it waited for, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Build the reference, check the current window, return times and verdicts."""
    t_import = now()
    import keel
    from keel import monitoring

    result: dict[str, Any] = {
        "tool": "keel",
        "version": keel.__version__,
        "import_seconds": now() - t_import,
        "input": request["input"],
    }
    t0, cpu0 = now(), time.process_time()
    ref_data: Any = request["reference"]
    cur_data: Any = request["current"]
    if request["input"] == "pandas":
        import pandas as pd

        result["pandas"] = pd.__version__
        ref_data = pd.read_parquet(ref_data)
        cur_data = pd.read_parquet(cur_data)
    elif request["input"] != "parquet":
        raise SystemExit(f"unknown input {request['input']!r} (use parquet or pandas)")
    t_read = now()
    result["rss_after_read_mb"] = peak_rss_mb()
    ref = monitoring.reference(ref_data)
    t_ref = now()
    result["rss_after_reference_mb"] = peak_rss_mb()
    report = monitoring.check(ref, cur_data)
    t_end = now()
    cpu_seconds = time.process_time() - cpu0

    columns = {
        name: {
            "drifted": col.drifted,
            "status": col.status,
            "test": col.test,
            "statistic": col.statistic,
            "threshold": col.threshold,
            "p_value": col.p_value,
            "p_adjusted": col.p_adjusted,
            "reasons": col.reasons,
        }
        for name, col in report.columns.items()
    }
    result.update(
        {
            "rows": [report.rows_reference, report.rows_current],
            "read_seconds": t_read - t0,
            "reference_seconds": t_ref - t_read,
            "check_seconds": t_end - t_ref,
            "total_seconds": t_end - t0,
            "cpu_seconds": cpu_seconds,
            "peak_rss_mb": peak_rss_mb(),
            "share_drifted": report.share_drifted,
            "drifted_count": len(report.drifted_columns),
            "dataset_drifted": report.drifted,
            "thresholds": report.thresholds,
            "schema_issues": [issue.message for issue in report.schema_issues],
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
