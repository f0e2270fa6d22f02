"""Decode pages of rows of a blob: a row subset decompresses only the frames that hold it.

Blobs written with ``page_rows`` (:class:`moldb.storage.blob.BlobWriter`) keep every
column as one zstd frame per (byte plane, page). A run of consecutive pages of one
plane is contiguous in the segment; delta-coded columns restart from the page's
recorded ``base``. Blobs (or columns) without pages decode whole and are sliced, so
every blob can be read this way.

**One decompression call per read.** zstd reads concatenated frames as one stream, so the
frames a read needs — every plane of every run of pages of every column asked for — are
gathered into one buffer and decompressed by a single call; each column then views its part
of the output. Arrow's codec creates a zstd context on every call (~9 µs, more than decoding
an 8 kB page), and a small selection of a large entry touches ~35 frames: 0.60 → 0.23 ms
for 33 frames of 8 kB on the 2-core machine. Whole chunks (:func:`read_into`) are decoded
the same way, one call per chunk instead of one per column.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from moldb.storage.blob import _LIM16, _decompress, _running, _unshuffle, read_header

__all__ = ["page_bounds", "read_into", "read_pages", "read_rows"]


def page_bounds(header: dict[str, Any]) -> np.ndarray:
    """Row bounds of the pages of a blob (one page ``[0, n)`` when it has none); kept in the header."""
    pb: np.ndarray | None = header.get("_pb")
    if pb is None:
        pb = header["_pb"] = np.asarray(header.get("pages") or [0, header["n"]], dtype=np.int64)
    return pb


def _runs(pages: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted page indices → half-open runs of consecutive pages."""
    out: list[tuple[int, int]] = []
    for p in pages:
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


def _itemsize(col: dict[str, Any]) -> int:
    size = col.get("_size")
    if size is None:
        size = col["_size"] = np.dtype(col["dtype"]).itemsize
    return int(size)


def _gather(view: memoryview, base: int, cols: list[dict[str, Any]], npages: int, blist: list[int],
            runs: list[tuple[int, int]] | None) -> tuple[np.ndarray, list[list[int]]]:
    """Decompress, in one call, the frames of ``cols`` for the page ``runs`` (None: whole segments).

    Returns the decompressed bytes and, per column, the byte length of each run's part (all
    planes of a run are consecutive, i.e. the run's shuffled layout).
    """
    parts: list[memoryview] = []
    lens: list[list[int]] = []
    total = 0
    for col in cols:
        if runs is None or "frames" not in col:
            off, clen, ulen = col["seg"]
            parts.append(view[base + off: base + off + clen])
            lens.append([int(ulen)])
            total += int(ulen)
            continue
        offs = col.get("_offs")
        if offs is None:  # absolute frame offsets, computed once per decoded header
            offs = col["_offs"] = list(itertools.accumulate(col["frames"], initial=base + col["seg"][0]))
        pk = col.get("pk", blist)
        size = _itemsize(col)
        mine = []
        for a, b in runs:
            parts.extend(view[offs[j * npages + a]:offs[j * npages + b]] for j in range(size))
            mine.append((pk[b] - pk[a]) * size)
        lens.append(mine)
        total += sum(mine)
    raw = _decompress(b"".join(parts), total) if total else b""
    return np.frombuffer(raw, dtype=np.uint8), lens


def _spec(col: dict[str, Any]) -> tuple[np.dtype, bool, bool]:
    """``(dtype, delta-coded, int16-packed)`` of a column, kept in its header entry."""
    spec = col.get("_spec")
    if spec is None:
        spec = col["_spec"] = (np.dtype(col["dtype"]), col["kind"] in ("int", "float"), bool(col.get("pack16")))
    return spec


def _values(buf: np.ndarray, cur: int, nbytes: int, col: dict[str, Any]) -> np.ndarray:
    """Codes, mask bytes or running integers (before scaling) of one run of a column."""
    dtype, delta, pack16 = _spec(col)
    arr = _unshuffle(buf[cur:cur + nbytes], dtype)
    return _running(arr, pack16) if delta else arr


def _running_at(packed: np.ndarray, pack16: bool, k: np.ndarray) -> np.ndarray:
    """Running values of delta-coded ``packed`` at the row positions ``k`` (sorted) only.

    Sums only up to the last position asked for; int16-packed overflow runs are stepped over
    by mapping each row to its position in ``packed`` (row ``k`` follows the ``j`` runs whose
    markers precede it) instead of filtering every marker out of the whole run.
    """
    if pack16 and packed.size and (packed.max() >= _LIM16 or packed.min() <= -_LIM16):
        m = np.flatnonzero((packed == _LIM16) | (packed == -_LIM16))
        k = k + np.searchsorted(m - np.arange(m.size), k, "right")
    c = packed[:int(k[-1]) + 1].astype(np.int64) if k.size else packed[:0].astype(np.int64)
    np.cumsum(c, out=c)
    return c[k]


def _dictionary(view: memoryview, base: int, col: dict[str, Any]) -> list[str] | None:
    if "dict" not in col:
        return None
    off, clen, ulen = col["dict"]
    return list(msgpack.unpackb(_decompress(view[base + off: base + off + clen], ulen), raw=False))


