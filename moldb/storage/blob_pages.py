"""Decode pages of rows of a blob: a row subset decompresses only the frames that hold it.

Blobs written with ``page_rows`` (:class:`moldb.storage.blob.BlobWriter`) keep every
column as one zstd frame per (byte plane, page). A run of consecutive pages of one
plane is contiguous in the segment, so it is one decompress call; delta-coded columns
restart from the page's recorded ``base``. Blobs (or columns) without pages decode
whole and are sliced, so every blob can be read this way.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from moldb.storage.blob import _decompress, _running, _unshuffle, read_header

__all__ = ["page_bounds", "read_pages", "read_rows"]


def page_bounds(header: dict[str, Any]) -> np.ndarray:
    """Row bounds of the pages of a blob (one page ``[0, n)`` when it has none)."""
    return np.asarray(header.get("pages") or [0, header["n"]], dtype=np.int64)


def _runs(pages: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted page indices → half-open runs of consecutive pages."""
    out: list[tuple[int, int]] = []
    for p in pages:
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


def _whole(view: memoryview, base: int, col: dict[str, Any]) -> np.ndarray:
    off, clen, ulen = col["seg"]
    raw = _decompress(view[base + off: base + off + clen], ulen)
    arr = _unshuffle(raw, np.dtype(col["dtype"]))
    if col["kind"] in ("int", "float"):
        return _running(arr, bool(col.get("pack16")))
    return arr


def _run(view: memoryview, base: int, col: dict[str, Any], npages: int, bounds: list[int],
         a: int, b: int) -> np.ndarray:
    """Pages ``[a, b)`` of one paged column (codes, mask bytes or integers before scaling)."""
    dtype = np.dtype(col["dtype"])
    offs = col.get("_offs")
    if offs is None:  # absolute frame offsets, computed once per decoded header
        offs = col["_offs"] = list(itertools.accumulate(col["frames"], initial=base + col["seg"][0]))
    pk = col.get("pk", bounds)
    length = pk[b] - pk[a]
    size = dtype.itemsize
    if size == 1:
        arr = np.frombuffer(_decompress(view[offs[a]:offs[b]], length), dtype=dtype)
    else:
        raw = b"".join(_decompress(view[offs[j * npages + a]:offs[j * npages + b]], length) for j in range(size))
        arr = _unshuffle(raw, dtype)
    if col["kind"] not in ("int", "float"):
        return arr
    out = _running(arr, bool(col.get("pack16")))
    if col["base"][a]:
        out += col["base"][a]
    return out


