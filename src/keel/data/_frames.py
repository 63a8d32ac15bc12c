"""One boundary for tabular inputs: pandas, polars, Arrow, Parquet files, dicts of columns.

Everything downstream (profiles, validation, storage) works on Arrow. In-memory
inputs become a ``pyarrow.Table`` (zero-copy for Arrow and polars, one conversion
for pandas; :func:`materialize` shares pandas' NumPy columns without copying);
Parquet files are streamed by record batches or row groups so memory stays bounded,
however large the file. Errors from Arrow and Parquet are translated
here into keel errors that name the file or column and say what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.exceptions import InvalidSpecError, NotFoundError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "column_pool",
    "describe_source",
    "iter_batches",
    "iter_row_groups",
    "largest_row_group",
    "materialize",
    "num_rows",
    "read_schema",
    "to_arrow",
]

#: Rows per record batch when streaming (bounded memory: one batch of every column).
DEFAULT_BATCH_ROWS = 1_000_000

_SUPPORTED = (
    "a pandas or polars DataFrame, a pyarrow Table or RecordBatch, "
    "a path to a Parquet file, or a dict of equal-length columns"
)


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
    except ImportError as exc:  # pragma: no cover - pyarrow is in every test env
        raise InvalidSpecError(
            "Tables need pyarrow, which is not installed. Run: pip install 'keel[tables]'."
        ) from exc
    return pa


def _is_path(data: object) -> bool:
    return isinstance(data, str | os.PathLike)


def _open_parquet(
    path: str | os.PathLike[str], read_dictionary: Sequence[str] | None = None
) -> pq.ParquetFile:
    """Open a Parquet file, reading only its footer; errors name the file."""
    _pyarrow()
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise NotFoundError(
            f"Parquet file '{p}' does not exist. Check the path (relative paths are "
            f"resolved against {Path.cwd()}).",
            path=str(p),
        )
    if p.is_dir():
        raise InvalidSpecError(
            f"'{p}' is a directory; pass the path of one Parquet file.", path=str(p)
        )
    try:
        return pq.ParquetFile(p, read_dictionary=list(read_dictionary) if read_dictionary else None)
    except Exception as exc:  # ArrowInvalid, OSError: not Parquet, truncated footer ...
        raise _parquet_error(p, exc) from exc


def _parquet_error(path: Path, exc: BaseException) -> InvalidSpecError:
    return InvalidSpecError(
        f"Cannot read Parquet file '{path}': {exc}. The file is corrupted, truncated or "
        "not Parquet; re-export it (e.g. DataFrame.to_parquet) and try again.",
        path=str(path),
    )


def describe_source(data: object) -> str:
    """A short human name for an input, used in messages and reports."""
    if _is_path(data):
        return str(data)
    kind = type(data)
    return f"{kind.__module__.split('.', 1)[0]}.{kind.__name__}"


def to_arrow(data: Any) -> pa.Table:
    """Return ``data`` as a ``pyarrow.Table``.

    Args:
        data: a pandas or polars DataFrame, a pyarrow Table or RecordBatch, a path
            (``str`` or ``Path``) to a Parquet file, or a dict mapping column names
            to equal-length sequences or arrays.

    Raises:
        InvalidSpecError: unsupported input type, a pandas column Arrow cannot
            convert (mixed types), unequal column lengths, or a corrupted Parquet file.
        NotFoundError: the Parquet path does not exist.
    """
    pa = _pyarrow()
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if _is_path(data):
        pf = _open_parquet(data)
        try:
            return pf.read()
        except Exception as exc:
            raise _parquet_error(Path(data), exc) from exc
    if isinstance(data, dict):
        try:
            return pa.table(data)
        except Exception as exc:  # unequal lengths, unconvertible values
            raise InvalidSpecError(
                f"Cannot build a table from the dict of columns: {exc}. Every value must be "
                "a sequence or array, and all must have the same length.",
            ) from exc
    module = type(data).__module__.split(".", 1)[0]
    if module == "pandas" and type(data).__name__ == "DataFrame":
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise InvalidSpecError(
                f"Cannot convert the pandas DataFrame to Arrow: {exc}. A column probably "
                "mixes types (e.g. numbers and strings in an object column); cast it with "
                "df[col].astype(...) first.",
            ) from exc
    if module == "polars" and type(data).__name__ == "DataFrame":
        return data.to_arrow()
    if module == "polars" and type(data).__name__ == "LazyFrame":
        return data.collect().to_arrow()
    raise InvalidSpecError(
        f"Cannot use a {describe_source(data)} as a table; expected {_SUPPORTED}.",
        type=type(data).__name__,
    )


def column_pool() -> ThreadPoolExecutor:
    """Threads for per-column work on a batch (one per CPU, at most eight)."""
    return ThreadPoolExecutor(
        max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="keel-col"
    )


def materialize(data: Any) -> Any:
    """``data`` itself if it is a Parquet path (to be streamed), else an Arrow table of it.

    A pandas DataFrame goes through :func:`_pandas_columns` (no pandas metadata, which
    only a round trip back to pandas needs); everything else through :func:`to_arrow`.
    """
    if _is_path(data):
        return data
    module = type(data).__module__.split(".", 1)[0]
    if module == "pandas" and type(data).__name__ == "DataFrame":
        return _pandas_columns(data)
    return to_arrow(data)


def _pandas_columns(df: Any) -> pa.Table:
    """A pandas DataFrame as Arrow, converting column by column on both cores.

    NumPy integer and float columns are wrapped without copying; a float column
    goes through the NaN-to-null conversion only when it holds a NaN, so missing
    values (NaN) become nulls exactly as ``Table.from_pandas`` makes them. Other
    columns (strings, categoricals, datetimes, objects) take the ``from_pandas`` path.
    """
    pa = _pyarrow()
    import numpy as np

    names = list(df.columns)
    if len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        return to_arrow(df)  # duplicate or non-string labels: from_pandas' own rules apply
    fast = [n for n in names if isinstance(df[n].dtype, np.dtype) and df[n].dtype.kind in "iuf"]

    def numeric(name: str) -> Any:
        x = np.ascontiguousarray(df[name].to_numpy())
        if x.dtype.kind == "f" and x.size and np.isnan(x.min()):  # min is NaN iff any is
            return pa.array(x, from_pandas=True)  # NaN -> null (one mask pass)
        return pa.array(x)  # zero-copy

    with column_pool() as pool:
        arrays: dict[str, Any] = dict(zip(fast, pool.map(numeric, fast), strict=True))
    others = [n for n in names if n not in arrays]
    if others:
        rest = to_arrow(df[others])
        arrays.update(zip(rest.column_names, rest.columns, strict=True))
    return pa.table({n: arrays[n] for n in names})


def read_schema(data: Any) -> pa.Schema:
    """The Arrow schema of ``data``; for a Parquet file only the footer is read."""
    if _is_path(data):
        return _open_parquet(data).schema_arrow
    return to_arrow(data).schema


def num_rows(data: Any) -> int:
    """The row count of ``data``; for a Parquet file only the footer is read."""
    if _is_path(data):
        return int(_open_parquet(data).metadata.num_rows)
    return int(to_arrow(data).num_rows)


def iter_batches(
    data: Any,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    columns: Sequence[str] | None = None,
    read_dictionary: Sequence[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield ``data`` as record batches of at most ``batch_rows`` rows.

    A Parquet file is streamed (one batch in memory at a time); in-memory inputs
    are sliced without copying. An empty table yields nothing.

    Args:
        data: any input :func:`to_arrow` accepts.
        batch_rows: the maximum rows per batch (> 0).
        columns: read only these columns (all by default).
        read_dictionary: Parquet string columns to read dictionary-encoded, as Parquet
            stores them (no per-row strings are materialised); ignored for other inputs.

    Raises:
        InvalidSpecError: ``batch_rows`` < 1, an unknown column, or a Parquet file
            that turns out to be corrupted while reading.
    """
    if batch_rows < 1:
        raise InvalidSpecError(f"batch_rows must be at least 1, got {batch_rows}.")
    if _is_path(data):
        pf = _open_parquet(data, read_dictionary=read_dictionary)
        _check_columns(columns, pf.schema_arrow.names, str(data))
        path = Path(data)
        cols = list(columns) if columns is not None else None
        meta = pf.metadata
        biggest = max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0)
        if biggest <= 2 * batch_rows:
            # Whole row groups decode about 3x faster than the batch reader (column
            # chunks in parallel, no re-slicing); memory stays bounded by one row group.
            yield from _row_groups(pf, path, cols, batch_rows)
            return
        reader = pf.iter_batches(batch_size=batch_rows, columns=cols)
        while True:
            try:
                batch = next(reader)
            except StopIteration:
                return
            except Exception as exc:  # corrupted page, bad compression ...
                raise _parquet_error(path, exc) from exc
            yield batch
        return
    table = to_arrow(data)
    if columns is not None:
        _check_columns(columns, table.schema.names, describe_source(data))
        table = table.select(list(columns))
    small = [
        i
        for i, col in enumerate(table.columns)
        if col.num_chunks > 1 and len(col) / col.num_chunks < batch_rows / 4
    ]
    for i in small:
        # Batches break at every chunk boundary of every column: pandas' Arrow-backed
        # strings come in 128k-row chunks, which would mean many tiny batches.
        table = table.set_column(i, table.field(i), table.column(i).combine_chunks())
    yield from table.to_batches(max_chunksize=batch_rows)


