"""``EntryContext``: one entry version's columns, decoded on demand over a scope of rows.

The context holds a :class:`~moldb.storage.groups.GroupSource` per column group. For a
chunked entry (``moldb.storage.chunks``) the executor first narrows the context to a
**scope** — the zones (pages of its chunks) whose zone maps say the plan may match
(:mod:`moldb.query.zones`) — and predicates then decode only those pages: masks are over the scope's rows
("local" rows), and :meth:`EntryContext.global_rows` maps them back. Without a scope
(plain blocks, or nothing to prune) local rows are the entry's rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from moldb.query.nodes import XYZ
from moldb.query.spatial import candidates, point_ranges
from moldb.schema.columns import COLUMN_BY_NAME
from moldb.storage.groups import GroupSource, fetch, open_groups

__all__ = ["EntryContext"]


class EntryContext:
    """Columns of one entry version over a scope of rows, decoded on demand.

    Parameters
    ----------
    backend : Backend
    entry : str
    blocks : dict[str, int]
        Column group → block id.
    n : int
        Rows (atoms) of the entry.
    sources : dict[str, GroupSource]
        Groups already opened; others are opened (fetched) when needed.
    """

    def __init__(self, backend: Any, entry: str, blocks: dict[str, int], n: int,
                 sources: dict[str, GroupSource]) -> None:
        self.backend, self.entry, self.blocks = backend, entry, blocks
        self.total = n
        self.n = n
        self.sources = dict(sources)
        self.scope: np.ndarray | None = None  # zone indices (of :attr:`bounds`) the rows come from
        self._rows: np.ndarray | None = None  # global row of each local row, built when first asked for
        self._starts = np.zeros(0, dtype=np.int64)  # global first row of each scope zone
        self._offsets = np.zeros(1, dtype=np.int64)  # local first row of each scope zone, and the total
        self.values: dict[str, Any] = {}
        self.nulls: dict[str, np.ndarray | None] = {}
        self.decoded: set[str] = set()  # groups whose columns were decoded over the scope
        self.known_rows = np.zeros(0, dtype=np.int64)  # global rows whose coordinates the index returned
        self.known_xyz = np.zeros((0, 3))
        self.index_reads = 0
        self.index_rows: dict[Any, np.ndarray | None] = {}  # candidate rows of grid-index lookups, by query
        self.points: dict[Any, np.ndarray] = {}  # ligand coordinates of ``within … of`` nodes, by node

    # -- sources and scope ----------------------------------------------------------------------------
    @property
    def blobs(self) -> dict[str, GroupSource]:
        """Groups whose columns were decoded over the scope (coordinates read for the grid index's
        candidate rows do not count)."""
        return {g: self.sources[g] for g in self.decoded}

    def source(self, group: str) -> GroupSource:
        """The source of ``group``, opened now (one query) if it was not prefetched."""
        if group not in self.sources:
            self.sources.update(open_groups(self.backend, [self.blocks], [group])[0])
        return self.sources[group]

    def open(self, groups: Iterable[str]) -> None:
        """Open the sources of ``groups`` not opened yet, in one query."""
        need = [g for g in groups if g not in self.sources and g in self.blocks]
        if need:
            self.sources.update(open_groups(self.backend, [self.blocks], need)[0])

    @property
    def bounds(self) -> np.ndarray | None:
        """Row bounds of the zones (pages) the scope refers to: the first chunked group's (None: not chunked)."""
        for g in ("topo", "xyz", "adp", "aniso"):
            src = self.sources.get(g)
            if src is not None and src.chunked:
                return src.zbounds
        return None

    def restrict(self, zones: np.ndarray) -> None:
        """Narrow the context to ``zones`` (indices of :attr:`bounds`); nothing decoded yet."""
        b = self.bounds
        assert b is not None and not self.values
        self.scope = np.asarray(zones, dtype=np.int64)
        self._starts = b[self.scope]
        self._offsets = np.r_[0, np.cumsum(b[self.scope + 1] - self._starts)].astype(np.int64)
        self._rows = None
        self.n = int(self._offsets[-1])

    @property
    def rows(self) -> np.ndarray | None:
        """Global row of each local row (None: no scope, local rows are the entry's rows)."""
        if self.scope is None:
            return None
        if self._rows is None:  # the zones' ranges, concatenated
            lens = np.diff(self._offsets)
            self._rows = np.arange(self.n, dtype=np.int64) + np.repeat(self._starts - self._offsets[:-1], lens)
        return self._rows

    def sibling(self, zones: np.ndarray | None) -> EntryContext:
        """A context on the same sources (and fetched chunks) with another scope."""
        other = EntryContext(self.backend, self.entry, self.blocks, self.total, self.sources)
        other.sources = self.sources  # shared: chunks fetched by either serve both
        other.index_rows, other.points = self.index_rows, self.points
        if zones is not None:
            other.restrict(zones)
        return other

    def _aligned(self, src: GroupSource) -> bool:
        b = self.bounds
        return src.chunked and b is not None and np.array_equal(src.zbounds, b)

    def _chunks_for(self, src: GroupSource) -> list[int] | None:
        """Chunks of ``src`` holding the scope's rows (None: all)."""
        if self.scope is None or not src.chunked:
            return None
        if self._aligned(src):
            return src.chunks_of_zones(self.scope.tolist())
        assert self.rows is not None
        return np.unique(src.chunks_of_rows(self.rows)).tolist()

    def prefetch(self, groups: Iterable[str]) -> None:
        """Fetch the scope's chunks of ``groups`` in one query."""
        groups = [g for g in groups if g in self.blocks]
        self.open(groups)
        fetch(self.backend, [(self.sources[g], self._chunks_for(self.sources[g])) for g in groups])

    def global_rows(self, mask: np.ndarray) -> np.ndarray:
        """Global row numbers of a local mask."""
        local = np.flatnonzero(mask)
        if self.scope is None:
            return local
        z = np.searchsorted(self._offsets, local, "right") - 1  # scope zone of each local row
        return self._starts[z] + (local - self._offsets[z])

    def local(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, ok)``: local position of each global row, and whether it is in scope."""
        if self.scope is None:
            return rows, np.ones(rows.size, dtype=bool)
        if not self.scope.size:
            return np.zeros(rows.size, dtype=np.int64), np.zeros(rows.size, dtype=bool)
        b = self.bounds
        assert b is not None
        zone = np.searchsorted(b, rows, "right") - 1
        p = np.minimum(np.searchsorted(self.scope, zone), self.scope.size - 1)  # position of the zone in the scope
        ok = self.scope[p] == zone
        return self._offsets[p] + (rows - self._starts[p]), ok

    # -- columns --------------------------------------------------------------------------------------
    def dictionary(self, column: str) -> list[str] | None:
        """The string dictionary of a ``topo`` column without decoding its codes (None: no such column)."""
        return self.source("topo").dictionary(column)

    def column(self, name: str) -> tuple[Any, np.ndarray | None]:
        """``(values, null mask)`` over the scope; strings as ``(codes, dictionary)``; missing: all null."""
        if name not in self.values:
            spec = COLUMN_BY_NAME.get(name)
            group = spec.group if spec is not None else "topo"
            vals: dict[str, Any] = {}
            masks: dict[str, np.ndarray] = {}
            if group in self.blocks:
                src = self.source(group)
                chunks = self._chunks_for(src)
                if src.chunked:
                    fetch(self.backend, [(src, chunks)])
                if self.scope is not None and self._aligned(src):
                    vals, masks = src.read_zones([name], self.scope.tolist())
                elif self.rows is not None:
                    vals, masks = src.take([name], self.rows)
                else:
                    vals, masks = src.read([name])
                self.decoded.add(group)
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
        """Coordinates of the scope's rows, (n, 3) float64 (decodes the ``xyz`` chunks)."""
        return np.column_stack([self.column(c)[0] for c in XYZ]).astype(np.float64, copy=False)

    def has_xyz(self) -> bool:
        """Whether the scope's coordinates are already decoded."""
        return all(c in self.values for c in XYZ)

    def candidates(self, lo: np.ndarray, hi: np.ndarray, points: np.ndarray | None, r: float
                   ) -> np.ndarray | None:
        """Rows of the grid cells meeting the box ``[lo, hi]`` (or the cubes ``points ± r``), from the
        ``xyz`` block's index; None without index. Kept per query: zone pruning and evaluation share it."""
        key = (lo.tobytes(), hi.tobytes(), None if points is None else points.tobytes(), r)
        if key not in self.index_rows:
            ranges = None if points is None else point_ranges(points, r)
            got = candidates(self.backend, self.blocks["xyz"], lo, hi, ranges) if "xyz" in self.blocks else None
            self.index_rows[key] = None if got is None else got[0]
        return self.index_rows[key]

    def coordinates(self, rows: np.ndarray) -> np.ndarray:
        """Coordinates at global ``rows`` (sorted): only the chunks and pages holding them."""
        src = self.source("xyz")
        if src.chunked:
            fetch(self.backend, [(src, src.chunks_holding(rows))])
        values, _ = src.take(list(XYZ), rows)
        return np.column_stack([values[c] for c in XYZ]).astype(np.float64, copy=False)
