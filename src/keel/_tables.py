"""Conversions between keel objects and pandas / polars / Arrow tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keel.entities import Run
from keel.exceptions import InvalidSpecError

__all__ = ["runs_to_frame", "to_arrow"]


def to_arrow(data: Any) -> Any:
    """A ``pyarrow.Table`` from a pandas or polars DataFrame, or an Arrow table."""
    try:
        import pyarrow as pa
    except ImportError as exc:
        raise InvalidSpecError("Tables need pyarrow: pip install 'keel[tables]'.") from exc
    if isinstance(data, pa.Table):
        return data
    module = type(data).__module__.split(".", 1)[0]
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars":
        return data.to_arrow()
    raise InvalidSpecError(
        f"Expected a pandas or polars DataFrame or a pyarrow Table, got {type(data).__name__}."
    )


def _records(runs: Sequence[Run]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "run_id": r.run_id,
            "experiment_id": r.experiment_id,
            "run_name": r.name,
            "status": str(r.status),
            "start_time": r.start_time,
            "end_time": r.end_time,
            "parent_run_id": r.parent_run_id,
            "user": r.user,
        }
        row.update({f"metrics.{k}": val for k, val in r.metrics.items()})
        row.update({f"params.{k}": val for k, val in r.params.items()})
        row.update({f"tags.{k}": val for k, val in r.tags.items()})
        rows.append(row)
    return rows


def runs_to_frame(runs: Sequence[Run], output: str) -> Any:
    """Runs as a pandas or polars DataFrame, one row per run (times as UTC datetimes)."""
    rows = _records(runs)
    if output == "pandas":
        import pandas as pd

        frame = pd.DataFrame.from_records(rows)
        if rows:
            for col in ("start_time", "end_time"):
                frame[col] = pd.to_datetime(frame[col], unit="ms", utc=True)
        return frame
    if output == "polars":
        import polars as pl

        if not rows:
            return pl.DataFrame()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        pl_frame = pl.DataFrame(
            [{c: row.get(c) for c in columns} for row in rows], infer_schema_length=None
        )
        return pl_frame.with_columns(
            pl.from_epoch(pl.col("start_time"), time_unit="ms").dt.replace_time_zone("UTC"),
            pl.from_epoch(pl.col("end_time"), time_unit="ms").dt.replace_time_zone("UTC"),
        )
    raise InvalidSpecError(f"output must be 'list', 'pandas' or 'polars', got {output!r}.")
