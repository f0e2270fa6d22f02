"""The selected rows of one entry as an Arrow table (``Selection.to_arrow`` / ``batches`` / ``to_numpy``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from moldb.query.context import EntryContext
from moldb.query.nodes import XYZ
from moldb.schema.columns import COLUMN_BY_NAME, GROUPS
from moldb.storage.groups import fetch

__all__ = ["KEEP_CHUNKS", "output_groups", "output_table"]

KEEP_CHUNKS = 8  # chunk blobs a context keeps per group while streaming


def output_groups(cols: Sequence[str] | None) -> list[str]:
    """Column groups holding ``cols`` (all groups for None)."""
    if cols is None:
        return list(GROUPS)
    return [g for g in GROUPS if any((c not in COLUMN_BY_NAME and g == "topo")
                                     or (c in COLUMN_BY_NAME and COLUMN_BY_NAME[c].group == g) for c in cols)]


def output_table(ctx: EntryContext, rows: np.ndarray, cols: Sequence[str] | None) -> pa.Table:
    """The selected rows of one entry, with ``entry`` first, then the atom columns asked for.

    Chunked groups decode only the chunks and pages holding ``rows``; the chunks of every
    group are fetched in one query.
    """
    want = None if cols is None else [c for c in cols if c != "entry"]
    arrays: dict[str, pa.Array] = {}
    order: list[str] = []
    korder = np.argsort(ctx.known_rows, kind="stable")
    kpos = np.minimum(np.searchsorted(ctx.known_rows[korder], rows), max(ctx.known_rows.size - 1, 0))
    use_index = not ctx.has_xyz() and ctx.known_rows.size and bool(np.all(ctx.known_rows[korder][kpos] == rows))
    gcols: dict[str, list[str] | None] = {}
    for g in GROUPS:
        gc = None if want is None else [c for c in want if COLUMN_BY_NAME.get(c, None) is None
                                        or COLUMN_BY_NAME[c].group == g]
        if g == "xyz" and use_index and (gc is None or set(gc) <= set(XYZ)):
            pos = korder[kpos]
            for i, c in enumerate(XYZ):
                if gc is None or c in gc:
                    arrays[c] = pa.array(ctx.known_xyz[pos, i])
            continue
        if gc != [] and g in ctx.blocks:
            gcols[g] = gc
    ctx.open(gcols)
    chunked = {g: ctx.sources[g].chunks_holding(rows) for g in gcols if ctx.sources[g].chunked}
    fetch(ctx.backend, [(ctx.sources[g], k) for g, k in chunked.items()])
    for name, gc in gcols.items():
        src = ctx.sources[name]
        values, masks = src.take(gc, rows)
        arrs, _, _ = src.arrow(values, masks)
        arrays.update(arrs)
        if name == "topo":
            order = list(src.meta.get("atom_items", []))
        if name in chunked and len(src.blobs) > KEEP_CHUNKS:
            src.drop(chunked[name])  # streaming: keep only the chunks of this batch
    names = [c for c in (want if want is not None else order) if c in arrays]
    names += [c for c in arrays if c not in names]
    entry = pa.repeat(pa.scalar(ctx.entry, type=pa.string()), rows.size)
    return pa.table({"entry": entry, **{c: arrays[c] for c in names}})
