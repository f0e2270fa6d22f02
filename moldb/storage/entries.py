"""Assemble an entry's atom table and categories from its blocks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from moldb.schema.columns import ANISO_COLUMNS, COLUMN_BY_NAME, GROUPS
from moldb.schema.parsed import Category
from moldb.storage.backend import Backend
from moldb.storage.codec import decode_categories, decode_group

__all__ = ["read_atom_table", "read_categories"]

_U_NAMES = [c.name for c in ANISO_COLUMNS]


def read_atom_table(
    backend: Backend, blocks: dict[str, int], columns: list[str] | None = None
) -> tuple[pa.Table, dict[str, np.ndarray], dict[str, int], list[str], dict[str, Any]]:
    """Read and decode the atom columns of one version in a single storage query.

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
    data = backend.read_blocks([blocks[g] for g in GROUPS])
    arrays: dict[str, pa.Array] = {}
    masks: dict[str, np.ndarray] = {}
    decimals: dict[str, int] = {}
    text: list[str] = []
    meta: dict[str, Any] = {}
    for g in GROUPS:
        arrs, m, dec, txt, bmeta = decode_group(data[blocks[g]]["data"], columns)
        arrays.update(arrs)
        masks.update(m)
        decimals.update(dec)
        text.extend(txt)
        if g == "topo":
            meta = bmeta
    order = [i for i in meta.get("atom_items", []) if i in arrays]
    order += [c for c in _U_NAMES if c in arrays and c not in order]
    order += [c for c in arrays if c not in order and (c in COLUMN_BY_NAME or c in text)]
    return pa.table({c: arrays[c] for c in order}), masks, decimals, text, meta


def read_categories(backend: Backend, block: int, only: str | None = None) -> list[Category]:
    """Rebuild the verbatim categories of one ``cif`` block, in source order."""
    data = backend.read_blocks([block])
    cats, _ = decode_categories(data[block]["data"], only)
    return cats
