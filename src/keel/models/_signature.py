"""Model signatures: the columns (or tensor) a model takes and returns, and their enforcement.

Types are Arrow type strings (``"int64"``, ``"double"``, ``"string"``, ``"bool"``,
``"timestamp[us]"`` ...). ``large_string`` is written ``string``, ``large_binary``
``binary``, and a dictionary (pandas categorical, polars Categorical) is written
as its value type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel._tables import to_arrow
from keel.exceptions import InvalidSpecError
from keel.models._errors import SignatureError, require

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ColumnSpec", "Signature", "enforce_signature", "infer_signature", "to_model_input"]

TENSOR_NAME = "input"
OUTPUT_NAME = "prediction"


@dataclass(frozen=True)
class ColumnSpec:
    """One input or output: a named column, or a tensor when ``shape`` is set.

    ``shape`` includes the batch dimension as ``-1``, e.g. ``(-1, 3, 32, 32)``;
    it is ``None`` for a plain column (one scalar per row).
    """

    name: str
    dtype: str
    nullable: bool = True
    shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidSpecError(f"A column name must be a non-empty string, got {self.name!r}.")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "nullable": self.nullable}
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        """Inverse of :meth:`to_dict`."""
        shape = data.get("shape")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            nullable=bool(data.get("nullable", True)),
            shape=tuple(shape) if shape is not None else None,
        )


@dataclass(frozen=True)
class Signature:
    """What a model takes (``inputs``) and returns (``outputs``)."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        names = [c.name for c in self.inputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidSpecError(f"Signature inputs repeat column names: {dupes}.")

    @property
    def input_names(self) -> list[str]:
        """Names of the input columns, in order."""
        return [c.name for c in self.inputs]

    @property
    def is_tensor(self) -> bool:
        """True when the model takes one n-dimensional array rather than columns."""
        return (
            len(self.inputs) == 1
            and self.inputs[0].shape is not None
            and len(self.inputs[0].shape) >= 2
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": [c.to_dict() for c in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Inverse of :meth:`to_dict`."""
        return cls(
            inputs=tuple(ColumnSpec.from_dict(c) for c in data.get("inputs", ())),
            outputs=tuple(ColumnSpec.from_dict(c) for c in data.get("outputs", ())),
        )


# -- Arrow type strings -------------------------------------------------------------------
def type_name(arrow_type: Any) -> str:
    """The signature's string for an Arrow type (large/dictionary variants folded)."""
    pa = require("pyarrow", "for model signatures")
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_large_binary(arrow_type):
        return "binary"
    if pa.types.is_large_list(arrow_type):
        return f"list<item: {type_name(arrow_type.value_type)}>"
    return str(arrow_type)


_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]$")


def parse_type(name: str) -> Any | None:
    """The Arrow type a signature string names, or ``None`` when it is not a simple type."""
    pa = require("pyarrow", "for model signatures")
    match = _TIMESTAMP.match(name)
    if match:
        return pa.timestamp(match.group(1), tz=match.group(2))
    try:
        return pa.type_for_alias(name)
    except (ValueError, KeyError):
        return None


def _numpy_type_name(arr: np.ndarray[Any, Any]) -> str:
    pa = require("pyarrow", "for model signatures")
    if arr.dtype.kind == "O":
        return type_name(pa.array(arr.ravel()[:1000].tolist()).type)
    return type_name(pa.from_numpy_dtype(arr.dtype))


# -- inference ----------------------------------------------------------------------------
def _is_ndarray(data: Any) -> bool:
    return type(data).__module__ == "numpy" and type(data).__name__ == "ndarray"


def _dict_table(data: Mapping[str, Any]) -> Any:
    pa = require("pyarrow", "for model signatures")
    values = list(data.values())
    if (
        values
        and all(not isinstance(v, Sequence | Mapping) or isinstance(v, str | bytes) for v in values)
        and not any(_is_ndarray(v) for v in values)
    ):
        return pa.Table.from_pylist([dict(data)])  # one record
    return pa.table({str(k): (v.tolist() if _is_ndarray(v) else list(v)) for k, v in data.items()})


