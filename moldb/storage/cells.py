"""Read var-sized cells of a sparse array by id through TileDB's low-level query, into reused buffers.

``array.query(...).multi_index[...]`` (TileDB-Py's ``PyQuery``) allocates fresh result buffers
of ``py.init_buffer_bytes`` (10 MB) for every attribute of every query; NumPy asks for huge
pages on buffers that large, so the first bytes a query writes fault in (and zero) whole
2 MB pages, and the results are then unpacked into one more array per cell. A selection on a
large entry reads a few chunk cells (~0.5 MB) per call, and that set-up was half of its
TileDB time. :func:`read_cells` instead

* keeps one data buffer per thread and reuses it (grown when a cell does not fit),
* asks TileDB for the offsets with the extra final element (``sm.var_offsets.extra_element``,
  on a context of its own: the array handle's other readers keep TileDB-Py's layout), so the
  size of the last cell is known without TileDB-Py's result bookkeeping,
* counts the results from the dimension buffer, zeroed before each submission (ids start
  at 1, :mod:`moldb.storage.arrays`), and
* follows TileDB's incomplete-query protocol: copy what came, resubmit; a submission that
  returned nothing means the next cell is larger than the buffer, which then grows, and
* runs reads of a few cells of a local store (:data:`SERIAL_CELLS`) on one TileDB thread: handing
  their small tasks to the thread pools and back cost more than the work (3 cells, 440 kB:
  1.65 → 1.0 ms median with the machine's other work running). Object stores keep the pools
  (their requests are what runs in parallel).

Measured on the 2-core machine, three chunk cells (440 kB) of ``blocks``: 3.9 → 2.2 ms median,
2.0 → 1.0 ms fastest (``benchmarks/bench_query.py``'s selection reads exactly these).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
import tiledb
import tiledb.libtiledb as lt

from moldb.errors import StorageError
from moldb.storage import engine

__all__ = ["KEEP_BYTES", "read_cells"]

SERIAL_CELLS = 16  # local reads of at most this many cells run on one TileDB thread
START_BYTES = 4 << 20  # first data buffer of a thread
KEEP_BYTES = 64 << 20  # buffers grown beyond this are not kept for the next query
_MAX_BYTES = 1 << 40
_LOCAL = threading.local()
_CONTEXTS: dict[tuple[int, bool], tuple[tiledb.Ctx, lt.Context]] = {}
os.register_at_fork(after_in_child=_CONTEXTS.clear)  # thread pools do not survive fork()


def _context(ctx: tiledb.Ctx, serial: bool) -> lt.Context:
    """A context with ``ctx``'s configuration plus the extra final offset (kept per ``ctx``); ``serial``:
    one compute and one I/O thread."""
    hit = _CONTEXTS.get((id(ctx), serial))
    if hit is None or hit[0] is not ctx:
        cfg = ctx.config().dict()
        cfg["sm.var_offsets.extra_element"] = "true"
        cfg["sm.var_offsets.mode"] = "bytes"
        if serial:
            cfg["sm.compute_concurrency_level"] = cfg["sm.io_concurrency_level"] = "1"
        hit = (ctx, lt.Context(tiledb.Ctx(tiledb.Config(cfg))))
        _CONTEXTS[(id(ctx), serial)] = hit
    return hit[1]


def _buffer(nbytes: int) -> np.ndarray:
    """This thread's data buffer, at least ``nbytes`` long."""
    buf: np.ndarray | None = getattr(_LOCAL, "data", None)
    if buf is None or buf.size < nbytes:
        buf = np.empty(max(nbytes, START_BYTES), dtype=np.uint8)
        if buf.size <= KEEP_BYTES:
            _LOCAL.data = buf
    return buf


def read_cells(arr: tiledb.Array, ids: Sequence[int], dim: str = "block", attr: str = "data"
               ) -> dict[str, list[int] | list[bytes]]:
    """Cells ``ids`` of the var-sized attribute ``attr`` of a sparse array with one ``uint64`` dimension.

    Parameters
    ----------
    arr : tiledb.Array
        Open for reading.
    ids : sequence of int
        Coordinates (sorted, unique, all ``>= 1``); ids without a cell are left out of the result.
    dim, attr : str
        The dimension and the attribute.

    Returns
    -------
    dict
        ``{dim: [id, ...], attr: [bytes, ...]}``, in TileDB's (unordered) result order.

    Raises
    ------
    tiledb.TileDBError
        As TileDB reports it (callers map it with :func:`moldb.storage.engine.mapped`).
    """
    want = np.asarray(ids, dtype=np.uint64)
    coords = np.zeros(want.size + 1, dtype=np.uint64)
    offs = np.zeros(want.size + 2, dtype=np.uint64)
    sub = tiledb.Subarray(arr, arr.ctx)
    sub.add_ranges([[(int(b), int(b)) for b in want.tolist()]])
    serial = want.size <= SERIAL_CELLS and engine.is_local(arr.uri)
    q = lt.Query(_context(arr.ctx, serial), arr.array, lt.QueryType.READ)
    q.layout = lt.LayoutType.UNORDERED
    q.set_subarray(sub)
    data = _buffer(0)
    got: list[int] = []
    blobs: list[bytes] = []
    while True:
        coords[:] = 0
        q.set_data_buffer(dim, coords, coords.size)
        q.set_data_buffer(attr, data, data.size)
        q.set_offsets_buffer(attr, offs, offs.size)
        q._submit()
        n = int(np.count_nonzero(coords))  # results fill a prefix; no cell has id 0
        if n:
            ends = offs[:n + 1].tolist()
            got.extend(coords[:n].tolist())
            blobs.extend(data[ends[i]:ends[i + 1]].tobytes() for i in range(n))
        status = q.query_status()
        if status == lt.QueryStatus.COMPLETE:
            break
        if status != lt.QueryStatus.INCOMPLETE:
            raise StorageError(f"{arr.uri}: reading cells ended with status {status}")
        if n == 0:  # the next cell does not fit: grow the buffer and resubmit
            if data.size >= _MAX_BYTES:
                raise StorageError(f"{arr.uri}: a cell is larger than {_MAX_BYTES} bytes")
            data = _buffer(2 * data.size)
    return {dim: got, attr: blobs}
