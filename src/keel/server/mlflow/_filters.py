"""MLflow search filters: run filters become keel filters, other filters are evaluated here.

Run searches go to keel's store: keel's grammar (docs/search.md) is a superset of
MLflow's, so only the names that mean something else in keel are rewritten
(``tags.mlflow.runName`` is keel's run name ...). Experiments, logged models,
registered models and model versions are few, so their filters (MLflow's
``a op v AND ...`` grammar) are evaluated in Python over each candidate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from keel.server.mlflow._errors import MlflowError

__all__ = ["Condition", "matches", "parse", "run_filter", "run_order", "sort"]

T = TypeVar("T")

_STR = r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\""
_KEY = r"`(?:[^`]|``)*`|\"(?:[^\"\\]|\\.|\"\")*\"|[A-Za-z0-9_\-./:]+"
_SCAN = re.compile(rf"(?P<str>{_STR})|(?P<ident>(?P<prefix>[A-Za-z_]+)\.(?P<key>{_KEY}))")

_ATTR_PREFIXES = {"attributes", "attribute", "attr", "a", "run"}
_TAG_PREFIXES = {"tags", "tag", "t"}
#: MLflow run tags that keel stores as run attributes.
_TAG_AS_ATTRIBUTE = {
    "mlflow.runName": "attributes.run_name",
    "mlflow.user": "attributes.user",
    "mlflow.parentRunId": "attributes.parent_run_id",
}
#: MLflow run attributes under another name in keel.
_ATTRIBUTE_NAMES = {
    "user_id": "attributes.user",
    "created": "attributes.start_time",
    "run_uuid": "attributes.run_id",
}


def _unquote_key(key: str) -> str:
    if key.startswith("`"):
        return key[1:-1].replace("``", "`")
    if key.startswith('"'):
        return re.sub(r'\\(.)|""', lambda m: m.group(1) or '"', key[1:-1])
    return key


def _rewrite(match: re.Match[str]) -> str:
    if match.group("str") is not None:
        return match.group(0)
    prefix, key = match.group("prefix").lower(), _unquote_key(match.group("key"))
    if prefix in _TAG_PREFIXES and key in _TAG_AS_ATTRIBUTE:
        return _TAG_AS_ATTRIBUTE[key]
    if prefix in _ATTR_PREFIXES:
        if key.lower() == "artifact_uri":
            raise MlflowError("keel cannot search runs by attributes.artifact_uri.")
        if key.lower() in _ATTRIBUTE_NAMES:
            return _ATTRIBUTE_NAMES[key.lower()]
    return match.group(0)


def run_filter(text: str) -> str | None:
    """An MLflow run filter rewritten for keel's store (``None`` when empty)."""
    if not text.strip():
        return None
    return _SCAN.sub(_rewrite, text)


def run_order(items: Sequence[str]) -> list[str]:
    """MLflow ``order_by`` clauses of a run search, rewritten for keel's store."""
    return [_SCAN.sub(_rewrite, item) for item in items if item.strip()]


# -- entity filters ---------------------------------------------------------------------------
_TOKEN = re.compile(
    rf"""\s*(?:
    (?P<str>{_STR})
    |(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<op><=|>=|!=|<>|==|=|<|>)
    |(?P<punct>[(),])
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:{_KEY}))?)
    )""",
    re.X,
)
_KEYWORDS = {"and", "in", "not", "like", "ilike", "is", "null"}


@dataclass(frozen=True)
class Condition:
    """One ``kind.key op value`` comparison; ``kind`` is attributes, tags, params or metrics."""

    kind: str
    key: str
    op: str
    value: Any


def _unquote_str(text: str) -> str:
    quote = text[0]
    return re.sub(rf"\\(.)|{quote}{quote}", lambda m: m.group(1) or quote, text[1:-1])


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise MlflowError(f"Invalid filter {text!r}: unexpected text at position {pos}.")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "ident" and value.lower() in _KEYWORDS:
            kind, value = "kw", value.lower()
        out.append((kind, value))
        pos = m.end()
    return out


def _ident(text: str) -> tuple[str, str]:
    if "." not in text:
        return "attributes", text.lower()
    prefix, key = text.split(".", 1)
    prefix = prefix.lower()
    key = _unquote_key(key)
    if prefix in _ATTR_PREFIXES:
        return "attributes", key.lower()
    for kind in ("tags", "params", "metrics"):
        if prefix in (kind, kind[:-1]):
            return kind, key
    raise MlflowError(f"Invalid filter: unknown prefix '{prefix}' in '{text}'.")


