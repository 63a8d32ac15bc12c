"""The floor: a bare Starlette app that parses JSON records and calls ``predict``.

Runs in the ``serving-bare`` venv under uvicorn or granian (one worker)::

    BENCH_MODEL_PATH=model.joblib uvicorn bare_app:app --app-dir benchmarks/serving
    BENCH_MODEL_PATH=model.joblib granian --interface asgi --working-dir benchmarks/serving \
        bare_app:app

``POST /predict`` takes ``{"records": [{"f0": ..., ..., "f19": ...}, ...]}`` and answers
``{"predictions": [...]}``; ``GET /readyz`` answers 200. No validation, logging or
metrics beyond what it takes to answer: the least a Python server has to do.
``predict`` runs on the event loop's thread (it takes about a millisecond, less than
a hop to a thread pool costs) with BLAS/OpenMP limited to one thread
(``BENCH_PREDICT_THREADS``: a number, or ``default`` to leave the libraries' defaults).
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import numpy as np
import orjson
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from threadpoolctl import threadpool_limits

_path = os.environ.get("BENCH_MODEL_PATH")
if not _path:
    raise SystemExit("bare_app: set BENCH_MODEL_PATH to the joblib file of the model to serve")
MODEL: Any = joblib.load(_path)
FEATURES: list[str] = [str(name) for name in MODEL.feature_names_in_]
_threads = os.environ.get("BENCH_PREDICT_THREADS", "1")
if _threads != "default":
    threadpool_limits(int(_threads))


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


async def predict(request: Request) -> Response:
    """Predict the posted records."""
    try:
        records = orjson.loads(await request.body())["records"]
        matrix = np.array([[rec[f] for f in FEATURES] for rec in records], dtype=np.float64)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return _json(
            {"error": f'expected {{"records": [{{"f0": number, ...}}, ...]}}: {exc!r}'}, 400
        )
    frame = pd.DataFrame(matrix, columns=FEATURES, copy=False)
    return _json({"predictions": MODEL.predict(frame).tolist()})


async def readyz(request: Request) -> Response:
    """Ready as soon as the module (and so the model) is loaded."""
    return _json({"status": "ok"})


app = Starlette(
    routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", readyz)],
)