def _read(blob: bytes, columns: Sequence[str], pages: Sequence[int], header: tuple[dict[str, Any], int] | None,
          take: np.ndarray | None) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Decode ``columns`` over ``pages``, then keep the positions ``take`` of their rows (None: all)."""
    head, base = header or read_header(blob)
    view = memoryview(blob)
    bounds = page_bounds(head)
    npages = bounds.size - 1
    blist: list[int] = head.get("_blist") or head.setdefault("_blist", bounds.tolist())
    runs = _runs(pages)
    want = set(columns)
    cols = [c for c in head["cols"] if c["name"] in want and c["kind"] != "bytes"]
    buf, lens = _gather(view, base, cols, npages, blist, runs)
    holder: list[np.ndarray] = []

    def rows() -> np.ndarray:  # blob rows of the output, built only when a column needs them
        if not holder:
            r = np.concatenate([np.arange(blist[a], blist[b]) for a, b in runs]) if runs else np.zeros(0, np.int64)
            holder.append(r if take is None else r[take])
        return holder[0]

    split: list[np.ndarray] = []  # per run, the positions of ``take`` in it
    if take is not None:
        starts = np.cumsum([0] + [blist[b] - blist[a] for a, b in runs])
        cuts = np.searchsorted(take, starts).tolist()
        split = [take[cuts[i]:cuts[i + 1]] - starts[i] for i in range(len(runs))]
    values: dict[str, Any] = {}
    masks: dict[str, np.ndarray] = {}
    out_cols: dict[str, dict[str, Any]] = {}
    cur = 0
    for col, parts in zip(cols, lens, strict=True):
        name, kind = col["name"], col["kind"]
        if "frames" in col:
            dtype, delta, pack16 = _spec(col)
            bases = col.get("base")
            got = []
            for i, ((a, _), nbytes) in enumerate(zip(runs, parts, strict=True)):
                arr = _unshuffle(buf[cur:cur + nbytes], dtype)
                cur += nbytes
                if delta:
                    arr = _running(arr, pack16) if take is None else _running_at(arr, pack16, split[i])
                    if bases[a]:
                        arr += bases[a]
                elif take is not None:
                    arr = arr[split[i]]
                got.append(arr)
            arr = np.concatenate(got) if len(got) != 1 else got[0]
        else:  # a column without pages: decoded whole, then sliced
            arr = _values(buf, cur, parts[0], col)
            cur += parts[0]
            if arr.size != rows().size or take is not None:
                arr = arr[rows()]
        if kind == "mask":
            masks[name] = arr
            continue
        out_cols[name] = col
        if kind in ("str", "text"):
            values[name] = (arr, _dictionary(view, base, col))
        elif kind == "float":
            floats = arr / (10.0 ** col["dec"])
            if "negzero" in col:
                nz = np.asarray(col["negzero"], dtype=np.int64)
                r = rows()
                pos = np.searchsorted(r, nz)
                ok = pos < r.size
                ok[ok] = r[pos[ok]] == nz[ok]
                floats[pos[ok]] = -0.0
            values[name] = floats
        else:
            values[name] = arr
    return values, masks, out_cols


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
    return _read(blob, columns, pages, header, None)


def read_rows(blob: bytes, columns: Sequence[str], rows: np.ndarray,
              header: tuple[dict[str, Any], int] | None = None
              ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Decode ``columns`` at ``rows`` (sorted, unique row numbers of the blob): only their pages.

    ``header`` is the blob's parsed ``(header, base)`` when the caller keeps it. Rows are
    picked before floats are scaled, so only the selected values are.
    """
    header = header or read_header(blob)
    bounds = page_bounds(header[0])
    if rows.size and rows[-1] < bounds[1]:  # all in the first page: no bookkeeping
        return _read(blob, columns, [0], header, None if rows.size == bounds[1] else rows)
    cuts = np.searchsorted(rows, bounds)  # rows are sorted: each page's share, without a pass per row
    counts = np.diff(cuts)
    pages = np.flatnonzero(counts)
    sizes = bounds[pages + 1] - bounds[pages]
    if rows.size == int(sizes.sum()):  # every row of the pages
        return _read(blob, columns, pages.tolist(), header, None)
    if pages.size == 1:
        return _read(blob, columns, pages.tolist(), header, rows - bounds[pages[0]])
    # local position = start of the page among the decoded rows + offset in the page
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return _read(blob, columns, pages.tolist(), header, rows + np.repeat(starts - bounds[pages], counts[pages]))


def read_into(blob: bytes, columns: Sequence[str], out: dict[str, np.ndarray], masks: dict[str, np.ndarray],
              start: int, total: int, header: tuple[dict[str, Any], int] | None = None) -> None:
    """Decode ``columns`` of a whole blob into ``out[name][start:start + n]`` (no intermediate copies).

    ``out`` holds preallocated int64 (``int``), float64 (``float``) or int32 (``str``/``text``
    codes) arrays of length ``total``; a column's null-kind mask is written into
    ``masks[name]``, allocated (zeros, length ``total``) when a blob first has one. This is how
    the chunks of a chunked block assemble into single arrays. Every column's segment is
    decompressed by one call for the whole blob.
    """
    head, base = header or read_header(blob)
    n = int(head["n"])
    want = set(columns)
    cols = [c for c in head["cols"] if c["name"] in want and c["kind"] != "bytes"]
    buf, lens = _gather(memoryview(blob), base, cols, 0, [], None)
    cur = 0
    for col, (nbytes,) in zip(cols, lens, strict=True):
        name, kind = col["name"], col["kind"]
        arr = _unshuffle(buf[cur:cur + nbytes], np.dtype(col["dtype"]))
        cur += nbytes
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
