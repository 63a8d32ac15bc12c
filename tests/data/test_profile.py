"""keel.data._profile: numbers checked against NumPy/pandas on random data."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.data import _profile
from keel.data._profile import QUANTILE_PROBS, TableProfile, profile_table
from keel.exceptions import InvalidSpecError, NotFoundError

N = 20_000


@pytest.fixture
def table() -> pa.Table:
    rng = np.random.default_rng(42)
    x = rng.normal(3.0, 2.0, N)
    x_mask = rng.random(N) < 0.05  # nulls
    x[rng.choice(N, 40, replace=False)] = np.nan
    x[[11, 12]] = [np.inf, -np.inf]
    cats = rng.choice(["red", "green", "blue", "teal"], N, p=[0.5, 0.3, 0.15, 0.05])
    return pa.table(
        {
            "x": pa.array(x, mask=x_mask),
            "n": rng.integers(-50, 50, N),
            "c": pa.array(cats).dictionary_encode(),
            "b": rng.random(N) < 0.25,
            "t": pa.array(np.arange(N, dtype="int64") * 60_000_000, pa.timestamp("us")),
            "l": pa.array([[1, 2]] * N),
        }
    )


def test_numeric_stats_match_numpy(table: pa.Table) -> None:
    p = profile_table(table).column("x")
    raw = table.column("x").to_numpy(zero_copy_only=False)  # nulls -> NaN
    nulls = table.column("x").null_count
    finite = raw[np.isfinite(raw)]
    assert p.kind == "numeric" and p.type == "double"
    assert p.nulls == nulls
    assert p.count == N - nulls
    assert p.inf == 2
    assert p.nan == int(np.isnan(raw).sum()) - nulls
    assert p.finite == finite.size
    assert p.min == finite.min() and p.max == finite.max()
    assert p.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert p.std == pytest.approx(finite.std(ddof=1), rel=1e-12)
    # The table is smaller than the sample, so quantiles are exact.
    assert list(p.quantiles) == list(QUANTILE_PROBS)
    assert np.allclose(list(p.quantiles.values()), np.quantile(finite, QUANTILE_PROBS))
    assert p.histogram is not None
    edges = np.array(p.histogram.edges)
    assert len(edges) == 101 and edges[0] == finite.min() and edges[-1] == finite.max()
    expected, _ = np.histogram(finite, bins=edges)
    assert list(p.histogram.counts) == expected.tolist()


def test_integer_and_categorical_and_boolean(table: pa.Table) -> None:
    prof = profile_table(table)
    n = prof.column("n")
    ints = table.column("n").to_numpy()
    assert (n.min, n.max) == (int(ints.min()), int(ints.max()))
    assert isinstance(n.min, int)
    assert n.distinct == len(np.unique(ints)) and n.distinct_exact
    c = prof.column("c")
    truth = pd.Series(table.column("c").to_pylist()).value_counts()
    assert c.kind == "categorical"
    assert dict(c.top) == truth.to_dict()
    assert c.top[0] == ("red", truth["red"])
    assert c.other == 0 and c.distinct == 4 and c.distinct_exact
    assert (c.min, c.max) == ("blue", "teal")
    b = prof.column("b")
    trues = int(table.column("b").to_numpy(zero_copy_only=False).sum())
    assert dict(b.top) == {True: trues, False: N - trues}
    assert b.mean == pytest.approx(trues / N)
    t = prof.column("t")
    assert t.kind == "datetime"
    assert t.min == "1970-01-01T00:00:00"
    assert t.max == pd.Timestamp((N - 1) * 60, unit="s").isoformat()
    other = prof.column("l")
    assert other.kind == "other" and other.count == N and other.histogram is None


def test_top_k_and_other() -> None:
    values = [f"v{i}" for i in range(30) for _ in range(i + 1)]  # v29 most frequent
    p = profile_table({"s": values}, top_k=5).column("s")
    assert [v for v, _ in p.top] == ["v29", "v28", "v27", "v26", "v25"]
    assert p.other == len(values) - sum(n for _, n in p.top)
    assert p.distinct == 30


def test_quantiles_from_sample_are_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above SAMPLE_ROWS, quantiles come from a uniform sample; counts stay exact."""
    monkeypatch.setattr(_profile, "SAMPLE_ROWS", 20_000)
    rng = np.random.default_rng(7)
    x = rng.exponential(1.0, 400_000)
    p = profile_table({"x": x}, batch_rows=50_000).column("x")
    assert p.count == 400_000 and p.min == x.min() and p.max == x.max()
    assert sum(p.histogram.counts) == 400_000 if p.histogram else False
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        rank = float(np.mean(x <= p.quantiles[q]))
        assert abs(rank - q) < 0.01, (q, rank)
    assert p.distinct_exact is False and p.distinct == 400_000  # every sampled value distinct


