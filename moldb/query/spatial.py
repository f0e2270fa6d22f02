"""Spatial grid index per ``xyz`` block, and exact neighbour search in numpy.

Design (see ``docs/query.md``): at ingest an ingest hook bins every atom of a new
``xyz`` block into cubic cells of :data:`CELL` Å and writes ONE ``spatial`` cell per
block: a compact blob (:mod:`moldb.storage.blob`) of row runs — (packed cell key,
first row, run length), sorted by cell — plus a header with the grid bounds and the
rows, coordinates and identifiers of the non-water HETATM atoms (ligands,
:mod:`moldb.query.ligands`). Atoms of a cell are
mostly consecutive rows (residues), so the index costs 0.2–0.4 bytes per atom instead
of a second copy of the coordinates. A box or point query reads that one cell,
selects the runs of the intersecting cells, and refines exactly with the entry's own
coordinates, decoding only the three coordinate columns and, for chunked blocks
(``moldb.storage.chunks``), only the chunks and pages that hold the candidate rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from moldb.ingest.hooks import register_ingest_hook
from moldb.query.ligands import add_ligand_table
from moldb.storage.blob import BlobWriter, read_blob_columns
from moldb.storage.groups import fetch, open_groups

__all__ = ["CELL", "candidates", "cell_ranges", "index_block", "lookup", "near", "point_ranges"]

CELL = 16.0  # Å: longer row runs per cell (0.2-0.4 bytes per atom), still few candidates
_OFF = 1 << 20  # grid indices are offset into [0, 2**21) and packed 21 bits each
_WATERS = ("HOH", "WAT", "DOD", "H2O")
_MAX_RANGES = 4096


def _pack(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
    return ((ix + _OFF).astype(np.uint64) << np.uint64(42)) | ((iy + _OFF).astype(np.uint64) << np.uint64(21)) \
        | (iz + _OFF).astype(np.uint64)


def _grid(xyz: np.ndarray) -> np.ndarray:
    return np.floor(xyz / CELL).astype(np.int64)


def build_index(table: pa.Table, decimals: dict[str, int], topo_block: int | None = None
                ) -> tuple[bytes, dict[str, Any]] | None:
    """The index blob and header of one coordinate table; None if the grid cannot hold it.

    ``topo_block`` is the id of the version's ``topo`` block: the ligand table
    (:mod:`moldb.query.ligands`) is used only with that block.
    """
    if not all(c in table.column_names for c in ("Cartn_x", "Cartn_y", "Cartn_z")) or table.num_rows == 0:
        return None
    dec = max(int(decimals.get(c, 3)) for c in ("Cartn_x", "Cartn_y", "Cartn_z"))
    cols = [table.column(c).fill_null(0.0).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")]
    grid = []  # one axis at a time, int32: a 2.3M-atom entry needs ~40 MB here, not ~250 MB
    for c in cols:
        cell = np.floor(c / CELL)
        if not np.all(np.isfinite(cell)) or np.abs(cell).max() >= _OFF:
            return None
        grid.append(cell.astype(np.int32))
        del cell
    keys = _pack(*grid).view(np.int64)  # < 2**63
    lo, hi = [int(g.min()) for g in grid], [int(g.max()) for g in grid]
    del grid
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    brk = np.r_[True, (k[1:] != k[:-1]) | (order[1:] != order[:-1] + 1)]
    first = np.flatnonzero(brk)
    het = np.zeros(table.num_rows, dtype=bool)
    if "group_PDB" in table.column_names and "label_comp_id" in table.column_names:
        is_het = pc.equal(table.column("group_PDB").cast(pa.string()), "HETATM")
        water = pc.is_in(table.column("label_comp_id").cast(pa.string()), pa.array(_WATERS))
        het = np.asarray(pc.and_(is_het, pc.invert(water)).fill_null(False).to_numpy(zero_copy_only=False))
    het_rows = np.flatnonzero(het)
    w = BlobWriter(len(first))
    w.add_ints("key", "int", k[first])
    w.add_ints("start", "int", order[first])
    w.add_ints("len", "int", np.diff(np.r_[first, order.size]))
    w.add_ints("het_rows", "int", het_rows)
    for c, col in zip("xyz", cols, strict=True):
        w.add_floats(f"het_{c}", col[het_rows], dec)
    meta = {"cell": CELL, "dec": dec, "n": int(table.num_rows), "lo": lo, "hi": hi}
    meta.update(add_ligand_table(w, table, het_rows, topo_block))
    return w.finish(meta), meta


def index_block(backend: Any, ts: int, block: int, table: pa.Table, decimals: dict[str, int],
                topo_block: int | None = None) -> bool:
    """Write the grid index of one ``xyz`` block; False (nothing written) if it cannot be indexed."""
    built = build_index(table, decimals, topo_block)
    if built is None:
        return False
    blob, meta = built
    backend.write_cells("spatial", ts, [np.array([block], dtype=np.uint64)],
                        {"index": np.array([blob], dtype=object), "meta": np.array([json.dumps(meta)], dtype=object)})
    return True


def _hook(backend: Any, ts: int, entry_id: str, parsed: Any, blocks: dict[str, int], new_groups: list[str]) -> None:
    if "xyz" not in new_groups or not backend.has_array("spatial"):
        return  # a shared xyz block is already indexed; stores without the array are scanned
    index_block(backend, ts, blocks["xyz"], parsed.atoms, parsed.decimals, blocks.get("topo"))


register_ingest_hook("moldb.query.spatial", _hook)


def cell_ranges(lo: np.ndarray, hi: np.ndarray, glo: list[int], ghi: list[int]) -> list[tuple[int, int]]:
    """Inclusive cell-key ranges covering the box ``[lo, hi]`` clipped to the grid ``[glo, ghi]``."""
    a = np.maximum(_grid(np.asarray(lo, dtype=np.float64)), glo)
    b = np.minimum(_grid(np.asarray(hi, dtype=np.float64)), ghi)
    if np.any(a > b):
        return []
    xs, ys = np.arange(a[0], b[0] + 1), np.arange(a[1], b[1] + 1)
    if xs.size > _MAX_RANGES:  # one range over everything: the refinement filters
        return [(int(_pack(a[:1], a[1:2], a[2:])[0]), int(_pack(b[:1], b[1:2], b[2:])[0]))]
    if xs.size * ys.size > _MAX_RANGES:  # coarser ranges (whole y-z slabs), refined later anyway
        k0 = _pack(xs, np.full_like(xs, a[1]), np.full_like(xs, a[2]))
        k1 = _pack(xs, np.full_like(xs, b[1]), np.full_like(xs, b[2]))
    else:
        gx, gy = (m.ravel() for m in np.meshgrid(xs, ys, indexing="ij"))
        k0 = _pack(gx, gy, np.full_like(gx, a[2]))
        k1 = _pack(gx, gy, np.full_like(gx, b[2]))
    return [(int(x), int(y)) for x, y in zip(k0, k1, strict=True)]


def point_ranges(points: np.ndarray, r: float) -> list[tuple[int, int]]:
    """Cell-key ranges covering the cubes ``[p - r, p + r]`` of every point (scattered ligands stay cheap)."""
    lo, hi = _grid(points - r), _grid(points + r)
    span = hi - lo + 1
    if len(points) * int(span.prod(1).max()) > 200_000:
        return cell_ranges(points.min(0) - r, points.max(0) + r, [-_OFF + 1] * 3, [_OFF - 1] * 3)
    # every (x, y) column of cells of every point's cube, one z range each: vectorised, then deduplicated
    count = span[:, 0] * span[:, 1]
    pid = np.repeat(np.arange(len(points)), count)
    k = np.arange(int(count.sum())) - np.repeat(np.r_[0, np.cumsum(count)[:-1]], count)
    ix, iy = lo[pid, 0] + k // span[pid, 1], lo[pid, 1] + k % span[pid, 1]
    k0, k1 = _pack(ix, iy, lo[pid, 2]), _pack(ix, iy, hi[pid, 2])
    order = np.lexsort((k1, k0))
    k0, k1 = k0[order], k1[order]
    first = np.r_[True, (k0[1:] != k0[:-1]) | (k1[1:] != k1[:-1])]
    ranges = list(zip(k0[first].tolist(), k1[first].tolist(), strict=True))
    merged: list[tuple[int, int]] = []
    for k0, k1 in ranges:
        if merged and k0 <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], k1))
        else:
            merged.append((k0, k1))
    return merged


def _header(backend: Any, block: int) -> dict[str, Any] | None:
    """Decoded index of one block (runs, ligand atoms, grid); cached: blocks are immutable."""
    cache: dict[int, dict[str, Any]] = backend.__dict__.setdefault("_spatial_index", {})
    if block in cache:
        return cache[block]
    blob = backend.read_spatial(block)
    if blob is None:
        return None
    values, masks, meta, _ = read_blob_columns(blob)
    het_xyz = np.column_stack([values[f"het_{c}"] for c in "xyz"]) if len(values["het_rows"]) else np.zeros((0, 3))
    header = {**meta, "keys": values["key"], "starts": values["start"], "lens": values["len"],
              "het_rows": values["het_rows"], "het_xyz": het_xyz,
              "lig_values": {k[4:]: v for k, v in values.items() if k.startswith("lig:")},
              "lig_masks": {k[4:]: v for k, v in masks.items() if k.startswith("lig:")}}
    if len(cache) > 256:
        cache.clear()
    cache[block] = header
    return header


def _coordinates(backend: Any, block: int, rows: np.ndarray) -> np.ndarray:
    """Coordinates of ``rows`` of an ``xyz`` block (only the chunks and pages holding them are decoded)."""
    src = open_groups(backend, [{"xyz": block}], ["xyz"])[0]["xyz"]
    if src.chunked:
        fetch(backend, [(src, src.chunks_holding(rows))])
    values, _ = src.take(["Cartn_x", "Cartn_y", "Cartn_z"], rows)
    return np.column_stack([values[c] for c in ("Cartn_x", "Cartn_y", "Cartn_z")])


def candidates(backend: Any, block: int, lo: Any, hi: Any, ranges: list[tuple[int, int]] | None = None
               ) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Rows (sorted) of the atoms in the cells intersecting ``[lo, hi]`` (or ``ranges``), and the header.

    ``None`` when the block has no index (stores without the ``spatial`` array, blocks
    written before it existed, coordinates that do not fit the grid).
    """
    if not backend.has_array("spatial"):
        return None
    header = _header(backend, block)
    if header is None:
        return None
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if ranges is None:
        full = [-_OFF + 1] * 3, [_OFF - 1] * 3
        ranges = cell_ranges(lo, hi, *full) if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) else []
    if not ranges:
        return np.zeros(0, dtype=np.int64), header
    merged: list[list[int]] = []
    for a, b in sorted(ranges):  # sorted, merged: each range is one slice of the sorted keys
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    r0 = np.array([m[0] for m in merged], dtype=np.int64)
    r1 = np.array([m[1] for m in merged], dtype=np.int64)
    keys = header["keys"]  # sorted: each key range is one slice of the runs (cost ~ ranges, not runs)
    first, last = np.searchsorted(keys, r0, "left"), np.searchsorted(keys, r1, "right")
    count = last - first
    hit = np.repeat(first - np.r_[0, np.cumsum(count)[:-1]], count) + np.arange(int(count.sum()))
    starts, lens = header["starts"][hit], header["lens"][hit]
    if not lens.sum():
        return np.zeros(0, dtype=np.int64), header
    rows = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(lens.sum())
    rows.sort()
    return rows, header


