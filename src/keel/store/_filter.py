"""Parser for keel's run-search filter and order-by grammar.

The grammar (keywords, prefixes and attribute names are case-insensitive)::

    filter     := or_expr EOF                 (empty string => no filter)
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" or_expr ")" | predicate
    predicate  := ident cmp_op value
                | ident "is" ["not"] "null"
                | ident ["not"] "in" "(" value ("," value)* [","] ")"
                | ident ["not"] ("like" | "ilike") string
    ident      := prefix "." name | name      (a bare name is an attribute)
    cmp_op     := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="

The parser also checks types: metrics compare with numbers, params and tags
with strings, attributes with the type of the column. User documentation lives
in ``docs/search.md``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, TypeAlias

from keel.exceptions import InvalidSpecError

__all__ = [
    "ATTRIBUTES",
    "ENTITY_PREFIXES",
    "MAX_NESTING",
    "NUMERIC_ATTRIBUTES",
    "RUN_STATUSES",
    "And",
    "Compare",
    "Entity",
    "FilterSyntaxError",
    "InList",
    "IsNull",
    "Like",
    "Node",
    "Not",
    "Or",
    "OrderBy",
    "OrderBySyntaxError",
    "Value",
    "parse_filter",
    "parse_order_by",
]

Entity: TypeAlias = Literal["metric", "param", "tag", "attribute"]
Value: TypeAlias = str | float | int

#: Attribute names a filter may use, in the order error messages list them.
ATTRIBUTES: Final[tuple[str, ...]] = (
    "run_id",
    "run_name",
    "status",
    "start_time",
    "end_time",
    "experiment_id",
    "user",
    "parent_run_id",
    "description",
    "lifecycle_stage",
)
#: Attributes compared with numbers (start/end times are ms since the epoch).
NUMERIC_ATTRIBUTES: Final[frozenset[str]] = frozenset({"start_time", "end_time", "experiment_id"})
#: Valid values of the ``status`` attribute (the parser upper-cases input).
RUN_STATUSES: Final[tuple[str, ...]] = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")

#: Deepest nesting of ``not`` and parentheses a filter may use.
MAX_NESTING: Final = 100

_ATTRIBUTE_ALIASES: Final[dict[str, str]] = {"name": "run_name"}
ENTITY_PREFIXES: Final[dict[str, Entity]] = {
    "metrics": "metric",
    "metric": "metric",
    "m": "metric",
    "params": "param",
    "param": "param",
    "p": "param",
    "tags": "tag",
    "tag": "tag",
    "t": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "a": "attribute",
    "run": "attribute",
}
_PLURAL: Final[dict[Entity, str]] = {
    "metric": "metrics",
    "param": "params",
    "tag": "tags",
    "attribute": "attributes",
}
_OPS: Final[dict[str, str]] = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
_KEYWORDS: Final[frozenset[str]] = frozenset(
    {"and", "or", "not", "in", "is", "null", "like", "ilike"}
)
_SPECIAL_FLOATS: Final[dict[str, float]] = {
    "nan": math.nan,
    "inf": math.inf,
    "infinity": math.inf,
}


# --------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Compare:
    """``entity.key op value``; ``op`` is one of ``= != < <= > >=``."""

    entity: Entity
    key: str
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class InList:
    """``entity.key [not] in (v1, v2, ...)``."""

    entity: Entity
    key: str
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class Like:
    """``entity.key [not] like|ilike 'pattern'`` (SQL ``%`` and ``_`` wildcards)."""

    entity: Entity
    key: str
    pattern: str
    case_insensitive: bool
    negated: bool


@dataclass(frozen=True, slots=True)
class IsNull:
    """``entity.key is null`` (``negated=True`` for ``is not null``)."""

    entity: Entity
    key: str
    negated: bool


@dataclass(frozen=True, slots=True)
class And:
    """Conjunction of two or more nodes (never directly nests another ``And``)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Disjunction of two or more nodes (never directly nests another ``Or``)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """Negation of a node."""

    item: Node


Node: TypeAlias = Compare | InList | Like | IsNull | And | Or | Not


@dataclass(frozen=True, slots=True)
class OrderBy:
    """One ``order_by`` column."""

    entity: Entity
    key: str
    descending: bool


# ------------------------------------------------------------------ errors


