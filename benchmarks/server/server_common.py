"""Shared, stdlib-only helpers for the server benchmark.

Imported by the orchestrator (``run.py``, keel's venv) and by both client workers
(MLflow's client in the pinned MLflow venv, keel's client in keel's venv). It
reuses the tracking benchmark's ``common`` module (data, seeds, timing, worker
I/O), so it too depends on nothing but the standard library.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_TRACKING = Path(__file__).resolve().parent.parent / "tracking"
if str(_TRACKING) not in sys.path:
    sys.path.insert(0, str(_TRACKING))

from common import (  # noqa: E402
    ARTIFACT_NAME,
    SEARCH_FILTER,
    SEARCH_ORDER_BY,
    Config,
    batch_points,
    chunks,
    emit,
    expected_filtered_names,
    json_stdout,
    now,
    one_by_one_values,
    repeat,
    run_specs,
    sha256_file,
    summarize,
    write_artifact,
)

__all__ = [
    "ARTIFACT_NAME",
    "QUICK",
    "SEARCH_FILTER",
    "SEARCH_ORDER_BY",
    "SERVER_CONFIG",
    "Config",
    "Request",
    "batch_points",
    "chunks",
    "emit",
    "expected_filtered_names",
    "json_stdout",
    "now",
    "one_by_one_values",
    "repeat",
    "run_specs",
    "sha256_file",
    "summarize",
    "write_artifact",
]

# The sizes: 100k points in log_batch calls of 1,000, 1,000 single
# log_metric calls, 2,000 runs, a 50 MB artifact.
SERVER_CONFIG = Config(one_by_one_points=1_000)
QUICK = Config(
    one_by_one_points=50,
    batch_points=2_000,
    runs=100,
    search_max_results=10,
    search_repeats=2,
    artifact_bytes=2_000_000,
)

PAGE_SIZE = 1_000  # the "all runs" search pages through the results this many at a time
MLFLOW_API = "/api/2.0/mlflow"


@dataclass
class Request:
    """What the orchestrator asks a client worker to do (one JSON argv)."""

    tracking_uri: str
    workdir: str
    config: dict[str, Any]
    workloads: list[str]
    artifact_path: str | None = None
    experiment_prefix: str = "bench"

    def to_argv(self) -> str:
        import json

        return json.dumps(asdict(self))

    @classmethod
    def from_argv(cls, raw: str) -> Request:
        import json

        return cls(**json.loads(raw))
