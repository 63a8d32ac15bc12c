"""Per-batch column primitives shared by reference building and checking.

Numeric columns (ints, floats, decimals, dates and timestamps) become float64
NumPy arrays of their finite values; dates and timestamps are seconds since the
epoch, whatever their unit, so a reference in ``ms`` compares with a window in
``us``. Binning sorts the finite values of a batch once and finds every bin edge
with a binary search (``np.sort`` + ``searchsorted`` of the edges into the sorted
values): about three times faster than ``searchsorted`` of every value into the
edges, and it also yields per-bin sums from one cumulative sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "Family",
    "NumericBatch",
    "bin_sorted",
    "category_counts",
    "family",
    "merge_moments",
    "moments_inplace",
    "numeric_batch",
]

#: How a column is tested: as numbers, as categories, or not at all.
Family = Literal["numeric", "categorical", "unsupported"]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


def family(type_: pa.DataType) -> Family:
    """The test family of an Arrow type (dictionary types by their value type)."""
    import pyarrow.types as pat

    if pat.is_dictionary(type_):
        return family(type_.value_type)
    if pat.is_boolean(type_):
        return "categorical"
    if (
        pat.is_integer(type_)
        or pat.is_floating(type_)
        or pat.is_decimal(type_)
        or pat.is_timestamp(type_)
        or pat.is_date(type_)
    ):
        return "numeric"
    if pat.is_string(type_) or pat.is_large_string(type_) or _is_string_view(type_):
        return "categorical"
    return "unsupported"


def _is_string_view(type_: pa.DataType) -> bool:
    import pyarrow.types as pat

    check = getattr(pat, "is_string_view", None)
    return bool(check(type_)) if check is not None else False


@dataclass
class NumericBatch:
    """The finite values of one batch of a numeric column, sorted, and its invalid counts."""

    sorted: FloatArray
    nulls: int
    nan: int
    posinf: int
    neginf: int


def numeric_batch(arr: pa.Array | pa.ChunkedArray) -> NumericBatch:
    """Split a numeric Arrow array into sorted finite float64 values and null/NaN/inf counts."""
    import pyarrow as pa
    import pyarrow.types as pat

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pat.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    nulls = arr.null_count
    if nulls:
        arr = arr.drop_null()
    t = arr.type
    if pat.is_timestamp(t):
        x = arr.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64()).to_numpy() / 1e6
    elif pat.is_date32(t):
        x = arr.cast(pa.int32()).to_numpy().astype(np.float64) * 86_400.0
    elif pat.is_date64(t):
        x = arr.cast(pa.int64()).to_numpy() / 1e3
    elif pat.is_decimal(t) or pat.is_float16(t):
        x = arr.cast(pa.float64()).to_numpy()
    else:
        x = arr.to_numpy(zero_copy_only=False)
    x = np.asarray(x, dtype=np.float64)
    nan = posinf = neginf = 0
    ok = np.isfinite(x)
    if not ok.all():
        nan = int(np.isnan(x).sum())
        posinf = int(np.isposinf(x).sum())
        neginf = int(x.size - ok.sum()) - nan - posinf
        x = x[ok]
    else:
        x = x.copy() if not x.flags.writeable else x
    x.sort()
    return NumericBatch(sorted=x, nulls=nulls, nan=nan, posinf=posinf, neginf=neginf)


def bin_sorted(xs: FloatArray, edges: FloatArray, center: float) -> tuple[IntArray, FloatArray]:
    """Counts and sums of ``xs - center`` in the ``len(edges) + 1`` bins of ``edges``.

    Bin 0 holds values below ``edges[0]``; bin ``j`` (1 <= j < m) holds
    ``edges[j-1] <= x < edges[j]``; bin ``m = len(edges) - 1`` also holds
    ``x == edges[-1]``; bin ``m + 1`` holds values above ``edges[-1]``.
    ``xs`` must be sorted and finite.
    """
    m = len(edges) - 1
    pos = np.empty(m + 3, dtype=np.int64)
    pos[0] = 0
    pos[1 : m + 1] = np.searchsorted(xs, edges[:m], side="left")
    pos[m + 1] = np.searchsorted(xs, edges[m], side="right")
    pos[m + 2] = xs.size
    counts: IntArray = np.diff(pos)
    sums: FloatArray = np.zeros(m + 2)
    nonempty = counts > 0
    if xs.size:
        # the non-empty bins' starts increase strictly, and each run ends where the next
        # non-empty bin starts (the last at the end): one reduceat pass gives every sum
        sums[nonempty] = np.add.reduceat(xs, pos[:-1][nonempty])
        sums -= center * counts
    return counts, sums


def category_counts(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, IntArray, int]:
    """Distinct non-null values (as ``string`` or ``bool``), their counts, and the null count.

    Dictionary arrays are counted on their codes; only the distinct values are decoded.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pat

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    nulls = arr.null_count
    if pat.is_dictionary(arr.type):
        codes = arr.indices
        if nulls:
            codes = codes.drop_null()
        dictionary = arr.dictionary
        n = np.bincount(codes.to_numpy().astype(np.intp), minlength=len(dictionary))
        keep = np.flatnonzero(n)
        values = dictionary.take(pa.array(keep))
        counts = n[keep].astype(np.int64)
    else:
        if _is_string_view(arr.type):
            arr = arr.cast(pa.large_string())
        valid = arr.drop_null() if nulls else arr
        if len(valid) == 0:
            empty = pa.array([], pa.bool_() if pat.is_boolean(arr.type) else pa.string())
            return empty, np.zeros(0, dtype=np.int64), nulls
        vc = pc.value_counts(valid)
        values = vc.field(0)
        counts = vc.field(1).to_numpy().astype(np.int64)
    if _is_string_view(values.type) or pat.is_large_string(values.type):
        values = values.cast(pa.string())
    return values, counts, nulls


def moments_inplace(xs: FloatArray) -> tuple[int, float, float]:
    """``(n, mean, sum of squared deviations)`` of ``xs``, overwriting ``xs`` (no allocation)."""
    n = int(xs.size)
    if n == 0:
        return 0, 0.0, 0.0
    mean = float(xs.sum()) / n
    np.subtract(xs, mean, out=xs)
    np.multiply(xs, xs, out=xs)
    return n, mean, float(xs.sum())


def merge_moments(
    n: int, mean: float, m2: float, n_b: int, mean_b: float, m2_b: float
) -> tuple[int, float, float]:
    """Chan et al.'s parallel update of (count, mean, M2)."""
    if n_b == 0:
        return n, mean, m2
    total = n + n_b
    delta = mean_b - mean
    return total, mean + delta * n_b / total, m2 + m2_b + delta * delta * n * n_b / total
