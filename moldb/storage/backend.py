"""The store's storage backend: a TileDB group of store-wide arrays.

:class:`Backend` is what the layers above talk to. It knows arrays, cells and
timestamps; it knows nothing of structures beyond the column groups.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import tiledb

from moldb.errors import SchemaVersionError, StorageError, StoreExistsError, StoreNotFoundError
from moldb.storage import engine
from moldb.storage.arrays import ARRAY_NAMES, create_arrays
from moldb.storage.block_cache import shared_cache
from moldb.storage.cells import read_cells
from moldb.storage.chunks import DEFAULT_CHUNK_ROWS, DEFAULT_PAGE_ROWS
from moldb.storage.consolidate import consolidate_fragments
from moldb.storage.lock import writer_lock
from moldb.storage.write_batch import WriteBatch

__all__ = ["CHUNKED_ENCODING_VERSION", "ENCODING_VERSION", "OBJECT_TYPE", "SCHEMA_VERSION", "Backend"]

OBJECT_TYPE = "moldb.store"
ENCODING_VERSION = "1"  # written at creation; raised to CHUNKED_ENCODING_VERSION by the first chunked block
#: Encoding of stores holding chunked blocks (``moldb.storage.chunks``); this moldb reads "1" and "2".
CHUNKED_ENCODING_VERSION = "2"
SCHEMA_VERSION = 1
_NO_ROWS = np.zeros(0, dtype=np.int64)
CONSOLIDATE_EVERY = 64  # commits between light consolidations of the small arrays


def consolidation_budget(nbytes: int) -> int:
    """TileDB memory budget for consolidating an array of ``nbytes``.

    TileDB's default budget (10 GB) costs about 1.2 s of buffer set-up per consolidation even
    for a tiny array; four times the array's size (at least 64 MB) holds any of its tiles.
    """
    return int(min(max(4 * nbytes, 64 << 20), 10 << 30))


class Backend:
    """Open handle on a moldb store's TileDB group.

    Parameters
    ----------
    uri : str
        Store URI (local path or any URI TileDB accepts, e.g. ``s3://``).
    config : dict, optional
        Extra TileDB configuration.
    """

    def __init__(self, uri: str, config: dict[str, str] | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.config = dict(config or {})
        self.ctx = engine.context(config)
        kind = engine.object_type(self.uri, self.ctx)
        if kind != "group":
            raise StoreNotFoundError(
                f"{self.uri}: no moldb store here; create one with `moldb init {self.uri}` or moldb.create()"
            )
        with engine.mapped(self.uri, "reading store metadata"), tiledb.Group(self.uri, "r", ctx=self.ctx) as g:
            meta = {k: g.meta[k] for k in g.meta}
        if meta.get("moldb.object_type") != OBJECT_TYPE:
            raise StoreNotFoundError(f"{self.uri}: a TileDB group, but not a moldb store (no moldb metadata)")
        self.schema_version = int(meta.get("moldb.schema_version", 0))
        self.encoding_version = str(meta.get("moldb.encoding_version", ""))
        if self.encoding_version.isdigit() and int(self.encoding_version) > int(CHUNKED_ENCODING_VERSION):
            raise SchemaVersionError(
                f"{self.uri}: block encoding v{self.encoding_version} is newer than this moldb reads "
                f"(v{CHUNKED_ENCODING_VERSION}); upgrade moldb to open it"
            )
        self.meta = meta
        #: Blocks of more than ``chunk_rows`` rows are written as row chunks of that size, cut into pages of
        #: ``page_rows`` (``moldb.storage.chunks``); ``MOLDB_CHUNK_ROWS`` / ``MOLDB_PAGE_ROWS``, 0 disables.
        self.chunk_rows = int(os.environ.get("MOLDB_CHUNK_ROWS", DEFAULT_CHUNK_ROWS))
        self.page_rows = int(os.environ.get("MOLDB_PAGE_ROWS", DEFAULT_PAGE_ROWS))
        self._readers: dict[str, tiledb.Array] = {}
        self._versions: dict[str, Any] | None = None  # cached cells of the versions array
        self._entry_rows: dict[str, np.ndarray] | None = None  # entry → its rows in _versions
        #: Explicit write timestamps to use instead of the clock (tests write at fixed times, as
        #: TileDB-SOMA's do); each must still exceed every committed one.
        self.fixed_timestamps: Iterator[int] | None = None
        self._versions_token: Any = None
        self._lock: Any = None  # the held writer lock's clock (Clock / S3Lease) inside ``writing()``
        self._token_checked = 0.0  # monotonic time of the last object-store staleness check
        self._batch: WriteBatch | None = None  # cells buffered by ``batched()``
        self._flags: dict[str, Any] = {}  # what this handle has written once (see ``handle_flags``)

    # -- creation -----------------------------------------------------------------------------------------
    @classmethod
    def create(cls, uri: str, config: dict[str, str] | None = None) -> Backend:
        """Create an empty store at ``uri``.

        Raises
        ------
        StoreExistsError
            If anything already exists at ``uri``.
        """
        uri = uri.rstrip("/")
        ctx = engine.context(config)
        if engine.object_type(uri, ctx) is not None:
            raise StoreExistsError(f"{uri}: a TileDB object already exists here; open it with moldb.open()")
        if engine.is_local(uri):
            import pathlib

            p = pathlib.Path(uri.removeprefix("file://"))
            if p.exists() and any(p.iterdir()):
                raise StoreExistsError(f"{uri}: directory is not empty; choose a new path for the store")
            p.parent.mkdir(parents=True, exist_ok=True)
        elif engine.is_s3(uri):
            _check_s3_target(uri, ctx)
        with engine.mapped(uri, "creating the store"):
            tiledb.Group.create(uri, ctx=ctx)
            uris = create_arrays(uri, ctx)
            with tiledb.Group(uri, "w", ctx=ctx) as g:
                for name in ARRAY_NAMES:
                    g.add(name, name=name, relative=True)
                g.meta["moldb.object_type"] = OBJECT_TYPE
                g.meta["moldb.encoding_version"] = ENCODING_VERSION
                g.meta["moldb.schema_version"] = SCHEMA_VERSION
                g.meta["moldb.created_ms"] = int(time.time() * 1000)
        del uris
        return cls(uri, config)

    def check_version(self) -> None:
        """Raise :class:`SchemaVersionError` unless the store is at this moldb's schema version."""
        if self.schema_version != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.uri}: store schema v{self.schema_version}, this moldb uses v{SCHEMA_VERSION}; "
                f"run `moldb migrate {self.uri}` to upgrade it explicitly"
            )

    def set_meta(self, key: str, value: Any) -> None:
        """Write one group metadata value."""
        with engine.mapped(self.uri, "writing store metadata"), tiledb.Group(self.uri, "w", ctx=self.ctx) as g:
            g.meta[key] = value
        self.meta[key] = value

    # -- handles --------------------------------------------------------------------------------------
    def array_uri(self, name: str) -> str:
        """URI of array ``name``."""
        return engine.join(self.uri, name)

    def reader(self, name: str, refresh: bool = False) -> tiledb.Array:
        """A cached read handle on array ``name`` (``refresh`` reopens it to see new writes)."""
        arr = self._readers.get(name)
        if arr is None:
            arr = engine.open_array(self.array_uri(name), self.ctx, "r")
            self._readers[name] = arr
        elif refresh:
            with engine.mapped(self.array_uri(name), "refreshing a read handle"):
                arr.reopen()
        return arr

    def close(self) -> None:
        """Close cached handles."""
        for arr in self._readers.values():
            arr.close()
        self._readers.clear()

    @contextmanager
    def writing(self, timeout: float = 120.0) -> Iterator[int]:
        """Take the writer lock and yield a fresh, strictly increasing write timestamp (ms)."""
        with writer_lock(self.uri, timeout, self.config) as clock:
            last = clock.read() if clock is not None else None
            if last is None:
                last = self.last_timestamp()
            if self.fixed_timestamps is not None:
                ts = int(next(self.fixed_timestamps))
                if ts <= last:
                    raise ValueError(f"fixed timestamp {ts} is not after the last committed one ({last})")
            else:
                ts = max(int(time.time() * 1000), last + 1)
            if clock is not None:
                clock.write(ts)
            self._lock = clock
            try:
                yield ts
            finally:
                self._lock = None
            if clock is not None:
                n = clock.count() + 1
                clock.write(ts, n)
                if n % CONSOLIDATE_EVERY == 0:
                    self.light_consolidate()

    @contextmanager
    def batched(self, ts: int) -> Iterator[WriteBatch]:
        """Buffer the sparse-array writes at ``ts``; write one fragment per array on a clean exit.

        Use inside :meth:`writing`. ``versions`` and ``tags`` are written after every other
        array, so the batch becomes visible in one step; an exception inside the block
        writes nothing. While it is open, :meth:`read_versions` of one entry and
        :meth:`component_ids` answer from a snapshot taken at its start plus what it holds.
        """
        if self._batch is not None:
            raise RuntimeError("write batches do not nest")
        batch = WriteBatch(ts, self.versions_index(refresh=True), self.component_ids(), self._flags)
        self._batch = batch
        try:
            yield batch
        finally:
            self._batch = None
        for name in batch.arrays():
            coords, cells = batch.merged(name)
            self.write_cells(name, ts, coords, cells)
        self._flags.update(batch.flags)

    def handle_flags(self) -> dict[str, Any]:
        """Facts about what this handle has written (e.g. "operators registered"), for skipping repeats.

        Inside :meth:`batched` the batch's own copy: a savepoint rollback or a failed batch
        forgets what it set.
        """
        return self._batch.flags if self._batch is not None else self._flags

    def light_consolidate(self) -> None:
        """Bound fragment counts without touching history or concurrent readers.

        Consolidates the fragments of the small arrays (``versions``, ``tags``,
        ``components``: sparse, so per-cell timestamps keep time travel exact) and
        the fragment footers and commit files of every array. Nothing is vacuumed:
        readers that opened the arrays earlier keep working; ``maintain()`` vacuums.
        """
        vfs = engine.vfs(self.ctx)
        for name in ARRAY_NAMES:
            if not self.has_array(name):  # added after the store was created (e.g. ``frames``)
                continue
            uri = self.array_uri(name)
            bulk = name in ("blocks", "frames")
            # blocks/frames: footers and commit files only (no data copy); others are small, merge their fragments
            modes = ("fragments", "fragment_meta", "commits") if not bulk else ("fragment_meta", "commits")
            with engine.mapped(uri, "consolidating"):
                budget = consolidation_budget(int(vfs.dir_size(uri)) if not bulk else 0)
                for mode in modes:
                    if mode == "fragments":  # retried with a larger budget if a cell does not fit (consolidate.py)
                        consolidate_fragments(uri, {"sm.mem.total_budget": str(budget)}, self.ctx)
                        continue
                    cfg = tiledb.Config({"sm.consolidation.mode": mode, "sm.mem.total_budget": str(budget)})
                    tiledb.consolidate(uri, config=cfg, ctx=self.ctx)

    def last_timestamp(self) -> int:
        """Largest version timestamp in the store (0 for an empty store)."""
        arr = self.reader("versions", refresh=True)
        with engine.mapped(arr.uri, "reading timestamps"):
            ts = arr.query(attrs=["ts"], dims=[])[:]["ts"]
        tags = self.reader("tags", refresh=True)
        with engine.mapped(tags.uri, "reading timestamps"):
            frags = tiledb.array_fragments(tags.uri, ctx=self.ctx)
        tag_ts = max((int(f.timestamp_range[1]) for f in frags), default=0)
        return max(int(ts.max()) if len(ts) else 0, tag_ts)

    # -- writes ---------------------------------------------------------------------------------------
    def write_cells(self, name: str, ts: int, coords: Sequence[np.ndarray], cells: dict[str, Any]) -> None:
        """Write one fragment of cells to array ``name`` at timestamp ``ts``.

        A ``versions`` or ``tags`` write is a commit point: inside :meth:`writing`, the writer
        lock is checked first (an S3 lease is renewed and must still be this writer's).
        """
        if self._batch is not None and name != "frames":  # frames is dense: written in place, unreferenced till commit
            self._batch.add(name, ts, coords, cells)
            return
        uri = self.array_uri(name)
        if name in ("versions", "tags") and self._lock is not None:
            self._lock.fence()
        with engine.mapped(uri, "writing"), tiledb.open(uri, "w", timestamp=ts, ctx=self.ctx) as arr:
            arr[tuple(coords)] = cells
        if name == "versions":
            self._versions = None
            self._entry_rows = None

    def write_blocks(self, ts: int, entry: str, rows: Sequence[tuple[int, str, int, str, bytes]]) -> None:
        """Write immutable blocks ``(block id, group, n_rows, content hash, blob)`` in one fragment."""
        if not rows:
            return
        self.write_cells(
            "blocks", ts, [np.array([r[0] for r in rows], dtype=np.uint64)],
            {"entry": np.array([entry] * len(rows), dtype=object),
             "group": np.array([r[1] for r in rows], dtype=object),
             "n_rows": np.array([r[2] for r in rows], dtype=np.uint64),
             "content_hash": np.array([r[3] for r in rows], dtype=object),
             "data": np.array([r[4] for r in rows], dtype=object)},
        )

    # -- reads ----------------------------------------------------------------------------------------
    def read_blocks(self, blocks: Sequence[int], attrs: Sequence[str] = ("data",)) -> dict[int, dict[str, Any]]:
        """Block id → requested attributes, in one TileDB query.

        Blobs (``attrs == ("data",)``) come from the process-wide :mod:`block cache
        <moldb.storage.block_cache>` when present: blocks are immutable, so a cached blob is never stale.
        """
        ids = sorted({int(b) for b in blocks})
        if tuple(attrs) == ("data",) and shared_cache.max_bytes > 0:
            ident = (self.uri, self.meta.get("moldb.created_ms"))
            out: dict[int, dict[str, Any]] = {}
            missing = []
            for b in ids:
                blob = shared_cache.get((*ident, b))
                if blob is None:
                    missing.append(b)
                else:
                    out[b] = {"data": blob}
            if missing:
                got = self._read_blocks(missing, attrs)
                for b, v in got.items():
                    shared_cache.put((*ident, b), v["data"])
                out.update(got)
            return out
        return self._read_blocks(ids, attrs)

    def _read_blocks(self, ids: list[int], attrs: Sequence[str]) -> dict[int, dict[str, Any]]:
        try:
            res = self._blocks_query(self.reader("blocks"), ids, attrs)
        except StorageError as exc:  # fragments vacuumed by another handle or process since this one opened
            if exc.retryable:  # the object store is unreachable: reopening would not help
                raise
            self._readers.pop("blocks").close()
            res = self._blocks_query(self.reader("blocks"), ids, attrs)
        if len(res["block"]) < len(ids):  # written after this handle was opened
            res = self._blocks_query(self.reader("blocks", refresh=True), ids, attrs)
        return {int(b): {a: res[a][i] for a in attrs} for i, b in enumerate(res["block"])}

    @staticmethod
    def _blocks_query(arr: tiledb.Array, ids: list[int], attrs: Sequence[str]) -> dict[str, Any]:
        with engine.mapped(arr.uri, "reading blocks"):
            if tuple(attrs) == ("data",):  # blobs: reused buffers, no per-query allocation (moldb.storage.cells)
                return read_cells(arr, ids)
            return arr.query(attrs=list(attrs), order="U").multi_index[[(b, b) for b in ids]]

    # -- chemical-component templates ------------------------------------------------------------
    def component_ids(self) -> set[str]:
        """Ids of every stored component template (fresh read; in a write batch, also those it holds)."""
        if self._batch is not None:
            return set(self._batch.components)
        arr = self.reader("components", refresh=True)
        with engine.mapped(arr.uri, "reading component ids"):
            ids = arr.query(attrs=[], dims=["comp_id"])[:]["comp_id"]
        return {i.decode() if isinstance(i, bytes) else str(i) for i in ids}

    def write_components(self, ts: int, rows: Sequence[tuple[str, list[str], list[str], bytes, str]]) -> None:
        """Store templates ``(comp_id, atom names, elements, bonds int16 bytes, source)``."""
        if not rows:
            return
        if self._batch is not None:
            self._batch.components.update(r[0] for r in rows)
        self.write_cells(
            "components", ts, [np.array([r[0] for r in rows], dtype=object)],
            {"atom_names": np.array([json.dumps(r[1]) for r in rows], dtype=object),
             "elements": np.array([json.dumps(r[2]) for r in rows], dtype=object),
             "bonds": np.array([r[3] for r in rows], dtype=object),
             "source": np.array([r[4] for r in rows], dtype=object)})

    def read_components(self, comp_ids: Sequence[str]) -> dict[str, tuple[list[str], list[str], bytes]]:
        """comp_id → (atom names, elements, bonds bytes) for the stored ones among ``comp_ids``."""
        want = sorted(set(comp_ids))
        if not want:
            return {}
        arr = self.reader("components", refresh=True)
        with engine.mapped(arr.uri, "reading component templates"):
            res = arr.query(attrs=["atom_names", "elements", "bonds"], order="U").multi_index[
                [(c, c) for c in want]]
        out = {}
        for i, cid in enumerate(res["comp_id"]):
            key = cid.decode() if isinstance(cid, bytes) else str(cid)
            out[key] = (json.loads(res["atom_names"][i]), json.loads(res["elements"][i]), bytes(res["bonds"][i]))
        return out

    def _staleness_token(self) -> Any:
        """Cheap token that changes when a version is committed; None where there is none.

        Local stores: a ``stat`` of the ``versions`` commit directory. ``s3://`` stores: one
        listing of that prefix through TileDB's VFS (a LIST request), made at most every
        ``moldb.s3.revalidate_s`` seconds (default 0: on every call); in between the cached
        index is used as is.
        """
        if engine.is_s3(self.uri):
            every = float(self.config.get("moldb.s3.revalidate_s", 0) or 0)
            now = time.monotonic()
            if every > 0 and self._versions_token is not None and now - self._token_checked < every:
                return self._versions_token
            self._token_checked = now
            commits = self.array_uri("versions") + "/__commits"
            with engine.mapped(commits, "checking for new versions"):
                names = sorted(engine.vfs(self.ctx).ls(commits))
            return (len(names), names[-1] if names else "")
        if not engine.is_local(self.uri):
            return None
        import os

        path = self.array_uri("versions").removeprefix("file://") + "/__commits"
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def versions_index(self, refresh: bool = False) -> dict[str, Any]:
        """Cells of the whole ``versions`` array, cached until a commit changes them.

        On local stores a new commit is noticed by a ``stat`` of the array's commit
        directory; on object stores the cache is refreshed by moldb's own writes,
        on a miss, or with ``refresh=True`` (snapshot semantics, as TileDB's own open).
        """
        token = self._staleness_token()
        if refresh or self._versions is None or (token is not None and token != self._versions_token):
            self._versions_token = token
            arr = self.reader("versions", refresh=True)
            with engine.mapped(arr.uri, "reading versions"):
                cells = arr.query(order="G")[:]
            cells["entry"] = np.array([e.decode() if isinstance(e, bytes) else e for e in cells["entry"]],
                                      dtype=object)
            self._versions = cells
            self._entry_rows = None
        return self._versions

    def entry_rows(self, entry: str, refresh: bool = False) -> np.ndarray:
        """Row indices of ``entry`` in :meth:`versions_index` (``int64``; empty: no such entry).

        The entry → rows map is built once per refresh of the index, so finding an entry's
        versions does not compare every entry id of the store on each read.
        """
        cells = self.versions_index(refresh)
        rows = self._entry_rows
        if rows is None:
            groups: dict[str, list[int]] = {}
            for i, e in enumerate(cells["entry"].tolist()):
                groups.setdefault(e, []).append(i)
            rows = self._entry_rows = {e: np.array(ix, dtype=np.int64) for e, ix in groups.items()}
        return rows.get(entry, _NO_ROWS)

    def read_versions(self, entry: str | None = None, as_of: int | None = None,
                      attrs: Sequence[str] | None = None) -> dict[str, Any]:
        """Cells of ``versions`` (one entry or all), as of timestamp ``as_of`` (ms, inclusive)."""
        if self._batch is not None and entry is not None and as_of is None:
            return self._batch.read_versions(entry, attrs)
        if as_of is None:
            arr = self.reader("versions", refresh=True)
            close = False
        else:
            arr = engine.open_array(self.array_uri("versions"), self.ctx, "r", timestamp=(0, int(as_of)))
            close = True
        try:
            with engine.mapped(arr.uri, "reading versions"):
                q = arr.query(attrs=list(attrs) if attrs is not None else None, order="G")
                return q.multi_index[entry:entry, :] if entry is not None else q[:]
        finally:
            if close:
                arr.close()

    def read_tags(self, entry: str | None = None) -> dict[str, Any]:
        """Cells of ``tags``."""
        arr = self.reader("tags", refresh=True)
        with engine.mapped(arr.uri, "reading tags"):
            q = arr.query(order="G")
            return q.multi_index[entry:entry, :] if entry is not None else q[:]

    def array_sizes(self) -> dict[str, int]:
        """Bytes on disk per array (local or remote, through TileDB's VFS)."""
        vfs = engine.vfs(self.ctx)
        out = {}
        for name in ARRAY_NAMES:
            if not self.has_array(name):
                continue
            with engine.mapped(self.array_uri(name), "measuring size"):
                out[name] = int(vfs.dir_size(self.array_uri(name)))
        return out

    # -- spatial grid index (moldb.query.spatial) -------------------------------------------------
    def has_array(self, name: str) -> bool:
        """Whether the store has array ``name`` (stores written before an array was added lack it)."""
        key = f"_has_{name}"
        if key not in self.__dict__:
            self.__dict__[key] = engine.object_type(self.array_uri(name), self.ctx) == "array"
        return bool(self.__dict__[key])

    def read_spatial(self, block: int) -> bytes | None:
        """The spatial index blob of one ``xyz`` block, or None if it has none.

        A miss reopens the handle once (the block may have been indexed after it was opened).
        """
        def run(arr: tiledb.Array) -> dict[str, Any]:
            with engine.mapped(arr.uri, "reading the spatial index"):
                return arr.query(attrs=["index"], order="U").multi_index[block:block]

        res = run(self.reader("spatial"))
        if not len(res["index"]):
            res = run(self.reader("spatial", refresh=True))
        return bytes(res["index"][0]) if len(res["index"]) else None


def _check_s3_target(uri: str, ctx: tiledb.Ctx) -> None:
    """Refuse to create a store in a missing bucket or under a non-empty prefix."""
    bucket, prefix = engine.split_s3(uri)
    vfs = engine.vfs(ctx)
    with engine.mapped(uri, "checking the bucket"):
        if not vfs.is_bucket(f"s3://{bucket}"):
            raise StoreNotFoundError(
                f"{uri}: bucket {bucket!r} does not exist or is not accessible; create it first (e.g. "
                f"`aws s3 mb s3://{bucket}`) and check the endpoint and keys (docs/storage-s3.md)"
            )
        if not prefix:
            raise StoreExistsError(f"{uri}: give the store a path inside the bucket, e.g. s3://{bucket}/store")
        if vfs.is_dir(uri) and vfs.ls(uri):
            raise StoreExistsError(f"{uri}: the prefix already holds objects; choose a new path for the store")
