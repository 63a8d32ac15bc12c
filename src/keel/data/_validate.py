"""Data validation: a schema of expectations, inferred from a reference, checked in one pass.

A :class:`Schema` lists table rules (row-count bounds, extra columns) and, per
column, rules on type, nulls, NaN/inf, value range, allowed categories,
uniqueness and distribution (mean, quantiles). :func:`infer_schema` derives one
from a reference table or its :class:`~keel.data._profile.TableProfile`;
:meth:`Schema.to_yaml` writes a commented file a human edits; :func:`validate`
checks new data against it and returns a :class:`ValidationReport` of violations
with their severity and a few example rows; :func:`require_valid` and
:func:`validated_inputs` stop invalid data from reaching a training function.

Validation streams record batches (Parquet is never fully loaded) and evaluates
every rule with pyarrow.compute kernels over whole Arrow arrays. Rules first try
a cheap aggregate (``min_max``, ``null_count``, ``count_distinct``) and compute a
row mask, to find example rows, only when that aggregate shows a violation.
Columns run in parallel threads. For Parquet, integer rules that the row-group
statistics already prove are not decoded, and ``categories`` compares only the
dictionaries of dictionary-encoded pages; for pandas, NumPy columns are used
without copying (NaN still counts as a missing value, as in pandas).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

import numpy as np

from keel.data import _frames
from keel.data._frames import (
    DEFAULT_BATCH_ROWS,
    describe_source,
    iter_batches,
    num_rows,
    read_schema,
)
from keel.data._profile import (
    SAMPLE_ROWS,
    ColumnProfile,
    TableProfile,
    _Progress,
    column_kind,
    profile_table,
)
from keel.exceptions import InvalidSpecError, KeelError

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.table import Table

__all__ = [
    "COLUMN_RULES",
    "DEFAULT_SEVERITY",
    "TABLE_RULES",
    "ColumnSchema",
    "DataValidationError",
    "Schema",
    "ValidationReport",
    "Violation",
    "infer_schema",
    "require_valid",
    "validate",
    "validated_inputs",
]

Severity = Literal["error", "warning"]
SEVERITIES: tuple[str, ...] = ("error", "warning")

#: Rules a column may carry (keys of a column in the YAML, and ``Violation.rule``).
COLUMN_RULES: tuple[str, ...] = (
    "type",
    "nullable",
    "allow_nan",
    "allow_inf",
    "range",
    "categories",
    "unique",
    "mean",
    "quantiles",
)
#: Table-level rules (``missing_column`` is reported per column but configured here).
TABLE_RULES: tuple[str, ...] = ("rows", "extra_columns", "missing_column")

#: Severity of each rule unless the schema overrides it.
DEFAULT_SEVERITY: dict[str, Severity] = {
    "type": "error",
    "nullable": "error",
    "allow_nan": "error",
    "allow_inf": "error",
    "range": "error",
    "categories": "error",
    "unique": "error",
    "mean": "warning",
    "quantiles": "warning",
    "rows": "error",
    "extra_columns": "warning",
    "missing_column": "error",
}

#: Example rows kept per violated rule.
MAX_EXAMPLES = 5
SCHEMA_VERSION = 1

_P = ParamSpec("_P")
_R = TypeVar("_R")


# -- schema -------------------------------------------------------------------------------
@dataclass
class ColumnSchema:
    """Expectations on one column; ``None`` (or the permissive default) disables a rule.

    Attributes:
        name: the column name.
        type: the Arrow type, e.g. ``int64``, ``double``, ``string``, ``timestamp[us]``
            (``large_string``/``string_view``/dictionary-encoded strings count as ``string``).
        nullable: whether nulls are allowed.
        allow_nan: whether NaN is allowed (float columns).
        allow_inf: whether ±inf is allowed (float columns).
        min: smallest allowed finite value (a number, or an ISO string for datetimes).
        max: largest allowed finite value.
        categories: the allowed values of a string or boolean column.
        unique: whether every non-null value must be distinct.
        mean: ``{"expected": m, "std": s, "within": k}``: the observed mean must be
            within ``k`` standard errors (``s / sqrt(n)``) of ``m``.
        quantiles: ``{q: (low, high)}``: the observed ``q`` quantile must lie in the range.
        severity: per-rule overrides of :data:`DEFAULT_SEVERITY`.
    """

    name: str
    type: str | None = None
    nullable: bool = True
    allow_nan: bool = True
    allow_inf: bool = True
    min: float | int | str | None = None
    max: float | int | str | None = None
    categories: list[Any] | None = None
    unique: bool = False
    mean: dict[str, float] | None = None
    quantiles: dict[float, tuple[float, float]] = field(default_factory=dict)
    severity: dict[str, Severity] = field(default_factory=dict)

    def severity_of(self, rule: str) -> Severity:
        """The severity of ``rule`` for this column."""
        return self.severity.get(rule, DEFAULT_SEVERITY[rule])


@dataclass
class Schema:
    """Expectations on a whole table: table rules plus one :class:`ColumnSchema` per column.

    Attributes:
        columns: the expected columns, in order.
        min_rows: the fewest rows allowed (``None``: no bound).
        max_rows: the most rows allowed (``None``: no bound).
        extra_columns: whether columns the schema does not list are allowed.
        severity: overrides of :data:`DEFAULT_SEVERITY` for the table rules.
        source: where the schema was inferred from (a comment in the YAML).
    """

    columns: list[ColumnSchema] = field(default_factory=list)
    min_rows: int | None = None
    max_rows: int | None = None
    extra_columns: bool = False
    severity: dict[str, Severity] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    def column(self, name: str) -> ColumnSchema:
        """The rules of column ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        from keel.exceptions import NotFoundError, did_you_mean

        names = [c.name for c in self.columns]
        raise NotFoundError(
            f"Column '{name}' is not in the schema.{did_you_mean(name, names)}", column=name
        )

    def severity_of(self, rule: str) -> Severity:
        """The severity of table rule ``rule``."""
        return self.severity.get(rule, DEFAULT_SEVERITY[rule])

    def to_yaml(self) -> str:
        """The schema as a commented YAML document (see :meth:`from_yaml`)."""
        return _to_yaml(self)

    @classmethod
    def from_yaml(cls, text: str) -> Schema:
        """Parse a schema written by :meth:`to_yaml` (and possibly edited by hand).

        Raises:
            InvalidSpecError: malformed YAML, an unknown rule or key, or a bad value;
                the message names the line and column and lists the allowed values.
        """
        return _from_yaml(text)


