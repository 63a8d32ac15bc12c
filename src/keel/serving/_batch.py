"""Batch scoring: stream a Parquet or CSV file through a verified model into Parquet.

Memory stays at one chunk (``batch_rows``) whatever the file's size; the output
appears only when complete (written beside it, then renamed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from keel.exceptions import InvalidSpecError, NotFoundError

__all__ = ["predict_file"]


def _batches(path: Path, batch_rows: int) -> tuple[Iterator[Any], int | None, Any]:
    """(record batches, total rows if known, schema)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidSpecError(f"{path} is not a readable Parquet file: {exc}") from exc
        return pf.iter_batches(batch_size=batch_rows), pf.metadata.num_rows, pf.schema_arrow
    if suffix in (".csv", ".tsv"):
        options = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=max(1 << 20, batch_rows * 256)),
            parse_options=options,
        )
        return iter(reader), None, reader.schema
    raise InvalidSpecError(
        f"Cannot score {path}: use a .parquet or .csv file (got '{suffix or 'no suffix'}')."
    )


def predict_file(
    model_uri: str,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    batch_rows: int = 65_536,
    method: str = "predict",
    keep: Sequence[str] = (),
    progress: bool = True,
) -> int:
    """Score ``input_path`` with the model at ``model_uri``; returns the rows written.

    The output holds the ``keep`` input columns then ``prediction`` (``predict``) or
    one ``proba_<class>`` column per class (``predict_proba``).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from keel.models import load

    if method not in ("predict", "predict_proba"):
        raise InvalidSpecError(f"method must be predict or predict_proba, got {method!r}.")
    src, dst = Path(input_path), Path(output_path)
    if not src.is_file():
        raise NotFoundError(f"No input file {src}.", path=str(src))
    batches, total, schema = _batches(src, batch_rows)
    missing = [c for c in keep if c not in schema.names]
    if missing:
        raise InvalidSpecError(f"--keep names columns the input lacks: {missing}.")
    model = load(model_uri)
    names = model.signature.input_names if model.signature else list(schema.names)
    fn = model.predict if method == "predict" else model.predict_proba
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    writer: pq.ParquetWriter | None = None
    written = 0
    bar = Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,} / {task.total:,} rows" if total else "{task.completed:,}"),
        TimeRemainingColumn(),
        disable=not progress,
        transient=True,
    )
    try:
        with bar:
            task = bar.add_task("score", total=total)
            for batch in batches:
                frame = batch.select([n for n in names if n in batch.schema.names]).to_pandas()
                out = np.asarray(fn(frame, coerce=True))
                columns = {c: batch.column(c) for c in keep}
                if out.ndim == 2:
                    for j in range(out.shape[1]):
                        columns[f"proba_{j}"] = pa.array(out[:, j])
                else:
                    columns["prediction"] = pa.array(out)
                table = pa.table(columns)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
                written += batch.num_rows
                bar.update(task, advance=batch.num_rows)
        if writer is None:  # an empty input still gives a (typed) empty output
            writer = pq.ParquetWriter(tmp, pa.schema([("prediction", pa.float64())]))
        writer.close()
        writer = None
        tmp.replace(dst)
    finally:
        if writer is not None:
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return written