def lookup(backend: Any, block: int, lo: Any, hi: Any, ranges: list[tuple[int, int]] | None = None,
           coords: Callable[[np.ndarray], np.ndarray] | None = None
           ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """Rows and exact coordinates of the atoms in the cells intersecting ``[lo, hi]`` (or ``ranges``).

    Returns ``None`` when the block has no index (see :func:`candidates`). The third
    item is the header: grid ``meta`` plus ``het_rows`` / ``het_xyz`` (ligand atoms).
    ``coords(rows)`` reads the coordinates of candidate rows (default: from the block,
    decoding only the chunks and pages that hold them).
    """
    got = candidates(backend, block, lo, hi, ranges)
    if got is None:
        return None
    rows, header = got
    if not rows.size:
        return rows, np.zeros((0, 3)), header
    return rows, (coords or (lambda r: _coordinates(backend, block, r)))(rows), header


def near(points: np.ndarray, targets: np.ndarray, r: float) -> np.ndarray:
    """Mask of ``targets`` (n, 3) within ``r`` Å (inclusive) of any of ``points`` (k, 3)."""
    hit = np.zeros(len(targets), dtype=bool)
    if len(points) == 0 or len(targets) == 0:
        return hit
    lo, hi = points.min(0) - r, points.max(0) + r
    cand = np.flatnonzero(np.all((targets >= lo) & (targets <= hi), axis=1))
    t = targets[cand]
    r2 = r * r
    if len(t) * len(points) <= 4_000_000:
        step = max(1, 4_000_000 // max(len(points), 1))
        for s in range(0, len(t), step):
            d2 = ((t[s:s + step, None, :] - points[None, :, :]) ** 2).sum(-1)
            hit[cand[s:s + step]] = (d2 <= r2).any(1)
        return hit
    cs = max(r, 1e-3)  # hash grid with cells of r: neighbours lie in the 27 surrounding cells
    pc_ = np.floor((points - lo) / cs).astype(np.int64)
    dims = pc_.max(0) + 3
    pkeys = (pc_[:, 0] * dims[1] + pc_[:, 1]) * dims[2] + pc_[:, 2]
    order = np.argsort(pkeys, kind="stable")
    skeys = pkeys[order]
    tc = np.floor((t - lo) / cs).astype(np.int64)
    found = np.zeros(len(t), dtype=bool)
    for off in np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"), -1).reshape(-1, 3):
        c = tc + off
        ok = np.all((c >= 0) & (c < dims), axis=1) & ~found
        idx = np.flatnonzero(ok)
        key = (c[idx, 0] * dims[1] + c[idx, 1]) * dims[2] + c[idx, 2]
        left = np.searchsorted(skeys, key, "left")
        cnt = np.searchsorted(skeys, key, "right") - left
        if not cnt.sum():
            continue
        ti = np.repeat(idx, cnt)
        pi = order[np.repeat(left - np.r_[0, np.cumsum(cnt)[:-1]], cnt) + np.arange(cnt.sum())]
        close = ((t[ti] - points[pi]) ** 2).sum(1) <= r2
        found[ti[close]] = True
    hit[cand] = found
    return hit
