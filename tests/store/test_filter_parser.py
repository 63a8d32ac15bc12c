"""Tests for the run-search filter and order-by parser (keel.store._filter)."""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keel.store._filter import (
    ATTRIBUTES,
    MAX_NESTING,
    NUMERIC_ATTRIBUTES,
    RUN_STATUSES,
    And,
    Compare,
    FilterSyntaxError,
    InList,
    IsNull,
    Like,
    Node,
    Not,
    Or,
    OrderBy,
    OrderBySyntaxError,
    parse_filter,
    parse_order_by,
)

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    st = None  # type: ignore[assignment]


def m(key: str, op: str, value: Any) -> Compare:
    return Compare("metric", key, op, value)


def p(key: str, op: str, value: Any) -> Compare:
    return Compare("param", key, op, value)


def err(text: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    return info.value


def canon(x: Any) -> Any:
    """A comparable form of an AST: NaN equals NaN, 1 differs from 1.0."""
    if isinstance(x, float):
        return ("float", "nan" if math.isnan(x) else x)
    if isinstance(x, int | str):
        return (type(x).__name__, x)
    if isinstance(x, tuple):
        return tuple(canon(i) for i in x)
    if dataclasses.is_dataclass(x):
        return (type(x).__name__, *(canon(getattr(x, f.name)) for f in dataclasses.fields(x)))
    return x


A = m("a", ">", 1)
B = m("b", ">", 2)
C = m("c", ">", 3)
D = m("d", ">", 4)


# ----------------------------------------------------------------- basics


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t "])
def test_empty_filter_means_no_filter(text: str | None) -> None:
    assert parse_filter(text) is None


@pytest.mark.parametrize(
    ("op", "normalised"),
    [
        ("=", "="),
        ("==", "="),
        ("!=", "!="),
        ("<>", "!="),
        ("<", "<"),
        ("<=", "<="),
        (">", ">"),
        (">=", ">="),
    ],
)
def test_comparison_operators_are_normalised(op: str, normalised: str) -> None:
    assert parse_filter(f"metrics.auc {op} 0.5") == m("auc", normalised, 0.5)
    assert parse_filter(f"metrics.auc{op}0.5") == m("auc", normalised, 0.5)


@pytest.mark.parametrize(
    ("prefix", "entity"),
    [
        ("metrics", "metric"),
        ("metric", "metric"),
        ("m", "metric"),
        ("params", "param"),
        ("param", "param"),
        ("p", "param"),
        ("tags", "tag"),
        ("tag", "tag"),
        ("t", "tag"),
        ("METRICS", "metric"),
        ("Params", "param"),
        ("TAGS", "tag"),
    ],
)
def test_entity_prefixes(prefix: str, entity: str) -> None:
    value: Any = 1 if entity == "metric" else "1"
    literal = "1" if entity == "metric" else "'1'"
    assert parse_filter(f"{prefix}.k = {literal}") == Compare(entity, "k", "=", value)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["attributes", "attribute", "attr", "a", "run", "RUN", "Attr"])
def test_attribute_prefixes(prefix: str) -> None:
    assert parse_filter(f"{prefix}.run_id = 'x'") == Compare("attribute", "run_id", "=", "x")


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_every_attribute_is_accepted_bare_and_prefixed(name: str) -> None:
    value: str | int
    if name == "status":
        literal, value = "'running'", "RUNNING"
    elif name in NUMERIC_ATTRIBUTES:
        literal, value = "17", 17
    else:
        literal, value = "'v'", "v"
    expected = Compare("attribute", name, "=", value)
    assert parse_filter(f"{name} = {literal}") == expected
    assert parse_filter(f"attributes.{name} = {literal}") == expected
    assert parse_filter(f"{name.upper()} = {literal}") == expected
    assert parse_filter(f"`{name}` = {literal}") == expected
    assert parse_filter(f'"{name}" = {literal}') == expected


def test_name_is_an_alias_of_run_name() -> None:
    expected = Compare("attribute", "run_name", "=", "x")
    assert parse_filter("name = 'x'") == expected
    assert parse_filter("attributes.NAME = 'x'") == expected
    assert parse_order_by(["name"]) == [OrderBy("attribute", "run_name", False)]


