"""keel.data._frames: every supported input becomes Arrow; Parquet streams; bad input is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.data._frames import iter_batches, materialize, num_rows, read_schema, to_arrow
from keel.exceptions import InvalidSpecError, NotFoundError

EXPECTED = pa.table({"a": pa.array([1, 2, 3], pa.int64()), "b": ["x", "y", None]})


def _inputs(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "t.parquet"
    pq.write_table(EXPECTED, path)
    return {
        "pandas": pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]}),
        "polars": pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]}),
        "arrow": EXPECTED,
        "batch": EXPECTED.to_batches()[0],
        "path-str": str(path),
        "path": path,
        "dict": {"a": [1, 2, 3], "b": ["x", "y", None]},
    }


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow", "batch", "path-str", "path", "dict"])
def test_to_arrow_accepts_every_input(tmp_path: Path, kind: str) -> None:
    data = _inputs(tmp_path)[kind]
    table = to_arrow(data)
    assert table.column("a").to_pylist() == [1, 2, 3]
    assert table.column("b").to_pylist() == ["x", "y", None]
    assert num_rows(data) == 3
    assert read_schema(data).names == ["a", "b"]
    batches = list(iter_batches(data, batch_rows=2))
    assert [b.num_rows for b in batches] == [2, 1]
    assert pa.Table.from_batches(batches).column("a").to_pylist() == [1, 2, 3]


def test_unsupported_type_is_named() -> None:
    with pytest.raises(InvalidSpecError, match=r"builtins\.list.*pandas or polars"):
        to_arrow([1, 2, 3])


def test_pandas_mixed_column_gets_a_fix() -> None:
    with pytest.raises(InvalidSpecError, match="mixes types"):
        to_arrow(pd.DataFrame({"a": [1, "two", 3.0]}))


def test_dict_with_unequal_lengths() -> None:
    with pytest.raises(InvalidSpecError, match="same length"):
        to_arrow({"a": [1, 2], "b": [1]})


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"nope\.parquet' does not exist"):
        to_arrow(tmp_path / "nope.parquet")
    with pytest.raises(InvalidSpecError, match="is a directory"):
        num_rows(tmp_path)


def test_not_parquet_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet at all" * 10)
    for call in (to_arrow, read_schema, num_rows, lambda d: list(iter_batches(d))):
        with pytest.raises(InvalidSpecError, match=r"Cannot read Parquet file '.*bad\.parquet'"):
            call(bad)


def test_truncated_parquet_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"x": np.arange(10_000)}), good)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InvalidSpecError, match=r"cut\.parquet.*corrupted, truncated"):
        to_arrow(cut)


def test_corrupted_data_page_fails_while_streaming(tmp_path: Path) -> None:
    """The footer is intact, so the file opens; the damage shows only when pages are read."""
    path = tmp_path / "pages.parquet"
    rng = np.random.default_rng(0)
    pq.write_table(
        pa.table({"x": rng.normal(size=50_000)}), path, compression="zstd", row_group_size=10_000
    )
    raw = bytearray(path.read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little") + 8
    for i in range(4, len(raw) - footer - 4):  # overwrite every data byte, keep the footer
        raw[i] = 0xFF
    path.write_bytes(bytes(raw))
    assert num_rows(path) == 50_000  # the footer still reads
    # Both readers: the record-batch reader (row groups much bigger than a batch)
    # and the row-group reader with read-ahead.
    for batch_rows in (1_000, 10_000):
        with pytest.raises(InvalidSpecError, match=r"pages\.parquet"):
            list(iter_batches(path, batch_rows=batch_rows))


def test_parquet_streams_by_batches(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    table = pa.table({"i": np.arange(25_000), "s": [str(i % 7) for i in range(25_000)]})
    pq.write_table(table, path, row_group_size=1_000)
    batches = list(iter_batches(path, batch_rows=4_000, columns=["i"]))
    assert all(b.num_rows <= 4_000 for b in batches)
    assert len(batches) >= 7
    assert batches[0].schema.names == ["i"]
    assert np.array_equal(
        np.concatenate([b.column(0).to_numpy() for b in batches]), np.arange(25_000)
    )
    dict_batches = list(iter_batches(path, batch_rows=4_000, read_dictionary=["s"]))
    assert pa.types.is_dictionary(dict_batches[0].schema.field("s").type)


def test_big_row_groups_use_the_batch_reader(tmp_path: Path) -> None:
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"i": np.arange(30_000)}), path, row_group_size=30_000)
    sizes = [b.num_rows for b in iter_batches(path, batch_rows=1_000)]
    assert sizes == [1_000] * 30


def test_iter_batches_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError, match="batch_rows must be at least 1"):
        list(iter_batches(EXPECTED, batch_rows=0))
    with pytest.raises(InvalidSpecError, match=r"'zz' not in .* it has: a, b"):
        list(iter_batches(EXPECTED, columns=["a", "zz"]))


def test_empty_table_yields_no_rows() -> None:
    empty = EXPECTED.slice(0, 0)
    assert sum(b.num_rows for b in iter_batches(empty)) == 0
    assert num_rows(empty) == 0


def test_many_small_chunks_are_not_many_small_batches() -> None:
    """pandas' Arrow-backed strings arrive in small chunks; batches still follow batch_rows."""
    table = pa.table(
        {"s": pa.chunked_array([["x", "y"]] * 50), "n": pa.chunked_array([list(range(100))])}
    )
    batches = list(iter_batches(table, batch_rows=40))
    assert [b.num_rows for b in batches] == [40, 40, 20]
    assert pa.Table.from_batches(batches).column("s").to_pylist() == ["x", "y"] * 50


def test_materialize_pandas_matches_from_pandas() -> None:
    """Column-by-column conversion gives the same Arrow columns as Table.from_pandas:
    NaN becomes null, NumPy numbers are shared without a copy, other dtypes convert."""
    df = pd.DataFrame(
        {
            "clean": np.linspace(0.0, 1.0, 6),
            "holes": [1.0, np.nan, 3.0, np.nan, 5.0, 6.0],
            "ints": np.arange(6, dtype=np.int32),
            "text": pd.Series(list("abcabc"), dtype="str"),
            "cat": pd.Categorical(list("xyxyxy")),
            "when": pd.date_range("2024-01-01", periods=6),
            "maybe": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
        }
    )
    got = materialize(df)
    want = pa.Table.from_pandas(df, preserve_index=False)
    assert got.column_names == want.column_names
    for name in want.column_names:
        assert got.column(name).equals(want.column(name)), name
    assert got.column("holes").null_count == 2
    shared = got.column("clean").chunk(0).buffers()[1]
    assert shared is not None and shared.address == df["clean"].to_numpy().ctypes.data
