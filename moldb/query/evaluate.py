"""Evaluate a plan node on one entry: vectorised masks over decoded columns, decoded lazily.

:class:`~moldb.query.context.EntryContext` holds the entry's column groups and decodes a
column only when a predicate asks for it (each column of a blob is compressed on its
own), over the context's scope of rows (the pages zone maps kept, for chunked entries).
Spatial leaves use the grid index (:mod:`moldb.query.spatial`) and decode the coordinates
of its candidate rows only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from moldb.query.context import EntryContext
from moldb.query.ligands import ligand_atoms
from moldb.query.nodes import All, And, Box, Cmp, Entry, IsIn, Node, Not, Or, Range, Rows, Within
from moldb.query.spatial import lookup, near
from moldb.query.zones import plan_scope
from moldb.schema.columns import COLUMN_BY_NAME

__all__ = ["EntryContext", "evaluate", "may_match", "scope_of", "within_points"]

_NUMPY_OPS = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
              ">=": np.greater_equal}


def scope_of(node: Node, ctx: EntryContext) -> np.ndarray | None:
    """Zones (pages) of a chunked entry ``node`` can match (one bool per zone; None: not chunked)."""
    return plan_scope(node, ctx, lambda w: within_points(w, ctx))


def within_points(node: Within, ctx: EntryContext) -> np.ndarray:
    """Coordinates of the atoms ``node.of`` selects (the ligand of a pocket query), found once per context.

    In a chunked entry the ligand is searched in the zones its own predicate allows, not
    in the context's scope (which may not hold it); its coordinates come from the grid
    index header (ligand atoms) when it has them, else from the pages holding its rows.
    """
    assert node.of is not None
    if node in ctx.points:
        return ctx.points[node]
    header = _index_header(ctx)
    lig = None if header is None or "topo" not in ctx.blocks else ligand_atoms(node.of, ctx.entry,
                                                                                ctx.blocks["topo"], header)
    if lig is not None:  # the ligand table of the grid index answered: no identifier read
        ctx.points[node] = lig[1]
        return lig[1]
    if ctx.bounds is None:
        rows = ctx.global_rows(evaluate(node.of, ctx))
    else:
        zones = scope_of(node.of, ctx)
        sub = ctx.sibling(None if zones is None else np.flatnonzero(zones))
        rows = sub.global_rows(evaluate(node.of, sub)) if sub.n else np.zeros(0, np.int64)
    points = None
    if rows.size and not ctx.has_xyz() and header is not None:
        # the ligand's coordinates from the index header: no decode of the entry's coordinates
        het_rows, het_xyz = header["het_rows"], header["het_xyz"]
        if het_rows.size:
            pos = np.searchsorted(het_rows, rows)
            if np.all(pos < het_rows.size) and np.array_equal(het_rows[np.minimum(pos, het_rows.size - 1)], rows):
                points = het_xyz[pos]
    if points is None:
        if not rows.size:
            points = np.zeros((0, 3))
        elif ctx.has_xyz() and ctx.scope is None:
            points = ctx.xyz()[rows]
        else:
            points = ctx.coordinates(rows)
    ctx.points[node] = points
    return points


def _index_header(ctx: EntryContext) -> dict[str, Any] | None:
    if "xyz" not in ctx.blocks or not ctx.backend.has_array("spatial"):
        return None
    probe = lookup(ctx.backend, ctx.blocks["xyz"], np.full(3, np.inf), np.full(3, -np.inf))
    return None if probe is None else probe[2]


def _from_index(ctx: EntryContext, lo: np.ndarray, hi: np.ndarray, points: np.ndarray | None, r: float
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """Candidate rows (global, in scope) and their coordinates from the grid index (None: no index)."""
    if ctx.has_xyz() or "xyz" not in ctx.blocks:
        return None
    rows = ctx.candidates(lo, hi, points, r)
    ctx.index_reads += 1
    if rows is None:
        return None
    if ctx.scope is not None:
        rows = rows[ctx.local(rows)[1]]  # outside the scope the plan cannot match
    xyz = ctx.coordinates(rows) if rows.size else np.zeros((0, 3))
    ctx.known_rows = np.r_[ctx.known_rows, rows]
    ctx.known_xyz = np.r_[ctx.known_xyz, xyz]
    return rows, xyz


_INDEXES: OrderedDict[int, tuple[list[str], dict[str, int]]] = OrderedDict()
_INDEXES_KEPT = 64


def _codes_of(dictionary: list[str], values: tuple[Any, ...]) -> np.ndarray:
    """Codes of ``values`` in ``dictionary``: a value -> code map kept per dictionary object (a chunked
    entry's dictionaries are the manifest's, the same list on every query)."""
    held = _INDEXES.get(id(dictionary))
    if held is None or held[0] is not dictionary:
        held = (dictionary, {s: i for i, s in enumerate(dictionary)})
        _INDEXES[id(dictionary)] = held
        while len(_INDEXES) > _INDEXES_KEPT:
            _INDEXES.popitem(last=False)
    index = held[1]
    return np.array(sorted({c for v in values if (c := index.get(str(v))) is not None}), dtype=np.int64)


def _string_mask(ctx: EntryContext, column: str, values: tuple[Any, ...], negate: bool) -> np.ndarray:
    (codes, dictionary), null = ctx.column(column)
    hit_codes = _codes_of(dictionary, values)
    if hit_codes.size == 1:
        mask = codes == hit_codes[0]
    else:
        mask = np.isin(codes, hit_codes) if hit_codes.size else np.zeros(ctx.n, dtype=bool)
    if negate:
        mask = ~mask
    return mask & ~null if null is not None else mask


def _numeric(ctx: EntryContext, column: str) -> tuple[np.ndarray, np.ndarray | None]:
    vals, null = ctx.column(column)
    if isinstance(vals, tuple):  # a string column compared numerically: compare parsed numbers
        codes, dictionary = vals
        nums = np.array([float(s) if s.lstrip("-").replace(".", "", 1).isdigit() else np.nan for s in dictionary])
        vals = nums[codes] if nums.size else np.zeros(ctx.n)
    return vals, null


def _spatial(ctx: EntryContext, lo: np.ndarray, hi: np.ndarray, points: np.ndarray | None, r: float) -> np.ndarray:
    mask = np.zeros(ctx.n, dtype=bool)
    got = _from_index(ctx, lo, hi, points, r)
    if got is None:
        xyz = ctx.xyz()
        inside = np.all((xyz >= lo) & (xyz <= hi), axis=1) if points is None else near(points, xyz, r)
        return inside
    rows, xyz = got
    inside = np.all((xyz >= lo) & (xyz <= hi), axis=1) if points is None else near(points, xyz, r)
    pos, ok = ctx.local(rows[inside])
    mask[pos[ok]] = True
    return mask


def _within_of(ctx: EntryContext, node: Within) -> np.ndarray:
    points = within_points(node, ctx)
    if not len(points):
        return np.zeros(ctx.n, dtype=bool)
    return _spatial(ctx, points.min(0) - node.radius, points.max(0) + node.radius, points, node.radius)


def evaluate(node: Node, ctx: EntryContext) -> np.ndarray:
    """Boolean mask (n,) of the rows of ``ctx`` matching ``node`` (SQL-like: a null never matches)."""
    if isinstance(node, All):
        return np.ones(ctx.n, dtype=bool)
    if isinstance(node, Entry):
        return np.full(ctx.n, ctx.entry in node.ids)
    if isinstance(node, Rows):
        mask = np.zeros(ctx.n, dtype=bool)
        raw = node.of(ctx.entry)
        if raw is not None:
            rows = np.frombuffer(raw, dtype=np.int64)
            pos, ok = ctx.local(np.unique(rows[(rows >= 0) & (rows < ctx.total)]))
            mask[pos[ok]] = True
        return mask
    if isinstance(node, (Cmp, IsIn)) and COLUMN_BY_NAME.get(node.column, None) is not None \
            and COLUMN_BY_NAME[node.column].kind == "str":
        if isinstance(node, IsIn):
            return _string_mask(ctx, node.column, node.values, False)
        return _string_mask(ctx, node.column, (node.value,), node.op == "!=")
    if isinstance(node, Cmp):
        vals, null = _numeric(ctx, node.column)
        m = _NUMPY_OPS[node.op](vals, float(node.value))
        return m & ~null if null is not None else m
    if isinstance(node, IsIn):
        vals, null = _numeric(ctx, node.column)
        m = np.isin(vals, np.array([float(v) for v in node.values]))
        return m & ~null if null is not None else m
    if isinstance(node, Range):
        vals, null = _numeric(ctx, node.column)
        m = (vals >= node.lo) & (vals <= node.hi)
        return m & ~null if null is not None else m
    if isinstance(node, And):
        mask = np.ones(ctx.n, dtype=bool)
        for item in sorted(node.items, key=lambda i: isinstance(i, (Within, Box))):  # cheap predicates first
            mask &= evaluate(item, ctx)
            if not mask.any():
                break
        return mask
    if isinstance(node, Or):
        mask = np.zeros(ctx.n, dtype=bool)
        for item in node.items:
            mask |= evaluate(item, ctx)
        return mask
    if isinstance(node, Not):
        return ~evaluate(node.item, ctx)
    if isinstance(node, Box):
        lo, hi = np.asarray(node.lo, dtype=np.float64), np.asarray(node.hi, dtype=np.float64)
        return _spatial(ctx, lo, hi, None, 0.0)
    if isinstance(node, Within):
        if node.of is not None:
            return _within_of(ctx, node)
        pts = np.asarray(node.points, dtype=np.float64).reshape(-1, 3)
        if pts.size == 0:
            return np.zeros(ctx.n, dtype=bool)
        return _spatial(ctx, pts.min(0) - node.radius, pts.max(0) + node.radius, pts, node.radius)
    raise TypeError(f"not a plan node: {node!r}")


def may_match(node: Node, ctx: EntryContext) -> bool:
    """False only when the string dictionaries prove no row can match (``resname HEM`` on an entry
    without HEM); decodes no codes."""
    if isinstance(node, (Cmp, IsIn)) and (spec := COLUMN_BY_NAME.get(node.column)) is not None \
            and spec.kind == "str" and spec.group == "topo":
        if isinstance(node, Cmp) and node.op != "==":
            return True
        d = ctx.dictionary(node.column)
        values = node.values if isinstance(node, IsIn) else (node.value,)
        return d is not None and bool({str(v) for v in values} & set(d))
    if isinstance(node, Entry):
        return ctx.entry in node.ids
    if isinstance(node, Rows):
        return node.of(ctx.entry) is not None
    if isinstance(node, And):
        return all(may_match(i, ctx) for i in node.items)
    if isinstance(node, Or):
        return any(may_match(i, ctx) for i in node.items)
    if isinstance(node, Within) and node.of is not None:
        return may_match(node.of, ctx)
    return True