# -- YAML ---------------------------------------------------------------------------------
_HEADER = """\
# keel data schema (version {version}). Edit freely; check data with
#   keel data validate NAME@VERSION --schema this-file.yaml
#
# Table rules:   rows: {{min: N, max: N}}, extra_columns: true|false
# Column rules:  type, nullable, allow_nan, allow_inf, range: {{min, max}},
#                categories: [...], unique, mean: {{expected, std, within}},
#                quantiles: {{q: [low, high]}}
# Severities:    error (the data is invalid) or warning (reported only). Override per
#                rule with `severity: {{rule: warning}}` on a column or on `table`.
# Defaults:      {defaults}
# Remove a rule (or its line) to stop checking it.
"""


def _yaml_module() -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml ships with keel[tables]
        raise InvalidSpecError(
            "Schemas need PyYAML, which is not installed. Run: pip install 'keel[tables]'."
        ) from exc
    return yaml


def _yaml_scalar(value: Any) -> str:
    yaml = _yaml_module()
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    text: str = yaml.safe_dump(
        value, default_flow_style=True, width=10**9, sort_keys=False, allow_unicode=True
    ).strip()
    return text.removesuffix("\n...").strip()


def _to_yaml(schema: Schema) -> str:
    warn = [k for k, v in DEFAULT_SEVERITY.items() if v == "warning"]
    defaults = f"warning for {', '.join(warn)}; error for the rest"
    lines = [_HEADER.format(version=SCHEMA_VERSION, defaults=defaults).rstrip("\n")]
    if schema.source:
        lines.append(f"# Inferred from: {schema.source}")
    lines += [f"version: {SCHEMA_VERSION}", "table:"]
    rows = {k: v for k, v in (("min", schema.min_rows), ("max", schema.max_rows)) if v is not None}
    lines.append(f"  rows: {_yaml_scalar(rows)}")
    lines.append(f"  extra_columns: {_yaml_scalar(schema.extra_columns)}")
    if schema.severity:
        lines.append(f"  severity: {_yaml_scalar(dict(schema.severity))}")
    lines.append("columns:")
    for col in schema.columns:
        lines.append(f"  {_yaml_scalar(col.name)}:")
        if col.type is not None:
            lines.append(f"    type: {_yaml_scalar(col.type)}")
        lines.append(f"    nullable: {_yaml_scalar(col.nullable)}")
        if not col.allow_nan:
            lines.append("    allow_nan: false")
        if not col.allow_inf:
            lines.append("    allow_inf: false")
        bounds = {k: v for k, v in (("min", col.min), ("max", col.max)) if v is not None}
        if bounds:
            lines.append(f"    range: {_yaml_scalar(bounds)}")
        if col.categories is not None:
            lines.append(f"    categories: {_yaml_scalar(list(col.categories))}")
        if col.unique:
            lines.append("    unique: true")
        if col.mean is not None:
            lines.append(
                f"    mean: {_yaml_scalar(dict(col.mean))}"
                "  # |mean - expected| <= within * std / sqrt(rows)"
            )
        if col.quantiles:
            lines.append("    quantiles:")
            for q, (lo, hi) in sorted(col.quantiles.items()):
                lines.append(f"      {q}: [{_yaml_scalar(lo)}, {_yaml_scalar(hi)}]")
        if col.severity:
            lines.append(f"    severity: {_yaml_scalar(dict(col.severity))}")
    return "\n".join(lines) + "\n"


class _Marked(dict[Any, Any]):
    """A YAML mapping that remembers where it and each of its keys were written."""

    where: str = ""
    keys_at: dict[Any, str]


def _loader() -> Any:
    yaml = _yaml_module()

    class Loader(yaml.SafeLoader):  # type: ignore[misc, name-defined]
        pass

    def construct(loader: Any, node: Any) -> _Marked:
        out = _Marked()
        out.where = _mark(node.start_mark)
        out.keys_at = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise InvalidSpecError(
                    f"Duplicate key {key!r} at {_mark(key_node.start_mark)} of the schema YAML."
                )
            out[key] = loader.construct_object(value_node, deep=True)
            out.keys_at[key] = _mark(key_node.start_mark)
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct)
    return Loader


