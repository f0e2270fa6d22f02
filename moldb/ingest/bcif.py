"""BinaryCIF reader (through biotite's ``BinaryCIFFile``).

Every category and column of the first data block is kept; the BinaryCIF masks
(0 value, 1 ``.``, 2 ``?``) become moldb's null-kind masks unchanged.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ParseError
from moldb.ingest.columns import dictionary_array
from moldb.ingest.mmcif import source_info
from moldb.schema.columns import ANISO_ITEMS, ATOM_COLUMNS
from moldb.schema.parsed import MASK_VALUE, Category, ParsedEntry

__all__ = ["read_bcif"]

_TYPED = {c.name: c for c in ATOM_COLUMNS}
_U_ITEMS = {v: k for k, v in ANISO_ITEMS.items()}


def read_bcif(path: str | Path) -> ParsedEntry:
    """Read a BinaryCIF file (plain or gzip).

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    ParsedEntry

    Raises
    ------
    ParseError
        If the file is not valid BinaryCIF or holds no ``atom_site``.
    """
    import biotite.structure.io.pdbx as pdbx

    data = Path(path).read_bytes()
    source = source_info(path, "bcif", data)
    payload = data
    if data[:2] == b"\x1f\x8b":
        try:
            payload = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ParseError(str(path), f"corrupt gzip stream ({exc})") from exc
    del data
    try:
        bfile = pdbx.BinaryCIFFile.read(io.BytesIO(payload))
        del payload
        blocks = [bfile[k] for k in bfile]
        block = next((b for b in blocks if "atom_site" in b), None)
        if block is None:
            raise ParseError(str(path), "no data block with an atom_site category")
        block_name = str(next(iter(bfile)))
        del blocks, bfile
        cats = ((name, _columns(block[name]) if name != "atom_site" else _drain(block[name])) for name in list(block))
        return _to_entry(cats, source, block_name=block_name)
    except ParseError:
        raise
    except Exception as exc:  # biotite raises many types on corrupt msgpack/encodings
        raise ParseError(str(path), f"not a readable BinaryCIF file ({type(exc).__name__}: {exc})") from exc


def _column(col: Any) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    arr = np.asarray(col.data.array)
    mask = None if col.mask is None else np.asarray(col.mask.array, dtype=np.uint8)
    if mask is not None and not mask.any():
        mask = None
    return arr, mask, _fixed_point_decimals(col)


def _columns(category: Any) -> dict[str, tuple[np.ndarray, np.ndarray | None, int | None]]:
    return {item: _column(category[item]) for item in category}


def _drain(category: Any) -> Iterator[tuple[str, tuple[np.ndarray, np.ndarray | None, int | None]]]:
    """Columns one at a time, each removed from ``category`` once decoded.

    biotite keeps every decoded array inside its column object; dropping the column as soon as it is
    converted keeps one ``<U`` array alive at a time (a 2.3M-atom ``atom_site`` decodes to ~500 MB).
    """
    for item in list(category):
        col = _column(category[item])
        del category[item]
        yield item, col


def _fixed_point_decimals(col: Any) -> int | None:
    for enc in getattr(col.data, "encoding", None) or []:
        factor = getattr(enc, "factor", None)
        if factor is not None and type(enc).__name__ == "FixedPointEncoding":
            return len(str(int(factor))) - 1
    return None


def _infer_decimals(values: np.ndarray) -> int:
    for d in range(7):
        if np.allclose(np.round(values, d), values, rtol=0, atol=1e-9):
            return d
    return 6


def _text(arr: np.ndarray) -> list[str]:
    if arr.dtype.kind == "f":
        return [repr(float(v)) if not float(v).is_integer() else str(float(v)) for v in arr]
    return [str(v) for v in arr.tolist()]


def _category(name: str, cols: dict[str, tuple[np.ndarray, np.ndarray | None, int | None]]) -> Category:
    table: dict[str, pa.Array] = {}
    masks: dict[str, np.ndarray] = {}
    for item, (arr, mask, _) in cols.items():
        text = _text(arr)
        if mask is not None:
            masks[item] = mask
            text = [t if m == MASK_VALUE else None for t, m in zip(text, mask, strict=True)]  # type: ignore[misc]
        table[item] = pa.array(text, type=pa.string())
    return Category(name, pa.table(table) if table else pa.table({}), masks)


def _typed(arr: np.ndarray, mask: np.ndarray | None, kind: str) -> pa.Array:
    valid = None if mask is None else mask == MASK_VALUE
    if kind == "str":
        vals = arr.astype(str)
        if valid is not None:
            vals = np.where(valid, vals, "")
        return dictionary_array(vals, mask)
    dtype = np.int64 if kind == "int" else np.float64
    vals = arr.astype(dtype)
    return pa.array(vals, mask=None if valid is None else ~valid)


def _to_entry(cats: Iterable[tuple[str, Any]], source: Any, block_name: str) -> ParsedEntry:
    categories: list[Category] = []
    atoms: dict[str, pa.Array] = {}
    masks: dict[str, np.ndarray] = {}
    decimals: dict[str, int] = {}
    atom_items: list[str] = []
    aniso_items: list[str] = []
    aniso_cols: dict[str, Any] | None = None
    for name, cols in cats:
        if name == "atom_site":
            extra = {}
            for item, (arr, mask, dec) in (cols if isinstance(cols, Iterator) else iter(cols.items())):
                atom_items.append(item)
                spec = _TYPED.get(item)
                if spec is None or (spec.kind != "str" and arr.dtype.kind not in "iuf"):
                    extra[item] = (arr, mask, dec)
                    continue
                atoms[item] = _typed(arr, mask, spec.kind)
                if mask is not None:
                    masks[item] = mask
                if spec.kind == "float":
                    decimals[item] = dec if dec is not None else _infer_decimals(arr[mask == 0] if mask is not None
                                                                                 else arr)
            categories.append(_category(name, extra))
        elif name == "atom_site_anisotrop":
            aniso_cols = cols
            aniso_items = list(cols)
            categories.append(_category(name, {k: v for k, v in cols.items() if k not in _U_ITEMS}))
        else:
            categories.append(_category(name, cols))
    if not atoms:
        raise ParseError(source.path, "the atom_site category has no typed columns")
    ordered = {c.name: atoms[c.name] for c in ATOM_COLUMNS if c.name in atoms}
    if aniso_cols is not None:
        u = _attach_aniso(ordered, aniso_cols, decimals)
        if u is None:  # could not match rows to atoms: keep the category verbatim
            categories = [c if c.name != "atom_site_anisotrop" else _category(c.name, aniso_cols)
                          for c in categories]
            aniso_items = []
        else:
            ordered.update(u)
    entry_cat = next((c for c in categories if c.name == "entry"), None)
    entry_id = (entry_cat.value("id") if entry_cat is not None and entry_cat.table.num_rows else None) or block_name
    return ParsedEntry(entry_id.upper(), pa.table(ordered), masks, atom_items, decimals, categories, source,
                       aniso_items)


def _attach_aniso(atoms: dict[str, pa.Array], cols: dict[str, Any], decimals: dict[str, int]
                  ) -> dict[str, pa.Array] | None:
    if "id" not in atoms or "id" not in cols or not all(i in cols for i in _U_ITEMS):
        return None
    atom_ids = atoms["id"].to_numpy(zero_copy_only=False)
    aniso_ids = cols["id"][0].astype(np.int64)
    if np.unique(atom_ids).size != atom_ids.size:
        return None
    order = np.argsort(atom_ids)
    rows = order[np.clip(np.searchsorted(atom_ids, aniso_ids, sorter=order), 0, atom_ids.size - 1)]
    if not np.array_equal(atom_ids[rows], aniso_ids) or any(cols[i][1] is not None for i in _U_ITEMS):
        return None
    valid = np.zeros(atom_ids.size, dtype=bool)
    valid[rows] = True
    out = {}
    for item, u in sorted(_U_ITEMS.items(), key=lambda kv: list(ANISO_ITEMS).index(kv[1])):
        arr, _, dec = cols[item]
        full = np.zeros(atom_ids.size, dtype=np.float64)
        full[rows] = arr
        out[u] = pa.array(full, mask=~valid)
        decimals[u] = dec if dec is not None else _infer_decimals(arr.astype(np.float64))
    return out
