"""Shared, stdlib-only constants and helpers of the serving benchmark.

Imported by the orchestrator (``run.py``, keel's venv) and by the scripts that run
in the peers' pinned venvs (``mlflow_prepare.py``, ``bentoml_service.py``,
``bare_app.py``), so it depends on nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS_DIR = HERE.parent / ".venvs"

#: The model's input: 20 float64 features named f0..f19, a binary target.
N_FEATURES = 20
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
SEED = 20_251_125
TRAIN_ROWS = 20_000
#: Request sizes (rows per request) and concurrencies (open connections) of the grid.
ROW_COUNTS = (1, 100)
CONCURRENCIES = (1, 8, 32)

#: Where every server finds the model file (joblib) and the thread policy of the bare app.
MODEL_PATH_ENV = "BENCH_MODEL_PATH"
THREADS_ENV = "BENCH_PREDICT_THREADS"

MLFLOW_VERSION = "3.17.2"
BENTOML_VERSION = "1.4.40"
GRANIAN_VERSION = "2.8.7"
UVICORN_VERSION = "0.54.0"
STARLETTE_VERSION = "1.10.0"
ORJSON_VERSION = "3.13.0"

#: Distributions whose versions are recorded for every venv in results.json.
REPORTED_DISTS = (
    "scikit-learn",
    "numpy",
    "pandas",
    "threadpoolctl",
    "mlflow",
    "bentoml",
    "starlette",
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "granian",
    "orjson",
)


@dataclass(frozen=True)
class VenvSpec:
    """A pinned venv under ``benchmarks/.venvs/``: its folder name and requirements."""

    name: str
    requirements: tuple[str, ...]

    @property
    def path(self) -> Path:
        return VENVS_DIR / self.name

    @property
    def python(self) -> Path:
        return self.path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    @property
    def bin(self) -> Path:
        return self.python.parent


def venv_specs(sklearn_version: str, numpy_version: str, pandas_version: str) -> list[VenvSpec]:
    """The peers' venvs, each with keel's venv's scikit-learn, numpy and pandas.

    Every venv pins the versions that trained the model, so each server unpickles
    and runs the very same estimator code.
    """
    same = (
        f"scikit-learn=={sklearn_version}",
        f"numpy=={numpy_version}",
        f"pandas=={pandas_version}",
    )
    return [
        VenvSpec(f"serving-mlflow-{MLFLOW_VERSION}", (f"mlflow=={MLFLOW_VERSION}", *same)),
        VenvSpec(f"serving-bentoml-{BENTOML_VERSION}", (f"bentoml=={BENTOML_VERSION}", *same)),
        VenvSpec(
            "serving-bare",
            (
                f"starlette=={STARLETTE_VERSION}",
                f"uvicorn[standard]=={UVICORN_VERSION}",
                f"granian=={GRANIAN_VERSION}",
                f"orjson=={ORJSON_VERSION}",
                *same,
            ),
        ),
    ]


def _pins(requirements: Sequence[str]) -> dict[str, str]:
    """``{"mlflow": "3.17.2", ...}`` from ``name[extra]==version`` requirements."""
    found: dict[str, str] = {}
    for req in requirements:
        name, _, version = req.partition("==")
        found[name.split("[", 1)[0]] = version
    return found


def installed_versions(python: Path, dists: Sequence[str]) -> dict[str, str | None]:
    """Versions of ``dists`` installed for ``python`` (None when absent)."""
    if not python.exists():
        return dict.fromkeys(dists)
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try:\n"
        "        out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError:\n"
        "        out[d] = None\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [str(python), "-c", probe, *dists], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return dict.fromkeys(dists)
    found: dict[str, str | None] = json.loads(proc.stdout)
    return found


def ensure_pinned_venv(spec: VenvSpec, log: Any) -> dict[str, Any]:
    """Create or repair ``spec``'s venv with uv so every pin holds; return what to record.

    Raises SystemExit with the uv error when the requirements cannot be installed.
    """
    import time

    pins = _pins(spec.requirements)
    have = installed_versions(spec.python, list(pins))
    if all(have[d] == v for d, v in pins.items()):
        log(f"{spec.name}: reusing {spec.path}")
        return {"path": str(spec.path), "created": False, "setup_seconds": 0.0}
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit(
            f"uv is needed to create {spec.path} (pip install uv, or put it on PATH) and was "
            "not found."
        )
    log(f"{spec.name}: installing {' '.join(spec.requirements)} ...")
    t0 = time.perf_counter()
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    steps: list[list[str]] = []
    if not spec.python.exists():
        steps.append([uv, "venv", "--python", sys.executable, str(spec.path)])
    steps.append([uv, "pip", "install", "--python", str(spec.python), *spec.requirements])
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"cannot set up {spec.path}: {' '.join(step)}\n{proc.stderr[-3000:]}")
    have = installed_versions(spec.python, list(pins))
    wrong = {d: have[d] for d, v in pins.items() if have[d] != v}
    if wrong:
        raise SystemExit(f"{spec.path}: expected {pins}, found {wrong} after installing")
    elapsed = time.perf_counter() - t0
    log(f"{spec.name}: ready in {elapsed:.1f} s")
    return {"path": str(spec.path), "created": True, "setup_seconds": elapsed}


def records_body(key: str, rows: list[list[float]]) -> bytes:
    """A JSON body ``{key: [{"f0": ..., ...}, ...]}`` (records orientation, exact floats)."""
    records = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    return json.dumps({key: records}, separators=(",", ":")).encode()