def test_parquet_streaming_gives_the_same_profile(tmp_path: Path, table: pa.Table) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=1_500)
    streamed = profile_table(path, batch_rows=1_000)
    whole = profile_table(table)
    assert streamed.rows == whole.rows == N
    for a, b in zip(streamed.columns, whole.columns, strict=True):
        assert (a.count, a.nulls, a.nan, a.inf, a.min, a.max) == (
            b.count,
            b.nulls,
            b.nan,
            b.inf,
            b.min,
            b.max,
        )
        assert a.histogram == b.histogram and a.top == b.top
        assert a.quantiles == pytest.approx(b.quantiles)
        if b.mean is not None:
            assert a.mean == pytest.approx(b.mean, rel=1e-9)


@pytest.mark.parametrize("statistics", [True, False])
def test_parquet_read_once_with_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statistics: bool
) -> None:
    """Footer min/max let the histogram be counted in pass 1; without them, two passes."""
    rng = np.random.default_rng(3)
    table = pa.table({"x": rng.normal(size=5_000), "k": rng.integers(0, 9, 5_000)})
    path = tmp_path / "s.parquet"
    pq.write_table(table, path, row_group_size=1_000, write_statistics=statistics)
    from keel.data import _frames

    reads: list[tuple[str, ...] | None] = []
    real = _frames.iter_batches

    def spy(*args: Any, **kwargs: Any) -> Any:
        cols = kwargs.get("columns")
        reads.append(tuple(cols) if cols is not None else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(_profile, "iter_batches", spy)
    streamed = profile_table(path, batch_rows=1_000)
    assert reads == ([None] if statistics else [None, ("x", "k")])
    assert streamed.column("x").histogram == profile_table(table).column("x").histogram


def test_infinite_statistics_fall_back_to_a_second_pass(tmp_path: Path) -> None:
    x = np.array([1.0, 2.0, np.inf, 3.0] * 100)
    path = tmp_path / "inf.parquet"
    pq.write_table(pa.table({"x": x}), path, row_group_size=100)
    p = profile_table(path).column("x")
    assert p.inf == 100 and p.max == 3.0
    assert p.histogram is not None and sum(p.histogram.counts) == 300
    assert p.histogram.edges[-1] == 3.0


def test_category_cap_bounds_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_profile, "CATEGORY_CAP", 50)
    values = ["common"] * 500 + [f"rare{i}" for i in range(300)]
    p = profile_table({"s": values}, batch_rows=100).column("s")
    assert p.top[0] == ("common", 500)
    assert p.distinct_exact is False and p.distinct is not None and p.distinct <= 50
    assert p.other == 800 - sum(n for _, n in p.top) and p.top[1:3] == (("rare0", 1), ("rare1", 1))


def test_round_trip_is_json_safe(table: pa.Table) -> None:
    prof = profile_table(table)
    text = json.dumps(prof.to_dict(), allow_nan=False)  # raises on a bare NaN/inf
    back = TableProfile.from_dict(json.loads(text))
    assert back == prof
    weird = profile_table({"f": pa.array([math.nan, math.inf], pa.float64())})
    d = weird.to_dict()
    json.dumps(d, allow_nan=False)
    col = TableProfile.from_dict(d).column("f")
    assert (col.nan, col.inf, col.count, col.min, col.mean) == (1, 1, 2, None, None)


def test_empty_table() -> None:
    prof = profile_table(
        pa.table({"x": pa.array([], pa.float64()), "s": pa.array([], pa.string())})
    )
    assert prof.rows == 0
    x = prof.column("x")
    assert (x.count, x.min, x.mean, x.std, x.histogram, x.quantiles) == (
        0,
        None,
        None,
        None,
        None,
        {},
    )
    assert prof.column("s").top == ()


def test_all_nulls_and_constant_columns() -> None:
    prof = profile_table({"n": pa.array([None, None, None], pa.int64()), "k": [5.0, 5.0, 5.0]})
    assert prof.column("n").nulls == 3 and prof.column("n").mean is None
    k = prof.column("k")
    assert k.std == 0.0 and k.histogram is not None
    assert k.histogram.edges == (5.0, 5.0) and k.histogram.counts == (3,)


def test_polars_and_pandas_inputs() -> None:
    df = pd.DataFrame({"a": [1.0, 2.0, None], "s": ["x", "y", "x"]})
    from_pandas = profile_table(df)
    from_polars = profile_table(pl.from_pandas(df))
    assert from_pandas.column("a").nulls == 1 == from_polars.column("a").nulls
    assert from_pandas.column("s").top == from_polars.column("s").top == (("x", 2), ("y", 1))


def test_progress_is_reported() -> None:
    seen: list[tuple[int, int]] = []
    profile_table({"x": np.arange(10.0)}, batch_rows=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (20, 20) and len(seen) == 6


def test_bad_inputs() -> None:
    with pytest.raises(NotFoundError, match=r"missing\.parquet"):
        profile_table("missing.parquet")
    with pytest.raises(InvalidSpecError, match="Not a keel table profile"):
        TableProfile.from_dict({"rows": 1})
    with pytest.raises(InvalidSpecError, match="top_k"):
        profile_table({"x": [1]}, top_k=-1)
    with pytest.raises(NotFoundError, match="Did you mean 'x'"):
        profile_table({"x": [1]}).column("xx")
