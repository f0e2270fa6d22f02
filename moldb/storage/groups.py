"""Read one column group of a version — a plain blob or a chunked block — for all rows or a subset.

:class:`GroupSource` hides whether a block is chunked (:mod:`moldb.storage.chunks`):
callers ask for columns over chunks (a query's scope) or at given rows, and it
decodes only the chunks — and within them only the pages — that hold those rows.
Fetching is separate (:func:`fetch`), so the chunks of several groups and entries are
read in **one** TileDB query. Parsed manifests are kept per :class:`Backend`
(:func:`manifest_cache`): they are small, and a block id always holds the same bytes. A full
read decodes the chunks of a block on a small thread pool (:data:`DECODE_THREADS`): each
chunk is independent, and zstd and numpy release the GIL.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from moldb.storage.blob import read_blob_columns, read_header
from moldb.storage.blob_pages import read_into, read_pages, read_rows
from moldb.storage.blob_plan import BlobPlan, plan_cache
from moldb.storage.chunks import Manifest, parse_manifest
from moldb.storage.codec import arrow_columns

__all__ = ["GroupSource", "fetch", "header_cache", "manifest_cache", "open_groups"]

#: Threads decoding the chunks of one block in a full read (``MOLDB_DECODE_THREADS``; 1: serial).
DECODE_THREADS = int(os.environ.get("MOLDB_DECODE_THREADS", min(4, os.cpu_count() or 1)))
PARALLEL_MIN_ROWS = 32_768  # reads of fewer rows than twice this stay serial
_POOL: list[ThreadPoolExecutor] = []
MANIFESTS_KEPT = 1024
HEADERS_KEPT = 4096  # parsed chunk headers kept per store handle
TINY_BLOB = 256  # plain blobs this small (a group without columns) are kept with the manifests


def manifest_cache(backend: Any) -> OrderedDict[int, Manifest | bytes]:
    """Parsed manifests of chunked blocks read through ``backend``, and tiny plain blobs such as an
    entry's empty ``aniso`` group (LRU by count; a block id always holds the same bytes)."""
    cache: OrderedDict[int, Manifest | bytes] = backend.__dict__.setdefault("_manifests", OrderedDict())
    return cache


def header_cache(backend: Any) -> OrderedDict[int, tuple[dict[str, Any], int]]:
    """Parsed headers of chunk cells read through ``backend``, by chunk block id (LRU by count).

    A chunk's header (column layout, frame sizes, page bases) is parsed with msgpack on every
    read otherwise (~40 µs per chunk); a block id always holds the same bytes.
    """
    cache: OrderedDict[int, tuple[dict[str, Any], int]] = backend.__dict__.setdefault("_chunk_headers", OrderedDict())
    return cache


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="moldb-decode"))
    return _POOL[0]


def _remember(backend: Any, block: int, manifest: Manifest | bytes) -> None:
    cache = manifest_cache(backend)
    cache[block] = manifest
    while len(cache) > MANIFESTS_KEPT:
        cache.popitem(last=False)


