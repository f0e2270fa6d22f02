"""Assemble an entry's atom table and categories from its blocks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from moldb.schema.columns import ANISO_COLUMNS, COLUMN_BY_NAME, GROUPS
from moldb.schema.parsed import MASK_VALUE, Category
from moldb.storage.backend import Backend
from moldb.storage.codec import decode_group

__all__ = ["read_atom_table", "read_categories"]

_U_NAMES = [c.name for c in ANISO_COLUMNS]


def read_atom_table(
    backend: Backend,
    blocks: dict[str, int],
    metas: dict[int, dict[str, Any]],
    columns: list[str] | None = None,
) -> tuple[pa.Table, dict[str, np.ndarray], dict[str, int]]:
    """Read and decode the atom columns of one version.

    Parameters
    ----------
    backend : Backend
    blocks : dict[str, int]
        Column group → block id (from the version record).
    metas : dict[int, dict]
        Block metadata as returned by :meth:`Backend.read_block_meta`.
    columns : list of str, optional
        Only these columns (default: every column, typed and verbatim text items).

    Returns
    -------
    table : pyarrow.Table
        Columns in source item order, then ``U11`` … ``U23``.
    masks : dict[str, numpy.ndarray]
        Null-kind masks of columns with nulls.
    decimals : dict[str, int]
        Decimals of the float columns.
    """
    arrays: dict[str, pa.Array] = {}
    masks: dict[str, np.ndarray] = {}
    decimals: dict[str, int] = {}
    for g in GROUPS:
        meta = metas[blocks[g]]["meta"]
        wanted = [c for c in meta["cols"] if columns is None or c in columns]
        if not wanted:
            continue
        cells = backend.read_atoms(g, blocks[g], meta, wanted)
        arrs, m = decode_group(cells, meta, wanted)
        arrays.update(arrs)
        masks.update(m)
        decimals.update({k: v["dec"] for k, v in meta["cols"].items() if "dec" in v and k in arrs})
    cif_meta = metas[blocks["cif"]]["meta"]
    text_items: list[str] = next((items for name, items, _ in cif_meta["categories"] if name == "atom_site"), [])
    text_items = [i for i in text_items if columns is None or i in columns]
    if text_items:
        cat = read_categories(backend, blocks["cif"], {"categories": [
            c for c in cif_meta["categories"] if c[0] == "atom_site"]}, only="atom_site")[0]
        for item in text_items:
            arrays[item] = cat.table.column(item).combine_chunks().dictionary_encode()
            if item in cat.masks:
                masks[item] = cat.masks[item]
    order = [i for i in cif_meta.get("atom_items", []) if i in arrays]
    order += [c for c in _U_NAMES if c in arrays and c not in order]
    order += [c for c in arrays if c not in order and c in COLUMN_BY_NAME]
    return pa.table({c: arrays[c] for c in order}), masks, decimals


def read_categories(backend: Backend, block: int, meta: dict[str, Any], only: str | None = None
                    ) -> list[Category]:
    """Rebuild the verbatim categories of one ``cif`` block, in source order."""
    data = backend.read_cif(block, category=only)
    values = data["value"]
    masks = data["mask"]
    # Cells come back in global order: sorted by (category, item, row); find each run once.
    starts: dict[str, int] = {}
    if len(values):
        keys = np.char.add(np.char.add(np.asarray(data["category"]).astype("S"), b"\x1f"),
                           np.asarray(data["item"]).astype("S"))
        change = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        starts = {keys[i].decode(): int(i) for i in change}
    out = []
    for name, item_names, n in meta["categories"]:
        if only is not None and name != only:
            continue
        cols: dict[str, pa.Array] = {}
        cmasks: dict[str, np.ndarray] = {}
        for item in item_names:
            s = starts.get(f"{name}\x1f{item}")
            if s is None:
                cols[item] = pa.nulls(n, pa.string())
                continue
            m = np.asarray(masks[s:s + n], dtype=np.uint8)
            vals = values[s:s + n]
            null = m != MASK_VALUE
            cols[item] = pa.array([None if null[i] else vals[i] for i in range(n)], type=pa.string())
            if null.any():
                cmasks[item] = m
        out.append(Category(name, pa.table(cols) if cols else pa.table({}), cmasks))
    return out
