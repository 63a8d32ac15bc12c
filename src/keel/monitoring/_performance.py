"""Model performance once labels arrive: classification and regression metrics, per time window.

Labels come late (feedback joined to the prediction log by request id), so rows
whose label is still missing are ignored, and every result carries ``n``, the
number of labelled rows it is based on.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Literal

import numpy as np

from keel.exceptions import InvalidSpecError

__all__ = ["classification_metrics", "performance_windows", "regression_metrics"]

Task = Literal["auto", "classification", "regression"]
_UNITS = {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def _array(values: Any, what: str) -> np.ndarray[Any, Any]:
    if values is None:
        raise InvalidSpecError(f"{what} is required.")
    if _is_arrow(values):
        if hasattr(values, "combine_chunks"):
            values = values.combine_chunks()
        arr = np.asarray(values.to_numpy(zero_copy_only=False))
    elif hasattr(values, "to_numpy"):  # pandas / polars Series
        arr = np.asarray(values.to_numpy())
    else:
        arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidSpecError(f"{what} must be one-dimensional, got shape {arr.shape}.")
    out: np.ndarray[Any, Any] = arr
    return out


def _is_arrow(values: Any) -> bool:
    return type(values).__module__.split(".", 1)[0] == "pyarrow"


def _missing(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if arr.dtype.kind == "f":
        nan: np.ndarray[Any, Any] = np.isnan(arr)
        return nan
    if arr.dtype.kind == "O":
        return np.array(
            [
                v is None
                or (isinstance(v, float) and math.isnan(v))
                or type(v).__name__ == "NAType"
                for v in arr
            ],
            dtype=bool,
        )
    return np.zeros(arr.size, dtype=bool)


def _aligned(*arrays: tuple[Any, str] | None) -> list[np.ndarray[Any, Any] | None]:
    out = [None if a is None else _array(*a) for a in arrays]
    sizes = {a.size for a in out if a is not None}
    if len(sizes) > 1:
        raise InvalidSpecError(
            f"y_true, y_pred and y_score must have the same length, got {sorted(sizes)}."
        )
    keep: np.ndarray[Any, Any] | None = None
    for a in out:
        if a is not None:
            miss = _missing(a)
            keep = ~miss if keep is None else keep & ~miss
    return [None if a is None or keep is None else a[keep] for a in out]


def classification_metrics(
    y_true: Any, y_pred: Any, y_score: Any = None, *, positive: Any = None
) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (and ROC AUC given scores) of labelled rows.

    Binary labels use ``positive`` (default: ``1``/``True``, else the larger label);
    more classes give macro averages. ``y_score`` is the positive class's score
    (binary only). Rows with a missing label, prediction or score are ignored.
    """
    t, p, s = _aligned(
        (y_true, "y_true"), (y_pred, "y_pred"), None if y_score is None else (y_score, "y_score")
    )
    assert t is not None and p is not None
    n = int(t.size)
    result: dict[str, Any] = {
        "n": n,
        "accuracy": None,
        "precision": None,
        "recall": None,
        "f1": None,
        "roc_auc": None,
    }
    if n == 0:
        return result
    labels = sorted(set(t.tolist()) | set(p.tolist()), key=lambda v: (str(type(v)), v))
    result["accuracy"] = float(np.mean(t == p))
    if len(labels) <= 2:
        pos = positive if positive is not None else _positive(labels)
        prec, rec, f1 = _prf(t == pos, p == pos)
        result.update(precision=prec, recall=rec, f1=f1, positive=_plain(pos))
        if s is not None:
            result["roc_auc"] = _auc(t == pos, s.astype(np.float64))
    else:
        if s is not None:
            raise InvalidSpecError(
                f"y_score is for binary classification; the labels have {len(labels)} classes."
            )
        per = [_prf(t == lab, p == lab) for lab in labels]
        result.update(
            precision=float(np.mean([x[0] for x in per])),
            recall=float(np.mean([x[1] for x in per])),
            f1=float(np.mean([x[2] for x in per])),
            average="macro",
        )
    return result


def _plain(v: Any) -> Any:
    item = getattr(v, "item", None)
    return item() if callable(item) else v


def _positive(labels: list[Any]) -> Any:
    """``True``, ``1`` or ``"1"`` when among the labels, else the largest label."""
    for lab in labels:
        if lab is True or lab == "1" or (type(lab) is int and lab == 1):
            return lab
    return labels[-1]


