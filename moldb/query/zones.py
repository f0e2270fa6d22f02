"""Zone-map pruning: which zones (pages) of a chunked entry a plan can match, before any chunk is read.

Each chunked block's manifest (:class:`moldb.storage.chunks.Manifest`) keeps per zone —
each page of each chunk — the min / max of every numeric column and the codes present in
every string column with a small dictionary. :func:`plan_scope` turns a plan into one
boolean per zone (the executor then fetches only the chunks holding kept zones):

* ``chain A`` / ``resname ZN`` / ``element ZN`` — the zone's code set holds the value;
* ``resid 10-50`` / ``B_iso_or_equiv < 30`` — the zone's [min, max] allows it;
* ``box`` / ``within R of points`` — the zone's coordinate bounding box is close enough,
  and the grid index (:mod:`moldb.query.spatial`) has candidate rows in it;
* ``within R of <selection>`` — the same, around the ligand's atoms (found first, in the
  zones its own predicate allows);
* ``and`` / ``or`` combine; ``not`` and anything unknown keep every zone.

The answer is conservative (a kept zone may hold no match), never the other way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from moldb.query.nodes import XYZ, And, Box, Cmp, Entry, IsIn, Node, Or, Range, Rows, Within
from moldb.schema.columns import COLUMN_BY_NAME
from moldb.storage.chunks import Manifest

__all__ = ["plan_scope"]

PointsOf = Callable[[Within], np.ndarray]


def plan_scope(node: Node, ctx: Any, points_of: PointsOf) -> np.ndarray | None:
    """One bool per zone of ``ctx.bounds`` (None when the entry has no chunked group).

    ``points_of(within_node)`` gives the coordinates of the atoms a ``within … of`` node is
    measured from.
    """
    bounds = ctx.bounds
    if bounds is None:
        return None
    return _scope(node, ctx, bounds, points_of)


def _manifest(ctx: Any, group: str, bounds: np.ndarray) -> Manifest | None:
    src = ctx.sources.get(group)
    if src is None or not src.chunked or not np.array_equal(src.zbounds, bounds):
        return None
    m: Manifest | None = src.manifest
    return m


def _scope(node: Node, ctx: Any, bounds: np.ndarray, points_of: PointsOf) -> np.ndarray:
    k = bounds.size - 1
    if isinstance(node, (Cmp, IsIn, Range)):
        return _column(node, ctx, bounds)
    if isinstance(node, And):
        out = np.ones(k, dtype=bool)
        for item in sorted(node.items, key=lambda i: isinstance(i, Within)):  # cheap ones first
            out &= _scope(item, ctx, bounds, points_of)
            if not out.any():
                break
        return out
    if isinstance(node, Or):
        out = np.zeros(k, dtype=bool)
        for item in node.items:
            out |= _scope(item, ctx, bounds, points_of)
        return out
    if isinstance(node, Entry):
        return np.full(k, ctx.entry in node.ids)
    if isinstance(node, Rows):
        raw = node.of(ctx.entry)
        out = np.zeros(k, dtype=bool)
        if raw is not None:
            rows = np.frombuffer(raw, dtype=np.int64)
            out[np.searchsorted(bounds, rows[(rows >= 0) & (rows < bounds[-1])], "right") - 1] = True
        return out
    if isinstance(node, Box):
        lo, hi = np.asarray(node.lo, dtype=np.float64), np.asarray(node.hi, dtype=np.float64)
        return _spatial(ctx, bounds, lo, hi, None, 0.0)
    if isinstance(node, Within):
        pts = points_of(node) if node.of is not None else np.asarray(node.points, dtype=np.float64).reshape(-1, 3)
        if not len(pts):
            return np.zeros(k, dtype=bool)
        r = node.radius
        return _spatial(ctx, bounds, pts.min(0) - r, pts.max(0) + r, pts, r)
    return np.ones(k, dtype=bool)  # all, not, anything else: every chunk


def _column(node: Cmp | IsIn | Range, ctx: Any, bounds: np.ndarray) -> np.ndarray:
    k = bounds.size - 1
    spec = COLUMN_BY_NAME.get(node.column)
    man = _manifest(ctx, spec.group if spec is not None else "topo", bounds)
    if man is None:
        return np.ones(k, dtype=bool)
    if node.column in man.sets and not isinstance(node, Range) and (isinstance(node, IsIn) or node.op in ("==", "!=")):
        sets = man.sets[node.column]
        if isinstance(node, Cmp) and node.op == "!=":
            c = man.code(node.column, str(node.value))
            return np.array([s.size > 1 or (s.size == 1 and int(s[0]) != c) for s in sets], dtype=bool)
        vals = node.values if isinstance(node, IsIn) else (node.value,)
        codes = np.array([c for v in vals if (c := man.code(node.column, str(v))) is not None], dtype=np.int64)
        if not codes.size:
            return np.zeros(k, dtype=bool)
        return man.holds(node.column, codes)
    if node.column not in man.lo:
        return np.ones(k, dtype=bool)
    lo, hi = man.lo[node.column], man.hi[node.column]  # NaN (all null) never matches
    try:
        if isinstance(node, Range):
            return (hi >= node.lo) & (lo <= node.hi)
        if isinstance(node, IsIn):
            vs = [float(v) for v in node.values]
            return np.any([(lo <= v) & (v <= hi) for v in vs], axis=0) if vs else np.zeros(k, dtype=bool)
        v = float(node.value)
    except (TypeError, ValueError):
        return np.ones(k, dtype=bool)
    ops = {"==": (lo <= v) & (v <= hi), "!=": ~((lo == v) & (hi == v)) & ~np.isnan(lo),
           "<": lo < v, "<=": lo <= v, ">": hi > v, ">=": hi >= v}
    out: np.ndarray = ops[node.op]
    return out


def _spatial(ctx: Any, bounds: np.ndarray, lo: np.ndarray, hi: np.ndarray, pts: np.ndarray | None,
             r: float) -> np.ndarray:
    """Zones whose bounding box meets the box (or lies within ``r`` of a point) and that hold index candidates."""
    k = bounds.size - 1
    man = _manifest(ctx, "xyz", bounds)
    out = np.ones(k, dtype=bool)
    if man is not None and all(c in man.lo for c in XYZ):
        blo = np.column_stack([man.lo[c] for c in XYZ])
        bhi = np.column_stack([man.hi[c] for c in XYZ])
        out = np.all((bhi >= lo) & (blo <= hi), axis=1)
        if pts is not None and out.any() and len(pts) * k <= 2_000_000:
            idx = np.flatnonzero(out)
            gap = np.maximum(np.maximum(blo[idx, None, :] - pts[None], pts[None] - bhi[idx, None, :]), 0.0)
            out[idx] = ((gap ** 2).sum(-1) <= r * r).any(1)
    if out.any():
        rows = ctx.candidates(lo, hi, pts, r)
        if rows is not None:
            hit = np.zeros(k, dtype=bool)
            hit[np.unique(np.searchsorted(bounds, rows, "right") - 1)] = True
            out &= hit
    return out
