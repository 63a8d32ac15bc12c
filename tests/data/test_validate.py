"""keel.data._validate: inference, every rule (fails on a crafted violation, passes on clean
data, with the right example rows), YAML round trips and errors, gates, streaming."""

from __future__ import annotations

import json
import math
import pickle
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from keel.data._profile import profile_table
from keel.data._validate import (
    ColumnSchema,
    DataValidationError,
    Schema,
    ValidationReport,
    infer_schema,
    require_valid,
    validate,
    validated_inputs,
)
from keel.exceptions import InvalidSpecError

N = 2_000


def reference(seed: int = 0, n: int = N) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "age": rng.integers(18, 90, n),
            "score": rng.normal(50.0, 10.0, n),
            "city": rng.choice(["paris", "rome", "oslo"], n),
            "active": rng.random(n) < 0.5,
            "signup": pa.array(
                np.datetime64("2024-01-01") + rng.integers(0, 365, n).astype("timedelta64[D]")
            ),
        }
    )


@pytest.fixture
def schema() -> Schema:
    return infer_schema(reference())


def rules(report: ValidationReport) -> set[tuple[str | None, str]]:
    return {(v.column, v.rule) for v in report.violations}


def with_column(table: pa.Table, name: str, values: Any) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(
        i, name, pa.array(values) if not isinstance(values, pa.Array) else values
    )


# -- inference ----------------------------------------------------------------------------
def test_inferred_rules(schema: Schema) -> None:
    ref = reference()
    assert [c.name for c in schema.columns] == ref.column_names
    assert schema.min_rows == 1 and schema.max_rows is None and not schema.extra_columns
    id_, age, score, city = (schema.column(n) for n in ("id", "age", "score", "city"))
    assert id_.unique and id_.type == "int64" and not id_.nullable
    assert not age.unique  # 2000 rows, 72 distinct ages
    ages = ref.column("age").to_numpy()
    assert age.min is not None and age.max is not None
    assert age.min <= ages.min() and age.max >= ages.max() and isinstance(age.min, int)
    assert score.type == "float64" and not score.allow_nan and not score.allow_inf
    assert score.mean is not None and score.mean["within"] == 4.0
    assert set(score.quantiles) == {0.05, 0.5, 0.95}
    assert city.categories == ["oslo", "paris", "rome"] and not city.unique
    assert schema.column("signup").min == "2024-01-01"
    assert schema.column("signup").severity_of("range") == "warning"
    assert schema.column("active").type == "bool"


def test_infer_from_profile_matches_infer_from_data() -> None:
    ref = reference()
    from_profile = infer_schema(profile_table(ref, top_k=50))
    from_data = infer_schema(ref)
    assert from_profile.columns == from_data.columns


def test_high_cardinality_strings_get_no_categories() -> None:
    s = infer_schema({"name": [f"n{i % 400}" for i in range(1000)]})
    assert s.column("name").categories is None and not s.column("name").unique
    s = infer_schema({"key": [f"k{i}" for i in range(1000)]})
    assert s.column("key").unique


def test_rows_tolerance() -> None:
    s = infer_schema(reference(), rows_tolerance=0.1)
    assert (s.min_rows, s.max_rows) == (1800, 2200)
    with pytest.raises(InvalidSpecError, match="tolerance >= 0"):
        infer_schema(reference(), tolerance=-1)


# -- every input type ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["arrow", "pandas", "polars", "parquet", "dict", "batch"])
def test_clean_data_passes_for_every_input(tmp_path: Path, schema: Schema, kind: str) -> None:
    table = reference(seed=1)  # a fresh sample of the same distribution
    data: Any = {
        "arrow": table,
        "pandas": table.to_pandas(),
        "polars": pl.from_arrow(table),
        "dict": {name: table.column(name) for name in table.column_names},
        "batch": table.combine_chunks().to_batches()[0],
    }.get(kind)
    if kind == "parquet":
        data = tmp_path / "t.parquet"
        pq.write_table(table, data)
    if kind == "pandas":  # pandas writes timestamps in ns: the type rule sees that
        schema.column("signup").type = None
    report = validate(data, schema)
    assert report.ok, report.summary()
    assert report.rows == N
    assert report.errors == []