def _table(data: Any, column_names: Sequence[str] | None = None) -> Any:
    """An Arrow table from any supported tabular input (numpy 2-D gets ``f0..fN``)."""
    pa = require("pyarrow", "for model signatures")
    module = type(data).__module__.split(".", 1)[0]
    if _is_ndarray(data):
        arr = data if data.ndim == 2 else data.reshape(-1, 1)
        if arr.ndim != 2:
            raise InvalidSpecError(f"Expected a 1-D or 2-D array, got shape {data.shape}.")
        names = list(column_names) if column_names else [f"f{i}" for i in range(arr.shape[1])]
        if len(names) != arr.shape[1]:
            raise SignatureError(
                f"The array has {arr.shape[1]} columns but {len(names)} names are expected "
                f"({', '.join(names)}).",
                expected=len(names),
                got=int(arr.shape[1]),
            )
        if arr.dtype.kind == "O":
            return pa.table({n: pa.array(arr[:, i].tolist()) for i, n in enumerate(names)})
        return pa.table({n: pa.array(arr[:, i]) for i, n in enumerate(names)})
    if module == "pandas" and type(data).__name__ == "Series":
        data = data.to_frame(name=data.name if data.name is not None else OUTPUT_NAME)
    if isinstance(data, pa.Table) or module in ("pandas", "polars"):
        return to_arrow(data)
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, Mapping):
        return _dict_table(data)
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if data and all(isinstance(r, Mapping) for r in data):
            return pa.Table.from_pylist([dict(r) for r in data])
        np = require("numpy")
        return _table(np.asarray(data), column_names)
    raise InvalidSpecError(
        "Expected a pandas or polars DataFrame, an Arrow table, a numpy array, a list of "
        f"dicts or a dict of columns, got {type(data).__name__}."
    )


def _columns(table: Any) -> tuple[ColumnSpec, ...]:
    return tuple(ColumnSpec(f.name, type_name(f.type), nullable=True) for f in table.schema)


def _infer_inputs(data: Any, column_names: Sequence[str] | None) -> tuple[ColumnSpec, ...]:
    if _is_ndarray(data) and data.ndim >= 3:
        shape = (-1, *(int(d) for d in data.shape[1:]))
        return (ColumnSpec(TENSOR_NAME, _numpy_type_name(data), shape=shape),)
    return _columns(_table(data, column_names))


def infer_outputs(output: Any) -> tuple[ColumnSpec, ...]:
    """Output specs from what a model's ``predict`` returned."""
    np = require("numpy")
    module = type(output).__module__.split(".", 1)[0]
    if module in ("pandas", "polars", "pyarrow") or isinstance(output, Mapping):
        return _columns(_table(output))
    arr = output if _is_ndarray(output) else np.asarray(output)
    if arr.ndim <= 1:
        return (ColumnSpec(OUTPUT_NAME, _numpy_type_name(arr.reshape(-1))),)
    shape = (-1, *(int(d) for d in arr.shape[1:]))
    return (ColumnSpec(OUTPUT_NAME, _numpy_type_name(arr), shape=shape),)


def infer_signature(
    input_example: Any,
    output_example: Any = None,
    *,
    column_names: Sequence[str] | None = None,
) -> Signature:
    """Infer a signature from example inputs (and outputs).

    Accepts pandas / polars DataFrames, Arrow tables, numpy arrays (a 2-D array
    gives columns ``f0..fN`` unless ``column_names`` is given; 3-D and more give one
    tensor input with shape ``(-1, ...)``), lists of dicts and dicts of columns.
    Inferred columns are nullable; build a :class:`Signature` by hand to forbid nulls.
    """
    inputs = _infer_inputs(input_example, column_names)
    outputs = infer_outputs(output_example) if output_example is not None else ()
    return Signature(inputs=inputs, outputs=outputs)


# -- enforcement --------------------------------------------------------------------------
def _coercible(src: Any, dst: Any) -> bool:
    pa = require("pyarrow")
    t = pa.types
    if t.is_dictionary(src):
        src = src.value_type
    if t.is_null(src):
        return True
    pairs = (
        lambda x: t.is_integer(x) or t.is_floating(x),
        lambda x: t.is_string(x) or t.is_large_string(x),
        lambda x: t.is_binary(x) or t.is_large_binary(x),
        t.is_timestamp,
        t.is_date,
        t.is_boolean,
    )
    return any(kind(src) and kind(dst) for kind in pairs)


def _to_pandas(table: Any) -> pd.DataFrame:
    frame: pd.DataFrame = table.to_pandas()
    return frame


