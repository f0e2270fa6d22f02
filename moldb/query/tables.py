"""``where`` expressions over small Arrow tables (group tables, entry tables), with quantile literals.

The expression is parsed by :func:`moldb.query.selection.parse` (never evaluated as
code) against the table's own columns. A right-hand side ``qNN`` (``amplitude > q90``)
is the NN-th percentile of that column in this table.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ValidationError
from moldb.query.nodes import All, And, Cmp, IsIn, Node, Not, Or, Range
from moldb.query.selection import parse

__all__ = ["filter_table"]

_OPS: dict[str, Callable[[Any, Any], Any]] = {"==": operator.eq, "!=": operator.ne, "<": operator.lt,
                                              "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_QUANTILE = re.compile(r"(?P<col>[A-Za-z_][\w.\-/]*)\s*(?P<op><=|>=|==|!=|<|>)\s*q(?P<q>\d{1,2}(?:\.\d+)?|100)\b")


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    return "str"


def _values(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    if _kind(col.type) == "float":
        return np.asarray(col.cast(pa.float64()).fill_null(np.nan).to_numpy(), dtype=np.float64)
    return np.asarray(col.to_pylist(), dtype=object)


def _eval(node: Node, table: pa.Table) -> np.ndarray:
    n = table.num_rows
    if isinstance(node, All):
        return np.ones(n, dtype=bool)
    if isinstance(node, Cmp):
        v = _values(table, node.column)
        m = _OPS[node.op](v, node.value)
        return np.asarray(m, dtype=bool) & (~np.isnan(v) if v.dtype.kind == "f" else True)
    if isinstance(node, IsIn):
        return np.isin(_values(table, node.column), np.asarray(node.values, dtype=object))
    if isinstance(node, Range):
        v = _values(table, node.column)
        return (v >= node.lo) & (v <= node.hi)
    if isinstance(node, And):
        out = np.ones(n, dtype=bool)
        for i in node.items:
            out &= _eval(i, table)
        return out
    if isinstance(node, Or):
        out = np.zeros(n, dtype=bool)
        for i in node.items:
            out |= _eval(i, table)
        return out
    if isinstance(node, Not):
        return ~_eval(node.item, table)
    raise ValidationError(f"{type(node).__name__} is not allowed in a table filter; compare columns only")


def filter_table(table: pa.Table, where: str | None) -> np.ndarray:
    """Boolean mask of the rows of ``table`` matching ``where`` (``None``: all rows).

    Raises
    ------
    moldb.query.SelectionError
        Bad syntax or a column the table does not have (the message lists the columns).
    """
    if not where:
        return np.ones(table.num_rows, dtype=bool)
    kinds = {c: _kind(table.schema.field(c).type) for c in table.column_names}

    def quantile(m: re.Match[str]) -> str:
        col = m.group("col")
        if kinds.get(col) != "float":
            return m.group(0)  # the parser reports the unknown or non-numeric column
        v = _values(table, col)
        v = v[~np.isnan(v)]
        q = float(np.percentile(v, float(m.group("q")))) if v.size else float("nan")
        return f"{col} {m.group('op')} {q!r}"

    return _eval(parse(_QUANTILE.sub(quantile, where), columns=kinds, keywords={}), table)