class FilterSyntaxError(InvalidSpecError):
    """A search filter does not parse or does not type-check.

    ``str(err)`` reads ``Invalid filter at position 14: <message>``, followed by
    the filter and a caret under the offending character.

    Attributes:
        detail: The short message given to the constructor.
        message: The full rendered message (same as ``str(err)``).
        text: The filter text.
        position: 0-based character offset of the error in ``text``.
        expected: What the parser expected at ``position``.
    """

    subject: ClassVar[str] = "filter"

    def __init__(self, message: str, *, text: str, position: int, expected: str) -> None:
        self.detail = message
        self.text = text
        self.position = position
        self.expected = expected
        self.message = (
            f"Invalid {self.subject} at position {position}: {message}\n{_excerpt(text, position)}"
        )
        super().__init__(self.message, text=text, position=position, expected=expected)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_error,
            (type(self), self.detail, self.text, self.position, self.expected),
            dict(self.__dict__),
        )


class OrderBySyntaxError(FilterSyntaxError):
    """An ``order_by`` item does not parse; ``text`` is that item."""

    subject: ClassVar[str] = "order_by"


def _rebuild_error(
    cls: type[FilterSyntaxError], message: str, text: str, position: int, expected: str
) -> FilterSyntaxError:
    return cls(message, text=text, position=position, expected=expected)