# ------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("metrics.val.auc > 1", "val.auc"),
        ("metrics.val-loss > 1", "val-loss"),
        ("metrics.train/loss:avg > 1", "train/loss:avg"),
        ("metrics.1st > 1", "1st"),
        ("metrics.AUC > 1", "AUC"),  # keys keep their case
        ("metrics.`val auc` > 1", "val auc"),
        ("metrics.`a.b c` > 1", "a.b c"),
        ("metrics.`tick``s` > 1", "tick`s"),
        ("metrics.`(a) = 'b'` > 1", "(a) = 'b'"),
        ('metrics."val auc" > 1', "val auc"),
        ('metrics."say ""hi""" > 1', 'say "hi"'),
        ('metrics."a\\"b" > 1', 'a"b'),
        ("m.`and` > 1", "and"),
        ("metrics.and > 1", "and"),
    ],
)
def test_metric_keys(text: str, key: str) -> None:
    assert parse_filter(text) == m(key, ">", 1)


def test_tag_keys_with_dots() -> None:
    assert parse_filter("tags.mlflow.source.name = 'x'") == Compare(
        "tag", "mlflow.source.name", "=", "x"
    )


# ----------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("0", 0),
        ("5", 5),
        ("-5", -5),
        ("+5", 5),
        ("12345678901234567890", 12345678901234567890),
        ("0.5", 0.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("-0.25", -0.25),
        ("1e-3", 0.001),
        ("1E3", 1000.0),
        ("-2.5e+2", -250.0),
        ("inf", math.inf),
        ("Infinity", math.inf),
        ("+inf", math.inf),
        ("-inf", -math.inf),
        ("-INFINITY", -math.inf),
    ],
)
def test_numbers(literal: str, value: float) -> None:
    node = parse_filter(f"metrics.x = {literal}")
    assert isinstance(node, Compare)
    assert node.value == value
    assert type(node.value) is type(value)


@pytest.mark.parametrize("literal", ["nan", "NaN", "-nan", "+NAN"])
def test_nan(literal: str) -> None:
    node = parse_filter(f"metrics.x != {literal}")
    assert isinstance(node, Compare)
    assert isinstance(node.value, float)
    assert math.isnan(node.value)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'abc'", "abc"),
        ("''", ""),
        ("'it''s'", "it's"),
        ("'it\\'s'", "it's"),
        ("'back\\\\slash'", "back\\slash"),
        ("'C:\\temp'", "C:\\temp"),  # other backslashes are kept
        ("'50\\%'", "50\\%"),
        ("'a \"quoted\" word'", 'a "quoted" word'),
        ('"double"', "double"),
        ('"it\'s"', "it's"),
        ('"say ""hi"""', 'say "hi"'),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'and or not ( ) ,'", "and or not ( ) ,"),
        ("'üñí €'", "üñí €"),
        ("'5'", "5"),
        ("'multi\nline'", "multi\nline"),
    ],
)
def test_strings(literal: str, value: str) -> None:
    assert parse_filter(f"params.x = {literal}") == p("x", "=", value)


def test_ordering_comparisons_on_strings_are_allowed() -> None:
    assert parse_filter("params.x < 'b'") == p("x", "<", "b")
    assert parse_filter("run_name >= 'exp-10'") == Compare("attribute", "run_name", ">=", "exp-10")


def test_numeric_attributes_take_numbers() -> None:
    assert parse_filter("start_time >= 1700000000000") == Compare(
        "attribute", "start_time", ">=", 1700000000000
    )
    assert parse_filter("end_time < 1.5e12") == Compare("attribute", "end_time", "<", 1.5e12)
    assert parse_filter("experiment_id in (1, 2)") == InList(
        "attribute", "experiment_id", (1, 2), False
    )


# -------------------------------------------------------------- predicates


def test_is_null_and_is_not_null() -> None:
    assert parse_filter("metrics.auc is null") == IsNull("metric", "auc", False)
    assert parse_filter("params.x IS NOT NULL") == IsNull("param", "x", True)
    assert parse_filter("end_time Is Null") == IsNull("attribute", "end_time", False)
    assert parse_filter("tags.`a b` is not null") == IsNull("tag", "a b", True)


def test_in_and_not_in() -> None:
    assert parse_filter("params.x in ('a', 'b')") == InList("param", "x", ("a", "b"), False)
    assert parse_filter("params.x NOT IN ('a')") == InList("param", "x", ("a",), True)
    assert parse_filter("params.x in ('a', 'b',)") == InList("param", "x", ("a", "b"), False)
    assert parse_filter("params.x in('a')") == InList("param", "x", ("a",), False)
    assert parse_filter("metrics.x in (1, 2.5, -inf)") == InList(
        "metric", "x", (1, 2.5, -math.inf), False
    )
    assert parse_filter("tags.t not in (\"x\", 'y')") == InList("tag", "t", ("x", "y"), True)