def _prf(
    truth: np.ndarray[Any, Any], pred: np.ndarray[Any, Any]
) -> tuple[float | None, float | None, float | None]:
    tp = int(np.sum(truth & pred))
    fp = int(np.sum(~truth & pred))
    fn = int(np.sum(truth & ~pred))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _auc(truth: np.ndarray[Any, Any], score: np.ndarray[Any, Any]) -> float | None:
    """ROC AUC by the rank (Mann-Whitney) formula; ties count one half."""
    n_pos = int(truth.sum())
    n_neg = int(truth.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(score)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """1-based ranks, ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    average = upper - (counts - 1) / 2.0
    out: np.ndarray[Any, Any] = average[inverse]
    return out


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """MAE, RMSE and MAPE of labelled rows (MAPE skips rows whose true value is 0)."""
    t, p = _aligned((y_true, "y_true"), (y_pred, "y_pred"))
    assert t is not None and p is not None
    try:
        t, p = t.astype(np.float64), p.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(f"Regression metrics need numbers: {exc}.") from exc
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    n = int(t.size)
    if n == 0:
        return {"n": 0, "mae": None, "rmse": None, "mape": None, "mape_rows": 0}
    err = p - t
    nz = t != 0
    mape = float(np.mean(np.abs(err[nz] / t[nz]))) if nz.any() else None
    return {
        "n": n,
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(math.sqrt(np.mean(err**2))),
        "mape": mape,
        "mape_rows": int(nz.sum()),
    }


def _window_seconds(window: Any) -> float:
    if isinstance(window, dt.timedelta):
        sec = window.total_seconds()
    elif isinstance(window, int | float) and not isinstance(window, bool):
        sec = float(window)
    elif isinstance(window, str) and (m := _WINDOW.match(window)):
        sec = float(m.group(1)) * _SECONDS[m.group(2)]
    else:
        raise InvalidSpecError(
            f"window must be a timedelta, seconds, or a string like '15min', '1h', '1d', "
            f"got {window!r}."
        )
    if not sec > 0:
        raise InvalidSpecError(f"window must be positive, got {window!r}.")
    return sec


def _seconds(col: Any, unit: str) -> np.ndarray[Any, Any]:
    import pyarrow as pa
    import pyarrow.types as pat

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pat.is_timestamp(col.type):
        us = col.cast(pa.timestamp("us", tz=col.type.tz)).cast(pa.int64())
        return np.asarray(us.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e6
    if pat.is_date(col.type):
        return np.asarray(
            col.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
    if pat.is_integer(col.type) or pat.is_floating(col.type):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64) * _UNITS[unit]
    raise InvalidSpecError(
        f"The time column must hold timestamps, dates or epoch numbers, got {col.type}."
    )


def performance_windows(
    frame: Any,
    time_col: str,
    window: Any,
    *,
    label: str = "label",
    prediction: str = "prediction",
    score: str | None = None,
    task: Task = "auto",
    time_unit: str = "ms",
    positive: Any = None,
) -> list[dict[str, Any]]:
    """Metrics per time window of a prediction log joined with feedback labels.

    Args:
        frame: pandas/polars DataFrame or Arrow table with ``time_col``, ``label``,
            ``prediction`` (and optionally ``score``) columns.
        time_col: timestamps, dates, or epoch numbers in ``time_unit`` (``"ms"``,
            the prediction log's ``ts``; also ``"s"``, ``"us"``, ``"ns"``).
        window: window length: a ``timedelta``, seconds, or ``"15min"``/``"1h"``/``"1d"``.
        task: ``"classification"``, ``"regression"`` or ``"auto"`` (regression when the
            labels are non-integral numbers).

    Returns:
        One dict per non-empty window, in time order: ``start``/``end`` (ISO, UTC),
        ``rows`` (all rows), and the metrics of the labelled rows (``n`` of them).
    """
    from keel.data._frames import to_arrow

    if time_unit not in _UNITS:
        raise InvalidSpecError(f"time_unit must be one of {', '.join(_UNITS)}, got {time_unit!r}.")
    if task not in ("auto", "classification", "regression"):
        raise InvalidSpecError(f"task must be auto, classification or regression, got {task!r}.")
    table = to_arrow(frame)
    needed = [time_col, label, prediction] + ([score] if score else [])
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise InvalidSpecError(
            f"Column(s) {', '.join(map(repr, missing))} not in the frame; it has "
            f"{', '.join(table.column_names)}. Pass time_col=, label=, prediction=, score=.",
            columns=missing,
        )
    width = _window_seconds(window)
    secs = _seconds(table.column(time_col), time_unit)
    ok = np.isfinite(secs)
    truth = _array(table.column(label), label)
    pred = _array(table.column(prediction), prediction)
    sc = _array(table.column(score), score) if score else None
    kind = task
    if kind == "auto":
        labelled = truth[~_missing(truth)]
        numeric = labelled.dtype.kind == "f"
        kind = (
            "regression"
            if numeric and labelled.size and not np.all(np.floor(labelled) == labelled)
            else "classification"
        )
    bucket = np.floor(secs[ok] / width).astype(np.int64)
    idx = np.flatnonzero(ok)
    out: list[dict[str, Any]] = []
    for b in np.unique(bucket):
        rows = idx[bucket == b]
        start = dt.datetime.fromtimestamp(float(b) * width, dt.UTC)
        entry: dict[str, Any] = {
            "start": start.isoformat(),
            "end": (start + dt.timedelta(seconds=width)).isoformat(),
            "rows": int(rows.size),
        }
        if kind == "regression":
            entry.update(regression_metrics(truth[rows], pred[rows]))
        else:
            entry.update(
                classification_metrics(
                    truth[rows], pred[rows], None if sc is None else sc[rows], positive=positive
                )
            )
        out.append(entry)
    return out
