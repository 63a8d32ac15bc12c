"""Shared, stdlib-only helpers for the registry benchmark.

Imported by the orchestrator (``run.py``) and by both workers, which run in
*different* virtual environments (keel's project venv and the pinned MLflow
venv), so it depends on nothing but the standard library. The generic worker
plumbing (timing, the one-JSON-line stdout protocol) comes from
``benchmarks/_harness.py``.

The training data is generated here from one seed, so keel and MLflow fit,
log and predict with exactly the same model.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCHMARKS_DIR = Path(__file__).resolve().parent.parent
if str(BENCHMARKS_DIR) not in sys.path:
    sys.path.append(str(BENCHMARKS_DIR))

from _harness import emit, json_stdout, now, percentile  # noqa: E402  (benchmarks/_harness.py)

__all__ = [
    "ALIAS",
    "EXPERIMENT",
    "MODEL",
    "MODEL_CLIENT",
    "WARM_UP_MODEL",
    "Config",
    "Request",
    "emit",
    "json_stdout",
    "latency",
    "now",
    "registration_profile",
    "training_data",
]

SEED = 20_241_125
EXPERIMENT = "registry-bench"
MODEL = "bench-model"
MODEL_CLIENT = "bench-model-client"  # MLflow only: versions made with create_model_version
WARM_UP_MODEL = "warm-up-model"
ALIAS = "champion"


@dataclass(frozen=True)
class Config:
    """Workload sizes. The defaults are the issue's numbers; ``--quick`` shrinks them."""

    versions: int = 1_000
    alias_version: int = 500
    resolves: int = 200
    loads: int = 50
    train_rows: int = 200
    features: int = 4
    predict_rows: int = 10
    seed: int = SEED

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Config:
        return cls(**data)


@dataclass
class Request:
    """What the orchestrator asks a worker to do (passed as one JSON argv)."""

    workdir: str
    config: dict[str, Any]
    profile_dir: str | None = None  # keel only: write pyinstrument reports here

    def to_argv(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_argv(cls, raw: str) -> Request:
        return cls(**json.loads(raw))


def training_data(
    cfg: Config,
) -> tuple[list[list[float]], list[int], list[list[float]]]:
    """``(X, y, X_predict)``: a linearly separable-ish binary problem on ``features`` columns."""
    rng = random.Random(cfg.seed)
    weights = [rng.uniform(-2, 2) for _ in range(cfg.features)]

    def row() -> list[float]:
        return [rng.uniform(-1, 1) for _ in range(cfg.features)]

    X = [row() for _ in range(cfg.train_rows)]
    y = [
        int(sum(w * x for w, x in zip(weights, r, strict=True)) + rng.gauss(0, 0.3) > 0) for r in X
    ]
    X_predict = [row() for _ in range(cfg.predict_rows)]
    return X, y, X_predict


def latency(samples: list[float]) -> dict[str, Any]:
    """Summary of per-call wall times in seconds, samples included."""
    return {
        "median": statistics.median(samples),
        "p99": percentile(samples, 99),
        "mean": statistics.fmean(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": samples,
    }


def registration_profile(samples: list[float], buckets: int = 10) -> dict[str, Any]:
    """Per-call registration times without the 1,000 raw samples: median, p99 and the mean
    of each consecutive tenth (does registering get slower as versions accumulate?)."""
    size = max(1, math.ceil(len(samples) / buckets))
    return {
        "median": statistics.median(samples),
        "p99": percentile(samples, 99),
        "max": max(samples),
        "mean_by_tenth": [
            statistics.fmean(samples[i : i + size]) for i in range(0, len(samples), size)
        ],
    }
