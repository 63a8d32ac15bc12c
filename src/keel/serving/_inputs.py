"""Request bodies to model inputs, checked against the signature without pandas on the way.

Accepted JSON bodies (``fields`` default to the signature's input order):

- records: ``[{...}, ...]``, ``{"records": [...]}``, ``{"dataframe_records": [...]}``,
  ``{"instances": [...]}`` or ``{"inputs": [...]}``;
- columns: ``{"columns": {"f0": [...], ...}}`` or ``{"inputs": {"f0": [...], ...}}``;
- rows: ``{"fields": ["f0", ...], "rows": [[...], ...]}``, ``{"rows": [[...]]}`` or
  MLflow's ``{"dataframe_split": {"columns": [...], "data": [[...]]}}``.

Every problem is collected (missing and unknown columns, values of the wrong type
with their row) and raised together as :class:`InputError` (HTTP 422).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.exceptions import InvalidSpecError

if TYPE_CHECKING:
    from keel.models import Signature

__all__ = ["InputError", "Prepared", "concat", "parse_body", "prepare"]

_MISSING = object()
_FLOATS = {"double", "float", "halffloat", "float64", "float32"}
_INTS = {"int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8"}
_NUMPY = {
    "double": np.float64,
    "float": np.float32,
    "halffloat": np.float16,
    **{name: getattr(np, name) for name in _INTS},
}
#: Largest number of problems listed in one error.
_MAX_PROBLEMS = 50


class InputError(InvalidSpecError):
    """The request's inputs do not match the model's signature (HTTP 422)."""

    def __init__(self, problems: Sequence[Mapping[str, Any]]) -> None:
        lines = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"The inputs do not match the model's signature: {lines}{more}.")
        self.problems = list(problems[:_MAX_PROBLEMS])


@dataclass
class Prepared:
    """Inputs ready to batch: a 2-D float array (all-float signatures) or typed columns."""

    n: int
    names: list[str]
    matrix: np.ndarray[Any, Any] | None = None
    columns: dict[str, np.ndarray[Any, Any]] | None = None

    def frame(self, index: Any = None) -> Any:
        """The pandas DataFrame the model takes; ``index``: a prebuilt ``pd.Index`` of the
        names (building one from strings costs a tenth of a 1-row predict)."""
        import pandas as pd

        columns = self.names if index is None else index
        if self.matrix is not None:
            return pd.DataFrame(self.matrix, columns=columns, copy=False)
        return pd.DataFrame(self.columns, columns=columns)

    def to_json_ready(self) -> dict[str, Any]:
        """The inputs for the prediction log: ``{"fields": [...], "rows": [[...]]}`` or columns."""
        if self.matrix is not None:
            return {"fields": self.names, "rows": self.matrix}
        return {"columns": {k: v.tolist() for k, v in (self.columns or {}).items()}}


def concat(parts: Sequence[Prepared]) -> Prepared:
    """Several requests' inputs as one batch (same signature)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    n = sum(p.n for p in parts)
    if first.matrix is not None:
        return Prepared(n, first.names, matrix=np.concatenate([p.matrix for p in parts]))
    columns = {
        name: np.concatenate([p.columns[name] for p in parts])  # type: ignore[index]
        for name in first.names
    }
    return Prepared(n, first.names, columns=columns)