def test_like_and_ilike() -> None:
    assert parse_filter("params.x like 'a%'") == Like("param", "x", "a%", False, False)
    assert parse_filter("params.x ILIKE '%B_'") == Like("param", "x", "%B_", True, False)
    assert parse_filter("tags.x not like 'a%'") == Like("tag", "x", "a%", False, True)
    assert parse_filter('tags.x NOT ILIKE "a%"') == Like("tag", "x", "a%", True, True)
    assert parse_filter("name like 'run-%'") == Like("attribute", "run_name", "run-%", False, False)
    # like patterns are not upper-cased, even on status
    assert parse_filter("status like 'RUN%'") == Like("attribute", "status", "RUN%", False, False)


def test_status_is_normalised_and_validated() -> None:
    assert parse_filter("status = 'running'") == Compare("attribute", "status", "=", "RUNNING")
    assert parse_filter("run.status != 'Killed'") == Compare("attribute", "status", "!=", "KILLED")
    assert parse_filter("status in ('finished', 'FAILED')") == InList(
        "attribute", "status", ("FINISHED", "FAILED"), False
    )
    for status in RUN_STATUSES:
        assert parse_filter(f"status = '{status.lower()}'") == Compare(
            "attribute", "status", "=", status
        )
    # ordering comparisons are not validated (but still upper-cased)
    assert parse_filter("status > 'f'") == Compare("attribute", "status", ">", "F")


# ------------------------------------------------------- boolean structure


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.a > 1 and metrics.b > 2", And((A, B))),
        ("metrics.a > 1 or metrics.b > 2", Or((A, B))),
        ("not metrics.a > 1", Not(A)),
        # and binds tighter than or
        ("metrics.a > 1 or metrics.b > 2 and metrics.c > 3", Or((A, And((B, C))))),
        ("metrics.a > 1 and metrics.b > 2 or metrics.c > 3", Or((And((A, B)), C))),
        # not binds tighter than and
        ("not metrics.a > 1 and metrics.b > 2", And((Not(A), B))),
        ("not metrics.a > 1 or metrics.b > 2", Or((Not(A), B))),
        ("metrics.a > 1 and not metrics.b > 2", And((A, Not(B)))),
        ("not not metrics.a > 1", Not(Not(A))),
        # parentheses override precedence
        ("(metrics.a > 1 or metrics.b > 2) and metrics.c > 3", And((Or((A, B)), C))),
        ("not (metrics.a > 1 and metrics.b > 2)", Not(And((A, B)))),
        ("not(metrics.a > 1)", Not(A)),
        ("((metrics.a > 1))", A),
        # nested and/or of the same kind are flattened
        ("metrics.a > 1 and metrics.b > 2 and metrics.c > 3", And((A, B, C))),
        ("(metrics.a > 1 and metrics.b > 2) and metrics.c > 3", And((A, B, C))),
        ("metrics.a > 1 and (metrics.b > 2 and metrics.c > 3)", And((A, B, C))),
        (
            "(metrics.a > 1 or metrics.b > 2) or (metrics.c > 3 or metrics.d > 4)",
            Or((A, B, C, D)),
        ),
        (
            "(metrics.a > 1 or metrics.b > 2) and (metrics.c > 3 or metrics.d > 4)",
            And((Or((A, B)), Or((C, D)))),
        ),
        ("not (metrics.a > 1 and metrics.b > 2) and metrics.c > 3", And((Not(And((A, B))), C))),
    ],
)
def test_boolean_structure(text: str, expected: Node) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "METRICS.a > 1 AND metrics.b > 2 OR NOT metrics.c > 3",
        "metrics.a > 1 And metrics.b > 2 oR nOt metrics.c > 3",
        "metrics.a>1 and metrics.b>2 or not metrics.c>3",
        "\n\tmetrics.a   >\n1\tand metrics.b > 2\r\nor not metrics.c > 3  ",
        "(metrics.a>1)and(metrics.b>2)or not(metrics.c>3)",
    ],
)
def test_keywords_are_case_insensitive_and_whitespace_is_free(text: str) -> None:
    assert parse_filter(text) == Or((And((A, B)), Not(C)))


