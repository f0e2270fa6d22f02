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

from moldb.errors import StorageError
from moldb.schema.columns import ANISO_COLUMNS, ATOM_COLUMNS, AtomColumn
from moldb.schema.parsed import MASK_QUESTION, MASK_VALUE, Category
from moldb.storage.blob import BlobWriter, read_blob_columns
from moldb.storage.blob_plan import codes_fit

__all__ = ["add_column", "arrow_columns", "decode_categories", "decode_group", "dict_codes", "encode_categories",
           "encode_group", "group_arrays", "group_columns", "null_mask"]


_DICT_TYPE = pa.dictionary(pa.int32(), pa.string())


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


def group_arrays(
    group: str,
    table: pa.Table,
    masks: dict[str, np.ndarray],
    decimals: dict[str, int],
    text: dict[str, tuple[pa.Array, np.ndarray | None]] | None = None,
) -> list[tuple[str, str, Any, np.ndarray | None]]:
    """The columns of ``group`` as numpy, ready to encode: ``(name, kind, payload, null mask)``.

    ``payload`` is ``(codes, dictionary)`` for ``str`` / ``text``, int64 values for ``int``,
    ``(float64 values, decimals)`` for ``float``.
    """
    out: list[tuple[str, str, Any, np.ndarray | None]] = []
    for col in group_columns(group):
        if col.name not in table.column_names:
            continue
        arr = table.column(col.name)
        mask = _null_mask(arr, masks.get(col.name))
        if col.kind == "str":
            out.append((col.name, "str", _dict_codes(arr), mask))
        elif col.kind == "int":
            out.append((col.name, "int", arr.fill_null(0).to_numpy(zero_copy_only=False), mask))
        else:
            raw = arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            out.append((col.name, "float", (raw, int(decimals.get(col.name, col.decimals))), mask))
    for name, (arr, mask) in (text or {}).items():
        out.append((name, "text", _dict_codes(arr), mask if mask is not None and mask.any() else None))
    return out


def add_column(w: BlobWriter, name: str, kind: str, payload: Any, mask: np.ndarray | None,
               rows: slice = slice(None), dictionary: bool = True) -> None:
    """Add ``rows`` of one :func:`group_arrays` column to ``w`` (``dictionary=False``: codes only)."""
    if kind in ("str", "text"):
        codes, d = payload
        w.add_strings(name, codes[rows], d if dictionary else None, kind=kind)
    elif kind == "int":
        w.add_ints(name, "int", payload[rows])
    else:
        w.add_floats(name, payload[0][rows], payload[1])
    if mask is not None and (m := mask[rows]).any():
        w.add_mask(name, m)


dict_codes = _dict_codes  # ``(codes, dictionary)`` of a string column
null_mask = _null_mask  # null-kind mask of a column (None without nulls)


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
    for name, kind, payload, mask in group_arrays(group, table, masks, decimals, text):
        add_column(w, name, kind, payload, mask)
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
    out, decimals, text = arrow_columns(values, masks, {c["name"]: c for c in cols if c["kind"] != "mask"})
    return out, masks, decimals, text, meta


def arrow_columns(values: dict[str, Any], masks: dict[str, np.ndarray], kinds: dict[str, dict[str, Any]],
                  dictionaries: Any = None) -> tuple[dict[str, pa.Array], dict[str, int], list[str]]:
    """Decoded blob values (see :func:`~moldb.storage.blob.read_blob_columns`) as Arrow arrays.

    Returns ``(arrays, decimals, text)`` as :func:`decode_group` does; ``kinds`` maps each
    column to its header description; ``dictionaries(name)``, when given, returns a prebuilt
    Arrow dictionary for a string column.
    """
    out: dict[str, pa.Array] = {}
    decimals: dict[str, int] = {}
    text: list[str] = []
    for name, v in values.items():
        m = masks.get(name)
        null = None if m is None else m != MASK_VALUE
        # Arrow arrays over the numpy buffers (from_buffers: ~3x cheaper than pa.array + from_arrays)
        validity = None if null is None else pa.py_buffer(np.packbits(~null, bitorder="little"))
        col = kinds[name]
        if col["kind"] in ("str", "text"):
            codes, dictionary = v
            d = dictionaries(name) if dictionaries is not None else None
            if d is None:
                d = pa.array(dictionary, type=pa.string())
            if not codes_fit(codes, len(d), null):
                raise StorageError(f"corrupt block: column {name} has codes beyond its dictionary of {len(d)} "
                                   "strings; the store's files were damaged")
            idx = codes.astype(np.int32, copy=False)
            out[name] = pa.DictionaryArray.from_buffers(_DICT_TYPE, len(idx), [validity, pa.py_buffer(idx)], d)
            if col["kind"] == "text":
                text.append(name)
        else:
            arr = np.ascontiguousarray(v)
            out[name] = pa.Array.from_buffers(pa.from_numpy_dtype(arr.dtype), len(arr),
                                              [validity, pa.py_buffer(arr)])
            if col["kind"] == "float":
                decimals[name] = int(col["dec"])
    return out, decimals, text


def encode_categories(categories: list[Category], meta: dict[str, Any]) -> tuple[bytes, str]:
    """Encode verbatim categories (source order) and entry-level meta into one blob."""
    rows = []
    for cat in categories:
        cols = cat.pylists()
        rows.append([cat.name, list(cols), cat.num_rows, cols,
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
        lists = {i: cols[i] for i in items}
        out.append(Category(name, None if items else pa.table({}),
                            {k: np.frombuffer(v, dtype=np.uint8) for k, v in masks.items()},
                            lists=lists if items else None))
        del n
    return out, meta