def read_pages(blob: bytes, columns: Sequence[str], pages: Sequence[int],
               header: tuple[dict[str, Any], int] | None = None
               ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Decode ``columns`` for the rows of ``pages`` (sorted page indices), concatenated.

    Returns
    -------
    values : dict
        As :func:`moldb.storage.blob.read_blob_columns` (``str``/``text`` →
        ``(codes, dictionary or None)``), restricted to the pages' rows.
    masks : dict[str, numpy.ndarray]
        Null-kind masks of the returned columns that have one.
    cols : dict[str, dict]
        Header description of each returned column (mask entries excluded).
    """
    head, base = header or read_header(blob)
    view = memoryview(blob)
    bounds = page_bounds(head)
    npages = bounds.size - 1
    blist = bounds.tolist()
    runs = _runs(pages)
    want = set(columns)
    rows = np.concatenate([np.arange(bounds[a], bounds[b]) for a, b in runs]) if runs else np.zeros(0, np.int64)
    values: dict[str, Any] = {}
    masks: dict[str, np.ndarray] = {}
    cols: dict[str, dict[str, Any]] = {}
    for col in head["cols"]:
        name, kind = col["name"], col["kind"]
        if name not in want or kind == "bytes":
            continue
        if "frames" in col:
            parts = [_run(view, base, col, npages, blist, a, b) for a, b in runs]
            arr = np.concatenate(parts) if len(parts) != 1 else parts[0]
        else:
            arr = _whole(view, base, col)
            arr = arr if rows.size == arr.size else arr[rows]
        if kind == "mask":
            masks[name] = arr
            continue
        cols[name] = col
        if kind in ("str", "text"):
            d = msgpack.unpackb(_decompress(view[base + col["dict"][0]: base + col["dict"][0] + col["dict"][1]],
                                            col["dict"][2]), raw=False) if "dict" in col else None
            values[name] = (arr, d)
        elif kind == "float":
            floats = arr / (10.0 ** col["dec"])
            if "negzero" in col:
                nz = np.asarray(col["negzero"], dtype=np.int64)
                pos = np.searchsorted(rows, nz)
                ok = pos < rows.size
                ok[ok] = rows[pos[ok]] == nz[ok]
                floats[pos[ok]] = -0.0
            values[name] = floats
        else:
            values[name] = arr
    return values, masks, cols


def read_rows(blob: bytes, columns: Sequence[str], rows: np.ndarray,
              header: tuple[dict[str, Any], int] | None = None
              ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Decode ``columns`` at ``rows`` (sorted, unique row numbers of the blob): only their pages.

    ``header`` is the blob's parsed ``(header, base)`` when the caller keeps it.
    """
    header = header or read_header(blob)
    bounds = page_bounds(header[0])
    cuts = np.searchsorted(rows, bounds)  # rows are sorted: each page's share, without a pass per row
    counts = np.diff(cuts)
    pages = np.flatnonzero(counts)
    values, masks, cols = read_pages(blob, columns, pages.tolist(), header)
    sizes = bounds[pages + 1] - bounds[pages]
    if rows.size == int(sizes.sum()):  # every row of the pages
        return values, masks, cols
    # local position = start of the page among the decoded rows + offset in the page
    shift = np.repeat(np.r_[0, np.cumsum(sizes)[:-1]] - bounds[pages], counts[pages])
    local = rows + shift
    out = {k: (v[0][local], v[1]) if isinstance(v, tuple) else v[local] for k, v in values.items()}
    return out, {k: m[local] for k, m in masks.items()}, cols


def read_into(blob: bytes, columns: Sequence[str], out: dict[str, np.ndarray], masks: dict[str, np.ndarray],
              start: int, total: int, header: tuple[dict[str, Any], int] | None = None) -> None:
    """Decode ``columns`` of a whole blob into ``out[name][start:start + n]`` (no intermediate copies).

    ``out`` holds preallocated int64 (``int``), float64 (``float``) or int32 (``str``/``text``
    codes) arrays of length ``total``; a column's null-kind mask is written into
    ``masks[name]``, allocated (zeros, length ``total``) when a blob first has one. This is how
    the chunks of a chunked block assemble into single arrays.
    """
    head, base = header or read_header(blob)
    view = memoryview(blob)
    n = int(head["n"])
    want = set(columns)
    for col in head["cols"]:
        name, kind = col["name"], col["kind"]
        if name not in want or kind == "bytes":
            continue
        off, clen, ulen = col["seg"]
        arr = _unshuffle(_decompress(view[base + off: base + off + clen], ulen), np.dtype(col["dtype"]))
        if kind == "mask":
            if name not in masks:
                masks[name] = np.zeros(total, dtype=np.uint8)
            masks[name][start:start + n] = arr
        elif kind in ("str", "text"):
            out[name][start:start + n] = arr
        else:
            ints = _running(arr, bool(col.get("pack16")))
            if kind == "int":
                out[name][start:start + n] = ints
                continue
            # exact powers of ten: the double nearest the printed decimal, as read_blob_columns
            np.divide(ints, 10.0 ** col["dec"], out=out[name][start:start + n])
            if "negzero" in col:
                out[name][start + np.asarray(col["negzero"], dtype=np.int64)] = -0.0
