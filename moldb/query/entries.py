"""Entry-level metadata as a queryable table (``store.query_entries(where=...)``).

One row per entry (latest version at ``store.as_of``), built from the cached versions
index and each version's summary — no atom data is read. ``where`` uses the selection
grammar's comparisons (``resolution < 2.0 and method == 'X-RAY DIFFRACTION'``); on list
columns (``ligands``, ``chains``, ``altlocs``) ``==`` means *contains* and ``!=`` *does
not contain*. A null (unknown resolution ...) never matches.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from moldb.errors import ValidationError
from moldb.query.nodes import All, And, Cmp, Entry, IsIn, Node, Not, Or, Range
from moldb.query.selection import parse

__all__ = ["ENTRY_COLUMNS", "entry_table", "query_entries"]

#: column → kind of the entry-level table
ENTRY_COLUMNS: dict[str, str] = {
    "entry": "str", "version": "int", "title": "str", "method": "str", "resolution": "float",
    "n_models": "int", "n_atoms": "int", "timestamp": "int", "deposition_date": "str", "n_chains": "int",
    "n_entities": "int", "chains": "list", "auth_chains": "list", "ligands": "list", "altlocs": "list",
    "has_aniso": "bool", "tls_groups": "int",
}
_OPS = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal, ">": pc.greater,
        ">=": pc.greater_equal}


def entry_table(store: Any) -> pa.Table:
    """The entry-level table: :meth:`moldb.Store.entries` plus summary fields."""
    base = store.entries()
    cells = store._backend.versions_index()
    key = {(e, int(v)): i for i, (e, v) in enumerate(zip(cells["entry"], cells["version"], strict=True))}
    sums = [json.loads(cells["summary"][key[(e, v)]]) for e, v in
            zip(base.column("entry").to_pylist(), base.column("version").to_pylist(), strict=True)]

    def lst(name: str) -> pa.Array:
        return pa.array([list(s.get(name) or []) for s in sums], type=pa.list_(pa.string()))

    extra = {
        "deposition_date": pa.array([s.get("deposition_date") for s in sums], type=pa.string()),
        "n_chains": pa.array([len(s.get("chains") or []) for s in sums], type=pa.int64()),
        "n_entities": pa.array([int(s.get("entities") or 0) for s in sums], type=pa.int64()),
        "chains": lst("chains"), "auth_chains": lst("auth_chains"), "ligands": lst("ligands"),
        "altlocs": lst("altlocs"),
        "has_aniso": pa.array([bool(s.get("has_aniso")) for s in sums], type=pa.bool_()),
        "tls_groups": pa.array([int(s.get("tls_groups") or 0) for s in sums], type=pa.int64()),
    }
    for name, arr in extra.items():
        base = base.append_column(name, arr)
    return base


def _mask(node: Node, t: pa.Table) -> pa.Array:
    n = t.num_rows
    if isinstance(node, All):
        return pa.array(np.ones(n, dtype=bool))
    if isinstance(node, Entry):
        return pc.is_in(t.column("entry"), pa.array(list(node.ids)))
    if isinstance(node, (Cmp, IsIn)) and ENTRY_COLUMNS.get(node.column) == "list":
        vals = {str(v) for v in (node.values if isinstance(node, IsIn) else (node.value,))}
        has = np.array([bool(vals & set(x)) for x in t.column(node.column).to_pylist()], dtype=bool)
        return pa.array(~has if isinstance(node, Cmp) and node.op == "!=" else has)
    if isinstance(node, Cmp):
        return _OPS[node.op](t.column(node.column), pa.scalar(node.value))
    if isinstance(node, IsIn):
        return pc.is_in(t.column(node.column), pa.array(list(node.values)))
    if isinstance(node, Range):
        col = t.column(node.column)
        return pc.and_(pc.greater_equal(col, node.lo), pc.less_equal(col, node.hi))
    if isinstance(node, (And, Or)):
        out = pa.array(np.ones(n, dtype=bool) if isinstance(node, And) else np.zeros(n, dtype=bool))
        for item in node.items:
            out = (pc.and_kleene if isinstance(node, And) else pc.or_kleene)(out, _mask(item, t))
        return out
    if isinstance(node, Not):
        return pc.invert(_mask(node.item, t))
    raise ValidationError(f"{node!r} is an atom-level predicate; entry queries compare entry columns")


def query_entries(store: Any, where: str | None = None) -> pa.Table:
    """Rows of :func:`entry_table` matching ``where`` (all rows when omitted).

    Raises
    ------
    moldb.query.SelectionError
        Bad syntax or an unknown column, with the position of the offending token.
    """
    table = entry_table(store)
    if not where:
        return table
    node = parse(where, columns=ENTRY_COLUMNS, keywords={"entry": ("entry", "entry")})
    return table.filter(pc.fill_null(_mask(node, table), False))