def iter_row_groups(
    path: str | os.PathLike[str],
    columns: Callable[[int], list[str]],
    *,
    read_dictionary: Sequence[str] | None = None,
) -> Iterator[tuple[int, pa.Table]]:
    """Yield ``(first_row, table)`` for each row group of a Parquet file.

    ``columns(i)`` names the columns to decode for row group ``i`` (possibly none:
    the table then has no columns but the right ``num_rows``), so a caller that can
    settle a column from the footer's statistics skips decoding it. Group ``i + 1``
    is read in the background while the caller works on group ``i``.

    Raises:
        InvalidSpecError: an unknown column or a corrupted file.
    """
    pf = _open_parquet(path, read_dictionary=read_dictionary)
    p = Path(path)
    names = pf.schema_arrow.names
    meta = pf.metadata

    def read(i: int) -> pa.Table:
        wanted = columns(i)
        _check_columns(wanted, names, str(p))
        try:
            return pf.read_row_group(i, columns=wanted)
        except Exception as exc:  # corrupted page, bad compression ...
            raise _parquet_error(p, exc) from exc

    count = meta.num_row_groups
    if count == 0:
        return
    start = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-read") as reader:
        pending = reader.submit(read, 0)
        for i in range(count):
            group = pending.result()
            if i + 1 < count:
                pending = reader.submit(read, i + 1)
            yield start, group
            start += meta.row_group(i).num_rows


