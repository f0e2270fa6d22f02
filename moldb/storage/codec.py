"""Encode an entry's column groups into block blobs and back.

Groups: ``topo`` (identifier columns plus any untyped ``_atom_site`` items, kept
as text), ``xyz`` (coordinates), ``adp`` (occupancy, B), ``aniso`` (U), ``cif`` (every other
category, verbatim). See :mod:`moldb.storage.blob` for the encodings.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa

from moldb.schema.columns import ANISO_COLUMNS, ATOM_COLUMNS, AtomColumn
from moldb.schema.parsed import MASK_QUESTION, MASK_VALUE, Category
from moldb.storage.blob import BlobWriter, read_blob_columns

__all__ = ["decode_categories", "decode_group", "encode_categories", "encode_group", "group_columns"]


def group_columns(group: str) -> list[AtomColumn]:
    """Typed columns stored in ``group``, in table order."""
    return [c for c in ATOM_COLUMNS + ANISO_COLUMNS if c.group == group]


def _dict_codes(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    idx = arr.indices.fill_null(0).to_numpy(zero_copy_only=False)
    return idx, [str(v) for v in arr.dictionary.to_pylist()]


def _null_mask(arr: pa.Array | pa.ChunkedArray, mask: np.ndarray | None) -> np.ndarray | None:
    if mask is not None:
        return mask if mask.any() else None
    if arr.null_count:
        return np.where(arr.is_null().to_numpy(zero_copy_only=False), MASK_QUESTION, MASK_VALUE).astype(np.uint8)
    return None


def encode_group(
    group: str,
    table: pa.Table,
    masks: dict[str, np.ndarray],
    decimals: dict[str, int],
    text: dict[str, tuple[pa.Array, np.ndarray | None]] | None = None,
    meta: dict[str, Any] | None = None,
) -> tuple[bytes, str]:
    """Encode the columns of ``group`` present in ``table`` into one blob.

    Parameters
    ----------
    group : {"topo", "xyz", "adp", "aniso"}
    table : pyarrow.Table
        Typed atom columns, length ``n``.
    masks : dict[str, numpy.ndarray]
        Null-kind masks (``uint8``, shape ``(n,)``).
    decimals : dict[str, int]
        Decimals of float columns.
    text : dict, optional
        Untyped ``_atom_site`` items (string array, mask) stored in ``topo``.
    meta : dict, optional
        Small entry-level data kept in the blob header (``atom_items`` ...).

    Returns
    -------
    blob : bytes
    content_hash : str
        SHA-256 of the blob (equal content gives equal blobs).
    """
    w = BlobWriter(table.num_rows)
    for col in group_columns(group):
        if col.name not in table.column_names:
            continue
        arr = table.column(col.name)
        mask = _null_mask(arr, masks.get(col.name))
        if col.kind == "str":
            codes, dictionary = _dict_codes(arr)
            w.add_strings(col.name, codes, dictionary)
        elif col.kind == "int":
            w.add_ints(col.name, "int", arr.fill_null(0).to_numpy(zero_copy_only=False))
        else:
            raw = arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            w.add_floats(col.name, raw, int(decimals.get(col.name, col.decimals)))
        if mask is not None:
            w.add_mask(col.name, mask)
    for name, (arr, mask) in (text or {}).items():
        codes, dictionary = _dict_codes(arr)
        w.add_strings(name, codes, dictionary, kind="text")
        if mask is not None and mask.any():
            w.add_mask(name, mask)
    blob = w.finish(meta)
    return blob, hashlib.sha256(blob).hexdigest()


def decode_group(blob: bytes, columns: list[str] | None = None
                 ) -> tuple[dict[str, pa.Array], dict[str, np.ndarray], dict[str, int], list[str], dict[str, Any]]:
    """Decode a group blob into Arrow columns.

    Returns
    -------
    arrays : dict[str, pyarrow.Array]
        Strings as ``dictionary<int32, string>``, ints ``int64``, floats ``float64``.
    masks : dict[str, numpy.ndarray]
        Null-kind masks of the decoded columns that have nulls.
    decimals : dict[str, int]
        Decimals of the decoded float columns.
    text : list of str
        Names of the untyped (verbatim text) ``_atom_site`` items among ``arrays``.
    meta : dict
        The blob's meta.
    """
    values, masks, meta, cols = read_blob_columns(blob, columns)
    kinds = {c["name"]: c for c in cols if c["kind"] != "mask"}
    out: dict[str, pa.Array] = {}
    decimals: dict[str, int] = {}
    text: list[str] = []
    for name, v in values.items():
        m = masks.get(name)
        null = None if m is None else m != MASK_VALUE
        col = kinds[name]
        if col["kind"] in ("str", "text"):
            codes, dictionary = v
            idx = pa.array(codes.astype(np.int32, copy=False), mask=null)
            out[name] = pa.DictionaryArray.from_arrays(idx, pa.array(dictionary, type=pa.string()))
            if col["kind"] == "text":
                text.append(name)
        else:
            out[name] = pa.array(v, mask=null)
            if col["kind"] == "float":
                decimals[name] = int(col["dec"])
    return out, masks, decimals, text, meta


def encode_categories(categories: list[Category], meta: dict[str, Any]) -> tuple[bytes, str]:
    """Encode verbatim categories (source order) and entry-level meta into one blob."""
    rows = []
    for cat in categories:
        cols = {item: cat.table.column(item).to_pylist() for item in cat.items}
        rows.append([cat.name, cat.items, cat.table.num_rows, cols,
                     {k: v.astype(np.uint8).tobytes() for k, v in cat.masks.items()}])
    w = BlobWriter(len(rows))
    w.add_bytes("categories", msgpack.packb(rows, use_bin_type=True))
    blob = w.finish(meta)
    return blob, hashlib.sha256(blob).hexdigest()


def decode_categories(blob: bytes, only: str | None = None) -> tuple[list[Category], dict[str, Any]]:
    """Decode a ``cif`` blob into categories (optionally only one) and its meta."""
    values, _, meta, _ = read_blob_columns(blob)
    rows = msgpack.unpackb(values["categories"], raw=False)
    out = []
    for name, items, n, cols, masks in rows:
        if only is not None and name != only:
            continue
        table = pa.table({i: pa.array(cols[i], type=pa.string()) for i in items}) if items else pa.table({})
        out.append(Category(name, table, {k: np.frombuffer(v, dtype=np.uint8) for k, v in masks.items()}))
        del n
    return out, meta
