"""mmCIF exporter: rebuild a CIF document from a :class:`ParsedEntry`.

Every category is written in source order with its items in source order.
``_atom_site`` is rebuilt from the typed atom columns (floats printed with the
decimals the source used, nulls as ``.`` or ``?`` per null-kind mask) interleaved
with the untyped text items; ``_atom_site_anisotrop`` gets its ``U[i][j]`` items
back from the atom table, matched by atom ``id``.

Columns are turned into CIF tokens with numpy: string columns are quoted once per
distinct value (dictionary encoding), numbers are formatted in one vectorised
call per column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from moldb.errors import ValidationError
from moldb.export._io import write_output
from moldb.schema.columns import ANISO_ITEMS, COLUMN_BY_NAME
from moldb.schema.parsed import MASK_DOT, Category, ParsedEntry

__all__ = [
    "aniso_rows",
    "aniso_tokens",
    "atom_site_tokens",
    "column_tokens",
    "flat",
    "float_decimals",
    "format_fixed",
    "to_cif_document",
    "write_mmcif",
]

_U_BY_ITEM = {v: k for k, v in ANISO_ITEMS.items()}
# Below this magnitude, x * 10**d is within 1e-7 of the exact product, so rint is
# the correctly rounded result unless the fraction is within 1e-6 of one half.
_EXACT_LIMIT = 1e9


def flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous Arrow array (chunked arrays are combined)."""
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def _fill_nulls(tokens: np.ndarray, null: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Write ``.``/``?`` into ``tokens`` where ``null`` is set (``?`` without a mask)."""
    if not null.any():
        return tokens
    if tokens.dtype.kind == "U" and tokens.dtype.itemsize < 4:  # "<U0": no room for one char
        tokens = tokens.astype("<U1")
    dot = np.zeros_like(null) if mask is None else null & (mask == MASK_DOT)
    tokens[dot] = "."
    tokens[null & ~dot] = "?"
    return tokens


def format_fixed(values: np.ndarray, decimals: int) -> np.ndarray:
    """Format floats exactly like ``"%.{decimals}f"``, vectorised.

    Values are scaled to integers and printed by Arrow; the few values whose
    rounding is in doubt (near-ties, huge or non-finite values) go through
    :func:`numpy.char.mod`.

    Parameters
    ----------
    values : numpy.ndarray
        ``float64``, shape ``(n,)``.
    decimals : int

    Returns
    -------
    numpy.ndarray
        ``object`` array of ``str``, shape ``(n,)``.
    """
    x = np.asarray(values, dtype=np.float64)
    d = int(decimals)
    scaled = x * (10.0**d)
    exact = np.isfinite(scaled) & (np.abs(scaled) < _EXACT_LIMIT)
    rounded = np.rint(np.where(exact, scaled, 0.0))
    doubt = ~exact | (np.abs(np.abs(scaled - rounded) - 0.5) < 1e-6)
    text = pc.cast(pa.array(np.abs(rounded).astype(np.int64)), pa.string())
    if d:
        text = pc.utf8_lpad(text, width=d + 1, padding="0")
        text = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(text, 0, -d), pc.utf8_slice_codeunits(text, -d), "."
        )
    neg = np.signbit(x)
    if neg.any():
        text = pc.if_else(pa.array(neg), pc.binary_join_element_wise("-", text, ""), text)
    out = text.to_numpy(zero_copy_only=False)
    if doubt.any():
        out[doubt] = np.char.mod(f"%.{d}f", x[doubt]).astype(object)
    return out


def _string_tokens(arr: pa.Array) -> np.ndarray:
    """Quoted tokens of a string or dictionary array; nulls give empty strings."""
    import gemmi

    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr)
    words = arr.dictionary.to_pylist()
    quoted = np.array([gemmi.cif.quote(w) for w in words] + [""], dtype=object)
    idx = arr.indices.fill_null(len(words)).to_numpy(zero_copy_only=False)
    return quoted[idx]


def column_tokens(arr: pa.Array | pa.ChunkedArray, mask: np.ndarray | None = None,
                  decimals: int | None = None) -> np.ndarray:
    """CIF tokens of one column.

    Parameters
    ----------
    arr : pyarrow.Array or pyarrow.ChunkedArray
        ``string``/``dictionary`` (quoted with :func:`gemmi.cif.quote`), integer or
        float values, shape ``(n,)``.
    mask : numpy.ndarray, optional
        ``uint8`` null-kind mask; nulls without one are written ``?``.
    decimals : int, optional
        Decimals of a float column (required for floats).

    Returns
    -------
    numpy.ndarray
        Object or unicode array of raw CIF tokens, shape ``(n,)``.
    """
    arr = flat(arr)
    null = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(len(arr), bool)
    if mask is not None:
        null = null | (mask != 0)
    kind = arr.type
    if pa.types.is_dictionary(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        tokens = _string_tokens(arr)
    elif pa.types.is_integer(kind):
        tokens = pc.cast(arr.fill_null(0), pa.string()).to_numpy(zero_copy_only=False)
    elif pa.types.is_floating(kind):
        if decimals is None:
            raise ValidationError("a float column needs its number of decimals to be written as CIF")
        tokens = format_fixed(arr.fill_null(0.0).to_numpy(), decimals)
    else:
        raise ValidationError(f"cannot write a column of Arrow type {kind} as CIF")
    return _fill_nulls(tokens, null, mask)


def float_decimals(entry: ParsedEntry, name: str) -> int:
    """Decimals to print for float column ``name`` (source's, else the schema default)."""
    dec = entry.decimals.get(name)
    if dec is None:
        spec = COLUMN_BY_NAME.get(name)
        dec = spec.decimals if spec is not None else 6
    return dec


def atom_site_tokens(entry: ParsedEntry) -> dict[str, np.ndarray]:
    """``_atom_site`` items (source order) as raw CIF token arrays.

    Parameters
    ----------
    entry : ParsedEntry

    Returns
    -------
    dict[str, numpy.ndarray]
        Item name → tokens, shape ``(n_atoms,)`` each.

    Raises
    ------
    ValidationError
        If an item of ``atom_items`` is neither a typed column nor an untyped one.
    """
    extra = entry.category("atom_site")
    extra_items = set(extra.items) if extra is not None else set()
    names = set(entry.atoms.column_names)
    items = list(entry.atom_items) or [n for n in entry.atoms.column_names if n not in ANISO_ITEMS]
    out: dict[str, np.ndarray] = {}
    for item in items:
        if item in names:
            col = entry.atoms.column(item)
            dec = float_decimals(entry, item) if pa.types.is_floating(col.type) else None
            out[item] = column_tokens(col, entry.atom_masks.get(item), dec)
        elif item in extra_items:
            assert extra is not None
            out[item] = column_tokens(extra.table.column(item), extra.masks.get(item))
        else:
            raise ValidationError(f"_atom_site.{item} is listed in atom_items but has no column")
    return out


def _category_tokens(cat: Category) -> dict[str, np.ndarray]:
    return {item: column_tokens(cat.table.column(item), cat.masks.get(item)) for item in cat.items}


def aniso_rows(entry: ParsedEntry, cat: Category) -> np.ndarray:
    """Atom-table row of each ``_atom_site_anisotrop`` row, matched by ``id``.

    Parameters
    ----------
    entry : ParsedEntry
    cat : Category
        The kept items of ``atom_site_anisotrop`` (must include ``id``).

    Returns
    -------
    numpy.ndarray
        ``int64`` row indices into ``entry.atoms``, shape ``(cat rows,)``.

    Raises
    ------
    ValidationError
        If an id is missing or not among the atom ids.
    """
    if "id" not in cat.items or "id" not in entry.atoms.column_names:
        raise ValidationError("atom_site_anisotrop needs an id item matching atom ids to restore U[i][j]")
    ids = np.asarray(cat.table.column("id").to_pylist(), dtype=np.int64)
    atom_ids = flat(entry.atoms.column("id")).fill_null(-1).to_numpy()
    if atom_ids.size == 0:
        raise ValidationError("atom_site_anisotrop has rows but atom_site has none")
    order = np.argsort(atom_ids, kind="stable")
    rows = order[np.clip(np.searchsorted(atom_ids, ids, sorter=order), 0, atom_ids.size - 1)]
    if not np.array_equal(atom_ids[rows], ids):
        raise ValidationError("atom_site_anisotrop.id holds ids that are not in atom_site.id")
    return rows


def aniso_tokens(entry: ParsedEntry, cat: Category) -> dict[str, np.ndarray]:
    """``_atom_site_anisotrop`` tokens with the U items taken from the atom table.

    Parameters
    ----------
    entry : ParsedEntry
    cat : Category
        The kept (non-U) items of ``atom_site_anisotrop``, including ``id``.

    Returns
    -------
    dict[str, numpy.ndarray]
        Items in the order of ``entry.aniso_items``.
    """
    kept = _category_tokens(cat)
    if not entry.aniso_items:
        return kept
    rows = aniso_rows(entry, cat)
    out: dict[str, np.ndarray] = {}
    for item in entry.aniso_items:
        u = _U_BY_ITEM.get(item)
        if u is not None and u in entry.atoms.column_names:
            col = flat(entry.atoms.column(u)).take(pa.array(rows))
            out[item] = column_tokens(col, None, float_decimals(entry, u))
        elif item in kept:
            out[item] = kept[item]
        else:
            raise ValidationError(f"_atom_site_anisotrop.{item} is listed in aniso_items but has no column")
    return out


def _set_category(block: Any, name: str, tokens: dict[str, np.ndarray]) -> None:
    if not tokens:
        return
    n = len(next(iter(tokens.values())))
    prefix = f"_{name}."
    if n == 1:
        block.set_pairs(prefix, {k: str(v[0]) for k, v in tokens.items()}, raw=True)
    elif n > 1:
        block.set_mmcif_category(prefix, {k: v.tolist() for k, v in tokens.items()}, raw=True)
    else:
        block.init_mmcif_loop(prefix, list(tokens))


def to_cif_document(entry: ParsedEntry) -> Any:
    """Build a gemmi CIF document holding every category of ``entry``.

    Parameters
    ----------
    entry : ParsedEntry

    Returns
    -------
    gemmi.cif.Document
        One block named after ``entry.entry_id``.
    """
    import gemmi

    doc = gemmi.cif.Document()
    block = doc.add_new_block(entry.entry_id or "moldb")
    wrote_atoms = False
    for cat in entry.categories:
        if cat.name == "atom_site":
            _set_category(block, "atom_site", atom_site_tokens(entry))
            wrote_atoms = True
        elif cat.name == "atom_site_anisotrop":
            _set_category(block, cat.name, aniso_tokens(entry, cat))
        else:
            _set_category(block, cat.name, _category_tokens(cat))
    if not wrote_atoms:
        _set_category(block, "atom_site", atom_site_tokens(entry))
    return doc


def _write_options() -> Any:
    import gemmi

    opts = gemmi.cif.WriteOptions()
    opts.misuse_hash = True  # "#" between categories, as in wwPDB files
    opts.align_pairs = 33
    opts.align_loops = 30
    return opts


def write_mmcif(entry: ParsedEntry, path: str | Path) -> Path:
    """Write ``entry`` as an mmCIF file (gzip when ``path`` ends with ``.gz``).

    Parameters
    ----------
    entry : ParsedEntry
    path : str or pathlib.Path

    Returns
    -------
    pathlib.Path
        The path written.
    """
    return write_output(path, to_cif_document(entry).as_string(_write_options()))