def largest_row_group(path: str | os.PathLike[str]) -> int:
    """The row count of the biggest row group of a Parquet file (footer only)."""
    meta = _open_parquet(path).metadata
    return max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0)


def _row_groups(
    pf: pq.ParquetFile, path: Path, columns: list[str] | None, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Row groups as batches, reading group i+1 in the background while i is processed.

    Reading overlaps with the caller's work; at most two row groups are in memory.
    """

    def read(i: int) -> pa.Table:
        try:
            return pf.read_row_group(i, columns=columns)
        except Exception as exc:  # corrupted page, bad compression ...
            raise _parquet_error(path, exc) from exc

    count = pf.metadata.num_row_groups
    if count == 0:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-read") as reader:
        pending = reader.submit(read, 0)
        for i in range(count):
            group = pending.result()
            if i + 1 < count:
                pending = reader.submit(read, i + 1)
            yield from group.to_batches(max_chunksize=batch_rows)


def _check_columns(columns: Sequence[str] | None, names: Sequence[str], source: str) -> None:
    if columns is None:
        return
    missing = [c for c in columns if c not in names]
    if missing:
        raise InvalidSpecError(
            f"Column(s) {', '.join(repr(c) for c in missing)} not in {source}; "
            f"it has: {', '.join(names)}.",
            columns=missing,
        )
