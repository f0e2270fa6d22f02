"""Evaluate a plan node on one entry: vectorised masks over decoded columns, decoded lazily.

:class:`EntryContext` holds the entry's fetched blobs and decodes a column only when a
predicate asks for it (each column of a blob is compressed on its own). Spatial leaves
use the grid index (:mod:`moldb.query.spatial`) and decode no coordinates when the
index can answer.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pyarrow as pa

from moldb.query.nodes import XYZ, All, And, Box, Cmp, Entry, IsIn, Node, Not, Or, Range, Rows, Within
from moldb.query.spatial import lookup, near, point_ranges
from moldb.schema.columns import COLUMN_BY_NAME
from moldb.storage.blob import read_blob_columns, read_header

__all__ = ["EntryContext", "evaluate", "may_match"]

_ZSTD = pa.Codec("zstd")
_NUMPY_OPS = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
              ">=": np.greater_equal}


class EntryContext:
    """Columns of one entry version, decoded on demand.

    Parameters
    ----------
    backend : Backend
    entry : str
    blocks : dict[str, int]
        Column group → block id.
    n : int
        Rows (atoms).
    blobs : dict[str, bytes]
        Blobs already fetched, by group; others are fetched when needed.
    """

    def __init__(self, backend: Any, entry: str, blocks: dict[str, int], n: int, blobs: dict[str, bytes]) -> None:
        self.backend, self.entry, self.blocks, self.n = backend, entry, blocks, n
        self.blobs = dict(blobs)
        self.values: dict[str, Any] = {}
        self.nulls: dict[str, np.ndarray | None] = {}
        self.known_rows = np.zeros(0, dtype=np.int64)  # rows whose coordinates the grid index returned
        self.known_xyz = np.zeros((0, 3))
        self.index_reads = 0

    def blob(self, group: str) -> bytes:
        """The blob of ``group``, fetched now if it was not prefetched."""
        if group not in self.blobs:
            b = self.blocks[group]
            self.blobs[group] = self.backend.read_blocks([b])[b]["data"]
        return self.blobs[group]

    def dictionary(self, column: str) -> list[str] | None:
        """The string dictionary of a ``topo`` column without decoding its codes (None: no such column)."""
        blob = self.blob("topo")
        header, base = read_header(blob)
        for col in header["cols"]:
            if col["name"] == column and "dict" in col:
                off, clen, ulen = col["dict"]
                raw = _ZSTD.decompress(memoryview(blob)[base + off: base + off + clen], decompressed_size=ulen,
                                       asbytes=True)
                return list(msgpack.unpackb(raw, raw=False))
        return None

    def column(self, name: str) -> tuple[Any, np.ndarray | None]:
        """``(values, null mask)``; strings as ``(codes, dictionary)``; a missing column is all null."""
        if name not in self.values:
            spec = COLUMN_BY_NAME.get(name)
            group = spec.group if spec is not None else "topo"
            vals, masks, _, _ = read_blob_columns(self.blob(group), [name]) if group in self.blocks else ({}, {}, 0, 0)
            if name in vals:
                self.values[name] = vals[name]
                m = masks.get(name)
                self.nulls[name] = None if m is None else m != 0
            else:
                kind = spec.kind if spec is not None else "str"
                self.values[name] = (np.zeros(self.n, np.uint8), [""]) if kind == "str" else np.zeros(self.n)
                self.nulls[name] = np.ones(self.n, dtype=bool)
        return self.values[name], self.nulls[name]

    def xyz(self) -> np.ndarray:
        """All coordinates, (n, 3) float64 (decodes the ``xyz`` block)."""
        return np.column_stack([self.column(c)[0] for c in XYZ]).astype(np.float64, copy=False)

    def has_xyz(self) -> bool:
        """Whether the coordinates are already decoded."""
        return all(c in self.values for c in XYZ)

    def from_index(self, lo: np.ndarray, hi: np.ndarray, ranges: list[tuple[int, int]] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
        """Candidate rows and coordinates from the grid index (None when the block has no index)."""
        if self.has_xyz():
            return None
        got = lookup(self.backend, self.blocks["xyz"], lo, hi, ranges)
        self.index_reads += 1
        if got is not None:
            self.known_rows = np.r_[self.known_rows, got[0]]
            self.known_xyz = np.r_[self.known_xyz, got[1]]
        return got


def _string_mask(ctx: EntryContext, column: str, values: tuple[Any, ...], negate: bool) -> np.ndarray:
    (codes, dictionary), null = ctx.column(column)
    want = {str(v) for v in values}
    hit_codes = np.array([i for i, s in enumerate(dictionary) if s in want], dtype=np.int64)
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
    got = ctx.from_index(lo, hi, None if points is None else point_ranges(points, r))
    rows, xyz = (got[0], got[1]) if got is not None else (np.arange(ctx.n), ctx.xyz())
    inside = np.all((xyz >= lo) & (xyz <= hi), axis=1) if points is None else near(points, xyz, r)
    mask[rows[inside]] = True
    return mask


def _within_of(ctx: EntryContext, node: Within) -> np.ndarray:
    assert node.of is not None
    of = evaluate(node.of, ctx)
    if not of.any():
        return np.zeros(ctx.n, dtype=bool)
    of_rows = np.flatnonzero(of)
    points = None
    if not ctx.has_xyz() and ctx.backend.has_array("spatial"):
        # the ligand's coordinates from the index header: no decode of the entry's coordinates
        probe = lookup(ctx.backend, ctx.blocks["xyz"], np.full(3, np.inf), np.full(3, -np.inf))
        if probe is not None:
            het_rows, het_xyz = probe[2]["het_rows"], probe[2]["het_xyz"]
            pos = np.searchsorted(het_rows, of_rows)
            if np.all(pos < het_rows.size) and np.array_equal(het_rows[np.minimum(pos, het_rows.size - 1)], of_rows):
                points = het_xyz[pos]
    if points is None:
        points = ctx.xyz()[of_rows]
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
            mask[rows[rows < ctx.n]] = True
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
