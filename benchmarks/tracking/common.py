"""Shared, stdlib-only helpers for the tracking benchmark.

Imported by the orchestrator (``run.py``) and by both workers, which run in
*different* virtual environments (keel's project venv and a pinned MLflow
venv). It must therefore depend on nothing but the standard library.

Every workload's data is generated here from one seed, so keel and MLflow log
exactly the same keys, values, steps, timestamps, params and tags. Timing and
the workers' one-JSON-line protocol come from ``benchmarks/_harness.py``
(re-exported here for the workers).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_BENCHMARKS = str(Path(__file__).resolve().parent.parent)
if _BENCHMARKS not in sys.path:
    sys.path.append(_BENCHMARKS)

from _harness import emit, json_stdout, now, repeat, summarize  # noqa: E402

__all__ = [
    "ARTIFACT_NAME",
    "BASE_TIMESTAMP_MS",
    "EXPERIMENT",
    "SEARCH_FILTER",
    "SEARCH_ORDER_BY",
    "SEED",
    "WARM_UP_EXPERIMENT",
    "Config",
    "RunSpec",
    "WorkerRequest",
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

SEED = 20_240_917

# Fixed base timestamp (ms since epoch) so both tools receive identical metrics.
BASE_TIMESTAMP_MS = 1_700_000_000_000

EXPERIMENT = "bench"
WARM_UP_EXPERIMENT = "warm-up"
SEARCH_FILTER = "metrics.m0 > 0.5 and params.p0 = 'v1'"
SEARCH_ORDER_BY = ["metrics.m1 DESC"]
ARTIFACT_NAME = "file.bin"


@dataclass(frozen=True)
class Config:
    """Workload sizes. The defaults are the issue's numbers; ``--quick`` shrinks them."""

    one_by_one_points: int = 2_000
    batch_points: int = 100_000
    batch_keys: int = 10
    batch_chunk: int = 1_000
    runs: int = 2_000
    params_per_run: int = 10
    metrics_per_run: int = 10
    tags_per_run: int = 5
    search_max_results: int = 100
    search_repeats: int = 5
    artifact_bytes: int = 50_000_000
    seed: int = SEED

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Config:
        return cls(**data)


@dataclass
class WorkerRequest:
    """What the orchestrator asks a worker to do (passed as one JSON argv)."""

    workload: str
    workdir: str
    config: dict[str, Any]
    artifact_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_argv(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_argv(cls, raw: str) -> WorkerRequest:
        return cls(**json.loads(raw))


# --------------------------------------------------------------------------- data


def one_by_one_values(cfg: Config) -> list[float]:
    """Values for workload 1: one metric ``loss`` logged at steps 0..n-1."""
    rng = random.Random(cfg.seed)
    return [rng.random() for _ in range(cfg.one_by_one_points)]


def batch_points(cfg: Config) -> list[tuple[str, float, int, int]]:
    """Points for workload 2 as ``(key, value, step, timestamp_ms)``.

    ``batch_keys`` keys (``b0``..``b9``) interleaved, ``batch_points`` in total.
    """
    rng = random.Random(cfg.seed + 1)
    points: list[tuple[str, float, int, int]] = []
    for i in range(cfg.batch_points):
        step, k = divmod(i, cfg.batch_keys)
        points.append((f"b{k}", rng.random(), step, BASE_TIMESTAMP_MS + step))
    return points


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class RunSpec:
    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


def run_specs(cfg: Config) -> list[RunSpec]:
    """Runs for workload 3.

    ``p0`` is ``v0``/``v1`` with equal odds and ``m0`` is uniform on [0, 1), so
    about a quarter of the runs (~500 of 2,000) match the search filter —
    well over the 100 the filtered search returns.
    """
    rng = random.Random(cfg.seed + 2)
    specs: list[RunSpec] = []
    for i in range(cfg.runs):
        params = {"p0": rng.choice(("v0", "v1"))}
        params.update({f"p{j}": f"v{rng.randrange(10)}" for j in range(1, cfg.params_per_run)})
        metrics = {f"m{j}": rng.random() for j in range(cfg.metrics_per_run)}
        tags = {f"t{j}": f"tag-{rng.randrange(100)}" for j in range(cfg.tags_per_run)}
        specs.append(RunSpec(name=f"run-{i:05d}", params=params, metrics=metrics, tags=tags))
    return specs


def expected_filtered_names(cfg: Config) -> list[str]:
    """The run names the filtered search must return, in order (ground truth)."""
    matching = [s for s in run_specs(cfg) if s.metrics["m0"] > 0.5 and s.params["p0"] == "v1"]
    matching.sort(key=lambda s: s.metrics["m1"], reverse=True)
    return [s.name for s in matching[: cfg.search_max_results]]


def write_artifact(path: str, cfg: Config) -> str:
    """Write ``artifact_bytes`` seeded random bytes to ``path``; return its sha256."""
    rng = random.Random(cfg.seed + 3)
    digest = hashlib.sha256()
    remaining = cfg.artifact_bytes
    block = 1 << 20
    with open(path, "wb") as fh:
        while remaining > 0:
            n = min(block, remaining)
            data = rng.randbytes(n)
            digest.update(data)
            fh.write(data)
            remaining -= n
        fh.flush()
        os.fsync(fh.fileno())
    return digest.hexdigest()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while data := fh.read(1 << 20):
            digest.update(data)
    return digest.hexdigest()
