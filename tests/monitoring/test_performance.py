"""keel.monitoring performance metrics with delayed labels, checked against scikit-learn."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from keel import monitoring
from keel.exceptions import InvalidSpecError


def test_binary_classification_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2_000)
    score = np.clip(y * 0.3 + rng.normal(0.35, 0.25, y.size), 0, 1)
    score[:50] = 0.5  # ties
    pred = (score > 0.5).astype(int)
    m = monitoring.classification_metrics(y, pred, score)
    assert m["n"] == 2_000 and m["positive"] == 1
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score))


def test_string_and_multiclass_labels() -> None:
    y = np.array(["churn", "stay", "stay", "churn", "stay", "churn"])
    p = np.array(["churn", "stay", "churn", "churn", "stay", "stay"])
    m = monitoring.classification_metrics(y, p, positive="churn")
    assert m["precision"] == pytest.approx(skm.precision_score(y, p, pos_label="churn"))
    assert m["recall"] == pytest.approx(skm.recall_score(y, p, pos_label="churn"))
    rng = np.random.default_rng(1)
    y3 = rng.integers(0, 3, 500)
    p3 = np.where(rng.random(500) < 0.7, y3, rng.integers(0, 3, 500))
    m3 = monitoring.classification_metrics(y3, p3)
    assert m3["average"] == "macro"
    assert m3["f1"] == pytest.approx(skm.f1_score(y3, p3, average="macro"))
    assert m3["precision"] == pytest.approx(skm.precision_score(y3, p3, average="macro"))
    with pytest.raises(InvalidSpecError, match="binary classification"):
        monitoring.classification_metrics(y3, p3, rng.random(500))


def test_missing_labels_are_ignored_and_edge_cases() -> None:
    y = pd.Series([1, None, 0, 1, None], dtype="Int64")
    p = [1, 1, 0, 0, 1]
    m = monitoring.classification_metrics(y, p)
    assert m["n"] == 3 and m["accuracy"] == pytest.approx(2 / 3)
    empty = monitoring.classification_metrics([], [])
    assert empty["n"] == 0 and empty["accuracy"] is None
    one_class = monitoring.classification_metrics([1, 1, 1], [1, 0, 1], [0.9, 0.2, 0.8])
    assert one_class["roc_auc"] is None and one_class["recall"] == pytest.approx(2 / 3)
    with pytest.raises(InvalidSpecError, match="same length"):
        monitoring.classification_metrics([1, 0], [1])


def test_regression_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(10, 3, 1_000)
    y[:5] = 0.0  # MAPE skips zero targets
    p = y + rng.normal(0, 1, y.size)
    m = monitoring.regression_metrics(y, p)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    nz = y != 0
    assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y[nz], p[nz]))
    assert m["mape_rows"] == 995 and m["n"] == 1_000
    with_nan = monitoring.regression_metrics([1.0, np.nan, 3.0], [1.5, 2.0, 2.0])
    assert with_nan["n"] == 2 and with_nan["mae"] == pytest.approx(0.75)
    with pytest.raises(InvalidSpecError, match="need numbers"):
        monitoring.regression_metrics(["a"], ["b"])


def test_performance_windows_per_hour() -> None:
    start = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    rng = np.random.default_rng(3)
    n = 600
    ts = start + np.sort(rng.integers(0, 3 * 3_600_000, n))  # three hours, epoch ms
    label = rng.integers(0, 2, n).astype(float)
    hour = (ts - start) // 3_600_000
    # the model gets worse every hour; a quarter of the labels have not arrived yet
    pred = np.where(rng.random(n) < 0.95 - 0.2 * hour, label, 1 - label)
    label[rng.random(n) < 0.25] = np.nan
    frame = pd.DataFrame({"ts": ts, "label": label, "prediction": pred})
    out = monitoring.performance_windows(frame, "ts", "1h")
    assert [w["start"] for w in out] == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T01:00:00+00:00",
        "2026-01-01T02:00:00+00:00",
    ]
    assert sum(w["rows"] for w in out) == n
    for h, w in enumerate(out):
        rows = (hour == h) & ~np.isnan(label)
        assert w["n"] == rows.sum()
        assert w["accuracy"] == pytest.approx(skm.accuracy_score(label[rows], pred[rows]))
    assert out[0]["accuracy"] > out[2]["accuracy"]
    # the same from polars and Arrow, with timestamps instead of epoch numbers
    stamped = pa.table(
        {
            "t": pa.array(ts * 1000, pa.timestamp("us", tz="UTC")),
            "y": label,
            "yhat": pred,
        }
    )
    again = monitoring.performance_windows(
        pl.from_arrow(stamped), "t", dt.timedelta(hours=1), label="y", prediction="yhat"
    )
    assert [(w["n"], w["accuracy"]) for w in again] == [(w["n"], w["accuracy"]) for w in out]


def test_performance_windows_regression_and_errors() -> None:
    frame = pd.DataFrame(
        {
            "ts": [0, 1_000, 61_000, 62_000],
            "label": [1.5, 2.5, 3.0, 4.0],
            "prediction": [1, 2, 3, 5],
        }
    )
    out = monitoring.performance_windows(frame, "ts", "1min")
    assert [w["mae"] for w in out] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert [w["n"] for w in out] == [2, 2]
    with pytest.raises(InvalidSpecError, match="not in the frame"):
        monitoring.performance_windows(frame, "time", "1h")
    with pytest.raises(InvalidSpecError, match="window must be"):
        monitoring.performance_windows(frame, "ts", "soon")
    with pytest.raises(InvalidSpecError, match="window must be positive"):
        monitoring.performance_windows(frame, "ts", 0)