def _excerpt(text: str, position: int, width: int = 100) -> str:
    """Return the text (windowed if long) and a caret line under ``position``."""
    flat = re.sub(r"\s", " ", text)  # keep the caret aligned under tabs/newlines
    start, end, caret = 0, len(flat), position
    if len(flat) > width:
        start = max(0, min(position - width // 2, len(flat) - width))
        end = start + width
    shown = flat[start:end]
    if start > 0:
        shown = "..." + shown
        caret = position - start + 3
    if end < len(flat):
        shown += "..."
    return f"  {shown}\n  {' ' * caret}^"


# ------------------------------------------------------------------- lexer

_WORD_CHARS = r"A-Za-z0-9_\-./:"
_WORD = re.compile(rf"[A-Za-z_][{_WORD_CHARS}]*")
_NUMBER = re.compile(
    rf"[+-](?i:infinity|inf|nan)(?![{_WORD_CHARS}])"
    r"|[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
)
_AFTER_NUMBER = re.compile(rf"[{_WORD_CHARS}+]")
_OP = re.compile(r"==|!=|<>|<=|>=|=|<|>")
_JUNK = re.compile(r"""[^\s(),'"`=!<>]+|.""", re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # word number string dquoted bquoted op ( ) , eof junk
    text: str  # the source text of the token
    pos: int
    end: int
    value: Value = ""


class _Parser:
    """Recursive-descent parser over a lazily lexed token stream."""

    def __init__(self, text: str, error: type[FilterSyntaxError], eof: str) -> None:
        self.text = text
        self.error = error
        self.eof = eof  # how "end of input" is named in messages
        self.pos = 0
        self.depth = 0  # current nesting of 'not' and '('
        self.tok = self._scan()

    # -- lexing ------------------------------------------------------------

    def _scan(self) -> _Token:
        text = self.text
        i = self.pos
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return _Token("eof", "", len(text), len(text))
        c = text[i]
        tok: _Token
        if c in "(),":
            tok = _Token(c, c, i, i + 1)
        elif c in "'\"`":
            tok = self._scan_quoted(i)
        elif (m := _OP.match(text, i)) is not None:
            tok = _Token("op", m.group(), i, m.end())
        elif (m := _NUMBER.match(text, i)) is not None:
            if _AFTER_NUMBER.match(text, m.end()):
                m = _JUNK.match(text, i)
                assert m is not None
                tok = _Token("junk", m.group(), i, m.end())
            else:
                tok = _Token("number", m.group(), i, m.end())
        elif (m := _WORD.match(text, i)) is not None:
            tok = _Token("word", m.group(), i, m.end())
        else:
            m = _JUNK.match(text, i)
            assert m is not None
            tok = _Token("junk", m.group(), i, m.end())
        self.pos = tok.end
        return tok

    def _scan_quoted(self, start: int) -> _Token:
        text, quote = self.text, self.text[start]
        kind = {"'": "string", '"': "dquoted", "`": "bquoted"}[quote]
        chars: list[str] = []
        i = start + 1
        while i < len(text):
            c = text[i]
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if c == "\\" and quote != "`" and nxt in (quote, "\\"):
                chars.append(nxt)
                i += 2
            elif c == quote and nxt == quote:
                chars.append(quote)
                i += 2
            elif c == quote:
                return _Token(kind, text[start : i + 1], start, i + 1, "".join(chars))
            else:
                chars.append(c)
                i += 1
        what = "name" if quote == "`" else "string"
        raise self._error(
            start,
            f"a closing {quote}",
            message=f"unterminated {what}: expected a closing {quote} before {self.eof}",
        )

    # -- helpers -----------------------------------------------------------

    def _advance(self) -> _Token:
        tok = self.tok
        self.tok = self._scan()
        return tok

    def _is_kw(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() in words

    def _accept_kw(self, word: str) -> _Token | None:
        return self._advance() if self._is_kw(word) else None

    def _found(self, tok: _Token) -> str:
        if tok.kind == "eof":
            return self.eof
        text = tok.text if len(tok.text) <= 40 else tok.text[:37] + "..."
        if tok.kind in ("number", "string", "dquoted", "bquoted"):
            return text
        return f"'{text}'"

    def _error(
        self,
        position: int,
        expected: str,
        found: _Token | None = None,
        *,
        hint: str = "",
        message: str | None = None,
    ) -> FilterSyntaxError:
        if message is None:
            message = f"expected {expected}, found {self._found(found or self.tok)}"
        return self.error(message + hint, text=self.text, position=position, expected=expected)

    # -- grammar -----------------------------------------------------------

    def parse_filter(self) -> Node:
        node = self._or_expr()
        if self.tok.kind != "eof":
            hint = " (no matching '(')" if self.tok.kind == ")" else ""
            raise self._error(self.tok.pos, f"'and', 'or' or {self.eof}", hint=hint)
        return node

    def _or_expr(self) -> Node:
        items = [self._and_expr()]
        while self._accept_kw("or"):
            items.append(self._and_expr())
        return _combine(Or, items)

    def _and_expr(self) -> Node:
        items = [self._not_expr()]
        while self._accept_kw("and"):
            items.append(self._not_expr())
        return _combine(And, items)

    def _not_expr(self) -> Node:
        if self._is_kw("not"):
            self._nest()
            self._advance()
            node: Node = Not(self._not_expr())
            self.depth -= 1
            return node
        return self._primary()

    def _nest(self) -> None:
        """Count one level of 'not' or '('; deep nesting would overflow the stack."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self._error(
                self.tok.pos,
                "a shallower filter",
                message=f"filter nests 'not' and '(' more than {MAX_NESTING} levels deep",
            )

    def _primary(self) -> Node:
        if self.tok.kind != "(":
            return self._predicate()
        self._nest()
        opening = self._advance()
        node = self._or_expr()
        if self.tok.kind != ")":
            where = f"to close '(' at position {opening.pos}"
            if self.tok.kind == "eof":
                raise self._error(
                    self.tok.pos, "')'", message=f"expected ')' {where}, found {self.eof}"
                )
            raise self._error(
                self.tok.pos,
                "'and', 'or' or ')'",
                message=f"expected 'and', 'or' or ')' {where}, found {self._found(self.tok)}",
            )
        self._advance()
        self.depth -= 1
        return node

    def parse_ident(self, expected: str) -> tuple[Entity, str, str]:
        """Parse an ident; return (entity, key, source text of the ident)."""
        tok = self.tok
        if tok.kind in ("dquoted", "bquoted"):
            self._advance()
            return "attribute", self._attribute(str(tok.value), tok), tok.text
        if tok.kind != "word" or tok.text.lower() in _KEYWORDS:
            raise self._error(tok.pos, expected)
        self._advance()
        if "." not in tok.text:
            return "attribute", self._attribute(tok.text, tok), tok.text
        prefix, key = tok.text.split(".", 1)
        entity = ENTITY_PREFIXES.get(prefix.lower())
        if entity is None:
            close = difflib.get_close_matches(prefix.lower(), list(ENTITY_PREFIXES), n=1)
            hint = f" Did you mean '{_PLURAL[ENTITY_PREFIXES[close[0]]]}.{key}'?" if close else ""
            raise self._error(
                tok.pos,
                "a prefix",
                message=(
                    f"unknown prefix '{prefix}' in '{tok.text}': expected metrics., params., "
                    "tags. or attributes. (short forms m., p., t., a., run.) or a bare "
                    f"attribute name.{hint}"
                ),
            )
        source = tok.text
        if not key:
            # `metrics.` directly followed by a quoted name: metrics.`val auc`
            quoted = self.tok
            if quoted.kind not in ("dquoted", "bquoted") or quoted.pos != tok.end:
                raise self._error(
                    tok.end,
                    f"a {entity} key after '{tok.text}'",
                    hint=" (quote keys with spaces: metrics.`my key`)",
                )
            self._advance()
            key = str(quoted.value)
            source = tok.text + quoted.text
            if not key:
                raise self._error(quoted.pos, f"a non-empty {entity} key")
        if entity == "attribute":
            key = self._attribute(key, tok)
        return entity, key, source

    def _attribute(self, name: str, tok: _Token) -> str:
        norm = name.lower()
        norm = _ATTRIBUTE_ALIASES.get(norm, norm)
        if norm in ATTRIBUTES:
            return norm
        close = difflib.get_close_matches(norm, [*ATTRIBUTES, *_ATTRIBUTE_ALIASES], n=1)
        if close:
            hint = f" Did you mean '{close[0]}'?"
        elif norm in ENTITY_PREFIXES:
            hint = f" Write {name}.<key> to name a {ENTITY_PREFIXES[norm]}."
        else:
            hint = (
                f" For a metric, param or tag write metrics.{name}, params.{name} or tags.{name}."
            )
        raise self._error(
            tok.pos,
            "an attribute name",
            message=f"unknown attribute '{name}': expected one of {', '.join(ATTRIBUTES)}.{hint}",
        )

    def _predicate(self) -> Node:
        entity, key, ident = self.parse_ident(
            "a filter term such as metrics.auc > 0.9, '(' or 'not'"
        )
        tok = self.tok
        if tok.kind == "op":
            self._advance()
            value_tok, value = self._value()
            value = self._check_value(
                entity, key, value_tok, value, f"{ident} {tok.text}", tok.text
            )
            return Compare(entity, key, _OPS[tok.text], value)
        if self._accept_kw("is"):
            negated = self._accept_kw("not") is not None
            if not self._accept_kw("null"):
                what = "'null'" if negated else "'null' or 'not null'"
                raise self._error(self.tok.pos, f"{what} after 'is'")
            return IsNull(entity, key, negated)
        negated = False
        if self._accept_kw("not"):
            negated = True
            if not self._is_kw("in", "like", "ilike"):
                raise self._error(self.tok.pos, "'in', 'like' or 'ilike' after 'not'")
        if self._is_kw("in"):
            return self._in_list(entity, key, ident, negated)
        if self._is_kw("like", "ilike"):
            return self._like(entity, key, negated)
        hint = ""
        if tok.kind == "word" and tok.text.lower() not in _KEYWORDS and "`" not in ident:
            prefix, dot, name = ident.partition(".") if "." in ident else ("", "", ident)
            hint = f" (quote names with spaces: {prefix}{dot}`{name} {tok.text}`)"
        raise self._error(
            tok.pos,
            "an operator (=, !=, <, <=, >, >=, in, not in, like, ilike, is null)",
            hint=hint,
        )

    def _in_list(self, entity: Entity, key: str, ident: str, negated: bool) -> InList:
        self._advance()  # "in"
        if self.tok.kind != "(":
            raise self._error(self.tok.pos, "'(' to start the list of values")
        opening = self._advance()
        if self.tok.kind == ")":
            raise self._error(self.tok.pos, "at least one value in the list")
        values: list[Value] = []
        while True:
            value_tok, value = self._value()
            values.append(self._check_value(entity, key, value_tok, value, "", "in"))
            if self.tok.kind == ",":
                self._advance()
                if self.tok.kind == ")":  # trailing comma
                    break
            elif self.tok.kind == ")":
                break
            else:
                where = f" to close the list opened at position {opening.pos}"
                raise self._error(
                    self.tok.pos,
                    "',' or ')'",
                    message=f"expected ',' or ')'{where}, found {self._found(self.tok)}",
                )
        self._advance()
        return InList(entity, key, tuple(values), negated)

    def _like(self, entity: Entity, key: str, negated: bool) -> Like:
        op_tok = self._advance()
        op = op_tok.text.lower()
        if entity == "metric" or key in NUMERIC_ATTRIBUTES:
            what = "metrics are numbers" if entity == "metric" else f"{key} is a number"
            raise self._error(
                op_tok.pos,
                "a comparison operator, 'in' or 'is null'",
                op_tok,
                hint=f"; {what}, so {op} does not apply (compare with =, <, >, ...)",
            )
        pattern = self.tok
        if pattern.kind not in ("string", "dquoted"):
            raise self._error(pattern.pos, f"a quoted pattern after '{op}'")
        self._advance()
        return Like(entity, key, str(pattern.value), op == "ilike", negated)

    def _value(self) -> tuple[_Token, Value]:
        tok = self.tok
        if tok.kind == "number" or (tok.kind == "word" and tok.text.lower() in _SPECIAL_FLOATS):
            self._advance()
            return tok, _to_number(tok.text)
        if tok.kind in ("string", "dquoted"):
            self._advance()
            return tok, tok.value
        hint = ""
        if self._is_kw("null"):
            hint = " (use 'is null' to find runs without a value)"
        elif tok.kind == "word" and tok.text.lower() not in _KEYWORDS:
            hint = f" (quote text values: {_quote(tok.text)})"
        elif tok.kind == "bquoted":
            hint = " (backquotes are for names; quote values with ')"
        raise self._error(tok.pos, "a number or a quoted string", hint=hint)

    def _check_value(
        self, entity: Entity, key: str, tok: _Token, value: Value, lhs: str, op: str
    ) -> Value:
        """Type-check a value against its entity; ``lhs`` is "ident op" or "" in lists."""
        is_number = not isinstance(value, str)
        if entity == "metric" or (entity == "attribute" and key in NUMERIC_ATTRIBUTES):
            if is_number:
                return value
            what = (
                "metrics compare with numbers only" if entity == "metric" else f"{key} is a number"
            )
            if key in ("start_time", "end_time") and entity == "attribute":
                what += " (milliseconds since the epoch)"
            literal = str(value).strip()
            if _NUMBER.fullmatch(literal) or literal.lower() in _SPECIAL_FLOATS:
                fix = f"{lhs} {literal}" if lhs else literal
                what += f": write {fix} without quotes"
            raise self._error(tok.pos, "a number", tok, hint=f"; {what}")
        if is_number:
            fix = f"{lhs} {_quote(tok.text)}" if lhs else _quote(tok.text)
            what = f"{_PLURAL[entity]} are strings" if entity != "attribute" else f"{key} is text"
            raise self._error(tok.pos, "a quoted string", tok, hint=f"; {what}: write {fix}")
        if entity == "attribute" and key == "status":
            value = str(value).upper()
            if op in ("=", "==", "!=", "<>", "in") and value not in RUN_STATUSES:
                close = difflib.get_close_matches(value, RUN_STATUSES, n=1)
                hint = f". Did you mean '{close[0]}'?" if close else ""
                raise self._error(
                    tok.pos,
                    f"a run status ({', '.join(RUN_STATUSES)})",
                    tok,
                    hint=hint,
                )
        return value

    def parse_order_item(self) -> OrderBy:
        entity, key, _ = self.parse_ident("a metric, param, tag or attribute name")
        descending = False
        if self._is_kw("asc", "desc"):
            descending = self._advance().text.lower() == "desc"
            if self.tok.kind != "eof":
                raise self._error(self.tok.pos, self.eof)
        elif self.tok.kind != "eof":
            raise self._error(self.tok.pos, f"'asc', 'desc' or {self.eof}")
        return OrderBy(entity, key, descending)


def _to_number(text: str) -> float | int:
    sign = -1 if text.startswith("-") else 1
    word = text.lstrip("+-").lower()
    if word in _SPECIAL_FLOATS:
        special = _SPECIAL_FLOATS[word]
        return special if math.isnan(special) else sign * special
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


def _quote(text: str) -> str:
    """Quote ``text`` as a filter string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _combine(cls: type[And] | type[Or], items: list[Node]) -> Node:
    """Build ``cls(items)`` with nested nodes of the same kind flattened."""
    if len(items) == 1:
        return items[0]
    flat: list[Node] = []
    for item in items:
        if isinstance(item, cls):
            flat.extend(item.items)
        else:
            flat.append(item)
    return cls(tuple(flat))


# -------------------------------------------------------------- public API


def parse_filter(text: str | None) -> Node | None:
    """Parse a run-search filter.

    Args:
        text: The filter, e.g. ``"metrics.auc > 0.9 and params.model = 'rf'"``.

    Returns:
        The AST, or ``None`` when ``text`` is ``None``, empty or only whitespace.

    Raises:
        FilterSyntaxError: The filter does not parse or does not type-check.
    """
    if text is None or not text.strip():
        return None
    return _Parser(text, FilterSyntaxError, "end of filter").parse_filter()


def parse_order_by(items: Sequence[str] | None) -> list[OrderBy]:
    """Parse ``order_by`` items of the form ``"ident [ASC|DESC]"`` (default ASC).

    Args:
        items: E.g. ``["metrics.auc DESC", "start_time"]``; ``None`` means no order.

    Returns:
        One :class:`OrderBy` per item, in order.

    Raises:
        OrderBySyntaxError: An item does not parse (its ``text`` is that item).
        TypeError: ``items`` is a single string or holds a non-string.
    """
    if items is None:
        return []
    if isinstance(items, str):
        raise TypeError(f"order_by must be a list of strings, not a string: [{items!r}]")
    result: list[OrderBy] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"order_by items must be strings, got {type(item).__name__}")
        parser = _Parser(item, OrderBySyntaxError, "end of order_by item")
        result.append(parser.parse_order_item())
    return result
