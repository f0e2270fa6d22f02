"""Trajectory frames: the cell codec and the TileDB I/O of the ``frames`` array.

Layout
------
``frames`` is a dense, store-wide array with dimensions ``traj`` (a random 39-bit id per
stored trajectory), ``frame`` and ``part``, tile extent 1 on each, and one var-length
``blob`` attribute. One cell holds the coordinates of one *atom part* of one frame:

* parts ``0 .. 15`` are positions, split by atom class (``trace`` CA/P, ``backbone``,
  ``sidechain`` / other polymer atoms, ``ligand`` / ions, ``water``; see
  :mod:`moldb.ingest.trajectory`), so a CA-only read fetches and decodes only the trace
  cells: it reads what it returns;
* part ``16`` holds velocities and part ``32`` forces (all atoms), when the source has them.

Cell format (MMTF-style, per cell)
----------------------------------
``uint32`` total length, ``uint8`` kind, ``uint8`` decimals, ``uint8`` item size, ``uint8``
flags, ``uint32`` tag (hash of trajectory id, frame and part: a reader checks that the bytes it
got are the cell it asked for), then zstd of the payload.

* kind 0, fixed point: ``q = rint(x * 10**decimals)`` (decimals = the source's precision,
  e.g. 2 in Å for XTC's 0.001 nm), delta-coded along the atoms per axis, narrowed to the
  smallest signed int holding every delta, byte-shuffled (all low bytes first).
* kind 1, float32: byte-shuffled float32 (lossless), used when the values do not sit on a
  decimal grid (H5MD floats, velocities, forces) or a frame does not round-trip.

Reads use TileDB's low-level query with a reused buffer (one query, ≈ 0.5 ms for a
5,067-atom frame on a 2-core machine) and fall back to the high-level API.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import tiledb

from moldb.errors import StorageError
from moldb.storage import engine
from moldb.storage.arrays import array_schema
from moldb.storage.backend import Backend

__all__ = ["FORCE_PART", "VELOCITY_PART", "FrameReader", "cell_sizes", "cell_tag", "decode_cell", "encode_cell",
           "ensure_frames_array", "new_traj_id", "write_frames"]

VELOCITY_PART = 16
FORCE_PART = 32
_HEAD = struct.Struct("<IBBBBI")
_ZSTD = pa.Codec("zstd", compression_level=6)
_KIND_FIXED, _KIND_F32 = 0, 1
_INTS = (np.int8, np.int16, np.int32, np.int64)


def new_traj_id() -> int:
    """A random trajectory id (39 bits, never 0)."""
    return secrets.randbits(39) + 1


def cell_tag(traj: int, frame: int, part: int) -> int:
    """The 32-bit tag stored in the header of cell (traj, frame, part)."""
    return (int(traj) * 1_000_003 + int(frame) * 257 + int(part) + 1) & 0xFFFFFFFF


def _shuffle(a: np.ndarray) -> bytes:
    if a.itemsize == 1:
        return a.tobytes()
    return np.ascontiguousarray(a.view(np.uint8).reshape(-1, a.itemsize).T).tobytes()


def encode_cell(xyz: np.ndarray, decimals: int | None, tag: int = 0) -> bytes:
    """Encode one (n, 3) block of coordinates.

    Parameters
    ----------
    xyz : numpy.ndarray, shape (n, 3), float32 or float64
    decimals : int or None
        Fixed-point decimals; None stores lossless float32.
    tag : int
        :func:`cell_tag` of the cell's position.

    Returns
    -------
    bytes
        The cell (header + zstd payload). Falls back to float32 when ``xyz`` does not
        round-trip at ``decimals`` (to within 2 float32 ulps).
    """
    x = np.asarray(xyz)
    if decimals is not None and x.size:
        scale = 10.0 ** decimals
        q = np.rint(x.astype(np.float64) * scale)
        back = (q / scale).astype(np.float32)
        tol = 2.0 * np.spacing(np.float32(max(float(np.abs(x).max()), 1.0)))
        if np.all(np.isfinite(q)) and np.abs(q).max() < 2**31 and float(np.abs(back - x).max()) <= tol:
            d = np.diff(q.astype(np.int64).T, axis=1, prepend=np.int64(0))  # (3, n) deltas along atoms
            lo, hi = int(d.min()), int(d.max())
            t = next(t for t in _INTS if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)
            body = _shuffle(np.ascontiguousarray(d.astype(t)).ravel())
            comp = bytes(_ZSTD.compress(body, asbytes=True))
            return _HEAD.pack(_HEAD.size + len(comp), _KIND_FIXED, decimals, np.dtype(t).itemsize, 0, tag) + comp
    body = _shuffle(np.ascontiguousarray(x, dtype=np.float32).ravel())
    comp = bytes(_ZSTD.compress(body, asbytes=True))
    return _HEAD.pack(_HEAD.size + len(comp), _KIND_F32, 0, 4, 0, tag) + comp


def decode_cell(buf: bytes | memoryview | np.ndarray, n: int) -> np.ndarray:
    """Decode a cell of ``n`` atoms into a float32 array of shape (n, 3)."""
    view = memoryview(buf.data if isinstance(buf, np.ndarray) else buf).cast("B")
    try:
        total, kind, dec, size, _flags, _tag = _HEAD.unpack_from(view, 0)
        raw = _ZSTD.decompress(view[_HEAD.size:total], decompressed_size=3 * n * size, asbytes=True)
    except (struct.error, pa.ArrowException, ValueError) as exc:
        raise StorageError(f"corrupt trajectory frame cell ({exc}); the store's files were damaged") from exc
    planes = np.frombuffer(raw, dtype=np.uint8)
    if kind == _KIND_F32:
        out = planes.reshape(4, 3 * n).T.copy().view(np.float32).reshape(n, 3)
        return out
    dt = np.dtype(f"i{size}")
    d = planes.reshape(size, 3 * n).T.copy().view(dt).reshape(3, n) if size > 1 else planes.view(dt).reshape(3, n)
    q = np.cumsum(d, axis=1, dtype=np.int64 if size >= 4 else np.int32)
    return (q.T / (10.0 ** dec)).astype(np.float32)


def ensure_frames_array(backend: Backend) -> None:
    """Create the ``frames`` array in a store made before it existed (additive, idempotent)."""
    if backend.has_array("frames"):
        return
    uri = backend.array_uri("frames")
    with engine.mapped(uri, "creating the frames array"):
        tiledb.Array.create(uri, array_schema("frames", backend.ctx), ctx=backend.ctx)
        with tiledb.Group(backend.uri, "w", ctx=backend.ctx) as g:
            g.add("frames", name="frames", relative=True)
    backend.__dict__["_has_frames"] = True


def write_frames(backend: Backend, ts: int, traj: int, part_ids: Sequence[int], cells: Sequence[Sequence[bytes]],
                 first_frame: int = 0) -> None:
    """Write a dense block of cells: ``cells[f][p]`` for frames ``first_frame + f`` and parts ``part_ids``.

    ``part_ids`` must be consecutive (one rectangle per write).
    """
    if not cells:
        return
    parts = list(part_ids)
    if parts != list(range(parts[0], parts[0] + len(parts))):
        raise ValueError(f"part ids {parts} are not consecutive")
    data = np.empty((1, len(cells), len(parts)), dtype=object)
    for f, row in enumerate(cells):
        for p, c in enumerate(row):
            data[0, f, p] = c
    uri = backend.array_uri("frames")
    with engine.mapped(uri, "writing trajectory frames"), tiledb.open(uri, "w", timestamp=ts,
                                                                      ctx=backend.ctx) as arr:
        arr[traj:traj + 1, first_frame:first_frame + len(cells), parts[0]:parts[-1] + 1] = {"data": data}


class FrameReader:
    """Read cells of one trajectory with one TileDB query per call.

    Parameters
    ----------
    backend : Backend
    traj : int
        Trajectory id.
    max_cell : int
        Largest cell in bytes (sizes the reused read buffer).
    """

    def __init__(self, backend: Backend, traj: int, max_cell: int) -> None:
        self.backend = backend
        self.traj = int(traj)
        self.max_cell = int(max_cell)
        self._buf = np.empty(0, dtype=np.uint8)
        self._offs = np.empty(0, dtype=np.uint64)
        #: bytes of cells fetched by the last :meth:`read` (what TileDB returned)
        self.last_bytes = 0

    def _array(self) -> tiledb.Array:
        if not self.backend.has_array("frames"):
            raise StorageError(f"{self.backend.uri}: the store has no frames array (no trajectory was stored)")
        return self.backend.reader("frames")

    def read(self, frames: Sequence[int], parts: Sequence[int]) -> list[list[memoryview]]:
        """Cells ``[i][j]`` for ``frames[i]`` and ``parts[j]`` (ranges coalesced; one query)."""
        frames = [int(f) for f in frames]
        parts = [int(p) for p in parts]
        if not frames or not parts:
            return [[] for _ in frames]
        got = self._read_once(self._array(), frames, parts)
        if any(len(c) == 0 for row in got for c in row):  # written after this handle was opened: reopen once
            got = self._read_once(self.backend.reader("frames", refresh=True), frames, parts)
            if any(len(c) == 0 for row in got for c in row):
                raise StorageError(f"{self.backend.uri}: trajectory {self.traj} has no stored cells for some of "
                                   f"frames {frames[:5]}… parts {parts}; the store is incomplete or damaged")
        return got

    def _read_once(self, arr: tiledb.Array, frames: list[int], parts: list[int]) -> list[list[memoryview]]:
        try:
            got = self._read_low(arr, frames, parts)
        except (AttributeError, TypeError, tiledb.TileDBError):  # API drift: fall back to the public API
            got = None
        if got is None:
            got = self._read_high(arr, frames, parts)
        return got

    @staticmethod
    def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
        runs: list[tuple[int, int]] = []
        for v in values:
            if runs and v == runs[-1][1] + 1:
                runs[-1] = (runs[-1][0], v)
            else:
                runs.append((v, v))
        return runs

    def _read_low(self, arr: tiledb.Array, frames: list[int], parts: list[int]) -> list[list[memoryview]] | None:
        import tiledb.libtiledb as lt

        if sorted(set(frames)) != frames or sorted(set(parts)) != parts:
            return None
        n_cells = len(frames) * len(parts)
        need = n_cells * self.max_cell + 64
        if self._buf.size < need:
            self._buf = np.empty(need, dtype=np.uint8)
        if self._offs.size < n_cells:
            self._offs = np.empty(n_cells, dtype=np.uint64)
        ctx = self.backend.ctx
        q = lt.Query(ctx, arr.array, lt.QueryType.READ)
        q.layout = lt.LayoutType.ROW_MAJOR
        sub = lt.Subarray(ctx, arr.array)
        sub._add_dim_range(0, (self.traj, self.traj))
        for lo, hi in self._runs(frames):
            sub._add_dim_range(1, (lo, hi))
        for lo, hi in self._runs(parts):
            sub._add_dim_range(2, (lo, hi))
        q.set_subarray(sub)
        q.set_data_buffer("data", self._buf, self._buf.size)
        q.set_offsets_buffer("data", self._offs, n_cells)
        with engine.mapped(arr.uri, "reading trajectory frames"):
            q._submit()
        if q.query_status() != lt.QueryStatus.COMPLETE:
            return None
        buf = memoryview(self._buf.data)
        out: list[list[memoryview]] = []
        total = 0
        k = 0
        for f in frames:
            row = []
            for p in parts:
                start = int(self._offs[k])
                length, tag = 0, -1
                if start + _HEAD.size <= self._buf.size:
                    length, *_, tag = _HEAD.unpack_from(buf, start)
                if tag != cell_tag(self.traj, f, p) or start + length > self._buf.size:
                    length = 0  # an empty cell (not written / not visible to this handle)
                row.append(buf[start:start + length])
                total += length
                k += 1
            out.append(row)
        self.last_bytes = total
        return out

    def _read_high(self, arr: tiledb.Array, frames: list[int], parts: list[int]) -> list[list[memoryview]]:
        out: list[list[memoryview]] = []
        total = 0
        with engine.mapped(arr.uri, "reading trajectory frames"):
            for f in frames:
                res = arr.query(attrs=["data"])[self.traj:self.traj + 1, f:f + 1, min(parts):max(parts) + 1]
                cells = res["data"].reshape(-1)
                row = [memoryview(bytes(cells[p - min(parts)])) for p in parts]
                total += sum(len(c) for c in row)
                out.append(row)
        self.last_bytes = total
        return out


def cell_sizes(cells: Sequence[Sequence[bytes]]) -> int:
    """Largest cell length in a block of cells (for :class:`FrameReader`'s buffer)."""
    return max((len(c) for row in cells for c in row), default=0)