# -- each rule ----------------------------------------------------------------------------
def test_nullable_rule_reports_rows(schema: Schema) -> None:
    ages = reference().column("age").to_pylist()
    ages[3] = ages[1500] = None
    report = validate(with_column(reference(), "age", ages), schema)
    (v,) = report.violations
    assert (v.column, v.rule, v.severity, v.count) == ("age", "nullable", "error", 2)
    assert [e["row"] for e in v.examples] == [3, 1500]
    assert not report.ok


def test_range_rule(schema: Schema) -> None:
    ages = reference().column("age").to_numpy().copy()
    ages[[10, 20]] = [5, 500]
    report = validate(with_column(reference(), "age", ages), schema)
    (v,) = report.violations
    assert (v.rule, v.count) == ("range", 2)
    assert v.examples == ({"row": 10, "value": 5}, {"row": 20, "value": 500})
    assert v.expected == {"min": schema.column("age").min, "max": schema.column("age").max}


def test_nan_and_inf_rules(schema: Schema) -> None:
    score = reference().column("score").to_numpy().copy()
    score[[1, 2]] = np.nan
    score[7] = np.inf
    schema.column("score").mean = None
    schema.column("score").quantiles = {}
    report = validate(with_column(reference(), "score", score), schema)
    found = {v.rule: v for v in report.violations}
    assert set(found) == {"allow_nan", "allow_inf"}
    assert [e["row"] for e in found["allow_nan"].examples] == [1, 2]
    assert found["allow_inf"].examples == ({"row": 7, "value": math.inf},)
    json.dumps(report.to_dict(), allow_nan=False)  # inf is encoded, not bare
    schema.column("score").allow_nan = schema.column("score").allow_inf = True
    assert validate(with_column(reference(), "score", score), schema).ok


def test_categories_rule_plain_and_dictionary(tmp_path: Path, schema: Schema) -> None:
    cities = reference().column("city").to_pylist()
    cities[42] = "berlin"
    bad = with_column(reference(), "city", cities)
    (v,) = validate(bad, schema).violations
    assert (v.rule, v.count, v.examples) == ("categories", 1, ({"row": 42, "value": "berlin"},))
    encoded = with_column(bad, "city", pa.array(cities).dictionary_encode())
    (v,) = validate(encoded, schema).violations
    assert (v.rule, v.count, v.examples) == ("categories", 1, ({"row": 42, "value": "berlin"},))


def test_unique_rule_across_batches(tmp_path: Path, schema: Schema) -> None:
    ids = np.arange(N)
    ids[1900] = 5  # duplicate of a row far away, in another batch
    path = tmp_path / "dup.parquet"
    pq.write_table(with_column(reference(), "id", ids), path, row_group_size=300)
    report = validate(path, schema, batch_rows=250)
    (v,) = report.violations
    assert (v.column, v.rule, v.count) == ("id", "unique", 1)
    assert [e["row"] for e in v.examples] == [5, 1900]
    strings = Schema(columns=[ColumnSchema("k", unique=True)])
    (v,) = validate({"k": ["a", "b", "a", None, None]}, strings).violations
    assert [e["row"] for e in v.examples] == [0, 2]  # nulls are not duplicates


def test_sparse_integer_ids_use_the_sort_path() -> None:
    ids = np.array([10**12, 5, 10**12, 7], dtype=np.int64)
    (v,) = validate({"id": ids}, Schema(columns=[ColumnSchema("id", unique=True)])).violations
    assert v.count == 1 and [e["row"] for e in v.examples] == [0, 2]


def test_mean_and_quantile_rules_are_warnings(schema: Schema) -> None:
    shifted = with_column(
        reference(seed=3), "score", reference(seed=3).column("score").to_numpy() + 5
    )
    report = validate(shifted, schema)
    assert rules(report) == {
        ("score", "mean"),
        ("score", "quantiles"),
        ("score", "range"),
    } or rules(report) >= {("score", "mean"), ("score", "quantiles")}
    mean = next(v for v in report.violations if v.rule == "mean")
    assert mean.severity == "warning" and mean.observed == pytest.approx(55.0, abs=1.0)
    schema.column("score").severity = {"mean": "error", "quantiles": "error", "range": "warning"}
    report = validate(shifted, schema)
    assert not report.ok and {v.rule for v in report.errors} == {"mean", "quantiles"}


