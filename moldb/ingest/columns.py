"""Turn text or decoded columns into typed Arrow arrays with null-kind masks.

Shared by every reader. A typed column is kept typed only if its values
round-trip to the exact source text (so that export reproduces the file value by
value); otherwise the reader keeps the column as text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from moldb.schema.parsed import MASK_DOT, MASK_QUESTION, MASK_VALUE

__all__ = ["TypedColumn", "dictionary_array", "text_to_typed", "unquote"]

_QUOTES = ("'", '"', ";")


def unquote(value: str) -> str:
    """Strip CIF quoting from one raw token (``'O5''`` → ``O5'``), exactly as gemmi's ``as_string``."""
    if value and value[0] in _QUOTES:
        import gemmi

        return str(gemmi.cif.as_string(value))
    return value


def dictionary_array(values: np.ndarray, mask: np.ndarray | None = None) -> pa.DictionaryArray:
    """Dictionary-encode a numpy string array, nulls where ``mask`` is non-zero.

    Parameters
    ----------
    values : numpy.ndarray
        Shape ``(n,)``, any string/object dtype.
    mask : numpy.ndarray, optional
        ``uint8`` null-kind mask, shape ``(n,)``.

    Returns
    -------
    pyarrow.DictionaryArray
        ``dictionary<int32, string>``.
    """
    uniq, codes = np.unique(values, return_inverse=True)
    codes = codes.astype(np.int32, copy=False)
    null = None if mask is None or not mask.any() else (mask != MASK_VALUE)
    idx = pa.array(codes, type=pa.int32(), mask=null)
    return pa.DictionaryArray.from_arrays(idx, pa.array(uniq.astype(str), type=pa.string()))


class TypedColumn:
    """Result of typing one column.

    Attributes
    ----------
    array : pyarrow.Array or None
        Typed values, ``None`` if the text does not round-trip (keep as text).
    mask : numpy.ndarray or None
        Null-kind mask, ``None`` if the column has no nulls.
    decimals : int or None
        Decimals of a float column.
    """

    __slots__ = ("array", "decimals", "mask")

    def __init__(self, array: pa.Array | None, mask: np.ndarray | None, decimals: int | None) -> None:
        self.array = array
        self.mask = mask
        self.decimals = decimals


def _null_mask(raw: np.ndarray) -> np.ndarray | None:
    dot = raw == "."
    q = raw == "?"
    if not (dot.any() or q.any()):
        return None
    mask = np.zeros(raw.shape[0], dtype=np.uint8)
    mask[dot] = MASK_DOT
    mask[q] = MASK_QUESTION
    return mask


def text_to_typed(raw_list: Sequence[str], kind: str, lenient: bool = False) -> TypedColumn:
    """Type one raw mmCIF text column (tokens as written, quotes included).

    Parameters
    ----------
    raw_list : sequence of str
        Raw tokens, shape ``(n,)``.
    kind : {"str", "int", "float"}
    lenient : bool
        Accept numbers whose text does not round-trip (the source is not this
        text, e.g. gemmi's conversion of a PDB file); decimals = the most printed.

    Returns
    -------
    TypedColumn
    """
    raw = np.asarray(raw_list, dtype=str)
    mask = _null_mask(raw)
    valid = None if mask is None else mask == MASK_VALUE
    if kind == "str":
        vals = raw
        if any(v[:1] in _QUOTES for v in np.unique(raw)):
            vals = np.array([unquote(v) for v in raw], dtype=str)
        if valid is not None:
            vals = np.where(valid, vals, "")
        return TypedColumn(dictionary_array(vals, mask), mask, None)
    text = raw if valid is None else np.where(valid, raw, "0")
    try:
        if kind == "int":
            ints = text.astype(np.int64)
            if not lenient and not np.array_equal(ints.astype(str), text):
                return TypedColumn(None, mask, None)
            arr = pa.array(ints, mask=None if valid is None else ~valid)
            return TypedColumn(arr, mask, None)
        floats = text.astype(np.float64)
    except ValueError:
        return TypedColumn(None, mask, None)
    sel_text = text if valid is None else text[valid]
    sel = floats if valid is None else floats[valid]
    dec = _decimals(sel_text, lenient)
    if dec is None or np.any((sel == 0) & np.signbit(sel)):  # "-0.000" cannot survive scaling
        return TypedColumn(None, mask, None)
    if not lenient and not np.array_equal(np.char.mod(f"%.{dec}f", sel), sel_text):
        return TypedColumn(None, mask, None)
    arr = pa.array(floats, mask=None if valid is None else ~valid)
    return TypedColumn(arr, mask, dec)


def _decimals(text: np.ndarray, lenient: bool = False) -> int | None:
    """Number of decimals if every value prints with the same count, else None.

    With ``lenient`` the largest count is returned.
    """
    if text.size == 0:
        return 0
    dot = np.char.find(text, ".")
    lens = np.char.str_len(text)
    dec = np.where(dot < 0, 0, lens - dot - 1)
    if lenient:
        return int(dec.max())
    if dec.min() != dec.max():
        return None
    return int(dec[0])
