"""The BentoML peer: the benchmark's model as a BentoML 1.4 service.

Runs in the ``serving-bentoml-1.4.40`` venv::

    BENCH_MODEL_PATH=model.joblib bentoml serve bentoml_service:Classifier \
        --working-dir benchmarks/serving --port 3000

``POST /predict`` takes ``{"records": [{"f0": ..., ...}, ...]}`` (a pandas DataFrame
in records orientation, BentoML's documented way to pass one) and answers the list
of predicted classes. Default service settings (one worker, BentoML's own thread
handling), as a user gets them.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
import joblib
import pandas as pd
from bentoml.validators import DataframeSchema
from serving_common import FEATURES, MODEL_PATH_ENV


@bentoml.service
class Classifier:
    """Loads the joblib model named by ``BENCH_MODEL_PATH`` and predicts DataFrames."""

    def __init__(self) -> None:
        path = os.environ.get(MODEL_PATH_ENV)
        if not path:
            raise RuntimeError(f"set {MODEL_PATH_ENV} to the joblib file of the model to serve")
        self.model: Any = joblib.load(path)

    @bentoml.api
    def predict(
        self,
        records: Annotated[pd.DataFrame, DataframeSchema(orient="records", columns=FEATURES)],
    ) -> list[int]:
        """The predicted class of each record."""
        return [int(v) for v in self.model.predict(records)]