class GroupSource:
    """One block of one column group: plain, or chunked with the chunk blobs fetched so far.

    Parameters
    ----------
    block : int
        Block id (the parent cell of a chunked block).
    blob : bytes, optional
        The blob of a plain block.
    manifest : Manifest, optional
        The manifest of a chunked block.
    """

    def __init__(self, block: int, blob: bytes | None = None, manifest: Manifest | None = None,
                 headers: OrderedDict[int, tuple[dict[str, Any], int]] | None = None,
                 plan: BlobPlan | None = None) -> None:
        self.block = int(block)
        self.manifest = manifest
        self.blobs: dict[int, bytes] = {} if blob is None else {0: blob}
        self._headers: dict[int, tuple[dict[str, Any], int]] = {}  # parsed chunk headers
        self._shared = headers  # the store handle's parsed chunk headers, by block id
        if manifest is not None:
            self.bounds = manifest.bounds
            self.zbounds = manifest.zbounds
            self.meta = manifest.meta
        else:
            self._plan = plan if plan is not None else BlobPlan(blob or b"")
            header = self._plan.header
            self.bounds = np.array([0, int(header["n"])], dtype=np.int64)
            self.zbounds = self.bounds
            self.meta = dict(header.get("meta", {}))

    @property
    def chunked(self) -> bool:
        """Whether the block is stored as chunks."""
        return self.manifest is not None

    @property
    def n(self) -> int:
        """Rows."""
        return int(self.bounds[-1])

    def chunks_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """Chunk index of each of ``rows``."""
        return np.searchsorted(self.bounds, rows, "right") - 1

    def missing(self, chunks: Iterable[int] | None = None) -> list[int]:
        """Block ids of the chunks (default: all) not fetched yet."""
        if self.manifest is None:
            return []
        idx = range(self.manifest.n_chunks) if chunks is None else chunks
        return self.manifest.chunk_ids(self.block, [int(k) for k in idx if int(k) not in self.blobs])

    def put(self, got: dict[int, dict[str, Any]]) -> None:
        """Keep the fetched chunk blobs that belong to this block."""
        if self.manifest is None:
            return
        first, stride = self.manifest.first, self.manifest.stride
        for b, v in got.items():
            k, rest = divmod(b - self.block - first, stride)
            if rest == 0 and 0 <= k < self.manifest.n_chunks:
                self.blobs[k] = v["data"]

    def drop(self, keep: Iterable[int] = ()) -> None:
        """Forget fetched chunk blobs except ``keep`` (bounds memory while streaming)."""
        if self.manifest is not None:
            keep = set(keep)
            self.blobs = {k: v for k, v in self.blobs.items() if k in keep}
            self._headers = {k: v for k, v in self._headers.items() if k in keep}

    def header(self, k: int) -> tuple[dict[str, Any], int]:
        """Parsed header of fetched chunk ``k`` (kept, and shared through the store handle's cache)."""
        got = self._headers.get(k)
        if got is None:
            shared = self._shared
            bid = self.block + self.manifest.first + self.manifest.stride * k if self.manifest is not None else -1
            got = shared.get(bid) if shared is not None else None
            if got is not None and shared is not None:
                shared.move_to_end(bid)
            elif got is None:
                got = read_header(self.blobs[k])
                if shared is not None:
                    shared[bid] = got
                    while len(shared) > HEADERS_KEPT:
                        shared.popitem(last=False)
            self._headers[k] = got
        return got

    def columns(self) -> list[str]:
        """Names of the columns the block holds."""
        if self.manifest is not None:
            return list(self.manifest.cols)
        return list(self._plan.kinds)

    def dictionary(self, column: str) -> list[str] | None:
        """Dictionary of a string column without decoding codes (None: no such column)."""
        if self.manifest is not None:
            return self.manifest.dicts.get(column)
        return self._plan.dictionary(self.blobs[0], column)

    def arrow(self, values: dict[str, Any], masks: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, int],
                                                                                  list[str]]:
        """Decoded values as Arrow arrays: ``(arrays, decimals, text)`` (see :func:`arrow_columns`)."""
        dicts = self.manifest.arrow_dictionary if self.manifest is not None else self._plan.arrow_dictionary
        return arrow_columns(values, masks, self.kinds(), dicts)

    def kinds(self) -> dict[str, dict[str, Any]]:
        """Header description (``kind``, ``dec``) of every column."""
        if self.manifest is not None:
            return self.manifest.cols
        return self._plan.kinds

    def read(self, names: Sequence[str] | None = None, chunks: Sequence[int] | None = None
             ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Decode ``names`` (default all) over ``chunks`` (default all), rows concatenated in order.

        Values are as :func:`~moldb.storage.blob.read_blob_columns` gives them, strings as
        ``(codes, dictionary)``.
        """
        if self.manifest is None:
            values, masks, _, _ = read_blob_columns(self.blobs[0], None if names is None else list(names), self._plan)
            return values, masks
        idx = list(range(self.manifest.n_chunks)) if chunks is None else [int(k) for k in chunks]
        want = list(self.manifest.cols) if names is None else [c for c in names if c in self.manifest.cols]
        sizes = [int(self.bounds[k + 1] - self.bounds[k]) for k in idx]
        starts = np.r_[0, np.cumsum(sizes)].tolist()
        total = starts[-1]
        dtypes = {"int": np.int64, "float": np.float64, "str": np.int32, "text": np.int32}
        out = {c: np.empty(total, dtype=dtypes[self.manifest.cols[c]["kind"]]) for c in want}
        heads = [self.header(k) for k in idx]
        masked = {c["name"] for h, _ in heads for c in h["cols"] if c["kind"] == "mask"}
        masks = {c: np.zeros(total, dtype=np.uint8) for c in want if c in masked}

        def one(i: int) -> None:  # decoded in place: no concatenation copies
            read_into(self.blobs[idx[i]], want, out, masks, starts[i], total, heads[i])

        if len(idx) > 1 and DECODE_THREADS > 1 and total >= 2 * PARALLEL_MIN_ROWS:
            list(_pool().map(one, range(len(idx))))  # chunks decode independently (zstd and numpy drop the GIL)
        else:
            for i in range(len(idx)):
                one(i)
        return ({c: (v, self.manifest.dicts[c]) if self.manifest.cols[c]["kind"] in ("str", "text") else v
                 for c, v in out.items()}, masks)

    def chunks_of_zones(self, zones: Sequence[int]) -> list[int]:
        """Chunks holding the zones (pages) ``zones``."""
        if self.manifest is None:
            return [0]
        return np.unique(self.manifest.zone_chunks(np.asarray(zones, dtype=np.int64))).tolist()

    def read_zones(self, names: Sequence[str], zones: Sequence[int]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Decode ``names`` over the zones (pages) ``zones`` (sorted), rows concatenated: only those pages."""
        if self.manifest is None:
            return self.read(names)
        want = [c for c in names if c in self.manifest.cols]
        z = np.asarray(zones, dtype=np.int64)
        chunk = self.manifest.zone_chunks(z)
        first = np.searchsorted(self.zbounds, self.bounds[chunk])  # zone index of each chunk's first page
        cuts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1], True])
        parts, sizes = [], []
        for a, b in itertools.pairwise(cuts.tolist()):
            k = int(chunk[a])
            values, masks, _ = read_pages(self.blobs[k], want, (z[a:b] - first[a]).tolist(), self.header(k))
            parts.append((values, masks))
            sizes.append(int((self.zbounds[z[a:b] + 1] - self.zbounds[z[a:b]]).sum()))
        return self._join(want, parts, sizes)

    def take(self, names: Sequence[str] | None, rows: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Decode ``names`` at ``rows`` (sorted, unique): only the chunks and pages holding them."""
        if self.manifest is None:
            values, masks = self.read(names)
            if rows.size == self.n:  # sorted and unique: every row
                return values, masks
            return ({k: (v[0][rows], v[1]) if isinstance(v, tuple) else v[rows] for k, v in values.items()},
                    {k: m[rows] for k, m in masks.items()})
        want = list(self.manifest.cols) if names is None else [c for c in names if c in self.manifest.cols]
        cuts = np.searchsorted(rows, self.bounds)  # rows are sorted: each chunk's share
        held = np.flatnonzero(np.diff(cuts))
        if rows.size == int((self.bounds[held + 1] - self.bounds[held]).sum()):  # whole chunks: decode in place
            return self.read(want, held.tolist())
        parts, sizes = [], []
        for k in held.tolist():
            a, b = int(cuts[k]), int(cuts[k + 1])
            values, masks, _ = read_rows(self.blobs[k], want, rows[a:b] - self.bounds[k], self.header(k))
            parts.append((values, masks))
            sizes.append(b - a)
        return self._join(want, parts, sizes)

    def chunks_holding(self, rows: np.ndarray) -> list[int]:
        """Chunks holding any of ``rows`` (sorted)."""
        return np.flatnonzero(np.diff(np.searchsorted(rows, self.bounds))).tolist()

    def _join(self, want: list[str], parts: list[tuple[dict[str, Any], dict[str, np.ndarray]]],
              sizes: list[int]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self.manifest is not None
        values: dict[str, Any] = {}
        masks: dict[str, np.ndarray] = {}
        if len(parts) == 1:  # one chunk: its arrays as they are
            one, masks = parts[0]
            for name in want:
                v = one[name]
                values[name] = (v[0], self.manifest.dicts[name]) if isinstance(v, tuple) else v
            return values, masks
        for name in want:
            got = [p[0][name] for p in parts]
            if self.manifest.cols[name]["kind"] in ("str", "text"):
                codes = np.concatenate([g[0] for g in got]) if len(got) != 1 else got[0][0]
                values[name] = (codes, self.manifest.dicts[name])
            else:
                values[name] = np.concatenate(got) if len(got) != 1 else got[0]
            if any(name in p[1] for p in parts):
                masks[name] = np.concatenate([p[1].get(name, np.zeros(s, np.uint8))
                                              for p, s in zip(parts, sizes, strict=True)])
        return values, masks


def fetch(backend: Any, wants: Sequence[tuple[GroupSource, Iterable[int] | None]]) -> None:
    """Fetch the missing chunks of several sources (``(source, chunk indices or None for all)``) in one query."""
    ids = sorted({b for src, chunks in wants for b in src.missing(chunks)})
    if not ids:
        return
    got = backend.read_blocks(ids)
    for src, _ in wants:
        src.put(got)


def open_groups(backend: Any, blocks: Sequence[dict[str, int]], groups: Sequence[str]
                ) -> list[dict[str, GroupSource]]:
    """Sources of ``groups`` for several versions' block maps; uncached blocks in one query."""
    cache = manifest_cache(backend)
    heads = header_cache(backend)
    plans = plan_cache(backend)
    need = sorted({int(b[g]) for b in blocks for g in groups if g in b and int(b[g]) not in cache})
    got = backend.read_blocks(need) if need else {}
    out = []
    for bmap in blocks:
        srcs: dict[str, GroupSource] = {}
        for g in groups:
            if g not in bmap:
                continue
            bid = int(bmap[g])
            hit = cache.get(bid)
            plan = plans.get((bid,)) if hit is None else None
            if plan is not None:  # a plain block read before: its header is parsed already
                srcs[g] = GroupSource(bid, blob=got[bid]["data"], plan=plan)
                continue
            if hit is None:
                blob = got[bid]["data"]
                man = parse_manifest(blob)
                if man is not None or len(blob) <= TINY_BLOB:
                    _remember(backend, bid, blob if man is None else man)
            else:
                cache.move_to_end(bid)
                blob, man = (b"", hit) if isinstance(hit, Manifest) else (hit, None)
            if man is None:
                plan = plans.get((bid,)) if hit is not None else None  # tiny blobs, kept with the manifests
                if plan is None:
                    plan = BlobPlan(blob)
                    plans.put((bid,), plan)
                srcs[g] = GroupSource(bid, blob=blob, plan=plan)
            else:
                srcs[g] = GroupSource(bid, manifest=man, headers=heads)
        out.append(srcs)
    return out