def _value(token: tuple[str, str]) -> Any:
    kind, text = token
    if kind == "str":
        return _unquote_str(text)
    if kind == "num":
        return float(text)
    raise MlflowError(f"Invalid filter: expected a value, found {text!r}.")


def parse(text: str) -> list[Condition]:
    """Parse MLflow's entity filter grammar: comparisons joined by AND."""
    tokens = _tokens(text)
    conditions: list[Condition] = []
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(tokens):
            raise MlflowError(f"Invalid filter {text!r}: it ends too early.")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        kind, ident = take()
        if kind != "ident":
            raise MlflowError(f"Invalid filter {text!r}: expected a name, found {ident!r}.")
        entity, key = _ident(ident)
        op_kind, op = take()
        if op_kind == "kw" and op == "not":
            _, op2 = take()
            op = f"not {op2}"
        if op_kind == "kw" and op == "is":
            words = [take()[1]]
            if words[0] == "not":
                words.append(take()[1])
            if words[-1] != "null":
                raise MlflowError(f"Invalid filter {text!r}: expected IS [NOT] NULL.")
            op = "is not null" if len(words) == 2 else "is null"
            value: Any = None
        elif op in ("in", "not in"):
            if take()[1] != "(":
                raise MlflowError(f"Invalid filter {text!r}: expected '(' after {op.upper()}.")
            values = []
            while True:
                values.append(_value(take()))
                sep = take()[1]
                if sep == ")":
                    break
                if sep != ",":
                    raise MlflowError(f"Invalid filter {text!r}: expected ',' or ')'.")
            value = tuple(values)
        elif op_kind == "op" or op in ("like", "ilike", "not like", "not ilike"):
            value = _value(take())
        else:
            raise MlflowError(f"Invalid filter {text!r}: expected an operator, found {op!r}.")
        conditions.append(Condition(entity, key, {"==": "=", "<>": "!="}.get(op, op), value))
        if i < len(tokens):
            if tokens[i] != ("kw", "and"):
                raise MlflowError(f"Invalid filter {text!r}: expected AND, found {tokens[i][1]!r}.")
            i += 1
    return conditions


def _like(pattern: str, value: str, flags: int) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, flags | re.S) is not None


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "is null":
        return actual is None
    if op == "is not null":
        return actual is not None
    if actual is None:
        return False
    if op in ("like", "ilike", "not like", "not ilike"):
        hit = _like(str(expected), str(actual), re.I if "ilike" in op else 0)
        return not hit if op.startswith("not") else hit
    if op in ("in", "not in"):
        hit = any(_compare(actual, "=", v) for v in expected)
        return not hit if op == "not in" else hit
    if isinstance(expected, float):
        try:
            actual = float(actual)
        except (TypeError, ValueError):
            return False
        if math.isnan(actual):
            return False
    else:
        actual = str(actual)
    if op == "=":
        return bool(actual == expected)
    if op == "!=":
        return bool(actual != expected)
    try:
        result: bool = {
            "<": actual < expected,
            "<=": actual <= expected,
            ">": actual > expected,
            ">=": actual >= expected,
        }[op]
    except TypeError:
        return False
    return result


_NEGATED = ("!=", "not in", "not like", "not ilike")


def _holds(condition: Condition, actual: Any) -> bool:
    if actual is None and condition.kind == "tags" and condition.op in _NEGATED:
        # As MLflow's registry: a missing tag is "not 'x'" (its client filters out
        # prompts with tags.`mlflow.prompt.is_prompt` != 'true').
        return True
    return _compare(actual, condition.op, condition.value)


def matches(conditions: Sequence[Condition], lookup: Callable[[str, str], Any]) -> bool:
    """True when every condition holds; ``lookup(kind, key)`` gives the entity's value."""
    return all(_holds(c, lookup(c.kind, c.key)) for c in conditions)


def sort(items: list[T], order_by: Sequence[str], lookup: Callable[[T, str, str], Any]) -> list[T]:
    """Sort by MLflow ``order_by`` clauses (``"name ASC"``); missing values sort last."""
    out = list(items)
    for clause in reversed([c for c in order_by if c.strip()]):
        parts = clause.strip().rsplit(None, 1)
        desc = len(parts) == 2 and parts[1].lower() == "desc"
        name = parts[0] if len(parts) == 2 and parts[1].lower() in ("asc", "desc") else clause
        kind, key = _ident(name.strip())
        present = [x for x in out if lookup(x, kind, key) is not None]
        missing = [x for x in out if lookup(x, kind, key) is None]
        present.sort(key=lambda x: lookup(x, kind, key), reverse=desc)
        out = present + missing
    return out