def _mark(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _at(m: Any, key: Any) -> str:
    if isinstance(m, _Marked):
        return m.keys_at.get(key, m.where)
    return "an unknown position"


def _fail(message: str, where: str) -> InvalidSpecError:
    return InvalidSpecError(f"Schema YAML, {where}: {message}", where=where)


def _mapping(value: Any, what: str, where: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(f"{what} must be a mapping, got {type(value).__name__} {value!r}.", where)
    return value


def _check_keys(m: Mapping[Any, Any], allowed: tuple[str, ...], what: str) -> None:
    from keel.exceptions import did_you_mean

    for key in m:
        if key not in allowed:
            raise _fail(
                f"unknown {what} {key!r}.{did_you_mean(str(key), allowed)} "
                f"Allowed: {', '.join(allowed)}.",
                _at(m, key),
            )


def _bool(m: Mapping[Any, Any], key: str, default: bool) -> bool:
    value = m.get(key, default)
    if not isinstance(value, bool):
        raise _fail(f"'{key}' must be true or false, got {value!r}.", _at(m, key))
    return value


def _number(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{what} must be a number, got {value!r}.", where)
    return float(value)


def _severities(m: Mapping[Any, Any], allowed: tuple[str, ...]) -> dict[str, Severity]:
    raw = _mapping(m.get("severity"), "'severity'", _at(m, "severity"))
    _check_keys(raw, allowed, "rule in 'severity'")
    out: dict[str, Severity] = {}
    for rule, sev in raw.items():
        if sev not in SEVERITIES:
            raise _fail(
                f"severity of '{rule}' must be one of {', '.join(SEVERITIES)}, got {sev!r}.",
                _at(raw, rule),
            )
        out[str(rule)] = cast(Severity, sev)
    return out


def _from_yaml(text: str) -> Schema:
    yaml = _yaml_module()
    try:
        doc = yaml.load(text, Loader=_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = _mark(mark) if mark is not None else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc)
        raise _fail(f"not valid YAML: {problem}.", where) from exc
    top = _mapping(doc, "The document", "line 1, column 1")
    _check_keys(top, ("version", "table", "columns"), "top-level key")
    version = top.get("version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise _fail(
            f"schema version {version!r} is not supported; this keel reads version "
            f"{SCHEMA_VERSION}.",
            _at(top, "version"),
        )
    table = _mapping(top.get("table"), "'table'", _at(top, "table"))
    _check_keys(table, ("rows", "extra_columns", "severity"), "table rule")
    rows = _mapping(table.get("rows"), "'rows'", _at(table, "rows"))
    _check_keys(rows, ("min", "max"), "key of 'rows'")
    bounds: dict[str, int | None] = {}
    for key in ("min", "max"):
        value = rows.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _fail(f"rows.{key} must be a whole number, got {value!r}.", _at(rows, key))
        if value is not None and value < 0:
            raise _fail(f"rows.{key} must be >= 0, got {value}.", _at(rows, key))
        bounds[key] = value
    columns_raw = _mapping(top.get("columns"), "'columns'", _at(top, "columns"))
    columns = [
        _column_from_yaml(str(name), spec, columns_raw) for name, spec in columns_raw.items()
    ]
    origin = re.search(r"^# Inferred from: (.+)$", text, flags=re.MULTILINE)
    return Schema(
        source=origin.group(1).strip() if origin else None,
        columns=columns,
        min_rows=bounds["min"],
        max_rows=bounds["max"],
        extra_columns=_bool(table, "extra_columns", False),
        severity=_severities(table, TABLE_RULES),
    )


def _column_from_yaml(name: str, spec: Any, parent: Mapping[Any, Any]) -> ColumnSchema:
    m = _mapping(spec, f"column '{name}'", _at(parent, name))
    _check_keys(m, (*COLUMN_RULES, "severity"), f"rule of column '{name}'")
    type_ = m.get("type")
    if type_ is not None and not isinstance(type_, str):
        raise _fail(f"type of '{name}' must be an Arrow type name, got {type_!r}.", _at(m, "type"))
    rng = _mapping(m.get("range"), f"range of '{name}'", _at(m, "range"))
    _check_keys(rng, ("min", "max"), f"key of the range of '{name}'")
    for key in ("min", "max"):
        value = rng.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float | str)
        ):
            raise _fail(
                f"range.{key} of '{name}' must be a number or an ISO date, got {value!r}.",
                _at(rng, key),
            )
    cats = m.get("categories")
    if cats is not None and not isinstance(cats, list):
        raise _fail(f"categories of '{name}' must be a list, got {cats!r}.", _at(m, "categories"))
    mean: dict[str, float] | None = None
    if m.get("mean") is not None:
        raw = _mapping(m["mean"], f"mean of '{name}'", _at(m, "mean"))
        _check_keys(raw, ("expected", "std", "within"), f"key of the mean of '{name}'")
        for key in ("expected", "std", "within"):
            if key not in raw:
                raise _fail(
                    f"mean of '{name}' needs '{key}' (expected, std, within).", _at(m, "mean")
                )
        mean = {k: _number(raw[k], f"mean.{k} of '{name}'", _at(raw, k)) for k in raw}
    quantiles: dict[float, tuple[float, float]] = {}
    qs = _mapping(m.get("quantiles"), f"quantiles of '{name}'", _at(m, "quantiles"))
    for q, bounds in qs.items():
        where = _at(qs, q)
        qf = _number(q, f"quantile {q!r} of '{name}'", where)
        if not 0.0 <= qf <= 1.0:
            raise _fail(f"quantile {q} of '{name}' must be between 0 and 1.", where)
        if not (isinstance(bounds, list) and len(bounds) == 2):
            raise _fail(f"quantile {q} of '{name}' needs [low, high], got {bounds!r}.", where)
        lo, hi = (_number(b, f"quantile {q} bound of '{name}'", where) for b in bounds)
        if lo > hi:
            raise _fail(f"quantile {q} of '{name}': low {lo} is above high {hi}.", where)
        quantiles[qf] = (lo, hi)
    return ColumnSchema(
        name=name,
        type=type_,
        nullable=_bool(m, "nullable", True),
        allow_nan=_bool(m, "allow_nan", True),
        allow_inf=_bool(m, "allow_inf", True),
        min=rng.get("min"),
        max=rng.get("max"),
        categories=list(cats) if cats is not None else None,
        unique=_bool(m, "unique", False),
        mean=mean,
        quantiles=quantiles,
        severity=_severities(m, COLUMN_RULES),
    )


# -- report -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Violation:
    """One failed rule.

    Attributes:
        column: the column, or ``None`` for a table rule.
        rule: the rule name (one of :data:`COLUMN_RULES` or :data:`TABLE_RULES`).
        severity: ``error`` or ``warning``.
        observed: what the data shows (e.g. the number of out-of-range values).
        expected: what the schema asks for.
        count: how many values break the rule (``None`` for aggregate rules).
        examples: up to five ``{"row": index, "value": value}`` failing rows.
    """

    column: str | None
    rule: str
    severity: Severity
    observed: Any
    expected: Any
    count: int | None = None
    examples: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "observed": _json_safe(self.observed),
            "expected": _json_safe(self.expected),
            "count": self.count,
            "examples": [_json_safe(e) for e in self.examples],
        }


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of :func:`validate`: every violation found, errors first."""

    source: str
    rows: int
    violations: tuple[Violation, ...]

    @property
    def errors(self) -> list[Violation]:
        """Violations with severity ``error``."""
        return [v for v in self.violations if v.severity == "error"]

    @property
    def warnings(self) -> list[Violation]:
        """Violations with severity ``warning``."""
        return [v for v in self.violations if v.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when no rule of severity ``error`` failed."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "source": self.source,
            "rows": self.rows,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "violations": [v.to_dict() for v in self.violations],
        }

    def summary(self) -> str:
        """One line: the verdict and the failed rules."""
        if not self.violations:
            return f"{self.source}: valid ({self.rows} rows, no violations)."
        head = "invalid" if not self.ok else "valid with warnings"
        failed = "; ".join(
            f"{v.column + '.' if v.column else ''}{v.rule} ({v.severity})" for v in self.violations
        )
        counts = f"{len(self.errors)} errors, {len(self.warnings)} warnings"
        return f"{self.source}: {head} ({counts}): {failed}."

    def __rich__(self) -> Table:
        from rich.table import Table

        table = Table(title=self.summary(), title_justify="left")
        for name in ("severity", "column", "rule", "observed", "expected", "examples"):
            table.add_column(name, overflow="fold")
        for v in self.violations:
            style = "red" if v.severity == "error" else "yellow"
            examples = ", ".join(
                f"row {e['row']}: "
                + (
                    _display(e.get("value"))
                    if isinstance(e.get("value"), float)
                    else repr(e.get("value"))
                )
                for e in v.examples
            )
            table.add_row(
                f"[{style}]{v.severity}[/]",
                v.column or "(table)",
                v.rule,
                _short(v.observed),
                _short(v.expected),
                examples,
            )
        return table


def _short(value: Any) -> str:
    text = _display(_json_safe(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _display(value: Any) -> str:
    """Human-readable: floats to 6 significant digits, mappings as ``key value``."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_display(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_display(v) for v in value) + "]"
    return str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.timedelta | complex):
        return str(value)
    return value