def test_type_missing_and_extra_columns(schema: Schema) -> None:
    table = reference().drop_columns(["active"]).append_column("extra", pa.array(range(N)))
    table = with_column(
        table, "age", pa.array([str(a) for a in reference().column("age").to_pylist()])
    )
    report = validate(table, schema)
    found = {(v.column, v.rule): v for v in report.violations}
    assert set(found) == {("age", "type"), ("active", "missing_column"), (None, "extra_columns")}
    assert found[("age", "type")].observed == "string"
    assert found[("age", "type")].expected == "int64"
    assert found[(None, "extra_columns")].severity == "warning"
    assert found[(None, "extra_columns")].observed == ["extra"]
    schema.extra_columns = True
    assert (None, "extra_columns") not in rules(validate(table, schema))


def test_compatible_type_keeps_value_rules(schema: Schema) -> None:
    ages = pa.array(reference().column("age").to_numpy().astype(np.int32))
    ages_bad = ages.to_pylist()
    ages_bad[0] = 1000
    report = validate(with_column(reference(), "age", ages_bad), schema)
    assert rules(report) == {("age", "range")}
    report = validate(with_column(reference(), "age", ages), schema)
    assert rules(report) == {("age", "type")}


def test_empty_table_breaks_the_row_rule(schema: Schema) -> None:
    report = validate(reference().slice(0, 0), schema)
    (v,) = report.violations
    assert (v.column, v.rule, v.observed) == (None, "rows", 0)


def test_datetime_range() -> None:
    s = Schema(columns=[ColumnSchema("t", min="2024-01-01", max="2024-12-31T00:00:00")])
    t = pa.array([np.datetime64("2024-06-01T00:00:00", "us"), np.datetime64("2025-02-01", "us")])
    (v,) = validate({"t": t}, s).violations
    assert v.rule == "range" and v.examples[0]["row"] == 1
    with pytest.raises(InvalidSpecError, match="not an ISO date"):
        validate({"t": t}, Schema(columns=[ColumnSchema("t", min="yesterday")]))


# -- streaming ----------------------------------------------------------------------------
@pytest.mark.parametrize("row_group", [7_000, 60_000])
def test_parquet_bigger_than_a_batch_is_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row_group: int
) -> None:
    """Counts and row numbers are exact across batch and row-group boundaries; memory
    holds one row group (small groups) or one batch (groups bigger than two batches)."""
    rows = 60_000
    x = np.zeros(rows)
    bad_rows = [0, 9_999, 10_000, 45_123, 59_999]
    x[bad_rows] = 99.0
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"x": x}), path, row_group_size=row_group)
    from keel.data import _frames

    seen: list[int] = []
    real_batches, real_groups = _frames.iter_batches, _frames.iter_row_groups

    def spy_batches(*args: Any, **kwargs: Any) -> Any:
        for batch in real_batches(*args, **kwargs):
            seen.append(batch.num_rows)
            yield batch

    def spy_groups(*args: Any, **kwargs: Any) -> Any:
        for start, group in real_groups(*args, **kwargs):
            seen.append(group.num_rows)
            yield start, group

    monkeypatch.setattr("keel.data._validate.iter_batches", spy_batches)
    monkeypatch.setattr("keel.data._frames.iter_row_groups", spy_groups)
    s = Schema(columns=[ColumnSchema("x", min=0.0, max=1.0)])
    (v,) = validate(path, s, batch_rows=10_000).violations
    assert v.count == len(bad_rows)
    assert [e["row"] for e in v.examples] == bad_rows
    assert sum(seen) == rows and max(seen) <= 10_000 and len(seen) >= 6


def test_corrupted_parquet_names_the_file(tmp_path: Path, schema: Schema) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 garbage")
    with pytest.raises(InvalidSpecError, match=r"broken\.parquet"):
        validate(bad, schema)


# -- YAML ---------------------------------------------------------------------------------
def test_yaml_round_trip(schema: Schema) -> None:
    schema.column("score").severity = {"mean": "error"}
    schema.severity = {"extra_columns": "error"}
    text = schema.to_yaml()
    assert "# keel data schema" in text and "unique: true" in text
    back = Schema.from_yaml(text)
    assert back == schema
    assert back.to_yaml() == text


