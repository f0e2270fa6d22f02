"""BinaryCIF exporter (through biotite's ``BinaryCIFFile``).

Every category of a :class:`ParsedEntry` becomes a BinaryCIF category in source
order. Typed ``atom_site`` columns are written as numbers (floats fixed-point
encoded with the decimals the source printed, so that readers recover them),
every other value as a string; null kinds become BinaryCIF masks (0 value,
1 ``.``, 2 ``?``) unchanged.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ValidationError
from moldb.export._io import write_output
from moldb.export.cif import aniso_rows, flat, float_decimals
from moldb.schema.columns import ANISO_ITEMS
from moldb.schema.parsed import MASK_QUESTION, Category, ParsedEntry

__all__ = ["to_bcif_block", "to_bcif_file", "write_bcif"]

_U_BY_ITEM = {v: k for k, v in ANISO_ITEMS.items()}
_INT32_MAX = 2**31 - 1

# (values, mask, decimals): decimals is None for non-float columns
_Col = tuple[np.ndarray, np.ndarray | None, int | None]


def _mask(arr: pa.Array, mask: np.ndarray | None) -> np.ndarray | None:
    """Null-kind mask of a column: the given one, or ``?`` for Arrow nulls."""
    if arr.null_count:
        null = arr.is_null().to_numpy(zero_copy_only=False)
        out = np.zeros(len(arr), np.uint8) if mask is None else mask.astype(np.uint8, copy=True)
        out[null & (out == 0)] = MASK_QUESTION
        mask = out
    if mask is not None and not mask.any():
        return None
    return mask


def _values(arr: pa.Array) -> np.ndarray:
    """Numpy values of a column; nulls become ``""`` / ``0``."""
    kind = arr.type
    if pa.types.is_dictionary(kind):
        words = np.array([*arr.dictionary.to_pylist(), ""], dtype=str)
        return words[arr.indices.fill_null(len(words) - 1).to_numpy(zero_copy_only=False)]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return np.array(arr.fill_null("").to_pylist(), dtype=str)
    if pa.types.is_integer(kind):
        return arr.fill_null(0).to_numpy().astype(np.int64)
    if pa.types.is_floating(kind):
        return arr.fill_null(0.0).to_numpy().astype(np.float64)
    raise ValidationError(f"cannot write a column of Arrow type {kind} as BinaryCIF")


def _column(arr: pa.Array | pa.ChunkedArray, mask: np.ndarray | None, decimals: int | None) -> _Col:
    arr = flat(arr)
    values = _values(arr)
    return values, _mask(arr, mask), decimals if values.dtype.kind == "f" else None


def _atom_site(entry: ParsedEntry) -> dict[str, _Col]:
    extra = entry.category("atom_site")
    extra_items = set(extra.items) if extra is not None else set()
    names = set(entry.atoms.column_names)
    items = list(entry.atom_items) or [n for n in entry.atoms.column_names if n not in ANISO_ITEMS]
    out: dict[str, _Col] = {}
    for item in items:
        if item in names:
            dec = float_decimals(entry, item)
            out[item] = _column(entry.atoms.column(item), entry.atom_masks.get(item), dec)
        elif item in extra_items:
            assert extra is not None
            out[item] = _column(extra.table.column(item), extra.masks.get(item), None)
        else:
            raise ValidationError(f"_atom_site.{item} is listed in atom_items but has no column")
    return out


def _verbatim(cat: Category) -> dict[str, _Col]:
    return {item: _column(cat.table.column(item), cat.masks.get(item), None) for item in cat.items}


def _aniso(entry: ParsedEntry, cat: Category) -> dict[str, _Col]:
    kept = _verbatim(cat)
    if not entry.aniso_items:
        return kept
    rows = aniso_rows(entry, cat)
    out: dict[str, _Col] = {}
    for item in entry.aniso_items:
        u = _U_BY_ITEM.get(item)
        if u is not None and u in entry.atoms.column_names:
            u_col = flat(entry.atoms.column(u)).take(pa.array(rows))
            out[item] = _column(u_col, None, float_decimals(entry, u))
        elif item in kept:
            out[item] = kept[item]
        else:
            raise ValidationError(f"_atom_site_anisotrop.{item} is listed in aniso_items but has no column")
    return out


def _float_data(values: np.ndarray, decimals: int) -> Any:
    """Fixed-point encoded float data (falls back to raw float64 when out of int32 range)."""
    import biotite.structure.io.pdbx as pdbx

    factor = 10 ** int(decimals)
    if values.size and np.abs(values).max() * factor >= _INT32_MAX:
        return pdbx.BinaryCIFData(values, [pdbx.ByteArrayEncoding()])
    encoding = [
        pdbx.FixedPointEncoding(factor, src_type=np.float64),
        pdbx.DeltaEncoding(),
        pdbx.IntegerPackingEncoding(byte_count=2),
        pdbx.ByteArrayEncoding(),
    ]
    return pdbx.BinaryCIFData(values, encoding)


def _bcif_category(cols: dict[str, _Col], compress: bool) -> Any:
    import biotite.structure.io.pdbx as pdbx

    out = {}
    for item, (values, mask, decimals) in cols.items():
        if compress and decimals is not None and len(values) > 1:
            data = _float_data(values, decimals)
            mask_data = None if mask is None else pdbx.compress(pdbx.BinaryCIFData(mask))
            out[item] = pdbx.BinaryCIFColumn(data, mask_data)
            continue
        column = pdbx.BinaryCIFColumn(values, mask)
        out[item] = pdbx.compress(column) if compress and values.size else column
    n = len(next(iter(cols.values()))[0]) if cols else 0
    return pdbx.BinaryCIFCategory(out, row_count=n)


def to_bcif_block(entry: ParsedEntry, compress: bool = True) -> Any:
    """Build a biotite ``BinaryCIFBlock`` with every category of ``entry``.

    Parameters
    ----------
    entry : ParsedEntry
    compress : bool
        Choose compact encodings (needed only for writing; ``False`` is faster
        for in-memory use).

    Returns
    -------
    biotite.structure.io.pdbx.BinaryCIFBlock
    """
    import biotite.structure.io.pdbx as pdbx

    block = pdbx.BinaryCIFBlock()
    wrote_atoms = False
    for cat in entry.categories:
        if cat.name == "atom_site":
            cols = _atom_site(entry)
            wrote_atoms = True
        elif cat.name == "atom_site_anisotrop":
            cols = _aniso(entry, cat)
        else:
            cols = _verbatim(cat)
        if cols:
            block[cat.name] = _bcif_category(cols, compress)
    if not wrote_atoms:
        block["atom_site"] = _bcif_category(_atom_site(entry), compress)
    return block


def to_bcif_file(entry: ParsedEntry, compress: bool = True) -> Any:
    """A biotite ``BinaryCIFFile`` with one block named after ``entry.entry_id``.

    Parameters
    ----------
    entry : ParsedEntry
    compress : bool
        See :func:`to_bcif_block`.

    Returns
    -------
    biotite.structure.io.pdbx.BinaryCIFFile
    """
    import biotite.structure.io.pdbx as pdbx

    bfile = pdbx.BinaryCIFFile()
    bfile[entry.entry_id or "moldb"] = to_bcif_block(entry, compress)
    return bfile


def write_bcif(entry: ParsedEntry, path: str | Path) -> Path:
    """Write ``entry`` as BinaryCIF (gzip when ``path`` ends with ``.gz``).

    Parameters
    ----------
    entry : ParsedEntry
    path : str or pathlib.Path

    Returns
    -------
    pathlib.Path
        The path written.
    """
    buf = io.BytesIO()
    to_bcif_file(entry).write(buf)
    return write_output(path, buf.getvalue())
