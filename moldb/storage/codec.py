"""Encode Arrow atom columns into block cells and back (pure numpy).

Per block and column the meta JSON records what the integer cells mean:
``{"dict": [...]}`` for a string column (cells are codes into that list),
``{"dec": d}`` for a float column (cells are ``round(x * 10**d)``), ``{}`` for
ints; ``"nulls": true`` when the column has a null-kind mask.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ValidationError
from moldb.schema.columns import ANISO_COLUMNS, ATOM_COLUMNS, AtomColumn
from moldb.schema.parsed import MASK_QUESTION, MASK_VALUE

__all__ = ["decode_group", "encode_group", "group_columns"]

_MAX_SCALED = 2**62


def group_columns(group: str) -> list[AtomColumn]:
    """Typed columns stored in ``group``, in table order."""
    return [c for c in ATOM_COLUMNS + ANISO_COLUMNS if c.group == group]


def _codes(arr: pa.Array) -> tuple[np.ndarray, list[str]]:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    idx = arr.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return idx, [str(v) for v in arr.dictionary.to_pylist()]


def encode_group(
    group: str,
    table: pa.Table,
    masks: dict[str, np.ndarray],
    decimals: dict[str, int],
) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """Encode the columns of ``group`` present in ``table``.

    Parameters
    ----------
    group : str
        ``"topo"``, ``"xyz"`` or ``"adp"``.
    table : pyarrow.Table
        Typed atom columns, length ``n``.
    masks : dict[str, numpy.ndarray]
        Null-kind masks, ``uint8`` shape ``(n,)``.
    decimals : dict[str, int]
        Decimals of float columns.

    Returns
    -------
    cells : dict[str, numpy.ndarray]
        One array per TileDB attribute (absent columns filled with zeros).
    meta : dict
        Per-column decoding information.
    content_hash : str
        SHA-256 over cells and meta (equal blocks can be shared across versions).
    """
    from moldb.storage.arrays import mask_attr

    n = table.num_rows
    cells: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"n": n, "cols": {}}
    h = hashlib.sha256()
    for col in group_columns(group):
        present = col.name in table.column_names
        mask = masks.get(col.name)
        if present:
            arr = table.column(col.name)
            if mask is None and arr.null_count:
                mask = np.where(arr.is_null().to_numpy(zero_copy_only=False), MASK_QUESTION, MASK_VALUE
                                ).astype(np.uint8)
            info: dict[str, Any] = {}
            if col.kind == "str":
                values, info["dict"] = _codes(arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr)
            elif col.kind == "int":
                values = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            else:
                dec = int(decimals.get(col.name, col.decimals))
                raw = arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
                scaled = np.rint(raw * 10.0**dec)
                if not np.all(np.isfinite(scaled)) or np.abs(scaled).max(initial=0) >= _MAX_SCALED:
                    raise ValidationError(
                        f"column {col.name}: values out of range for {dec} decimals "
                        f"(max |x| = {np.abs(raw).max():g}); fix the file's {col.name} values"
                    )
                values = scaled.astype(np.int64)
                info["dec"] = dec
            if mask is not None and mask.any():
                info["nulls"] = True
            meta["cols"][col.name] = info
        else:
            values = np.zeros(n, dtype=np.int32 if col.kind == "str" else np.int64)
        m = mask if (present and mask is not None) else np.zeros(n, dtype=np.uint8)
        cells[col.name] = values
        cells[mask_attr(col.name)] = m.astype(np.uint8, copy=False)
        if present:
            h.update(col.name.encode())
            h.update(np.ascontiguousarray(values).tobytes())
            h.update(np.ascontiguousarray(m).tobytes())
    h.update(repr(sorted((k, sorted(v.items())) for k, v in meta["cols"].items())).encode())
    return cells, meta, h.hexdigest()


def decode_group(
    cells: dict[str, np.ndarray], meta: dict[str, Any], columns: list[str] | None = None
) -> tuple[dict[str, pa.Array], dict[str, np.ndarray]]:
    """Decode block cells into Arrow columns.

    Parameters
    ----------
    cells : dict[str, numpy.ndarray]
        Attribute arrays as read (mask attributes only for columns with nulls).
    meta : dict
        The block meta written by :func:`encode_group`.
    columns : list of str, optional
        Subset to decode (default: all present).

    Returns
    -------
    arrays : dict[str, pyarrow.Array]
    masks : dict[str, numpy.ndarray]
        Null-kind masks of the decoded columns that have nulls.
    """
    from moldb.storage.arrays import mask_attr

    out: dict[str, pa.Array] = {}
    masks: dict[str, np.ndarray] = {}
    for name, info in meta["cols"].items():
        if columns is not None and name not in columns:
            continue
        values = cells[name]
        null = None
        if info.get("nulls"):
            m = cells[mask_attr(name)]
            masks[name] = m
            null = m != MASK_VALUE
        if "dict" in info:
            idx = pa.array(values.astype(np.int32, copy=False), mask=null)
            out[name] = pa.DictionaryArray.from_arrays(idx, pa.array(info["dict"], type=pa.string()))
        elif "dec" in info:
            # division by an exact power of ten gives the double nearest the printed decimal,
            # i.e. exactly what parsing the source text gives
            out[name] = pa.array(values / (10.0 ** info["dec"]), mask=null)
        else:
            out[name] = pa.array(values.astype(np.int64, copy=False), mask=null)
    return out, masks