HAND_WRITTEN = """\
# my edited schema
version: 1
table:
  rows: {min: 2, max: 5}
  severity: {rows: warning}
columns:
  id:
    type: int64
    nullable: false
    unique: true
  price:
    range: {min: 0}
    allow_nan: false
    severity: {range: warning}
  tier:
    categories: [gold, silver]
"""


def test_hand_written_yaml_applies() -> None:
    s = Schema.from_yaml(HAND_WRITTEN)
    assert s.min_rows == 2 and s.severity_of("rows") == "warning"
    assert s.column("price").min == 0 and s.column("price").max is None
    data = {
        "id": [1, 2, 2],
        "price": [1.0, -3.0, float("nan")],
        "tier": ["gold", "bronze", "silver"],
    }
    report = validate(data, s)
    found = {(v.column, v.rule): v.severity for v in report.violations}
    assert found == {
        ("id", "unique"): "error",
        ("price", "range"): "warning",
        ("price", "allow_nan"): "error",
        ("tier", "categories"): "error",
    }
    assert validate({"id": [1], "price": [1.0], "tier": ["gold"]}, s).warnings[0].rule == "rows"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 1\ncolumns:\n  a:\n    nulable: false\n",
            r"line 4, column 5: unknown rule of column 'a' 'nulable'\. "
            r"Did you mean 'nullable'\? Allowed: type, nullable",
        ),
        (
            "version: 1\ncolumns:\n  a:\n    nullable: nope\n",
            r"line 4.*'nullable' must be true or false",
        ),
        (
            "version: 1\ncolumns:\n  a: {severity: {range: fatal}}\n",
            r"line 3.*must be one of error, warning, got 'fatal'",
        ),
        (
            "version: 1\ncolumns:\n  a:\n    type: [int]\n  b: {\n",
            r"line \d+, column \d+: not valid YAML",
        ),
        ("version: 2\n", r"line 1.*version 2 is not supported"),
        ("columns: [a, b]\n", r"'columns' must be a mapping"),
        ("tabel: {}\n", r"unknown top-level key 'tabel'\. Did you mean 'table'\?"),
        ("table: {rows: {min: -1}}\n", r"rows\.min must be >= 0"),
        ("columns:\n  a: {quantiles: {0.5: [3, 1]}}\n", r"low 3\.0 is above high 1\.0"),
        ("columns:\n  a: {mean: {expected: 1}}\n", r"mean of 'a' needs 'std'"),
        ("columns:\n  a: {}\n  a: {}\n", r"Duplicate key 'a' at line 3"),
    ],
)
def test_bad_yaml_is_located(text: str, message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        Schema.from_yaml(text)


def test_category_type_mismatch_is_explained() -> None:
    s = Schema(columns=[ColumnSchema("n", categories=["a"])])
    with pytest.raises(InvalidSpecError, match="categories of column 'n' do not match"):
        validate({"n": [1, 2]}, s)


# -- report and gates ---------------------------------------------------------------------
def test_report_renders_and_serialises(schema: Schema) -> None:
    ages = reference().column("age").to_pylist()
    ages[0] = None
    report = validate(with_column(reference(), "age", ages), schema)
    console = Console(file=StringIO(), width=120)
    console.print(report)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "nullable" in out and "age" in out and "row 0" in out
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and d["errors"] == 1 and d["violations"][0]["examples"][0]["row"] == 0


def test_require_valid_and_decorator(schema: Schema) -> None:
    clean = reference()
    assert require_valid(clean, schema).ok
    ids = clean.column("id").to_numpy().copy()
    ids[1] = 0
    dirty = with_column(clean, "id", ids)
    with pytest.raises(DataValidationError, match=r"invalid .*id\.unique") as info:
        require_valid(dirty, schema)
    assert info.value.report.errors[0].rule == "unique"
    again = pickle.loads(pickle.dumps(info.value))
    assert again.report == info.value.report

    calls: list[int] = []

    @validated_inputs(train=schema)
    def fit(train: Any, epochs: int = 1) -> int:
        calls.append(epochs)
        return epochs

    assert fit(clean, epochs=3) == 3
    with pytest.raises(DataValidationError):
        fit(train=dirty)
    assert calls == [3]  # the invalid data never reached the function
    with pytest.raises(InvalidSpecError, match=r"'data', which .* does not take"):
        validated_inputs(data=schema)(fit)


def test_warnings_do_not_block(schema: Schema) -> None:
    table = reference().append_column("extra", pa.array(range(N)))
    report = require_valid(table, schema)
    assert report.ok and [v.rule for v in report.warnings] == ["extra_columns"]


def test_pandas_nan_is_null(schema: Schema) -> None:
    """pandas marks missing floats with NaN; Arrow (and keel) see them as nulls."""
    df = reference().to_pandas()
    df.loc[4, "score"] = np.nan
    schema.column("signup").type = None
    (v,) = validate(df, schema).violations
    assert (v.rule, v.examples[0]["row"]) == ("nullable", 4)
    assert isinstance(df, pd.DataFrame)


def test_progress_bar_runs(schema: Schema, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(reference(), schema, show_progress=True, batch_rows=500).ok
    assert profile_table(reference(), show_progress=True).rows == N


def test_inferred_float_bounds_are_readable_and_still_cover_the_reference() -> None:
    from decimal import Decimal

    from keel.data._validate import _round_out

    rng = np.random.default_rng(3)
    for x in [*rng.normal(0, 1e3, 200), -3.3899999999999997, 75.59, 1e-9, -2.5e12]:
        lo, hi = _round_out(float(x), up=False), _round_out(float(x), up=True)
        assert lo <= x <= hi
        for bound in (lo, hi):  # at most 4 significant digits
            assert len(Decimal(repr(bound)).normalize().as_tuple().digits) <= 4
    assert _round_out(-3.3899999999999997, up=False) == -3.39
    assert _round_out(75.5912, up=True) == 75.6


# -- fast paths: footer statistics, dictionary pages, pandas columns ----------------------
def _decoded_columns(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record, per row group, the columns validation decodes from a Parquet file."""
    from keel.data import _frames

    asked: list[list[str]] = []
    real = _frames.iter_row_groups

    def spy(path: Any, columns: Any, **kwargs: Any) -> Any:
        def record(i: int) -> list[str]:
            names: list[str] = columns(i)
            asked.append(names)
            return names

        return real(path, record, **kwargs)

    monkeypatch.setattr("keel.data._frames.iter_row_groups", spy)
    return asked


def _ints_table(n: int = 3_000) -> pa.Table:
    return pa.table({"k": np.arange(n, dtype=np.int64) % 100, "x": np.linspace(0, 1, n)})


INT_RULES = Schema(
    columns=[
        ColumnSchema("k", type="int64", nullable=False, min=0, max=99),
        ColumnSchema("x", type="double", nullable=False, allow_nan=False, min=0.0, max=1.0),
    ]
)


def test_statistics_settle_clean_integer_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(_ints_table(), path, row_group_size=1_000)
    asked = _decoded_columns(monkeypatch)
    assert validate(path, INT_RULES).ok
    assert asked == [["x"], ["x"], ["x"]]  # k proven by min/max/null_count; floats decoded


def test_statistics_showing_a_violation_decode_that_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k: list[Any] = (np.arange(3_000, dtype=np.int64) % 100).tolist()
    k[1_500], k[2_999] = 100, None  # out of range in group 1, a null in group 2
    path = tmp_path / "t.parquet"
    pq.write_table(with_column(_ints_table(), "k", k), path, row_group_size=1_000)
    asked = _decoded_columns(monkeypatch)
    found = {v.rule: v for v in validate(path, INT_RULES).violations}
    assert set(found) == {"range", "nullable"}
    assert found["range"].examples == ({"row": 1_500, "value": 100},)
    assert [e["row"] for e in found["nullable"].examples] == [2_999]
    assert asked == [["x"], ["k", "x"], ["k", "x"]]


def test_missing_statistics_are_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k: list[Any] = (np.arange(3_000, dtype=np.int64) % 100).tolist()
    k[10], k[20] = -1, None
    path = tmp_path / "t.parquet"
    pq.write_table(with_column(_ints_table(), "k", k), path, write_statistics=False)
    asked = _decoded_columns(monkeypatch)
    found = {v.rule: v for v in validate(path, INT_RULES).violations}
    assert (found["range"].count, found["nullable"].count) == (1, 1)
    assert found["range"].examples == ({"row": 10, "value": -1},)
    assert asked == [["k", "x"]]


def test_nan_hidden_from_float_statistics_is_found(tmp_path: Path) -> None:
    """Parquet min/max leave NaN out: a float column is always decoded."""
    x = np.linspace(0, 1, 3_000)
    x[2_500] = np.nan
    path = tmp_path / "t.parquet"
    pq.write_table(with_column(_ints_table(), "x", x), path, row_group_size=1_000)
    stats = pq.ParquetFile(path).metadata.row_group(2).column(1).statistics
    assert (stats.min, stats.max, stats.null_count) == (x[2_000], 1.0, 0)  # looks clean
    (v,) = validate(path, INT_RULES).violations
    assert (v.rule, v.count, v.examples[0]["row"]) == ("allow_nan", 1, 2_500)


@pytest.mark.parametrize("dictionary_page", [True, False])
def test_category_violation_in_a_parquet_page(tmp_path: Path, dictionary_page: bool) -> None:
    """Strings are read dictionary-encoded; a bad value in one page's dictionary is found,
    and so is one in a file written without dictionary pages."""
    cities: list[Any] = (["paris", "rome", "oslo"] * 1_000)[:3_000]
    cities[2_222] = "berlin"
    cities[2_223] = None
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table({"city": cities}), path, row_group_size=1_000, use_dictionary=dictionary_page
    )
    s = Schema(columns=[ColumnSchema("city", categories=["oslo", "paris", "rome"])])
    (v,) = validate(path, s).violations
    assert (v.rule, v.count, v.examples) == ("categories", 1, ({"row": 2_222, "value": "berlin"},))
    s.columns[0].nullable = False
    assert {(v.rule, v.count) for v in validate(path, s, batch_rows=400).violations} == {
        ("categories", 1),
        ("nullable", 1),
    }


def test_pandas_columns_keep_pandas_semantics() -> None:
    """NumPy columns are wrapped without copying; NaN still counts as a missing value,
    inf and out-of-range values are still caught, and odd frames fall back safely."""
    n = 5_000
    df = pd.DataFrame(
        {
            "f": np.linspace(0.0, 1.0, n),
            "g": np.linspace(0.0, 1.0, n),
            "i": np.arange(n, dtype=np.int64),
            "s": pd.Series(["a", "b"] * (n // 2), dtype="str"),
        }
    )
    df.loc[[7, 4_000], "f"] = np.nan
    df.loc[9, "g"] = np.inf
    df.loc[3, "i"] = -5
    s = Schema(
        columns=[
            ColumnSchema("f", type="double", nullable=False, min=0.0, max=1.0),
            ColumnSchema("g", type="double", allow_inf=False, min=0.0, max=1.0),
            ColumnSchema("i", type="int64", min=0, unique=True),
            ColumnSchema("s", type="string", nullable=False, categories=["a"]),
        ]
    )
    found = {(v.column, v.rule): v for v in validate(df, s, batch_rows=1_000).violations}
    assert set(found) == {
        ("f", "nullable"),
        ("g", "allow_inf"),
        ("i", "range"),
        ("s", "categories"),
    }
    assert [e["row"] for e in found["f", "nullable"].examples] == [7, 4_000]
    assert found["g", "allow_inf"].examples == ({"row": 9, "value": math.inf},)
    assert found["i", "range"].examples == ({"row": 3, "value": -5},)
    assert found["s", "categories"].count == n // 2
    s.columns[0].nullable = True  # nullable: NaN is an allowed missing value, not a NaN error
    s.columns[0].allow_nan = False
    assert not {("f", "nullable"), ("f", "allow_nan")} & rules(validate(df, s))
    odd = pd.DataFrame({0: [1.0, np.nan]})  # a non-string label: from_pandas' own path
    (v,) = validate(odd, Schema(columns=[ColumnSchema("0", nullable=False)])).violations
    assert (v.rule, v.count) == ("nullable", 1)


def test_categories_on_plain_strings_count_every_bad_row() -> None:
    """The distinct-values shortcut never hides a bad row, and nulls are not bad values."""
    s = Schema(columns=[ColumnSchema("s", categories=["a"])])
    assert validate({"s": pa.array([None, None], pa.string())}, s).ok
    (v,) = validate({"s": ["a", None, "b", "b", "a", "c"]}, s).violations
    assert (v.rule, v.count) == ("categories", 3)
    assert [e["row"] for e in v.examples] == [2, 3, 5]