def parse_body(body: Any) -> tuple[str, Any, list[str] | None]:
    """Classify a decoded JSON body: ``("records"|"columns"|"rows", data, fields)``."""
    if isinstance(body, list):
        return _list_kind(body, None)
    if not isinstance(body, dict):
        raise InvalidSpecError(
            "The body must be a JSON object or a list of records, e.g. "
            '{"records": [{"f0": 1.5}]}; see docs/serving.md for the accepted shapes.'
        )
    if "dataframe_split" in body:
        split = body["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise InvalidSpecError('"dataframe_split" must be {"columns": [...], "data": [[...]]}.')
        return "rows", split["data"], _fields(split.get("columns"))
    for key in ("records", "dataframe_records", "instances"):
        if key in body:
            return _list_kind(body[key], key)
    if "rows" in body:
        return "rows", body["rows"], _fields(body.get("fields", body.get("columns")))
    for key in ("columns", "inputs"):
        if key in body:
            value = body[key]
            if isinstance(value, dict):
                return "columns", value, None
            if key == "inputs":
                return _list_kind(value, key)
            raise InvalidSpecError('"columns" must map each column to a list of values.')
    raise InvalidSpecError(
        'No inputs in the body: send {"records": [...]}, {"columns": {...}}, '
        '{"fields": [...], "rows": [[...]]} or MLflow\'s dataframe_split/dataframe_records.'
    )


def _fields(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidSpecError('"fields" (or "columns") must be a list of column names.')
    return value


def _list_kind(value: Any, key: str | None) -> tuple[str, Any, list[str] | None]:
    where = f'"{key}"' if key else "The body"
    if not isinstance(value, list):
        raise InvalidSpecError(f"{where} must be a list of records.")
    if value and all(isinstance(r, list) for r in value):
        return "rows", value, None
    return "records", value, None


def _problem(field: str, problem: str, row: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"field": field, "problem": problem}
    if row is not None:
        out["row"] = row
    return out


def _to_columns(
    kind: str, data: Any, fields: list[str] | None, names: list[str], problems: list[dict[str, Any]]
) -> tuple[dict[str, list[Any]], int]:
    """Columns of raw JSON values, reporting missing/unknown columns and ragged rows."""
    columns: dict[str, list[Any]] = {}
    if kind == "columns":
        lengths = {k: len(v) for k, v in data.items() if isinstance(v, list)}
        for k, v in data.items():
            if not isinstance(v, list):
                problems.append(_problem(k, "must be a list of values (one per row)"))
        if len(set(lengths.values())) > 1:
            problems.append(_problem("columns", f"columns differ in length: {lengths}"))
        n = max(lengths.values(), default=0)
        for name in names:
            if name in data:
                columns[name] = data[name] if isinstance(data[name], list) else []
            else:
                problems.append(_problem(name, "missing column"))
        problems.extend(_problem(k, "unknown column") for k in data if k not in names)
        return columns, n
    if kind == "rows":
        order = fields if fields is not None else names
        n = len(data)
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(order):
                got = len(row) if isinstance(row, list) else type(row).__name__
                problems.append(_problem("rows", f"row has {got} values, expected {len(order)}", i))
                if len(problems) >= _MAX_PROBLEMS:
                    break
        if problems:
            return {}, n
        index = {f: j for j, f in enumerate(order)}
        for name in names:
            if name in index:
                j = index[name]
                columns[name] = [row[j] for row in data]
            else:
                problems.append(_problem(name, "missing column"))
        problems.extend(_problem(f, "unknown column") for f in order if f not in names)
        return columns, n
    # records
    n = len(data)
    bad = [i for i, r in enumerate(data) if not isinstance(r, dict)]
    if bad:
        problems.append(_problem("records", "each record must be a JSON object", bad[0]))
        return {}, n
    for name in names:
        col = [r.get(name, _MISSING) for r in data]
        columns[name] = col
    seen: set[str] = set()
    for r in data:
        if len(r) != len(names) or not seen.issuperset(r):
            seen.update(r)
    problems.extend(_problem(k, "unknown column") for k in sorted(seen - set(names)))
    return columns, n


def _check_column(
    name: str, dtype: str, nullable: bool, values: list[Any], problems: list[dict[str, Any]]
) -> np.ndarray[Any, Any] | None:
    types = set(map(type, values))
    if object in types:  # records lacking the key (the _MISSING marker)
        first = next(i for i, v in enumerate(values) if v is _MISSING)
        problems.append(_problem(name, "missing in this record", first))
        return None
    has_none = type(None) in types
    if has_none and not nullable:
        problems.append(
            _problem(name, "null, but the model does not accept nulls", values.index(None))
        )
        return None
    if dtype in _FLOATS:
        allowed: set[type] = {float, int, type(None)}
        np_type: Any = _NUMPY[dtype]
    elif dtype in _INTS:
        allowed = {int}
        np_type = np.float64 if has_none else _NUMPY[dtype]
        allowed.add(type(None))
    elif dtype == "bool":
        allowed, np_type = {bool, type(None)}, object if has_none else np.bool_
    elif dtype in ("string", "large_string", "utf8"):
        allowed, np_type = {str, type(None)}, object
    elif dtype.startswith(("timestamp", "date")):
        allowed, np_type = {str, type(None)}, "datetime64[ns]"
    else:
        allowed, np_type = {float, int, str, bool, type(None)}, object
    wrong = types - allowed
    if wrong:
        i = next(i for i, v in enumerate(values) if type(v) in wrong)
        got = type(values[i]).__name__
        problems.append(_problem(name, f"expected {dtype}, got {got} ({values[i]!r:.40})", i))
        return None
    try:
        return np.asarray(values, dtype=np_type)
    except (ValueError, TypeError, OverflowError) as exc:
        problems.append(_problem(name, f"cannot be read as {dtype}: {exc}"))
        return None


def prepare(body: Any, signature: Signature | None) -> Prepared:
    """Check a decoded body against ``signature`` and convert it for the model."""
    kind, data, fields = parse_body(body)
    if signature is None or signature.is_tensor:
        return _prepare_unsigned(kind, data, fields)
    names = signature.input_names
    fast = _fast_matrix(kind, data, fields, names, signature)
    if fast is not None:
        return Prepared(len(fast), names, matrix=fast)
    problems: list[dict[str, Any]] = []
    raw, n = _to_columns(kind, data, fields, names, problems)
    if n == 0 and not problems:
        raise InputError([_problem("inputs", "no rows to predict")])
    specs = {c.name: c for c in signature.inputs}
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for name, values in raw.items():
        spec = specs[name]
        arr = _check_column(name, spec.dtype, spec.nullable, values, problems)
        if arr is not None:
            arrays[name] = arr
    if problems:
        raise InputError(problems)
    if all(specs[n_].dtype == "double" for n_ in names):
        matrix = np.empty((n, len(names)), dtype=np.float64)
        for j, name in enumerate(names):
            matrix[:, j] = arrays[name]
        return Prepared(n, names, matrix=matrix)
    return Prepared(n, names, columns=arrays)


def _fast_matrix(
    kind: str, data: Any, fields: list[str] | None, names: list[str], signature: Signature
) -> np.ndarray[Any, Any] | None:
    """The common case in one pass: every input a float64 column, every value a number.

    Returns None whenever anything is unusual (a missing or extra key, a null, a string,
    a bool); the column-by-column path then finds and names every problem.
    """
    if not data or not all(c.dtype == "double" for c in signature.inputs):
        return None
    if kind == "records":
        keys = set(names)
        try:
            if not all(r.keys() == keys for r in data):
                return None
            values = [r[name] for r in data for name in names]
        except (AttributeError, KeyError):
            return None
    elif kind == "rows" and (fields is None or fields == names):
        width = len(names)
        if not all(isinstance(r, list) and len(r) == width for r in data):
            return None
        values = [v for r in data for v in r]
    else:
        return None
    if not set(map(type, values)) <= {float, int}:
        return None
    try:
        return np.array(values, dtype=np.float64).reshape(len(data), len(names))
    except OverflowError:  # an integer too big for a float: the slow path reports it
        return None


def _prepare_unsigned(kind: str, data: Any, fields: list[str] | None) -> Prepared:
    """No signature (or a tensor one): pass the values through as floats where possible."""
    if kind == "rows":
        try:
            matrix = np.asarray(data, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise InputError([_problem("rows", f"not a numeric matrix: {exc}")]) from exc
        if matrix.ndim != 2:
            raise InputError([_problem("rows", "must be a list of rows")])
        names = fields or [f"f{j}" for j in range(matrix.shape[1])]
        return Prepared(len(matrix), names, matrix=matrix)
    if kind == "records":
        names = sorted({k for r in data if isinstance(r, dict) for k in r})
        columns = {k: np.asarray([r.get(k) for r in data]) for k in names}
        return Prepared(len(data), names, columns=columns)
    columns = {k: np.asarray(v) for k, v in data.items()}
    return Prepared(len(next(iter(columns.values()), [])), list(columns), columns=columns)