def enforce_signature(signature: Signature, data: Any, *, coerce: bool = False) -> Any:
    """Check ``data`` against ``signature`` and return it ready for the model.

    Returns a pandas DataFrame with the signature's columns in order (or a numpy
    array for a tensor signature). Raises :class:`SignatureError` naming every
    missing, unexpected and mistyped column. With ``coerce=True`` unexpected
    columns are dropped and safely convertible types are cast (see docs/models.md).
    """
    if signature.is_tensor:
        return _enforce_tensor(signature.inputs[0], data, coerce=coerce)
    pa = require("pyarrow", "to check model inputs")
    names = signature.input_names
    if (
        _is_ndarray(data)
        and data.ndim == 2
        and data.dtype.kind != "O"
        and names == [f"f{i}" for i in range(data.shape[1])]
        and all(c.dtype == _numpy_type_name(data[:0]) and c.nullable for c in signature.inputs)
    ):
        return data  # the array the signature was inferred from: no conversion needed
    table = _table(data, names if _is_ndarray(data) else None)
    got_names = table.column_names
    dupes = sorted({n for n in got_names if got_names.count(n) > 1})
    if dupes:
        raise SignatureError(f"Input repeats column names {dupes}.", duplicates=dupes)
    problems: list[str] = []
    missing = [c for c in signature.inputs if c.name not in got_names]
    extra = [n for n in got_names if n not in names]
    mismatched: dict[str, dict[str, str]] = {}
    problems += [f"missing column {c.name!r} (expected {c.dtype})" for c in missing]
    columns: dict[str, Any] = {}
    for spec in signature.inputs:
        if spec.name not in got_names:
            continue
        col = table.column(spec.name)
        got = type_name(col.type)
        if got != spec.dtype:
            target = parse_type(spec.dtype)
            reason = ""
            if coerce and target is not None and _coercible(col.type, target):
                try:
                    col = col.cast(target, safe=True)
                    got = spec.dtype
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    reason = f" (values do not convert safely: {exc})"
            if got != spec.dtype:
                mismatched[spec.name] = {"expected": spec.dtype, "got": got}
                problems.append(f"column {spec.name!r}: expected {spec.dtype}, got {got}{reason}")
                continue
        if not spec.nullable and col.null_count:
            mismatched[spec.name] = {"expected": "no nulls", "got": f"{col.null_count} nulls"}
            problems.append(
                f"column {spec.name!r} has {col.null_count} null values "
                "but the signature does not allow nulls"
            )
            continue
        columns[spec.name] = col
    if extra and not coerce:
        problems += [f"unexpected column {n!r} ({type_name(table.column(n).type)})" for n in extra]
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        hint = (
            "\nPass coerce=True to drop unexpected columns and cast safely convertible "
            "types (e.g. int64 -> double)."
            if not coerce and (extra or mismatched)
            else ""
        )
        raise SignatureError(
            f"Input does not match the model signature:\n{lines}{hint}",
            missing=[c.name for c in missing],
            extra=extra if not coerce else [],
            mismatched=mismatched,
        )
    return _to_pandas(pa.table(columns))


def _enforce_tensor(spec: ColumnSpec, data: Any, *, coerce: bool) -> Any:
    np = require("numpy")
    pa = require("pyarrow")
    arr = data if _is_ndarray(data) else None
    if arr is None:
        raise SignatureError(
            f"This model takes one {spec.dtype} array of shape {spec.shape}, "
            f"got {type(data).__name__}.",
            expected=spec.dtype,
            got=type(data).__name__,
        )
    assert spec.shape is not None
    if arr.ndim != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, arr.shape, strict=True)
    ):
        raise SignatureError(
            f"Input {spec.name!r}: expected shape {spec.shape}, got {tuple(arr.shape)}.",
            expected=list(spec.shape),
            got=list(arr.shape),
        )
    got = _numpy_type_name(arr)
    if got != spec.dtype:
        target = parse_type(spec.dtype)
        if coerce and target is not None and _coercible(pa.from_numpy_dtype(arr.dtype), target):
            try:
                flat = pa.array(arr.ravel()).cast(target, safe=True)
                return np.asarray(flat.to_numpy(zero_copy_only=False)).reshape(arr.shape)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SignatureError(
                    f"Input {spec.name!r}: expected {spec.dtype}, got {got} "
                    f"(values do not convert safely: {exc}).",
                    expected=spec.dtype,
                    got=got,
                ) from exc
        raise SignatureError(
            f"Input {spec.name!r}: expected {spec.dtype}, got {got}."
            + ("" if coerce else " Pass coerce=True to cast safely convertible types."),
            expected=spec.dtype,
            got=got,
        )
    return arr


def to_model_input(data: Any) -> Any:
    """Input without a signature: numpy arrays and pandas frames as they are, else pandas."""
    module = type(data).__module__.split(".", 1)[0]
    if _is_ndarray(data) or (module == "pandas" and type(data).__name__ == "DataFrame"):
        return data
    return _to_pandas(_table(data))