class DataValidationError(KeelError, ValueError):
    """Data broke a schema rule of severity ``error``; ``.report`` has every violation."""

    report: ValidationReport


# -- inference ----------------------------------------------------------------------------
def _norm_type(type_str: str) -> str:
    if type_str.startswith("dictionary<values="):
        type_str = type_str.removeprefix("dictionary<values=").split(",", 1)[0]
    return {
        "large_string": "string",
        "string_view": "string",
        "large_binary": "binary",
        "binary_view": "binary",
        "float": "float32",
        "double": "float64",
        "halffloat": "float16",
    }.get(type_str, type_str)


def infer_schema(
    reference: Any,
    *,
    tolerance: float = 0.05,
    within: float = 4.0,
    max_categories: int = 50,
    rows_tolerance: float | None = None,
) -> Schema:
    """Infer a schema from a reference table or its profile.

    Args:
        reference: a :class:`TableProfile`, or any table :func:`profile_table` accepts.
        tolerance: slack on ranges and quantile bounds, as a fraction of the
            reference's spread (``max - min`` and ``q95 - q05``).
        within: the ``mean`` rule allows this many standard errors of deviation.
        max_categories: string columns with at most this many distinct values (and no
            value outside the top categories) get a ``categories`` rule.
        rows_tolerance: if given, row-count bounds ``rows * (1 ± rows_tolerance)``;
            otherwise only "at least one row" (for a non-empty reference).

    Returns:
        A :class:`Schema` with types, nullability, NaN/inf, ranges, categories,
        uniqueness (integer and string columns whose reference values are all
        distinct, checked exactly when ``reference`` is data) and distribution rules.
    """
    if tolerance < 0 or within <= 0 or max_categories < 0:
        raise InvalidSpecError(
            "infer_schema needs tolerance >= 0, within > 0 and max_categories >= 0; got "
            f"tolerance={tolerance}, within={within}, max_categories={max_categories}."
        )
    if isinstance(reference, TableProfile):
        profile, data = reference, None
    else:
        data = _frames.materialize(reference)
        profile = profile_table(data, top_k=max(max_categories, 1))
    columns = [_infer_column(c, tolerance, within, max_categories) for c in profile.columns]
    if data is not None:
        # Distinct counts of numeric columns are estimates: confirm uniqueness exactly.
        candidates = [c.name for c in columns if c.unique]
        if candidates:
            for col in columns:
                if col.unique:
                    col.unique = False
            check = Schema(
                columns=[ColumnSchema(name=n, unique=True) for n in candidates], extra_columns=True
            )
            failed = {v.column for v in validate(data, check).violations}
            for col in columns:
                if col.name in candidates and col.name not in failed:
                    col.unique = True
    min_rows: int | None = 1 if profile.rows else None
    max_rows: int | None = None
    if rows_tolerance is not None:
        min_rows = max(0, math.floor(profile.rows * (1 - rows_tolerance)))
        max_rows = math.ceil(profile.rows * (1 + rows_tolerance))
    source = describe_source(reference) if data is not None else "a table profile"
    return Schema(columns=columns, min_rows=min_rows, max_rows=max_rows, source=source)


def _round_out(x: float, *, up: bool, digits: int = 4) -> float:
    """``x`` rounded outwards to ``digits`` significant digits: readable YAML bounds
    that still admit every value the exact bound admits (decimal rounding is monotone)."""
    from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

    x = float(x)
    if x == 0 or not math.isfinite(x):
        return x
    step = Decimal(1).scaleb(math.floor(math.log10(abs(x))) - digits + 1)
    return float(Decimal(repr(x)).quantize(step, rounding=ROUND_CEILING if up else ROUND_FLOOR))


