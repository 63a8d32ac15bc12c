"""The reference: a compact, exact summary of a table that drift checks compare against.

Per numeric column: up to :data:`NUMERIC_BINS` bins whose edges are quantiles of
the reference (from a uniform row sample of at most :data:`SAMPLE_ROWS` rows), with
the *exact* count and sum of the values in each bin, plus null/NaN/inf counts,
min/max, mean and standard deviation. Per categorical column (strings, booleans):
the exact count of each of the :data:`MAX_CATEGORIES` most frequent categories and
of the rest. A check streams the current window through the same bins and never
re-reads the reference data.

Building reads the data once when it fits in the sample or when every numeric
column's bounds are known up front (a Parquet footer's statistics, or a fast
min/max of an in-memory table): pass 1 then also counts values exactly on a fine
equal-width grid (:data:`GRID_CELLS` cells) and the quantile edges are chosen among
the grid's boundaries, each bin's count and sum being exact sums of whole cells. A
column whose grid is too coarse (one cell of distinct values holding more than
``1/bins`` of the values: very heavy tails) gets a second pass with edges from the
sample instead. Memory is bounded by one record batch.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.exceptions import InvalidSpecError
from keel.monitoring._columns import (
    Family,
    FloatArray,
    IntArray,
    bin_sorted,
    category_counts,
    family,
    merge_moments,
    moments_inplace,
    numeric_batch,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "MAX_CATEGORIES",
    "NUMERIC_BINS",
    "SAMPLE_ROWS",
    "ColumnReference",
    "Reference",
    "reference",
    "resolve_source",
    "stream_batches",
]

#: Quantile bins per numeric column (fewer when the column has fewer distinct values).
NUMERIC_BINS = 1000
#: Rows in the uniform sample the bin edges come from (counts are exact regardless).
SAMPLE_ROWS = 200_000
#: Categories kept with exact counts per categorical column; the rest are counted together.
MAX_CATEGORIES = 1000
#: Distinct categories tracked while building, before the rarest are pruned.
_CATEGORY_TRACK = 100_000
#: Rows per record batch while streaming.
BATCH_ROWS = 1_000_000

#: Columns decoded together when streaming Parquet (bounds the memory in flight).
PARQUET_COLUMNS = 8
#: Equal-width cells of the one-pass grid (see :meth:`_Builder.use_grid`).
GRID_CELLS = 16_384
_GRID_TYPES = re.compile(r"^(u?int(8|16|32|64)|float|double|halffloat)$")

FORMAT_VERSION = 1
_DATASET_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*@(latest|[0-9]+)$")


@dataclass
class ColumnReference:
    """The reference summary of one column.

    Numeric columns carry ``edges`` (``m + 1`` increasing values from the exact
    finite minimum to the exact maximum) and ``counts``/``sums`` over ``m + 2`` bins:
    below ``edges[0]`` (always 0 here), ``m`` inner bins, above ``edges[-1]`` (0).
    ``sums`` are sums of ``x - mean`` (so bin means stay precise for large offsets).
    Categorical columns carry ``categories`` with their ``counts`` and ``other``,
    the count of values in categories beyond :data:`MAX_CATEGORIES`; ``complete``
    says every category is listed (so an unlisted one in a window is new).
    """

    name: str
    family: Family
    type: str
    rows: int
    nulls: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    edges: FloatArray = field(default_factory=lambda: np.zeros(0))
    counts: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sums: FloatArray = field(default_factory=lambda: np.zeros(0))
    categories: list[Any] = field(default_factory=list)
    other: int = 0
    complete: bool = True
    coded: bool = False  # numeric values treated as categories (``categorical=``)

    def __repr__(self) -> str:
        size = (
            f"{self.edges.size - 1} bins"
            if self.family == "numeric"
            else f"{len(self.categories)} categories"
        )
        return f"ColumnReference({self.name!r}, {self.family}, {self.type}, {size})"

    @property
    def finite(self) -> int:
        """Values that are neither null, NaN nor infinite (numeric) / non-null (categorical)."""
        return self.rows - self.nulls - self.nan - self.posinf - self.neginf

    @property
    def invalid(self) -> int:
        """Null, NaN and infinite values."""
        return self.rows - self.finite

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        d: dict[str, Any] = {
            "name": self.name,
            "family": self.family,
            "type": self.type,
            "rows": self.rows,
            "nulls": self.nulls,
            "nan": self.nan,
            "posinf": self.posinf,
            "neginf": self.neginf,
        }
        if self.family == "numeric":
            d.update(
                min=self.min,
                max=self.max,
                mean=self.mean,
                std=self.std,
                edges=self.edges.tolist(),
                counts=self.counts.tolist(),
                sums=self.sums.tolist(),
            )
        elif self.family == "categorical":
            d.update(
                categories=list(self.categories),
                counts=self.counts.tolist(),
                other=self.other,
                complete=self.complete,
                coded=self.coded,
            )
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnReference:
        """Rebuild a column written by :meth:`to_dict`."""
        fam = d["family"]
        if fam not in ("numeric", "categorical", "unsupported"):
            raise ValueError(f"unknown column family {fam!r}")
        col = cls(
            name=str(d["name"]),
            family=fam,
            type=str(d["type"]),
            rows=int(d["rows"]),
            nulls=int(d["nulls"]),
            nan=int(d["nan"]),
            posinf=int(d["posinf"]),
            neginf=int(d["neginf"]),
        )
        if fam == "numeric":
            col.min = _opt(d.get("min"))
            col.max = _opt(d.get("max"))
            col.mean = _opt(d.get("mean"))
            col.std = _opt(d.get("std"))
            col.edges = np.asarray(d["edges"], dtype=np.float64)
            col.counts = np.asarray(d["counts"], dtype=np.int64)
            col.sums = np.asarray(d["sums"], dtype=np.float64)
            if col.edges.size and col.counts.size != col.edges.size + 1:
                raise ValueError(f"column {col.name!r}: {col.edges.size} edges need counts")
        elif fam == "categorical":
            col.categories = list(d["categories"])
            col.counts = np.asarray(d["counts"], dtype=np.int64)
            col.other = int(d["other"])
            col.complete = bool(d["complete"])
            col.coded = bool(d.get("coded", False))
            if len(col.categories) != col.counts.size:
                raise ValueError(f"column {col.name!r}: categories and counts differ in length")
        return col


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class Reference:
    """A reference built once by :func:`reference`; serialisable with :meth:`to_dict`/:meth:`save`.

    ``source`` describes where it came from (a path, ``dataset:NAME@V`` or a frame
    type), ``categorical`` the numeric columns that are treated as categories.
    """

    name: str | None
    source: str
    rows: int
    columns: dict[str, ColumnReference]
    created_at: str = ""
    version: int = FORMAT_VERSION

    def __repr__(self) -> str:
        return (
            f"Reference(name={self.name!r}, source={self.source!r}, rows={self.rows}, "
            f"columns={len(self.columns)})"
        )

    @property
    def names(self) -> list[str]:
        """Column names, in table order."""
        return list(self.columns)

    def column(self, name: str) -> ColumnReference:
        """The summary of column ``name``."""
        try:
            return self.columns[name]
        except KeyError:
            from keel.exceptions import NotFoundError, did_you_mean

            raise NotFoundError(
                f"Column '{name}' is not in the reference.{did_you_mean(name, self.columns)} "
                f"Columns: {', '.join(self.columns)}.",
                column=name,
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (no NaN or infinity anywhere)."""
        return {
            "keel_reference": self.version,
            "name": self.name,
            "source": self.source,
            "rows": self.rows,
            "created_at": self.created_at,
            "columns": [c.to_dict() for c in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Rebuild a reference written by :meth:`to_dict`."""
        if not isinstance(data, Mapping) or "keel_reference" not in data:
            raise InvalidSpecError(
                "Not a keel monitoring reference: expected the dict written by "
                "Reference.to_dict() (it has a 'keel_reference' key)."
            )
        version = data["keel_reference"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InvalidSpecError(
                f"Reference format version {version!r} is not one this keel reads "
                f"(up to {FORMAT_VERSION}); upgrade keel or rebuild the reference."
            )
        try:
            cols = [ColumnReference.from_dict(c) for c in data["columns"]]
            return cls(
                name=data.get("name"),
                source=str(data["source"]),
                rows=int(data["rows"]),
                columns={c.name: c for c in cols},
                created_at=str(data.get("created_at", "")),
                version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSpecError(
                f"Corrupted keel monitoring reference ({type(exc).__name__}: {exc}); rebuild "
                "it with keel.monitoring.reference(...)."
            ) from exc

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the reference as JSON (gzip-compressed when ``path`` ends in ``.gz``)."""
        p = Path(path)
        raw = json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()
        if p.suffix == ".gz":
            raw = gzip.compress(raw, compresslevel=6, mtime=0)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(raw)
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Reference:
        """Read a reference written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            from keel.exceptions import NotFoundError

            raise NotFoundError(f"Reference file '{p}' does not exist.", path=str(p))
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidSpecError(
                f"Reference file '{p}' is not JSON ({exc}); was it written by Reference.save()?",
                path=str(p),
            ) from exc
        return cls.from_dict(data)


# -- sources --------------------------------------------------------------------------------
def resolve_source(data: Any) -> tuple[Any, str]:
    """``(input for _frames, description)``: a ``dataset:NAME@V`` ref becomes its Parquet file."""
    from keel.data import _frames

    if isinstance(data, str):
        spec = data.removeprefix("dataset:")
        is_dataset = data.startswith("dataset:") or (
            _DATASET_REF.match(data) is not None and not Path(data).exists()
        )
        if is_dataset:
            from keel.data._tables import table_path

            return table_path(spec), f"dataset:{spec}"
    if isinstance(data, str | os.PathLike):
        return data, str(data)
    return _frames.materialize(data), _frames.describe_source(data)


# -- building -------------------------------------------------------------------------------
class _Builder:
    """Accumulates one column across batches."""

    def __init__(self, name: str, type_: pa.DataType, fam: Family) -> None:
        self.col = ColumnReference(name=name, family=fam, type=str(type_), rows=0)
        self.samples: list[FloatArray] = []
        self.lo = math.inf
        self.hi = -math.inf
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.cat: pa.Table | None = None
        self.pruned = 0
        self.counted = False  # bin counts complete after pass 1
        # one-pass mode: exact counts on a fine equal-width grid between known bounds
        self.grid: FloatArray | None = None
        self.grid_counts: IntArray = np.zeros(0, dtype=np.int64)
        self.grid_sums: FloatArray = np.zeros(0)
        self.grid_center = 0.0

    def use_grid(self, lo: float, hi: float, cells: int) -> None:
        """Count pass-1 values on ``cells`` equal-width cells over ``[lo, hi]`` (see edges)."""
        self.grid = np.linspace(lo, hi, cells + 1)
        self.grid_counts = np.zeros(cells + 2, dtype=np.int64)
        self.grid_sums = np.zeros(cells + 2)
        self.grid_center = 0.5 * (lo + hi)

    def _grid_add(self, xs: FloatArray) -> None:
        assert self.grid is not None
        counts, sums = bin_sorted(xs, self.grid, self.grid_center)
        self.grid_counts += counts
        self.grid_sums += sums

    # pass 1 ---------------------------------------------------------------------------------
    def first(self, arr: pa.Array, take: np.ndarray[Any, Any] | None) -> None:
        import pyarrow as pa

        self.col.rows += len(arr)
        if self.col.family == "numeric":
            b = numeric_batch(arr)
            c = self.col
            c.nulls += b.nulls
            c.nan += b.nan
            c.posinf += b.posinf
            c.neginf += b.neginf
            xs = b.sorted
            if xs.size:
                self.lo = min(self.lo, float(xs[0]))
                self.hi = max(self.hi, float(xs[-1]))
                if self.grid is not None:
                    self._grid_add(xs)
            if take is None:
                self.samples.append(xs)
            elif take.size and xs.size:
                # random positions of the sorted finite values: a uniform sample of them
                self.samples.append(xs[take[take < xs.size]])
            if xs.size:  # last use of xs: the moments overwrite it unless it is the sample
                moments = moments_inplace(xs if take is not None else xs.copy())
                self.n, self.mean, self.m2 = merge_moments(self.n, self.mean, self.m2, *moments)
        elif self.col.family == "categorical":
            values, counts, nulls = category_counts(arr)
            self.col.nulls += nulls
            if len(values):
                self._merge(pa.table({"values": values, "counts": pa.array(counts)}))
        else:
            self.col.nulls += arr.null_count

    def _merge(self, counts: pa.Table) -> None:
        import pyarrow as pa

        if self.cat is not None:
            counts = (
                pa.concat_tables([self.cat, counts])
                .group_by("values")
                .aggregate([("counts", "sum")])
                .rename_columns(["values", "counts"])
            )
        if counts.num_rows > _CATEGORY_TRACK:
            counts = counts.sort_by([("counts", "descending"), ("values", "ascending")])
            self.pruned += int(counts.slice(_CATEGORY_TRACK)["counts"].to_numpy().sum())
            counts = counts.slice(0, _CATEGORY_TRACK)
        self.cat = counts

    def edges(self, bins: int) -> None:
        """Fix the bin edges from the sample (exact min and max at the ends)."""
        c = self.col
        if c.family != "numeric" or self.n == 0:
            return
        sample = np.concatenate(self.samples) if self.samples else np.zeros(0)
        sample.sort()
        q = _sorted_quantiles(sample, bins) if sample.size else np.zeros(2)
        q[0], q[-1] = self.lo, self.hi
        e = np.unique(q)
        c.edges = np.array([e[0], e[0]]) if e.size == 1 else e
        c.mean = self.mean
        c.min, c.max = self.lo, self.hi
        c.std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        m = c.edges.size - 1
        c.counts = np.zeros(m + 2, dtype=np.int64)
        c.sums = np.zeros(m + 2)
        if self.samples and sum(s.size for s in self.samples) == self.n:
            # the sample is the whole column: count it now, no second pass
            counts, sums = bin_sorted(sample, c.edges, self.mean)
            c.counts += counts
            c.sums += sums
            self.counted = True
        elif self._grid_ok(bins, sample):
            self._edges_from_grid(bins)
        self.samples = []
        self.grid = None

    def _grid_ok(self, bins: int, sample: FloatArray) -> bool:
        """The grid saw every value and no cell holds > 1/bins of them unless it is one value.

        A heavy cell is a single value (an atom no binning can split) when the sample's
        values in it are all equal; otherwise the grid is too coarse for these tails.
        """
        if self.grid is None or self.grid_counts.sum() != self.n:
            return False
        if self.grid_counts[0] or self.grid_counts[-1]:
            return False  # bounds from the footer were off
        heavy = np.flatnonzero(self.grid_counts[1:-1] * bins > self.n)
        for cell in heavy:
            lo, hi = self.grid[cell], self.grid[cell + 1]
            inside = sample[np.searchsorted(sample, lo) : np.searchsorted(sample, hi, "right")]
            if inside.size and inside[0] != inside[-1]:
                return False
        return True

    def _edges_from_grid(self, bins: int) -> None:
        """Quantile edges at grid boundaries; counts and sums are sums of whole cells."""
        assert self.grid is not None
        c = self.col
        cells = self.grid_counts[1:-1]
        before = np.concatenate([[0], np.cumsum(cells)])  # values below each grid edge
        targets = np.arange(1, bins) * (self.n / bins)
        idx = np.unique(np.searchsorted(before, targets, side="left"))
        inner = self.grid[idx[(idx > 0) & (idx < self.grid.size)]]
        inner = inner[(inner > self.lo) & (inner < self.hi)]
        c.edges = np.concatenate([[self.lo], np.unique(inner), [self.hi]])
        if self.lo == self.hi:
            c.edges = np.array([self.lo, self.lo])
        m = c.edges.size - 1
        starts = self.grid[:-1]
        which = np.searchsorted(c.edges[1:-1], starts, side="right") + 1  # 1..m
        c.counts = np.zeros(m + 2, dtype=np.int64)
        c.sums = np.zeros(m + 2)
        np.add.at(c.counts, which, cells)
        np.add.at(c.sums, which, self.grid_sums[1:-1])
        c.sums -= (self.mean - self.grid_center) * c.counts
        self.counted = True

    # pass 2 ---------------------------------------------------------------------------------
    def second(self, arr: pa.Array) -> None:
        c = self.col
        xs = numeric_batch(arr).sorted
        if xs.size:
            assert c.mean is not None
            counts, sums = bin_sorted(xs, c.edges, c.mean)
            c.counts += counts
            c.sums += sums

    def needs_second(self) -> bool:
        return self.col.family == "numeric" and self.n > 0 and not self.counted

    def finish(self, max_categories: int) -> ColumnReference:
        c = self.col
        if c.family == "categorical":
            if self.cat is None or self.cat.num_rows == 0:
                c.categories, c.counts, c.other = [], np.zeros(0, dtype=np.int64), self.pruned
            else:
                ordered = self.cat.sort_by([("counts", "descending"), ("values", "ascending")])
                top = ordered.slice(0, max_categories)
                c.categories = top["values"].to_pylist()
                c.counts = top["counts"].to_numpy().astype(np.int64)
                c.other = int(ordered.slice(max_categories)["counts"].to_numpy().sum())
                c.other += self.pruned
                c.complete = self.pruned == 0 and ordered.num_rows <= max_categories
        return c


def reference(
    data: Any,
    *,
    name: str | None = None,
    columns: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    bins: int = NUMERIC_BINS,
    max_categories: int = MAX_CATEGORIES,
    seed: int = 0,
) -> Reference:
    """Build a :class:`Reference` from a table, once; checks then never re-read the data.

    Args:
        data: a pandas or polars DataFrame, a pyarrow Table, a Parquet path (streamed
            by row groups), or a keel table version ``"dataset:NAME@V"`` /
            ``"NAME@V"`` (its stored Parquet file).
        name: a label for reports (e.g. the deployment or dataset name).
        columns: the columns to summarise (all by default).
        categorical: numeric columns to treat as categories (e.g. integer codes).
        bins: quantile bins per numeric column (10-100,000).
        max_categories: categories kept with exact counts per categorical column.
        seed: seed of the row sample the bin edges come from.

    Raises:
        InvalidSpecError: unsupported input, unknown columns, bad ``bins``.
        NotFoundError: a missing Parquet file or dataset version.
    """
    from keel.data import _frames

    if not 10 <= bins <= 100_000:
        raise InvalidSpecError(f"bins must be between 10 and 100000, got {bins}.")
    if max_categories < 1:
        raise InvalidSpecError(f"max_categories must be at least 1, got {max_categories}.")
    src, source = resolve_source(data)
    schema = _frames.read_schema(src)
    wanted = list(columns) if columns is not None else list(schema.names)
    _check_names(wanted, schema.names, source, "columns")
    as_cat = set(categorical or ())
    _check_names(sorted(as_cat), schema.names, source, "categorical")
    builders = []
    for fname in wanted:
        type_ = schema.field(fname).type
        fam = family(type_)
        cat = fname in as_cat and fam != "unsupported"
        builder = _Builder(fname, type_, "categorical" if cat else fam)
        if fname in as_cat and fam == "numeric":
            builder.col.coded = True
        builders.append(builder)
    rows = _frames.num_rows(src)
    rate = min(1.0, SAMPLE_ROWS / rows) if rows else 1.0
    rng = np.random.default_rng(seed)
    read_dict = _dictionary_columns(src, builders)
    if rate < 1.0:  # too big for the sample: count on a grid in pass 1 where bounds are known
        meta = _frames._open_parquet(src).metadata if _frames._is_path(src) else None
        for b in builders:
            bounds = _bounds(src, b, meta)
            if bounds is not None:
                b.use_grid(*bounds, cells=max(GRID_CELLS, 16 * bins))
    by_name = {b.col.name: b for b in builders}
    with _frames.column_pool() as pool:
        for batch in stream_batches(src, wanted, read_dict):
            take = None if rate >= 1.0 else np.flatnonzero(rng.random(batch.num_rows) < rate)
            here = [by_name[n] for n in batch.schema.names]
            arrays = [_as_category(b, a) for b, a in zip(here, batch.columns, strict=True)]
            pairs = zip(here, arrays, strict=True)
            list(pool.map(lambda p, t=take: p[0].first(p[1], t), pairs))
        for b in builders:
            b.edges(bins)
        second = [b.col.name for b in builders if b.needs_second()]
        for batch in stream_batches(src, second, None) if second else ():
            pairs = zip((by_name[n] for n in batch.schema.names), batch.columns, strict=True)
            list(pool.map(lambda p: p[0].second(p[1]), pairs))
    cols = {b.col.name: b.finish(max_categories) for b in builders}
    return Reference(
        name=name,
        source=source,
        rows=rows,
        columns=cols,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def _sorted_quantiles(sample: FloatArray, bins: int) -> FloatArray:
    """``np.quantile(sample, linspace(0, 1, bins + 1))`` of an already sorted sample."""
    pos = np.linspace(0.0, sample.size - 1, bins + 1)
    low = np.floor(pos).astype(np.intp)
    high = np.minimum(low + 1, sample.size - 1)
    frac = pos - low
    out: FloatArray = sample[low] + (sample[high] - sample[low]) * frac
    return out


def stream_batches(
    src: Any, names: Sequence[str], read_dictionary: Sequence[str] | None
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``names``; a Parquet file is read :data:`PARQUET_COLUMNS` columns
    at a time (each group streamed by row group), so the bytes in flight are a few row
    groups of a few columns, not of the whole table. Parquet is columnar: every column
    chunk is still read exactly once.
    """
    from keel.data import _frames

    if not _frames._is_path(src):
        yield from _frames.iter_batches(src, batch_rows=BATCH_ROWS, columns=list(names))
        return
    wanted = list(names)
    for i in range(0, len(wanted), PARQUET_COLUMNS):
        group = wanted[i : i + PARQUET_COLUMNS]
        as_dict = [n for n in read_dictionary or () if n in group] or None
        yield from _frames.iter_batches(
            src, batch_rows=BATCH_ROWS, columns=group, read_dictionary=as_dict
        )


def _bounds(src: Any, builder: _Builder, meta: Any) -> tuple[float, float] | None:
    """Finite min/max of an int or float column, known before reading it, or None.

    Parquet: the footer's row-group statistics. In-memory tables: Arrow's min_max
    (a fast scan; NaN are ignored, an infinity disqualifies the column).
    """
    import pyarrow.compute as pc

    from keel.data._frames import _is_path

    c = builder.col
    if c.family != "numeric" or c.coded or not _GRID_TYPES.match(c.type):
        return None
    lo, hi = math.inf, -math.inf
    if _is_path(src):
        if meta.num_row_groups == 0:
            return None
        group = meta.row_group(0)
        paths = [group.column(i).path_in_schema for i in range(group.num_columns)]
        if c.name not in paths:
            return None
        index = paths.index(c.name)
        for r in range(meta.num_row_groups):
            chunk = meta.row_group(r).column(index)
            st = chunk.statistics
            if st is None or not st.has_min_max:
                if st is None or st.num_values:
                    return None
                continue
            lo, hi = min(lo, float(st.min)), max(hi, float(st.max))
    else:
        mm = pc.min_max(src.column(c.name))
        if not mm["min"].is_valid:
            return None
        lo, hi = float(mm["min"].as_py()), float(mm["max"].as_py())
    if not (math.isfinite(lo) and math.isfinite(hi)) or not hi > lo:
        return None
    return lo, hi


def _as_category(builder: _Builder, arr: pa.Array) -> pa.Array:
    """A numeric column named in ``categorical=`` as strings (``1`` -> ``"1"``)."""
    import pyarrow as pa

    if builder.col.coded:
        return numeric_as_category(arr)
    return arr if isinstance(arr, pa.Array) else arr.combine_chunks()


def numeric_as_category(arr: pa.Array) -> pa.Array:
    """Numbers as category labels: integral floats print as integers (``2.0`` -> ``"2"``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pat

    if pat.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pat.is_floating(arr.type):
        x = arr.to_numpy(zero_copy_only=False)
        whole = np.isfinite(x) & (np.floor(x) == x) & (np.abs(x) < 2**53)
        if whole[~np.isnan(x)].all():
            arr = pc.cast(arr, pa.int64(), safe=False)
    return arr.cast(pa.string())


def _dictionary_columns(src: Any, builders: list[_Builder]) -> list[str] | None:
    """String columns to read dictionary-encoded from Parquet (no per-row Python strings)."""
    from keel.data._frames import _is_path

    if not _is_path(src):
        return None
    return [b.col.name for b in builders if "string" in b.col.type] or None


def _check_names(wanted: Sequence[str], names: Sequence[str], source: str, what: str) -> None:
    from keel.exceptions import did_you_mean

    missing = [c for c in wanted if c not in names]
    if missing:
        hint = did_you_mean(missing[0], names)
        raise InvalidSpecError(
            f"{what}: column(s) {', '.join(repr(c) for c in missing)} not in {source}.{hint} "
            f"It has: {', '.join(names)}.",
            columns=missing,
        )
