"""Compile a parsed search filter and ordering into one SQL query over ``runs``.

Each predicate becomes ``runs.pk IN (subquery)`` (or ``NOT IN``), so ``and``,
``or``, ``not`` and parentheses compose freely, and the database uses the
``(key_id, value)`` index of ``latest_metrics`` and the ``(key, run_pk)``
indexes of params and tags. A run lacking a key matches no comparison; ``is
null`` finds it. NaN metric values are stored as NULL: ``= nan`` finds them,
ordering puts them last.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from keel.exceptions import InvalidSpecError
from keel.store import schema as t
from keel.store._filter import And, Compare, InList, IsNull, Like, Node, Not, Or, OrderBy

__all__ = ["compile_search"]

_OPS = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}

_ATTRS: dict[str, ColumnElement[Any]] = {
    "run_id": t.runs.c.run_id,
    "run_name": t.runs.c.name,
    "status": t.runs.c.status,
    "start_time": t.runs.c.start_time,
    "end_time": t.runs.c.end_time,
    "experiment_id": t.runs.c.experiment_id,
    "user": t.runs.c.user,
    "description": t.runs.c.description,
    "lifecycle_stage": t.runs.c.lifecycle_stage,
}


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


class _Compiler:
    def __init__(self, key_ids: dict[str, int]) -> None:
        self.key_ids = key_ids

    def node(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, And):
            return sa.and_(*(self.node(n) for n in node.items))
        if isinstance(node, Or):
            return sa.or_(*(self.node(n) for n in node.items))
        if isinstance(node, Not):
            return sa.not_(self.node(node.item))
        if node.entity == "attribute":
            return self.attribute(node)
        return self.keyed(node)

    # params, tags and metrics: membership in a subquery of matching run pks
    def keyed(self, node: Compare | InList | Like | IsNull) -> ColumnElement[bool]:
        if node.entity == "metric":
            table, key_col = t.latest_metrics, t.latest_metrics.c.key_id
            key: Any = self.key_ids.get(node.key, -1)
        else:
            table = t.params if node.entity == "param" else t.tags
            key_col, key = table.c.key, node.key
        value = table.c.value
        cond: ColumnElement[bool]
        if isinstance(node, IsNull):
            sub = sa.select(table.c.run_pk).where(key_col == key)
            found: ColumnElement[bool] = t.runs.c.pk.in_(sub)
            return found if node.negated else t.runs.c.pk.not_in(sub)
        if isinstance(node, Compare):
            cond = self.compare(value, node.op, node.value)
        elif isinstance(node, InList):
            cond = self.in_list(value, node.values)
        else:
            cond = value.ilike(node.pattern) if node.case_insensitive else value.like(node.pattern)
        sub = sa.select(table.c.run_pk).where(key_col == key, cond)
        negated = isinstance(node, InList | Like) and node.negated
        return t.runs.c.pk.not_in(sub) if negated else t.runs.c.pk.in_(sub)

    @staticmethod
    def compare(col: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
        if _is_nan(value):  # NaN is stored as NULL
            if op == "=":
                return col.is_(None)
            if op == "!=":
                return col.is_not(None)
            return sa.false()
        return _OPS[op](col, value)  # type: ignore[no-any-return]

    @staticmethod
    def in_list(col: ColumnElement[Any], values: tuple[Any, ...]) -> ColumnElement[bool]:
        plain = [v for v in values if not _is_nan(v)]
        cond: ColumnElement[bool] = col.in_(plain) if plain else sa.false()
        if len(plain) != len(values):
            cond = sa.or_(cond, col.is_(None))
        return cond

    def attribute(self, node: Compare | InList | Like | IsNull) -> ColumnElement[bool]:
        if node.key == "parent_run_id":
            parent = t.runs.alias("p")
            col: ColumnElement[Any] = parent.c.run_id
            if isinstance(node, IsNull):
                return (
                    t.runs.c.parent_pk.is_not(None)
                    if node.negated
                    else t.runs.c.parent_pk.is_(None)
                )
            inner = self._attr_cond(col, node)
            sub = sa.select(parent.c.pk).where(inner)
            return t.runs.c.parent_pk.in_(sub)
        col = _ATTRS[node.key]
        if isinstance(node, IsNull):
            return col.is_not(None) if node.negated else col.is_(None)
        if node.key == "experiment_id":
            values = node.values if isinstance(node, InList) else (getattr(node, "value", 0),)
            for val in values:
                if not (isinstance(val, int) or (isinstance(val, float) and val.is_integer())):
                    raise InvalidSpecError(
                        f"experiment_id is an integer; got {val!r} in the filter.", value=str(val)
                    )
        return self._attr_cond(col, node)

    def _attr_cond(
        self, col: ColumnElement[Any], node: Compare | InList | Like
    ) -> ColumnElement[bool]:
        if isinstance(node, Compare):
            return self.compare(col, node.op, node.value)
        if isinstance(node, InList):
            cond = self.in_list(col, node.values)
            return sa.not_(cond) if node.negated else cond
        cond = col.ilike(node.pattern) if node.case_insensitive else col.like(node.pattern)
        return sa.not_(cond) if node.negated else cond


def compile_search(
    experiment_ids: list[int],
    node: Node | None,
    order: list[OrderBy],
    view: str,
    key_ids: dict[str, int],
) -> sa.Select[Any]:
    """A ``SELECT runs.pk`` honouring the filter, view and ordering."""
    r = t.runs.c
    query = sa.select(r.pk).select_from(t.runs)
    conds: list[ColumnElement[bool]] = []
    if experiment_ids:
        conds.append(r.experiment_id.in_(experiment_ids))
    if view != "all":
        conds.append(r.lifecycle_stage == view)
    if node is not None:
        conds.append(_Compiler(key_ids).node(node))
    if conds:
        query = query.where(*conds)
    order_cols: list[Any] = []
    col: ColumnElement[Any]
    for i, ob in enumerate(order):
        if ob.entity == "attribute":
            if ob.key == "parent_run_id":
                parent = t.runs.alias(f"op{i}")
                query = query.outerjoin(parent, parent.c.pk == r.parent_pk)
                col = parent.c.run_id
            else:
                col = _ATTRS[ob.key]
        else:
            if ob.entity == "metric":
                table = t.latest_metrics.alias(f"o{i}")
                on = sa.and_(table.c.run_pk == r.pk, table.c.key_id == key_ids.get(ob.key, -1))
            else:
                base = t.params if ob.entity == "param" else t.tags
                table = base.alias(f"o{i}")
                on = sa.and_(table.c.run_pk == r.pk, table.c.key == ob.key)
            query = query.outerjoin(table, on)
            col = table.c.value
        order_cols.append(col.is_(None))  # missing values (and NaN) last, both directions
        order_cols.append(col.desc() if ob.descending else col.asc())
    order_cols += [r.start_time.desc(), r.pk.desc()]
    return query.order_by(*order_cols)