def _infer_column(
    c: ColumnProfile, tolerance: float, within: float, max_categories: int
) -> ColumnSchema:
    is_float = _norm_type(c.type).startswith("float")
    col = ColumnSchema(
        name=c.name,
        type=_norm_type(c.type),
        nullable=c.nulls > 0,
        allow_nan=c.nan > 0 or not is_float,
        allow_inf=c.inf > 0 or not is_float,
    )
    if c.kind == "numeric" and c.finite and isinstance(c.min, int | float):
        lo, hi = c.min, c.max
        assert isinstance(hi, int | float)
        slack = tolerance * (hi - lo)
        if isinstance(lo, int) and isinstance(hi, int):
            col.min, col.max = math.floor(lo - slack), math.ceil(hi + slack)
        else:
            col.min, col.max = _round_out(lo - slack, up=False), _round_out(hi + slack, up=True)
        if c.mean is not None and c.std is not None and c.finite > 1:
            col.mean = {"expected": c.mean, "std": c.std, "within": within}
        if c.quantiles:
            spread = (c.quantile(0.95) or 0.0) - (c.quantile(0.05) or 0.0)
            pad = max(tolerance * spread, 1e-12)
            for q in (0.05, 0.5, 0.95):
                v = c.quantile(q)
                if v is not None:
                    col.quantiles[q] = (_round_out(v - pad, up=False), _round_out(v + pad, up=True))
        is_int = c.type.startswith(("int", "uint"))
        if is_int and c.distinct is not None and c.nulls == 0 and c.distinct >= c.count > 1:
            col.unique = True
    elif c.kind == "datetime" and c.count:
        col.min, col.max = c.min, c.max
        # New data usually extends the time range: report it, but do not fail on it.
        col.severity["range"] = "warning"
    elif c.kind == "categorical" and c.count:
        if c.distinct_exact and c.distinct == c.count and c.count > 1:
            col.unique = True
        elif c.other == 0 and c.distinct is not None and c.distinct <= max_categories:
            col.categories = sorted(v for v, _ in c.top)
    return col


