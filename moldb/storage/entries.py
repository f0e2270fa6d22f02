"""Assemble an entry's atom table and categories from its blocks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from moldb.schema.columns import ANISO_COLUMNS, COLUMN_BY_NAME, GROUPS
from moldb.schema.parsed import Category
from moldb.storage.backend import Backend
from moldb.storage.codec import decode_categories
from moldb.storage.groups import fetch, open_groups

__all__ = ["read_atom_table", "read_categories"]

_U_NAMES = [c.name for c in ANISO_COLUMNS]


def read_atom_table(
    backend: Backend, blocks: dict[str, int], columns: list[str] | None = None
) -> tuple[pa.Table, dict[str, np.ndarray], dict[str, int], list[str], dict[str, Any]]:
    """Read and decode the atom columns of one version in one storage query (two for chunked blocks).

    Parameters
    ----------
    backend : Backend
    blocks : dict[str, int]
        Column group → block id (from the version record).
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
    text : list of str
        Untyped ``_atom_site`` items (verbatim text columns).
    meta : dict
        ``atom_items`` and ``aniso_items`` of the source.
    """
    srcs = open_groups(backend, [blocks], GROUPS)[0]
    want = [src for src in srcs.values() if src.chunked and (columns is None or set(columns) & set(src.kinds()))]
    fetch(backend, [(src, None) for src in want])  # every chunk of the groups asked for, in one more query
    arrays: dict[str, pa.Array] = {}
    masks: dict[str, np.ndarray] = {}
    decimals: dict[str, int] = {}
    text: list[str] = []
    meta: dict[str, Any] = {}
    for g in GROUPS:
        src = srcs[g]
        if g == "topo":
            meta = src.meta  # item order of the source (the manifest keeps it for chunked blocks)
        if src.chunked and src not in want:
            continue
        values, m = src.read(columns)
        arrs, dec, txt = src.arrow(values, m)
        arrays.update(arrs)
        masks.update(m)
        decimals.update(dec)
        text.extend(txt)
    order = [i for i in meta.get("atom_items", []) if i in arrays]
    order += [c for c in _U_NAMES if c in arrays and c not in order]
    order += [c for c in arrays if c not in order and (c in COLUMN_BY_NAME or c in text)]
    return pa.table({c: arrays[c] for c in order}), masks, decimals, text, meta


def read_categories(backend: Backend, block: int, only: str | None = None) -> list[Category]:
    """Rebuild the verbatim categories of one ``cif`` block, in source order."""
    data = backend.read_blocks([block])
    cats, _ = decode_categories(data[block]["data"], only)
    return cats
