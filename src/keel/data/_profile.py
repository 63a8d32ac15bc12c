"""Statistical profiles of tables: the reference that validation and drift monitoring use.

A :class:`TableProfile` holds, per column, counts (values, nulls, NaN, ±inf),
min/max, mean/std, a quantile sketch (101 quantiles), an equal-width histogram
with explicit edges and exact counts, the top categories with an "other" count,
and a distinct-count estimate. Drift tests (KS, PSI, Wasserstein, Jensen-Shannon,
chi-square) run against it without re-reading the reference data.

How it is computed, and why:

* Columns are read as record batches (:func:`keel.data._frames.iter_batches`), so a
  Parquet file of any size is profiled in bounded memory. Every statistic is
  computed with vectorised NumPy / pyarrow.compute over whole Arrow buffers
  (zero-copy where Arrow allows); no row becomes a Python object.
* Pass 1 merges exact counts, min/max and moments (Chan's parallel update) across
  batches, merges category counts (Arrow ``group_by``), and keeps one uniform row
  sample (at most :data:`SAMPLE_ROWS` rows) from which quantiles and the distinct
  estimate of numeric columns come. Tables no bigger than the sample get exact
  quantiles.
* Pass 2 counts every finite value into equal-width bins between the exact min
  and max (``bincount``: a tenth of the cost of quantile-edged ``searchsorted``),
  so histogram counts always sum to the finite-value count. For Parquet, the
  footer's row-group statistics usually give those bounds up front; the counting
  then happens in pass 1 and the file is read once.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keel.data import _frames
from keel.data._frames import DEFAULT_BATCH_ROWS, iter_batches, read_schema
from keel.exceptions import InvalidSpecError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "HISTOGRAM_BINS",
    "QUANTILE_PROBS",
    "SAMPLE_ROWS",
    "TOP_K",
    "ColumnProfile",
    "Histogram",
    "Kind",
    "TableProfile",
    "column_kind",
    "profile_table",
]

Kind = Literal["numeric", "categorical", "boolean", "datetime", "other"]
Scalar = float | int | str | bool | None

#: Quantile probabilities of the sketch: 0.00, 0.01, ..., 1.00.
QUANTILE_PROBS: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(101))
#: Equal-width bins of numeric and datetime histograms.
HISTOGRAM_BINS = 100
#: Categories kept (with exact counts) per categorical column; the rest go to ``other``.
TOP_K = 20
#: Rows in the uniform sample that quantiles and numeric distinct estimates come from.
SAMPLE_ROWS = 200_000
#: Distinct categories tracked exactly per column before the rarest are dropped.
CATEGORY_CAP = 100_000

PROFILE_VERSION = 1


@dataclass(frozen=True)
class Histogram:
    """Counts of finite values in ``len(edges) - 1`` bins; the last bin is closed."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class ColumnProfile:
    """Statistics of one column.

    ``count`` is the number of non-null values (NaN and ±inf included); ``min``,
    ``max``, ``mean``, ``std``, ``quantiles`` and ``histogram`` describe the finite
    values. Datetime statistics are numbers in the column's unit since the epoch,
    except ``min``/``max`` which are ISO strings. ``std`` is the sample standard
    deviation (ddof=1).
    """

    name: str
    kind: Kind
    type: str
    count: int
    nulls: int
    nan: int = 0
    inf: int = 0
    min: Scalar = None
    max: Scalar = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[float, float] = field(default_factory=dict)
    histogram: Histogram | None = None
    top: tuple[tuple[Scalar, int], ...] = ()
    other: int = 0
    distinct: int | None = None
    distinct_exact: bool = False

    @property
    def finite(self) -> int:
        """Non-null values that are neither NaN nor ±inf."""
        return self.count - self.nan - self.inf

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile, interpolated linearly within the sketch."""
        if not self.quantiles:
            return None
        probs = sorted(self.quantiles)
        return float(np.interp(q, probs, [self.quantiles[p] for p in probs]))


@dataclass(frozen=True)
class TableProfile:
    """The profile of a whole table: row count and one :class:`ColumnProfile` per column."""

    rows: int
    columns: tuple[ColumnProfile, ...]
    version: int = PROFILE_VERSION

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        from keel.exceptions import NotFoundError, did_you_mean

        names = [c.name for c in self.columns]
        raise NotFoundError(
            f"Column '{name}' is not in the profile.{did_you_mean(name, names)} "
            f"Columns: {', '.join(names)}.",
            column=name,
        )

    @property
    def names(self) -> list[str]:
        """Column names, in table order."""
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN and ±inf written as the strings ``"NaN"``, ``"Infinity"``)."""
        return {
            "version": self.version,
            "rows": self.rows,
            "columns": [_column_to_dict(c) for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableProfile:
        """Rebuild a profile written by :meth:`to_dict`."""
        try:
            version = int(data.get("version", PROFILE_VERSION))
            if version > PROFILE_VERSION:
                raise InvalidSpecError(
                    f"Profile format version {version} is newer than this keel understands "
                    f"({PROFILE_VERSION}); upgrade keel.",
                )
            return cls(
                rows=int(data["rows"]),
                columns=tuple(_column_from_dict(c) for c in data["columns"]),
                version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidSpecError):
                raise
            raise InvalidSpecError(
                f"Not a keel table profile ({type(exc).__name__}: {exc}); expected the dict "
                "written by TableProfile.to_dict().",
            ) from exc


# -- JSON encoding ------------------------------------------------------------------------
def _enc(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _dec(value: Any) -> Any:
    if isinstance(value, str) and value in _SPECIAL:
        return _SPECIAL[value]
    return value


def _column_to_dict(c: ColumnProfile) -> dict[str, Any]:
    numeric = c.kind in ("numeric", "datetime")
    return {
        "name": c.name,
        "kind": c.kind,
        "type": c.type,
        "count": c.count,
        "nulls": c.nulls,
        "nan": c.nan,
        "inf": c.inf,
        "min": _enc(c.min) if numeric else c.min,
        "max": _enc(c.max) if numeric else c.max,
        "mean": _enc(c.mean),
        "std": _enc(c.std),
        "quantiles": [[q, _enc(v)] for q, v in sorted(c.quantiles.items())],
        "histogram": None
        if c.histogram is None
        else {
            "edges": [_enc(e) for e in c.histogram.edges],
            "counts": list(c.histogram.counts),
        },
        "top": [[v, n] for v, n in c.top],
        "other": c.other,
        "distinct": c.distinct,
        "distinct_exact": c.distinct_exact,
    }


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(_dec(value))


def _column_from_dict(d: Mapping[str, Any]) -> ColumnProfile:
    kind = d["kind"]
    if kind not in ("numeric", "categorical", "boolean", "datetime", "other"):
        raise ValueError(f"unknown column kind {kind!r}")
    numeric = kind == "numeric"
    hist = d.get("histogram")
    return ColumnProfile(
        name=str(d["name"]),
        kind=kind,
        type=str(d["type"]),
        count=int(d["count"]),
        nulls=int(d["nulls"]),
        nan=int(d.get("nan", 0)),
        inf=int(d.get("inf", 0)),
        min=_dec(d.get("min")) if numeric else d.get("min"),
        max=_dec(d.get("max")) if numeric else d.get("max"),
        mean=_opt_float(d.get("mean")),
        std=_opt_float(d.get("std")),
        quantiles={float(q): float(_dec(v)) for q, v in d.get("quantiles", [])},
        histogram=None
        if hist is None
        else Histogram(
            edges=tuple(float(_dec(e)) for e in hist["edges"]),
            counts=tuple(int(n) for n in hist["counts"]),
        ),
        top=tuple((v, int(n)) for v, n in d.get("top", [])),
        other=int(d.get("other", 0)),
        distinct=None if d.get("distinct") is None else int(d["distinct"]),
        distinct_exact=bool(d.get("distinct_exact", False)),
    )


# -- kinds --------------------------------------------------------------------------------
def column_kind(type_: pa.DataType) -> Kind:
    """The profile kind of an Arrow type."""
    import pyarrow.types as pat

    if pat.is_dictionary(type_):
        return column_kind(type_.value_type)
    if pat.is_boolean(type_):
        return "boolean"
    if pat.is_integer(type_) or pat.is_floating(type_) or pat.is_decimal(type_):
        return "numeric"
    if pat.is_timestamp(type_) or pat.is_date(type_):
        return "datetime"
    if pat.is_string(type_) or pat.is_large_string(type_) or _is_string_view(type_):
        return "categorical"
    return "other"


def _is_string_view(type_: pa.DataType) -> bool:
    import pyarrow.types as pat

    check: Callable[[Any], bool] | None = getattr(pat, "is_string_view", None)
    return bool(check(type_)) if check is not None else False


# -- accumulators -------------------------------------------------------------------------
class _Acc:
    """Per-column state merged across batches (pass 1)."""

    def __init__(self, name: str, type_: pa.DataType) -> None:
        self.name = name
        self.type = type_
        self.kind = column_kind(type_)
        self.count = 0
        self.nulls = 0
        self.nan = 0
        self.inf = 0
        # Moments of finite values (Chan et al. parallel update).
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min: Any = None
        self.max: Any = None
        self.samples: list[np.ndarray[Any, Any]] = []
        self.counts: pa.Table | None = None  # categories: values, counts
        self.pruned = 0  # values whose category was dropped (over CATEGORY_CAP)
        self.hist: np.ndarray[Any, np.dtype[np.int64]] | None = None
        self.edges: np.ndarray[Any, np.dtype[np.float64]] | None = None

    def add_moments(self, x: np.ndarray[Any, Any]) -> None:
        n_b = x.size
        if n_b == 0:
            return
        mean_b = float(x.mean(dtype=np.float64))
        m2_b = float(np.square(x - mean_b, dtype=np.float64).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        lo, hi = x.min(), x.max()
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)


def _numeric_values(arr: pa.Array, kind: Kind) -> np.ndarray[Any, Any]:
    """Non-null values as a NumPy array (int64 for datetimes, float64 for decimals)."""
    import pyarrow as pa
    import pyarrow.types as pat

    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.null_count:
        arr = arr.drop_null()
    if kind == "datetime":
        arr = (
            arr.cast(pa.int64())
            if pat.is_timestamp(arr.type) or pat.is_date64(arr.type)
            else (arr.cast(pa.int32()).cast(pa.int64()))
        )
    elif pat.is_decimal(arr.type) or pat.is_float16(arr.type):
        arr = arr.cast(pa.float64())
    values: np.ndarray[Any, Any] = arr.to_numpy(zero_copy_only=False)
    return values


def _finite(x: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], int, int]:
    """Finite values of ``x`` and the NaN and ±inf counts."""
    if x.dtype.kind != "f":
        return x, 0, 0
    ok = np.isfinite(x)
    if ok.all():
        return x, 0, 0
    nan = int(np.isnan(x).sum())
    return x[ok], nan, int(x.size - ok.sum() - nan)


def _merge_counts(acc: _Acc, counts: pa.Table) -> None:
    import pyarrow as pa

    if acc.counts is not None:
        counts = (
            pa.concat_tables([acc.counts, counts])
            .group_by("values")
            .aggregate([("counts", "sum")])
            .rename_columns(["values", "counts"])
        )
    if counts.num_rows > CATEGORY_CAP:
        # Keep the most frequent categories; the rest are only counted (bounded memory).
        counts = counts.sort_by([("counts", "descending"), ("values", "ascending")])
        acc.pruned += int(counts.slice(CATEGORY_CAP)["counts"].to_numpy().sum())
        counts = counts.slice(0, CATEGORY_CAP)
    acc.counts = counts


def _pass1(acc: _Acc, arr: pa.Array, take: np.ndarray[Any, Any] | None) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    acc.nulls += arr.null_count
    acc.count += len(arr) - arr.null_count
    if acc.kind in ("numeric", "datetime"):
        x, nan, inf = _finite(_numeric_values(arr, acc.kind))
        acc.nan += nan
        acc.inf += inf
        acc.add_moments(x)
        if acc.hist is not None:  # edges known up front (Parquet statistics)
            _count(acc, x)
        if take is None:  # the whole table is the sample
            acc.samples.append(x.astype(np.float64))
        elif take.size:
            s, _, _ = _finite(_numeric_values(arr.take(pa.array(take)), acc.kind))
            acc.samples.append(s.astype(np.float64, copy=False))
    elif acc.kind == "boolean":
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        valid = arr.drop_null() if arr.null_count else arr
        true = int(pc.sum(valid).as_py() or 0)
        counts = pa.table(
            {
                "values": pa.array([True, False]),
                "counts": pa.array([true, len(valid) - true], pa.int64()),
            }
        )
        _merge_counts(acc, counts)
    elif acc.kind == "categorical":
        if _is_string_view(arr.type):
            arr = arr.cast(pa.large_string())
        valid = arr.drop_null() if arr.null_count else arr
        if len(valid):
            vc = pc.value_counts(valid)
            values = vc.field(0)
            if pa.types.is_dictionary(values.type):  # count codes, decode only the distinct
                values = values.dictionary_decode()
            if values.type != pa.string():
                values = values.cast(pa.string())
            _merge_counts(acc, pa.table({"values": values, "counts": vc.field(1)}))
            mm = pc.min_max(values)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            acc.min = lo if acc.min is None else min(acc.min, lo)
            acc.max = hi if acc.max is None else max(acc.max, hi)


def _prepare_histogram(acc: _Acc, lo: float | None = None, hi: float | None = None) -> None:
    """Set equal-width edges between the exact finite min and max (or the given bounds)."""
    if lo is None or hi is None:
        if acc.kind not in ("numeric", "datetime") or acc.n == 0:
            return
        lo, hi = float(acc.min), float(acc.max)
    acc.edges = np.array([lo, hi]) if lo == hi else np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    acc.hist = np.zeros(len(acc.edges) - 1, dtype=np.int64)


def _parquet_bounds(data: Any, accs: list[_Acc]) -> dict[str, tuple[float, float]]:
    """Finite min/max of int and float columns from a Parquet footer's row-group statistics.

    With them the histogram is counted during the first pass, so the file is read
    once; the bounds are checked against the exact min/max at the end, and a column
    whose statistics were missing or off gets a second pass instead.
    """
    import pyarrow.types as pat

    from keel.data._frames import _is_path, _open_parquet

    if not _is_path(data):
        return {}
    meta = _open_parquet(data).metadata
    wanted = {
        a.name: a
        for a in accs
        if pat.is_integer(a.type) or (pat.is_floating(a.type) and not pat.is_float16(a.type))
    }
    bounds: dict[str, tuple[float, float]] = {}
    lows: dict[str, list[float]] = {name: [] for name in wanted}
    highs: dict[str, list[float]] = {name: [] for name in wanted}
    for r in range(meta.num_row_groups):
        group = meta.row_group(r)
        for c in range(group.num_columns):
            chunk = group.column(c)
            name = chunk.path_in_schema
            if name not in wanted:
                continue
            stats = chunk.statistics
            if stats is None or not stats.has_min_max:
                if stats is None or stats.num_values:  # values, but no bounds: unknown
                    wanted.pop(name)
                continue
            lows[name].append(float(stats.min))
            highs[name].append(float(stats.max))
    for name in wanted:
        if lows[name]:
            lo, hi = min(lows[name]), max(highs[name])
            if math.isfinite(lo) and math.isfinite(hi):
                bounds[name] = (lo, hi)
    return bounds


def _pass2(acc: _Acc, arr: pa.Array) -> None:
    if acc.hist is None or acc.edges is None:
        return
    _count(acc, _finite(_numeric_values(arr, acc.kind))[0])


def _count(acc: _Acc, x: np.ndarray[Any, Any]) -> None:
    """Add finite values ``x`` to the histogram (``bincount`` over equal-width bin indices)."""
    assert acc.hist is not None and acc.edges is not None
    if x.size == 0:
        return
    bins = len(acc.hist)
    lo, hi = acc.edges[0], acc.edges[-1]
    if bins == 1 or hi == lo:
        acc.hist[0] += x.size
        return
    idx = ((x.astype(np.float64, copy=False) - lo) * (bins / (hi - lo))).astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)  # the max lands in the last (closed) bin
    acc.hist += np.bincount(idx, minlength=bins)


def _distinct_estimate(sample: np.ndarray[Any, Any], total: int) -> tuple[int, bool]:
    """Distinct values: exact if the sample is everything, else the GEE estimator."""
    if sample.size == 0:
        return 0, True
    _, freq = np.unique(sample, return_counts=True)
    if sample.size >= total:
        return int(freq.size), True
    f1 = int((freq == 1).sum())
    if f1 == sample.size:  # every sampled value is distinct: the column looks unique
        return total, False
    estimate = math.sqrt(total / sample.size) * f1 + int((freq > 1).sum())
    return int(min(total, max(freq.size, round(estimate)))), False


def _scalar(value: Any, acc: _Acc) -> Scalar:
    """A JSON-friendly min/max: ISO strings for datetimes, int for integer columns."""
    import pyarrow as pa

    if value is None:
        return None
    if acc.kind == "datetime":
        type_ = acc.type.value_type if pa.types.is_dictionary(acc.type) else acc.type
        storage = pa.int32() if pa.types.is_date32(type_) else pa.int64()
        py = pa.array([int(value)], storage).cast(type_)[0].as_py()
        return py.isoformat() if isinstance(py, dt.date | dt.datetime) else str(py)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value  # type: ignore[no-any-return]


def _finish(acc: _Acc, top_k: int) -> ColumnProfile:
    common: dict[str, Any] = {
        "name": acc.name,
        "kind": acc.kind,
        "type": str(acc.type),
        "count": acc.count,
        "nulls": acc.nulls,
    }
    if acc.kind in ("numeric", "datetime"):
        quantiles: dict[float, float] = {}
        distinct: int | None = None
        exact = False
        if acc.samples:
            sample = np.concatenate(acc.samples)
            if sample.size:
                values = np.quantile(sample, QUANTILE_PROBS)
                values[0], values[-1] = float(acc.min), float(acc.max)
                quantiles = {q: float(v) for q, v in zip(QUANTILE_PROBS, values, strict=True)}
            distinct, exact = _distinct_estimate(sample, acc.n)
        hist = (
            None
            if acc.hist is None or acc.edges is None
            else Histogram(
                edges=tuple(float(e) for e in acc.edges),
                counts=tuple(int(n) for n in acc.hist),
            )
        )
        return ColumnProfile(
            **common,
            nan=acc.nan,
            inf=acc.inf,
            min=_scalar(acc.min, acc),
            max=_scalar(acc.max, acc),
            mean=acc.mean if acc.n else None,
            std=math.sqrt(acc.m2 / (acc.n - 1)) if acc.n > 1 else (0.0 if acc.n else None),
            quantiles=quantiles,
            histogram=hist,
            distinct=distinct,
            distinct_exact=exact,
        )
    if acc.kind in ("categorical", "boolean") and acc.counts is not None:
        counts = acc.counts.filter(acc.counts["counts"].to_numpy() > 0)
        ordered = counts.sort_by([("counts", "descending"), ("values", "ascending")])
        top_tab = ordered.slice(0, top_k)
        top = tuple(
            zip(
                top_tab["values"].to_pylist(),
                (int(n) for n in top_tab["counts"].to_numpy()),
                strict=True,
            )
        )
        extra: dict[str, Any] = {}
        if acc.kind == "boolean":
            true = next((n for v, n in top if v is True), 0)
            extra = {
                "mean": true / acc.count if acc.count else None,
                "min": true == acc.count if acc.count else None,  # False if any False
                "max": true > 0 if acc.count else None,
            }
        else:
            extra = {"min": acc.min, "max": acc.max}
        return ColumnProfile(
            **common,
            **extra,
            top=top,
            other=acc.count - sum(n for _, n in top),
            distinct=counts.num_rows,
            distinct_exact=acc.pruned == 0,
        )
    return ColumnProfile(**common, distinct=0 if acc.count == 0 else None)


# -- entry point --------------------------------------------------------------------------
def profile_table(
    data: Any,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    seed: int = 0,
    top_k: int = TOP_K,
    progress: Callable[[int, int], None] | None = None,
    show_progress: bool = False,
) -> TableProfile:
    """Profile ``data`` column by column.

    Args:
        data: a pandas or polars DataFrame, a pyarrow Table or RecordBatch, a Parquet
            path or a dict of columns (see :func:`keel.data._frames.to_arrow`).
        batch_rows: rows per record batch (memory is bounded by one batch).
        top_k: categories kept per categorical column (the rest are counted in ``other``).
        seed: seed of the row sample that quantiles come from (profiles are
            reproducible).
        progress: called as ``progress(rows_done, rows_total)`` after every batch of
            each of the two passes (``rows_total`` is twice the row count; a Parquet
            file whose statistics give the histogram bounds is read only once).
        show_progress: draw a Rich progress bar on stderr.

    Returns:
        The :class:`TableProfile`. An empty table gives zero counts and no statistics.

    Raises:
        InvalidSpecError: unsupported input or an unreadable Parquet file.
        NotFoundError: the Parquet path does not exist.
    """
    from keel.data._frames import num_rows

    if top_k < 0:
        raise InvalidSpecError(f"top_k must be >= 0, got {top_k}.")
    data = _frames.materialize(data)  # one pandas/polars -> Arrow conversion, not three
    schema = read_schema(data)
    rows = num_rows(data)
    accs = [_Acc(f.name, f.type) for f in schema]
    rate = min(1.0, SAMPLE_ROWS / rows) if rows else 1.0
    rng = np.random.default_rng(seed)
    preset = _parquet_bounds(data, accs)
    for acc in accs:
        if acc.name in preset:
            _prepare_histogram(acc, *preset[acc.name])
    total = 2 * rows
    with _Progress(show_progress, total, "profiling") as tick, _frames.column_pool() as pool:
        done = 0
        for batch in iter_batches(data, batch_rows=batch_rows):
            take = None
            if rate < 1.0:
                take = np.flatnonzero(rng.random(batch.num_rows) < rate)
            list(
                pool.map(
                    lambda pair, t=take: _pass1(pair[0], pair[1], t),
                    zip(accs, batch.columns, strict=True),
                )
            )
            done += batch.num_rows
            _report(progress, tick, done, total, batch.num_rows)
        second: list[_Acc] = []
        for acc in accs:
            if acc.name in preset:
                lo, hi = preset[acc.name]
                if acc.n and float(acc.min) == lo and float(acc.max) == hi:
                    continue  # counted in pass 1 with the right edges
                acc.hist = acc.edges = None
            _prepare_histogram(acc)
            if acc.hist is not None:
                second.append(acc)
        if second:
            wanted = [a.name for a in second]
            by_name = {a.name: a for a in accs}
            for batch in iter_batches(data, batch_rows=batch_rows, columns=wanted):
                list(
                    pool.map(
                        lambda pair: _pass2(by_name[pair[0]], pair[1]),
                        zip(batch.schema.names, batch.columns, strict=True),
                    )
                )
                done += batch.num_rows
                _report(progress, tick, done, total, batch.num_rows)
        if done < total:
            _report(progress, tick, total, total, total - done)
    return TableProfile(rows=rows, columns=tuple(_finish(a, top_k) for a in accs))


def _report(
    progress: Callable[[int, int], None] | None,
    tick: Callable[[int], None],
    done: int,
    total: int,
    step: int,
) -> None:
    tick(step)
    if progress is not None:
        progress(done, total)


class _Progress:
    """A Rich progress bar on stderr when ``enabled``; otherwise a no-op ticker."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled = enabled
        self.total = total
        self.label = label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda _n: None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task(self.label, total=self.total or None)
        return lambda n: self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