# -- validation ---------------------------------------------------------------------------
class _Check:
    """Running state of one column's rules across batches."""

    def __init__(self, spec: ColumnSchema, type_: pa.DataType) -> None:
        self.spec = spec
        self.type = type_
        self.kind = column_kind(type_)
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[dict[str, Any]]] = {}
        self.observed: dict[str, Any] = {}
        self.n = 0
        self.total = 0.0
        self.finite = 0
        self.samples: list[np.ndarray[Any, Any]] = []
        self.unique_chunks: list[pa.Array] = []
        self.unique_offsets: list[int] = []
        self.bounds = self._bounds()
        self.value_set = self._value_set()

    def _bounds(self) -> tuple[Any, Any]:
        import pyarrow as pa

        def scalar(v: Any) -> Any:
            if v is None:
                return None
            target = self.type.value_type if pa.types.is_dictionary(self.type) else self.type
            if self.kind == "datetime":
                if isinstance(v, str):
                    try:
                        v = dt.datetime.fromisoformat(v)
                    except ValueError as exc:
                        raise InvalidSpecError(
                            f"range bound {v!r} of column '{self.spec.name}' is not an ISO date "
                            "or datetime (e.g. 2024-01-31 or 2024-01-31T12:00:00).",
                            column=self.spec.name,
                        ) from exc
                    if pa.types.is_date(target):
                        v = v.date()
                    elif getattr(target, "tz", None) and v.tzinfo is None:
                        v = v.replace(tzinfo=dt.UTC)
                return pa.scalar(v, target)
            if self.kind == "numeric":
                if isinstance(v, str):
                    raise InvalidSpecError(
                        f"range bound {v!r} of numeric column '{self.spec.name}' must be a number.",
                        column=self.spec.name,
                    )
                return pa.scalar(float(v), pa.float64()) if isinstance(v, float) else v
            return v

        if self.kind not in ("numeric", "datetime"):
            return None, None
        return scalar(self.spec.min), scalar(self.spec.max)

    def _value_set(self) -> pa.Array | None:
        import pyarrow as pa

        cats = self.spec.categories
        if cats is None or self.kind not in ("categorical", "boolean", "numeric"):
            return None
        try:
            if self.kind == "categorical":
                return pa.array([str(c) for c in cats], pa.string())
            if self.kind == "boolean":
                return pa.array(cats, pa.bool_())
            return pa.array(cats, self.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise InvalidSpecError(
                f"categories of column '{self.spec.name}' do not match its type {self.type}: "
                f"{exc}.",
                column=self.spec.name,
            ) from exc

    def fail(
        self, rule: str, count: int, arr: pa.Array, mask: pa.Array | None, offset: int
    ) -> None:
        """Record ``count`` failing values; fetch examples only while fewer than five."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self.counts[rule] = self.counts.get(rule, 0) + count
        got = self.examples.setdefault(rule, [])
        if len(got) >= MAX_EXAMPLES or mask is None:
            return
        idx = pc.indices_nonzero(mask.fill_null(False)).slice(0, MAX_EXAMPLES - len(got))
        values = arr.take(idx)
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        for i, value in zip(idx.to_pylist(), values.to_pylist(), strict=True):
            got.append({"row": offset + i, "value": value})

    def run(self, arr: pa.Array, offset: int, want_sample: np.ndarray[Any, Any] | None) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        spec = self.spec
        if pa.types.is_dictionary(arr.type):
            if self.value_set is not None:
                self._categories_dictionary(arr, offset)
            if spec.unique or self.bounds != (None, None):
                arr = arr.dictionary_decode()  # these rules compare values
        elif self.value_set is not None and not self._only_allowed(arr):
            valid_in = pc.is_in(arr, value_set=self.value_set)
            mask = pc.and_(pc.invert(valid_in), pc.is_valid(arr))
            n_bad = pc.sum(mask).as_py() or 0
            if n_bad:
                self.fail("categories", n_bad, arr, mask, offset)
        if not spec.nullable and arr.null_count:
            self.fail("nullable", arr.null_count, arr, pc.is_null(arr), offset)
        needs_values = (
            self.bounds != (None, None)
            or spec.mean is not None
            or bool(spec.quantiles)
            or (pa.types.is_floating(arr.type) and not (spec.allow_nan and spec.allow_inf))
        )
        if spec.unique:
            self.unique_chunks.append(arr)
            self.unique_offsets.append(offset)
        if not needs_values or len(arr) == arr.null_count:
            return
        if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            self._numeric(arr, offset, want_sample)
        elif self.bounds != (None, None):
            self._range_arrow(arr, offset)

    def _numeric(
        self, arr: pa.Array, offset: int, want_sample: np.ndarray[Any, Any] | None
    ) -> None:
        """Rules on int/float values, on the NumPy view of the Arrow buffer.

        The fast path is two reductions (min, max): NaN propagates through them and
        ±inf shows up as an extreme, so clean data never needs a row mask.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        spec = self.spec
        valid = arr.drop_null() if arr.null_count else arr
        x: np.ndarray[Any, Any] = valid.to_numpy(zero_copy_only=False)
        is_float = x.dtype.kind == "f"
        xmin, xmax = x.min(), x.max()
        finite = x
        if is_float and not (np.isfinite(xmin) and np.isfinite(xmax)):
            ok = np.isfinite(x)
            finite = x[ok]
            if not spec.allow_nan and np.isnan(x).any():
                mask = pc.is_nan(arr)
                self.fail("allow_nan", pc.sum(mask).as_py() or 0, arr, mask, offset)
            if not spec.allow_inf and np.isinf(x).any():
                mask = pc.is_inf(arr)
                self.fail("allow_inf", pc.sum(mask).as_py() or 0, arr, mask, offset)
            if not finite.size:
                return
            xmin, xmax = finite.min(), finite.max()
        lo, hi = self.spec.min, self.spec.max
        below = lo is not None and xmin < lo
        above = hi is not None and xmax > hi
        if below or above:
            mask = None
            if below:
                mask = pc.less(arr, self.bounds[0])
            if above:
                up = pc.greater(arr, self.bounds[1])
                mask = up if mask is None else pc.or_(mask, up)
            assert mask is not None
            if is_float:
                mask = pc.and_(mask, pc.is_finite(arr))
            self.fail("range", pc.sum(mask).as_py() or 0, arr, mask, offset)
        if spec.mean is not None or spec.quantiles:
            self.total += float(finite.sum(dtype=np.float64))
            self.finite += int(finite.size)
            if spec.quantiles:
                if want_sample is None:
                    sample = finite.astype(np.float64)
                else:
                    taken = arr.take(pa.array(want_sample)).drop_null()
                    values = taken.to_numpy(zero_copy_only=False).astype(np.float64)
                    sample = values[np.isfinite(values)]
                if sample.size:
                    self.samples.append(sample)

    def _range_arrow(self, arr: pa.Array, offset: int) -> None:
        """The range rule on other orderable types (dates, timestamps, decimals)."""
        import pyarrow.compute as pc

        lo, hi = self.bounds
        mm = pc.min_max(arr)
        below = lo is not None and mm["min"].is_valid and pc.less(mm["min"], lo).as_py()
        above = hi is not None and mm["max"].is_valid and pc.greater(mm["max"], hi).as_py()
        if below or above:
            mask = None
            if below:
                mask = pc.less(arr, lo)
            if above:
                up = pc.greater(arr, hi)
                mask = up if mask is None else pc.or_(mask, up)
            assert mask is not None
            self.fail("range", pc.sum(mask).as_py() or 0, arr, mask, offset)

    def _only_allowed(self, arr: pa.Array) -> bool:
        """Whether every distinct non-null value of ``arr`` is an allowed category.

        One hash pass (``unique``) is cheaper than ``is_in`` plus a mask and a sum;
        the per-row mask is built only when a bad value is present.
        """
        import pyarrow.compute as pc

        distinct = pc.unique(arr).drop_null()
        return bool(pc.all(pc.is_in(distinct, value_set=self.value_set)).as_py() is not False)

    def _categories_dictionary(self, arr: pa.DictionaryArray, offset: int) -> None:
        """The categories rule on dictionary codes: only the (few) distinct values are hashed."""
        import pyarrow.compute as pc

        dictionary = arr.dictionary
        if dictionary.type != self.value_set.type:  # type: ignore[union-attr]
            dictionary = dictionary.cast(self.value_set.type)  # type: ignore[union-attr]
        bad_codes = pc.indices_nonzero(pc.invert(pc.is_in(dictionary, value_set=self.value_set)))
        if not len(bad_codes):
            return
        mask = pc.is_in(arr.indices, value_set=bad_codes.cast(arr.indices.type))
        n_bad = pc.sum(mask).as_py() or 0
        if n_bad:
            self.fail("categories", n_bad, arr, mask, offset)

    def finish_unique(self) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.unique_chunks:
            return
        column = pa.chunked_array(self.unique_chunks, type=self.unique_chunks[0].type)
        valid = len(column) - column.null_count
        if pa.types.is_integer(column.type):
            extra, repeated = _int_duplicates(column)
            dup_values = pa.array(repeated, column.type)
        else:
            distinct = pc.count_distinct(column).as_py()
            extra = valid - distinct
            if extra:
                counts = pc.value_counts(column)
                dup_values = counts.field(0).filter(pc.greater(counts.field(1), 1))
                dup_values = dup_values.drop_null() if dup_values.null_count else dup_values
        if not extra:
            self.unique_chunks = []
            return
        self.counts["unique"] = extra
        self.observed["unique"] = f"{len(dup_values)} values repeated; {extra} extra rows"
        examples: list[dict[str, Any]] = []
        for chunk, offset in zip(self.unique_chunks, self.unique_offsets, strict=True):
            if len(examples) >= MAX_EXAMPLES:
                break
            mask = pc.is_in(chunk, value_set=dup_values)
            idx = pc.indices_nonzero(mask).slice(0, MAX_EXAMPLES - len(examples))
            for i, value in zip(idx.to_pylist(), chunk.take(idx).to_pylist(), strict=True):
                examples.append({"row": offset + i, "value": value})
        self.examples["unique"] = examples
        self.unique_chunks = []

    def violations(self) -> Iterator[Violation]:
        spec = self.spec
        self.finish_unique()
        expectations: dict[str, Any] = {
            "nullable": "no nulls",
            "allow_nan": "no NaN",
            "allow_inf": "no ±inf",
            "range": {k: v for k, v in (("min", spec.min), ("max", spec.max)) if v is not None},
            "categories": spec.categories,
            "unique": "all values distinct",
        }
        for rule in ("nullable", "allow_nan", "allow_inf", "range", "categories", "unique"):
            count = self.counts.get(rule, 0)
            if count:
                yield Violation(
                    column=spec.name,
                    rule=rule,
                    severity=spec.severity_of(rule),
                    observed=self.observed.get(rule, f"{count} failing values"),
                    expected=expectations[rule],
                    count=count,
                    examples=tuple(self.examples.get(rule, ())),
                )
        if spec.mean is not None and self.finite:
            mean = self.total / self.finite
            expected, std, within = spec.mean["expected"], spec.mean["std"], spec.mean["within"]
            allowed = within * std / math.sqrt(self.finite)
            if abs(mean - expected) > allowed:
                yield Violation(
                    column=spec.name,
                    rule="mean",
                    severity=spec.severity_of("mean"),
                    observed=mean,
                    expected=f"{expected:.6g} ± {allowed:.3g} ({within:g} standard errors)",
                )
        if spec.quantiles and self.samples:
            sample = np.concatenate(self.samples)
            if sample.size:
                qs = sorted(spec.quantiles)
                observed = np.quantile(sample, qs)
                bad = {
                    q: float(v)
                    for q, v in zip(qs, observed, strict=True)
                    if not spec.quantiles[q][0] <= v <= spec.quantiles[q][1]
                }
                if bad:
                    yield Violation(
                        column=spec.name,
                        rule="quantiles",
                        severity=spec.severity_of("quantiles"),
                        observed=bad,
                        expected={q: list(spec.quantiles[q]) for q in bad},
                    )


def _int_duplicates(column: pa.ChunkedArray) -> tuple[int, np.ndarray[Any, Any]]:
    """Extra rows and repeated values of an integer column (counting sort when dense)."""
    x = np.concatenate(
        [c.drop_null().to_numpy(zero_copy_only=False) for c in column.chunks]
    ).astype(np.int64, copy=False)
    if x.size < 2:
        return 0, x[:0]
    lo, hi = int(x.min()), int(x.max())
    if hi - lo < 4 * x.size:  # dense ids: one bincount, no sort
        counts = np.bincount(x - lo, minlength=hi - lo + 1)
        repeated = np.flatnonzero(counts > 1)
        return int(x.size - np.count_nonzero(counts)), repeated[:1000] + lo
    x.sort()
    same = x[1:] == x[:-1]
    return int(same.sum()), np.unique(x[1:][same])[:1000]


def _type_matches(expected: str, actual: pa.DataType) -> bool:
    return _norm_type(expected) == _norm_type(str(actual))


def validate(
    data: Any,
    schema: Schema,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    show_progress: bool = False,
) -> ValidationReport:
    """Check ``data`` against ``schema``.

    Args:
        data: a pandas or polars DataFrame, a pyarrow Table or RecordBatch, a Parquet
            path or a dict of columns. Parquet is streamed ``batch_rows`` at a time.
        schema: the expectations (see :func:`infer_schema` and :meth:`Schema.from_yaml`).
        batch_rows: rows per record batch.
        show_progress: draw a Rich progress bar on stderr.

    Returns:
        A :class:`ValidationReport`; check ``.ok``. Bad data never raises here (use
        :func:`require_valid` for that); unreadable input and schemas that cannot
        apply to the data (e.g. a text range on a numeric column) do.
    """
    source = describe_source(data)
    data = _frames.materialize(data)  # one pandas/polars -> Arrow conversion, not three
    arrow_schema = read_schema(data)
    rows = num_rows(data)
    violations: list[Violation] = []
    present = {f.name: f.type for f in arrow_schema}
    expected = {c.name for c in schema.columns}
    checks: list[_Check] = []
    for spec in schema.columns:
        if spec.name not in present:
            violations.append(
                Violation(
                    column=spec.name,
                    rule="missing_column",
                    severity=schema.severity_of("missing_column"),
                    observed="absent",
                    expected=f"a column of type {spec.type or 'any'}",
                )
            )
            continue
        actual = present[spec.name]
        if spec.type is not None and not _type_matches(spec.type, actual):
            violations.append(
                Violation(
                    column=spec.name,
                    rule="type",
                    severity=spec.severity_of("type"),
                    observed=str(actual),
                    expected=spec.type,
                )
            )
            if column_kind(actual) != _expected_kind(spec.type):
                continue  # value rules would compare across kinds
        checks.append(_Check(spec, actual))
    extra = [name for name in present if name not in expected]
    if extra and not schema.extra_columns:
        violations.append(
            Violation(
                column=None,
                rule="extra_columns",
                severity=schema.severity_of("extra_columns"),
                observed=extra,
                expected="only the schema's columns (set table.extra_columns: true to allow more)",
            )
        )
    if (schema.min_rows is not None and rows < schema.min_rows) or (
        schema.max_rows is not None and rows > schema.max_rows
    ):
        violations.append(
            Violation(
                column=None,
                rule="rows",
                severity=schema.severity_of("rows"),
                observed=rows,
                expected={"min": schema.min_rows, "max": schema.max_rows},
            )
        )
    active = [c for c in checks if _has_value_rules(c.spec)]
    if active and rows:
        with _Progress(show_progress, rows, "validating") as tick:
            _run_checks(data, active, rows, batch_rows, tick)
        for check in active:
            violations.extend(check.violations())
    violations.sort(key=lambda v: (v.severity != "error",))
    return ValidationReport(source=source, rows=rows, violations=tuple(violations))


def _run_checks(
    data: Any, active: list[_Check], rows: int, batch_rows: int, tick: Callable[[int], None]
) -> None:
    """Run the column checks over ``data``, columns in parallel threads.

    Arrow and NumPy kernels release the GIL, so the columns run on all cores. An
    in-memory table is checked column by column (:func:`_run_columns`). A Parquet
    file is streamed row group by row group: integer columns whose footer statistics
    prove every rule are not decoded, and string columns with a ``categories`` rule
    are read dictionary-encoded, so only each page's dictionary is compared with the
    allowed values. Files with row groups over two batches are streamed by batch.
    """
    rate = min(1.0, SAMPLE_ROWS / rows)
    by_name = {c.spec.name: c for c in active}
    if not _frames._is_path(data):
        table = _frames.to_arrow(data).select(list(by_name))
        _run_columns(table, by_name, rate, batch_rows, tick)
        return

    def batches() -> Iterator[tuple[int, pa.RecordBatch]]:
        if _frames.largest_row_group(data) > 2 * batch_rows:
            offset = 0
            for batch in iter_batches(data, batch_rows=batch_rows, columns=list(by_name)):
                yield offset, batch
                offset += batch.num_rows
            return
        dictionary = [
            c.spec.name for c in active if c.kind == "categorical" and c.value_set is not None
        ]
        needed = _columns_to_decode(data, active)
        for start, group in _frames.iter_row_groups(data, needed, read_dictionary=dictionary):
            if not group.num_columns:
                tick(group.num_rows)  # every rule settled by the statistics
                continue
            offset = start
            for batch in group.to_batches(max_chunksize=batch_rows):
                yield offset, batch
                offset += batch.num_rows

    rng = np.random.default_rng(0)
    sampled = rate < 1.0 and any(c.spec.quantiles for c in active)  # only quantiles sample
    with _frames.column_pool() as pool:
        for start, batch in batches():
            sample = None
            if sampled:
                sample = np.flatnonzero(rng.random(batch.num_rows) < rate)
            work = [
                (by_name[n], col) for n, col in zip(batch.schema.names, batch.columns, strict=True)
            ]
            list(pool.map(lambda pair, s=sample, o=start: pair[0].run(pair[1], o, s), work))
            tick(batch.num_rows)
        list(pool.map(_Check.finish_unique, active))


def _run_columns(
    table: pa.Table,
    by_name: dict[str, _Check],
    rate: float,
    batch_rows: int,
    tick: Callable[[int], None],
) -> None:
    """In-memory data: one task per column over its chunks (no batch-wide barrier, no
    re-chunking), run on all cores; progress advances as columns finish."""
    from concurrent.futures import as_completed

    def check(name: str) -> None:
        run = by_name[name].run
        sampled = rate < 1.0 and bool(by_name[name].spec.quantiles)
        rng = np.random.default_rng(0)
        offset = 0
        for chunk in table.column(name).chunks:
            for start in range(0, len(chunk), batch_rows):
                piece = chunk.slice(start, batch_rows)
                sample = None
                if sampled:
                    sample = np.flatnonzero(rng.random(len(piece)) < rate)
                run(piece, offset, sample)
                offset += len(piece)
        by_name[name].finish_unique()  # here, on a worker thread, not serially afterwards

    # Strings first: they cost most, so the cheap columns fill in the gaps at the end.
    order = sorted(by_name, key=lambda n: by_name[n].kind != "categorical")
    done = 0
    with _frames.column_pool() as pool:
        for i, future in enumerate(as_completed([pool.submit(check, n) for n in order]), 1):
            future.result()
            share = table.num_rows * i // len(order)
            tick(share - done)
            done = share


def _columns_to_decode(path: Any, active: list[_Check]) -> Callable[[int], list[str]]:
    """For row group ``i``, the checked columns its footer statistics do not settle."""
    meta = _frames._open_parquet(path).metadata
    leaf = {meta.schema.column(j).path: j for j in range(meta.num_columns)}

    def needed(i: int) -> list[str]:
        group = meta.row_group(i)
        return [
            c.spec.name
            for c in active
            if c.spec.name not in leaf
            or not _settled_by_statistics(c, group.column(leaf[c.spec.name]), group.num_rows)
        ]

    return needed


def _settled_by_statistics(check: _Check, chunk: Any, rows: int) -> bool:
    """Whether a column chunk's statistics prove its nullable and range rules.

    Only signed integer columns whose only rules are ``nullable`` and ``range``
    qualify: their min/max are exact (float statistics leave NaN out, so floats are
    always decoded). Missing statistics mean the chunk is decoded and checked.
    """
    import pyarrow as pa

    spec = check.spec
    if (
        not pa.types.is_signed_integer(check.type)
        or spec.unique
        or spec.categories is not None
        or spec.mean is not None
        or spec.quantiles
        or not chunk.is_stats_set
    ):
        return False
    stats = chunk.statistics
    if stats is None or stats.physical_type not in ("INT32", "INT64") or not stats.has_null_count:
        return False
    nulls = stats.null_count
    if nulls is None or (nulls and not spec.nullable):
        return False
    if rows - nulls == 0 or (spec.min is None and spec.max is None):
        return True
    if not stats.has_min_max:
        return False
    lo, hi = stats.min, stats.max
    if not isinstance(lo, int) or not isinstance(hi, int):
        return False
    return (spec.min is None or spec.min <= lo) and (spec.max is None or hi <= spec.max)  # type: ignore[operator]


def _expected_kind(type_str: str) -> str:
    import pyarrow as pa

    norm = _norm_type(type_str)
    if norm == "string":
        return "categorical"
    if norm == "bool":
        return "boolean"
    if norm.startswith(("int", "uint", "float", "decimal")):
        return "numeric"
    if norm.startswith(("timestamp", "date")):
        return "datetime"
    return column_kind(pa.null())


def _has_value_rules(spec: ColumnSchema) -> bool:
    return (
        not spec.nullable
        or not spec.allow_nan
        or not spec.allow_inf
        or spec.min is not None
        or spec.max is not None
        or spec.categories is not None
        or spec.unique
        or spec.mean is not None
        or bool(spec.quantiles)
    )


# -- gates --------------------------------------------------------------------------------
def require_valid(data: Any, schema: Schema, **kwargs: Any) -> ValidationReport:
    """Validate ``data`` and raise :class:`DataValidationError` if any error-rule failed.

    Returns the report (which may hold warnings) when the data is valid.
    """
    report = validate(data, schema, **kwargs)
    if not report.ok:
        raise DataValidationError(
            report.summary() + " Fix the data, or edit the schema if the rule is wrong.",
            report=report,
        )
    return report


def validated_inputs(**schemas: Schema) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a function so that the named arguments are validated before it runs.

    Example::

        @validated_inputs(train=schema)
        def fit(train: pd.DataFrame, epochs: int = 3) -> Model: ...

    Raises:
        InvalidSpecError: a named argument is not a parameter of the function.
        DataValidationError: (at call time) an argument broke an error-rule; the
            function is not called.
    """

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        signature = inspect.signature(fn)
        unknown = [name for name in schemas if name not in signature.parameters]
        if unknown:
            raise InvalidSpecError(
                f"validated_inputs names {', '.join(map(repr, unknown))}, which "
                f"{fn.__qualname__} does not take; its parameters: "
                f"{', '.join(signature.parameters)}.",
            )

        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            for name, schema in schemas.items():
                require_valid(bound.arguments[name], schema)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
