"""Importable test models for serving tests (saved by reference, no pickle)."""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.models import PythonModel


class Threshold(PythonModel):
    """Predicts 1 when f0 + f1 > 0 (the ground truth of :func:`make_data`)."""

    def predict(self, df: Any) -> Any:
        return (df["f0"].to_numpy() + df["f1"].to_numpy() > 0).astype(np.int64)


class Faulty(Threshold):
    """Raises on about 30% of requests: those whose first row's f2 falls in a band."""

    def predict(self, df: Any) -> Any:
        f2 = df["f2"].to_numpy()
        if np.any((np.abs(f2 * 1000).astype(np.int64) % 10) < 3):
            raise RuntimeError("faulty model: simulated failure")
        return super().predict(df)


class Inverted(Threshold):
    """Answers the opposite of the truth: degraded predictions that feedback reveals."""

    def predict(self, df: Any) -> Any:
        return 1 - super().predict(df)