def test_realistic_filter() -> None:
    text = (
        "experiment_id = 3 and status = 'finished' and (metrics.val.auc >= 0.9 "
        "or params.model in ('xgb', 'lgbm')) and tags.owner is not null "
        "and not name ilike '%debug%'"
    )
    assert parse_filter(text) == And(
        (
            Compare("attribute", "experiment_id", "=", 3),
            Compare("attribute", "status", "=", "FINISHED"),
            Or((m("val.auc", ">=", 0.9), InList("param", "model", ("xgb", "lgbm"), False))),
            IsNull("tag", "owner", True),
            Not(Like("attribute", "run_name", "%debug%", True, False)),
        )
    )


def test_ast_nodes_are_frozen_and_hashable() -> None:
    node = parse_filter("metrics.a > 1 and params.b in ('x')")
    assert node is not None
    assert hash(node) == hash(parse_filter("metrics.a > 1 and params.b in ('x')"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.items = ()  # type: ignore[misc, union-attr]
    assert not hasattr(A, "__dict__")  # slots


# ------------------------------------------------------------------ errors

ERRORS = [
    # (filter, position, message fragment, expected fragment)
    ("metrics.auc > and", 14, "expected a number or a quoted string, found 'and'", "a number"),
    ("metrics.auc >", 13, "found end of filter", "a number or a quoted string"),
    ("params.x = abc", 11, "quote text values: 'abc'", "a number or a quoted string"),
    ("params.x = null", 11, "use 'is null'", "a number or a quoted string"),
    ("metrics.a = `x`", 12, "backquotes are for names", "a number or a quoted string"),
    ("metrics.a = 1abc", 12, "found '1abc'", "a number or a quoted string"),
    ("metrics.a = 1.2.3", 12, "found '1.2.3'", "a number or a quoted string"),
    ("metrics.a = -", 12, "found '-'", "a number or a quoted string"),
    # unterminated strings point at the opening quote
    ("params.x = 'abc", 11, "unterminated string", "a closing '"),
    ("params.x = 'it''s", 11, "unterminated string", "a closing '"),
    ("params.x = 'abc\\'", 11, "unterminated string", "a closing '"),
    ('params.x = "abc', 11, "unterminated string", 'a closing "'),
    ("metrics.`abc > 1", 8, "unterminated name", "a closing `"),
    ("`status = 'x'", 0, "unterminated name", "a closing `"),
    # parentheses
    ("(metrics.a > 1", 14, "expected ')' to close '(' at position 0", "')'"),
    ("metrics.a > 1 and (metrics.b > 2 or (metrics.c > 3)", 51, "'(' at position 18", "')'"),
    ("(metrics.a > 1 metrics.b > 2)", 15, "expected 'and', 'or' or ')'", "')'"),
    ("metrics.a > 1)", 13, "(no matching '(')", "'and', 'or' or end of filter"),
    ("()", 1, "found ')'", "a filter term"),
    # trailing tokens
    ("metrics.a > 1 metrics.b > 2", 14, "expected 'and', 'or' or end of filter", "'and', 'or'"),
    ("metrics.a > 1 'x'", 14, "found 'x'", "'and', 'or' or end of filter"),
    ("metrics.a > 1 and", 17, "found end of filter", "a filter term"),
    ("metrics.a > 1 or or metrics.b > 2", 17, "found 'or'", "a filter term"),
    ("not", 3, "found end of filter", "a filter term"),
    ("and metrics.a > 1", 0, "found 'and'", "a filter term"),
    ("5 = metrics.a", 0, "found 5", "a filter term"),
    # identifiers
    ("metric_x.auc > 1", 0, "unknown prefix 'metric_x'", "a prefix"),
    ("metric_x.auc > 1", 0, "Did you mean 'metrics.auc'?", "a prefix"),
    ("parms.depth = '1'", 0, "Did you mean 'params.depth'?", "a prefix"),
    ("stauts = 'RUNNING'", 0, "unknown attribute 'stauts'", "an attribute name"),
    ("stauts = 'RUNNING'", 0, "Did you mean 'status'?", "an attribute name"),
    ("attributes.strat_time > 1", 0, "Did you mean 'start_time'?", "an attribute name"),
    ("auc > 0.5", 0, "write metrics.auc, params.auc or tags.auc", "an attribute name"),
    ("metrics > 0.5", 0, "Write metrics.<key>", "an attribute name"),
    ("metrics. > 1", 8, "expected a metric key after 'metrics.', found '>'", "a metric key"),
    ("metrics .auc > 1", 0, "unknown attribute 'metrics'", "an attribute name"),
    ("metrics.`` > 1", 8, "expected a non-empty metric key", "a non-empty metric key"),
    # operators
    ("metrics.val auc > 1", 12, "metrics.`val auc`", "an operator"),
    ("metrics.a @ 1", 10, "found '@'", "an operator"),
    ("metrics.a ! 1", 10, "found '!'", "an operator"),
    ("metrics.a", 9, "found end of filter", "an operator"),
    ("params.x is 5", 12, "expected 'null' or 'not null' after 'is'", "'null' or 'not null'"),
    ("params.x is not 5", 16, "expected 'null' after 'is'", "'null' after 'is'"),
    ("params.x not = 'a'", 13, "expected 'in', 'like' or 'ilike' after 'not'", "'in', 'like'"),
    # in-lists
    ("params.x in ()", 13, "expected at least one value in the list, found ')'", "at least one"),
    ("params.x in 'a'", 12, "expected '(' to start the list of values", "'('"),
    ("params.x in ('a' 'b')", 17, "to close the list opened at position 12", "',' or ')'"),
    ("params.x in ('a'", 16, "found end of filter", "',' or ')'"),
    ("params.x in ('a',", 17, "found end of filter", "a number or a quoted string"),
    ("params.x in (,)", 13, "found ','", "a number or a quoted string"),
    ("params.x in ('a',,)", 17, "found ','", "a number or a quoted string"),
    # like
    ("params.x like 5", 14, "expected a quoted pattern after 'like'", "a quoted pattern"),
    ("params.x ilike", 14, "found end of filter", "a quoted pattern after 'ilike'"),
    ("metrics.auc like 'x%'", 12, "metrics are numbers, so like does not apply", "comparison"),
    ("metrics.auc not ilike 'x%'", 16, "so ilike does not apply", "comparison"),
    ("start_time like '17%'", 11, "start_time is a number", "comparison"),
    # types
    ("params.depth = 5", 15, "params are strings: write params.depth = '5'", "a quoted string"),
    ("p.depth == 5", 11, "params are strings: write p.depth == '5'", "a quoted string"),
    ("tags.n != -1.5", 10, "tags are strings: write tags.n != '-1.5'", "a quoted string"),
    ("params.x = nan", 11, "write params.x = 'nan'", "a quoted string"),
    ("params.depth in ('4', 5)", 22, "params are strings: write '5'", "a quoted string"),
    ("run_name = 5", 11, "run_name is text: write run_name = '5'", "a quoted string"),
    ("status = 1", 9, "status is text", "a quoted string"),
    ("metrics.auc = 'abc'", 14, "metrics compare with numbers only", "a number"),
    ("metrics.auc = '0.5'", 14, "write metrics.auc = 0.5 without quotes", "a number"),
    ("metrics.auc in (1, 'x')", 19, "found 'x'", "a number"),
    ("start_time > 'yesterday'", 13, "milliseconds since the epoch", "a number"),
    ("experiment_id = '3'", 16, "write experiment_id = 3 without quotes", "a number"),
    # status values
    ("status = 'DONE'", 9, "found 'DONE'", "a run status (RUNNING, SCHEDULED,"),
    ("status = 'finishd'", 9, "Did you mean 'FINISHED'?", "a run status"),
    ("status != 'x'", 10, "found 'x'", "a run status"),
    ("status not in ('running', 'paused')", 26, "found 'paused'", "a run status"),
]


@pytest.mark.parametrize(("text", "position", "fragment", "expected"), ERRORS)
def test_error_paths(text: str, position: int, fragment: str, expected: str) -> None:
    e = err(text)
    assert e.position == position, str(e)
    assert e.text == text
    assert fragment in str(e), str(e)
    assert expected in e.expected, e.expected
    assert str(e).startswith(f"Invalid filter at position {position}: ")
    assert isinstance(e, ValueError)


def test_deep_nesting_is_a_syntax_error_not_a_recursion_error() -> None:
    ok = "(" * MAX_NESTING + "metrics.a > 1" + ")" * MAX_NESTING
    assert parse_filter(ok) == A
    assert parse_filter("not " * MAX_NESTING + "metrics.a > 1") is not None
    deep = "(" * (MAX_NESTING + 1) + "metrics.a > 1" + ")" * (MAX_NESTING + 1)
    e = err(deep)
    assert e.position == MAX_NESTING
    assert f"more than {MAX_NESTING} levels deep" in str(e)
    e = err("not (" * 600 + "metrics.a > 1" + ")" * 600)
    assert "levels deep" in str(e)
    # depth is nesting, not count: many siblings are fine
    wide = " and ".join(["(not (metrics.a > 1))"] * 500)
    assert isinstance(parse_filter(wide), And)


def test_error_message_layout() -> None:
    e = err("metrics.auc > and")
    assert str(e) == (
        "Invalid filter at position 14: expected a number or a quoted string, found 'and'\n"
        "  metrics.auc > and\n"
        "                ^"
    )
    assert e.detail == "expected a number or a quoted string, found 'and'"
    assert e.message == str(e)
    assert e.expected == "a number or a quoted string"


def test_caret_stays_aligned_with_newlines_and_tabs() -> None:
    text = "params.a = 'x' and\n\tmetrics.b >"
    e = err(text)
    line2, line3 = str(e).splitlines()[1:]
    assert e.position == len(text)
    assert line3.index("^") == len(line2)
    assert "\n" not in line2 and "\t" not in line2


def test_long_filters_are_windowed_around_the_error() -> None:
    text = " and ".join(f"metrics.m{i} > {i}" for i in range(40)) + " and metrics.x ="
    e = err(text)
    _, shown, caret = str(e).splitlines()
    assert shown.startswith("  ...")
    assert len(shown) < 120
    col = caret.index("^")
    assert shown[col - 1] == "="  # caret just after the '=' at the end
    # and in the middle of a long filter
    text = "metrics.x = = 1 and " + " and ".join(f"metrics.m{i} > {i}" for i in range(40))
    e = err(text)
    _, shown, caret = str(e).splitlines()
    assert shown.endswith("...") and not shown.startswith("  ...")
    assert shown[caret.index("^")] == "="


def test_error_pickles() -> None:
    e = err("metrics.auc > and")
    e.add_note("while searching experiment 3")
    clone = pickle.loads(pickle.dumps(e))
    assert type(clone) is FilterSyntaxError
    assert str(clone) == str(e)
    assert (clone.text, clone.position, clone.expected, clone.detail) == (
        e.text,
        e.position,
        e.expected,
        e.detail,
    )
    assert clone.__notes__ == ["while searching experiment 3"]

    with pytest.raises(OrderBySyntaxError) as info:
        parse_order_by(["metrics.auc sideways"])
    clone2 = pickle.loads(pickle.dumps(info.value))
    assert type(clone2) is OrderBySyntaxError
    assert str(clone2) == str(info.value)


def test_error_can_be_built_directly() -> None:
    e = FilterSyntaxError("expected x, found y", text="abc", position=1, expected="x")
    assert str(e) == "Invalid filter at position 1: expected x, found y\n  abc\n   ^"
    assert e.args == (str(e),)


# ---------------------------------------------------------------- order by


def test_order_by() -> None:
    assert parse_order_by(None) == []
    assert parse_order_by([]) == []
    assert parse_order_by(
        [
            "metrics.auc DESC",
            "start_time",
            "params.lr asc",
            "name Desc",
            "tags.`team name`",
            'metrics."val loss"  desc ',
            "m.val.auc",
            "attributes.STATUS ASC",
        ]
    ) == [
        OrderBy("metric", "auc", True),
        OrderBy("attribute", "start_time", False),
        OrderBy("param", "lr", False),
        OrderBy("attribute", "run_name", True),
        OrderBy("tag", "team name", False),
        OrderBy("metric", "val loss", True),
        OrderBy("metric", "val.auc", False),
        OrderBy("attribute", "status", False),
    ]


@pytest.mark.parametrize(
    ("item", "position", "fragment"),
    [
        ("", 0, "expected a metric, param, tag or attribute name, found end of order_by item"),
        ("   ", 3, "found end of order_by item"),
        ("metrics.auc sideways", 12, "expected 'asc', 'desc' or end of order_by item"),
        ("metrics.auc desc extra", 17, "expected end of order_by item, found 'extra'"),
        ("metrics.auc, params.x", 11, "found ','"),
        ("stauts desc", 0, "Did you mean 'status'?"),
        ("metrix.auc", 0, "Did you mean 'metrics.auc'?"),
        ("metrics.`auc", 8, "unterminated name"),
        ("desc", 0, "unknown attribute 'desc'"),
    ],
)
def test_order_by_errors(item: str, position: int, fragment: str) -> None:
    with pytest.raises(OrderBySyntaxError) as info:
        parse_order_by(["start_time", item])
    e = info.value
    assert isinstance(e, FilterSyntaxError)
    assert e.text == item
    assert e.position == position
    assert fragment in str(e), str(e)
    assert str(e).startswith(f"Invalid order_by at position {position}: ")


def test_order_by_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="list of strings"):
        parse_order_by("metrics.auc desc")
    with pytest.raises(TypeError, match="must be strings"):
        parse_order_by([3])  # type: ignore[list-item]


# -------------------------------------------------------------------- docs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "search.md"


def _doc_blocks(section: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```text\n(.*?)\n *```", body, re.DOTALL)
    return [textwrap.dedent(b) for b in blocks]


@pytest.mark.skipif(not DOCS.exists(), reason="docs/search.md is not in this checkout")
def test_documented_examples_parse() -> None:
    examples = _doc_blocks("Examples")
    assert len(examples) >= 8
    for example in examples:
        assert parse_filter(example) is not None, example


@pytest.mark.skipif(not DOCS.exists(), reason="docs/search.md is not in this checkout")
def test_documented_error_messages_are_real() -> None:
    blocks = _doc_blocks("Errors")
    assert blocks
    for block in blocks:
        filter_text = block.splitlines()[1].strip()
        assert str(err(filter_text)) == block


# ---------------------------------------------------------- property tests

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-./:]+")
_KEYWORDS = ("and", "or", "not", "in", "is", "null", "like", "ilike")


@dataclass(frozen=True)
class Style:
    upper: bool
    compact: bool
    alt_ops: bool
    double_quotes: bool
    paren_leaves: bool
    trailing_comma: bool
    prefix_variant: int
    lower_status: bool


_PREFIX_SPELLINGS = {
    "metric": ("metrics", "metric", "m", "METRICS"),
    "param": ("params", "param", "p", "Params"),
    "tag": ("tags", "tag", "t", "TAGS"),
    "attribute": ("", "attributes", "a", "run"),
}


def _kw(word: str, style: Style) -> str:
    return word.upper() if style.upper else word


def _render_value(value: Any, style: Style) -> str:
    if isinstance(value, str):
        if style.double_quotes:
            return '"' + value.replace("\\", "\\\\").replace('"', '""') + '"'
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return repr(value)  # ints, and floats incl. nan/inf/-inf/1e-05


def _render_ident(entity: str, key: str, style: Style) -> str:
    prefix = _PREFIX_SPELLINGS[entity][style.prefix_variant]
    if not _PLAIN_KEY.fullmatch(key):
        key = "`" + key.replace("`", "``") + "`"
    return f"{prefix}.{key}" if prefix else key


def _render_leaf(node: Node, style: Style) -> str:
    assert not isinstance(node, And | Or | Not)
    ident = _render_ident(node.entity, node.key, style)
    status = node.entity == "attribute" and node.key == "status"
    if isinstance(node, Compare):
        op = {"=": "==", "!=": "<>"}.get(node.op, node.op) if style.alt_ops else node.op
        value = node.value
        if status and style.lower_status and isinstance(value, str):
            value = value.lower()
        sep = "" if style.compact else " "
        return f"{ident}{sep}{op}{sep}{_render_value(value, style)}"
    if isinstance(node, InList):
        values = [v.lower() if status and style.lower_status else v for v in node.values]  # type: ignore[union-attr]
        inner = ", ".join(_render_value(v, style) for v in values)
        if style.trailing_comma:
            inner += ","
        neg = _kw("not ", style) if node.negated else ""
        return f"{ident} {neg}{_kw('in', style)} ({inner})"
    if isinstance(node, Like):
        neg = _kw("not ", style) if node.negated else ""
        op = _kw("ilike" if node.case_insensitive else "like", style)
        return f"{ident} {neg}{op} {_render_value(node.pattern, style)}"
    neg = _kw("not ", style) if node.negated else ""
    return f"{ident} {_kw('is', style)} {neg}{_kw('null', style)}"


def render(node: Node, style: Style, min_prec: int = 0) -> str:
    """Render an AST as filter text, with as few parentheses as precedence allows."""
    if isinstance(node, Or):
        text, prec = f" {_kw('or', style)} ".join(render(i, style, 2) for i in node.items), 1
    elif isinstance(node, And):
        text, prec = f" {_kw('and', style)} ".join(render(i, style, 3) for i in node.items), 2
    elif isinstance(node, Not):
        text, prec = f"{_kw('not', style)} {render(node.item, style, 3)}", 3
    else:
        text, prec = _render_leaf(node, style), 4
        if style.paren_leaves:
            text = f"({text})"
    return f"({text})" if prec < min_prec else text


if st is not None:
    _keys = st.text(min_size=1, max_size=12)
    _text_values = st.text(max_size=12)
    _numbers = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True))
    _cmp_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    _text_attrs = st.sampled_from(
        [a for a in ATTRIBUTES if a not in NUMERIC_ATTRIBUTES and a != "status"]
    )
    _num_attrs = st.sampled_from(sorted(NUMERIC_ATTRIBUTES))
    _statuses = st.sampled_from(RUN_STATUSES)
    _kv_entities = st.sampled_from(["param", "tag"])

    # (entity, key, value strategy) triples that type-check
    _typed_targets = st.one_of(
        st.tuples(st.just("metric"), _keys, st.just(_numbers)),
        st.tuples(_kv_entities, _keys, st.just(_text_values)),
        st.tuples(st.just("attribute"), _text_attrs, st.just(_text_values)),
        st.tuples(st.just("attribute"), _num_attrs, st.just(st.integers())),
        st.tuples(st.just("attribute"), st.just("status"), st.just(_statuses)),
    )

    @st.composite
    def _compare(draw: Any) -> Compare:
        entity, key, values = draw(_typed_targets)
        return Compare(entity, key, draw(_cmp_ops), draw(values))

    @st.composite
    def _in_list(draw: Any) -> InList:
        entity, key, values = draw(_typed_targets)
        items = draw(st.lists(values, min_size=1, max_size=4))
        return InList(entity, key, tuple(items), draw(st.booleans()))

    @st.composite
    def _like(draw: Any) -> Like:
        entity, key = draw(
            st.one_of(
                st.tuples(_kv_entities, _keys),
                st.tuples(st.just("attribute"), _text_attrs),
                st.tuples(st.just("attribute"), st.just("status")),
            )
        )
        return Like(entity, key, draw(_text_values), draw(st.booleans()), draw(st.booleans()))

    @st.composite
    def _is_null(draw: Any) -> IsNull:
        entity, key, _ = draw(_typed_targets)
        return IsNull(entity, key, draw(st.booleans()))

    def _flat(cls: type[And] | type[Or], items: list[Node]) -> Node:
        out: list[Node] = []
        for item in items:
            out.extend(item.items if isinstance(item, cls) else [item])
        return cls(tuple(out))

    _nodes = st.recursive(
        st.one_of(_compare(), _in_list(), _like(), _is_null()),
        lambda children: st.one_of(
            st.builds(Not, children),
            st.lists(children, min_size=2, max_size=3).map(lambda xs: _flat(And, xs)),
            st.lists(children, min_size=2, max_size=3).map(lambda xs: _flat(Or, xs)),
        ),
        max_leaves=8,
    )
    _styles = st.builds(
        Style,
        upper=st.booleans(),
        compact=st.booleans(),
        alt_ops=st.booleans(),
        double_quotes=st.booleans(),
        paren_leaves=st.booleans(),
        trailing_comma=st.booleans(),
        prefix_variant=st.integers(0, 3),
        lower_status=st.booleans(),
    )

    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(node=_nodes, style=_styles)
    def test_render_parse_round_trip(node: Node, style: Style) -> None:
        text = render(node, style)
        assert canon(parse_filter(text)) == canon(node), text

    _fragments = st.sampled_from(
        [
            *_KEYWORDS,
            "metrics.a",
            "params.b",
            "status",
            "m.`x y`",
            "(",
            ")",
            ",",
            "=",
            "<>",
            ">=",
            "'s'",
            "'",
            '"',
            "`",
            "1",
            "-2.5e3",
            "nan",
            "-inf",
            "@",
            "\\",
            "''",
        ]
    )

    @settings(max_examples=400, deadline=None, database=None)
    @given(text=st.one_of(st.text(max_size=40), st.lists(_fragments, max_size=12).map(" ".join)))
    def test_garbage_raises_only_filter_syntax_errors(text: str) -> None:
        try:
            parse_filter(text)
        except FilterSyntaxError as e:
            assert 0 <= e.position <= len(text)
            assert e.expected
            assert str(e).splitlines()[0].startswith("Invalid filter at position ")
